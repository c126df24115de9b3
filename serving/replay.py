"""Replay transactions against the decision API at a fixed arrival rate (open loop).

Request *i* is sent at ``t0 + i / rps`` whatever happened to earlier ones, and its latency is
measured from that scheduled time (no coordinated omission; from the send itself when the
timer fired early; ``send_lag_ms`` says how far off the client's own schedule was). In-flight
requests are bounded: a request that would exceed ``max_in_flight`` is not sent and counts as an
error (``client_overload``), so an overloaded server shows up as errors instead of a silently
lower rate. Retries (``retries``) resend on connection errors and 5xx answers — safe because
decisions and write-backs are idempotent by ``tx_id``. Only loopback addresses are accepted.

Several URLs (the Ingress replicas' own, with Serve direct ingress) are used round robin, a
retry going to the next one. As a load balancer in front of the replicas would, the client can
follow a changing set of targets (``base_url`` a callable returning the current URLs, e.g.
:func:`serving.local.ingress_urls` polled by the caller) and skip a target whose connection
failed (refused or dropped: a replica that died) for ``eject_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from riskml.data.schema import TRANSACTION_COLUMNS

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: First retry delay (doubling per attempt, with jitter in [0.5, 1.5)); a 503 or 429 that says
#: ``Retry-After`` waits that long instead, at most :data:`MAX_RETRY_WAIT_S` (a decision a
#: second late is as good as none).
RETRY_BACKOFF_S = 0.05
MAX_RETRY_WAIT_S = 0.5


def retry_wait_s(attempt: int, retry_after: str | None, jitter: float) -> float:
    """Seconds before retry ``attempt + 1``: exponential backoff with ``jitter`` (a factor in
    [0.5, 1.5)), or the server's ``Retry-After`` (delta-seconds), both capped at
    :data:`MAX_RETRY_WAIT_S`."""
    wait = RETRY_BACKOFF_S * 2**attempt * jitter
    if retry_after is not None:
        with contextlib.suppress(ValueError):  # an HTTP date: keep the backoff
            wait = max(wait, float(retry_after))
    return min(wait, MAX_RETRY_WAIT_S)


T = TypeVar("T")


def ensure_loopback(url: str) -> str:
    """Return ``url`` unchanged when its host is loopback; raise ``ValueError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    if host == "localhost":
        return url
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"replay only targets loopback addresses (127.0.0.0/8, ::1), not {host!r}")
    return url


def spread(values: Sequence[float], qs: Sequence[int]) -> dict[str, float]:
    """``{"p<q>": percentile, ..., "max": ...}`` of ``values`` (NaN for no values)."""
    out = {f"p{q}": percentile(values, q) for q in qs}
    out["max"] = max(values) if values else math.nan
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass
class ReplayReport:
    requests: int = 0
    ok: int = 0
    errors: int = 0
    retries: int = 0
    duration_s: float = 0.0
    achieved_rps: float = 0.0
    target_rps: float = 0.0
    status: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    server_stage_p50_ms: dict[str, float] = field(default_factory=dict)
    #: how late each request left the client against its schedule (the client's own error,
    #: included in its latency): p50 / p99 / max
    send_lag_ms: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list, repr=False)
    lags: list[float] = field(default_factory=list, repr=False)
    responses: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (without per-request lists)."""
        out = asdict(self)
        out.pop("latencies")
        out.pop("lags")
        out.pop("responses")
        return out


Targets = str | Sequence[str] | Callable[[], Sequence[str]]


async def replay_async(
    base_url: Targets,
    transactions: Sequence[Mapping[str, Any]],
    rps: float,
    *,
    path: str = "/v1/score",
    max_in_flight: int = 256,
    timeout_s: float = 2.0,
    retries: int = 0,
    keep_responses: bool = False,
    on_sent: Callable[[int], None] | None = None,
    api_key: str | None = None,
    eject_s: float = 0.0,
) -> ReplayReport:
    """``api_key``: sent as ``Authorization: Bearer`` (default: the first of RISKML_API_KEYS,
    if set; :func:`serving.auth.client_key`). ``base_url``: one URL, several (round robin), or
    a callable giving the current ones (asked at each send: keep it cheap). ``eject_s`` > 0: a
    URL whose connection failed (refused, reset: not a timeout) is skipped for that long while
    another is left."""
    import aiohttp

    from riskml.settings import get_settings
    from serving.auth import auth_headers, client_key

    if rps <= 0 or not math.isfinite(rps):
        raise ValueError("rps must be a positive number")
    if max_in_flight < 1 or retries < 0 or eject_s < 0:
        raise ValueError("max_in_flight must be >= 1, retries and eject_s >= 0")
    current = _targets(base_url, path)
    current()  # checked before the first send
    ejected: dict[str, float] = {}  # URL -> time.perf_counter() until which it is skipped

    def pick(i: int, attempt: int) -> str:
        urls = current()
        if ejected:
            now = time.perf_counter()
            urls = [u for u in urls if ejected.get(u, 0.0) <= now] or urls
        return urls[(i + attempt) % len(urls)]

    rng = random.Random(0)  # retry jitter: reproducible runs
    report = ReplayReport(target_rps=rps)
    status: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    stages: dict[str, list[float]] = {}
    in_flight = 0
    # aiohttp rather than httpx: ~1.5 ms less client time per request at the same rate (measured
    # against one plain uvicorn echo server), i.e. less of the client in what the replay reports
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    headers = auth_headers(api_key if api_key is not None else client_key(get_settings()))

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False, headers=headers
    ) as client:

        async def one(tx: Mapping[str, Any], scheduled: float, i: int) -> None:
            nonlocal in_flight
            body: Any = None
            now = time.perf_counter()
            report.lags.append((now - scheduled) * 1e3)
            # late: latency counts from the schedule (no coordinated omission); early (uvloop's
            # timers are whole milliseconds): from the send
            start = max(scheduled, now)
            try:
                for attempt in range(retries + 1):
                    retry_after = None
                    try:
                        # a retry goes to the next replica's URL (if there are several)
                        url = pick(i, attempt)
                        async with client.post(url, json=dict(tx)) as r:
                            code = str(r.status)
                            body = await r.json() if r.status == 200 else None
                            retry_after = r.headers.get("Retry-After")
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        code = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                        dead = isinstance(exc, aiohttp.ClientConnectionError)
                        if eject_s and dead and not isinstance(exc, TimeoutError):
                            ejected[url] = time.perf_counter() + eject_s
                    else:
                        if r.status not in RETRY_STATUSES:
                            break
                    if attempt < retries:
                        report.retries += 1
                        wait = retry_wait_s(attempt, retry_after, 0.5 + rng.random())
                        await asyncio.sleep(wait)
                latency = (time.perf_counter() - start) * 1e3
                status[code] += 1
                if code == "200":
                    report.ok += 1
                    report.latencies.append(latency)
                    for d in body.get("decisions", [body]):
                        decisions[str(d.get("decision"))] += 1
                        if "decision_source" in d:
                            sources[d["decision_source"]] += 1
                        if d.get("fallback_reason"):
                            reasons[d["fallback_reason"]] += 1
                        for stage, ms in d.get("latency_ms", {}).items():
                            stages.setdefault(stage, []).append(ms)
                    if keep_responses:
                        report.responses.append(
                            {
                                "t": scheduled - t0,
                                "latency_ms": latency,
                                "body": body,
                                "attempts": attempt + 1,
                            }
                        )
                else:
                    report.errors += 1
                    if keep_responses:
                        report.responses.append(
                            {
                                "t": scheduled - t0,
                                "status": code,
                                "latency_ms": latency,
                                "attempts": attempt + 1,
                                "tx_id": str(tx.get("tx_id")),
                            }
                        )
            finally:
                in_flight -= 1

        tasks = []
        t0 = time.perf_counter()
        for i, tx in enumerate(transactions):
            scheduled = t0 + i / rps
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            report.requests += 1
            if in_flight >= max_in_flight:
                status["client_overload"] += 1
                report.errors += 1
                continue
            in_flight += 1
            tasks.append(asyncio.create_task(one(tx, scheduled, i)))
            if on_sent is not None:
                on_sent(i)
        await asyncio.gather(*tasks)
        report.duration_s = time.perf_counter() - t0

    report.achieved_rps = report.requests / report.duration_s if report.duration_s > 0 else 0.0
    report.status = dict(status)
    report.decisions = dict(decisions)
    report.sources = dict(sources)
    report.fallback_reasons = dict(reasons)
    report.latency_ms = spread(report.latencies, (50, 95, 99))
    report.send_lag_ms = spread(report.lags, (50, 99))
    report.server_stage_p50_ms = {k: percentile(v, 50) for k, v in sorted(stages.items())}
    return report


def _targets(base_url: Targets, path: str) -> Callable[[], list[str]]:
    """The URLs to send ``path`` to, as of now (loopback only, checked once per URL)."""
    checked: dict[str, str] = {}

    def url(base: str) -> str:
        out = checked.get(base)
        if out is None:
            out = checked[base] = ensure_loopback(base).rstrip("/") + path
        return out

    def now() -> list[str]:
        got = base_url() if callable(base_url) else base_url
        bases = [got] if isinstance(got, str) else list(got)
        if not bases:
            raise ValueError("no URL to replay against")
        return [url(b) for b in bases]

    if callable(base_url):
        return now
    fixed = now()
    return lambda: fixed


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop, the event loop Ray's own actors (so Serve's replicas) run on.

    asyncio's default loop wakes a sleeper up to ~2 ms late (its epoll timeouts are whole
    milliseconds, rounded up): a pacing loop on it sends each request that late, and an open-loop
    client counts the lag as latency. Measured here, 100 sends/s: send lag p50 1.2 ms on asyncio,
    0.14 ms on uvloop (``python -m benchmarks.serving`` runs its in-process baseline on the same
    loop as the client)."""
    import uvloop

    return uvloop.run(coro)


def replay(
    base_url: Targets,
    transactions: Sequence[Mapping[str, Any]],
    rps: float,
    **kwargs: Any,
) -> ReplayReport:
    """Blocking wrapper of :func:`replay_async` (on :func:`run_loop`)."""
    return run_loop(replay_async(base_url, transactions, rps, **kwargs))


REQUEST_FIELDS = TRANSACTION_COLUMNS


def load_requests(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """API requests from a riskml transactions dataset (Parquet) or a JSON-lines file."""
    import json
    from pathlib import Path

    p = Path(path)
    if p.is_file() and p.suffix in (".jsonl", ".ndjson", ".json"):
        rows = []
        with p.open() as fh:
            for line in fh:
                if line.strip():
                    rows.append(json.loads(line))
                    if limit is not None and len(rows) >= limit:
                        break
        return [{k: r[k] for k in REQUEST_FIELDS if k in r} for r in rows]
    from riskml.data.io import read_transactions

    df = read_transactions(p)
    return requests_from_frame(df if limit is None else df.head(limit))


def requests_from_frame(frame: Any) -> list[dict[str, Any]]:
    """API requests, in row order, from a polars frame holding the transaction columns (a
    dataset, a training or backtest set); optional fields it lacks are left to their defaults."""
    import datetime as dt

    out = []
    for row in frame.select([c for c in REQUEST_FIELDS if c in frame.columns]).iter_rows(
        named=True
    ):
        row["ts"] = row["ts"].astimezone(dt.UTC).isoformat()
        row["amount"] = float(row["amount"])
        out.append(row)
    return out
