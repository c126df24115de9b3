"""Label events fold into the online terminal, device and customer risk at once, and the rows
equal the batch features rebuilt at the same time (snapshot volumes, every label known by
then), on SQLite and on Redis; idempotent, order-free, and safe with a materialisation or a second
writer in between."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from riskml.features.definitions import RISK_WINDOWS
from riskml.features.labels import (
    APPLIED,
    DUPLICATE,
    ENTITIES,
    LATE,
    UNMATCHED,
    Label,
    LabelFold,
    Ledger,
    Target,
    apply_labels,
    effective_labels,
    fraud_at,
    label_of,
    resolve,
    risk_rows_by_kind,
)
from riskml.features.online import OnlineFeatures
from riskml.streaming.events import LabelEvent
from tests.streaming.fold_support import (
    SNAPSHOT,
    SNAPSHOT_DAY,
    TEST_REDIS,
    World,
    drop_redis_project,
    make_store,
    redis_up,
    store_over,
    world,
)
from tests.support.services import need

US = 1_000_000
#: the time the test's labels are folded at: 20 h after the snapshot
AT = SNAPSHOT + dt.timedelta(hours=20)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> World:
    return world(tmp_path_factory.mktemp("labels-world"))


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, sim: World, tmp_path: Path) -> Iterator[Any]:
    yield from store_over(sim, tmp_path / "store", request.param)


def label_events(tx: pl.DataFrame) -> list[LabelEvent]:
    """The dataset's fraud labels known by AT (from 31 days before the snapshot: the ones the
    stream saw before the snapshot too), three reversals after the snapshot, genuine labels of
    some genuine transactions; half carry only the customer, half also terminal and time."""
    lo = SNAPSHOT - dt.timedelta(days=31)
    frauds = tx.filter(
        (pl.col("is_fraud") == 1)
        & (pl.col("label_available_at") > lo)
        & (pl.col("label_available_at") <= AT)
    )
    events = []
    for i, row in enumerate(frauds.iter_rows(named=True)):
        extra = {} if i % 2 else {"tx_ts": row["ts"], "terminal_id": row["terminal_id"]}
        events.append(
            LabelEvent.of(
                row["tx_id"],
                "chargeback" if i % 3 else "confirmed_fraud",
                row["label_available_at"],
                customer_id=row["customer_id"],
                **extra,
            )
        )
    window = frauds.filter(
        (pl.col("label_available_at") <= SNAPSHOT)
        & (pl.col("ts") >= SNAPSHOT - dt.timedelta(days=30))
    )
    assert window.height >= 3
    for row in window.head(3).iter_rows(named=True):  # reversed after the snapshot
        events.append(
            LabelEvent.of(
                row["tx_id"],
                "confirmed_genuine",
                SNAPSHOT + dt.timedelta(hours=2),
                customer_id=row["customer_id"],
            )
        )
    genuine = tx.filter(
        (pl.col("is_fraud") == 0)
        & (pl.col("ts") < SNAPSHOT)
        & (pl.col("ts") >= SNAPSHOT - dt.timedelta(days=5))
    )
    for row in genuine.head(20).iter_rows(named=True):
        events.append(
            LabelEvent.of(
                row["tx_id"],
                "confirmed_genuine",
                SNAPSHOT + dt.timedelta(hours=1),
                customer_id=row["customer_id"],
            )
        )
    return events


def label_frame(events: list[LabelEvent]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "tx_id": [e.tx_id for e in events],
            "fraud": [e.is_fraud for e in events],
            "label_ts": [e.label_ts for e in events],
            "event_id": [e.event_id for e in events],
        },
        schema={
            "tx_id": pl.String,
            "fraud": pl.Boolean,
            "label_ts": pl.Datetime("us", "UTC"),
            "event_id": pl.String,
        },
    )


def expected_rows(tx: pl.DataFrame, events: list[LabelEvent]) -> dict[tuple[str, str], Any]:
    frame = apply_labels(tx.filter(pl.col("ts") < SNAPSHOT), label_frame(events), AT)
    out: dict[tuple[str, str], Any] = {}
    for kind, rows in risk_rows_by_kind(frame, SNAPSHOT_DAY, AT).items():
        _view, key, prefix = ENTITIES[kind]
        for row in rows.iter_rows(named=True):
            out[kind, row[key]] = {
                w: (
                    row[f"{prefix}cnt_{w}"],
                    row[f"{prefix}fraud_known_{w}"],
                    row[f"{prefix}risk_{w}"],
                )
                for w in RISK_WINDOWS
            }
    return out


def mismatches(fold: LabelFold, expected: dict[tuple[str, str], Any]) -> list[str]:
    """Every label-aware window (1/7/30 days, recent and lagged) of every entity (terminals,
    devices, customers)."""
    got = fold.read_rows(list(expected))
    bad = []
    for (kind, entity), windows in expected.items():
        row = got[kind, entity]
        prefix = ENTITIES[kind][2]
        assert row is not None, (kind, entity)
        for w, (cnt, known, risk) in windows.items():
            have = tuple(row[f"{prefix}{f}_{w}"] for f in ("cnt", "fraud_known", "risk"))
            if have[:2] != (cnt, known) or not np.isclose(have[2], risk, rtol=1e-12, atol=0):
                bad.append(f"{kind} {entity} {w}: online {have} != batch {(cnt, known, risk)}")
    return bad


def test_latest_label_wins_by_label_time_not_arrival() -> None:
    labels = [[30, 0, "b"], [10, 1, "a"], [20, 1, "c"]]
    assert fraud_at(labels) is False  # genuine at 30
    assert fraud_at(labels, 25) is True and fraud_at(labels, 5) is False
    ledger = Ledger()
    lb = Label(event_id="e1", tx_id="t", fraud=True, label_us=5)
    assert ledger.add(lb, 1) and not ledger.add(lb, 1)
    frame = label_frame(
        [
            LabelEvent.of("t1", "chargeback", dt.datetime(2024, 1, 2, tzinfo=dt.UTC)),
            LabelEvent.of("t1", "confirmed_genuine", dt.datetime(2024, 1, 3, tzinfo=dt.UTC)),
            LabelEvent.of("t1", "confirmed_fraud", dt.datetime(2024, 1, 5, tzinfo=dt.UTC)),
            LabelEvent.of("t2", "chargeback", dt.datetime(2024, 1, 2, tzinfo=dt.UTC)),
            LabelEvent.of("t2", "confirmed_fraud", dt.datetime(2024, 1, 4, tzinfo=dt.UTC)),
        ]
    )
    eff = {r["tx_id"]: r for r in effective_labels(frame).iter_rows(named=True)}
    # t1: the fraud run that counts began after the genuine label; t2: at its first label
    assert eff["t1"]["is_fraud"] and eff["t1"]["label_available_at"].day == 5
    assert eff["t2"]["is_fraud"] and eff["t2"]["label_available_at"].day == 2
    early = effective_labels(frame, dt.datetime(2024, 1, 3, 12, tzinfo=dt.UTC))
    assert dict(early.select("tx_id", "is_fraud").iter_rows()) == {"t1": False, "t2": True}


def test_a_label_lands_on_its_terminal_device_and_customer(sim: World) -> None:
    """From the customer's history state: terminal, device and customer; from the event alone
    (the history no longer holds it): its time with its terminal and/or customer."""
    from riskml.features.realtime import State

    row = sim.tx.filter(pl.col("device_id") != "unknown").row(0, named=True)
    tx_us = int(row["ts"].timestamp() * US)
    state = State.from_lists(
        {"hist_tx_id": [row["tx_id"]], "hist_ts": [tx_us], "hist_amount": [1.0],
         "hist_terminal": [row["terminal_id"]], "hist_device": [row["device_id"]],
         "hist_category": ["grocery"], "hist_channel": ["pos"], "hist_terminal_risk": [0.0]}
    )  # fmt: skip
    histories = {row["customer_id"]: (state, 1)}
    label = Label("e", row["tx_id"], True, tx_us + 1, customer_id=row["customer_id"])
    target = resolve(label, histories)
    assert target == Target(tx_us, row["terminal_id"], row["device_id"], row["customer_id"])
    assert target.entities() == [
        ("terminal", row["terminal_id"]),
        ("device", row["device_id"]),
        ("customer", row["customer_id"]),
    ]
    gone = Label("e", "elsewhere", True, 9, customer_id="c", tx_us=5)
    assert resolve(gone, histories) == Target(5, None, None, "c")
    assert resolve(Label("e", "t", True, 9, terminal_id="m", tx_us=5), {}) == Target(5, "m", None)
    assert resolve(Label("e", "t", True, 9, customer_id="c"), {}) is None  # no time


def test_labels_update_risk_at_once_and_equal_the_batch_rebuild(sim: World, store: Any) -> None:
    events = label_events(sim.tx)
    expected = expected_rows(sim.tx, events)
    assert {kind for kind, _ in expected} == set(ENTITIES)
    online = OnlineFeatures(store)
    fold = LabelFold(online, lateness_s=3600)
    before = fold.read_rows(list(expected))
    shuffled = events[:]
    random.Random(1).shuffle(shuffled)
    outcomes = fold.fold_many([label_of(e) for e in shuffled])
    assert set(outcomes) == {APPLIED}, outcomes
    assert mismatches(fold, expected) == []
    changed = [k for k in expected if before[k] != fold.read_rows([k])[k]]
    assert len(changed) >= 5, "labels after the snapshot must move some online risk"
    assert {kind for kind, _ in changed} == set(ENTITIES), changed
    # the served vector carries it: term_risk_30d of a changed terminal as the batch says
    kind, terminal = next(k for k in changed if k[0] == "terminal")
    vec, _flags = online.get(
        {"ts": AT, "customer_id": "nobody", "terminal_id": terminal, "device_id": "x",
         "amount": 1.0}
    )  # fmt: skip
    assert vec["term_fraud_known_30d"] == expected[kind, terminal]["30d"][1]
    assert vec["term_fraud_known_7d_lag7"] == expected[kind, terminal]["7d_lag7"][1]
    # and the customer's own fraud history of a changed customer
    kind, customer = next(k for k in changed if k[0] == "customer")
    vec, _flags = online.get(
        {"ts": AT, "customer_id": customer, "terminal_id": "nowhere", "device_id": "x",
         "amount": 1.0}
    )  # fmt: skip
    for w in RISK_WINDOWS:
        _cnt, known, risk = expected[kind, customer][w]
        assert vec[f"cust_lbl_fraud_known_{w}"] == known, w
        assert vec[f"cust_lbl_risk_{w}"] == pytest.approx(risk, rel=1e-12), w
    # again, in another order: nothing changes, every event a duplicate
    random.Random(2).shuffle(shuffled)
    assert set(fold.fold_many([label_of(e) for e in shuffled])) == {DUPLICATE}
    assert mismatches(fold, expected) == []


def test_late_and_unmatched_labels(sim: World, store: Any) -> None:
    fold = LabelFold(OnlineFeatures(store), lateness_s=3600)
    row = sim.tx.filter(pl.col("ts") < SNAPSHOT).row(0, named=True)
    old = Label("old", "tx-old", True, int(AT.timestamp()) * US, None, row["terminal_id"],
                int((SNAPSHOT - dt.timedelta(days=40)).timestamp()) * US)  # fmt: skip
    nowhere = Label("nowhere", "tx-unknown", True, int(AT.timestamp()) * US, "nobody")
    assert fold.fold_many([old, nowhere]) == [LATE, UNMATCHED]
    assert fold.ledger("terminal", row["terminal_id"]).labels == {}


def test_a_materialisation_in_between_becomes_the_new_base(sim: World, store: Any) -> None:
    from riskml.features.store import materialize

    events = label_events(sim.tx)
    last = [e for e in events if e.label == "confirmed_genuine"][:3]  # the reversals
    first = [e for e in events if e not in last]
    fold = LabelFold(OnlineFeatures(store), lateness_s=3600, snapshot_ttl_s=0)
    assert fold.refresh_if_materialized() == 0  # no ledger yet
    fold.fold_many([label_of(e) for e in first])
    assert fold.refresh_if_materialized() == 0  # nothing materialised since
    # the snapshot written again over the adjusted rows (SQLite rewrites them; Redis keeps
    # rows whose event time did not move on): each row is re-applied from what is stored
    materialize(SNAPSHOT, config=store)
    assert fold.refresh_if_materialized() >= 10
    expected = expected_rows(sim.tx, first)
    assert mismatches(fold, expected) == []
    # and the next fold of an entity starts from the stored row too
    materialize(SNAPSHOT, config=store)
    fold.fold_many([label_of(e) for e in last])
    ids = {e.tx_id for e in last}
    rows = sim.tx.filter(pl.col("tx_id").is_in(ids))
    touched = (
        {("terminal", t) for t in rows["terminal_id"]}
        | {("device", d) for d in rows["device_id"]}
        | {("customer", c) for c in rows["customer_id"]}
    )
    full = expected_rows(sim.tx, events)
    assert mismatches(fold, {k: v for k, v in full.items() if k in touched}) == []


@pytest.mark.redis
def test_two_writers_on_redis_lose_no_label(sim: World, tmp_path: Path) -> None:
    need(redis_up(), f"no Redis at {TEST_REDIS}")
    cfg = make_store(sim, tmp_path / "store", "redis")
    try:
        events = label_events(sim.tx)
        folds = [LabelFold(OnlineFeatures(cfg), lateness_s=3600) for _ in range(2)]
        errors: list[BaseException] = []

        def run(fold: LabelFold, part: list[LabelEvent]) -> None:
            try:
                for i in range(0, len(part), 3):
                    fold.fold_many([label_of(e) for e in part[i : i + 3]])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(folds[n], events[n::2])) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert mismatches(folds[0], expected_rows(sim.tx, events)) == []
    finally:
        drop_redis_project(cfg.project)
