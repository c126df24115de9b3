"""The fallback ladder (:mod:`riskml.decision.ladder`) in process, through
:class:`serving.inprocess.InProcessApp`: real models and a real in-memory source, with stages made
slow or failing to walk down every rung. Fast (no Ray); the same ladder runs in the Ingress."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from riskml.decision.protocols import FeatureSourceUnavailable
from riskml.decision.split import in_share
from serving.inprocess import InProcessApp
from tests.support.standin_models import memory_source, model_args
from tests.support.traffic import live_transactions

DEADLINE_MS = 40.0


@pytest.fixture(scope="module")
def txs() -> list[dict[str, Any]]:
    return live_transactions(24, seed=11, prefix="ladder")


def make_app(reference: dict[str, Any], **ingress: Any) -> InProcessApp:
    source = memory_source(reference)
    config = {"deadline_ms": DEADLINE_MS, "batch_deadline_ms": 200.0, **ingress}
    return InProcessApp(model_args(reference, source, ingress_config=config))


def slow(stage: Any, seconds: float) -> Any:
    async def wrapped(*args: Any) -> Any:
        await asyncio.sleep(seconds)
        return await stage(*args)

    return wrapped


def failing(exc: Exception) -> Any:
    async def wrapped(*args: Any) -> Any:
        raise exc

    return wrapped


def run(app: InProcessApp, txs: list[dict[str, Any]]) -> tuple[list[Any], float]:
    t = time.perf_counter()
    out = asyncio.run(app.decide(txs))
    return out, (time.perf_counter() - t) * 1e3


def test_happy_path_is_the_ensemble_with_reasons(reference: dict[str, Any], txs: list) -> None:
    app = make_app(reference)
    out, _ = run(app, txs[:1])
    (r,) = out
    assert r.decision_source == "ensemble" and r.fallback_reason is None
    assert r.model_version == "v1" and 0.0 <= r.score <= 1.0
    assert set(r.latency_ms) == {"features", "xgboost", "sequence", "decider", "total"}
    assert {"xgboost_raw", "sequence_raw", "xgboost_calibrated"} <= set(r.scores)
    assert r.reasons and all(x.contribution > 0 for x in r.reasons)
    names = app.ladder.feature_names
    assert all(x.feature in names for x in r.reasons)


def test_batch_decides_every_transaction_in_order(reference: dict[str, Any], txs: list) -> None:
    out, _ = run(make_app(reference), txs)
    assert [o.tx_id for o in out] == [t["tx_id"] for t in txs]
    assert {o.decision_source for o in out} == {"ensemble"}


def test_feature_store_down_gives_rules_with_local_velocity(
    reference: dict[str, Any], txs: list
) -> None:
    app = make_app(reference, rules={"velocity_review": 2, "velocity_decline": 50})
    app.ladder.stages.fetch = failing(FeatureSourceUnavailable("redis down"))
    same = [dict(txs[0], tx_id=f"burst-{i}", amount=5.0) for i in range(3)]
    outs = [run(app, [tx])[0][0] for tx in same]
    assert {o.decision_source for o in outs} == {"rules"}
    assert {o.fallback_reason for o in outs} == {"feature_store_unavailable"}
    # the replica-local counter saw the first two: the third crosses velocity_review=2
    assert [o.decision for o in outs] == ["approve", "approve", "review"]
    assert outs[2].reasons[0].code == "velocity_over_review_limit"


def test_feature_breaker_skips_a_failing_store_then_probes_it(
    reference: dict[str, Any], txs: list
) -> None:
    app = make_app(reference, feature_breaker={"failures": 2, "open_ms": 300})
    real = app.ladder.stages.fetch
    calls: list[int] = []
    down = True

    async def flaky(batch: list[dict[str, Any]]) -> Any:
        calls.append(1)
        if down:
            raise FeatureSourceUnavailable("down")
        return await real(batch)

    app.ladder.stages.fetch = flaky
    outs = [run(app, [tx])[0][0] for tx in txs[:4]]
    assert len(calls) == 2  # the breaker opened after two failures
    assert {(o.decision_source, o.fallback_reason) for o in outs} == {
        ("rules", "feature_store_unavailable")
    }
    assert "features" not in outs[-1].latency_ms  # skipped, not waited for
    down = False
    time.sleep(0.35)
    (o,), _ = run(app, txs[4:5])
    assert o.decision_source == "ensemble" and len(calls) == 3


def test_a_callers_short_deadline_never_opens_the_breaker_for_the_others(
    reference: dict[str, Any], txs: list
) -> None:
    """A fetch cut short by the request's own tight deadline (a client's X-Request-Timeout-Ms)
    falls back for that request only: the store was never given its feature timeout, so the
    breaker counts nothing and the next caller with the full budget gets the models."""
    app = make_app(
        reference,
        deadline_ms=500.0,
        timeouts={"features_ms": 200.0},  # room for a loaded machine: the point is the breaker
        feature_breaker={"failures": 2, "open_ms": 5_000},
    )
    ladder = app.ladder
    ladder.stages.fetch = slow(ladder.stages.fetch, 0.005)  # a healthy store, 5 ms away
    before = dict(ladder.breaker_counts)

    async def tight(tx: dict[str, Any]) -> Any:
        return (await ladder.decide([tx], budget_ms=6.0)).outcomes[0]

    short = [asyncio.run(tight(tx)) for tx in txs[:6]]
    assert {(o.decision_source, o.fallback_reason) for o in short} == {("rules", "feature_timeout")}
    assert ladder.breaker_counts == before and not ladder.breaker_open()
    (o,), _ = run(app, txs[6:7])
    assert o.decision_source == "ensemble"
    # the same late fetch with the whole feature timeout is the store's fault: it counts
    ladder.stages.fetch = slow(ladder.stages.fetch, 1.0)
    late = [run(app, [tx])[0][0] for tx in txs[7:9]]
    assert {o.fallback_reason for o in late} == {"feature_timeout"}
    assert ladder.breaker_counts["timeout"] == before["timeout"] + 2 and ladder.breaker_open()


@pytest.mark.parametrize("loop_lag_ms", [10.0, 0.0])
def test_a_late_fetch_whose_timeout_the_busy_loop_ran_late_does_not_open_the_breaker(
    reference: dict[str, Any], txs: list, loop_lag_ms: float
) -> None:
    """A saturated replica runs its timers late: a feature timeout that fired 40 ms after it was
    due (the loop was busy deciding other requests) says nothing about the store, so it falls
    back for its own request but is not counted against the store (``loop_lag``); with
    ``loop_lag_ms: 0`` every late fetch counts, as before."""
    app = make_app(
        reference,
        deadline_ms=500.0,
        timeouts={"features_ms": 20.0},
        feature_breaker={"failures": 2, "open_ms": 5_000, "loop_lag_ms": loop_lag_ms},
    )
    ladder = app.ladder
    ladder.stages.fetch = slow(ladder.stages.fetch, 1.0)  # never in time

    async def busy_loop(tx: dict[str, Any]) -> Any:
        async def hog() -> None:  # another request's CPU work across the timeout's due time
            await asyncio.sleep(0.005)
            time.sleep(0.06)

        task = asyncio.ensure_future(hog())
        out = (await ladder.decide([tx])).outcomes[0]
        await task
        return out

    before = dict(ladder.breaker_counts)
    late = [asyncio.run(busy_loop(tx)) for tx in txs[:3]]
    reasons = [(o.decision_source, o.fallback_reason) for o in late]
    counts = {k: v - before[k] for k, v in ladder.breaker_counts.items()}
    if loop_lag_ms:
        assert reasons == [("rules", "feature_timeout")] * 3
        assert counts == {"timeout": 0, "error": 0, "opened": 0, "loop_lag": 3, "overlapped": 0}
        assert not ladder.breaker_open()
        # the same late fetch on an idle loop is the store's: two open the breaker
        for tx in txs[3:5]:
            run(app, [tx])
        assert ladder.breaker_counts["timeout"] == before["timeout"] + 2 and ladder.breaker_open()
    else:  # counted: open after two, the third skips the store
        assert reasons == [("rules", "feature_timeout")] * 2 + [
            ("rules", "feature_store_unavailable")
        ]
        assert counts["timeout"] == 2 and counts["loop_lag"] == 0 and ladder.breaker_open()


def test_a_late_fetch_while_the_heartbeat_saw_the_loop_behind_does_not_open_the_breaker(
    reference: dict[str, Any], txs: list
) -> None:
    """Under saturation a timeout fires only a few ms late, while the loop was behind for most
    of the fetch (many callbacks per turn): the replica's heartbeat (``Ladder.loop_lag``,
    serving.looplag) says so, and the fetch is not counted against the store. The ladder asks
    it from the fetch's start, and only about a timed-out fetch."""
    app = make_app(
        reference,
        deadline_ms=500.0,
        timeouts={"features_ms": 20.0},
        feature_breaker={"failures": 2, "open_ms": 5_000, "loop_lag_ms": 10.0},
    )
    ladder = app.ladder
    ladder.stages.fetch = slow(ladder.stages.fetch, 1.0)  # never in time
    asked: list[float] = []
    behind = {"ms": 15.0}

    def heartbeat(since: float) -> float:
        asked.append(since)
        return behind["ms"]

    ladder.loop_lag = heartbeat
    t = time.perf_counter()
    out = [run(app, [tx])[0][0] for tx in txs[:3]]
    assert [o.fallback_reason for o in out] == ["feature_timeout"] * 3
    assert ladder.breaker_counts["loop_lag"] == 3 and ladder.breaker_counts["timeout"] == 0
    assert not ladder.breaker_open()
    assert len(asked) == 3 and all(since >= t for since in asked)
    # the loop kept up (5 ms behind, under loop_lag_ms): the store's fault, two open it
    behind["ms"] = 5.0
    for tx in txs[3:5]:
        run(app, [tx])
    assert ladder.breaker_counts["timeout"] == 2 and ladder.breaker_open()


def test_fetches_that_fail_together_count_once_and_a_hung_store_still_opens_the_breaker(
    reference: dict[str, Any], txs: list
) -> None:
    """One stall of a healthy store under load times out every fetch then in flight (six at
    once here, as at 300 requests/s): each of those requests falls to the rules, but they are
    one observation of the store, not six, so the breaker stays closed and the next request
    gets the models. Three such stalls with answers in between never open it; a hung store,
    three timeouts one after the other, still does."""
    app = make_app(
        reference,
        deadline_ms=500.0,
        timeouts={"features_ms": 20.0},
        # every late fetch counts (no loop-lag excuse): the point is the overlap
        feature_breaker={"failures": 3, "open_ms": 5_000, "loop_lag_ms": 0.0},
    )
    ladder = app.ladder
    healthy = ladder.stages.fetch
    stalled = slow(healthy, 1.0)  # no answer within the feature timeout

    async def together(batch: list[dict[str, Any]]) -> list[Any]:
        results = await asyncio.gather(*(ladder.decide([tx]) for tx in batch))
        return [r.outcomes[0] for r in results]

    before = dict(ladder.breaker_counts)
    for stall in range(3):
        ladder.stages.fetch = stalled
        outs = asyncio.run(together(txs[stall * 7 : stall * 7 + 6]))
        assert [(o.decision_source, o.fallback_reason) for o in outs] == [
            ("rules", "feature_timeout")
        ] * 6
        assert not ladder.breaker_open()
        ladder.stages.fetch = healthy  # the stall ends: the next request gets the models
        (o,), _ = run(app, [txs[stall * 7 + 6]])
        assert o.decision_source == "ensemble", o
    counts = {k: v - before[k] for k, v in ladder.breaker_counts.items()}
    assert counts == {"timeout": 18, "error": 0, "opened": 0, "loop_lag": 0, "overlapped": 15}

    ladder.stages.fetch = stalled  # hung: timeouts one after the other
    outs = [run(app, [tx])[0][0] for tx in txs[21:24]]
    assert [o.fallback_reason for o in outs] == ["feature_timeout"] * 3
    assert ladder.breaker_open() and ladder.breaker_counts["opened"] == before["opened"] + 1
    (o,), _ = run(app, txs[:1])
    assert (o.decision_source, o.fallback_reason) == ("rules", "feature_store_unavailable")
    assert "features" not in o.latency_ms  # skipped, not waited for


def test_slow_feature_store_times_out_within_the_deadline(
    reference: dict[str, Any], txs: list
) -> None:
    app = make_app(reference)
    app.ladder.stages.fetch = slow(app.ladder.stages.fetch, 1.0)
    (o,), ms = run(app, txs[:1])
    assert (o.decision_source, o.fallback_reason) == ("rules", "feature_timeout")
    assert o.latency_ms["total"] <= DEADLINE_MS and ms < DEADLINE_MS + 10


def test_slow_xgboost_falls_to_rules_and_uses_fetched_velocity(
    reference: dict[str, Any], txs: list
) -> None:
    app = make_app(reference)
    app.ladder.stages.tabular = slow(app.ladder.stages.tabular, 1.0)
    (o,), ms = run(app, txs[:1])
    assert (o.decision_source, o.fallback_reason) == ("rules", "xgboost_timeout")
    assert "velocity_unknown" not in [r.code for r in o.reasons]
    assert o.latency_ms["total"] <= DEADLINE_MS and ms < DEADLINE_MS + 10


def test_stages_that_never_yield_arm_no_timer(
    reference: dict[str, Any], txs: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process the models and the policy run on the loop to their end: a timer could not
    fire before they end, so only the request's deadline and the fetch arm one (two a
    decision, not five); a stage replaced by one that yields is timed again (above)."""
    app = make_app(reference)
    stages = app.ladder.stages
    assert stages.inline == {stages.tabular, stages.sequence, stages.decide}
    armed: list[float | None] = []
    timeout = asyncio.timeout

    def counting(delay: float | None) -> Any:
        armed.append(delay)
        return timeout(delay)

    monkeypatch.setattr(asyncio, "timeout", counting)
    (o,), _ = run(app, txs[:1])
    assert o.decision_source == "ensemble" and len(armed) == 2
    app.ladder.stages.sequence = slow(stages.sequence, 0.0)
    armed.clear()
    (o,), _ = run(app, txs[:1])
    assert o.decision_source == "ensemble" and len(armed) == 3


@pytest.mark.parametrize(
    ("stage", "reason"), [("slow", "sequence_timeout"), ("error", "sequence_error")]
)
def test_sequence_trouble_gives_xgboost_only(
    reference: dict[str, Any], txs: list, stage: str, reason: str
) -> None:
    app = make_app(reference)
    base = app.ladder.stages.sequence
    app.ladder.stages.sequence = slow(base, 1.0) if stage == "slow" else failing(RuntimeError())
    (o,), ms = run(app, txs[:1])
    assert (o.decision_source, o.fallback_reason) == ("xgboost_only", reason)
    assert o.score == pytest.approx(o.scores["xgboost_calibrated"])
    assert ms < DEADLINE_MS + 10


def test_decider_failure_falls_to_rules(reference: dict[str, Any], txs: list) -> None:
    app = make_app(reference)
    app.ladder.stages.decide = failing(RuntimeError("boom"))
    (o,), _ = run(app, txs[:1])
    assert (o.decision_source, o.fallback_reason) == ("rules", "decider_error")


def test_broken_rules_give_the_configured_default(reference: dict[str, Any], txs: list) -> None:
    app = make_app(reference, default_decision="decline")
    app.ladder.stages.fetch = failing(FeatureSourceUnavailable("down"))
    bad = dict(txs[0], amount="not-a-number")  # bypasses API validation on purpose
    (o,) = asyncio.run(app.decide_raw([bad])).outcomes
    assert (o.decision, o.decision_source) == ("decline", "default")
    assert o.fallback_reason == "feature_store_unavailable+rules_error"


def test_reconfigure_validates_versions_and_splits_traffic(
    reference: dict[str, Any], txs: list
) -> None:
    app = make_app(reference)
    with pytest.raises(ValueError, match="unknown model versions"):
        app.ladder.reconfigure({"experiment": {"enabled": True, "arms": {"v9": 1.0}}})
    with pytest.raises(ValueError, match="not a deployed model version"):
        app.ladder.reconfigure({"shadow": {"version": "v9", "share": 0.5}})
    app.ladder.reconfigure(
        {"experiment": {"enabled": True, "salt": "e1", "arms": {"v1": 1.0, "v2": 1.0}}}
    )
    out, _ = run(app, txs)
    assert {o.model_version for o in out} == {"v1", "v2"}
    again, _ = run(app, txs)
    assert [o.model_version for o in out] == [o.model_version for o in again]


def test_shadow_scores_never_change_decisions(reference: dict[str, Any], txs: list) -> None:
    plain = make_app(reference)
    shadowed = make_app(reference, shadow={"version": "v2", "share": 0.5, "salt": "s"})
    base = asyncio.run(plain.decide_raw(txs))
    result = asyncio.run(shadowed.decide_raw(txs))
    assert [(o.decision, o.score) for o in base.outcomes] == [
        (o.decision, o.score) for o in result.outcomes
    ]
    records = asyncio.run(shadowed.ladder.shadow(txs, result))
    expected = [t["tx_id"] for t in txs if in_share(t["tx_id"], 0.5, "s")]
    assert [r["tx_id"] for r in records] == expected and expected
    import numpy as np

    idx = [i for i, t in enumerate(txs) if in_share(t["tx_id"], 0.5, "s")]
    x = np.asarray([result.rows[i].tabular for i in idx], dtype=np.float32)
    v2 = shadowed.models["v2"].predict(x)
    assert [r["shadow_score"] for r in records] == pytest.approx(list(v2), abs=1e-9)
    assert all(r["shadow_version"] == "v2" and r["champion_version"] == "v1" for r in records)


def test_feature_contract_mismatch_is_refused(reference: dict[str, Any]) -> None:
    from riskml.decision.protocols import FeatureContractMismatch

    source = {
        "factory": "tests.support.faulty_components:ReorderedSource",
        "kwargs": {"history": reference["requests"][:10]},
    }
    with pytest.raises(FeatureContractMismatch, match="different order"):
        InProcessApp(model_args(reference, source))
