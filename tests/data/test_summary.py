"""riskml data summary: numbers on a hand-built dataset, JSON + PNG from the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from riskml.cli import app
from riskml.data.io import TX_DIR, write_day
from riskml.data.schema import polars_schema
from riskml.data.summary import plot_daily, summarize

UTC = dt.UTC
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, 5, day, hour, minute, tzinfo=UTC)


def hand_built() -> pl.DataFrame:
    """Six rows on 1 and 3 May (2 May empty); 3 frauds with label delays of 1, 3 and 2 days."""
    rows = [
        # tx, ts, customer, terminal, device, amount, fraud, scenario, delay days
        ("t1", _at(1, 10), "c1", "m1", "d1", 10.0, 0, "none", 0),
        ("t2", _at(1, 11), "c2", "m1", "unknown", 20.0, 1, "card_testing", 1),
        ("t3", _at(1, 12), "c1", "m2", "d2", 30.0, 0, "none", 0),
        ("t4", _at(3, 9), "c3", "m2", "d1", 40.0, 1, "fraud_ring", 3),
        ("t5", _at(3, 10), "c2", "m1", "unknown", 50.0, 1, "card_testing", 2),
        ("t6", _at(3, 23, 59), "c1", "m1", "d2", 60.0, 0, "none", 0),
    ]
    return pl.DataFrame(
        {
            "tx_id": [r[0] for r in rows],
            "ts": [r[1] for r in rows],
            "customer_id": [r[2] for r in rows],
            "terminal_id": [r[3] for r in rows],
            "device_id": [r[4] for r in rows],
            "amount": [r[5] for r in rows],
            "currency": ["USD"] * 6,
            "merchant_category": ["grocery"] * 6,
            "channel": ["pos"] * 6,
            "is_fraud": [r[6] for r in rows],
            "fraud_scenario": [r[7] for r in rows],
            "label_available_at": [r[1] + dt.timedelta(days=r[8]) for r in rows],
        },
        schema=polars_schema(),
    )


def write_dataset(root: Path, df: pl.DataFrame) -> Path:
    days = df.get_column("ts").dt.date()
    for day in sorted(set(days)):
        write_day(root, day, df.filter(days == day))
    return root


EXPECTED_DAILY = [
    {"day": "2024-05-01", "rows": 3, "fraud_rows": 1, "fraud_rate": 1 / 3},
    {"day": "2024-05-02", "rows": 0, "fraud_rows": 0, "fraud_rate": None},
    {"day": "2024-05-03", "rows": 3, "fraud_rows": 2, "fraud_rate": 2 / 3},
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "ds", hand_built())


def check_expected(s: dict) -> None:
    assert s["rows"] == 6
    assert (s["customers"], s["terminals"], s["devices"]) == (3, 2, 2)
    assert s["start"] == "2024-05-01T10:00:00+00:00"
    assert s["end"] == "2024-05-03T23:59:00+00:00"
    assert s["days"] == 3
    assert s["fraud_rows"] == 3 and s["fraud_rate"] == pytest.approx(0.5)
    assert s["amount_total"] == pytest.approx(210.0)
    assert s["fraud_amount"] == pytest.approx(110.0)
    assert s["scenarios"] == [
        {
            "scenario": "card_testing",
            "rows": 2,
            "rate": pytest.approx(2 / 6),
            "share_of_fraud": pytest.approx(2 / 3),
        },
        {
            "scenario": "fraud_ring",
            "rows": 1,
            "rate": pytest.approx(1 / 6),
            "share_of_fraud": pytest.approx(1 / 3),
        },
    ]
    assert [d["day"] for d in s["daily"]] == [d["day"] for d in EXPECTED_DAILY]
    for got, want in zip(s["daily"], EXPECTED_DAILY, strict=True):
        rate = want["fraud_rate"]
        assert got == {**want, "fraud_rate": None if rate is None else pytest.approx(rate)}
    delay = s["label_delay_days"]
    assert delay["fraud_rows"] == 3
    assert delay["median"] == pytest.approx(2.0)
    assert delay["p90"] == pytest.approx(2.8)  # linear between 2 and 3 days
    assert (delay["mean"], delay["min"], delay["max"]) == pytest.approx((2.0, 1.0, 3.0))


def test_summarize_hand_built_dataset(dataset: Path) -> None:
    check_expected(summarize(dataset))


def test_summarize_accepts_transactions_dir_and_single_file(dataset: Path) -> None:
    check_expected(summarize(dataset / TX_DIR))
    one_day = summarize(dataset / TX_DIR / "2024-05-03.parquet")
    assert (one_day["rows"], one_day["fraud_rows"], one_day["days"]) == (3, 2, 1)
    assert one_day["label_delay_days"]["median"] == pytest.approx(2.5)


def test_summarize_without_fraud_has_no_rates_to_invent(tmp_path: Path) -> None:
    legit = hand_built().with_columns(
        is_fraud=pl.lit(0, pl.Int8), fraud_scenario=pl.lit("none"), label_available_at="ts"
    )
    s = summarize(write_dataset(tmp_path / "legit", legit))
    assert s["fraud_rows"] == 0 and s["fraud_rate"] == 0.0 and s["scenarios"] == []
    assert s["label_delay_days"] == {
        "fraud_rows": 0,
        "median": None,
        "p90": None,
        "mean": None,
        "min": None,
        "max": None,
    }
    png = plot_daily(s, tmp_path / "legit.png")
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_cli_summary_writes_json_and_png(dataset: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "report"
    result = CliRunner().invoke(app, ["data", "summary", str(dataset), "--out-dir", str(out_dir)])
    assert result.exit_code == 0, result.output
    assert "fraud by scenario" in result.output and "card_testing" in result.output
    check_expected(json.loads((out_dir / "summary.json").read_text()))
    png = (out_dir / "daily.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    from matplotlib.image import imread

    pixels = imread(out_dir / "daily.png")
    assert pixels.shape[:2] == (450, 1000)
    assert pixels.std() > 0.05  # a chart, not a blank canvas


def test_cli_summary_defaults_to_dataset_dir(dataset: Path) -> None:
    result = CliRunner().invoke(app, ["data", "summary", str(dataset)])
    assert result.exit_code == 0, result.output
    assert (dataset / "summary.json").is_file() and (dataset / "daily.png").is_file()
    check_expected(json.loads((dataset / "summary.json").read_text()))


def test_cli_summary_bad_path_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "summary", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no transactions dataset" in result.output
    (tmp_path / "junk").mkdir()
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "junk" / "x.parquet")
    result = CliRunner().invoke(app, ["data", "summary", str(tmp_path / "junk")])
    assert result.exit_code == 2
    assert "not a riskml transactions dataset" in result.output


def test_import_then_summary(tmp_path: Path) -> None:
    src = tmp_path / "ext.csv"
    hand_built().drop("label_available_at").write_csv(src)
    runner = CliRunner()
    ok = runner.invoke(
        app, ["import", str(src), "--out", str(tmp_path / "ds"), "--label-delay-days", "4"]
    )
    assert ok.exit_code == 0, ok.output
    result = runner.invoke(app, ["data", "summary", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert s["rows"] == 6 and s["fraud_rows"] == 3
    assert s["label_delay_days"]["median"] == pytest.approx(4.0)
