"""The PyTorch sequence model on Ray Train (``TorchTrainer``, DDP).

The driver builds the module once (normalisation statistics from the whole training set) and
ships its initial safetensors weights, so every worker starts identical. Each worker trains on its
own in-memory shard with the same number of steps per epoch (DDP needs equal step counts),
evaluates the full validation slice (identical on every worker, so early stopping agrees without
communication), and rank 0 checkpoints weights, best weights and Adam state as safetensors every
epoch. ``use_gpu`` moves workers to CUDA (one GPU each, NCCL) and enables fp16 autocast there.

``SequenceTrainResult.timings`` has the same split on both paths: ``setup_seconds`` (data
hand-off, checkpoint lookup, model set-up), per-epoch means of training, validation and
checkpoint/report seconds; the Ray path adds ``startup_seconds`` (``fit()`` to the worker's train
function) and ``teardown_seconds``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from riskml.models.sequence import (
    Architecture,
    SequenceParams,
    build_model,
    load_optimizer,
    load_weights,
    optimizer_to_safetensors,
    positive_weight,
    predict_proba,
    set_normalizer,
    train_epoch,
    unwrap,
    weights_to_safetensors,
)
from riskml.training.runtime import (
    CKPT_STATE,
    RayConfig,
    cpus_per_worker,
    ensure_ray,
    latest_checkpoint,
    lean_trainer,
    put_shards,
    run_config,
    run_name,
    scaling_config,
    training_failed,
    write_checkpoint,
)

CKPT_WEIGHTS = "model.safetensors"
CKPT_BEST = "best.safetensors"
CKPT_OPT = "optimizer.safetensors"


@dataclass
class SequenceTrainResult:
    weights: bytes  # best-epoch safetensors
    architecture: dict[str, Any]
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]
    resumed_from: int  # epochs restored from a checkpoint (0 = fresh start)
    attempts: int
    run_path: str
    timings: dict[str, float] = field(default_factory=dict)


def _binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from riskml.metrics import average_precision, roc_auc

    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    out = {"valid_logloss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))}
    if 0 < y.sum() < len(y):
        out["valid_ap"] = average_precision(y, p)
        out["valid_auc"] = roc_auc(y, p)
    return out


def run_sequence_loop(config: dict[str, Any], *, report: Any, checkpoint: Any) -> dict[str, Any]:
    """The epoch loop shared by Ray Train workers and the in-process path.

    ``report(metrics, checkpoint_dir | None)`` publishes an epoch; ``checkpoint`` is a directory
    to resume from (or None). ``config`` holds arrays (``train``/``valid`` dicts), the
    architecture, params, and distribution info.
    """
    import torch

    t_start = float(config.get("worker_start") or time.time())
    params = SequenceParams.model_validate(config["params"])
    arch = Architecture.model_validate(config["architecture"])
    rank = int(config.get("rank", 0))
    device = config.get("device") or torch.device("cpu")
    torch.set_num_threads(int(config["threads"]))
    torch.manual_seed(params.seed)
    train, valid = config["train"], config["valid"]
    with warnings.catch_warnings():
        # object-store arrays are read-only; the loop only ever reads these tensors
        warnings.simplefilter("ignore", UserWarning)
        tab = torch.as_tensor(train["tab"])
        seq = torch.as_tensor(train["seq"])
        y = torch.as_tensor(train["y"], dtype=torch.float32)

    model = build_model(arch)
    load_weights(model, config["init_weights"])
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=params.lr, weight_decay=params.weight_decay
    )
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_ap": -1.0, "best_epoch": -1}
    best_weights: bytes = config["init_weights"]
    resumed_from = 0
    if checkpoint is not None:
        src = Path(checkpoint)
        load_weights(model, (src / CKPT_WEIGHTS).read_bytes())
        load_optimizer(optimizer, (src / CKPT_OPT).read_bytes())
        best_weights = (src / CKPT_BEST).read_bytes()
        state = json.loads((src / CKPT_STATE).read_text())
        resumed_from = int(state["epoch"])
    state["attempts"] = int(state.get("attempts", 0)) + 1
    model = config.get("prepare_model", lambda m: m)(model)
    use_amp = params.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    pw = positive_weight(params.pos_weight, config["pos_rate"])
    stale = 0
    if state["best_epoch"] >= 0:
        stale = int(state["epoch"]) - int(state["best_epoch"])
    epoch_seconds: list[float] = []
    valid_seconds: list[float] = []  # validation pass + metrics, per epoch
    report_seconds: list[float] = []  # checkpoint files + report, per epoch
    t_loop = time.time()
    for epoch in range(int(state["epoch"]), params.epochs):
        gen = torch.Generator().manual_seed(params.seed * 1000 + epoch * 16 + rank)
        stats = train_epoch(
            model,
            optimizer,
            tab,
            seq,
            y,
            batch_size=params.batch_size,
            steps=config["steps_per_epoch"],
            pos_weight=pw,
            device=device,
            amp=use_amp,
            scaler=scaler,
            generator=gen,
        )
        epoch_seconds.append(stats["seconds"])
        t_valid = time.perf_counter()
        p = predict_proba(unwrap(model), valid["tab"], valid["seq"], device=device, amp=use_amp)
        metrics = {"epoch": float(epoch + 1), "train_loss": stats["loss"]}
        metrics.update(_binary_metrics(valid["y"], p))
        metrics["epoch_seconds"] = stats["seconds"]
        t_report = time.perf_counter()
        valid_seconds.append(t_report - t_valid)
        ap = metrics.get("valid_ap", -metrics["valid_logloss"])
        if ap > state["best_ap"]:
            state["best_ap"], state["best_epoch"] = ap, epoch + 1
            best_weights = weights_to_safetensors(model)
            stale = 0
        else:
            stale += 1
        state["epoch"] = epoch + 1
        state["history"].append(metrics)
        stop = params.patience is not None and stale >= params.patience
        with tempfile.TemporaryDirectory() as d:
            ckpt_dir = None
            if rank == 0:
                files = {
                    CKPT_WEIGHTS: weights_to_safetensors(model),
                    CKPT_BEST: best_weights,
                    CKPT_OPT: optimizer_to_safetensors(optimizer),
                }
                write_checkpoint(d, files, state)
                ckpt_dir = d
            report({**metrics, "resumed_from": float(resumed_from)}, ckpt_dir)
        report_seconds.append(time.perf_counter() - t_report)
        if stop:
            break
    return {
        "weights": best_weights if rank == 0 else b"",
        "best_epoch": int(state["best_epoch"]),
        "epochs_run": int(state["epoch"]),
        "history": state["history"],
        "resumed_from": resumed_from,
        "attempts": state["attempts"],
        "epoch_seconds": epoch_seconds,
        "valid_seconds": valid_seconds,
        "report_seconds": report_seconds,
        # data hand-off, checkpoint lookup, model and optimiser set-up, before the first epoch
        "setup_seconds": t_loop - t_start,
        "worker_start": t_start,
        "worker_end": time.time(),
    }


def _loop_timings(out: dict[str, Any]) -> dict[str, float]:
    """Means of the per-epoch phases of :func:`run_sequence_loop` (NaN without epochs)."""

    def mean(key: str) -> float:
        return float(np.mean(out[key])) if out.get(key) else float("nan")

    return {
        "setup_seconds": float(out["setup_seconds"]),
        "epoch_seconds_mean": mean("epoch_seconds"),
        "valid_seconds_mean": mean("valid_seconds"),
        "report_seconds_mean": mean("report_seconds"),
    }


#: A worker's shard up to this size is copied out of the object store before training.
PRIVATE_SHARD_MAX_BYTES = 2 << 30


def private_copy(arrays: dict[str, Any]) -> dict[str, Any]:
    """``arrays`` (a shard read from the object store: read-only views of its shared memory)
    copied into the worker's own memory when they fit :data:`PRIVATE_SHARD_MAX_BYTES`: NumPy
    asks transparent huge pages for its own large buffers (``madvise``), the object store's
    mapping has none, and an epoch gathers every row in random order from them, so the plain
    loop (arrays in its own memory) ran on huge pages and the Ray worker on 4 KiB ones."""
    import numpy as np

    arrays = dict(arrays)
    if sum(int(getattr(a, "nbytes", 0)) for a in arrays.values()) > PRIVATE_SHARD_MAX_BYTES:
        return arrays
    return {
        k: np.array(a, copy=True) if isinstance(a, np.ndarray) else a for k, a in arrays.items()
    }


def _torch_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Runs inside every Ray Train worker."""
    import ray
    import ray.train
    import ray.train.torch

    t_start = time.time()
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    cfg = dict(config)
    cfg["worker_start"] = t_start
    cfg["train"] = private_copy(ray.get(config["train_refs"][rank]))
    cfg["valid"] = ray.get(config["valid_ref"])
    cfg["rank"], cfg["world_size"] = rank, ctx.get_world_size()
    cfg["device"] = ray.train.torch.get_device()
    cfg["prepare_model"] = ray.train.torch.prepare_model

    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=ckpt)

    # the most advanced complete checkpoint, registered by Ray's controller or not
    checkpoint = latest_checkpoint("epoch")
    if checkpoint is None:
        return run_sequence_loop(cfg, report=report, checkpoint=None)
    with checkpoint.as_directory() as d:
        return run_sequence_loop(cfg, report=report, checkpoint=d)


def prepare_sequence_job(
    tab: np.ndarray,
    seq: np.ndarray,
    y: np.ndarray,
    params: SequenceParams,
) -> tuple[Architecture, bytes]:
    """Architecture + initial weights (normalisation fitted on the whole training set)."""
    import torch

    if seq.ndim != 3:
        raise ValueError(f"sequence tensor must be (n, steps, features), got {seq.shape}")
    if len(y) == 0 or y.min() == y.max():
        raise ValueError("training labels need both classes")
    torch.manual_seed(params.seed)
    arch = Architecture.from_params(
        params, n_tabular=tab.shape[1], n_sequence=seq.shape[2], seq_len=seq.shape[1]
    )
    model = build_model(arch)
    set_normalizer(model, tab, seq)
    return arch, weights_to_safetensors(model)


def train_sequence(
    tab_train: np.ndarray,
    seq_train: np.ndarray,
    y_train: np.ndarray,
    tab_valid: np.ndarray,
    seq_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    params: SequenceParams | None = None,
    ray_config: RayConfig | None = None,
) -> SequenceTrainResult:
    """Train the sequence model with ``TorchTrainer`` on ``ray_config.num_workers`` workers."""
    from ray.train import TrainingFailedError
    from ray.train.torch import TorchTrainer

    params = params or SequenceParams()
    cfg = ray_config or RayConfig()
    arch, init_weights = prepare_sequence_job(tab_train, seq_train, y_train, params)
    ensure_ray(include_dashboard=cfg.include_dashboard)
    t0 = time.time()
    arrays = {
        "tab": tab_train.astype(np.float32, copy=False),
        "seq": seq_train.astype(np.float32, copy=False),
        "y": y_train.astype(np.float32),
    }
    train_refs = put_shards(arrays, cfg.num_workers)
    import ray

    valid_ref = ray.put(
        {
            "tab": tab_valid.astype(np.float32, copy=False),
            "seq": seq_valid.astype(np.float32, copy=False),
            "y": y_valid.astype(np.float64),
        }
    )
    smallest = len(y_train) // cfg.num_workers
    name = run_name(cfg, "sequence")
    threads = cpus_per_worker(cfg)
    trainer = lean_trainer(TorchTrainer)(
        _torch_worker,  # V2 returns rank 0's value as return_value
        train_loop_config={
            "params": params.model_dump(mode="json"),
            "architecture": arch.model_dump(mode="json"),
            "init_weights": init_weights,
            "train_refs": train_refs,
            "valid_ref": valid_ref,
            "pos_rate": float(np.mean(y_train)),
            "steps_per_epoch": max(1, math.ceil(smallest / params.batch_size)),
            "threads": threads,
        },
        scaling_config=scaling_config(cfg),
        run_config=run_config(cfg, name),
    )
    t_fit = time.time()
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        raise training_failed("Sequence-model", name, cfg, "epoch", exc) from exc
    t_end = time.time()
    out = getattr(result, "return_value", None)
    if not out:
        raise RuntimeError(f"sequence training run {name} returned no model ({result.error})")
    return SequenceTrainResult(
        weights=out["weights"],
        architecture=arch.model_dump(mode="json"),
        best_epoch=out["best_epoch"],
        epochs_run=out["epochs_run"],
        history=out["history"],
        resumed_from=out["resumed_from"],
        attempts=out["attempts"],
        run_path=str(result.path),
        timings={
            "put_seconds": t_fit - t0,
            "fit_seconds": t_end - t_fit,
            "startup_seconds": out["worker_start"] - t_fit,
            **_loop_timings(out),
            "teardown_seconds": t_end - out["worker_end"],
            "threads": float(threads),
        },
    )


def train_sequence_local(
    tab_train: np.ndarray,
    seq_train: np.ndarray,
    y_train: np.ndarray,
    tab_valid: np.ndarray,
    seq_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    params: SequenceParams | None = None,
    threads: int = 1,
    device: str = "cpu",
) -> SequenceTrainResult:
    """The same loop in this process, without Ray (tests, the benchmark's baseline)."""
    import torch

    params = params or SequenceParams()
    arch, init_weights = prepare_sequence_job(tab_train, seq_train, y_train, params)
    t0 = time.time()
    reports: list[dict[str, float]] = []
    out = run_sequence_loop(
        {
            "params": params.model_dump(mode="json"),
            "architecture": arch.model_dump(mode="json"),
            "init_weights": init_weights,
            "train": {
                "tab": tab_train.astype(np.float32, copy=False),
                "seq": seq_train.astype(np.float32, copy=False),
                "y": y_train.astype(np.float32),
            },
            "valid": {"tab": tab_valid, "seq": seq_valid, "y": y_valid.astype(np.float64)},
            "pos_rate": float(np.mean(y_train)),
            "steps_per_epoch": max(1, math.ceil(len(y_train) / params.batch_size)),
            "threads": threads,
            "device": torch.device(device),
        },
        report=lambda m, _d: reports.append(m),
        checkpoint=None,
    )
    return SequenceTrainResult(
        weights=out["weights"],
        architecture=arch.model_dump(mode="json"),
        best_epoch=out["best_epoch"],
        epochs_run=out["epochs_run"],
        history=out["history"],
        resumed_from=0,
        attempts=1,
        run_path="",
        timings={
            "fit_seconds": time.time() - t0,
            **_loop_timings(out),
            "threads": float(threads),
        },
    )
