"""riskml.features: batch features, the Feast repository, training sets and online features.

Light to import: constants, the contract and the typed errors load eagerly; everything that needs
polars/Feast loads on first attribute access.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from riskml.features.definitions import (
    FEATURE_SERVICE,
    ONLINE_FEATURE_SERVICE,
    SequenceSpec,
    feature_contract,
    feature_names,
    sequence_contract,
)
from riskml.features.errors import (
    FeatureStoreAuthError,
    FeatureStoreError,
    FeatureStoreUnavailable,
)

_LAZY = {
    "build_features": "riskml.features.batch",
    "compute_features": "riskml.features.batch",
    "BuildSummary": "riskml.features.batch",
    "FeatureBuildError": "riskml.features.batch",
    "StoreConfig": "riskml.features.store",
    "repo_config": "riskml.features.store",
    "get_store": "riskml.features.store",
    "apply": "riskml.features.store",
    "materialize": "riskml.features.store",
    "training_set": "riskml.features.store",
    "training_sequences": "riskml.features.store",
    "OnlineFeatures": "riskml.features.online",
}

__all__ = [
    "FEATURE_SERVICE",
    "ONLINE_FEATURE_SERVICE",
    "FeatureStoreAuthError",
    "FeatureStoreError",
    "FeatureStoreUnavailable",
    "SequenceSpec",
    "feature_contract",
    "feature_names",
    "sequence_contract",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'riskml.features' has no attribute {name!r}")
