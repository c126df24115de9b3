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

    tm, ts = stats(tab.reshape(-1, tab.shape[-1]))
    sm, ss = stats(seq.reshape(-1, seq.shape[-1]))
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
