"""The disputes Serve app (serving.disputes) deployed on the session's shared Ray, over HTTP: the
assessment of a dispute from its documents (sent as base64 PDFs or as references under the app's
documents root) equals the in-process service's, with the evidence's provenance, the requirement
checklist, the compelling-evidence check and the packet (its PDF on request); bad requests are
422s naming the field (the decision API's shape), an unreadable document a 422 naming it, a body
over the limit a 413; bearer keys guard every route but /healthz; the policy changes live; a
scanned (image-only) document is read by OCR in the replica's worker thread."""

from __future__ import annotations

import base64
import copy
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import polars as pl
import pytest

from serving.disputes import (
    APP_NAME,
    MAX_BODY_BYTES,
    MAX_DOCUMENTS,
    ROUTE_PREFIX,
    AssessRequest,
    DisputesService,
    app_config,
    case_request,
)
from tests.disputes.test_disputes_bundle import disputes_bundles
from tests.serving.helpers import free_port

pytestmark = [pytest.mark.serve, pytest.mark.integration, pytest.mark.ray]

CLIENT_KEY, ADMIN_KEY = "disputes-client-31c", "disputes-admin-7f2"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


def _deploy(
    built: Any, policy: dict[str, Any] | None = None, tight: dict[str, Any] | None = None
) -> None:
    """The disputes application as serving/serve_config.yaml has it, on the local bundle, one
    replica, documents under the dispute set's root, API keys in its environment; with
    ``tight``, a second one (:data:`TIGHT`) with those admission limits beside it."""
    from serving.local import deploy_config, wait_running

    env = {"RISKML_API_KEYS": CLIENT_KEY, "RISKML_ADMIN_API_KEYS": ADMIN_KEY}
    args = {"bundle_dir": str(built.bundle), "documents_root": str(built.set_dir)}
    options = {"runtime_env": {"env_vars": env}}
    entries = [app_config(args, user_config={"policy": policy or {}}, actor_options=options)]
    if tight is not None:
        entries.append(
            app_config(
                {**args, "admission": tight},
                name=TIGHT,
                route_prefix=f"/v1/{TIGHT}",
                actor_options=options,
            )
        )
    deploy_config({"applications": entries})
    wait_running(APP_NAME)
    if tight is not None:
        wait_running(TIGHT)


#: The app name (and route prefix below /v1) of the admission test's second app.
TIGHT = "disputes-tight"


@pytest.fixture(scope="module")
def app(ray_head: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The disputes app on Serve on the shared Ray head (HTTP on a free loopback port)."""
    import ray
    from ray import serve

    from components.disputes_tasks import read_set
    from riskml.training.runtime import ensure_ray

    built = disputes_bundles(tmp_path_factory)
    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    if ray.is_initialized():
        ray.shutdown()
    ensure_ray(address=ray_head.gcs_address, log_to_driver=False, logging_level=logging.ERROR)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        _deploy(built)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}{ROUTE_PREFIX}", trust_env=False, timeout=60
        )
        service = DisputesService.from_source(
            {"bundle_dir": str(built.bundle)}, documents_root=str(built.set_dir)
        )
        yield SimpleNamespace(
            client=client, built=built, service=service, dispute_set=read_set(built.set_dir)
        )
        client.close()
    finally:
        serve.shutdown()
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _ids(app: SimpleNamespace, family: str, n: int) -> list[str]:
    d = app.dispute_set.disputes.filter(pl.col("reason_family") == family)
    return d.get_column("dispute_id").tail(n).to_list()


def test_health_is_open_and_the_model_route_shows_internals_to_an_admin(
    app: SimpleNamespace,
) -> None:
    r = app.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    info = app.client.get("/model", headers=AUTH).json()
    assert info["name"] == "disputes-outcome" and info["version"] == app.built.bundle.name
    assert info["kind"] == "disputes-outcome-xgboost" and info["model_uri"] is None
    assert info["feature_names"] is None and info["policy"] is None  # not an admin key
    admin = app.client.get("/model", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert admin["feature_names"] == app.service.bundle.model.feature_names
    assert admin["rule"]["min_age_days"] == 120 and admin["extraction"]["extractor"] == "layout"
    assert admin["calibration"]["method"] == app.service.bundle.model.calibrator.method


def test_http_assessments_equal_the_in_process_service(app: SimpleNamespace) -> None:
    ids = _ids(app, "fraud", 4) + _ids(app, "consumer_dispute", 4)
    actions = set()
    for dispute_id in ids:
        body = case_request(app.dispute_set, dispute_id)
        r = app.client.post("/assess", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        got = r.json()
        want = app.service.assess(AssessRequest.model_validate(body))
        assert got["dispute_id"] == dispute_id
        assert got["decision"] == want["decision"]
        assert got["win_probability"] == pytest.approx(want["win_probability"], abs=1e-9)
        assert got["evidence"]["evidence"] == want["evidence"].evidence.model_dump(mode="json")
        assert got["requirements"]["key"] == want["requirements"]["key"]
        assert got["compelling_evidence"]["qualifies"] == want["compelling_evidence"].qualifies
        assert got["reason_family"]["code"] == app.dispute_set.disputes.filter(
            pl.col("dispute_id") == dispute_id
        ).item(0, "reason_family")
        ev = got["expected_value"]
        assert (
            ev["chosen"]
            == {
                "represent": ev["represent"],
                "auto_refund": ev["refund"],
                "human_review": ev["review"],
            }[got["decision"]]
        )
        # every extracted field says where it was read: document, page, span, quoted text
        for name, field in got["evidence"]["fields"].items():
            assert 0 <= field["confidence"] <= 1, name
            for prov in field["provenance"]:
                assert prov["document"] in [d["name"] for d in body["documents"]]
                assert prov["page"] >= 1 and prov["end"] >= prov["start"] and prov["text"]
        assert (got["packet"] is None) == (got["decision"] == "auto_refund")
        assert got["packet_pdf_base64"] is None
        actions.add(got["decision"])
    assert len(actions) >= 2  # not one answer for everything


def test_referenced_documents_read_as_sent_ones_and_the_packet_pdf_on_request(
    app: SimpleNamespace,
) -> None:
    ids = _ids(app, "consumer_dispute", 12)
    for dispute_id in ids:
        sent = case_request(app.dispute_set, dispute_id, include_packet_pdf=True)
        ref = case_request(
            app.dispute_set, dispute_id, documents="reference", include_packet_pdf=True
        )
        assert all("reference" in d and "content_base64" not in d for d in ref["documents"])
        a = app.client.post("/assess", json=sent, headers=AUTH).json()
        b = app.client.post("/assess", json=ref, headers=AUTH).json()
        assert a["evidence"]["fields"] == b["evidence"]["fields"]
        assert a["win_probability"] == b["win_probability"]
        if a["packet"] is not None:
            pdf = base64.b64decode(a["packet_pdf_base64"])
            assert pdf.startswith(b"%PDF")
            assert a["packet"]["dispute_id"] == dispute_id
            assert {r["key"] for r in a["packet"]["requirements"]} == {
                i["key"] for i in a["requirements"]["items"]
            }
            return
    pytest.fail("no dispute of the sample was represented or reviewed")


def test_without_history_compelling_evidence_is_not_checked(app: SimpleNamespace) -> None:
    (dispute_id,) = _ids(app, "fraud", 1)
    body = case_request(app.dispute_set, dispute_id, history=False)
    got = app.client.post("/assess", json=body, headers=AUTH).json()
    assert got["compelling_evidence"]["qualifies"] is False
    assert "no transaction history was given" in got["compelling_evidence"]["reasons"]


def test_every_route_but_health_needs_a_key(app: SimpleNamespace) -> None:
    (dispute_id,) = _ids(app, "fraud", 1)
    body = case_request(app.dispute_set, dispute_id, documents="none", history=False)
    for headers in ({}, {"Authorization": "Bearer nope"}):
        r = app.client.post("/assess", json=body, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert app.client.get("/model", headers=headers).status_code == 401
    assert app.client.post("/assess", json=body, headers=AUTH).status_code == 200


def _body(app: SimpleNamespace) -> dict[str, Any]:
    (dispute_id,) = _ids(app, "consumer_dispute", 1)
    return case_request(app.dispute_set, dispute_id, history=False)


def _changed(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "loc", "kind"),
    [
        (("surprise",), 1, ["body", "surprise"], "extra_forbidden"),
        (("dispute", "amount"), 0, ["body", "dispute", "amount"], "greater_than"),
        (("dispute", "amount"), "12.5", ["body", "dispute", "amount"], "float_type"),
        (("dispute", "tx_id"), "a/b", ["body", "dispute", "tx_id"], "string_pattern_mismatch"),
        (("dispute", "reason_code"), "99.9", ["body", "dispute"], "value_error"),
        (("dispute", "network"), "amex", ["body", "dispute", "network"], "literal_error"),
        (
            ("dispute", "tx_ts"),
            "2025-01-01T00:00:00",
            ["body", "dispute", "tx_ts"],
            "timezone_aware",
        ),
        (("dispute", "opened_at"), KeyError, ["body", "dispute", "opened_at"], "missing"),
        (
            ("documents", 0, "content_base64"),
            "not base64!",
            ["body", "documents", 0, "content_base64"],
            "value_error",
        ),
        (("documents", 0, "text"), "both", ["body", "documents", 0], "value_error"),
        (
            ("documents", 0, "name"),
            "../x.pdf",
            ["body", "documents", 0, "name"],
            "string_pattern_mismatch",
        ),
    ],
)
def test_a_bad_request_is_a_422_naming_the_field(
    app: SimpleNamespace, path: tuple[Any, ...], value: Any, loc: list[Any], kind: str
) -> None:
    r = app.client.post("/assess", json=_changed(_body(app), path, value), headers=AUTH)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == loc and error["type"] == kind, error
    assert set(error) <= {"type", "loc", "msg", "input", "ctx"} and error["msg"]


def test_more_bad_requests_name_what_is_wrong(app: SimpleNamespace) -> None:
    body = _body(app)
    cases = [
        # the dispute raised before its transaction
        (_changed(body, ("dispute", "opened_at"), "2000-01-01T00:00:00Z"), "opened_at is before"),
        # a reference that leaves the documents root
        (
            _changed(body, ("documents",), [{"name": "x.pdf", "reference": "../../etc/passwd"}]),
            "relative path inside documents_root",
        ),
        (
            _changed(body, ("documents",), [body["documents"][0], body["documents"][0]]),
            "document names must be unique",
        ),
        (
            _changed(body, ("documents",), [{"name": f"d{i}.txt", "text": "x"} for i in range(17)]),
            f"at most {MAX_DOCUMENTS} items",
        ),
    ]
    for bad, message in cases:
        r = app.client.post("/assess", json=bad, headers=AUTH)
        assert r.status_code == 422, r.text
        assert message in r.text, r.text
    # NaN is not JSON, but Python's parser takes it: the models refuse non-finite numbers
    text = r'{"dispute": {"amount": NaN}}'
    r = app.client.post(
        "/assess", content=text, headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 422
    assert any(e["loc"] == ["body", "dispute", "amount"] for e in r.json()["detail"])


def test_an_unreadable_document_is_a_422_naming_it(app: SimpleNamespace) -> None:
    body = _body(app)
    not_pdf = base64.b64encode(b"hello, I am not a PDF").decode()
    bad = _changed(body, ("documents", 1), {"name": "fake.pdf", "content_base64": not_pdf})
    r = app.client.post("/assess", json=bad, headers=AUTH)
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "documents", 1, "content_base64"]
    assert error["type"] == "document_invalid" and "not a PDF" in error["msg"]
    missing = _changed(body, ("documents",), [{"name": "a.pdf", "reference": "nowhere/a.pdf"}])
    r = app.client.post("/assess", json=missing, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "documents", 0, "reference"]


def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(app: SimpleNamespace) -> None:
    big = b'{"documents": [{"name": "a.pdf", "content_base64": "' + b"A" * MAX_BODY_BYTES + b'"}]}'
    r = app.client.post(
        "/assess", content=big, headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    assert app.client.get("/healthz").status_code == 200


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_a_scanned_document_is_read_by_ocr(app: SimpleNamespace, tmp_path: Path) -> None:
    from riskml.data.disputes.documents import scan_pdf

    docs = app.dispute_set.documents.filter(pl.col("doc_type") == "receipt")
    row = docs.row(0, named=True)
    scanned = tmp_path / "receipt-scan.pdf"
    scan_pdf(app.dispute_set.document_path(row["document"]), scanned, seed=3)
    body = case_request(app.dispute_set, row["dispute_id"], history=False)
    body["documents"] = [
        {
            "name": "receipt-scan.pdf",
            "content_base64": base64.b64encode(scanned.read_bytes()).decode(),
        }
    ]
    r = app.client.post("/assess", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    fields = r.json()["evidence"]["fields"]
    truth = app.dispute_set.document_truth(row["document"])
    assert fields["order_id"]["value"].lstrip("#").lower() == truth.order_id.lstrip("#").lower()
    assert fields["order_id"]["provenance"][0]["document"] == "receipt-scan.pdf"


def test_the_policy_changes_live(app: SimpleNamespace) -> None:
    """A policy where representing is free and refunding dear: every dispute represented."""
    ids = _ids(app, "consumer_dispute", 3)
    generous = {"economics": {"represent_cost": 0.0, "refund_cost": 1e6, "review_cost": 1e7}}
    try:
        _deploy(app.built, policy=generous)
        for dispute_id in ids:
            body = case_request(app.dispute_set, dispute_id, history=False)
            got = app.client.post("/assess", json=body, headers=AUTH).json()
            assert got["decision"] == "represent", got["reasons"]
            assert got["expected_value"]["refund"] < -1e5
    finally:
        _deploy(app.built)
    body = case_request(app.dispute_set, ids[0], history=False)
    got = app.client.post("/assess", json=body, headers=AUTH).json()
    assert got["expected_value"]["refund"] > -1e5


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_an_overloaded_replica_sheds_assessments_with_503_and_retry_after(
    app: SimpleNamespace, tmp_path: Path
) -> None:
    """Admission (serving.admission, as POST /v1/score): with one assessment at work and none
    waiting, requests that arrive meanwhile are answered at once with 503, a JSON problem and
    Retry-After, before their body is read; the one at work finishes, and the slot serves the
    next. (A scanned document keeps the slot busy: OCR takes seconds.)"""
    import concurrent.futures as cf
    import time

    from riskml.data.disputes.documents import scan_pdf

    docs = app.dispute_set.documents.filter(pl.col("doc_type") == "receipt")
    row = docs.row(1, named=True)
    scanned = tmp_path / "receipt-scan.pdf"
    scan_pdf(app.dispute_set.document_path(row["document"]), scanned, seed=5)
    slow = case_request(app.dispute_set, row["dispute_id"], history=False)
    content = base64.b64encode(scanned.read_bytes()).decode()
    slow["documents"] = [{"name": f"scan-{i}.pdf", "content_base64": content} for i in range(3)]
    quick = case_request(app.dispute_set, row["dispute_id"], history=False)
    url = app.client.base_url.copy_with(path=f"/v1/{TIGHT}/assess")
    limits = {"max_in_flight": 1, "max_waiting": 0, "max_wait_ms": 1_000, "retry_after_s": 3}
    try:
        _deploy(app.built, tight=limits)
        with httpx.Client(trust_env=False, timeout=120) as client, cf.ThreadPoolExecutor(4) as ex:
            assert client.post(url, json=quick, headers=AUTH).status_code == 200  # warm
            first = ex.submit(client.post, url, json=slow, headers=AUTH)
            time.sleep(1.0)  # the scanned pages are at work in the one slot
            assert not first.done()
            t = time.perf_counter()
            shed = list(ex.map(lambda _: client.post(url, json=quick, headers=AUTH), range(3)))
            shed_s = time.perf_counter() - t
            assert not first.done(), "the slow assessment ended before the test sent the others"
            assert [r.status_code for r in shed] == [503] * 3, [r.text for r in shed]
            for r in shed:
                assert r.headers["retry-after"] == "3"
                assert r.json()["detail"].startswith("overloaded"), r.text
            assert shed_s < 1.0  # at once, not after waiting for the slot
            done = first.result(timeout=120)
            assert done.status_code == 200, done.text
            assert done.json()["dispute_id"] == row["dispute_id"]
            # the slot is free again: the next one is assessed
            assert client.post(url, json=quick, headers=AUTH).status_code == 200
        # the app as shipped (2 at work, 4 waiting) takes the same burst without a 503
        with cf.ThreadPoolExecutor(4) as ex:
            burst = list(
                ex.map(lambda _: app.client.post("/assess", json=quick, headers=AUTH), range(4))
            )
        assert [r.status_code for r in burst] == [200] * 4
    finally:
        _deploy(app.built)
