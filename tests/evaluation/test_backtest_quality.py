"""Backtest model-quality reporting: the known-cards window, the CP@k ceiling, raw vs calibrated
scores, feature-group ablations and the recall per fraud scenario."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from riskml.evaluation.backtest import (
    PERFECT,
    TOP_DISTINCT,
    UNLABELLED,
    BacktestConfig,
    BacktestResult,
    ablation_name,
    alerted_rows,
    cp_at_k_ceiling,
    fold_windows,
    fraud_scenarios,
    known_card_mask,
    known_cards_window_args,
    parse_known_cards_window,
    scenario_recall,
)
from riskml.metrics import card_precision_at_k

UTC = dt.UTC
US = 1_000_000
DAY = dt.timedelta(days=1)


def _us(value: dt.datetime) -> int:
    return int(value.timestamp() * US)


# -- the known-cards window -----------------------------------------------------------------------
#: Test day D, the fold's training start, and a 3-day window (D - 3 days = 02-07 00:00).
D = dt.datetime(2024, 2, 10, tzinfo=UTC)
TRAIN_START = dt.datetime(2024, 2, 1, tzinfo=UTC)
#: card -> (is_fraud, transaction time, label available at)
HISTORY: dict[str, tuple[int, dt.datetime, dt.datetime]] = {
    "old": (1, dt.datetime(2024, 1, 20, tzinfo=UTC), dt.datetime(2024, 1, 25, tzinfo=UTC)),
    "in_train": (1, dt.datetime(2024, 2, 3, tzinfo=UTC), dt.datetime(2024, 2, 5, tzinfo=UTC)),
    "recent": (1, dt.datetime(2024, 2, 8, 12, tzinfo=UTC), dt.datetime(2024, 2, 9, tzinfo=UTC)),
    "at_window_start": (1, D - 3 * DAY, dt.datetime(2024, 2, 8, tzinfo=UTC)),
    "at_train_start": (1, TRAIN_START, dt.datetime(2024, 2, 2, tzinfo=UTC)),
    "label_1s_late": (1, dt.datetime(2024, 2, 8, tzinfo=UTC), D + dt.timedelta(seconds=1)),
    "label_at_midnight": (1, dt.datetime(2024, 2, 9, tzinfo=UTC), D),
    "genuine": (0, dt.datetime(2024, 2, 8, tzinfo=UTC), dt.datetime(2024, 2, 8, tzinfo=UTC)),
    # an old fraud whose label came late: the label is recent, the transaction is not
    "old_late_label": (1, dt.datetime(2024, 1, 25, tzinfo=UTC), D - DAY),
}
#: test rows: (card, time) -> expected mask for all / train / 3 days
ROWS: list[tuple[str, dt.datetime, tuple[bool, bool, bool]]] = [
    ("old", D + 3 * dt.timedelta(hours=1), (True, False, False)),
    ("in_train", D + dt.timedelta(hours=3), (True, True, False)),
    ("recent", D + dt.timedelta(hours=3), (True, True, True)),
    ("at_window_start", D + dt.timedelta(hours=3), (True, True, True)),  # ts = D - 3 days
    ("at_train_start", D + dt.timedelta(hours=3), (True, True, False)),  # ts = train start
    ("label_1s_late", D + dt.timedelta(hours=23), (False, False, False)),
    ("label_1s_late", D + DAY + dt.timedelta(hours=1), (True, True, True)),  # known next day
    ("label_at_midnight", D, (True, True, True)),  # label at 00:00 of the day: known
    ("genuine", D + dt.timedelta(hours=3), (False, False, False)),
    ("no_history", D + dt.timedelta(hours=3), (False, False, False)),
    ("old_late_label", D + dt.timedelta(hours=3), (True, False, False)),
    ("recent", D + 3 * DAY + dt.timedelta(hours=1), (True, True, False)),  # 02-13: too old
]


def _history() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cards = np.array(list(HISTORY), dtype=object)
    fraud = np.array([v[0] for v in HISTORY.values()], dtype=np.int8)
    ts = np.array([_us(v[1]) for v in HISTORY.values()], dtype=np.int64)
    label = np.array([_us(v[2]) for v in HISTORY.values()], dtype=np.int64)
    return cards, fraud, ts, label


def test_known_cards_window_all_train_and_days_give_the_documented_masks() -> None:
    cards, fraud, ts, label = _history()
    row_cards = np.array([r[0] for r in ROWS], dtype=object)
    row_ts = np.array([_us(r[1]) for r in ROWS], dtype=np.int64)
    expected = np.array([r[2] for r in ROWS])

    def mask(**kw: Any) -> list[bool]:
        out = known_card_mask(row_cards, row_ts, cards, fraud, label, hist_ts_us=ts, **kw)
        assert out.dtype == bool and out.shape == (len(ROWS),)
        return out.tolist()

    assert mask() == expected[:, 0].tolist()
    assert mask(since_us=_us(TRAIN_START)) == expected[:, 1].tolist()
    assert mask(window_days=3) == expected[:, 2].tolist()
    # without a training start (no --train-days) 'train' is 'all'
    assert mask(since_us=None) == expected[:, 0].tolist()
    # the history's transaction times are only needed for the windows
    assert known_card_mask(row_cards, row_ts, cards, fraud, label).tolist() == mask()
    with pytest.raises(ValueError, match="hist_ts_us"):
        known_card_mask(row_cards, row_ts, cards, fraud, label, window_days=3)


def test_known_cards_window_args_follow_the_fold() -> None:
    cfg = BacktestConfig(
        test_start=dt.date(2024, 2, 10), folds=2, train_days=14, exclude_known_cards=True
    )
    assert cfg.known_cards_window == "train"  # the default
    f0, f1 = fold_windows(cfg)
    assert f0.train_start is not None and f1.train_start is not None
    assert known_cards_window_args(cfg, f0) == {"since_us": _us(f0.train_start)}
    assert known_cards_window_args(cfg, f1) == {"since_us": _us(f1.train_start)}
    assert f1.train_start > f0.train_start
    no_train_days = cfg.model_copy(update={"train_days": None})
    assert known_cards_window_args(no_train_days, fold_windows(no_train_days)[0]) == {
        "since_us": None
    }
    all_cfg = cfg.model_copy(update={"known_cards_window": "all"})
    assert known_cards_window_args(all_cfg, f0) == {}
    days_cfg = cfg.model_copy(update={"known_cards_window": 30})
    assert known_cards_window_args(days_cfg, f0) == {"window_days": 30}


def test_known_card_mask_matches_a_loop_over_the_history() -> None:
    rng = np.random.default_rng(11)
    day0 = _us(dt.datetime(2024, 1, 1, tzinfo=UTC))
    n_hist, n_rows = 3000, 2000
    hist_cards = rng.integers(0, 300, n_hist).astype(str)
    hist_ts = day0 + rng.integers(0, 40 * 86_400 * US, n_hist)
    hist_fraud = (rng.random(n_hist) < 0.05).astype(np.int8)
    delay = np.where(hist_fraud == 1, rng.integers(0, 12 * 86_400 * US, n_hist), 0)
    hist_label = hist_ts + delay
    rows = rng.integers(0, 320, n_rows).astype(str)
    row_ts = day0 + rng.integers(20 * 86_400 * US, 50 * 86_400 * US, n_rows)
    since = day0 + 10 * 86_400 * US

    def loop(lower: Any) -> list[bool]:
        out = []
        for card, t in zip(rows, row_ts, strict=True):
            d = (t // (86_400 * US)) * 86_400 * US
            lo = lower(d)
            out.append(
                any(
                    hist_fraud[i] == 1 and hist_label[i] <= d and hist_ts[i] >= lo
                    for i in np.flatnonzero(hist_cards == card)
                )
            )
        return out

    args = (rows, row_ts, hist_cards, hist_fraud, hist_label)
    got_all = known_card_mask(*args, hist_ts_us=hist_ts).tolist()
    assert got_all == loop(lambda d: -(2**62))
    assert 0 < sum(got_all) < n_rows
    assert known_card_mask(*args, hist_ts_us=hist_ts, since_us=since).tolist() == loop(
        lambda d: since
    )
    assert known_card_mask(*args, hist_ts_us=hist_ts, window_days=5).tolist() == loop(
        lambda d: d - 5 * 86_400 * US
    )


def test_known_cards_window_values() -> None:
    assert parse_known_cards_window("all") == "all"
    assert parse_known_cards_window(" Train ") == "train"
    assert parse_known_cards_window("14") == 14
    for bad in ("0", "-3", "weekly", "1.5", ""):
        with pytest.raises(ValueError, match="'all', 'train' or a number of days"):
            parse_known_cards_window(bad)
    assert (
        BacktestConfig(test_start=dt.date(2024, 1, 1), known_cards_window=7).model_dump(
            mode="json"
        )["known_cards_window"]
        == 7
    )
    with pytest.raises(ValueError):
        BacktestConfig(test_start=dt.date(2024, 1, 1), known_cards_window=0)
    with pytest.raises(ValueError):
        BacktestConfig(test_start=dt.date(2024, 1, 1), known_cards_window="some")


def test_cli_rejects_a_bad_known_cards_window_with_exit_2(tmp_path: Path) -> None:
    from riskml.cli import app

    out = tmp_path / "REPORT.json"
    base = ["backtest", "--transactions", str(tmp_path / "none"), "--test-start", "2024-01-21",
            "--folds", "1", "--step-days", "4", "--test-days", "4", "--delay-days", "3",
            "--k", "20", "--exclude-known-cards", "--out", str(out)]  # fmt: skip
    for bad in ("weekly", "0", "-2"):
        res = CliRunner().invoke(app, [*base, "--known-cards-window", bad])
        assert res.exit_code == 2, res.output
        message = " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split())  # rich's error box
        expected = "expected 'all', 'train' or a number of days >= 1"
        assert f"Invalid value for --known-cards-window: {expected}, got '{bad}'" in message
    assert not out.exists()


# -- the ceiling, the alert set, scenarios (pure) ----------------------------------------------
def _scored_window(seed: int = 5, n: int = 3000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.02).astype(np.int8)
    return {
        "y": y,
        "score": np.clip(0.05 + 0.3 * y + rng.normal(0, 0.15, n), 0, 1),
        "card": rng.integers(0, 400, n).astype(str),
        "day": (np.datetime64("2024-02-05") + rng.integers(0, 6, n)).astype("datetime64[D]"),
    }


@pytest.mark.parametrize("k", [5, 20, 200])
def test_alert_set_is_the_one_card_precision_counts(k: int) -> None:
    w = _scored_window()
    flagged, per_day = alerted_rows(w["y"], w["score"], w["card"], w["day"], k)
    assert np.mean(per_day) == pytest.approx(
        card_precision_at_k(w["y"], w["score"], w["card"], w["day"], k)
    )
    # a card's rows of one day are flagged together, and at most k new cards a day
    for d in np.unique(w["day"]):
        rows = w["day"] == d
        for c in np.unique(w["card"][rows]):
            assert len(set(flagged[rows & (w["card"] == c)].tolist())) == 1
    perfect, _ = alerted_rows(w["y"], w["y"].astype(float), w["card"], w["day"], k)
    fraud_cards_per_day = max(
        len(np.unique(w["card"][(w["day"] == d) & (w["y"] == 1)])) for d in np.unique(w["day"])
    )
    if fraud_cards_per_day <= k:  # a perfect ranking catches every fraud row
        assert perfect[w["y"] == 1].all()


def test_ceiling_is_cp_at_k_of_the_labels_and_bounds_the_models() -> None:
    w = _scored_window()
    k = 20
    ceiling = cp_at_k_ceiling(w["y"], w["card"], w["day"], k)
    assert ceiling == card_precision_at_k(w["y"], w["y"].astype(float), w["card"], w["day"], k)
    rng = np.random.default_rng(2)
    for score in (w["score"], rng.random(len(w["y"])), 1 - w["score"]):
        assert card_precision_at_k(w["y"], score, w["card"], w["day"], k) <= ceiling


def test_scenarios_of_fraud_rows_and_their_recall() -> None:
    import polars as pl

    frame = pl.DataFrame(
        {
            "is_fraud": [1, 1, 1, 1, 1, 0, 1, 0],
            "fraud_scenario": [
                "card_testing",
                None,
                "none",
                "unknown",
                " ",
                "none",
                "card_testing",
                "card_testing",
            ],
        }
    )
    scen = fraud_scenarios(frame)
    fraud_rows = ["card_testing", UNLABELLED, UNLABELLED, UNLABELLED, UNLABELLED]
    assert scen.tolist() == [*fraud_rows, "none", "card_testing", "none"]
    no_column = fraud_scenarios(frame.drop("fraud_scenario"))
    assert set(no_column[frame["is_fraud"].to_numpy() == 1].tolist()) == {UNLABELLED}
    y = frame["is_fraud"].to_numpy()
    flagged = np.array([True, False, True, False, False, True, False, True])
    got = scenario_recall(y, flagged, scen)
    assert got == {
        "card_testing": {"frauds": 2, "caught": 1, "recall": 0.5},
        UNLABELLED: {"frauds": 4, "caught": 1, "recall": 0.25},
    }
    assert sum(v["frauds"] for v in got.values()) == y.sum()


# -- end to end on simulated data ---------------------------------------------------------------
@pytest.fixture(scope="module")
def ablated_run(tiny_dataset: Path) -> tuple[BacktestResult, list[tuple[str, ...]]]:
    """Two folds of xgboost with ablations and a 7-day known-cards window (the baselines
    would double the time); the tabular columns of every ablation's fit are recorded, and
    every fit uses 64 histogram bins and at most 25 rounds to keep the test short."""
    import riskml.training.pipeline as pipeline
    from riskml.data.io import read_transactions
    from riskml.evaluation.backtest import run_backtest

    specs: list[tuple[str, ...]] = []
    real = pipeline.fit_models

    def spy(frame: Any, spec: Any, config: Any, **kw: Any) -> Any:
        if tuple(config.models) == ("xgb",) and not spec.sequence:  # an ablation
            specs.append(tuple(spec.tabular))
        # fewer bins and rounds: the same fits, several times faster on a busy 2-core machine
        small = config.xgb.model_copy(update={"max_bin": 64, "num_boost_round": 25})
        config = config.model_copy(update={"xgb": small})
        return real(frame, spec, config, **kw)

    config = BacktestConfig(
        test_start=dt.date(2024, 1, 21), folds=2, step_days=4, test_days=4, delay_days=3,
        k=20, models=("xgboost",), exclude_known_cards=True, known_cards_window=7,
        ablations=True,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "fit_models", spy)
        result = run_backtest(read_transactions(tiny_dataset), config)
    return result, specs


def _fold_rows(result: BacktestResult, model: str, fold: dict[str, Any]) -> dict[str, np.ndarray]:
    """The pooled arrays of one model restricted to one fold's test days."""
    p = result.pooled[model]
    lo = np.datetime64(fold["test_start"][:10], "D")
    hi = np.datetime64(fold["test_end"][:10], "D")
    rows = (p["day"] >= lo) & (p["day"] < hi)
    return {key: v[rows] for key, v in p.items()}


def test_ceiling_per_fold_equals_cp_of_the_labels_and_bounds_every_model(
    ablated_run: tuple[BacktestResult, list[tuple[str, ...]]],
) -> None:
    result, _ = ablated_run
    report = result.report
    k = report["config"]["k"]
    assert report["config"]["known_cards_window"] == 7
    assert sum(f["excluded_known_card_rows"] for f in report["folds"]) > 0
    for i, fold in enumerate(report["folds"]):
        w = _fold_rows(result, "xgboost", fold)
        assert len(w["y"]) == fold["test_rows"]
        ceiling = card_precision_at_k(w["y"], w["y"].astype(float), w["card"], w["day"], k)
        assert fold["cp_at_k_ceiling"] == pytest.approx(ceiling)
        assert fold["max_fraud_cards_per_day"] <= k  # the ceiling is then a true bound
        for model, m in report["models"].items():
            assert m["folds"][i]["cp_at_k"] <= fold["cp_at_k_ceiling"] + 1e-12, model
        for r in (r for r in report["ablations"]["folds"] if r["fold"] == i):
            assert r["cp_at_k"] <= fold["cp_at_k_ceiling"] + 1e-12
    ceilings = [f["cp_at_k_ceiling"] for f in report["folds"]]
    assert report["cp_at_k_ceiling"]["mean"] == pytest.approx(np.mean(ceilings))


def test_ablations_one_entry_per_group_and_fold_and_the_group_is_removed(
    ablated_run: tuple[BacktestResult, list[tuple[str, ...]]],
) -> None:
    from riskml.evaluation.backtest import model_spec
    from riskml.features.definitions import feature_groups

    result, specs = ablated_run
    ab = result.report["ablations"]
    full = tuple(model_spec().tabular)
    groups = {g: cols for g, cols in feature_groups().items() if set(cols) & set(full)}
    assert set(ab["groups"]) == set(groups)
    entries = {(r["fold"], r["group"]) for r in ab["folds"]}
    assert entries == {(f, g) for f in range(2) for g in groups}
    assert len(ab["folds"]) == len(entries)
    # one xgboost-only fit per group per fold, each without exactly its group's columns
    assert len(specs) == 2 * len(groups)
    for fold in range(2):
        fits = specs[fold * len(groups) : (fold + 1) * len(groups)]
        for group, used in zip(groups, fits, strict=True):
            assert not set(used) & set(groups[group]), group
            assert used == tuple(c for c in full if c not in groups[group])
    for r in ab["folds"]:
        assert r["removed"] == [c for c in full if c in groups[r["group"]]]
        assert r["features_kept"] == len(full) - len(r["removed"])
        ref = result.report["models"]["xgboost"]["folds"][r["fold"]]["ap"]
        assert r["ap_drop"] == pytest.approx(ref - r["ap"])
        assert 0.0 <= r["ap"] <= 1.0
    assert ab["reference_ap"]["folds"] == pytest.approx(
        [f["ap"] for f in result.report["models"]["xgboost"]["folds"]]
    )
    for group, mean in ab["mean"].items():
        drops = [r["ap_drop"] for r in ab["folds"] if r["group"] == group]
        assert mean["ap_drop"] == pytest.approx(np.mean(drops))


def test_scenario_recall_for_every_model_and_ablation_adds_up(
    ablated_run: tuple[BacktestResult, list[tuple[str, ...]]],
) -> None:
    from riskml.data.schema import FRAUD_SCENARIOS

    result, _ = ablated_run
    report = result.report
    scen = report["scenarios"]
    expected_models = {
        *report["models"],
        PERFECT,
        *map(ablation_name, report["ablations"]["groups"]),
    }
    assert set(scen["recall"]) == expected_models
    test_frauds = sum(f["test_frauds"] for f in report["folds"])
    assert sum(scen["frauds"].values()) == test_frauds
    assert set(scen["frauds"]) <= set(FRAUD_SCENARIOS)
    for model, by_scenario in scen["recall"].items():
        assert set(by_scenario) == set(scen["frauds"]), model
        assert all(0.0 <= v <= 1.0 for v in by_scenario.values()), model
    for i, fold in enumerate(report["folds"]):
        for model in expected_models:
            rows = [r for r in scen["folds"] if r["fold"] == i and r["model"] == model]
            assert sum(r["frauds"] for r in rows) == fold["test_frauds"]
            assert all(0 <= r["caught"] <= r["frauds"] for r in rows)
    # the perfect ranking catches every fraud row when no day has more than k fraud cards
    assert all(v == 1.0 for v in scen["recall"][PERFECT].values())
    # consistent with CP@k: a model whose rows are caught made its day's top k
    w = _fold_rows(result, "xgboost", report["folds"][0])
    flagged, per_day = alerted_rows(w["y"], w["score"], w["card"], w["day"], report["config"]["k"])
    assert np.mean(per_day) == pytest.approx(report["models"]["xgboost"]["folds"][0]["cp_at_k"])
    caught0 = sum(r["caught"] for r in scen["folds"] if r["fold"] == 0 and r["model"] == "xgboost")
    assert caught0 == int(flagged[w["y"] == 1].sum())


def test_raw_vs_calibrated_table_and_the_html_report(
    ablated_run: tuple[BacktestResult, list[tuple[str, ...]]], tmp_path: Path
) -> None:
    from riskml.evaluation.report import write_report

    result, _ = ablated_run
    report = result.report
    rows = report["calibration"]
    assert [(r["fold"], r["model"]) for r in rows] == [(0, "xgboost"), (1, "xgboost")]
    for r in rows:
        distinct = {f"distinct_top{TOP_DISTINCT}_raw", f"distinct_top{TOP_DISTINCT}_calibrated"}
        metrics = {"ap_raw", "ap_calibrated", "cp_raw", "cp_calibrated"}
        assert set(r) == {"fold", "model", *metrics, *distinct}
        assert r["ap_calibrated"] == pytest.approx(
            report["models"]["xgboost"]["folds"][r["fold"]]["ap"]
        )
        assert 1 <= r[f"distinct_top{TOP_DISTINCT}_calibrated"] <= TOP_DISTINCT
    page = write_report(report, result.pooled, tmp_path / "REPORT.json")["html"].read_text()
    text = re.sub(r"<[^>]+>", " ", page)
    titles = (
        "Raw vs calibrated scores",
        "Feature-group ablations",
        "Recall per fraud scenario",
        "perfect ranking (CP@20 ceiling)",
        "CP@20 ceiling",
        "in the 7 days before",
    )
    for title in titles:
        assert title in text, title
    assert "xgboost without terminal" in text and "AP fold 1" in text
