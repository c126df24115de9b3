"""Registry and deployment: register the bundle (registry + MLflow); deploy the champion."""

from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.base import component


@component
def register(
    bundle: Input[Model],
    backtest_metrics: Input[Metrics],
    registered: Output[Model],
    decision: str = "",
    log_mlflow: bool = True,
) -> None:
    """Copy the verified bundle into the model registry (``RISKML_HOME/models/registry``) and
    log it to MLflow with its backtest metrics and the gate decision (side effect: never
    cached)."""
    import json
    from pathlib import Path

    from components.base import finite_metrics
    from riskml.models.bundle import find_bundle
    from riskml.registry.local import register as register_bundle

    path = find_bundle(Path(bundle.path))
    record = register_bundle(
        path,
        metrics=finite_metrics(dict(backtest_metrics.metadata)),
        decision=decision or None,
        log_mlflow=log_mlflow,
    )
    Path(registered.path).write_text(json.dumps(record, indent=2))
    registered.metadata.update(record)
    print(json.dumps(record))


@component
def deploy(
    registered: Input[Model],
    deployment: Output[Artifact],
    target: str = "local",
    cluster_bundle_dir: str = "",
) -> None:
    """Make the registered bundle the champion. ``local``: champion record; ``cluster``: also
    update the RayService's serveConfigV2 (side effect: never cached)."""
    import json
    from pathlib import Path

    from riskml.orchestration.deploy import deploy as deploy_bundle

    record = json.loads(Path(registered.path).read_text())
    out = deploy_bundle(
        Path(record["path"]),
        target=target,
        cluster_bundle_dir=cluster_bundle_dir or None,
    )
    Path(deployment.path).write_text(json.dumps(out, indent=2))
    deployment.metadata.update({k: v for k, v in out.items() if isinstance(v, str)})
    print(json.dumps(out))
