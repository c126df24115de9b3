"""What the benchmarks share: the machine's load beside each figure, latency summaries."""

from __future__ import annotations

import os

import numpy as np


def load_average() -> list[float]:
    """The 1/5/15-minute load averages (a figure taken on a busy machine says so)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return []


def percentiles(ms: list[float]) -> dict[str, float]:
    """p50, p99, mean (3 decimals) and count of latencies in milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "mean": round(float(a.mean()), 3),
        "n": float(len(a)),
    }
