"""Prequential backtest: window / label cut-off logic and the ``riskml backtest`` CLI end to end."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from riskml.evaluation.backtest import (
    BacktestConfig,
    BacktestError,
    fold_windows,
    known_card_mask,
    labels_as_of,
    run_backtest,
)

UTC = dt.UTC
US = 1_000_000


def _us(value: dt.datetime) -> int:
    return int(value.timestamp() * US)


# -- pure logic -------------------------------------------------------------------------------
def test_fold_windows_step_through_time_with_gap_and_train_window() -> None:
    cfg = BacktestConfig(
        test_start=dt.date(2024, 2, 5), folds=3, step_days=7, test_days=5, delay_days=7,
        train_days=10,
    )  # fmt: skip
    folds = fold_windows(cfg)
    assert [f.index for f in folds] == [0, 1, 2]
    f0, f2 = folds[0], folds[2]
    assert f0.test_start == dt.datetime(2024, 2, 5, tzinfo=UTC)
    assert f0.test_end == dt.datetime(2024, 2, 10, tzinfo=UTC)
    assert f0.train_end == dt.datetime(2024, 1, 29, tzinfo=UTC)  # gap of 7 days
    assert f0.train_start == dt.datetime(2024, 1, 19, tzinfo=UTC)  # 10 training days
    assert f0.label_cutoff == f0.test_start  # labels known by the end of the gap
    assert f2.test_start == dt.datetime(2024, 2, 19, tzinfo=UTC)
    assert f2.train_end == dt.datetime(2024, 2, 12, tzinfo=UTC)
    # default: all history
    all_hist = fold_windows(cfg.model_copy(update={"train_days": None}))
    assert all(f.train_start is None for f in all_hist)


def test_label_available_one_second_too_late_is_not_used() -> None:
    cutoff = dt.datetime(2024, 2, 5, tzinfo=UTC)
    is_fraud = np.array([1, 1, 1, 0])
    label = np.array(
        [
            _us(cutoff - dt.timedelta(days=1)),
            _us(cutoff),  # exactly at the cut-off: known
            _us(cutoff + dt.timedelta(seconds=1)),  # one second late: genuine for training
            _us(cutoff - dt.timedelta(days=3)),
        ]
    )
    assert labels_as_of(is_fraud, label, cutoff).tolist() == [1, 1, 0, 0]


def test_known_cards_are_those_with_a_fraud_label_before_the_test_day() -> None:
    day = dt.datetime(2024, 2, 6, tzinfo=UTC)
    hist_cards = np.array(["a", "b", "c", "d"])
    hist_fraud = np.array([1, 1, 0, 1])
    hist_label = np.array(
        [
            _us(day),  # a: label at 00:00 of the test day -> known that day
            _us(day + dt.timedelta(seconds=1)),  # b: known only from the next day
            _us(day - dt.timedelta(days=5)),  # c: genuine, never known
            _us(day - dt.timedelta(days=2)),  # d: known
        ]
    )
    rows = np.array(["a", "b", "b", "c", "d", "e"])
    ts = np.array(
        [
            _us(day + dt.timedelta(hours=3)),
            _us(day + dt.timedelta(hours=3)),
            _us(day + dt.timedelta(days=1, hours=1)),
            _us(day + dt.timedelta(hours=3)),
            _us(day + dt.timedelta(hours=3)),
            _us(day + dt.timedelta(hours=3)),
        ]
    )
    mask = known_card_mask(rows, ts, hist_cards, hist_fraud, hist_label)
    assert mask.tolist() == [True, False, True, False, True, False]


def test_config_rejects_bad_input_and_expands_baselines() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        BacktestConfig(test_start=dt.date(2024, 1, 1), models=("xgboost", "xgboost"))
    with pytest.raises(ValueError):
        BacktestConfig(test_start=dt.date(2024, 1, 1), folds=0)
    cfg = BacktestConfig(test_start=dt.date(2024, 1, 1), models=("ensemble", "baselines"))
    assert cfg.model_names() == ["ensemble", "logreg", "xgboost_default"]
    assert cfg.trained_models() == ["xgboost", "sequence"]
    assert (
        BacktestConfig(test_start=dt.date(2024, 1, 1), models=("baselines",)).trained_models() == []
    )


# -- end to end ---------------------------------------------------------------------------------
ARGS = [
    "--test-start", "2024-01-21", "--folds", "2", "--step-days", "4", "--test-days", "4",
    "--delay-days", "3", "--k", "20", "--sequence-epochs", "1",
]  # fmt: skip


@pytest.mark.slow
def test_cli_end_to_end_report_html_and_plots(tiny_dataset: Path, tmp_path: Path) -> None:
    from riskml.cli import app

    out = tmp_path / "rep" / "REPORT.json"
    res = CliRunner().invoke(
        app, ["backtest", "--transactions", str(tiny_dataset), *ARGS, "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"xgboost", "sequence", "ensemble", "logreg", "xgboost_default"}
    for m in report["models"].values():
        assert len(m["folds"]) == 2
        for f in m["folds"]:
            assert {"test_start", "auc", "ap", "cp_at_k"} <= set(f)
            assert 0.0 <= f["ap"] <= 1.0 and 0.0 <= f["auc"] <= 1.0
        assert {"auc", "ap", "cp_at_k"} <= set(m["mean"]) and {"auc", "ap", "cp_at_k"} <= set(
            m["std"]
        )
    folds = report["folds"]
    assert folds[0]["label_cutoff"].startswith("2024-01-21")
    assert folds[1]["test_start"].startswith("2024-01-25")
    assert folds[1]["train_end"].startswith("2024-01-22")  # 3-day gap
    # delayed labels: training knows at most the true frauds, and fewer on fold 0's recent days
    assert all(f["train_frauds_known"] <= f["train_frauds_true"] for f in folds)
    assert any(f["train_frauds_known"] < f["train_frauds_true"] for f in folds)
    for i, f in enumerate(folds):
        assert 0.0 < f["cp_at_k_ceiling"] <= 1.0
        assert all(
            m["folds"][i]["cp_at_k"] <= f["cp_at_k_ceiling"] for m in report["models"].values()
        )
    assert {(r["fold"], r["model"]) for r in report["calibration"]} == {
        (f, m) for f in range(2) for m in ("xgboost", "sequence")
    }
    assert "ablations" not in report  # off by default
    assert report["config"]["known_cards_window"] == "train"
    assert sum(report["scenarios"]["frauds"].values()) == sum(f["test_frauds"] for f in folds)
    html = out.with_suffix(".html")
    page = html.read_text()
    assert "Prequential backtest" in page and "Raw vs calibrated scores" in page
    assert "Recall per fraud scenario" in page and "Feature-group ablations" not in page
    for plot in ("pr_curves", "calibration", "cp_at_k_per_day"):
        png = out.parent / f"REPORT_{plot}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "backtest mean" in res.output and "perfect (ceiling)" in res.output


@pytest.mark.slow
def test_external_csv_without_optional_columns_via_mapping(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    import polars as pl

    from riskml.cli import app
    from riskml.data.io import read_transactions

    tx = read_transactions(tiny_dataset)
    csv = tmp_path / "ext.csv"
    tx.select(
        pl.col("tx_id").alias("id"),
        pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").alias("when"),
        pl.col("customer_id").alias("card"),
        pl.col("terminal_id").alias("merchant"),
        pl.col("amount").alias("amt"),
        pl.col("is_fraud").alias("fraud"),
    ).write_csv(csv)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "columns:\n  tx_id: id\n  ts: when\n  customer_id: card\n  terminal_id: merchant\n"
        "  amount: amt\n  is_fraud: fraud\n"
    )
    out = tmp_path / "ext" / "REPORT.json"
    res = CliRunner().invoke(
        app,
        [
            "backtest", "--transactions", str(csv), "--mapping", str(mapping),
            "--label-delay-days", "2", *ARGS, "--models", "xgboost,baselines",
            "--exclude-known-cards", "--out", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"xgboost", "logreg", "xgboost_default"}
    assert report["data"]["rows"] == tx.height
    assert all(f["excluded_known_card_rows"] > 0 for f in report["folds"][1:])
    # no --train-days: the default 'train' window is the whole history, as 'all'
    assert report["config"]["known_cards_window"] == "train"
    # no scenario column: every fraud is 'unlabelled'
    test_frauds = sum(f["test_frauds"] for f in report["folds"])
    assert report["scenarios"]["frauds"] == {"unlabelled": test_frauds}
    assert report["models"]["xgboost"]["mean"]["auc"] > 0.6


def test_cli_rejects_windows_outside_the_data_and_bad_models(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    from riskml.cli import app

    out = tmp_path / "REPORT.json"
    base = ["backtest", "--transactions", str(tiny_dataset), "--folds", "2", "--step-days", "7",
            "--test-days", "7", "--delay-days", "7", "--k", "10", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, [*base, "--test-start", "2025-06-01"])
    assert res.exit_code == 2 and "data ends" in res.output
    res = CliRunner().invoke(app, [*base, "--test-start", "2024-01-03"])
    assert res.exit_code == 2 and "no training data" in res.output
    res = CliRunner().invoke(app, [*base, "--test-start", "2024-01-23", "--models", "gbm"])
    assert res.exit_code != 0 and "unknown model" in res.output
    res = CliRunner().invoke(app, [*base, "--test-start", "23/01/2024"])
    assert res.exit_code != 0 and "YYYY-MM-DD" in res.output
    assert not out.exists()


def test_run_backtest_rejects_empty_input() -> None:
    import polars as pl

    from riskml.data.schema import polars_schema

    with pytest.raises(BacktestError, match="no transactions"):
        run_backtest(
            pl.DataFrame(schema=polars_schema()), BacktestConfig(test_start=dt.date(2024, 1, 1))
        )
