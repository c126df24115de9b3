"""Example values for the schema's value rules (ids, channel, currency, merchant category), shared
by the data tests (importer, dataset read) and the serving tests (request models, 422)."""

from __future__ import annotations

from typing import Any

from riskml.data.schema import ACCEPTED_CHANNELS

#: column -> values every layer must refuse (non-blank: a blank value is "missing", not "bad")
BAD: dict[str, tuple[str, ...]] = {
    "tx_id": ("tx 1", "x" * 300, "x" * 129, "tx\n", "tx/1", "tx-é", "tx\t1"),
    "customer_id": ("c 1", "c" * 300, "c#1"),
    "terminal_id": ("t,1", "t" * 129),
    "device_id": ("d 1", "d" * 129, "d@1"),
    "channel": ("pigeon", "POS", "Ecom", "pos ", "web"),
    "currency": ("usd", "US", "USDD", "U$D", "US1", "ÜSD"),
    "merchant_category": ("m" * 65, "café", "a/b", "food&drink"),
}
#: column -> values every layer must accept
GOOD: dict[str, tuple[str, ...]] = {
    "tx_id": ("tx-1", "X000000000001", "a", "x" * 128, "A.b:c_d-9", "2024:01:x"),
    "customer_id": ("c1", "C000042", "cust.42:eu"),
    "terminal_id": ("T0000007", "m-1"),
    "device_id": ("D00000001", "unknown", "d" * 128),
    "channel": ACCEPTED_CHANNELS,
    "currency": ("USD", "EUR", "JPY", "XXX"),
    "merchant_category": ("grocery", "digital_goods", "digital goods", "m" * 64, "MCC.5411"),
}


def cases(table: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    return [(col, value) for col, values in table.items() for value in values]


def case_id(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 12 else f"{text[:8]}..{len(text)}")


def request(**fields: Any) -> dict[str, Any]:
    """A valid decision-API request body (JSON-like), with ``fields`` overriding."""
    return {
        "tx_id": "tx-1",
        "ts": "2024-03-04T10:00:00+00:00",
        "customer_id": "c1",
        "terminal_id": "t1",
        "device_id": "d1",
        "amount": 12.5,
        "currency": "USD",
        "merchant_category": "grocery",
        "channel": "pos",
        **fields,
    }
