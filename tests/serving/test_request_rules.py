"""The decision API's request models take the id / channel / currency / merchant-category rules
from ``riskml.data.schema`` (the importer's and the dataset reader's rules): a bad value is a 422
naming the field, on ``/v1/score`` and ``/v1/score/batch``. No Ray runs: the Ingress's FastAPI
app is served by a TestClient with no replica behind it, which is enough for requests that
validation turns away before any handler runs."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from riskml.data.schema import (
    CURRENCY_RULE,
    ID_RULE,
    VALUE_RULES,
    Channel,
    Currency,
    EntityId,
    MerchantCategory,
)
from riskml.streaming.events import Transaction
from serving.schemas import BatchRequest, TransactionRequest
from tests.support.value_cases import BAD, GOOD, case_id, cases, request


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The real decision app (routes, models, 422 handler), with no replica behind it."""
    from ray import serve

    from serving.deployments import api

    replica = SimpleNamespace(
        servable_object=None, _deployment_config=SimpleNamespace(max_ongoing_requests=100)
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serve, "get_replica_context", lambda: replica)
        with TestClient(api, raise_server_exceptions=False) as test_client:
            yield test_client


@pytest.mark.parametrize(("column", "value"), cases(BAD), ids=case_id)
def test_a_bad_value_is_a_422_naming_the_field(client: TestClient, column: str, value: str) -> None:
    r = client.post("/v1/score", json=request(**{column: value}))
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["body", column]]

    second = request(tx_id="ok-2")
    second[column] = value
    r = client.post("/v1/score/batch", json={"transactions": [request(tx_id="ok-1"), second]})
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "transactions", 1, column]]


@pytest.mark.parametrize(("column", "value"), cases(GOOD), ids=case_id)
def test_a_good_value_passes_the_request_models(column: str, value: str) -> None:
    assert getattr(TransactionRequest.model_validate(request(**{column: value})), column) == value
    second = request(tx_id="ok-2")
    second[column] = value
    batch = BatchRequest.model_validate({"transactions": [request(tx_id="ok-1"), second]})
    assert getattr(batch.transactions[1], column) == value


def test_the_models_use_the_schema_types() -> None:
    """The request model and the event stream's transaction declare the schema's types (one
    source), and their JSON schema carries the rule (what OpenAPI clients see)."""
    for model in (TransactionRequest, Transaction):
        fields = model.model_fields
        for name in ("tx_id", "customer_id", "terminal_id", "device_id"):
            assert fields[name].metadata == EntityId.__metadata__[0].metadata, name  # type: ignore[attr-defined]
        assert fields["currency"].metadata == Currency.__metadata__[0].metadata  # type: ignore[attr-defined]
        assert fields["merchant_category"].metadata == MerchantCategory.__metadata__[0].metadata  # type: ignore[attr-defined]
        assert fields["channel"].annotation == Channel
    props = TransactionRequest.model_json_schema()["properties"]
    assert props["tx_id"]["pattern"] == ID_RULE.pattern
    assert (props["tx_id"]["minLength"], props["tx_id"]["maxLength"]) == (1, 128)
    assert props["currency"]["pattern"] == CURRENCY_RULE.pattern
    assert props["currency"]["minLength"] == props["currency"]["maxLength"] == 3
    assert tuple(props["channel"]["enum"]) == VALUE_RULES["channel"].values


def test_a_number_is_not_an_id() -> None:
    with pytest.raises(ValidationError, match="customer_id"):
        TransactionRequest.model_validate(request(customer_id=42))
