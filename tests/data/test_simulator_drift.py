"""Drift injection in the simulator: each kind changes what it should from its day and nothing
before; determinism; the manifest; the Python and CLI syntax and its errors (issue #22)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from riskml.cli import app
from riskml.data import io
from riskml.data.schema import FRAUD_SCENARIOS, LEGIT
from riskml.data.simulator import (
    NEW_PATTERN_SCENARIO,
    AmountShift,
    NewPattern,
    SimulationConfig,
    TerminalOutage,
    build_world,
    genuine_log_amount_sd,
    parse_drift,
    simulate,
)

DAY_US = 86_400 * 1_000_000
START = 6  # the drift day in these tests (0-based)
BASE = SimulationConfig(
    n_customers=400, n_terminals=600, days=12, start_date=dt.date(2024, 3, 1), seed=11
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.*"))}


def _read(out: Path) -> pl.DataFrame:
    return io.read_transactions(out).with_columns(
        day=(pl.col("ts").dt.date() - pl.lit(BASE.start_date)).dt.total_days()
    )


class Run:
    def __init__(self, out: Path, config: SimulationConfig) -> None:
        self.out, self.config = out, config
        self.manifest = simulate(config, out)
        self.df = _read(out)

    def before(self, day: int = START) -> pl.DataFrame:
        return self.df.filter(pl.col("day") < day)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("drift")
    configs = {
        "base": BASE,
        "amount_shift": BASE.with_drift(f"amount_shift@day={START},sd=0.2"),
        "terminal_outage": BASE.with_drift(f"terminal_outage@day={START},days=3,share=0.05"),
        "new_pattern": BASE.with_drift(f"new_pattern@day={START},days=4,rate=0.02"),
    }
    return {name: Run(root / name, config) for name, config in configs.items()}


# --- nothing changes without drift, or before it starts ---------------------------------------


def test_no_drift_leaves_the_output_as_it_was(tmp_path: Path, runs: dict[str, Run]) -> None:
    base = runs["base"]
    assert "drift" not in base.manifest and "drift" not in base.manifest["params"]
    assert set(base.manifest["scenarios"]) == set(FRAUD_SCENARIOS)
    assert base.manifest["terminals"] == BASE.n_terminals
    simulate(BASE.model_copy(update={"drift": ()}), tmp_path / "empty")
    assert _files(tmp_path / "empty") == _files(base.out)


@pytest.mark.parametrize("kind", ["amount_shift", "terminal_outage", "new_pattern"])
def test_days_before_the_start_are_identical(kind: str, runs: dict[str, Run]) -> None:
    base, run = runs["base"], runs[kind]
    assert run.before().height > 1000
    assert run.before().equals(base.before())  # same rows, ids, amounts, labels
    a, b = _files(base.out), _files(run.out)
    days = [BASE.start_date + dt.timedelta(days=d) for d in range(BASE.days)]
    for d, day in enumerate(days):
        name = f"{io.TX_DIR}/{day.isoformat()}.parquet"
        assert (a[name] == b[name]) == (d < START), (kind, day)


def test_drift_is_deterministic_and_the_manifest_recreates_the_config(
    tmp_path: Path, runs: dict[str, Run]
) -> None:
    config = BASE.with_drift(
        f"new_pattern@day={START},rate=0.01",
        f"amount_shift@day={START + 2},factor=1.3",
        f"terminal_outage@day={START},days=2,share=0.1,kinds=physical+atm",
    )
    simulate(config, tmp_path / "a")
    simulate(config, tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    manifest = io.read_manifest(tmp_path / "a")
    assert SimulationConfig.model_validate(manifest["params"]) == config
    assert [d["kind"] for d in manifest["drift"]] == [
        "new_pattern",
        "amount_shift",
        "terminal_outage",
    ]
    assert manifest["drift"][1]["start_date"] == "2024-03-09"
    assert manifest["drift"][2]["end_date"] == "2024-03-08"
    # another seed: another drift
    other = config.model_copy(update={"seed": 12})
    simulate(other, tmp_path / "c")
    assert (
        io.read_manifest(tmp_path / "c")["drift"][2]["terminals"]
        != (manifest["drift"][2]["terminals"])
    )


# --- amount shift --------------------------------------------------------------------------


def test_amount_shift_moves_genuine_log_amounts_by_the_asked_sd(runs: dict[str, Run]) -> None:
    base, run = runs["base"], runs["amount_shift"]
    (entry,) = run.manifest["drift"]
    ref_sd = genuine_log_amount_sd(build_world(BASE))
    assert entry["reference_sd"] == pytest.approx(ref_sd)
    assert entry["log_shift"] == pytest.approx(0.2 * ref_sd)
    # the same rows throughout: only amounts (and the channels that follow them) change
    keys = ["tx_id", "ts", "customer_id", "terminal_id", "fraud_scenario"]
    assert run.df.select(keys).equals(base.df.select(keys))

    def genuine_log(df: pl.DataFrame, after: bool) -> np.ndarray:
        rows = df.filter((pl.col("fraud_scenario") == LEGIT) & ((pl.col("day") >= START) == after))
        return np.log(rows["amount"].to_numpy())

    # the knob's unit is the measured sd of genuine log amounts (within a few percent)
    assert genuine_log(base.df, after=False).std() == pytest.approx(ref_sd, rel=0.06)
    shift = genuine_log(run.df, after=True).mean() - genuine_log(base.df, after=True).mean()
    assert shift / ref_sd == pytest.approx(0.2, abs=0.01)
    # row by row: every genuine non-ATM amount is scaled by exp(log_shift) (up to the cents)
    joined = base.df.join(run.df, on="tx_id", suffix="_d").filter(
        (pl.col("fraud_scenario") == LEGIT)
        & (pl.col("channel") != "atm")
        & (pl.col("day") >= START)
    )
    assert joined.height > 2000
    ratio = joined["amount_d"].to_numpy() / joined["amount"].to_numpy()
    big = joined["amount"].to_numpy() > 5  # the cents matter little
    assert np.allclose(ratio[big], np.exp(entry["log_shift"]), rtol=2e-3)
    # fraud amounts are left alone
    fraud = base.df.join(run.df, on="tx_id", suffix="_d").filter(
        pl.col("fraud_scenario").is_in(["high_amount", "card_testing", "fraud_ring"])
    )
    assert fraud.height > 0 and (fraud["amount"] == fraud["amount_d"]).all()


def test_amount_shift_factor_and_end_day(tmp_path: Path, runs: dict[str, Run]) -> None:
    run = Run(tmp_path, BASE.with_drift(AmountShift(day=START, days=2, factor=2.0)))
    joined = runs["base"].df.join(run.df, on="tx_id", suffix="_d")
    joined = joined.filter(
        (pl.col("fraud_scenario") == LEGIT) & (pl.col("channel") != "atm") & (pl.col("amount") > 5)
    )
    ratio = (joined["amount_d"] / joined["amount"]).to_numpy()
    window = joined["day"].is_between(START, START + 1).to_numpy()
    assert np.allclose(ratio[window], 2.0, rtol=2e-3)
    assert np.allclose(ratio[~window], 1.0)  # before and after the two days


# --- terminal outage ------------------------------------------------------------------------


def test_outage_terminals_have_no_rows_in_the_window(runs: dict[str, Run]) -> None:
    base, run = runs["base"], runs["terminal_outage"]
    (entry,) = run.manifest["drift"]
    down = entry["terminals"]
    assert len(down) == round(0.05 * BASE.n_terminals)
    assert (entry["start_date"], entry["end_date"]) == ("2024-03-07", "2024-03-09")
    at_down = pl.col("terminal_id").is_in(down)
    window = pl.col("day").is_between(START, START + 2)
    assert run.df.filter(at_down & window).height == 0
    assert base.df.filter(at_down & window).height > 50  # they were busy
    assert run.df.filter(at_down & (pl.col("day") > START + 2)).height > 50  # and are back
    # reroute: customers pay elsewhere, so genuine volume barely moves
    legit = pl.col("fraud_scenario") == LEGIT
    moved = base.df.filter(at_down & window & legit).height
    lost = base.df.filter(window & legit).height - run.df.filter(window & legit).height
    assert 0 <= lost < 0.2 * moved
    # ... at a terminal of the same kind (card-present stays card-present)
    channels = run.df.filter(window)["channel"].value_counts().sort("channel")
    before = base.df.filter(window)["channel"].value_counts().sort("channel")
    for ch in ("atm", "ecom"):
        n_after = channels.filter(pl.col("channel") == ch)["count"].item()
        n_before = before.filter(pl.col("channel") == ch)["count"].item()
        assert abs(n_after - n_before) <= 0.2 * n_before


def test_named_outage_in_drop_mode_removes_exactly_those_rows(
    tmp_path: Path, runs: dict[str, Run]
) -> None:
    base = runs["base"]
    day0 = base.df.filter(pl.col("day") == START)
    busiest = day0["terminal_id"].value_counts(sort=True)["terminal_id"].head(3).to_list()
    outage = TerminalOutage(day=START, days=1, terminals=tuple(busiest), mode="drop")
    run = Run(tmp_path, BASE.with_drift(outage))
    assert run.manifest["drift"][0]["terminals"] == sorted(busiest)
    got = run.df.filter(pl.col("day") == START)
    assert got.filter(pl.col("terminal_id").is_in(busiest)).height == 0
    keys = ["customer_id", "terminal_id", "amount", "fraud_scenario"]
    expected = day0.filter(~pl.col("terminal_id").is_in(busiest))
    assert got.height == expected.height < day0.height
    assert got.select(keys).sort(keys).equals(expected.select(keys).sort(keys))
    assert run.df.filter(pl.col("day") == START + 1)["terminal_id"].is_in(busiest).any()


# --- new fraud pattern ----------------------------------------------------------------------


def test_new_pattern_rows_start_on_their_day_and_are_labelled_late(runs: dict[str, Run]) -> None:
    base, run = runs["base"], runs["new_pattern"]
    (entry,) = run.manifest["drift"]
    rows = run.df.filter(pl.col("fraud_scenario") == NEW_PATTERN_SCENARIO)
    assert rows.height == run.manifest["scenarios"][NEW_PATTERN_SCENARIO]["rows"] > 30
    assert rows["day"].min() == START and rows["day"].max() == START + 3  # days=4
    assert (rows["is_fraud"] == 1).all()
    delay = (rows["label_available_at"] - rows["ts"]).dt.total_microseconds().to_numpy() / DAY_US
    bounds = BASE.label_delay
    assert delay.min() >= bounds.min_days and delay.max() <= bounds.max_days
    assert 3 < np.median(delay) < 30
    # its signature: new merchants never seen before, CNP, mid-range amounts, early morning
    new_terminals = entry["terminals"]
    assert len(new_terminals) == 5 and run.manifest["terminals"] == BASE.n_terminals + 5
    assert set(rows["terminal_id"]) <= set(new_terminals)
    assert not base.df["terminal_id"].is_in(new_terminals).any()
    assert run.df.filter(pl.col("terminal_id").is_in(new_terminals))["is_fraud"].min() == 1
    assert set(rows["channel"]) == {"ecom", "moto"}
    assert set(rows["merchant_category"]) == {"digital_goods"}
    assert rows["amount"].min() >= 80 and rows["amount"].max() <= 400  # type: ignore[operator]
    assert rows["ts"].dt.hour().is_between(5, 8).all()
    # one fresh device per burst of 2-5 purchases, used by nobody else
    per_device = rows.group_by("device_id").agg(pl.len(), pl.col("customer_id").n_unique())
    assert per_device.height == entry["bursts"]
    assert per_device["len"].is_between(2, 5).all() and (per_device["customer_id"] == 1).all()
    others = run.df.filter(pl.col("fraud_scenario") != NEW_PATTERN_SCENARIO)
    assert not others["device_id"].is_in(rows["device_id"].to_list()).any()
    # the rest of the day is the no-drift day (the pattern is added, nothing is replaced)
    keys = ["customer_id", "terminal_id", "amount", "fraud_scenario"]
    assert others.select(keys).equals(base.df.select(keys))


def test_new_pattern_knobs(tmp_path: Path) -> None:
    item = NewPattern(
        day=2,
        scenario="gift_card_burst",
        rate=0.02,
        merchants=2,
        category="electronics",
        amount_min=200,
        amount_max=250,
        hour_min=22,
        hour_max=23,
        moto_share=1.0,
    )
    run = Run(tmp_path, BASE.model_copy(update={"days": 4}).with_drift(item))
    rows = run.df.filter(pl.col("fraud_scenario") == "gift_card_burst")
    assert rows.height > 10 and rows["day"].min() == 2
    assert set(rows["channel"]) == {"moto"} and set(rows["merchant_category"]) == {"electronics"}
    assert rows["terminal_id"].n_unique() <= 2
    assert rows["amount"].is_between(200, 250).all()
    assert (rows["ts"].dt.hour() >= 22).all()


# --- the syntax: Python and CLI, and bad specs ------------------------------------------------


def test_specs_and_objects_are_the_same_config() -> None:
    from_specs = SimulationConfig.demo(
        drift=[
            "new_pattern@day=20",
            "amount_shift@day=20,sd=0.2",
            "terminal_outage@day=20,days=3,share=0.05,kinds=physical+atm",
        ]
    )
    from_objects = SimulationConfig.demo().with_drift(
        NewPattern(day=20),
        AmountShift(day=20, sd=0.2),
        TerminalOutage(day=20, days=3, share=0.05, kinds=("physical", "atm")),
    )
    assert from_specs == from_objects
    assert SimulationConfig.demo(drift="amount_shift@day=3,factor=2").drift == (
        AmountShift(day=3, factor=2.0),
    )
    assert SimulationConfig(drift=[{"kind": "new_pattern", "day": 1}]).drift == (NewPattern(day=1),)
    outage = parse_drift("terminal_outage@day=1,terminals=T0000001+T0000009")
    assert isinstance(outage, TerminalOutage)
    assert outage.terminals == ("T0000001", "T0000009") and outage.mode == "reroute"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus@day=3", "unknown kind 'bogus'"),
        ("new_pattern", "day: Field required"),
        ("new_pattern@day", "expected key=value"),
        ("new_pattern@day=1,day=2", "day given twice"),
        ("amount_shift@day=1,foo=2", "unknown key 'foo'; amount_shift takes day, days, sd, factor"),
        ("amount_shift@day=1", "give exactly one of sd or factor"),
        ("amount_shift@day=1,sd=0.2,factor=2", "give exactly one of sd or factor"),
        ("amount_shift@day=1,sd=abc", "sd: Input should be a valid number"),
        ("amount_shift@day=1,sd=nan", "sd: Input should be a finite number"),
        ("amount_shift@day=-1,sd=0.2", "day: Input should be greater than or equal to 0"),
        ("terminal_outage@day=1,share=1.5", "share: Input should be less than or equal to 1"),
        ("terminal_outage@day=1,share=0.1,terminals=T1", "give share or terminals, not both"),
        ("terminal_outage@day=1,terminals=42", "expected an id like T0000042"),
        ("terminal_outage@day=1,mode=later", "mode: Input should be 'reroute' or 'drop'"),
        ("terminal_outage@day=1,kinds=kiosk", "kinds.0: Input should be"),
        ("new_pattern@day=1,category=casino", "category 'casino': choose from"),
        ("new_pattern@day=1,scenario=card_testing", "'card_testing' is an existing scenario"),
        ("new_pattern@day=1,burst_min=6,burst_max=2", "burst_min (6) > burst_max (2)"),
    ],
)
def test_bad_specs_say_why(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="drift") as info:
        parse_drift(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_config_level_drift_errors() -> None:
    with pytest.raises(ValidationError, match="starts on day 12 but the simulation has 12 days"):
        BASE.with_drift("new_pattern@day=12")
    with pytest.raises(ValidationError, match="no terminal T0000600 among 600"):
        BASE.with_drift("terminal_outage@day=1,terminals=T0000600")
    with pytest.raises(ValidationError, match="share a scenario name"):
        BASE.with_drift("new_pattern@day=1", "new_pattern@day=2")
    with pytest.raises(ValidationError, match="extra"):
        SimulationConfig(drift=[{"kind": "amount_shift", "day": 1, "sd": 1, "bogus": 2}])


def test_cli_simulate_with_drift(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    args = ["simulate", "--out", str(out), "--customers", "120", "--terminals", "200"]
    args += ["--days", "4", "--seed", "5", "--drift", "new_pattern@day=2,rate=0.05"]
    args += ["--drift", "terminal_outage@day=1,days=2,share=0.1,mode=drop"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert NEW_PATTERN_SCENARIO in result.output
    manifest = json.loads((out / io.MANIFEST).read_text())
    assert [d["kind"] for d in manifest["drift"]] == ["new_pattern", "terminal_outage"]
    df = io.read_transactions(out, validate=True).with_columns(
        day=(pl.col("ts").dt.date() - pl.lit(dt.date(2024, 1, 1))).dt.total_days()
    )
    new = df.filter(pl.col("fraud_scenario") == NEW_PATTERN_SCENARIO)
    assert new.height > 0 and new["day"].min() == 2
    down = manifest["drift"][1]["terminals"]
    assert len(down) == 20
    assert df.filter(pl.col("day").is_between(1, 2) & pl.col("terminal_id").is_in(down)).is_empty()


@pytest.mark.parametrize(
    ("drift", "message"),
    [
        ("amount_shift@day=1", "give exactly one of sd or factor"),
        ("shift@day=1", "unknown kind 'shift'"),
        ("new_pattern@day=9", "starts on day 9 but the simulation has 3 days"),
    ],
)
def test_cli_simulate_rejects_a_bad_drift_with_exit_2(
    tmp_path: Path, drift: str, message: str
) -> None:
    args = ["simulate", "--out", str(tmp_path), "--customers", "50", "--terminals", "40"]
    result = CliRunner().invoke(app, [*args, "--days", "3", "--drift", drift])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / io.MANIFEST).exists()
