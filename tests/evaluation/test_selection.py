"""Model selection on validation folds: windows before the test weeks, no leakage of test rows
or of labels not yet known, the default as trial 0, the chosen and the default configuration
on the test folds by the same function, exact refused on Ray Train, and ``riskml select``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from riskml.evaluation.backtest import Fold, fold_windows, labels_as_of
from riskml.evaluation.selection import (
    METRIC,
    SelectionConfig,
    SelectionError,
    check_no_overlap,
    check_windows,
    choose,
)
from riskml.models.xgb import XGBParams

UTC = dt.UTC
# the tiny dataset: 30 days from 2024-01-01; T = 2024-01-27 leaves room for 2 validation folds
T = dt.date(2024, 1, 27)
WINDOWS = {"step_days": 3, "test_days": 3, "delay_days": 2, "k": 20}
SMALL_BASE = {"num_boost_round": 20, "early_stopping_rounds": 10}


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


# -- windows ----------------------------------------------------------------------------------
def test_validation_windows_lie_before_the_test_windows_and_never_overlap() -> None:
    cfg = SelectionConfig(test_start=dt.date(2024, 6, 3), folds=3, valid_folds=3)
    valid = fold_windows(cfg.validation_windows())
    test = fold_windows(cfg.test_windows())
    t = _midnight(dt.date(2024, 6, 3))
    assert [f.test_start.date() for f in valid] == [
        dt.date(2024, 5, 13), dt.date(2024, 5, 20), dt.date(2024, 5, 27)
    ]  # fmt: skip
    assert [f.test_start.date() for f in test] == [
        dt.date(2024, 6, 3), dt.date(2024, 6, 10), dt.date(2024, 6, 17)
    ]  # fmt: skip
    for v in valid:
        assert v.test_end <= t and v.label_cutoff <= t and v.train_end < v.test_start
        assert v.train_end == v.test_start - dt.timedelta(days=7)  # the backtest's gap
        for f in test:  # no validation window overlaps any test window
            assert v.test_end <= f.test_start or f.test_end <= v.test_start
    assert valid[-1].test_end == t  # the validation weeks end where the test weeks begin
    check_no_overlap(valid, test)
    # the same backtest rules: the windows come from fold_windows, with the window config's days
    assert cfg.validation_windows().folds == 3 and cfg.test_windows().test_start == t.date()

    with pytest.raises(ValueError, match="overlap"):
        SelectionConfig(test_start=T, step_days=3, test_days=4)
    late = Fold(0, None, t, _midnight(dt.date(2024, 6, 5)), t, _midnight(dt.date(2024, 6, 5)))
    with pytest.raises(SelectionError, match="overlaps the test folds"):
        check_no_overlap([late], test)
    with pytest.raises(ValueError, match="unknown keys"):
        SelectionConfig(test_start=T, search_space={"depth": {"type": "choice", "values": [3]}})


def test_default_candidate_is_todays_defaults_and_all_history() -> None:
    cfg = SelectionConfig(test_start=T)
    default = cfg.default_candidate()
    xgb = XGBParams()
    assert default == {
        "tree_method": xgb.tree_method,
        "max_bin": xgb.max_bin,
        "max_depth": xgb.max_depth,
        "eta": xgb.eta,
        "num_boost_round": xgb.num_boost_round,
        "scale_pos_weight": xgb.scale_pos_weight,
        "train_days": None,
    }
    space = cfg.space()
    assert space["tree_method"].values == ["hist", "approx", "exact"]
    assert space["max_bin"].values == [256, 1024, 4096]
    assert (space["max_depth"].low, space["max_depth"].high) == (3, 10)
    assert space["train_days"].values == [None, 28, 56, 91]


def test_the_sequence_model_searches_its_length_and_size() -> None:
    from riskml.models.sequence import SequenceParams

    cfg = SelectionConfig(test_start=T, model="sequence")
    space = cfg.space()
    assert set(space) == {"steps", "hidden", "layers", "encoder", "lr", "train_days"}
    assert space["steps"].values == [4, 8, 16] and space["encoder"].values == ["gru", "transformer"]
    seq = SequenceParams()
    assert cfg.default_candidate() == {
        "steps": None,  # every step of the feature: today's model
        "hidden": seq.hidden,
        "layers": seq.layers,
        "encoder": seq.encoder,
        "lr": seq.lr,
        "train_days": None,
    }
    assert cfg.validation_windows().models == ("sequence",)
    with pytest.raises(ValueError, match=r"unknown keys \['max_bin'\] for the sequence model"):
        SelectionConfig(
            test_start=T,
            model="sequence",
            search_space={"max_bin": {"type": "choice", "values": [1]}},
        )
    with pytest.raises(ValueError, match="model"):
        SelectionConfig(test_start=T, model="forest")  # type: ignore[arg-type]


def test_choose_takes_the_best_mean_validation_ap_and_the_earlier_trial_on_ties() -> None:
    trials = [
        {"trial": 0, "status": "ok", METRIC: 0.5},
        {"trial": 1, "status": "error", METRIC: None},
        {"trial": 2, "status": "ok", METRIC: 0.7},
        {"trial": 3, "status": "ok", METRIC: 0.7},
    ]
    assert choose(trials)["trial"] == 2
    assert choose([{**trials[0], METRIC: 0.7}, *trials[1:]])["trial"] == 0
    with pytest.raises(SelectionError, match="no selection trial finished"):
        choose([{"trial": 0, "status": "error", METRIC: None, "error": "boom"}])


# -- leakage ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_frame(tiny_dataset: Path) -> Any:
    from riskml.evaluation.backtest import feature_frame, load_transactions, model_spec
    from riskml.evaluation.selection import xgb_frame, xgb_spec

    spec = xgb_spec(model_spec())
    return xgb_frame(feature_frame(load_transactions(tiny_dataset)), spec), spec


def test_validation_training_sees_no_test_week_and_only_labels_known_at_its_cutoff(
    tiny_frame: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polars as pl

    from riskml.evaluation import selection
    from riskml.training import pipeline

    frame, spec = tiny_frame
    cfg = SelectionConfig(test_start=T, valid_folds=2, **WINDOWS, base=XGBParams(**SMALL_BASE))
    folds = fold_windows(cfg.validation_windows())
    seen: list[tuple[Any, Any]] = []
    real_fit = pipeline.fit_models

    def spy(train: Any, spec_: Any, config: Any, **kw: Any) -> Any:
        seen.append((train, config))
        return real_fit(train, spec_, config, **kw)

    monkeypatch.setattr(pipeline, "fit_models", spy)
    candidate = cfg.default_candidate()
    kwargs = {"spec": spec, "base": cfg.base, "threads": 1, "what": "validation"}
    result = selection.evaluate_candidate(frame, cfg.validation_windows(), candidate, **kwargs)
    assert [r["fold"] for r in result["folds"]] == [0, 1]
    assert len(seen) == 2
    masked_somewhere = False
    for (train, config), fold in zip(seen, folds, strict=True):
        # the training frame ends before the fold's gap: no gap row, no test-week row
        assert train["ts"].max() < fold.train_end
        assert config.label_cutoff == fold.label_cutoff and not config.label_delay_aware
        # its labels are those known at the cut-off (the true label otherwise)
        truth = frame.join(train.select("tx_id", pl.col("is_fraud").alias("seen")), on="tx_id")
        expected = labels_as_of(
            truth["is_fraud"].to_numpy(),
            truth["label_available_at"].dt.epoch("us").to_numpy(),
            fold.label_cutoff,
        )
        assert np.array_equal(truth["seen"].to_numpy(), expected)
        masked_somewhere |= bool((truth["is_fraud"].to_numpy() > expected).any())
    assert masked_somewhere  # late labels exist, so the masking is exercised

    # what happens from T on cannot change the validation figures: invert every label of the
    # test weeks and make it known at once (a leak of those rows or labels would change them)
    t_us = int(_midnight(T).timestamp() * 1_000_000)
    after = pl.col("ts").dt.epoch("us") >= t_us
    tampered = frame.with_columns(
        pl.when(after).then(1 - pl.col("is_fraud")).otherwise(pl.col("is_fraud")).alias("is_fraud"),
        pl.when(after)
        .then(pl.col("ts"))
        .otherwise(pl.col("label_available_at"))
        .alias("label_available_at"),
    )
    assert tampered.filter(after)["is_fraud"].sum() > frame.filter(after)["is_fraud"].sum()
    again = selection.evaluate_candidate(tampered, cfg.validation_windows(), candidate, **kwargs)
    before_t = selection.evaluate_candidate(
        frame.filter(~after), cfg.validation_windows(), candidate, **kwargs
    )
    for other in (again, before_t):
        assert [r["ap"] for r in other["folds"]] == [r["ap"] for r in result["folds"]]
        assert [r["cp_at_k"] for r in other["folds"]] == [r["cp_at_k"] for r in result["folds"]]


def test_a_sequence_candidate_trains_the_sequence_model_alone_on_each_fold(
    tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same evaluation path for the sequence model: its length and size reach its training
    config, it trains alone (no XGBoost), and every fold is scored on its calibrated scores."""
    from riskml.evaluation import selection
    from riskml.evaluation.backtest import feature_frame, load_transactions, model_spec
    from riskml.models.sequence import SequenceParams
    from riskml.training import pipeline

    frame, spec = feature_frame(load_transactions(tiny_dataset)), model_spec()
    cfg = SelectionConfig(
        test_start=T,
        model="sequence",
        valid_folds=2,
        **WINDOWS,
        sequence_base=SequenceParams(epochs=1, batch_size=512, tab_hidden=8),
    )
    seen: list[Any] = []
    real_fit = pipeline.fit_models

    def spy(train: Any, spec_: Any, config: Any, **kw: Any) -> Any:
        seen.append(config)
        return real_fit(train, spec_, config, **kw)

    monkeypatch.setattr(pipeline, "fit_models", spy)
    candidate = {**cfg.default_candidate(), "steps": 4, "hidden": 8}
    result = selection.evaluate_candidate(
        frame, cfg.validation_windows(), candidate, spec=spec, base=cfg.base_params(),
        threads=1, what="validation",
    )  # fmt: skip
    assert [r["fold"] for r in result["folds"]] == [0, 1] and len(seen) == 2
    for config in seen:
        assert config.models == ("sequence",)
        assert (config.sequence.steps, config.sequence.hidden, config.sequence.epochs) == (4, 8, 1)
    for r in result["folds"]:
        assert 0 < r["ap"] <= 1 and 0 <= r["cp_at_k"] <= 1 and 0 < r["ap_raw"] <= 1
        assert r["rounds"] == 1  # epochs run
    assert result["mean"]["ap"] == pytest.approx(np.mean([r["ap"] for r in result["folds"]]))


# -- exact ------------------------------------------------------------------------------------
def test_exact_is_refused_on_ray_train_before_ray_starts_and_trains_in_process() -> None:
    import ray

    from riskml.models.xgb import fit_booster
    from riskml.training.runtime import RayConfig
    from riskml.training.xgboost_train import check_distributed_tree_method, train_xgboost

    exact = XGBParams(tree_method="exact", num_boost_round=5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x[:, 0] > 0.8).astype(np.int8)
    was_running = ray.is_initialized()
    for workers in (2, 4, 1):  # XGBoost refuses exact under Ray Train even on one worker
        with pytest.raises(ValueError, match="'exact' does not support XGBoost's distributed"):
            train_xgboost(x, y, params=exact, ray_config=RayConfig(num_workers=workers))
    assert ray.is_initialized() == was_running  # refused before Ray starts
    for method in ("hist", "approx"):
        check_distributed_tree_method(XGBParams(tree_method=method), 4)
    # in process every tree method trains (approx and exact read a plain DMatrix)
    for method in ("hist", "approx", "exact"):
        _, info = fit_booster(
            XGBParams(tree_method=method, num_boost_round=5, max_bin=64),
            x[:300], y[:300], x[300:], y[300:],
        )  # fmt: skip
        assert info["rounds"] == 5


# -- CLI --------------------------------------------------------------------------------------
def _cli(*args: str) -> Any:
    from riskml.cli import app

    return CliRunner().invoke(app, ["select", *args])


def test_cli_bad_input_exits_2_with_a_message(tiny_dataset: Path, tmp_path: Path) -> None:
    import polars as pl

    from riskml.evaluation.backtest import load_transactions

    out = tmp_path / "SEL.json"
    base = ["--transactions", str(tiny_dataset), "--folds", "1", "--step-days", "3",
            "--test-days", "3", "--delay-days", "2", "--k", "10", "--out", str(out)]  # fmt: skip
    res = _cli(*base, "--test-start", "2024-01-05")
    assert res.exit_code == 2 and "validation fold 0 has no training data" in res.output
    res = _cli(*base, "--test-start", "2024-03-01")
    assert res.exit_code == 2 and "data ends" in res.output
    res = _cli(*base, "--test-start", "2024-01-27", "--test-days", "5")
    assert res.exit_code == 2 and "overlap the first test window" in res.output
    res = _cli(*base, "--test-start", "27/01/2024")
    assert res.exit_code == 2 and "YYYY-MM-DD" in res.output
    res = _cli(*base, "--test-start", "2024-01-27", "--transactions", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "error" in res.output
    space = tmp_path / "space.yaml"
    space.write_text("search_space:\n  depth: {type: choice, values: [3]}\n")
    res = _cli(*base, "--test-start", "2024-01-27", "--space", str(space))
    assert res.exit_code == 2 and "unknown keys" in res.output
    res = _cli(*base, "--test-start", "2024-01-27", "--model", "forest")
    assert res.exit_code == 2 and "model" in res.output
    space.write_text("- not a mapping\n")
    res = _cli(*base, "--test-start", "2024-01-27", "--space", str(space))
    assert res.exit_code == 2 and "search_space" in res.output
    assert not out.exists()
    # a window with a single class
    tx = load_transactions(tiny_dataset)
    day = pl.col("ts").dt.date()
    no_fraud = tx.with_columns(
        pl.when((day >= dt.date(2024, 1, 27)) & (day < dt.date(2024, 1, 30)))
        .then(0)
        .otherwise(pl.col("is_fraud"))
        .cast(tx["is_fraud"].dtype)
        .alias("is_fraud")
    )
    cfg = SelectionConfig(test_start=T, folds=1, valid_folds=2, **WINDOWS)
    check_windows(tx, cfg)
    with pytest.raises(SelectionError, match=r"test fold 0: .* both classes are needed"):
        check_windows(no_fraud, cfg)


@pytest.fixture
def own_ray() -> Iterator[None]:
    """The CLI starts a local Ray in this process; shut it down afterwards."""
    import ray

    if ray.is_initialized():  # pragma: no cover - another module left Ray running
        ray.shutdown()
    yield
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_select_cli_default_is_trial_0_chosen_is_argmax_both_run_on_test_folds(
    tiny_dataset: Path, tmp_path: Path, own_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from riskml.evaluation import selection

    calls: list[dict[str, Any]] = []
    real = selection.evaluate_candidate

    def spy(frame: Any, windows: Any, candidate: Any, **kw: Any) -> Any:
        calls.append({"windows": windows, "candidate": dict(candidate), "what": kw.get("what")})
        return real(frame, windows, candidate, **kw)

    # the driver's test-fold runs (the trials call the same function in their Tune actors)
    monkeypatch.setattr(selection, "evaluate_candidate", spy)
    space = tmp_path / "space.yaml"
    space.write_text(
        "search_space:\n"
        "  tree_method: {type: choice, values: [hist, approx]}\n"
        "  max_depth: {type: randint, low: 2, high: 4}\n"
        "  num_boost_round: {type: choice, values: [20, 40]}\n"
        "  train_days: {type: choice, values: [null, 14]}\n"
        f"base: {json.dumps(SMALL_BASE)}\n"
    )
    out = tmp_path / "sel" / "SEL.json"
    res = _cli(
        "--transactions", str(tiny_dataset), "--test-start", T.isoformat(), "--folds", "1",
        "--step-days", "3", "--test-days", "3", "--delay-days", "2", "--valid-folds", "2",
        "--num-samples", "3", "--time-budget-s", "240", "--k", "20", "--space", str(space),
        "--seed", "3", "--out", str(out),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    trials = report["trials"]
    assert len(trials) == 3 and [t["trial"] for t in trials] == [0, 1, 2]
    default = {"tree_method": "hist", "max_depth": 6, "num_boost_round": 20, "train_days": None}
    assert report["default_config"] == default and trials[0]["config"] == default
    ok = [t for t in trials if t["status"] == "ok"]
    assert trials[0]["status"] == "ok" and all(len(t["valid"]) == 2 for t in ok)
    best = max(ok, key=lambda t: (t[METRIC], -t["trial"]))
    assert report["chosen_trial"] == best["trial"] and report["chosen_config"] == best["config"]
    for t in ok:
        assert t[METRIC] == pytest.approx(np.mean([f["ap"] for f in t["valid"]]))
    # selection used validation windows only, all before T; the test windows start at T
    sel = report["selection"]
    assert sel["overlap"] is False and "validation folds only" in sel["used"]
    assert [w["test_start"][:10] for w in sel["validation_windows"]] == ["2024-01-21", "2024-01-24"]
    assert sel["validation_ends"] <= sel["test_starts"] == "2024-01-27T00:00:00+00:00"
    assert sel["search_rows_last_ts"] < sel["test_starts"]
    for t in ok:
        assert all(f["test_end"] <= sel["test_starts"] for f in t["valid"])
    # both configurations ran on the same test folds by the same function
    test = report["test"]
    assert set(test) == {"default", "chosen"}
    assert test["default"]["config"] == default
    assert test["chosen"]["config"] == report["chosen_config"]
    for role in ("default", "chosen"):
        assert [f["test_start"][:10] for f in test[role]["folds"]] == ["2024-01-27"]
        assert all(0 < f["ap"] <= 1 and 0 <= f["cp_at_k"] <= 1 for f in test[role]["folds"])
        assert set(test[role]["mean"]) >= {"ap", "cp_at_k"}
    driver = [c for c in calls if c["what"] == "test"]
    assert driver and driver[0]["candidate"] == default
    assert len(driver) == (1 if report["chosen_is_default"] else 2)
    assert all(c["windows"] == driver[0]["windows"] for c in driver)
    assert report["test_gain"]["ap"] == pytest.approx(
        test["chosen"]["mean"]["ap"] - test["default"]["mean"]["ap"]
    )
    assert "trials: mean validation AP" in res.output
    assert "test folds: default vs chosen" in res.output


@pytest.mark.ray
@pytest.mark.slow
def test_select_cli_chooses_the_sequence_models_length_and_size_on_validation_folds(
    tiny_dataset: Path, tmp_path: Path, own_ray: None
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "search_space:\n"
        "  steps: {type: choice, values: [4, 8]}\n"
        "  hidden: {type: choice, values: [8, 16]}\n"
        "base: {epochs: 1, batch_size: 512, tab_hidden: 8}\n"
    )
    out = tmp_path / "SEL.json"
    res = _cli(
        "--transactions", str(tiny_dataset), "--model", "sequence", "--test-start", T.isoformat(),
        "--folds", "1", "--step-days", "3", "--test-days", "3", "--delay-days", "2",
        "--valid-folds", "2", "--num-samples", "2", "--time-budget-s", "240", "--k", "20",
        "--space", str(space), "--seed", "3", "--out", str(out),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert (
        report["selection"]["model"] == "sequence"
        and "sequence scores" in (report["selection"]["metric"])
    )
    default = {"steps": None, "hidden": 32}  # the model as trained today: all 16 steps, 32 wide
    trials = report["trials"]
    assert report["default_config"] == default and trials[0]["config"] == default
    assert trials[1]["config"]["steps"] in (4, 8) and trials[1]["config"]["hidden"] in (8, 16)
    ok = [t for t in trials if t["status"] == "ok"]
    assert trials[0]["status"] == "ok" and all(len(t["valid"]) == 2 for t in ok)
    best = max(ok, key=lambda t: (t[METRIC], -t["trial"]))
    assert report["chosen_config"] == best["config"]
    for role in ("default", "chosen"):
        run = report["test"][role]
        assert run["params"]["epochs"] == 1 and "tree_method" not in run["params"]
        assert [f["test_start"][:10] for f in run["folds"]] == ["2024-01-27"]
        assert all(0 < f["ap"] <= 1 for f in run["folds"])
    assert report["test"]["chosen"]["params"]["steps"] == best["config"]["steps"]
