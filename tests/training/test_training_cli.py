"""``riskml train`` / ``riskml tune`` reject bad input with clear errors before starting Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from riskml.cli import app

runner = CliRunner()


@pytest.fixture
def data_file(frame: Any, tmp_path: Path) -> Path:
    path = tmp_path / "train.parquet"
    frame.write_parquet(path)
    return path


def test_train_and_tune_are_registered() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "train" in result.output and "tune" in result.output


def test_missing_data_file_is_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "nope.parquet")])
    assert result.exit_code != 0
    assert isinstance(result.exception, FileNotFoundError)
    assert "nope.parquet" in str(result.exception)


def test_unknown_config_key_is_a_usage_error(data_file: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"xgb": {"num_boost_rounds": 10}}))
    result = runner.invoke(app, ["train", "--data", str(data_file), "--config", str(cfg)])
    assert result.exit_code == 2
    assert "num_boost_rounds" in result.output


def test_unknown_search_parameter_is_rejected(data_file: Path, tmp_path: Path) -> None:
    tune_cfg = tmp_path / "tune.yaml"
    tune_cfg.write_text("search_space:\n  speed: {type: uniform, low: 0, high: 1}\n")
    result = runner.invoke(app, ["tune", "--data", str(data_file), "--tune-config", str(tune_cfg)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError)
    assert "unknown xgb parameters ['speed']" in str(result.exception)
