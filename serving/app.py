"""``build_app(args)``: the Ray Serve application of the decision service.

``serve run serving.app:build_app`` / ``serve deploy serving/serve_config.yaml`` call it with the
config's ``args`` (:class:`serving.config.AppArgs`). Every component is a
``{"factory": "module:attr", "kwargs": {...}}`` spec built inside its own replica (see
:mod:`serving.components`)::

    feature_source   -> FeatureFetcher   (e.g. serving.bundle:FeastFeatureSource)
    tabular_models   -> XGBoostScorer    {version: spec}; ``champion`` picks the default version
    sequence_model   -> SequenceScorer   (optional)
    calibrators      -> Decider          {"xgboost"|"sequence": spec}; identity when absent
    blend            -> Decider          a fitted blend (optional; else blend_weights)

``bundle_dir`` fills all of them from a verified model bundle over the Feast online store
(:mod:`serving.bundle`); explicit specs win over the bundle's.

``topology`` (see :mod:`serving.deployments`): ``colocated`` (default) builds every component
inside the Ingress replicas, so a request costs one Serve hop; ``distributed`` deploys the five
deployments above, for models that need their own resources or scaling.

``ingress_config`` / ``decider_config`` are the default ``user_config`` of the Ingress and the
Decider (colocated: the Ingress's, with the decider's under key ``decider``; a serve config's
per-deployment ``user_config`` overrides them). ``deployment_options`` applies
``Deployment.options(...)`` per deployment name (replicas, actor options) for runs that do not go
through a serve config file.

``admission`` (:class:`serving.config.AdmissionArgs`) sizes the Ingress's own admission
(:mod:`serving.admission`) and Serve's limits of the Ingress around it: ``max_ongoing_requests``
above the admission's slots, ``max_queued_requests`` and a ``backpressure_config`` answering 503
with the same ``Retry-After``. ``deployment_options`` and a serve config's deployment entry
override them. The downstream deployments (``distributed``) keep no queue limit: the Ingress
admits a bounded number of ladders, and each stage's timeout cancels its call, queued or not.
"""

from __future__ import annotations

from typing import Any

from riskml.decision.config import DeciderConfig, IngressConfig
from serving.config import COMPONENT_FIELDS, AdmissionArgs, AppArgs
from serving.deployments import Decider, FeatureFetcher, Ingress, SequenceScorer, XGBoostScorer


def ingress_limits(admission: AdmissionArgs) -> dict[str, Any]:
    """Serve's options of the Ingress deployment for ``admission``."""
    from ray.serve.config import BackpressureConfig

    return {
        "max_ongoing_requests": admission.serve_max_ongoing_requests,
        "max_queued_requests": admission.max_queued_requests,
        "backpressure_config": BackpressureConfig(
            status_code=503, retry_after_s=float(admission.retry_after_s)
        ),
    }


def build_app(args: dict[str, Any] | AppArgs) -> Any:
    """The bound application (``serve.run(build_app(args))``)."""
    a = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)

    def opts(deployment: Any) -> Any:
        if deployment.name == "Ingress":
            deployment = deployment.options(**ingress_limits(a.admission))
        extra = a.deployment_options.get(deployment.name)
        return deployment.options(**extra) if extra else deployment

    ingress_config = (a.ingress_config or IngressConfig()).model_dump()
    admission = a.admission.model_dump()
    if a.topology == "colocated":
        decider_config = (a.decider_config or DeciderConfig()).model_dump()
        ingress = opts(Ingress).options(user_config={**ingress_config, "decider": decider_config})
        components = a.model_dump(include=set(COMPONENT_FIELDS), exclude_none=True)
        return ingress.bind(
            champion=a.champion,
            colocated=components,
            admission=admission,
            warm_up_rounds=a.warm_up_rounds,
        )

    features = opts(FeatureFetcher).bind(a.feature_source.model_dump())  # type: ignore[union-attr]
    xgboost = opts(XGBoostScorer).bind({v: s.model_dump() for v, s in a.tabular_models.items()})
    decider_dep = opts(Decider)
    decider_dep = decider_dep.options(
        user_config=(a.decider_config or DeciderConfig()).model_dump()
    )
    decider = decider_dep.bind(
        features,
        {m: s.model_dump() for m, s in a.calibrators.items()},
        a.blend.model_dump() if a.blend is not None else None,
    )
    sequence = None
    if a.sequence_model is not None:
        sequence = opts(SequenceScorer).bind(
            a.sequence_model.model_dump(),
            a.sequence_batching.max_batch_size,
            a.sequence_batching.batch_wait_timeout_ms,
        )
    ingress = opts(Ingress).options(user_config=ingress_config)
    return ingress.bind(
        features,
        xgboost,
        decider,
        sequence,
        a.champion,
        admission=admission,
        warm_up_rounds=a.warm_up_rounds,
    )
