"""Helpers of the tests that run whole pipelines through kfp.local: a fast training config and
readers of a run's task outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Small enough for 2 cores: the pipeline's shape, not its accuracy, is under test.
FAST_CONFIG = {
    "split": {"label_maturity_days": 10},
    "xgb": {"num_boost_round": 60, "early_stopping_rounds": 10},
    "sequence": {"epochs": 1, "hidden": 16, "tab_hidden": 32},
    "ray": {"num_workers": 1},
}


def executor_output(run_dir: Path, task: str) -> dict[str, Any]:
    return dict(json.loads((Path(run_dir) / task / "executor_output.json").read_text()))


def task_metrics(run_dir: Path, task: str, name: str = "metrics") -> dict[str, Any]:
    """The metadata of a task's output artifact ``name`` (its logged metrics)."""
    artifacts = executor_output(run_dir, task)["artifacts"][name]["artifacts"]
    return dict(artifacts[0]["metadata"])
