"""Label events folded into the online terminal, device and customer risk, seconds after the
label.

A label says a past transaction was fraud (``chargeback``, ``confirmed_fraud``) or genuine
(``confirmed_genuine``) as of its own time (``label_us``). The batch features count a fraud in
its terminal's, device's and customer's (the customer's own fraud history, ``cust_lbl_*``)
``*_fraud_known_<w>`` / ``*_risk_<w>`` from the first daily snapshot at or after its label
(:mod:`riskml.features.batch`). Online, :class:`LabelFold` adds it at once, so the served row
of an entity at time ``T`` is **its latest snapshot's volumes with every label known at
``T``**:

    known_w(T) = #{transactions of the snapshot's window w whose latest label at or before T
                   says fraud}

for every label-aware window ``w`` of :data:`~riskml.features.definitions.RISK_WINDOWS`
(1, 7 and 30 days, recent and lagged by 7 days), which is what :func:`risk_rows_by_kind`
computes in batch (the parity tests compare the two).
Training is unchanged: a training row still sees only the labels of its snapshot (available at
that point in time, never later ones).

How: per entity, a *ledger* in the online store (every label of the transactions of the last
~38 days: ``tx_id -> (tx time, [(label time, fraud, event id)])``) and the base it adjusts: the
materialised snapshot's ``fraud_known`` per window for snapshot day ``k`` (the day of the last
materialisation's end, read from the Feast registry). The fold rewrites only the entity's
``*_fraud_known_<w>`` and ``*_risk_<w>`` (never the row's event time, so materialisation
still replaces it):

    known_w = base_known_w + sum over tx in the days [k-lag-days, k-lag) of window w of
              fraud(latest label) - fraud(latest label at or before the snapshot)

A row that materialisation replaced since the last fold (its ``fraud_known`` is no longer the
one written, or the snapshot day moved on) becomes the new base. Folds are idempotent (a label
is kept once per ``event_id``), order-free (the latest label *time* wins, not the latest
arrival), and atomic per entity: SQLite folds a batch in one write transaction with the rows;
Redis writes each entity's ledger and row fields by a compare-and-set script that checks the
ledger version and the row fields it read (a materialisation or another processor in between:
read and fold again).

Label reversals (genuine after fraud) assume the snapshot was built before the reversal; a
label older than the snapshot that reached the stream only after the snapshot was built counts
from the next snapshot on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from riskml.features.definitions import (
    CUSTOMER_RISK_PREFIX,
    RISK_HORIZON_DAYS,
    RISK_WINDOWS,
    UNKNOWN_DEVICE,
)
from riskml.features.errors import FeatureStoreError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from riskml.features.online import OnlineFeatures

US = 1_000_000
DAY_US = 86_400 * US
#: days a ledger keeps a transaction's labels: the furthest any risk window reaches back
RISK_DAYS = RISK_HORIZON_DAYS
#: label fold outcomes
APPLIED, DUPLICATE, LATE, UNMATCHED = "applied", "duplicate", "late", "unmatched"
#: entity kind -> (Feast view name, join key, feature prefix)
ENTITIES: dict[str, tuple[str, str, str]] = {
    "terminal": ("terminal_stats", "terminal_id", "term_"),
    "device": ("device_stats", "device_id", "dev_"),
    "customer": ("customer_stats", "customer_id", CUSTOMER_RISK_PREFIX),
}
#: SQLite: the ledgers' table, in the online store's database (same write transaction)
LEDGER_TABLE = "riskml_label_ledger"
#: Redis: ledger keys ``<prefix><project>:<kind>:<entity id>``, kept this long after a write
LEDGER_PREFIX = "riskml:labels:"
LEDGER_TTL_S = 62 * 86_400
#: Redis compare-and-set of a ledger and its entity's row. KEYS: ledger, Feast entity key.
#: ARGV: expected ledger version ('' = absent), new version, ledger JSON, ledger TTL,
#: n checks, then n (field, expected value or '') pairs, then field/value pairs to write.
_CAS_LUA = """
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if v then return 0 end
elseif v ~= ARGV[1] then
  return 0
end
local n = tonumber(ARGV[5])
for i = 0, n - 1 do
  local cur = redis.call('HGET', KEYS[2], ARGV[6 + 2 * i])
  local want = ARGV[7 + 2 * i]
  if want == '' then
    if cur then return 0 end
  elseif cur ~= want then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'state', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local first = 6 + 2 * n
if #ARGV >= first then redis.call('HSET', KEYS[2], unpack(ARGV, first)) end
return 1
"""
CAS_ATTEMPTS = 5


@dataclass(frozen=True)
class Label:
    """One label event, as the fold needs it. ``customer_id``/``terminal_id``/``tx_us``: the
    labelled transaction's, where the event carries them (the customer's history state is
    looked up first: it also knows the device)."""

    event_id: str
    tx_id: str
    fraud: bool
    label_us: int
    customer_id: str | None = None
    terminal_id: str | None = None
    tx_us: int | None = None


@dataclass(frozen=True)
class Target:
    """Where a label lands: the transaction's time, terminal, device and customer (None: not
    known)."""

    tx_us: int
    terminal_id: str | None
    device_id: str | None
    customer_id: str | None = None

    def entities(self) -> list[tuple[str, str]]:
        """The ``(kind, entity id)`` rows the label adjusts."""
        kinds = (
            ("terminal", self.terminal_id),
            ("device", self.device_id),
            ("customer", self.customer_id),
        )
        return [(kind, entity) for kind, entity in kinds if entity is not None]


@dataclass
class Ledger:
    """An entity's labels and the snapshot base its online row adjusts (module docstring)."""

    #: tx_id -> [tx time, [[label time, fraud 0/1, event id], ...]]
    labels: dict[str, list[Any]] = field(default_factory=dict)
    base_day: int | None = None
    #: window -> the snapshot's ``fraud_known`` this ledger adjusts / the value it wrote
    base_known: dict[str, int] | None = None
    wrote_known: dict[str, int] | None = None
    version: int = 0

    @classmethod
    def loads(cls, text: str | bytes | None) -> Ledger:
        if not text:
            return cls()
        raw = json.loads(text)

        def per_window(value: Any) -> dict[str, int] | None:
            if value is None:
                return None
            if isinstance(value, int):  # a ledger written before the windows: 30 days only
                return {"30d": value}
            return {str(k): int(v) for k, v in value.items()}

        return cls(
            labels=raw.get("labels", {}),
            base_day=raw.get("base_day"),
            base_known=per_window(raw.get("base_known")),
            wrote_known=per_window(raw.get("wrote_known")),
            version=int(raw.get("version", 0)),
        )

    def dumps(self) -> str:
        return json.dumps(
            {
                "labels": self.labels,
                "base_day": self.base_day,
                "base_known": self.base_known,
                "wrote_known": self.wrote_known,
                "version": self.version,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    def add(self, label: Label, tx_us: int) -> bool:
        """Record a label; False when this event was recorded already (idempotent)."""
        tx = self.labels.setdefault(label.tx_id, [tx_us, []])
        if any(e[2] == label.event_id for e in tx[1]):
            return False
        tx[1].append([label.label_us, int(label.fraud), label.event_id])
        tx[1].sort()
        return True

    def prune(self, before_us: int) -> None:
        """Forget transactions older than ``before_us`` (outside every window from now on)."""
        self.labels = {t: v for t, v in self.labels.items() if v[0] >= before_us}


def fraud_at(labels: Sequence[Sequence[Any]], at_us: int | None = None) -> bool:
    """Whether the latest label at or before ``at_us`` (None: the latest of all) says fraud;
    ties in time are broken by event id. No label: not fraud."""
    latest = None
    for label_us, fraud, event_id in labels:
        if at_us is None or label_us <= at_us:
            key = (label_us, event_id)
            if latest is None or key > latest[0]:
                latest = (key, fraud)
    return bool(latest and latest[1])


def known_delta(ledger: Ledger, day: int, window: str = "30d") -> int:
    """Frauds the ledger adds to (or takes from) snapshot ``day``'s ``fraud_known`` of
    ``window``: labels after the snapshot of transactions in the window's days
    ``[day - lag - days, day - lag)``."""
    days, lag = RISK_WINDOWS[window]
    lo, hi, snapshot = (day - lag - days) * DAY_US, (day - lag) * DAY_US, day * DAY_US
    delta = 0
    for tx_us, labels in ledger.labels.values():
        if lo <= tx_us < hi:
            delta += int(fraud_at(labels)) - int(fraud_at(labels, snapshot))
    return delta


def row_fields(prefix: str) -> list[str]:
    """The fields of an entity's row a label fold reads: per window its volume, known frauds
    and risk."""
    return [f"{prefix}{f}_{w}" for w in RISK_WINDOWS for f in ("cnt", "fraud_known", "risk")]


def adjusted(
    ledger: Ledger, row: Mapping[str, Any] | None, prefix: str, day: int | None
) -> dict[str, Any] | None:
    """The entity's new ``fraud_known``/``risk`` values per window from its stored row and
    ledger (and the ledger's base updated); None when there is no row or no snapshot to
    adjust. A window the row lacks (a store materialised before that window existed) is
    left alone."""
    if row is None or day is None:
        return None
    stored = {
        w: int(row[f"{prefix}fraud_known_{w}"])
        for w in RISK_WINDOWS
        if row.get(f"{prefix}fraud_known_{w}") is not None
    }
    if not stored:
        return None
    if ledger.base_day != day or ledger.wrote_known != stored or ledger.base_known is None:
        ledger.base_day, ledger.base_known = day, stored  # a fresh snapshot row: the base
    out: dict[str, Any] = {}
    wrote: dict[str, int] = {}
    for w in stored:
        known = max(ledger.base_known.get(w, stored[w]) + known_delta(ledger, day, w), 0)
        volume = int(row.get(f"{prefix}cnt_{w}") or 0)
        wrote[w] = known
        out[f"{prefix}fraud_known_{w}"] = known
        out[f"{prefix}risk_{w}"] = known / volume if volume > 0 else 0.0
    ledger.wrote_known = wrote
    return out


def resolve(label: Label, histories: Mapping[str, Any]) -> Target | None:
    """The labelled transaction's time, terminal, device and customer: from the customer's
    history state when it still holds the transaction, else from the event's time with its
    terminal and/or customer (no device then)."""
    if label.customer_id is not None and label.customer_id in histories:
        state = histories[label.customer_id][0]
        ids = state["hist_tx_id"].tolist()
        if label.tx_id in ids:
            i = ids.index(label.tx_id)
            device = str(state["hist_device"][i])
            return Target(
                int(state["hist_ts"][i]),
                str(state["hist_terminal"][i]),
                None if device == UNKNOWN_DEVICE else device,
                label.customer_id,
            )
    if label.tx_us is not None and (label.terminal_id or label.customer_id) is not None:
        return Target(label.tx_us, label.terminal_id, None, label.customer_id)
    return None


def _ledger_key(project: str, kind: str, entity: str) -> str:
    return f"{LEDGER_PREFIX}{project}:{kind}:{entity}"


class LabelFold:
    """Folds label events into the online terminal/device/customer risk of an
    :class:`OnlineFeatures` store (SQLite or Redis; module docstring). ``lateness_s``: how much
    older than the risk window a labelled transaction may be and still be kept (older ones are
    ``late``)."""

    def __init__(
        self, online: OnlineFeatures, *, lateness_s: float = 3600.0, snapshot_ttl_s: float = 30.0
    ) -> None:
        self.online = online
        self.lateness_us = int(lateness_s * US)
        self.snapshot_ttl_s = snapshot_ttl_s
        self._snapshot: tuple[float, int | None, tuple[int, Any]] | None = None
        self._refreshed_for: tuple[int, Any] | None = None
        if online._atomic_writes not in ("sqlite", "redis"):
            raise FeatureStoreError(
                "label folds need the SQLite or Redis online store with atomic writes"
            )

    # -- the snapshot the online rows hold ---------------------------------------------------
    def snapshot_day(self, *, refresh: bool = False) -> int | None:
        """Day (since the epoch) of the snapshot materialised last: the day of the end of the
        terminal view's last materialisation (Feast registry; re-read every
        ``snapshot_ttl_s``). None before any materialisation."""
        return self._materialized(refresh=refresh)[0]

    def _materialized(self, *, refresh: bool = False) -> tuple[int | None, tuple[int, Any]]:
        """The snapshot day and a marker of the materialisations so far (count, last end)."""
        import time

        now = time.monotonic()
        if refresh or self._snapshot is None or now - self._snapshot[0] > self.snapshot_ttl_s:
            fv = self.online.store.get_feature_view(ENTITIES["terminal"][0])
            ends = [end for _start, end in fv.materialization_intervals]
            day = None
            if ends:
                end = max(ends)
                end = end.replace(tzinfo=dt.UTC) if end.tzinfo is None else end
                day = int(end.timestamp() // 86_400)
            self._snapshot = (now, day, (len(ends), max(ends) if ends else None))
        return self._snapshot[1], self._snapshot[2]

    def refresh_if_materialized(self) -> int:
        """After a materialisation (seen in the registry, at most every ``snapshot_ttl_s``):
        re-apply every ledger to its entity's new snapshot row (:meth:`refresh`); the number
        of entities refreshed (0: nothing materialised since the last call)."""
        _day, marker = self._materialized()
        if marker == self._refreshed_for:
            return 0
        count = self.refresh()
        self._refreshed_for = marker
        return count

    def refresh(self, chunk: int = 500) -> int:
        """Recompute the row of every entity with a ledger from its stored row (a
        materialisation may have replaced it) and its labels; the number of entities."""
        entities = self._ledger_entities()
        day = self.snapshot_day(refresh=True)
        for i in range(0, len(entities), chunk):
            self._fold({e: [] for e in entities[i : i + chunk]}, day)
        return len(entities)

    @contextlib.contextmanager
    def _ledger_table(self) -> Iterator[Any]:
        """A transaction of the SQLite online store, the ledger table created."""
        assert self.online._sqlite is not None
        with self.online._sqlite.transaction() as conn:
            _create_table(conn)
            yield conn

    def _ledger_entities(self) -> list[tuple[str, str]]:
        online = self.online
        project = online.store.config.project
        if online._atomic_writes == "sqlite":
            with self._ledger_table() as conn:
                rows = conn.execute(
                    f'SELECT kind, entity FROM "{LEDGER_TABLE}" WHERE project=?', (project,)
                ).fetchall()
            return [(str(k), str(e)) for k, e in rows]
        prefix = f"{LEDGER_PREFIX}{project}:"
        out = []
        for key in online._redis_client.scan_iter(match=f"{prefix}*", count=1000):
            kind, _, entity = (key.decode() if isinstance(key, bytes) else key)[
                len(prefix) :
            ].partition(":")
            out.append((kind, entity))
        return sorted(out)

    # -- fold ----------------------------------------------------------------------------------
    def fold_many(self, labels: Sequence[Label]) -> list[str]:
        """Fold labels; each one's outcome: ``applied`` (recorded; the rows of its terminal,
        device and customer adjusted), ``duplicate`` (this event was folded before), ``late`` (its
        transaction is older than any risk window at the label's time plus the lateness) or
        ``unmatched`` (neither the customer's history nor the event says which transaction
        it is: it may not have been folded yet)."""
        if not labels:
            return []
        customers = [lb.customer_id for lb in labels if lb.customer_id is not None]
        histories = self.online.histories(customers) if customers else {}
        outcomes: list[str] = [""] * len(labels)
        work: dict[tuple[str, str], list[tuple[int, Label, int]]] = {}
        for i, label in enumerate(labels):
            target = resolve(label, histories)
            if target is None:
                outcomes[i] = UNMATCHED
                continue
            if target.tx_us < label.label_us - RISK_DAYS * DAY_US - DAY_US - self.lateness_us:
                outcomes[i] = LATE
                continue
            for kind, entity in target.entities():
                if self._view(kind) is not None:
                    work.setdefault((kind, entity), []).append((i, label, target.tx_us))
        day = self.snapshot_day()
        if work:
            added = self._fold(work, day)
            for i in {i for items in work.values() for i, _, _ in items}:
                outcomes[i] = APPLIED if added.get(i) else DUPLICATE
        return outcomes

    def _apply(
        self, ledger: Ledger, items: Sequence[tuple[int, Label, int]], day: int | None
    ) -> dict[int, bool]:
        added: dict[int, bool] = {}
        for i, label, tx_us in items:
            added[i] = ledger.add(label, tx_us) or added.get(i, False)
        if day is not None:
            ledger.prune((day - RISK_DAYS - 1) * DAY_US - self.lateness_us)
        return added

    def _fold(
        self, work: Mapping[tuple[str, str], list[tuple[int, Label, int]]], day: int | None
    ) -> dict[int, bool]:
        if self.online._atomic_writes == "sqlite":
            return self._fold_sqlite(work, day)
        return self._fold_redis(work, day)

    # -- SQLite ----------------------------------------------------------------------------------
    def _fold_sqlite(
        self, work: Mapping[tuple[str, str], list[tuple[int, Label, int]]], day: int | None
    ) -> dict[int, bool]:
        online = self.online
        assert online._sqlite is not None
        project = online.store.config.project
        added: dict[int, bool] = {}
        with online._guarded(), online._sqlite.transaction() as conn:
            _create_table(conn)
            rows = self.read_rows(list(work), conn)
            for (kind, entity), items in work.items():
                got = conn.execute(
                    f'SELECT state FROM "{LEDGER_TABLE}" WHERE project=? AND kind=? AND entity=?',
                    (project, kind, entity),
                ).fetchone()
                ledger = Ledger.loads(got[0] if got else None)
                for i, ok in self._apply(ledger, items, day).items():
                    added[i] = added.get(i, False) or ok
                values = adjusted(ledger, rows[kind, entity], ENTITIES[kind][2], day)
                ledger.version += 1
                conn.execute(
                    f'INSERT INTO "{LEDGER_TABLE}" (project, kind, entity, state) VALUES '
                    "(?, ?, ?, ?) ON CONFLICT(project, kind, entity) DO UPDATE SET "
                    "state = excluded.state",
                    (project, kind, entity, ledger.dumps()),
                )
                if values is not None:
                    self._update_sqlite(conn, kind, entity, values)
        return added

    def _update_sqlite(self, conn: Any, kind: str, entity: str, values: Mapping[str, Any]) -> None:
        """Rewrite the values of some features of an entity's Feast row (event time kept)."""
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id, extract_text_and_num

        config = self.online.store.config
        fv = self._view(kind)
        versioning = config.registry.enable_online_feature_view_versioning
        table = compute_table_id(config.project, fv, versioning).replace('"', '""')
        key = serialize_entity_key(
            _entity_key(ENTITIES[kind][1], entity),
            entity_key_serialization_version=config.entity_key_serialization_version,
        )
        updates = []
        for name, value in values.items():
            proto = _value(value)
            text, _num = extract_text_and_num(proto, False)
            updates.append((proto.SerializeToString(), text, key, name))
        conn.executemany(
            f'UPDATE "{table}" SET value = ?, value_text = ? WHERE entity_key = ? '
            "AND feature_name = ?",
            updates,
        )

    def read_rows(
        self, entities: Sequence[tuple[str, str]], conn: Any = None
    ) -> dict[tuple[str, str], dict[str, Any] | None]:
        """The stored volume and risk fields of ``(kind, entity id)`` rows (None: no row);
        ``conn``: inside a SQLite write transaction."""
        out: dict[tuple[str, str], dict[str, Any] | None] = {}
        for kind in ENTITIES:
            ids = [e for k, e in entities if k == kind]
            if not ids:
                continue
            if self._view(kind) is None:  # a registry without the view: no rows
                out.update({(kind, e): None for e in ids})
                continue
            _view, key, prefix = ENTITIES[kind]
            names = row_fields(prefix)
            got = self.online._read_views([(self._view(kind), key, ids, names)], conn)[0]
            for entity, row in zip(ids, got, strict=True):
                out[kind, entity] = row
        return out

    def _view(self, kind: str) -> Any:
        """The kind's Feast view (customer: None in a registry applied before it existed)."""
        online = self.online
        return {
            "terminal": online._terminal_fv,
            "device": online._device_fv,
            "customer": online._customer_fv,
        }[kind]

    # -- Redis -----------------------------------------------------------------------------------
    def _fold_redis(
        self, work: Mapping[tuple[str, str], list[tuple[int, Label, int]]], day: int | None
    ) -> dict[int, bool]:
        online = self.online
        client = online._redis_client
        config = online.store.config
        project = config.project
        added: dict[int, bool] = {}
        pending = list(work)
        for _attempt in range(CAS_ATTEMPTS):
            plans = []
            with online._guarded():
                reads = self._redis_read(pending)
            for (kind, entity), (fields, raw, ledger_raw) in zip(pending, reads, strict=True):
                ledger_v, ledger_text = ledger_raw
                ledger = Ledger.loads(ledger_text)
                got = self._apply(ledger, work[kind, entity], day)
                row = _decode_row(raw, fields)
                values = adjusted(ledger, row, ENTITIES[kind][2], day)
                ledger.version += 1
                plans.append((kind, entity, fields, raw, ledger_v, ledger, values, got))
            with online._guarded(), client.pipeline(transaction=False) as pipe:
                for kind, entity, fields, raw, ledger_v, ledger, values, _got in plans:
                    args: list[Any] = [
                        b"" if ledger_v is None else ledger_v,
                        str(ledger.version),
                        ledger.dumps(),
                        LEDGER_TTL_S,
                        len(fields),
                    ]
                    for (_name, hkey), value in zip(fields.items(), raw, strict=True):
                        args += [hkey, b"" if value is None else value]
                    for name, value in (values or {}).items():
                        args += [fields[name], _value(value).SerializeToString()]
                    pipe.eval(
                        _CAS_LUA,
                        2,
                        _ledger_key(project, kind, entity),
                        self._redis_key(kind, entity),
                        *args,
                    )
                written = pipe.execute()
            lost = []
            for plan, ok in zip(plans, written, strict=True):
                kind, entity, *_rest, got = plan
                if ok:
                    for i, new in got.items():
                        added[i] = added.get(i, False) or new
                else:
                    lost.append((kind, entity))
            if not lost:
                return added
            pending = lost
        raise FeatureStoreError(
            f"label fold: {len(pending)} entities changed under every one of {CAS_ATTEMPTS} "
            f"attempts (first: {pending[0]})"
        )

    def _redis_key(self, kind: str, entity: str) -> bytes:
        online = self.online
        keys = online._redis._generate_redis_keys_for_entities(
            online.store.config, [_entity_key(ENTITIES[kind][1], entity)]
        )
        return bytes(keys[0])

    def _redis_read(
        self, entities: Sequence[tuple[str, str]]
    ) -> list[tuple[dict[str, Any], list[bytes | None], tuple[bytes | None, bytes | None]]]:
        """Per entity: its row's hash fields (name -> hash key), their raw values, and the
        ledger's (version, state)."""
        online = self.online
        project = online.store.config.project
        out = []
        with online._redis_client.pipeline(transaction=False) as pipe:
            field_maps = []
            for kind, entity in entities:
                names = row_fields(ENTITIES[kind][2])
                _n, requested, hkeys = online._hset_fields(self._view(kind), names)
                fields = dict(zip(requested[: len(names)], hkeys[: len(names)], strict=True))
                field_maps.append(fields)
                pipe.hmget(self._redis_key(kind, entity), list(fields.values()))
                pipe.hmget(_ledger_key(project, kind, entity), ["v", "state"])
            got = pipe.execute()
        for n, fields in enumerate(field_maps):
            raw, (version, state) = got[2 * n], got[2 * n + 1]
            out.append((fields, list(raw), (version, state)))
        return out

    # -- reads (tests, tools) --------------------------------------------------------------
    def ledger(self, kind: str, entity: str) -> Ledger:
        """The stored ledger of one entity (empty when none)."""
        online = self.online
        project = online.store.config.project
        if online._atomic_writes == "sqlite":
            assert online._sqlite is not None
            with contextlib.suppress(Exception):
                got = (
                    online._sqlite._conn()
                    .execute(
                        f'SELECT state FROM "{LEDGER_TABLE}" WHERE project=? AND kind=? '
                        "AND entity=?",
                        (project, kind, entity),
                    )
                    .fetchone()
                )
                return Ledger.loads(got[0] if got else None)
            return Ledger()
        return Ledger.loads(online._redis_client.hget(_ledger_key(project, kind, entity), "state"))

    def clear(self) -> int:
        """Delete every ledger of this store's project (tests, a rebuilt store)."""
        online = self.online
        project = online.store.config.project
        if online._atomic_writes == "sqlite":
            with self._ledger_table() as conn:
                deleted = conn.execute(f'DELETE FROM "{LEDGER_TABLE}" WHERE project=?', (project,))
                return int(deleted.rowcount)
        keys = list(online._redis_client.scan_iter(match=f"{LEDGER_PREFIX}{project}:*"))
        return int(online._redis_client.delete(*keys)) if keys else 0


def _create_table(conn: Any) -> None:
    conn.execute(
        f'CREATE TABLE IF NOT EXISTS "{LEDGER_TABLE}" (project TEXT NOT NULL, '
        "kind TEXT NOT NULL, entity TEXT NOT NULL, state TEXT NOT NULL, "
        "PRIMARY KEY (project, kind, entity))"
    )


def _entity_key(join_key: str, entity: str) -> Any:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    return EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=entity)])


def _value(value: Any) -> Any:
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    if isinstance(value, int):
        return ValueProto(int64_val=value)
    return ValueProto(double_val=float(value))


def _decode_row(raw: Sequence[bytes | None], fields: Mapping[str, Any]) -> dict[str, Any] | None:
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    if all(v is None for v in raw):
        return None
    row: dict[str, Any] = {}
    for name, value in zip(fields, raw, strict=True):
        if value is None:
            row[name] = None
            continue
        proto = ValueProto()
        proto.ParseFromString(value)
        which = proto.WhichOneof("val")
        row[name] = None if which in (None, "null_val") else getattr(proto, which)
    return row


# -- batch: the same values from transactions and labels -------------------------------------
def effective_labels(labels: pl.DataFrame, at: dt.datetime | None = None) -> pl.DataFrame:
    """Per labelled transaction, as of ``at`` (None: every label): ``is_fraud`` (its latest
    label says fraud; ties in time by event id, as :func:`fraud_at`) and
    ``label_available_at`` (when the current fraud run began: the first fraud label after the
    last genuine one; null when genuine).

    ``labels``: columns ``tx_id``, ``fraud`` (bool/int), ``label_ts`` (UTC), ``event_id``."""
    import polars as pl

    frame = labels if at is None else labels.filter(pl.col("label_ts") <= _utc(at))
    runs: dict[str, tuple[bool, dt.datetime | None]] = {}
    for tx_id, fraud, ts in (
        frame.sort(["tx_id", "label_ts", "event_id"])
        .select("tx_id", pl.col("fraud").cast(pl.Boolean), "label_ts")
        .iter_rows()
    ):
        was_fraud, since = runs.get(tx_id, (False, None))
        runs[tx_id] = (bool(fraud), (since if was_fraud else ts) if fraud else None)
    return pl.DataFrame(
        {
            "tx_id": list(runs),
            "is_fraud": [f for f, _ in runs.values()],
            "label_available_at": [t for _, t in runs.values()],
        },
        schema={
            "tx_id": pl.String,
            "is_fraud": pl.Boolean,
            "label_available_at": pl.Datetime("us", "UTC"),
        },
    )


def apply_labels(
    transactions: pl.DataFrame, labels: pl.DataFrame, at: dt.datetime | None = None
) -> pl.DataFrame:
    """``transactions`` (schema frame) with ``is_fraud``/``label_available_at``/
    ``fraud_scenario`` from ``labels`` known at ``at`` (:func:`effective_labels`) where a
    transaction has any; the others keep theirs."""
    import polars as pl

    eff = effective_labels(labels, at).rename(
        {"is_fraud": "_fraud", "label_available_at": "_available"}
    )
    joined = transactions.join(eff, on="tx_id", how="left")
    has = pl.col("_fraud").is_not_null()

    def by_label(column: str, fraud: pl.Expr, genuine: pl.Expr) -> pl.Expr:
        """``column``: ``fraud`` where labelled fraud, ``genuine`` where labelled genuine."""
        return (
            pl.when(has & pl.col("_fraud"))
            .then(fraud)
            .when(has)
            .then(genuine)
            .otherwise(pl.col(column))
            .alias(column)
        )

    return joined.with_columns(
        pl.when(has)
        .then(pl.col("_fraud").cast(pl.Int8))
        .otherwise(pl.col("is_fraud"))
        .alias("is_fraud"),
        by_label("label_available_at", pl.col("_available"), pl.col("ts")),
        by_label("fraud_scenario", pl.lit("labelled"), pl.lit("none")),
    ).select(transactions.columns)


def risk_rows_as_of(
    transactions: pl.DataFrame, snapshot_day: int, at: dt.datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Terminal and device rows of :func:`risk_rows_by_kind`."""
    rows = risk_rows_by_kind(transactions, snapshot_day, at)
    return rows["terminal"], rows["device"]


def risk_rows_by_kind(
    transactions: pl.DataFrame, snapshot_day: int, at: dt.datetime
) -> dict[str, pl.DataFrame]:
    """Rows of every entity kind (:data:`ENTITIES`: terminal, device, customer) as the online
    store serves them at ``at`` after label folds: snapshot ``snapshot_day``'s volumes with
    every label known at ``at`` (the frame's ``is_fraud``/``label_available_at`` already as of
    ``at``: :func:`apply_labels`). Computed by the batch features, with the labels of
    ``(snapshot, at]`` moved to the snapshot."""
    import polars as pl

    from riskml.features.batch import compute_features

    snapshot = dt.datetime.fromtimestamp(snapshot_day * 86_400, tz=dt.UTC)
    at = _utc(at)
    moved = transactions.filter(pl.col("ts") < snapshot).with_columns(
        pl.when((pl.col("label_available_at") > snapshot) & (pl.col("label_available_at") <= at))
        .then(pl.lit(snapshot))
        .otherwise(pl.col("label_available_at"))
        .alias("label_available_at")
    )
    tables = compute_features(moved)
    out = {}
    for kind, (view, key, _prefix) in ENTITIES.items():
        frame: pl.DataFrame = getattr(tables, view)
        out[kind] = (
            frame.filter(pl.col("event_timestamp") <= snapshot)
            .sort("event_timestamp")
            .group_by(key, maintain_order=True)
            .last()
        )
    return out


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def label_of(event: Any) -> Label:
    """A :class:`Label` from a label event (anything with ``event_id``, ``tx_id``, ``label``,
    ``label_ts`` and optional ``customer_id``, ``terminal_id``, ``tx_ts``)."""
    from riskml.features.online import ts_to_us

    return Label(
        event_id=str(event.event_id),
        tx_id=str(event.tx_id),
        fraud=str(event.label) != "confirmed_genuine",
        label_us=ts_to_us(event.label_ts),
        customer_id=None if event.customer_id is None else str(event.customer_id),
        terminal_id=None if event.terminal_id is None else str(event.terminal_id),
        tx_us=None if event.tx_ts is None else ts_to_us(event.tx_ts),
    )
