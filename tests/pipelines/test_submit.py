"""``python -m pipelines submit``: the real kfp.Client against a fake KFP API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipelines.fake_kfp import TOKEN, FakeKfp

pytestmark = pytest.mark.kfp


@pytest.fixture
def fake_kfp() -> Iterator[FakeKfp]:
    with FakeKfp() as server:
        yield server


def test_submit_a_run(fake_kfp: FakeKfp) -> None:
    from pipelines.cli import submit

    out = submit(
        fake_kfp.host,
        "training",
        arguments={"size": "demo"},
        token=TOKEN,
        service_account="riskml-pipeline-runner",
    )
    assert out == {"run_id": "run-1", "pipeline": "riskml-training-cluster", "host": fake_kfp.host}
    runs = [r for r in fake_kfp.requests if r["path"] == "/apis/v2beta1/runs"]
    assert len(runs) == 1
    body = runs[0]["body"]
    assert body["runtime_config"]["parameters"] == {"size": "demo"}
    assert body["service_account"] == "riskml-pipeline-runner"
    spec = body["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "riskml-training-cluster"
    assert "train-sequence" in spec["root"]["dag"]["tasks"]
    # the GPU placement of the cluster flavour travels as the platform spec
    platform = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    seq = platform["deploymentSpec"]["executors"]["exec-train-sequence"]
    assert seq["nodeSelector"]["labels"] == {"karpenter.sh/nodepool": "riskml-gpu"}
    assert body["experiment_id"] == "exp-1"
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in fake_kfp.requests)


def test_submit_a_recurring_run(fake_kfp: FakeKfp) -> None:
    from pipelines.cli import submit

    out = submit(fake_kfp.host, "retraining", recurring="0 3 * * *", token=TOKEN)
    assert out["recurring_run_id"] == "rr-1" and out["cron"] == "0 0 3 * * *"
    (req,) = [r for r in fake_kfp.requests if r["path"] == "/apis/v2beta1/recurringruns"]
    body = req["body"]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == (
        "riskml-retraining-cluster"
    )


def test_submit_rejects_bad_input_before_calling_the_api(fake_kfp: FakeKfp) -> None:
    from pipelines.cli import submit

    with pytest.raises(ValueError, match="5 or 6 fields"):
        submit(fake_kfp.host, "training", recurring="every day", token=TOKEN)
    with pytest.raises(ValueError, match="unknown pipeline 'scoring'"):
        submit(fake_kfp.host, "scoring", token=TOKEN)
    assert fake_kfp.requests == []
