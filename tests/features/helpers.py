"""Shared helpers of the feature-store tests: synthetic frames, replay, comparison."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl

from riskml.data.schema import polars_schema
from riskml.features.definitions import SEQUENCE_FEATURE, feature_contract

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
US = 1_000_000


def frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """A schema-exact transactions frame from partial rows (defaults filled in)."""
    full = []
    for i, r in enumerate(rows):
        ts = r["ts"]
        fraud = int(r.get("is_fraud", 0))
        full.append(
            {
                "tx_id": r.get("tx_id", f"t{i:05d}"),
                "ts": ts,
                "customer_id": r.get("customer_id", "c0"),
                "terminal_id": r.get("terminal_id", "m0"),
                "device_id": r.get("device_id", "d0"),
                "amount": float(r.get("amount", 10.0)),
                "currency": "USD",
                "merchant_category": r.get("merchant_category", "grocery"),
                "channel": r.get("channel", "pos"),
                "is_fraud": fraud,
                "fraud_scenario": "card_testing" if fraud else "none",
                "label_available_at": r.get("label_available_at", ts),
            }
        )
    return pl.DataFrame(full, schema=polars_schema()).sort("ts", maintain_order=True)


def random_frame(
    seed: int,
    n: int = 400,
    customers: int = 12,
    terminals: int = 8,
    devices: int = 10,
    days: int = 40,
) -> pl.DataFrame:
    """Random transactions with bursts, exact-boundary gaps, ties and delayed fraud labels."""
    rng = np.random.default_rng(seed)
    base = int(T0.timestamp()) * US
    ts = base + rng.integers(0, days * 86_400, n) * US
    # boundary cases: exact 1 h / 1 d / 7 d / 30 d gaps and same-microsecond ties
    for k, gap in enumerate((3600, 86_400, 7 * 86_400, 30 * 86_400, 0)):
        ts[k * 2 + 1] = ts[k * 2] + gap * US
    cust = rng.integers(0, customers, n)
    cust[:10] = 0
    fraud = (rng.random(n) < 0.15).astype(int)
    delay = rng.integers(0, 20 * 86_400, n) * US
    rows = [
        {
            "tx_id": f"x{i:05d}",
            "ts": dt.datetime.fromtimestamp(ts[i] / US, tz=dt.UTC),
            "customer_id": f"c{cust[i]}",
            "terminal_id": f"m{rng.integers(0, terminals)}",
            "device_id": "unknown" if rng.random() < 0.05 else f"d{rng.integers(0, devices)}",
            "amount": float(np.round(rng.lognormal(3, 1), 2)),
            "merchant_category": ["grocery", "fuel", "travel"][rng.integers(0, 3)],
            # "unknown": the schema's out-of-vocabulary channel (code 6, like any unknown one)
            "channel": ["pos", "ecom", "atm", "unknown"][rng.integers(0, 4)],
            "is_fraud": fraud[i],
            "label_available_at": dt.datetime.fromtimestamp(
                (ts[i] + (delay[i] if fraud[i] else 0)) / US, tz=dt.UTC
            ),
        }
        for i in range(n)
    ]
    return frame(rows)


def distinct_customer_chunks(rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive runs of time-ordered rows in which no customer repeats."""
    chunk: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:
        if row["customer_id"] in seen:
            yield chunk
            chunk, seen = [], set()
        chunk.append(row)
        seen.add(row["customer_id"])
    if chunk:
        yield chunk


def compare_vector(online: dict[str, Any], offline: dict[str, Any]) -> list[str]:
    """Names of features that differ (ints exact, floats rtol 1e-9, sequence float32 1e-6)."""
    bad = []
    for name, dtype in feature_contract():
        a, b = online[name], offline[name]
        if dtype == "int64":
            if int(a) != int(b):
                bad.append(f"{name}: {a} != {b}")
        elif not np.isclose(float(a), float(b), rtol=1e-9, atol=1e-9):
            bad.append(f"{name}: {a!r} != {b!r}")
    if SEQUENCE_FEATURE in offline and offline[SEQUENCE_FEATURE] is not None:
        sa = np.asarray(online[SEQUENCE_FEATURE], dtype=np.float32).ravel()
        sb = np.asarray(offline[SEQUENCE_FEATURE], dtype=np.float32).ravel()
        if sa.shape != sb.shape or not np.allclose(sa, sb, rtol=1e-6, atol=1e-6):
            bad.append(f"{SEQUENCE_FEATURE}: max diff {np.max(np.abs(sa - sb)):.3g}")
    return bad


def replay(
    online: Any,
    store_cfg: Any,
    training: pl.DataFrame,
    days: list[dt.datetime],
    *,
    feast_every: int = 8,
) -> dict[str, Any]:
    """Score transactions in time order through the online path (get, compare, write back),
    materialising each day's snapshots at 00:00 first. Every ``feast_every``-th chunk is also
    read through Feast's own ``get_online_features`` (the on-demand view run by Feast) and
    written back through the push source. Returns mismatch statistics."""
    from riskml.features.store import materialize

    mismatches: list[tuple[str, str, list[str]]] = []
    compared = 0
    via_feast = 0
    k = 0
    for day in days:
        materialize(day, incremental=True, config=store_cfg)
        rows = training.filter(
            (pl.col("ts") >= day) & (pl.col("ts") < day + dt.timedelta(days=1))
        ).to_dicts()
        for chunk in distinct_customer_chunks(rows):
            k += 1
            slow = k % feast_every == 0
            results = online.get_many(chunk)
            if slow:
                for row, (vec, _f) in zip(chunk, online.get_via_feast(chunk), strict=True):
                    via_feast += 1
                    bad = compare_vector(vec, row)
                    if bad:
                        mismatches.append(("feast", row["tx_id"], bad))
            back = []
            for row, (vec, _flags) in zip(chunk, results, strict=True):
                bad = compare_vector(vec, row)
                compared += 1
                if bad:
                    mismatches.append(("fast", row["tx_id"], bad))
                back.append({**row, "terminal_risk": vec["term_risk_30d"]})
            online.write_back_many(back, via_push=slow)
    return {"compared": compared, "via_feast": via_feast, "mismatches": mismatches}


def race_write_backs(
    replica_a: Any, replica_b: Any, rows: list[dict[str, Any]], *, fetched: bool = False
) -> float:
    """Two "replicas" (``OnlineFeatures`` on one store) write back ``rows`` at the same time,
    alternating rows so that both write every customer, in batches of 3, while two threads
    fetch on replica A. ``fetched``: as serving does, each writer fetches its batch first and
    hands every transaction its ``history_base`` (often stale by the time it is written: the
    other writer wrote the customer since). Asserts every write-back reported applied exactly
    once, none failed, and each customer's final state holds every one of its transactions
    (nothing lost to the other writer). Returns the seconds it took."""
    import threading
    import time

    from riskml.features.errors import FeatureStoreError

    errors: list[str] = []
    written: list[bool] = []
    done = threading.Event()

    def fetch() -> None:
        i = 0
        while not done.is_set():
            replica_a.get_many([rows[i % len(rows)]])
            i += 1

    def write(online: Any, txs: list[dict[str, Any]]) -> None:
        for at in range(0, len(txs), 3):
            batch = txs[at : at + 3]
            try:
                if fetched:
                    got = online.fetch_many(batch)
                    batch = [
                        {**tx, "history_base": base}
                        for tx, (*_, base) in zip(batch, got, strict=True)
                    ]
                written.extend(online.write_back_many(batch))
            except FeatureStoreError as exc:
                errors.append(repr(exc))

    fetchers = [threading.Thread(target=fetch) for _ in range(2)]
    writers = [
        threading.Thread(target=write, args=(replica_a, rows[0::2])),
        threading.Thread(target=write, args=(replica_b, rows[1::2])),
    ]
    t0 = time.perf_counter()
    for t in fetchers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in fetchers:
        t.join()
    elapsed = time.perf_counter() - t0
    assert errors == [], f"{len(errors)} failed write-backs, first: {errors[:1]}"
    assert len(written) == len(rows) and all(written)  # each transaction applied exactly once
    lost = []
    for customer in sorted({r["customer_id"] for r in rows}):
        state, _ = replica_a.history(customer)
        want = {r["tx_id"] for r in rows if r["customer_id"] == customer}
        lost += sorted(want - set(state["hist_tx_id"].tolist()))
    assert lost == [], f"{len(lost)} transactions lost to the other writer, e.g. {lost[:3]}"
    return elapsed


def write_back_from_fetched_history(
    mine: Any, theirs: Any, rows: list[dict[str, Any]]
) -> list[list[str]]:
    """A write-back that starts from the history its fetch read (``history_base``): folds into
    it when it is current, and when another replica wrote the customer after the fetch, the
    stale base is not written over the other's transaction (both are kept). Returns the
    feature lists of the history reads the write-backs made (``mine``)."""
    first = rows[0]
    customer = first["customer_id"]
    later = [r for r in rows if r["customer_id"] == customer][1:3]
    later += [
        {**first, "tx_id": f"other-{i}", "ts": first["ts"] + dt.timedelta(seconds=30 * (i + 1))}
        for i in range(2 - len(later))
    ]
    reads: list[list[str]] = []
    read = mine._read_views

    def recording(views: Any, conn: Any = None) -> Any:
        reads.extend(list(features) for fv, _key, _ids, features in views)
        return read(views, conn)

    def fetched(tx: dict[str, Any]) -> dict[str, Any]:
        ((vec, _flags, base),) = mine.fetch_many([tx])
        assert base.version == mine.history(customer)[1]
        assert base.state.to_lists() == mine.history(customer)[0].to_lists()
        return {**tx, "history_base": base, "terminal_risk": vec["term_risk_30d"]}

    # current base: folded into as is
    tx = fetched(first)
    mine._read_views = recording
    assert mine.write_back_many([tx]) == [True]
    mine._read_views = read
    state, version = theirs.history(customer)
    assert first["tx_id"] in state["hist_tx_id"].tolist()
    assert version is not None and version > (tx["history_base"].version or 0)
    # stale base: fetched, then the other replica writes the customer, then the write-back
    tx = fetched(later[0])
    assert theirs.write_back_many([later[1]]) == [True]
    mine._read_views = recording
    assert mine.write_back_many([tx]) == [True]
    mine._read_views = read
    ids = set(theirs.history(customer)[0]["hist_tx_id"].tolist())
    assert {first["tx_id"], later[0]["tx_id"], later[1]["tx_id"]} <= ids
    assert mine.write_back_many([tx, later[1]]) == [False, False]  # idempotent
    return reads
