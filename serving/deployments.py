"""The Ray Serve deployments of the decision service, in one of two topologies.

``distributed``::

    HTTP -> Ingress (FastAPI: validation, fallback ladder, metrics, write-back, shadow)
              |-> FeatureFetcher   online features (one call per request or batch)
              |-> XGBoostScorer    tabular model versions (inplace_predict + contributions)
              |-> SequenceScorer   behavioural torch model (@serve.batch across requests)
              '-> Decider          calibrated blend + thresholds + reason codes (user_config)

``colocated`` (the default): the Ingress hosts the same components itself
(:class:`serving.inprocess.LocalComponents`: per-stage thread pools, ``@serve.batch`` over the
behavioural model, the Decider's policy with its config under the Ingress ``user_config`` key
``decider``). No Ray hop past the proxy; scale out with Ingress replicas. Use ``distributed``
when a model needs its own resources (a GPU) or its own scaling.

Either way the Ingress runs :class:`riskml.decision.ladder.Ladder` over its stages; each stage is
abandoned when its share of the deadline runs out. The deadline runs from the request's arrival
at the Ingress (:mod:`serving.admission`: bounded admission, body limits, the client's
``X-Request-Timeout-Ms``). Deployment names are the contract with ``serving/serve_config.yaml``.
"""

import asyncio
import gc
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Header, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import WithJsonSchema
from ray import serve
from ray.serve.handle import DeploymentHandle

from riskml.decision.config import DeciderConfig, IngressConfig
from riskml.decision.ladder import Ladder, LadderResult, Stages, TabularResult
from riskml.decision.policy import Calibrator, DecisionPolicy, ModelScores, Verdict
from riskml.decision.protocols import FeatureRow, FeatureSourceUnavailable, check_model_contracts
from riskml.settings import get_settings
from serving.admission import ARRIVED, LIMITED, TIMEOUT_HEADER, Admission, AdmissionMiddleware
from serving.auth import UNAUTHORIZED, Authenticator, Role, bearer
from serving.components import build
from serving.config import AppArgs
from serving.decision_log import DecisionLog
from serving.http_api import RiskApi, install_error_handlers
from serving.inprocess import LocalComponents, write_back_counts
from serving.looplag import LoopLag
from serving.schemas import (
    MAX_BATCH,
    BatchRequest,
    BatchResponse,
    Conflict,
    DecisionLogStats,
    DecisionResponse,
    HealthResponse,
    ModelInfo,
    TransactionRequest,
    TxIdConflict,
    to_response,
)
from serving.scorers import tabular_result
from serving.warmup import warm_up

log = logging.getLogger("ray.serve")

#: Local defaults (a laptop or CI runner): no CPU reservation, so five deployments fit on two
#: cores. serve_config.yaml sets real per-deployment resources and replica counts.
NO_CPU = {"num_cpus": 0}
MAX_ONGOING = 100
#: How long a graceful shutdown waits for the write-backs in flight (Serve's own graceful
#: shutdown timeout is 20 s by default).
WRITE_BACK_DRAIN_S = 5.0
#: The ``Authorization: Bearer`` header of a request, when it has one (serving.auth).
Credentials = HTTPAuthorizationCredentials | None
#: The client's deadline (serving.admission): validated here, so the OpenAPI document declares it.
#: Declared as a number (an absent header is None): a header has no JSON null to send.
RequestTimeout = Annotated[
    float | None,
    WithJsonSchema({"type": "number"}),
    Header(
        alias=TIMEOUT_HEADER,
        allow_inf_nan=False,
        description="Milliseconds the client waits for the answer, from when the request "
        "reaches the service (time it waits for admission counts). Shortens the configured "
        "deadline (deadline_ms, batch_deadline_ms), never lengthens it; <= 0: already passed, "
        "answered at once with the default decision (fallback_reason deadline_expired).",
    ),
]
#: Every answer a scoring route may give beyond its 200 and 422.
SCORE_RESPONSES = {**UNAUTHORIZED, **LIMITED}
#: ... and the batch route's beyond those.
BATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **SCORE_RESPONSES,
    409: {
        "model": Conflict,
        "description": "The batch holds different transactions under one tx_id (the same "
        "transaction repeated is decided once). Nothing was decided.",
    },
}


def settle_heap() -> None:
    """End of a replica's constructor: collect once, then freeze what is left (``gc.freeze``).

    A replica holds ~430k long-lived objects (models, the Feast registry, Ray, FastAPI, torch);
    a full collection walks all of them, 100-260 ms on this 2-core machine, stalling every
    request in flight past its deadline. Frozen, they are never walked again: full collections
    only see objects made since. Whatever is garbage at this point is collected first."""
    gc.collect()
    gc.freeze()


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(text)


@dataclass
class FetchFailure:
    """The feature store could not answer (returned, not raised, by FeatureFetcher)."""

    message: str


async def _fetch(handle: DeploymentHandle, txs: list[dict[str, Any]]) -> list[FeatureRow]:
    result = await _await(handle.get_many.remote(txs))
    if isinstance(result, FetchFailure):
        raise FeatureSourceUnavailable(result.message)
    return list(result)


async def _await(response: Any) -> Any:
    """Await a handle call; cancel the downstream request if the caller gives up."""
    try:
        return await response
    except asyncio.CancelledError:
        response.cancel()
        raise


@serve.deployment(name="FeatureFetcher", ray_actor_options=NO_CPU, max_ongoing_requests=MAX_ONGOING)
class FeatureFetcher:
    def __init__(self, source: Mapping[str, Any]) -> None:
        self.source = build(dict(source))
        self.feature_names = list(self.source.feature_names)
        settle_heap()

    async def info(self) -> dict[str, Any]:
        return {"feature_names": self.feature_names}

    def get_many(self, txs: list[dict[str, Any]]) -> list[FeatureRow] | FetchFailure:
        # An unreachable store is an expected condition: return it as a value rather than
        # raising across the Ray boundary (Serve's error path logs a traceback per request,
        # which costs tens of ms on a busy node, exactly when the store is down).
        try:
            rows = list(self.source.get_many(txs))
        except Exception as exc:
            return FetchFailure(f"{type(exc).__name__}: {exc}")
        for row in rows:
            # the fetched history would cross two Serve calls (to the Ingress and back with
            # the write-back, ~70 us pickled each way) to save this replica one read
            row.write_back.pop("history_base", None)
        return rows

    def write_back(self, tx: dict[str, Any]) -> bool | FetchFailure:
        try:
            return bool(self.source.write_back(tx))
        except Exception as exc:
            return FetchFailure(f"{type(exc).__name__}: {exc}")

    def write_back_many(self, txs: list[dict[str, Any]]) -> dict[str, int]:
        """Apply several write-backs (one Serve call): counts of applied/duplicate/error."""
        return write_back_counts(self.source, txs)


@serve.deployment(name="XGBoostScorer", ray_actor_options=NO_CPU, max_ongoing_requests=MAX_ONGOING)
class XGBoostScorer:
    def __init__(self, models: Mapping[str, Mapping[str, Any]]) -> None:
        if not models:
            raise ValueError("XGBoostScorer needs at least one model version")
        self.models = {version: build(dict(spec)) for version, spec in models.items()}
        settle_heap()

    async def info(self) -> dict[str, Any]:
        return {"versions": {v: list(m.feature_names) for v, m in self.models.items()}}

    def score(self, version: str, x: np.ndarray, contributions: str = "off") -> TabularResult:
        return tabular_result(self.models[version], x, contributions)


@serve.deployment(name="SequenceScorer", ray_actor_options=NO_CPU, max_ongoing_requests=MAX_ONGOING)
class SequenceScorer:
    """Concurrent requests are coalesced by ``@serve.batch`` into one forward pass."""

    def __init__(
        self, model: Mapping[str, Any], max_batch_size: int = 32, batch_wait_timeout_ms: float = 0.0
    ) -> None:
        self.model = build(dict(model))
        self.version = str(getattr(self.model, "version", "sequence"))
        self.reconfigure(
            {"max_batch_size": max_batch_size, "batch_wait_timeout_ms": batch_wait_timeout_ms}
        )
        settle_heap()

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        batched: Any = self._batched  # the @serve.batch wrapper carries the setters
        if "max_batch_size" in config:
            batched.set_max_batch_size(int(config["max_batch_size"]))
        if "batch_wait_timeout_ms" in config:
            batched.set_batch_wait_timeout_s(float(config["batch_wait_timeout_ms"]) / 1e3)

    async def info(self) -> dict[str, Any]:
        return {"version": self.version}

    async def score(self, x: np.ndarray, seq: np.ndarray) -> list[float]:
        return await self._batched((x, seq))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _batched(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[list[float]]:
        return await coalesced(lambda x, s: asyncio.to_thread(self.model.predict, x, s), items)


async def coalesced(
    predict: Callable[[np.ndarray, np.ndarray], Awaitable[Sequence[float]]],
    items: list[tuple[np.ndarray, np.ndarray]],
) -> list[list[float]]:
    """One forward pass over several requests' ``(x, seq)`` inputs; each request's slice back."""
    sizes = [len(x) for x, _ in items]
    probs = await predict(
        np.concatenate([x for x, _ in items]), np.concatenate([s for _, s in items])
    )
    out, start = [], 0
    for n in sizes:
        out.append([float(p) for p in probs[start : start + n]])
        start += n
    return out


@serve.deployment(name="Decider", ray_actor_options=NO_CPU, max_ongoing_requests=MAX_ONGOING)
class Decider:
    """Calibrated blend + approve/review/decline thresholds + reason codes. Thresholds and blend
    weights come from ``user_config`` and change live through :meth:`reconfigure`."""

    async def __init__(  # type: ignore[misc]  # Serve supports async constructors
        self,
        features: DeploymentHandle,
        calibrators: Mapping[str, Mapping[str, Any]] | None = None,
        blend: Mapping[str, Any] | None = None,
    ) -> None:
        info = await features.info.remote()
        cals: dict[str, Calibrator] = {m: build(dict(s)) for m, s in (calibrators or {}).items()}
        fitted = build(dict(blend)) if blend else None
        self.policy = DecisionPolicy(DeciderConfig(), info["feature_names"], cals, fitted)
        settle_heap()

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        self.policy.reconfigure(DeciderConfig.model_validate(dict(user_config)))

    async def info(self) -> dict[str, Any]:
        return self.policy.config.model_dump()

    async def decide(self, items: list[ModelScores]) -> list[Verdict]:
        return self.policy.verdicts(items)


def _arrived(request: Request) -> float:
    """When the request reached this replica (``time.perf_counter()``; serving.admission), or
    now when nothing timed it."""
    arrived = getattr(request.state, ARRIVED, None)
    return float(arrived) if arrived is not None else time.perf_counter()


def _check_serve_limits(admission: Admission) -> None:
    """Warn when Serve's ``max_ongoing_requests`` of this replica would queue requests (out of
    sight of their deadline) before the admission sees them."""
    try:
        ongoing = serve.get_replica_context()._deployment_config.max_ongoing_requests
    except Exception:  # pragma: no cover - outside a replica
        return
    limits = admission.limits
    if isinstance(ongoing, int) and ongoing < limits.max_in_flight + limits.max_waiting:
        log.warning(
            "Ingress max_ongoing_requests %d < admission max_in_flight %d + max_waiting %d: "
            "Serve queues requests before their deadline starts; raise max_ongoing_requests",
            ongoing,
            limits.max_in_flight,
            limits.max_waiting,
        )


class DecisionApi(RiskApi):
    """The decision API. Its OpenAPI document says what the app does: without API keys
    configured (an open local app) it declares no security scheme and no 401; the batch route's
    ``maxItems`` is this replica's live ``max_batch_size``."""

    def adjust_openapi(self, doc: dict[str, Any]) -> dict[str, Any]:
        batch = doc["components"]["schemas"]["BatchRequest"]["properties"]["transactions"]
        batch["maxItems"] = _batch_limit()
        return doc


def _batch_limit() -> int:
    """The largest batch this replica decides now (``max_batch_size``, live through
    reconfigure); :data:`~serving.schemas.MAX_BATCH` outside a replica."""
    try:
        ingress: Any = serve.get_replica_context().servable_object
        return min(MAX_BATCH, int(ingress.ladder.config.max_batch_size))
    except Exception:  # outside a replica, or before its constructor has run
        return MAX_BATCH


api = DecisionApi(
    title="riskml decisions",
    version="1",
    description="Real-time fraud decisions: approve / review / decline within a deadline.",
)
# before @serve.ingress(api) freezes the app: the outermost code of every request
api.add_middleware(AdmissionMiddleware)
# the shared 422 answers (serving.http_api): validation errors, undecodable bodies
install_error_handlers(api)


class HandleBackend:
    """``distributed``: the ladder's stages are ``DeploymentHandle`` calls."""

    def __init__(
        self,
        features: DeploymentHandle,
        xgboost: DeploymentHandle,
        decider: DeploymentHandle,
        sequence: DeploymentHandle | None,
    ) -> None:
        self.features, self.xgboost, self.decider, self.sequence = (
            features,
            xgboost,
            decider,
            sequence,
        )
        self.stages = Stages(
            fetch=lambda txs: _fetch(features, txs),
            tabular=lambda v, x, mode: _await(xgboost.score.remote(v, x, mode)),
            decide=lambda items: _await(decider.decide.remote(items)),
            sequence=(lambda x, s: _await(sequence.score.remote(x, s))) if sequence else None,
        )

    async def connect(self) -> None:
        """Read the deployments' feature names and versions; refuse a contract mismatch."""
        self.feature_names = list((await self.features.info.remote())["feature_names"])
        model_features = (await self.xgboost.info.remote())["versions"]
        check_model_contracts(model_features, self.feature_names)
        self.versions = list(model_features)
        seq = self.sequence
        self.sequence_version = (await seq.info.remote())["version"] if seq else None

    async def write_back_many(self, txs: list[dict[str, Any]]) -> dict[str, int]:
        return await self.features.write_back_many.remote(txs)

    async def decider_config(self) -> dict[str, Any]:
        return await self.decider.info.remote()


class ColocatedBackend:
    """``colocated``: the components live in the Ingress replica (see module docstring)."""

    def __init__(self, specs: Mapping[str, Any]) -> None:
        args = AppArgs.model_validate(dict(specs))
        self.components = c = LocalComponents(args, offload=True)
        batching = args.sequence_batching
        self._batched = serve.batch(
            max_batch_size=batching.max_batch_size,
            batch_wait_timeout_s=batching.batch_wait_timeout_ms / 1e3,
        )(self._sequence_batch)
        self._sequence_in_flight = 0  # calls of _score_sequence not yet answered
        self.stages = c.stages(sequence=self._score_sequence)
        self.feature_names = c.feature_names
        self.versions = c.versions
        self.sequence_version = c.sequence_version

    async def connect(self) -> None:
        return None

    async def _sequence_batch(
        self, items: list[tuple[np.ndarray, np.ndarray]]
    ) -> list[list[float]]:
        return await coalesced(self.components.score_sequence, items)

    async def _score_sequence(self, x: np.ndarray, seq: np.ndarray) -> list[float]:
        """The behavioural model on one request's rows. An idle model is called directly: there
        is nothing to coalesce, and a pass through ``@serve.batch``'s queue cost 0.7-0.8 ms per
        request (p50, 100 rps on 2 cores). While a forward pass runs, later calls queue in
        ``@serve.batch`` and are coalesced into the next pass."""
        direct = self._sequence_in_flight == 0
        self._sequence_in_flight += 1
        try:
            if direct:
                return await self.components.score_sequence(x, seq)
            return await self._batched((x, seq))
        finally:
            self._sequence_in_flight -= 1

    async def write_back_many(self, txs: list[dict[str, Any]]) -> dict[str, int]:
        return await self.components.write_back_many(txs)

    async def decider_config(self) -> dict[str, Any]:
        return self.components.policy.config.model_dump()


@serve.deployment(name="Ingress", ray_actor_options=NO_CPU, max_ongoing_requests=MAX_ONGOING)
@serve.ingress(api)
class Ingress:
    """``Ingress.bind(features, xgboost, decider, sequence, champion)`` (distributed) or
    ``Ingress.bind(champion=..., colocated=component_specs)`` (colocated); ``admission``: the
    :class:`serving.config.AdmissionArgs` of the replica (defaults when absent);
    ``warm_up_rounds``: decisions on a synthetic transaction before the replica takes traffic
    (:mod:`serving.warmup`; its report is ``self.warm_up``)."""

    async def __init__(  # type: ignore[misc]  # Serve supports async constructors
        self,
        features: DeploymentHandle | None = None,
        xgboost: DeploymentHandle | None = None,
        decider: DeploymentHandle | None = None,
        sequence: DeploymentHandle | None = None,
        champion: str | None = None,
        colocated: Mapping[str, Any] | None = None,
        admission: Mapping[str, Any] | None = None,
        warm_up_rounds: int = 20,
    ) -> None:
        from serving.metrics import DecisionMetrics

        # first: a replica without the keys it requires fails before loading any model
        self.auth = Authenticator.from_settings(get_settings(), log)
        backend: HandleBackend | ColocatedBackend
        if colocated is not None:
            backend = ColocatedBackend(colocated)
        elif features is None or xgboost is None or decider is None:
            raise ValueError("Ingress needs the feature, xgboost and decider handles or colocated")
        else:
            backend = HandleBackend(features, xgboost, decider, sequence)
        await backend.connect()
        self.backend = backend
        self.sequence_version = backend.sequence_version
        self.feature_names = list(backend.feature_names)
        self.ladder = Ladder(
            backend.stages,
            IngressConfig(),
            versions=backend.versions,
            champion=champion or backend.versions[0],
            feature_names=self.feature_names,
        )
        self.metrics = DecisionMetrics()
        ladder = self.ladder
        #: serving.admission finds it here (AdmissionMiddleware): slots, waiting, body limits
        self.admission = Admission(
            admission,
            budget_ms=lambda batch, requested: ladder.budget_ms(2 if batch else 1, requested),
            on_reject=self.metrics.count_rejected,
        )
        _check_serve_limits(self.admission)
        self._background: set[asyncio.Task[Any]] = set()
        self._wb_queue: list[dict[str, Any]] = []
        self._wb_timer_armed = False
        #: write-back flushes not finished yet (a graceful shutdown waits for them)
        self._wb_flushes: set[asyncio.Task[Any]] = set()
        self._wb_timer: asyncio.Task[Any] | None = None
        try:
            self.replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # pragma: no cover - outside a replica
            self.replica = "local"
        self.decision_log = DecisionLog(
            self.ladder.config.decision_log,
            feature_names=self.feature_names,
            sequence_version=self.sequence_version,
            replica=self.replica,
            metrics=self.metrics,
        )
        self._spawn(self._export_decision_log())
        #: how late this replica's event loop runs (serving.looplag): per decision and metric
        self.loop_lag = LoopLag(on_late=self.metrics.loop_lag.observe)
        self.ladder.loop_lag = self.loop_lag.during  # the breaker tells saturation apart
        self._spawn(self.loop_lag.run())
        #: every stage run before Serve routes the first request here (serving.warmup)
        self.warm_up = await warm_up(
            backend.stages,
            backend.versions,
            rounds=warm_up_rounds,
            contributions=self.ladder.config.contributions,
        )
        settle_heap()

    async def __del__(self) -> None:
        """Serve's graceful shutdown (after in-flight requests): write back what is queued,
        wait for the write-backs in flight, then drain the decision log."""
        await self.drain_write_backs()
        await self.decision_log.close()

    async def drain_write_backs(self, timeout_s: float = WRITE_BACK_DRAIN_S) -> int:
        """Flush the queued write-backs now and wait (at most ``timeout_s``) for every flush
        in flight: a stop or a redeploy must not drop the decisions of its last
        ``write_back_interval_ms``. The number of flushes still running at the timeout."""
        if self._wb_timer is not None:  # its batch goes now: no need to wait out the timer
            self._wb_timer.cancel()
        if self._wb_queue:
            self._spawn_flush(self._flush_write_backs())
        pending = {t for t in self._wb_flushes if not t.done() and t is not self._wb_timer}
        if not pending:
            return 0
        _done, late = await asyncio.wait(pending, timeout=timeout_s)
        if late:
            log.warning("%d write-back flush(es) still running at shutdown", len(late))
        return len(late)

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """IngressConfig fields; colocated, also ``decider`` (the DeciderConfig). Everything is
        validated before anything changes."""
        config = dict(user_config)
        decider = config.pop("decider", None)
        ingress = IngressConfig.model_validate(config)
        policy = None if decider is None else DeciderConfig.model_validate(decider)
        backend = self.backend
        if policy is not None and not isinstance(backend, ColocatedBackend):
            raise ValueError(
                "the Ingress user_config key 'decider' applies to topology 'colocated'; with "
                "topology 'distributed' set the Decider deployment's user_config"
            )
        self.ladder.reconfigure(ingress)
        self.decision_log.configure(ingress.decision_log)
        if policy is not None and isinstance(backend, ColocatedBackend):
            backend.components.policy.reconfigure(policy)

    # -- routes --------------------------------------------------------------------------------
    @api.post("/v1/score", response_model=DecisionResponse, responses=SCORE_RESPONSES)
    async def score(
        self,
        tx: TransactionRequest,
        request: Request,
        credentials: Credentials = Security(bearer),
        timeout_ms: RequestTimeout = None,
    ) -> DecisionResponse:
        self.auth.role(credentials)
        t0 = _arrived(request)
        budget_ms = self.ladder.budget_ms(1, timeout_ms)
        txs = [tx.model_dump()]
        result = await self.ladder.decide(txs, arrived=t0, budget_ms=budget_ms)
        self._after(txs, result)  # metrics: the stages, not the loop's lag
        self._note_loop_lag(result, t0)
        if self.decision_log.enabled:
            await self.decision_log.record([tx], result, deadline=t0 + budget_ms / 1e3)
        return to_response(result.outcomes[0], self.ladder.config.default_decision)

    @api.post("/v1/score/batch", response_model=BatchResponse, responses=BATCH_RESPONSES)
    async def score_batch(
        self,
        batch: BatchRequest,
        request: Request,
        credentials: Credentials = Security(bearer),
        timeout_ms: RequestTimeout = None,
    ) -> BatchResponse:
        self.auth.role(credentials)
        limit = self.ladder.config.max_batch_size
        if len(batch.transactions) > limit:
            raise HTTPException(
                status_code=422,
                detail=[
                    {
                        "loc": ["body", "transactions"],
                        "msg": f"batch of {len(batch.transactions)} exceeds max_batch_size {limit}",
                        "type": "too_long",
                    }
                ],
            )
        try:
            unique, where = batch.distinct()  # a transaction repeated is decided once
        except TxIdConflict as exc:
            detail = [e.model_dump() for e in exc.errors]
            raise HTTPException(status_code=409, detail=detail) from None
        t0 = _arrived(request)
        txs = [t.model_dump() for t in unique]
        budget_ms = self.ladder.budget_ms(len(txs), timeout_ms)
        result = await self.ladder.decide(txs, arrived=t0, budget_ms=budget_ms)
        self._after(txs, result)  # metrics: the stages, not the loop's lag
        self._note_loop_lag(result, t0)
        if self.decision_log.enabled:
            deadline = t0 + budget_ms / 1e3
            await self.decision_log.record(unique, result, deadline=deadline)
        default = self.ladder.config.default_decision
        decisions = [to_response(o, default) for o in result.outcomes]
        return BatchResponse(
            decisions=[decisions[j] for j in where],
            latency_ms={"total": round((time.perf_counter() - t0) * 1e3, 3)},
        )

    @api.get("/healthz", response_model=HealthResponse)
    async def healthz(self) -> HealthResponse:
        return HealthResponse(status="ok", replica=self.replica)

    @api.get("/v1/model", response_model=ModelInfo, responses=UNAUTHORIZED)
    async def model(self, credentials: Credentials = Security(bearer)) -> ModelInfo:
        """The served model versions; to an admin key (or an open API) also the internals:
        feature names, Ingress and Decider config (thresholds, blend weights)."""
        if self.auth.role(credentials) < Role.ADMIN:
            return ModelInfo(
                champion=self.ladder.champion,
                versions=self.ladder.versions,
                sequence_model=self.sequence_version,
            )
        decider_config = await self.backend.decider_config()
        return ModelInfo(
            champion=self.ladder.champion,
            versions=self.ladder.versions,
            sequence_model=self.sequence_version,
            feature_names=self.feature_names,
            ingress_config=self.ladder.config.model_dump(),
            decider_config=decider_config,
        )

    @api.get("/v1/decision-log", response_model=DecisionLogStats, responses=UNAUTHORIZED)
    async def decision_log_stats(
        self, credentials: Credentials = Security(bearer)
    ) -> DecisionLogStats:
        """This replica's decision-log counts (published, outboxed, flushed, dropped, ...)."""
        self.auth.role(credentials)
        return DecisionLogStats.model_validate(self.decision_log.stats())

    async def _export_decision_log(self) -> None:
        """Every second: connect the decision log once it is enabled (before the first request
        needs it); every 5 s: export its counts (outbox flushes happen between requests)."""
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            try:
                await self.decision_log.start()
                if tick % 5 == 0:
                    self.decision_log.export()
            except Exception:  # pragma: no cover - metrics must not stop the timer
                log.exception("decision log timer failed")

    def _note_loop_lag(self, result: LadderResult, arrived: float) -> None:
        """``latency_ms.loop_lag`` of each decision: how long, since the request arrived, this
        replica's event loop was behind (serving.looplag): what of ``total`` past the deadline
        is the replica's saturation or the machine's, not the ladder's. Absent when 0."""
        lag = self.loop_lag.during(arrived)
        if lag > 0:
            for outcome in result.outcomes:
                outcome.latency_ms["loop_lag"] = round(lag, 3)

    # -- off the critical path -------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _after(self, txs: list[dict[str, Any]], result: LadderResult) -> None:
        try:
            self.metrics.record(result.outcomes)
        except Exception:  # metrics must never cost a decision
            log.exception("recording metrics failed")
        if self.ladder.config.write_back:
            rows = result.rows
            if rows is not None and len(rows) == len(txs):  # what the fetch hands its write-back
                self._queue_write_backs(
                    [{**tx, **row.write_back} for tx, row in zip(txs, rows, strict=True)]
                )
            else:
                self._queue_write_backs(txs)
        if self.ladder.shadow_indices(txs) and result.rows is not None:
            self._spawn(self._shadow(txs, result))

    def _queue_write_backs(self, txs: list[dict[str, Any]]) -> None:
        """Write-backs are batched (``write_back_batch`` or ``write_back_interval_ms``, whichever
        comes first) into one FeatureFetcher call: half the Serve calls per decision."""
        self._wb_queue.extend(txs)
        cfg = self.ladder.config
        if len(self._wb_queue) >= cfg.write_back_batch:
            self._spawn_flush(self._flush_write_backs())
        elif not self._wb_timer_armed:
            self._wb_timer_armed = True
            delay_s = cfg.write_back_interval_ms / 1e3
            self._wb_timer = self._spawn_flush(self._flush_write_backs(delay_s=delay_s))

    def _spawn_flush(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        self._wb_flushes.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(self._wb_flushes.discard)
        return task

    async def _flush_write_backs(self, delay_s: float = 0.0) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
            self._wb_timer_armed = False
        batch, self._wb_queue = self._wb_queue, []
        if not batch:
            return
        try:
            counts = await self.backend.write_back_many(batch)
        except Exception as exc:
            counts = {"error": len(batch)}
            log.warning("write-back of %d transactions failed: %s", len(batch), exc)
        for result, n in counts.items():
            if n:
                self.metrics.write_backs.inc(n, tags={"result": result})

    async def _shadow(self, txs: list[dict[str, Any]], result: LadderResult) -> None:
        try:
            records = await self.ladder.shadow(txs, result)
        except Exception as exc:
            log.warning("shadow scoring failed: %s", exc)
            return
        self.metrics.record_shadow(records)
        for r in records:
            log.info("shadow %s", json.dumps(r))
        path = self.ladder.config.shadow_log
        if path and records:
            lines = "".join(json.dumps(r) + "\n" for r in records)
            await asyncio.to_thread(_append, Path(path), lines)
