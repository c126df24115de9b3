"""``riskml serve start|status|stop|replay``: argument errors (fast, in process), and the whole
lifecycle of a real model bundle on the configured Feast online store, on a Ray head the CLI
launches itself (slow; each command its own ``python -m riskml`` process, as users run it, so no
Ray driver of another test module can be in its way)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from typer.testing import CliRunner

from riskml.cli import app
from tests.serving.helpers import free_port
from tests.support.services import AuthRedis
from tests.support.traffic import live_transactions
from tests.support.world import World

runner = CliRunner()


def cli(*args: str) -> SimpleNamespace:
    """``python -m riskml ARGS`` in a process of its own (``RISKML_HOME`` from the fixture)."""
    done = subprocess.run(
        [sys.executable, "-m", "riskml", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return SimpleNamespace(
        exit_code=done.returncode, output=done.stdout, log=done.stdout + done.stderr
    )


def test_start_needs_exactly_one_source_of_config() -> None:
    result = runner.invoke(app, ["serve", "start"])
    assert result.exit_code == 2
    assert "give exactly one of --config FILE, --bundle DIR, --model URI" in " ".join(
        result.output.replace("│", " ").split()
    )


def test_status_and_stop_without_a_service(riskml_home: Path) -> None:
    assert runner.invoke(app, ["serve", "status"]).exit_code == 1
    result = runner.invoke(app, ["serve", "stop"])
    assert result.exit_code == 0 and "nothing to stop" in result.output


def test_replay_refuses_non_loopback_targets(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    path.write_text(json.dumps(live_transactions(1, seed=1, prefix="x")[0]) + "\n")
    result = runner.invoke(
        app,
        [
            "serve",
            "replay",
            "--transactions",
            str(path),
            "--rps",
            "5",
            "--url",
            "http://10.1.2.3:8000",
        ],
    )
    assert result.exit_code == 2 and "loopback" in result.output


@pytest.mark.integration
def test_start_refuses_rejected_redis_credentials_before_starting_ray(
    riskml_home: Path,
    auth_redis: AuthRedis,
    registry_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The staging/prod store shape with a wrong password: ``serve start`` says so and exits 1
    before a Ray head or Serve starts (a minute of start-up that ended the same way before)."""
    import serving.local
    from riskml.settings import REPO_ROOT, get_settings

    def no_head(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve start went on to start Ray and Serve")

    monkeypatch.setattr(serving.local, "start", no_head)
    monkeypatch.setenv(
        "RISKML_FEAST_CONFIG", str(REPO_ROOT / "feature_repo" / "feature_store.redis.yaml")
    )
    monkeypatch.setenv("FEAST_REGISTRY_PATH", registry_db)
    monkeypatch.setenv("REDIS_ADDRESS", auth_redis.address)
    monkeypatch.setenv("RISKML_REDIS_PASSWORD", "not-the-password")
    get_settings.cache_clear()
    result = runner.invoke(app, ["serve", "start", "--model", "models:/fraud@champion"])
    assert result.exit_code == 1, result.output
    assert f"authentication failed for Redis at {auth_redis.address}" in result.output
    assert not (riskml_home / "serve" / "state.json").exists()
    # a store that cannot be reached now is no reason to refuse (it may come back): the start
    # goes on to Ray and Serve
    monkeypatch.setenv("REDIS_ADDRESS", f"127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    result = runner.invoke(app, ["serve", "start", "--model", "models:/fraud@champion"])
    assert isinstance(result.exception, AssertionError), result.output
    assert "went on to start Ray" in str(result.exception)


def default_store(world: World, home: Path) -> None:
    """The world's features as the store ``riskml serve start --bundle`` reads: the configured
    one (``RISKML_HOME``, default project, SQLite), materialised as of the replay day."""
    from riskml.features.store import StoreConfig, apply, materialize

    shutil.copytree(world.features_dir, home / "features")
    apply(StoreConfig())
    materialize(world.replay_day, config=StoreConfig())


@pytest.mark.serve
@pytest.mark.integration
@pytest.mark.ray
@pytest.mark.slow
def test_start_status_replay_stop_on_a_ray_head_it_launches(
    riskml_home: Path, tmp_path: Path, world: World
) -> None:
    default_store(world, riskml_home)
    requests = world.requests(world.first_per_customer())
    port = free_port()
    started = cli(
        "serve", "start", "--bundle", str(world.bundle), "--port", str(port), "--num-cpus", "4"
    )
    state_path = riskml_home / "serve" / "state.json"
    try:
        assert started.exit_code == 0, started.log
        state = json.loads(state_path.read_text())
        assert state["url"] == f"http://127.0.0.1:{port}" and state["head_pid"]
        status = cli("serve", "status", "--json")
        assert status.exit_code == 0, status.log
        info = json.loads(status.output)
        assert info["healthz"] == 200 and info["apps"]["riskml"]["status"] == "RUNNING"
        assert set(info["apps"]["riskml"]["deployments"]) == {"Ingress"}  # colocated
        # Serve direct ingress (riskml's local Ray default): the Ingress replica's own port
        # answers, and it is what `serve replay` targets by default
        (direct,) = state["direct_urls"]
        assert info["direct_urls"] == [direct] and not direct.endswith(f":{port}")
        decided = httpx.post(f"{direct}/v1/score", json=requests[0], timeout=30, trust_env=False)
        assert decided.status_code == 200, decided.text
        body = decided.json()
        assert (body["decision_source"], body["model_version"]) == ("ensemble", world.bundle.name)

        path = tmp_path / "tx.jsonl"
        path.write_text("".join(json.dumps(t) + "\n" for t in requests[1:21]))
        replayed = cli("serve", "replay", "--transactions", str(path), "--rps", "20")
        assert replayed.exit_code == 0, replayed.log
        assert "decision mix" in replayed.output and "errors" in replayed.output
    finally:
        stopped = cli("serve", "stop")
    assert stopped.exit_code == 0, stopped.log
    assert not state_path.exists()
    assert _live_members(state["head_pid"]) == []  # every process of the launched head is gone


def _live_members(pgid: int) -> list[int]:
    """Non-zombie processes in a process group (a zombie is gone, only not reaped yet)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return out
