"""The decision app on a real local Ray Serve, over HTTP (stand-in features on a real
redis-server): equivalence with in-process scoring, input validation (explicit cases, >= 1,000
hypothesis-generated bad requests, schemathesis on the OpenAPI document), live reconfiguration,
experiments, shadow scoring, write-back, metrics, the replay CLI."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
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
    assert_matches_in_process,
    one_per_customer,
    reconfigured,
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


def _post_raw(client: httpx.Client, path: str, body: str) -> httpx.Response:
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
        ("/v1/score/batch", json.dumps({"transactions": []}), "transactions"),
        ("/v1/score/batch", json.dumps({"transactions": [valid_tx(), valid_tx()]}), "transactions"),
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
    app: SimpleNamespace, path: str, body: str, field: str | None
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


def test_schemathesis_finds_no_server_errors(app: SimpleNamespace) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{app.url}/openapi.json", timeout=30)
    seen: dict[str, int] = {}

    def run(mode: GenerationMode, examples: int) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=schema.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            response = case.call(base_url=app.url, timeout=30)
            key = f"{case.method} {case.path}"
            seen[key] = seen.get(key, 0) + 1
            assert response.status_code < 500, (case.body, response.text[:300])
            if mode is GenerationMode.POSITIVE and response.status_code == 200:
                case.validate_response(response)  # the answer conforms to the schema

        check()

    run(GenerationMode.POSITIVE, 120)
    run(GenerationMode.NEGATIVE, 200)
    assert {"POST /v1/score", "POST /v1/score/batch", "GET /healthz", "GET /v1/model"} <= set(seen)


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
