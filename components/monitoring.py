"""Monitoring: check the decision log against the champion's reference profile."""

from kfp.dsl import HTML, Artifact, Metrics, Output

from components.base import component


@component
def monitor_decisions(
    metrics: Output[Metrics],
    report: Output[HTML],
    report_json: Output[Artifact],
    log_uri: str,
    model_uri: str = "models:/fraud@champion",
    lookback_days: float = 7.0,
    every_s: float = 86_400.0,
    hold_windows: int = 3,
    retrain_min_held: int = 3,
    alpha: float = 0.01,
    at: str = "",
) -> str:
    """Monitor the last ``lookback_days`` of the decision log (up to ``at``, default now)
    against the reference profile of ``model_uri``'s bundle; record the check in MLflow with
    its reason; ``retrain`` when broad drift holds (the score, or ``retrain_min_held`` series
    at once: :attr:`MonitorReport.retrain`), else ``ok`` (the single ``str`` output a ``dsl.If``
    reads). Side effect (the record): never cached."""
    import datetime as dt
    import json
    from pathlib import Path

    from riskml.monitoring.monitor import MonitorConfig, load_profile, run_monitor
    from riskml.registry.store import fetch, resolve
    from riskml.registry.triggers import OK, RETRAIN, record_check

    ref = resolve(model_uri)
    bundle_dir = fetch(ref)
    now = dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC)
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    config = MonitorConfig(
        every_s=every_s, hold_windows=hold_windows, retrain_min_held=retrain_min_held, alpha=alpha
    )
    result = run_monitor(
        log_uri,
        load_profile(bundle_dir),
        config,
        start=now - dt.timedelta(days=lookback_days),
        end=now,
        at=now,
        model_version=ref.version,
    )
    data = result.to_json()
    decision = RETRAIN if result.retrain else OK
    run_id = record_check(data, model_uri=ref.model_uri, decision=decision)
    Path(report_json.path).write_text(json.dumps(data, indent=1))
    try:
        from riskml.monitoring.report import write_html

        write_html(data, Path(report.path))
    except ImportError:  # pragma: no cover - the report module ships with riskml
        Path(report.path).write_text(f"<pre>{json.dumps(data, indent=1)}</pre>")
    last = result.last
    metrics.log_metric("windows", float(len(result.windows)))
    metrics.log_metric("retrain", 1.0 if decision == RETRAIN else 0.0)
    if last is not None:
        metrics.log_metric("alarms_last_window", float(len(last.alarms)))
        metrics.log_metric("held_last_window", float(len(last.held)))
    metrics.metadata["reason"] = result.reason or "no alarm held"
    metrics.metadata["check_run_id"] = run_id
    metrics.metadata["model_uri"] = ref.model_uri
    print(json.dumps({"decision": decision, "reason": result.reason, "run_id": run_id}))
    return decision


@component
def retrain_window(days: int = 42, at: str = "") -> str:
    """The first day (ISO date) of the retraining data window: ``days`` before ``at``
    (default now), so each scheduled run trains on data that moves with time."""
    import datetime as dt

    now = dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC)
    return (now.date() - dt.timedelta(days=days)).isoformat()
