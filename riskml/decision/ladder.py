"""The fallback ladder: one decision per transaction within a per-request deadline.

Rungs, best first::

    ensemble      features -> XGBoost + sequence model -> calibrated blend -> thresholds
    xgboost_only  the sequence model failed, was late, or had no input
    rules         features or XGBoost or the Decider failed/late: amount + velocity limits
    default       something unexpected: the configured default decision

Every stage runs under ``min(stage timeout, time left before the deadline - reserve)``; the
reserve keeps time for the rules rung, which needs no I/O. The deadline runs from when the
request reached the service (time it waited for admission counts), and a caller may shorten it
(never lengthen it). A circuit breaker stops calling a
feature store that failed or was late several times in a row, for a while
(``IngressConfig.feature_breaker``).
Stages are async callables, so the same ladder runs on Ray Serve ``DeploymentHandle`` calls
(serving) and on direct in-process calls (the benchmark's baseline and the equivalence tests).
:meth:`Ladder.decide` never raises.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from riskml.decision.config import Decision, DecisionSource, IngressConfig
from riskml.decision.policy import ModelScores, Verdict
from riskml.decision.protocols import FeatureRow
from riskml.decision.rules import Reason, apply_rules
from riskml.decision.split import choose_arm, in_share
from riskml.decision.velocity import VelocityTracker

log = logging.getLogger(__name__)

#: Extra time past the deadline before the outer guard answers with the default decision.
GRACE_S = 0.005


@dataclass
class TabularResult:
    probs: list[float]
    contributions: list[list[float]] | None = None


FetchStage = Callable[[list[dict[str, Any]]], Awaitable[list[FeatureRow]]]
TabularStage = Callable[[str, Any, str], Awaitable[TabularResult]]
SequenceStage = Callable[[Any, Any], Awaitable[list[float]]]
DecideStage = Callable[[list[ModelScores]], Awaitable[list[Verdict]]]


@dataclass
class Stages:
    """The async stage callables. ``tabular(version, x, contributions_mode)``;
    ``sequence(x, seq)`` may be None when no behavioural model is deployed. ``inline``: those
    of these callables whose coroutine runs to its end without yielding (a bounded computation
    called on the loop): no timer is armed for them, as none could fire before they end (their
    time still counts against the request's deadline). A stage replaced by another callable
    is timed again."""

    fetch: FetchStage
    tabular: TabularStage
    decide: DecideStage
    sequence: SequenceStage | None = None
    inline: frozenset[Callable[..., Awaitable[Any]]] = frozenset()


@dataclass
class Outcome:
    tx_id: str
    decision: Decision
    decision_source: DecisionSource
    model_version: str
    score: float | None = None
    fallback_reason: str | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)


@dataclass
class LadderResult:
    outcomes: list[Outcome]
    rows: list[FeatureRow] | None = None  # fetched features (for shadow scoring), if any


@dataclass
class _Stage:
    value: Any = None
    error: str | None = None  # "timeout" | "error"
    ms: float = 0.0
    #: a timeout: how late (ms) the event loop ran it after it was due (its own lag)
    late_ms: float = 0.0


def epoch_seconds(ts: Any) -> float:
    """Seconds since the epoch from an aware/naive (UTC) datetime, ISO string or number."""
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        return ts.timestamp()
    if isinstance(ts, str):
        return epoch_seconds(dt.datetime.fromisoformat(ts))
    return float(ts)


class Ladder:
    def __init__(
        self,
        stages: Stages,
        config: IngressConfig,
        *,
        versions: Sequence[str],
        champion: str,
        feature_names: Sequence[str],
    ) -> None:
        if champion not in versions:
            raise ValueError(f"champion {champion!r} is not one of the model versions {versions}")
        self.stages = stages
        self.versions = list(versions)
        self.champion = champion
        self.feature_names = list(feature_names)
        self.config = config
        self._fetch_failures = 0  # consecutive failed/late feature fetches, overlaps as one
        self._breaker_open_until = 0.0  # time.monotonic() until which the store is skipped
        self._failure_seen_at = -math.inf  # time.perf_counter() the last streak failure was seen
        #: fetches the breaker counted against the store, by kind, and how often it opened
        #: (``loop_lag``: late fetches not counted, the loop itself was behind: BreakerConfig;
        #: ``overlapped``: failed fetches already in flight when the streak's last failure was
        #: seen, counted under their kind but not as new evidence: the same stall)
        self.breaker_counts = {
            "timeout": 0,
            "error": 0,
            "opened": 0,
            "loop_lag": 0,
            "overlapped": 0,
        }
        #: ms the event loop was behind since a ``time.perf_counter()`` (a heartbeat on the loop,
        #: where the service runs one: serving.looplag); None: only a timer's own lateness shows
        self.loop_lag: Callable[[float], float] | None = None
        self.tracker = VelocityTracker(
            config.rules.local_velocity_window_s, config.rules.local_velocity_max_customers
        )
        self.reconfigure(config)

    # -- configuration ---------------------------------------------------------------------
    def reconfigure(self, config: IngressConfig | Mapping[str, Any]) -> None:
        cfg = config if isinstance(config, IngressConfig) else IngressConfig.model_validate(config)
        unknown = sorted(set(cfg.experiment.arms) - set(self.versions))
        if cfg.experiment.enabled and unknown:
            raise ValueError(f"experiment arms name unknown model versions {unknown}")
        if cfg.shadow.version is not None and cfg.shadow.version not in self.versions:
            raise ValueError(
                f"shadow.version {cfg.shadow.version!r} is not a deployed model version "
                f"{self.versions}"
            )
        self.config = cfg
        rules = cfg.rules
        if (self.tracker.window_s, self.tracker.max_customers) != (
            rules.local_velocity_window_s,
            rules.local_velocity_max_customers,
        ):
            self.tracker = VelocityTracker(
                rules.local_velocity_window_s, rules.local_velocity_max_customers
            )

    def assign(self, tx: Mapping[str, Any]) -> str:
        """The tabular model version for ``tx`` (experiment split, else the champion)."""
        exp = self.config.experiment
        if not exp.enabled:
            return self.champion
        return choose_arm(str(tx[exp.unit]), exp.arms, exp.salt)

    # -- the ladder --------------------------------------------------------------------------
    def budget_ms(self, n: int, requested_ms: float | None = None) -> float:
        """The deadline (ms) of a request of ``n`` transactions: the configured one
        (``deadline_ms``, or ``batch_deadline_ms`` for a batch), or the caller's own
        ``requested_ms`` when that is shorter (never longer; <= 0: already expired)."""
        limit = self.config.deadline_ms if n <= 1 else self.config.batch_deadline_ms
        if requested_ms is None or not math.isfinite(requested_ms):
            return limit
        return max(0.0, min(float(requested_ms), limit))

    async def decide(
        self,
        txs: Sequence[Mapping[str, Any]],
        *,
        arrived: float | None = None,
        budget_ms: float | None = None,
    ) -> LadderResult:
        """Decide every transaction. Never raises; always within the deadline + a few ms.

        The deadline is :meth:`budget_ms` (``budget_ms``: the caller's, capped by the configured
        one) from ``arrived``, the ``time.perf_counter()`` at which the request reached the
        service (default: now): time it spent before the ladder (receiving its body, waiting
        for a slot, parsing) counts against it, reported as stage ``admission``. A deadline
        already passed answers every transaction
        with the default decision at once (``deadline_expired``), calling no stage."""
        now = time.perf_counter()
        t0 = now if arrived is None else min(arrived, now)
        batch = [dict(tx) for tx in txs]
        deadline = t0 + self.budget_ms(len(batch), budget_ms) / 1e3
        lat: dict[str, float] = {}
        if arrived is not None:
            lat["admission"] = (now - t0) * 1e3
        if deadline <= now:
            return LadderResult(self._default_all(batch, t0, "deadline_expired", lat))
        try:
            # asyncio.timeout, not wait_for: no extra task, so no extra event-loop turn per call
            async with asyncio.timeout(deadline - now + GRACE_S):
                return await self._run(batch, t0, deadline, lat)
        except TimeoutError:
            return LadderResult(self._default_all(batch, t0, "deadline_exceeded", lat))
        except Exception:
            log.exception("decision ladder failed; answering with the default decision")
            return LadderResult(self._default_all(batch, t0, "internal_error", lat))

    async def _run(
        self, txs: list[dict[str, Any]], t0: float, deadline: float, lat: dict[str, float]
    ) -> LadderResult:
        import numpy as np

        cfg = self.config
        reserve = cfg.reserve_ms / 1e3

        def left(limit_ms: float) -> float:
            return min(limit_ms / 1e3, deadline - time.perf_counter() - reserve)

        versions = [self.assign(tx) for tx in txs]
        local_velocity = [self._observe(tx) for tx in txs]
        lat = dict(lat)

        full_budget = True
        fetch_start = time.perf_counter()
        if self.breaker_open():
            fetched = _Stage(None, "breaker_open", 0.0)
        else:
            budget = left(cfg.timeouts.features_ms)
            full_budget = budget >= cfg.timeouts.features_ms / 1e3
            fetched = await _guard(partial(self.stages.fetch, txs), budget)
            lat["features"] = fetched.ms
        rows: list[FeatureRow] | None = fetched.value
        if fetched.error is None and (rows is None or len(rows) != len(txs)):
            fetched.error, rows = "error", None
        # a fetch cut short by this request's own deadline (a caller's short timeout) says
        # nothing about the store: it must not open the breaker for every other caller; nor
        # does one whose timeout the event loop ran late (the replica was behind, BreakerConfig)
        lag_ms = cfg.feature_breaker.loop_lag_ms
        behind = fetched.late_ms
        if fetched.error == "timeout" and lag_ms and self.loop_lag is not None:
            # the loop behind while the fetch waited: its reply may have sat unread
            behind = max(behind, self.loop_lag(fetch_start))
        if fetched.error == "timeout" and full_budget and lag_ms and behind > lag_ms:
            self.breaker_counts["loop_lag"] += 1
        elif fetched.error != "timeout" or full_budget:
            self._count_fetch(fetched.error, fetch_start)
        if fetched.error is not None or rows is None:
            reason = (
                "feature_timeout" if fetched.error == "timeout" else "feature_store_unavailable"
            )
            ruled = [
                self._rules(tx, None, v, lv, reason, lat, t0)
                for tx, v, lv in zip(txs, versions, local_velocity, strict=True)
            ]
            return LadderResult(ruled, None)

        x = np.asarray([r.tabular for r in rows], dtype=np.float32)
        groups: dict[str, list[int]] = {}
        for i, v in enumerate(versions):
            groups.setdefault(v, []).append(i)
        seq_idx = [i for i, r in enumerate(rows) if r.sequence is not None]
        calls: list[Awaitable[_Stage]] = []
        sequence = self.stages.sequence if seq_idx else None
        run_seq = sequence is not None
        if sequence is not None:  # first: the longer of the two model stages
            seq = np.stack([np.asarray(rows[i].sequence, dtype=np.float32) for i in seq_idx])
            calls.append(
                _guard(
                    partial(sequence, x[seq_idx], seq),
                    left(cfg.timeouts.sequence_ms),
                    timed=sequence not in self.stages.inline,
                )
            )
        calls.extend(
            _guard(
                partial(self.stages.tabular, v, x[idx], cfg.contributions),
                left(cfg.timeouts.xgboost_ms),
                timed=self.stages.tabular not in self.stages.inline,
            )
            for v, idx in groups.items()
        )
        results = await asyncio.gather(*calls)
        tab_results = dict(zip(groups, results[int(run_seq) :], strict=True))
        lat["xgboost"] = max(r.ms for r in tab_results.values())

        seq_scores: dict[int, float] = {}
        seq_reason: str | None = None
        if run_seq:
            seq_stage = results[0]
            lat["sequence"] = seq_stage.ms
            if seq_stage.error is None and len(seq_stage.value) == len(seq_idx):
                seq_scores = {i: float(p) for i, p in zip(seq_idx, seq_stage.value, strict=True)}
            else:
                seq_reason = f"sequence_{seq_stage.error or 'error'}"
        elif self.stages.sequence is not None:
            seq_reason = "sequence_unavailable"

        outcomes: list[Outcome | None] = [None] * len(txs)
        items: list[ModelScores] = []
        item_idx: list[int] = []
        for v, idx in groups.items():
            res = tab_results[v]
            ok = res.error is None and len(res.value.probs) == len(idx)
            for j, i in enumerate(idx):
                if not ok:
                    reason = f"xgboost_{res.error or 'error'}"
                    outcomes[i] = self._rules(
                        txs[i], rows[i], v, local_velocity[i], reason, lat, t0
                    )
                    continue
                contribs = res.value.contributions
                items.append(
                    ModelScores(
                        xgboost=float(res.value.probs[j]),
                        sequence=seq_scores.get(i),
                        contributions=None if contribs is None else list(contribs[j]),
                        feature_values=[float(a) for a in x[i]],
                    )
                )
                item_idx.append(i)

        if items:
            decided = await _guard(
                partial(self.stages.decide, items),
                left(cfg.timeouts.decider_ms),
                timed=self.stages.decide not in self.stages.inline,
            )
            lat["decider"] = decided.ms
            verdicts: list[Verdict] | None = decided.value
            if decided.error is None and verdicts is not None and len(verdicts) == len(items):
                for i, verdict in zip(item_idx, verdicts, strict=True):
                    used_seq = "sequence" in verdict.models_used
                    why: str | None = None
                    if not used_seq and i not in seq_scores:
                        why = seq_reason
                    outcomes[i] = Outcome(
                        tx_id=str(txs[i]["tx_id"]),
                        decision=verdict.decision,
                        decision_source="ensemble" if used_seq else "xgboost_only",
                        model_version=versions[i],
                        score=verdict.score,
                        fallback_reason=why,
                        latency_ms=_finish(lat, t0),
                        reasons=list(verdict.reasons),
                        scores=dict(verdict.scores),
                        flags=dict(rows[i].flags),
                    )
            else:
                failed = f"decider_{decided.error or 'error'}"
                for i in item_idx:
                    outcomes[i] = self._rules(
                        txs[i], rows[i], versions[i], local_velocity[i], failed, lat, t0
                    )
        return LadderResult([o for o in outcomes if o is not None], rows)

    # -- feature-store circuit breaker --------------------------------------------------------
    def breaker_open(self) -> bool:
        return time.monotonic() < self._breaker_open_until

    def _count_fetch(self, error: str | None, started: float) -> None:
        # Failures and late answers count alike: a store that accepts and never answers (hung)
        # costs every request the whole feature timeout and pins a feature thread until the
        # Redis read timeout, so it must open the breaker as a stopped one does.
        # A failed fetch that ``started`` (time.perf_counter()) before the streak's last failure was
        # seen overlapped it: every fetch in flight during one 25 ms stall of a healthy store
        # times out together, and counting each would open the breaker, i.e. send a whole
        # open_ms of decisions to the rules, for one hiccup (3 fetches in flight at 150
        # requests/s a replica). The streak grows only with failures seen one after the other;
        # a hung store still opens it after ``failures`` feature timeouts in a row.
        if error == "breaker_open":
            return
        if error is None:
            self._fetch_failures, self._breaker_open_until = 0, 0.0
            return
        self.breaker_counts[error if error == "timeout" else "error"] += 1
        if started < self._failure_seen_at:
            self.breaker_counts["overlapped"] += 1
            return
        self._fetch_failures += 1
        self._failure_seen_at = time.perf_counter()
        breaker = self.config.feature_breaker
        if breaker.failures and self._fetch_failures >= breaker.failures:
            if not self.breaker_open():  # closed (or half-open) -> open
                self.breaker_counts["opened"] += 1
            self._breaker_open_until = time.monotonic() + breaker.open_ms / 1e3

    # -- lower rungs -------------------------------------------------------------------------
    def _observe(self, tx: Mapping[str, Any]) -> int | None:
        try:
            return self.tracker.observe(
                str(tx["customer_id"]), epoch_seconds(tx["ts"]), str(tx["tx_id"])
            )
        except Exception:  # a bad timestamp must not cost the decision
            return None

    def _rules(
        self,
        tx: Mapping[str, Any],
        row: FeatureRow | None,
        version: str,
        local_velocity: int | None,
        reason: str,
        lat: dict[str, float],
        t0: float,
    ) -> Outcome:
        t = time.perf_counter()
        rules = self.config.rules
        try:
            velocity: float | None = None
            if row is not None and rules.velocity_feature in self.feature_names:
                velocity = float(row.tabular[self.feature_names.index(rules.velocity_feature)])
            elif local_velocity is not None:
                velocity = float(local_velocity)
            result = apply_rules(float(tx["amount"]), velocity, rules)
        except Exception:
            log.exception("rules rung failed for %s", tx.get("tx_id"))
            return self._default(tx, version, f"{reason}+rules_error", lat, t0)
        stage = dict(lat)
        stage["rules"] = (time.perf_counter() - t) * 1e3
        return Outcome(
            tx_id=str(tx["tx_id"]),
            decision=result.decision,
            decision_source="rules",
            model_version=version,
            fallback_reason=reason,
            latency_ms=_finish(stage, t0),
            reasons=list(result.reasons),
            flags={} if row is None else dict(row.flags),
        )

    def _default(
        self, tx: Mapping[str, Any], version: str, reason: str, lat: dict[str, float], t0: float
    ) -> Outcome:
        return Outcome(
            tx_id=str(tx.get("tx_id", "")),
            decision=self.config.default_decision,
            decision_source="default",
            model_version=version,
            fallback_reason=reason,
            latency_ms=_finish(lat, t0),
        )

    def _default_all(
        self,
        txs: list[dict[str, Any]],
        t0: float,
        reason: str,
        lat: Mapping[str, float] | None = None,
    ) -> list[Outcome]:
        out = []
        for tx in txs:
            try:
                version = self.assign(tx)
            except Exception:
                version = self.champion
            out.append(self._default(tx, version, reason, dict(lat or {}), t0))
        return out

    # -- champion / challenger ----------------------------------------------------------------
    def shadow_indices(self, txs: Sequence[Mapping[str, Any]]) -> list[int]:
        sc = self.config.shadow
        if sc.version is None or sc.share <= 0:
            return []
        return [i for i, tx in enumerate(txs) if in_share(str(tx["tx_id"]), sc.share, sc.salt)]

    async def shadow(
        self,
        txs: Sequence[Mapping[str, Any]],
        result: LadderResult,
        timeout_s: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Score the shadow share with the shadow model (off the critical path); the decision
        is already made and is never changed. Returns one comparison record per scored tx."""
        import numpy as np

        sc = self.config.shadow
        idx = self.shadow_indices(txs)
        if not idx or result.rows is None or sc.version is None:
            return []
        x = np.asarray([result.rows[i].tabular for i in idx], dtype=np.float32)
        res = await asyncio.wait_for(self.stages.tabular(sc.version, x, "off"), timeout_s)
        records = []
        for i, p in zip(idx, res.probs, strict=True):
            o = result.outcomes[i]
            records.append(
                {
                    "tx_id": o.tx_id,
                    "champion_version": o.model_version,
                    "champion_score": o.scores.get("xgboost_raw"),
                    "shadow_version": sc.version,
                    "shadow_score": float(p),
                    "decision": o.decision,
                    "decision_source": o.decision_source,
                }
            )
        return records


async def _guard(
    call: Callable[[], Awaitable[Any]], budget_s: float, *, timed: bool = True
) -> _Stage:
    """Run ``call()`` for at most ``budget_s``; report value, error kind and elapsed ms.

    ``call`` makes the stage's coroutine here, not before: a guard cancelled before it starts
    (the request's deadline passing while ``gather`` schedules the stages) leaves no coroutine
    behind that was never awaited. ``timed=False``: a stage that never yields (:attr:`Stages.
    inline`): no timer (it could not fire before the stage ends: the same outcome, ~20 µs less)."""
    t = time.perf_counter()
    if budget_s <= 0:
        return _Stage(None, "timeout", 0.0)
    try:
        if not timed:
            return _Stage(await call(), None, (time.perf_counter() - t) * 1e3)
        async with asyncio.timeout(budget_s):
            value = await call()
        return _Stage(value, None, (time.perf_counter() - t) * 1e3)
    except TimeoutError:
        ms = (time.perf_counter() - t) * 1e3
        return _Stage(None, "timeout", ms, late_ms=max(0.0, ms - budget_s * 1e3))
    except Exception as exc:
        log.warning("stage failed: %s: %s", type(exc).__name__, exc)
        return _Stage(None, "error", (time.perf_counter() - t) * 1e3)


def _finish(lat: Mapping[str, float], t0: float) -> dict[str, float]:
    out = {k: round(v, 3) for k, v in lat.items()}
    out["total"] = round((time.perf_counter() - t0) * 1e3, 3)
    return out
