"""Process-wide settings: one pydantic-settings object, env prefix ``RISKML_``, created lazily.

Nothing here touches the file system at import time. Call :func:`get_settings` where a value is
needed; tests that change the environment call ``get_settings.cache_clear()``.

The environment contract:

- every field ``<name>`` is read from ``RISKML_<NAME>`` (case-insensitive, as pydantic-settings
  reads it);
- a secret field (``SecretStr``: :data:`SECRET_FIELDS`) is read from ``RISKML_<NAME>`` or from
  the file ``RISKML_<NAME>_FILE`` names (a mounted Kubernetes Secret: the file's content is the
  value, one trailing newline stripped); both at once is an error. Secrets print as
  ``**********`` and are never logged;
- any other ``RISKML_*`` variable is an error that names it and the closest valid names
  (pydantic-settings' ``extra="forbid"`` does not do this: it only checks dotenv files, never
  the process environment — so a misspelt password variable would otherwise be silently
  dropped). Values are never part of the message.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

#: Repository root when running from a checkout (``riskml/`` lives directly below it).
REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "RISKML_"
#: ``RISKML_<SECRET>_FILE``: a file whose content is the secret's value.
FILE_SUFFIX = "_FILE"


class SettingsError(ValueError):
    """The environment does not describe valid settings (unknown variable, unreadable secret)."""


def _shared_dir(*parts: str) -> Path | None:
    """``../shared/<parts>`` next to the checkout, when present (the workplace layout)."""
    candidate = REPO_ROOT.parent.joinpath("shared", *parts)
    return candidate if candidate.exists() else None


class Settings(BaseSettings):
    """All knobs of riskml. Each field can be set as ``RISKML_<FIELD>`` in the environment;
    secret fields also as ``RISKML_<FIELD>_FILE`` (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", env_file=None)

    # -- workspace -------------------------------------------------------------------------
    home: Path = Field(
        default=Path(".riskml"),
        description="Working directory for datasets, features, models, MLflow runs and reports.",
    )
    seed: int = Field(default=7, description="Default random seed.")
    storage_uri: str | None = Field(
        default=None,
        description="fsspec URI (file://, s3://, gs://) for Ray checkpoints and Tune state that "
        "every node and a restarted job reach; default: <home>/ray-storage.",
    )

    # -- feature store ---------------------------------------------------------------------
    feast_config: Path | None = Field(
        default=None,
        description="The environment's Feast feature_store.yaml; when set every process builds "
        "its Feast config from it (${VAR}s expanded from the environment). Default: SQLite + "
        "file registry under <home>/feast, built from the settings below.",
    )
    feature_repo: Path = Field(
        default=REPO_ROOT / "feature_repo", description="Feast repository (feature_store.yaml)."
    )
    online_store: Literal["sqlite", "redis"] = Field(
        default="sqlite", description="Feast online store: embedded SQLite or Redis."
    )
    redis_url: str = Field(
        default="localhost:6379",
        description="Redis address for the online store: host:port[,db=N,...] or redis[s]://.",
    )
    redis_password: SecretStr | None = Field(
        default=None, description="Redis AUTH password (secret: also RISKML_REDIS_PASSWORD_FILE)."
    )
    redis_username: str | None = Field(default=None, description="Redis ACL user (AUTH).")
    redis_ssl: bool = Field(default=False, description="Connect to Redis over TLS.")
    redis_connect_timeout_s: float = Field(
        default=2.0, gt=0, description="Seconds to open a Redis connection before giving up."
    )
    redis_read_timeout_s: float = Field(
        default=1.0, gt=0, description="Seconds to wait for a Redis reply (socket timeout)."
    )

    # -- event stream (NATS JetStream) ------------------------------------------------------
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="NATS server(s) with JetStream, comma-separated (nats:// or tls://).",
    )
    nats_token: SecretStr | None = Field(
        default=None, description="NATS auth token (secret: also RISKML_NATS_TOKEN_FILE)."
    )
    stream_name: str = Field(
        default="riskml-events",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="JetStream stream of the events (subjects riskml.events.<kind>).",
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Copies of the stream JetStream keeps (3 on a three-server cluster: losing "
        "one server loses nothing). A consumer's ensure_stream raises a stream's replicas to "
        "this, never lowers them.",
    )
    stream_max_skew_s: float = Field(
        default=300.0,
        gt=0,
        description="An event this many seconds or more in the future is refused (422 at the "
        "API, dead-lettered by the processor).",
    )
    stream_lateness_s: float = Field(
        default=3600.0,
        ge=0,
        description="How late (event time behind the newest seen for its key) an event may be "
        "and still fold in order.",
    )

    # -- decision API ------------------------------------------------------------------------
    api_keys: SecretStr | None = Field(
        default=None,
        description="Bearer keys of the decision API, comma-separated (two allow rotation); "
        "unset: the API is open (secret: also RISKML_API_KEYS_FILE).",
    )
    admin_api_keys: SecretStr | None = Field(
        default=None,
        description="Bearer keys that also see the model's internals on GET /v1/model, "
        "comma-separated (secret: also RISKML_ADMIN_API_KEYS_FILE).",
    )
    require_api_keys: bool = Field(
        default=False,
        description="Refuse to start the decision API without API keys (set on the cluster).",
    )

    # -- LLM evidence extraction (disputes; riskml.features.disputes.llm) ---------------------
    llm_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible API root of the LLM extractor, e.g. "
        "http://localhost:8000/v1 (vLLM, llama.cpp server, Ollama) or "
        "https://api.openai.com/v1; unset: rules only.",
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key of the LLM API (secret: also RISKML_LLM_API_KEY_FILE); local "
        "servers usually accept any.",
    )
    llm_model: str | None = Field(default=None, description="Model name the LLM server serves.")
    llm_timeout_s: float = Field(default=60.0, gt=0, description="Per-request LLM timeout (s).")
    llm_max_retries: int = Field(
        default=2, ge=0, le=10, description="LLM transport retries (timeouts, 429, 5xx)."
    )
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    llm_max_output_tokens: int = Field(default=2048, gt=0)
    llm_max_input_chars: int = Field(
        default=60_000, gt=0, description="Longest document text sent to the LLM; longer is cut."
    )

    # -- Ray ---------------------------------------------------------------------------------
    ray_mode: Literal["local", "jobs", "rayjob"] = Field(
        default="local",
        description="How Ray-backed work runs: local Ray, Ray Jobs API, KubeRay RayJob.",
    )
    ray_address: str | None = Field(
        default=None, description="Ray address (local mode) or dashboard URL (jobs mode)."
    )

    # -- tracking / model registry -----------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI (a tracking server on a cluster); default: embedded "
        "SQLite store sqlite:///<home>/mlflow.db.",
    )
    mlflow_registry_uri: str | None = Field(
        default=None, description="MLflow model registry URI; default: the tracking URI."
    )

    # -- offline validation data (CRDs, schemas) -------------------------------------------
    crd_dir: Path | None = Field(
        default_factory=lambda: _shared_dir("crds"),
        description="CRD YAMLs (KubeRay, Karpenter) for offline manifest validation.",
    )
    schema_dir: Path | None = Field(
        default_factory=lambda: _shared_dir("schemas"),
        description="Directory with JSON schemas (skaffold) for offline validation.",
    )

    @field_validator(
        "redis_password",
        "redis_username",
        "nats_token",
        "feast_config",
        "api_keys",
        "admin_api_keys",
        "llm_base_url",
        "llm_api_key",
        "llm_model",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty variable (e.g. an optional Secret key that is absent) means "not set"."""
        if isinstance(value, str) and value == "":
            return None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment is checked first; secret files rank below the variables themselves
        return (
            init_settings,
            _EnvironmentCheck(settings_cls),
            env_settings,
            _SecretFiles(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    # -- derived -----------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def model_cache_dir(self) -> Path:
        """Where serving downloads registry artifacts (a replica's scratch)."""
        return self.home / "model-cache"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the setting, else the embedded SQLite store under home."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def registry_uri(self) -> str:
        """MLflow model registry URI: the setting, else the tracking URI."""
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def mlflow_artifacts_uri(self) -> str:
        """Artifact root of the embedded MLflow store (a tracking server proxies its own)."""
        return (self.home / "mlartifacts").resolve().as_uri()

    @property
    def ray_storage_uri(self) -> str:
        """fsspec URI for Ray checkpoints and Tune state: the setting, else under home."""
        return self.storage_uri or (self.home / "ray-storage").resolve().as_uri()


#: Fields whose values are secrets (``SecretStr``): readable from ``RISKML_<NAME>_FILE`` too.
SECRET_FIELDS: tuple[str, ...] = tuple(
    name
    for name, info in Settings.model_fields.items()
    if SecretStr in (info.annotation, *getattr(info.annotation, "__args__", ()))
)


def env_names() -> list[str]:
    """Every environment variable riskml reads (``RISKML_<FIELD>``, ``RISKML_<SECRET>_FILE``)."""
    names = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    names += [f"{ENV_PREFIX}{name.upper()}{FILE_SUFFIX}" for name in SECRET_FIELDS]
    return sorted(names)


def check_environment(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Raise :class:`SettingsError` naming every ``RISKML_*`` variable that is no setting."""
    environ = os.environ if environ is None else environ
    valid = env_names()
    unknown = sorted(
        k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in valid
    )
    if not unknown:
        return
    lines = []
    for name in unknown:
        # compared without the common prefix, which would make every name look close
        suffixes = [v.removeprefix(ENV_PREFIX) for v in valid]
        close = [
            ENV_PREFIX + s
            for s in difflib.get_close_matches(
                name.upper().removeprefix(ENV_PREFIX), suffixes, n=3, cutoff=0.6
            )
        ]
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        lines.append(f"  {name}{hint}")
    raise SettingsError(
        f"unknown riskml environment variable{'s' if len(unknown) > 1 else ''}:\n"
        + "\n".join(lines)
        + f"\nriskml reads only these {ENV_PREFIX}* variables: {', '.join(valid)}"
    )


def _secret_file(name: str, environ: dict[str, str] | os._Environ[str]) -> str | None:
    """The value of secret field ``name`` from the file ``RISKML_<NAME>_FILE`` names, if set."""
    var = f"{ENV_PREFIX}{name.upper()}{FILE_SUFFIX}"
    plain = f"{ENV_PREFIX}{name.upper()}"
    found = {k.upper(): v for k, v in environ.items() if k.upper() in (var, plain)}
    path = found.get(var)
    if not path:
        return None
    if found.get(plain):
        raise SettingsError(f"both {plain} and {var} are set: set one of them")
    try:
        value = Path(path).read_bytes().decode("utf-8")  # bytes as they are: no newline folding
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise SettingsError(f"{var}={path}: cannot read the secret file ({why})") from None
    if value.endswith("\n"):
        value = value[:-2] if value.endswith("\r\n") else value[:-1]
    return value


class _EnvironmentCheck(PydanticBaseSettingsSource):
    """Contributes nothing; refuses ``RISKML_*`` variables that are no setting."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        check_environment()
        return {}


class _SecretFiles(PydanticBaseSettingsSource):
    """Secret fields from ``RISKML_<NAME>_FILE`` (mounted Secrets)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _secret_file(field_name, os.environ), field_name, False

    def __call__(self) -> dict[str, Any]:
        out = {}
        for name in SECRET_FIELDS:
            value = _secret_file(name, os.environ)
            if value is not None:
                out[name] = value
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()


@contextmanager
def home_at(path: Path | str) -> Iterator[Path]:
    """``RISKML_HOME`` set to ``path`` (made absolute: subprocesses inherit it) while active,
    the settings re-read on entry and on exit; the previous value (or none) restored."""
    home = Path(path).resolve()
    saved = os.environ.get("RISKML_HOME")
    os.environ["RISKML_HOME"] = str(home)
    get_settings.cache_clear()
    try:
        yield home
    finally:
        if saved is None:
            os.environ.pop("RISKML_HOME", None)
        else:
            os.environ["RISKML_HOME"] = saved
        get_settings.cache_clear()
