"""Features: batch feature sources, Feast apply + materialise, point-in-time training sets."""

from kfp.dsl import Artifact, Dataset, Input, Output

from components.base import component


@component
def build_features(dataset: Input[Dataset], features: Output[Dataset]) -> None:
    """Customer windows, terminal/device snapshots, history state -> Feast sources (Parquet)."""
    import json
    from pathlib import Path

    from riskml.features.batch import build_feature_sources

    summary = build_feature_sources(Path(dataset.path), Path(features.path))
    features.metadata.update(summary)
    print(json.dumps(summary))


@component
def feast_materialize(features: Input[Dataset], store: Output[Artifact]) -> None:
    """``feast apply`` the feature definitions over these sources and materialise them into the
    online store (side effect: never cached)."""
    import json
    from pathlib import Path

    from riskml.features.store import apply_and_materialize

    summary = apply_and_materialize(Path(features.path))
    Path(store.path).write_text(json.dumps(summary, indent=2))
    store.metadata.update(summary)
    print(json.dumps(summary))


@component
def training_sets(
    features: Input[Dataset],
    dataset: Input[Dataset],
    store: Input[Artifact],
    train_set: Output[Dataset],
    test_set: Output[Dataset],
    test_days: int = 7,
) -> None:
    """Point-in-time training set (before the last ``test_days`` days) and backtest set (those
    days) from the FeatureService ``fraud_v1``. ``store`` orders this after materialisation."""
    import json
    from pathlib import Path

    from riskml.training.dataset import make_training_sets

    summary = make_training_sets(
        Path(features.path),
        Path(dataset.path),
        Path(train_set.path),
        Path(test_set.path),
        test_days=test_days,
    )
    train_set.metadata.update({k: v for k, v in summary.items() if not k.startswith("test")})
    test_set.metadata.update({k: v for k, v in summary.items() if not k.startswith("train")})
    print(json.dumps(summary))
