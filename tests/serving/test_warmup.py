"""A replica's warm-up (serving.warmup): every stage run on a synthetic transaction, reads only,
never a reason for the replica not to start."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from riskml.decision.ladder import Stages
from riskml.decision.protocols import FeatureSourceUnavailable
from serving.config import AppArgs
from serving.warmup import WarmUpReport, synthetic_transaction, warm_up


def test_every_stage_runs_and_nothing_is_written(world: Any) -> None:
    from serving.inprocess import LocalComponents

    store = world.store("sqlite")
    components = LocalComponents(world.app_args(store), offload=True)
    calls: dict[str, int] = {"fetch": 0, "tabular": 0, "sequence": 0, "decide": 0}
    stages = components.stages()

    def counted(name: str, fn: Any) -> Any:
        async def call(*args: Any) -> Any:
            calls[name] += 1
            return await fn(*args)

        return call

    spied = Stages(
        fetch=counted("fetch", stages.fetch),
        tabular=counted("tabular", stages.tabular),
        decide=counted("decide", stages.decide),
        sequence=counted("sequence", stages.sequence),
    )
    try:
        tx = synthetic_transaction()
        before = asyncio.run(components.fetch([tx]))[0]
        report = asyncio.run(warm_up(spied, components.versions, rounds=5))
        assert report.rounds == 5 and report.skipped is None, report
        assert report.first_ms is not None and report.last_ms is not None
        assert report.first_ms > 0 and report.last_ms > 0
        # each round: one read, each model version, the behavioural model, the policy
        assert calls == {
            "fetch": 5,
            "tabular": 5 * len(components.versions),
            "sequence": 5,
            "decide": 5,
        }
        # reads only: the synthetic customer's features are what they were
        after = asyncio.run(components.fetch([tx]))[0]
        assert after.tabular == before.tabular
    finally:
        components.close()
        world.drop_store(store)


def test_a_failing_stage_stops_it_without_failing_the_replica() -> None:
    async def down(txs: list[dict[str, Any]]) -> Any:
        raise FeatureSourceUnavailable("redis://10.0.0.9:6379 refused the connection")

    async def never(*args: Any) -> Any:  # pragma: no cover - never reached
        raise AssertionError("no model is called without features")

    stages = Stages(fetch=down, tabular=never, decide=never)
    report = asyncio.run(warm_up(stages, ["v1"], rounds=3))
    assert report.rounds == 0
    assert report.skipped is not None and "FeatureSourceUnavailable" in report.skipped
    assert "refused the connection" in report.skipped

    async def slow(txs: list[dict[str, Any]]) -> Any:
        await asyncio.sleep(5)

    stuck = Stages(fetch=slow, tabular=never, decide=never)
    report = asyncio.run(warm_up(stuck, ["v1"], rounds=3, timeout_s=0.2))
    assert report.rounds == 0 and report.skipped == "TimeoutError"


def test_rounds_are_checked() -> None:
    assert asyncio.run(warm_up(None, [], rounds=0)) == WarmUpReport(0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="warm_up_rounds"):
        AppArgs.model_validate({"bundle_dir": "/nonexistent", "warm_up_rounds": -1})
