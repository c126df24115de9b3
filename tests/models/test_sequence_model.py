"""The sequence model: padding, both encoders, safetensors round trips, it learns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from riskml.metrics import roc_auc
from riskml.models.features import FeatureSpec, extract_inputs
from riskml.models.sequence import (
    Architecture,
    SequenceParams,
    build_model,
    load_model,
    load_optimizer,
    optimizer_to_safetensors,
    predict_proba,
    weights_to_safetensors,
)
from riskml.training.sequence_train import train_sequence_local


@pytest.mark.parametrize("encoder", ["gru", "transformer"])
def test_forward_handles_padding_and_empty_history(encoder: str) -> None:
    arch = Architecture.from_params(
        SequenceParams(encoder=encoder, hidden=8, tab_hidden=8),
        n_tabular=3,
        n_sequence=2,
        seq_len=5,
    )
    model = build_model(arch).eval()
    tab = torch.randn(4, 3)
    seq = torch.randn(4, 5, 2)
    seq[1, :3] = float("nan")  # short history
    seq[2] = float("nan")  # no history at all
    tab[3, 0] = float("nan")  # a missing tabular value
    with torch.no_grad():
        out = model(tab, seq)
    assert out.shape == (4,)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("encoder", ["gru", "transformer"])
def test_steps_reads_only_the_most_recent_transactions(encoder: str) -> None:
    """``steps`` (the model's length, selected by ``riskml select --model sequence``) reads the
    last N steps of the full-length feature, so serving passes the same 16-step sequence."""
    params = SequenceParams(encoder=encoder, steps=3, hidden=8, tab_hidden=8)
    arch = Architecture.from_params(params, n_tabular=2, n_sequence=2, seq_len=6)
    assert arch.steps == 3 and arch.seq_len == 6
    model = build_model(arch).eval()
    if encoder == "transformer":
        assert tuple(model.pos.shape) == (1, 3, 8)  # positions only for the steps it reads
    tab, seq = torch.randn(5, 2), torch.randn(5, 6, 2)
    older = seq.clone()
    older[:, :3] = torch.randn(5, 3, 2) * 10  # change only the three oldest steps
    recent = seq.clone()
    recent[:, -1] += 5.0  # change the newest step
    with torch.no_grad():
        out, out_older, out_recent = model(tab, seq), model(tab, older), model(tab, recent)
    torch.testing.assert_close(out, out_older, rtol=0, atol=0)
    assert not torch.allclose(out, out_recent)
    # all steps, or as many as the feature has: the plain model (older bundles' architecture)
    full = Architecture.from_params(SequenceParams(steps=6), n_tabular=2, n_sequence=2, seq_len=6)
    assert (
        full.steps is None
        and Architecture.model_validate(
            {k: v for k, v in full.model_dump().items() if k != "steps"}
        )
        == full
    )
    with pytest.raises(ValueError, match="steps=7 exceeds the sequence feature's length 6"):
        Architecture.from_params(SequenceParams(steps=7), n_tabular=2, n_sequence=2, seq_len=6)


def test_predict_proba_one_pass_equals_the_batched_path_and_reads_read_only_arrays() -> None:
    """Serving's few-rows path (one forward pass) gives the batched path's probabilities, and
    read-only arrays (Ray's object store) are read without a warning and left unchanged."""
    import warnings

    arch = Architecture.from_params(SequenceParams(hidden=8), n_tabular=3, n_sequence=2, seq_len=4)
    model = build_model(arch)  # left in training mode: predict_proba switches to eval
    rng = np.random.default_rng(1)
    x_tab = rng.random((9, 3)).astype(np.float32)
    x_seq = rng.random((9, 4, 2)).astype(np.float32)
    x_seq[2, :2] = np.nan
    one_pass = predict_proba(model, x_tab, x_seq)
    batched = predict_proba(model, x_tab, x_seq, batch_size=2)  # five batches
    assert not model.training and one_pass.dtype == np.float64 and one_pass.shape == (9,)
    np.testing.assert_allclose(one_pass, batched, rtol=0, atol=1e-6)
    assert ((one_pass > 0) & (one_pass < 1)).all()
    frozen_tab, frozen_seq = x_tab.copy(), x_seq.copy()
    frozen_tab.flags.writeable = frozen_seq.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(predict_proba(model, frozen_tab, frozen_seq), one_pass)
    np.testing.assert_array_equal(frozen_seq, x_seq)


def test_weights_and_optimizer_round_trip_through_safetensors() -> None:
    arch = Architecture.from_params(SequenceParams(hidden=8), n_tabular=2, n_sequence=2, seq_len=4)
    model = build_model(arch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = model(torch.randn(16, 2), torch.randn(16, 4, 2)).sum()
    loss.backward()
    opt.step()
    blob = weights_to_safetensors(model)
    assert blob[8:9] == b"{"  # safetensors: 8-byte header length, then a JSON header
    again = load_model(arch.model_dump(), blob)
    rng = np.random.default_rng(0)
    x_tab, x_seq = rng.random((10, 2)), rng.random((10, 4, 2))
    assert np.allclose(predict_proba(model, x_tab, x_seq), predict_proba(again, x_tab, x_seq))
    opt2 = torch.optim.AdamW(again.parameters(), lr=1e-2)
    load_optimizer(opt2, optimizer_to_safetensors(opt))
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)


def test_sequence_model_learns_the_signal(frame: Any, spec: FeatureSpec) -> None:
    inp = extract_inputs(frame, spec)
    assert inp.sequence is not None and inp.y is not None
    cut = 4500
    res = train_sequence_local(
        inp.tabular[:cut],
        inp.sequence[:cut],
        inp.y[:cut],
        inp.tabular[cut:],
        inp.sequence[cut:],
        inp.y[cut:],
        params=SequenceParams(epochs=3, batch_size=128, hidden=16, tab_hidden=16, patience=None),
    )
    assert res.epochs_run == 3 and len(res.history) == 3
    model = load_model(res.architecture, res.weights)
    p = predict_proba(model, inp.tabular[cut:], inp.sequence[cut:])
    assert roc_auc(inp.y[cut:], p) > 0.75
    # the best epoch's weights are what came back
    best = res.history[res.best_epoch - 1]
    assert best["valid_ap"] == max(h["valid_ap"] for h in res.history)
