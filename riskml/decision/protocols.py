"""The small interfaces serving is built against, and the feature-contract check.

The real implementations (the Feast online store, the verified model bundle's XGBoost and torch
models) plug in behind these; tests and benchmarks use stand-ins with the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class FeatureSourceUnavailable(RuntimeError):
    """The online feature store cannot be reached (the ladder answers from the rules rung)."""


class FeatureContractMismatch(ValueError):
    """The model's feature contract differs from the feature source's (names or order)."""


@dataclass
class FeatureRow:
    """Features of one transaction: the tabular vector in contract order, the behavioural
    sequence (``(L, F)`` float32 array, or None when the source has none) and entity flags.

    ``write_back``: values the source wants back with the transaction at write-back time (merged
    into the written-back transaction), so it need not read again what this fetch already read
    (the Feast source: the transaction's ``terminal_risk`` and the customer's history as read,
    ``history_base``, whose version the store checks before folding into it)."""

    tabular: list[float]
    sequence: Any = None
    flags: dict[str, int] = field(default_factory=dict)
    write_back: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class FeatureSource(Protocol):
    """A source may also set ``reads_async = True`` and define ``async get_many_async``
    (same rows and errors as ``get_many``): its reads are then awaited on the colocated
    Ingress's event loop instead of a thread pool (``serving.inprocess``); they must not
    block the loop (non-blocking I/O; the caller's timeout cancels them)."""

    feature_names: Sequence[str]

    def get_many(self, requests: Sequence[Mapping[str, Any]]) -> list[FeatureRow]:
        """One row per request, same order. Raises :class:`FeatureSourceUnavailable` (or the
        store's own unavailability error) when the store is down."""
        ...

    def write_back(self, tx: Mapping[str, Any]) -> bool:
        """Fold a decided transaction into the customer's online state; idempotent by
        ``tx_id`` (returns False when it was already applied)."""
        ...


@runtime_checkable
class TabularScorer(Protocol):
    """A scorer may also set ``cpu_bounded = True``: it does bounded CPU work with no I/O and
    no lock (compiled trees), so a colocated Ingress calls it on its event loop instead of a
    thread pool (``serving.inprocess``). Without it, a scorer is called off the loop."""

    version: str
    feature_names: Sequence[str]

    def predict(self, x: Any) -> Any:
        """Uncalibrated fraud probabilities for an ``(n, T)`` float32 matrix."""
        ...

    def contributions(self, x: Any, *, exact: bool = False) -> Any:
        """``(n, T + 1)`` per-feature log-odds contributions (last column: bias)."""
        ...


@runtime_checkable
class SequenceScorer(Protocol):
    """``cpu_bounded`` as for :class:`TabularScorer` (the fused NumPy GRU sets it)."""

    version: str

    def predict(self, tabular: Any, sequence: Any) -> Any:
        """Uncalibrated probabilities for ``(n, T)`` tabular and ``(n, L, F)`` sequence inputs."""
        ...


def check_feature_contract(model_names: Sequence[str], source_names: Sequence[str]) -> None:
    """Refuse a model whose feature names/order differ from the feature source's contract."""
    model, source = list(model_names), list(source_names)
    if model == source:
        return
    missing = [n for n in model if n not in source]
    extra = [n for n in source if n not in model]
    parts = []
    if missing:
        parts.append(f"model needs features the source lacks: {missing}")
    if extra:
        parts.append(f"source serves features the model does not use: {extra}")
    if not parts:
        first = next(i for i, (a, b) in enumerate(zip(model, source, strict=True)) if a != b)
        parts.append(
            f"same features in a different order (first difference at position {first}: "
            f"model {model[first]!r}, source {source[first]!r})"
        )
    raise FeatureContractMismatch("feature contract mismatch: " + "; ".join(parts))


def check_model_contracts(models: Mapping[str, Sequence[str]], source_names: Sequence[str]) -> None:
    """:func:`check_feature_contract` for every tabular model version (version -> its feature
    names); the refusal names the version."""
    for version, names in models.items():
        try:
            check_feature_contract(names, source_names)
        except FeatureContractMismatch as exc:
            raise FeatureContractMismatch(f"tabular model {version!r} refused: {exc}") from exc
