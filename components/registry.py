"""Registry and deployment: register the bundle in the MLflow Model Registry; deploy it."""

from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.base import component


@component
def register(
    bundle: Input[Model],
    backtest_metrics: Input[Metrics],
    registered: Output[Model],
    decision: str = "",
) -> None:
    """Register the verified bundle as a new version in the MLflow Model Registry (its
    artifacts, its digest as a tag, the backtest metrics on its run, the gate decision; alias
    ``challenger``). Side effect: never cached."""
    import json
    from pathlib import Path

    from riskml.metrics import finite_metrics
    from riskml.models.bundle import find_bundle
    from riskml.registry.store import register as register_bundle

    ref = register_bundle(
        find_bundle(Path(bundle.path)),
        metrics=finite_metrics(dict(backtest_metrics.metadata)),
        decision=decision or None,
    )
    record = ref.record()
    Path(registered.path).write_text(json.dumps(record, indent=2))
    registered.metadata.update({k: v for k, v in record.items() if v is not None})
    print(json.dumps(record))


@component
def deploy(
    registered: Input[Model],
    gate_metrics: Input[Metrics],
    deployment: Output[Artifact],
    target: str = "local",
) -> None:
    """Make the registered version the champion, if the champion is still the one the gate
    compared against; ``cluster``: also roll the RayService to it, wait for health, roll back on
    failure. Side effect: never cached."""
    import json
    from pathlib import Path

    from riskml.orchestration.release import release
    from riskml.registry.store import ModelRef

    record = json.loads(Path(registered.path).read_text())
    ref = ModelRef.from_record(record)
    expected = str(gate_metrics.metadata.get("champion_version") or "") or None
    out = release(ref, expected=expected, target=target)
    Path(deployment.path).write_text(json.dumps(out, indent=2))
    deployment.metadata.update({k: v for k, v in out.items() if isinstance(v, str)})
    print(json.dumps(out))
