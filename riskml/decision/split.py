"""Deterministic hash-based traffic split (experiments) and sampling (shadow scoring).

A unit (customer or transaction id) always lands in the same bucket for the same salt, on every
replica and across restarts: ``blake2b(salt || 0x1f || key)`` -> one of ``BUCKETS`` buckets. Change
the salt to reshuffle an experiment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

BUCKETS = 10_000


def bucket(key: str, salt: str) -> int:
    """The bucket (``0 <= b < BUCKETS``) of ``key`` under ``salt``."""
    digest = hashlib.blake2b(f"{salt}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_share(key: str, share: float, salt: str) -> bool:
    """Whether ``key`` falls in the first ``share`` (0..1) of the buckets."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    return bucket(key, salt) < round(share * BUCKETS)


def choose_arm(key: str, arms: Mapping[str, float], salt: str) -> str:
    """The arm of ``key``: arms own contiguous bucket ranges proportional to their weights
    (in the mapping's order). Raises ``ValueError`` when no arm has a positive weight."""
    total = sum(w for w in arms.values() if w > 0)
    if total <= 0:
        raise ValueError("no experiment arm has a positive weight")
    point = bucket(key, salt) / BUCKETS * total
    acc = 0.0
    last = ""
    for name, weight in arms.items():
        if weight <= 0:
            continue
        acc += weight
        last = name
        if point < acc:
            return name
    return last  # float rounding at the very top
