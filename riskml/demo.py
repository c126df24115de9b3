"""``riskml demo`` (``make demo``): the training pipeline end to end on this machine, then the
trained bundle served and fed the held-back transactions, then one report.

Runs the kfp ``training`` pipeline with ``kfp.local`` (each component a subprocess of this venv)
on demo-size simulated data, with one local Ray (dashboard on) for every Ray task, Feast on
SQLite and MLflow on a local file store — all under ``RISKML_HOME``. Then serves the pipeline's
bundle on Ray Serve (same Ray) and replays the held-back days over HTTP at a fixed rate
(:mod:`serving.demo`): with NATS at ``RISKML_NATS_URL`` the app's decisions go to the event
stream and the stream processor folds them into the online store (:mod:`serving.demo_stream`;
without NATS the app writes them back itself). Then it writes ``report.html``
(:mod:`riskml.evaluation.report`).

The terminal shows one live table of the steps (task, state, duration, key result); everything
kfp.local, the components, Ray and Serve print goes to ``demo.log`` in the output folder (file
descriptors 1 and 2 point there while the demo runs, so child processes' output goes too). It
ends with a short summary: model metrics, gate decision, the replay's decision mix and latency,
what the stream folded (lost, freshness), and the report's path.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, ClassVar, TextIO

import typer

#: The serving stages of :func:`serving.demo.serve_and_replay` as rows of the live table.
SERVE_ROWS = {
    "online-store": "serve: online store",
    "stream": "serve: stream processor",
    "deploy": "serve: deploy app",
}
REPLAY_ROW = "serve: replay"
REPORT_ROW = "report"


def demo(
    line: Annotated[
        str,
        typer.Option(
            help="fraud | credit | disputes (riskml.demo_credit, riskml.demo_disputes: their "
            "own pipelines and apps)."
        ),
    ] = "fraud",
    size: Annotated[str, typer.Option(help="tiny | demo (2,000 customers x 60 days).")] = "demo",
    pipeline: Annotated[str, typer.Option(help="training | retraining")] = "training",
    keep_ray: Annotated[
        bool, typer.Option(help="Leave the local Ray (and its dashboard) running afterwards.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder: report.html, demo.json, demo.log [RISKML_HOME/reports/demo].",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Result JSON [<out>/demo.json].")
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="Serve the bundle and replay the held-back transactions.")
    ] = True,
    replay_rps: Annotated[float, typer.Option(min=1, help="Replay rate (requests/s).")] = 25.0,
    replay_limit: Annotated[
        int, typer.Option(min=1, help="Held-back transactions replayed (earliest first).")
    ] = 1000,
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port of the app.")] = 8000,
) -> None:
    """Run the training pipeline locally end to end (kfp.local + local Ray + Feast on SQLite),
    serve the bundle, replay the held-back transactions, and write one HTML report."""
    from riskml.console import console, write_json
    from riskml.data.sources import SIZES
    from riskml.settings import get_settings

    if size not in SIZES:
        raise typer.BadParameter(f"choose from {', '.join(SIZES)}", param_hint="--size")
    if line not in ("fraud", "credit", "disputes"):
        raise typer.BadParameter("choose fraud, credit or disputes", param_hint="--line")
    if line == "disputes":
        from riskml.demo_disputes import demo_disputes

        return demo_disputes(
            sys.modules[__name__],  # this demo's live view and output plumbing
            size=size,
            keep_ray=keep_ray,
            out=out,
            json_out=json_out,
            serve=serve,
            port=port,
        )
    if line == "credit":
        from riskml.demo_credit import demo_credit

        return demo_credit(
            sys.modules[__name__],  # this demo's live view and output plumbing
            size=size,
            keep_ray=keep_ray,
            out=out,
            json_out=json_out,
            serve=serve,
            port=port,
        )
    if pipeline not in ("training", "retraining"):
        raise typer.BadParameter("training or retraining", param_hint="--pipeline")
    try:
        from pipelines.local import pipeline_tasks, run_local, shared_ray
    except ImportError as exc:  # pragma: no cover - a broken install
        raise typer.BadParameter(f"the pipelines package is not importable: {exc}") from None

    home = get_settings().home.resolve()
    out_dir = Path(out or get_settings().reports_dir / "demo").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "demo.log"
    report_path = out_dir / "report.html"
    rows = pipeline_tasks(pipeline)
    if serve:
        rows += [*SERVE_ROWS.values(), REPLAY_ROW]
    board = Board([*rows, REPORT_ROW], title=f"{pipeline} pipeline on kfp.local, then serving")

    console.print(
        f"[bold]riskml demo[/bold]: {pipeline} pipeline on {size} data, home {home}", soft_wrap=True
    )
    console.print(f"  kfp, Ray and Serve output goes to {log_path}", soft_wrap=True)
    width = console.width if console.is_terminal else None
    t0 = time.perf_counter()
    result: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}
    failed_at: int | None = None
    try:
        with output_to(log_path) as terminal:
            from rich.console import Console
            from rich.live import Live

            screen = Console(file=terminal, width=width)
            with shared_ray(keep=keep_ray) as ray:
                url = ray["dashboard_url"] or f"(existing Ray at {ray['address']})"
                screen.print(f"  Ray dashboard: {url}", soft_wrap=True)
                live = Live(
                    board,
                    console=screen,
                    refresh_per_second=2,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                with _end_line(screen), live:
                    try:
                        result = _run(
                            board,
                            run_local,
                            pipeline=pipeline,
                            size=size,
                            ray=ray,
                            serve=serve,
                            replay=(replay_rps, replay_limit, port),
                        )
                        result["ray_kept"] = bool(keep_ray and ray["head"] is not None)
                        evaluation = _report(board, result, report_path)
                        board.finish()
                    except BaseException:
                        board.fail_running()
                        sys.stdout.flush()
                        failed_at = log_path.stat().st_size
                        traceback.print_exc()  # to the log, after what the failed step said
                        raise
    except Exception as exc:
        console.print(f"[bold red]demo failed[/bold red] at {board.failed() or '?'}: {exc}")
        console.print(f"its last words, from {log_path}:", soft_wrap=True)
        for line in _tail(log_path, 12, upto=failed_at):
            console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(1) from None
    result["total_s"] = round(time.perf_counter() - t0, 2)
    result["report_html"] = str(report_path)
    result["log"] = str(log_path)
    served = result.get("serving")
    record = {**result, "serving": _without_samples(served) if served else None}
    path = write_json(json_out or out_dir / "demo.json", record)
    summary(console, result, evaluation, json_path=path)


def _run(
    board: Board,
    run_local: Callable[..., dict[str, Any]],
    *,
    pipeline: str,
    size: str,
    ray: Mapping[str, Any],
    serve: bool,
    replay: tuple[float, int, int],
) -> dict[str, Any]:
    """The pipeline, then (``serve``) the serving and replay, reporting to ``board``."""
    result = run_local(pipeline, size=size, ray_address=ray["address"], on_task=board.task)
    result["dashboard_url"] = ray["dashboard_url"]
    run_dir = Path(result["run_dir"])
    result["test_set"] = str(_artifact(run_dir, "test_set"))
    if serve:
        from serving.demo import serve_and_replay

        rps, limit, port = replay
        # the service serves what production would: the registry's champion (this run's
        # challenger only if the gate deployed it)
        result["serving"] = serve_and_replay(
            "models:/fraud@champion",
            _artifact(run_dir, "dataset"),
            Path(result["test_set"]),
            ray_address=ray["address"],
            rps=rps,
            limit=limit,
            port=port,
            on_stage=board.stage,
        )
        result["stream"] = result["serving"].pop("stream", None)
    return result


def _report(board: Board, result: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write the demo's ``report.html``; return the holdout evaluation behind it."""
    from pipelines.local import task_outputs
    from riskml.evaluation.holdout import evaluate_holdout
    from riskml.evaluation.report import holdout_html, holdout_scores
    from riskml.registry.gate import DEFAULT_GATE_METRIC

    board.update(REPORT_ROW, "running")
    gate_metrics = task_outputs(Path(result["run_dir"]), "gate")["artifacts"].get("metrics", {})
    champion = gate_metrics.get("champion")
    gate = {
        "decision": result["decision"],
        "metric": DEFAULT_GATE_METRIC,
        "challenger": gate_metrics.get("challenger"),
        "champion": None if champion is None or champion < 0 else champion,
        "reason": gate_metrics.get("reason", ""),
    }
    bundle, test_set = Path(result["bundle"]), Path(result["test_set"])
    evaluation = evaluate_holdout(bundle, test_set)
    scores = holdout_scores(bundle, test_set)
    page = holdout_html(evaluation, gate, scores=scores, replay=result.get("serving"))
    path.write_text(page)
    result["gate"] = gate
    board.update(REPORT_ROW, "done", f"{path.name}, {len(page) / 1e6:.1f} MB")
    return evaluation


def summary(
    console: Any, result: Mapping[str, Any], evaluation: Mapping[str, Any], *, json_path: Path
) -> None:
    """The closing lines: model metrics, gate, replay, timings, files — the report's path last."""
    from rich import box
    from rich.table import Table

    from riskml.evaluation.report import fmt

    metrics = evaluation.get("metrics", {})
    if metrics:
        first = next(iter(metrics.values()))
        recall = next((k for k in first if k.startswith("recall_at_fpr_")), None)
        cp = next((k for k in first if k.startswith("card_precision_at_")), None)
        columns = [("roc_auc", "ROC AUC"), ("average_precision", "avg precision")]
        if recall:
            columns.append((recall, f"recall@{fmt(float(recall[14:]), '%')} FPR"))
        if cp:
            columns.append((cp, f"CP@{cp[18:]}"))
        rows, frauds = evaluation.get("rows", 0), sum(evaluation["confusion"]["matrix"][1])
        table = Table(
            title=f"held-back window: {fmt(rows)} transactions, {fmt(frauds)} frauds",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            padding=(0, 1),
        )
        table.add_column("model")
        for _, label in columns:
            table.add_column(label, justify="right")
        for name, m in metrics.items():
            label = "blend (served)" if name == "blend" else name.replace("_calibrated", " (cal.)")
            table.add_row(label, *(fmt(m.get(key), "ratio") for key, _ in columns))
        console.print(table)
    gate = result.get("gate") or {}
    registered = result.get("registered") or {}
    decision = result.get("decision", "?")
    colour = "green" if decision == "deploy" else "yellow"
    reason = f" ({gate['reason']})" if gate.get("reason") else ""
    console.print(
        f"[bold]gate[/bold]: [{colour}]{decision}[/{colour}]{reason}; "
        f"registered {registered.get('name', '?')} version {registered.get('version', '?')}",
        soft_wrap=True,
    )
    served = result.get("serving")
    if served:
        total = sum(served["decisions"].values()) or 1
        mix = ", ".join(
            f"{k} {fmt(v)} ({fmt(v / total, '%')})" for k, v in served["decisions"].items()
        )
        lat = served["latency_ms"]
        console.print(
            f"[bold]replay[/bold]: {fmt(served['replayed'])} held-back transactions at "
            f"{fmt(served['rps_achieved'])}/s over HTTP, {fmt(served['errors'])} errors",
            soft_wrap=True,
        )
        console.print(f"  decisions: {mix}", soft_wrap=True)
        console.print(
            f"  fraud caught: {fmt(served['fraud_declined'])} declined + "
            f"{fmt(served['fraud_reviewed'])} reviewed of {fmt(served['fraud'])}; good "
            f"customers stopped {fmt(served['good_declined_or_reviewed_share'], '%')}",
            soft_wrap=True,
        )
        console.print(
            "  latency: "
            + ", ".join(f"{q} {fmt(lat.get(q), 'ms')}" for q in ("p50", "p95", "p99")),
            soft_wrap=True,
        )
    stream = result.get("stream")
    if stream:
        console.print(f"[bold]stream[/bold]: {stream_line(stream)}", soft_wrap=True)
    dashboard = result.get("dashboard_url") or "-"
    kept = "" if result.get("ray_kept") else " (stopped)"
    console.print(
        f"took {_duration(result.get('total_s', 0))} (pipeline "
        f"{_duration(result.get('wall_s', 0))}); Ray dashboard {dashboard}{kept}",
        soft_wrap=True,
    )
    console.print(f"result JSON: {json_path}", soft_wrap=True, highlight=False)
    console.print(f"log:         {result.get('log')}", soft_wrap=True, highlight=False)
    console.print(
        f"[bold]report:[/bold]      {result.get('report_html')}", soft_wrap=True, highlight=False
    )


def stream_line(stream: Mapping[str, Any]) -> str:
    """The summary's line on the event stream (:func:`serving.demo_stream.DemoStream.settle`'s
    figures, or why the decisions were written back directly)."""
    from riskml.evaluation.report import fmt

    if stream.get("mode") != "stream":
        return str(stream.get("note") or "decisions written back directly")
    fresh = stream.get("freshness_ms") or {}
    extra = []
    if stream.get("outboxed"):
        extra.append(f"{fmt(stream['outboxed'])} via the outbox")
    if stream.get("dead_lettered"):
        extra.append(f"{fmt(stream['dead_lettered'])} dead-lettered")
    return (
        f"{fmt(stream['published'])} decisions → NATS → online store, "
        f"{fmt(stream['lost'])} lost" + "".join(f", {e}" for e in extra) + ", freshness "
        f"p50 {fmt(fresh.get('p50'), 'ms')}, p99 {fmt(fresh.get('p99'), 'ms')}"
    )


# -- the live view -----------------------------------------------------------------------------


class Board:
    """The steps of the demo and their state, rendered by rich as one table (thread-safe: the
    pipeline's logging and the replay update it while rich's refresh thread draws it)."""

    STATES: ClassVar[dict[str, str]] = {
        "pending": "[dim]· pending[/dim]",
        "running": "",  # a spinner
        "done": "[green]✓ done[/green]",
        "failed": "[red]✗ failed[/red]",
        "skipped": "[dim]– skipped[/dim]",
    }

    def __init__(self, rows: list[str], title: str) -> None:
        self.rows = list(rows)
        self.title = title
        self.state = dict.fromkeys(rows, "pending")
        self.note = dict.fromkeys(rows, "")
        self.attempts = dict.fromkeys(rows, 0)
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._spinners: dict[str, Any] = {}

    def update(self, row: str, state: str, note: str | None = None) -> None:
        with self._lock:
            if row not in self.state:
                self.rows.insert(self._insert_at(), row)
                self.state[row], self.note[row], self.attempts[row] = "pending", "", 0
            now = time.monotonic()
            if state == "running" and self.state[row] != "running":
                self.attempts[row] += 1
                self.started[row] = now
                self.ended.pop(row, None)
                if self.attempts[row] > 1:
                    note = note or f"attempt {self.attempts[row]}"
            elif state in ("done", "failed"):
                self.ended[row] = now
            self.state[row] = state
            if note is not None:
                self.note[row] = note

    def task(self, name: str, state: str, outputs: dict[str, Any]) -> None:
        """``on_task`` of :func:`pipelines.local.run_local`."""
        self.update(name, state, task_note(name, outputs) if state == "done" else None)

    def stage(self, name: str, state: str, detail: str) -> None:
        """``on_stage`` of :func:`serving.demo.serve_and_replay`."""
        self.update(SERVE_ROWS.get(name, REPLAY_ROW if name == "replay" else name), state, detail)

    def finish(self) -> None:
        """Steps that never ran (the deploy task when the gate says keep) are skipped."""
        with self._lock:
            for row, state in self.state.items():
                if state == "pending":
                    self.state[row] = "skipped"

    def fail_running(self) -> None:
        for row in list(self.rows):
            if self.state[row] == "running":
                self.update(row, "failed")

    def failed(self) -> str | None:
        return next((r for r in self.rows if self.state[r] == "failed"), None)

    def _insert_at(self) -> int:
        # a step nobody announced (a pipeline task not in the spec) goes after the known tasks
        first_serve = [i for i, r in enumerate(self.rows) if r.startswith("serve:")]
        return first_serve[0] if first_serve else max(len(self.rows) - 1, 0)

    def _order(self) -> list[str]:
        """What ran in the order it ran, then what is still to come in the planned order; a
        skipped step stays after the step planned before it."""
        keys: dict[str, tuple[float, int]] = {}
        previous = -math.inf
        for i, row in enumerate(self.rows):
            if row in self.started:
                previous = self.started[row]
                keys[row] = (previous, i)
            else:
                keys[row] = (previous if self.state[row] == "skipped" else math.inf, i)
        return sorted(self.rows, key=keys.__getitem__)

    def __rich__(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        with self._lock:
            now = time.monotonic()
            order = self._order()
            table = Table(
                title=f"{self.title} · {_duration(now - self.t0)}",
                title_justify="left",
                expand=False,
            )
            table.add_column("step", no_wrap=True, min_width=len(max(self.rows, key=len)))
            table.add_column("state", no_wrap=True, min_width=9)
            table.add_column("time", justify="right", no_wrap=True, min_width=10)
            table.add_column("result", no_wrap=True, overflow="ellipsis", min_width=12)
            for row in order:
                state = self.state[row]
                if state == "running":
                    spinner = self._spinners.setdefault(
                        row, Spinner("dots", text="running", style="cyan")
                    )
                    status: Any = spinner
                else:
                    status = self.STATES.get(state, state)
                took = ""
                if row in self.started:
                    took = _duration(self.ended.get(row, now) - self.started[row])
                table.add_row(row, status, took, self.note[row])
            return table


def task_note(task: str, outputs: Mapping[str, Any]) -> str:
    """A pipeline task's key result, from what it wrote (``pipelines.local.task_outputs``)."""
    from riskml.evaluation.report import fmt

    art = outputs.get("artifacts", {})
    par = outputs.get("parameters", {})

    def metrics(name: str = "metrics") -> dict[str, Any]:
        return dict(art.get(name, {}))

    notes: dict[str, Callable[[], str]] = {
        "load-data": lambda: (
            f"{fmt(art['dataset']['rows'])} transactions, "
            f"{fmt(art['dataset']['fraud_rate'], '%')} fraud"
        ),
        "build-features": lambda: (
            f"{fmt(art['features']['customers'])} customers, {fmt(art['features']['rows'])} rows"
        ),
        "feast-materialize": lambda: (
            f"{len(art['store']['views'])} views → {art['store']['online_store']}"
        ),
        "training-sets": lambda: (
            f"train {fmt(art['train_set']['train_rows'])}, "
            f"test {fmt(art['test_set']['test_rows'])} rows"
        ),
        "tune-xgb": lambda: (
            f"best {fmt(metrics()['best_metric'], 'ratio')} over {fmt(metrics()['trials'])} trials"
            if art.get("best_params", {}).get("tuned")
            else "configured parameters"
        ),
        "train-xgb": lambda: (
            f"{fmt(metrics()['rounds'])} rounds"
            + (
                f", valid AUC-PR {fmt(metrics()['valid-aucpr'], 'ratio')}"
                if "valid-aucpr" in metrics()
                else ""
            )
        ),
        "train-sequence": lambda: (
            f"{fmt(metrics()['epochs_run'])} epochs (best {fmt(metrics()['best_epoch'])})"
        ),
        "calibrate-ensemble": lambda: (
            f"valid AP {fmt(metrics()['valid_blend_average_precision'], 'ratio')}"
        ),
        "backtest": lambda: (
            f"AP {fmt(metrics()['blend_average_precision'], 'ratio')}, "
            f"AUC {fmt(metrics()['blend_roc_auc'], 'ratio')}"
        ),
        "gate": lambda: (
            f"{par['Output']}: "
            + (
                f"{fmt(metrics()['challenger'], 'ratio')} vs {fmt(metrics()['champion'], 'ratio')}"
                if metrics().get("champion", -1) >= 0
                else "no champion yet"
            )
        ),
        "register": lambda: f"{art['registered']['name']} v{art['registered']['version']}",
        "deploy": lambda: f"champion: {art['deployment']['name']} v{art['deployment']['version']}",
    }
    try:
        return notes[task]() if task in notes else ""
    except (KeyError, TypeError, ValueError):
        return ""


# -- output plumbing -------------------------------------------------------------------------


@contextmanager
def output_to(log_path: Path) -> Iterator[TextIO]:
    """Send this process's output and that of every child process started meanwhile to
    ``log_path`` (appending): file descriptors 1 and 2 point at it, and so do ``sys.stdout`` /
    ``sys.stderr`` (they may not write through those descriptors: a test harness, a notebook).
    Yields a text stream on the original stdout. Everything is restored on exit."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1, encoding="utf-8")
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    try:
        yield terminal
    finally:
        for stream in (sys.stdout, sys.stderr, terminal):
            with suppress(OSError, ValueError):
                stream.flush()
        sys.stdout.close()
        sys.stderr.close()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        terminal.close()


@contextmanager
def _end_line(console: Any) -> Iterator[None]:
    """End the line a live view leaves open on a non-terminal (rich draws it there once, at
    the end, without a newline)."""
    try:
        yield
    finally:
        if not console.is_terminal:
            console.line()


def _tail(path: Path, n: int, upto: int | None = None) -> list[str]:
    """The last ``n`` lines with text in them of the log's first ``upto`` bytes."""
    try:
        with path.open("rb") as fh:
            data = fh.read() if upto is None else fh.read(upto)
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    return [line.rstrip()[:200] for line in lines if line.strip(" -")][-n:]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s"


def _without_samples(served: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in served.items() if k != "latency_samples_ms"}


def _artifact(run_dir: Path, name: str) -> Path:
    """A task output of a kfp.local run (``<run_dir>/<task>/<output name>``)."""
    found = sorted(run_dir.glob(f"*/{name}"))
    if len(found) != 1:
        raise RuntimeError(f"expected one {name!r} output under {run_dir}, found {found}")
    return found[0]
