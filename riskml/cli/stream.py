"""``riskml stream run|offline-log|publish-labels|publish-transactions``: the event stream's
consumers and a publisher for demos (heavy imports inside the commands)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import typer

from riskml.cli.features import _config, _fail, _when

stream_app = typer.Typer(
    help="Event stream: the stream processor, the offline log, publishing events.",
    no_args_is_help=True,
)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@stream_app.command("run")
def run(
    metrics_port: int | None = typer.Option(
        None, help="Serve Prometheus metrics on this port (0: a free one)."
    ),
    batch: int | None = typer.Option(
        None, help="Messages fetched and folded at once (default ProcessorConfig's, 1,000)."
    ),
    state_cache: int | None = typer.Option(
        None, help="Customers' states kept between batches (default 10,000; 0: none)."
    ),
    max_events: int | None = typer.Option(None, help="Stop after this many events."),
    once: bool = typer.Option(False, "--once", help="Stop when nothing is pending."),
    ack_wait_s: float = typer.Option(30.0, help="Unacked events are redelivered after this."),
    durable: str = typer.Option("riskml-processor", help="Durable consumer name (shared)."),
    online_store: str | None = typer.Option(None, help="Online store (RISKML_ONLINE_STORE)."),
    project: str | None = typer.Option(None, help="Feast project (default riskml)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the run summary here."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO."),
) -> None:
    """The stream processor: fold decision, transaction and label events into the online
    features (durable consumer; ack after the write; dead-letter what cannot be folded)."""
    from riskml.console import print_table, write_json
    from riskml.features.errors import FeatureStoreError
    from riskml.features.online import OnlineFeatures
    from riskml.streaming.broker import BrokerError
    from riskml.streaming.processor import ProcessorConfig, run_processor

    _logging(verbose)
    try:
        config = ProcessorConfig.from_settings(
            batch=batch, state_cache=state_cache, ack_wait_s=ack_wait_s, durable=durable
        )
        online = OnlineFeatures(_config(online_store, project))
        stats = asyncio.run(
            run_processor(
                online,
                config,
                metrics_port=metrics_port,
                max_events=max_events,
                until_idle=once,
            )
        )
    except (FeatureStoreError, BrokerError) as exc:
        _fail(exc)
        return
    summary = {
        "events": stats.events,
        "batches": stats.batches,
        "seconds": round(stats.seconds, 3),
        "events_per_s": round(stats.per_second, 1),
        **{f"result_{k}": v for k, v in sorted(stats.results.items())},
    }
    print_table("stream run", summary)
    if json_out:
        write_json(json_out, summary)


@stream_app.command("offline-log")
def offline_log(
    out: str | None = typer.Option(
        None, help="Offline store root: path or URI (default RISKML_HOME/offline-log)."
    ),
    metrics_port: int | None = typer.Option(None, help="Serve Prometheus metrics here."),
    max_rows: int = typer.Option(1000, help="Write a file when this many events are buffered."),
    max_seconds: float = typer.Option(60.0, help="... or when the oldest is this old."),
    ack_wait_s: float = typer.Option(300.0, help="Unacked events are redelivered after this."),
    max_events: int | None = typer.Option(None, help="Stop after this many events."),
    once: bool = typer.Option(False, "--once", help="Stop when nothing is pending."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO."),
) -> None:
    """Append every event to the offline log (Parquet, hourly partitions by event time)."""
    from riskml.console import print_table
    from riskml.settings import get_settings
    from riskml.streaming.broker import BrokerError
    from riskml.streaming.offline_log import OfflineLogConfig, run_offline_log

    _logging(verbose)
    root = out or str(get_settings().home / "offline-log")
    try:
        config = OfflineLogConfig.from_settings(
            max_rows=max_rows, max_seconds=max_seconds, ack_wait_s=ack_wait_s
        )
        writer = asyncio.run(
            run_offline_log(
                root, config, metrics_port=metrics_port, max_events=max_events, until_idle=once
            )
        )
    except (BrokerError, ValueError) as exc:
        _fail(exc)
        return
    print_table("offline log", {"root": root, "events": writer.events, "files": len(writer.files)})


def _publish(events: list[Any], title: str) -> None:
    """Publish ``events`` and print how many; a broker error exits 1."""
    from riskml.console import print_table
    from riskml.streaming.broker import BrokerError

    try:
        n = asyncio.run(_send(events))
    except BrokerError as exc:
        _fail(exc)
        return
    print_table(title, {"events": n})


async def _send(events: list[Any]) -> int:
    from riskml.streaming.broker import NatsBroker
    from riskml.streaming.events import encode, subject_for

    broker = NatsBroker()
    await broker.connect(timeout=10)
    try:
        await broker.ensure_stream()
        sem = asyncio.Semaphore(256)

        async def one(event: Any) -> None:
            async with sem:
                await broker.publish(
                    subject_for(event), encode(event), msg_id=event.event_id, timeout=10
                )

        await asyncio.gather(*(one(e) for e in events))
    finally:
        await broker.close()
    return len(events)


def _read(dataset: Path) -> Any:
    from riskml.data.io import read_transactions

    return read_transactions(dataset)


@stream_app.command("publish-labels")
def publish_labels(
    dataset: Path = typer.Argument(..., help="Transactions dataset (directory or Parquet)."),
    since: str | None = typer.Option(None, help="Only labels known after this time (ISO)."),
    until: str | None = typer.Option(None, help="Only labels known up to this time (ISO)."),
) -> None:
    """Publish the dataset's fraud labels as label events (``chargeback`` at
    ``label_available_at``), with the transaction's customer, terminal and time."""
    import polars as pl

    from riskml.streaming.events import LabelEvent

    frame = _read(dataset).filter(pl.col("is_fraud") == 1)
    lo, hi = _when(since, "--since"), _when(until, "--until")
    if lo is not None:
        frame = frame.filter(pl.col("label_available_at") > lo)
    if hi is not None:
        frame = frame.filter(pl.col("label_available_at") <= hi)
    events = [
        LabelEvent.of(
            r["tx_id"],
            "chargeback",
            r["label_available_at"],
            tx_ts=r["ts"],
            customer_id=r["customer_id"],
            terminal_id=r["terminal_id"],
        )
        for r in frame.iter_rows(named=True)
    ]
    _publish(events, "publish labels")


@stream_app.command("publish-transactions")
def publish_transactions(
    dataset: Path = typer.Argument(..., help="Transactions dataset (directory or Parquet)."),
    start: str | None = typer.Option(None, help="From this time (ISO, inclusive)."),
    end: str | None = typer.Option(None, help="Up to this time (ISO, exclusive)."),
    source: str = typer.Option("unscored", help="The channel/system they come from."),
) -> None:
    """Publish the dataset's transactions as raw (unscored) transaction events."""
    import polars as pl

    from riskml.streaming.events import TransactionEvent

    frame = _read(dataset)
    lo, hi = _when(start, "--start"), _when(end, "--end")
    if lo is not None:
        frame = frame.filter(pl.col("ts") >= lo)
    if hi is not None:
        frame = frame.filter(pl.col("ts") < hi)
    events = [TransactionEvent.of(r, source) for r in frame.iter_rows(named=True)]
    _publish(events, "publish transactions")
