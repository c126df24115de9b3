"""serving.looplag: the heartbeat measures how long the event loop could not run, per window."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.looplag import LoopLag


def test_a_blocked_loop_is_measured_in_the_windows_it_overlaps() -> None:
    seen: list[float] = []

    async def scenario() -> tuple[float, float, float, float, float]:
        lag = LoopLag(on_late=seen.append)
        beat = asyncio.ensure_future(lag.run())
        await asyncio.sleep(0.05)  # healthy: a few wake-ups, none (or barely) late
        quiet_start = time.perf_counter()
        await asyncio.sleep(0.05)
        quiet = lag.during(quiet_start)
        before = time.perf_counter()
        time.sleep(0.040)  # the loop blocked: 40 ms no callback runs
        blocked_end = time.perf_counter()
        await asyncio.sleep(0.02)  # the heartbeat wakes up, late, and records it
        whole = lag.during(before)
        # a window that starts half way into the block sees only its part of it
        half = lag.during(before + 0.020)
        # a window that ended before the block sees none of it
        none = lag.during(quiet_start, before)
        beat.cancel()
        assert blocked_end - before >= 0.040
        return quiet, whole, half, none, lag.max_ms

    quiet, whole, half, none, worst = asyncio.run(scenario())
    assert quiet < 5.0
    assert 32.0 <= whole <= 50.0, whole
    assert 12.0 <= half <= 30.0, half
    assert none < 5.0
    assert worst >= 32.0 and max(seen) == worst


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        LoopLag(interval_s=0)
    with pytest.raises(ValueError, match="keep"):
        LoopLag(keep=0)
