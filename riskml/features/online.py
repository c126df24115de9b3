"""Online features for serving: one transaction in, the full ``fraud_v1`` vector out.

``OnlineFeatures.get(request)`` reads the customer's history state and the terminal/device
snapshots from the online store (SQLite or Redis) in one Feast call on the FeatureService
``fraud_v1_online``; Feast runs the on-demand view ``customer_realtime`` (request-time customer
windows, ratios, sequence: :func:`realtime_batch`). ``write_back(tx)`` folds the scored
transaction into the customer's history state and pushes it (push source
``customer_history_push``), idempotent by ``tx_id``.

Unknown customers/terminals/devices get the documented defaults
(:data:`riskml.features.definitions.DEFAULTS`) and a flag (``unknown_customer``,
``unknown_terminal``, ``unknown_device``) — never an exception. An unreachable online store
raises :class:`riskml.features.errors.FeatureStoreUnavailable`.

Write-backs for one customer must not run concurrently (read-modify-write); serving routes them
through one worker per customer or accepts the rare lost update.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from riskml.features.definitions import (
    CUSTOMER_FEATURES,
    DEVICE_FEATURES,
    ONLINE_FEATURE_SERVICE,
    REQUEST_FEATURES,
    SEQ_FIELDS,
    SEQ_LEN,
    SEQUENCE_FEATURE,
    TERMINAL_FEATURES,
    UNKNOWN_DEVICE,
    default_value,
    feature_contract,
)
from riskml.features.errors import FeatureStoreError, FeatureStoreUnavailable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from feast import FeatureStore

    from riskml.features.store import StoreConfig

US = 1_000_000
#: Request keys ``get`` needs (``tx_id`` is optional for ``get``, required for ``write_back``).
REQUEST_KEYS: tuple[str, ...] = ("ts", "customer_id", "terminal_id", "device_id", "amount")
FLAGS: tuple[str, ...] = ("unknown_customer", "unknown_terminal", "unknown_device")


def ts_to_us(value: Any) -> int:
    """Microseconds since the epoch from a datetime (naive = UTC), ISO string, or int µs."""
    if isinstance(value, bool):
        raise FeatureStoreError(f"invalid timestamp {value!r}")
    if isinstance(value, int):
        return value
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FeatureStoreError(f"invalid timestamp {value!r}") from exc
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (value - epoch) // dt.timedelta(microseconds=1)
    raise FeatureStoreError(f"invalid timestamp {value!r} (datetime, ISO string or int µs)")


def realtime_batch(inputs: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Body of the on-demand view ``customer_realtime`` (Feast python mode, batched lists)."""
    import numpy as np

    from riskml.features.realtime import (
        STATE_FIELDS,
        State,
        customer_features,
        request_features,
        sequence_features,
    )

    ts_list = [int(v) for v in inputs["ts_us"]]
    n = len(ts_list)
    out: dict[str, list[Any]] = {name: [] for name, _ in CUSTOMER_FEATURES}
    seqs: list[list[float]] = []
    for i in range(n):
        state = State.from_lists({k: _at(inputs.get(k), i) for k in STATE_FIELDS})
        feats = customer_features(state, ts_list[i], str(inputs["req_device_id"][i]))
        for name, _ in CUSTOMER_FEATURES:
            out[name].append(feats[name])
        seqs.append(sequence_features(state, ts_list[i]).ravel().tolist())
    req = request_features(
        np.asarray(inputs["amount"], dtype=np.float64),
        np.asarray(ts_list, dtype=np.int64),
        np.asarray(out["cust_cnt_7d"], dtype=np.int64),
        np.asarray(out["cust_mean_7d"], dtype=np.float64),
        np.asarray(out["cust_cnt_30d"], dtype=np.int64),
        np.asarray(out["cust_mean_30d"], dtype=np.float64),
    )
    for name, _ in REQUEST_FEATURES:
        out[name] = req[name].tolist()
    out[SEQUENCE_FEATURE] = seqs
    return out


def _at(values: Sequence[Any] | None, i: int) -> Any:
    return None if values is None else values[i]


def _py(value: Any) -> Any:
    """Python value of a Feast ``ValueProto`` (lists for list types, None when unset)."""
    which = value.WhichOneof("val")
    if which is None or which == "null_val":
        return None
    got = getattr(value, which)
    return list(got.val) if which.endswith("_list_val") else got


def _proto(value: Any, dtype: str) -> Any:
    from feast.protos.feast.types.Value_pb2 import (
        DoubleList,
        Int64List,
        StringList,
    )
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    if dtype == "string[]":
        return ValueProto(string_list_val=StringList(val=[str(v) for v in value]))
    if dtype == "int64[]":
        return ValueProto(int64_list_val=Int64List(val=[int(v) for v in value]))
    if dtype == "float64[]":
        return ValueProto(double_list_val=DoubleList(val=[float(v) for v in value]))
    if dtype == "int64":
        return ValueProto(int64_val=int(value))
    raise ValueError(f"unsupported state dtype {dtype}")


#: The ``RedisOnlineStore`` steps :meth:`OnlineFeatures._redis_read` composes (Feast 0.67); a
#: Feast without them gets one ``online_read`` per view.
_REDIS_STEPS = (
    "_generate_hset_keys_for_features",
    "_generate_redis_keys_for_entities",
    "_read_hash_fields",
    "_convert_redis_values_to_protobuf",
)


def _redis_view_name(fv: Any, config: Any) -> str:
    """The view's name in Redis hash fields (versioned when the registry versions views)."""
    try:
        from feast.infra.online_stores.redis import _versioned_fv_name
    except ImportError:  # pragma: no cover - a Feast without view versioning
        return str(fv.name)
    return str(_versioned_fv_name(fv, config))


class OnlineFeatures:
    """Serving-side feature assembly over the online store (see module docstring).

    ``get``/``get_many`` read the three online views through the Feast provider
    (``online_read``: one store round trip per view) and run the body of the on-demand view
    ``customer_realtime`` (:func:`realtime_batch`) on the result; ``get_via_feast`` does the
    same through ``FeatureStore.get_online_features`` on ``fraud_v1_online`` (identical values,
    several milliseconds of SDK overhead per call). ``write_back_many`` writes the new history
    state rows of view ``customer_history`` (what a push to ``customer_history_push`` writes);
    ``via_push=True`` goes through ``FeatureStore.push`` instead.
    """

    def __init__(
        self,
        config: StoreConfig | None = None,
        *,
        store: FeatureStore | None = None,
        redis_retries: int = 1,
    ) -> None:
        """``redis_retries``: retries (5-50 ms backoff) before a Redis call gives up and raises
        :class:`FeatureStoreUnavailable` — serving fails fast instead of redis-py's default
        ~7 s of backoff."""
        from riskml.features.repo import DEVICE_VIEW, HISTORY_VIEW, TERMINAL_VIEW
        from riskml.features.store import get_store

        self.store = store or get_store(config)
        try:
            self._service = self.store.get_feature_service(ONLINE_FEATURE_SERVICE)
            self._history_fv = self.store.get_feature_view(HISTORY_VIEW)
            self._terminal_fv = self.store.get_feature_view(TERMINAL_VIEW)
            self._device_fv = self.store.get_feature_view(DEVICE_VIEW)
        except Exception as exc:
            raise FeatureStoreError(
                f"feature service {ONLINE_FEATURE_SERVICE!r} not registered in project "
                f"{self.store.project!r}: run `riskml features apply` first ({exc})"
            ) from exc
        self._provider = self.store._get_provider()
        #: Feast's Redis store when one pipeline can read several views (:meth:`_redis_read`)
        self._redis: Any = None
        #: SQLite: reads on per-thread connections of their own, one statement for every view
        self._sqlite: _SqliteReads | None = None
        self._hset_keys: dict[tuple[str, tuple[str, ...]], tuple[str, list[str], list[Any]]] = {}
        self._names = [name for name, _ in feature_contract()]
        #: Tabular feature names in contract order (the keys of ``get``'s vector, sequence aside).
        self.feature_names: list[str] = list(self._names)
        if self.store.config.online_store.type == "redis":
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry

            online_store: Any = self._provider.online_store
            client = online_store._get_client(self.store.config.online_store)
            client.set_retry(Retry(ExponentialBackoff(cap=0.05, base=0.005), redis_retries))
            if all(hasattr(online_store, m) for m in _REDIS_STEPS):
                self._redis = online_store
        elif self.store.config.online_store.type == "sqlite":
            # Write-ahead log, no fsync per commit: a write-back costs a page write, not a disk
            # flush (write_back_many of 3 transactions, p50: 6.0 -> 4.2 ms), and readers never
            # wait for a writer. The local online store is a cache rebuilt by materialize:
            # losing the last commits to a power cut is acceptable (production uses Redis).
            # Best effort: a store that cannot be opened now is not an error here; its reads
            # and writes raise FeatureStoreUnavailable (and serving answers from the rules).
            import sqlite3

            sqlite_store: Any = self._provider.online_store
            self._sqlite = _SqliteReads(sqlite_store._get_db_path(self.store.config))
            try:
                conn = sqlite_store._get_conn(self.store.config)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                pass

    # -- low-level reads/writes --------------------------------------------------------------
    def _online_read(
        self, fv: Any, key: str, ids: Sequence[str], features: list[str]
    ) -> list[dict[str, Any] | None]:
        return self._read_views([(fv, key, ids, features)])[0]

    def _read_views(
        self, reads: Sequence[tuple[Any, str, Sequence[str], list[str]]]
    ) -> list[list[dict[str, Any] | None]]:
        """Rows of several views, ``(view, join key, ids, features)`` each, in one store round
        trip where the store allows it (Redis: every view's HMGETs in one pipeline, keys and
        values encoded and decoded by Feast's own Redis store; SQLite: one statement over
        every view's table, :class:`_SqliteReads`), else one ``online_read`` per view. ``None``
        for an entity the view does not have."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        from riskml.features.store import raise_if_unavailable

        config = self.store.config
        keyed = [
            (
                fv,
                [
                    EntityKeyProto(join_keys=[key], entity_values=[ValueProto(string_val=str(i))])
                    for i in ids
                ],
                features,
            )
            for fv, key, ids, features in reads
        ]
        try:
            if self._sqlite is not None:
                return self._sqlite.read(config, keyed)
            if self._redis is None:
                got = [self._provider.online_read(config, fv, k, list(f)) for fv, k, f in keyed]
            else:
                got = self._redis_read(keyed)
        except Exception as exc:
            raise_if_unavailable(exc, self.store)
            raise
        return [
            [None if not values else {n: _py(v) for n, v in values.items()} for _ts, values in rows]
            for rows in got
        ]

    def _redis_read(self, keyed: Sequence[tuple[Any, list[Any], list[str]]]) -> list[list[Any]]:
        """:meth:`_read_views` on Redis: Feast's ``RedisOnlineStore.online_read`` steps for
        every view, with one ``_read_hash_fields`` call (one pipeline) for all of them. A
        request reads three views: two round trips fewer per decision."""
        store, config = self._redis, self.store.config
        commands: list[tuple[bytes, list[Any]]] = []
        spans = []
        for fv, entity_keys, features in keyed:
            cache_key = (fv.name, tuple(features))
            if cache_key not in self._hset_keys:  # mmh3 of every field name: once per view
                name = _redis_view_name(fv, config)
                requested, hset_keys = store._generate_hset_keys_for_features(
                    fv, list(features), fv_name_override=name
                )
                self._hset_keys[cache_key] = (name, requested, hset_keys)
            name, requested, hset_keys = self._hset_keys[cache_key]
            keys = store._generate_redis_keys_for_entities(config, entity_keys)
            spans.append((len(commands), len(keys), name, requested))
            commands.extend((k, hset_keys) for k in keys)
        values = store._read_hash_fields(config, commands) if commands else []
        return [
            store._convert_redis_values_to_protobuf(values[at : at + n], name, list(requested))
            for at, n, name, requested in spans
        ]

    def _read(self, features: Any, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """``FeatureStore.get_online_features`` with typed unavailability errors."""
        from riskml.features.store import raise_if_unavailable

        try:
            resp = self.store.get_online_features(features=features, entity_rows=rows)
            return dict(resp.to_dict())
        except FeatureStoreUnavailable:
            raise
        except Exception as exc:
            raise_if_unavailable(exc, self.store)
            raise

    # -- reads -------------------------------------------------------------------------------
    def get(self, request: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """Feature vector (contract order, plus ``cust_seq`` as a float32 array of shape
        ``(SEQ_LEN, len(SEQ_FIELDS))``) and the unknown-entity flags for one transaction."""
        return self.get_many([request])[0]

    def get_many(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[tuple[dict[str, Any], dict[str, int]]]:
        """Vectors for several transactions (one read per view)."""
        from riskml.features.realtime import STATE_FIELDS

        rows = [self._entity_row(r) for r in requests]
        if not rows:
            return []
        hist, terms, devs = self._read_views(
            [
                (
                    self._history_fv,
                    "customer_id",
                    [r["customer_id"] for r in rows],
                    list(STATE_FIELDS),
                ),
                (
                    self._terminal_fv,
                    "terminal_id",
                    [r["terminal_id"] for r in rows],
                    [n for n, _ in TERMINAL_FEATURES],
                ),
                (
                    self._device_fv,
                    "device_id",
                    [r["device_id"] for r in rows],
                    [n for n, _ in DEVICE_FEATURES],
                ),
            ]
        )
        inputs: dict[str, list[Any]] = {
            k: [None if h is None else h.get(k) for h in hist] for k in STATE_FIELDS
        }
        inputs["amount"] = [r["amount"] for r in rows]
        inputs["ts_us"] = [r["ts_us"] for r in rows]
        inputs["req_device_id"] = [r["req_device_id"] for r in rows]
        computed = realtime_batch(inputs)
        raw: dict[str, list[Any]] = dict(computed)
        for spec, got in ((TERMINAL_FEATURES, terms), (DEVICE_FEATURES, devs)):
            for name, _ in spec:
                raw[name] = [None if g is None else g.get(name) for g in got]
        return self._assemble(raw, len(rows))

    def get_via_feast(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[tuple[dict[str, Any], dict[str, int]]]:
        """Like :meth:`get_many`, through ``get_online_features(fraud_v1_online)``: Feast reads
        the views and runs the on-demand view ``customer_realtime`` itself."""
        rows = [self._entity_row(r) for r in requests]
        if not rows:
            return []
        return self._assemble(self._read(features=self._service, rows=rows), len(rows))

    def _assemble(
        self, raw: Mapping[str, list[Any]], n: int
    ) -> list[tuple[dict[str, Any], dict[str, int]]]:
        import numpy as np

        results = []
        for i in range(n):
            vec: dict[str, Any] = {}
            term_missing = raw["term_cnt_30d"][i] is None
            dev_missing = raw["dev_cnt_30d"][i] is None
            for name in self._names:
                if name == "unknown_terminal":
                    vec[name] = int(term_missing)
                elif name == "unknown_device":
                    vec[name] = int(dev_missing)
                else:
                    value = raw[name][i]
                    vec[name] = default_value(name) if value is None else value
            vec[SEQUENCE_FEATURE] = np.asarray(raw[SEQUENCE_FEATURE][i], dtype=np.float32).reshape(
                SEQ_LEN, len(SEQ_FIELDS)
            )
            results.append((vec, {flag: int(vec[flag]) for flag in FLAGS}))
        return results

    def _entity_row(self, request: Mapping[str, Any]) -> dict[str, Any]:
        missing = [k for k in REQUEST_KEYS if k not in request]
        if missing:
            raise FeatureStoreError(f"request lacks {', '.join(missing)}")
        try:
            amount = float(request["amount"])
        except (TypeError, ValueError) as exc:
            raise FeatureStoreError(f"invalid amount {request['amount']!r}") from exc
        if not (0 <= amount < float("inf")):
            raise FeatureStoreError(f"invalid amount {request['amount']!r}")
        device = str(request["device_id"])
        return {
            "customer_id": str(request["customer_id"]),
            "terminal_id": str(request["terminal_id"]),
            "device_id": device,
            "amount": amount,
            "ts_us": ts_to_us(request["ts"]),
            "req_device_id": device,
        }

    def history(self, customer_id: str) -> tuple[Any, int | None]:
        """The customer's history state (:class:`riskml.features.realtime.State`) and version."""
        return self._histories([str(customer_id)])[str(customer_id)]

    def _histories(self, customers: list[str]) -> dict[str, tuple[Any, int | None]]:
        from riskml.features.realtime import STATE_FIELDS, State

        got = self._online_read(
            self._history_fv, "customer_id", customers, [*STATE_FIELDS, "hist_event_us"]
        )
        out: dict[str, tuple[Any, int | None]] = {}
        for customer, values in zip(customers, got, strict=True):
            values = values or {}
            state = State.from_lists({k: values.get(k) for k in STATE_FIELDS})
            version = values.get("hist_event_us")
            out[customer] = (state, None if version is None else int(version))
        return out

    # -- write-back --------------------------------------------------------------------------
    def write_back(
        self, tx: Mapping[str, Any], terminal_risk: float | None = None, *, via_push: bool = False
    ) -> bool:
        """Fold one scored transaction into its customer's history state and store it.

        ``tx`` needs ``tx_id``, ``ts``, ``customer_id``, ``terminal_id``, ``device_id``,
        ``amount``, ``merchant_category``, ``channel``. ``terminal_risk`` is the transaction's
        ``term_risk_30d`` (from :meth:`get`); read from the online store when omitted.
        Returns False (and writes nothing) when ``tx_id`` is already in the state.
        """
        item = dict(tx)
        if terminal_risk is not None:
            item["terminal_risk"] = terminal_risk
        return self.write_back_many([item], via_push=via_push)[0]

    def write_back_many(
        self, txs: Sequence[Mapping[str, Any]], *, via_push: bool = False
    ) -> list[bool]:
        """``write_back`` for several transactions: one read and one write per call. A
        transaction's ``terminal_risk`` key (its ``term_risk_30d``) is used when present."""
        from riskml.features.realtime import apply_transaction

        need = ("tx_id", *REQUEST_KEYS, "merchant_category", "channel")
        for tx in txs:
            missing = [k for k in need if k not in tx]
            if missing:
                raise FeatureStoreError(f"write_back: transaction lacks {', '.join(missing)}")
        if not txs:
            return []
        lookup = sorted({str(t["terminal_id"]) for t in txs if t.get("terminal_risk") is None})
        risks: dict[str, float] = {}
        if lookup:
            got = self._online_read(self._terminal_fv, "terminal_id", lookup, ["term_risk_30d"])
            for term, values in zip(lookup, got, strict=True):
                value = None if values is None else values.get("term_risk_30d")
                risks[term] = float(default_value("term_risk_30d") if value is None else value)
        states = self._histories(sorted({str(t["customer_id"]) for t in txs}))
        changed_customers: list[str] = []
        results = []
        for tx in txs:
            customer = str(tx["customer_id"])
            risk = tx.get("terminal_risk")
            entry = {
                "tx_id": str(tx["tx_id"]),
                "ts_us": ts_to_us(tx["ts"]),
                "amount": float(tx["amount"]),
                "terminal_id": str(tx["terminal_id"]),
                "device_id": str(tx.get("device_id") or UNKNOWN_DEVICE),
                "merchant_category": str(tx["merchant_category"]),
                "channel": str(tx["channel"]),
                "terminal_risk": float(risks[str(tx["terminal_id"])] if risk is None else risk),
            }
            state, version = states[customer]
            new_state, changed = apply_transaction(state, entry)
            if changed:
                newest = int(new_state["hist_ts"].max())
                # strictly increasing per customer, so stores that keep the newest row (Redis)
                # accept out-of-order transactions too
                states[customer] = (new_state, max(newest, (version or 0) + 1))
                if customer not in changed_customers:
                    changed_customers.append(customer)
            results.append(changed)
        if changed_customers:
            self._store_states({c: states[c] for c in changed_customers}, via_push=via_push)
        return results

    def _store_states(
        self, states: Mapping[str, tuple[Any, int | None]], *, via_push: bool
    ) -> None:
        from riskml.features.realtime import STATE_FIELDS
        from riskml.features.repo import HISTORY_FIELDS, PUSH_SOURCE
        from riskml.features.store import raise_if_unavailable

        try:
            if via_push:
                import pandas as pd
                from feast.data_source import PushMode

                rows = []
                for customer, (state, event_us) in states.items():
                    assert event_us is not None
                    rows.append(
                        {
                            "customer_id": customer,
                            **state.to_lists(),
                            "hist_event_us": event_us,
                            "event_timestamp": pd.Timestamp(event_us, unit="us", tz="UTC"),
                        }
                    )
                columns = ["customer_id", *STATE_FIELDS, "hist_event_us", "event_timestamp"]
                frame = pd.DataFrame(rows, columns=columns)
                self.store.push(PUSH_SOURCE, frame, to=PushMode.ONLINE)
                return
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
            from feast.protos.feast.types.Value_pb2 import Value as ValueProto

            dtypes = dict(HISTORY_FIELDS)
            now = dt.datetime.now(dt.UTC)
            data: list[Any] = []
            for customer, (state, event_us) in states.items():
                assert event_us is not None
                lists = state.to_lists()
                values = {k: _proto(lists[k], dtypes[k]) for k in STATE_FIELDS}
                values["hist_event_us"] = _proto(event_us, "int64")
                key = EntityKeyProto(
                    join_keys=["customer_id"], entity_values=[ValueProto(string_val=customer)]
                )
                event = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=event_us)
                data.append((key, values, event, now))
            self._provider.online_write_batch(
                self.store.config, self._history_fv, data, progress=None
            )
        except FeatureStoreUnavailable:
            raise
        except Exception as exc:
            raise_if_unavailable(exc, self.store)
            raise


class _SqliteReads:
    """Reads of Feast's SQLite online store (Feast 0.67 table layout: one row per entity key
    and feature, the value a serialized ``ValueProto``) on a connection per thread, never on
    Feast's own connection, which the write-back uses.

    Why not ``SqliteOnlineStore.online_read``: its connection is shared by every thread, so a
    fetch could run inside the write-back's open transaction and turn it into a read
    transaction; the write then failed with "database is locked" when the other replica had
    committed since (SQLITE_BUSY_SNAPSHOT, no busy wait), ~1 write-back batch a second at
    100 rps. And it costs one statement per view with a timestamp conversion per row, where
    serving needs one statement and no timestamps. Reads run in autocommit with
    ``query_only`` on (WAL: they never wait for a writer); values decode with Feast's protos,
    so both paths give the same rows (the training/online parity tests compare them).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._sql: dict[tuple[Any, ...], str] = {}

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import pathlib
            import sqlite3

            # mode=rw: a missing database is an error (unavailable), never a new empty file
            uri = f"{pathlib.Path(self.path).absolute().as_uri()}?mode=rw"
            conn = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    def read(
        self, config: Any, keyed: Sequence[tuple[Any, list[Any], list[str]]]
    ) -> list[list[dict[str, Any] | None]]:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        version = config.entity_key_serialization_version
        keys = [
            [serialize_entity_key(k, entity_key_serialization_version=version) for k in ks]
            for _fv, ks, _f in keyed
        ]
        shape = tuple((fv.name, len(ks)) for (fv, _ks, _f), ks in zip(keyed, keys, strict=True))
        sql = self._sql.get(shape)
        if sql is None:
            versioning = config.registry.enable_online_feature_view_versioning
            parts = []
            for n, ((fv, _ks, _f), ks) in enumerate(zip(keyed, keys, strict=True)):
                table = compute_table_id(config.project, fv, versioning).replace('"', '""')
                marks = ",".join("?" * len(ks))
                parts.append(
                    f'SELECT {n}, entity_key, feature_name, value FROM "{table}" '
                    f"WHERE entity_key IN ({marks})"
                )
            sql = self._sql[shape] = " UNION ALL ".join(parts)
        params = [k for ks in keys for k in ks]
        found: list[dict[bytes, dict[str, Any]]] = [{} for _ in keyed]
        for n, key, feature, blob in self._conn().execute(sql, params).fetchall():
            value = ValueProto()
            value.ParseFromString(blob)
            found[n].setdefault(key, {})[feature] = _py(value)
        return [[f.get(k) for k in ks] for f, ks in zip(found, keys, strict=True)]


def vector_array(vec: Mapping[str, Any]) -> np.ndarray:
    """The tabular part of a vector as float64 in contract order (for models)."""
    import numpy as np

    return np.asarray([float(vec[name]) for name, _ in feature_contract()], dtype=np.float64)


__all__ = [
    "DEVICE_FEATURES",
    "TERMINAL_FEATURES",
    "OnlineFeatures",
    "realtime_batch",
    "ts_to_us",
    "vector_array",
]
