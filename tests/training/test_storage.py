"""Where Ray Train checkpoints and Ray Tune state go: ``RISKML_STORAGE_URI`` (default
``<home>/ray-storage``) — a local path for ``file://``, the URI itself for any other scheme — and
an explicit ``storage_path`` wins. No Ray here; the Tune behaviour test (state written to
``RISKML_STORAGE_URI`` and restored from a fresh home) is in test_ray_training.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskml.settings import get_settings
from riskml.training.runtime import (
    TRAIN_STORAGE,
    TUNE_STORAGE,
    RayConfig,
    ray_storage,
    resolve_storage,
    run_config,
    storage_join,
)
from riskml.training.tune import TuneSettings


def _set_uri(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    monkeypatch.setenv("RISKML_STORAGE_URI", uri)
    get_settings.cache_clear()


def test_default_is_ray_storage_under_home(riskml_home: Path) -> None:
    base = riskml_home.resolve() / "ray-storage"
    assert resolve_storage(RayConfig()) == str(base / "train")
    assert ray_storage(None, TUNE_STORAGE) == str(base / "tune")
    assert (base / "train").is_dir() and (base / "tune").is_dir()  # local storage is created


def test_file_uri_is_a_local_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shared = tmp_path / "shared dir"  # a space: percent-encoded in the URI
    _set_uri(monkeypatch, shared.as_uri())
    assert resolve_storage(RayConfig()) == str(shared / "train")
    assert ray_storage(None, TUNE_STORAGE) == str(shared / "tune")
    assert (shared / "train").is_dir()
    _set_uri(monkeypatch, f"file://localhost{shared}/")
    assert ray_storage(None, TRAIN_STORAGE) == str(shared / "train")
    _set_uri(monkeypatch, "file://otherhost/x")
    with pytest.raises(ValueError, match="names no host"):
        ray_storage(None, TRAIN_STORAGE)


@pytest.mark.parametrize(
    ("uri", "train", "tune"),
    [
        ("s3://bucket/x", "s3://bucket/x/train", "s3://bucket/x/tune"),
        ("gs://bucket/", "gs://bucket/train", "gs://bucket/tune"),
        (
            "s3://bucket/ray?region=eu-west-1",
            "s3://bucket/ray/train?region=eu-west-1",
            "s3://bucket/ray/tune?region=eu-west-1",
        ),
    ],
)
def test_remote_uri_stays_a_uri(
    monkeypatch: pytest.MonkeyPatch, riskml_home: Path, uri: str, train: str, tune: str
) -> None:
    _set_uri(monkeypatch, uri)
    assert resolve_storage(RayConfig()) == train
    assert ray_storage(None, TUNE_STORAGE) == tune
    assert not riskml_home.exists()  # nothing local is created for remote storage
    # the URI reaches Ray's RunConfig as it is (Ray resolves it with pyarrow.fs at fit time)
    assert run_config(RayConfig(), "run").storage_path == train


def test_explicit_storage_path_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _set_uri(monkeypatch, "s3://bucket/x")
    local = tmp_path / "mine"
    cfg = RayConfig(storage_path=local)  # a Path is accepted too
    assert cfg.storage_path == str(local)
    assert resolve_storage(cfg) == str(local) and local.is_dir()  # no /train appended
    assert resolve_storage(RayConfig(storage_path="gs://other/runs")) == "gs://other/runs"
    tune = TuneSettings(storage_path=(tmp_path / "t").as_uri())
    assert ray_storage(tune.storage_path, TUNE_STORAGE) == str(tmp_path / "t")
    assert ray_storage("", TUNE_STORAGE) == "s3://bucket/x/tune"  # empty means unset


def test_storage_join() -> None:
    assert storage_join("/a/b", "c") == "/a/b/c"
    assert storage_join("s3://b/x/", "c") == "s3://b/x/c"
    assert storage_join("s3://b/x?k=v", "c", "d") == "s3://b/x/c/d?k=v"
    assert storage_join("file:///a/b", "c") == "file:///a/b/c"
