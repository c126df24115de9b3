"""Benchmark: model quality before and after issue #25, on the same folds, in one run.

    python -m benchmarks.model_quality --out out/bench/model_quality.json \
        [--dataset D] [--test-start 2024-06-03] [--folds 4] [--train-days 56] [--quick]

On the simulator's ``benchmark`` preset (simulated into a temporary folder unless ``--dataset``
names one): a prequential backtest (:mod:`riskml.evaluation.backtest`) with weekly folds, a 7-day
label-delay gap, card precision@100, test rows of cards already known compromised left out with
the ``train`` window, and every model (xgboost, sequence, their ensemble, and the baselines
logistic regression and default ``XGBClassifier``) run twice on the same folds:

``before``  FeatureService ``fraud_v1`` (30-day terminal/device risk only), XGBoost with 256
            histogram bins, no label-maturity gap (the newest rows train as genuine);
``after``   ``fraud_v2`` (label-aware risk over 1/7/30 days, recent and lagged), 4,096 bins, the
            10-day label maturity; with the feature-group ablations and recall per scenario.

Calibration is order-preserving in both (the ``calibration`` table of each report compares raw
and calibrated AP and CP@k per fold). Then ``after`` again on a **six-column import** of the same
transactions (id, time, customer, terminal, amount, label: no device, channel or category; every
label 7 days after its transaction), as a user with a minimal file would run it. Per fold AP and
CP@100, the CP@100 ceiling of a perfect ranking on the same test rows, the ablation table, the
calibration table; whether the ensemble beats every single model on the mean and on how many folds.

``label_timing`` asks whether label-aware features finer than the daily snapshot would pay: it
trains XGBoost on the same folds twice, once on the daily snapshots (as built) and once on
features built as if every label had arrived at 00:00 of the day it really arrived (its time
floored to the day, labels used for training unchanged), so that each transaction sees every
label of its own day before it happened. No snapshot period finer than a day can show a
transaction more labels than that (an hourly snapshot shows the labels up to the hour before),
so the AP gain of this arm per fold is an upper bound on what sub-daily label granularity adds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from riskml import __version__
from riskml.console import print_table, write_json

#: The configuration each arm overrides on top of the shared backtest windows.
ARMS: dict[str, dict[str, Any]] = {
    "before": {
        "feature_service": "fraud_v1",
        "xgb": {"max_bin": 256},
        "label_maturity_days": 0.0,
    },
    "after": {"ablations": True},
}
SIX_COLUMNS = {
    "tx_id": "id",
    "ts": "time",
    "customer_id": "customer",
    "terminal_id": "terminal",
    "amount": "amount",
    "is_fraud": "label",
}


def _dataset(path: Path | None, work: Path) -> Path:
    if path is not None:
        return path
    from riskml.data.simulator import SimulationConfig, simulate

    out = work / "benchmark"
    simulate(SimulationConfig.preset("benchmark"), out)
    return out


def _six_column_file(dataset: Path, work: Path) -> tuple[Path, Path]:
    """The dataset cut down to six renamed columns (CSV) and its importer mapping (YAML)."""
    import yaml

    from riskml.data.io import read_transactions

    tx = read_transactions(dataset)
    src = work / "six_columns.csv"
    tx.select(*(tx[k].alias(v) for k, v in SIX_COLUMNS.items())).write_csv(src)
    mapping = work / "six_columns.yaml"
    mapping.write_text(yaml.safe_dump({"columns": SIX_COLUMNS, "label_delay_days": 7.0}))
    return src, mapping


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """Per model: AP and CP@k per fold and their means; the ensemble's standing."""
    models = report["models"]
    out: dict[str, Any] = {}
    for name, m in models.items():
        out[name] = {
            "ap": [round(f["ap"], 4) for f in m["folds"]],
            "cp_at_k": [round(f["cp_at_k"], 4) for f in m["folds"]],
            "ap_mean": round(m["mean"]["ap"], 4),
            "cp_at_k_mean": round(m["mean"]["cp_at_k"], 4),
        }
    if "ensemble" in models:
        singles = [n for n in models if n != "ensemble"]
        ens = [f["ap"] for f in models["ensemble"]["folds"]]
        wins = [all(e > models[n]["folds"][i]["ap"] for n in singles) for i, e in enumerate(ens)]
        out["ensemble_beats_every_single_model"] = {
            "on_mean": all(
                models["ensemble"]["mean"]["ap"] > models[n]["mean"]["ap"] for n in singles
            ),
            "folds_won": int(sum(wins)),
            "folds": len(wins),
        }
    out["cp_at_k_ceiling"] = [f.get("cp_at_k_ceiling") for f in report["folds"]]
    return out


def _label_timing(tx: Any, frame: Any, base: dict[str, Any]) -> dict[str, Any]:
    """XGBoost on the daily snapshots vs on features that see each label from 00:00 of the day
    it arrived (module docstring): AP and CP@k per fold, and the gain."""
    import polars as pl

    from riskml.evaluation.backtest import BacktestConfig, feature_frame, run_backtest

    config = BacktestConfig.model_validate({**base, "models": ("xgboost",)})
    floored = tx.with_columns(pl.col("label_available_at").dt.truncate("1d"))
    oracle = feature_frame(floored).with_columns(tx["label_available_at"])  # true label times
    out: dict[str, Any] = {}
    for arm, arm_frame in (("daily", frame), ("label_day_oracle", oracle)):
        ta = time.perf_counter()
        folds = run_backtest(tx, config, frame=arm_frame).report["models"]["xgboost"]["folds"]
        out[arm] = {
            "ap": [round(f["ap"], 4) for f in folds],
            "cp_at_k": [round(f["cp_at_k"], 4) for f in folds],
            "seconds": round(time.perf_counter() - ta, 1),
        }
    gain = [o - d for o, d in zip(out["label_day_oracle"]["ap"], out["daily"]["ap"], strict=True)]
    out["ap_gain_per_fold"] = [round(g, 4) for g in gain]
    out["ap_gain_mean"] = round(sum(gain) / len(gain), 4)
    out["bound"] = (
        "upper bound of the AP a snapshot period finer than a day could add to the label-aware "
        "features: the oracle sees each label from 00:00 of the day it arrived"
    )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from riskml.evaluation.backtest import (
        BacktestConfig,
        feature_frame,
        load_transactions,
        run_backtest,
    )

    with tempfile.TemporaryDirectory(prefix="riskml-quality-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        dataset = _dataset(args.dataset, work)
        tx = load_transactions(dataset)
        base: dict[str, Any] = {
            "test_start": args.test_start,
            "folds": args.folds,
            "step_days": 7,
            "test_days": 7,
            "delay_days": 7,
            "train_days": args.train_days,
            "k": 100,
            "exclude_known_cards": True,
            "known_cards_window": "train",
            "sequence_epochs": args.sequence_epochs,
        }
        result: dict[str, Any] = {
            "benchmark": "model_quality",
            "riskml": __version__,
            "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "dataset": str(dataset),
            "rows": tx.height,
            "windows": base,
            "arms": {},
        }
        tf = time.perf_counter()
        frame = feature_frame(tx)  # one model frame for every arm (fraud_v1 is its projection)
        result["feature_seconds"] = round(time.perf_counter() - tf, 1)
        for arm, overrides in ARMS.items():
            config = BacktestConfig.model_validate({**base, **overrides})
            ta = time.perf_counter()
            report = run_backtest(tx, config, frame=frame).report
            result["arms"][arm] = {
                "config": overrides,
                "seconds": round(time.perf_counter() - ta, 1),
                "summary": _summary(report),
                "report": report,
            }
            print(f"{arm}: {result['arms'][arm]['seconds']} s", flush=True)
        if not args.skip_label_timing:
            result["label_timing"] = _label_timing(tx, frame, base)
            print(f"label timing: {result['label_timing']['ap_gain_per_fold']}", flush=True)
        del frame
        if not args.skip_six_columns:
            src, mapping = _six_column_file(dataset, work)
            six = load_transactions(src, mapping)
            config = BacktestConfig.model_validate(base)
            ta = time.perf_counter()
            report = run_backtest(six, config).report
            result["six_columns"] = {
                "rows": six.height,
                "columns": list(SIX_COLUMNS.values()),
                "label_delay_days": 7.0,
                "seconds": round(time.perf_counter() - ta, 1),
                "summary": _summary(report),
                "report": report,
            }
        result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _print(result: dict[str, Any]) -> None:
    rows = []
    for arm, data in result["arms"].items():
        for model, s in data["summary"].items():
            if isinstance(s, dict) and "ap" in s:
                rows.append(
                    {
                        "arm": arm,
                        "model": model,
                        "AP per fold": " ".join(f"{v:.3f}" for v in s["ap"]),
                        "AP mean": f"{s['ap_mean']:.3f}",
                        "CP@100 per fold": " ".join(f"{v:.3f}" for v in s["cp_at_k"]),
                    }
                )
    print_table("model quality (same folds)", rows)
    after = result["arms"]["after"]["summary"]
    print("CP@100 ceiling per fold:", after["cp_at_k_ceiling"])
    print("ensemble:", after.get("ensemble_beats_every_single_model"))
    if "label_timing" in result:
        t = result["label_timing"]
        print(
            "label timing (xgboost AP, daily snapshots vs labels seen from 00:00 of their day):",
            t["daily"]["ap"],
            t["label_day_oracle"]["ap"],
            "gain",
            t["ap_gain_per_fold"],
        )
    if "six_columns" in result:
        s = result["six_columns"]["summary"]
        print(
            "six-column import:",
            {m: s[m]["ap"] for m in s if isinstance(s[m], dict) and "ap" in s[m]},
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--test-start", type=dt.date.fromisoformat, default=dt.date(2024, 6, 3))
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--train-days", type=int, default=56)
    parser.add_argument("--sequence-epochs", type=int, default=None)
    parser.add_argument("--skip-six-columns", action="store_true")
    parser.add_argument("--skip-label-timing", action="store_true")
    args = parser.parse_args(argv)
    result = run(args)
    write_json(args.out, result)
    _print(result)


if __name__ == "__main__":
    main()
