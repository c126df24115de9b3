"""Online features for serving: one transaction in, the full ``fraud_v1`` vector out.

``OnlineFeatures.get(request)`` reads the customer's history state and the terminal/device
(and, from ``fraud_v2`` on, customer) snapshots from the online store (SQLite or Redis) in one
Feast call on the FeatureService ``fraud_v1_online``; Feast runs the on-demand view
``customer_realtime`` (request-time customer windows, ratios, sequence:
:func:`realtime_batch`). ``write_back(tx)`` folds the scored
transaction into the customer's history state and pushes it (push source
``customer_history_push``), idempotent by ``tx_id``.

Unknown customers/terminals/devices get the documented defaults
(:data:`riskml.features.definitions.DEFAULTS`) and a flag (``unknown_customer``,
``unknown_terminal``, ``unknown_device``) — never an exception. An unreachable online store
raises :class:`riskml.features.errors.FeatureStoreUnavailable`; a Redis that refuses the
credentials raises :class:`riskml.features.errors.FeatureStoreAuthError`, already when
``OnlineFeatures`` is created (a replica's start-up), so a wrong password never turns into
decisions quietly answered from the rules.

Write-backs are atomic per customer on SQLite and Redis, so any number of replicas may write
back the same customer at once without losing a transaction: on SQLite the read, fold and write
of a batch run in one write transaction (``BEGIN IMMEDIATE``); on Redis each customer's new
state is written by a compare-and-set script that checks the version it was folded from, and
a customer another writer changed in between is read again and folded again. A write-back
may start from the history its fetch read (:meth:`OnlineFeatures.fetch_many`, the transaction's
``history_base``): the version check above makes a stale one cost a re-read, never a lost or
doubled transaction. A long-lived folder (the stream processor) may keep the histories it wrote
(:meth:`OnlineFeatures.cache_states`) under the same rule: a batch reads only the customers it
does not hold, every write is checked against the stored version, and a fold from a held copy
that changes nothing (a duplicate) is confirmed by a read. On Redis a history is written as the
bytes Feast's own write makes (:class:`_StateEncoder`), so Feast's online reads read it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from riskml.features.definitions import (
    CUSTOMER_RISK_FEATURES,
    DEVICE_FEATURES,
    FEATURE_SERVICES,
    ONLINE_FEATURE_SERVICE,
    SEQ_FIELDS,
    SEQ_LEN,
    SEQUENCE_FEATURE,
    TERMINAL_FEATURES,
    UNKNOWN_DEVICE,
    default_value,
    feature_contract,
)
from riskml.features.errors import FeatureStoreError, FeatureStoreUnavailable
from riskml.features.realtime import APPLIED, realtime_batch, realtime_with_states

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from feast import FeatureStore

    from riskml.features.realtime import State
    from riskml.features.store import StoreConfig

log = logging.getLogger(__name__)
US = 1_000_000
#: Request keys ``get`` needs (``tx_id`` is optional for ``get``, required for ``write_back``).
REQUEST_KEYS: tuple[str, ...] = ("ts", "customer_id", "terminal_id", "device_id", "amount")
FLAGS: tuple[str, ...] = ("unknown_customer", "unknown_terminal", "unknown_device")
#: Redis write-backs: reads + folds of a customer whose state other writers keep changing
CAS_ATTEMPTS = 5
#: Redis keys of entities remembered per :class:`OnlineFeatures` (cleared when full)
KEY_CACHE = 100_000
#: Decoded snapshot rows remembered per :class:`OnlineFeatures` (:func:`_redis_rows`; ~2 KB each)
ROW_CACHE = 8_192
#: :meth:`OnlineFeatures.fold_many` outcome of a transaction too far in the future to fold
FUTURE = "future"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Compare-and-set of one customer's history state in its Feast hash. KEYS[1]: the entity's
#: key; ARGV: the version field, its expected value ('' = absent), key TTL (0 = none), then
#: field/value pairs as Feast's RedisOnlineStore writes them. 1 = written, 0 = changed since.
_CAS_LUA = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
"""


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
        return (value - _EPOCH) // dt.timedelta(microseconds=1)
    raise FeatureStoreError(f"invalid timestamp {value!r} (datetime, ISO string or int µs)")


class HistoryBase(NamedTuple):
    """A customer's history state as a fetch read it, and its version (``hist_event_us``;
    None: no history then). Handed to the write-back as the transaction's ``history_base``."""

    state: State
    version: int | None


def _version(values: Mapping[str, Any] | None) -> int | None:
    """The ``hist_event_us`` of a history row (None: no row, or no version)."""
    version = None if values is None else values.get("hist_event_us")
    return None if version is None else int(version)


def _bases(txs: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Any, int | None]]:
    """The newest ``history_base`` given per customer (the base a write-back folds into)."""
    bases: dict[str, tuple[Any, int | None]] = {}
    for tx in txs:
        base = tx.get("history_base")
        if base is None:
            continue
        if not (isinstance(base, tuple) and len(base) == 2):
            raise FeatureStoreError(
                f"write_back: history_base of {tx['tx_id']!r} is not a (state, version) pair"
            )
        customer = str(tx["customer_id"])
        state, version = base
        had = bases.get(customer)
        if had is None or (-1 if version is None else version) > (-1 if had[1] is None else had[1]):
            bases[customer] = (state, version)
    return bases


def _py(value: Any) -> Any:
    """Python value of a Feast ``ValueProto`` (lists for list types, None when unset)."""
    which = value.WhichOneof("val")
    if which is None or which == "null_val":
        return None
    got = getattr(value, which)
    return list(got.val) if which.endswith("_list_val") else got


_PARSER: Any = None


def _value_parser() -> Any:
    """``ValueProto.FromString`` (imported once, not at module import)."""
    global _PARSER
    if _PARSER is None:
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        _PARSER = ValueProto.FromString
    return _PARSER


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _StateEncoder:
    """A history state's fields as the ``ValueProto`` bytes Feast's ``online_write_batch``
    writes (``_proto(...).SerializeToString()``, byte for byte): float64 lists packed straight
    from the array's bytes, the other lists through one protobuf message each."""

    def __init__(self) -> None:
        from feast.protos.feast.types import Value_pb2 as pb

        from riskml.features.realtime import STATE_FIELDS
        from riskml.features.repo import HISTORY_FIELDS

        self.pb = pb
        dtypes = dict(HISTORY_FIELDS)
        self.fields = [(k, dtypes[k]) for k in STATE_FIELDS]
        number = pb.Value.DESCRIPTOR.fields_by_name["double_list_val"].number
        self.double_tag = _varint(number << 3 | 2)

    def encode(self, state: Any, version: int) -> dict[str, bytes]:
        pb = self.pb
        out: dict[str, bytes] = {}
        for key, dtype in self.fields:
            values = state[key]
            if dtype == "float64[]":
                # DoubleList: field 1, packed little-endian doubles (absent when empty)
                raw = values.astype("<f8", copy=False).tobytes()
                inner = b"\n" + _varint(len(raw)) + raw if raw else b""
                out[key] = self.double_tag + _varint(len(inner)) + inner
            elif dtype == "string[]":
                val = pb.Value(string_list_val=pb.StringList(val=values.tolist()))
                out[key] = val.SerializeToString()
            elif dtype == "int64[]":
                val = pb.Value(int64_list_val=pb.Int64List(val=values.tolist()))
                out[key] = val.SerializeToString()
            else:  # pragma: no cover - HISTORY_FIELDS has no other list type
                out[key] = _proto(values.tolist(), dtype).SerializeToString()
        out["hist_event_us"] = pb.Value(int64_val=int(version)).SerializeToString()
        return out


def _proto(value: Any, dtype: str) -> Any:
    """A Feast ``ValueProto`` of a history-state field. A list for a list type is taken as it
    is (``State.to_lists`` gives Python values of the right type; protobuf rejects others)."""
    from feast.protos.feast.types import Value_pb2 as pb

    if dtype == "int64":
        return pb.Value(int64_val=int(value))
    if not isinstance(value, list):
        value = [str(v) for v in value] if dtype == "string[]" else list(value)
    if dtype == "string[]":
        return pb.Value(string_list_val=pb.StringList(val=value))
    if dtype == "int64[]":
        return pb.Value(int64_list_val=pb.Int64List(val=value))
    if dtype == "float64[]":
        return pb.Value(double_list_val=pb.DoubleList(val=value))
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


def _redis_rows(
    values: Sequence[Sequence[bytes | None]],
    spans: Sequence[tuple[int, int, list[str]]],
    cache: dict[tuple[Any, ...], dict[str, Any]] | None = None,
) -> list[list[dict[str, Any] | None]]:
    """Each view's rows from the HMGET replies of :meth:`OnlineFeatures._redis_commands`,
    every value decoded from its ``ValueProto`` bytes.

    ``cache``: decoded rows of scalar values by their exact reply bytes (the same bytes always
    decode to the same values), shared by the callers, who only read them: a terminal's or a
    device's snapshot is read by every transaction at it until the next materialisation, and
    decoding its ~20 values costs ~80 µs. Rows with a list value (histories, which change with
    every write-back) are not kept; the cache is emptied when it holds :data:`ROW_CACHE`."""
    parse = _value_parser()

    def decode(row: Sequence[bytes | None], names: list[str]) -> dict[str, Any]:
        return {n: None if b is None else _py(parse(b)) for n, b in zip(names, row, strict=False)}

    out: list[list[dict[str, Any] | None]] = []
    for at, n, names in spans:
        if cache is None or not names:
            out.append([decode(row, names) for row in values[at : at + n]])
            continue
        rows: list[dict[str, Any] | None] = []
        for row in values[at : at + n]:
            key = (names[0], *row)
            got = cache.get(key)
            if got is None:
                got = decode(row, names)
                if not any(isinstance(v, list) for v in got.values()):
                    if len(cache) >= ROW_CACHE:
                        cache.clear()
                    cache[key] = got
            rows.append(got)
        out.append(rows)
    return out


@functools.cache
def _packer() -> Callable[..., list[bytes]]:
    """redis-py's command serializer: hiredis's C packer where hiredis is installed (it comes
    with ``feast[redis]``), else redis-py's Python one."""
    from redis import connection as rconn

    if rconn.HIREDIS_AVAILABLE:
        return rconn.HiredisRespSerializer().pack
    encoder = rconn.Encoder("utf-8", "strict", False)
    return rconn.PythonRespSerializer(6000, encoder.encode).pack


def _history_entry(tx: Mapping[str, Any], risks: Mapping[str, float]) -> tuple[str, dict[str, Any]]:
    """``(customer, history entry)`` of a transaction being written back."""
    risk = tx.get("terminal_risk")
    return str(tx["customer_id"]), {
        "tx_id": str(tx["tx_id"]),
        "ts_us": ts_to_us(tx["ts"]),
        "amount": float(tx["amount"]),
        "terminal_id": str(tx["terminal_id"]),
        "device_id": str(tx.get("device_id") or UNKNOWN_DEVICE),
        "merchant_category": str(tx["merchant_category"]),
        "channel": str(tx["channel"]),
        "terminal_risk": float(risks[str(tx["terminal_id"])] if risk is None else risk),
    }


def _fold(
    states: Mapping[str, tuple[Any, int | None]], entries: Sequence[tuple[str, dict[str, Any]]]
) -> tuple[list[str], dict[str, tuple[Any, int]]]:
    """Fold history entries into their customers' ``(state, version)``, in order: each one's
    outcome (:func:`riskml.features.realtime.fold_transaction`: applied, duplicate, late), and
    the new ``(state, version)`` of every customer that changed. Each customer's entries fold
    together (:func:`riskml.features.realtime.fold_transactions`: the same results)."""
    from riskml.features.realtime import fold_transactions

    by_customer: dict[str, list[int]] = {}
    for i, (customer, _entry) in enumerate(entries):
        by_customer.setdefault(customer, []).append(i)
    changed: dict[str, tuple[Any, int]] = {}
    results = [""] * len(entries)
    for customer, idx in by_customer.items():
        state, version = states[customer]
        # strictly increasing versions per customer, so stores that keep the newest row
        # (Redis) accept out-of-order transactions too
        new_state, outcomes, new_version = fold_transactions(
            state, [entries[i][1] for i in idx], version
        )
        for i, outcome in zip(idx, outcomes, strict=True):
            results[i] = outcome
        if any(o == APPLIED for o in outcomes):
            assert new_version is not None
            changed[customer] = (new_state, new_version)
    return results, changed


class OnlineFeatures:
    """Serving-side feature assembly over the online store (see module docstring).

    ``get``/``get_many`` read the three online views through the Feast provider
    (``online_read``: one store round trip per view) and run the body of the on-demand view
    ``customer_realtime`` (:func:`realtime_batch`) on the result; ``get_via_feast`` does the
    same through ``FeatureStore.get_online_features`` on ``fraud_v1_online`` (identical values,
    several milliseconds of SDK overhead per call). ``write_back_many`` writes the new history
    state rows of view ``customer_history`` (what a push to ``customer_history_push`` writes),
    atomically per customer on SQLite and Redis (module docstring); ``via_push=True`` goes
    through ``FeatureStore.push`` instead.
    """

    def __init__(
        self,
        config: StoreConfig | None = None,
        *,
        store: FeatureStore | None = None,
        redis_retries: int = 1,
        feature_service: str | None = None,
    ) -> None:
        """``redis_retries``: retries (5-50 ms backoff) before a Redis call gives up and raises
        :class:`FeatureStoreUnavailable` — serving fails fast instead of redis-py's default
        ~7 s of backoff. ``feature_service``: the contract version to serve (``fraud_v1`` or
        its ``_online`` twin for a model trained on v1; default the current one)."""
        from riskml.features.repo import (
            CUSTOMER_STATS_VIEW,
            DEVICE_VIEW,
            HISTORY_VIEW,
            TERMINAL_VIEW,
        )
        from riskml.features.store import get_store
        from riskml.settings import get_settings

        self.store = store or get_store(config)
        service = (feature_service or ONLINE_FEATURE_SERVICE).removesuffix("_online")
        if service not in FEATURE_SERVICES:
            raise FeatureStoreError(
                f"unknown feature service {feature_service!r}; known: {', '.join(FEATURE_SERVICES)}"
            )
        self.feature_service = FEATURE_SERVICES[service]
        self._names = [name for name, _ in feature_contract(service)]
        #: the customer's label-aware fraud history this contract reads (fraud_v2 on)
        self._customer_risk = [n for n, _ in CUSTOMER_RISK_FEATURES if n in self._names]
        try:
            self._service = self.store.get_feature_service(self.feature_service)
            self._history_fv = self.store.get_feature_view(HISTORY_VIEW)
            self._terminal_fv = self.store.get_feature_view(TERMINAL_VIEW)
            self._device_fv = self.store.get_feature_view(DEVICE_VIEW)
        except Exception as exc:
            raise FeatureStoreError(
                f"feature service {self.feature_service!r} not registered in project "
                f"{self.store.project!r}: run `riskml features apply` first ({exc})"
            ) from exc
        #: view ``customer_stats``; None in a registry applied before it existed (a contract
        #: without the customer's risk, fraud_v1, still serves there; label folds skip it)
        self._customer_fv: Any = None
        try:
            self._customer_fv = self.store.get_feature_view(CUSTOMER_STATS_VIEW)
        except Exception as exc:
            if self._customer_risk:
                raise FeatureStoreError(
                    f"feature view {CUSTOMER_STATS_VIEW!r} of {self.feature_service!r} not "
                    f"registered in project {self.store.project!r}: run `riskml features "
                    f"apply` first ({exc})"
                ) from exc
        #: read whole (on SQLite a feature filter costs more than the few extra fields)
        self._customer_fields = (
            [f.name for f in self._customer_fv.features] if self._customer_risk else []
        )
        self._provider = self.store._get_provider()
        #: Feast's Redis store when one pipeline can read several views (:meth:`_redis_read`)
        self._redis: Any = None
        #: SQLite: reads on per-thread connections of their own, one statement for every view
        self._sqlite: _Sqlite | None = None
        #: which atomic write-back path serves this store (None: Feast's online_write_batch)
        self._atomic_writes: str | None = None
        self._redis_client: Any = None
        self._redis_retries = redis_retries
        #: (event loop, its redis.asyncio client) of :meth:`fetch_many_async`
        self._aclient: tuple[Any, Any] | None = None
        #: the async client's read timeout, seconds (:meth:`_async_client`)
        self._read_timeout: float | None = None
        self._hset_keys: dict[tuple[str, tuple[str, ...]], tuple[str, list[str], list[Any]]] = {}
        self._key_cache: dict[tuple[str, str], bytes] = {}
        self._row_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._encoder: _StateEncoder | None = None
        #: Redis: the histories this process wrote or read last, by customer (state, version),
        #: least recently used first; off (0) unless :meth:`cache_states` sized it
        self._state_cache: OrderedDict[str, tuple[Any, int | None]] = OrderedDict()
        self._state_cache_size = 0
        self._cache_lock = threading.Lock()
        #: how far ahead of the clock a folded transaction may be (``stream_max_skew_s``)
        self.max_skew_s = get_settings().stream_max_skew_s
        #: Tabular feature names in contract order (the keys of ``get``'s vector, sequence aside).
        self.feature_names: list[str] = list(self._names)
        if self.store.config.online_store.type == "redis":
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry

            online_store: Any = self._provider.online_store
            client = online_store._get_client(self.store.config.online_store)
            client.set_retry(Retry(ExponentialBackoff(cap=0.05, base=0.005), redis_retries))
            if all(hasattr(online_store, m) for m in _REDIS_STEPS):
                self._redis = online_store
            # a plain redis-py client (not a cluster or GLIDE one) and Feast's Redis steps
            if self._redis is not None and isinstance(client, redis.Redis):
                self._redis_client = client
                self._atomic_writes = "redis"
        elif self.store.config.online_store.type == "sqlite":
            # Write-ahead log, no fsync per commit: a write-back costs a page write, not a disk
            # flush (write_back_many of 3 transactions, p50: 6.0 -> 4.2 ms), and readers never
            # wait for a writer. The local online store is a cache rebuilt by materialize:
            # losing the last commits to a power cut is acceptable (production uses Redis).
            # Best effort: a store that cannot be opened now is not an error here; its reads
            # and writes raise FeatureStoreUnavailable (and serving answers from the rules).
            import sqlite3

            sqlite_store: Any = self._provider.online_store
            self._sqlite = _Sqlite(sqlite_store._get_db_path(self.store.config))
            online_cfg = self.store.config.online_store
            if not (  # Feast's extra columns for these: its own write path
                getattr(online_cfg, "vector_enabled", False)
                or getattr(online_cfg, "enable_openai_compatible_store", False)
            ):
                self._atomic_writes = "sqlite"
            try:
                conn = sqlite_store._get_conn(self.store.config)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                pass
        if self.store.config.online_store.type == "redis":
            # credentials refused is a configuration error: fail the start-up here, never
            # answer every request from the rules; an outage now may end (serving copes)
            try:
                self.check()
            except FeatureStoreUnavailable as exc:
                log.warning("online store unreachable at start-up: %s", exc)

    def check(self) -> None:
        """Reach the online store now (Redis: a PING with our credentials; SQLite: open the
        file). Raises :class:`~riskml.features.errors.FeatureStoreAuthError` when Redis refuses
        the credentials, :class:`FeatureStoreUnavailable` when the store cannot be reached."""
        from riskml.features.store import check_online_store

        check_online_store(self.store)

    # -- low-level reads/writes --------------------------------------------------------------
    def _online_read(
        self, fv: Any, key: str, ids: Sequence[str], features: list[str]
    ) -> list[dict[str, Any] | None]:
        return self._read_views([(fv, key, ids, features)])[0]

    def _read_views(
        self,
        reads: Sequence[tuple[Any, str, Sequence[str], list[str]]],
        conn: Any = None,
        *,
        shared_rows: bool = False,
    ) -> list[list[dict[str, Any] | None]]:
        """Rows of several views, ``(view, join key, ids, features)`` each, in one store round
        trip where the store allows it (Redis: every view's HMGETs in one pipeline, Feast's
        keys and hash fields, values decoded from their ``ValueProto`` bytes; SQLite: one
        statement over every view's table, :class:`_Sqlite`; ``conn``: inside a write-back's
        transaction), else one ``online_read`` per view. ``None`` for an entity the view does
        not have (SQLite; Redis and Feast's ``online_read``: a row of None values).
        ``shared_rows``: the caller only reads the rows, so Redis may hand out decoded rows it
        keeps (:func:`_redis_rows`)."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        from riskml.features.store import raise_if_unavailable

        config = self.store.config
        try:
            if self._redis is not None and self._sqlite is None:
                return self._redis_read(reads, shared_rows=shared_rows)
            keyed = [
                (
                    fv,
                    [
                        EntityKeyProto(
                            join_keys=[key], entity_values=[ValueProto(string_val=str(i))]
                        )
                        for i in ids
                    ],
                    features,
                )
                for fv, key, ids, features in reads
            ]
            if self._sqlite is not None:
                return self._sqlite.read(config, keyed, conn)
            got = [self._provider.online_read(config, fv, k, list(f)) for fv, k, f in keyed]
        except Exception as exc:
            raise_if_unavailable(exc, self.store)
            raise
        return [
            [None if not values else {n: _py(v) for n, v in values.items()} for _ts, values in rows]
            for rows in got
        ]

    def _redis_read(
        self, reads: Sequence[tuple[Any, str, Sequence[str], list[str]]], shared_rows: bool = False
    ) -> list[list[dict[str, Any] | None]]:
        """:meth:`_read_views` on Redis: the HMGETs of every view in one ``_read_hash_fields``
        call (one pipeline; a request reads three views: two round trips fewer per decision),
        Feast's keys and hash fields, and each value decoded straight from its ``ValueProto``
        bytes (what Feast's ``online_read`` returns, without its per-entity timestamp and
        ``ValueProto`` objects). An entity the view does not have: every feature None."""
        commands, spans = self._redis_commands(reads)
        values = self._redis._read_hash_fields(self.store.config, commands) if commands else []
        return _redis_rows(values, spans, self._row_cache if shared_rows else None)

    def _redis_commands(
        self, reads: Sequence[tuple[Any, str, Sequence[str], list[str]]]
    ) -> tuple[list[tuple[bytes, list[Any]]], list[tuple[int, int, list[str]]]]:
        """The HMGETs of :meth:`_redis_read` (key, hash fields) and each view's span of them."""
        commands: list[tuple[bytes, list[Any]]] = []
        spans = []
        for fv, key, ids, features in reads:
            _name, requested, hset_keys = self._hset_fields(fv, features)
            keys = self._redis_keys(key, ids)
            # Feast's `_ts:<view>` field last: read as Feast reads it, not decoded
            spans.append((len(commands), len(keys), requested[:-1]))
            commands.extend((k, hset_keys) for k in keys)
        return commands, spans

    # -- reads on the caller's event loop -------------------------------------------------------
    @property
    def reads_async(self) -> bool:
        """Whether :meth:`fetch_many_async` reads without a thread (a plain Redis online store:
        one ``redis.asyncio`` pipeline on the caller's event loop)."""
        return self._redis_client is not None and self._sqlite is None

    def _async_client(self) -> Any:
        """This event loop's ``redis.asyncio`` client (one per loop: a client's connections
        belong to the loop that opened them), made from the online store's connection string
        as Feast makes its own, with the sync client's fail-fast retry policy. Its read timeout
        (``socket_timeout``) is not the client's: redis-py would arm one timer per reply (five a
        decision: four HMGET replies and the pool's health check); :meth:`_hmget_async` arms
        one for the whole round trip (:attr:`_read_timeout`)."""
        import asyncio

        import redis.asyncio as aredis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        loop = asyncio.get_running_loop()
        held = self._aclient
        if held is not None and held[0] is loop:
            return held[1]
        online = self.store.config.online_store
        nodes, kwargs = self._redis._parse_connection_string(online.connection_string)
        timeout = kwargs.pop("socket_timeout", None)
        self._read_timeout = None if timeout is None else float(timeout)
        client = aredis.Redis(
            host=nodes[0]["host"],
            port=int(nodes[0]["port"]),
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), self._redis_retries),
            **kwargs,
        )
        self._aclient = (loop, client)
        return client

    async def fetch_many_async(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[tuple[dict[str, Any], dict[str, int], HistoryBase]]:
        """:meth:`fetch_many` with its one Redis round trip awaited on the running event loop
        (:attr:`reads_async`; any other store: :meth:`fetch_many` called here). No thread: a
        decision's fetch does not wait for the GIL behind the loop that serves HTTP, and a
        store that hangs holds a connection, not a thread (the caller's timeout cancels the
        read; redis-py drops a connection cancelled mid-reply)."""
        from riskml.features.store import raise_if_unavailable

        if not self.reads_async:
            return self.fetch_many(requests)
        rows, reads = self._fetch_reads(requests)
        if not rows:
            return []
        commands, spans = self._redis_commands(reads)
        try:
            values = await self._hmget_async(commands)
        except Exception as exc:
            raise_if_unavailable(exc, self.store)
            raise
        return self._fetched(rows, _redis_rows(values, spans, self._row_cache))

    async def _hmget_async(self, commands: Sequence[tuple[bytes, list[Any]]]) -> list[Any]:
        """The HMGETs in one write and their replies, on a connection of this loop's client:
        a pipeline as redis-py sends one, but packed by redis-py's hiredis serializer (the
        asyncio client packs in Python: ~0.1 ms for a decision's ~70 arguments), retried as
        redis-py retries its own pipelines (the client's ``Retry``: a failed connection is
        dropped and the batch sent again); a read cancelled mid-reply drops its connection
        (redis-py), so no reply is ever misread. One timer per attempt for the round trip (the
        store's read timeout), not one per reply: a store that stops answering fails the
        attempt with ``TimeoutError`` as a socket timeout would."""
        import asyncio

        pool = self._async_client().connection_pool
        pack = _packer()
        payload = [part for key, fields in commands for part in pack("HMGET", key, *fields)]
        conn = await pool.get_connection()

        async def send_and_read() -> list[Any]:
            async with asyncio.timeout(self._read_timeout):
                await conn.send_packed_command(payload)
                return [await conn.read_response() for _ in commands]

        async def drop(_error: Exception) -> None:
            await conn.disconnect()

        try:
            return await conn.retry.call_with_retry(send_and_read, drop)
        finally:
            await pool.release(conn)

    def _redis_keys(self, join_key: str, ids: Sequence[Any]) -> list[bytes]:
        """Feast's Redis keys of entities (serialized entity key + project), cached per id."""
        cache = self._key_cache
        names = [str(i) for i in ids]
        keys: dict[str, bytes] = {}
        missing: list[str] = []
        for name in names:
            got = cache.get((join_key, name))
            if got is not None:
                keys[name] = got
            elif name not in keys:
                keys[name] = b""
                missing.append(name)
        if missing:
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
            from feast.protos.feast.types.Value_pb2 import Value as ValueProto

            made = self._redis._generate_redis_keys_for_entities(
                self.store.config,
                [
                    EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=n)])
                    for n in missing
                ],
            )
            if len(cache) + len(missing) > KEY_CACHE:
                cache.clear()
            for name, key in zip(missing, made, strict=True):
                keys[name] = cache[(join_key, name)] = bytes(key)
        return [keys[name] for name in names]

    def _hset_fields(self, fv: Any, features: Sequence[str]) -> tuple[str, list[str], list[Any]]:
        """A view's name in Redis, the requested fields with Feast's ``_ts:<view>`` last, and
        their hash keys (Feast's mmh3 of every field name: once per view and field list)."""
        cache_key = (fv.name, tuple(features))
        if cache_key not in self._hset_keys:
            name = _redis_view_name(fv, self.store.config)
            requested, hset_keys = self._redis._generate_hset_keys_for_features(
                fv, list(features), fv_name_override=name
            )
            self._hset_keys[cache_key] = (name, requested, hset_keys)
        return self._hset_keys[cache_key]

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
        return [(vec, flags) for vec, flags, _base in self.fetch_many(requests)]

    def fetch_many(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[tuple[dict[str, Any], dict[str, int], HistoryBase]]:
        """:meth:`get_many`, each vector with the customer's history as read
        (:class:`HistoryBase`): put it in the transaction as ``history_base`` and its
        write-back starts from it instead of reading the history again."""
        rows, reads = self._fetch_reads(requests)
        if not rows:
            return []
        return self._fetched(rows, self._read_views(reads, shared_rows=True))

    def _fetch_reads(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, str, Sequence[str], list[str]]]]:
        """The entity rows of ``requests`` and the view reads of one fetch."""
        from riskml.features.realtime import STATE_FIELDS

        rows = [self._entity_row(r) for r in requests]
        reads: list[tuple[Any, str, Sequence[str], list[str]]] = [
            (
                self._history_fv,
                "customer_id",
                [r["customer_id"] for r in rows],
                [*STATE_FIELDS, "hist_event_us"],
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
        if self._customer_risk:  # the same round trip (one statement / pipeline)
            ids = [r["customer_id"] for r in rows]
            reads.append((self._customer_fv, "customer_id", ids, self._customer_fields))
        return rows, reads

    def _fetched(
        self, rows: list[dict[str, Any]], views: list[list[dict[str, Any] | None]]
    ) -> list[tuple[dict[str, Any], dict[str, int], HistoryBase]]:
        """:meth:`fetch_many`'s vectors from the views :meth:`_fetch_reads` named, as read."""
        from riskml.features.realtime import STATE_FIELDS

        hist, terms, devs, *custs = views
        inputs: dict[str, list[Any]] = {
            k: [None if h is None else h.get(k) for h in hist] for k in STATE_FIELDS
        }
        inputs["amount"] = [r["amount"] for r in rows]
        inputs["ts_us"] = [r["ts_us"] for r in rows]
        inputs["req_device_id"] = [r["req_device_id"] for r in rows]
        computed, states = realtime_with_states(inputs, sequence_arrays=True)
        raw: dict[str, list[Any]] = dict(computed)
        snapshots = [
            ([n for n, _ in TERMINAL_FEATURES], terms),
            ([n for n, _ in DEVICE_FEATURES], devs),
            *((self._customer_risk, got) for got in custs),
        ]
        for names, got in snapshots:
            for name in names:
                raw[name] = [None if g is None else g.get(name) for g in got]
        bases = [HistoryBase(state, _version(h)) for state, h in zip(states, hist, strict=True)]
        return [
            (vec, flags, base)
            for (vec, flags), base in zip(self._assemble(raw, len(rows)), bases, strict=True)
        ]

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

    def histories(self, customer_ids: Sequence[str]) -> dict[str, tuple[Any, int | None]]:
        """:meth:`history` of several customers, in one read."""
        customers = sorted({str(c) for c in customer_ids})
        return self._histories(customers) if customers else {}

    def _histories(
        self, customers: list[str], conn: Any = None
    ) -> dict[str, tuple[Any, int | None]]:
        """States and versions; on SQLite ``conn`` reads inside a write transaction."""
        from riskml.features.realtime import STATE_FIELDS, State

        got = self._read_views(
            [(self._history_fv, "customer_id", customers, [*STATE_FIELDS, "hist_event_us"])],
            conn=conn,
        )[0]
        out: dict[str, tuple[Any, int | None]] = {}
        for customer, values in zip(customers, got, strict=True):
            values = values or {}
            state = State.from_lists({k: values.get(k) for k in STATE_FIELDS})
            out[customer] = (state, _version(values))
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
        """``write_back`` for several transactions: whether each changed its customer's state
        (:meth:`fold_many` gives the reason when not)."""
        return [outcome == APPLIED for outcome in self.fold_many(txs, via_push=via_push)]

    def fold_many(
        self,
        txs: Sequence[Mapping[str, Any]],
        *,
        via_push: bool = False,
        now_us: int | None = None,
    ) -> list[str]:
        """Fold transactions into their customers' history states; each one's outcome:
        ``applied``, ``duplicate`` (``tx_id`` already folded), ``late`` (older than the
        history's retention: never folded) or ``future`` (more than ``stream_max_skew_s``
        after ``now_us``, default the clock: never folded, so one far-future transaction
        cannot push a customer's retention window past all the others).

        One history read and one write per call (SQLite: both in one write transaction;
        Redis: a customer whose state another writer changed since the read is read and
        folded again, up to ``CAS_ATTEMPTS`` times). A transaction's ``terminal_risk`` key
        (its ``term_risk_30d``) is used when present, and its ``history_base``
        (:meth:`fetch_many`) as the customer's history where the store still holds that
        version (SQLite: checked in the write transaction; Redis: by the compare-and-set),
        saving the history read."""
        need = ("tx_id", *REQUEST_KEYS, "merchant_category", "channel")
        for tx in txs:
            missing = [k for k in need if k not in tx]
            if missing:
                raise FeatureStoreError(f"write_back: transaction lacks {', '.join(missing)}")
        if not txs:
            return []
        if now_us is None:
            now_us = ts_to_us(dt.datetime.now(dt.UTC))
        limit = now_us + int(self.max_skew_s * US)
        outcomes = [FUTURE if ts_to_us(tx["ts"]) > limit else "" for tx in txs]
        todo = [tx for tx, outcome in zip(txs, outcomes, strict=True) if not outcome]
        if todo:
            folded = iter(self._fold_many(todo, via_push=via_push))
            outcomes = [outcome or next(folded) for outcome in outcomes]
        return outcomes

    def _fold_many(self, txs: Sequence[Mapping[str, Any]], *, via_push: bool) -> list[str]:
        lookup = sorted({str(t["terminal_id"]) for t in txs if t.get("terminal_risk") is None})
        risks: dict[str, float] = {}
        if lookup:
            got = self._online_read(self._terminal_fv, "terminal_id", lookup, ["term_risk_30d"])
            for term, values in zip(lookup, got, strict=True):
                value = None if values is None else values.get("term_risk_30d")
                risks[term] = float(default_value("term_risk_30d") if value is None else value)
        entries = [_history_entry(tx, risks) for tx in txs]
        customers = sorted({customer for customer, _ in entries})
        if via_push or self._atomic_writes is None:
            results, changed = _fold(self._histories(customers), entries)
            if changed:
                self._store_states(changed, via_push=via_push)
            return results
        bases = _bases(txs)
        if self._atomic_writes == "sqlite":
            assert self._sqlite is not None
            with self._guarded(), self._sqlite.transaction() as conn:
                bases = self._still_current(bases, conn)
                results, changed = _fold(self._states(customers, bases, conn), entries)
                if changed:
                    self._sqlite.upsert(
                        conn, self.store.config, self._history_fv, self._rows(changed)
                    )
            return results
        return self._write_back_redis(entries, customers, bases)

    def _still_current(
        self, bases: Mapping[str, tuple[Any, int | None]], conn: Any
    ) -> dict[str, tuple[Any, int | None]]:
        """The ``bases`` whose version the store still holds (SQLite: read inside the write
        transaction, so it stays so until the commit): one field per customer, not a history."""
        given = list(bases)
        if not given:
            return {}
        stored = self._read_views(
            [(self._history_fv, "customer_id", given, ["hist_event_us"])], conn
        )[0]
        return {
            c: bases[c]
            for c, row in zip(given, stored, strict=True)
            if bases[c][1] == _version(row)
        }

    def _states(
        self, customers: list[str], bases: Mapping[str, tuple[Any, int | None]], conn: Any = None
    ) -> dict[str, tuple[Any, int | None]]:
        """``bases`` and the histories of the other ``customers`` read from the store."""
        unread = [c for c in customers if c not in bases]
        return {**bases, **(self._histories(unread, conn=conn) if unread else {})}

    def _write_back_redis(
        self,
        entries: list[tuple[str, dict[str, Any]]],
        customers: list[str],
        bases: Mapping[str, tuple[Any, int | None]],
    ) -> list[str]:
        """Fold and compare-and-set; a customer refused (changed since its state was read) is
        read and folded again. States come from ``bases``, else the state cache
        (:meth:`cache_states`), else one read of the rest. A cached state is trusted only
        through the compare-and-set: a customer whose fold from it changed nothing (all
        duplicates or late) is read and folded again, so no outcome rests on a stale copy."""
        results: list[str] = [""] * len(entries)
        pending = list(range(len(entries)))
        cache = self._state_cache
        for _attempt in range(CAS_ATTEMPTS):
            # the fetched histories first; the compare-and-set refuses a stale one
            states: dict[str, tuple[Any, int | None]] = {}
            cached: set[str] = set()
            unread: list[str] = []
            for customer in customers:
                got = bases.get(customer)
                if got is None and self._state_cache_size:
                    got = cache.get(customer)
                    if got is not None:
                        cached.add(customer)
                if got is None:
                    unread.append(customer)
                else:
                    states[customer] = got
            if unread:
                states.update(self._histories(unread))
            bases = {}
            got_results, changed = _fold(states, [entries[i] for i in pending])
            with self._guarded():
                lost = self._redis_cas(changed, {c: states[c][1] for c in changed})
            # folded from a cached copy and nothing to write: not proven current, read again
            again = lost | {c for c in cached if c not in changed}
            if self._state_cache_size:
                self._remember(
                    {c: changed.get(c, states[c]) for c in customers if c not in again},
                    forget=again,
                )
            for i, result in zip(pending, got_results, strict=True):
                if entries[i][0] not in again:
                    results[i] = result
            pending = [i for i in pending if entries[i][0] in again]
            if not pending:
                return results
            customers = sorted(again)
        raise FeatureStoreError(
            f"write_back: the history of {len(customers)} customer(s) changed under every one "
            f"of {CAS_ATTEMPTS} attempts (first: {customers[0]})"
        )

    def cache_states(self, size: int) -> None:
        """Keep the last ``size`` customers' histories this process read or wrote (Redis
        write-backs; 0: off, the default). A batch then reads only the customers it does not
        hold: the compare-and-set still checks every write against the stored version, so a
        copy another writer made stale costs a read, never a lost or doubled transaction."""
        self._state_cache_size = max(0, int(size))
        with self._cache_lock:
            while len(self._state_cache) > self._state_cache_size:
                self._state_cache.popitem(last=False)

    def _remember(self, states: Mapping[str, tuple[Any, int | None]], *, forget: set[str]) -> None:
        cache, size = self._state_cache, self._state_cache_size
        with self._cache_lock:
            for customer in forget:
                cache.pop(customer, None)
            for customer, state in states.items():
                cache[customer] = state
                cache.move_to_end(customer)
            while len(cache) > size:
                cache.popitem(last=False)

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """Store failures inside the block raise :class:`FeatureStoreUnavailable`."""
        from riskml.features.store import raise_if_unavailable

        try:
            yield
        except (FeatureStoreUnavailable, FeatureStoreError):
            raise
        except Exception as exc:
            raise_if_unavailable(exc, self.store)
            raise

    def _rows(self, states: Mapping[str, tuple[Any, int]]) -> list[tuple[Any, ...]]:
        """Feast's ``online_write_batch`` rows for new history states."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        from riskml.features.realtime import STATE_FIELDS
        from riskml.features.repo import HISTORY_FIELDS

        dtypes = dict(HISTORY_FIELDS)
        now = dt.datetime.now(dt.UTC)
        data: list[tuple[Any, ...]] = []
        for customer, (state, event_us) in states.items():
            lists = state.to_lists()
            values = {k: _proto(lists[k], dtypes[k]) for k in STATE_FIELDS}
            values["hist_event_us"] = _proto(event_us, "int64")
            key = EntityKeyProto(
                join_keys=["customer_id"], entity_values=[ValueProto(string_val=customer)]
            )
            event = _EPOCH + dt.timedelta(microseconds=event_us)
            data.append((key, values, event, now))
        return data

    def _store_states(self, states: Mapping[str, tuple[Any, int]], *, via_push: bool) -> None:
        """Write new history states through Feast: ``FeatureStore.push`` (``via_push``) or the
        provider's ``online_write_batch`` (what a push writes). No check of what changed since
        the states were read: the atomic paths of :meth:`write_back_many` are for serving."""
        from riskml.features.realtime import STATE_FIELDS
        from riskml.features.repo import PUSH_SOURCE

        with self._guarded():
            if via_push:
                import pandas as pd
                from feast.data_source import PushMode

                rows = []
                for customer, (state, event_us) in states.items():
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
            self._provider.online_write_batch(
                self.store.config, self._history_fv, self._rows(states), progress=None
            )

    def _redis_cas(
        self, states: Mapping[str, tuple[Any, int]], expected: Mapping[str, int | None]
    ) -> set[str]:
        """Write each customer's new state if its stored ``hist_event_us`` is still
        ``expected[customer]`` (absent for ``None``), all in one pipeline; the customers whose
        state changed since (written by nobody here) come back. The fields and timestamp are
        those Feast's ``online_write_batch`` writes (:class:`_StateEncoder`)."""
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto
        from google.protobuf.timestamp_pb2 import Timestamp

        if not states:
            return set()
        config = self.store.config
        fv = self._history_fv
        _name, requested, hset_keys = self._hset_fields(fv, [f.name for f in fv.features])
        fields = dict(zip(requested, hset_keys, strict=True))
        ts_field = hset_keys[-1]  # Feast's `_ts:<view>`
        ttl = int(getattr(config.online_store, "key_ttl_seconds", None) or 0)
        if self._encoder is None:
            self._encoder = _StateEncoder()
        encode = self._encoder.encode
        customers = list(states)
        keys = self._redis_keys("customer_id", customers)
        with self._redis_client.pipeline(transaction=False) as pipe:
            for customer, redis_key in zip(customers, keys, strict=True):
                state, event_us = states[customer]
                was = expected[customer]
                seconds, micros = divmod(int(event_us), US)
                ts = Timestamp(seconds=seconds, nanos=micros * 1000)
                args: list[Any] = [
                    fields["hist_event_us"],
                    b"" if was is None else ValueProto(int64_val=was).SerializeToString(),
                    ttl,
                    ts_field,
                    ts.SerializeToString(),
                ]
                for feature, value in encode(state, event_us).items():
                    args += [fields[feature], value]
                # EVAL with the script's text: a registered Script in a pipeline costs a SCRIPT
                # EXISTS round trip per execution (redis-py); Redis caches the compiled script
                pipe.eval(_CAS_LUA, 1, redis_key, *args)
            written = pipe.execute()
        return {c for c, ok in zip(customers, written, strict=True) if not ok}


class _Sqlite:
    """Reads and write-backs of Feast's SQLite online store (Feast 0.67 table layout: one row
    per entity key and feature, the value a serialized ``ValueProto``) on connections of their
    own, one reader and one writer per thread, never on Feast's shared connection.

    Why not ``SqliteOnlineStore.online_read``: its connection is shared by every thread, so a
    fetch could run inside the write-back's open transaction and turn it into a read
    transaction; the write then failed with "database is locked" when the other replica had
    committed since (SQLITE_BUSY_SNAPSHOT, no busy wait), ~1 write-back batch a second at
    100 rps. And it costs one statement per view with a timestamp conversion per row, where
    serving needs one statement and no timestamps. Reads run in autocommit with
    ``query_only`` on (WAL: they never wait for a writer); values decode with Feast's protos,
    so both paths give the same rows (the training/online parity tests compare them).

    Why not ``online_write_batch`` for the write-back: a write-back is read, fold, write, and
    only one write transaction around all three (``BEGIN IMMEDIATE``: the database's write
    lock from the read on) keeps two replicas from folding into the same stale state and losing
    a transaction. The rows written are Feast's (same columns, ``value_text``, timestamps), in
    one ``executemany`` instead of one statement per feature.
    """

    #: how long a write-back waits for another writer's transaction
    WRITE_TIMEOUT_S = 2.0

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        #: per read shape: the statement and each view's feature filter (empty: none)
        self._sql: dict[tuple[Any, ...], tuple[str, list[tuple[str, ...]]]] = {}

    def _connect(self, timeout: float) -> Any:
        import pathlib
        import sqlite3

        # mode=rw: a missing database is an error (unavailable), never a new empty file
        uri = f"{pathlib.Path(self.path).absolute().as_uri()}?mode=rw"
        return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(1.0)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """This thread's writer connection inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled
        back if the block raises)."""
        conn = getattr(self._local, "writer", None)
        if conn is None:
            conn = self._local.writer = self._connect(self.WRITE_TIMEOUT_S)
            conn.execute("PRAGMA synchronous=NORMAL")  # per connection; WAL is the file's
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed block or COMMIT: the next batch starts clean
                conn.execute("ROLLBACK")
            raise

    def upsert(self, conn: Any, config: Any, fv: Any, data: Sequence[tuple[Any, ...]]) -> None:
        """Write ``online_write_batch``-shaped rows ``(entity key, {feature: ValueProto},
        event time, created time)`` of view ``fv`` as Feast's SQLite store writes them."""
        import sqlite3

        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id, extract_text_and_num
        from feast.utils import to_naive_utc

        versioning = config.registry.enable_online_feature_view_versioning
        table = compute_table_id(config.project, fv, versioning).replace('"', '""')
        version = config.entity_key_serialization_version
        # what Feast's adapter (registered on sqlite3 by its SQLite store) makes of the times,
        # once per entity instead of once per feature row
        adapt = sqlite3.adapters.get((dt.datetime, sqlite3.PrepareProtocol), lambda t: t)
        rows = []
        for key, values, event, created in data:
            key_bin = serialize_entity_key(key, entity_key_serialization_version=version)
            event, created = adapt(to_naive_utc(event)), adapt(to_naive_utc(created))
            for feature, value in values.items():
                text, _num = extract_text_and_num(value, False)
                rows.append((key_bin, feature, value.SerializeToString(), text, event, created))
        conn.executemany(
            f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, '
            "created_ts) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO "
            "UPDATE SET value = excluded.value, value_text = excluded.value_text, "
            "event_ts = excluded.event_ts, created_ts = excluded.created_ts",
            rows,
        )

    def read(
        self, config: Any, keyed: Sequence[tuple[Any, list[Any], list[str]]], conn: Any = None
    ) -> list[list[dict[str, Any] | None]]:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        version = config.entity_key_serialization_version
        keys = [
            [serialize_entity_key(k, entity_key_serialization_version=version) for k in ks]
            for _fv, ks, _f in keyed
        ]
        shape = tuple(
            (fv.name, len(ks), tuple(f)) for (fv, _ks, f), ks in zip(keyed, keys, strict=True)
        )
        cached = self._sql.get(shape)
        if cached is None:
            # a feature filter only where a subset of the view is asked for (a write-back's
            # version check): a filter on every read cost the fetch ~10 %
            names = [
                tuple(f) if set(f) < {x.name for x in fv.features} else () for fv, _ks, f in keyed
            ]
            versioning = config.registry.enable_online_feature_view_versioning
            parts = []
            for i, ((fv, _ks, _f), ks, n) in enumerate(zip(keyed, keys, names, strict=True)):
                table = compute_table_id(config.project, fv, versioning).replace('"', '""')
                where = f"entity_key IN ({','.join('?' * len(ks))})"
                if n:
                    where += f" AND feature_name IN ({','.join('?' * len(n))})"
                parts.append(
                    f'SELECT {i}, entity_key, feature_name, value FROM "{table}" WHERE {where}'
                )
            cached = self._sql[shape] = (" UNION ALL ".join(parts), names)
        sql, names = cached
        params = [p for ks, n in zip(keys, names, strict=True) for p in (*ks, *n)]
        found: list[dict[bytes, dict[str, Any]]] = [{} for _ in keyed]
        for n, key, feature, blob in (conn or self._conn()).execute(sql, params).fetchall():
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
