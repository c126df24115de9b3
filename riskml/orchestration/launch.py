"""``python -m riskml.orchestration.launch MODULE[:FUNC] (--spec JSON | --spec-file PATH)``.

The command a Ray job or a KubeRay RayJob runs: import the entrypoint, call it with the spec,
print ``RISKML_RESULT {json}`` as the last line (see :mod:`riskml.orchestration.protocol`).
Exit code 0 on success, 1 when the entrypoint raised, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from riskml.orchestration.protocol import (
    EntrypointError,
    format_result_line,
    load_spec,
    resolve_entrypoint,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m riskml.orchestration.launch")
    parser.add_argument("entrypoint", help="package.module[:function] (function default: run)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--spec", default=None, help="the spec as a JSON object")
    group.add_argument("--spec-file", type=Path, default=None, help="a file holding the spec")
    args = parser.parse_args(argv)
    try:
        if args.spec_file is not None:
            spec = load_spec(args.spec_file.read_text())
        else:
            spec = load_spec(args.spec if args.spec is not None else "{}")
        fn = resolve_entrypoint(args.entrypoint)
    except (EntrypointError, OSError) as exc:
        print(f"riskml launch: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        result = fn(spec)
        line = format_result_line(result)
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    sys.stderr.flush()
    print(line, flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
