"""The decision app on a real local Ray Serve, over HTTP (stand-in features on a real
redis-server): equivalence with in-process scoring, input validation (explicit cases, >= 1,000
hypothesis-generated bad requests), >= 1,000 generated valid requests each answered with a score
or a named fallback, ``schemathesis run --checks all`` against the OpenAPI document (open, and
with API keys), live reconfiguration, experiments, shadow scoring, write-back, metrics, the
replay CLI."""

from __future__ import annotations

import collections
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from riskml.decision.split import choose_arm, in_share
from serving.schemas import MAX_BATCH
from tests.serving.helpers import (
    DECIDER,
    INGRESS,
    OPTIONS,
    REPO,
    assert_matches_in_process,
    one_per_customer,
    reconfigured,
    user_configs,
    wait_for,
)
from tests.support.serving_standins import FEATURE_NAMES
from tests.support.traffic import live_transactions

pytestmark = [pytest.mark.serve, pytest.mark.integration, pytest.mark.ray]


@pytest.fixture(scope="module")
def app(decision_app: SimpleNamespace) -> SimpleNamespace:
    return decision_app


def test_health_and_model_info(app: SimpleNamespace) -> None:
    r = app.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    info = app.client.get("/v1/model").json()
    assert info["champion"] == "v1" and info["versions"] == ["v1", "v2", "slow"]
    assert info["sequence_model"] == "gru-s1"
    assert info["feature_names"] == list(FEATURE_NAMES)
    assert info["decider_config"]["thresholds"] == {"review": 0.3, "decline": 0.7}
    assert info["ingress_config"]["deadline_ms"] == INGRESS["deadline_ms"]


def test_http_decisions_match_in_process_scoring(app: SimpleNamespace) -> None:
    assert_matches_in_process(app, seed=21)


def _post_raw(client: httpx.Client, path: str, body: str | bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json"})


def valid_tx() -> dict[str, Any]:
    return {
        "tx_id": "v-1",
        "ts": "2024-03-04T10:00:00+00:00",
        "customer_id": "c1",
        "terminal_id": "t1",
        "amount": 12.5,
    }


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/v1/score",
            '{"tx_id":"a","ts":"2024-03-04T10:00:00Z","customer_id":"c","terminal_id":"t","amount":NaN}',
            "amount",
        ),
        (
            "/v1/score",
            '{"tx_id":"a","ts":"2024-03-04T10:00:00Z","customer_id":"c","terminal_id":"t","amount":Infinity}',
            "amount",
        ),
        (
            "/v1/score",
            '{"tx_id":"a","ts":"2024-03-04T10:00:00Z","customer_id":"c","terminal_id":"t","amount":1e999}',
            "amount",
        ),
        ("/v1/score", json.dumps({**valid_tx(), "amount": -0.01}), "amount"),
        ("/v1/score", json.dumps({**valid_tx(), "amount": "12.5"}), "amount"),
        ("/v1/score", json.dumps({**valid_tx(), "amount": True}), "amount"),
        ("/v1/score", json.dumps({**valid_tx(), "is_fraud": 1}), "is_fraud"),
        ("/v1/score", json.dumps({**valid_tx(), "ts": 1709546400}), "ts"),
        ("/v1/score", json.dumps({**valid_tx(), "ts": "2024-03-04T10:00:00"}), "ts"),
        ("/v1/score", json.dumps({**valid_tx(), "ts": "1999-12-31T23:59:59Z"}), "ts"),
        ("/v1/score", json.dumps({**valid_tx(), "customer_id": 42}), "customer_id"),
        ("/v1/score", json.dumps({**valid_tx(), "channel": "fax"}), "channel"),
        ("/v1/score", json.dumps({**valid_tx(), "currency": "usd"}), "currency"),
        ("/v1/score", json.dumps({k: v for k, v in valid_tx().items() if k != "tx_id"}), "tx_id"),
        ("/v1/score", '{"tx_id": "a", ', None),
        ("/v1/score", "[]", None),
        # not UTF-8, and nested past the JSON parser's recursion limit: FastAPI's bare 400
        ("/v1/score", b'{"tx_id": "\xff\xfe"}', "body"),
        ("/v1/score/batch", "[" * 50_000, "body"),
        ("/v1/score/batch", json.dumps({"transactions": []}), "transactions"),
        (
            "/v1/score/batch",
            json.dumps(
                {"transactions": [dict(valid_tx(), tx_id=f"b{i}") for i in range(MAX_BATCH + 1)]}
            ),
            "transactions",
        ),
        (
            "/v1/score/batch",
            json.dumps({"transactions": [dict(valid_tx(), tx_id=f"b{i}") for i in range(65)]}),
            "transactions",
        ),
        ("/v1/score/batch", json.dumps({"transactions": [{**valid_tx(), "amount": -1}]}), "amount"),
    ],
)
def test_bad_requests_are_422_with_a_clear_message(
    app: SimpleNamespace, path: str, body: str | bytes, field: str | None
) -> None:
    r = _post_raw(app.client, path, body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail and all(d.get("msg") for d in detail)
    if field is not None:
        assert any(field in map(str, d["loc"]) for d in detail), detail


def test_at_least_1000_generated_bad_requests_never_get_a_5xx(app: SimpleNamespace) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )
    bad_value = {
        "tx_id": st.one_of(
            junk.filter(lambda v: not isinstance(v, str)), st.just(""), st.just("a b")
        ),
        "ts": st.one_of(junk, st.just("2024-03-04T10:00:00"), st.just("yesterday")),
        "customer_id": junk.filter(lambda v: not isinstance(v, str)),
        "amount": st.one_of(
            st.floats(max_value=-1e-9),
            st.sampled_from([math.nan, math.inf, -math.inf]),
            st.text(max_size=8),
            st.booleans(),
            st.none(),
        ),
        "channel": st.text(max_size=10).filter(
            lambda v: v not in ("pos", "contactless", "ecom", "moto", "atm", "unknown")
        ),
        "currency": st.text(max_size=5).filter(
            lambda v: not (len(v) == 3 and v.isupper() and v.isascii() and v.isalpha())
        ),
    }

    @st.composite
    def bad_request(draw: Any) -> tuple[str, str]:
        tx = dict(valid_tx(), tx_id=f"h-{draw(st.integers(0, 10**9))}")
        kind = draw(st.sampled_from(["value", "unknown", "missing", "body", "batch"]))
        if kind == "value":
            name = draw(st.sampled_from(sorted(bad_value)))
            tx[name] = draw(bad_value[name])
        elif kind == "unknown":
            extra = draw(
                st.text(min_size=1, max_size=12).filter(
                    lambda k: (
                        k not in tx
                        and k not in bad_value
                        and k not in ("device_id", "merchant_category")
                    )
                )
            )
            tx[extra] = draw(junk)
        elif kind == "missing":
            del tx[draw(st.sampled_from(["tx_id", "ts", "customer_id", "terminal_id", "amount"]))]
        elif kind == "body":
            return "/v1/score", json.dumps(draw(junk))
        else:
            n = draw(st.sampled_from([0, 65, MAX_BATCH + 1]))
            return "/v1/score/batch", json.dumps(
                {"transactions": [dict(valid_tx(), tx_id=f"b{i}") for i in range(n)]}
            )
        return "/v1/score", json.dumps(tx)

    statuses: list[int] = []

    @settings(
        max_examples=1000,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(bad_request())
    def check(req: tuple[str, str]) -> None:
        path, body = req
        r = _post_raw(app.client, path, body)
        statuses.append(r.status_code)
        assert r.status_code == 422, (body[:200], r.status_code, r.text[:300])

    check()
    assert len(statuses) >= 1000 and max(statuses) < 500


def test_a_repeated_transaction_is_decided_once_a_conflicting_one_is_409(
    app: SimpleNamespace,
) -> None:
    """A tx_id names one transaction: sent twice in a batch with the same fields (the same
    instant in another UTC offset too) it is one decision, answered at both places; with other
    fields it is a 409 naming the item, and nothing is decided."""
    a, b = live_transactions(2, seed=23, prefix="dup")
    plus_two = dt.timezone(dt.timedelta(hours=2))
    again = dict(a, ts=dt.datetime.fromisoformat(a["ts"]).astimezone(plus_two).isoformat())
    r = app.client.post("/v1/score/batch", json={"transactions": [a, b, again]})
    assert r.status_code == 200, r.text
    first, other, repeat = r.json()["decisions"]
    assert (first["tx_id"], other["tx_id"]) == (a["tx_id"], b["tx_id"])
    assert repeat == first  # the same decision, not a second one

    conflict = dict(a, amount=a["amount"] + 1)
    r = app.client.post("/v1/score/batch", json={"transactions": [a, b, conflict]})
    assert r.status_code == 409, r.text
    (detail,) = r.json()["detail"]
    assert detail["loc"] == ["body", "transactions", 2, "tx_id"]
    assert detail["type"] == "tx_id_conflict" and "transactions[0]" in detail["msg"]


def test_openapi_states_what_the_app_answers(app: SimpleNamespace) -> None:
    doc = app.client.get("/openapi.json").json()
    batch = doc["components"]["schemas"]["BatchRequest"]["properties"]["transactions"]
    assert batch["maxItems"] == INGRESS["max_batch_size"]  # the live limit, not MAX_BATCH
    (header,) = doc["paths"]["/v1/score"]["post"]["parameters"]
    assert header["name"] == "X-Request-Timeout-Ms" and header["schema"]["type"] == "number"
    responses = doc["paths"]["/v1/score/batch"]["post"]["responses"]
    assert {"200", "409", "413", "422", "503"} <= set(responses)
    assert "Retry-After" in responses["503"]["headers"]
    assert "401" not in responses  # an open app: no keys, no 401
    with reconfigured(app, ingress={**INGRESS, "max_batch_size": 16}):
        doc = app.client.get("/openapi.json").json()
        batch = doc["components"]["schemas"]["BatchRequest"]["properties"]["transactions"]
        assert batch["maxItems"] == 16


#: Transactions the service accepts whatever else is drawn (schema rules, riskml.data.schema).
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"


@pytest.mark.slow
def test_1000_valid_requests_each_get_a_score_or_a_named_fallback(app: SimpleNamespace) -> None:
    """>= 1,000 generated valid requests over HTTP (single and batch, some with a short or an
    expired deadline): every one is a 200 answering each transaction once, in order, with the
    served model version, and either a finite score in [0, 1] or a named fallback source
    with its reason."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.support.schemathesis_hooks import accepted_date_times

    versions = set(app.client.get("/v1/model").json()["versions"])
    ids = st.text(ID_ALPHABET, min_size=1, max_size=128)
    counter = iter(range(10**9))

    @st.composite
    def transaction(draw: Any) -> dict[str, Any]:
        tx: dict[str, Any] = {
            "tx_id": f"pv-{next(counter)}-{draw(st.text(ID_ALPHABET, max_size=8))}",
            "ts": draw(accepted_date_times()),
            # a few customers of their own (a history builds up) or any valid id
            "customer_id": draw(st.one_of(st.integers(0, 30).map("pv-c{}".format), ids)),
            "terminal_id": draw(st.one_of(st.integers(0, 99).map("t{}".format), ids)),
            "amount": draw(
                st.one_of(
                    st.floats(0, 1e9, allow_nan=False, allow_infinity=False),
                    st.floats(0, 500).map(lambda v: round(v, 2)),
                    st.sampled_from([0.0, 1e9]),
                )
            ),
        }
        optional = {
            "device_id": ids,
            "currency": st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
            "merchant_category": st.text(ID_ALPHABET + " ", min_size=1, max_size=64),
            "channel": st.sampled_from(["pos", "contactless", "ecom", "moto", "atm", "unknown"]),
        }
        for name, values in optional.items():
            if draw(st.booleans()):
                tx[name] = draw(values)
        return tx

    timeouts = st.one_of(
        st.none(), st.none(), st.none(), st.sampled_from([-5.0, 0.0]), st.floats(0.5, 20)
    )
    requests = st.tuples(
        st.one_of(transaction(), st.lists(transaction(), min_size=1, max_size=5)), timeouts
    )
    seen: collections.Counter[str] = collections.Counter()

    def check(decision: dict[str, Any], tx: dict[str, Any]) -> None:
        assert decision["tx_id"] == tx["tx_id"]
        assert decision["decision"] in ("approve", "review", "decline")
        assert decision["model_version"] in versions
        source, reason, score = (
            decision["decision_source"],
            decision["fallback_reason"],
            decision["score"],
        )
        if score is not None:
            assert math.isfinite(score) and 0.0 <= score <= 1.0, decision
            assert source in ("ensemble", "xgboost_only"), decision
        else:
            assert source in ("rules", "default"), decision
        if source == "ensemble":
            assert reason is None, decision
        else:
            assert isinstance(reason, str) and reason, decision  # a named fallback, and why
        seen[source] += 1
        seen[f"{source}: {reason}"] += 1

    @settings(
        max_examples=1000,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests)
    def post(request: tuple[dict[str, Any] | list[dict[str, Any]], float | None]) -> None:
        body, timeout_ms = request
        headers = {} if timeout_ms is None else {"X-Request-Timeout-Ms": str(timeout_ms)}
        if isinstance(body, dict):
            r = app.client.post("/v1/score", json=body, headers=headers)
            assert r.status_code == 200, (body, r.status_code, r.text[:500])
            check(r.json(), body)
        else:
            r = app.client.post("/v1/score/batch", json={"transactions": body}, headers=headers)
            assert r.status_code == 200, (body, r.status_code, r.text[:500])
            decisions = r.json()["decisions"]
            assert len(decisions) == len(body)
            for decision, tx in zip(decisions, body, strict=True):
                check(decision, tx)
        seen["requests"] += 1

    post()
    print(dict(seen))
    assert seen["requests"] >= 1000
    # both branches of the property were exercised: scored answers and named fallbacks
    assert seen["ensemble"] > 0 and seen["default"] + seen["rules"] + seen["xgboost_only"] > 0


# -- schemathesis: the OpenAPI document against what the app does --------------------------------
#: Cases per operation that has inputs, per phase, in the run a user makes (``--mode all``: the
#: fuzzing phase draws mostly positive cases, the coverage phase mostly negative ones).
MAX_EXAMPLES = 200
#: ... and in a second run, fuzzing in negative mode only.
NEGATIVE_EXAMPLES = 100
#: The run with API keys, whose point is the auth checks (a request without a key and with a
#: wrong one, on every operation): the same document and app otherwise, so a quarter of the cases
#: (~75 s less on a CI machine).
KEYED_EXAMPLES = (MAX_EXAMPLES // 4, NEGATIVE_EXAMPLES // 4)


def schemathesis_run(
    url: str,
    out: Path,
    *extra: str,
    examples: tuple[int, int] = (MAX_EXAMPLES, NEGATIVE_EXAMPLES),
) -> dict[str, collections.Counter[str]]:
    """``schemathesis run <url>/openapi.json --checks all`` as a user runs it (every phase, both
    generation modes), then its fuzzing phase once more in negative mode, both with the
    repository's schemathesis.toml (its hooks: tests.support.schemathesis_hooks); fails with
    the CLI's own report unless each found nothing. The cases of each operation by mode, and
    of every check by status, from their NDJSON reports."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    runs = {
        "all": ["--mode=all", f"--max-examples={examples[0]}"],
        "negative": ["--phases=fuzzing", "--mode=negative", f"--max-examples={examples[1]}"],
    }
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    path = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(PYTHONPATH=path, NO_COLOR="1")
    for name, options in runs.items():
        report = out / f"schemathesis-{name}.ndjson"
        cmd = [
            str(Path(sys.executable).with_name("schemathesis")),
            # the repository's config (its hooks), what a bare run from the root picks up
            f"--config-file={REPO / 'schemathesis.toml'}",
            "run",
            f"{url}/openapi.json",
            "--checks=all",
            *options,
            "--seed=21",
            "--workers=1",
            "--continue-on-failure",
            "--request-timeout=30",
            "--report=ndjson",
            f"--report-ndjson-path={report}",
            *extra,
        ]
        # in tmp_path: the CLI keeps its cache (.schemathesis/) in its working directory
        run = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
        for line in report.read_text().splitlines():
            event = json.loads(line)
            if "ScenarioFinished" not in event:
                continue
            recorder = event["ScenarioFinished"]["recorder"]
            for case_id, case in recorder.get("cases", {}).items():
                mode = case["value"]["meta"]["generation"]["mode"]
                counts[recorder["label"]][mode] += 1
                for check in recorder["checks"].get(case_id, []):
                    counts["checks"][f"{check['name']}:{check['status']}"] += 1
    return counts


def assert_found_nothing(counts: dict[str, collections.Counter[str]], least: int = 100) -> None:
    checks = counts.pop("checks")
    assert not [c for c in checks if not c.endswith((":success", ":skip"))], checks
    ran = {c.split(":")[0] for c in checks if c.endswith(":success")}
    assert {
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "unsupported_method",
    } <= ran, ran
    assert set(counts) == {
        "POST /v1/score",
        "POST /v1/score/batch",
        "GET /healthz",
        "GET /v1/model",
        "GET /v1/decision-log",
    }
    for op in ("POST /v1/score", "POST /v1/score/batch"):
        assert counts[op]["positive"] >= least and counts[op]["negative"] >= least, (op, counts[op])
    # the GETs take no input: one request each, plus the coverage phase's other methods
    for op in ("GET /healthz", "GET /v1/model", "GET /v1/decision-log"):
        assert counts[op]["positive"] >= 1, (op, counts[op])


@pytest.mark.slow
def test_schemathesis_all_checks_find_nothing(app: SimpleNamespace, tmp_path: Path) -> None:
    counts = schemathesis_run(app.url, tmp_path)
    print({op: dict(c) for op, c in counts.items() if op != "checks"})
    assert_found_nothing(counts)


@contextmanager
def beside(
    app: SimpleNamespace,
    name: str,
    ingress: dict[str, Any],
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """The same app beside the module's, colocated, one replica, with its own Ingress config
    (and environment); its URL. Serve's declarative set names both (the module's unchanged:
    not restarted); leaving the block deletes it (a graceful shutdown of its replica)."""
    from serving.local import app_config, deploy_config, wait_running

    shared = app_config(
        app.args,
        name=app.name,
        route_prefix=app.prefix,
        user_configs=user_configs(app.topology, INGRESS, DECIDER),
        options=OPTIONS,
    )
    other = app_config(
        app.args,
        name=name,
        route_prefix=f"/{name}",
        user_configs={"Ingress": {**INGRESS, **ingress, "decider": DECIDER}},
        options={"Ingress": {"num_replicas": 1}},
    )
    if env:
        other["runtime_env"] = {"env_vars": env}
    deploy_config({"applications": [shared, other]})
    try:
        wait_running(name)
        yield app.url.removesuffix(app.prefix) + f"/{name}"
    finally:
        deploy_config({"applications": [shared]})


@contextmanager
def keyed_app(app: SimpleNamespace, key: str, admin_key: str) -> Iterator[str]:
    """:func:`beside` with API keys (no write-back)."""
    env = {"RISKML_API_KEYS": key, "RISKML_ADMIN_API_KEYS": admin_key}
    with beside(app, "riskml-keyed", {"write_back": False}, env) as url:
        yield url


@pytest.mark.slow
def test_schemathesis_all_checks_find_nothing_with_api_keys(
    app: SimpleNamespace, tmp_path: Path
) -> None:
    """With keys the document declares the bearer scheme and a 401 (with its body and
    WWW-Authenticate) on every route but /healthz; schemathesis' auth checks send requests
    without a key and with a wrong one."""
    with keyed_app(app, "client-key-5e1", "admin-key-0c4") as url:
        doc = httpx.get(f"{url}/openapi.json", timeout=30, trust_env=False).json()
        unauthorized = doc["paths"]["/v1/score/batch"]["post"]["responses"]["401"]
        assert "WWW-Authenticate" in unauthorized["headers"]
        assert "application/json" in unauthorized["content"]
        assert httpx.post(f"{url}/v1/score", json=valid_tx(), trust_env=False).status_code == 401
        counts = schemathesis_run(
            url,
            tmp_path,
            "--header=Authorization: Bearer client-key-5e1",
            examples=KEYED_EXAMPLES,
        )
    print({op: dict(c) for op, c in counts.items() if op != "checks"})
    # schemathesis sent requests without the key and with a wrong one, and each was refused
    assert counts["checks"]["ignored_auth:success"] > 0, counts["checks"]
    assert_found_nothing(counts, least=KEYED_EXAMPLES[1])


def test_thresholds_change_live_through_reconfigure(app: SimpleNamespace) -> None:
    txs = live_transactions(5, seed=31, prefix="thr")
    with reconfigured(app, decider={**DECIDER, "thresholds": {"review": 0.0, "decline": 0.0}}):
        assert app.client.get("/v1/model").json()["decider_config"]["thresholds"]["decline"] == 0
        out = [app.client.post("/v1/score", json=tx).json() for tx in txs]
        assert {o["decision"] for o in out} == {"decline"}
    info = app.client.get("/v1/model").json()
    assert info["decider_config"]["thresholds"] == {"review": 0.3, "decline": 0.7}


def test_experiment_split_is_deterministic_by_customer(app: SimpleNamespace) -> None:
    txs = live_transactions(40, seed=41, prefix="exp")
    exp = {"enabled": True, "salt": "exp-7", "unit": "customer_id", "arms": {"v1": 1.0, "v2": 1.0}}
    with reconfigured(app, ingress={**INGRESS, "experiment": exp}):
        out = [app.client.post("/v1/score", json=tx).json() for tx in txs]
    versions = [o["model_version"] for o in out]
    assert versions == [choose_arm(t["customer_id"], exp["arms"], "exp-7") for t in txs]
    assert set(versions) == {"v1", "v2"}
    assert {o["decision_source"] for o in out} == {"ensemble"}
    after = app.client.post("/v1/score", json=txs[0]).json()
    assert after["model_version"] == "v1"  # flag off again: everyone on the champion


def test_shadow_scores_are_logged_and_never_change_decisions(
    app: SimpleNamespace, tmp_path: Path
) -> None:
    # one transaction per customer: no transaction's write-back changes another's features
    txs = one_per_customer(live_transactions(200, seed=51, prefix="shadow"))[:30]
    log = tmp_path / "shadow.jsonl"
    before = [app.client.post("/v1/score", json=tx).json() for tx in txs]
    shadow = {"version": "v2", "share": 0.5, "salt": "sh"}
    with reconfigured(app, ingress={**INGRESS, "shadow": shadow, "shadow_log": str(log)}):
        during = [app.client.post("/v1/score", json=tx).json() for tx in txs]
        expected = {t["tx_id"] for t in txs if in_share(t["tx_id"], 0.5, "sh")}
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= len(expected))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["tx_id"] for r in records} == expected and expected
    assert all(r["shadow_version"] == "v2" and r["champion_version"] == "v1" for r in records)
    assert any(abs(r["shadow_score"] - r["champion_score"]) > 1e-6 for r in records)
    for b, d in zip(before, during, strict=True):
        assert (b["decision"], b["score"], b["model_version"]) == (
            d["decision"],
            d["score"],
            d["model_version"],
        )


def test_write_back_updates_online_state_once_per_tx(app: SimpleNamespace) -> None:
    tx = dict(
        live_transactions(1, seed=61, prefix="wb")[0], customer_id=f"wb-{uuid.uuid4().hex[:6]}"
    )
    first = app.client.post("/v1/score", json=tx).json()
    assert first["flags"]["unknown_customer"] == 1
    app.client.post("/v1/score", json=tx)  # a client retry of the same transaction
    key = f"{app.source.prefix}:c:{tx['customer_id']}"
    assert wait_for(lambda: app.source._redis.llen(key) == 1, timeout_s=10)
    time.sleep(0.5)
    assert app.source._redis.llen(key) == 1  # the retry did not append a second event
    ts = dt.datetime.fromisoformat(tx["ts"]) + dt.timedelta(seconds=60)
    nxt = dict(tx, tx_id=tx["tx_id"] + "-next", ts=ts.isoformat())
    (row,) = app.source.get_many([nxt])  # what the service will read for the next one
    assert row.flags["unknown_customer"] == 0
    assert row.tabular[FEATURE_NAMES.index("cust_cnt_1h")] == 1.0


def test_a_graceful_shutdown_writes_back_what_its_replica_still_held(
    app: SimpleNamespace,
) -> None:
    """Write-backs wait up to ``write_back_interval_ms`` to be batched; a stop or a redeploy
    (Serve's graceful shutdown, ``Ingress.__del__``) flushes them and waits for the flushes in
    flight, so the decisions of the replica's last moments still reach the online state."""
    from ray import serve

    txs = [
        dict(tx, customer_id=f"drain-{uuid.uuid4().hex[:6]}")
        for tx in live_transactions(4, seed=67, prefix="drain")
    ]
    keys = [f"{app.source.prefix}:c:{tx['customer_id']}" for tx in txs]
    held = {"write_back": True, "write_back_interval_ms": 10_000, "write_back_batch": 1_024}
    with beside(app, "riskml-drain", held) as url:
        for tx in txs:
            r = httpx.post(f"{url}/v1/score", json=tx, timeout=30, trust_env=False)
            assert r.status_code == 200, r.text
        time.sleep(0.5)
        assert [app.source._redis.llen(k) for k in keys] == [0, 0, 0, 0]  # still queued
    # leaving the block deleted the app: its replica shut down gracefully
    assert wait_for(lambda: "riskml-drain" not in serve.status().applications, timeout_s=60)
    assert [app.source._redis.llen(k) for k in keys] == [1, 1, 1, 1]


def test_prometheus_metrics_are_exported_next_to_serve_metrics(app: SimpleNamespace) -> None:
    for tx in live_transactions(5, seed=71, prefix="metrics"):
        app.client.post("/v1/score", json=tx)

    def scrape() -> str | None:
        text = httpx.get(f"{app.metrics_url}/metrics", timeout=5, trust_env=False).text
        ok = "ray_riskml_decisions" in text and 'stage="features"' in text
        return text if ok else None

    text = wait_for(scrape, timeout_s=60, interval_s=1.0)
    assert text, "riskml metrics never appeared on the Ray metrics endpoint"
    assert "ray_riskml_stage_latency_ms_bucket" in text
    assert 'source="ensemble"' in text and "ray_riskml_score_bucket" in text
    assert "ray_serve_" in text  # Serve's own metrics on the same endpoint


def test_replay_client_reports_the_decision_mix(app: SimpleNamespace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from riskml.cli import app as cli

    txs = live_transactions(40, seed=81, prefix="replay")
    path = tmp_path / "tx.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in txs))
    out = tmp_path / "replay.json"
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            "replay",
            "--transactions",
            str(path),
            "--rps",
            "40",
            "--url",
            app.url,
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["requests"] == report["ok"] == 40 and report["errors"] == 0
    assert sum(report["decisions"].values()) == 40
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    # paced, never faster than asked (how much slower depends on the machine's load)
    assert 0 < report["achieved_rps"] <= 45 and report["duration_s"] >= 39 / 40
    # the client's own pacing error is reported, and small next to a decision's latency
    lag = report["send_lag_ms"]
    assert lag["p50"] <= lag["p99"] <= lag["max"] and abs(lag["p50"]) < 5
    assert "decision mix" in result.output


def test_replay_spreads_over_several_urls_and_retries_on_the_next(app: SimpleNamespace) -> None:
    """Round robin over several targets (the Ingress replicas' own ports with direct ingress);
    a request whose target refuses the connection is retried on the next one."""
    from serving.replay import replay
    from tests.serving.helpers import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    txs = live_transactions(20, seed=83, prefix="rr")
    report = replay([dead, app.url], txs, rps=40, retries=1, timeout_s=10)
    assert report.ok == 20 and report.errors == 0, report.status
    assert report.retries == 10  # every other request went to the dead target first
    none = replay([dead], txs[:4], rps=40, retries=0, timeout_s=10)
    assert none.ok == 0 and none.errors == 4 and set(none.status) == {"ClientConnectorError"}
