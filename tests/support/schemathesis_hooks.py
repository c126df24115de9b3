"""Schemathesis hooks for the decision API: ``SCHEMATHESIS_HOOKS=tests.support.schemathesis_hooks
schemathesis run <app>/openapi.json --checks all`` (the test in tests/serving/test_http_app.py
runs exactly that).

One rule of the API cannot be a JSON Schema: a ``ts`` more than ``RISKML_STREAM_MAX_SKEW_S``
(300 s) after the server's clock is a 422 (docs/serving.md, "the far-future 422"), and JSON Schema
has no bound relative to *now*; the document states it in ``ts``'s description. So the
``date-time`` values generated here are the instants the service accepts: from 2000-01-01 (UTC)
to the moment this module is imported, each written with a UTC offset of its own (``Z`` or
``±hh:mm``). Everything else the generator takes from the document as it is.
"""

from __future__ import annotations

import datetime as dt

import schemathesis
from hypothesis import strategies as st

EARLIEST = dt.datetime(2000, 1, 1)


def _written(instant: dt.datetime, offset_min: int, zulu: bool) -> str:
    when = instant.replace(tzinfo=dt.UTC)
    if zulu:
        return when.isoformat().replace("+00:00", "Z")
    return when.astimezone(dt.timezone(dt.timedelta(minutes=offset_min))).isoformat()


def accepted_date_times(now: dt.datetime | None = None) -> st.SearchStrategy[str]:
    """RFC 3339 date-times between 2000-01-01 and ``now`` (UTC), any offset."""
    latest = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
    return st.builds(
        _written,
        st.datetimes(min_value=EARLIEST, max_value=latest),
        st.integers(-(23 * 60 + 59), 23 * 60 + 59),
        st.booleans(),
    )


schemathesis.openapi.format("date-time", accepted_date_times())
