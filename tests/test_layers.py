"""The import-linter contracts in pyproject.toml hold, and they would catch a reversed import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from riskml.settings import REPO_ROOT

PACKAGES = ("riskml", "serving", "components", "pipelines")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts over the packages found under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--config", "pyproject.toml"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy_tree(dst: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(REPO_ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_the_layer_and_cycle_contracts_hold(tmp_path: Path) -> None:
    out = _lint_imports(_copy_tree(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


def test_a_reversed_import_breaks_the_layers(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    io = root / "riskml" / "data" / "io.py"
    io.write_text(
        io.read_text() + "\n\ndef _reversed() -> object:\n    import serving.app\n\n"
        "    return serving.app\n"
    )
    out = _lint_imports(root)
    assert out.returncode != 0
    assert "riskml.data is not allowed to import serving" in out.stdout, out.stdout


def test_an_import_cycle_is_refused(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    schema = root / "riskml" / "data" / "schema.py"
    schema.write_text(
        schema.read_text() + "\n\ndef _cycle() -> object:\n"
        "    from riskml.data import simulator\n\n    return simulator\n"
    )
    out = _lint_imports(root)
    assert out.returncode != 0
    assert "No cycles are allowed in riskml.data" in out.stdout, out.stdout
