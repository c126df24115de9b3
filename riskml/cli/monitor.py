"""``riskml monitor run|report``: the model monitor over the offline decision log (drift with
window-sized alarms, data health, performance without labels), its Prometheus exporter and its
HTML report. Heavy imports (polars, matplotlib, prometheus_client) happen inside the commands.

Exit codes: 0 done; 2 bad input (no log, a bundle without a reference profile, a bad duration
or time), one line on stderr; 3 an alarm holds and ``--fail-on-alarm`` was given (cron jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from riskml.cli.features import _when

if TYPE_CHECKING:  # pragma: no cover
    from riskml.monitoring.export import MonitorMetrics
    from riskml.monitoring.monitor import MonitorConfig, MonitorReport
    from riskml.monitoring.profile import ReferenceProfile

monitor_app = typer.Typer(
    help="Model monitoring: drift, data health and label-free performance over the decision log.",
    no_args_is_help=True,
)

#: Exit status of ``run --fail-on-alarm`` when an alarm holds.
ALARM_EXIT = 3
#: Exit status of bad input.
BAD_INPUT_EXIT = 2
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)\s*$")


def _bad(message: object) -> NoReturn:
    """Bad input: one line on stderr, exit status 2."""
    from riskml.console import err_console

    err_console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=BAD_INPUT_EXIT)


def parse_duration(value: str, name: str = "--every") -> float:
    """``30m``, ``6h``, ``1d``, ``2w``, ``90s`` (``1.5h`` too) as seconds; exit 2 otherwise."""
    match = _DURATION.match(value)
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if not seconds > 0:
        _bad(f"{name}: {value!r} is not a duration (e.g. 30m, 6h, 1d, 2w)")
    return seconds


def _why(exc: Exception) -> str:
    """One line on what went wrong (a pydantic error: its first field and message)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{exc.title}: {where + ': ' if where else ''}{first['msg']}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _profile(
    bundle: Path | None, model: str | None, profile: Path | None
) -> tuple[ReferenceProfile, str | None]:
    """The reference profile and the model version, from exactly one of the three sources."""
    from pydantic import ValidationError

    from riskml.models.bundle import MANIFEST, BundleIntegrityError
    from riskml.monitoring.monitor import MonitorError, load_profile
    from riskml.monitoring.profile import ReferenceProfile as Profile

    given = [
        flag for flag, v in (("--bundle", bundle), ("--model", model), ("--profile", profile)) if v
    ]
    if len(given) != 1:
        _bad(
            "give exactly one of --bundle, --model and --profile"
            + (f" (got {', '.join(given)})" if given else "")
        )
    try:
        if profile is not None:
            if not profile.is_file():
                _bad(f"--profile: no such file {profile}")
            return Profile.model_validate_json(profile.read_text()), None
        if model is not None:
            from riskml.registry.store import RegistryError, fetch

            try:
                bundle = fetch(model)
            except RegistryError as exc:
                _bad(f"--model: {exc}")
            except Exception as exc:  # an unreachable registry, a failed download: one line
                _bad(f"--model: cannot fetch {model}: {_why(exc)}")
        assert bundle is not None
        if not bundle.is_dir():
            _bad(f"--bundle: no bundle directory at {bundle}")
        reference = load_profile(bundle)  # its profile checked against the manifest
        version = json.loads((bundle / MANIFEST).read_text()).get("version")
        return reference, None if version is None else str(version)
    except (MonitorError, BundleIntegrityError, ValidationError, OSError, ValueError) as exc:
        _bad(_why(exc))


def _time(value: str | None, name: str) -> dt.datetime | None:
    try:
        return _when(value, name)
    except typer.BadParameter as exc:
        _bad(f"{name}: {exc.message}")


def _config(every: str | None, size: int | None, **kwargs: Any) -> MonitorConfig:
    from pydantic import ValidationError

    from riskml.monitoring.monitor import MonitorConfig

    if every is not None and size is not None:
        _bad("cut windows either by time (--every) or by count (--size), not both")
    fields: dict[str, Any] = dict(kwargs)
    if size is not None:
        fields["size"] = size
    elif every is not None:
        fields["every_s"] = parse_duration(every)
    try:
        return MonitorConfig(**fields)
    except ValidationError as exc:
        _bad(_why(exc))


def _check_log(log: str) -> None:
    """A local log root must exist and hold decisions (a URI is read as it is)."""
    if "://" in log and not log.startswith("file://"):
        return
    root = Path(log.removeprefix("file://"))
    if not root.is_dir():
        _bad(f"--log: no offline log at {root}")
    if not (root / "events" / "decision").is_dir():
        _bad(f"--log: {root} holds no decision events (expected {root}/events/decision/)")


def _names(names: list[str], most: int = 4) -> str:
    shown = ", ".join(names[:most])
    return f"{shown}, … (+{len(names) - most})" if len(names) > most else shown


def _summary(report: MonitorReport) -> dict[str, Any]:
    last = report.last
    est = last.estimated if last else {}
    ap = est.get("average_precision")
    return {
        "model version": report.model_version or "–",
        "windows": len(report.windows),
        "decisions": sum(w.decisions for w in report.windows),
        "last window": f"{last.start:%Y-%m-%d %H:%M} to {last.end:%Y-%m-%d %H:%M}" if last else "–",
        "alarms (last window)": len(last.alarms) if last else 0,
        "alarm holds": _names(last.held) if last and last.held else "no",
        "estimated AP (last)": ap if ap is not None and math.isfinite(ap) else "–",
        "fallback share (last)": last.health.get("fallback_share", "–") if last else "–",
    }


def _emit(report: MonitorReport, out: Path | None, html: Path | None, *, table: bool) -> None:
    from riskml.console import console, print_table, write_json
    from riskml.monitoring.report import write_html

    if table:
        print_table("monitor run", _summary(report))
        if report.reason:
            console.print(f"[red]alarm:[/red] {report.reason}", soft_wrap=True, highlight=False)
    if out is not None:
        write_json(out, report.to_json())  # strict JSON already
    if html is not None:
        write_html(report, html)


@monitor_app.command("run")
def run(
    log: str | None = typer.Option(
        None, "--log", help="Offline log root: path or URI (default RISKML_HOME/offline-log)."
    ),
    bundle: Path | None = typer.Option(
        None, help="Model bundle directory (its reference profile)."
    ),
    model: str | None = typer.Option(
        None, help="Registered model: models:/fraud@champion or models:/fraud/<version>."
    ),
    profile: Path | None = typer.Option(
        None, help="A reference profile JSON (reference_profile.json) instead of a bundle."
    ),
    every: str | None = typer.Option(
        None, help="Window span of event time: 30m, 6h, 1d (default 1d)."
    ),
    size: int | None = typer.Option(None, help="Decisions per window (instead of --every)."),
    since: str | None = typer.Option(None, help="Decisions from this event time (ISO)."),
    until: str | None = typer.Option(None, help="Decisions before this event time (ISO)."),
    at: str | None = typer.Option(None, help="Labels known at this time (ISO; default now)."),
    alpha: float = typer.Option(0.01, help="False alarms per feature per window."),
    hold_windows: int = typer.Option(3, help="Consecutive alarming windows that hold an alarm."),
    maturity_days: float = typer.Option(30.0, help="Labels are complete this long after."),
    out: Path | None = typer.Option(None, "--out", help="Write the report as JSON here."),
    html: Path | None = typer.Option(None, "--html", help="Write the HTML report here."),
    metrics_port: int | None = typer.Option(
        None, help="With --follow: serve Prometheus metrics on this port (0: a free one)."
    ),
    follow: bool = typer.Option(
        False, "--follow", help="Run every --interval-s over the last --lookback until SIGTERM."
    ),
    interval_s: float = typer.Option(60.0, min=0.0, help="With --follow: seconds between runs."),
    lookback: str = typer.Option(
        "7d", help="With --follow: the moving window, up to the last whole window (e.g. 7d)."
    ),
    max_runs: int | None = typer.Option(
        None, min=1, help="With --follow: stop after this many runs."
    ),
    fail_on_alarm: bool = typer.Option(
        False, "--fail-on-alarm", help=f"Exit {ALARM_EXIT} when an alarm holds (cron jobs)."
    ),
) -> None:
    """Monitor the decision log against the model's reference profile: per window, drift of
    every feature and the score (alarms sized to the window), data health, the decision mix,
    performance estimated from the scores and realised once labels mature."""
    from riskml.monitoring.monitor import MonitorError, run_monitor
    from riskml.settings import get_settings

    root = log or str(get_settings().home / "offline-log")
    _check_log(root)
    reference, version = _profile(bundle, model, profile)
    config = _config(
        every, size, alpha=alpha, hold_windows=hold_windows, maturity_days=maturity_days
    )
    start, end, when = _time(since, "--since"), _time(until, "--until"), _time(at, "--at")
    if follow:
        if since or until or at:
            _bad("--follow watches the last --lookback up to now: drop --since/--until/--at")
        span = dt.timedelta(seconds=parse_duration(lookback, "--lookback"))
        watch = _Watch(
            root, reference, config, span, version, interval_s, max_runs, out, html, model
        )
        _follow(watch, metrics_port)
        return
    if metrics_port is not None:
        _bad("--metrics-port needs --follow (a single run exits at once)")
    try:
        report = run_monitor(
            root, reference, config, start=start, end=end, at=when, model_version=version
        )
    except MonitorError as exc:
        _bad(exc)
    _emit(report, out, html, table=True)
    if fail_on_alarm and report.alarm_holds:
        raise typer.Exit(code=ALARM_EXIT)


def whole_windows_end(now: dt.datetime, every_s: float | None) -> dt.datetime:
    """The end of the moving window ``--follow`` monitors: ``now`` floored to a multiple of the
    window span since the epoch (midnight UTC for ``1d``), so that the last window is a whole
    one — a part of a day has hour-of-day features unlike the reference's, and would alarm."""
    if not every_s:
        return now
    step = dt.timedelta(seconds=every_s)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + ((now - epoch) // step) * step


@dataclass(frozen=True)
class _Watch:
    """What ``run --follow`` monitors, and where its output goes."""

    root: str
    reference: ReferenceProfile
    config: MonitorConfig
    lookback: dt.timedelta
    version: str | None
    interval_s: float
    max_runs: int | None
    out: Path | None
    html: Path | None
    #: ``--model``: re-resolved every run, so a new champion's profile is picked up
    model: str | None = None


def _current(watch: _Watch, seen: dict[str, Any]) -> tuple[ReferenceProfile, str | None]:
    """The profile to monitor against now: ``--model``'s current version (fetched again only
    when the alias moved), else the one given at start."""
    if watch.model is None:
        return watch.reference, watch.version
    from riskml.monitoring.monitor import load_profile
    from riskml.registry.store import fetch, resolve

    ref = resolve(watch.model)
    if seen.get("version") != ref.version:
        seen.update(version=ref.version, profile=load_profile(fetch(ref)))
    return seen["profile"], str(seen["version"])


def _follow(watch: _Watch, metrics_port: int | None) -> None:
    """Monitor ``[now - lookback, now)`` every ``interval_s`` (exporter updated each time)
    until SIGTERM/SIGINT or ``max_runs``."""
    from riskml.console import console
    from riskml.monitoring.export import MonitorMetrics

    metrics = MonitorMetrics()
    if metrics_port is not None:
        port = metrics.serve(metrics_port)
        console.print(f"monitor metrics on :{port}/metrics", highlight=False)
    runs = asyncio.run(_loop(watch, metrics))
    console.print(f"monitor stopped after {runs} run(s)", highlight=False)


async def _loop(watch: _Watch, metrics: MonitorMetrics) -> int:
    from riskml.console import console
    from riskml.monitoring.monitor import run_monitor
    from riskml.streaming.processor import stop_on_signals

    stop = asyncio.Event()
    runs = 0
    seen: dict[str, Any] = {"version": watch.version, "profile": watch.reference}
    with stop_on_signals(stop.set):
        while not stop.is_set():
            now = dt.datetime.now(dt.UTC)
            end = whole_windows_end(now, watch.config.every_s)
            try:
                reference, version = await asyncio.to_thread(_current, watch, seen)
                report = await asyncio.to_thread(
                    run_monitor,
                    watch.root,
                    reference,
                    watch.config,
                    start=end - watch.lookback,
                    end=end,
                    at=now,
                    model_version=version,
                )
            except Exception as exc:  # a registry or log hiccup: say so, go on
                console.print(f"[red]monitor:[/red] {_why(exc)}", highlight=False)
            else:
                metrics.update(report)
                await asyncio.to_thread(_emit, report, watch.out, watch.html, table=False)
                last = report.last
                console.print(
                    f"{now:%Y-%m-%d %H:%M:%S} windows={len(report.windows)} "
                    f"alarms={len(last.alarms) if last else 0} "
                    f"holds={'yes' if report.alarm_holds else 'no'}",
                    highlight=False,
                )
            runs += 1
            if watch.max_runs is not None and runs >= watch.max_runs:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=watch.interval_s)
    return runs


@monitor_app.command("report")
def report_cmd(
    in_path: Path = typer.Option(..., "--in", help="A report JSON (riskml monitor run --out)."),
    out: Path = typer.Option(Path("monitor_report.html"), "--out", help="The HTML file."),
) -> None:
    """Write the HTML report of a monitor run's JSON: drift per feature over time, the
    PSI/threshold heat-map, data health, the decision mix, estimated vs realised performance
    and the label-maturity curve."""
    from riskml.console import console
    from riskml.monitoring.report import write_html

    if not in_path.is_file():
        _bad(f"--in: no such file {in_path}")
    try:
        data = json.loads(in_path.read_text())
    except (OSError, ValueError) as exc:
        _bad(f"--in: {in_path} is not JSON ({exc})")
    if not isinstance(data, dict) or not isinstance(data.get("windows"), list):
        _bad(f"--in: {in_path} is not a monitor report (no 'windows' list)")
    path = write_html(data, out)
    console.print(f"wrote {path}", highlight=False)


# -- `riskml monitor evaluate` ------------------------------------------------------------------
@monitor_app.command("evaluate")
def evaluate(
    out: Path = typer.Option(..., "--out", help="Write the figures here (JSON)."),
    work: Path | None = typer.Option(
        None, help="Keep the simulated worlds, logs and runs here (default: a temporary dir)."
    ),
    windows: int = typer.Option(200, min=10, help="A/A windows."),
    size: int = typer.Option(2000, min=100, help="Rows per A/A and detection window."),
    seed: int = typer.Option(5, help="The evaluation world's seed."),
    e2e: bool = typer.Option(
        True, "--e2e/--no-e2e", help="Also run the monitoring pipeline on kfp.local."
    ),
) -> None:
    """Check the monitor on the simulator (riskml.evaluation.monitoring): the A/A false-alarm
    rate, windows to detect a 0.2 sd shift, label-free estimates against realised performance,
    and end to end (monitoring pipeline on kfp.local): injected drift -> alarm held ->
    retraining run -> gate decision recorded. ~10 minutes on 2 cores."""
    import tempfile
    import time

    from riskml.console import print_table, write_json
    from riskml.evaluation.monitoring import evaluate_statistics
    from riskml.models.bundle import finite_json
    from riskml.settings import home_at

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        root = work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="monitor-")))
        root.mkdir(parents=True, exist_ok=True)
        # an embedded MLflow (registry, recorded checks) of its own: nothing touches the user's
        with home_at(root / "home"):
            figures, world = evaluate_statistics(
                root / "world", windows=windows, size=size, seed=seed
            )
            figures["drift_retrain_triggered"] = None
            if e2e:
                figures |= _end_to_end(root, world, seed)
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out, finite_json(figures))
    print_table(
        "monitor evaluate",
        {
            k: figures[k]
            for k in (
                "false_alarm_rate",
                "windows_to_detect_0p2sd",
                "estimated_ap_abs_error",
                "estimated_recall_abs_error",
                "drift_retrain_triggered",
                "seconds",
            )
        },
    )


def _end_to_end(root: Path, world: Any, seed: int) -> dict[str, Any]:
    """Register the evaluation world's bundle as the champion, monitor its period as simulated
    (control) and with drift injected (library calls), then run the monitoring pipeline on the
    drifted log: the alarm, the retraining branch and the gate's decision."""
    from pipelines.local import run_local, task_outputs
    from riskml.evaluation.monitoring import (
        FAST_RETRAINING,
        RETRAIN_DRIFT,
        evaluation_logs,
        first_held,
    )
    from riskml.monitoring.monitor import MonitorConfig, load_profile, run_monitor
    from riskml.registry.store import promote, register

    ref = register(world.bundle, decision="deploy")
    promote(ref, expected=None)
    logs = evaluation_logs(root / "logs", world, seed=seed)
    profile = load_profile(world.bundle)
    held: dict[str, Any] = {}
    for name, log in logs.items():
        end = dt.datetime.fromisoformat(log["end"])
        report = run_monitor(log["log"], profile, MonitorConfig(), end=end, at=end)
        held[name] = {"windows": len(report.windows), **first_held(report)}
    drifted = logs["drifted"]
    lookback = (
        dt.datetime.fromisoformat(drifted["end"]) - dt.datetime.fromisoformat(drifted["start"])
    ).days
    run = run_local(
        "monitoring",
        size="tiny",
        arguments={
            "log_uri": drifted["log"],
            "at": drifted["end"],
            "lookback_days": float(lookback),
            "drift": ";".join(RETRAIN_DRIFT),
            "train_config_json": json.dumps(FAST_RETRAINING),
            "gate_margin": 0.0,
        },
    )
    run_dir = Path(run["run_dir"])
    check = task_outputs(run_dir, "monitor-decisions")
    gate = task_outputs(run_dir, "gate")
    decision = check["parameters"].get("Output")
    return {
        "drift_retrain_triggered": decision == "retrain",
        "e2e": {
            "champion": ref.model_uri,
            "monitor_decision": decision,
            "reason": check["artifacts"].get("metrics", {}).get("reason"),
            "check_run_id": check["artifacts"].get("metrics", {}).get("check_run_id"),
            "retraining_ran": bool(gate["parameters"] or gate["artifacts"]),
            "gate_decision": gate["parameters"].get("Output"),
            "gate": gate["artifacts"].get("metrics", {}),
            "pipeline_wall_s": run["wall_s"],
            "run_dir": str(run_dir),
        },
        "held_by_log": held,
        "control_retrain_triggered": held["control"]["retrain_window"] is not None,
        "control_alert_held": held["control"]["held_window"] is not None,
    }
