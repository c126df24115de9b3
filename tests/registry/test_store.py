"""The MLflow Model Registry as riskml uses it: digest-tagged versions, aliases, verified
downloads, compare-and-set promotion under a lock — on the embedded SQLite store under
RISKML_HOME, and (``server``) on a tracking server over PostgreSQL with proxied artifacts, as a
cluster runs it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from riskml.models.bundle import BundleIntegrityError, bundle_digest, save_bundle
from riskml.registry import store
from riskml.registry.store import RegistryError
from riskml.settings import get_settings


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where the registry lives: ``embedded`` SQLite, or the session's ``mlflow server``."""
    if request.param == "server":
        server = request.getfixturevalue("mlflow_server")
        monkeypatch.setenv("RISKML_MLFLOW_TRACKING_URI", server.url)
        get_settings.cache_clear()
    return str(request.param)


@pytest.fixture
def name(backend: str) -> str:
    """The model's name: the server outlives a test, so each test registers a model of its own."""
    return "fraud" if backend == "embedded" else f"fraud_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def bundles(artifacts: Any, tmp_path: Path, name: str) -> list[Path]:
    """Two distinct bundles of the same model."""
    return [save_bundle(artifacts, tmp_path / "out", name=name, version=f"v{i}") for i in (1, 2)]


def _source_dir(ref: store.ModelRef, request: pytest.FixtureRequest) -> Path:
    """Where the registry keeps the version's files (to tamper with them)."""
    if ref.source.startswith("mlflow-artifacts:/"):
        server = request.getfixturevalue("mlflow_server")
        return Path(server.artifacts) / ref.source.removeprefix("mlflow-artifacts:/")
    return Path(ref.source.removeprefix("file://"))


def test_register_pins_the_digest_and_fetch_verifies_a_cached_copy(
    bundles: list[Path], riskml_home: Path, backend: str, name: str
) -> None:
    ref = store.register(bundles[0], metrics={"ap": 0.5}, decision="deploy")
    assert (ref.name, ref.version, ref.bundle_version) == (name, "1", "v1")
    assert ref.digest == bundle_digest(bundles[0]) and len(ref.digest) == 64
    assert store.get(name, "challenger") == ref
    assert store.champion(name) is None  # registering is not deploying
    assert store.resolve(f"models:/{name}/1") == ref == store.resolve(f"models:/{name}@challenger")
    local = store.fetch(f"models:/{name}/1")
    assert local == riskml_home.resolve() / "model-cache" / name / "1"
    assert bundle_digest(local) == ref.digest
    assert store.fetch(ref) == local  # cached, re-verified
    if backend == "embedded":  # in the embedded store's artifacts, not in the output folder
        assert str(riskml_home.resolve() / "mlartifacts") in ref.source
    else:  # proxied by the server: a pod needs only the tracking URI
        assert ref.source.startswith("mlflow-artifacts:/")
        assert not (riskml_home / "mlflow.db").exists()


def test_a_pinned_digest_that_differs_is_refused(bundles: list[Path]) -> None:
    ref = store.register(bundles[0])
    with pytest.raises(BundleIntegrityError, match="registry pins digest"):
        store.fetch(ref.model_uri, digest="0" * 64)


@pytest.mark.parametrize("where", ["model file", "manifest field"])
def test_a_tampered_artifact_in_the_registry_is_refused(
    bundles: list[Path], where: str, request: pytest.FixtureRequest
) -> None:
    ref = store.register(bundles[0])
    source = _source_dir(ref, request)
    if where == "model file":
        (source / "models" / "xgb.ubj").write_bytes(b"\x00" * 16)
        match = "sha256 mismatch"
    else:  # a manifest edit that keeps every file digest: only the pinned digest catches it
        manifest = json.loads((source / "manifest.json").read_text())
        manifest["version"] = "v999"
        (source / "manifest.json").write_text(json.dumps(manifest))
        match = "is not the pinned"
    with pytest.raises(BundleIntegrityError, match=match):
        store.fetch(ref)
    assert not (get_settings().model_cache_dir / ref.name / ref.version).exists()


def test_promote_is_compare_and_set_and_restore_undoes_it(bundles: list[Path], name: str) -> None:
    v1 = store.register(bundles[0])
    assert store.promote(v1, expected=None) is None
    assert store.champion(name) == v1
    v2 = store.register(bundles[1])
    with pytest.raises(RegistryError, match=r"moved since the gate .*gate: none, now: 1"):
        store.promote(v2, expected=None)  # a gate that saw no champion is stale now
    assert store.champion(name) == v1
    assert store.promote(v2, expected="1") == v1
    assert store.champion(name) == v2
    store.restore(v2, v1)  # its rollout failed
    assert store.champion(name) == v1
    store.restore(v1, None)
    assert store.champion(name) is None


def test_two_concurrent_deploys_exactly_one_wins(bundles: list[Path], name: str) -> None:
    v1, v2 = store.register(bundles[0]), store.register(bundles[1])
    start = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def deploy(ref: store.ModelRef) -> None:
        start.wait()
        try:
            store.promote(ref, expected=None)  # both gates saw no champion
            outcomes[ref.version] = "won"
        except RegistryError as exc:
            outcomes[ref.version] = str(exc)

    threads = [threading.Thread(target=deploy, args=(r,)) for r in (v1, v2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [v for v, o in outcomes.items() if o == "won"]
    assert len(outcomes) == 2 and len(winners) == 1, outcomes
    loser = next(o for o in outcomes.values() if o != "won")
    assert "moved since the gate" in loser or "holds the registry lock" in loser
    assert store.champion(name).version == winners[0]  # type: ignore[union-attr]
    assert _no_lock(name)


def _no_lock(name: str) -> bool:
    names = {m.name for m in store.client().search_registered_models()}
    return f"{name}.deploy-lock" not in names


def test_a_stale_deploy_lock_is_broken_a_live_one_refuses(bundles: list[Path], name: str) -> None:
    v1 = store.register(bundles[0])
    c = store.client()
    c.create_registered_model(
        f"{name}.deploy-lock", description=json.dumps({"pid": 1, "at": time.time()})
    )
    with pytest.raises(RegistryError, match="holds the registry lock"):
        store.promote(v1, expected=None)
    assert store.champion(name) is None
    c.update_registered_model(
        f"{name}.deploy-lock", description=json.dumps({"pid": 1, "at": time.time() - 3600})
    )
    store.promote(v1, expected=None)  # the holder died an hour ago
    assert store.champion(name) == v1 and _no_lock(name)


def test_bad_model_uris_are_clear_errors() -> None:
    for bad in ("runs:/x/bundle", "models:/fraud", "models:/fraud/latest"):
        with pytest.raises(RegistryError, match="models:/"):
            store.parse_model_uri(bad)
    with pytest.raises(RegistryError, match="no such model version"):
        store.resolve("models:/fraud/41")


def test_a_lock_released_between_create_and_read_is_taken_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under load a loser's read of the holder can come after the holder released the lock:
    the loser tries again and takes it, instead of failing with MLflow's not-found."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST

    class Registry:
        def __init__(self) -> None:
            self.creates, self.deletes = 0, 0

        def create_registered_model(self, name: str, description: str) -> None:
            self.creates += 1
            if self.creates == 1:  # the other deploy holds it...
                raise MlflowException("exists", error_code=RESOURCE_ALREADY_EXISTS)

        def get_registered_model(self, name: str) -> Any:  # ...and released it meanwhile
            raise MlflowException("gone", error_code=RESOURCE_DOES_NOT_EXIST)

        def delete_registered_model(self, name: str) -> None:
            self.deletes += 1

    fake = Registry()
    monkeypatch.setattr(store, "client", lambda: fake)
    with store._deploy_lock("fraud"):
        assert fake.creates == 2
    assert fake.deletes == 1  # released once, by us
