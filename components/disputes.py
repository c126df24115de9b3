"""Disputes line components: the dispute set, evidence extraction, the outcome model's features,
training, calibration, the backtest, the gate against the registry's champion and the release
of a ``disputes-outcome`` bundle.

Thin adapters, like the fraud and credit components: each body imports inside and calls one
task of :mod:`components.disputes_tasks` (the disputes line's glue of the core packages, shared
with the ``riskml disputes`` commands and the disputes demo). Registration reuses
:func:`components.registry.register` (any bundle registers the same way). ``train_config_json``
is a :class:`components.disputes_tasks.DisputesRunConfig` (empty: its defaults).
"""

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.base import component


@component
def load_disputes(
    disputes: Output[Dataset],
    size: str = "tiny",
    seed: int = 11,
    source_uri: str = "",
    documents_uri: str = "",
    mapping_json: str = "",
) -> None:
    """Import the dispute records at ``source_uri`` with their documents under
    ``documents_uri`` (``mapping_json``: the column mapping) when given, else simulate a ``size``
    (tiny | demo) dispute set with ``seed``: records, evidence PDFs, the customers' history."""
    import json
    from pathlib import Path

    from components.disputes_tasks import dispute_set_task

    summary = dispute_set_task(
        Path(disputes.path),
        size=size,
        seed=seed,
        source_uri=source_uri,
        documents_uri=documents_uri,
        mapping=json.loads(mapping_json) if mapping_json else None,
    )
    disputes.metadata.update(summary)
    print(json.dumps(summary))


@component
def extract_evidence(
    disputes: Input[Dataset],
    evidence: Output[Dataset],
    metrics: Output[Metrics],
    train_config_json: str = "",
) -> None:
    """Read every dispute's documents into evidence with per-field provenance and confidence
    (the configured extractor: the rules and the learned layout model by default, offline); F1
    against the simulator's truth."""
    import json
    from pathlib import Path

    from components.disputes_tasks import DisputesRunConfig, extract_task
    from riskml.metrics import finite_metrics

    config = DisputesRunConfig.parse(train_config_json)
    out = extract_task(Path(disputes.path), Path(evidence.path), extraction=config.extraction)
    for key, value in finite_metrics(out).items():
        metrics.log_metric(key, value)
    evidence.metadata.update({k: v for k, v in out.items() if isinstance(v, str | int)})
    print(json.dumps(out))


@component
def dispute_features(
    disputes: Input[Dataset],
    evidence: Input[Dataset],
    features: Output[Dataset],
    metrics: Output[Metrics],
    train_config_json: str = "",
) -> None:
    """The outcome model's features of every dispute (evidence, dispute, customer history,
    compelling evidence, requirement report), as of its opening."""
    import json
    from pathlib import Path

    from components.disputes_tasks import DisputesRunConfig, features_task
    from riskml.metrics import finite_metrics

    out = features_task(
        Path(disputes.path),
        Path(evidence.path),
        Path(features.path),
        config=DisputesRunConfig.parse(train_config_json),
    )
    for key, value in finite_metrics(out).items():
        metrics.log_metric(key, value)
    print(json.dumps(out))


@component
def train_outcome_model(
    disputes: Input[Dataset],
    evidence: Input[Dataset],
    features: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    train_config_json: str = "",
) -> None:
    """Train the outcome model (XGBoost) on the disputes whose outcome was known at the start of
    the held-out window; the model before calibration and its time-ordered split."""
    import json
    from pathlib import Path

    from components.disputes_tasks import DisputesRunConfig, train_task
    from riskml.metrics import finite_metrics

    out = train_task(
        Path(disputes.path),
        Path(evidence.path),
        Path(features.path),
        Path(model.path),
        config=DisputesRunConfig.parse(train_config_json),
    )
    for key, value in finite_metrics({**out["split"], **out["info"]}).items():
        metrics.log_metric(key, value)
    print(json.dumps(out, default=str))


@component
def calibrate_outcome(
    disputes: Input[Dataset],
    evidence: Input[Dataset],
    features: Input[Dataset],
    model: Input[Model],
    bundle: Output[Model],
    metrics: Output[Metrics],
    train_config_json: str = "",
) -> None:
    """Calibrate the model on the later slice (and the rules baseline beside it), train the
    reason-family classifier, write the ``disputes-outcome`` bundle with the policy."""
    import json
    from pathlib import Path

    from components.disputes_tasks import DisputesRunConfig, calibrate_task
    from riskml.metrics import finite_metrics

    out = calibrate_task(
        Path(disputes.path),
        Path(evidence.path),
        Path(features.path),
        Path(model.path),
        Path(bundle.path),
        config=DisputesRunConfig.parse(train_config_json),
    )
    for key, value in finite_metrics(out["metrics"]).items():
        metrics.log_metric(key, value)
    bundle.metadata.update({"name": out["name"], "version": out["version"]})
    print(json.dumps({"bundle": out["bundle_dir"], "metrics": out["metrics"]}))


@component
def backtest_disputes(
    disputes: Input[Dataset],
    evidence: Input[Dataset],
    features: Input[Dataset],
    bundle: Input[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
    train_config_json: str = "",
) -> None:
    """Time-ordered backtest (outcome model vs rules baseline: AUC, AP, ECE; the policy vs
    "always represent" / "always refund" by expected value) and the bundle's held-out report."""
    import json
    from pathlib import Path

    from components.disputes_tasks import DisputesRunConfig, backtest_task
    from riskml.metrics import finite_metrics
    from riskml.models.bundle import find_bundle

    out = backtest_task(
        Path(disputes.path),
        Path(evidence.path),
        Path(features.path),
        find_bundle(Path(bundle.path)),
        config=DisputesRunConfig.parse(train_config_json),
    )
    for key, value in finite_metrics(out["metrics"]).items():
        metrics.log_metric(key, value)
    Path(report.path).write_text(out["html"])
    print(json.dumps(out["metrics"]))


@component
def gate_disputes(
    bundle: Input[Model],
    disputes: Input[Dataset],
    evidence: Input[Dataset],
    metrics: Output[Metrics],
    margin: float = 0.0,
    metric: str = "auc",
    train_config_json: str = "",
) -> str:
    """``deploy`` if the challenger beats the registry's ``disputes-outcome`` champion on
    ``metric`` (auc | ap | policy_ev_per_dispute), both scored on the challenger's held-out
    disputes, by more than ``margin`` — or if there is no champion; else ``keep``."""
    import json
    from pathlib import Path

    from components.disputes_tasks import DisputesRunConfig, gate_task
    from riskml.metrics import finite_metrics
    from riskml.models.bundle import find_bundle

    out = gate_task(
        find_bundle(Path(bundle.path)),
        Path(disputes.path),
        Path(evidence.path),
        margin=margin,
        metric=metric,
        config=DisputesRunConfig.parse(train_config_json),
    )
    values = {
        "challenger": out["challenger"],
        "champion": -1.0 if out["champion"] is None else out["champion"],
        "deploy": 1.0 if out["decision"] == "deploy" else 0.0,
    }
    for key, val in finite_metrics(values).items():
        metrics.log_metric(key, val)
    metrics.metadata["reason"] = out["reason"]
    metrics.metadata["metric"] = out["metric"]
    metrics.metadata["champion_version"] = out["champion_version"] or ""
    print(json.dumps(out))
    return str(out["decision"])


@component
def deploy_disputes(
    registered: Input[Model],
    gate_metrics: Input[Metrics],
    deployment: Output[Artifact],
    target: str = "local",
    app: str = "disputes",
    uri_arg: str = "model_uri",
) -> None:
    """Make the registered bundle the ``disputes-outcome`` champion if the champion is still the
    one the gate compared against; ``cluster``: also roll the RayService's Serve app ``app`` to
    it (``uri_arg`` and its digest), roll back on failure. Side effect: never cached."""
    import json
    from pathlib import Path

    from riskml.orchestration.release import release
    from riskml.registry.store import ModelRef

    ref = ModelRef.from_record(json.loads(Path(registered.path).read_text()))
    expected = str(gate_metrics.metadata.get("champion_version") or "") or None
    out = release(ref, expected=expected, target=target, app=app, uri_arg=uri_arg)
    Path(deployment.path).write_text(json.dumps(out, indent=2))
    deployment.metadata.update({k: v for k, v in out.items() if isinstance(v, str)})
    print(json.dumps(out))
