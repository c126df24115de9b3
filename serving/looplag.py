"""How late a replica's event loop runs: a heartbeat task on the loop.

A decision's deadline is kept by timers on the replica's event loop (riskml.decision.ladder):
a stage's timeout fires, the rules answer. A timer can only fire when the loop gets to it: a
loop busy with other requests' work, or a process the OS did not schedule (2 cores shared with
the client, Redis and Ray's own processes), runs it late, and the answer is late by as much.
That lateness is the replica's saturation or the machine's, not the ladder's: this module
measures it, so that it can be told apart.

:class:`LoopLag` sleeps :data:`INTERVAL_S` at a time; a wake-up more than :data:`FLOOR_S` after
it was due (uvloop's timers have whole-millisecond resolution) records the interval ``[due,
woke]`` in which the loop could not run it. :meth:`LoopLag.during` gives how much of a window
(a request's life, from its arrival) the loop spent that way: the Ingress reports it per
decision as ``latency_ms.loop_lag`` (when > 0) and Prometheus gets each late wake-up
(``riskml_event_loop_lag_ms``). The heartbeat itself costs ~200 wake-ups a second (~1 % of a
core), kept in a ring of the last :data:`KEEP` late ones.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

INTERVAL_S = 0.005
FLOOR_S = 0.001
KEEP = 512


class LoopLag:
    """The heartbeat; :meth:`run` on the loop to measure (until cancelled)."""

    def __init__(
        self,
        interval_s: float = INTERVAL_S,
        floor_s: float = FLOOR_S,
        keep: int = KEEP,
        on_late: Callable[[float], None] | None = None,
    ) -> None:
        if interval_s <= 0 or floor_s < 0 or keep < 1:
            raise ValueError("interval_s must be > 0, floor_s >= 0 and keep >= 1")
        self.interval_s, self.floor_s = interval_s, floor_s
        #: (due, woke) of the late wake-ups, ``time.perf_counter()``, oldest first
        self.late: deque[tuple[float, float]] = deque(maxlen=keep)
        self.max_ms = 0.0
        self._on_late = on_late

    async def run(self) -> None:
        interval, floor, late = self.interval_s, self.floor_s, self.late
        clock = time.perf_counter
        while True:
            due = clock() + interval
            await asyncio.sleep(interval)
            woke = clock()
            if woke - due > floor:
                late.append((due, woke))
                ms = (woke - due) * 1e3
                self.max_ms = max(self.max_ms, ms)
                if self._on_late is not None:
                    self._on_late(ms)

    def during(self, start: float, end: float | None = None) -> float:
        """Milliseconds of ``[start, end]`` (``time.perf_counter()``; ``end``: now) in which
        the loop was behind: the overlap of the window with each late wake-up's ``[due, woke]``.
        A window the heartbeat has not woken up after yet (the loop is behind right now) counts
        up to the last wake-up only."""
        end = time.perf_counter() if end is None else end
        lag = 0.0
        for due, woke in reversed(self.late):
            if woke <= start:
                break
            lo, hi = max(due, start), min(woke, end)
            if hi > lo:
                lag += hi - lo
        return lag * 1e3
