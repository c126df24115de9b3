"""The synthetic payments simulator: determinism, scenario signatures, late labels, layout, CLI."""

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
from riskml.data.schema import FRAUD_SCENARIOS, LEGIT, validate_transactions
from riskml.data.simulator import (
    CATEGORIES,
    Plan,
    SimulationConfig,
    World,
    build_world,
    plan_scenarios,
    simulate,
)

DAY_US = 86_400 * 1_000_000

#: Small, but every scenario fires many times (rates raised well above the defaults).
SMALL = SimulationConfig(
    n_customers=400,
    n_terminals=600,
    days=30,
    start_date=dt.date(2024, 3, 1),
    seed=11,
    high_amount={"rate": 0.01},
    compromised_terminal={"rate": 2e-3},
    account_takeover={"rate": 3e-3},
    card_testing={"rate": 3e-3},
    fraud_ring={"rings_per_1000_customers": 5.0},
    behavioral_anomaly={"rate": 0.01},
)


class Sim:
    def __init__(self, out: Path, config: SimulationConfig) -> None:
        self.out, self.config = out, config
        self.manifest = simulate(config, out)
        self.world: World = build_world(config)
        self.plan: Plan = plan_scenarios(config, self.world)
        self.df = io.read_transactions(out).with_columns(
            cust=pl.col("customer_id").str.slice(1).cast(pl.Int64),
            term=pl.col("terminal_id").str.slice(1).cast(pl.Int64),
            dev=pl.col("device_id").str.slice(1).cast(pl.Int64),
            day=(pl.col("ts").dt.date() - pl.lit(config.start_date)).dt.total_days(),
        )

    def scenario(self, name: str) -> pl.DataFrame:
        return self.df.filter(pl.col("fraud_scenario") == name)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Sim:
    return Sim(tmp_path_factory.mktemp("sim"), SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.*"))}


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    config = SMALL.model_copy(update={"days": 8})
    simulate(config, tmp_path / "a")
    simulate(config, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 9 and "manifest.json" in a
    assert a == b


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    config = SMALL.model_copy(update={"days": 4})
    simulate(config, tmp_path / "a")
    simulate(config.model_copy(update={"seed": 12}), tmp_path / "b")
    a, b = io.read_transactions(tmp_path / "a"), io.read_transactions(tmp_path / "b")
    assert a["customer_id"].to_list() != b["customer_id"].to_list()
    assert a["amount"].to_list() != b["amount"].to_list()


def test_rerun_into_same_dir_replaces_the_dataset(tmp_path: Path) -> None:
    simulate(SMALL.model_copy(update={"days": 5}), tmp_path)
    simulate(SMALL.model_copy(update={"days": 2}), tmp_path)
    assert len(io.transaction_files(tmp_path)) == 2
    assert io.read_manifest(tmp_path)["days"] == 2


# --- layout, schema, labels, manifest ----------------------------------------------------------


def test_one_schema_valid_file_per_day_holding_only_that_day(sim: Sim) -> None:
    files = io.transaction_files(sim.out)
    days = [SMALL.start_date + dt.timedelta(days=i) for i in range(SMALL.days)]
    assert [f.name for f in files] == [f"{d.isoformat()}.parquet" for d in days]
    for day, path in zip(days, files, strict=True):
        df = validate_transactions(pl.read_parquet(path))
        assert df.height == sim.manifest["rows_per_day"][day.isoformat()] > 0
        assert df["ts"].dt.date().unique().to_list() == [day]
        assert df["ts"].is_sorted() and df["tx_id"].is_sorted()


def test_ids_and_vocabularies(sim: Sim) -> None:
    df = sim.df
    assert df["tx_id"].n_unique() == df.height
    assert df["tx_id"].is_sorted()  # global counter in time order, across days
    assert df["customer_id"].str.contains(r"^C\d{6}$").all()
    assert df["terminal_id"].str.contains(r"^T\d{7}$").all()
    assert df["device_id"].str.contains(r"^D\d{8}$").all()
    assert set(df["channel"].unique()) == {"pos", "contactless", "ecom", "moto", "atm"}
    assert set(df["merchant_category"].unique()) <= set(CATEGORIES)
    assert set(df["fraud_scenario"].unique()) == {LEGIT, *FRAUD_SCENARIOS}
    assert (df["is_fraud"] == (df["fraud_scenario"] != LEGIT).cast(pl.Int8)).all()
    assert df.filter(pl.col("channel") == "atm")["merchant_category"].unique().to_list() == ["cash"]


def test_labels_arrive_late_within_bounds(sim: Sim) -> None:
    bounds = SMALL.label_delay
    delay = sim.df.select(
        pl.col("is_fraud"), d=(pl.col("label_available_at") - pl.col("ts")).dt.total_microseconds()
    )
    legit, fraud = delay.filter(pl.col("is_fraud") == 0), delay.filter(pl.col("is_fraud") == 1)
    assert (legit["d"] == 0).all()
    days = fraud["d"].to_numpy() / DAY_US
    assert days.min() >= bounds.min_days and days.max() <= bounds.max_days
    assert days.min() > 0
    assert 5 < np.median(days) < 20  # days to weeks around the configured median


def test_manifest_matches_the_data(sim: Sim) -> None:
    m = json.loads((sim.out / io.MANIFEST).read_text())
    df = sim.df
    assert m["rows"] == df.height == sum(m["rows_per_day"].values())
    assert m["seed"] == SMALL.seed and m["params"]["n_customers"] == 400
    assert m["riskml_version"]
    counts = dict(df.group_by("fraud_scenario").len().iter_rows())
    for name in FRAUD_SCENARIOS:
        assert m["scenarios"][name]["rows"] == counts[name] > 0
        assert m["scenarios"][name]["fraud_rate"] == pytest.approx(counts[name] / df.height)
    assert m["fraud_rate"] == pytest.approx(df["is_fraud"].mean())


def test_genuine_behaviour_is_local_and_in_active_hours(sim: Sim) -> None:
    legit = sim.scenario(LEGIT)
    w = sim.world
    cust, term = legit["cust"].to_numpy(), legit["term"].to_numpy()
    card_present = w.term_kind[term] != 1
    dist = np.linalg.norm(w.term_xy[term] - w.home[cust], axis=1)[card_present]
    assert np.quantile(dist, 0.9) < 3 * SMALL.radius  # near home
    assert np.median(dist) < SMALL.grid_size / 10
    # each genuine device belongs to exactly one customer, and is one of that customer's own
    assert (legit.group_by("dev").agg(pl.col("cust").n_unique())["cust"] == 1).all()
    offset, n_dev = w.device_offset[cust], w.n_devices[cust]
    dev = legit["dev"].to_numpy()
    assert ((dev >= offset) & (dev < offset + n_dev)).all()
    # mostly in active hours: within 2.5 sd of the customer's centre hour (circular)
    hour = legit["ts"].dt.hour().to_numpy() + legit["ts"].dt.minute().to_numpy() / 60
    gap = np.abs((hour - w.center_hour[cust] + 12) % 24 - 12)
    assert np.mean(gap <= 2.5 * w.hour_sd[cust]) > 0.9
    # and mostly in the customer's usual categories
    cat = np.array([CATEGORIES.index(c) for c in legit["merchant_category"].to_list()])
    assert w.usual[cust, cat].mean() > 0.7  # few terminals nearby in this small world


# --- scenario signatures -----------------------------------------------------------------------


def test_high_amount_is_far_above_the_customers_profile(sim: Sim) -> None:
    median = sim.scenario(LEGIT).group_by("cust").agg(med=pl.col("amount").median(), n=pl.len())
    rows = sim.scenario("high_amount").join(median.filter(pl.col("n") >= 5), on="cust")
    assert rows.height > 50
    assert (rows["amount"] > 4 * rows["med"]).all()
    # nothing else is unusual: the customer's own device
    w = sim.world
    cust, dev = rows["cust"].to_numpy(), rows["dev"].to_numpy()
    assert (
        (dev >= w.device_offset[cust]) & (dev < w.device_offset[cust] + w.n_devices[cust])
    ).all()


def test_compromised_terminal_window_is_all_fraud_and_cards_are_cloned(sim: Sim) -> None:
    plan, df = sim.plan, sim.df
    cfg = SMALL.compromised_terminal
    assert plan.compromise_terminal.size > 10
    checked = cloned = 0
    for term, start, end in zip(
        plan.compromise_terminal, plan.compromise_start, plan.compromise_end, strict=True
    ):
        window = df.filter((pl.col("term") == term) & pl.col("day").is_between(start, end - 1))
        assert (window["is_fraud"] == 1).all()
        checked += window.height
        # every card skimmed there is used fraudulently elsewhere in the following window
        skimmed = window.filter(pl.col("fraud_scenario") == "compromised_terminal")
        for cust, day in skimmed.select("cust", "day").iter_rows():
            if day + cfg.fraud_window_days >= SMALL.days:
                continue
            later = df.filter(
                (pl.col("cust") == cust)
                & (pl.col("fraud_scenario") == "compromised_terminal")
                & (pl.col("term") != term)
                & pl.col("day").is_between(day + 1, day + cfg.fraud_window_days)
            )
            assert later.height >= 1
            assert set(later["channel"]) <= {"pos", "contactless", "atm"}  # cloned card present
            cloned += 1
    assert checked > 20 and cloned > 10


def test_account_takeover_uses_a_device_never_seen_for_the_customer(sim: Sim) -> None:
    ato, df = sim.scenario("account_takeover"), sim.df
    assert ato.height > 50
    assert (ato["channel"] == "ecom").all()
    owned = df.filter(pl.col("fraud_scenario") != "account_takeover").select("cust", "dev")
    assert ato.join(owned, on=["cust", "dev"], how="semi").height == 0
    # never used by the customer before the takeover started
    first = ato.group_by("cust", "dev").agg(pl.col("ts").min())
    assert first.join(owned, on=["cust", "dev"], how="semi").height == 0
    # inflated amounts relative to the profile
    ratio = ato["amount"].to_numpy() / sim.world.amount_mean[ato["cust"].to_numpy()]
    cfg = SMALL.account_takeover
    assert (ratio >= cfg.amount_factor_min * 0.99).all()
    assert (ratio <= cfg.amount_factor_max * 1.01).all()
    # only part of the victim's transactions during the takeover are fraudulent
    active = (
        pl.DataFrame(
            {"cust": sim.plan.ato_customer, "s": sim.plan.ato_start, "e": sim.plan.ato_end}
        )
        .join(df, on="cust")
        .filter(pl.col("day").is_between(pl.col("s"), pl.col("e") - 1))
        .unique("tx_id")
    )
    share = (active["fraud_scenario"] == "account_takeover").mean()
    assert 0.3 < share < 0.95  # type: ignore[operator]


def test_card_testing_is_tiny_probes_then_a_large_one(sim: Sim) -> None:
    cfg = SMALL.card_testing
    bursts = (
        sim.scenario("card_testing")
        .sort("ts")
        .group_by("cust", "dev")
        .agg(pl.col("amount"), pl.col("ts"), pl.col("merchant_category"), pl.col("channel"))
    )
    assert bursts.height == sim.plan.ct_customer.size > 20
    w = sim.world
    for cust, _dev, amounts, ts, cats, channels in bursts.iter_rows():
        probes, large = amounts[:-1], amounts[-1]
        assert cfg.probes_min <= len(probes) <= cfg.probes_max
        assert all(cfg.tiny_min <= a <= cfg.tiny_max for a in probes)
        assert cfg.large_min <= large <= cfg.large_max
        assert ts[-1] - ts[0] < dt.timedelta(hours=2)
        assert not any(w.usual[cust, CATEGORIES.index(c)] for c in cats[:-1])  # unusual merchants
        assert set(channels) == {"ecom"}


def test_fraud_ring_devices_are_shared_by_many_customers(sim: Sim) -> None:
    ring = sim.scenario("fraud_ring")
    per_device = ring.group_by("dev").agg(pl.col("cust").n_unique(), pl.col("term").n_unique())
    assert per_device.height >= 2 * len(sim.plan.rings) >= 4
    assert (per_device["cust"] >= 3).all()
    assert per_device["cust"].median() >= 5  # type: ignore[operator]
    # genuine devices are never shared
    legit = sim.scenario(LEGIT).group_by("dev").agg(pl.col("cust").n_unique())
    assert legit["cust"].max() == 1
    # a few shared merchants per ring
    assert ring["term"].n_unique() <= sum(r.terminals.size for r in sim.plan.rings)


def test_behavioral_anomaly_is_night_far_and_unusual(sim: Sim) -> None:
    rows = sim.scenario("behavioral_anomaly")
    assert rows.height > 50
    assert (rows["ts"].dt.hour() < 5).all()
    w = sim.world
    cust, term = rows["cust"].to_numpy(), rows["term"].to_numpy()
    dist = np.linalg.norm(w.term_xy[term] - w.home[cust], axis=1)
    assert (dist > SMALL.behavioral_anomaly.far_distance).all()
    cat = np.array([CATEGORIES.index(c) for c in rows["merchant_category"].to_list()])
    assert not w.usual[cust, cat].any()


# --- config and presets ------------------------------------------------------------------------


def test_config_rejects_unknown_and_inconsistent_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        SimulationConfig(n_customer=10)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="extra"):
        SimulationConfig(card_testing={"rate": 0.1, "bogus": 1})
    with pytest.raises(ValidationError, match="probes_min"):
        SimulationConfig(card_testing={"probes_min": 9, "probes_max": 3})
    with pytest.raises(ValidationError):
        SimulationConfig(days=0)


def test_presets() -> None:
    demo, bench = SimulationConfig.demo(), SimulationConfig.benchmark(seed=3)
    assert (demo.n_customers, demo.n_terminals, demo.days) == (2000, 2000, 60)
    assert (bench.n_customers, bench.n_terminals, bench.days, bench.seed) == (5000, 10_000, 183, 3)
    assert SimulationConfig.preset("demo", days=5).days == 5
    with pytest.raises(ValueError, match="preset"):
        SimulationConfig.preset("huge")
    # expected volume of the benchmark preset: ~1.7M rows
    w = build_world(bench)
    expected = w.tx_rate.sum() * bench.days * (5 + 2 * bench.weekend_factor) / 7
    assert 1.5e6 < expected < 1.9e6


def test_demo_preset_fraud_rate_is_realistic(tmp_path: Path) -> None:
    m = simulate(SimulationConfig.demo(days=20), tmp_path)
    assert 0.005 < m["fraud_rate"] < 0.015
    assert all(s["rows"] > 0 for s in m["scenarios"].values())


def test_on_day_is_called_once_per_day(tmp_path: Path) -> None:
    seen: list[int] = []
    simulate(SMALL.model_copy(update={"days": 3}), tmp_path, on_day=seen.append)
    assert seen == [0, 1, 2]


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_simulate(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    args = ["simulate", "--out", str(out), "--customers", "120", "--terminals", "200"]
    args += ["--days", "3", "--start-date", "2024-02-27", "--seed", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fraud rate" in result.output and "rows" in result.output
    manifest = io.read_manifest(out)
    assert manifest["params"]["n_customers"] == 120 and manifest["seed"] == 5
    assert [f.name for f in io.transaction_files(out)] == [
        "2024-02-27.parquet",
        "2024-02-28.parquet",
        "2024-02-29.parquet",
    ]
    assert io.read_transactions(out, validate=True).height == manifest["rows"]


def test_cli_simulate_rejects_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--preset", "huge"])
    assert result.exit_code != 0
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--start-date", "03/01/24"])
    assert result.exit_code != 0
    assert not (tmp_path / io.MANIFEST).exists()
