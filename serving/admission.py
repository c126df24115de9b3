"""Backpressure and the end-to-end deadline of the decision API, in each Ingress replica.

:class:`AdmissionMiddleware` is the outermost code of the Ingress's FastAPI app. For
``POST /v1/score`` and ``POST /v1/score/batch`` (an :class:`Admission`'s ``routes``) it

1. notes when the request arrived (``time.perf_counter()``): its deadline runs from there, so
   whatever it waits for here counts against it;
2. refuses a body over the route's limit with 413, by its ``Content-Length`` before reading it,
   else as soon as what was read passes the limit; nothing has parsed it;
3. admits it (:class:`Admission`): one of ``max_in_flight`` slots, else a place among
   ``max_waiting`` requests waiting for one (first come, first served) until its deadline has
   less than ``min_budget_ms`` left, else, at once, 503 with ``Retry-After``;
4. hands the body and the arrival time (``request.state``) to the route, which runs the ladder
   on what is left of the deadline (:meth:`riskml.decision.ladder.Ladder.decide`).

A 413 or 503 of its own carries ``Server-Timing: admission;dur=<ms>``, the time from the
request's arrival to its refusal.

The credit and disputes apps (``POST /v1/credit/decision``, ``/v1/credit/offers``,
``/v1/disputes/assess``) are admitted the same way (:func:`work_admission`): their work takes
ms to seconds in a worker thread and has no deadline of its own, so a request waits for a slot
at most ``max_wait_ms`` (:class:`serving.config.WorkAdmissionArgs`), then gets the same 503.

Every other route passes untouched (health checks are never shed). The middleware finds its
replica's :class:`Admission` on the Ingress instance (``serve.get_replica_context()
.servable_object``, as Serve's class-based routes find ``self``); with none (the app served by a
TestClient with no replica behind it) it passes everything through.

Why here and not only Serve's ``max_queued_requests`` (Ray 2.60): a request Serve queues (in
the proxy's router, or in a direct-ingress replica waiting for ``max_ongoing_requests``) is out
of sight of the replica, so its wait could not count against its deadline; Serve's count is
approximate at bursts (a request counts as queued until its router assigns it); and its
rejection body is plain text. Serve's limits stay as the outer net (``serving.app``): the
Ingress's ``max_ongoing_requests`` sits above this admission's slots, so Serve does not queue a
request the admission could still time, and its ``backpressure_config`` answers what does
overflow with the same 503 and ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from serving.config import AdmissionArgs, WorkAdmissionArgs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

#: The client's deadline: milliseconds it will wait from when the request reaches the service.
#: Capped by the Ingress's ``deadline_ms`` / ``batch_deadline_ms``; <= 0: already passed.
TIMEOUT_HEADER = "X-Request-Timeout-Ms"
_TIMEOUT_HEADER = TIMEOUT_HEADER.lower().encode()
#: The routes admission guards, and whether each is the batch route.
GUARDED = {"/v1/score": False, "/v1/score/batch": True}
#: Where the middleware leaves the arrival time for the route (``request.state``).
ARRIVED = "riskml_arrived"
#: Why a request was turned away (the ``reason`` tag of ``ray_riskml_rejected_requests``).
OVERLOADED, DEADLINE, TOO_LARGE = "overloaded", "deadline", "body_too_large"


class Problem(BaseModel):
    """The body of a 401, 413 or 503 (of this service; Serve's own 503 is plain text)."""

    detail: str


#: What the guarded routes declare in the OpenAPI document beside their own answers.
LIMITED: dict[int | str, dict[str, Any]] = {
    413: {
        "model": Problem,
        "description": "The body is over the route's limit (admission.max_body_bytes, "
        "max_batch_body_bytes); refused before it is parsed.",
    },
    503: {
        "model": Problem,
        "description": "Overloaded: every slot of the replica is busy and no place to wait is "
        "left, or none freed up before the request's deadline. Nothing was decided; retry after "
        "`Retry-After` seconds. (Serve's own backpressure answers the same status and header "
        "with a plain-text body.)",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 0},
            }
        },
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
}


def requested_budget_ms(headers: Iterable[tuple[bytes, bytes]]) -> float | None:
    """The client's deadline (ms) from :data:`TIMEOUT_HEADER`; None when absent or not a finite
    number (the route's header validation answers such a request with 422)."""
    for name, value in headers:
        if name.lower() == _TIMEOUT_HEADER:
            try:
                ms = float(value.decode("latin-1").strip())
            except ValueError:
                return None
            return ms if math.isfinite(ms) else None
    return None


def server_timing(arrived: float) -> tuple[bytes, bytes]:
    """``Server-Timing: admission;dur=<ms>``: how long the service held a request it turned
    away, from its arrival at the Ingress (the rest of what a client waited is the network and
    Serve's proxy)."""
    ms = (time.perf_counter() - arrived) * 1e3
    return (b"server-timing", f"admission;dur={ms:.3f}".encode())


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, never negative (RFC 9110)."""
    return str(max(0, math.ceil(seconds)))


class Admission:
    """The admission of one Ingress replica: at most ``max_in_flight`` requests at work, at most
    ``max_waiting`` waiting (FIFO) for a slot, each only as long as its deadline allows.

    ``budget_ms(batch, requested_ms)`` is the deadline (ms) of a request (the ladder's
    :meth:`~riskml.decision.ladder.Ladder.budget_ms`); ``on_reject(reason)`` is told of every
    request turned away (metrics); ``routes``: the ``POST`` paths it guards (below the app's
    route prefix), each marked batch or not (default :data:`GUARDED`). One event loop; not
    thread-safe."""

    def __init__(
        self,
        limits: AdmissionArgs | Mapping[str, Any] | None = None,
        budget_ms: Callable[[bool, float | None], float] | None = None,
        on_reject: Callable[[str], None] | None = None,
        routes: Mapping[str, bool] | None = None,
    ) -> None:
        self.routes = dict(GUARDED if routes is None else routes)
        if limits is None:
            limits = AdmissionArgs()
        self.limits = (
            limits if isinstance(limits, AdmissionArgs) else AdmissionArgs.model_validate(limits)
        )
        self._budget_ms = budget_ms
        self._on_reject = on_reject
        self._running = 0
        self._reading = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.counts = {"admitted": 0, "waited": 0, OVERLOADED: 0, DEADLINE: 0, TOO_LARGE: 0}

    @property
    def in_flight(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def body_limit(self, batch: bool) -> int:
        return self.limits.max_batch_body_bytes if batch else self.limits.max_body_bytes

    def budget_ms(self, batch: bool, requested_ms: float | None) -> float:
        """The request's deadline (ms from its arrival)."""
        if self._budget_ms is None:
            return math.inf if requested_ms is None else max(0.0, requested_ms)
        return self._budget_ms(batch, requested_ms)

    def wait_s(self, arrived: float, budget_ms: float, now: float | None = None) -> float:
        """How long a request that arrived at ``arrived`` with ``budget_ms`` may still wait for a
        slot: until its deadline leaves ``min_budget_ms`` (<= 0: not at all)."""
        now = time.perf_counter() if now is None else now
        return arrived + (budget_ms - self.limits.min_budget_ms) / 1e3 - now

    def refusal(self, wait_s: float) -> str | None:
        """Why :meth:`acquire` would refuse a request now, counting the requests still reading
        their bodies as ahead of it (None: a slot or a place to wait is left for it, if its
        deadline allows). Lets a request be shed before its body is read."""
        busy = self._running + len(self._waiters) + self._reading
        if busy < self.limits.max_in_flight:
            return None
        if busy >= self.limits.max_in_flight + self.limits.max_waiting:
            return OVERLOADED
        return DEADLINE if wait_s <= 0 else None

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """While a request admitted by :meth:`refusal` reads its body before :meth:`acquire`."""
        self._reading += 1
        try:
            yield
        finally:
            self._reading -= 1

    async def acquire(self, wait_s: float) -> str | None:
        """Take a slot: None once taken (:meth:`release` it), else why not (:data:`OVERLOADED`:
        no slot and nowhere to wait; :data:`DEADLINE`: none freed up within ``wait_s``)."""
        if self._running < self.limits.max_in_flight and not self._waiters:
            self._running += 1
            self.counts["admitted"] += 1
            return None
        if len(self._waiters) >= self.limits.max_waiting:
            return self.reject(OVERLOADED)
        if wait_s <= 0:
            return self.reject(DEADLINE)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(wait_s):
                await waiter
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as the wait ended: pass it on
            else:
                self._forget(waiter)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return self.reject(DEADLINE)
        self.counts["admitted"] += 1
        self.counts["waited"] += 1
        return None

    def release(self) -> None:
        """Give a slot back: to the first request still waiting, else free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._running -= 1

    def reject(self, reason: str) -> str:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if self._on_reject is not None:
            with contextlib.suppress(Exception):  # metrics must not change the answer
                self._on_reject(reason)
        return reason

    def stats(self) -> dict[str, int]:
        return {**self.counts, "in_flight": self.in_flight, "waiting": self.waiting}

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already handed a slot and popped
            self._waiters.remove(waiter)


def work_admission(
    args: WorkAdmissionArgs | Mapping[str, Any],
    routes: Iterable[str],
    body_limit: int,
    on_reject: Callable[[str], None] | None = None,
) -> Admission:
    """The :class:`Admission` of an app whose routes do work without a deadline (credit,
    disputes): ``max_in_flight`` at work, ``max_waiting`` waiting at most ``max_wait_ms``
    each, a body over ``body_limit`` bytes a 413 before it is read."""
    a = args if isinstance(args, WorkAdmissionArgs) else WorkAdmissionArgs.model_validate(args)
    limits = AdmissionArgs(
        max_in_flight=a.max_in_flight,
        max_waiting=a.max_waiting,
        min_budget_ms=0.0,
        retry_after_s=a.retry_after_s,
        max_body_bytes=body_limit,
        max_batch_body_bytes=body_limit,
    )
    wait_ms = float(a.max_wait_ms)
    return Admission(
        limits,
        budget_ms=lambda batch, requested: wait_ms,  # no deadline: how long a request may wait
        on_reject=on_reject,
        routes=dict.fromkeys(routes, False),
    )


def current_admission() -> Admission | None:
    """The :class:`Admission` of the Ingress this replica serves, if any."""
    from ray import serve

    try:
        servable = serve.get_replica_context().servable_object
    except Exception:  # outside a replica
        return None
    admission = getattr(servable, "admission", None)
    return admission if isinstance(admission, Admission) else None


def route_path(scope: Scope) -> str:
    """The path below the app's route prefix (``root_path``), as Starlette routes it."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


async def respond(
    send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON ``{"detail": ...}`` answer."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """The request body if it is at most ``limit`` bytes: ``(body, False)``; ``(None, True)``
    once it is over; ``(None, False)`` if the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


class AdmissionMiddleware:
    """Pure ASGI (no extra task per request); see the module docstring."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        arrived = time.perf_counter()
        admission = current_admission()
        if admission is None:
            return await self.app(scope, receive, send)
        batch = admission.routes.get(route_path(scope))
        if batch is None:
            return await self.app(scope, receive, send)

        limit = admission.body_limit(batch)
        headers = scope.get("headers") or []
        declared = _content_length(headers)
        budget_ms = admission.budget_ms(batch, requested_budget_ms(headers))
        too_large = declared is not None and declared > limit
        body: bytes | None = None
        if not too_large:
            # no slot and nowhere to wait: shed before reading the body (through Serve's proxy,
            # reading it is a call back to the proxy: tens of ms on a busy node)
            refused = admission.refusal(admission.wait_s(arrived, budget_ms))
            if refused is not None:
                return await self._shed(send, admission, admission.reject(refused), arrived)
            with admission.reading():
                body, too_large = await read_body(receive, limit)
            if body is None and not too_large:
                return None  # the client went away before sending its body
        if too_large:
            admission.reject(TOO_LARGE)
            size = f"{declared} bytes" if declared is not None else "more bytes"
            return await respond(
                send,
                413,
                f"request body of {size} is over the limit of {limit} bytes of "
                f"{scope.get('path') or route_path(scope)}",
                # the rest of the body is never read
                [(b"connection", b"close"), server_timing(arrived)],
            )

        refused = await admission.acquire(admission.wait_s(arrived, budget_ms))
        if refused is not None:
            return await self._shed(send, admission, refused, arrived)

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        scope.setdefault("state", {})[ARRIVED] = arrived
        try:
            await self.app(scope, replay, send)
        finally:
            admission.release()

    @staticmethod
    async def _shed(send: Send, admission: Admission, reason: str, arrived: float) -> None:
        detail = (
            "overloaded: every slot of this replica is busy and no place to wait is left"
            if reason == OVERLOADED
            else "overloaded: no slot freed up before the request's deadline"
        )
        retry = retry_after(admission.limits.retry_after_s).encode()
        await respond(send, 503, detail, [(b"retry-after", retry), server_timing(arrived)])
