"""The credit Serve app (serving.credit) deployed on the session's shared Ray, over HTTP: the
decisions and ranked offers equal the in-process service's on the same bundles, bad requests are
422s naming the field (the decision API's shape), bearer keys guard every route but /healthz,
the policy changes live, and the served PD is monotone in the bureau score (falls) and in the
delinquencies (rises) — property tests with hypothesis."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.credit import (
    APP_NAME,
    EXAMPLE_APPLICATION,
    MAX_CANDIDATES,
    ROUTE_PREFIX,
    Applicant,
    CreditApplication,
    CreditService,
    OffersRequest,
    app_config,
)
from tests.credit.test_credit_bundle import credit_bundles
from tests.serving.helpers import free_port

pytestmark = [pytest.mark.serve, pytest.mark.integration, pytest.mark.ray]

CLIENT_KEY, ADMIN_KEY = "credit-client-5e1", "credit-admin-9a4"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
APPLICANT_FIELDS = list(Applicant.model_fields)


def _app_entry(bundles: Any, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """The credit application as serving/serve_config.yaml has it, on local bundles, one
    replica, with API keys in its environment."""
    env = {"RISKML_API_KEYS": CLIENT_KEY, "RISKML_ADMIN_API_KEYS": ADMIN_KEY}
    return app_config(
        {"pd_bundle_dir": str(bundles.pd), "offers_bundle_dir": str(bundles.offers)},
        user_config={"policy": policy or {}},
        actor_options={"runtime_env": {"env_vars": env}},
    )


@pytest.fixture(scope="module")
def app(ray_head: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The credit app on Serve on the shared Ray head (HTTP on a free loopback port)."""
    import ray
    from ray import serve

    from riskml.training.runtime import ensure_ray
    from serving.local import deploy_config, wait_running

    bundles = credit_bundles(tmp_path_factory.mktemp("credit-serving"))
    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    if ray.is_initialized():
        ray.shutdown()
    ensure_ray(address=ray_head.gcs_address, log_to_driver=False, logging_level=logging.ERROR)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        deploy_config({"applications": [_app_entry(bundles)]})
        wait_running(APP_NAME)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}{ROUTE_PREFIX}", trust_env=False, timeout=30
        )
        service = CreditService.from_sources(
            {"bundle_dir": str(bundles.pd)}, {"bundle_dir": str(bundles.offers)}
        )
        yield SimpleNamespace(client=client, bundles=bundles, service=service)
        client.close()
    finally:
        serve.shutdown()
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _applications(bundles: Any, n: int) -> list[dict[str, Any]]:
    """``n`` applications from the portfolio's loans: the riskiest and the safest by true PD
    (so both decisions occur)."""
    loans = bundles.portfolio.loans.sort("sim_pd")
    rows = pl.concat([loans.head(n // 2), loans.tail(n - n // 2)])
    out = []
    for row in rows.iter_rows(named=True):
        body = {k: row[k] for k in APPLICANT_FIELDS if row.get(k) is not None}
        body.update(
            application_id=f"a-{row['loan_id']}",
            amount=float(row["amount"]),
            term_months=int(row["term_months"]),
            apr=float(row["apr"]),
            promotion=row["promotion"],
        )
        out.append(body)
    return out


def test_health_and_models(app: SimpleNamespace) -> None:
    r = app.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    info = app.client.get("/model", headers=AUTH).json()
    assert info["pd_model"] == {
        "name": "credit-pd",
        "version": app.bundles.pd.name,
        "model_uri": None,
        "kind": "credit-pd-gbdt",
    }
    assert info["offers_model"]["version"] == app.bundles.offers.name
    assert info["feature_names"] is None and info["policy"] is None  # not an admin key
    admin = app.client.get("/model", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert admin["feature_names"] == app.service.model.spec.names
    assert admin["policy"]["pd_cutoff"] == app.service.model.policy.pd_cutoff
    assert admin["grades"]["names"][0] == "A"


def test_http_decisions_equal_the_in_process_service(app: SimpleNamespace) -> None:
    bodies = _applications(app.bundles, 30)
    expected = app.service.decide([CreditApplication.model_validate(b) for b in bodies])
    decisions = set()
    for body, want in zip(bodies, expected, strict=True):
        r = app.client.post("/decision", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["application_id"] == body["application_id"]
        assert got["pd"] == pytest.approx(want["pd"], abs=1e-9)
        assert 0 <= got["pd_interval"]["lower"] <= got["pd"] <= got["pd_interval"]["upper"] <= 1
        for key in ("decision", "grade", "max_amount", "approved_amount", "factors"):
            assert got[key] == want[key], key
        assert [x["code"] for x in got["reasons"]] == [x["code"] for x in want["reasons"]]
        if got["decision"] == "approve":
            assert got["reasons"] == []
            assert got["approved_amount"] == min(body["amount"], got["max_amount"]) > 0
        else:
            assert got["approved_amount"] == 0
        decisions.add(got["decision"])
    assert decisions == {"approve", "decline"}


def _impression(bundles: Any, index: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One logged impression's customer and candidate offers."""
    offers = bundles.portfolio.offers
    first = offers.get_column("impression_id").unique(maintain_order=True)[index]
    rows = offers.filter(pl.col("impression_id") == first).sort("candidate")
    head = rows.row(0, named=True)
    customer = {k: head[k] for k in APPLICANT_FIELDS if head.get(k) is not None}
    candidates = [
        {
            "amount": float(r["amount"]),
            "term_months": int(r["term_months"]),
            "apr": float(r["apr"]),
            "promotion": r["promotion"],
            "origination_fee": float(r["origination_fee"]),
        }
        for r in rows.iter_rows(named=True)
    ]
    return customer, candidates


def test_http_offers_are_ranked_with_their_expected_value(app: SimpleNamespace) -> None:
    customer, candidates = _impression(app.bundles)
    body = {**customer, "customer_id": "c-1", "candidates": candidates}
    r = app.client.post("/offers", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    got = r.json()
    offers = got["offers"]
    assert [o["rank"] for o in offers] == list(range(1, len(candidates) + 1))
    assert sorted(o["candidate"] for o in offers) == list(range(len(candidates)))
    scores = [o["score"] for o in offers]
    assert scores == sorted(scores, reverse=True)
    for o in offers:
        asked = candidates[o["candidate"]]
        assert (o["amount"], o["term_months"], o["apr"]) == (
            asked["amount"],
            asked["term_months"],
            asked["apr"],
        )
        assert o["value"] == pytest.approx(o["margin"] - o["expected_loss"])
        assert o["expected_value"] == pytest.approx(o["p_accept"] * o["value"])
        assert 0 <= o["pd"] <= 1 and 0 <= o["p_accept"] <= 1
    assert got["model_versions"] == {
        "pd": app.bundles.pd.name,
        "offers": app.bundles.offers.name,
    }
    want = app.service.rank(OffersRequest.model_validate(body))
    assert [o["candidate"] for o in offers] == [o["candidate"] for o in want["offers"]]
    assert [o["expected_value"] for o in offers] == pytest.approx(
        [o["expected_value"] for o in want["offers"]]
    )
    top = app.client.post("/offers", json={**body, "top_k": 3}, headers=AUTH).json()["offers"]
    assert [o["candidate"] for o in top] == [o["candidate"] for o in offers[:3]]


def _decision_body() -> dict[str, Any]:
    return dict(EXAMPLE_APPLICATION)


@pytest.mark.parametrize(
    ("change", "loc", "kind"),
    [
        ({"surprise": 1}, ["body", "surprise"], "extra_forbidden"),
        ({"bureau_score": 900}, ["body", "bureau_score"], "less_than_equal"),
        ({"bureau_score": "700"}, ["body", "bureau_score"], "int_type"),
        ({"age": 17}, ["body", "age"], "greater_than_equal"),
        ({"amount": 0}, ["body", "amount"], "greater_than"),
        ({"amount": True}, ["body", "amount"], "float_type"),
        ({"term_months": 5}, ["body", "term_months"], "literal_error"),
        ({"apr": 1.5}, ["body", "apr"], "less_than_equal"),
        ({"category": "groceries"}, ["body", "category"], "literal_error"),
        ({"promotion": "free_money"}, ["body", "promotion"], "literal_error"),
        ({"application_id": "a/1"}, ["body", "application_id"], "string_pattern_mismatch"),
        ({"income_monthly": None}, ["body", "income_monthly"], "float_type"),
    ],
)
def test_a_bad_decision_request_is_a_422_naming_the_field(
    app: SimpleNamespace, change: dict[str, Any], loc: list[str], kind: str
) -> None:
    r = app.client.post("/decision", json={**_decision_body(), **change}, headers=AUTH)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == loc and error["type"] == kind
    assert set(error) <= {"type", "loc", "msg", "input", "ctx"} and error["msg"]


def test_missing_fields_non_finite_numbers_and_bad_bodies_are_422s(app: SimpleNamespace) -> None:
    body = _decision_body()
    del body["bureau_score"]
    r = app.client.post("/decision", json=body, headers=AUTH)
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "bureau_score"]]
    # NaN is not JSON, but Python's parser takes it: the models refuse non-finite numbers
    text = '{"application_id": "x", "amount": NaN}'
    headers = {**AUTH, "content-type": "application/json"}
    r = app.client.post("/decision", content=text, headers=headers)
    assert r.status_code == 422
    assert any(
        e["loc"] == ["body", "amount"] and e["type"] == "finite_number" for e in r.json()["detail"]
    )
    for raw in (b"{not json", b"\xff\xfe\x00"):
        r = app.client.post("/decision", content=raw, headers=headers)
        assert r.status_code == 422, raw
        assert r.json()["detail"][0]["type"] == "json_invalid"


def test_offer_requests_are_checked_too(app: SimpleNamespace) -> None:
    customer, candidates = _impression(app.bundles)
    base = {**customer, "customer_id": "c-2"}
    cases = [
        ({**base, "candidates": []}, ["body", "candidates"], "too_short"),
        (
            {**base, "candidates": candidates[:1] * (MAX_CANDIDATES + 1)},
            ["body", "candidates"],
            "too_long",
        ),
        (
            {**base, "candidates": [{**candidates[0], "term_months": 7}]},
            ["body", "candidates", 0, "term_months"],
            "literal_error",
        ),
        ({**base, "candidates": candidates, "top_k": 0}, ["body", "top_k"], "greater_than_equal"),
    ]
    for body, loc, kind in cases:
        r = app.client.post("/offers", json=body, headers=AUTH)
        assert r.status_code == 422, (loc, r.text)
        assert [(e["loc"], e["type"]) for e in r.json()["detail"]] == [(loc, kind)]


def test_keys_guard_every_route_but_healthz(app: SimpleNamespace) -> None:
    customer, candidates = _impression(app.bundles)
    routes = [
        ("POST", "/decision", _decision_body()),
        ("POST", "/offers", {**customer, "customer_id": "c-3", "candidates": candidates}),
        ("GET", "/model", None),
    ]
    for method, path, body in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            r = app.client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and r.json()["detail"]
        for key in (CLIENT_KEY, ADMIN_KEY):
            r = app.client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {key}"}
            )
            assert r.status_code == 200, (path, r.text)
    assert app.client.get("/healthz").status_code == 200
    doc = app.client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert doc["paths"]["/decision"]["post"]["security"] == [{"apiKey": []}]
    assert "401" in doc["paths"]["/offers"]["post"]["responses"]


def test_the_routes_are_admitted_and_a_body_over_the_limit_is_a_413(app: SimpleNamespace) -> None:
    """serving.admission on the credit routes (as POST /v1/score): the document declares the
    503 with Retry-After and the 413; a body over the limit is refused before it is parsed."""
    from serving.credit import MAX_BODY_BYTES

    doc = app.client.get("/openapi.json").json()
    for path in ("/decision", "/offers"):
        responses = doc["paths"][path]["post"]["responses"]
        assert "Retry-After" in responses["503"]["headers"], path
        assert "413" in responses, path
    big = b'{"customer_id": "' + b"c" * MAX_BODY_BYTES + b'"}'
    r = app.client.post(
        "/offers", content=big, headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    assert r.json()["detail"].endswith("/v1/credit/offers")
    assert app.client.get("/healthz").status_code == 200


def test_the_policy_changes_live_through_the_user_config(app: SimpleNamespace) -> None:
    """A tighter PD cut-off in the user_config: the same applications are declined, with
    reasons, by the same replica (reconfigured, not restarted); then back."""
    from serving.local import deploy_config, wait_running

    bodies = _applications(app.bundles, 10)
    replica = app.client.get("/healthz").json()["replica"]
    before = [app.client.post("/decision", json=b, headers=AUTH).json() for b in bodies]
    lowest = min(d["pd"] for d in before)
    try:
        deploy_config({"applications": [_app_entry(app.bundles, {"pd_cutoff": lowest / 2})]})
        wait_running(APP_NAME)
        after = [app.client.post("/decision", json=b, headers=AUTH).json() for b in bodies]
        assert app.client.get("/healthz").json()["replica"] == replica
    finally:
        deploy_config({"applications": [_app_entry(app.bundles)]})
        wait_running(APP_NAME)
    assert all(d["decision"] == "decline" and d["max_amount"] == 0 for d in after)
    assert [d["pd"] for d in after] == [d["pd"] for d in before]


# -- monotonicity of the served PD (hypothesis) --------------------------------------------------


def _applicant() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "age": st.integers(18, 80),
            "income_monthly": st.floats(500, 15_000),
            "employment_years": st.floats(0, 30),
            "bureau_score": st.integers(300, 849),
            "inquiries_6m": st.integers(0, 8),
            "delinquencies_24m": st.integers(0, 5),
            "utilisation": st.floats(0, 1.5),
            "open_accounts": st.integers(0, 20),
            "months_on_book": st.integers(0, 60),
            "prior_loans": st.integers(0, 10),
            "prior_max_dpd": st.sampled_from([0, 30, 60]),
            "debt_to_income": st.floats(0, 1),
            "category": st.sampled_from(
                ["electronics", "fashion", "travel", "home", "health", "education"]
            ),
            "amount": st.floats(100, 5_000),
            "term_months": st.sampled_from([3, 6, 12, 24]),
            "apr": st.floats(0, 0.36),
            "promotion": st.sampled_from(
                ["none", "zero_apr_promo", "fee_waiver", "first_payment_holiday"]
            ),
        }
    )


def _pd(client: httpx.Client, body: dict[str, Any]) -> float:
    r = client.post("/decision", json={**body, "application_id": "mono"}, headers=AUTH)
    assert r.status_code == 200, r.text
    return float(r.json()["pd"])


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(base=_applicant(), step=st.integers(1, 300))
def test_the_served_pd_falls_as_the_bureau_score_rises(
    app: SimpleNamespace, base: dict[str, Any], step: int
) -> None:
    higher = min(850, base["bureau_score"] + step)
    assert _pd(app.client, {**base, "bureau_score": higher}) <= _pd(app.client, base) + 1e-12


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(base=_applicant(), more=st.integers(1, 6))
def test_the_served_pd_rises_with_delinquencies(
    app: SimpleNamespace, base: dict[str, Any], more: int
) -> None:
    worse = {**base, "delinquencies_24m": base["delinquencies_24m"] + more}
    assert _pd(app.client, worse) >= _pd(app.client, base) - 1e-12


def test_monotone_directions_are_the_models_own(app: SimpleNamespace) -> None:
    """What the property tests check is what the model promises (its spec's directions), and
    the sweep over the whole bureau range is not flat (the property is not vacuous)."""
    spec = app.service.model.spec
    assert spec.monotone["bureau_score"] == -1 and spec.monotone["delinquencies_24m"] == 1
    body = {k: v for k, v in _decision_body().items() if k != "application_id"}
    sweep = [_pd(app.client, {**body, "bureau_score": s}) for s in range(300, 851, 50)]
    assert np.all(np.diff(sweep) <= 1e-12) and sweep[0] > sweep[-1]


def test_the_app_args_are_checked_before_anything_is_deployed(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from serving.credit import CreditAppArgs, build_credit_app

    with pytest.raises(ValidationError, match="exactly one of pd_model_uri and pd_bundle_dir"):
        CreditAppArgs.model_validate({})
    with pytest.raises(ValidationError, match="unknown deployments"):
        CreditAppArgs.model_validate({"pd_bundle_dir": "x", "deployment_options": {"Ingress": {}}})
    from riskml.models.bundle import BundleIntegrityError

    with pytest.raises(BundleIntegrityError, match=r"no manifest\.json"):
        build_credit_app({"pd_bundle_dir": str(tmp_path)})
