"""PyTorch behavioural model: a sequence encoder over the customer's last-N transactions, fused
with the tabular features.

Pure model code (no Ray here). :mod:`riskml.training.sequence_train` runs :func:`train_epoch` /
:func:`evaluate_model` inside Ray Train workers (DDP); the same functions train in-process.

* Encoder: a GRU (default) or a small Transformer encoder over ``(seq_len, F)`` steps. Each step
  gets a validity flag (a step whose features are all NaN is padding) so customers with a short
  history are handled; the Transformer masks padding, the GRU sees the flag.
* Normalisation statistics are buffers of the module, so the safetensors file alone reproduces
  scoring.
* Weights (and Adam state for resuming) are stored as safetensors; the architecture as JSON.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

CLAMP = 8.0


class SequenceParams(BaseModel):
    """Architecture and optimisation settings of the sequence model."""

    model_config = ConfigDict(extra="forbid")

    encoder: Literal["gru", "transformer"] = "gru"
    steps: int | None = Field(
        default=None,
        ge=1,
        description="The most recent N transactions of the sequence feature the model reads "
        "(its length; None: every step the feature has).",
    )
    hidden: int = Field(default=32, ge=4, le=1024)
    layers: int = Field(default=1, ge=1, le=8)
    heads: int = Field(default=2, ge=1, le=16, description="Transformer attention heads.")
    tab_hidden: int = Field(default=64, ge=4, le=4096)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    epochs: int = Field(default=4, ge=1)
    batch_size: int = Field(default=2048, ge=8)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    pos_weight: float | Literal["auto", "sqrt"] | None = Field(
        default="sqrt",
        description="BCE positive weight: 'auto' = negatives/positives, 'sqrt' its root, a "
        "number, or None. Probabilities are calibrated afterwards.",
    )
    patience: int | None = Field(
        default=2, ge=1, description="Stop after this many epochs without a better valid AP."
    )
    amp: bool = Field(default=True, description="Mixed precision (fp16 autocast) on CUDA only.")
    seed: int = 7


class Architecture(BaseModel):
    """What is needed to rebuild the module before loading its safetensors weights."""

    model_config = ConfigDict(extra="forbid")

    n_tabular: int = Field(ge=0)
    n_sequence: int = Field(ge=1)
    seq_len: int = Field(ge=1)
    #: the most recent steps the model reads (None: all ``seq_len``); older bundles lack it
    steps: int | None = Field(default=None, ge=1)
    encoder: Literal["gru", "transformer"]
    hidden: int
    layers: int
    heads: int
    tab_hidden: int
    dropout: float

    @classmethod
    def from_params(
        cls, params: SequenceParams, *, n_tabular: int, n_sequence: int, seq_len: int
    ) -> Architecture:
        if params.steps is not None and params.steps > seq_len:
            raise ValueError(
                f"steps={params.steps} exceeds the sequence feature's length {seq_len}"
            )
        return cls(
            n_tabular=n_tabular,
            n_sequence=n_sequence,
            seq_len=seq_len,
            steps=None if params.steps in (None, seq_len) else params.steps,
            encoder=params.encoder,
            hidden=params.hidden,
            layers=params.layers,
            heads=params.heads,
            tab_hidden=params.tab_hidden,
            dropout=params.dropout,
        )


def build_model(arch: Architecture) -> nn.Module:
    """A fresh :class:`SequenceRiskModel` (defined lazily so importing this module is light)."""
    import torch
    from torch import nn

    class SequenceRiskModel(nn.Module):
        tab_mean: torch.Tensor
        tab_std: torch.Tensor
        seq_mean: torch.Tensor
        seq_std: torch.Tensor

        def __init__(self, a: Architecture) -> None:
            super().__init__()
            self.arch = a
            self.register_buffer("tab_mean", torch.zeros(a.n_tabular))
            self.register_buffer("tab_std", torch.ones(a.n_tabular))
            self.register_buffer("seq_mean", torch.zeros(a.n_sequence))
            self.register_buffer("seq_std", torch.ones(a.n_sequence))
            step_in = a.n_sequence + 1  # + validity flag
            if a.encoder == "gru":
                self.encoder: nn.Module = nn.GRU(
                    step_in,
                    a.hidden,
                    num_layers=a.layers,
                    batch_first=True,
                    dropout=a.dropout if a.layers > 1 else 0.0,
                )
            else:
                if a.hidden % a.heads:
                    raise ValueError(f"hidden={a.hidden} must be divisible by heads={a.heads}")
                self.step_proj = nn.Linear(step_in, a.hidden)
                self.pos = nn.Parameter(torch.zeros(1, a.steps or a.seq_len, a.hidden))
                layer = nn.TransformerEncoderLayer(
                    a.hidden,
                    a.heads,
                    dim_feedforward=2 * a.hidden,
                    dropout=a.dropout,
                    batch_first=True,
                )
                self.encoder = nn.TransformerEncoder(layer, a.layers, enable_nested_tensor=False)
            self.tab = (
                nn.Sequential(nn.Linear(a.n_tabular, a.tab_hidden), nn.ReLU())
                if a.n_tabular
                else None
            )
            fused = a.hidden + (a.tab_hidden if a.n_tabular else 0)
            self.head = nn.Sequential(
                nn.Dropout(a.dropout), nn.Linear(fused, a.hidden), nn.ReLU(), nn.Linear(a.hidden, 1)
            )

        def forward(self, tab: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
            if self.arch.steps is not None:  # the most recent steps (the sequence ends at now)
                seq = seq[:, -self.arch.steps :]
            valid = torch.isfinite(seq).any(dim=-1)  # (B, L)
            s = (seq - self.seq_mean) / self.seq_std
            s = torch.nan_to_num(s, nan=0.0, posinf=CLAMP, neginf=-CLAMP).clamp(-CLAMP, CLAMP)
            s = torch.cat([s, valid.unsqueeze(-1).to(s.dtype)], dim=-1)
            if isinstance(self.encoder, nn.GRU):
                _, h = self.encoder(s)
                enc = h[-1]
            else:
                x = self.step_proj(s) + self.pos
                pad = ~valid
                # a row with no history at all: attend to every (zero) step instead of none
                pad = pad & ~pad.all(dim=1, keepdim=True)
                x = self.encoder(x, src_key_padding_mask=pad)
                w = (~pad).unsqueeze(-1).to(x.dtype)
                enc = (x * w).sum(1) / w.sum(1).clamp_min(1.0)
            parts = [enc]
            if self.tab is not None:
                t = (tab - self.tab_mean) / self.tab_std
                t = torch.nan_to_num(t, nan=0.0, posinf=CLAMP, neginf=-CLAMP).clamp(-CLAMP, CLAMP)
                parts.append(self.tab(t))
            return self.head(torch.cat(parts, dim=-1)).squeeze(-1)

    return SequenceRiskModel(arch)


def set_normalizer(model: nn.Module, tab: np.ndarray, seq: np.ndarray) -> None:
    """Store NaN-aware mean/std of the training inputs as the module's buffers."""
    import torch

    def stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if a.size == 0:
            return np.zeros(a.shape[-1]), np.ones(a.shape[-1])
        with np.errstate(all="ignore"):
            mean = np.nanmean(a, axis=0)
            std = np.nanstd(a, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
        return mean, std

    # explicit row counts: reshape(-1, 0) is ambiguous for a model without tabular inputs
    tm, ts = stats(tab.reshape(math.prod(tab.shape[:-1]), tab.shape[-1]))
    sm, ss = stats(seq.reshape(math.prod(seq.shape[:-1]), seq.shape[-1]))
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in (("tab_mean", tm), ("tab_std", ts), ("seq_mean", sm), ("seq_std", ss)):
            buffers[name].copy_(torch.as_tensor(value))


def positive_weight(setting: float | str | None, pos_rate: float) -> float | None:
    if setting is None:
        return None
    if isinstance(setting, int | float):
        return float(setting)
    if not 0.0 < pos_rate < 1.0:
        return None
    ratio = (1.0 - pos_rate) / pos_rate
    return math.sqrt(ratio) if setting == "sqrt" else ratio


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    tab: torch.Tensor,
    seq: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    steps: int | None = None,
    pos_weight: float | None = None,
    device: torch.device | None = None,
    amp: bool = False,
    scaler: Any = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One pass over shuffled mini-batches sliced from in-memory tensors (no DataLoader).

    ``steps`` fixes the number of batches (DDP needs every worker to run the same count; the
    driver passes the smallest shard's count). Returns mean loss and seconds.
    """
    import torch
    from torch.nn import functional as F

    device = device or torch.device("cpu")
    n = int(y.shape[0])
    steps = steps if steps is not None else max(1, math.ceil(n / batch_size))
    perm = torch.randperm(n, generator=generator)
    pw = torch.tensor(pos_weight, device=device) if pos_weight else None
    model.train()
    total = 0.0
    t0 = time.perf_counter()
    for i in range(steps):
        idx = perm[(i * batch_size) % n : (i * batch_size) % n + batch_size]
        bt = tab[idx].to(device, non_blocking=True)
        bs = seq[idx].to(device, non_blocking=True)
        by = y[idx].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits = model(bt, bs)
        loss = F.binary_cross_entropy_with_logits(logits.float(), by, pos_weight=pw)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        total += float(loss.detach())
    return {"loss": total / steps, "seconds": time.perf_counter() - t0, "steps": float(steps)}


def predict_proba(
    model: nn.Module,
    tab: np.ndarray | torch.Tensor,
    seq: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 8192,
    device: torch.device | None = None,
    amp: bool = False,
) -> np.ndarray:
    """Probabilities for every row, in batches, in eval mode."""
    import torch

    device = device or torch.device("cpu")
    tab_t, seq_t = _float_tensor(tab), _float_tensor(seq)
    out = np.empty(int(tab_t.shape[0]), dtype=np.float64)
    if model.training:  # eval() walks every submodule: only when needed (serving calls per row)
        model.eval()
    if device.type == "cpu" and not amp and len(out) <= batch_size:
        # serving's case (a few rows on CPU): one forward pass, no batching loop, device copies
        # or autocast context (one row: ~15% of the call)
        with torch.inference_mode():
            out[:] = torch.sigmoid(model(tab_t, seq_t).float()).numpy()
        return out
    with torch.inference_mode():
        for start in range(0, len(out), batch_size):
            bt = tab_t[start : start + batch_size].to(device)
            bs = seq_t[start : start + batch_size].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                logits = model(bt, bs)
            out[start : start + len(bt)] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def _float_tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A float32 tensor sharing ``a``'s memory where it can. A read-only array (the object
    store's) is only read here: torch's not-writable warning is silenced for it alone."""
    import torch

    if isinstance(a, np.ndarray) and not a.flags.writeable:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.as_tensor(a, dtype=torch.float32)
    return torch.as_tensor(a, dtype=torch.float32)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under a DDP wrapper."""
    return getattr(model, "module", model)


def weights_to_safetensors(model: nn.Module) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    return bytes(save(state, metadata={"format": "pt"}))


def load_weights(model: nn.Module, data: bytes) -> nn.Module:
    from safetensors.torch import load

    unwrap(model).load_state_dict(load(data), strict=True)
    return model


def optimizer_to_safetensors(optimizer: torch.optim.Optimizer) -> bytes:
    """Adam/AdamW moments as tensors (``{param_index}.{name}``) — resumable without pickle."""
    import torch
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for idx, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{idx}.{name}"] = t.detach().cpu().contiguous()
    return bytes(save(tensors))


def load_optimizer(optimizer: torch.optim.Optimizer, data: bytes) -> None:
    from safetensors.torch import load

    tensors = load(data)
    state_dict = optimizer.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    state_dict["state"] = state
    optimizer.load_state_dict(state_dict)


def load_model(arch: Architecture | dict[str, Any], weights: bytes) -> nn.Module:
    """Rebuild the module from its architecture JSON and safetensors bytes (eval mode)."""
    a = arch if isinstance(arch, Architecture) else Architecture.model_validate(arch)
    model = build_model(a)
    load_weights(model, weights)
    model.eval()
    return model


# -- a hand-fused NumPy forward pass of the GRU variant (serving: one row per call) ----------------


class FusedGRU:
    """The GRU :class:`SequenceRiskModel`'s eval-mode forward pass as a handful of NumPy calls.

    Why: serving scores one transaction per call, and torch spends most of a 1-row call (~0.7 ms)
    on per-op dispatch rather than arithmetic. Here the weights are copied out once into a few
    contiguous matrices laid out so that each GRU step is one ``dot`` and six element-wise
    ufuncs writing into preallocated buffers, and the preprocessing (crop, normalisation, NaN and
    ±inf handling, clamp, validity flag) mirrors ``forward`` in float32 as torch does it.

    PyTorch's GRU (``torch.nn.GRU`` docs; ``weight_ih_l{k}`` = ``W_ir|W_iz|W_in``,
    ``weight_hh_l{k}`` = ``W_hr|W_hz|W_hn``, biases likewise)::

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        h' = (1 - z) ⊙ n + z ⊙ h

    Every buffer is feature-major (``(features, rows)``), so each gate block is a contiguous
    slice whatever the number of rows (strided 2-d views double NumPy's per-call cost).

    One matrix-vector product per *tick* serves every layer: the K layers run as a wavefront,
    layer k processing step ``τ - k`` at tick τ (``L + K - 1`` ticks rather than ``K * L``
    steps; each layer's step reads only the previous tick's states, so they are independent).
    Tick τ's input column is ``[x_τ ; s_0 ; ... ; s_{K-1} ; 1]``, where ``s_k`` is layer k's
    state before its step (``s_{k-1}`` is also layer k's input). The block matrix's rows give,
    each block stacking the K layers, ``[a_r ; a_z ; -a_z ; W_in x + b_in ; W_hn h + b_hn ;
    h]``. Then ``σ`` of the first three blocks gives ``r, z, 1-z`` at once (``σ(-a) = 1 -
    σ(a)``), one product gives ``[r ⊙ (W_hn h + b_hn) ; z ⊙ h]``, and ``h' = z ⊙ h + (1-z) ⊙
    n`` is written straight into the next tick's column, for the layers that are running (the
    others' slots keep the zero initial state). The identity and zero blocks cost nothing at
    serving's sizes and save copies: a step is one ``dot`` and six ufuncs.

    Cost (2 shared cores, one row, 16 steps x 3 fields, 20 tabular features): ~0.08 ms for
    hidden 16-32 and ~0.12 ms for hidden 64 (1 layer), against ~0.5 ms for torch; 8 rows ~2-5x
    faster than torch. At tens of rows with hidden 64 or several layers σ/tanh's per-element
    cost catches up and torch is as fast. NumPy's BLAS pool: a process that scores with it
    should hold OpenBLAS to one thread (``threadpoolctl.threadpool_limits(1, "blas")``, as
    serving holds torch to one); with its default pool a 64-row call on a busy box took
    9-110 ms instead of ~2 ms. Not set here: it is a process-wide setting.

    Build it once per loaded model (:meth:`from_module`); :meth:`predict_proba` may be called
    from several threads (its buffers are per thread). Only the GRU encoder has a fused path:
    a Transformer model is refused with :class:`ValueError` (keep torch's
    :func:`predict_proba` for it).
    """

    #: per-thread buffers are kept for batches up to this many rows (serving's sizes)
    CACHE_ROWS = 256
    _CACHE_ENTRIES = 8
    #: from this many rows on, σ is computed for r and z only and 1 - z by a subtraction
    #: (σ's per-element cost then outweighs one more call)
    WIDE_ROWS = 8

    def __init__(
        self,
        arch: Architecture,
        *,
        seq_mean: np.ndarray,
        seq_std: np.ndarray,
        tab_mean: np.ndarray,
        tab_std: np.ndarray,
        gru: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
        tab: tuple[np.ndarray, np.ndarray] | None,
        head: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        dtype: type[np.floating[Any]] = np.float32,
    ) -> None:
        """From plain arrays in torch's layouts: ``gru`` holds ``(weight_ih, weight_hh, bias_ih,
        bias_hh)`` per layer, ``tab`` the tabular Linear's ``(weight, bias)`` (None when
        ``n_tabular == 0``), ``head`` the two head Linears' ``(w1, b1, w2, b2)``."""
        from scipy.special import expit

        _refuse_encoder(arch)
        if len(gru) != arch.layers:
            raise ValueError(f"{len(gru)} GRU layers given, the architecture has {arch.layers}")
        if (tab is None) != (arch.n_tabular == 0):
            raise ValueError("the tabular branch must be given exactly when n_tabular > 0")
        self.arch = arch
        self.dtype = np.dtype(dtype)
        self._expit = expit
        h = arch.hidden
        f32 = np.float32
        # normalisation stays float32, as torch computes it
        self._seq_mean = np.ascontiguousarray(seq_mean, dtype=f32).reshape(arch.n_sequence)
        self._seq_std = np.ascontiguousarray(seq_std, dtype=f32).reshape(arch.n_sequence)
        self._tab_mean = np.ascontiguousarray(tab_mean, dtype=f32).reshape(arch.n_tabular)
        self._tab_std = np.ascontiguousarray(tab_std, dtype=f32).reshape(arch.n_tabular)
        n_x, kh = arch.n_sequence + 1, arch.layers * h  # + validity flag
        # rows: six blocks of K*H (layer k at k*H within each); columns: [x ; s_0..s_K-1 ; 1]
        w = np.zeros((6 * kh, n_x + kh + 1))
        one = n_x + kh
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(gru):
            w_ih, w_hh = np.asarray(w_ih, np.float64), np.asarray(w_hh, np.float64)
            b_ih, b_hh = np.asarray(b_ih, np.float64), np.asarray(b_hh, np.float64)
            n_in = n_x if k == 0 else h
            if (
                w_ih.shape != (3 * h, n_in)
                or w_hh.shape != (3 * h, h)
                or b_ih.shape != (3 * h,)
                or b_hh.shape != (3 * h,)
            ):
                raise ValueError(
                    f"GRU layer {k} weights {w_ih.shape}, {w_hh.shape} do not match input "
                    f"{n_in}, hidden {h}"
                )
            ins = slice(0, n_x) if k == 0 else slice(n_x + (k - 1) * h, n_x + k * h)
            hs = slice(n_x + k * h, n_x + (k + 1) * h)

            def rows(block: int, k: int = k) -> slice:
                return slice(block * kh + k * h, block * kh + (k + 1) * h)

            r, z, nn_ = slice(0, h), slice(h, 2 * h), slice(2 * h, 3 * h)
            for block, gate in ((0, r), (1, z)):  # a_r, a_z: input + hidden, both biases
                w[rows(block), ins] = w_ih[gate]
                w[rows(block), hs] = w_hh[gate]
                w[rows(block), one] = b_ih[gate] + b_hh[gate]
            w[rows(2)] = -w[rows(1)]  # -a_z: σ(-a_z) = 1 - z
            w[rows(3), ins] = w_ih[nn_]  # W_in x + b_in
            w[rows(3), one] = b_ih[nn_]
            w[rows(4), hs] = w_hh[nn_]  # W_hn h + b_hn: r multiplies all of it
            w[rows(4), one] = b_hh[nn_]
            w[rows(5), hs] = np.eye(h)  # h_{t-1} itself, next to W_hn h + b_hn
        self._gru = np.ascontiguousarray(w, dtype=self.dtype)
        self._tab_w: np.ndarray | None = None
        self._t_h = 0
        if tab is not None:
            tw, tb = np.asarray(tab[0], np.float64), np.asarray(tab[1], np.float64)
            if tw.shape != (arch.tab_hidden, arch.n_tabular) or tb.shape != (arch.tab_hidden,):
                raise ValueError(f"tabular weight {tw.shape} does not match the architecture")
            self._t_h = arch.tab_hidden
            self._tab_w = np.ascontiguousarray(np.hstack([tw, tb[:, None]]), dtype=self.dtype)
        w1, b1, w2, b2 = (np.asarray(a, np.float64) for a in head)
        if w1.shape != (h, h + self._t_h) or b1.shape != (h,) or w2.shape != (1, h):
            raise ValueError(f"head weights {w1.shape}, {w2.shape} do not match the architecture")
        self._head_w1 = np.ascontiguousarray(np.hstack([w1, b1[:, None]]), dtype=self.dtype)
        self._head_w2 = np.ascontiguousarray(np.hstack([w2, b2.reshape(1, 1)]), dtype=self.dtype)
        self._local = threading.local()

    @classmethod
    def from_module(
        cls, model: nn.Module, *, dtype: type[np.floating[Any]] = np.float32
    ) -> FusedGRU:
        """Copy a (trained) GRU ``SequenceRiskModel``'s weights and buffers out once.

        The fused path keeps the weights as they are now: rebuild it after loading new ones.
        ``dtype`` is the arithmetic's precision: float32 (torch's, and the faster) by default;
        both agree with torch's probabilities within 1e-6. A DDP wrapper is unwrapped.
        Raises ValueError for the Transformer encoder (or a module that is not a
        ``SequenceRiskModel``).
        """
        from torch import nn

        m: Any = unwrap(model)  # a SequenceRiskModel: defined in build_model, no static type
        arch = getattr(m, "arch", None)
        if not isinstance(arch, Architecture):
            raise ValueError(f"{type(m).__name__} is not a SequenceRiskModel (no .arch)")
        _refuse_encoder(arch)
        enc = m.encoder
        if (
            not isinstance(enc, nn.GRU)
            or enc.bidirectional
            or not enc.batch_first
            or enc.num_layers != arch.layers
        ):
            raise ValueError("only a unidirectional, batch_first nn.GRU encoder has a fused path")

        def arr(t: Any) -> np.ndarray:
            return np.array(t.detach().cpu().double().numpy())  # an owned float64 copy

        def gru_bias(name: str) -> np.ndarray:
            b = getattr(enc, name, None)  # nn.GRU(bias=False) has none
            return arr(b) if b is not None else np.zeros(3 * arch.hidden)

        gru = [
            (
                arr(getattr(enc, f"weight_ih_l{k}")),
                arr(getattr(enc, f"weight_hh_l{k}")),
                gru_bias(f"bias_ih_l{k}"),
                gru_bias(f"bias_hh_l{k}"),
            )
            for k in range(arch.layers)
        ]
        tab = (arr(m.tab[0].weight), arr(m.tab[0].bias)) if m.tab is not None else None
        lin1, lin2 = m.head[1], m.head[3]  # head: Dropout, Linear, ReLU, Linear
        return cls(
            arch,
            seq_mean=arr(m.seq_mean),
            seq_std=arr(m.seq_std),
            tab_mean=arr(m.tab_mean),
            tab_std=arr(m.tab_std),
            gru=gru,
            tab=tab,
            head=(arr(lin1.weight), arr(lin1.bias), arr(lin2.weight), arr(lin2.bias)),
            dtype=dtype,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)  # per-thread buffers do not travel
        state.pop("_expit", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from scipy.special import expit

        self.__dict__.update(state)
        self._expit = expit
        self._local = threading.local()

    def _workspace(self, n: int, length: int) -> _FusedWorkspace:
        if n > self.CACHE_ROWS:
            return _FusedWorkspace(self, n, length)
        cache: dict[tuple[int, int], _FusedWorkspace] | None = getattr(self._local, "ws", None)
        if cache is None:
            cache = self._local.ws = {}
        ws = cache.get((n, length))
        if ws is None:
            if len(cache) >= self._CACHE_ENTRIES:
                cache.clear()
            ws = cache[(n, length)] = _FusedWorkspace(self, n, length)
        return ws

    def predict_proba(self, tab: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Probabilities (float64, shape ``(n,)``) for ``tab (n, n_tabular)`` and
        ``seq (n, L, n_sequence)`` (oldest step first), equal to torch's :func:`predict_proba`
        within 1e-6. Inputs are read as float32, as torch's path reads them; they are not
        modified, and the result is a new array."""
        a = self.arch
        seq_a, tab_a = np.asarray(seq), np.asarray(tab)
        if seq_a.ndim != 3 or seq_a.shape[2] != a.n_sequence:
            raise ValueError(f"seq must be (n, L, {a.n_sequence}), got {seq_a.shape}")
        n = seq_a.shape[0]
        if tab_a.shape != (n, a.n_tabular):
            raise ValueError(f"tab must be ({n}, {a.n_tabular}), got {tab_a.shape}")
        if n == 0:
            return np.empty(0, dtype=np.float64)
        if a.steps is not None:  # the most recent steps, as forward crops them
            seq_a = seq_a[:, -a.steps :]
        length = seq_a.shape[1]
        if length == 0:
            raise ValueError("seq has no steps")
        ws = self._workspace(n, length)

        # inputs as float32 (torch's path reads them so), sequence and tabular in one buffer
        if seq_a.dtype == np.float32 and tab_a.dtype == np.float32:
            np.copyto(ws.raw_seq, seq_a)
            np.copyto(ws.raw_tab, tab_a)
        else:  # beyond float32's range becomes ±inf, as in torch (which does not warn)
            with np.errstate(over="ignore", invalid="ignore"):
                np.copyto(ws.raw_seq, seq_a, casting="unsafe")
                np.copyto(ws.raw_tab, tab_a, casting="unsafe")
        # the validity flag: a step with any finite field (read before NaN is replaced)
        np.logical_or.reduce(np.isfinite(ws.raw_seq), axis=2, out=ws.flag)
        # (x - mean) / std in float32; NaN -> 0, ±inf and the rest clamped to ±CLAMP
        raw = ws.raw
        np.subtract(raw, ws.mean, out=raw)
        np.divide(raw, ws.std, out=raw)
        np.maximum(raw, -CLAMP, out=raw)  # NaN stays NaN here ...
        np.minimum(raw, CLAMP, out=raw)
        raw[np.isnan(raw)] = 0.0  # ... and becomes 0, as torch.nan_to_num makes it
        np.copyto(ws.feat, ws.raw_seq)

        dot, expit, tanh, mul, add = np.dot, self._expit, np.tanh, np.multiply, np.add
        g, e, p, nb = ws.g, ws.e, ws.p, ws.nb
        g_gates, g_in, g_hn_h = ws.g_gates, ws.g_in, ws.g_hn_h
        e_rz, e_u, p_rn = ws.e_rz, ws.e_u, ws.p_rn
        w = self._gru
        if n < self.WIDE_ROWS:  # a few rows: call overhead dominates, σ of all three blocks
            for x_t, n_out, zh_out, h_out in ws.ticks:
                dot(w, x_t, g)  # [a_r ; a_z ; -a_z ; W_in x + b_in ; W_hn h + b_hn ; h]
                expit(g_gates, e)  # [r ; z ; 1 - z]
                mul(e_rz, g_hn_h, p)  # [r * (W_hn h + b_hn) ; z * h]
                add(p_rn, g_in, nb)
                tanh(nb, nb)  # n
                mul(e_u, nb, nb)
                add(n_out, zh_out, h_out)  # h' = (1 - z) * n + z * h, the running layers'
        else:  # many rows: σ's per-element cost dominates, 1 - z by a subtraction instead
            g_rz, e_z, one, sub = ws.g_rz, ws.e_z, ws.one, np.subtract
            for x_t, n_out, zh_out, h_out in ws.ticks:
                dot(w, x_t, g)
                expit(g_rz, e_rz)
                sub(one, e_z, e_u)
                mul(e_rz, g_hn_h, p)
                add(p_rn, g_in, nb)
                tanh(nb, nb)
                mul(e_u, nb, nb)
                add(n_out, zh_out, h_out)

        if self._tab_w is not None:
            np.copyto(ws.tab_x, ws.raw_tab.T)
            dot(self._tab_w, ws.tab_in, ws.tab_out)
            np.maximum(ws.tab_out, 0.0, out=ws.z_tab)
        dot(self._head_w1, ws.z, ws.a1)
        np.maximum(ws.a1, 0.0, out=ws.y1_h)
        logit = dot(self._head_w2, ws.y1)
        return np.asarray(expit(logit.reshape(n), dtype=np.float64))


def _refuse_encoder(arch: Architecture) -> None:
    if arch.encoder != "gru":
        raise ValueError(
            f"FusedGRU has no fused path for the {arch.encoder!r} encoder; score it with "
            "torch (riskml.models.sequence.predict_proba)"
        )


class _FusedWorkspace:
    """One batch shape's buffers and per-tick views for :class:`FusedGRU`, built once per thread
    and ``(rows, steps)``. Buffers are feature-major ``(features, rows)``; with one row the
    loop's views are 1-d (a matrix-vector product is the cheaper call). The constant parts —
    the bias rows of ones, the zero initial hidden state — are written here once: every call
    overwrites only the rest."""

    def __init__(self, fused: FusedGRU, n: int, length: int) -> None:
        a, dt, h, t_h = fused.arch, fused.dtype, fused.arch.hidden, fused._t_h
        f, nt = a.n_sequence, a.n_tabular

        def v(x: np.ndarray) -> np.ndarray:  # the loop's view: 1-d for one row
            return x[..., 0] if n == 1 else x

        # the inputs as float32, then normalised in place: [seq (n, L, F) | tab (n, T)]
        n_seq = n * length * f
        self.raw = np.empty(n_seq + n * nt, dtype=np.float32)
        self.raw_seq = self.raw[:n_seq].reshape(n, length, f)
        self.raw_tab = self.raw[n_seq:].reshape(n, nt)
        self.mean = np.concatenate(
            [np.tile(fused._seq_mean, n * length), np.tile(fused._tab_mean, n)]
        )
        self.std = np.concatenate([np.tile(fused._seq_std, n * length), np.tile(fused._tab_std, n)])
        # per tick τ the column [x_τ ; s_0 ; ... ; s_K-1 ; 1] (see FusedGRU); zeros: h_0 = 0
        kh, n_l, n_x = a.layers * h, a.layers, f + 1
        ticks = length + n_l - 1
        x = np.zeros((ticks + 1, n_x + kh + 1, n), dtype=dt)
        x[:, -1] = 1.0
        self.feat = x[:length, :f].transpose(2, 0, 1)  # (n, L, F) view
        self.flag = x[:length, f].T  # (n, L) view
        # the head's input [enc ; tab ; 1], the tabular branch's [x ; 1], the head's hidden
        z = np.zeros((h + t_h + 1, n), dtype=dt)
        z[-1] = 1.0
        tab_in = np.zeros((nt + 1, n), dtype=dt)
        tab_in[-1] = 1.0
        y1 = np.zeros((h + 1, n), dtype=dt)
        y1[-1] = 1.0
        self.tab_x = tab_in[:nt]  # (T, n), written from raw_tab.T
        self.z, self.z_tab, self.tab_in, self.y1 = v(z), v(z[h : h + t_h]), v(tab_in), v(y1)
        self.y1_h = v(y1[:h])
        self.tab_out = v(np.empty((t_h, n), dtype=dt))
        self.a1 = v(np.empty((h, n), dtype=dt))
        # the step's buffers and their gate blocks (contiguous slices of the first axis)
        g, e = v(np.empty((6 * kh, n), dtype=dt)), v(np.empty((3 * kh, n), dtype=dt))
        p, nb = v(np.empty((2 * kh, n), dtype=dt)), v(np.empty((kh, n), dtype=dt))
        self.g, self.e, self.p, self.nb = g, e, p, nb
        self.g_gates, self.g_in, self.g_hn_h = g[: 3 * kh], g[3 * kh : 4 * kh], g[4 * kh :]
        self.e_rz, self.e_u, self.p_rn, self.p_zh = e[: 2 * kh], e[2 * kh :], p[:kh], p[kh:]
        self.g_rz, self.e_z = g[: 2 * kh], e[kh : 2 * kh]
        self.one = np.ones((), dtype=dt)
        # per tick: the input column, and where the running layers' new states go — layer k
        # runs at ticks k .. k + L - 1; the others' slots keep their zeros / are not read
        self.ticks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for tau in range(ticks):
            lo, hi = max(0, tau - length + 1) * h, min(n_l, tau + 1) * h
            out = v(z[:h]) if tau == ticks - 1 else v(x[tau + 1, n_x + lo : n_x + hi])
            self.ticks.append((v(x[tau]), nb[lo:hi], self.p_zh[lo:hi], out))
