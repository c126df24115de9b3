"""The decision service's components in one process: the ladder's stages as direct calls.

:class:`LocalComponents` builds the feature source, the tabular model versions, the behavioural
model, the calibrators and the fitted blend from :class:`serving.config.AppArgs` (the same specs
the deployments build), checks every model's feature contract, and exposes them as the
:class:`riskml.decision.ladder.Stages` of a ladder. Two users:

* the **colocated** Ingress (``topology: colocated``, the default): one Serve replica answers a
  request with no Ray hop past the proxy. Its blocking calls run on small per-stage thread pools
  (``offload=True``), so a feature store or model that hangs holds only its own pool while the
  event loop keeps every deadline and answers from the next rung. A model that declares
  ``cpu_bounded`` (the compiled XGBoost trees, the fused GRU: ~0.1 ms of NumPy, no I/O) runs
  on the event loop: it cannot hang, and a pool hop costs about what it does. A feature source
  that ``reads_async`` (the Feast source on Redis) is awaited on the event loop too: its one
  round trip is a ``redis.asyncio`` pipeline, so the fetch neither waits for the GIL on a
  thread behind the loop that serves HTTP (~20 ms a fetch at 300 rps on 2 cores) nor pins a
  thread when the store hangs (the stage's timeout cancels the read);
* :class:`InProcessApp`: the same stages called inline, without Ray or HTTP: the benchmark's
  in-process baseline and the reference the HTTP answers must match.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from riskml.decision.config import DeciderConfig, IngressConfig
from riskml.decision.ladder import Ladder, LadderResult, Stages, TabularResult
from riskml.decision.policy import DecisionPolicy, ModelScores, Verdict
from riskml.decision.protocols import FeatureRow, check_model_contracts
from serving.components import build
from serving.config import AppArgs
from serving.schemas import DecisionResponse, TransactionRequest, to_response
from serving.scorers import tabular_result

T = TypeVar("T")
log = logging.getLogger("ray.serve")

#: Threads per bulkhead (``offload=True``). Reads may overlap (the store clients are thread-safe,
#: Serve's FeatureFetcher runs them on its thread pool too); write-backs go one batch at a time.
POOL_THREADS = {"features": 4, "write_back": 1, "sequence": 2, "xgboost": 2}


def _bounded(model: Any) -> bool:
    """Whether a scorer declares bounded CPU-only work (``cpu_bounded``: True)."""
    return getattr(model, "cpu_bounded", False) is True


class LocalComponents:
    """Components of :class:`AppArgs` built here, as ladder stages (see module docstring)."""

    def __init__(self, args: Mapping[str, Any] | AppArgs, *, offload: bool = False) -> None:
        a = args if isinstance(args, AppArgs) else AppArgs.model_validate(dict(args))
        self.source = build(a.feature_source)  # type: ignore[arg-type]
        #: the source's reads awaited on the event loop (no ``features`` pool hop; see above)
        self.fetch_async: Callable[[list[dict[str, Any]]], Awaitable[list[FeatureRow]]] | None = (
            self.source.get_many_async if getattr(self.source, "reads_async", False) else None
        )
        self.feature_names: list[str] = list(self.source.feature_names)
        self.models = {v: build(spec) for v, spec in a.tabular_models.items()}
        check_model_contracts(
            {v: m.feature_names for v, m in self.models.items()}, self.feature_names
        )
        self.versions = list(self.models)
        self.champion = a.champion or self.versions[0]
        self.sequence = build(a.sequence_model) if a.sequence_model is not None else None
        self.sequence_version = (
            str(getattr(self.sequence, "version", "sequence")) if self.sequence else None
        )
        self.policy = DecisionPolicy(
            a.decider_config or DeciderConfig(),
            self.feature_names,
            {m: build(s) for m, s in a.calibrators.items()},
            build(a.blend) if a.blend is not None else None,
        )
        self.ingress_config = a.ingress_config or IngressConfig()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        #: models that declare ``cpu_bounded`` (compiled trees, the fused GRU: a bounded NumPy
        #: computation of ~0.1 ms, no I/O, no lock) run on the event loop even when offloading:
        #: a thread-pool hop would cost about as much CPU as the model itself
        self.inline = {f"xgboost:{v}" for v, m in self.models.items() if _bounded(m)}
        if self.sequence is not None and _bounded(self.sequence):
            self.inline.add("sequence")
        if offload:
            # one pool per model version: a hung challenger cannot starve the champion
            names = ["features", "write_back", "sequence", *(f"xgboost:{v}" for v in self.models)]
            for name in (n for n in names if n not in self.inline):
                threads = POOL_THREADS[name.split(":")[0]]
                self._pools[name] = ThreadPoolExecutor(threads, thread_name_prefix=f"riskml-{name}")

    def stages(
        self, sequence: Callable[[Any, Any], Awaitable[list[float]]] | None = None
    ) -> Stages:
        """The ladder's stages; ``sequence`` replaces the direct behavioural-model call (the
        colocated Ingress passes its ``@serve.batch`` wrapper of :meth:`score_sequence`)."""
        seq = sequence or self.score_sequence
        inline: set[Callable[..., Awaitable[Any]]] = {self.decide}  # pure Python, on the loop
        if not any(name.startswith("xgboost:") for name in self._pools):
            inline.add(self.score_tabular)
        if sequence is None and "sequence" not in self._pools:
            inline.add(self.score_sequence)  # (a batching wrapper waits for its batch: it yields)
        return Stages(
            fetch=self.fetch,
            tabular=self.score_tabular,
            decide=self.decide,
            sequence=seq if self.sequence is not None else None,
            inline=frozenset(inline),
        )

    async def _run(self, pool: str, fn: Callable[..., T], *args: Any) -> T:
        executor = self._pools.get(pool)
        if executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    # -- stages ----------------------------------------------------------------------------------
    async def fetch(self, txs: list[dict[str, Any]]) -> list[FeatureRow]:
        if self.fetch_async is not None:
            return list(await self.fetch_async(txs))
        return list(await self._run("features", self.source.get_many, txs))

    def _tabular(self, version: str, x: np.ndarray, mode: str) -> TabularResult:
        return tabular_result(self.models[version], x, mode)

    async def score_tabular(self, version: str, x: np.ndarray, mode: str) -> TabularResult:
        return await self._run(f"xgboost:{version}", self._tabular, version, x, mode)

    async def score_sequence(self, x: np.ndarray, seq: np.ndarray) -> list[float]:
        probs = await self._run("sequence", self.sequence.predict, x, seq)  # type: ignore[union-attr]
        return [float(p) for p in probs]

    async def decide(self, items: list[ModelScores]) -> list[Verdict]:
        return self.policy.verdicts(items)  # pure Python, well under a millisecond: inline

    # -- write-back --------------------------------------------------------------------------------
    def _write_back_many(self, txs: list[dict[str, Any]]) -> dict[str, int]:
        return write_back_counts(self.source, txs)

    async def write_back_many(self, txs: list[dict[str, Any]]) -> dict[str, int]:
        return await self._run("write_back", self._write_back_many, txs)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def write_back_counts(source: Any, txs: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Apply several write-backs; counts of applied/duplicate/late/future/error.

    A source with its own ``fold_many`` / ``write_back_many`` (the Feast source: one read, one
    write) gets the whole batch (``fold_many`` tells a transaction older than the retention,
    ``late``, and one too far ahead of the clock, ``future``, from a ``duplicate``); if that
    fails, each transaction is retried alone so one bad transaction cannot cost the others
    their write-back."""
    counts = {"applied": 0, "duplicate": 0, "late": 0, "future": 0, "error": 0}
    fold = getattr(source, "fold_many", None)
    many = getattr(source, "write_back_many", None)
    if fold is not None or many is not None:
        try:
            if fold is not None:
                for outcome in fold(txs):
                    counts[outcome] = counts.get(outcome, 0) + 1
            elif many is not None:
                for changed in many(txs):
                    counts["applied" if changed else "duplicate"] += 1
            return counts
        except Exception as exc:
            log.warning(
                "batched write-back of %d failed (%s: %s); retrying one by one",
                len(txs),
                type(exc).__name__,
                exc,
            )
    for tx in txs:
        try:
            counts["applied" if source.write_back(tx) else "duplicate"] += 1
        except Exception:
            counts["error"] += 1
    return counts


class InProcessApp:
    """The service's decisions without Ray or HTTP: same components, same ladder, inline calls."""

    def __init__(
        self, args: Mapping[str, Any] | AppArgs, *, write_back: bool = False, offload: bool = False
    ) -> None:
        """``offload=True``: the stages run on the colocated Ingress's per-stage thread pools
        (a hung store holds only its pool; the deadline still holds), not inline."""
        self.components = LocalComponents(args, offload=offload)
        self.source = self.components.source
        self.models = self.components.models
        self.policy = self.components.policy
        self.write_back = write_back
        self.ladder = Ladder(
            self.components.stages(),
            self.components.ingress_config,
            versions=self.components.versions,
            champion=self.components.champion,
            feature_names=self.components.feature_names,
        )

    async def decide_raw(self, txs: Sequence[Mapping[str, Any]]) -> LadderResult:
        result = await self.ladder.decide(txs)
        if self.write_back:
            for tx in txs:
                self.source.write_back(tx)
        return result

    async def decide(self, requests: Sequence[Mapping[str, Any]]) -> list[DecisionResponse]:
        """Validate like the API, decide, and return the API responses."""
        txs = [TransactionRequest.model_validate(dict(r)).model_dump() for r in requests]
        result = await self.decide_raw(txs)
        default = self.ladder.config.default_decision
        return [to_response(o, default) for o in result.outcomes]

    def close(self) -> None:
        self.components.close()
