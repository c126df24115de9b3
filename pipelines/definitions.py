"""The pipelines. Each arrow of the design's data flow is one component (``components/``).

``training``:   data -> features -> Feast apply+materialise -> point-in-time train/test sets ->
                tune XGBoost -> train XGBoost || train sequence model -> calibrate + blend (bundle)
                -> backtest -> gate vs champion -> register -> [If gate == deploy] deploy
``retraining``: the same without tuning (the configured parameters), on a new data window.
``monitoring``: check the decision log against the champion's reference profile (drift with
                alarms sized to the window, recorded in MLflow with its reason) -> [If broad
                drift holds: the score, or 3 series at once] retraining on the data window
                ending now -> gate -> register ->
                [If gate == deploy] deploy. Scheduled as a recurring run
                (``python -m pipelines submit --pipeline monitoring --recurring "0 6 * * *"``).
``pd_training``:   credit portfolio (simulate | import a loan tape) -> PD models on the vintages
                before the held-out ones (scorecard + monotone GBDT on Ray, calibration chosen
                out of time) -> evaluate on the held-out vintages -> gate vs the ``credit-pd``
                champion -> register -> [If gate == deploy] deploy (the Serve app ``credit``'s
                ``pd_model_uri``).
``offer_ranking``: credit portfolio -> offer ranker on the logged impressions before the
                held-out months -> off-policy evaluation -> gate vs the ``credit-offers``
                champion -> register -> [If gate == deploy] deploy (``offers_model_uri``).
``disputes_training``: dispute set (simulate | import records + documents) -> extract the
                evidence from the documents (rules, offline) -> the outcome model's features ->
                train the outcome model on what was known at the held-out window's start ->
                calibrate it on a later slice (+ rules baseline, reason classifier: the
                ``disputes-outcome`` bundle) -> time-ordered backtest -> gate vs the champion ->
                register -> [If gate == deploy] deploy (the Serve app ``disputes``'s
                ``model_uri``).

Retries, with exponential backoff, on the materialisation and on every Ray step (tuning or not,
training); caching off for the tasks whose result depends on the world rather than on their
inputs (load-data re-reads its source, materialise, gate, register, deploy).

The ``cluster`` flavour runs every task as the platform's pipeline pod (k8s/base/training, through
kfp-kubernetes): the label the NetworkPolicies select (``app.kubernetes.io/component=pipeline``),
the image's non-root user, CPU/memory requests and limits, the environment from the ConfigMap
``riskml-pipeline-env`` (tracking URI, Feast config path, Ray mode, storage URI, ...), the
environment's ``feature_store.yaml`` mounted from ``riskml-pipeline-feature-store``, and only the
Secrets a task uses: the online store and the Feast registry for the Feast tasks, the Ray token for
the Ray tasks. It also puts the behavioural-model task on a GPU node (accelerator type/limit, the
GPU pool's node selector and taint toleration, the CUDA image).
"""

import json
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import HTML, Model

from components.base import GPU_BASE_IMAGE
from components.credit import (
    deploy_credit,
    evaluate_offers,
    evaluate_pd,
    gate_credit,
    load_portfolio,
    train_offer_model,
    train_pd_model,
)
from components.data import load_data
from components.disputes import (
    backtest_disputes,
    calibrate_outcome,
    deploy_disputes,
    dispute_features,
    extract_evidence,
    gate_disputes,
    load_disputes,
    train_outcome_model,
)
from components.evaluation import backtest, gate
from components.features import build_features, feast_materialize, training_sets
from components.monitoring import monitor_decisions, retrain_window
from components.registry import deploy, register
from components.training import calibrate_ensemble, train_sequence, train_xgb, tune_xgb
from riskml.registry.gate import DEFAULT_GATE_METRIC
from riskml.training.tasks import DEFAULT_TRAIN_CONFIG

Flavour = Literal["local", "cluster"]
FLAVOURS: tuple[str, ...] = ("local", "cluster")
PIPELINES: tuple[str, ...] = (
    "training",
    "retraining",
    "monitoring",
    "pd_training",
    "offer_ranking",
    "disputes_training",
)
#: The credit line's pipelines (their bundles, gate metrics and Serve app args).
CREDIT_PIPELINES: tuple[str, ...] = ("pd_training", "offer_ranking")
#: The credit Serve app (serving/serve_config.yaml) and the arg each credit model rolls.
CREDIT_APP = "credit"
CREDIT_URI_ARGS = {"pd_training": "pd_model_uri", "offer_ranking": "offers_model_uri"}
#: The disputes Serve app (serving/serve_config.yaml) and the arg its bundle rolls.
DISPUTES_APP = "disputes"
DISPUTES_URI_ARG = "model_uri"

#: Retries of training / materialisation tasks: (count, first backoff; factor 2).
TRAIN_RETRIES = (2, "30s")
MATERIALIZE_RETRIES = (3, "15s")
#: GPU placement of the behavioural-model task (Karpenter GPU pool, see k8s/nodepools/gpu).
GPU_ACCELERATOR = "nvidia.com/gpu"
GPU_NODE_SELECTOR = ("karpenter.sh/nodepool", "riskml-gpu")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
DEFAULT_CONFIG_JSON = json.dumps(DEFAULT_TRAIN_CONFIG, sort_keys=True)

# -- cluster flavour: what every task pod gets (names are a contract with k8s/base/training) ----
#: Pod labels; the NetworkPolicies select app.kubernetes.io/component=pipeline.
POD_LABELS = {"app.kubernetes.io/component": "pipeline", "app.kubernetes.io/part-of": "riskml"}
#: The image's user (Dockerfile ``USER 1000:100``): Pod Security "restricted" needs non-root.
RUN_AS_USER, RUN_AS_GROUP = 1000, 100
#: ConfigMap of the environment's (non-secret) settings, mapped key -> variable of the same name.
ENV_CONFIG_MAP = "riskml-pipeline-env"
ENV_KEYS = (
    "RISKML_MLFLOW_TRACKING_URI",
    "RISKML_FEAST_CONFIG",
    "RISKML_ONLINE_STORE",
    "RISKML_REDIS_URL",
    "RISKML_RAY_MODE",
    "RISKML_STORAGE_URI",
)
#: Keys the ConfigMap may omit (the Jobs API address exists only in ``jobs`` mode).
OPTIONAL_ENV_KEYS = ("RISKML_RAY_ADDRESS",)
#: The environment's feature_store.yaml (RISKML_FEAST_CONFIG points into this directory).
FEAST_CONFIG_MAP = "riskml-pipeline-feature-store"
FEAST_CONFIG_DIR = "/etc/riskml/feast"
#: Secrets by what a task touches: name -> {key: environment variable}.
SECRETS: dict[str, dict[str, dict[str, str]]] = {
    # Feast: the online store (materialise) and the SQL registry feature_store.yaml expands
    "feast": {
        "riskml-online-redis": {"password": "RISKML_REDIS_PASSWORD"},
        "riskml-feast-registry": {"url": "FEAST_REGISTRY_PATH"},
    },
    # Ray: the cluster's token for the Jobs API (RISKML_RAY_MODE=jobs)
    "ray": {"riskml-ray-auth": {"auth_token": "RAY_AUTH_TOKEN"}},
}
#: CPU/memory (request, limit) of a task pod; the Ray work itself runs on the Ray cluster.
TASK_CPU = ("1", "2")
TASK_MEMORY = ("4G", "8G")


#: What a pipeline run returns: the registry record of the bundle, the backtest report, the gate
#: decision (``deploy`` | ``keep``).
PipelineOutputs = NamedTuple(  # noqa: UP014 (kfp reads the functional form's annotations)
    "PipelineOutputs", [("bundle", Model), ("report", HTML), ("decision", str)]
)


def _retry(task: Any, policy: tuple[int, str]) -> Any:
    return task.set_retry(num_retries=policy[0], backoff_duration=policy[1], backoff_factor=2.0)


def _platform(task: Any, flavour: Flavour, *needs: str) -> Any:
    """Cluster flavour: the pipeline pod's label, user, resources, environment and the Secrets
    of ``needs`` (keys of :data:`SECRETS`) for one task. The local flavour is left as is."""
    if flavour != "cluster":
        return task
    for key, value in POD_LABELS.items():
        kubernetes.add_pod_label(task, key, value)
    kubernetes.set_security_context(
        task, run_as_user=RUN_AS_USER, run_as_group=RUN_AS_GROUP, run_as_non_root=True
    )
    task.set_cpu_request(TASK_CPU[0]).set_cpu_limit(TASK_CPU[1])
    task.set_memory_request(TASK_MEMORY[0]).set_memory_limit(TASK_MEMORY[1])
    kubernetes.use_config_map_as_env(task, ENV_CONFIG_MAP, {k: k for k in ENV_KEYS})
    kubernetes.use_config_map_as_env(
        task, ENV_CONFIG_MAP, {k: k for k in OPTIONAL_ENV_KEYS}, optional=True
    )
    kubernetes.use_config_map_as_volume(task, FEAST_CONFIG_MAP, mount_path=FEAST_CONFIG_DIR)
    for need in needs:
        for secret, keys in SECRETS[need].items():
            kubernetes.use_secret_as_env(task, secret, keys)
    return task


def _gpu(task: Any) -> Any:
    task.set_accelerator_type(GPU_ACCELERATOR).set_accelerator_limit(1)
    task.set_container_image(GPU_BASE_IMAGE)
    task.set_cpu_limit("6").set_memory_limit("24G")
    kubernetes.add_node_selector(
        task, label_key=GPU_NODE_SELECTOR[0], label_value=GPU_NODE_SELECTOR[1]
    )
    kubernetes.add_toleration(task, **GPU_TOLERATION)
    kubernetes.add_pod_label(task, "riskml.io/accelerator", "nvidia-gpu")
    return task


def _features(
    flavour: Flavour,
    size: Any,
    seed: Any,
    source_uri: Any,
    start_date: Any,
    test_days: Any,
    drift: Any = "",
) -> Any:
    data = load_data(
        size=size, seed=seed, source_uri=source_uri, start_date=start_date, drift=drift
    )
    # the same source URI may hold new data: a retraining run must read it again
    data.set_display_name("data").set_caching_options(False)
    _platform(data, flavour)
    feats = build_features(dataset=data.outputs["dataset"]).set_display_name("features")
    _platform(feats, flavour)
    store = feast_materialize(features=feats.outputs["features"]).set_display_name("feast")
    store.set_caching_options(False)
    _retry(store, MATERIALIZE_RETRIES)
    _platform(store, flavour, "feast")
    sets = training_sets(
        features=feats.outputs["features"],
        dataset=data.outputs["dataset"],
        store=store.outputs["store"],
        test_days=test_days,
    ).set_display_name("training-set")
    return _platform(sets, flavour, "feast")


def _train_and_release(
    flavour: Flavour,
    sets: Any,
    params: Any,
    *,
    train_config_json: Any,
    ray_mode: Any,
    gate_margin: Any,
    gate_metric: Any,
    deploy_target: Any,
) -> Any:
    train_set, test_set = sets.outputs["train_set"], sets.outputs["test_set"]
    xgb = train_xgb(
        train_set=train_set,
        best_params=params,
        train_config_json=train_config_json,
        ray_mode=ray_mode,
    ).set_display_name("train-xgboost")
    _retry(xgb, TRAIN_RETRIES)
    _platform(xgb, flavour, "ray")
    seq = train_sequence(
        train_set=train_set,
        train_config_json=train_config_json,
        use_gpu=flavour == "cluster",
        ray_mode=ray_mode,
    ).set_display_name("train-sequence")
    _retry(seq, TRAIN_RETRIES)
    _platform(seq, flavour, "ray")
    if flavour == "cluster":
        _gpu(seq)
    ens = calibrate_ensemble(
        train_set=train_set,
        xgb_model=xgb.outputs["model"],
        sequence_model=seq.outputs["model"],
        train_config_json=train_config_json,
    ).set_display_name("calibrate-ensemble")
    _platform(ens, flavour)
    bundle = ens.outputs["bundle"]
    report = backtest(bundle=bundle, test_set=test_set).set_display_name("backtest")
    _platform(report, flavour)
    decision = gate(bundle=bundle, test_set=test_set, margin=gate_margin, metric=gate_metric)
    decision.set_display_name("gate")
    # the gate reads the registry's champion: never serve it from cache
    decision.set_caching_options(False)
    _platform(decision, flavour)
    reg = register(
        bundle=bundle,
        backtest_metrics=report.outputs["metrics"],
        decision=decision.outputs["Output"],
    )
    reg.set_display_name("register").set_caching_options(False)
    _platform(reg, flavour)
    with dsl.If(decision.outputs["Output"] == "deploy", name="challenger-wins"):
        dep = deploy(
            registered=reg.outputs["registered"],
            gate_metrics=decision.outputs["metrics"],
            target=deploy_target,
        )
        dep.set_display_name("deploy").set_caching_options(False)
        _platform(dep, flavour)
    return PipelineOutputs(
        bundle=reg.outputs["registered"],
        report=report.outputs["report"],
        decision=decision.outputs["Output"],
    )


def build_training(flavour: Flavour = "local") -> Callable[..., Any]:
    """The training pipeline (``cluster``: GPU behavioural model, deploy to the RayService)."""
    _check(flavour)
    target_default = "cluster" if flavour == "cluster" else "local"

    @dsl.pipeline(
        name="riskml-training" if flavour == "local" else "riskml-training-cluster",
        description="Data -> features -> Feast -> train/tune on Ray -> calibrate + blend -> "
        "backtest -> gate vs champion -> register -> deploy if better.",
    )
    def training(
        size: str = "tiny",
        seed: int = 7,
        source_uri: str = "",
        start_date: str = "",
        test_days: int = 7,
        tune_samples: int = 2,
        tune_budget_s: float = 300.0,
        train_config_json: str = DEFAULT_CONFIG_JSON,
        gate_margin: float = 0.0,
        gate_metric: str = DEFAULT_GATE_METRIC,
        deploy_target: str = target_default,
        ray_mode: str = "",
    ) -> PipelineOutputs:
        sets = _features(flavour, size, seed, source_uri, start_date, test_days)
        return _tune_and_release(
            flavour,
            sets,
            num_samples=tune_samples,
            time_budget_s=tune_budget_s,
            display_name="tune-xgboost",
            train_config_json=train_config_json,
            ray_mode=ray_mode,
            gate_margin=gate_margin,
            gate_metric=gate_metric,
            deploy_target=deploy_target,
        )

    return training


def build_retraining(flavour: Flavour = "local") -> Callable[..., Any]:
    """Retraining on a new data window: no tuning; deploy only if the gate says so."""
    _check(flavour)
    target_default = "cluster" if flavour == "cluster" else "local"

    @dsl.pipeline(
        name="riskml-retraining" if flavour == "local" else "riskml-retraining-cluster",
        description="New data -> features -> train -> backtest -> gate -> deploy if better.",
    )
    def retraining(
        size: str = "tiny",
        seed: int = 11,
        source_uri: str = "",
        start_date: str = "",
        test_days: int = 7,
        train_config_json: str = DEFAULT_CONFIG_JSON,
        gate_margin: float = 0.002,
        gate_metric: str = DEFAULT_GATE_METRIC,
        deploy_target: str = target_default,
        ray_mode: str = "",
    ) -> PipelineOutputs:
        sets = _features(flavour, size, seed, source_uri, start_date, test_days)
        return _retrain(
            flavour,
            sets,
            train_config_json=train_config_json,
            ray_mode=ray_mode,
            gate_margin=gate_margin,
            gate_metric=gate_metric,
            deploy_target=deploy_target,
        )

    return retraining


def _tune_and_release(
    flavour: Flavour,
    sets: Any,
    *,
    num_samples: Any,
    display_name: str,
    train_config_json: Any,
    ray_mode: Any,
    gate_margin: Any,
    gate_metric: Any,
    deploy_target: Any,
    time_budget_s: Any = None,
) -> Any:
    """XGBoost's parameters (Ray Tune trials, or ``num_samples=0``: the configured ones), then
    training, gate, register and the conditional deploy."""
    budget = {} if time_budget_s is None else {"time_budget_s": time_budget_s}
    tune = tune_xgb(
        train_set=sets.outputs["train_set"],
        num_samples=num_samples,
        train_config_json=train_config_json,
        ray_mode=ray_mode,
        **budget,
    ).set_display_name(display_name)
    # a Ray step (Jobs API / RayJob in the cluster), tuning or not: retried like training
    _retry(tune, TRAIN_RETRIES)
    _platform(tune, flavour, "ray")
    return _train_and_release(
        flavour,
        sets,
        tune.outputs["best_params"],
        train_config_json=train_config_json,
        ray_mode=ray_mode,
        gate_margin=gate_margin,
        gate_metric=gate_metric,
        deploy_target=deploy_target,
    )


def _retrain(flavour: Flavour, sets: Any, **release: Any) -> Any:
    """The retraining path: no tuning (the configured parameters)."""
    return _tune_and_release(flavour, sets, num_samples=0, display_name="xgboost-params", **release)


def build_monitoring(flavour: Flavour = "local") -> Callable[..., Any]:
    """Monitor the decision log; retrain (and let the gate decide) when a drift alarm holds."""
    _check(flavour)
    target_default = "cluster" if flavour == "cluster" else "local"

    @dsl.pipeline(
        name="riskml-monitoring" if flavour == "local" else "riskml-monitoring-cluster",
        description="Decision log vs the champion's reference -> [drift holds] retrain on the "
        "window ending now -> gate -> register -> deploy if better.",
    )
    def monitoring(
        log_uri: str,
        model_uri: str = "models:/fraud@champion",
        lookback_days: float = 7.0,
        every_s: float = 86_400.0,
        hold_windows: int = 3,
        retrain_min_held: int = 3,
        alpha: float = 0.01,
        at: str = "",
        window_days: int = 42,
        size: str = "tiny",
        seed: int = 13,
        source_uri: str = "",
        drift: str = "",
        test_days: int = 7,
        train_config_json: str = DEFAULT_CONFIG_JSON,
        gate_margin: float = 0.002,
        gate_metric: str = DEFAULT_GATE_METRIC,
        deploy_target: str = target_default,
        ray_mode: str = "",
    ) -> None:
        check = monitor_decisions(
            log_uri=log_uri,
            model_uri=model_uri,
            lookback_days=lookback_days,
            every_s=every_s,
            hold_windows=hold_windows,
            retrain_min_held=retrain_min_held,
            alpha=alpha,
            at=at,
        ).set_display_name("monitor")
        # reads the log and the registry now, and records the check: never from cache
        check.set_caching_options(False)
        _platform(check, flavour)
        with dsl.If(check.outputs["Output"] == "retrain", name="drift-holds"):
            start = retrain_window(days=window_days, at=at).set_display_name("data-window")
            start.set_caching_options(False)
            _platform(start, flavour)
            sets = _features(flavour, size, seed, source_uri, start.output, test_days, drift=drift)
            _retrain(
                flavour,
                sets,
                train_config_json=train_config_json,
                ray_mode=ray_mode,
                gate_margin=gate_margin,
                gate_metric=gate_metric,
                deploy_target=deploy_target,
            )

    return monitoring


def _credit_data(
    flavour: Flavour, size: Any, seed: Any, source_uri: Any, mapping_json: Any, as_of: Any
) -> Any:
    data = load_portfolio(
        size=size, seed=seed, source_uri=source_uri, mapping_json=mapping_json, as_of=as_of
    )
    # the same source URI may hold new loans: never from cache
    data.set_display_name("portfolio").set_caching_options(False)
    return _platform(data, flavour)


def _credit_release(
    flavour: Flavour,
    pipeline: str,
    data: Any,
    bundle: Any,
    evaluation: Any,
    *,
    gate_margin: Any,
    gate_metric: Any,
    deploy_target: Any,
) -> Any:
    """Gate the credit bundle against its champion, register it, deploy it if it won."""
    decision = gate_credit(
        bundle=bundle,
        portfolio=data.outputs["portfolio"],
        margin=gate_margin,
        metric=gate_metric,
    )
    decision.set_display_name("gate")
    # the gate reads the registry's champion: never serve it from cache
    decision.set_caching_options(False)
    _platform(decision, flavour)
    reg = register(
        bundle=bundle,
        backtest_metrics=evaluation.outputs["metrics"],
        decision=decision.outputs["Output"],
    )
    reg.set_display_name("register").set_caching_options(False)
    _platform(reg, flavour)
    with dsl.If(decision.outputs["Output"] == "deploy", name="challenger-wins"):
        dep = deploy_credit(
            registered=reg.outputs["registered"],
            gate_metrics=decision.outputs["metrics"],
            target=deploy_target,
            app=CREDIT_APP,
            uri_arg=CREDIT_URI_ARGS[pipeline],
        )
        dep.set_display_name("deploy").set_caching_options(False)
        _platform(dep, flavour)
    return PipelineOutputs(
        bundle=reg.outputs["registered"],
        report=evaluation.outputs["report"],
        decision=decision.outputs["Output"],
    )


def build_pd_training(flavour: Flavour = "local") -> Callable[..., Any]:
    """Credit PD: portfolio -> PD models on Ray -> out-of-time evaluation -> gate -> release."""
    _check(flavour)
    target_default = "cluster" if flavour == "cluster" else "local"

    @dsl.pipeline(
        name="riskml-pd-training" if flavour == "local" else "riskml-pd-training-cluster",
        description="Credit portfolio -> scorecard + monotone GBDT on Ray, calibrated out of "
        "time -> evaluation on held-out vintages -> gate vs champion -> register -> deploy if "
        "better.",
    )
    def pd_training(
        size: str = "tiny",
        seed: int = 7,
        source_uri: str = "",
        mapping_json: str = "",
        as_of: str = "",
        test_vintages: int = 1,
        train_config_json: str = "",
        gate_margin: float = 0.0,
        gate_metric: str = "gini",
        deploy_target: str = target_default,
    ) -> PipelineOutputs:
        data = _credit_data(flavour, size, seed, source_uri, mapping_json, as_of)
        train = train_pd_model(
            portfolio=data.outputs["portfolio"],
            test_vintages=test_vintages,
            train_config_json=train_config_json,
        ).set_display_name("train-pd")
        _retry(train, TRAIN_RETRIES)
        _platform(train, flavour, "ray")
        bundle = train.outputs["bundle"]
        evaluation = evaluate_pd(bundle=bundle, portfolio=data.outputs["portfolio"])
        evaluation.set_display_name("evaluate-pd")
        _platform(evaluation, flavour)
        return _credit_release(
            flavour,
            "pd_training",
            data,
            bundle,
            evaluation,
            gate_margin=gate_margin,
            gate_metric=gate_metric,
            deploy_target=deploy_target,
        )

    return pd_training


def build_offer_ranking(flavour: Flavour = "local") -> Callable[..., Any]:
    """Credit offers: portfolio -> ranker on the logged offers -> off-policy evaluation -> gate
    -> release."""
    _check(flavour)
    target_default = "cluster" if flavour == "cluster" else "local"

    @dsl.pipeline(
        name="riskml-offer-ranking" if flavour == "local" else "riskml-offer-ranking-cluster",
        description="Credit portfolio -> learning-to-rank model on the logged offers -> "
        "off-policy evaluation on held-out months -> gate vs champion -> register -> deploy if "
        "better.",
    )
    def offer_ranking(
        size: str = "tiny",
        seed: int = 7,
        source_uri: str = "",
        mapping_json: str = "",
        as_of: str = "",
        test_months: int = 1,
        train_config_json: str = "",
        gate_margin: float = 0.0,
        gate_metric: str = "ev_per_customer_model",
        deploy_target: str = target_default,
    ) -> PipelineOutputs:
        data = _credit_data(flavour, size, seed, source_uri, mapping_json, as_of)
        train = train_offer_model(
            portfolio=data.outputs["portfolio"],
            test_months=test_months,
            train_config_json=train_config_json,
        ).set_display_name("train-offers")
        _retry(train, TRAIN_RETRIES)
        _platform(train, flavour, "ray")
        bundle = train.outputs["bundle"]
        evaluation = evaluate_offers(bundle=bundle, portfolio=data.outputs["portfolio"])
        evaluation.set_display_name("evaluate-offers")
        _platform(evaluation, flavour)
        return _credit_release(
            flavour,
            "offer_ranking",
            data,
            bundle,
            evaluation,
            gate_margin=gate_margin,
            gate_metric=gate_metric,
            deploy_target=deploy_target,
        )

    return offer_ranking


def build_disputes_training(flavour: Flavour = "local") -> Callable[..., Any]:
    """Disputes: dispute set -> evidence extraction -> features -> train -> calibrate ->
    backtest -> gate -> register -> [If gate == deploy] deploy."""
    _check(flavour)
    target_default = "cluster" if flavour == "cluster" else "local"

    @dsl.pipeline(
        name="riskml-disputes-training"
        if flavour == "local"
        else "riskml-disputes-training-cluster",
        description="Dispute set -> evidence from the documents -> features -> outcome model "
        "trained and calibrated out of time -> backtest vs the rules baseline and the policy "
        "vs always represent / refund -> gate vs champion -> register -> deploy if better.",
    )
    def disputes_training(
        size: str = "tiny",
        seed: int = 11,
        source_uri: str = "",
        documents_uri: str = "",
        mapping_json: str = "",
        train_config_json: str = "",
        gate_margin: float = 0.0,
        gate_metric: str = "auc",
        deploy_target: str = target_default,
    ) -> PipelineOutputs:
        data = load_disputes(
            size=size,
            seed=seed,
            source_uri=source_uri,
            documents_uri=documents_uri,
            mapping_json=mapping_json,
        )
        # the same source URI may hold new disputes: never from cache
        data.set_display_name("disputes").set_caching_options(False)
        _platform(data, flavour)
        disputes = data.outputs["disputes"]
        ext = extract_evidence(disputes=disputes, train_config_json=train_config_json)
        ext.set_display_name("extract")
        _platform(ext, flavour)
        evidence = ext.outputs["evidence"]
        feats = dispute_features(
            disputes=disputes, evidence=evidence, train_config_json=train_config_json
        ).set_display_name("features")
        _platform(feats, flavour)
        features = feats.outputs["features"]
        train = train_outcome_model(
            disputes=disputes,
            evidence=evidence,
            features=features,
            train_config_json=train_config_json,
        ).set_display_name("train-outcome")
        _retry(train, TRAIN_RETRIES)
        _platform(train, flavour)
        cal = calibrate_outcome(
            disputes=disputes,
            evidence=evidence,
            features=features,
            model=train.outputs["model"],
            train_config_json=train_config_json,
        ).set_display_name("calibrate")
        _platform(cal, flavour)
        bundle = cal.outputs["bundle"]
        report = backtest_disputes(
            disputes=disputes,
            evidence=evidence,
            features=features,
            bundle=bundle,
            train_config_json=train_config_json,
        ).set_display_name("backtest")
        _platform(report, flavour)
        decision = gate_disputes(
            bundle=bundle,
            disputes=disputes,
            evidence=evidence,
            margin=gate_margin,
            metric=gate_metric,
            train_config_json=train_config_json,
        )
        # the gate reads the registry's champion: never serve it from cache
        decision.set_display_name("gate").set_caching_options(False)
        _platform(decision, flavour)
        reg = register(
            bundle=bundle,
            backtest_metrics=report.outputs["metrics"],
            decision=decision.outputs["Output"],
        )
        reg.set_display_name("register").set_caching_options(False)
        _platform(reg, flavour)
        with dsl.If(decision.outputs["Output"] == "deploy", name="challenger-wins"):
            dep = deploy_disputes(
                registered=reg.outputs["registered"],
                gate_metrics=decision.outputs["metrics"],
                target=deploy_target,
                app=DISPUTES_APP,
                uri_arg=DISPUTES_URI_ARG,
            )
            dep.set_display_name("deploy").set_caching_options(False)
            _platform(dep, flavour)
        return PipelineOutputs(
            bundle=reg.outputs["registered"],
            report=report.outputs["report"],
            decision=decision.outputs["Output"],
        )

    return disputes_training


def _check(flavour: str) -> None:
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; choose from {', '.join(FLAVOURS)}")


def get_pipeline(name: str, flavour: Flavour = "local") -> Callable[..., Any]:
    if name == "training":
        return build_training(flavour)
    if name == "retraining":
        return build_retraining(flavour)
    if name == "monitoring":
        return build_monitoring(flavour)
    if name == "pd_training":
        return build_pd_training(flavour)
    if name == "offer_ranking":
        return build_offer_ranking(flavour)
    if name == "disputes_training":
        return build_disputes_training(flavour)
    raise ValueError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
