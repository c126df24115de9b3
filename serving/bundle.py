"""Serving a verified model bundle over the Feast online store.

``build_app({"bundle_dir": ..., "online_store": "sqlite"|"redis"})`` expands, through
:func:`bundle_app_args`, into the component specs below, so a bundle plugs into the deployments
exactly like any other component::

    feature_source   FeastFeatureSource   riskml.features.OnlineFeatures (FeatureService
                                          ``fraud_v1_online``), write-back through the push path
    tabular_models   BundleXGBoost        the bundle's booster, scored by riskml.models.xgb.predict
    sequence_model   BundleSequence       the bundle's torch module (riskml.models.sequence)
    calibrators      bundle_calibrator    the bundle's per-model calibrators
    blend            BundleBlend          the bundle's fitted blend (weighted or stacked)

Every piece calls the same functions :func:`riskml.models.bundle.score` calls, so a served
decision's score equals in-process scoring of the same bundle on the same features (tested to
1e-6 over HTTP on SQLite and Redis). Each replica loads and verifies the bundle itself
(:func:`riskml.models.bundle.load_bundle`: a changed byte refuses the bundle); a bundle whose
feature contract differs from the online FeatureService is refused by name and position.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from riskml.decision.protocols import FeatureContractMismatch, FeatureRow

#: Bundle model name -> the decision layer's model name (``DeciderConfig.blend_weights`` keys).
DECISION_NAMES: dict[str, str] = {"xgb": "xgboost", "sequence": "sequence"}


@functools.lru_cache(maxsize=4)
def _load(bundle_dir: str, digest: str | None = None) -> Any:
    """One verified load per replica process, shared by the components it hosts.

    ``bundle_dir`` is a local folder or a pinned registry URI (``models:/fraud/7``): the replica
    downloads it into its own model cache (every pod starts empty) and verifies it against the
    registry's digest and ``digest`` (the one the serve config pins)."""
    from riskml.models.bundle import load_bundle

    if bundle_dir.startswith("models:/"):
        from riskml.registry.store import fetch, resolve

        ref = resolve(bundle_dir)
        return load_bundle(fetch(ref, digest=digest), nthread=1, digest=ref.digest)
    return load_bundle(bundle_dir, nthread=1, digest=digest)


def _one_thread() -> None:
    """A replica serves one request stream on a small CPU share: no OpenMP or BLAS thread pools
    (the fused GRU's small matrix products: with OpenBLAS's default pool a 64-row call took
    9-110 ms on a busy 2-core machine instead of ~2 ms). Once per process."""
    global _THREADS_LIMITED
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    if not _THREADS_LIMITED:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
        _THREADS_LIMITED = True


_THREADS_LIMITED = False


def _feature_rows(names: Sequence[str], fetched: Sequence[Any]) -> list[FeatureRow]:
    """:class:`FeatureRow` s of :meth:`OnlineFeatures.fetch_many`'s vectors (contract order)."""
    from riskml.features.definitions import SEQUENCE_FEATURE

    return [
        FeatureRow(
            tabular=[float(vec[n]) for n in names],
            sequence=vec[SEQUENCE_FEATURE],
            flags=dict(flags),
            # the write-back folds the transaction's terminal risk into the customer's history
            # as read here (the store checks it is still current): no second read of the
            # terminal view nor of the history
            write_back={"terminal_risk": float(vec["term_risk_30d"]), "history_base": base},
        )
        for vec, flags, base in fetched
    ]


class FeastFeatureSource:
    """:class:`riskml.decision.protocols.FeatureSource` over the Feast online store."""

    def __init__(
        self,
        store: Mapping[str, Any] | None = None,
        redis_retries: int = 1,
        feature_service: str | None = None,
    ) -> None:
        from riskml.features.online import OnlineFeatures
        from riskml.features.store import StoreConfig

        self.config = StoreConfig.model_validate(dict(store or {})).resolved()
        self.online = OnlineFeatures(
            self.config, redis_retries=redis_retries, feature_service=feature_service
        )
        self.feature_names: list[str] = list(self.online.feature_names)

    @property
    def reads_async(self) -> bool:
        """Whether :meth:`get_many_async` reads on the caller's event loop, with no thread
        (a plain Redis online store; :meth:`OnlineFeatures.fetch_many_async`)."""
        return self.online.reads_async

    def get_many(self, requests: Sequence[Mapping[str, Any]]) -> list[FeatureRow]:
        return _feature_rows(self.feature_names, self.online.fetch_many(requests))

    async def get_many_async(self, requests: Sequence[Mapping[str, Any]]) -> list[FeatureRow]:
        """:meth:`get_many` with the store's round trip awaited on the running event loop."""
        fetched = await self.online.fetch_many_async(requests)
        return _feature_rows(self.feature_names, fetched)

    def write_back(self, tx: Mapping[str, Any]) -> bool:
        return self.online.write_back(tx)

    def write_back_many(self, txs: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Several write-backs in one history read and one store write (same customer twice
        in a batch included)."""
        return self.online.write_back_many(txs)

    def fold_many(self, txs: Sequence[Mapping[str, Any]]) -> list[str]:
        """:meth:`write_back_many` with each one's outcome: applied, duplicate, late (older
        than the history's retention) or future (beyond the allowed clock skew)."""
        return self.online.fold_many(txs)


class BundleXGBoost:
    """:class:`riskml.decision.protocols.TabularScorer` over a bundle's booster."""

    def __init__(
        self, bundle_dir: str, version: str | None = None, digest: str | None = None
    ) -> None:
        bundle = _load(str(bundle_dir), digest)
        if bundle.booster is None:
            raise ValueError(f"bundle {bundle_dir} has no XGBoost model")
        self.booster = bundle.booster
        self.feature_names: list[str] = list(bundle.spec.tabular)
        self.version = version or bundle.version
        from riskml.models.xgb import iteration_range
        from serving.scorers import compile_booster, is_logistic

        # the trees of predict(): reason codes explain the score the decision used
        self._trees = iteration_range(self.booster)
        self._logistic = is_logistic(self.booster)
        self._compiled = compile_booster(self.booster, self._trees, logistic=self._logistic)
        #: bounded NumPy work, no I/O: the colocated Ingress calls it on its event loop. A
        #: subclass may change what a call does (sleep, call out): it declares for itself.
        self.cpu_bounded = self._compiled is not None and type(self) is BundleXGBoost

    def predict(self, x: Any) -> np.ndarray:
        from riskml.models.xgb import predict

        if self._compiled is not None:  # the same probabilities (1e-6), a fifth of the time
            from scipy.special import expit

            return np.asarray(expit(self._compiled.margin(x)), np.float64)
        return predict(self.booster, np.ascontiguousarray(x, dtype=np.float32))

    def contributions(self, x: Any, *, exact: bool = False) -> np.ndarray:
        from serving.scorers import booster_contributions

        if self._compiled is not None and not exact:  # what explain() gives
            return self._compiled.explain(x)[1]
        return booster_contributions(self.booster, x, 1, exact, self._trees)

    def explain(self, x: Any, *, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(predict(x), contributions(x))`` from one pass (:func:`booster_explain`)."""
        from serving.scorers import booster_explain

        return booster_explain(
            self.booster, x, 1, exact, self._trees, logistic=self._logistic, compiled=self._compiled
        )


class BundleSequence:
    """:class:`riskml.decision.protocols.SequenceScorer` over a bundle's behavioural model.

    The online store serves the sequence as one ``(SEQ_LEN, len(SEQ_FIELDS))`` array; the bundle
    reads one ``seq_<field>`` column per field. The two must name the same fields in the same
    order and length, else the bundle is refused."""

    def __init__(self, bundle_dir: str, digest: str | None = None) -> None:
        from riskml.features.definitions import SEQ_FIELDS, SEQ_LEN

        _one_thread()
        bundle = _load(str(bundle_dir), digest)
        if bundle.seq_model is None:
            raise ValueError(f"bundle {bundle_dir} has no sequence model")
        fields = [n.removeprefix("seq_") for n in bundle.spec.sequence]
        if fields != list(SEQ_FIELDS) or bundle.spec.seq_len != SEQ_LEN:
            raise FeatureContractMismatch(
                f"bundle {bundle_dir}: sequence contract {fields} x {bundle.spec.seq_len} "
                f"differs from the online store's {list(SEQ_FIELDS)} x {SEQ_LEN}"
            )
        self.model = bundle.seq_model
        self.version = f"{bundle.version}/sequence"
        #: the GRU's forward pass fused into a few NumPy calls (riskml.models.sequence.FusedGRU:
        #: torch's probabilities to 1e-6, ~5x less CPU on one row); None: torch scores
        self.fused = _fused(self.model)
        #: bounded NumPy work, no I/O: the colocated Ingress calls it on its event loop (a
        #: subclass declares for itself, as for BundleXGBoost)
        self.cpu_bounded = self.fused is not None and type(self) is BundleSequence

    def predict(self, tabular: Any, sequence: Any) -> np.ndarray:
        from riskml.models.sequence import predict_proba

        if self.fused is not None:
            return self.fused.predict_proba(tabular, sequence)
        return predict_proba(
            self.model,
            np.ascontiguousarray(tabular, dtype=np.float32),
            np.ascontiguousarray(sequence, dtype=np.float32),
        )


def _fused(model: Any) -> Any:
    """:class:`riskml.models.sequence.FusedGRU` of ``model``, or None (a Transformer encoder:
    torch scores it)."""
    from riskml.models.sequence import FusedGRU

    try:
        return FusedGRU.from_module(model)
    except ValueError:
        return None


def bundle_calibrator(bundle_dir: str, model: str, digest: str | None = None) -> Any:
    """The bundle's calibrator of ``model`` (``xgb`` | ``sequence``) as a float -> float."""
    calibrator = _load(str(bundle_dir), digest).calibrators[model]

    def calibrate(p: float) -> float:
        return calibrator.one(p)  # transform() of one value, without NumPy's per-call cost

    return calibrate


class BundleBlend:
    """The bundle's fitted blend over calibrated probabilities keyed by decision model name."""

    def __init__(self, bundle_dir: str, digest: str | None = None) -> None:
        self.blend = _load(str(bundle_dir), digest).blend
        self.models = [DECISION_NAMES[m] for m in self.blend.models]

    def __call__(self, calibrated: Mapping[str, float]) -> float:
        return self.blend.one({m: calibrated[DECISION_NAMES[m]] for m in self.blend.models})


def bundle_app_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the component specs of ``args`` (``serving.config.AppArgs`` as a dict) from its
    ``model_uri`` (the registry: ``models:/fraud@champion`` or a pinned ``models:/fraud/7``) or
    its ``bundle_dir`` (a local folder). The bundle is fetched and verified here, before anything
    is deployed; an alias is resolved once, so every replica loads the same pinned version."""
    from riskml.features.definitions import FEATURE_SERVICES
    from riskml.models.bundle import verify_bundle

    out = dict(args)
    digest = out.get("model_digest")
    if out.get("model_uri"):
        from riskml.registry.store import fetch, resolve

        ref = resolve(str(out["model_uri"]))
        local = fetch(ref, digest=digest)
        out["model_uri"], out["model_digest"] = ref.model_uri, ref.digest
        bundle_dir, digest = ref.model_uri, ref.digest
        manifest = verify_bundle(local, digest=digest)
    else:
        bundle_dir = str(out["bundle_dir"])
        manifest = verify_bundle(bundle_dir, digest=digest)
    models = set(manifest.get("models", {}))
    if "xgb" not in models:
        raise ValueError(f"bundle {bundle_dir} has no XGBoost model (the ladder's first rung)")
    store = dict(out.get("feature_store") or {})
    if out.get("online_store"):
        store["online_store"] = out["online_store"]
    version = str(manifest["version"])
    kw = {"bundle_dir": bundle_dir, "digest": digest}
    # the online twin of the FeatureService the bundle was trained on (an older contract
    # version is still served from the same views)
    source_kw: dict[str, Any] = {"store": store}
    if manifest.get("feature_service") in FEATURE_SERVICES:
        source_kw["feature_service"] = str(manifest["feature_service"])
    source = {"factory": "serving.bundle:FeastFeatureSource", "kwargs": source_kw}
    out.setdefault("feature_source", source)
    if not out.get("tabular_models"):
        out["tabular_models"] = {version: {"factory": "serving.bundle:BundleXGBoost", "kwargs": kw}}
        out["champion"] = version
    if "sequence" in models and out.get("sequence_model") is None:
        out["sequence_model"] = {"factory": "serving.bundle:BundleSequence", "kwargs": kw}
    if not out.get("calibrators"):
        out["calibrators"] = {
            DECISION_NAMES[m]: {
                "factory": "serving.bundle:bundle_calibrator",
                "kwargs": {**kw, "model": m},
            }
            for m in sorted(models & set(DECISION_NAMES))
        }
    if out.get("blend") is None:
        out["blend"] = {"factory": "serving.bundle:BundleBlend", "kwargs": kw}
    return out
