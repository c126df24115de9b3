"""The hand-fused NumPy GRU path (:class:`FusedGRU`) gives torch's probabilities within 1e-6.

Serving scores one transaction per call; the fused path replaces torch's per-op dispatch there,
so it must agree with :func:`predict_proba` on every input torch accepts — short and empty
histories, NaN and ±inf, float64 values beyond float32's range — for 1, a few and many rows,
in both internal precisions, for random and briefly trained models.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from riskml.models.sequence import (
    Architecture,
    FusedGRU,
    SequenceParams,
    build_model,
    load_model,
    predict_proba,
    set_normalizer,
    train_epoch,
    weights_to_safetensors,
)
from riskml.training.synthetic import synthetic_arrays

TOL = 1e-6
SEQ_LEN = 16
DTYPES: list[type[np.floating[Any]]] = [np.float32, np.float64]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Serving's setting (one intra-op thread); on a shared 2-core box torch's OpenMP pool
    otherwise makes the brief training here ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(n: int, n_tabular: int, seed: int) -> dict[str, np.ndarray]:
    """Serving-shaped inputs: 16 steps x 3 fields (amount, gap, hour), short histories padded
    with NaN, ``n_tabular`` features (``synthetic_arrays`` needs at least 5 to draw labels)."""
    d = synthetic_arrays(n, n_tabular=max(n_tabular, 5), seq_len=SEQ_LEN, seed=seed)
    d["tabular"] = np.ascontiguousarray(d["tabular"][:, :n_tabular])
    return d


def _model(
    *, layers: int, steps: int | None, n_tabular: int, hidden: int = 16, trained: bool
) -> Any:
    """A GRU model with real normalisation statistics, random or trained for a few epochs (so
    the encoder's weights and the probabilities are not those of an initialisation)."""
    torch.manual_seed(layers * 100 + (steps or 0) * 10 + n_tabular + trained)
    params = SequenceParams(hidden=hidden, layers=layers, steps=steps, tab_hidden=12, dropout=0.1)
    arch = Architecture.from_params(params, n_tabular=n_tabular, n_sequence=3, seq_len=SEQ_LEN)
    model = build_model(arch)
    d = _data(1500, n_tabular, seed=5)
    set_normalizer(model, d["tabular"], d["sequence"])
    if trained:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        tab, seq = torch.as_tensor(d["tabular"]), torch.as_tensor(d["sequence"])
        y = torch.as_tensor(d["y"], dtype=torch.float32)
        for _ in range(6):
            train_epoch(model, opt, tab, seq, y, batch_size=128, pos_weight=5.0)
    return model.eval()


def _hostile(d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The inputs with every kind of value forward has to clean up, in the first rows."""
    tab, seq = d["tabular"].copy(), d["sequence"].copy()
    seq[0] = np.nan  # no history at all
    seq[1, :12] = np.nan  # a short history
    seq[2, 3, 1] = np.inf  # one field +inf: the step stays valid, the value clamps to +8
    seq[3, 5, :] = -np.inf  # a whole step -inf: invalid, values clamp to -8
    seq[4, -1, 0] = np.nan  # the newest step partly missing
    seq[5, :, 0] = 1e30  # finite but far outside the training range: clamped
    seq[6, 7, :] = [np.nan, np.inf, np.nan]
    if tab.shape[1]:
        tab[0, 0] = np.nan
        tab[1, :] = np.inf
        tab[2, -1] = -np.inf
        tab[7, :] = np.nan
    return tab, seq


CASES = [
    pytest.param(dict(layers=1, steps=None, n_tabular=6, trained=True), id="1layer-trained"),
    pytest.param(dict(layers=2, steps=None, n_tabular=6, trained=True), id="2layers-trained"),
    pytest.param(dict(layers=1, steps=5, n_tabular=6, trained=True), id="1layer-steps5-trained"),
    pytest.param(dict(layers=2, steps=5, n_tabular=0, trained=True), id="2layers-steps5-notab"),
    pytest.param(dict(layers=1, steps=None, n_tabular=0, trained=False), id="1layer-notab-init"),
    pytest.param(
        dict(layers=3, steps=3, n_tabular=6, hidden=8, trained=False), id="3layers-steps3-init"
    ),
    pytest.param(dict(layers=1, steps=None, n_tabular=20, hidden=64, trained=True), id="h64"),
    # fewer steps than layers: the layers' wavefront (FusedGRU) starts and ends in one tick
    pytest.param(dict(layers=3, steps=1, n_tabular=6, trained=False), id="3layers-steps1"),
    pytest.param(dict(layers=4, steps=2, n_tabular=6, trained=False), id="4layers-steps2"),
]


@pytest.mark.parametrize("case", CASES)
def test_fused_equals_torch_for_one_a_few_and_many_rows(case: dict[str, Any]) -> None:
    model = _model(**case)
    tab, seq = _hostile(_data(400, case["n_tabular"], seed=11))
    ref = predict_proba(model, tab, seq)
    if case["trained"]:  # a trained model's scores spread: the comparison is not of constants
        assert ref.std() > 0.02
    for dtype in DTYPES:
        fused = FusedGRU.from_module(model, dtype=dtype)
        many = fused.predict_proba(tab, seq)  # the wide path (σ of r, z; 1 - z subtracted)
        assert many.dtype == np.float64 and many.shape == (400,)
        assert np.abs(many - ref).max() <= TOL
        few = fused.predict_proba(tab[:5], seq[:5])  # the narrow path, several columns
        assert np.abs(few - ref[:5]).max() <= TOL
        one = np.array([fused.predict_proba(tab[i : i + 1], seq[i : i + 1])[0] for i in range(40)])
        assert np.abs(one - ref[:40]).max() <= TOL  # serving's call: one row, 1-d buffers


def test_the_comparison_sees_the_sequence_encoder() -> None:
    """The 1e-6 agreement is not carried by the tabular branch alone: changing the recent steps
    moves the (trained) model's probabilities by far more than the tolerance, and the fused
    path follows, with 1 layer and 2."""
    for layers in (1, 2):
        model = _model(layers=layers, steps=None, n_tabular=6, trained=True)
        d = _data(200, 6, seed=3)
        tab, seq = d["tabular"], d["sequence"]
        moved = seq.copy()
        moved[:, -3:, 0] *= 20.0  # a burst of large amounts
        moved[:, -3:, 1] = 0.01  # in quick succession
        fused = FusedGRU.from_module(model)
        base, after = predict_proba(model, tab, seq), predict_proba(model, tab, moved)
        assert np.abs(after - base).max() > 1e-2
        assert np.abs(fused.predict_proba(tab, moved) - after).max() <= TOL
        assert np.abs(fused.predict_proba(tab, seq) - base).max() <= TOL


def test_empty_history_and_each_non_finite_value_one_row_at_a_time() -> None:
    model = _model(layers=2, steps=None, n_tabular=6, trained=True)
    fused = FusedGRU.from_module(model)
    tab, seq = _hostile(_data(12, 6, seed=21))
    for i in range(12):
        ref = predict_proba(model, tab[i : i + 1], seq[i : i + 1])
        got = fused.predict_proba(tab[i : i + 1], seq[i : i + 1])
        assert np.isfinite(got).all() and np.abs(got - ref).max() <= TOL, i
    # a row with no history is scored from the tabular features, not as a constant
    empty = np.full((3, SEQ_LEN, 3), np.nan, dtype=np.float32)
    t3 = _data(3, 6, seed=4)["tabular"]
    got = fused.predict_proba(t3, empty)
    assert np.abs(got - predict_proba(model, t3, empty)).max() <= TOL
    assert np.ptp(got) > 0


def test_float64_read_only_and_strided_inputs_are_read_as_torch_reads_them() -> None:
    """Inputs are converted to float32 first, as torch's path does: a float64 value beyond
    float32's range becomes ±inf (an invalid step), not a large finite number. The caller's
    arrays are left unchanged."""
    model = _model(layers=1, steps=4, n_tabular=6, trained=True)
    fused = FusedGRU.from_module(model)
    d = _data(30, 6, seed=8)
    tab = d["tabular"].astype(np.float64)
    seq = d["sequence"].astype(np.float64)
    seq[0, -2:, :] = 1e300  # inf in float32: both newest steps become invalid and +8
    seq[1, -1, 2] = -1e300
    tab[2, 1] = 1e300
    frozen_tab, frozen_seq = tab.copy(), seq.copy()
    frozen_tab.flags.writeable = frozen_seq.flags.writeable = False
    ref = predict_proba(model, frozen_tab, frozen_seq)
    got = fused.predict_proba(frozen_tab, frozen_seq)
    assert np.abs(got - ref).max() <= TOL
    np.testing.assert_array_equal(frozen_seq, seq)
    # a strided view (every other row, fields reversed) and a Python list
    view_seq, view_tab = seq[::2, :, ::-1], tab[::2]
    ref_view = predict_proba(model, np.ascontiguousarray(view_tab), np.ascontiguousarray(view_seq))
    assert np.abs(fused.predict_proba(view_tab, view_seq) - ref_view).max() <= TOL
    as_list = fused.predict_proba(tab[:1].tolist(), seq[:1].tolist())
    assert np.abs(as_list - ref[:1]).max() <= TOL


def test_buffers_are_reused_without_carrying_state_between_calls() -> None:
    """The per-thread buffers keep only constants (ones, the zero initial state): interleaved
    batch sizes and inputs give the same probabilities as fresh calls, and results are new
    arrays the next call does not overwrite."""
    model = _model(layers=2, steps=None, n_tabular=6, trained=True)
    fused = FusedGRU.from_module(model)
    d = _data(50, 6, seed=13)
    tab, seq = _hostile(d)
    ref = predict_proba(model, tab, seq)
    first = fused.predict_proba(tab[:1], seq[:1])
    kept = first.copy()
    for start, size in [(3, 1), (0, 7), (10, 1), (0, 50), (20, 7), (0, 1)]:
        got = fused.predict_proba(tab[start : start + size], seq[start : start + size])
        assert np.abs(got - ref[start : start + size]).max() <= TOL
    np.testing.assert_array_equal(first, kept)
    # more shapes than the cache keeps, and a batch larger than CACHE_ROWS (never cached)
    for length in range(SEQ_LEN, SEQ_LEN - 10, -1):
        got = fused.predict_proba(tab[:2], seq[:2, -length:])
        assert np.abs(got - predict_proba(model, tab[:2], seq[:2, -length:])).max() <= TOL
    big_tab = np.repeat(tab, 6, axis=0)
    big_seq = np.repeat(seq, 6, axis=0)
    assert len(big_tab) > FusedGRU.CACHE_ROWS
    assert np.abs(fused.predict_proba(big_tab, big_seq) - np.repeat(ref, 6)).max() <= TOL


def test_threads_share_one_fused_model() -> None:
    model = _model(layers=1, steps=None, n_tabular=6, trained=True)
    fused = FusedGRU.from_module(model)
    tab, seq = _hostile(_data(64, 6, seed=17))
    ref = predict_proba(model, tab, seq)

    def score(i: int) -> float:
        j = i % 64
        return float(fused.predict_proba(tab[j : j + 1], seq[j : j + 1])[0])

    with ThreadPoolExecutor(max_workers=4) as pool:
        got = np.array(list(pool.map(score, range(256))))
    assert np.abs(got - np.tile(ref, 4)).max() <= TOL


def test_from_a_loaded_bundle_model_and_through_pickle() -> None:
    """Serving builds it from the safetensors-loaded module; it also survives pickling."""
    model = _model(layers=2, steps=5, n_tabular=6, trained=True)
    loaded = load_model(model.arch.model_dump(), weights_to_safetensors(model))
    fused = pickle.loads(pickle.dumps(FusedGRU.from_module(loaded)))
    tab, seq = _hostile(_data(20, 6, seed=19))
    assert np.abs(fused.predict_proba(tab, seq) - predict_proba(model, tab, seq)).max() <= TOL


def test_weights_are_copied_out_once() -> None:
    """The fused path keeps the weights it was built from (rebuild it after loading others)."""
    model = _model(layers=1, steps=None, n_tabular=6, trained=False)
    tab, seq = _hostile(_data(10, 6, seed=23))
    fused = FusedGRU.from_module(model)
    before = predict_proba(model, tab, seq)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    assert np.abs(predict_proba(model, tab, seq) - before).max() > 1e-3
    assert np.abs(fused.predict_proba(tab, seq) - before).max() <= TOL


def test_transformer_and_bad_shapes_are_refused() -> None:
    arch = Architecture.from_params(
        SequenceParams(encoder="transformer", hidden=8, tab_hidden=8),
        n_tabular=3,
        n_sequence=3,
        seq_len=SEQ_LEN,
    )
    with pytest.raises(ValueError, match="no fused path for the 'transformer' encoder"):
        FusedGRU.from_module(build_model(arch))
    with pytest.raises(ValueError, match="not a SequenceRiskModel"):
        FusedGRU.from_module(torch.nn.GRU(4, 8))
    fused = FusedGRU.from_module(_model(layers=1, steps=None, n_tabular=6, trained=False))
    d = _data(4, 6, seed=2)
    with pytest.raises(ValueError, match=r"seq must be \(n, L, 3\)"):
        fused.predict_proba(d["tabular"], d["sequence"][:, :, :2])
    with pytest.raises(ValueError, match=r"tab must be \(4, 6\)"):
        fused.predict_proba(d["tabular"][:3], d["sequence"])
    with pytest.raises(ValueError, match="no steps"):
        fused.predict_proba(d["tabular"], d["sequence"][:, :0])
    empty = fused.predict_proba(np.empty((0, 6)), np.empty((0, SEQ_LEN, 3)))
    assert empty.shape == (0,) and empty.dtype == np.float64
