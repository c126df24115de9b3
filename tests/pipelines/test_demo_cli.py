"""``riskml demo`` / ``python -m pipelines``: argument checks, and the demo's live view, log
redirection and closing summary with stand-ins for its steps (no pipeline run here; the real
runs are in test_local_run.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from riskml.cli import app


def test_demo_is_registered_and_rejects_bad_sizes() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "--keep-ray" in result.output
    bad = runner.invoke(app, ["demo", "--size", "huge"])
    assert bad.exit_code == 2 and "tiny, demo" in bad.output
    bad = runner.invoke(app, ["demo", "--pipeline", "scoring"])
    assert bad.exit_code == 2


def test_importing_the_cli_stays_light() -> None:
    code = (
        "import sys, riskml.cli, riskml.demo, riskml.orchestration.ray_task, "
        "riskml.orchestration.rayjob, riskml.orchestration.deploy, riskml.registry.gate, "
        "riskml.registry.store, riskml.training.tasks, riskml.training.dataset, "
        "riskml.evaluation.holdout, riskml.data.sources\n"
        "heavy = {'polars', 'ray', 'torch', 'feast', 'kfp', 'kubernetes', 'xgboost', 'pandas',"
        " 'mlflow'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_local_cli_rejects_bad_input() -> None:
    for args, hint in (
        (["--pipeline", "nope"], "--pipeline"),
        (["--size", "huge"], "--size"),
        (["--param", "novalue"], "--param"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "pipelines", "run-local", *args],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2, args
        assert hint in out.stderr, (args, out.stderr)


# -- the demo's live view and output plumbing (no pipeline run: stand-ins for its steps) -------

TASKS = ["load-data", "training-sets", "backtest", "gate", "register", "deploy"]


def _outputs(task: str) -> dict[str, Any]:
    """What a finished task of a kfp.local run wrote (``executor_output.json``)."""
    artifacts: dict[str, dict[str, dict[str, Any]]] = {
        "load-data": {
            "dataset": {"rows": 67223, "fraud_rate": 0.0118, "days": 42, "source": "simulate"}
        },
        "training-sets": {"train_set": {"train_rows": 55940}, "test_set": {"test_rows": 11283}},
        "backtest": {"metrics": {"blend_average_precision": 0.7123, "blend_roc_auc": 0.9634}},
        "gate": {"metrics": {"challenger": 0.7123, "champion": -1.0, "deploy": 1.0}},
        "register": {"registered": {"name": "fraud", "version": "20240212T000000Z"}},
    }
    parameters = {"Output": "deploy"} if task == "gate" else {}
    return {
        "artifacts": {
            name: {"artifacts": [{"name": name, "uri": "", "metadata": meta}]}
            for name, meta in artifacts.get(task, {}).items()
        },
        "parameterValues": parameters,
    }


def _fake_run_dir(root: Path) -> Path:
    run_dir = root / "riskml-training-2026-01-01"
    for task in [*TASKS, "calibrate-ensemble"]:
        (run_dir / task).mkdir(parents=True)
        (run_dir / task / "executor_output.json").write_text(json.dumps(_outputs(task)))
    (run_dir / "load-data" / "dataset").mkdir()
    (run_dir / "training-sets" / "test_set").mkdir()
    return run_dir


def test_task_events_turn_kfp_local_log_records_into_progress(tmp_path: Path) -> None:
    from pipelines.local import TaskEvents

    run_dir = _fake_run_dir(tmp_path)
    seen: list[tuple[str, str, dict[str, Any]]] = []
    events = TaskEvents(lambda *a: seen.append(a), lambda: run_dir)
    cyan, green, red, reset = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"
    for msg in (
        f"Executing task {cyan}'gate'{reset}",
        f"Task {cyan}'gate'{reset} finished with status {red}FAILURE{reset}",
        f"Executing task {cyan}'gate'{reset}",  # kfp.local retries it
        f"Task {cyan}'gate'{reset} finished with status {green}SUCCESS{reset}",
        "Streamed logs:",
    ):
        assert events.filter(logging.makeLogRecord({"msg": msg})) is True
    assert [(t, s) for t, s, _ in seen] == [
        ("gate", "running"),
        ("gate", "failed"),
        ("gate", "running"),
        ("gate", "done"),
    ]
    assert seen[-1][2]["parameters"] == {"Output": "deploy"}
    assert seen[-1][2]["artifacts"]["metrics"]["challenger"] == 0.7123

    def broken(*_: Any) -> None:
        raise RuntimeError("a bug in the display")

    # a broken callback never breaks the run
    assert TaskEvents(broken, lambda: run_dir).filter(
        logging.makeLogRecord({"msg": "Executing task 'x'"})
    )


def test_pipeline_tasks_are_the_training_pipelines_components_in_a_runnable_order() -> None:
    from pipelines.local import pipeline_tasks

    tasks = pipeline_tasks("training")
    assert len(tasks) == len(set(tasks)) == 12
    assert tasks[0] == "load-data" and tasks[-1] == "deploy"
    for before, after in (
        ("training-sets", "tune-xgb"),
        ("tune-xgb", "train-xgb"),
        ("train-sequence", "calibrate-ensemble"),
        ("calibrate-ensemble", "backtest"),
        ("gate", "register"),
    ):
        assert tasks.index(before) < tasks.index(after), (before, after)


def test_task_notes_pick_each_tasks_key_result(tmp_path: Path) -> None:
    from pipelines.local import task_outputs
    from riskml.demo import task_note

    run_dir = _fake_run_dir(tmp_path)
    notes = {t: task_note(t, task_outputs(run_dir, t)) for t in TASKS}
    assert notes["load-data"] == "67,223 transactions, 1.2% fraud"
    assert notes["training-sets"] == "train 55,940, test 11,283 rows"
    assert notes["backtest"] == "AP 0.712, AUC 0.963"
    assert notes["gate"] == "deploy: no champion yet"
    assert notes["register"] == "fraud v20240212T000000Z"
    assert notes["deploy"] == ""  # wrote nothing the note knows
    assert task_note("not-a-task", {}) == ""


def test_board_shows_steps_in_run_order_and_skips_what_never_ran() -> None:
    from rich.console import Console

    from riskml.demo import Board

    board = Board(["a", "b", "c", "report"], title="t")
    board.update("b", "running")
    board.update("b", "done", "b's result")
    board.update("a", "running")
    board.update("late", "running")  # not announced: still shown
    board.fail_running()
    board.finish()
    console = Console(record=True, width=100)
    console.print(board)
    text = console.export_text()
    lines = [line for line in text.splitlines() if "│" in line and "step" not in line]
    order = [line.split("│")[1].strip() for line in lines]
    # what ran in the order it ran; a skipped step after the step planned before it
    assert order == ["b", "c", "a", "late", "report"]
    assert "✓ done" in lines[0] and "b's result" in lines[0]
    assert "✗ failed" in lines[2] and "✗ failed" in lines[3]
    assert "skipped" in lines[1] and "skipped" in lines[4]
    assert board.failed() == "a"


def test_output_to_sends_this_process_and_its_children_to_the_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from riskml.demo import output_to

    log = tmp_path / "demo.log"
    with output_to(log) as terminal:
        print("from print")
        sys.stderr.write("from sys.stderr\n")
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; print('child out'); print('child err', file=sys.stderr)",
            ],
            check=True,
        )
        terminal.write("to the terminal\n")
    print("after")
    out = capfd.readouterr().out
    assert "to the terminal" in out and "after" in out
    assert "from print" not in out and "child out" not in out
    text = log.read_text()
    for line in ("from print", "from sys.stderr", "child out", "child err"):
        assert line in text
    assert "to the terminal" not in text


@contextmanager
def _no_ray(**_: Any) -> Iterator[dict[str, Any]]:
    yield {"address": "127.0.0.1:1", "dashboard_url": "http://127.0.0.1:8265", "head": None}


def test_demo_prints_a_short_live_view_and_summary_ending_with_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The demo command with stand-ins for the pipeline, the serving and the evaluation: what it
    prints (the live view, the summary, the report's path last), what it writes, and that the
    steps' own output goes to the log."""
    import pipelines.local
    import riskml.evaluation.holdout
    import riskml.evaluation.report
    import serving.demo
    from tests.evaluation.report_inputs import holdout_result, replay_result, synthetic

    run_dir = _fake_run_dir(tmp_path / "kfp")
    scores = synthetic(n=1500)
    result = holdout_result(scores)

    def run_local(pipeline: str, *, on_task: Any, **_: Any) -> dict[str, Any]:
        for task in TASKS[:-1]:  # the gate said deploy, but pretend deploy never ran
            on_task(task, "running", {})
            print(f"kfp executor output of {task}" * 3)
            on_task(task, "done", pipelines.local.task_outputs(run_dir, task))
        subprocess.run([sys.executable, "-c", "print('a component subprocess')"], check=True)
        return {
            "pipeline": pipeline,
            "wall_s": 151.2,
            "run_dir": str(run_dir),
            "bundle": "/registry/fraud/20240212T000000Z",
            "registered": {"name": "fraud", "version": "20240212T000000Z"},
            "report": str(run_dir / "backtest" / "report"),
            "decision": "deploy",
        }

    def serve_and_replay(*_: Any, on_stage: Any, **__: Any) -> dict[str, Any]:
        for stage in ("online-store", "stream", "deploy", "replay"):
            on_stage(stage, "running", "")
            on_stage(stage, "done", f"{stage} ok")
        stream = {
            "mode": "stream",
            "published": 1000,
            "outboxed": 0,
            "folded": 1000,
            "dead_lettered": 0,
            "lost": 0,
            "freshness_ms": {"p50": 4.2, "p99": 38.5},
        }
        return {**replay_result(), "stream": stream}

    monkeypatch.setattr(pipelines.local, "shared_ray", _no_ray)
    monkeypatch.setattr(pipelines.local, "run_local", run_local)
    monkeypatch.setattr(serving.demo, "serve_and_replay", serve_and_replay)
    monkeypatch.setattr(riskml.evaluation.holdout, "evaluate_holdout", lambda *_: result)
    monkeypatch.setattr(riskml.evaluation.report, "holdout_scores", lambda *_: scores)

    out_dir = tmp_path / "demo-out"
    res = CliRunner().invoke(app, ["demo", "--out", str(out_dir)])
    assert res.exit_code == 0, res.output
    printed = (capfd.readouterr().out + res.output).splitlines()
    assert len(printed) <= 60, "\n".join(printed)
    assert res.output.splitlines()[-1].split() == ["report:", str(out_dir / "report.html")]
    for expected in (
        "blend (served)",
        "gate: deploy",
        "decisions: approve 962",
        "p99",
        "serve: stream processor",
        "stream: 1,000 decisions → NATS → online store, 0 lost, freshness p50 4.2 ms, p99 38.5 ms",
    ):
        assert any(expected in line for line in printed), expected
    assert not any("kfp executor output" in line for line in printed)
    log = (out_dir / "demo.log").read_text()
    assert "kfp executor output of gate" in log and "a component subprocess" in log
    page = (out_dir / "report.html").read_text()
    assert "Served: the held-back transactions replayed over HTTP" in page
    record = json.loads((out_dir / "demo.json").read_text())
    assert record["decision"] == "deploy" and record["gate"]["champion"] is None
    assert "latency_samples_ms" not in record["serving"]
    assert record["stream"]["lost"] == 0 and "stream" not in record["serving"]


def test_a_failed_step_is_marked_and_its_last_words_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import pipelines.local

    def run_local(pipeline: str, *, on_task: Any, **_: Any) -> dict[str, Any]:
        on_task("load-data", "running", {})
        print("ValueError: the component's own complaint")
        raise RuntimeError("Task 'load-data' finished with status FAILURE")

    monkeypatch.setattr(pipelines.local, "shared_ray", _no_ray)
    monkeypatch.setattr(pipelines.local, "run_local", run_local)
    out_dir = tmp_path / "demo-out"
    res = CliRunner().invoke(app, ["demo", "--out", str(out_dir)])
    assert res.exit_code == 1
    printed = capfd.readouterr().out + res.output
    assert "load-data" in printed and "✗ failed" in printed
    assert "demo failed at load-data" in res.output
    # the step's last words, not the demo's own traceback (that is in the log, after them)
    assert res.output.rstrip().endswith("ValueError: the component's own complaint")
    assert "Traceback" in (out_dir / "demo.log").read_text()
