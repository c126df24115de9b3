"""Benchmark: the rules extractor of a git revision against the working tree's, on the held-out
extraction corpus (:func:`riskml.evaluation.disputes.extraction_corpus_config`: the held-out
template variants, other seeds), clean PDFs, in one run.

    python -m benchmarks.extraction_heldout --before 921be98 --out out/bench/extraction_heldout.json

The revision's ``riskml/features/disputes/extract.py`` is loaded as a module of its own beside
the current one (``git show``), so both read the same documents, scored against the same truth.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from riskml.console import print_table, write_json
from riskml.settings import REPO_ROOT

EXTRACT = "riskml/features/disputes/extract.py"


def _extractor_at(rev: str, where: Path) -> Any:
    source = subprocess.run(
        ["git", "show", f"{rev}:{EXTRACT}"], cwd=REPO_ROOT, check=True, capture_output=True
    ).stdout
    path = where / "extract_before.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("extract_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["extract_before"] = module
    spec.loader.exec_module(module)
    return module.RulesExtractor()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from riskml.data.disputes.simulator import simulate_disputes
    from riskml.evaluation.disputes import evaluate_extraction, extraction_corpus_config
    from riskml.features.disputes.extract import RulesExtractor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the rules to compare")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = simulate_disputes(extraction_corpus_config(), Path(tmp) / "held-out")
        variants = sorted(set(corpus.documents["variant"].to_list()))
        results: dict[str, Any] = {"before_rev": args.before, "variants": variants}
        for name, extractor in (
            ("before", _extractor_at(args.before, Path(tmp))),
            ("after", RulesExtractor()),
        ):
            results[name] = evaluate_extraction(corpus, extractor, max_scanned=0)["clean"]
    print_table(
        f"held-out extraction, clean PDFs (variants {variants})",
        [
            {"rules": n, **{k: results[n][k] for k in ("documents", "precision", "recall", "f1")}}
            for n in ("before", "after")
        ],
    )
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
