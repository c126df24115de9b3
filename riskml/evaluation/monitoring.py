"""How well the monitor works, measured on the simulator (``riskml monitor evaluate``).

* **A/A false alarms**: windows drawn at random from one distribution — the scored rows of a
  later period, split at random into a reference half (its profile built as training builds
  one) and a window half — must alarm on at most ``alpha`` of (feature, window) pairs. Random
  windows, not consecutive ones: consecutive windows of real traffic differ for real (weekly
  cycles, terminal bursts), which is what the monitor is for.
* **Detection**: the same windows with one feature's values shifted by 0.2 of its reference
  standard deviation: how many windows until the first alarm on that feature (1 = caught in
  the first window), for every continuous feature (>= 8 value bins) and for the log amount.
* **Label-free estimates**: a model trained and calibrated on *matured* labels (the label
  delay of the simulator's chargebacks is weeks: calibrating on the labels known at the
  training cut-off counts recent frauds as genuine and scores come out too low), scoring a later
  period: AP and recall at the thresholds estimated from its calibrated scores alone, against
  the realised values once every label of the period has arrived.
* :func:`drifted_world` — a simulated world with drift injected, scored by a bundle into a
  decision log — is what the end-to-end check (monitoring pipeline on ``kfp.local``: drift ->
  alarm -> retraining -> gate) and its test run on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from riskml.monitoring.drift import DEFAULT_ALPHA, fixed_cutoff_alarm, window_drift
from riskml.monitoring.profile import build_profile

#: Rows per A/A and detection window (about a day of decisions of the evaluation's world).
DEFAULT_WINDOW_ROWS = 2_000
#: Features shifted in the detection check must have at least this many value bins.
MIN_BINS_CONTINUOUS = 8


@dataclass
class World:
    """A simulated world: its features, a bundle trained before ``cut`` and the later rows."""

    root: Path
    bundle: Path
    history: Any  # polars frame: model frame before the cut
    later: Any  # polars frame: model frame from the cut (features, labels, label times)
    cut: dt.datetime
    end: dt.datetime


def _simulated_store(
    root: Path,
    *,
    start: dt.date,
    days: int,
    customers: int,
    terminals: int,
    seed: int,
    drift: Sequence[str],
    project: str,
) -> tuple[Any, dt.datetime]:
    """Simulate ``days`` days from ``start`` (with ``drift``), build the features as of the
    end and register them with Feast: the store point-in-time sets are read from, and the end."""
    from riskml.data.simulator import SimulationConfig, simulate
    from riskml.features.batch import build_features
    from riskml.features.store import StoreConfig, apply

    end = dt.datetime.combine(start, dt.time(), dt.UTC) + dt.timedelta(days=days)
    config = SimulationConfig(
        n_customers=customers,
        n_terminals=terminals,
        days=days,
        start_date=start,
        seed=seed,
        drift=list(drift),
    )
    simulate(config, root / "data")
    build_features(root / "data", root / "features", as_of=end)
    store = StoreConfig(home=root / "offline", features_dir=root / "features", project=project)
    apply(store)
    return store, end


def _model_frame(store: Any, start: dt.datetime | None, end: dt.datetime) -> Any:
    """The point-in-time model frame of ``[start, end)`` (sequences included)."""
    from riskml.features.store import training_set
    from riskml.training.dataset import to_model_frame

    return to_model_frame(training_set(start, end, config=store, sequences=True))


def simulated_world(
    root: Path,
    *,
    days: int = 90,
    train_days: int = 75,
    customers: int = 2_000,
    terminals: int = 1_000,
    seed: int = 5,
    drift: Sequence[str] = (),
    label_maturity_days: int = 30,
    training: dict[str, Any] | None = None,
) -> World:
    """Simulate, build features (Feast, point in time), train a small bundle in process on the
    days before ``train_days`` with labels matured ``label_maturity_days`` (rows younger are
    left out of training), and keep the later rows."""
    from riskml.training.dataset import model_feature_spec
    from riskml.training.pipeline import TrainConfig, train_models

    root = Path(root)
    start = dt.date(2024, 1, 1)
    store, end = _simulated_store(
        root,
        start=start,
        days=days,
        customers=customers,
        terminals=terminals,
        seed=seed,
        drift=drift,
        project="monitor",
    )
    cut = dt.datetime.combine(start, dt.time(), dt.UTC) + dt.timedelta(days=train_days)
    history, later = _model_frame(store, None, cut), _model_frame(store, cut, end)
    settings = training or {
        "xgb": {"num_boost_round": 120, "early_stopping_rounds": 20},
        "sequence": {"epochs": 2, "batch_size": 256, "hidden": 16, "tab_hidden": 16},
        "split": {"label_maturity_days": label_maturity_days},
    }
    outcome = train_models(
        history,
        model_feature_spec(),
        TrainConfig.model_validate(settings),
        out_dir=root / "models",
        in_process=True,
    )
    return World(root, outcome.bundle_path, history, later, cut, end)


def aa_and_detection(
    tabular: np.ndarray,
    names: Sequence[str],
    scores: np.ndarray,
    *,
    windows: int = 200,
    size: int = DEFAULT_WINDOW_ROWS,
    shift_sd: float = 0.2,
    max_windows: int = 10,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    splits: int = 10,
    detect_features: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A/A false alarms and windows-to-detect a ``shift_sd`` mean shift (module docstring)."""
    rng = np.random.default_rng(seed)
    n = tabular.shape[0]
    if n < 4 * size:
        raise ValueError(f"{n} rows are too few for windows of {size} (need >= {4 * size})")
    if windows % splits:
        raise ValueError(f"windows ({windows}) must be a multiple of splits ({splits})")
    alarms: dict[str, int] = {}
    fixed: dict[str, int] = {}
    for _ in range(splits):
        # a fresh random halving per split: windows of one split share its window half, whose
        # own sampling deviation would otherwise tilt all of them the same way
        order = rng.permutation(n)
        ref_idx, pool = order[: n // 2], order[n // 2 :]
        profile = build_profile(tabular[ref_idx], names, scores=scores[ref_idx], source="A/A half")
        monitored = profile.monitored()
        for _ in range(windows // splits):
            idx = rng.choice(pool, size=size, replace=False)
            cols = {name: tabular[idx, j] for j, name in enumerate(names)}
            cols["score"] = scores[idx]
            for name, d in window_drift(monitored, cols, alpha=alpha).items():
                alarms[name] = alarms.get(name, 0) + d.alarm
                fixed[name] = fixed.get(name, 0) + fixed_cutoff_alarm(d.psi)
    pairs = windows * len(monitored)
    continuous = [
        name
        for name in names
        if profile.features[name].bins - 1 >= MIN_BINS_CONTINUOUS
        and (profile.features[name].std or 0) > 0
    ]
    targets = list(detect_features) if detect_features is not None else continuous
    to_detect: dict[str, int | None] = {}
    for name in targets:
        j = list(names).index(name)
        prof = profile.features[name]
        sd = float(prof.std or 0.0)
        found: int | None = None
        for w in range(1, max_windows + 1):
            idx = rng.choice(pool, size=size, replace=False)
            values = tabular[idx, j] + shift_sd * sd
            d = window_drift({name: prof}, {name: values}, alpha=alpha)[name]
            if d.alarm:
                found = w
                break
        to_detect[name] = found
    detected = [w for w in to_detect.values() if w is not None]
    return {
        "windows": windows,
        "window_rows": size,
        "features": len(names),
        "monitored": len(monitored),
        "alpha": alpha,
        "false_alarm_rate": sum(alarms.values()) / pairs,
        "false_alarm_rate_max_feature": max(alarms.values()) / windows,
        "splits": splits,
        "false_alarms_by_feature": {k: v for k, v in alarms.items() if v},
        "fixed_psi_0p1_false_alarm_rate": sum(fixed.values()) / pairs,
        "shift_sd": shift_sd,
        "continuous_features": len(continuous),
        "windows_to_detect_by_feature": to_detect,
        "windows_to_detect_max": max(detected) if len(detected) == len(to_detect) else None,
        "undetected": sorted(k for k, v in to_detect.items() if v is None),
    }


def estimate_vs_realised(
    scores: np.ndarray,
    labels: np.ndarray,
    thresholds: dict[str, float],
    *,
    days: np.ndarray | None = None,
) -> dict[str, Any]:
    """Label-free estimates from calibrated ``scores`` against the realised values with every
    label known (``labels``), overall and per day when ``days`` is given."""
    from riskml.metrics import average_precision
    from riskml.monitoring.performance import compare, estimate_performance

    def one(s: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        est = estimate_performance(s, thresholds)
        real: dict[str, float] = {
            "average_precision": average_precision(y, s) if y.sum() else float("nan"),
            "fraud_rate": float(y.mean()),
        }
        for name, t in thresholds.items():
            flag, hit = s >= t, (s >= t) & (y == 1)
            real[f"threshold_{name}"] = t
            real[f"recall_{name}"] = float(hit.sum() / y.sum()) if y.sum() else float("nan")
            real[f"precision_{name}"] = (
                float(hit.sum() / flag.sum()) if flag.sum() else float("nan")
            )
        errors = compare(est, real)
        return {
            "rows": int(s.size),
            "frauds": int(y.sum()),
            "estimated": {k: est[k] for k in real if k in est},
            "realised": real,
            "errors": errors,
        }

    out = one(scores, labels)
    if days is not None:
        out["per_day"] = {
            str(d): one(scores[days == d], labels[days == d]) for d in np.unique(days)
        }
    return out


def drifted_log(
    root: Path,
    bundle_path: Path,
    *,
    drift: Sequence[str],
    days: int = 42,
    log_days: int = 7,
    customers: int = 800,
    terminals: int = 800,
    seed: int = 13,
    start: dt.date | None = None,
) -> dict[str, Any]:
    """A world with ``drift`` (the simulator's spec strings), its last ``log_days`` scored by
    the bundle at ``bundle_path`` into a decision log under ``root / "log"``: the log's root,
    its first and last event time, and the counts."""
    from riskml.models.bundle import load_bundle
    from riskml.monitoring.backfill import log_dataset

    root = Path(root)
    store, end = _simulated_store(
        root,
        start=start or dt.date(2024, 3, 1),
        days=days,
        customers=customers,
        terminals=terminals,
        seed=seed,
        drift=drift,
        project="drifted",
    )
    frame = _model_frame(store, end - dt.timedelta(days=log_days), end)
    counts = log_dataset(frame, load_bundle(bundle_path), root / "log")
    return {
        "log": str(root / "log"),
        "start": (end - dt.timedelta(days=log_days)).isoformat(),
        "end": end.isoformat(),
        **counts,
    }


#: ``riskml monitor evaluate``'s world: 120 days (the first 30 warm the 30-day windows up), a
#: model trained before day 100 on labels 40 days old (98 % of the chargebacks have arrived by
#: then: calibrating on the labels known at the cut-off would count recent frauds as genuine),
#: the monitored period days 100-120, its labels all arrived.
EVALUATION_WORLD: dict[str, int] = {"days": 120, "train_days": 100, "label_maturity_days": 40}


def evaluate_statistics(
    root: Path,
    *,
    windows: int = 200,
    size: int = DEFAULT_WINDOW_ROWS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 5,
    world: dict[str, int] | None = None,
) -> tuple[dict[str, Any], World]:
    """The A/A, detection and estimate checks on a simulated world (module docstring); the
    figures and the world (its bundle serves the end-to-end check)."""
    import time

    from riskml.decision.config import Thresholds
    from riskml.models.bundle import load_bundle
    from riskml.monitoring.backfill import scores_of

    t0 = time.perf_counter()
    shape = world or EVALUATION_WORLD
    w = simulated_world(
        root,
        seed=seed,
        days=shape["days"],
        train_days=shape["train_days"],
        label_maturity_days=shape["label_maturity_days"],
    )
    built_s = time.perf_counter() - t0
    bundle = load_bundle(w.bundle)
    names = list(bundle.spec.tabular)
    scores = scores_of(w.later, bundle)
    labels = w.later["is_fraud"].to_numpy().astype(int)
    drift = aa_and_detection(
        bundle.spec.tabular_matrix(w.later).astype(np.float64),
        names,
        scores,
        windows=windows,
        size=size,
        alpha=alpha,
        seed=seed,
    )
    days = w.later["ts"].dt.date().cast(str).to_numpy()
    estimates = estimate_vs_realised(scores, labels, Thresholds().model_dump(), days=days)
    per_day = estimates.pop("per_day")
    amount = drift["windows_to_detect_by_feature"].get("tx_log_amount")
    return {
        "world": {
            **shape,
            "seed": seed,
            "history_rows": w.history.height,
            "monitored_rows": w.later.height,
            "bundle": str(w.bundle),
            "build_seconds": round(built_s, 1),
        },
        "false_alarm_rate": drift["false_alarm_rate"],
        "windows_to_detect_0p2sd": drift["windows_to_detect_max"],
        "windows_to_detect_0p2sd_log_amount": amount,
        "estimated_ap_abs_error": estimates["errors"]["ap_abs_error"],
        "estimated_recall_abs_error": estimates["errors"]["recall_abs_error"],
        "estimated_precision_abs_error": estimates["errors"]["precision_abs_error"],
        "drift": drift,
        "estimates": estimates,
        "estimates_per_day": {
            d: {"rows": v["rows"], "frauds": v["frauds"], **v["errors"]} for d, v in per_day.items()
        },
    }, w


#: The end-to-end check's drift in the evaluation world: from day 105 (five days into the
#: monitored period) genuine amounts shift by 0.2 sd of log(amount) and a new card-not-present
#: fraud pattern starts; the days before are identical to the world the model was trained on.
EVALUATION_DRIFT: tuple[str, ...] = ("amount_shift@day=105,sd=0.2", "new_pattern@day=105")
#: The retraining branch's data (the pipeline's tiny simulated world ending at the check) with
#: the same drift kinds from its day 30 of 42.
RETRAIN_DRIFT: tuple[str, ...] = ("amount_shift@day=30,sd=0.2", "new_pattern@day=30")
#: Small training settings for the retraining branch (its shape is under test, not accuracy).
FAST_RETRAINING: dict[str, Any] = {
    "split": {"label_maturity_days": 10},
    "xgb": {"num_boost_round": 60, "early_stopping_rounds": 10},
    "sequence": {"epochs": 1, "hidden": 16, "tab_hidden": 32},
    "ray": {"num_workers": 1},
}


def evaluation_logs(
    root: Path,
    world: World,
    *,
    drift: Sequence[str] = EVALUATION_DRIFT,
    seed: int = 5,
    shape: dict[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Two decision logs of the evaluation world's monitored period, scored by its bundle: as
    simulated (``control``) and with ``drift`` injected (``drifted``; the same world, so every
    day before the drift is the same)."""
    from riskml.models.bundle import load_bundle
    from riskml.monitoring.backfill import log_dataset

    shape = shape or EVALUATION_WORLD
    log_days = shape["days"] - shape["train_days"]
    control: dict[str, Any] = {
        "log": str(root / "control" / "log"),
        "start": world.cut.isoformat(),
        "end": world.end.isoformat(),
        **log_dataset(world.later, load_bundle(world.bundle), root / "control" / "log"),
    }
    drifted = drifted_log(
        root / "drifted",
        world.bundle,
        drift=drift,
        days=shape["days"],
        log_days=log_days,
        customers=2_000,
        terminals=1_000,
        seed=seed,
        start=world.cut.date() - dt.timedelta(days=shape["train_days"]),
    )
    return {"control": control, "drifted": drifted}


def first_held(report: Any) -> dict[str, Any]:
    """When a monitor report's alarm first held (an alert), and when retraining was first
    called for (:meth:`riskml.monitoring.monitor.MonitorReport.calls_for_retraining`), on
    what."""
    out: dict[str, Any] = {"held_window": None, "held_start": None, "held": []}
    out |= {"retrain_window": None, "retrain_start": None, "retrain_held": []}
    for w in report.windows:
        if w.held and out["held_window"] is None:
            out |= {"held_window": w.index, "held_start": w.start.isoformat(), "held": w.held}
        if report.calls_for_retraining(w):
            out |= {
                "retrain_window": w.index,
                "retrain_start": w.start.isoformat(),
                "retrain_held": w.held,
            }
            break
    return out
