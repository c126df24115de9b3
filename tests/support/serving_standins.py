"""Stand-in online feature sources (in-memory, Redis, SQLite) with one small feature layout.

Test scaffolding: they implement :class:`riskml.decision.protocols.FeatureSource` so the serving
tests can drive the fallback ladder, faults (a Redis stopped mid-run) and the HTTP app with a
store they control; the product serves the Feast online store (``serving.bundle``). The layout
is small and named like the ``fraud_v1`` contract where it can be (most names are its names):
request features, customer velocity/amount windows computed at request time from the customer's
recent history, the terminal's risk, and a short behavioural sequence.

Write-back appends the decided transaction to the customer's history, idempotent by ``tx_id``.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from riskml.decision.ladder import epoch_seconds
from riskml.decision.protocols import FeatureRow, FeatureSourceUnavailable
from riskml.features.definitions import MAX_AMOUNT_RATIO

FEATURE_NAMES: tuple[str, ...] = (
    "tx_log_amount",
    "tx_hour",
    "tx_is_ecom",
    "cust_cnt_1h",
    "cust_cnt_1d",
    "cust_mean_1d",
    "cust_amount_ratio_1d",
    "term_risk_30d",
    "unknown_customer",
)
SEQ_LEN = 8
SEQ_FIELDS: tuple[str, ...] = ("mask", "log_amount", "log_age", "hour", "is_ecom")
#: Events kept per customer.
HISTORY_MAX = 64
DEFAULT_TERMINAL_RISK = 0.01

Event = tuple[str, float, float, str]  # tx_id, ts (epoch s), amount, channel


def _event(tx: Mapping[str, Any]) -> Event:
    return (
        str(tx["tx_id"]),
        epoch_seconds(tx["ts"]),
        float(tx["amount"]),
        str(tx.get("channel", "unknown")),
    )


def _hour(ts: float) -> int:
    return int((ts % 86_400) // 3_600)


def compute_row(
    tx: Mapping[str, Any], history: Sequence[Event] | None, terminal_risk: float | None
) -> FeatureRow:
    """Features of ``tx`` given the customer's history (``None``: unknown customer)."""
    ts = epoch_seconds(tx["ts"])
    amount = float(tx["amount"])
    tx_id = str(tx["tx_id"])
    prior = sorted((e for e in history or () if e[1] <= ts and e[0] != tx_id), key=lambda e: e[1])
    day = [e for e in prior if e[1] >= ts - 86_400]
    cnt_1h = sum(1 for e in day if e[1] >= ts - 3_600)
    mean_1d = sum(e[2] for e in day) / len(day) if day else 0.0
    ecom = 1.0 if tx.get("channel") in ("ecom", "moto") else 0.0
    tabular = [
        math.log1p(amount),
        float(_hour(ts)),
        ecom,
        float(cnt_1h),
        float(len(day)),
        mean_1d,
        min(amount / mean_1d, MAX_AMOUNT_RATIO) if mean_1d > 0 else -1.0,
        DEFAULT_TERMINAL_RISK if terminal_risk is None else float(terminal_risk),
        1.0 if history is None else 0.0,
    ]
    seq = np.zeros((SEQ_LEN, len(SEQ_FIELDS)), dtype=np.float32)
    recent = prior[-SEQ_LEN:]
    for j, (_, ets, eamount, echannel) in enumerate(recent):
        seq[SEQ_LEN - len(recent) + j] = (
            1.0,
            math.log1p(eamount),
            math.log1p(max(ts - ets, 0.0)),
            _hour(ets) / 23.0,
            1.0 if echannel in ("ecom", "moto") else 0.0,
        )
    flags = {
        "unknown_customer": int(history is None),
        "unknown_terminal": int(terminal_risk is None),
    }
    return FeatureRow(tabular=tabular, sequence=seq, flags=flags)


class _StandinSource:
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def get_many(self, requests: Sequence[Mapping[str, Any]]) -> list[FeatureRow]:
        state = self._load(requests)
        return [
            compute_row(tx, hist, risk) for tx, (hist, risk) in zip(requests, state, strict=True)
        ]

    def get(self, request: Mapping[str, Any]) -> FeatureRow:
        return self.get_many([request])[0]

    def _load(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[tuple[list[Event] | None, float | None]]:
        raise NotImplementedError

    def write_back(self, tx: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def seed(
        self, history: Iterable[Mapping[str, Any]], terminal_risk: Mapping[str, float] | None = None
    ) -> int:
        """Load past transactions (and terminal risks); returns the number of new events."""
        n = sum(1 for tx in history if self.write_back(tx))
        for terminal, risk in (terminal_risk or {}).items():
            self.set_terminal_risk(terminal, risk)
        return n

    def set_terminal_risk(self, terminal_id: str, risk: float) -> None:
        raise NotImplementedError


class InMemoryFeatureSource(_StandinSource):
    """Process-local dictionaries (each replica has its own copy)."""

    def __init__(
        self,
        history: Sequence[Mapping[str, Any]] | None = None,
        terminal_risk: Mapping[str, float] | None = None,
    ) -> None:
        self._events: dict[str, list[Event]] = {}
        self._seen: set[str] = set()
        self._risk: dict[str, float] = {}
        self._lock = threading.Lock()
        self.seed(history or (), terminal_risk)

    def _load(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[tuple[list[Event] | None, float | None]]:
        with self._lock:
            return [
                (
                    list(self._events[c]) if (c := str(r["customer_id"])) in self._events else None,
                    self._risk.get(str(r["terminal_id"])),
                )
                for r in requests
            ]

    def write_back(self, tx: Mapping[str, Any]) -> bool:
        ev = _event(tx)
        with self._lock:
            if ev[0] in self._seen:
                return False
            self._seen.add(ev[0])
            events = self._events.setdefault(str(tx["customer_id"]), [])
            events.append(ev)
            events.sort(key=lambda e: e[1])
            del events[:-HISTORY_MAX]
            return True

    def set_terminal_risk(self, terminal_id: str, risk: float) -> None:
        with self._lock:
            self._risk[str(terminal_id)] = float(risk)


class RedisFeatureSource(_StandinSource):
    """Customer history as a Redis list of JSON events, terminal risk as a string key, the
    write-back idempotency gate as ``SET NX`` on ``<prefix>:wb:<tx_id>``. One pipelined round
    trip per ``get_many``. Connection errors raise :class:`FeatureSourceUnavailable` at once
    (no client-side retries: the ladder's deadline is the retry budget)."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "riskml:standin",
        timeout_s: float = 0.05,
        history: Sequence[Mapping[str, Any]] | None = None,
        terminal_risk: Mapping[str, float] | None = None,
        dedup_ttl_s: int = 7 * 86_400,
    ) -> None:
        import redis

        self.prefix = prefix
        self.dedup_ttl_s = dedup_ttl_s
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
            retry=None,
            decode_responses=True,
            health_check_interval=0,
        )
        self._errors = (redis.ConnectionError, redis.TimeoutError, OSError)
        if history or terminal_risk:
            self.seed(history or (), terminal_risk)

    def _ckey(self, customer_id: str) -> str:
        return f"{self.prefix}:c:{customer_id}"

    def _load(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[tuple[list[Event] | None, float | None]]:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for r in requests:
                pipe.lrange(self._ckey(str(r["customer_id"])), 0, -1)
                pipe.get(f"{self.prefix}:t:{r['terminal_id']}")
            raw = pipe.execute()
        except self._errors as exc:
            raise FeatureSourceUnavailable(f"redis feature source unreachable: {exc}") from exc
        out: list[tuple[list[Event] | None, float | None]] = []
        for i in range(len(requests)):
            events, risk = raw[2 * i], raw[2 * i + 1]
            hist = [tuple(json.loads(e)) for e in events] if events else None
            out.append((hist, None if risk is None else float(risk)))
        return out

    def write_back(self, tx: Mapping[str, Any]) -> bool:
        ev = _event(tx)
        try:
            if not self._redis.set(f"{self.prefix}:wb:{ev[0]}", 1, nx=True, ex=self.dedup_ttl_s):
                return False
            key = self._ckey(str(tx["customer_id"]))
            pipe = self._redis.pipeline(transaction=True)
            pipe.rpush(key, json.dumps(ev))
            pipe.ltrim(key, -HISTORY_MAX, -1)
            pipe.execute()
            return True
        except self._errors as exc:
            raise FeatureSourceUnavailable(f"redis feature source unreachable: {exc}") from exc

    def set_terminal_risk(self, terminal_id: str, risk: float) -> None:
        self._redis.set(f"{self.prefix}:t:{terminal_id}", float(risk))

    def clear(self) -> int:
        """Delete every key under this source's prefix (never the whole database)."""
        keys = list(self._redis.scan_iter(f"{self.prefix}:*", count=1000))
        return int(self._redis.delete(*keys)) if keys else 0  # type: ignore[arg-type]


class SQLiteFeatureSource(_StandinSource):
    """A SQLite file: ``events(tx_id PRIMARY KEY, ...)`` and ``terminals``; write-back is
    ``INSERT OR IGNORE`` (idempotent by the primary key). WAL mode; one connection per thread."""

    def __init__(
        self,
        path: str,
        history: Sequence[Mapping[str, Any]] | None = None,
        terminal_risk: Mapping[str, float] | None = None,
        timeout_s: float = 0.05,
    ) -> None:
        self.path = str(path)
        self.timeout_s = timeout_s
        self._local = threading.local()
        conn = self._conn()
        with conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS events (tx_id TEXT PRIMARY KEY, customer_id TEXT "
                "NOT NULL, ts REAL NOT NULL, amount REAL NOT NULL, channel TEXT NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS events_by_customer ON events(customer_id, ts)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS terminals (terminal_id TEXT PRIMARY KEY, risk REAL)"
            )
        if history or terminal_risk:
            self._bulk(history or ())
            for terminal, risk in (terminal_risk or {}).items():
                self.set_terminal_risk(terminal, risk)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, check_same_thread=False)
            self._local.conn = conn
        return conn

    def _bulk(self, history: Iterable[Mapping[str, Any]]) -> None:
        rows = []
        for tx in history:
            tx_id, ts, amount, channel = _event(tx)
            rows.append((tx_id, str(tx["customer_id"]), ts, amount, channel))
        with self._conn() as conn:
            conn.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)", rows)

    def _load(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[tuple[list[Event] | None, float | None]]:
        try:
            conn = self._conn()
            out: list[tuple[list[Event] | None, float | None]] = []
            for r in requests:
                rows = conn.execute(
                    "SELECT tx_id, ts, amount, channel FROM events WHERE customer_id = ? "
                    "ORDER BY ts DESC LIMIT ?",
                    (str(r["customer_id"]), HISTORY_MAX),
                ).fetchall()
                risk = conn.execute(
                    "SELECT risk FROM terminals WHERE terminal_id = ?", (str(r["terminal_id"]),)
                ).fetchone()
                out.append(([tuple(x) for x in rows] or None, None if risk is None else risk[0]))
            return out
        except sqlite3.Error as exc:
            raise FeatureSourceUnavailable(f"sqlite feature source failed: {exc}") from exc

    def write_back(self, tx: Mapping[str, Any]) -> bool:
        ev = _event(tx)
        try:
            with self._conn() as conn:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
                    (ev[0], str(tx["customer_id"]), ev[1], ev[2], ev[3]),
                )
                return cur.rowcount == 1
        except sqlite3.Error as exc:
            raise FeatureSourceUnavailable(f"sqlite feature source failed: {exc}") from exc

    def set_terminal_risk(self, terminal_id: str, risk: float) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO terminals VALUES (?, ?)", (str(terminal_id), float(risk))
            )
