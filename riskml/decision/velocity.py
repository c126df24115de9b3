"""A replica-local velocity counter: recent transactions per customer, for the rules rung.

When the feature store is unreachable the rules rung still needs a velocity signal. Each Ingress
replica counts the transactions it has seen per customer over a sliding window (bounded memory,
least recently seen customers evicted). It undercounts when traffic is spread over replicas, so
it is only used when the fetched velocity feature is missing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque


class VelocityTracker:
    def __init__(self, window_s: float = 3600.0, max_customers: int = 100_000) -> None:
        if window_s <= 0 or max_customers < 1:
            raise ValueError("window_s must be > 0 and max_customers >= 1")
        self.window_s = float(window_s)
        self.max_customers = int(max_customers)
        self._seen: OrderedDict[str, deque[tuple[float, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, customer_id: str, ts: float, tx_id: str) -> int:
        """Record one transaction (idempotent by ``tx_id``); return the customer's count of
        earlier transactions within the window before ``ts`` (what the rules compare)."""
        with self._lock:
            events = self._seen.pop(customer_id, None)
            if events is None:
                events = deque()
            lo = ts - self.window_s
            while events and events[0][0] < lo:
                events.popleft()
            earlier = sum(1 for t, tid in events if t <= ts and tid != tx_id)
            if all(tid != tx_id for _, tid in events):
                events.append((ts, tx_id))
            self._seen[customer_id] = events
            while len(self._seen) > self.max_customers:
                self._seen.popitem(last=False)
            return earlier

    def __len__(self) -> int:
        return len(self._seen)
