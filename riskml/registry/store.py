"""The model registry: MLflow's Model Registry, the one place a bundle is released from.

Locally MLflow runs embedded (SQLite ``<RISKML_HOME>/mlflow.db``, artifacts under
``<RISKML_HOME>/mlartifacts``); on a cluster every pod reaches the same tracking server
(PostgreSQL behind it, artifacts proxied by ``mlflow server --serve-artifacts``), so no release
state lives in a pod.

- :func:`register` logs the verified bundle as a run's artifacts and creates a **model version**
  whose source is that folder, tagged with the bundle's digest (sha256 of its manifest, which
  lists every file's sha256 by path) and version; the version gets the alias ``challenger``.
- :func:`champion` is the version behind the alias ``champion`` (``models:/<name>@champion``).
- :func:`fetch` downloads a version into the model cache and verifies it against the digest the
  registry pinned (a changed byte, file, path or manifest field is refused), once per version.
- :func:`promote` moves ``champion`` only if it still points at the version the gate compared
  against: under a lock (an atomically created registered model), so of two concurrent deploys
  exactly one wins; :func:`restore` moves it back when a rollout fails.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from riskml.settings import get_settings

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Model-version tags riskml writes.
DIGEST_TAG = "riskml.bundle_sha256"
BUNDLE_VERSION_TAG = "riskml.bundle_version"
DECISION_TAG = "riskml.gate_decision"
#: A deploy lock older than this is stale (its holder died) and is broken.
LOCK_TTL_S = 900.0


class RegistryError(RuntimeError):
    """The registry refused an operation (unknown model, champion moved, lock held, ...)."""


@dataclass(frozen=True)
class ModelRef:
    """One registered model version."""

    name: str
    version: str  # the registry's version number
    bundle_version: str  # the bundle manifest's version (timestamp + content digest)
    digest: str  # sha256 of the bundle's manifest.json
    run_id: str | None
    source: str

    @property
    def model_uri(self) -> str:
        """The pinned URI (``models:/<name>/<version>``)."""
        return f"models:/{self.name}/{self.version}"

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "model_uri": self.model_uri}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ModelRef:
        """The inverse of :meth:`record` (extra keys ignored)."""
        return cls(**{k: record[k] for k in cls.__dataclass_fields__})


def client() -> Any:
    """An ``MlflowClient`` on the configured tracking and registry URIs."""
    import mlflow

    from riskml.training.tracking import configure_mlflow

    tracking = configure_mlflow()
    return mlflow.MlflowClient(tracking_uri=tracking, registry_uri=get_settings().registry_uri)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def _ref(mv: Any) -> ModelRef:
    tags = dict(mv.tags or {})
    if DIGEST_TAG not in tags:
        raise RegistryError(
            f"model version {mv.name}/{mv.version} has no {DIGEST_TAG} tag: not registered by "
            "riskml, refusing to serve it"
        )
    return ModelRef(
        name=str(mv.name),
        version=str(mv.version),
        bundle_version=str(tags.get(BUNDLE_VERSION_TAG, "")),
        digest=str(tags[DIGEST_TAG]),
        run_id=mv.run_id,
        source=str(mv.source),
    )


def register(
    bundle_dir: Path,
    *,
    metrics: Mapping[str, Any] | None = None,
    decision: str | None = None,
    experiment: str = "riskml-pipeline",
    alias: str | None = CHALLENGER,
) -> ModelRef:
    """Log the verified bundle to a run and register it as a new version of its model."""
    from riskml.models.bundle import bundle_digest, verify_bundle
    from riskml.training.tracking import log_training_run

    manifest = verify_bundle(bundle_dir)
    name, bundle_version = str(manifest["name"]), str(manifest["version"])
    digest = bundle_digest(bundle_dir)
    run_id = log_training_run(
        experiment,
        params={"bundle": bundle_version, "decision": decision or ""},
        metrics=dict(metrics or {}),
        bundle_path=Path(bundle_dir),
    )
    c = client()
    try:
        c.create_registered_model(name, description="riskml model bundles (riskml.registry)")
    except Exception as exc:
        if _code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{c.get_run(run_id).info.artifact_uri}/bundle"
    tags = {DIGEST_TAG: digest, BUNDLE_VERSION_TAG: bundle_version}
    if decision:
        tags[DECISION_TAG] = decision
    mv = c.create_model_version(name, source, run_id=run_id, tags=tags)
    if alias:
        c.set_registered_model_alias(name, alias, mv.version)
    return _ref(mv)


def get(name: str, version_or_alias: str) -> ModelRef | None:
    """The version (a number) or the alias' version; None when it does not exist."""
    c = client()
    try:
        if version_or_alias.isdigit():
            mv = c.get_model_version(name, version_or_alias)
        else:
            mv = c.get_model_version_by_alias(name, version_or_alias)
    except Exception as exc:
        if _code(exc) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return _ref(mv)


def champion(name: str = "fraud") -> ModelRef | None:
    """The version behind ``models:/<name>@champion``; None before the first deploy."""
    return get(name, CHAMPION)


def parse_model_uri(uri: str) -> tuple[str, str]:
    """``models:/<name>/<version>`` or ``models:/<name>@<alias>`` -> (name, version or alias)."""
    if not uri.startswith("models:/"):
        raise RegistryError(f"{uri!r} is not a models:/ URI")
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        return name, alias
    name, _, version = rest.rpartition("/")
    if not name or not version.isdigit():
        raise RegistryError(f"{uri!r}: expected models:/<name>/<version> or models:/<name>@<alias>")
    return name, version


def resolve(uri: str) -> ModelRef:
    """The model version a ``models:/`` URI names (an alias resolved now, once)."""
    name, which = parse_model_uri(uri)
    ref = get(name, which)
    if ref is None:
        raise RegistryError(f"{uri}: no such model version in the registry")
    return ref


def fetch(
    model: ModelRef | str, *, digest: str | None = None, cache_dir: Path | None = None
) -> Path:
    """A verified local copy of the version (``models:/`` URI or :class:`ModelRef`).

    Downloaded once into ``<cache>/<name>/<version>`` (default: the settings' model cache) and
    verified: every file against the manifest and the manifest against the digest the registry
    pinned. ``digest``, when given (a serve config pins it), must equal the registry's too."""
    import mlflow

    from riskml.models.bundle import BundleIntegrityError, verify_bundle

    ref = resolve(model) if isinstance(model, str) else model
    if digest is not None and digest != ref.digest:
        raise BundleIntegrityError(
            f"{ref.model_uri}: the registry pins digest {ref.digest[:12]}…, the caller expects "
            f"{digest[:12]}…"
        )
    root = Path(cache_dir or get_settings().model_cache_dir) / ref.name
    target = root / ref.version
    if target.is_dir():
        verify_bundle(target, digest=ref.digest)
        return target
    root.mkdir(parents=True, exist_ok=True)
    client()  # configures the tracking URI the download resolves mlflow-artifacts:/ against
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{ref.version}.") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.source, dst_path=tmp))
        verify_bundle(local, digest=ref.digest)
        try:
            local.replace(target)
        except OSError:  # another process of this pod won the race: use (and check) its copy
            if not target.is_dir():
                raise
    verify_bundle(target, digest=ref.digest)
    return target


#: Tries at taking the deploy lock (a holder may release it between our create and our read).
LOCK_ATTEMPTS = 5


@contextmanager
def _deploy_lock(name: str, ttl_s: float = LOCK_TTL_S) -> Iterator[None]:
    """Exclusive across every process that reaches the registry: creating a registered model is
    atomic (a unique name in the backing database), so the lock is one named
    ``<name>.deploy-lock``. A lock older than ``ttl_s`` belonged to a deploy that died."""
    c = client()
    lock = f"{name}.deploy-lock"
    holder = json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "at": time.time()})
    broken = False
    for _ in range(LOCK_ATTEMPTS):
        try:
            c.create_registered_model(lock, description=holder)
            break
        except Exception as exc:
            if _code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
            try:
                held = json.loads(c.get_registered_model(lock).description or "{}")
            except (ValueError, TypeError):
                held = {}
            except Exception as gone:
                if _code(gone) == "RESOURCE_DOES_NOT_EXIST":
                    continue  # released between our create and our read: try again
                raise
            age = time.time() - float(held.get("at", 0.0))
            if not broken and age > ttl_s:
                broken = True
                c.delete_registered_model(lock)
                continue
            raise RegistryError(
                f"another deploy of {name!r} holds the registry lock ({held or 'unknown holder'}, "
                f"{age:.0f} s old); try again when it has finished"
            ) from None
    else:
        raise RegistryError(
            f"the registry lock of {name!r} changed hands {LOCK_ATTEMPTS} times while taking it; "
            "try again"
        )
    try:
        yield
    finally:
        c.delete_registered_model(lock)


def promote(ref: ModelRef, *, expected: str | None) -> ModelRef | None:
    """Make ``ref`` the champion if the champion is still ``expected`` (the version the gate
    compared against; None: there was none). Returns the previous champion. Raises
    :class:`RegistryError` when the champion moved since the gate (another run deployed)."""
    c = client()
    with _deploy_lock(ref.name):
        current = champion(ref.name)
        now = current.version if current else None
        if now != expected:
            raise RegistryError(
                f"the champion of {ref.name!r} moved since the gate compared against it "
                f"(gate: {expected or 'none'}, now: {now}); this challenger was not deployed — "
                "rerun the gate against the new champion"
            )
        c.set_registered_model_alias(ref.name, CHAMPION, ref.version)
        c.set_model_version_tag(
            ref.name,
            ref.version,
            "riskml.promoted_at",
            dt.datetime.now(dt.UTC).isoformat(),
        )
    return current


def restore(ref: ModelRef, previous: ModelRef | None) -> None:
    """Undo :func:`promote` of ``ref`` (a failed rollout): the champion goes back to
    ``previous`` (or no champion), unless another deploy moved it meanwhile."""
    c = client()
    with _deploy_lock(ref.name):
        current = champion(ref.name)
        if current is None or current.version != ref.version:
            return
        if previous is None:
            c.delete_registered_model_alias(ref.name, CHAMPION)
        else:
            c.set_registered_model_alias(ref.name, CHAMPION, previous.version)


def clear_cache(cache_dir: Path | None = None) -> None:
    """Remove the downloaded copies (they are re-fetched and re-verified on next use)."""
    shutil.rmtree(Path(cache_dir or get_settings().model_cache_dir), ignore_errors=True)
