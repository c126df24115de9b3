"""Reference models and synthetic traffic for serving tests and the serving benchmark.

A small XGBoost model (two versions: champion and challenger) and a tiny GRU behavioural model,
trained in seconds on synthetic transactions whose features come from the stand-in feature layout
(:mod:`serving.standins`). The verified model bundle replaces them in production through the same
component specs; nothing here is used on the production path.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serving.standins import FEATURE_NAMES, SEQ_FIELDS, InMemoryFeatureSource

CHANNELS = ("pos", "contactless", "ecom", "moto", "atm")
CATEGORIES = ("grocery", "fuel", "travel", "electronics", "restaurants")


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


def synth_transactions(
    n: int,
    *,
    seed: int = 0,
    customers: int = 200,
    terminals: int = 100,
    start: dt.datetime | None = None,
    span_s: float = 3 * 86_400,
    prefix: str = "tx",
) -> list[dict[str, Any]]:
    """``n`` transactions sorted by time (dicts with the request fields and ``is_fraud``).

    Fraud: bursts of e-commerce spend on a few risky terminals, and large amounts."""
    rng = np.random.default_rng(seed)
    start = start or dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    ts = np.sort(rng.uniform(0, span_s, n))
    risky = {f"t{t}" for t in range(0, terminals, 10)}
    out = []
    for i in range(n):
        cust = f"c{int(rng.integers(customers))}"
        term = f"t{int(rng.integers(terminals))}"
        channel = str(rng.choice(CHANNELS, p=[0.45, 0.25, 0.2, 0.05, 0.05]))
        amount = float(np.round(rng.lognormal(3.5, 1.0), 2))
        fraud = 0
        if term in risky and channel in ("ecom", "moto") and rng.random() < 0.6:
            fraud, amount = 1, float(np.round(amount * rng.uniform(3, 8), 2))
        elif rng.random() < 0.01:
            fraud, amount = 1, float(np.round(rng.uniform(2_000, 9_000), 2))
        out.append(
            {
                "tx_id": f"{prefix}-{seed}-{i:07d}",
                "ts": (start + dt.timedelta(seconds=float(ts[i]))).isoformat(),
                "customer_id": cust,
                "terminal_id": term,
                "device_id": f"d{cust[1:]}",
                "amount": amount,
                "currency": "USD",
                "merchant_category": str(rng.choice(CATEGORIES)),
                "channel": channel,
                "is_fraud": fraud,
            }
        )
    return out


def terminal_risks(terminals: int = 100) -> dict[str, float]:
    return {f"t{t}": (0.3 if t % 10 == 0 else 0.01) for t in range(terminals)}


def request_fields(tx: dict[str, Any]) -> dict[str, Any]:
    """The API request for a synthetic transaction (drops the label)."""
    return {k: v for k, v in tx.items() if k != "is_fraud"}


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


def component_specs(paths: dict[str, str]) -> dict[str, Any]:
    """Component specs (for :class:`serving.app.AppArgs`) of the reference models."""
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
                "module": "serving.standin_models:TinySequenceNet",
                "weights": paths["sequence"],
                "version": "gru-s1",
            },
        },
    }
