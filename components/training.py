"""Training on Ray: tune XGBoost, train XGBoost, train the sequence model, calibrate + blend.

The Ray-heavy components run their step through
:func:`riskml.orchestration.ray_task.run_ray_task` with ``ray_mode`` (empty: ``RISKML_RAY_MODE``,
default ``local``): ``local`` (in the component's process, on ``RISKML_RAY_ADDRESS`` or a local
Ray), ``jobs`` (Ray Jobs API) or ``rayjob`` (a KubeRay RayJob). ``jobs``/``rayjob`` need the
artifact paths on storage the Ray cluster also mounts.
"""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.base import component


@component
def tune_xgb(
    train_set: Input[Dataset],
    best_params: Output[Artifact],
    metrics: Output[Metrics],
    num_samples: int = 2,
    time_budget_s: float = 300.0,
    train_config_json: str = "{}",
    ray_mode: str = "",
) -> None:
    """Ray Tune over XGBoost parameters (``num_samples=0``: keep the configured parameters)."""
    import json

    from riskml.metrics import finite_metrics
    from riskml.orchestration.ray_task import run_ray_task

    out = run_ray_task(
        "riskml.orchestration.entrypoints:tune_xgb",
        {
            "train_dir": train_set.path,
            "out": best_params.path,
            "num_samples": num_samples,
            "time_budget_s": time_budget_s,
            "config": json.loads(train_config_json),
        },
        mode=ray_mode or None,
    )
    result = out["result"]
    for key, value in finite_metrics(result).items():
        metrics.log_metric(key, value)
    best_params.metadata.update({"tuned": result["tuned"], "ray": out["dashboard_url"] or ""})
    print(json.dumps(out))


@component
def train_xgb(
    train_set: Input[Dataset],
    best_params: Input[Artifact],
    model: Output[Model],
    metrics: Output[Metrics],
    train_config_json: str = "{}",
    ray_mode: str = "",
) -> None:
    """XGBoost on Ray Train with the tuned parameters; writes ``model.ubj`` + ``info.json``."""
    import json
    from pathlib import Path

    from riskml.metrics import finite_metrics
    from riskml.orchestration.ray_task import run_ray_task

    params = json.loads(Path(best_params.path).read_text())["params"]
    out = run_ray_task(
        "riskml.orchestration.entrypoints:train_xgb",
        {
            "train_dir": train_set.path,
            "out_dir": model.path,
            "params": params,
            "config": json.loads(train_config_json),
        },
        mode=ray_mode or None,
    )
    for key, value in finite_metrics(out["result"]).items():
        metrics.log_metric(key, value)
    model.metadata.update({"framework": "xgboost", "format": "ubj"})
    print(json.dumps(out))


@component
def train_sequence(
    train_set: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    train_config_json: str = "{}",
    use_gpu: bool = False,
    ray_mode: str = "",
) -> None:
    """The behavioural (transaction-sequence) model on Ray Train (DDP; CUDA with ``use_gpu``)."""
    import json

    from riskml.metrics import finite_metrics
    from riskml.orchestration.ray_task import run_ray_task

    out = run_ray_task(
        "riskml.orchestration.entrypoints:train_sequence",
        {
            "train_dir": train_set.path,
            "out_dir": model.path,
            "config": json.loads(train_config_json),
            "use_gpu": use_gpu,
        },
        mode=ray_mode or None,
    )
    for key, value in finite_metrics(out["result"]).items():
        metrics.log_metric(key, value)
    model.metadata.update({"framework": "pytorch", "format": "safetensors"})
    print(json.dumps(out))


@component
def calibrate_ensemble(
    train_set: Input[Dataset],
    xgb_model: Input[Model],
    sequence_model: Input[Model],
    bundle: Output[Model],
    metrics: Output[Metrics],
    train_config_json: str = "{}",
) -> None:
    """Calibrate each model on the latest held-out slice, fit the blend, write a verified
    model bundle (manifest with sha256 of every file)."""
    import json
    from pathlib import Path

    from riskml.metrics import finite_metrics
    from riskml.training.tasks import calibrate_and_bundle

    out = calibrate_and_bundle(
        Path(train_set.path),
        Path(bundle.path),
        xgb_dir=Path(xgb_model.path),
        seq_dir=Path(sequence_model.path),
        config=json.loads(train_config_json),
    )
    for key, value in finite_metrics(out["valid_blend"], "valid_blend_").items():
        metrics.log_metric(key, value)
    bundle.metadata.update({k: out[k] for k in ("name", "version", "models")})
    print(json.dumps(out))
