"""Typed errors of the feature store (importable without Feast)."""

from __future__ import annotations


class FeatureStoreError(RuntimeError):
    """The feature store is not set up or was asked something it cannot answer."""


class FeatureStoreUnavailable(FeatureStoreError):
    """The online store (SQLite file or Redis) cannot be reached. Serving catches this one."""


class FeatureStoreAuthError(FeatureStoreError):
    """The online store refused our credentials (Redis AUTH / ACL). A configuration error, not
    an outage: raised at start-up, never answered from the rules like an unreachable store."""
