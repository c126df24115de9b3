"""Benchmark: the event stream end to end (issue #20), in one run, on a private nats-server and
the local Redis.

    python -m benchmarks.streaming --out out/bench/streaming.json [--events 10000] [--quick]
        [--batch 1000] [--state-cache N]

Builds the serving benchmark's world (``tests.support.world``: simulated customers, Feast
features as of the replay day, a bundle), starts ``nats-server -js`` on a free port with a store
of its own (streams over ``riskml.events.>`` cannot overlap, so never the shared one), flushes a
Redis database of its own (``--redis-url``), and measures:

1. **in-process fold** (the baseline): the processor's fold (``OnlineFeatures.fold_many``, what
   ``StreamProcessor`` calls) over ``--events`` decision events in batches of ``--batch``, called
   in this process on a fresh store (``inprocess_fold_events_per_s``); also with the events'
   decoding (``inprocess_decode_fold_events_per_s``), and without the processor's state cache
   (``ProcessorConfig.state_cache``; ``inprocess_fold_no_state_cache_events_per_s``: what a
   serving replica's write-back, which keeps none, costs).
2. **processor throughput**: the same events pre-published to the stream, then drained by the
   processor in processes of its own, as deployed (``run_processor``, what ``riskml stream run``
   runs; several processes share the durable consumer), each on a fresh store: one process
   (``processor_events_per_s``) and ``--processes`` (2: the deployment's replicas). Measured
   from outside: the consumer's acked count polled every 20 ms, from the first ack to the last.
   Also the processes' CPU per event.
3. **freshness**: a publisher at a fixed rate (500, then 2,000 events/s, ``--seconds`` each)
   while the processor runs; per event, from the publish call to the feature readable online:
   a poller thread reads the customers' ``hist_event_us`` (the history's version, which is the
   newest folded transaction's time; the events' times increase) from Redis every
   ``--poll-ms`` and marks every event whose time it covers. The poll interval adds about half
   an interval on average.
4. **serving**: the service's decisions in process (``serving.inprocess.InProcessApp``: the
   same components and ladder as the Ingress, no Ray/HTTP; the Serve overhead is the serving
   benchmark's) at ``--rps``, each followed, like ``Ingress.score``, by the decision log's
   ``record`` (a ``DecisionEvent`` published to JetStream, its ack awaited) or not: blocks of 20
   decisions alternate between the two. Decision p50/p99 with and without, and the publish's own
   time (``riskml_decision_log_publish_ms``'s observation, timed here).
5. **lost events**: over the whole run, events acked by the broker vs events the processors
   folded (applied or duplicate), and the stream's message count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from riskml import __version__
from riskml.console import print_table, write_json

STREAM = "riskml-bench"
DURABLE = "riskml-processor"


# -- services ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """``nats-server -js`` on a free port with a store of its own."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("nats-server") or shutil.which(
            "nats-server", path="/usr/sbin:/usr/bin"
        )
        if binary is None:
            raise SystemExit("nats-server not installed")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port = folder, _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        args = [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(folder / "js")]
        with (folder / "nats.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as s,
            ):
                if s.recv(4096).startswith(b"INFO"):
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nats-server did not start: {(folder / 'nats.log').read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _flush_redis(url: str) -> None:
    import redis

    host, _, rest = url.partition(":")
    port, *params = rest.split(",")
    db = int(dict(p.split("=", 1) for p in params).get("db", 0))
    redis.Redis(host=host, port=int(port or 6379), db=db).flushdb()


def _broker(url: str) -> Any:
    from riskml.streaming.broker import NatsBroker

    return NatsBroker(servers=url, stream=STREAM, name="riskml-bench")


# -- events ------------------------------------------------------------------------------------
class EventMaker:
    """Decision events over the world's customers and terminals (the replay day's requests,
    new ids), with event times increasing by 1 ms across everything made, so a customer's
    history version (its newest time) tells which of its events are folded."""

    def __init__(self, requests: list[dict[str, Any]], start: dt.datetime) -> None:
        from riskml.features.online import feature_contract

        self.requests = requests
        self.names = [name for name, _ in feature_contract()]
        self.next_ts = start
        self.n = 0
        self.rng = random.Random(3)

    def make(self, count: int, prefix: str) -> list[tuple[str, bytes, str, str, int]]:
        """``(subject, data, event_id, customer_id, ts_us)`` each."""
        from riskml.streaming.events import DecisionEvent, encode, subject_for

        out = []
        rng = self.rng
        for _ in range(count):
            base = self.requests[self.n % len(self.requests)]
            self.n += 1
            ts = self.next_ts
            self.next_ts += dt.timedelta(milliseconds=1)
            tx = {**base, "tx_id": f"{prefix}-{self.n}", "ts": ts.isoformat()}
            event = DecisionEvent.of(
                tx,
                decision=rng.choice(("approve", "approve", "approve", "review", "decline")),
                decision_source="model",
                model_version="bench-1",
                feature_names=self.names,
                feature_values=[rng.random() for _ in self.names],
                feature_flags={"sequence_missing": 0},
                write_back={"terminal_risk": rng.random() * 0.1},
                scores={"xgb": rng.random(), "gru": rng.random()},
                score=rng.random(),
                reasons=[{"code": "model_score"}, {"code": "amount_high", "value": 1.0}],
            )
            ts_us = int(ts.timestamp() * 1_000_000)
            out.append(
                (subject_for(event), encode(event), event.event_id, str(base["customer_id"]), ts_us)
            )
        return out


async def _publish_all(url: str, events: list[tuple[str, bytes, str, str, int]]) -> int:
    """Publish as fast as the broker acks (256 in flight); the number acked."""
    broker = _broker(url)
    await broker.connect(timeout=10)
    await broker.ensure_stream()
    acked = 0
    try:
        for at in range(0, len(events), 256):
            seqs = await asyncio.gather(
                *(
                    broker.publish(s, d, msg_id=i, timeout=10.0)
                    for s, d, i, _c, _t in events[at : at + 256]
                )
            )
            acked += len(seqs)
    finally:
        await broker.close()
    return acked


# -- the processor in processes of its own ------------------------------------------------------
def processor_main(spec: dict[str, Any]) -> None:
    """The processor as ``riskml stream run`` runs it (``run_processor``), on the benchmark's
    broker; SIGTERM stops it; its stats and CPU seconds go to ``spec["out"]``."""
    from riskml.features.online import OnlineFeatures
    from riskml.features.store import StoreConfig
    from riskml.streaming.processor import ProcessorConfig, run_processor

    online = OnlineFeatures(StoreConfig.model_validate(spec["store"]).resolved())
    config = ProcessorConfig.from_settings(
        batch=spec["batch"], durable=DURABLE, state_cache=spec.get("state_cache")
    )
    cpu0 = time.process_time()

    def ready(_p: Any) -> None:
        Path(spec["out"] + ".ready").write_text("1")

    stats = asyncio.run(
        run_processor(
            online,
            config,
            broker=_broker(spec["url"]),
            until_idle=bool(spec.get("until_idle")),
            on_start=ready,
        )
    )
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "events": stats.events,
                "results": stats.results,
                "seconds": stats.seconds,
                "cpu_s": time.process_time() - cpu0,
            }
        )
    )


class Processors:
    """``n`` processor processes on one store; :meth:`stop` SIGTERMs them, their stats."""

    def __init__(self, n: int, spec: dict[str, Any], folder: Path) -> None:
        self.procs = []
        self.outs = []
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            out = str(folder / f"proc{i}.json")
            self.outs.append(out)
            arg = json.dumps({**spec, "out": out})
            self.procs.append(
                subprocess.Popen([sys.executable, "-m", "benchmarks.streaming", "--processor", arg])
            )
        deadline = time.monotonic() + 120
        while not all(Path(o + ".ready").exists() for o in self.outs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise SystemExit("a processor did not start")
            time.sleep(0.05)

    def cpu_s(self) -> float:
        import psutil

        total = 0.0
        for p in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = psutil.Process(p.pid).cpu_times()
                total += t.user + t.system
        return total

    def wait(self, timeout: float = 120) -> list[dict[str, Any]]:
        for p in self.procs:
            p.wait(timeout=timeout)
        return [json.loads(Path(o).read_text()) for o in self.outs]

    def stop(self) -> list[dict[str, Any]]:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        got = []
        for p, o in zip(self.procs, self.outs, strict=True):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
            if Path(o).exists():
                got.append(json.loads(Path(o).read_text()))
        return got


async def _acked(js: Any, total_before: int) -> int:
    """Events the durable acked since ``total_before`` were published (stream - pending)."""
    info = await js.consumer_info(STREAM, DURABLE)
    return total_before - int(info.num_pending or 0) - int(info.num_ack_pending or 0)


async def _watch_drain(url: str, stream_total: int, n: int, procs: Processors) -> dict[str, Any]:
    """Poll the consumer until the ``n`` newest of ``stream_total`` events are acked."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        first: tuple[float, int, float] | None = None
        while True:
            done = await _acked(js, n)
            now = time.perf_counter()
            if first is None and done > 0:
                first = (now, done, procs.cpu_s())
            if done >= n:
                break
            await asyncio.sleep(0.02)
        assert first is not None
        cpu = procs.cpu_s() - first[2]
        span = now - first[0]
        return {
            "events": n,
            "seconds": round(span, 3),
            "events_per_s": round((n - first[1]) / span, 1) if span > 0 else None,
            "cpu_ms_per_event": round(cpu * 1e3 / max(1, n - first[1]), 4),
        }
    finally:
        await nc.close()


def bench_processor(
    world: Any, a: argparse.Namespace, url: str, nproc: int, events: list[Any], tmp: Path
) -> dict[str, Any]:
    store = world.store("redis", a.redis_url)
    try:
        acked = asyncio.run(_publish_all(url, events))
        procs = Processors(
            nproc,
            {"store": store, "url": url, "batch": a.batch, "state_cache": a.state_cache},
            tmp / f"drain{nproc}",
        )
        try:
            got = asyncio.run(_watch_drain(url, acked, len(events), procs))
        finally:
            stats = procs.stop()
        got["published"] = acked
        got["folded"] = sum(
            s["results"].get("applied", 0) + s["results"].get("duplicate", 0) for s in stats
        )
        got["results"] = _merge([s["results"] for s in stats])
        got["per_process_events"] = [s["events"] for s in stats]
        return got
    finally:
        world.drop_store(store)


def _merge(results: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        for k, v in r.items():
            out[k] = out.get(k, 0) + v
    return out


# -- 1. in-process fold ------------------------------------------------------------------------
def bench_inprocess(world: Any, a: argparse.Namespace, events: list[Any]) -> dict[str, Any]:
    """The processor's fold in this process: ``fold_many`` per batch (tx dicts built first:
    the bare fold), and decode + build + fold (what the processor does per batch, less the
    broker)."""
    from riskml.features.online import OnlineFeatures
    from riskml.features.store import StoreConfig
    from riskml.streaming.events import DecisionEvent, decode

    def txs_of(batch: list[Any]) -> list[dict[str, Any]]:
        out = []
        for subject, data, *_ in batch:
            ev = decode(subject, data)
            assert isinstance(ev, DecisionEvent)
            tx = ev.transaction.model_dump()
            tx["terminal_risk"] = (ev.write_back or {})["terminal_risk"]
            out.append(tx)
        return out

    batches = [events[i : i + a.batch] for i in range(0, len(events), a.batch)]
    out: dict[str, Any] = {}
    for mode in ("decode_fold", "fold", "fold_no_state_cache"):
        store = world.store("redis", a.redis_url)
        try:
            online = OnlineFeatures(StoreConfig.model_validate(store).resolved())
            # the processor's state cache (ProcessorConfig.state_cache), or none
            online.cache_states(0 if mode == "fold_no_state_cache" else a.state_cache)
            prepared = [txs_of(b) for b in batches] if mode != "decode_fold" else None
            # the first batch warms up (connections, caches), untimed; as in the drains, whose
            # rate counts from the first ack
            applied = sum(o == "applied" for o in online.fold_many(txs_of(batches[0])))
            timed = sum(len(b) for b in batches[1:])
            w0, c0 = time.perf_counter(), time.process_time()
            for i, b in enumerate(batches[1:], start=1):
                txs = prepared[i] if prepared is not None else txs_of(b)
                applied += sum(o == "applied" for o in online.fold_many(txs))
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            out[mode] = {
                "events_per_s": round(timed / wall, 1),
                "cpu_ms_per_event": round(cpu * 1e3 / timed, 4),
                "applied": applied,
            }
        finally:
            world.drop_store(store)
    return out


# -- 3. freshness ------------------------------------------------------------------------------
class Poller(threading.Thread):
    """Reads the versions of the customers with unseen events every ``interval`` s; the time
    each event became readable."""

    def __init__(self, store: dict[str, Any], interval: float) -> None:
        super().__init__(daemon=True)
        from riskml.features.online import OnlineFeatures
        from riskml.features.store import StoreConfig

        self.online = OnlineFeatures(StoreConfig.model_validate(store).resolved())
        self.interval = interval
        self.lock = threading.Lock()
        self.unseen: dict[str, list[tuple[int, int]]] = {}  # customer -> [(ts_us, index)]
        self.seen_at: dict[int, float] = {}
        self.halt = threading.Event()
        self.polls = 0

    def add(self, customer: str, ts_us: int, index: int) -> None:
        with self.lock:
            self.unseen.setdefault(customer, []).append((ts_us, index))

    def run(self) -> None:
        from riskml.features.online import _version

        online = self.online
        while not self.halt.is_set():
            t0 = time.perf_counter()
            with self.lock:
                customers = list(self.unseen)
            if customers:
                rows = online._read_views(
                    [(online._history_fv, "customer_id", customers, ["hist_event_us"])]
                )[0]
                now = time.perf_counter()
                self.polls += 1
                with self.lock:
                    for c, row in zip(customers, rows, strict=True):
                        version = _version(row) or 0
                        left = []
                        for ts_us, index in self.unseen.get(c, ()):
                            if ts_us <= version:
                                self.seen_at[index] = now
                            else:
                                left.append((ts_us, index))
                        if left:
                            self.unseen[c] = left
                        else:
                            self.unseen.pop(c, None)
            self.halt.wait(max(0.0, self.interval - (time.perf_counter() - t0)))


async def _paced_publish(
    url: str, events: list[Any], rate: float, poller: Poller, sent_at: dict[int, float]
) -> tuple[int, int]:
    """Publish ``events`` at ``rate``/s (ticks of 5 ms, concurrently within a tick); acks, and
    the publishes that timed out and were sent again."""
    broker = _broker(url)
    await broker.connect(timeout=10)
    acked = 0
    pending: set[asyncio.Task[int]] = set()
    timeouts = [0]

    async def one(i: int) -> int:
        from riskml.streaming.broker import BrokerTimeout

        subject, data, event_id, customer, ts_us = events[i]
        sent_at[i] = time.perf_counter()
        poller.add(customer, ts_us, i)
        for attempt in range(3):
            try:
                return await broker.publish(subject, data, msg_id=event_id, timeout=10.0)
            except BrokerTimeout:  # a machine under other load: again, the same message id
                if attempt == 2:  # (the broker keeps one copy), as the decision log's outbox
                    raise
                timeouts[0] += 1
        raise AssertionError("unreachable")

    try:
        t0 = time.perf_counter()
        i = 0
        while i < len(events):
            due = min(len(events), int((time.perf_counter() - t0) * rate) + 1)
            while i < due:
                task = asyncio.ensure_future(one(i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.sleep(0.005)
        for seq in await asyncio.gather(*list(pending)):
            acked += 1 if seq else 0
        acked = len(events)  # gather raised otherwise
    finally:
        await broker.close()
    return acked, timeouts[0]


def bench_freshness(
    world: Any, a: argparse.Namespace, url: str, maker: EventMaker, tmp: Path
) -> dict[str, Any]:
    store = world.store("redis", a.redis_url)
    out: dict[str, Any] = {"processes": a.fresh_processes, "poll_ms": a.poll_ms}
    procs = Processors(
        a.fresh_processes,
        {"store": store, "url": url, "batch": a.batch, "state_cache": a.state_cache},
        tmp / "fresh",
    )
    poller = Poller(store, a.poll_ms / 1e3)
    poller.start()
    published = 0
    try:
        for rate in a.rates:
            n = int(rate * a.seconds)
            events = maker.make(n, f"fresh{rate}")
            sent_at: dict[int, float] = {}
            cpu0, t0 = procs.cpu_s(), time.perf_counter()
            acked, timeouts = asyncio.run(_paced_publish(url, events, rate, poller, sent_at))
            published += acked
            send_s = time.perf_counter() - t0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with poller.lock:
                    if all(i in poller.seen_at for i in sent_at):
                        break
                time.sleep(0.05)
            cpu = procs.cpu_s() - cpu0
            with poller.lock:
                ages = [
                    (poller.seen_at[i] - sent_at[i]) * 1e3 for i in sent_at if i in poller.seen_at
                ]
                for i in sent_at:
                    poller.seen_at.pop(i, None)
            ages_a = np.asarray(ages)
            out[str(rate)] = {
                "events": n,
                "achieved_rate": round(n / send_s, 1),
                "readable": len(ages),
                "p50_ms": round(float(np.percentile(ages_a, 50)), 1),
                "p90_ms": round(float(np.percentile(ages_a, 90)), 1),
                "p99_ms": round(float(np.percentile(ages_a, 99)), 1),
                "max_ms": round(float(ages_a.max()), 1),
                "processor_cpu_ms_per_event": round(cpu * 1e3 / n, 4),
                "publish_timeouts_resent": timeouts,
            }
    finally:
        poller.halt.set()
        poller.join(5)
        stats = procs.stop()
        world.drop_store(store)
    out["published"] = published
    out["folded"] = sum(
        s["results"].get("applied", 0) + s["results"].get("duplicate", 0) for s in stats
    )
    out["results"] = _merge([s["results"] for s in stats])
    out["polls"] = poller.polls
    return out


# -- 4. serving --------------------------------------------------------------------------------
def bench_serving(world: Any, a: argparse.Namespace, url: str, tmp: Path) -> dict[str, Any]:
    from riskml.decision.config import DecisionLogConfig
    from serving.decision_log import DecisionLog
    from serving.inprocess import InProcessApp
    from serving.replay import run_loop
    from serving.schemas import TransactionRequest

    store = world.store("redis", a.redis_url)
    requests = world.requests()
    n = min(a.decisions, len(requests) - 40)  # every decision a transaction of its own
    lat: dict[str, list[float]] = {"with": [], "without": []}
    pub: list[float] = []
    block = 20
    warmup = 40
    result: dict[str, Any] = {}

    try:
        app = InProcessApp(world.app_args(store))
        dlog = DecisionLog(
            DecisionLogConfig(enabled=True),
            feature_names=app.components.feature_names,
            broker_factory=lambda: _broker(url),
            spill_dir=tmp / "outbox",
        )

        async def run() -> None:
            await dlog.start()
            await asyncio.sleep(1.0)  # connected, stream ensured
            t0 = time.perf_counter()
            for i in range(n + warmup):
                delay = t0 + i / a.rps - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                mode = "with" if (i // block) % 2 == 0 else "without"
                r = requests[i]
                t = time.perf_counter()
                tx = TransactionRequest.model_validate(r)
                txs = [tx.model_dump()]
                res = await app.ladder.decide(txs)
                if mode == "with":
                    p = time.perf_counter()
                    await dlog.record([tx], res, deadline=t + 0.05)
                    if i >= warmup:
                        pub.append((time.perf_counter() - p) * 1e3)
                if i >= warmup:
                    lat[mode].append((time.perf_counter() - t) * 1e3)
                # the write-back, off the clock (serving does it after the response)
                with contextlib.suppress(Exception):
                    app.source.write_back(txs[0])
            await dlog.close(timeout=10)

        run_loop(run())
        counts = dlog.stats()["counts"]
        w, wo = np.asarray(lat["with"]), np.asarray(lat["without"])
        result = {
            "rps": a.rps,
            "decisions": {"with": len(w), "without": len(wo)},
            "with_publish_p50_ms": round(float(np.percentile(w, 50)), 3),
            "with_publish_p99_ms": round(float(np.percentile(w, 99)), 3),
            "without_publish_p50_ms": round(float(np.percentile(wo, 50)), 3),
            "without_publish_p99_ms": round(float(np.percentile(wo, 99)), 3),
            "publish_p50_ms": round(float(np.percentile(pub, 50)), 3),
            "publish_p99_ms": round(float(np.percentile(pub, 99)), 3),
            "e2e_p50_delta_ms": round(float(np.percentile(w, 50) - np.percentile(wo, 50)), 3),
            "decision_log_counts": counts,
            # events the broker acked: published at once, or later from the outbox
            "published": int(counts.get("published", 0)) + int(counts.get("flushed", 0)),
            "not_published": int(counts.get("pending", 0)) + int(counts.get("dropped", 0)),
            "store": store,
        }
    except BaseException:
        world.drop_store(store)
        raise
    return result


# -- main --------------------------------------------------------------------------------------
async def _stream_messages(url: str) -> int:
    broker = _broker(url)
    await broker.connect(timeout=10)
    try:
        return int(await broker.stream_messages())
    finally:
        await broker.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="backlog events (1, 2)")
    parser.add_argument("--batch", type=int, default=1000, help="processor batch")
    parser.add_argument(
        "--state-cache",
        type=int,
        default=None,
        help="processor state cache, customers (default: ProcessorConfig's; 0: off)",
    )
    parser.add_argument("--processes", type=int, default=2, help="processes in the 2nd drain")
    parser.add_argument("--rates", default="500,2000", help="freshness publish rates, events/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="publishing per rate")
    parser.add_argument("--fresh-processes", type=int, default=1)
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--decisions", type=int, default=2000, help="serving decisions")
    parser.add_argument("--customers", type=int, default=500, help="simulated customers")
    parser.add_argument("--redis-url", default="localhost:6379,db=9", help="Feast form")
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("out/bench/streaming.json"))
    parser.add_argument("--processor", help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.processor:
        processor_main(json.loads(a.processor))
        return {}
    if a.quick:
        a.events, a.seconds, a.decisions = min(a.events, 2000), min(a.seconds, 4.0), 400
    a.rates = [float(r) for r in a.rates.split(",") if r.strip()]
    if a.state_cache is None:
        from riskml.streaming.processor import ProcessorConfig

        a.state_cache = ProcessorConfig().state_cache

    from tests.support.world import build_world

    load0 = os.getloadavg()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="riskml-bench-streaming-") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        world = build_world(tmp / "world", customers=a.customers, terminals=a.customers)
        build_s = time.perf_counter() - t0
        _flush_redis(a.redis_url)
        nats_server = NatsServer(tmp / "nats")
        try:
            url = nats_server.url
            requests = world.requests()
            maker = EventMaker(requests, world.replay_day + dt.timedelta(days=1))
            backlog = maker.make(a.events, "backlog")
            inproc = bench_inprocess(world, a, backlog)
            # the same events, new ids, for each drain (one stream; the durable moves on)
            drains: dict[str, Any] = {}
            for nproc in sorted({1, a.processes}):
                events = maker.make(a.events, f"drain{nproc}")
                drains[str(nproc)] = bench_processor(world, a, url, nproc, events, tmp)
            fresh = bench_freshness(world, a, url, maker, tmp)
            serving = bench_serving(world, a, url, tmp)
            # the decision events: folded by a processor into the serving store
            procs = Processors(
                1,
                {
                    "store": serving["store"],
                    "url": url,
                    "batch": a.batch,
                    "state_cache": a.state_cache,
                    "until_idle": True,
                },
                tmp / "final",
            )
            final = procs.wait(timeout=300)
            world.drop_store(serving.pop("store"))
            stream_messages = asyncio.run(_stream_messages(url))
        finally:
            nats_server.stop()

    published = (
        sum(d["published"] for d in drains.values()) + fresh["published"] + serving["published"]
    )
    folded = (
        sum(d["folded"] for d in drains.values())
        + fresh["folded"]
        + sum(s["results"].get("applied", 0) + s["results"].get("duplicate", 0) for s in final)
    )
    top = str(int(max(a.rates))) if max(a.rates).is_integer() else str(max(a.rates))
    fresh_top = fresh[str(max(a.rates))]
    results = {
        "freshness_p50_ms": fresh_top["p50_ms"],
        "freshness_p99_ms": fresh_top["p99_ms"],
        "processor_events_per_s": drains["1"]["events_per_s"],
        "processor_2proc_events_per_s": drains[str(a.processes)]["events_per_s"],
        "inprocess_fold_events_per_s": inproc["fold"]["events_per_s"],
        "inprocess_decode_fold_events_per_s": inproc["decode_fold"]["events_per_s"],
        "inprocess_fold_no_state_cache_events_per_s": inproc["fold_no_state_cache"]["events_per_s"],
        "publish_overhead_p50_ms": serving["publish_p50_ms"],
        "e2e_p99_ms_with_publish": serving["with_publish_p99_ms"],
        "lost_events": published - folded,
        "goals": {
            "freshness_p99_ms": 250,
            "processor_events_per_s": 5000,
            "publish_overhead_p50_ms": 1.0,
            "e2e_p99_ms_with_publish": 30,
            "lost_events": 0,
        },
        "inprocess": inproc,
        "processor": drains,
        "freshness": {**fresh, "top_rate": top},
        "serving": serving,
        "accounting": {
            "published_acked": published,
            "folded": folded,
            "final_drain": _merge([s["results"] for s in final]),
            "stream_messages": stream_messages,
        },
        "meta": {
            "riskml": __version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "events": a.events,
            "batch": a.batch,
            "state_cache": a.state_cache,
            "customers": a.customers,
            "world_build_s": round(build_s, 1),
            "quick": a.quick,
            "loadavg_before": [round(x, 2) for x in load0],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "online_store": "redis",
            "date": dt.date.today().isoformat(),
        },
    }
    rows = [
        {"measure": "freshness p50 / p99 ms @ " + str(int(r)) + "/s",
         "value": f"{fresh[str(r)]['p50_ms']} / {fresh[str(r)]['p99_ms']}", "goal": "p99 <= 250"}
        for r in a.rates
    ]  # fmt: skip
    rows += [
        {"measure": "processor events/s, 1 process", "value": drains["1"]["events_per_s"],
         "goal": ">= 5000"},
        {"measure": f"processor events/s, {a.processes} processes",
         "value": drains[str(a.processes)]["events_per_s"], "goal": ""},
        {"measure": "in-process fold events/s", "value": inproc["fold"]["events_per_s"],
         "goal": "baseline"},
        {"measure": "in-process fold events/s, no state cache",
         "value": inproc["fold_no_state_cache"]["events_per_s"], "goal": ""},
        {"measure": "in-process decode + fold events/s",
         "value": inproc["decode_fold"]["events_per_s"], "goal": "baseline"},
        {"measure": "decision p50 ms without / with publish",
         "value": f"{serving['without_publish_p50_ms']} / {serving['with_publish_p50_ms']}",
         "goal": ""},
        {"measure": "publish p50 ms", "value": serving["publish_p50_ms"], "goal": "<= 1"},
        {"measure": "decision p99 ms with publish", "value": serving["with_publish_p99_ms"],
         "goal": "<= 30"},
        {"measure": "lost events", "value": published - folded, "goal": "0"},
    ]  # fmt: skip
    print_table(f"streaming ({a.events} events, batches of {a.batch})", rows)
    write_json(a.out, results)
    return results


if __name__ == "__main__":
    main()
