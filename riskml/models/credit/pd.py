"""The servable PD model: features contract, scorecard or GBDT, calibrator, grade scale and the
credit decision (approve/decline, maximum amount, reason codes); stored as JSON (+ UBJSON).

:meth:`PDModel.predict` gives, per application, the calibrated PD with its interval
(:mod:`.calibration`), the grade on the master scale (:class:`GradeScale`), the raw model PD and
the reason codes (the scorecard's points lost / the GBDT's positive SHAP contributions).

:meth:`PDModel.decide` applies the :class:`DecisionPolicy`:

* **decline** when the PD exceeds ``pd_cutoff`` (reasons: the model's reason codes), or when no
  amount passes the amount rule (reasons: ``affordability`` and/or ``expected_value``, then the
  model's);
* **maximum amount**: the largest amount on the policy's grid (``min_amount`` to ``max_amount``
  by ``amount_step``), at the application's term, APR and promotion, that is affordable —
  existing debt payments (``debt_to_income`` x income) plus the new monthly payment within
  ``dti_cap`` of income — and whose expected value
  (:func:`riskml.data.credit.economics.offer_value`) is >= 0 with a PD within the cut-off. The
  PD is re-predicted at each amount with the payment and fee
  (:mod:`riskml.data.credit.economics`) of that amount, since the payment is a model input;
* **approve** otherwise, for ``min(requested amount, maximum amount)``.

:meth:`PDModel.to_files` writes ``pd_model.json`` (spec, kind, scorecard or the GBDT's file name,
calibrator, grades, policy, metadata), ``gbdt.ubj`` for a GBDT, and ``manifest.json`` with the
sha256 of each; :meth:`PDModel.from_files` refuses files that differ from their manifest. No
pickle anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.data.credit.economics import Economics, monthly_payment, offer_value, origination_fee
from riskml.models.bundle import finite_json, sha256_file
from riskml.models.credit import CreditFeatureError, CreditFeatureSpec, as_polars
from riskml.models.credit.calibration import PDCalibrator
from riskml.models.credit.gbdt import GBDTModel
from riskml.models.credit.scorecard import Scorecard

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

FORMAT = "riskml-credit-pd-model"
FORMAT_VERSION = 1
MODEL_FILE = "pd_model.json"
GBDT_FILE = "gbdt.ubj"
MANIFEST_FILE = "manifest.json"
ModelKind = Literal["scorecard", "gbdt"]
#: Reason codes of the amount rule (the model's reason codes are feature names).
AFFORDABILITY = "affordability"
EXPECTED_VALUE = "expected_value"


class PDModelError(ValueError):
    """A PD model's files or inputs are invalid."""


class GradeScale(BaseModel):
    """Master scale: grade ``names[i]`` holds PDs in ``[upper[i-1], upper[i])``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: tuple[str, ...] = ("A", "B", "C", "D", "E", "F", "G")
    upper: tuple[float, ...] = (0.01, 0.025, 0.05, 0.08, 0.13, 0.22)

    @model_validator(mode="after")
    def _check(self) -> GradeScale:
        if len(self.names) != len(self.upper) + 1 or len(set(self.names)) != len(self.names):
            raise ValueError("a grade scale needs distinct names, one more than the cut-offs")
        u = np.asarray(self.upper, dtype=np.float64)
        if not (np.all(np.diff(u) > 0) and (u > 0).all() and (u < 1).all()):
            raise ValueError("grade cut-offs must be strictly increasing PDs in (0, 1)")
        return self

    def index(self, pd: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.upper), np.asarray(pd), side="right")

    def grade(self, pd: np.ndarray) -> list[str]:
        return [self.names[i] for i in self.index(pd)]


class DecisionPolicy(BaseModel):
    """PD cut-off and the maximum-amount rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pd_cutoff: float = Field(default=0.20, gt=0, lt=1, description="Decline above this PD.")
    dti_cap: float = Field(
        default=0.50, gt=0, description="(Existing + new monthly payments) / income at most."
    )
    min_amount: float = Field(default=100.0, gt=0)
    max_amount: float = Field(default=5_000.0, gt=0)
    amount_step: float = Field(default=100.0, gt=0)
    reasons: int = Field(default=4, ge=1, le=10, description="Reason codes per application.")
    economics: Economics = Field(default_factory=Economics)

    @model_validator(mode="after")
    def _check(self) -> DecisionPolicy:
        if self.max_amount < self.min_amount:
            raise ValueError("max_amount must be >= min_amount")
        if (self.max_amount - self.min_amount) / self.amount_step > 1_000:
            raise ValueError("the amount grid would exceed 1,000 points: raise amount_step")
        return self

    def amount_grid(self) -> np.ndarray:
        n = math.floor((self.max_amount - self.min_amount) / self.amount_step + 1e-9)
        return self.min_amount + self.amount_step * np.arange(n + 1, dtype=np.float64)


@dataclass
class PDPrediction:
    """Per application: calibrated PD, its interval, grade, raw PD, reason codes (and the
    scorecard's points when the model is a scorecard)."""

    pd: np.ndarray
    pd_low: np.ndarray
    pd_high: np.ndarray
    raw: np.ndarray
    grade: list[str]
    reasons: list[list[str]]
    score: np.ndarray | None = None

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i in range(len(self.pd)):
            row: dict[str, Any] = {
                "pd": float(self.pd[i]),
                "pd_low": float(self.pd_low[i]),
                "pd_high": float(self.pd_high[i]),
                "grade": self.grade[i],
                "reasons": self.reasons[i],
            }
            if self.score is not None:
                row["score"] = float(self.score[i])
            out.append(row)
        return out


@dataclass
class CreditDecision:
    """Per application: the decision, the amounts and the reasons for a decline."""

    prediction: PDPrediction
    approve: np.ndarray  # bool
    max_amount: np.ndarray  # 0 where no amount passes the rule
    approved_amount: np.ndarray  # min(requested, max) when approved, else 0
    reasons: list[list[str]]  # adverse-action reasons (empty when approved)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, row in enumerate(self.prediction.rows()):
            row.update(
                decision="approve" if self.approve[i] else "decline",
                max_amount=float(self.max_amount[i]),
                approved_amount=float(self.approved_amount[i]),
                decline_reasons=self.reasons[i],
            )
            out.append(row)
        return out


@dataclass
class PDModel:
    """The servable probability-of-default model."""

    spec: CreditFeatureSpec
    kind: ModelKind
    model: Scorecard | GBDTModel
    calibrator: PDCalibrator
    grades: GradeScale = field(default_factory=GradeScale)
    policy: DecisionPolicy = field(default_factory=DecisionPolicy)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = Scorecard if self.kind == "scorecard" else GBDTModel
        if not isinstance(self.model, expected):
            raise PDModelError(f"a {self.kind} PD model needs a {expected.__name__}")
        if self.model.spec != self.spec:
            raise PDModelError("the model's feature spec differs from the PD model's")

    # -- scoring ---------------------------------------------------------------------------

    def raw_pd(self, frame: pl.DataFrame) -> np.ndarray:
        return self.model.raw_pd(frame)

    def pd(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated PD only (no interval or reasons): the cheap path."""
        return self.calibrator(self.raw_pd(frame))

    def reasons(self, frame: pl.DataFrame, k: int | None = None) -> list[list[str]]:
        return self.model.reasons(frame, k=k or self.policy.reasons)

    def predict(self, frame: pl.DataFrame) -> PDPrediction:
        """PD, interval, grade, raw PD and reason codes per row of ``frame``."""
        frame = as_polars(frame)
        self.spec.check_frame(frame)
        raw = self.raw_pd(frame)
        pd, lo, hi = self.calibrator.predict(raw)
        score = self.model.score(frame) if isinstance(self.model, Scorecard) else None
        return PDPrediction(
            pd=pd,
            pd_low=lo,
            pd_high=hi,
            raw=raw,
            grade=self.grades.grade(pd),
            reasons=self.reasons(frame),
            score=score,
        )

    # -- decisions -------------------------------------------------------------------------

    def max_amount(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: the largest grid amount passing the rule (0 if none), and whether any grid
        amount was affordable and whether any affordable one had a non-negative value."""
        import polars as pl

        frame = as_polars(frame)
        need = ["amount", "term_months", "apr", "debt_to_income", "income_monthly"]
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise CreditFeatureError(f"a credit decision needs columns {missing}")
        pol = self.policy
        grid = pol.amount_grid()
        n, g = frame.height, len(grid)
        promo = (
            frame.get_column("promotion").to_numpy().astype(str)
            if "promotion" in frame.columns
            else np.full(n, "none")
        )
        term = frame.get_column("term_months").to_numpy().astype(np.int64)
        apr = frame.get_column("apr").cast(pl.Float64).to_numpy()
        income = frame.get_column("income_monthly").cast(pl.Float64).to_numpy()
        dti = frame.get_column("debt_to_income").cast(pl.Float64).to_numpy()
        # every row at every grid amount (row-major: row i's amounts are i*g .. i*g+g-1), with
        # the payment and fee those terms give (the payment is a model input)
        amounts = np.tile(grid, n)
        rep = np.repeat(np.arange(n), g)
        t, a, pr = term[rep], apr[rep], promo[rep]
        econ = pol.economics
        payment = monthly_payment(amounts, a, t, pr, economics=econ)
        fee = origination_fee(amounts, t, pr, economics=econ)
        expanded = frame[rep].with_columns(
            pl.Series("amount", amounts),
            pl.Series("monthly_payment", payment),
            pl.Series("origination_fee", fee),
        )
        pd = self.pd(expanded).reshape(n, g)
        value = offer_value(amounts, t, a, fee, pd.ravel(), promotion=pr, economics=econ).reshape(
            n, g
        )
        payment = payment.reshape(n, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            burden = (np.nan_to_num(dti)[:, None] * income[:, None] + payment) / income[:, None]
        affordable = np.isfinite(burden) & (burden <= pol.dti_cap) & (income[:, None] > 0)
        ok = affordable & (value >= 0) & (pd <= pol.pd_cutoff)
        last = np.where(ok.any(axis=1), g - 1 - np.argmax(ok[:, ::-1], axis=1), -1)
        best = np.where(last >= 0, grid[np.maximum(last, 0)], 0.0)
        any_affordable = affordable.any(axis=1)
        any_value = (affordable & (value >= 0)).any(axis=1)
        return best, any_affordable, any_value

    def decide(self, frame: pl.DataFrame) -> CreditDecision:
        """Approve/decline, maximum and approved amount, adverse-action reasons per row."""
        frame = as_polars(frame)
        pred = self.predict(frame)
        best, affordable, valuable = self.max_amount(frame)
        requested = frame.get_column("amount").to_numpy().astype(np.float64)
        pd_ok = pred.pd <= self.policy.pd_cutoff
        approve = pd_ok & (best > 0)
        reasons: list[list[str]] = []
        for i in range(frame.height):
            if approve[i]:
                reasons.append([])
                continue
            rule = []
            if pd_ok[i] and not affordable[i]:
                rule.append(AFFORDABILITY)
            elif pd_ok[i] and not valuable[i]:
                rule.append(EXPECTED_VALUE)
            given = (rule + pred.reasons[i])[: self.policy.reasons]
            if not given:
                # a decline always names its principal factors (adverse action): when no factor
                # passes the model's threshold (a tight cut-off declines a better-than-average
                # applicant), the factors that weighed most against them, whatever their sign
                given = self.model.reasons(frame[i : i + 1], self.policy.reasons, -np.inf)[0]
            reasons.append(given)
        return CreditDecision(
            prediction=pred,
            approve=approve,
            max_amount=np.where(approve, best, 0.0),
            approved_amount=np.where(approve, np.minimum(requested, best), 0.0),
            reasons=reasons,
        )

    # -- files -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "spec": self.spec.contract(),
            "calibrator": self.calibrator.to_json(),
            "grades": self.grades.model_dump(mode="json"),
            "policy": self.policy.model_dump(mode="json"),
            "metadata": self.metadata,
        }
        if isinstance(self.model, Scorecard):
            payload["scorecard"] = self.model.to_json()
        else:
            payload["gbdt_file"] = GBDT_FILE
        return payload

    def to_files(self, directory: Path | str) -> Path:
        """Write the model's files and manifest into ``directory`` (created); return it."""
        from riskml import __version__

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        files = {MODEL_FILE: out / MODEL_FILE}
        text = json.dumps(finite_json(self.to_json()), indent=1, sort_keys=True, allow_nan=False)
        files[MODEL_FILE].write_text(text + "\n")
        if isinstance(self.model, GBDTModel):
            files[GBDT_FILE] = out / GBDT_FILE
            files[GBDT_FILE].write_bytes(self.model.to_ubj())
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "riskml": __version__,
            "files": {name: sha256_file(path) for name, path in files.items()},
        }
        (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        return out

    @classmethod
    def from_files(cls, directory: Path | str) -> PDModel:
        """Load and verify (sha256 per file) a PD model written by :meth:`to_files`."""
        root = Path(directory)
        try:
            manifest = json.loads((root / MANIFEST_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise PDModelError(f"{root}: no readable {MANIFEST_FILE}: {exc}") from exc
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise PDModelError(f"{root}: not a {FORMAT} v{FORMAT_VERSION} model")
        digests = manifest.get("files")
        if not isinstance(digests, dict) or MODEL_FILE not in digests:
            raise PDModelError(f"{root}: the manifest lists no {MODEL_FILE}")
        for name, digest in digests.items():
            path = root / name
            if not path.is_file() or sha256_file(path) != digest:
                raise PDModelError(f"{root}: {name} is missing or differs from its sha256")
        payload = json.loads((root / MODEL_FILE).read_text())
        if payload.get("format") != FORMAT or payload.get("version") != FORMAT_VERSION:
            raise PDModelError(f"{root}: {MODEL_FILE} is not a {FORMAT} v{FORMAT_VERSION} model")
        spec = CreditFeatureSpec.from_contract(payload["spec"])
        kind = payload.get("kind")
        model: Scorecard | GBDTModel
        if kind == "scorecard":
            model = Scorecard.from_json(payload["scorecard"])
        elif kind == "gbdt":
            name = payload.get("gbdt_file", GBDT_FILE)
            if name not in digests:
                raise PDModelError(f"{root}: the manifest does not verify {name}")
            model = GBDTModel.from_ubj((root / name).read_bytes(), spec)
        else:
            raise PDModelError(f"{root}: unknown model kind {kind!r}")
        return cls(
            spec=spec,
            kind=kind,
            model=model,
            calibrator=PDCalibrator.from_json(payload["calibrator"]),
            grades=GradeScale.model_validate(payload.get("grades", {})),
            policy=DecisionPolicy.model_validate(payload.get("policy", {})),
            metadata=payload.get("metadata", {}),
        )


__all__ = [
    "AFFORDABILITY",
    "EXPECTED_VALUE",
    "CreditDecision",
    "DecisionPolicy",
    "GradeScale",
    "PDModel",
    "PDModelError",
    "PDPrediction",
]
