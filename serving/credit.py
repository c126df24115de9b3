"""``build_credit_app(args)``: the Ray Serve application of the credit line.

Served under ``route_prefix: /v1/credit`` (``serving/serve_config.yaml``, application ``credit``)::

    POST /v1/credit/decision   an application -> calibrated PD with its interval, grade,
                               approve / decline, maximum amount, reason codes
    POST /v1/credit/offers     a returning customer's candidate offers -> ranked, each with its
                               P(accept), PD, value (margin - PD x LGD x EAD) and expected value
    GET  /v1/credit/model      the served model versions (internals to an admin key)
    GET  /v1/credit/healthz    liveness

One deployment, ``CreditIngress`` (FastAPI ingress), holds both models in each replica: the PD
model (registry ``credit-pd``) and the offer ranker (``credit-offers``), each a verified credit
bundle (:mod:`riskml.models.credit.bundle`). The models do the work —
:meth:`~riskml.models.credit.pd.PDModel.decide` (PD, interval, grade, policy, maximum amount,
adverse-action reasons) and :meth:`~riskml.models.credit.ranking.OfferRanker.rank` (with the PD
model's PD of each candidate) — in a worker thread, never on the event loop.

The same rules as the decision API (``POST /v1/score``): bearer keys (:mod:`serving.auth`: 401
without a valid key when keys are configured; the model's internals only to an admin key),
strict request models (unknown fields, non-finite numbers, out-of-range values and wrong types
are 422 naming the field), the shared 422 answers and OpenAPI document of
:mod:`serving.http_api`, and the same admission (:func:`serving.admission.work_admission`,
``args.admission``): a request past the replica's slots and waiting line is a 503 with a JSON
problem and ``Retry-After``, a body over :data:`MAX_BODY_BYTES` a 413, before either is parsed;
Serve's ``max_queued_requests`` and ``backpressure_config`` (the serve config) stay the outer net.

``args`` (:class:`CreditAppArgs`): ``pd_model_uri`` / ``offers_model_uri`` (``models:/...``:
an alias is resolved once when the app is built, so every replica loads the same pinned
version, verified against the registry's digest; the release step rolls them to
``models:/credit-pd/<version>`` with ``pd_model_digest``), or ``pd_bundle_dir`` /
``offers_bundle_dir`` (local bundles: tests, benchmarks, demos). The ``user_config``
(:class:`CreditConfig`) overrides the PD bundle's decision policy live (``reconfigure``).
"""

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve

from riskml.data.credit.schema import Promotion
from riskml.data.schema import EntityId
from riskml.settings import get_settings
from riskml.streaming.events import ReasonCode
from serving import http_api
from serving.admission import LIMITED, AdmissionMiddleware, work_admission
from serving.auth import UNAUTHORIZED, Authenticator, Role, bearer
from serving.config import WorkAdmissionArgs
from serving.http_api import NO_CPU, BundleSource, RiskApi, install_error_handlers
from serving.metrics import count_rejections

log = logging.getLogger("ray.serve")

APP_NAME = "credit"
ROUTE_PREFIX = "/v1/credit"
DEPLOYMENT = "CreditIngress"
#: Most candidate offers one request may rank.
MAX_CANDIDATES = 64
#: Local defaults (a laptop or CI runner): no CPU reservation. serve_config.yaml sets real
#: resources and replica counts.
MAX_ONGOING = 32
#: Per replica: 4 requests at work (CPU-bound, ms each, in worker threads), 16 waiting up to
#: 2 s, then 503 with Retry-After: 1 (serving.admission); MAX_ONGOING above both.
ADMISSION = WorkAdmissionArgs(max_in_flight=4, max_waiting=16, max_wait_ms=2_000, retry_after_s=1)
#: The largest request body (64 candidate offers fit many times over).
MAX_BODY_BYTES = 256 * 1024

Credentials = HTTPAuthorizationCredentials | None
Category = Literal["electronics", "fashion", "travel", "home", "health", "education"]
Term = Literal[3, 6, 12, 24]
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


# -- requests and responses ---------------------------------------------------------------------


class Applicant(BaseModel):
    """The applicant's attributes at application time (names, meanings and lower bounds of
    :mod:`riskml.data.credit.schema`; the upper bounds only refuse the absurd)."""

    model_config = _STRICT

    age: Annotated[int, Field(strict=True, ge=18, le=120, description="Age in years.")]
    income_monthly: Annotated[
        float, Field(strict=True, ge=0, le=1e7, description="Stated monthly income.")
    ]
    employment_years: Annotated[
        float, Field(strict=True, ge=0, le=80, description="Years with the current employer.")
    ]
    bureau_score: Annotated[
        int, Field(strict=True, ge=300, le=850, description="Credit bureau score.")
    ]
    inquiries_6m: Annotated[
        int,
        Field(
            strict=True, ge=0, le=1_000, description="Hard credit inquiries in the last 6 months."
        ),
    ]
    delinquencies_24m: Annotated[
        int, Field(strict=True, ge=0, le=1_000, description="Delinquencies in the last 24 months.")
    ]
    utilisation: Annotated[
        float, Field(strict=True, ge=0, le=100, description="Revolving balance / limit.")
    ]
    open_accounts: Annotated[
        int, Field(strict=True, ge=0, le=10_000, description="Open credit accounts.")
    ]
    months_on_book: Annotated[
        int,
        Field(
            strict=True, ge=0, le=1_200, description="Months since the first loan with us (0: new)."
        ),
    ]
    prior_loans: Annotated[
        int, Field(strict=True, ge=0, le=10_000, description="Loans with us before this one.")
    ]
    prior_max_dpd: Annotated[
        int, Field(strict=True, ge=0, le=10_000, description="Worst days past due on those loans.")
    ]
    debt_to_income: Annotated[
        float,
        Field(strict=True, ge=0, le=100, description="Existing monthly debt payments / income."),
    ]
    category: Category = Field(description="Merchant category of the purchase.")
    merchant_id: EntityId | None = Field(default=None, description="Merchant of the purchase.")


class LoanTerms(BaseModel):
    """The terms of a loan or of a candidate offer."""

    model_config = _STRICT

    amount: Annotated[float, Field(strict=True, gt=0, le=1e6, description="Principal.")]
    term_months: Term = Field(description="Term in months.")
    apr: Annotated[
        float, Field(strict=True, ge=0, le=1, description="Annual percentage rate (fraction).")
    ]
    promotion: Promotion = "none"
    origination_fee: Annotated[float, Field(strict=True, ge=0, le=1e6)] | None = Field(
        default=None, description="Fee at origination; default: the standard fee."
    )


#: An application (the OpenAPI document's example; tests and demos send it too).
EXAMPLE_APPLICATION: dict[str, Any] = {
    "application_id": "app-0001",
    "age": 34,
    "income_monthly": 3200.0,
    "employment_years": 4.5,
    "bureau_score": 690,
    "inquiries_6m": 1,
    "delinquencies_24m": 0,
    "utilisation": 0.35,
    "open_accounts": 5,
    "months_on_book": 0,
    "prior_loans": 0,
    "prior_max_dpd": 0,
    "debt_to_income": 0.18,
    "category": "electronics",
    "amount": 900.0,
    "term_months": 12,
    "apr": 0.19,
}


class CreditApplication(Applicant, LoanTerms):
    """An application: who applies and what they ask for."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [EXAMPLE_APPLICATION]},
    )

    application_id: EntityId
    customer_id: EntityId | None = None


class OfferCandidate(LoanTerms):
    """One candidate offer."""


class OffersRequest(Applicant):
    """A returning customer and the candidate offers to rank for them."""

    customer_id: EntityId
    candidates: list[OfferCandidate] = Field(min_length=1, max_length=MAX_CANDIDATES)
    top_k: int | None = Field(
        default=None, ge=1, le=MAX_CANDIDATES, description="Return the best top_k (default all)."
    )


class Interval(BaseModel):
    model_config = _STRICT

    lower: float = Field(ge=0, le=1)
    upper: float = Field(ge=0, le=1)


class CreditDecisionResponse(BaseModel):
    model_config = _STRICT

    application_id: str
    decision: Literal["approve", "decline"]
    pd: float = Field(ge=0, le=1, description="Calibrated 12-month probability of default.")
    pd_interval: Interval = Field(description="The calibrator's interval around the PD.")
    grade: str = Field(description="Grade on the master scale.")
    score: float | None = Field(default=None, description="Scorecard points (scorecard models).")
    requested_amount: float
    max_amount: float = Field(
        description="Largest amount approved at these terms (0: none passes the policy)."
    )
    approved_amount: float = Field(description="min(requested, max_amount); 0 when declined.")
    reasons: list[ReasonCode] = Field(
        default_factory=list,
        description="Adverse-action reasons of a decline, first the policy rule that failed "
        "(affordability, expected_value), then the model's top factors; empty when approved.",
    )
    factors: list[str] = Field(
        default_factory=list, description="The model's top factors raising this PD."
    )
    model_version: str
    latency_ms: float


class RankedOffer(BaseModel):
    model_config = _STRICT

    rank: int = Field(ge=1)
    candidate: int = Field(ge=0, description="Index of the offer in the request's candidates.")
    amount: float
    term_months: int
    apr: float
    promotion: str
    origination_fee: float
    monthly_payment: float
    pd: float = Field(ge=0, le=1, description="The PD model's PD had this offer been booked.")
    p_accept: float = Field(ge=0, le=1)
    margin: float
    expected_loss: float = Field(description="PD x LGD x EAD.")
    value: float = Field(description="margin - expected_loss.")
    expected_value: float = Field(description="p_accept x value.")
    score: float = Field(description="The ranker's score (the order).")


class OffersResponse(BaseModel):
    model_config = _STRICT

    customer_id: str
    offers: list[RankedOffer]
    model_versions: dict[str, str]
    latency_ms: float


class ServedModel(BaseModel):
    model_config = _STRICT

    name: str
    version: str
    model_uri: str | None = None
    kind: str | None = None


class CreditModelInfo(BaseModel):
    model_config = _STRICT

    pd_model: ServedModel
    offers_model: ServedModel | None
    #: internals: only to an admin key (or an API without keys); null otherwise
    feature_names: list[str] | None = None
    grades: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    calibration: str | None = None
    metrics: dict[str, Any] | None = None


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]
    replica: str


# -- app arguments and live config --------------------------------------------------------------


class ModelSource(BundleSource):
    """Where a replica loads one credit model from (:class:`serving.http_api.BundleSource`)."""

    def load(self, *, nthread: int = 1) -> Any:
        """The verified :class:`~riskml.models.credit.bundle.CreditBundle`."""
        from riskml.models.credit.bundle import load_credit_bundle

        return load_credit_bundle(self.bundle_path(), digest=self.digest, nthread=nthread)


class CreditConfig(BaseModel):
    """``user_config`` of ``CreditIngress`` (live through ``reconfigure``)."""

    model_config = ConfigDict(extra="forbid")

    policy: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the PD bundle's decision policy "
        "(riskml.models.credit.pd.DecisionPolicy: pd_cutoff, dti_cap, min_amount, max_amount, "
        "amount_step, reasons, economics); empty: the bundle's own.",
    )


class CreditAppArgs(BaseModel):
    """The ``args`` of the credit app (serve config application ``credit``)."""

    model_config = ConfigDict(extra="forbid")

    pd_model_uri: str | None = Field(
        default=None, description="models:/credit-pd@champion or models:/credit-pd/<version>."
    )
    pd_model_digest: str | None = Field(default=None, description="sha256 the deploy pinned.")
    pd_bundle_dir: str | None = Field(default=None, description="A local credit-pd bundle.")
    offers_model_uri: str | None = Field(
        default=None, description="models:/credit-offers@champion or a pinned version."
    )
    offers_model_digest: str | None = None
    offers_bundle_dir: str | None = None
    config: CreditConfig | None = Field(
        default=None, description="Default user_config (a serve config's deployment wins)."
    )
    admission: WorkAdmissionArgs = Field(
        default_factory=ADMISSION.model_copy,
        description="Per replica: requests at work at once, how many may wait and for how "
        "long; past that 503 with Retry-After (serving.admission).",
    )
    deployment_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "CreditAppArgs":
        if (self.pd_model_uri is None) == (self.pd_bundle_dir is None):
            raise ValueError("args need exactly one of pd_model_uri and pd_bundle_dir")
        if self.offers_model_uri is not None and self.offers_bundle_dir is not None:
            raise ValueError("args take one of offers_model_uri and offers_bundle_dir")
        unknown = sorted(set(self.deployment_options) - {DEPLOYMENT})
        if unknown:
            raise ValueError(f"deployment_options for unknown deployments {unknown}")
        return self

    def pd_source(self) -> ModelSource:
        return ModelSource(
            model_uri=self.pd_model_uri, digest=self.pd_model_digest, bundle_dir=self.pd_bundle_dir
        )

    def offers_source(self) -> ModelSource | None:
        if self.offers_model_uri is None and self.offers_bundle_dir is None:
            return None
        return ModelSource(
            model_uri=self.offers_model_uri,
            digest=self.offers_model_digest,
            bundle_dir=self.offers_bundle_dir,
        )


# -- the service (no Serve): what a replica runs ------------------------------------------------


class CreditService:
    """The two credit models behind the routes: requests in, responses out (in process; the
    Serve replica wraps one, the CLI and the benchmarks use it directly)."""

    def __init__(self, pd_bundle: Any, offers_bundle: Any = None) -> None:
        if pd_bundle.kind != "pd":
            raise ValueError(f"{pd_bundle.path}: a {pd_bundle.name} bundle is not a PD model")
        if offers_bundle is not None and offers_bundle.kind != "offers":
            raise ValueError(f"{offers_bundle.path}: a {offers_bundle.name} bundle is no ranker")
        self.pd_bundle = pd_bundle
        self.offers_bundle = offers_bundle
        self.model = pd_bundle.model
        self.uris: dict[str, str | None] = {"pd": None, "offers": None}

    @classmethod
    def from_sources(
        cls, pd: ModelSource | Mapping[str, Any], offers: ModelSource | Mapping[str, Any] | None
    ) -> "CreditService":
        pd_src = pd if isinstance(pd, ModelSource) else ModelSource.model_validate(dict(pd))
        off_src = (
            None
            if offers is None
            else offers
            if isinstance(offers, ModelSource)
            else ModelSource.model_validate(dict(offers))
        )
        service = cls(pd_src.load(), off_src.load() if off_src is not None else None)
        service.uris = {
            "pd": pd_src.model_uri,
            "offers": off_src.model_uri if off_src is not None else None,
        }
        return service

    def reconfigure(self, config: CreditConfig | Mapping[str, Any]) -> None:
        """Apply a :class:`CreditConfig`: the bundle's policy with its overrides (validated
        before anything changes)."""
        from riskml.models.credit.pd import DecisionPolicy

        cfg = config if isinstance(config, CreditConfig) else CreditConfig.model_validate(config)
        base = self.pd_bundle.model
        policy = DecisionPolicy.model_validate({**base.policy.model_dump(), **cfg.policy})
        self.model = dataclasses.replace(base, policy=policy)

    # -- frames ---------------------------------------------------------------------------

    def _frame(self, applicant: Applicant, terms: Sequence[LoanTerms]) -> Any:
        """One row per set of ``terms`` for ``applicant``, with the derived fee and payment."""
        import numpy as np
        import polars as pl

        from riskml.data.credit import economics

        econ = self.model.policy.economics
        amount = np.array([t.amount for t in terms], dtype=np.float64)
        term = np.array([t.term_months for t in terms], dtype=np.int64)
        apr = np.array([t.apr for t in terms], dtype=np.float64)
        promo = np.array([t.promotion for t in terms])
        standard = economics.origination_fee(amount, term, promo, economics=econ)
        given = np.array(
            [np.nan if t.origination_fee is None else t.origination_fee for t in terms]
        )
        fee = np.where(np.isnan(given), standard, given)
        payment = economics.monthly_payment(amount, apr, term, promo, economics=econ)
        attrs = applicant.model_dump(include=set(Applicant.model_fields))
        n = len(terms)
        columns: dict[str, pl.Series] = {
            k: pl.Series(k, [v] * n, dtype=pl.Utf8 if k in ("category", "merchant_id") else None)
            for k, v in attrs.items()
        }
        columns.update(
            amount=pl.Series("amount", amount),
            term_months=pl.Series("term_months", term),
            apr=pl.Series("apr", apr),
            promotion=pl.Series("promotion", promo.tolist(), dtype=pl.Utf8),
            origination_fee=pl.Series("origination_fee", fee, dtype=pl.Float64),
            monthly_payment=pl.Series("monthly_payment", payment),
        )
        return pl.DataFrame(list(columns.values()))

    # -- routes ---------------------------------------------------------------------------

    def decide(self, applications: Sequence[CreditApplication]) -> list[dict[str, Any]]:
        """The credit decision of each application (:meth:`PDModel.decide`)."""
        import polars as pl

        t0 = time.perf_counter()
        frame = pl.concat([self._frame(a, [a]) for a in applications], how="vertical")
        decision = self.model.decide(frame)
        features = set(self.model.spec.names)
        out = []
        ms = (time.perf_counter() - t0) * 1e3 / max(len(applications), 1)
        for i, (app, row) in enumerate(zip(applications, decision.rows(), strict=True)):
            reasons = [_reason(code, app, features) for code in row["decline_reasons"]]
            out.append(
                {
                    "application_id": app.application_id,
                    "decision": row["decision"],
                    "pd": row["pd"],
                    "pd_interval": {"lower": row["pd_low"], "upper": row["pd_high"]},
                    "grade": row["grade"],
                    "score": row.get("score"),
                    "requested_amount": float(frame.get_column("amount")[i]),
                    "max_amount": row["max_amount"],
                    "approved_amount": row["approved_amount"],
                    "reasons": reasons,
                    "factors": list(row["reasons"]),
                    "model_version": self.pd_bundle.version,
                    "latency_ms": round(ms, 3),
                }
            )
        return out

    def rank(self, request: OffersRequest) -> dict[str, Any]:
        """The request's candidates ranked (:meth:`OfferRanker.rank`) with the PD model's PD of
        each candidate."""
        if self.offers_bundle is None:
            raise LookupError("no offers model is served (args: offers_model_uri)")
        t0 = time.perf_counter()
        frame = self._frame(request, request.candidates)
        pd = self.model.pd(frame)
        customer = request.model_dump(include=set(Applicant.model_fields), exclude_none=True)
        terms = frame.select(
            "amount", "term_months", "apr", "promotion", "origination_fee", "monthly_payment"
        ).with_row_index("candidate")
        ranked = self.offers_bundle.model.rank(customer, terms, pd)
        top = ranked.head(request.top_k) if request.top_k else ranked
        offers = [
            {
                "rank": int(r["rank"]),
                "candidate": int(r["candidate"]),
                "amount": float(r["amount"]),
                "term_months": int(r["term_months"]),
                "apr": float(r["apr"]),
                "promotion": str(r["promotion"]),
                "origination_fee": float(r["origination_fee"]),
                "monthly_payment": float(r["monthly_payment"]),
                "pd": float(r["pd_at_offer"]),
                "p_accept": float(r["p_accept"]),
                "margin": float(r["margin"]),
                "expected_loss": float(r["expected_loss"]),
                "value": float(r["value"]),
                "expected_value": float(r["expected_value"]),
                "score": float(r["score"]),
            }
            for r in top.iter_rows(named=True)
        ]
        return {
            "customer_id": request.customer_id,
            "offers": offers,
            "model_versions": {
                "pd": self.pd_bundle.version,
                "offers": self.offers_bundle.version,
            },
            "latency_ms": round((time.perf_counter() - t0) * 1e3, 3),
        }

    def info(self, admin: bool) -> dict[str, Any]:
        def served(bundle: Any, uri: str | None) -> dict[str, Any]:
            entries: list[dict[str, Any]] = list(bundle.manifest.get("models", {}).values())
            kind = entries[0].get("kind") if entries else None
            return {"name": bundle.name, "version": bundle.version, "model_uri": uri, "kind": kind}

        out: dict[str, Any] = {
            "pd_model": served(self.pd_bundle, self.uris["pd"]),
            "offers_model": served(self.offers_bundle, self.uris["offers"])
            if self.offers_bundle is not None
            else None,
        }
        if admin:
            from riskml.models.bundle import finite_json

            headline = ("champion", "gini_gbdt", "gini_glm", "ece_calibrated")
            metrics = {k: self.pd_bundle.metrics.get(k) for k in headline}
            out.update(
                feature_names=list(self.model.spec.names),
                grades=self.model.grades.model_dump(mode="json"),
                policy=self.model.policy.model_dump(mode="json"),
                calibration=str(self.model.calibrator.method),
                metrics=finite_json(metrics),
            )
        return out


def _reason(code: str, app: CreditApplication, features: set[str]) -> dict[str, Any]:
    """A reason code: a model factor (with the applicant's value when it is a number) or a
    policy rule."""
    if code in features:
        value = getattr(app, code, None)
        number = float(value) if isinstance(value, int | float) else None
        return {"code": code, "feature": code, "value": number}
    return {"code": code}


# -- the Serve deployment -----------------------------------------------------------------------


class CreditApi(RiskApi):
    """The credit API (no security scheme in its OpenAPI document when no key is configured)."""


api = CreditApi(
    title="riskml credit",
    version="1",
    description="Credit decisions (PD, grade, approve/decline, maximum amount, reason codes) "
    "and offer ranking by expected value.",
)
install_error_handlers(api)
api.add_middleware(AdmissionMiddleware)

#: What a scoring route may answer beyond its 200 and 422 (serving.admission: 413, 503).
LIMITS: dict[int | str, dict[str, Any]] = {
    413: {**LIMITED[413], "description": f"The body is over {MAX_BODY_BYTES} bytes."},
    503: {
        **LIMITED[503],
        "description": "Overloaded: every slot of the replica is busy and no place to wait is "
        "left, or none freed up within admission.max_wait_ms. Nothing was decided; retry after "
        "`Retry-After` seconds.",
    },
}
NO_OFFERS: dict[int | str, dict[str, Any]] = {
    413: LIMITS[413],
    503: {
        **LIMITS[503],
        "description": "Overloaded (nothing was ranked; retry after `Retry-After` seconds), or "
        "no offers model is served.",
    },
}


def _unprocessable(message: str) -> HTTPException:
    detail = [{"type": "value_error", "loc": ["body"], "msg": message}]
    return HTTPException(status_code=422, detail=detail)


@serve.deployment(name=DEPLOYMENT, ray_actor_options=NO_CPU, max_ongoing_requests=MAX_ONGOING)
@serve.ingress(api)
class CreditIngress:
    """``CreditIngress.bind(pd=ModelSource dict, offers=ModelSource dict | None,
    admission=WorkAdmissionArgs dict | None)``."""

    def __init__(
        self,
        pd: Mapping[str, Any],
        offers: Mapping[str, Any] | None = None,
        admission: Mapping[str, Any] | None = None,
    ) -> None:
        # first: a replica without the keys it requires fails before loading any model
        self.auth = Authenticator.from_settings(get_settings(), log)
        #: serving.admission finds it here (AdmissionMiddleware): slots, waiting, body limit
        self.admission = work_admission(
            admission or ADMISSION,
            routes=["/decision", "/offers"],
            body_limit=MAX_BODY_BYTES,
            on_reject=count_rejections(),
        )
        self.service = CreditService.from_sources(pd, offers)
        try:
            self.replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # pragma: no cover - outside a replica
            self.replica = "local"
        gc.collect()
        gc.freeze()  # long-lived models: never walked by a full collection again

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        self.service.reconfigure(user_config)

    @api.post(
        "/decision", response_model=CreditDecisionResponse, responses={**UNAUTHORIZED, **LIMITS}
    )
    async def decision(
        self, application: CreditApplication, credentials: Credentials = Security(bearer)
    ) -> dict[str, Any]:
        self.auth.role(credentials)
        try:
            (out,) = await asyncio.to_thread(self.service.decide, [application])
        except ValueError as exc:  # the model refused the input (a contract mismatch)
            raise _unprocessable(str(exc)) from None
        return out

    @api.post("/offers", response_model=OffersResponse, responses={**UNAUTHORIZED, **NO_OFFERS})
    async def offers(
        self, request: OffersRequest, credentials: Credentials = Security(bearer)
    ) -> dict[str, Any]:
        self.auth.role(credentials)
        try:
            return await asyncio.to_thread(self.service.rank, request)
        except LookupError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        except ValueError as exc:
            raise _unprocessable(str(exc)) from None

    @api.get("/model", response_model=CreditModelInfo, responses=UNAUTHORIZED)
    async def model(self, credentials: Credentials = Security(bearer)) -> dict[str, Any]:
        """The served model versions; to an admin key (or an open API) also the internals:
        features, grade scale, decision policy, calibration, training figures."""
        return self.service.info(admin=self.auth.role(credentials) >= Role.ADMIN)

    @api.get("/healthz", response_model=HealthResponse)
    async def healthz(self) -> HealthResponse:
        return HealthResponse(status="ok", replica=self.replica)


def build_credit_app(args: dict[str, Any] | CreditAppArgs) -> Any:
    """The bound application (``serve.run(build_credit_app(args))``; the serve config's
    ``import_path: serving.credit:build_credit_app``). Registry URIs are resolved and their
    bundles verified here, once."""
    a = args if isinstance(args, CreditAppArgs) else CreditAppArgs.model_validate(args)
    pd = a.pd_source().resolved()
    offers = a.offers_source()
    offers = offers.resolved() if offers is not None else None
    deployment: Any = CreditIngress  # a Serve Deployment (the decorator hides it from mypy)
    if a.config is not None:
        deployment = deployment.options(user_config=a.config.model_dump())
    extra = a.deployment_options.get(DEPLOYMENT)
    if extra:
        deployment = deployment.options(**extra)
    return deployment.bind(
        pd=pd.model_dump(),
        offers=offers.model_dump() if offers is not None else None,
        admission=a.admission.model_dump(),
    )


def app_config(
    args: dict[str, Any],
    *,
    name: str = APP_NAME,
    route_prefix: str = ROUTE_PREFIX,
    num_replicas: int = 1,
    user_config: dict[str, Any] | None = None,
    actor_options: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One application entry of a serve config for the credit app (the shape of
    ``serving/serve_config.yaml``'s ``credit``), for local runs: ``num_replicas`` replicas
    reserving no CPU unless ``actor_options`` say otherwise; ``env``: environment variables of
    the app (its build, where registry URIs are resolved, and its replicas)."""
    CreditAppArgs.model_validate(args)  # refuse bad args before anything is deployed
    return http_api.app_entry(
        "serving.credit:build_credit_app",
        DEPLOYMENT,
        args,
        CreditConfig.model_validate(user_config or {}),
        name=name,
        route_prefix=route_prefix,
        num_replicas=num_replicas,
        actor_options=actor_options,
        env=env,
    )
