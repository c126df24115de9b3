"""``build_app(args)``: the Ray Serve application of the decision service.

``serve run serving.app:build_app`` / ``serve deploy serving/serve_config.yaml`` call it with the
config's ``args``. Every component is a ``{"factory": "module:attr", "kwargs": {...}}`` spec built
inside its own replica (see :mod:`serving.components`)::

    feature_source   -> FeatureFetcher   (e.g. serving.standins:RedisFeatureSource)
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
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.decision.config import DeciderConfig, IngressConfig
from serving.components import ComponentSpec

APP_NAME = "riskml"
DEPLOYMENTS = ("Ingress", "FeatureFetcher", "XGBoostScorer", "SequenceScorer", "Decider")
#: The deployments of each topology.
TOPOLOGIES: dict[str, tuple[str, ...]] = {"colocated": ("Ingress",), "distributed": DEPLOYMENTS}
#: What a colocated Ingress builds in-process (the component part of AppArgs).
COMPONENT_FIELDS = (
    "feature_source",
    "tabular_models",
    "champion",
    "sequence_model",
    "sequence_batching",
    "calibrators",
    "blend",
)


class SequenceBatching(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(default=32, ge=1, le=1024)
    batch_wait_timeout_ms: float = Field(
        default=0.0,
        ge=0,
        le=1_000,
        description="How long a forward pass waits for more requests to join it. 0: none; a "
        "batch is what queued while the previous pass ran (one pass at a time), so batches "
        "still form under load. At 100 rps on 2 cores a 1 ms wait cost the sequence stage "
        "0.8 ms at p50 and batched almost nothing.",
    )


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topology: Literal["colocated", "distributed"] = Field(
        default="colocated",
        description="colocated: every component inside the Ingress replicas (one Serve hop); "
        "distributed: one deployment per component.",
    )
    bundle_dir: str | None = Field(
        default=None,
        description="Verified model bundle: fills every component spec left empty from the "
        "bundle and the Feast online store (serving.bundle.bundle_app_args).",
    )
    online_store: Literal["sqlite", "redis"] | None = None
    feature_store: dict[str, Any] | None = Field(
        default=None,
        description="riskml.features.store.StoreConfig of the Feast online store (home, "
        "project, redis_url, ...); settings fill what is left out.",
    )
    feature_source: ComponentSpec | None = None
    tabular_models: dict[str, ComponentSpec] = Field(default_factory=dict)
    champion: str | None = None
    sequence_model: ComponentSpec | None = None
    sequence_batching: SequenceBatching = Field(default_factory=SequenceBatching)
    calibrators: dict[Literal["xgboost", "sequence"], ComponentSpec] = Field(default_factory=dict)
    blend: ComponentSpec | None = Field(
        default=None,
        description="A fitted blend (callable over calibrated probabilities, with ``models``) "
        "used when all its models answered; else the Decider's blend_weights.",
    )
    ingress_config: IngressConfig | None = None
    decider_config: DeciderConfig | None = None
    deployment_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_bundle(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("bundle_dir"):
            from serving.bundle import bundle_app_args

            return bundle_app_args(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> AppArgs:
        if self.feature_source is None or not self.tabular_models:
            raise ValueError(
                "args need bundle_dir, or feature_source and at least one tabular_models entry"
            )
        if self.champion is not None and self.champion not in self.tabular_models:
            known = list(self.tabular_models)
            raise ValueError(f"champion {self.champion!r} is not one of tabular_models {known}")
        unknown = sorted(set(self.deployment_options) - set(DEPLOYMENTS))
        if unknown:
            raise ValueError(f"deployment_options for unknown deployments {unknown}")
        absent = sorted(set(self.deployment_options) - set(TOPOLOGIES[self.topology]))
        if absent:
            raise ValueError(
                f"deployment_options for deployments {absent} that topology {self.topology!r} "
                f"does not deploy (it deploys {list(TOPOLOGIES[self.topology])})"
            )
        return self


def build_app(args: dict[str, Any] | AppArgs) -> Any:
    """The bound application (``serve.run(build_app(args))``)."""
    from serving.deployments import Decider, FeatureFetcher, Ingress, SequenceScorer, XGBoostScorer

    a = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)

    def opts(deployment: Any) -> Any:
        extra = a.deployment_options.get(deployment.name)
        return deployment.options(**extra) if extra else deployment

    ingress_config = (a.ingress_config or IngressConfig()).model_dump()
    if a.topology == "colocated":
        decider_config = (a.decider_config or DeciderConfig()).model_dump()
        ingress = opts(Ingress).options(user_config={**ingress_config, "decider": decider_config})
        components = a.model_dump(include=set(COMPONENT_FIELDS), exclude_none=True)
        return ingress.bind(champion=a.champion, colocated=components)

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
    return ingress.bind(features, xgboost, decider, sequence, a.champion)
