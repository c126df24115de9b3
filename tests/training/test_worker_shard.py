"""A Ray Train worker's shard copied out of the object store (riskml.training.sequence_train):
the same values in the worker's own, writable memory; a shard over the limit left where it is."""

from __future__ import annotations

import numpy as np
import pytest

from riskml.training import sequence_train
from riskml.training.sequence_train import private_copy


def _shard() -> dict[str, object]:
    rng = np.random.default_rng(0)
    arrays = {
        "tab": rng.normal(size=(1_000, 4)).astype(np.float32),
        "seq": rng.normal(size=(1_000, 8, 3)).astype(np.float32),
        "y": (rng.random(1_000) < 0.1).astype(np.float32),
    }
    for a in arrays.values():
        a.flags.writeable = False  # what ray.get hands a worker: read-only views
    return {**arrays, "pos_rate": 0.1}


def test_a_shard_is_copied_into_the_workers_own_memory() -> None:
    shard = _shard()
    copied = private_copy(shard)
    assert copied.keys() == shard.keys() and copied["pos_rate"] == 0.1
    for key in ("tab", "seq", "y"):
        got, src = copied[key], shard[key]
        assert isinstance(got, np.ndarray) and isinstance(src, np.ndarray)
        assert got.flags.writeable and got.flags.owndata and not np.shares_memory(got, src)
        np.testing.assert_array_equal(got, src)
        assert got.dtype == src.dtype


def test_a_shard_over_the_limit_is_left_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    shard = _shard()
    monkeypatch.setattr(sequence_train, "PRIVATE_SHARD_MAX_BYTES", 1_000)
    kept = private_copy(shard)
    assert all(kept[k] is shard[k] for k in shard)
