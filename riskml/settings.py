"""Process-wide settings: one pydantic-settings object, env prefix ``RISKML_``, created lazily.

Nothing here touches the file system at import time. Call :func:`get_settings` where a value is
needed; tests that change the environment call ``get_settings.cache_clear()``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Repository root when running from a checkout (``riskml/`` lives directly below it).
REPO_ROOT = Path(__file__).resolve().parent.parent


def _shared_dir(*parts: str) -> Path | None:
    """``../shared/<parts>`` next to the checkout, when present (the workplace layout)."""
    candidate = REPO_ROOT.parent.joinpath("shared", *parts)
    return candidate if candidate.exists() else None


class Settings(BaseSettings):
    """All knobs of riskml. Each field can be set as ``RISKML_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RISKML_", extra="ignore", env_file=None)

    # -- workspace -------------------------------------------------------------------------
    home: Path = Field(
        default=Path(".riskml"),
        description="Working directory for datasets, features, models, MLflow runs and reports.",
    )
    seed: int = Field(default=7, description="Default random seed.")

    # -- feature store ---------------------------------------------------------------------
    feature_repo: Path = Field(
        default=REPO_ROOT / "feature_repo", description="Feast repository (feature_store.yaml)."
    )
    online_store: Literal["sqlite", "redis"] = Field(
        default="sqlite", description="Feast online store: embedded SQLite or Redis."
    )
    redis_url: str = Field(
        default="localhost:6379", description="Redis connection string for the online store."
    )

    # -- Ray ---------------------------------------------------------------------------------
    ray_mode: Literal["local", "jobs", "rayjob"] = Field(
        default="local",
        description="How Ray-backed work runs: local Ray, Ray Jobs API, KubeRay RayJob.",
    )
    ray_address: str | None = Field(
        default=None, description="Ray address (local mode) or dashboard URL (jobs mode)."
    )

    # -- tracking --------------------------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default: a file store under <home>/mlruns."
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
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return (self.home / "mlruns").resolve().as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
