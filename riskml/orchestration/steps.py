"""Pipeline steps: one plain function per kfp component, files in, files + a JSON dict out.

Each kfp component in ``components/`` is a thin adapter: it maps its artifacts' paths onto one of
these functions and logs the returned dict. The same functions run without kfp (tests, the
``benchmarks/pipeline.py`` baseline), so the pipeline adds orchestration, nothing else.

Artifacts on disk:

``dataset``        a riskml transactions dataset (:mod:`riskml.data.io`)
``features``       Feast sources written by :func:`riskml.features.batch.build_features`
``training set``   a directory with ``data.parquet`` (ids, ``ts``, labels, the ``fraud_v1``
                   features, the sequence as one list column per field ``seq_<field>``) and
                   ``feature_spec.json`` (the model's :class:`~riskml.models.features.FeatureSpec`)
``xgb model``      ``model.ubj`` + ``info.json``
``sequence model`` ``weights.safetensors`` + ``architecture.json`` + ``info.json``
``bundle``         a verified model bundle (:mod:`riskml.models.bundle`)
``registry``       ``<models_dir>/registry/<name>/<version>/`` bundles, ``index.json`` and
                   ``champion.json`` (the deployed bundle)

Glue that belongs to other packages once they offer it is marked ``WIRING``: the conversion of the
feature store's flattened ``cust_seq`` into the model's per-field sequence columns, and the split
of :func:`riskml.training.pipeline.train_models` into separate train / calibrate steps.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from riskml.settings import get_settings

Size = Literal["tiny", "demo"]
#: Simulation sizes the pipelines accept (``demo`` is the simulator's demo preset).
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_customers": 800, "n_terminals": 800, "days": 42},
    "demo": {"n_customers": 2000, "n_terminals": 2000, "days": 60},
}
DATA_FILE = "data.parquet"
SPEC_FILE = "feature_spec.json"
SEQ_PREFIX = "seq_"
DEFAULT_GATE_METRIC = "average_precision"
#: Training configuration the pipelines start from (a :class:`TrainConfig` document): labels of
#: the last 10 days before the cut-off are mostly not in yet, so those rows stay out of training.
DEFAULT_TRAIN_CONFIG: dict[str, Any] = {
    "split": {"label_maturity_days": 10},
    "xgb": {"num_boost_round": 200, "early_stopping_rounds": 20},
    "sequence": {"epochs": 3},
    "ray": {"num_workers": 1},
}


class StepError(ValueError):
    """A step got input it cannot work with; the message says what."""


def _write_json(path: Path, payload: Any) -> Path:
    from riskml.console import write_json

    return write_json(path, payload)


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


# --- data ------------------------------------------------------------------------------------


def simulate_data(
    out: Path, *, size: str = "tiny", seed: int = 7, start_date: str | None = None
) -> dict[str, Any]:
    """Simulate a dataset of a named size into ``out``."""
    from riskml.data.simulator import SimulationConfig, simulate

    if size not in SIZES:
        raise StepError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    overrides: dict[str, Any] = {**SIZES[size], "seed": seed}
    if start_date:
        overrides["start_date"] = dt.date.fromisoformat(start_date)
    manifest = simulate(SimulationConfig(**overrides), Path(out))
    return {
        "source": "simulate",
        "size": size,
        "rows": manifest["rows"],
        "days": manifest["days"],
        "fraud_rows": manifest["fraud_rows"],
        "fraud_rate": manifest["fraud_rate"],
    }


def import_data(src: Path, out: Path, *, mapping: dict[str, Any] | None = None) -> dict[str, Any]:
    """Import external transactions (CSV/Parquet) into a dataset at ``out``."""
    from riskml.data.importer import ImportMapping, import_transactions

    result = import_transactions(
        Path(src),
        Path(out),
        ImportMapping.model_validate(mapping) if mapping else None,
        overwrite=True,
    )
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    counts = manifest.get("counts", {})
    return {
        "source": "import",
        "src": str(src),
        "rows": counts.get("accepted", getattr(result, "accepted", None)),
        "quarantined": counts.get("quarantined", getattr(result, "quarantined", None)),
    }


def load_data(
    out: Path,
    *,
    source_uri: str = "",
    size: str = "tiny",
    seed: int = 7,
    start_date: str | None = None,
    mapping: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Import ``source_uri`` when given, else simulate ``size`` data."""
    if source_uri:
        return import_data(Path(source_uri), out, mapping=mapping)
    return simulate_data(out, size=size, seed=seed, start_date=start_date)


# --- features --------------------------------------------------------------------------------


def build_feature_sources(dataset: Path, out: Path) -> dict[str, Any]:
    from riskml.features.batch import build_features

    summary = build_features(Path(dataset), Path(out)).to_dict()
    return {k: summary[k] for k in ("rows", "customers", "start", "end", "as_of", "out_dir")}


def store_config(features_dir: Path) -> Any:
    from riskml.features.store import StoreConfig

    return StoreConfig(features_dir=Path(features_dir))


def apply_and_materialize(features_dir: Path) -> dict[str, Any]:
    """``feast apply`` for the sources under ``features_dir``, then materialise them online."""
    from riskml.features import store

    config = store_config(features_dir)
    applied = store.apply(config)
    materialized = store.materialize(config=config)
    return {
        "project": applied["project"],
        "feature_services": applied["feature_services"],
        "online_store": applied["online_store"],
        "registry": applied["registry"],
        "materialized_until": materialized["end"],
        "views": materialized["views"],
    }


def model_feature_spec() -> Any:
    """WIRING: the model's FeatureSpec for the ``fraud_v1`` FeatureService."""
    from riskml.features.definitions import FEATURE_SERVICE, SEQ_FIELDS, SEQ_LEN, feature_contract
    from riskml.models.features import FeatureSpec

    contract = feature_contract()
    return FeatureSpec(
        feature_service=FEATURE_SERVICE,
        tabular=tuple(name for name, _ in contract),
        sequence=tuple(f"{SEQ_PREFIX}{f}" for f in SEQ_FIELDS),
        seq_len=SEQ_LEN,
        dtypes=dict(contract),
    )


def to_model_frame(frame: Any) -> Any:
    """WIRING: the store's flattened ``cust_seq`` -> one ``seq_<field>`` list column per field."""
    import numpy as np
    import polars as pl

    from riskml.features.definitions import SEQ_FIELDS, SEQ_LEN, SEQUENCE_FEATURE

    if SEQUENCE_FEATURE not in frame.columns:
        raise StepError(f"training set has no {SEQUENCE_FEATURE!r} column")
    flat = np.asarray(frame[SEQUENCE_FEATURE].to_numpy(), dtype=np.float32)
    seq = flat.reshape(frame.height, SEQ_LEN, len(SEQ_FIELDS))
    cols = [
        pl.Series(f"{SEQ_PREFIX}{name}", np.ascontiguousarray(seq[:, :, j])).cast(
            pl.List(pl.Float32)
        )
        for j, name in enumerate(SEQ_FIELDS)
    ]
    return frame.drop(SEQUENCE_FEATURE).with_columns(cols)


def make_training_sets(
    features_dir: Path, dataset: Path, train_out: Path, test_out: Path, *, test_days: int = 7
) -> dict[str, Any]:
    """Point-in-time training and backtest sets from the feature store (FeatureService
    ``fraud_v1``): training = everything before the last ``test_days`` days, test = those days."""
    from riskml.data.io import scan_transactions
    from riskml.features import store

    if test_days < 1:
        raise StepError("test_days must be >= 1")
    config = store_config(features_dir)
    ts_max = scan_transactions(Path(dataset)).select("ts").max().collect().item()
    if ts_max is None:
        raise StepError(f"dataset {dataset} is empty")
    cutoff = dt.datetime.combine(ts_max.date(), dt.time(), dt.UTC) - dt.timedelta(
        days=test_days - 1
    )
    spec = model_feature_spec()
    out: dict[str, Any] = {"cutoff": cutoff.isoformat(), "feature_service": spec.feature_service}
    fs = store.get_store(config)
    for name, target, start, end in (
        ("train", train_out, None, cutoff),
        ("test", test_out, cutoff, None),
    ):
        frame = to_model_frame(
            store.training_set(
                start, end, dataset=Path(dataset), config=config, sequences=True, store=fs
            )
        )
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(target / DATA_FILE, compression="zstd")
        _write_json(target / SPEC_FILE, spec.model_dump(mode="json"))
        out[f"{name}_rows"] = frame.height
        out[f"{name}_frauds"] = int(frame["is_fraud"].sum())
    return out


def read_training_set(path: Path) -> tuple[Any, Any]:
    """``(polars frame, FeatureSpec)`` of a training-set directory."""
    import polars as pl

    from riskml.models.features import FeatureSpec

    path = Path(path)
    if not (path / DATA_FILE).is_file() or not (path / SPEC_FILE).is_file():
        raise StepError(f"{path} is not a training set ({DATA_FILE} + {SPEC_FILE})")
    return pl.read_parquet(path / DATA_FILE), FeatureSpec.model_validate(
        _read_json(path / SPEC_FILE)
    )


# --- training --------------------------------------------------------------------------------


def train_config(config: dict[str, Any] | None) -> Any:
    from riskml.training.pipeline import TrainConfig

    return TrainConfig.model_validate(config or {})


def _split(train_dir: Path, config: Any) -> tuple[Any, Any]:
    from riskml.training.pipeline import split_frame

    frame, spec = read_training_set(train_dir)
    return split_frame(frame, spec, config), spec


def tune_xgb(
    train_dir: Path,
    out: Path,
    *,
    num_samples: int = 4,
    time_budget_s: float = 300,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ray Tune over XGBoost parameters; writes the best parameters to ``out`` (JSON).

    ``num_samples=0`` skips tuning: the configured parameters are written unchanged."""
    cfg = train_config(config)
    base = cfg.xgb.model_dump(mode="json")
    if num_samples <= 0:
        _write_json(Path(out), {"params": base, "tuned": False})
        return {"tuned": False, "trials": 0}
    from riskml.training.tune import TuneSettings, tune_model

    split, _ = _split(train_dir, cfg)
    tr, va = split.train, split.valid
    settings = TuneSettings(
        model="xgb",
        num_samples=num_samples,
        time_budget_s=time_budget_s,
        name=f"xgb-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
        resume=False,
        max_concurrent_trials=1,
    )
    outcome = tune_model(
        {"x_train": tr.tabular, "y_train": tr.y, "x_valid": va.tabular, "y_valid": va.y},
        settings,
        base_params=cfg.xgb,
    )
    _write_json(
        Path(out),
        {"params": outcome.best_params, "tuned": True, "best_config": outcome.best_config},
    )
    return {
        "tuned": True,
        "trials": len(outcome.table),
        "best_metric": outcome.best_metric,
        "metric": settings.target_metric,
        "errors": outcome.errors,
    }


def train_xgb_model(
    train_dir: Path,
    out_dir: Path,
    *,
    params: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """XGBoost on Ray Train (WIRING: the xgb half of ``train_models``)."""
    from riskml.models.xgb import XGBParams
    from riskml.training.xgboost_train import train_xgboost

    cfg = train_config(config)
    split, spec = _split(train_dir, cfg)
    xgb_params = XGBParams.model_validate({**cfg.xgb.model_dump(mode="json"), **(params or {})})
    res = train_xgboost(
        split.train.tabular,
        split.train.y,
        split.valid.tabular,
        split.valid.y,
        params=xgb_params,
        ray_config=cfg.ray,
        feature_names=spec.tabular,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.ubj").write_bytes(res.booster_ubj)
    last = _last_metrics(res.history)
    info = {
        "rounds": res.rounds,
        "best_iteration": res.best_iteration,
        "attempts": res.attempts,
        "params": xgb_params.model_dump(mode="json"),
        "timings": res.timings,
        "last": last,
    }
    _write_json(out_dir / "info.json", info)
    return {"rounds": res.rounds, "best_iteration": res.best_iteration, **last}


def _last_metrics(history: Any) -> dict[str, float]:
    """The last reported row of a training history (a list of metric dicts)."""
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        return {
            str(k): float(v)
            for k, v in history[-1].items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "round"
        }
    return {}


def train_sequence_model(
    train_dir: Path,
    out_dir: Path,
    *,
    params: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    use_gpu: bool = False,
) -> dict[str, Any]:
    """The behavioural sequence model on Ray Train (WIRING: the sequence half of
    ``train_models``)."""
    from riskml.models.sequence import SequenceParams
    from riskml.training.sequence_train import train_sequence

    cfg = train_config(config)
    if use_gpu:
        cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"use_gpu": True})})
    split, _ = _split(train_dir, cfg)
    tr, va = split.train, split.valid
    if tr.sequence is None or va.sequence is None:
        raise StepError("the training set has no sequence features")
    seq_params = SequenceParams.model_validate(
        {**cfg.sequence.model_dump(mode="json"), **(params or {})}
    )
    res = train_sequence(
        tr.tabular,
        tr.sequence,
        tr.y,
        va.tabular,
        va.sequence,
        va.y,
        params=seq_params,
        ray_config=cfg.ray,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "weights.safetensors").write_bytes(res.weights)
    _write_json(out_dir / "architecture.json", res.architecture)
    info = {
        "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run,
        "attempts": res.attempts,
        "params": seq_params.model_dump(mode="json"),
        "timings": res.timings,
    }
    _write_json(out_dir / "info.json", info)
    return {"best_epoch": res.best_epoch, "epochs_run": res.epochs_run}


def calibrate_and_bundle(
    train_dir: Path,
    out_root: Path,
    *,
    xgb_dir: Path | None = None,
    seq_dir: Path | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Calibrate each model on the calib slice, fit the blend on valid, write a bundle
    (WIRING: the second half of ``train_models``)."""
    import numpy as np

    from riskml.models.bundle import ModelArtifacts, save_bundle, verify_bundle
    from riskml.training.pipeline import calibrate_and_blend

    cfg = train_config(config)
    split, spec = _split(train_dir, cfg)
    va, ca = split.valid, split.calib
    raw_valid: dict[str, np.ndarray] = {}
    raw_calib: dict[str, np.ndarray] = {}
    xgb_ubj = seq_weights = seq_arch = None
    training: dict[str, Any] = {}
    if xgb_dir is not None:
        from riskml.models.xgb import from_ubj, predict

        xgb_ubj = (Path(xgb_dir) / "model.ubj").read_bytes()
        booster = from_ubj(xgb_ubj)
        raw_valid["xgb"] = predict(booster, va.tabular)
        raw_calib["xgb"] = predict(booster, ca.tabular)
        training["xgb"] = _read_json(Path(xgb_dir) / "info.json")
    if seq_dir is not None:
        from riskml.models.sequence import load_model, predict_proba

        seq_weights = (Path(seq_dir) / "weights.safetensors").read_bytes()
        seq_arch = _read_json(Path(seq_dir) / "architecture.json")
        module = load_model(seq_arch, seq_weights)
        raw_valid["sequence"] = predict_proba(module, va.tabular, va.sequence)
        raw_calib["sequence"] = predict_proba(module, ca.tabular, ca.sequence)
        training["sequence"] = _read_json(Path(seq_dir) / "info.json")
    if not raw_valid:
        raise StepError("calibrate_and_bundle needs at least one trained model")
    calibrators, blend, metrics = calibrate_and_blend(split, raw_valid, raw_calib, cfg)
    metrics["training"] = training
    artifacts = ModelArtifacts(
        spec=spec,
        calibrators=calibrators,
        blend=blend,
        xgb_ubj=xgb_ubj,
        seq_weights=seq_weights,
        seq_architecture=seq_arch,
        metrics=metrics,
        config=cfg.model_dump(mode="json"),
    )
    path = save_bundle(artifacts, Path(out_root), name=cfg.name)
    manifest = verify_bundle(path)
    return {
        "bundle": str(path),
        "name": cfg.name,
        "version": manifest["version"],
        "models": sorted(raw_valid),
        "valid_blend": metrics["valid_blend"],
    }


def find_bundle(root: Path) -> Path:
    """The bundle directory under an artifact directory (``<root>/<name>/<version>``) or root."""
    root = Path(root)
    if (root / "manifest.json").is_file():
        return root
    found = sorted(p.parent for p in root.glob("*/*/manifest.json"))
    if len(found) != 1:
        raise StepError(f"expected one bundle under {root}, found {len(found)}")
    return found[0]


# --- evaluation ------------------------------------------------------------------------------


def _scores(bundle_dir: Path, test_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    import numpy as np

    from riskml.models.bundle import load_bundle, score_inputs
    from riskml.models.features import extract_inputs

    frame, _ = read_training_set(test_dir)
    bundle = load_bundle(bundle_dir)
    inputs = extract_inputs(frame, bundle.spec)
    if inputs.y is None:
        raise StepError(f"{test_dir} has no labels to backtest against")
    scores = score_inputs(bundle, inputs)
    return np.asarray(inputs.y), np.asarray(scores["score"]), {"bundle": bundle, "frame": frame}


def backtest(
    bundle_dir: Path, test_dir: Path, *, max_fpr: float = 0.01, k: int = 100
) -> dict[str, Any]:
    """Score the bundle on the later test window: headline metrics, ROC points, confusion
    matrix at the threshold that keeps the false-positive rate at ``max_fpr``, and the
    recall per fraud scenario."""
    import numpy as np

    from riskml.evaluation.metrics import threshold_at_fpr
    from riskml.evaluation.scoring import evaluate_bundle

    y, score, ctx = _scores(bundle_dir, test_dir)
    metrics = evaluate_bundle(ctx["bundle"], ctx["frame"], k=k, max_fpr=max_fpr)
    threshold = float(threshold_at_fpr(y, score, max_fpr))
    pred = score >= threshold
    tn = int(((~pred) & (y == 0)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int(((~pred) & (y == 1)).sum())
    tp = int((pred & (y == 1)).sum())
    scenario = np.asarray(ctx["frame"]["fraud_scenario"].to_numpy()).astype(str)
    per_scenario = {}
    for name in sorted(set(scenario[y == 1])):
        mask = scenario == name
        per_scenario[name] = {"frauds": int(mask.sum()), "recall": float(pred[mask].mean())}
    return {
        "metrics": metrics,
        "threshold": threshold,
        "confusion": {"categories": ["genuine", "fraud"], "matrix": [[tn, fp], [fn, tp]]},
        "roc": roc_points(y, score),
        "per_scenario": per_scenario,
        "rows": len(y),
        "bundle": str(bundle_dir),
    }


def roc_points(y: Any, score: Any, max_points: int = 200) -> dict[str, list[float]]:
    """ROC curve thinned to at most ``max_points`` points (kfp's ClassificationMetrics)."""
    import numpy as np
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, score)
    thr = np.where(np.isfinite(thr), thr, 1.0)
    if len(fpr) > max_points:
        idx = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thr = fpr[idx], tpr[idx], thr[idx]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}


def html_report(result: dict[str, Any], gate: dict[str, Any] | None = None) -> str:
    """A self-contained HTML backtest report (metrics tables + ROC chart as an inline PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(result["roc"]["fpr"], result["roc"]["tpr"], label="blend")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC on the backtest window")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode()

    def table(rows: dict[str, Any]) -> str:
        body = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in rows.items()
        )
        return f"<table>{body}</table>"

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>riskml backtest</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td{border:1px solid #ccc;padding:2px 8px}</style></head><body>",
        f"<h1>Backtest: {html.escape(Path(result['bundle']).name)}</h1>",
        f"<p>{result['rows']:,} transactions; threshold {result['threshold']:.4g} "
        "(false-positive rate target)</p>",
    ]
    for name, metrics in result["metrics"].items():
        parts.append(f"<h2>{html.escape(name)}</h2>{table(metrics)}")
    tn, fp = result["confusion"]["matrix"][0]
    fn, tp = result["confusion"]["matrix"][1]
    parts.append(
        f"<h2>Confusion at threshold</h2>{table({'TN': tn, 'FP': fp, 'FN': fn, 'TP': tp})}"
    )
    parts.append(
        "<h2>Recall per fraud scenario</h2>"
        + table(
            {k: f"{v['recall']:.3f} of {v['frauds']}" for k, v in result["per_scenario"].items()}
        )
    )
    if gate is not None:
        parts.append(f"<h2>Gate: {html.escape(gate['decision'])}</h2>{table(gate)}")
    parts.append(f"<img alt='ROC' src='data:image/png;base64,{png}'/></body></html>")
    return "".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


# --- registry, gate, deploy ------------------------------------------------------------------


def registry_root(root: Path | None = None) -> Path:
    return Path(root) if root else get_settings().models_dir / "registry"


def champion(name: str = "fraud", root: Path | None = None) -> dict[str, Any] | None:
    """The deployed bundle's record (``champion.json``), or None before the first deploy."""
    path = registry_root(root) / name / "champion.json"
    return dict(_read_json(path)) if path.is_file() else None


def gate(
    challenger_dir: Path,
    test_dir: Path,
    *,
    margin: float = 0.0,
    metric: str = DEFAULT_GATE_METRIC,
    name: str = "fraud",
    root: Path | None = None,
) -> dict[str, Any]:
    """Challenger vs the current champion, both scored on the same backtest window.

    ``deploy`` when there is no champion, or when the challenger's ``metric`` beats the
    champion's by more than ``margin``; else ``keep``."""
    from riskml.evaluation.metrics import evaluate

    y, score, _ = _scores(challenger_dir, test_dir)
    challenger = float(evaluate(y, score)[metric])
    current = champion(name, root)
    out: dict[str, Any] = {"metric": metric, "margin": margin, "challenger": challenger}
    if current is None:
        out.update(decision="deploy", champion=None, reason="no champion yet")
        return out
    cy, cscore, _ = _scores(Path(current["path"]), test_dir)
    incumbent = float(evaluate(cy, cscore)[metric])
    better = challenger > incumbent + margin
    out.update(
        decision="deploy" if better else "keep",
        champion=incumbent,
        champion_version=current.get("version"),
        reason=f"challenger {challenger:.4f} vs champion {incumbent:.4f} (+{margin:g} needed)",
    )
    return out


def register(
    bundle_dir: Path,
    *,
    metrics: dict[str, Any] | None = None,
    decision: str | None = None,
    root: Path | None = None,
    log_mlflow: bool = True,
    experiment: str = "riskml-pipeline",
) -> dict[str, Any]:
    """Copy the verified bundle into the registry, append it to ``index.json``, log to MLflow."""
    from riskml.models.bundle import verify_bundle

    manifest = verify_bundle(bundle_dir)
    name, version = str(manifest["name"]), str(manifest["version"])
    target = registry_root(root) / name / version
    if not target.exists():
        tmp = target.with_name(f".{version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(bundle_dir, tmp)
        tmp.replace(target)
    verify_bundle(target)
    run_id = None
    if log_mlflow:
        from riskml.training.tracking import log_training_run

        run_id = log_training_run(
            experiment,
            params={"bundle": version, "decision": decision or ""},
            metrics=metrics or {},
            bundle_path=target,
        )
    index_path = target.parent / "index.json"
    index = _read_json(index_path) if index_path.is_file() else []
    index = [e for e in index if e.get("version") != version]
    index.append(
        {
            "version": version,
            "path": str(target.resolve()),
            "registered_at": dt.datetime.now(dt.UTC).isoformat(),
            "decision": decision,
            "mlflow_run_id": run_id,
        }
    )
    _write_json(index_path, index)
    return {
        "name": name,
        "version": version,
        "path": str(target.resolve()),
        "mlflow_run_id": run_id,
    }


def deploy(
    bundle_dir: Path,
    *,
    target: str = "local",
    serve: bool = False,
    root: Path | None = None,
    rayservice: str = "riskml-scoring",
    namespace: str = "riskml-serving",
    cluster_bundle_dir: str | None = None,
) -> dict[str, Any]:
    """Make ``bundle_dir`` the champion and serve it.

    ``local``: write ``champion.json``; with ``serve`` run the Serve app (``serving.app:
    build_app``) on the Ray this process connects to. ``cluster``: point the RayService's
    ``serveConfigV2`` app args at ``cluster_bundle_dir`` (a path on the serving pods' models
    volume) through the kubernetes client; KubeRay rolls the Serve app."""
    from riskml.models.bundle import verify_bundle

    manifest = verify_bundle(bundle_dir)
    name, version = str(manifest["name"]), str(manifest["version"])
    record = {
        "name": name,
        "version": version,
        "path": str(Path(bundle_dir).resolve()),
        "deployed_at": dt.datetime.now(dt.UTC).isoformat(),
        "target": target,
    }
    out: dict[str, Any] = dict(record)
    if target == "cluster":
        out["rayservice"] = update_rayservice_bundle(
            cluster_bundle_dir or f"/models/{name}/{version}", name=rayservice, namespace=namespace
        )
    elif target == "local" and serve:
        out["serve"] = serve_locally(Path(bundle_dir))
    elif target not in ("local", "none"):
        raise StepError(f"unknown deploy target {target!r}; choose local, cluster or none")
    _write_json(registry_root(root) / name / "champion.json", record)
    return out


def serve_locally(bundle_dir: Path, *, app_name: str = "riskml") -> dict[str, Any]:
    """Run the scoring app on the Ray this process uses (``RISKML_RAY_ADDRESS`` / local)."""
    from ray import serve

    from riskml.orchestration.ray_task import dashboard_url, local_ray

    try:
        from serving.app import build_app
    except ImportError as exc:
        raise StepError(f"the Serve app is not available (serving.app: {exc})") from exc
    local_ray()
    try:
        app = build_app(
            {"bundle_dir": str(bundle_dir), "online_store": get_settings().online_store}
        )
    except ValueError as exc:  # pydantic's ValidationError included
        raise StepError(f"serving.app cannot serve the bundle {bundle_dir}: {exc}") from exc
    serve.run(app, name=app_name, route_prefix="/", blocking=False)
    return {"app": app_name, "dashboard_url": dashboard_url(), "http": "http://127.0.0.1:8000/"}


def update_rayservice_bundle(
    bundle_dir: str,
    *,
    name: str = "riskml-scoring",
    namespace: str = "riskml-serving",
    app: str = "riskml",
    api_client: Any = None,
) -> dict[str, Any]:
    """Set ``args.bundle_dir`` of Serve app ``app`` in the RayService's ``serveConfigV2``."""
    import yaml
    from kubernetes import client

    from riskml.orchestration.rayjob import kube_api_client

    api = client.CustomObjectsApi(api_client or kube_api_client())
    obj = api.get_namespaced_custom_object("ray.io", "v1", namespace, "rayservices", name)
    text = (obj.get("spec") or {}).get("serveConfigV2")
    if not text:
        raise StepError(f"RayService {namespace}/{name} has no serveConfigV2")
    doc = yaml.safe_load(text)
    apps = [a for a in doc.get("applications", []) if a.get("name") == app]
    if not apps:
        raise StepError(f"RayService {namespace}/{name} has no Serve application {app!r}")
    previous = (apps[0].get("args") or {}).get("bundle_dir")
    apps[0].setdefault("args", {})["bundle_dir"] = bundle_dir
    patch = {"spec": {"serveConfigV2": yaml.safe_dump(doc, sort_keys=False)}}
    api.patch_namespaced_custom_object("ray.io", "v1", namespace, "rayservices", name, patch)
    return {"rayservice": f"{namespace}/{name}", "previous": previous, "bundle_dir": bundle_dir}


def finite_metrics(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a flat dict as floats (kfp's Metrics cannot hold inf/NaN: the
    protobuf JSON encoding of an artifact's metadata rejects them)."""
    import math

    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], float]:
    """``(fn(*args, **kwargs), wall seconds)`` — used by the components and the benchmark."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
