"""``build_disputes_app(args)``: the Ray Serve application of the disputes line.

Served under ``route_prefix: /v1/disputes`` (``serving/serve_config.yaml``, application
``disputes``)::

    POST /v1/disputes/assess   a dispute, its documents (base64 PDF content, plain text, or a
                               reference to a file under the app's ``documents_root``) and
                               optionally the card's earlier transactions and disputes ->
                               the evidence read from the documents (each field with its
                               confidence and provenance: document, page, character span),
                               the decision (auto_refund | represent | human_review), the win
                               probability, the reasons, the requirement checklist of the reason
                               code, the compelling-evidence check and the evidence packet (JSON;
                               its PDF as base64 on request)
    GET  /v1/disputes/model    the served bundle (internals to an admin key)
    GET  /v1/disputes/healthz  liveness

One deployment, ``DisputesIngress`` (FastAPI ingress), holds one verified ``disputes-outcome``
bundle (:mod:`riskml.models.disputes.bundle`) per replica. The work — reading the documents
(PDF text layer; OCR of scanned pages with tesseract), extracting the evidence, the features,
the calibrated win probability and the decision (:meth:`DisputesBundle.assess`, which is
:func:`riskml.models.disputes.assess_dispute`) and the packet's PDF — runs in a worker thread,
never on the event loop.

The same rules as the decision API (``POST /v1/score``): bearer keys (:mod:`serving.auth`: 401
without a valid key when keys are configured, /healthz open; the bundle's internals only to an
admin key), strict request models (unknown fields, non-finite numbers, out-of-range values,
wrong types, a reason code the network does not have are 422s naming the field), the shared 422
answers and OpenAPI document of :mod:`serving.http_api`. A body over :data:`MAX_BODY_BYTES` is
a 413 before it is read; a document that is not a readable PDF a 422 naming it; a scanned page
on a replica without tesseract a 503 that says how to install it. The same admission
(:func:`serving.admission.work_admission`, ``args.admission``, :data:`ADMISSION`): past the
replica's slots and waiting line a 503 with a JSON problem and ``Retry-After`` at once.

``args`` (:class:`DisputesAppArgs`): ``model_uri`` (``models:/disputes-outcome@champion``,
resolved once when the app is built to a pinned version, verified against the registry's
digest; the release step rolls it with ``model_digest``) or ``bundle_dir`` (tests, demos);
``documents_root``: where referenced documents live. The ``user_config``
(:class:`DisputesConfig`) overrides the bundle's policy live (``reconfigure``).
"""

import asyncio
import base64
import binascii
import datetime as dt
import gc
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from ray import serve

from riskml.data.disputes.evidence import ExtractionResult
from riskml.data.disputes.schema import BY_CODE, NETWORKS, Network
from riskml.data.schema import Channel, Currency, EntityId, MerchantCategory
from riskml.features.disputes.compelling import CompellingResult
from riskml.models.disputes.packet import EvidencePacket
from riskml.settings import get_settings
from serving import http_api
from serving.admission import (
    LIMITED,
    AdmissionMiddleware,
    Problem,
    work_admission,
)
from serving.auth import UNAUTHORIZED, Authenticator, Role, bearer
from serving.config import WorkAdmissionArgs
from serving.http_api import NO_CPU, RiskApi, install_error_handlers
from serving.metrics import count_rejections

log = logging.getLogger("ray.serve")

APP_NAME = "disputes"
ROUTE_PREFIX = "/v1/disputes"
DEPLOYMENT = "DisputesIngress"
#: Most documents one request may carry, and the largest one (decoded bytes).
MAX_DOCUMENTS = 16
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
#: The largest request body (base64 adds a third): larger is a 413 before it is read.
MAX_BODY_BYTES = 24 * 1024 * 1024
#: Most earlier transactions / disputes of the card one request may carry.
MAX_HISTORY = 5_000
MAX_PRIOR_DISPUTES = 500
#: Local defaults (a laptop or CI runner): no CPU reservation. serve_config.yaml sets real
#: resources and replica counts.
MAX_ONGOING = 8
#: Per replica: 2 assessments at work (CPU-bound: OCR, PDF parsing), 4 waiting up to 30 s,
#: then 503 with Retry-After: 2 (serving.admission); MAX_ONGOING above both, so Serve does not
#: queue what the admission would time.
ADMISSION = WorkAdmissionArgs(max_in_flight=2, max_waiting=4, max_wait_ms=30_000, retry_after_s=2)

Credentials = HTTPAuthorizationCredentials | None
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
_B64_CHARS = 4 * -(-MAX_DOCUMENT_BYTES // 3)
Text200 = Annotated[str, Field(max_length=200)]
Element = Annotated[str, Field(min_length=1, max_length=256)]


def _known_code(code: str, network: str | None) -> str:
    """The network of a reason code of the catalogue (given ``network`` must have it)."""
    nets = [network] if network is not None else list(NETWORKS)
    for net in nets:
        if (net, code) in BY_CODE:
            return net
    where = f"{network} " if network else "Visa or Mastercard "
    raise ValueError(f"{code!r} is not a {where}reason code of the catalogue")


# -- requests and responses ---------------------------------------------------------------------


class DocumentIn(BaseModel):
    """One evidence document: exactly one of ``content_base64`` (a PDF's bytes), ``text`` (a
    plain-text document, e.g. an e-mail) or ``reference`` (a path under the app's
    ``documents_root``). ``name`` is what the provenance records."""

    model_config = _STRICT

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._()-]*$",
        description="File name (letters, digits, space, . _ ( ) -).",
    )
    content_base64: str | None = Field(
        default=None,
        max_length=_B64_CHARS,
        description=f"The PDF's bytes, base64 (at most {MAX_DOCUMENT_BYTES} bytes decoded).",
    )
    text: str | None = Field(default=None, max_length=200_000, description="Plain text.")
    reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="A relative path under documents_root (no '..', not absolute).",
    )

    @field_validator("content_base64")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"not valid base64 ({exc})") from None
        if not raw:
            raise ValueError("the document is empty")
        return value

    @field_validator("reference")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or "\\" in value:
            raise ValueError("a reference is a relative path inside documents_root")
        return value

    @model_validator(mode="after")
    def _one(self) -> "DocumentIn":
        given = [self.content_base64, self.text, self.reference]
        if sum(v is not None for v in given) != 1:
            raise ValueError("give exactly one of content_base64, text and reference")
        return self


class DisputeIn(BaseModel):
    """The dispute record (:mod:`riskml.data.disputes.schema`) and what is known about the
    disputed transaction (the compelling-evidence check matches its device, IP, ...)."""

    model_config = _STRICT

    dispute_id: EntityId
    tx_id: EntityId
    customer_id: EntityId
    terminal_id: EntityId
    merchant_name: Text200 | None = None
    tx_ts: AwareDatetime = Field(description="When the disputed transaction happened.")
    opened_at: AwareDatetime = Field(description="When the dispute was raised (>= tx_ts).")
    amount: Annotated[float, Field(strict=True, gt=0, le=1e7, description="Disputed amount.")]
    currency: Currency = "USD"
    network: Network | None = Field(default=None, description="Derived from the code if absent.")
    reason_code: str = Field(min_length=1, max_length=16, description="e.g. 10.4, 13.1, 4837.")
    customer_message: str = Field(default="", max_length=5_000)
    device_id: Element | None = None
    ip_address: Element | None = None
    shipping_address: Element | None = None
    account_id: Element | None = None
    channel: Channel | None = None
    merchant_category: MerchantCategory | None = None

    @model_validator(mode="after")
    def _check(self) -> "DisputeIn":
        if self.opened_at < self.tx_ts:
            raise ValueError("opened_at is before tx_ts")
        self.network = _known_code(self.reason_code, self.network)  # type: ignore[assignment]
        return self


class HistoryTransaction(BaseModel):
    """One earlier transaction of the card (the compelling evidence and customer features)."""

    model_config = _STRICT

    tx_id: EntityId
    ts: AwareDatetime
    terminal_id: EntityId
    amount: Annotated[float, Field(strict=True, gt=0, le=1e7)]
    device_id: Element | None = None
    ip_address: Element | None = None
    shipping_address: Element | None = None
    account_id: Element | None = None
    channel: Channel | None = None
    merchant_category: MerchantCategory | None = None
    fraud_reported_at: AwareDatetime | None = Field(
        default=None, description="When it was reported as fraud (null: never)."
    )


class PriorDispute(BaseModel):
    """An earlier dispute of the card (its transaction does not count as compelling evidence;
    it counts in the customer's earlier disputes)."""

    model_config = _STRICT

    dispute_id: EntityId
    tx_id: EntityId
    tx_ts: AwareDatetime
    opened_at: AwareDatetime
    amount: Annotated[float, Field(strict=True, gt=0, le=1e7)]
    reason_code: str = Field(min_length=1, max_length=16)
    network: Network | None = None
    terminal_id: EntityId | None = None

    @model_validator(mode="after")
    def _check(self) -> "PriorDispute":
        self.network = _known_code(self.reason_code, self.network)  # type: ignore[assignment]
        return self


class AssessRequest(BaseModel):
    """A dispute to assess."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dispute: DisputeIn
    documents: list[DocumentIn] = Field(default_factory=list, max_length=MAX_DOCUMENTS)
    history: list[HistoryTransaction] | None = Field(
        default=None,
        max_length=MAX_HISTORY,
        description="The card's earlier transactions (null: unknown, compelling evidence "
        "cannot be checked).",
    )
    prior_disputes: list[PriorDispute] = Field(default_factory=list, max_length=MAX_PRIOR_DISPUTES)
    include_packet_pdf: bool = Field(
        default=False, description="Also return the packet's PDF (base64)."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> "AssessRequest":
        names = [d.name for d in self.documents]
        if len(set(names)) != len(names):
            raise ValueError("document names must be unique (provenance names them)")
        return self


class ModelFactor(BaseModel):
    model_config = _STRICT

    feature: str
    contribution: float = Field(description="Log-odds of winning: > 0 helps the merchant.")


class ExpectedValues(BaseModel):
    model_config = _STRICT

    chosen: float = Field(description="EV of the chosen action (money, the dispute's currency).")
    represent: float
    refund: float
    review: float
    review_value: float = Field(description="What a review is expected to reveal.")


class Requirement(BaseModel):
    model_config = _STRICT

    key: str
    description: str
    required: bool
    met: bool
    satisfied_by: list[str]
    confidence: float | None


class Requirements(BaseModel):
    model_config = _STRICT

    key: str = Field(description="The requirement set: the claim or the reason family.")
    complete: bool
    missing: list[str]
    items: list[Requirement]


class ReasonFamily(BaseModel):
    model_config = _STRICT

    code: str = Field(description="The reason code's family.")
    message: str | None = Field(description="The family the customer's message reads as.")
    agrees: bool | None


class AssessResponse(BaseModel):
    model_config = _STRICT

    dispute_id: str
    decision: Literal["auto_refund", "represent", "human_review"]
    win_probability: float = Field(ge=0, le=1, description="Calibrated P(win if represented).")
    win_probability_raw: float = Field(ge=0, le=1)
    expected_value: ExpectedValues
    reasons: list[str] = Field(description="Why the policy chose the action.")
    model_factors: list[ModelFactor]
    requirements: Requirements
    compelling_evidence: CompellingResult
    reason_family: ReasonFamily
    evidence: ExtractionResult
    packet: EvidencePacket | None = Field(
        description="The representment packet (not for a refund)."
    )
    packet_pdf_base64: str | None = None
    model_version: str
    latency_ms: float


class ServedBundle(BaseModel):
    model_config = _STRICT

    name: str
    version: str
    model_uri: str | None = None
    kind: str | None = None
    #: internals: only to an admin key (or an API without keys); null otherwise
    feature_names: list[str] | None = None
    policy: dict[str, Any] | None = None
    rule: dict[str, Any] | None = None
    extraction: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]
    replica: str


# -- app arguments and live config --------------------------------------------------------------


class BundleSource(http_api.BundleSource):
    """Where a replica loads the disputes bundle from (:class:`serving.http_api.BundleSource`)."""

    def load(self, *, nthread: int = 1) -> Any:
        """The verified :class:`~riskml.models.disputes.bundle.DisputesBundle`."""
        from riskml.models.disputes.bundle import load_disputes_bundle

        return load_disputes_bundle(self.bundle_path(), digest=self.digest, nthread=nthread)


class DisputesConfig(BaseModel):
    """``user_config`` of ``DisputesIngress`` (live through ``reconfigure``)."""

    model_config = ConfigDict(extra="forbid")

    policy: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the bundle's policy (riskml.models.disputes.policy."
        "PolicyConfig: economics.{chargeback_fee, represent_cost, review_cost, ...}, "
        "concentration, min_field_confidence, min_family_support, min_review_amount); "
        "empty: the bundle's own.",
    )


class DisputesAppArgs(BaseModel):
    """The ``args`` of the disputes app (serve config application ``disputes``)."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str | None = Field(
        default=None,
        description="models:/disputes-outcome@champion or models:/disputes-outcome/<version>.",
    )
    model_digest: str | None = Field(default=None, description="sha256 the deploy pinned.")
    bundle_dir: str | None = Field(default=None, description="A local disputes-outcome bundle.")
    documents_root: str | None = Field(
        default=None, description="Where referenced documents live (none: no references)."
    )
    config: DisputesConfig | None = Field(
        default=None, description="Default user_config (a serve config's deployment wins)."
    )
    admission: WorkAdmissionArgs = Field(
        default_factory=ADMISSION.model_copy,
        description="Per replica: assessments at work at once (OCR takes seconds a page), how "
        "many may wait and for how long; past that 503 with Retry-After (serving.admission).",
    )
    deployment_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "DisputesAppArgs":
        if (self.model_uri is None) == (self.bundle_dir is None):
            raise ValueError("args need exactly one of model_uri and bundle_dir")
        unknown = sorted(set(self.deployment_options) - {DEPLOYMENT})
        if unknown:
            raise ValueError(f"deployment_options for unknown deployments {unknown}")
        return self

    def source(self) -> BundleSource:
        return BundleSource(
            model_uri=self.model_uri, digest=self.model_digest, bundle_dir=self.bundle_dir
        )


# -- the service (no Serve): what a replica runs ------------------------------------------------


class DocumentError(ValueError):
    """A document of the request cannot be read: ``index`` and ``field`` locate it."""

    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(message)
        self.index, self.field = index, field

    def detail(self) -> list[dict[str, Any]]:
        loc: list[Any] = ["body", "documents", self.index]
        if self.field:
            loc.append(self.field)
        return [{"type": "document_invalid", "loc": loc, "msg": str(self)}]


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


class DisputesService:
    """The disputes bundle behind the route: requests in, responses out (in process; the Serve
    replica wraps one, the CLI and the benchmarks use it directly)."""

    def __init__(self, bundle: Any, *, documents_root: str | Path | None = None) -> None:
        from riskml.models.bundle import BundleIntegrityError
        from riskml.models.disputes.bundle import LINE

        if bundle.manifest.get("line") != LINE:
            raise BundleIntegrityError(f"{bundle.path}: not a disputes bundle")
        self.bundle = bundle
        self.policy = bundle.policy
        self.extractor = self._extractor()
        self.documents_root = Path(documents_root).resolve() if documents_root else None
        self.uri: str | None = None

    def _extractor(self) -> Any:
        """The bundle's extractor, made once a replica (the layout model, 0.5 s, loads at start,
        not in the first request); None while the LLM it names is not configured: each request
        then says so (503), as it did."""
        from riskml.features.disputes.llm import LLMError

        try:
            return self.bundle.extraction.extractor_instance()
        except LLMError:
            return None

    @classmethod
    def from_source(
        cls, source: BundleSource | Mapping[str, Any], *, documents_root: str | None = None
    ) -> "DisputesService":
        src = source if isinstance(source, BundleSource) else BundleSource.model_validate(source)
        service = cls(src.load(), documents_root=documents_root)
        service.uri = src.model_uri
        return service

    def reconfigure(self, config: DisputesConfig | Mapping[str, Any]) -> None:
        """Apply a :class:`DisputesConfig`: the bundle's policy with its overrides (nested
        ``economics`` merged key by key; validated before anything changes)."""
        from riskml.models.disputes.policy import PolicyConfig

        cfg = (
            config if isinstance(config, DisputesConfig) else DisputesConfig.model_validate(config)
        )
        base = self.bundle.policy.model_dump()
        overrides = dict(cfg.policy)
        if isinstance(overrides.get("economics"), Mapping):
            overrides["economics"] = {**base["economics"], **overrides["economics"]}
        self.policy = PolicyConfig.model_validate({**base, **overrides})

    # -- documents --------------------------------------------------------------------------

    def read_documents(self, documents: Sequence[DocumentIn]) -> list[Any]:
        """Each document's pages of text (:class:`~riskml.features.disputes.text.DocumentText`),
        read as the bundle's extraction settings say; :class:`DocumentError` for one that
        cannot be read."""
        from riskml.features.disputes.text import (
            DocumentText,
            PageText,
            TextExtractionError,
            extract_text,
        )

        cfg = self.bundle.extraction
        out: list[Any] = []
        for i, doc in enumerate(documents):
            if doc.text is not None:
                page = PageText(number=1, text=doc.text, source="text")
                out.append(DocumentText(name=doc.name, pages=(page,)))
                continue
            source: bytes | Path
            if doc.reference is not None:
                source, field = self._resolve(i, doc.reference), "reference"
            else:
                source = base64.b64decode(doc.content_base64 or "", validate=True)
                field = "content_base64"
                if len(source) > MAX_DOCUMENT_BYTES:
                    raise DocumentError(i, field, f"over {MAX_DOCUMENT_BYTES} bytes")
            try:
                out.append(
                    extract_text(source, name=doc.name, ocr=cfg.ocr, dpi=cfg.dpi, lang=cfg.lang)
                )
            except TextExtractionError as exc:
                raise DocumentError(i, field, str(exc)) from None
            except (OSError, ValueError) as exc:  # a damaged PDF the parser gives up on
                raise DocumentError(i, field, f"{doc.name}: not a readable PDF ({exc})") from None
        return out

    def _resolve(self, index: int, reference: str) -> Path:
        if self.documents_root is None:
            raise DocumentError(index, "reference", "this app has no documents_root")
        path = (self.documents_root / reference).resolve()
        if self.documents_root not in path.parents:
            raise DocumentError(index, "reference", "the reference leaves documents_root")
        if not path.is_file():
            raise DocumentError(index, "reference", f"no document {reference!r}")
        return path

    # -- the request's frames ---------------------------------------------------------------

    def _history(self, request: AssessRequest) -> Any:
        """The card's transactions (the history rows and the disputed one) in the transaction
        schema's column names, or None when the request has no history."""
        import polars as pl

        if request.history is None:
            return None
        d = request.dispute
        rows = [
            {
                "tx_id": h.tx_id,
                "customer_id": d.customer_id,
                "terminal_id": h.terminal_id,
                "ts": _utc(h.ts),
                "amount": h.amount,
                "device_id": h.device_id,
                "ip_address": h.ip_address,
                "shipping_address": h.shipping_address,
                "account_id": h.account_id,
                "channel": h.channel,
                "merchant_category": h.merchant_category,
                "is_fraud": int(h.fraud_reported_at is not None),
                "label_available_at": _utc(h.fraud_reported_at) if h.fraud_reported_at else None,
            }
            for h in request.history
            if h.tx_id != d.tx_id
        ]
        rows.append(
            {
                "tx_id": d.tx_id,
                "customer_id": d.customer_id,
                "terminal_id": d.terminal_id,
                "ts": _utc(d.tx_ts),
                "amount": d.amount,
                "device_id": d.device_id,
                "ip_address": d.ip_address,
                "shipping_address": d.shipping_address,
                "account_id": d.account_id,
                "channel": d.channel,
                "merchant_category": d.merchant_category,
                "is_fraud": 0,
                "label_available_at": None,
            }
        )
        ts = pl.Datetime("us", "UTC")
        schema: dict[str, Any] = {
            **dict.fromkeys(("tx_id", "customer_id", "terminal_id"), pl.String),
            "ts": ts,
            "amount": pl.Float64,
            **dict.fromkeys(
                ("device_id", "ip_address", "shipping_address", "account_id", "channel"),
                pl.String,
            ),
            "merchant_category": pl.String,
            "is_fraud": pl.Int8,
            "label_available_at": ts,
        }
        return pl.DataFrame(rows, schema=schema)

    def _prior(self, request: AssessRequest) -> Any:
        import polars as pl

        if not request.prior_disputes:
            return None
        d = request.dispute
        terminals = {h.tx_id: h.terminal_id for h in request.history or []}
        rows = [
            {
                "dispute_id": p.dispute_id,
                "tx_id": p.tx_id,
                "customer_id": d.customer_id,
                "terminal_id": p.terminal_id or terminals.get(p.tx_id, "unknown"),
                "tx_ts": _utc(p.tx_ts),
                "opened_at": _utc(p.opened_at),
                "amount": p.amount,
                "reason_code": p.reason_code,
                "network": p.network,
            }
            for p in request.prior_disputes
        ]
        ts = pl.Datetime("us", "UTC")
        schema: dict[str, Any] = {
            **dict.fromkeys(("dispute_id", "tx_id", "customer_id", "terminal_id"), pl.String),
            "tx_ts": ts,
            "opened_at": ts,
            "amount": pl.Float64,
            "reason_code": pl.String,
            "network": pl.String,
        }
        return pl.DataFrame(rows, schema=schema)

    # -- the route --------------------------------------------------------------------------

    def assess(self, request: AssessRequest) -> dict[str, Any]:
        """Read the documents, extract the evidence, assess the dispute (the bundle's model,
        policy and rule), build the packet; the response as a dict."""
        from riskml.features.disputes.extractors import extract_documents

        t0 = time.perf_counter()
        d = request.dispute
        texts = self.read_documents(request.documents)
        extractor = self.extractor or self.bundle.extraction.extractor_instance()  # LLMError: 503
        extraction = extract_documents(texts, extractor)
        record = {
            **d.model_dump(include=set(DisputeIn.model_fields)),
            "tx_ts": _utc(d.tx_ts),
            "opened_at": _utc(d.opened_at),
        }
        assessment = self.bundle.assess(
            record,
            extraction,
            history=self._history(request),
            prior_disputes=self._prior(request),
            policy=self.policy,
        )
        decision = assessment.decision
        report = assessment.requirements.as_dict()
        from riskml.data.disputes.schema import reason_family

        code_family = reason_family(d.reason_code, d.network)
        message_family = self.bundle.reason_family(d.customer_message)
        packet_pdf = None
        if request.include_packet_pdf and assessment.packet is not None:
            packet_pdf = base64.b64encode(packet_pdf_bytes(assessment.packet)).decode()
        return {
            "dispute_id": d.dispute_id,
            "decision": decision.action,
            "win_probability": assessment.p_win,
            "win_probability_raw": assessment.p_win_raw,
            "expected_value": {
                "chosen": decision.expected_value,
                "represent": decision.ev_represent,
                "refund": decision.ev_refund,
                "review": decision.ev_review,
                "review_value": decision.review_value,
            },
            "reasons": list(decision.reasons),
            "model_factors": [
                {"feature": name, "contribution": value} for name, value in assessment.model_reasons
            ],
            "requirements": {k: report[k] for k in ("key", "complete", "missing", "items")},
            "compelling_evidence": assessment.compelling,
            "reason_family": {
                "code": code_family,
                "message": message_family,
                "agrees": None if message_family is None else message_family == code_family,
            },
            "evidence": extraction,
            "packet": assessment.packet,
            "packet_pdf_base64": packet_pdf,
            "model_version": self.bundle.version,
            "latency_ms": round((time.perf_counter() - t0) * 1e3, 3),
        }

    def info(self, admin: bool) -> dict[str, Any]:
        bundle = self.bundle
        entry = bundle.manifest.get("models", {}).get("outcome", {})
        out: dict[str, Any] = {
            "name": bundle.name,
            "version": bundle.version,
            "model_uri": self.uri,
            "kind": entry.get("kind"),
        }
        if admin:
            from riskml.models.bundle import finite_json

            calibrator = bundle.model.calibrator
            headline = (
                "calibration_method",
                "calibration_ece",
                "reason_family_accuracy",
                "holdout",
            )
            out.update(
                feature_names=list(bundle.model.feature_names),
                policy=self.policy.model_dump(mode="json"),
                rule=bundle.rule.model_dump(mode="json"),
                extraction=bundle.extraction.model_dump(mode="json"),
                calibration=calibrator.summary() if calibrator is not None else None,
                metrics=finite_json({k: bundle.metrics.get(k) for k in headline}),
            )
        return out


def case_request(
    dispute_set: Any,
    dispute_id: str,
    *,
    documents: Literal["content", "reference", "none"] = "content",
    history: bool = True,
    include_packet_pdf: bool = False,
) -> dict[str, Any]:
    """A dispute of a dispute set (:class:`~riskml.data.disputes.simulator.DisputeSet`) as an
    ``/assess`` request body: its record and the disputed transaction's device, IP, channel
    and category; its documents as base64 content or as references relative to the set's root
    (an app whose ``documents_root`` is that root reads them); with ``history`` the card's
    transactions before the disputed one (fraud reports as ``fraud_reported_at``) and its
    earlier disputes. What the demo, the CLI, the benchmark and the tests send."""
    import polars as pl

    rows = dispute_set.disputes.filter(pl.col("dispute_id") == dispute_id)
    if rows.height != 1:
        raise KeyError(f"no dispute {dispute_id!r} in the dispute set")
    d = rows.row(0, named=True)
    h = dispute_set.history
    tx = h.filter(pl.col("tx_id") == d["tx_id"]) if h.height else h
    attrs = tx.row(0, named=True) if tx.height else {}
    dispute: dict[str, Any] = {
        k: d[k]
        for k in (
            "dispute_id",
            "tx_id",
            "customer_id",
            "terminal_id",
            "merchant_name",
            "amount",
            "currency",
            "network",
            "reason_code",
            "customer_message",
        )
    }
    dispute["tx_ts"] = d["tx_ts"].isoformat()
    dispute["opened_at"] = d["opened_at"].isoformat()
    for key in ("device_id", "ip_address", "channel", "merchant_category"):
        if attrs.get(key) is not None:
            dispute[key] = attrs[key]
    body: dict[str, Any] = {"dispute": dispute, "include_packet_pdf": include_packet_pdf}
    if documents != "none":
        docs = []
        for path in dispute_set.case_documents(dispute_id):
            doc: dict[str, Any] = {"name": path.name}
            if documents == "content":
                doc["content_base64"] = base64.b64encode(path.read_bytes()).decode()
            else:
                doc["reference"] = path.relative_to(dispute_set.root).as_posix()
            docs.append(doc)
        body["documents"] = docs
    if history and h.height:
        earlier = h.filter(
            (pl.col("customer_id") == d["customer_id"]) & (pl.col("ts") < d["tx_ts"])
        )
        body["history"] = [
            {
                "tx_id": r["tx_id"],
                "ts": r["ts"].isoformat(),
                "terminal_id": r["terminal_id"],
                "amount": float(r["amount"]),
                **{
                    k: r[k]
                    for k in ("device_id", "ip_address", "channel", "merchant_category")
                    if r.get(k) is not None
                },
                "fraud_reported_at": r["label_available_at"].isoformat()
                if r["is_fraud"]
                and r.get("label_available_at") is not None
                and r["label_available_at"] <= d["opened_at"]
                else None,
            }
            for r in earlier.iter_rows(named=True)
        ]
        prior = dispute_set.disputes.filter(
            (pl.col("customer_id") == d["customer_id"]) & (pl.col("opened_at") < d["opened_at"])
        )
        body["prior_disputes"] = [
            {
                "dispute_id": p["dispute_id"],
                "tx_id": p["tx_id"],
                "tx_ts": p["tx_ts"].isoformat(),
                "opened_at": p["opened_at"].isoformat(),
                "amount": float(p["amount"]),
                "reason_code": p["reason_code"],
                "network": p["network"],
                "terminal_id": p["terminal_id"],
            }
            for p in prior.iter_rows(named=True)
        ]
    return body


def packet_pdf_bytes(packet: EvidencePacket) -> bytes:
    """The packet drawn as a PDF (:func:`riskml.models.disputes.packet.render_packet_pdf`)."""
    from riskml.models.disputes.packet import render_packet_pdf

    with tempfile.TemporaryDirectory(prefix="packet-") as tmp:
        return render_packet_pdf(packet, Path(tmp) / "packet.pdf").read_bytes()


# -- the Serve deployment -----------------------------------------------------------------------


class DisputesApi(RiskApi):
    """The disputes API (no security scheme in its OpenAPI document when no key is configured)."""


api = DisputesApi(
    title="riskml disputes",
    version="1",
    description="Dispute assessment: evidence from the merchant's documents (with provenance), "
    "the calibrated win probability of a representment, auto-refund / represent / human "
    "review by expected value, and the evidence packet.",
)
api.add_middleware(AdmissionMiddleware)  # slots, waiting and the body limit of /assess
install_error_handlers(api)

#: What the assess route may answer beyond its 200, 401 and 422.
ASSESS_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem, "description": f"The body is over {MAX_BODY_BYTES} bytes."},
    503: {
        **LIMITED[503],
        "description": "Overloaded (every slot of the replica busy and no place to wait left, "
        "or none freed up within admission.max_wait_ms: nothing was assessed, retry after "
        "`Retry-After` seconds), or a document needs OCR (or the LLM extractor) and it is not "
        "available.",
    },
}


def _unprocessable(message: str) -> HTTPException:
    detail = [{"type": "value_error", "loc": ["body"], "msg": message}]
    return HTTPException(status_code=422, detail=detail)


@serve.deployment(name=DEPLOYMENT, ray_actor_options=NO_CPU, max_ongoing_requests=MAX_ONGOING)
@serve.ingress(api)
class DisputesIngress:
    """``DisputesIngress.bind(source=BundleSource dict, documents_root=str | None,
    admission=WorkAdmissionArgs dict | None)``."""

    def __init__(
        self,
        source: Mapping[str, Any],
        documents_root: str | None = None,
        admission: Mapping[str, Any] | None = None,
    ) -> None:
        # first: a replica without the keys it requires fails before loading any model
        self.auth = Authenticator.from_settings(get_settings(), log)
        #: serving.admission finds it here (AdmissionMiddleware): slots, waiting, body limit
        self.admission = work_admission(
            admission or ADMISSION,
            routes=["/assess"],
            body_limit=MAX_BODY_BYTES,
            on_reject=count_rejections(),
        )
        self.service = DisputesService.from_source(source, documents_root=documents_root)
        try:
            self.replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # pragma: no cover - outside a replica
            self.replica = "local"
        gc.collect()
        gc.freeze()  # long-lived model: never walked by a full collection again

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        self.service.reconfigure(user_config)

    @api.post(
        "/assess",
        response_model=AssessResponse,
        responses={**UNAUTHORIZED, **ASSESS_ERRORS},
    )
    async def assess(
        self, request: AssessRequest, credentials: Credentials = Security(bearer)
    ) -> dict[str, Any]:
        self.auth.role(credentials)
        from riskml.features.disputes.text import OCRUnavailable

        try:
            return await asyncio.to_thread(self.service.assess, request)
        except DocumentError as exc:
            raise HTTPException(status_code=422, detail=exc.detail()) from None
        except OCRUnavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        except ValueError as exc:  # the model refused the input (a contract mismatch)
            raise _unprocessable(str(exc)) from None
        except RuntimeError as exc:  # the LLM extractor's service failed
            from riskml.features.disputes.llm import LLMError

            if isinstance(exc, LLMError):
                raise HTTPException(status_code=503, detail=str(exc)) from None
            raise

    @api.get("/model", response_model=ServedBundle, responses=UNAUTHORIZED)
    async def model(self, credentials: Credentials = Security(bearer)) -> dict[str, Any]:
        """The served bundle's version; to an admin key (or an open API) also the internals:
        features, policy, compelling-evidence rule, extraction, calibration, figures."""
        return self.service.info(admin=self.auth.role(credentials) >= Role.ADMIN)

    @api.get("/healthz", response_model=HealthResponse)
    async def healthz(self) -> HealthResponse:
        return HealthResponse(status="ok", replica=self.replica)


def build_disputes_app(args: dict[str, Any] | DisputesAppArgs) -> Any:
    """The bound application (``serve.run(build_disputes_app(args))``; the serve config's
    ``import_path: serving.disputes:build_disputes_app``). A registry URI is resolved and its
    bundle verified here, once."""
    a = args if isinstance(args, DisputesAppArgs) else DisputesAppArgs.model_validate(args)
    source = a.source().resolved()
    deployment: Any = DisputesIngress  # a Serve Deployment (the decorator hides it from mypy)
    if a.config is not None:
        deployment = deployment.options(user_config=a.config.model_dump())
    extra = a.deployment_options.get(DEPLOYMENT)
    if extra:
        deployment = deployment.options(**extra)
    return deployment.bind(
        source=source.model_dump(),
        documents_root=a.documents_root,
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
    """One application entry of a serve config for the disputes app (the shape of
    ``serving/serve_config.yaml``'s ``disputes``), for local runs: ``num_replicas`` replicas
    reserving no CPU unless ``actor_options`` say otherwise; ``env``: environment variables of
    the app (its build, where a registry URI is resolved, and its replicas)."""
    DisputesAppArgs.model_validate(args)  # refuse bad args before anything is deployed
    return http_api.app_entry(
        "serving.disputes:build_disputes_app",
        DEPLOYMENT,
        args,
        DisputesConfig.model_validate(user_config or {}),
        name=name,
        route_prefix=route_prefix,
        num_replicas=num_replicas,
        actor_options=actor_options,
        env=env,
    )


__all__ = [
    "APP_NAME",
    "MAX_BODY_BYTES",
    "MAX_DOCUMENTS",
    "MAX_DOCUMENT_BYTES",
    "ROUTE_PREFIX",
    "AssessRequest",
    "AssessResponse",
    "BundleSource",
    "DisputesAppArgs",
    "DisputesConfig",
    "DisputesService",
    "app_config",
    "build_disputes_app",
    "case_request",
]
