"""The offline log: every event appended to Parquet, so a training set is built from exactly
what serving saw ("log and wait"), and the reader that builds it.

Layout under the offline store's root (a local path or an fsspec/pyarrow URI: ``s3://``,
``gs://``)::

    <root>/events/<kind>/date=YYYY-MM-DD/hour=HH/<first seq>-<last seq>-<random>.parquet

partitioned by *event* time (a late event lands in the hour it happened). One row per event:
its id, kind, event time, stream sequence, publish and log times, the flattened fields a
training set needs (the transaction, the label, the decision, the ``terminal_risk`` serving
folded with) and the event's JSON (``payload``), from which anything else can be read.

:class:`OfflineLogWriter` is a durable consumer of its own (``riskml-offline-log``): it
buffers messages and writes a file per (kind, hour) when ``max_rows`` are buffered or the
oldest is ``max_seconds`` old, then acks them, only after the file is closed and (locally)
fsync'd with its directory. A crash before the ack redelivers them and they are written
again; readers drop the copies (one row per ``event_id``, the lowest stream sequence wins), so
the log is idempotent at read time. What does not decode, or is too far in the future, goes to
the dead-letter subject, as in the processor.

:func:`training_frame` turns the log into a transactions frame of the documented schema
(:mod:`riskml.data.schema`): the logged transactions (decisions and raw ones) with the labels
known at ``at`` (:func:`riskml.features.labels.apply_labels`), optionally on top of a batch
history. Build it for ``at`` once ``stream_lateness_s`` has passed since, so that late events
are in.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.streaming.events import (
    EVENTS,
    KINDS,
    DecisionEvent,
    EventError,
    LabelEvent,
    TransactionEvent,
    decode,
)
from riskml.streaming.processor import (
    StreamMetrics,
    connected,
    fetch,
    publish_dead_letter,
    stop_on_signals,
)

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl
    import pyarrow as pa

    from riskml.streaming.broker import Broker, Message

log = logging.getLogger(__name__)
DURABLE = "riskml-offline-log"
EVENTS_DIR = "events"


class OfflineLogConfig(BaseModel):
    """Knobs of :class:`OfflineLogWriter` (CLI options)."""

    model_config = ConfigDict(extra="forbid")

    durable: str = DURABLE
    subjects: str = f"{EVENTS}.>"
    batch: int = Field(500, ge=1, le=10_000)
    fetch_timeout_s: float = Field(1.0, gt=0)
    #: at most the consumer's unacked limit (JetStream's default max_ack_pending is 1,000)
    max_rows: int = Field(1000, ge=1, description="Flush when this many events are buffered.")
    max_seconds: float = Field(60.0, gt=0, description="Flush when the oldest is this old.")
    ack_wait_s: float = Field(300.0, gt=0)
    max_deliver: int = Field(20, ge=2)
    max_skew_s: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _ack_wait_covers_a_flush(self) -> OfflineLogConfig:
        if self.ack_wait_s <= self.max_seconds:
            raise ValueError("ack_wait_s must exceed max_seconds: unacked events come back")
        return self

    @classmethod
    def from_settings(cls, **overrides: Any) -> OfflineLogConfig:
        from riskml.settings import get_settings

        values = {"max_skew_s": get_settings().stream_max_skew_s}
        return cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


def arrow_schema() -> pa.Schema:
    """The columns of a log file (every kind; fields a kind lacks are null)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("event_id", pa.string()),
            ("kind", pa.string()),
            ("event_ts", ts),
            ("stream_seq", pa.int64()),
            ("published_at", ts),
            ("logged_at", ts),
            ("tx_id", pa.string()),
            ("ts", ts),
            ("customer_id", pa.string()),
            ("terminal_id", pa.string()),
            ("device_id", pa.string()),
            ("amount", pa.float64()),
            ("currency", pa.string()),
            ("merchant_category", pa.string()),
            ("channel", pa.string()),
            ("terminal_risk", pa.float64()),
            ("decision", pa.string()),
            ("score", pa.float64()),
            ("model_version", pa.string()),
            ("label", pa.string()),
            ("label_ts", ts),
            ("payload", pa.string()),
        ]
    )


class Delivered(Protocol):
    """What a log row keeps of a delivered message (a broker :class:`Message` is one)."""

    @property
    def data(self) -> bytes: ...
    @property
    def stream_seq(self) -> int: ...
    @property
    def published_at(self) -> dt.datetime: ...


def event_row(event: Any, msg: Delivered, logged_at: dt.datetime) -> dict[str, Any]:
    """One log row of a decoded event."""
    row: dict[str, Any] = {
        "event_id": event.event_id,
        "kind": event.kind,
        "event_ts": event.event_ts,
        "stream_seq": msg.stream_seq,
        "published_at": msg.published_at,
        "logged_at": logged_at,
        "payload": msg.data.decode(),
    }
    if isinstance(event, DecisionEvent | TransactionEvent):
        row.update(event.transaction.model_dump())
    if isinstance(event, DecisionEvent):
        row.update(
            terminal_risk=event.write_back.get("terminal_risk"),
            decision=event.decision,
            score=event.score,
            model_version=event.model_version,
        )
    if isinstance(event, LabelEvent):
        row.update(
            tx_id=event.tx_id,
            ts=event.tx_ts,
            customer_id=event.customer_id,
            terminal_id=event.terminal_id,
            label=event.label,
            label_ts=event.label_ts,
        )
    return row


# -- storage: local files (fsync'd) or a pyarrow filesystem URI ----------------------------------
class _Target:
    """Where files go: a local directory (write, fsync, rename, fsync the directory) or an
    object store through pyarrow's filesystems (an object is whole once its stream closes)."""

    def __init__(self, root: str | Path) -> None:
        text = str(root)
        self.local = "://" not in text or text.startswith("file://")
        if self.local:
            self.root = Path(text.removeprefix("file://")).resolve()
            self.fs: Any = None
        else:
            from pyarrow import fs

            self.fs, path = fs.FileSystem.from_uri(text)
            self.root = Path(path)

    def write(self, relative: str, data: bytes) -> str:
        path = self.root / relative
        if not self.local:
            self.fs.create_dir(str(path.parent), recursive=True)
            with self.fs.open_output_stream(str(path)) as out:
                out.write(data)
            return str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)
        return str(path)

    def sweep_partial(self, older_than_s: float) -> int:
        """Remove the partial files (``.*.tmp``) a killed writer left, once older than
        ``older_than_s`` (a live writer renames its own within one flush); how many. Readers
        never see them (they read ``*.parquet``); this keeps the tree clean. Local roots only:
        an object store has no partial objects."""
        if not self.local or not (self.root / EVENTS_DIR).exists():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for tmp in (self.root / EVENTS_DIR).rglob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
        if removed:
            log.info("offline log: removed %d partial files of an interrupted writer", removed)
        return removed


def write_rows(target: _Target | str | Path, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Write log rows (:func:`event_row`'s) as the writer does: one zstd Parquet file per kind
    and hour of event time, named by the stream sequences it holds; the files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = target if isinstance(target, _Target) else _Target(target)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        ts: dt.datetime = row["event_ts"].astimezone(dt.UTC)
        key = (row["kind"], ts.strftime("%Y-%m-%d"), ts.strftime("%H"))
        groups.setdefault(key, []).append(row)
    schema = arrow_schema()
    files = []
    for (kind, date, hour), part in sorted(groups.items()):
        table = pa.Table.from_pylist(part, schema=schema)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        seqs = [r["stream_seq"] for r in part]
        name = f"{min(seqs):012d}-{max(seqs):012d}-{uuid.uuid4().hex[:8]}.parquet"
        relative = f"{EVENTS_DIR}/{kind}/date={date}/hour={hour}/{name}"
        files.append(target.write(relative, sink.getvalue()))
    return files


@dataclass
class _Buffered:
    msg: Message
    row: dict[str, Any]


class OfflineLogWriter:
    """The offline log's durable consumer (module docstring). ``root``: the offline store
    (local path or URI); files go under ``<root>/events/``."""

    def __init__(
        self,
        broker: Broker,
        root: str | Path,
        config: OfflineLogConfig | None = None,
        *,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.broker = broker
        self.target = _Target(root)
        self.config = config or OfflineLogConfig.from_settings()
        self.metrics = metrics or StreamMetrics(self.config.durable)
        self._buffer: list[_Buffered] = []
        self._oldest = 0.0
        self._stop = asyncio.Event()
        self.events = 0
        self.files: list[str] = []

    def stop(self) -> None:
        """Flush what is buffered, ack it, and return from :meth:`run` (SIGTERM)."""
        self._stop.set()

    async def run(self, *, max_events: int | None = None, until_idle: bool = False) -> int:
        """Consume until :meth:`stop`, ``max_events`` logged, or (``until_idle``) nothing is
        pending; every buffered event is flushed before returning. Events logged."""
        from riskml.streaming.processor import _kind

        cfg = self.config
        consumer = await self.broker.pull(
            cfg.durable, cfg.subjects, ack_wait_s=cfg.ack_wait_s, max_deliver=cfg.max_deliver
        )
        limit_s = cfg.max_skew_s
        # a partial file older than the ack wait belongs to no live flush: its events came back
        self.target.sweep_partial(cfg.ack_wait_s)
        try:
            while not self._stop.is_set():
                if max_events is not None and self.events + len(self._buffer) >= max_events:
                    break
                msgs = await fetch(consumer, cfg.batch, cfg.fetch_timeout_s)
                now = dt.datetime.now(dt.UTC)
                for msg in msgs:
                    try:
                        event = decode(msg.subject, msg.data)
                        if event.kind not in KINDS:
                            raise EventError(f"not an event kind: {event.kind}")
                    except EventError as exc:
                        await self._dead_letter(msg, _kind(msg.subject), "invalid_event", str(exc))
                        continue
                    if (event.event_ts - now).total_seconds() > limit_s:
                        await self._dead_letter(msg, event.kind, "future_event", "ahead")
                        continue
                    if not self._buffer:
                        self._oldest = time.monotonic()
                    self._buffer.append(_Buffered(msg, event_row(event, msg, now)))
                if self._buffer and (
                    len(self._buffer) >= cfg.max_rows
                    or time.monotonic() - self._oldest >= cfg.max_seconds
                ):
                    await self.flush()
                if not msgs:
                    with contextlib.suppress(Exception):
                        pending = await self.broker.pending(cfg.durable)
                        self.metrics.pending.labels(cfg.durable).set(pending)
                        if until_idle and pending <= len(self._buffer):
                            break
        finally:
            await self.flush()
            self.target.sweep_partial(cfg.ack_wait_s)
        return self.events

    async def flush(self) -> list[str]:
        """Write the buffer (a file per kind and hour), then ack its messages; the files."""
        if not self._buffer:
            return []
        buffered, self._buffer = self._buffer, []
        t0 = time.perf_counter()
        try:
            files = await asyncio.get_running_loop().run_in_executor(None, self._write, buffered)
        except Exception as exc:  # storage down: the events come back (nak), nothing acked
            log.warning("offline log: %d events not written (%s: %s); redelivering",
                        len(buffered), type(exc).__name__, exc)  # fmt: skip
            await asyncio.gather(*(b.msg.nak(5.0) for b in buffered), return_exceptions=True)
            for b in buffered:
                self.metrics.count(b.row["kind"], "retry")
            await asyncio.sleep(1.0)
            return []
        self.metrics.batch_seconds.labels(self.config.durable, "write").observe(
            time.perf_counter() - t0
        )
        await asyncio.gather(*(b.msg.ack() for b in buffered))
        now = dt.datetime.now(dt.UTC)
        for b in buffered:
            kind = b.row["kind"]
            self.metrics.count(kind, "applied")
            self.metrics.event_age.labels(self.config.durable, kind).observe(
                max((now - b.row["event_ts"]).total_seconds(), 0.0)
            )
        self.events += len(buffered)
        self.files += files
        return files

    def _write(self, buffered: Sequence[_Buffered]) -> list[str]:
        return write_rows(self.target, [b.row for b in buffered])

    async def _dead_letter(self, msg: Message, kind: str, reason: str, detail: str) -> None:
        if not await publish_dead_letter(self.broker, msg, self.config.durable, reason, detail):
            await msg.nak(5.0)
            return
        self.metrics.dead_letters.labels(self.config.durable, kind, reason).inc()
        self.metrics.count(kind, "dead_letter")


# -- reading -------------------------------------------------------------------------------------
def read_events(
    root: str | Path,
    kind: str,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """The logged events of ``kind`` with ``start <= event_ts < end``, one row per
    ``event_id`` (the lowest stream sequence of its copies), in stream order."""
    import polars as pl
    import pyarrow.dataset as ds

    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r} ({', '.join(KINDS)})")
    target = _Target(root)
    base = target.root / EVENTS_DIR / kind
    schema = arrow_schema()
    empty = pl.from_arrow(schema.empty_table())
    assert isinstance(empty, pl.DataFrame)
    if target.local and not base.exists():
        return empty
    try:
        dataset = ds.dataset(
            str(base),
            format="parquet",
            filesystem=target.fs,
            schema=schema,
            partitioning=ds.partitioning(flavor="hive"),
            exclude_invalid_files=False,
            ignore_prefixes=[".", "_"],
        )
        expr = None
        if start is not None:
            expr = ds.field("event_ts") >= _utc(start)
        if end is not None:
            cond = ds.field("event_ts") < _utc(end)
            expr = cond if expr is None else expr & cond
        table = dataset.to_table(filter=expr)
    except FileNotFoundError:
        return empty
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.sort("stream_seq").unique("event_id", keep="first", maintain_order=True)


def labels_frame(
    root: str | Path, at: dt.datetime | None = None, *, since: dt.datetime | None = None
) -> pl.DataFrame:
    """The logged labels known at ``at`` (label time ``<= at``; from ``since`` when given):
    ``tx_id``, ``fraud``, ``label_ts``, ``event_id``
    (:func:`riskml.features.labels.effective_labels`' input)."""
    import polars as pl

    frame = read_events(root, "label", start=since)
    if at is not None:
        frame = frame.filter(pl.col("label_ts") <= _utc(at))
    return frame.select(
        "tx_id",
        (pl.col("label") != "confirmed_genuine").alias("fraud"),
        "label_ts",
        "event_id",
    )


def transactions_frame(root: str | Path, at: dt.datetime | None = None) -> pl.DataFrame:
    """The logged transactions (decisions and raw ones, one per ``tx_id``) before ``at``, in
    the transaction schema, as genuine (no label applied), plus ``terminal_risk`` where a
    decision carried the value serving folded with."""
    import polars as pl

    from riskml.data.schema import LEGIT, TRANSACTION_COLUMNS, polars_schema

    parts = []
    for kind in ("decision", "transaction"):
        frame = read_events(root, kind, end=at)
        parts.append(frame.select(*TRANSACTION_COLUMNS, "terminal_risk", "stream_seq"))
    frame = pl.concat(parts).sort("stream_seq").unique("tx_id", keep="first")
    schema = polars_schema()
    return (
        frame.with_columns(
            pl.lit(0, dtype=pl.Int8).alias("is_fraud"),
            pl.lit(LEGIT).alias("fraud_scenario"),
            pl.col("ts").alias("label_available_at"),
        )
        .select(*(pl.col(n).cast(t) for n, t in schema.items()), "terminal_risk")
        .sort("ts", "tx_id")
    )


def training_frame(
    root: str | Path,
    at: dt.datetime,
    *,
    history: pl.DataFrame | None = None,
    history_known_at: dt.datetime | None = None,
) -> pl.DataFrame:
    """Transactions before ``at`` — ``history`` (a schema frame: the batch data the online
    store was built from) and the logged ones — with every label known at ``at``: the
    history's own labels known at ``history_known_at`` (when it was built; default ``at``),
    the log's on top (:func:`riskml.features.labels.apply_labels`). The transaction schema,
    in time order."""
    import polars as pl

    from riskml.data.schema import COLUMN_NAMES
    from riskml.features.labels import apply_labels

    at = _utc(at)
    logged = transactions_frame(root, at).select(COLUMN_NAMES)
    frames = [logged]
    if history is not None:
        known = pl.col("label_available_at") <= _utc(history_known_at or at)
        hist = history.filter(pl.col("ts") < at).with_columns(
            pl.when(known).then(pl.col("is_fraud")).otherwise(0).cast(pl.Int8).alias("is_fraud"),
            pl.when(known)
            .then(pl.col("label_available_at"))
            .otherwise(pl.col("ts"))
            .alias("label_available_at"),
        )
        frames.insert(
            0,
            hist.select(COLUMN_NAMES).filter(~pl.col("tx_id").is_in(logged["tx_id"].implode())),
        )
    frame = pl.concat(frames)
    return apply_labels(frame, labels_frame(root, at), at).sort("ts", "tx_id")


@dataclass(frozen=True)
class RebuiltState:
    """The online state rebuilt in batch from the log (:func:`rebuild_online_state`)."""

    customer_history: pl.DataFrame
    terminal_rows: pl.DataFrame
    device_rows: pl.DataFrame
    #: the customers' own label-aware rows (view ``customer_stats``)
    customer_rows: pl.DataFrame


def rebuild_online_state(
    root: str | Path,
    at: dt.datetime,
    *,
    snapshot_day: int,
    history: pl.DataFrame | None = None,
    history_known_at: dt.datetime | None = None,
) -> RebuiltState:
    """What the online store holds at ``at``, computed in batch from the log (and the batch
    ``history`` it was materialised from, with its labels known at ``history_known_at``):
    each customer's history state (its ``hist_terminal_risk`` the value serving folded with,
    where a decision logged it), and the terminal, device and customer label-aware rows of
    snapshot ``snapshot_day`` with every label known at ``at``
    (:func:`riskml.features.labels.risk_rows_by_kind`). Also a way to rebuild a lost online
    store.

    A transaction has one label in the batch schema, so a reversal (genuine after fraud) of a
    label the history's snapshots already counted makes the rebuilt ``hist_terminal_risk`` of
    older entries at that terminal differ from what was served then; everything else is
    exact."""
    import polars as pl

    from riskml.features.batch import compute_features
    from riskml.features.labels import risk_rows_by_kind

    frame = training_frame(root, at, history=history, history_known_at=history_known_at)
    tables = compute_features(frame, as_of=_utc(at) + dt.timedelta(microseconds=1))
    logged = transactions_frame(root, at).filter(pl.col("terminal_risk").is_not_null())
    risk = dict(zip(logged["tx_id"].to_list(), logged["terminal_risk"].to_list(), strict=True))
    hist = tables.customer_history
    if risk:
        hist = hist.with_columns(
            pl.struct("hist_tx_id", "hist_terminal_risk")
            .map_elements(
                lambda r: _logged_risks(r["hist_tx_id"], r["hist_terminal_risk"], risk),
                return_dtype=pl.List(pl.Float64),
            )
            .alias("hist_terminal_risk")
        )
    rows = risk_rows_by_kind(frame, snapshot_day, at)
    return RebuiltState(hist, rows["terminal"], rows["device"], rows["customer"])


def _logged_risks(
    tx_ids: Sequence[str], risks: Sequence[float], logged: dict[str, float]
) -> list[float]:
    return [logged.get(t, v) for t, v in zip(tx_ids, risks, strict=True)]


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


async def run_offline_log(
    root: str | Path,
    config: OfflineLogConfig,
    *,
    metrics_port: int | None = None,
    max_events: int | None = None,
    until_idle: bool = False,
    broker: Broker | None = None,
) -> OfflineLogWriter:
    """Connect, ensure the stream, serve metrics, handle SIGTERM (flush, ack, return), run."""
    async with connected(broker) as conn:
        writer = OfflineLogWriter(conn, root, config)
        if metrics_port is not None:
            writer.metrics.serve(metrics_port)
        with stop_on_signals(writer.stop):
            await writer.run(max_events=max_events, until_idle=until_idle)
            return writer
