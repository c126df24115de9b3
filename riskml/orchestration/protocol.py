"""The contract between :func:`riskml.orchestration.ray_task.run_ray_task` and an entrypoint.

An *entrypoint* is a module-level function ``run(spec: dict) -> dict`` (or any other name, given
as ``"package.module:function"``). ``spec`` and the returned dict are JSON documents: they cross
process and machine boundaries in the ``jobs`` and ``rayjob`` modes.

**Results travel in the job's log.** In the ``jobs`` and ``rayjob`` modes the launcher
(:mod:`riskml.orchestration.launch`) prints the returned dict as one line
``RISKML_RESULT {"...": ...}`` as the last thing it does; the caller reads the job's log (Ray Jobs
API, or the RayJob submitter pod's log) and takes the *last* such line. Results are therefore
small: metrics, paths/URIs of artifacts the entrypoint wrote to shared storage, run ids. Large
artifacts never go through the log.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

#: Prefix of the result line an entrypoint's launcher prints last.
RESULT_MARKER = "RISKML_RESULT "
#: Function called when an entrypoint is given as a bare module name.
DEFAULT_FUNCTION = "run"

_ENTRYPOINT_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


class EntrypointError(ValueError):
    """An entrypoint name, spec or result breaks the contract above."""


def split_entrypoint(entrypoint: str) -> tuple[str, str]:
    """``"pkg.mod:fn"`` -> ``("pkg.mod", "fn")``; ``"pkg.mod"`` -> ``("pkg.mod", "run")``."""
    if not isinstance(entrypoint, str) or not _ENTRYPOINT_RE.match(entrypoint):
        raise EntrypointError(
            f"bad entrypoint {entrypoint!r}: expected a dotted module name, optionally "
            f"followed by ':function' (e.g. 'riskml.training.entrypoint:run')"
        )
    module, _, function = entrypoint.partition(":")
    return module, function or DEFAULT_FUNCTION


def resolve_entrypoint(entrypoint: str) -> Callable[[dict[str, Any]], Any]:
    """Import the module and return the entrypoint function (clear errors when missing)."""
    module_name, function = split_entrypoint(entrypoint)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise EntrypointError(f"entrypoint module {module_name!r} not found ({exc})") from exc
    fn = getattr(module, function, None)
    if not callable(fn):
        raise EntrypointError(f"module {module_name!r} has no function {function!r}")
    return fn


def dump_spec(spec: Mapping[str, Any]) -> str:
    """The spec as compact JSON; a spec that is not a JSON object raises EntrypointError."""
    if not isinstance(spec, Mapping):
        raise EntrypointError(f"spec must be a mapping, got {type(spec).__name__}")
    try:
        return json.dumps(dict(spec), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EntrypointError(f"spec is not JSON-serialisable: {exc}") from exc


def load_spec(text: str) -> dict[str, Any]:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EntrypointError(f"spec is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise EntrypointError(f"spec must be a JSON object, got {type(spec).__name__}")
    return spec


def normalize_result(result: Any) -> dict[str, Any]:
    """Round-trip a result through JSON so every mode returns the same types."""
    if result is None:
        return {}
    if not isinstance(result, Mapping):
        raise EntrypointError(
            f"an entrypoint must return a dict (JSON object), got {type(result).__name__}"
        )
    try:
        return dict(json.loads(json.dumps(dict(result), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise EntrypointError(f"entrypoint result is not JSON-serialisable: {exc}") from exc


def format_result_line(result: Mapping[str, Any]) -> str:
    return RESULT_MARKER + json.dumps(normalize_result(result), separators=(",", ":"))


def parse_result(log_text: str) -> dict[str, Any] | None:
    """The last ``RISKML_RESULT {...}`` line in a log (anywhere in the line), or None."""
    for line in reversed(log_text.splitlines()):
        pos = line.find(RESULT_MARKER)
        if pos < 0:
            continue
        payload = line[pos + len(RESULT_MARKER) :].strip()
        try:
            value = json.loads(payload)
        except json.JSONDecodeError:
            continue  # a line that merely mentions the marker
        if isinstance(value, dict):
            return value
    return None
