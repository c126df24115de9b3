"""Synthetic payments simulator: customers, terminals, devices, six fraud scenarios, late labels.

``simulate(config, out)`` writes one Parquet file per UTC day (``riskml.data.io.write_day``) plus
``manifest.json``. It is deterministic by seed: the same config gives byte-identical files.

How the world works
-------------------
* **Customers** live at a home location on a ``grid_size`` x ``grid_size`` grid. Each has a
  spending profile (log-normal amounts with a per-customer mean and spread), an expected number of
  transactions per day (Poisson), active hours (a centre hour and a spread; a small share of
  transactions falls at any hour), 1-3 usual devices (one primary), 2-4 usual merchant categories
  and an e-commerce propensity.
* **Terminals** (merchants) have a location, a kind (physical, e-commerce, ATM) and a merchant
  category. A customer pays at physical terminals and ATMs within ``radius`` of home (at least the
  ``min_nearby`` nearest ones), preferring their usual categories, and at a handful of favourite
  e-commerce merchants. Channel follows the terminal: physical -> ``pos`` or ``contactless``
  (small amounts), e-commerce -> ``ecom`` or ``moto``, ATM -> ``atm``.
* **Devices**: every row carries a device fingerprint. Genuine rows use one of the customer's own
  devices; fraudsters use fresh devices (never seen before) where the scenario says so.

Fraud scenarios and their signatures (``fraud_scenario`` values, see ``schema.FRAUD_SCENARIOS``)
-------------------------------------------------------------------------------------------
``high_amount``
    On a random customer-day (``high_amount.rate``) one extra transaction at one of the
    customer's usual terminals, in their active hours, with the usual device, for
    ``factor_min..factor_max`` x the customer's mean amount. Signature: amount far above the
    customer's own profile (and nothing else unusual).
``compromised_terminal``
    Skimming. Physical terminals and ATMs get compromised for ``window_days_min..window_days_max``
    days (``compromised_terminal.rate`` per terminal-day, planned up front). Every transaction at
    the terminal during that window is fraud, and every card used there is cloned: in the
    following ``fraud_window_days`` days it makes ``1 + Poisson(clones_per_card - 1)``
    card-present transactions at random terminals anywhere on the grid (ATM withdrawals or
    inflated purchases), with the fraudster's device. Signature: a terminal whose transactions in
    a window are all fraud, followed by fraud on the same cards elsewhere.
``account_takeover``
    A customer's online account is taken over for ``days_min..days_max`` days (planned up front).
    On those days ``share`` of the customer's transactions, plus one extra per day, become
    e-commerce purchases from a device never seen for that customer, at random e-commerce
    merchants, for ``amount_factor_min..amount_factor_max`` x the customer's mean amount.
``card_testing``
    A burst of ``probes_min..probes_max`` tiny amounts (``tiny_min..tiny_max``) seconds apart at
    e-commerce merchants in categories the customer never uses, then one large purchase
    (``large_min..large_max``) within an hour, all from one fresh device.
``fraud_ring``
    Rings of ``size_min..size_max`` accounts that, while the ring is active
    (``days_min..days_max`` days), make e-commerce purchases through a few shared devices at a
    few shared merchants.
    Signature: a device used by many different customers (genuine devices have one owner).
``behavioral_anomaly``
    On a random customer-day, a card-present transaction at night (00:00-05:00 UTC) at a
    terminal far from home (> ``far_distance``) in a category the customer never uses, with
    ``amount_factor_min..amount_factor_max`` x the customer's mean amount.

Labels arrive late: a fraud row's ``label_available_at`` is ``ts`` plus a chargeback delay drawn
from a log-normal (median ``label_delay.median_days``, clipped to ``min_days..max_days``); a
genuine row has ``label_available_at == ts``.

Everything spanning days (compromise windows, takeovers, card-testing bursts, rings) is planned up
front from the seed (:func:`plan_scenarios`); each day draws from its own random stream, so the
work per day and the memory held are bounded by one day of rows plus the small set of cloned
cards still waiting to be used.

Drift injection (``SimulationConfig.drift``)
--------------------------------------------
A tuple of drift items, none by default (then the output is byte-identical to a run without the
feature). Each item starts on ``day`` (0-based offset from ``start_date``) and lasts ``days`` days
(``None``: to the end). Days before the earliest ``day`` are identical to the run without drift
(same rows, ids, amounts, labels): drift is resolved up front from its own random streams
(:func:`plan_drift`) and draws nothing on a day it does not cover. Items can be given as objects
or in the CLI syntax ``KIND@key=value,...`` (lists ``+``-separated; :func:`parse_drift`), e.g.
``SimulationConfig.demo(drift=["new_pattern@day=20", "amount_shift@day=20,sd=0.2"])`` or
``config.with_drift(TerminalOutage(day=20, days=3, share=0.05))``. The manifest then records
``params.drift`` and a resolved ``drift`` list (dates, new merchant ids, log shift, down terminals).

``new_pattern`` (:class:`NewPattern`)
    A fraud pattern the training data never showed, ``fraud_scenario == "cnp_burst"`` (the
    ``scenario`` knob): on ``rate`` of customer-days, a burst of ``burst_min..burst_max``
    card-not-present purchases minutes apart (``moto`` with probability ``moto_share``, else
    ``ecom``), starting between ``hour_min`` and ``hour_max`` UTC (05:00-08:00), mid-range amounts
    ``amount_min..amount_max`` (80-400), one fresh device per burst, at ``merchants`` new
    e-commerce merchants in ``category`` whose terminal ids (after the world's) never appear before
    ``day``. Labelled fraud with the usual late labels.
``amount_shift`` (:class:`AmountShift`)
    Every genuine amount is multiplied by ``factor``, or by ``exp(sd * s)`` with ``s`` the standard
    deviation of log(amount) over genuine rows (:func:`genuine_log_amount_sd`, from the customers'
    profiles), so ``sd=0.2`` moves the mean log amount of genuine rows by 0.2 standard deviations.
    Same draws, so same rows, times, customers and terminals; channels follow the new amounts.
``terminal_outage`` (:class:`TerminalOutage`)
    A random ``share`` of the terminals of ``kinds`` (or the named ``terminals``) have no rows in
    the window. ``mode="reroute"`` (default, a real outage): a genuine transaction there moves to
    another of the customer's usual terminals of the same kind that is up (lost if none); a fraud
    attempt there fails and vanishes. ``mode="drop"``: every transaction there vanishes.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from riskml import __version__
from riskml.data import io
from riskml.data.schema import CHANNELS, COLUMN_NAMES, FRAUD_SCENARIOS, LEGIT, Currency

# --- vocabularies ----------------------------------------------------------------------------

CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurant",
    "fuel",
    "retail",
    "pharmacy",
    "entertainment",
    "electronics",
    "travel",
    "digital_goods",
    "cash",
)
_CAT = {c: i for i, c in enumerate(CATEGORIES)}
CASH = _CAT["cash"]
#: Category mix of physical terminals, e-commerce merchants, and customers' usual categories.
_PHYSICAL_MIX = {
    "grocery": 0.25,
    "restaurant": 0.22,
    "fuel": 0.12,
    "retail": 0.16,
    "pharmacy": 0.08,
    "entertainment": 0.07,
    "electronics": 0.05,
    "travel": 0.05,
}
_ECOM_MIX = {
    "retail": 0.30,
    "electronics": 0.15,
    "travel": 0.15,
    "entertainment": 0.10,
    "digital_goods": 0.30,
}
_USUAL_MIX = {
    "grocery": 0.22,
    "restaurant": 0.20,
    "fuel": 0.12,
    "retail": 0.16,
    "pharmacy": 0.08,
    "entertainment": 0.07,
    "electronics": 0.05,
    "travel": 0.04,
    "digital_goods": 0.06,
}

PHYSICAL, ECOM, ATM = 0, 1, 2
TERMINAL_KINDS: tuple[str, ...] = ("physical", "ecom", "atm")
_CH = {c: i for i, c in enumerate(CHANNELS)}
SCENARIOS: tuple[str, ...] = (LEGIT, *FRAUD_SCENARIOS)
_SC = {s: i for i, s in enumerate(SCENARIOS)}

_DAY_S = 86_400
_US = 1_000_000
_NIGHT_END_S = 5 * 3600


# --- configuration ---------------------------------------------------------------------------


class _Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _min_le_max(self) -> _Knobs:
        values = self.model_dump()
        for name, low in values.items():
            if name.endswith("_min"):
                high = values.get(name[: -len("_min")] + "_max")
                if high is not None and low > high:
                    raise ValueError(f"{name} ({low}) > {name[:-4]}_max ({high})")
        return self


class HighAmount(_Knobs):
    rate: float = Field(2.5e-3, ge=0, le=1, description="Probability per customer-day.")
    factor_min: float = Field(6.0, gt=1)
    factor_max: float = Field(15.0, gt=1)


class CompromisedTerminal(_Knobs):
    rate: float = Field(
        3.0e-4, ge=0, le=1, description="Compromises per card-present terminal-day."
    )
    window_days_min: int = Field(1, ge=1)
    window_days_max: int = Field(5, ge=1)
    fraud_window_days: int = Field(14, ge=1, description="Cloned cards are used within this.")
    clones_per_card: float = Field(2.0, ge=1, description="Mean cloned-card uses per skimmed card.")


class AccountTakeover(_Knobs):
    rate: float = Field(5.0e-4, ge=0, le=1, description="Takeovers starting per customer-day.")
    days_min: int = Field(1, ge=1)
    days_max: int = Field(4, ge=1)
    share: float = Field(0.5, ge=0, le=1, description="Share of the victim's rows taken over.")
    amount_factor_min: float = Field(2.0, gt=0)
    amount_factor_max: float = Field(6.0, gt=0)


class CardTesting(_Knobs):
    rate: float = Field(4.0e-4, ge=0, le=1, description="Bursts per customer-day.")
    probes_min: int = Field(3, ge=1)
    probes_max: int = Field(8, ge=1)
    tiny_min: float = Field(0.5, gt=0)
    tiny_max: float = Field(3.0, gt=0)
    large_min: float = Field(250.0, gt=0)
    large_max: float = Field(1500.0, gt=0)


class FraudRing(_Knobs):
    rings_per_1000_customers: float = Field(2.0, ge=0)
    size_min: int = Field(8, ge=2)
    size_max: int = Field(25, ge=2)
    devices_min: int = Field(2, ge=1)
    devices_max: int = Field(4, ge=1)
    terminals_min: int = Field(2, ge=1)
    terminals_max: int = Field(4, ge=1)
    days_min: int = Field(7, ge=1)
    days_max: int = Field(30, ge=1)
    tx_per_member_day: float = Field(0.6, ge=0)


class BehavioralAnomaly(_Knobs):
    rate: float = Field(2.5e-3, ge=0, le=1, description="Probability per customer-day.")
    far_distance: float = Field(30.0, gt=0, description="Minimum distance from home.")
    amount_factor_min: float = Field(1.5, gt=0)
    amount_factor_max: float = Field(4.0, gt=0)


class LabelDelay(_Knobs):
    median_days: float = Field(10.0, gt=0)
    sigma: float = Field(0.7, ge=0, description="Log-normal sigma of the chargeback delay.")
    min_days: float = Field(1.0, gt=0)
    max_days: float = Field(60.0, gt=0)


# --- drift injection (issue #22): items on ``SimulationConfig.drift`` -----------------------

#: The default ``fraud_scenario`` of a :class:`NewPattern` (not in ``schema.FRAUD_SCENARIOS``:
#: a pattern the training data never showed).
NEW_PATTERN_SCENARIO = "cnp_burst"
TerminalKind = Literal["physical", "ecom", "atm"]


class _DriftItem(_Knobs):
    """A change of the world from day ``day`` (0-based offset from ``start_date``) for ``days``
    days (``None``: to the end of the simulation). Days before ``day`` are untouched."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    day: int = Field(ge=0, description="First drifted day, 0-based from start_date.")
    days: int | None = Field(None, ge=1, description="Days it lasts; None: to the end.")

    @property
    def end(self) -> int | None:
        """The first day after the drift (exclusive), ``None`` if it lasts to the end."""
        return None if self.days is None else self.day + self.days

    def active(self, day: int) -> bool:
        return self.day <= day and (self.days is None or day < self.day + self.days)


class NewPattern(_DriftItem):
    """A fraud pattern the training data never showed: card-not-present bursts of
    ``burst_min..burst_max`` purchases minutes apart, ``amount_min..amount_max`` each (mid-range),
    starting between ``hour_min`` and ``hour_max`` UTC, at ``merchants`` new e-commerce merchants
    (terminal ids that never transacted before ``day``) in ``category``, channel ``moto`` with
    probability ``moto_share`` (else ``ecom``), one fresh device per burst, on a random
    ``rate`` share of customer-days. Rows are fraud with ``fraud_scenario == scenario`` and the
    usual late labels."""

    kind: Literal["new_pattern"] = "new_pattern"
    scenario: str = Field(NEW_PATTERN_SCENARIO, pattern=r"^[a-z][a-z0-9_]{0,63}$")
    rate: float = Field(2.0e-3, ge=0, le=1, description="Bursts per customer-day.")
    merchants: int = Field(5, ge=1, le=1000, description="New e-commerce merchants it uses.")
    category: str = Field("digital_goods", description="Merchant category of the new merchants.")
    burst_min: int = Field(2, ge=1)
    burst_max: int = Field(5, ge=1)
    amount_min: float = Field(80.0, gt=0)
    amount_max: float = Field(400.0, gt=0)
    hour_min: float = Field(5.0, ge=0, lt=24, description="Bursts start at this UTC hour or later")
    hour_max: float = Field(8.0, gt=0, le=24, description="... and before this one.")
    moto_share: float = Field(0.5, ge=0, le=1, description="Share of rows on channel moto.")

    @model_validator(mode="after")
    def _names(self) -> NewPattern:
        if self.category not in CATEGORIES:
            raise ValueError(f"category {self.category!r}: choose from {', '.join(CATEGORIES)}")
        if self.scenario in SCENARIOS:
            raise ValueError(f"scenario {self.scenario!r} is an existing scenario")
        return self


class AmountShift(_DriftItem):
    """Genuine amounts move: every genuine amount is multiplied by ``factor``, or by
    ``exp(sd * s)`` where ``s`` is :func:`genuine_log_amount_sd` (the standard deviation of
    log(amount) over genuine rows of the world), so the mean log amount of genuine rows moves by
    ``sd`` standard deviations. Give ``sd`` or ``factor``. Row count, times, customers,
    terminals are unchanged; channels follow the new amounts (contactless is for small ones)."""

    kind: Literal["amount_shift"] = "amount_shift"
    sd: float | None = Field(None, ge=-10, le=10, description="Shift of mean log amount in sd.")
    factor: float | None = Field(None, gt=0, le=1000, description="Multiply genuine amounts.")

    @model_validator(mode="after")
    def _one(self) -> AmountShift:
        if (self.sd is None) == (self.factor is None):
            raise ValueError("give exactly one of sd or factor")
        return self


class TerminalOutage(_DriftItem):
    """Terminals stop transacting: a random ``share`` of the terminals of ``kinds`` (or the
    named ``terminals``, e.g. ``T0000042``) have no rows from ``day`` for ``days`` days. With
    ``mode="reroute"`` (a real outage: the customer pays elsewhere) a genuine transaction at a
    down terminal moves to another of the customer's usual terminals of the same kind that is
    up (it is lost if there is none), and a fraud attempt there fails (the row vanishes); with
    ``mode="drop"`` every transaction at a down terminal vanishes."""

    kind: Literal["terminal_outage"] = "terminal_outage"
    share: float = Field(0.05, gt=0, le=1, description="Share of the terminals of kinds.")
    terminals: tuple[str, ...] = Field((), description="Named terminals instead of a share.")
    kinds: tuple[TerminalKind, ...] = ("physical", "ecom", "atm")
    mode: Literal["reroute", "drop"] = "reroute"

    @model_validator(mode="after")
    def _which(self) -> TerminalOutage:
        if self.terminals and "share" in self.model_fields_set:
            raise ValueError("give share or terminals, not both")
        for t in self.terminals:
            if not re.fullmatch(r"T\d{1,9}", t):
                raise ValueError(f"terminal {t!r}: expected an id like T0000042")
        if not self.kinds:
            raise ValueError("kinds is empty")
        return self

    def terminal_indices(self) -> np.ndarray:
        return np.array(sorted({int(t[1:]) for t in self.terminals}), dtype=np.int64)


DriftItem = Annotated[NewPattern | AmountShift | TerminalOutage, Field(discriminator="kind")]
DRIFT_KINDS: dict[str, type[_DriftItem]] = {
    "new_pattern": NewPattern,
    "amount_shift": AmountShift,
    "terminal_outage": TerminalOutage,
}
_DRIFT_ADAPTER: TypeAdapter[NewPattern | AmountShift | TerminalOutage] = TypeAdapter(DriftItem)
#: Fields whose CLI value is a ``+``-separated list.
_LIST_FIELDS = frozenset({"terminals", "kinds"})


def parse_drift(spec: str) -> NewPattern | AmountShift | TerminalOutage:
    """Parse ``KIND@key=value,key=value`` (the ``riskml simulate --drift`` syntax) into a drift
    item; list values are ``+``-separated. Raises ``ValueError`` with a one-line reason.

    >>> parse_drift("amount_shift@day=20,sd=0.2").sd
    0.2
    """
    kind, _, params = spec.strip().partition("@")
    kind = kind.strip()
    if kind not in DRIFT_KINDS:
        raise ValueError(
            f"drift {spec!r}: unknown kind {kind!r}; expected KIND@key=value,... with KIND one of "
            f"{', '.join(DRIFT_KINDS)}"
        )
    fields = [f for f in DRIFT_KINDS[kind].model_fields if f != "kind"]
    data: dict[str, Any] = {"kind": kind}
    for part in params.split(",") if params.strip() else []:
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or not key or not value:
            raise ValueError(f"drift {spec!r}: expected key=value, got {part.strip()!r}")
        if key not in fields:
            raise ValueError(
                f"drift {spec!r}: unknown key {key!r}; {kind} takes {', '.join(fields)}"
            )
        if key in data:
            raise ValueError(f"drift {spec!r}: {key} given twice")
        data[key] = tuple(v.strip() for v in value.split("+")) if key in _LIST_FIELDS else value
    try:
        return _DRIFT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ValueError(f"drift {spec!r}: {_one_line(exc)}") from None


def _one_line(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"][1:])
        msg = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


class SimulationConfig(BaseModel):
    """Everything the simulator needs; the same config and seed give byte-identical output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_customers: int = Field(2000, ge=1, le=10_000_000)
    n_terminals: int = Field(2000, ge=10, le=10_000_000)
    days: int = Field(60, ge=1, le=3660)
    start_date: dt.date = dt.date(2024, 1, 1)
    seed: int = Field(7, ge=0)
    currency: Currency = "USD"

    # world
    grid_size: float = Field(100.0, gt=0)
    radius: float = Field(5.0, gt=0, description="Customers pay at physical terminals this close.")
    max_nearby: int = Field(48, ge=1, description="At most this many nearby terminals.")
    min_nearby: int = Field(3, ge=1, description="At least the nearest ones, even beyond radius.")
    favorite_ecom: int = Field(6, ge=1, description="Favourite e-commerce merchants per customer.")
    ecom_terminal_share: float = Field(0.2, gt=0, lt=0.5)
    atm_terminal_share: float = Field(0.08, gt=0, lt=0.5)
    tx_per_day_min: float = Field(0.3, ge=0)
    tx_per_day_max: float = Field(3.4, ge=0)
    amount_mean_min: float = Field(8.0, gt=0)
    amount_mean_max: float = Field(120.0, gt=0)
    weekend_factor: float = Field(1.15, gt=0, description="Activity multiplier on Sat/Sun.")
    off_hours_share: float = Field(0.04, ge=0, le=1, description="Genuine rows at any hour.")

    # fraud scenarios
    high_amount: HighAmount = HighAmount()
    compromised_terminal: CompromisedTerminal = CompromisedTerminal()
    account_takeover: AccountTakeover = AccountTakeover()
    card_testing: CardTesting = CardTesting()
    fraud_ring: FraudRing = FraudRing()
    behavioral_anomaly: BehavioralAnomaly = BehavioralAnomaly()
    label_delay: LabelDelay = LabelDelay()

    # drift injection: none by default (then the output is what it was before drift existed)
    drift: tuple[DriftItem, ...] = Field(
        (), description="Drift items; a str item is parsed by parse_drift (KIND@key=value,...)."
    )

    @field_validator("drift", mode="before")
    @classmethod
    def _parse_drift(cls, value: Any) -> Any:
        if isinstance(value, str | dict | BaseModel):
            value = [value]
        if isinstance(value, list | tuple):
            return [parse_drift(v) if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _ranges(self) -> SimulationConfig:
        for low, high in (
            ("tx_per_day_min", "tx_per_day_max"),
            ("amount_mean_min", "amount_mean_max"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} > {high}")
        for i, item in enumerate(self.drift):
            if item.day >= self.days:
                raise ValueError(
                    f"drift[{i}] ({item.kind}) starts on day {item.day} but the simulation has "
                    f"{self.days} days (day is 0-based from start_date)"
                )
            if isinstance(item, TerminalOutage) and item.terminals:
                top = int(item.terminal_indices().max())
                if top >= self.n_terminals:
                    raise ValueError(
                        f"drift[{i}] (terminal_outage): no terminal T{top:07d} among "
                        f"{self.n_terminals} terminals"
                    )
        names = [d.scenario for d in self.drift if isinstance(d, NewPattern)]
        if len(set(names)) != len(names):
            raise ValueError("two new_pattern drift items share a scenario name")
        return self

    def with_drift(
        self, *items: str | NewPattern | AmountShift | TerminalOutage
    ) -> SimulationConfig:
        """A copy with ``items`` added to :attr:`drift` (``str`` items in the CLI syntax)."""
        return type(self).model_validate({**dict(self), "drift": (*self.drift, *items)})

    @property
    def end_date(self) -> dt.date:
        """The last simulated day (inclusive)."""
        return self.start_date + dt.timedelta(days=self.days - 1)

    @classmethod
    def demo(cls, **overrides: Any) -> SimulationConfig:
        """Small and fast: 2,000 customers x 2,000 terminals x 60 days (~220k rows)."""
        return cls(**{"n_customers": 2000, "n_terminals": 2000, "days": 60, **overrides})

    @classmethod
    def benchmark(cls, **overrides: Any) -> SimulationConfig:
        """5,000 customers x 10,000 terminals x 183 days (~1.7M rows)."""
        return cls(**{"n_customers": 5000, "n_terminals": 10_000, "days": 183, **overrides})

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SimulationConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        return getattr(cls, name)(**overrides)


PRESETS: tuple[str, ...] = ("demo", "benchmark")


# --- the world: customers, terminals, devices ------------------------------------------------


@dataclass(frozen=True)
class World:
    """Customers and terminals, fixed for a whole simulation (drawn from the seed)."""

    # customers
    home: np.ndarray  # (C, 2) float
    tx_rate: np.ndarray  # (C,) expected genuine tx per day
    amount_mean: np.ndarray  # (C,)
    amount_mu: np.ndarray  # (C,) log-normal parameters of genuine amounts
    amount_sigma: np.ndarray
    center_hour: np.ndarray  # (C,) active hours: centre and spread
    hour_sd: np.ndarray
    n_devices: np.ndarray  # (C,) 1..3
    device_offset: np.ndarray  # (C,) first device index of the customer
    usual: np.ndarray  # (C, n_categories) bool; cash counts as usual for everyone
    cand: np.ndarray  # (C, K + F) candidate terminals (nearby physical/ATM, favourite e-commerce)
    cand_cum: np.ndarray  # (C, K + F) cumulative choice probabilities
    # terminals
    term_xy: np.ndarray  # (T, 2)
    term_kind: np.ndarray  # (T,) PHYSICAL | ECOM | ATM
    term_cat: np.ndarray  # (T,) index into CATEGORIES
    ecom_pool: np.ndarray  # terminal indices of e-commerce merchants
    card_present_pool: np.ndarray  # physical + ATM
    physical_pool: np.ndarray
    # per-category pools: terminals sorted by category, with offsets and counts per category
    ecom_by_cat: tuple[np.ndarray, np.ndarray, np.ndarray]
    physical_by_cat: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def n_customers(self) -> int:
        return int(self.home.shape[0])

    @property
    def n_terminals(self) -> int:
        return int(self.term_kind.shape[0])

    @property
    def n_customer_devices(self) -> int:
        return int(self.n_devices.sum())

    def customer_devices(self, customer: int) -> set[int]:
        start = int(self.device_offset[customer])
        return set(range(start, start + int(self.n_devices[customer])))


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _mix(mix: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    cats = np.array([_CAT[c] for c in mix], dtype=np.int16)
    p = np.array(list(mix.values()), dtype=np.float64)
    return cats, p / p.sum()


def _by_category(pool: np.ndarray, cat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(cat[pool], kind="stable")
    sorted_pool = pool[order]
    counts = np.bincount(cat[pool], minlength=len(CATEGORIES)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return sorted_pool, offsets, counts


def build_world(config: SimulationConfig) -> World:
    """Draw customers and terminals from ``config.seed`` (vectorized; no per-row Python)."""
    rng = _rng(config.seed, 0)
    n_c, n_t, g = config.n_customers, config.n_terminals, config.grid_size

    # terminals: kind, location, category
    n_ecom = max(1, round(config.ecom_terminal_share * n_t))
    n_atm = max(1, round(config.atm_terminal_share * n_t))
    kinds = np.full(n_t, PHYSICAL, dtype=np.int8)
    kinds[:n_ecom] = ECOM
    kinds[n_ecom : n_ecom + n_atm] = ATM
    term_kind = rng.permutation(kinds)
    term_xy = rng.uniform(0, g, size=(n_t, 2))
    term_cat = np.full(n_t, CASH, dtype=np.int16)
    for kind, mix in ((PHYSICAL, _PHYSICAL_MIX), (ECOM, _ECOM_MIX)):
        idx = np.flatnonzero(term_kind == kind)
        cats, p = _mix(mix)
        term_cat[idx] = rng.choice(cats, size=idx.size, p=p)
    ecom_pool = np.flatnonzero(term_kind == ECOM)
    card_present_pool = np.flatnonzero(term_kind != ECOM)
    physical_pool = np.flatnonzero(term_kind == PHYSICAL)

    # customers: home, profile, active hours, devices, usual categories
    home = rng.uniform(0, g, size=(n_c, 2))
    tx_rate = rng.uniform(config.tx_per_day_min, config.tx_per_day_max, n_c)
    amount_mean = rng.uniform(config.amount_mean_min, config.amount_mean_max, n_c)
    cv = rng.uniform(0.3, 0.7, n_c)
    amount_sigma = np.sqrt(np.log1p(cv**2))
    amount_mu = np.log(amount_mean) - amount_sigma**2 / 2
    center_hour = rng.uniform(9.0, 20.0, n_c)
    hour_sd = rng.uniform(1.5, 3.5, n_c)
    n_devices = rng.choice(np.array([1, 2, 3]), size=n_c, p=[0.45, 0.4, 0.15])
    device_offset = np.concatenate([[0], np.cumsum(n_devices)[:-1]])
    usual_cats, usual_p = _mix(_USUAL_MIX)
    k_usual = rng.integers(2, 5, n_c)
    keys = np.log(usual_p)[None, :] + rng.gumbel(size=(n_c, usual_p.size))  # Gumbel top-k
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    usual = np.zeros((n_c, len(CATEGORIES)), dtype=bool)
    usual[:, usual_cats] = rank < k_usual[:, None]
    usual[:, CASH] = True
    ecom_propensity = rng.beta(2.0, 6.0, n_c)

    # candidate terminals: nearest card-present terminals within radius (>= min_nearby) ...
    k = min(config.max_nearby, card_present_pool.size)
    near = np.empty((n_c, k), dtype=np.int64)
    near_ok = np.empty((n_c, k), dtype=bool)
    cp_xy = term_xy[card_present_pool]
    chunk = max(1, 2_000_000 // max(1, card_present_pool.size))
    for lo in range(0, n_c, chunk):  # bounded memory: a chunk of customers at a time
        hi = min(n_c, lo + chunk)
        dx = home[lo:hi, 0, None] - cp_xy[None, :, 0]
        dy = home[lo:hi, 1, None] - cp_xy[None, :, 1]
        d2 = dx * dx + dy * dy
        part = (
            np.argpartition(d2, k - 1, axis=1)[:, :k]
            if k < d2.shape[1]
            else np.tile(np.arange(d2.shape[1]), (hi - lo, 1))
        )
        pd2 = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(pd2, axis=1, kind="stable")
        part = np.take_along_axis(part, order, axis=1)
        pd2 = np.take_along_axis(pd2, order, axis=1)
        near[lo:hi] = card_present_pool[part]
        near_ok[lo:hi] = (pd2 <= config.radius**2) | (np.arange(k)[None, :] < config.min_nearby)
    rows = np.arange(n_c)[:, None]
    near_usual = usual[rows, term_cat[near]]
    w_near = np.where(near_usual, 1.0, np.where(term_kind[near] == ATM, 0.25, 0.1)) * near_ok
    # ... plus favourite e-commerce merchants, preferring usual categories
    f = config.favorite_ecom
    pick = ecom_pool[rng.integers(0, ecom_pool.size, size=(n_c, 4 * f))]
    score = usual[rows, term_cat[pick]] + rng.random(pick.shape) * 0.5
    fav = np.take_along_axis(pick, np.argsort(-score, axis=1, kind="stable")[:, :f], axis=1)
    w_fav = np.where(usual[rows, term_cat[fav]], 1.0, 0.3)
    w_near *= ((1 - ecom_propensity) / w_near.sum(1))[:, None]
    w_fav *= (ecom_propensity / w_fav.sum(1))[:, None]
    cand = np.concatenate([near, fav], axis=1)
    cand_cum = np.cumsum(np.concatenate([w_near, w_fav], axis=1), axis=1)
    cand_cum /= cand_cum[:, -1:]
    cand_cum[:, -1] = 1.0

    return World(
        home=home,
        tx_rate=tx_rate,
        amount_mean=amount_mean,
        amount_mu=amount_mu,
        amount_sigma=amount_sigma,
        center_hour=center_hour,
        hour_sd=hour_sd,
        n_devices=n_devices,
        device_offset=device_offset,
        usual=usual,
        cand=cand,
        cand_cum=cand_cum,
        term_xy=term_xy,
        term_kind=term_kind,
        term_cat=term_cat,
        ecom_pool=ecom_pool,
        card_present_pool=card_present_pool,
        physical_pool=physical_pool,
        ecom_by_cat=_by_category(ecom_pool, term_cat),
        physical_by_cat=_by_category(physical_pool, term_cat),
    )


# --- the scenario plan (everything spanning days, drawn up front) ----------------------------


@dataclass(frozen=True)
class Ring:
    members: np.ndarray  # customer indices
    devices: np.ndarray  # shared device indices
    terminals: np.ndarray  # shared e-commerce merchants
    start: int  # first active day index
    end: int  # exclusive


@dataclass(frozen=True)
class Plan:
    """Fraud events spanning days, drawn from the seed before any day is generated.

    Day indices are 0-based offsets from ``start_date``; ``end`` is exclusive.
    """

    compromise_terminal: np.ndarray
    compromise_start: np.ndarray
    compromise_end: np.ndarray
    compromise_device: np.ndarray
    ato_customer: np.ndarray
    ato_start: np.ndarray
    ato_end: np.ndarray
    ato_device: np.ndarray
    ct_customer: np.ndarray
    ct_day: np.ndarray
    ct_start_s: np.ndarray
    ct_probes: np.ndarray
    ct_device: np.ndarray
    rings: tuple[Ring, ...]
    n_devices: int  # all device indices are < n_devices

    def events(self) -> dict[str, int]:
        return {
            "compromised_terminal": int(self.compromise_terminal.size),
            "account_takeover": int(self.ato_customer.size),
            "card_testing": int(self.ct_customer.size),
            "fraud_ring": len(self.rings),
        }


def plan_scenarios(config: SimulationConfig, world: World) -> Plan:
    """Draw compromise windows, takeovers, card-testing bursts and rings from the seed."""
    rng = _rng(config.seed, 1)
    days, n_c = config.days, world.n_customers
    next_device = world.n_customer_devices

    def fresh(n: int) -> np.ndarray:
        nonlocal next_device
        out = np.arange(next_device, next_device + n, dtype=np.int64)
        next_device += n
        return out

    ct = config.compromised_terminal
    n = rng.poisson(ct.rate * world.card_present_pool.size * days)
    comp_term = rng.choice(world.card_present_pool, size=n)
    comp_start = rng.integers(0, days, n)
    comp_end = comp_start + rng.integers(ct.window_days_min, ct.window_days_max + 1, n)

    ato = config.account_takeover
    n = rng.poisson(ato.rate * n_c * days)
    ato_cust = rng.integers(0, n_c, n)
    ato_start = rng.integers(0, days, n)
    ato_end = ato_start + rng.integers(ato.days_min, ato.days_max + 1, n)

    cts = config.card_testing
    n = rng.poisson(cts.rate * n_c * days)
    ct_cust = rng.integers(0, n_c, n)
    ct_day = rng.integers(0, days, n)
    ct_start = rng.uniform(0, _DAY_S - 3 * 3600, n)
    ct_probes = rng.integers(cts.probes_min, cts.probes_max + 1, n)

    fr = config.fraud_ring
    n_rings = round(fr.rings_per_1000_customers * n_c / 1000)
    if fr.rings_per_1000_customers > 0 and n_c >= fr.size_min:
        n_rings = max(1, n_rings)
    rings = []
    for _ in range(n_rings):  # a handful of rings: a loop over events, not rows
        size = min(n_c, int(rng.integers(fr.size_min, fr.size_max + 1)))
        members = np.sort(rng.choice(n_c, size=size, replace=False))
        n_term = min(
            world.ecom_pool.size, int(rng.integers(fr.terminals_min, fr.terminals_max + 1))
        )
        terminals = rng.choice(world.ecom_pool, size=n_term, replace=False)
        start = int(rng.integers(0, days))
        length = int(rng.integers(fr.days_min, fr.days_max + 1))
        n_dev = int(rng.integers(fr.devices_min, fr.devices_max + 1))
        rings.append(Ring(members, fresh(n_dev), terminals, start, start + length))

    return Plan(
        compromise_terminal=comp_term,
        compromise_start=comp_start,
        compromise_end=comp_end,
        compromise_device=fresh(comp_term.size),
        ato_customer=ato_cust,
        ato_start=ato_start,
        ato_end=ato_end,
        ato_device=fresh(ato_cust.size),
        ct_customer=ct_cust,
        ct_day=ct_day,
        ct_start_s=ct_start,
        ct_probes=ct_probes,
        ct_device=fresh(ct_cust.size),
        rings=tuple(rings),
        n_devices=next_device,
    )


# --- the drift plan (drawn up front from the seed, apart from the world and the scenario plan) --


def genuine_log_amount_sd(world: World) -> float:
    """The standard deviation of log(amount) over genuine rows, from the customers' profiles: a
    mixture of the customers' log-normals weighted by their transaction rates,
    ``sqrt(E[sigma_c^2] + Var[mu_c])``. (ATM amounts are rounded to 20s; the measured value is
    within a few percent.) :class:`AmountShift`'s ``sd`` is in this unit."""
    w = world.tx_rate / world.tx_rate.sum()
    mean = float(w @ world.amount_mu)
    var = float(w @ (world.amount_sigma**2 + (world.amount_mu - mean) ** 2))
    return float(np.sqrt(var))


@dataclass(frozen=True)
class PatternPlan:
    """The bursts of one :class:`NewPattern` item and the new merchants they use."""

    item: NewPattern
    scen: int  # index into DriftPlan.scenarios
    terminals: np.ndarray  # new terminal indices (>= the world's terminal count)
    customer: np.ndarray  # one entry per burst
    day: np.ndarray
    start_s: np.ndarray
    size: np.ndarray
    device: np.ndarray  # one fresh device per burst


@dataclass(frozen=True)
class DriftPlan:
    """What ``config.drift`` does, resolved against the world. With no drift it holds nothing and
    changes nothing (``scenarios``, ``term_cat`` and the counts are the world's own)."""

    patterns: tuple[PatternPlan, ...]
    shifts: tuple[tuple[AmountShift, float], ...]  # item, shift of log(amount)
    outages: tuple[tuple[TerminalOutage, np.ndarray], ...]  # item, down terminal indices
    scenarios: tuple[str, ...]  # SCENARIOS + the new patterns' names
    term_cat: np.ndarray  # categories of the world's terminals + the new merchants
    n_terminals: int
    n_devices: int
    reference_sd: float

    def log_shift(self, day: int) -> float:
        return float(sum(shift for item, shift in self.shifts if item.active(day)))

    def down(self, day: int, n_terminals: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(down, drop) terminal masks on ``day``, or ``None`` when no outage is on."""
        active = [(item, idx) for item, idx in self.outages if item.active(day)]
        if not active:
            return None
        down = np.zeros(n_terminals, dtype=bool)
        drop = np.zeros(n_terminals, dtype=bool)
        for item, idx in active:
            down[idx] = True
            if item.mode == "drop":
                drop[idx] = True
        return down, drop


def plan_drift(config: SimulationConfig, world: World, plan: Plan) -> DriftPlan:
    """Resolve ``config.drift``: new merchants, bursts and fresh devices of new patterns, the log
    shift of amount shifts, the down terminals of outages. Item ``i`` draws from its own stream,
    so the world, the scenario plan and every day before a drift starts are unchanged."""
    n_t = world.n_terminals
    next_device, next_term = plan.n_devices, n_t
    patterns: list[PatternPlan] = []
    shifts: list[tuple[AmountShift, float]] = []
    outages: list[tuple[TerminalOutage, np.ndarray]] = []
    scenarios = list(SCENARIOS)
    cats = [world.term_cat]
    ref_sd = genuine_log_amount_sd(world)
    kind_index = {k: i for i, k in enumerate(TERMINAL_KINDS)}
    for i, item in enumerate(config.drift):
        rng = _rng(config.seed, 3, i)
        stop = config.days if item.end is None else min(item.end, config.days)
        if isinstance(item, NewPattern):
            terminals = np.arange(next_term, next_term + item.merchants, dtype=np.int64)
            next_term += item.merchants
            cats.append(np.full(item.merchants, _CAT[item.category], dtype=world.term_cat.dtype))
            n = int(rng.poisson(item.rate * world.n_customers * (stop - item.day)))
            device = np.arange(next_device, next_device + n, dtype=np.int64)
            next_device += n
            scenarios.append(item.scenario)
            patterns.append(
                PatternPlan(
                    item=item,
                    scen=len(scenarios) - 1,
                    terminals=terminals,
                    customer=rng.integers(0, world.n_customers, n),
                    day=rng.integers(item.day, stop, n),
                    start_s=rng.uniform(item.hour_min * 3600, item.hour_max * 3600, n),
                    size=rng.integers(item.burst_min, item.burst_max + 1, n),
                    device=device,
                )
            )
        elif isinstance(item, AmountShift):
            shift = np.log(item.factor) if item.factor is not None else (item.sd or 0.0) * ref_sd
            shifts.append((item, float(shift)))
        else:
            if item.terminals:
                down = item.terminal_indices()
            else:
                wanted = [kind_index[k] for k in item.kinds]
                pool = np.flatnonzero(np.isin(world.term_kind, wanted))
                k = min(pool.size, max(1, round(item.share * pool.size)))
                down = np.sort(rng.choice(pool, size=k, replace=False))
            outages.append((item, down))
    return DriftPlan(
        patterns=tuple(patterns),
        shifts=tuple(shifts),
        outages=tuple(outages),
        scenarios=tuple(scenarios),
        term_cat=np.concatenate(cats),
        n_terminals=next_term,
        n_devices=next_device,
        reference_sd=ref_sd,
    )


# --- one day ---------------------------------------------------------------------------------

_FIELDS = ("cust", "sec", "term", "dev", "amount", "chan", "scen")
Rows = dict[str, np.ndarray]


def _rows(
    cust: Any, sec: Any, term: Any, dev: Any, amount: Any, chan: Any, scen: int | Any
) -> Rows:
    cust = np.asarray(cust, dtype=np.int64)
    return {
        "cust": cust,
        "sec": np.asarray(sec, dtype=np.float64),
        "term": np.asarray(term, dtype=np.int64),
        "dev": np.asarray(dev, dtype=np.int64),
        "amount": np.round(np.asarray(amount, dtype=np.float64), 2),
        "chan": np.broadcast_to(np.asarray(chan, dtype=np.int8), cust.shape).copy(),
        "scen": np.broadcast_to(np.asarray(scen, dtype=np.int8), cust.shape).copy(),
    }


def _concat(parts: list[Rows]) -> Rows:
    return {k: np.concatenate([p[k] for p in parts]) for k in _FIELDS}


class _Day:
    """Generates one day's rows; all randomness comes from the day's own stream."""

    def __init__(
        self, config: SimulationConfig, world: World, day: int, drift: DriftPlan | None = None
    ) -> None:
        self.cfg, self.w, self.day, self.drift = config, world, day, drift
        self.rng = _rng(config.seed, 2, day)
        self._drift_rng: np.random.Generator | None = None

    @property
    def drift_rng(self) -> np.random.Generator:
        """The day's drift stream (apart from ``rng``: a day without drift draws nothing here)."""
        if self._drift_rng is None:
            self._drift_rng = _rng(self.cfg.seed, 4, self.day)
        return self._drift_rng

    # -- building blocks (vectorized over rows) --
    def times(self, cust: np.ndarray) -> np.ndarray:
        n, w = cust.size, self.w
        hour = (w.center_hour[cust] + w.hour_sd[cust] * self.rng.standard_normal(n)) % 24
        off = self.rng.random(n) < self.cfg.off_hours_share
        hour = np.where(off, self.rng.random(n) * 24, hour)
        return np.minimum(hour * 3600, _DAY_S - 1.0)

    def usual_terminals(self, cust: np.ndarray) -> np.ndarray:
        u = self.rng.random(cust.size)
        idx = (self.w.cand_cum[cust] < u[:, None]).sum(1)
        return self.w.cand[cust, np.minimum(idx, self.w.cand.shape[1] - 1)]

    def own_devices(self, cust: np.ndarray) -> np.ndarray:
        n_dev = self.w.n_devices[cust]
        other = (self.rng.random(cust.size) * n_dev).astype(np.int64)
        k = np.where(self.rng.random(cust.size) < 0.75, 0, other)
        return self.w.device_offset[cust] + k

    def channels(self, term: np.ndarray, amount: np.ndarray) -> np.ndarray:
        kind = self.w.term_kind[term]
        u = self.rng.random(term.size)
        physical = np.where((amount <= 50) & (u < 0.7), _CH["contactless"], _CH["pos"])
        online = np.where(u < 0.08, _CH["moto"], _CH["ecom"])
        return np.select([kind == PHYSICAL, kind == ECOM], [physical, online], _CH["atm"])

    def factor(self, n: int, low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, n)

    def unusual_terminals(
        self,
        cust: np.ndarray,
        by_cat: tuple[np.ndarray, np.ndarray, np.ndarray],
        fallback: np.ndarray,
        far: float | None = None,
    ) -> np.ndarray:
        """A terminal in a category the customer never uses (and, with ``far``, far from home)."""
        pool, offsets, counts = by_cat
        weight = counts[None, :] * ~self.w.usual[cust]
        total = weight.sum(1)
        cum = np.cumsum(weight, axis=1)
        u = self.rng.random(cust.size) * total
        cat = np.minimum((cum <= u[:, None]).sum(1), len(CATEGORIES) - 1)
        tries = 32 if far is not None else 1
        pick = (self.rng.random((cust.size, tries)) * counts[cat][:, None]).astype(np.int64)
        cands = pool[np.minimum(offsets[cat][:, None] + pick, max(pool.size - 1, 0))]
        if far is not None:
            dist = np.linalg.norm(self.w.term_xy[cands] - self.w.home[cust][:, None, :], axis=2)
            ok = dist > far
            best = np.where(ok.any(1), ok.argmax(1), dist.argmax(1))
            chosen = cands[np.arange(cust.size), best]
        else:
            chosen = cands[:, 0]
        any_fallback = self.rng.integers(0, fallback.size, cust.size)
        return np.where(total > 0, chosen, fallback[any_fallback])

    # -- the day --
    def genuine(self) -> Rows:
        w, rng = self.w, self.rng
        weekday = (self.cfg.start_date + dt.timedelta(days=self.day)).weekday()
        rate = w.tx_rate * (self.cfg.weekend_factor if weekday >= 5 else 1.0)
        cust = np.repeat(np.arange(w.n_customers), rng.poisson(rate))
        sec = self.times(cust)
        term = self.usual_terminals(cust)
        amount = np.exp(w.amount_mu[cust] + w.amount_sigma[cust] * rng.standard_normal(cust.size))
        shift = self.drift.log_shift(self.day) if self.drift is not None else 0.0
        if shift:  # AmountShift drift: the same draws, moved by ``shift`` in log(amount)
            amount = amount * np.exp(shift)
        atm = w.term_kind[term] == ATM
        amount = np.where(atm, np.maximum(20.0, np.round(amount * 2 / 20) * 20), amount)
        amount = np.maximum(amount, 0.01)
        return _rows(
            cust, sec, term, self.own_devices(cust), amount, self.channels(term, amount), 0
        )

    def high_amount(self) -> Rows:
        cfg = self.cfg.high_amount
        cust = np.flatnonzero(self.rng.random(self.w.n_customers) < cfg.rate)
        term = self.usual_terminals(cust)
        amount = self.w.amount_mean[cust] * self.factor(cust.size, cfg.factor_min, cfg.factor_max)
        return _rows(
            cust,
            self.times(cust),
            term,
            self.own_devices(cust),
            amount,
            self.channels(term, amount),
            _SC["high_amount"],
        )

    def behavioral_anomaly(self) -> Rows:
        cfg = self.cfg.behavioral_anomaly
        cust = np.flatnonzero(self.rng.random(self.w.n_customers) < cfg.rate)
        sec = self.rng.uniform(0, _NIGHT_END_S, cust.size)
        term = self.unusual_terminals(
            cust, self.w.physical_by_cat, self.w.physical_pool, far=cfg.far_distance
        )
        amount = self.w.amount_mean[cust] * self.factor(
            cust.size, cfg.amount_factor_min, cfg.amount_factor_max
        )
        return _rows(
            cust,
            sec,
            term,
            self.own_devices(cust),
            amount,
            self.channels(term, amount),
            _SC["behavioral_anomaly"],
        )

    def card_testing(self, plan: Plan) -> Rows:
        cfg = self.cfg.card_testing
        ev = np.flatnonzero(plan.ct_day == self.day)
        probes = plan.ct_probes[ev]
        n_probe = int(probes.sum())
        # probes: seconds apart, tiny amounts, merchants in categories the customer never uses
        ev_of_probe = np.repeat(np.arange(ev.size), probes)
        gaps = self.rng.exponential(45.0, n_probe) + 1.0
        csum = np.cumsum(gaps)
        first = np.concatenate([[0], np.cumsum(probes)[:-1]]).astype(np.int64)
        before = np.where(first > 0, csum[first - 1], 0.0) if n_probe else np.zeros(0)
        probe_sec = plan.ct_start_s[ev][ev_of_probe] + csum - np.repeat(before, probes)
        probe_cust = plan.ct_customer[ev][ev_of_probe]
        probe_term = self.unusual_terminals(probe_cust, self.w.ecom_by_cat, self.w.ecom_pool)
        probe_amount = self.rng.uniform(cfg.tiny_min, cfg.tiny_max, n_probe)
        # then one large purchase within the hour
        last = np.zeros(ev.size) if not ev.size else probe_sec[first + probes - 1]
        large_sec = last + self.rng.uniform(120.0, 3600.0, ev.size)
        large_term = self.w.ecom_pool[self.rng.integers(0, self.w.ecom_pool.size, ev.size)]
        large_amount = self.rng.uniform(cfg.large_min, cfg.large_max, ev.size)
        return _rows(
            np.concatenate([probe_cust, plan.ct_customer[ev]]),
            np.minimum(np.concatenate([probe_sec, large_sec]), _DAY_S - 1.0),
            np.concatenate([probe_term, large_term]),
            np.concatenate([plan.ct_device[ev][ev_of_probe], plan.ct_device[ev]]),
            np.concatenate([probe_amount, large_amount]),
            _CH["ecom"],
            _SC["card_testing"],
        )

    def fraud_ring(self, plan: Plan) -> Rows:
        mean = self.cfg.fraud_ring.tx_per_member_day
        parts = []
        for ring in plan.rings:  # a few rings; everything inside is vectorized
            if not ring.start <= self.day < ring.end:
                continue
            cust = np.repeat(ring.members, self.rng.poisson(mean, ring.members.size))
            n = cust.size
            parts.append(
                _rows(
                    cust,
                    self.rng.uniform(0, _DAY_S - 1.0, n),
                    ring.terminals[self.rng.integers(0, ring.terminals.size, n)],
                    ring.devices[self.rng.integers(0, ring.devices.size, n)],
                    np.exp(np.log(120.0) + 0.6 * self.rng.standard_normal(n)),
                    _CH["ecom"],
                    _SC["fraud_ring"],
                )
            )
        return _concat(parts) if parts else _rows([], [], [], [], [], [], 0)

    def account_takeover(self, plan: Plan, rows: Rows) -> Rows:
        """Take over ``share`` of active victims' genuine rows (in place) and add one per day."""
        cfg = self.cfg.account_takeover
        active = (plan.ato_start <= self.day) & (self.day < plan.ato_end)
        device_of = np.full(self.w.n_customers, -1, dtype=np.int64)
        device_of[plan.ato_customer[active]] = plan.ato_device[active]
        victims = np.unique(plan.ato_customer[active])
        take = (
            (device_of[rows["cust"]] >= 0)
            & (rows["scen"] == 0)
            & (self.rng.random(rows["cust"].size) < cfg.share)
        )
        # one extra row per victim-day; terminal, device, amount, channel are set below
        extra = _rows(victims, self.times(victims), victims, victims, victims, 0, 0)
        rows = _concat([rows, extra])
        take = np.concatenate([take, np.ones(victims.size, dtype=bool)])
        idx = np.flatnonzero(take)
        cust = rows["cust"][idx]
        rows["term"][idx] = self.w.ecom_pool[self.rng.integers(0, self.w.ecom_pool.size, idx.size)]
        rows["dev"][idx] = device_of[cust]
        rows["amount"][idx] = np.round(
            self.w.amount_mean[cust]
            * self.factor(idx.size, cfg.amount_factor_min, cfg.amount_factor_max),
            2,
        )
        rows["chan"][idx] = _CH["ecom"]
        rows["scen"][idx] = _SC["account_takeover"]
        return rows

    def compromise(self, plan: Plan, rows: Rows, pending: dict[int, list[Rows]]) -> Rows:
        """Label every row at a compromised terminal; schedule cloned-card use of its cards."""
        cfg = self.cfg.compromised_terminal
        active = (plan.compromise_start <= self.day) & (self.day < plan.compromise_end)
        device_of = np.full(self.w.n_terminals, -1, dtype=np.int64)
        device_of[plan.compromise_terminal[active]] = plan.compromise_device[active]
        at_comp = device_of[rows["term"]] >= 0
        skimmed = at_comp & (rows["scen"] == 0)
        rows["scen"][skimmed] = _SC["compromised_terminal"]
        # cloned cards: 1 + Poisson(mean - 1) uses each in the following window, anywhere
        cards = rows["cust"][skimmed]
        n_use = 1 + self.rng.poisson(cfg.clones_per_card - 1, cards.size)
        cust = np.repeat(cards, n_use)
        dev = np.repeat(device_of[rows["term"][skimmed]], n_use)
        n = cust.size
        when = self.day + self.rng.integers(1, cfg.fraud_window_days + 1, n)
        term = self.w.card_present_pool[self.rng.integers(0, self.w.card_present_pool.size, n)]
        atm = self.w.term_kind[term] == ATM
        amount = np.where(
            atm,
            np.round(self.rng.uniform(100, 800, n) / 20) * 20,
            self.w.amount_mean[cust] * self.rng.uniform(2.0, 6.0, n),
        )
        sec = self.rng.uniform(7 * 3600, _DAY_S - 1.0, n)
        clones = _rows(
            cust, sec, term, dev, amount, self.channels(term, amount), _SC["compromised_terminal"]
        )
        for d in np.unique(when[when < self.cfg.days]):
            sel = when == d
            pending.setdefault(int(d), []).append({k: v[sel] for k, v in clones.items()})
        return rows

    def generate(self, plan: Plan, pending: dict[int, list[Rows]]) -> Rows:
        rows = _concat(
            [
                self.genuine(),
                self.high_amount(),
                self.behavioral_anomaly(),
                self.card_testing(plan),
                self.fraud_ring(plan),
                *pending.pop(self.day, []),
            ]
        )
        rows = self.account_takeover(plan, rows)
        rows = self.outage(rows)
        rows = self.compromise(plan, rows, pending)
        return self.new_patterns(rows)

    # -- drift (nothing happens, and nothing is drawn, on a day no drift item covers) --
    def outage(self, rows: Rows) -> Rows:
        """TerminalOutage: no row at a down terminal. In ``reroute`` mode a genuine row moves to
        another of the customer's usual terminals of the same kind that is up (lost if none)."""
        masks = None if self.drift is None else self.drift.down(self.day, self.w.n_terminals)
        if masks is None:
            return rows
        down, drop = masks
        w = self.w
        hit = down[rows["term"]]
        keep = ~hit
        idx = np.flatnonzero(hit & ~drop[rows["term"]] & (rows["scen"] == 0))
        if idx.size:
            cust, old = rows["cust"][idx], rows["term"][idx]
            cand = w.cand[cust]
            weight = np.diff(w.cand_cum[cust], axis=1, prepend=0.0)
            ok = ~down[cand] & (w.term_kind[cand] == w.term_kind[old][:, None])
            weight = np.where(ok, weight, 0.0)
            total = weight.sum(1)
            u = self.drift_rng.random(idx.size) * total
            j = (np.cumsum(weight, axis=1) <= u[:, None]).sum(1)
            last = cand.shape[1] - 1 - np.argmax(weight[:, ::-1] > 0, axis=1)
            new = cand[np.arange(idx.size), np.minimum(j, last)]
            moved = total > 0
            rows["term"][idx[moved]] = new[moved]
            keep[idx[moved]] = True
        return {k: v[keep] for k, v in rows.items()}

    def new_patterns(self, rows: Rows) -> Rows:
        """NewPattern: card-not-present bursts at new merchants (terminals past the world's)."""
        if self.drift is None or not self.drift.patterns:
            return rows
        parts = [rows]
        for p in self.drift.patterns:
            ev = np.flatnonzero(p.day == self.day)
            if not ev.size:
                continue
            item, rng = p.item, self.drift_rng
            size = p.size[ev]
            burst = np.repeat(np.arange(ev.size), size)
            n = burst.size
            csum = np.cumsum(rng.exponential(180.0, n) + 20.0)
            first = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
            before = np.where(first > 0, csum[first - 1], 0.0)
            parts.append(
                _rows(
                    p.customer[ev][burst],
                    np.minimum(p.start_s[ev][burst] + csum - before[burst], _DAY_S - 1.0),
                    p.terminals[rng.integers(0, p.terminals.size, n)],
                    p.device[ev][burst],
                    rng.uniform(item.amount_min, item.amount_max, n),
                    np.where(rng.random(n) < item.moto_share, _CH["moto"], _CH["ecom"]),
                    p.scen,
                )
            )
        return _concat(parts)

    def label_delay_us(self, n: int) -> np.ndarray:
        cfg = self.cfg.label_delay
        days = np.exp(np.log(cfg.median_days) + cfg.sigma * self.rng.standard_normal(n))
        days = np.clip(days, cfg.min_days, cfg.max_days)
        return np.round(days * _DAY_S * _US).astype(np.int64)


def _ids(prefix: str, n: int, min_width: int, total: int | None = None) -> pl.Series:
    """``prefix`` + zero-padded 0..total-1 (``total`` defaults to ``n``), as a String Series
    (gathered per day by index). The width depends on ``n`` alone, so ids drift adds past ``n``
    leave the first ``n`` as they were."""
    width = max(min_width, len(str(max(0, n - 1))))
    count = n if total is None else total
    expr = pl.concat_str(pl.lit(prefix), pl.int_range(count).cast(pl.String).str.zfill(width))
    return pl.select(expr).to_series()


@dataclass(frozen=True)
class _Strings:
    """Every string a day frame needs, built once and gathered by integer index."""

    customer: pl.Series
    terminal: pl.Series
    device: pl.Series
    terminal_category: pl.Series
    channel: pl.Series
    scenario: pl.Series
    currency: str

    @classmethod
    def build(
        cls, config: SimulationConfig, world: World, plan: Plan, drift: DriftPlan
    ) -> _Strings:
        return cls(
            customer=_ids("C", world.n_customers, 6),
            terminal=_ids("T", world.n_terminals, 7, drift.n_terminals),
            device=_ids("D", plan.n_devices, 8, drift.n_devices),
            terminal_category=pl.Series(CATEGORIES, dtype=pl.String).gather(drift.term_cat),
            channel=pl.Series(CHANNELS, dtype=pl.String),
            scenario=pl.Series(drift.scenarios, dtype=pl.String),
            currency=config.currency,
        )


def _frame(
    rows: Rows,
    day_start_us: int,
    first_tx: int,
    delay_us: Callable[[int], np.ndarray],
    strings: _Strings,
) -> pl.DataFrame:
    """Sort by time, make ts strictly increasing (deterministic order), build the schema frame."""
    ts = day_start_us + np.round(rows["sec"] * _US).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    rows = {k: v[order] for k, v in rows.items()}
    step = np.arange(order.size, dtype=np.int64)
    ts = np.maximum.accumulate(ts[order] - step) + step  # ties -> +1 us, order unchanged
    fraud = rows["scen"] > 0
    label = ts.copy()
    label[fraud] += delay_us(int(fraud.sum()))
    n = ts.size
    tx_id = pl.concat_str(
        pl.lit("X"), pl.int_range(first_tx, first_tx + n).cast(pl.String).str.zfill(12)
    )

    def utc(values: np.ndarray) -> pl.Series:
        return pl.Series(values).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")

    columns = [
        pl.select(tx_id).to_series(),
        utc(ts),
        strings.customer.gather(rows["cust"]),
        strings.terminal.gather(rows["term"]),
        strings.device.gather(rows["dev"]),
        pl.Series(rows["amount"]),
        pl.repeat(strings.currency, n, dtype=pl.String, eager=True),
        strings.terminal_category.gather(rows["term"]),
        strings.channel.gather(rows["chan"]),
        pl.Series(fraud.astype(np.int8)),
        strings.scenario.gather(rows["scen"]),
        utc(label),
    ]
    return pl.DataFrame([c.alias(name) for c, name in zip(columns, COLUMN_NAMES, strict=True)])


def _drift_manifest(
    config: SimulationConfig, drift: DriftPlan, strings: _Strings
) -> list[dict[str, Any]]:
    """What each drift item did, resolved: dates, new merchants, shifts, down terminals."""
    out: list[dict[str, Any]] = []
    patterns = iter(drift.patterns)
    shifts = iter(drift.shifts)
    outages = iter(drift.outages)
    for item in config.drift:
        last = config.days - 1 if item.end is None else min(item.end, config.days) - 1
        entry: dict[str, Any] = {
            "kind": item.kind,
            "day": item.day,
            "start_date": (config.start_date + dt.timedelta(days=item.day)).isoformat(),
            "end_date": (config.start_date + dt.timedelta(days=last)).isoformat(),
        }
        if isinstance(item, NewPattern):
            p = next(patterns)
            entry |= {
                "scenario": item.scenario,
                "terminals": strings.terminal.gather(p.terminals).to_list(),
                "bursts": int(p.customer.size),
            }
        elif isinstance(item, AmountShift):
            _, shift = next(shifts)
            entry |= {"log_shift": shift, "reference_sd": drift.reference_sd}
        else:
            _, down = next(outages)
            entry |= {"mode": item.mode, "terminals": strings.terminal.gather(down).to_list()}
        out.append(entry)
    return out


# --- the whole run ---------------------------------------------------------------------------


def simulate(
    config: SimulationConfig,
    out: Path,
    *,
    on_day: Callable[[int], None] | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write ``config.days`` daily Parquet files and ``manifest.json`` under ``out``; return the
    manifest. Replaces any dataset already at ``out``. ``on_day(i)`` is called after day ``i``
    (0-based) is written; ``timings`` (if given) receives seconds per phase.
    """
    out = Path(out)
    clock = {"world": 0.0, "generate": 0.0, "frame": 0.0, "write": 0.0}
    t0 = time.perf_counter()
    tx_dir = out / io.TX_DIR
    if tx_dir.is_dir():
        shutil.rmtree(tx_dir)
    world = build_world(config)
    plan = plan_scenarios(config, world)
    drift = plan_drift(config, world, plan)
    strings = _Strings.build(config, world, plan, drift)
    clock["world"] = time.perf_counter() - t0

    pending: dict[int, list[Rows]] = {}
    rows_per_day: dict[str, int] = {}
    fraud_per_day: dict[str, int] = {}
    by_scenario = np.zeros(len(drift.scenarios), dtype=np.int64)
    total = 0
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for d in range(config.days):
        t1 = time.perf_counter()
        day = config.start_date + dt.timedelta(days=d)
        gen = _Day(config, world, d, drift)
        rows = gen.generate(plan, pending)
        t2 = time.perf_counter()
        start_us = int((dt.datetime.combine(day, dt.time(), dt.UTC) - epoch).total_seconds()) * _US
        df = _frame(rows, start_us, total, gen.label_delay_us, strings)
        t3 = time.perf_counter()
        io.write_day(out, day, df)
        t4 = time.perf_counter()
        counts = np.bincount(rows["scen"], minlength=len(drift.scenarios))
        by_scenario += counts
        n = int(rows["scen"].size)
        total += n
        rows_per_day[day.isoformat()] = n
        fraud_per_day[day.isoformat()] = int(n - counts[0])
        clock["generate"] += t2 - t1
        clock["frame"] += t3 - t2
        clock["write"] += t4 - t3
        if on_day is not None:
            on_day(d)

    fraud_rows = int(by_scenario[1:].sum())
    manifest: dict[str, Any] = {
        "generator": "riskml.data.simulator",
        "riskml_version": __version__,
        "seed": config.seed,
        "params": config.model_dump(mode="json", exclude=None if config.drift else {"drift"}),
        "start_date": config.start_date.isoformat(),
        "end_date": config.end_date.isoformat(),
        "days": config.days,
        "customers": world.n_customers,
        "terminals": drift.n_terminals,
        "devices": drift.n_devices,
        "rows": total,
        "fraud_rows": fraud_rows,
        "fraud_rate": fraud_rows / total if total else 0.0,
        "scenarios": {
            name: {
                "rows": int(by_scenario[i]),
                "fraud_rate": int(by_scenario[i]) / total if total else 0.0,
            }
            for i, name in enumerate(drift.scenarios)
            if i > 0
        },
        "events": plan.events(),
        "rows_per_day": rows_per_day,
        "fraud_rows_per_day": fraud_per_day,
        "columns": list(COLUMN_NAMES),
    }
    if config.drift:
        manifest["drift"] = _drift_manifest(config, drift, strings)
    io.write_manifest(out, manifest)
    clock["total"] = time.perf_counter() - t0
    if timings is not None:
        timings.update(clock)
    return manifest
