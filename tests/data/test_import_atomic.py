"""riskml import is atomic: written beside, verified, renamed into place; the old dataset survives
any failure (issue #21 item 4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import riskml.data.importer as importer
import riskml.data.io as dataio
from riskml.cli import app
from riskml.data.importer import import_transactions
from riskml.data.io import read_manifest, read_transactions
from riskml.data.schema import SchemaError

HEADER = "tx_id,ts,customer_id,terminal_id,amount,is_fraud\n"
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def write_csv(path: Path, ts: list[int], prefix: str = "t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{prefix}{i},{t},c{i % 3},m{i % 2},{i + 1}.5,{i % 2}\n" for i, t in enumerate(ts)]
    path.write_text(HEADER + "".join(rows))
    return path


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def old(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """An existing dataset at tmp_path/data/ds (two days) and its bytes."""
    src = write_csv(tmp_path / "src" / "old.csv", [T0, T0 + 3600, T0 + 86_400])
    out = tmp_path / "data" / "ds"
    import_transactions(src, out, importer.ImportMapping(ts_format="epoch_s"))
    return out, snapshot(out)


@pytest.fixture
def new_csv(tmp_path: Path) -> Path:
    """A good source spanning three days, different from the old dataset."""
    return write_csv(tmp_path / "src" / "new.csv", [T0 + k * 86_400 for k in range(5)], "n")


def cli_import(src: Path, out: Path, *extra: str) -> Any:
    args = ["import", str(src), "--out", str(out), "--ts-format", "epoch_s", *extra]
    return CliRunner().invoke(app, args)


def assert_failed_cleanly(result: Any, out: Path, before: dict[str, bytes], needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("riskml import: "), result.output
    assert needle in lines[0]
    assert "Traceback" not in result.output
    assert snapshot(out) == before
    assert names(out.parent) == [out.name]  # no staging / aside dirs left


# --- reproduction of the bug ------------------------------------------------------------------
def test_epoch_ms_read_as_seconds_exits_2_and_keeps_old_dataset(
    old: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    # Before the fix: old dataset deleted first, then "ValueError: year 55840 is out of range".
    out, before = old
    src = write_csv(tmp_path / "src" / "ms.csv", [T0 * 1000, (T0 + 3600) * 1000])
    result = cli_import(src, out, "--overwrite")
    assert_failed_cleanly(result, out, before, "ts <- 'ts': 2 of 2 rows outside")
    assert "'1700000000000'" in result.output and "--min-ts/--max-ts" in result.output


def test_ts_window_is_configurable(old: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    out, before = old
    src = write_csv(tmp_path / "src" / "late.csv", [T0, T0 + 7200])
    result = cli_import(src, out, "--overwrite", "--max-ts", "2023-11-14T23:00")
    assert_failed_cleanly(result, out, before, "1 of 2 rows outside")
    assert "'1700007200' (" in result.output
    result = cli_import(src, out, "--overwrite", "--min-ts", "2023-11-16")
    assert_failed_cleanly(result, out, before, "2 of 2 rows outside")
    result = cli_import(src, out, "--overwrite", "--min-ts", "yesterday")
    assert_failed_cleanly(result, out, before, "--min-ts expects an ISO date")
    result = cli_import(src, out, "--overwrite", "--min-ts", "2030-01-01", "--max-ts", "2029-01-01")
    assert_failed_cleanly(result, out, before, "empty ts window")
    result = cli_import(src, out, "--overwrite", "--min-ts", "2000-01-01", "--max-ts", "2024-01-01")
    assert result.exit_code == 0, result.output
    assert read_manifest(out)["ts_window"] == [
        "2000-01-01T00:00:00+00:00",
        "2024-01-01T00:00:00+00:00",
    ]


# --- failure injected at each step --------------------------------------------------------------
def _fail_on_call(n: int, real: Callable[..., Any], exc: Exception) -> Callable[..., Any]:
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    ("module", "name", "make", "needle"),
    [
        # while reading the source
        (
            importer,
            "read_file",
            lambda real: _fail_on_call(1, real, OSError("disk gone")),
            "disk gone",
        ),
        # while writing beside (second day file, after one was written)
        (
            dataio,
            "write_day",
            lambda real: _fail_on_call(2, real, OSError("No space left")),
            "No space left",
        ),
        (dataio, "write_manifest", lambda real: _fail_on_call(1, real, OSError("EIO")), "EIO"),
        # during verification of the written copy
        (
            dataio,
            "read_transactions",
            lambda real: lambda *a, **k: real(*a, **k).head(1),
            "written dataset failed verification: read back 1 rows, wrote 5",
        ),
        (
            dataio,
            "read_transactions",
            lambda real: _fail_on_call(1, real, SchemaError("mistyped columns: ts")),
            "failed verification: mistyped columns: ts",
        ),
        # after the first rename (old dir moved aside; moving the new one in fails -> rollback)
        (
            Path,
            "replace",
            lambda real: _fail_on_call(2, real, OSError("rename failed")),
            "rename failed",
        ),
        # a bug anywhere still ends as one line, exit 2
        (
            importer,
            "verify_dataset",
            lambda real: _fail_on_call(1, real, RuntimeError("boom")),
            "RuntimeError: boom",
        ),
    ],
    ids=["read", "write_day", "write_manifest", "verify_rows", "verify_schema", "swap", "bug"],
)
def test_failure_at_each_step_keeps_old_dataset(
    old: tuple[Path, dict[str, bytes]],
    new_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    name: str,
    make: Callable[[Callable[..., Any]], Callable[..., Any]],
    needle: str,
) -> None:
    out, before = old
    monkeypatch.setattr(module, name, make(getattr(module, name)))
    result = cli_import(new_csv, out, "--overwrite")
    assert_failed_cleanly(result, out, before, needle)


def test_failure_when_out_did_not_exist_leaves_nothing(
    tmp_path: Path, new_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "fresh" / "ds"
    monkeypatch.setattr(dataio, "write_day", _fail_on_call(2, dataio.write_day, OSError("EIO")))
    result = cli_import(new_csv, out)
    assert result.exit_code == 2 and "riskml import: EIO" in result.output
    assert names(out.parent) == []


# --- success and refusal --------------------------------------------------------------------------
def test_overwrite_replaces_dataset_and_drops_stale_summary(
    old: tuple[Path, dict[str, bytes]], new_csv: Path
) -> None:
    out, before = old
    (out / "summary.json").write_text("{}")  # what `riskml data summary` leaves behind
    result = cli_import(new_csv, out, "--overwrite")
    assert result.exit_code == 0, result.output
    df = read_transactions(out)
    assert df.height == 5 and df["tx_id"].str.starts_with("n").all()
    assert not (out / "summary.json").exists()
    assert snapshot(out) != before and read_manifest(out)["days"] == 5
    assert names(out.parent) == [out.name]


def test_existing_dataset_without_overwrite_is_refused(
    old: tuple[Path, dict[str, bytes]], new_csv: Path
) -> None:
    out, before = old
    assert_failed_cleanly(cli_import(new_csv, out), out, before, "pass --overwrite")


def test_out_with_foreign_files_is_refused_and_untouched(tmp_path: Path, new_csv: Path) -> None:
    out = tmp_path / "data" / "ds"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    for extra in ((), ("--overwrite",)):
        result = cli_import(new_csv, out, *extra)
        assert_failed_cleanly(result, out, before, "not part of a riskml dataset (notes.txt)")


def test_empty_out_dir_is_filled(tmp_path: Path, new_csv: Path) -> None:
    out = tmp_path / "data" / "ds"
    out.mkdir(parents=True)
    result = import_transactions(new_csv, out, importer.ImportMapping(ts_format="epoch_s"))
    assert result.accepted == 5 and read_transactions(out).height == 5
    assert names(out.parent) == ["ds"]


def test_default_window_accepts_now_and_rejects_far_future(tmp_path: Path) -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    ok = write_csv(tmp_path / "now.csv", [now])
    import_transactions(ok, tmp_path / "a", importer.ImportMapping(ts_format="epoch_s"))
    late = write_csv(tmp_path / "late.csv", [now + 3 * 86_400])
    with pytest.raises(importer.ImportSchemaError, match="1 of 1 rows outside"):
        import_transactions(late, tmp_path / "b", importer.ImportMapping(ts_format="epoch_s"))
    assert not (tmp_path / "b").exists()
