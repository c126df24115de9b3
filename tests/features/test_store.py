"""Feast integration on the embedded SQLite store: registration, point-in-time training sets,
training/serving parity, materialisation, write-back, unknown entities, errors, CLI."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from riskml.cli import app
from riskml.features import (
    FEATURE_SERVICE,
    ONLINE_FEATURE_SERVICE,
    FeatureStoreError,
    FeatureStoreUnavailable,
    feature_contract,
    sequence_contract,
)
from riskml.features.definitions import DEFAULTS, ENTITY_FLAGS, SEQUENCE_FEATURE
from riskml.features.online import OnlineFeatures
from riskml.features.store import StoreConfig, get_store, materialize, training_set
from riskml.settings import REPO_ROOT

from .conftest import REPLAY_DAY
from .helpers import race_write_backs, random_frame, replay, write_back_from_fetched_history

pytestmark = pytest.mark.integration

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def sqlite_store(make_store: Callable[..., StoreConfig]) -> StoreConfig:
    return make_store("sqlite")


@pytest.fixture(scope="module")
def replay_rows(sqlite_store: StoreConfig) -> pl.DataFrame:
    return training_set(REPLAY_DAY, REPLAY_DAY + DAY, config=sqlite_store, sequences=True)


def test_feature_services_are_the_contract(sqlite_store: StoreConfig) -> None:
    store = get_store(sqlite_store)
    names = {fs.name for fs in store.list_feature_services()}
    assert {FEATURE_SERVICE, ONLINE_FEATURE_SERVICE} <= names
    flags = {n for n, _ in ENTITY_FLAGS}
    contract = {n: t for n, t in feature_contract() if n not in flags}

    def served(service: str) -> dict[str, str]:
        out = {}
        for proj in store.get_feature_service(service).feature_view_projections:
            for f in proj.features:
                out[f.name] = str(f.dtype)
        return out

    training, serving = served(FEATURE_SERVICE), served(ONLINE_FEATURE_SERVICE)
    assert set(training) == set(contract)
    assert set(serving) == set(contract) | {SEQUENCE_FEATURE}
    for name, dtype in contract.items():
        expected = "Int64" if dtype == "int64" else "Float64"
        assert training[name] == serving[name] == expected, name
    assert sequence_contract().shape == (16, 7)


def test_training_set_is_point_in_time(
    sqlite_store: StoreConfig, replay_rows: pl.DataFrame, features_dir: Path
) -> None:
    frame = replay_rows
    assert frame.height > 1000
    assert frame.columns[: len(frame.columns) - len(feature_contract()) - 1][:2] == ["tx_id", "ts"]
    assert frame.select(n for n, _ in feature_contract()).null_count().sum_horizontal().item() == 0
    # Independent check: pandas merge_asof of the snapshot sources, latest row at or before ts.
    left = frame.select("tx_id", "ts", "terminal_id", "device_id", "customer_id")
    left = left.to_pandas().sort_values("ts")
    for source, key, col in (
        ("terminal_stats", "terminal_id", "term_risk_30d"),
        ("device_stats", "device_id", "dev_customers_30d"),
        ("customer_stats", "customer_id", "cust_lbl_fraud_known_30d_lag7"),
    ):
        right = pd.read_parquet(features_dir / f"{source}.parquet").sort_values("event_timestamp")
        merged = pd.merge_asof(
            left, right[[key, "event_timestamp", col]], left_on="ts",
            right_on="event_timestamp", by=key,
        )  # fmt: skip
        expected = dict(zip(merged["tx_id"], merged[col].fillna(0), strict=True))
        got = dict(zip(frame["tx_id"], frame[col], strict=True))
        assert got == pytest.approx(expected), source
    # the customer's own known frauds reach some of the day's transactions (recent and lagged)
    for col in ("cust_lbl_fraud_known_30d", "cust_lbl_fraud_known_30d_lag7"):
        assert frame.filter(pl.col(col) > 0).height > 0, col
    ctx = pl.read_parquet(features_dir / "customer_tx.parquet")
    joined = frame.join(ctx, on="tx_id", suffix="_src")
    assert joined.height == frame.height
    assert (joined["cust_sum_7d"] == joined["cust_sum_7d_src"]).all()
    # Feast's own file (dask) offline store returns the same rows on a small slice.
    small = (REPLAY_DAY + dt.timedelta(hours=9), REPLAY_DAY + dt.timedelta(hours=12))
    ours = training_set(*small, config=sqlite_store)
    file_cfg = sqlite_store.model_copy(update={"offline_store": "file"})
    theirs = training_set(*small, config=file_cfg)
    assert ours.height > 20
    assert ours.sort("tx_id").equals(theirs.sort("tx_id"))


def test_sequences_in_training_set(replay_rows: pl.DataFrame) -> None:
    seq = np.stack(replay_rows["cust_seq"].to_numpy()).reshape(-1, *sequence_contract().shape)
    assert seq.dtype == np.float32
    mask = seq[:, :, 0]
    # left padded: once real transactions start they continue to the newest slot
    assert np.all(np.diff(mask, axis=1) >= 0)
    known = replay_rows["unknown_customer"].to_numpy() == 0
    assert np.all(mask[known, -1] == 1) and np.all(mask[~known] == 0)


def test_training_online_parity_sqlite(
    sqlite_store: StoreConfig, replay_rows: pl.DataFrame
) -> None:
    online = OnlineFeatures(sqlite_store)
    result = replay(online, sqlite_store, replay_rows, [REPLAY_DAY])
    assert result["compared"] == replay_rows.height >= 1000
    assert result["via_feast"] > 50
    assert result["mismatches"] == []


def _dump(cfg: StoreConfig, features_dir: Path) -> dict[str, list[Any]]:
    online = OnlineFeatures(cfg)
    out = {}
    for fv, key, source in (
        (online._history_fv, "customer_id", "customer_history"),
        (online._terminal_fv, "terminal_id", "terminal_stats"),
        (online._device_fv, "device_id", "device_stats"),
        (online._customer_fv, "customer_id", "customer_stats"),
    ):
        ids = sorted(pl.read_parquet(features_dir / f"{source}.parquet")[key].unique())
        names = [f.name for f in fv.features]
        out[source] = online._online_read(fv, key, ids, names)
        assert sum(v is not None for v in out[source]) > 0
    return out


def test_materialize_twice_gives_identical_online_contents(
    make_store: Callable[..., StoreConfig], features_dir: Path
) -> None:
    cfg = make_store("sqlite")
    first = _dump(cfg, features_dir)
    db = Path(cfg.home or "") / "feast" / "online.db"
    query = "SELECT entity_key, feature_name, value, event_ts FROM {} ORDER BY 1, 2"
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        raw_first = {t: conn.execute(query.format(t)).fetchall() for t in tables}
    materialize(REPLAY_DAY, config=cfg)
    assert _dump(cfg, features_dir) == first
    with sqlite3.connect(db) as conn:
        assert {t: conn.execute(query.format(t)).fetchall() for t in tables} == raw_first
    assert sum(len(v) for v in raw_first.values()) > 1000


def test_unknown_entities_get_documented_defaults_and_flags(sqlite_store: StoreConfig) -> None:
    online = OnlineFeatures(sqlite_store)
    vec, flags = online.get(
        {"ts": REPLAY_DAY, "customer_id": "nobody", "terminal_id": "nowhere",
         "device_id": "nothing", "amount": 12.5}
    )  # fmt: skip
    assert flags == {"unknown_customer": 1, "unknown_terminal": 1, "unknown_device": 1}
    for name, _ in feature_contract():
        assert vec[name] == DEFAULTS.get(name, 0) or name.startswith("tx_"), name
    assert vec["tx_log_amount"] == pytest.approx(np.log1p(12.5))
    assert not vec[SEQUENCE_FEATURE].any()
    with pytest.raises(FeatureStoreError, match="lacks"):
        online.get({"ts": REPLAY_DAY, "customer_id": "x"})
    with pytest.raises(FeatureStoreError, match="amount"):
        online.get({"ts": REPLAY_DAY, "customer_id": "x", "terminal_id": "t",
                    "device_id": "d", "amount": float("nan")})  # fmt: skip
    with pytest.raises(FeatureStoreError, match="timestamp"):
        online.get({"ts": "yesterday", "customer_id": "x", "terminal_id": "t",
                    "device_id": "d", "amount": 1.0})  # fmt: skip


def test_write_back_is_idempotent_and_feeds_the_next_request(
    make_store: Callable[..., StoreConfig], replay_rows: pl.DataFrame
) -> None:
    cfg = make_store("sqlite")
    online = OnlineFeatures(cfg)
    tx = replay_rows.row(0, named=True)
    later = {**tx, "ts": tx["ts"] + dt.timedelta(minutes=5)}
    before, _ = online.get(later)
    assert online.write_back(tx) is True
    state, version = online.history(tx["customer_id"])
    assert state["hist_tx_id"][-1] == tx["tx_id"]
    assert online.write_back(tx) is False  # same tx_id: nothing changes
    again, again_version = online.history(tx["customer_id"])
    assert again.to_lists() == state.to_lists() and again_version == version
    after, flags = online.get(later)
    assert after["cust_cnt_1h"] == before["cust_cnt_1h"] + 1
    assert after["cust_secs_since_prev"] == pytest.approx(300.0)
    assert flags["unknown_customer"] == 0
    with pytest.raises(FeatureStoreError, match="lacks"):
        online.write_back({"tx_id": "x"})


def test_unreachable_sqlite_raises_typed_error(
    make_store: Callable[..., StoreConfig],
) -> None:
    cfg = make_store("sqlite")
    db = Path(cfg.home or "") / "feast" / "online.db"
    db.unlink()
    db.mkdir()  # a directory where the database file should be: sqlite cannot open it
    online = OnlineFeatures(cfg)
    request = {"ts": REPLAY_DAY, "customer_id": "c", "terminal_id": "t", "device_id": "d",
               "amount": 1.0}  # fmt: skip
    with pytest.raises(FeatureStoreUnavailable, match="sqlite"):
        online.get(request)
    with pytest.raises(FeatureStoreUnavailable):
        online.write_back({**request, "tx_id": "x", "merchant_category": "m", "channel": "pos"})
    with pytest.raises(FeatureStoreUnavailable):
        materialize(REPLAY_DAY, config=cfg)
    assert issubclass(FeatureStoreUnavailable, FeatureStoreError)


def test_cli_build_apply_materialize_training_set(tmp_path: Path, riskml_home: Path) -> None:
    from riskml.data.io import write_day

    runner = CliRunner()
    res = runner.invoke(app, ["features", "training-set", "--out", str(tmp_path / "x.parquet")])
    assert res.exit_code == 1 and "features build" in res.output
    res = runner.invoke(app, ["features", "build", str(tmp_path / "missing")])
    assert res.exit_code == 1
    tx = random_frame(7, n=500, days=20)
    for day, part in tx.group_by(pl.col("ts").dt.date()):
        write_day(tmp_path / "ds", day[0], part)
    res = runner.invoke(app, ["features", "build", str(tmp_path / "ds"), "--json",
                              str(tmp_path / "build.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (riskml_home / "features" / "customer_tx.parquet").exists()
    assert (tmp_path / "build.json").exists()
    res = runner.invoke(app, ["features", "apply", "--project", "cli_test"])
    assert res.exit_code == 0, res.output
    assert "fraud_v1" in res.output
    res = runner.invoke(app, ["features", "materialize", "--project", "cli_test"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "train.parquet"
    res = runner.invoke(app, ["features", "training-set", "--project", "cli_test", "--out",
                              str(out), "--start", "2024-03-05", "--sequences"])  # fmt: skip
    assert res.exit_code == 0, res.output
    got = pl.read_parquet(out)
    assert got["ts"].min() >= dt.datetime(2024, 3, 5, tzinfo=dt.UTC)
    assert set(n for n, _ in feature_contract()) <= set(got.columns)
    assert "cust_seq" in got.columns
    res = runner.invoke(app, ["features", "materialize", "--end", "not-a-date"])
    assert res.exit_code != 0


@pytest.mark.filterwarnings("ignore:On demand feature view:RuntimeWarning")
def test_feast_cli_plans_the_repository(
    tmp_path: Path, features_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`feast -c feature_repo plan` works on the repository as committed."""
    from click.testing import CliRunner as ClickRunner
    from feast.cli.cli import cli as feast_cli

    repo = tmp_path / "checkout" / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo)
    home = tmp_path / "checkout" / ".riskml"
    shutil.copytree(features_dir, home / "features")
    monkeypatch.chdir(tmp_path / "checkout")
    monkeypatch.setenv("RISKML_HOME", str(home))
    res = ClickRunner().invoke(feast_cli, ["-c", "feature_repo", "plan"])
    assert res.exit_code == 0, res.output
    for name in ("fraud_v1", "fraud_v1_online", "customer_realtime", "terminal_stats"):
        assert name in res.output


def test_benchmark_script_runs_on_a_small_dataset(tmp_path: Path, sim_dataset: Path) -> None:
    from benchmarks.features import main

    out = tmp_path / "features.json"
    result = main(["--out", str(out), "--dataset", str(sim_dataset), "--repeat", "1",
                   "--samples", "80", "--skip-redis", "--file-store-days", "0"])  # fmt: skip
    assert out.exists()
    assert result["rows"] > 30_000 and result["merge_asof_seconds"] > 0
    assert result["pit_ratio"] == pytest.approx(
        result["training_set_seconds"] / result["merge_asof_seconds"], rel=0.01
    )
    assert 0 < result["online_sqlite_p50_ms"] <= result["online_sqlite_p99_ms"]


def test_sqlite_online_store_runs_in_wal_mode(make_store: Callable[..., StoreConfig]) -> None:
    """Write-backs append to a write-ahead log instead of flushing the database per commit."""
    import sqlite3

    cfg = make_store("sqlite")
    OnlineFeatures(cfg)
    db = Path(cfg.home or "") / "feast" / "online.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("fetched", [False, True], ids=["read", "fetched-base"])
def test_sqlite_write_backs_survive_concurrent_fetches_and_a_second_writer(
    make_store: Callable[..., StoreConfig], replay_rows: pl.DataFrame, fetched: bool
) -> None:
    """Serving on SQLite: each replica fetches on several threads while its write-back thread
    writes, and another replica writes back the same customers to the same file. Every
    write-back lands and none is lost: reads never share a writer's connection (a read inside
    its transaction made the write fail with "database is locked"), and each batch reads,
    folds and writes inside one write transaction (two writers folding into the same state
    lost one of the transactions). ``fetched-base``: each batch starts from the histories its
    fetch read, often stale by then."""
    cfg = make_store("sqlite")
    rows = replay_rows.head(400).rows(named=True)
    race = race_write_backs(OnlineFeatures(cfg), OnlineFeatures(cfg), rows, fetched=fetched)
    assert race < 60


def test_sqlite_write_back_starts_from_the_fetched_history_while_it_is_current(
    make_store: Callable[..., StoreConfig], replay_rows: pl.DataFrame
) -> None:
    """Given the history its fetch read, a write-back reads only the stored version (inside
    its write transaction) and folds into the fetched state; when another writer changed the
    customer since the fetch, it reads the history and keeps both transactions."""
    from riskml.features.realtime import STATE_FIELDS

    cfg = make_store("sqlite")
    rows = replay_rows.head(400).rows(named=True)
    reads = write_back_from_fetched_history(OnlineFeatures(cfg), OnlineFeatures(cfg), rows)
    assert reads == [["hist_event_us"], ["hist_event_us"], [*STATE_FIELDS, "hist_event_us"]]


def test_write_back_refuses_a_malformed_history_base(
    make_store: Callable[..., StoreConfig], replay_rows: pl.DataFrame
) -> None:
    cfg = make_store("sqlite")
    online = OnlineFeatures(cfg)
    tx = replay_rows.row(0, named=True)
    before = online.history(tx["customer_id"])
    with pytest.raises(FeatureStoreError, match=r"history_base .* not a \(state, version\) pair"):
        online.write_back_many([{**tx, "history_base": "stale"}])
    after = online.history(tx["customer_id"])
    assert after[1] == before[1] and after[0].to_lists() == before[0].to_lists()
    assert online.write_back_many([tx]) == [True]


def test_sqlite_write_back_rows_are_feasts(make_store: Callable[..., StoreConfig]) -> None:
    """The write-back writes the rows Feast's ``online_write_batch`` writes for the same
    states (value, value_text, event time; created time aside), so Feast reads them back."""
    from feast.infra.key_encoding_utils import serialize_entity_key

    cfg = make_store("sqlite")
    online = OnlineFeatures(cfg)
    assert online._sqlite is not None
    customers = ["C000001", "C000002", "nobody-yet"]
    states = online._histories(customers)
    new = {c: (s, (v or 0) + 7) for c, (s, v) in states.items()}
    table = f"{cfg.project}_customer_history"
    keys = [key for key, *_ in online._rows(new)]
    version = online.store.config.entity_key_serialization_version
    marks = ",".join("?" * len(keys))
    where = f'FROM "{table}" WHERE entity_key IN ({marks})'
    params = [serialize_entity_key(k, entity_key_serialization_version=version) for k in keys]

    def rows() -> list[tuple[Any, ...]]:
        with sqlite3.connect(online._sqlite.path) as conn:
            return conn.execute(
                f"SELECT entity_key, feature_name, value, value_text, event_ts {where} "
                "ORDER BY entity_key, feature_name",
                params,
            ).fetchall()

    online._store_states(new, via_push=False)  # Feast's own write
    feasts = rows()
    with sqlite3.connect(online._sqlite.path) as conn:
        conn.execute(f"DELETE {where}", params)
    assert rows() == []
    with online._sqlite.transaction() as conn:
        online._sqlite.upsert(conn, online.store.config, online._history_fv, online._rows(new))
    assert rows() == feasts and len(feasts) == 3 * 9
    back = online._histories(customers)
    for customer, (state, version) in new.items():
        assert back[customer][0].to_lists() == state.to_lists()
        assert back[customer][1] == version


def test_sqlite_write_back_that_fails_midway_writes_nothing_and_the_next_one_works(
    make_store: Callable[..., StoreConfig], replay_rows: pl.DataFrame
) -> None:
    """A batch that fails inside its write transaction is rolled back whole (no customer of it
    half-written) and leaves the writer connection ready for the next batch."""
    cfg = make_store("sqlite")
    online = OnlineFeatures(cfg)
    assert online._sqlite is not None
    a, b = replay_rows.head(2).rows(named=True)
    before = {c: online.history(c)[0].to_lists() for c in (a["customer_id"], b["customer_id"])}
    upsert = online._sqlite.upsert

    def failing(conn: sqlite3.Connection, *args: Any) -> None:
        upsert(conn, *args)  # the rows are written inside the transaction, then it fails
        raise sqlite3.OperationalError("disk I/O error")

    online._sqlite.upsert = failing  # type: ignore[method-assign]
    with pytest.raises(FeatureStoreUnavailable, match="disk I/O error"):
        online.write_back_many([a, b])
    online._sqlite.upsert = upsert  # type: ignore[method-assign]
    assert {c: online.history(c)[0].to_lists() for c in before} == before
    assert online.write_back_many([a, b]) == [True, True]
    assert a["tx_id"] in online.history(a["customer_id"])[0]["hist_tx_id"].tolist()
