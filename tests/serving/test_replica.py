"""What runs inside a Serve replica, in process (no Ray cluster): a constructor's heap settling,
the XGBoost scorer's one-pass explain, and the colocated Ingress's behavioural-model batching."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.standin_models import memory_source, model_args
from tests.support.traffic import live_transactions


def test_settle_heap_collects_garbage_then_freezes_the_rest() -> None:
    """A replica ends its constructor with settle_heap: garbage made while building is freed,
    the long-lived rest is frozen out of later full collections."""
    import gc
    import weakref

    from serving.deployments import settle_heap

    class Node:
        other: object = None

    keep = [Node() for _ in range(1000)]
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    dead = weakref.ref(a)
    del a, b
    before = gc.get_freeze_count()
    try:
        settle_heap()
        assert dead() is None
        assert gc.get_freeze_count() >= before + len(keep)
        assert not any(gc.is_tracked(n) and n in gc.get_objects(0) for n in keep[:3])
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:squarederror"])
def test_one_pass_explain_matches_predict_and_contributions(tmp_path, objective: str) -> None:
    """XGBoostFileScorer.explain: a logistic model's probabilities come from the summed
    contributions (one pass), any other objective's from a separate prediction; either way
    what predict and contributions give, and tabular_result uses it."""
    import numpy as np
    import xgboost as xgb

    from serving.scorers import XGBoostFileScorer, tabular_result

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    dm = xgb.DMatrix(x, label=y, feature_names=["a", "b", "c", "d"])
    booster = xgb.train({"objective": objective, "max_depth": 3}, dm, num_boost_round=12)
    path = tmp_path / "m.ubj"
    booster.save_model(path)
    model = XGBoostFileScorer(str(path), "v1")
    probe = x[:25].copy()
    probe[::4, 2] = np.nan
    probs, contribs = model.explain(probe)
    np.testing.assert_array_equal(contribs, model.contributions(probe))
    np.testing.assert_allclose(probs, model.predict(probe), rtol=0, atol=1e-6)
    result = tabular_result(model, probe, "approx")
    assert result.probs == pytest.approx(list(probs), abs=1e-12)
    assert np.asarray(result.contributions).shape == (25, 5)
    assert tabular_result(model, probe, "off").contributions is None


def test_colocated_sequence_calls_go_direct_when_idle_and_coalesce_under_load(
    reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The colocated Ingress's behavioural-model stage: a call on an idle model skips
    ``@serve.batch`` (one forward pass of its own rows); calls arriving while a pass runs are
    coalesced into later passes; every caller gets the scores of its own rows."""
    from types import SimpleNamespace

    import numpy as np
    from ray import serve

    from serving.deployments import ColocatedBackend

    # outside a replica, @serve.batch reads max_ongoing_requests (for a warning) from here
    replica = SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=100))
    monkeypatch.setattr(serve, "get_replica_context", lambda: replica)

    backend = ColocatedBackend(model_args(reference, memory_source(reference)))
    components = backend.components
    txs = live_transactions(9, seed=11, prefix="colocated")
    rows = asyncio.run(components.fetch(txs))
    inputs = [
        (np.asarray([r.tabular], np.float32), np.asarray([r.sequence], np.float32)) for r in rows
    ]
    passes: list[int] = []
    score = components.score_sequence

    async def counted(x: np.ndarray, seq: np.ndarray) -> list[float]:
        passes.append(len(x))
        await asyncio.sleep(0.02)  # a forward pass long enough for the others to queue
        return await score(x, seq)

    components.score_sequence = counted  # type: ignore[method-assign]
    queued: list[int] = []  # calls that went through @serve.batch
    batched = backend._batched

    async def through_batcher(item: tuple[np.ndarray, np.ndarray]) -> list[float]:
        queued.append(1)
        return await batched(item)

    backend._batched = through_batcher  # type: ignore[method-assign]

    async def scenario() -> tuple[list[list[float]], list[int], list[list[float]]]:
        alone = [await backend._score_sequence(*inp) for inp in inputs]
        one_at_a_time = list(passes)
        passes.clear()
        together = await asyncio.gather(*(backend._score_sequence(*inp) for inp in inputs))
        return alone, one_at_a_time, list(together)

    try:
        alone, one_at_a_time, together = asyncio.run(scenario())
    finally:
        components.close()
    assert one_at_a_time == [1] * 9  # one call at a time: each its own pass...
    assert len(queued) == 8  # ...and only the concurrent calls met the batcher
    assert passes[0] == 1 and sum(passes) == 9 and len(passes) < 9, passes  # coalesced
    np.testing.assert_allclose(np.asarray(together), np.asarray(alone), atol=1e-6)
    assert backend._sequence_in_flight == 0
