"""Reference models for the serving and decision tests.

A small XGBoost model (two versions: champion and challenger) and a tiny GRU behavioural model,
trained in seconds on synthetic transactions whose features come from the stand-in feature layout
(:mod:`tests.support.serving_standins`). The verified model bundle replaces them in production
through the same component specs; nothing here is used on the production path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tests.support.serving_standins import FEATURE_NAMES, SEQ_FIELDS, InMemoryFeatureSource
from tests.support.traffic import request_fields, synth_transactions, terminal_risks


class TinySequenceNet(nn.Module):
    """GRU over the behavioural sequence + a linear view of the tabular vector -> one logit."""

    def __init__(
        self, n_tabular: int = len(FEATURE_NAMES), n_fields: int = len(SEQ_FIELDS), hidden: int = 8
    ) -> None:
        super().__init__()
        self.gru = nn.GRU(n_fields, hidden, batch_first=True)
        self.tab = nn.Linear(n_tabular, hidden)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, tabular: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(sequence)
        squashed = torch.sign(tabular) * torch.log1p(tabular.abs())  # fixed scaling, no stats
        z = torch.cat([h[-1], torch.tanh(self.tab(squashed))], dim=1)
        return self.head(z).squeeze(1)


def training_matrix(
    txs: list[dict[str, Any]], risks: dict[str, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point-in-time features: each transaction sees only the history before it."""
    source = InMemoryFeatureSource(terminal_risk=risks)
    x, s, y = [], [], []
    for tx in txs:
        row = source.get(tx)
        x.append(row.tabular)
        s.append(row.sequence)
        y.append(tx["is_fraud"])
        source.write_back(tx)
    return np.asarray(x, np.float32), np.stack(s).astype(np.float32), np.asarray(y, np.float32)


def train_reference_models(
    out_dir: Path | str, *, seed: int = 0, n: int = 3_000, epochs: int = 5
) -> dict[str, Any]:
    """Train champion (``v1``) and challenger (``v2``) XGBoost models and the GRU; write
    ``xgb_v1.ubj``, ``xgb_v2.ubj``, ``sequence.safetensors`` under ``out_dir``. Returns paths,
    the training history (for seeding feature sources) and terminal risks."""
    import xgboost as xgb
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    risks = terminal_risks()
    history = synth_transactions(n, seed=seed)
    x, s, y = training_matrix(history, risks)
    dtrain = xgb.DMatrix(x, y, feature_names=list(FEATURE_NAMES), nthread=1)
    paths: dict[str, Any] = {}
    for version, (rounds, depth) in {"v1": (40, 4), "v2": (60, 3)}.items():
        params = {
            "objective": "binary:logistic",
            "max_depth": depth,
            "eta": 0.2,
            "nthread": 1,
            "seed": seed,
        }
        booster = xgb.train(params, dtrain, rounds)
        path = out / f"xgb_{version}.ubj"
        booster.save_model(str(path))
        paths[f"xgb_{version}"] = str(path)

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model = TinySequenceNet()
    xt, st, yt = torch.from_numpy(x), torch.from_numpy(s), torch.from_numpy(y)
    pos = float(max(yt.mean().item(), 1e-3))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - pos) / pos))
    # Plain SGD with momentum by hand: torch.optim imports torch._dynamo (seconds of start-up).
    velocity = [torch.zeros_like(p) for p in model.parameters()]
    for _ in range(epochs):
        perm = torch.randperm(len(yt))
        for b in range(0, len(yt), 128):
            idx = perm[b : b + 128]
            model.zero_grad()
            loss_fn(model(xt[idx], st[idx]), yt[idx]).backward()
            with torch.no_grad():
                for p, v in zip(model.parameters(), velocity, strict=True):
                    if p.grad is not None:
                        v.mul_(0.9).add_(p.grad)
                        p.sub_(0.02 * v)
    model.eval()
    seq_path = out / "sequence.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(seq_path))
    paths["sequence"] = str(seq_path)
    return {"paths": paths, "history": history, "terminal_risk": risks}


def reference_models(out_dir: Path | str) -> dict[str, Any]:
    """:func:`train_reference_models` (seed 0, 3,000 transactions) plus ``requests``: the
    history as API requests (for seeding feature sources). The ``reference`` fixture."""
    ref = train_reference_models(out_dir, seed=0, n=3_000)
    ref["requests"] = [request_fields(tx) for tx in ref["history"]]
    return ref


def component_specs(paths: dict[str, str]) -> dict[str, Any]:
    """Component specs (for :class:`serving.config.AppArgs`) of the reference models."""
    return {
        "tabular_models": {
            v: {
                "factory": "serving.scorers:XGBoostFileScorer",
                "kwargs": {"path": paths[f"xgb_{v}"], "version": v},
            }
            for v in ("v1", "v2")
        },
        "champion": "v1",
        "sequence_model": {
            "factory": "serving.scorers:TorchSequenceScorer",
            "kwargs": {
                "module": "tests.support.standin_models:TinySequenceNet",
                "weights": paths["sequence"],
                "version": "gru-s1",
            },
        },
    }


def model_args(reference: dict[str, Any], source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """App args (:class:`serving.config.AppArgs`) serving the reference models on ``source``."""
    return {"feature_source": source, **component_specs(reference["paths"]), **extra}


def memory_source(reference: dict[str, Any]) -> dict[str, Any]:
    """The in-memory stand-in feature source over the reference history (a component spec)."""
    return {
        "factory": "tests.support.serving_standins:InMemoryFeatureSource",
        "kwargs": {"history": reference["requests"], "terminal_risk": reference["terminal_risk"]},
    }
