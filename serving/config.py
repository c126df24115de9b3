"""The decision service's application arguments and topology tables (pydantic, no Ray).

:class:`AppArgs` is what ``build_app(args)`` (:mod:`serving.app`) receives from a serve
config's ``args``; :class:`serving.inprocess.LocalComponents` and the colocated Ingress build
their components from it too. It imports none of them, so the serving modules import one way:
``app -> deployments -> inprocess -> config``.
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


#: Serve ``max_ongoing_requests`` of an Ingress replica above what its admission lets work or
#: wait (``max_in_flight + max_waiting``): requests being shed or still sending their body hold a
#: Serve slot too, and Serve must not queue a request before the Ingress has timed its arrival.
SHED_HEADROOM = 32


class AdmissionArgs(BaseModel):
    """Backpressure of the decision API (``serving.admission``), per Ingress replica, and the
    Serve limits around it. A request past what the replica works on and lets wait is answered
    503 with ``Retry-After`` at once, before its body is parsed; a body over its route's limit
    is a 413 before it is read in full."""

    model_config = ConfigDict(extra="forbid")

    max_in_flight: int = Field(
        default=8,
        ge=1,
        le=10_000,
        description="Decisions an Ingress replica works on at once (single and batch requests "
        "alike). Twice the Ingress autoscaling target (target_ongoing_requests 4): bursts the "
        "autoscaler has not caught up with are shed, not queued past their deadline.",
    )
    max_waiting: int = Field(
        default=8,
        ge=0,
        le=10_000,
        description="Requests that may wait for one of those slots (first come, first served); "
        "one waits at most until its deadline leaves less than min_budget_ms. 0: none wait.",
    )
    min_budget_ms: float = Field(
        default=5.0,
        ge=0,
        le=60_000,
        allow_inf_nan=False,
        description="A waiting request starts only while at least this much of its deadline is "
        "left; else it is shed (503) rather than decided by a fallback nobody waits for.",
    )
    retry_after_s: int = Field(
        default=1,
        ge=0,
        le=3_600,
        description="The Retry-After (seconds) of a shed request (ours and Serve's).",
    )
    max_body_bytes: int = Field(
        default=64 << 10,
        ge=1_024,
        le=64 << 20,
        description="Largest body of POST /v1/score (a transaction is under 1 KiB).",
    )
    max_batch_body_bytes: int = Field(
        default=2 << 20,
        ge=1_024,
        le=256 << 20,
        description="Largest body of POST /v1/score/batch (1,024 transactions fit).",
    )
    max_ongoing_requests: int | None = Field(
        default=None,
        ge=1,
        description="Serve's max_ongoing_requests of the Ingress; None: max_in_flight + "
        f"max_waiting + {SHED_HEADROOM}. Keep it above max_in_flight + max_waiting, or Serve "
        "queues requests (out of sight of the deadline) before the admission sees them.",
    )
    max_queued_requests: int = Field(
        default=32,
        ge=-1,
        description="Serve's max_queued_requests of the Ingress: requests each proxy (or "
        "handle) holds while every Ingress replica is at max_ongoing_requests; beyond, Serve "
        "answers 503 with the same Retry-After. -1: no limit (not recommended: they wait out of "
        "sight of the deadline, up to the proxy's request_timeout_s).",
    )

    @model_validator(mode="after")
    def _check(self) -> AdmissionArgs:
        if self.max_queued_requests == 0:
            raise ValueError("admission.max_queued_requests must be -1 (no limit) or >= 1")
        return self

    @property
    def serve_max_ongoing_requests(self) -> int:
        if self.max_ongoing_requests is not None:
            return self.max_ongoing_requests
        return self.max_in_flight + self.max_waiting + SHED_HEADROOM


class WorkAdmissionArgs(BaseModel):
    """Backpressure of an app whose requests do work without a deadline (credit decisions and
    offers, dispute assessments: ms to seconds each in a worker thread), per replica
    (``serving.admission.work_admission``): past ``max_in_flight`` at work, a request waits
    (first come, first served) at most ``max_wait_ms`` for a slot among ``max_waiting``, else
    503 with ``Retry-After`` and a JSON problem, as ``POST /v1/score``. Keep the deployment's
    ``max_ongoing_requests`` above ``max_in_flight + max_waiting``: Serve queues what is past
    it out of sight of the admission."""

    model_config = ConfigDict(extra="forbid")

    max_in_flight: int = Field(default=2, ge=1, le=10_000)
    max_waiting: int = Field(default=4, ge=0, le=10_000)
    max_wait_ms: float = Field(default=10_000.0, gt=0, le=600_000, allow_inf_nan=False)
    retry_after_s: int = Field(default=1, ge=0, le=3_600)


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topology: Literal["colocated", "distributed"] = Field(
        default="colocated",
        description="colocated: every component inside the Ingress replicas (one Serve hop); "
        "distributed: one deployment per component.",
    )
    model_uri: str | None = Field(
        default=None,
        description="The registry's model version to serve: models:/<name>@champion (resolved "
        "once at deploy) or models:/<name>/<version>. Each replica downloads and verifies it; "
        "fills every component spec left empty (serving.bundle.bundle_app_args).",
    )
    model_digest: str | None = Field(
        default=None,
        description="sha256 of the bundle's manifest, pinned by the deploy: a bundle whose "
        "digest differs is refused.",
    )
    bundle_dir: str | None = Field(
        default=None,
        description="A local verified model bundle instead of model_uri (tests, benchmarks).",
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
    admission: AdmissionArgs = Field(default_factory=AdmissionArgs)
    warm_up_rounds: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="Decisions each Ingress replica runs on a synthetic transaction before it "
        "takes traffic (serving.warmup: reads only); 0: none.",
    )
    deployment_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_bundle(cls, data: Any) -> Any:
        if isinstance(data, dict) and (data.get("model_uri") or data.get("bundle_dir")):
            from serving.bundle import bundle_app_args

            return bundle_app_args(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> AppArgs:
        if self.feature_source is None or not self.tabular_models:
            raise ValueError(
                "args need model_uri or bundle_dir, or feature_source and at least one "
                "tabular_models entry"
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


#: Each Serve application's builder (a serve config's ``import_path``) -> the pydantic model of
#: its ``args`` (``module:attr``, imported when needed): one serve config holds every line's app.
APP_ARGS: dict[str, str] = {
    "serving.app:build_app": "serving.config:AppArgs",
    "serving.credit:build_credit_app": "serving.credit:CreditAppArgs",
    "serving.disputes:build_disputes_app": "serving.disputes:DisputesAppArgs",
}


def validate_app_args(import_path: str, args: dict[str, Any] | None) -> BaseModel:
    """``args`` validated by the model of the app ``import_path`` builds (ValueError: not an app
    of this project), before anything is deployed."""
    from serving.components import import_attr

    if import_path not in APP_ARGS:
        raise ValueError(f"{import_path!r} is not a riskml Serve app; known: {sorted(APP_ARGS)}")
    model: type[BaseModel] = import_attr(APP_ARGS[import_path])
    return model.model_validate(args or {})
