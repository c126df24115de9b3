"""The demo's last act: serve the pipeline's bundle and replay the held-back days through it.

The online store the app reads is rebuilt *as of the first held-back transaction* (history state,
terminal/device snapshots): the replayed transactions are unseen by it, and each decided one is
folded into it, so the store's behavioural state moves forward with the replay exactly as it
would in production: with NATS, the Ingress publishes its decisions to the event stream and the
stream processor folds them (:mod:`serving.demo_stream`); without, the Ingress writes them back
itself. Decisions come over HTTP from a Ray Serve app on the Ray the pipeline used.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riskml.settings import get_settings

SERVING_PROJECT = "riskml_serving"
#: Ingress ``user_config`` of the demo app (see :class:`riskml.decision.config.IngressConfig`).
DEMO_INGRESS: dict[str, Any] = {
    "deadline_ms": 300.0,
    "timeouts": {"features_ms": 150, "xgboost_ms": 100, "sequence_ms": 100, "decider_ms": 60},
}


def held_back(test_dir: Path, limit: int | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The held-back transactions in time order (API requests) and their ground-truth labels."""
    import polars as pl

    from serving.replay import requests_from_frame

    frame = pl.read_parquet(Path(test_dir) / "data.parquet").sort("ts", maintain_order=True)
    if limit is not None:
        frame = frame.head(limit)
    if frame.is_empty():
        raise ValueError(f"{test_dir}: no held-back transactions to replay")
    labels = {str(t): int(f) for t, f in frame.select("tx_id", "is_fraud").iter_rows()}
    return requests_from_frame(frame), labels


def serving_store(dataset: Path, workdir: Path, as_of: dt.datetime) -> dict[str, Any]:
    """A Feast store for serving (SQLite) whose online state is as of ``as_of``."""
    from riskml.features.batch import build_features
    from riskml.features.store import StoreConfig, apply, materialize

    features = Path(workdir) / "features"
    home = Path(workdir) / "store"
    build_features(Path(dataset), features, as_of=as_of)
    cfg = StoreConfig(home=home, features_dir=features, project=SERVING_PROJECT)
    apply(cfg)
    materialize(as_of, config=cfg)
    return {
        "home": str(home.resolve()),
        "features_dir": str(features.resolve()),
        "project": SERVING_PROJECT,
        "online_store": "sqlite",
    }


def outcome_table(responses: list[dict[str, Any]], labels: dict[str, int]) -> dict[str, Any]:
    """Decision mix, fraud caught (declined / sent to review) and good customers bothered."""
    mix = {"approve": 0, "review": 0, "decline": 0}
    fraud = {"approve": 0, "review": 0, "decline": 0}
    for r in responses:
        body = r.get("body") or {}
        decision = body.get("decision")
        if decision not in mix:
            continue
        mix[decision] += 1
        if labels.get(str(body.get("tx_id"))) == 1:
            fraud[decision] += 1
    n_fraud = sum(fraud.values())
    n_good = sum(mix.values()) - n_fraud
    good_stopped = mix["decline"] + mix["review"] - fraud["decline"] - fraud["review"]
    return {
        "decisions": mix,
        "fraud": n_fraud,
        "fraud_declined": fraud["decline"],
        "fraud_reviewed": fraud["review"],
        "fraud_caught_share": (fraud["decline"] + fraud["review"]) / n_fraud if n_fraud else None,
        "good_declined_or_reviewed_share": good_stopped / n_good if n_good else None,
    }


def model_args(model: str | Path) -> dict[str, str]:
    """The app args naming ``model``: ``model_uri`` for a ``models:/`` URI, else ``bundle_dir``."""
    if str(model).startswith("models:/"):
        return {"model_uri": str(model)}
    return {"bundle_dir": str(Path(model).resolve())}


def serve_and_replay(
    model: str | Path,
    dataset: Path,
    test_dir: Path,
    *,
    ray_address: str,
    rps: float = 25.0,
    limit: int | None = 1000,
    port: int = 8000,
    workdir: Path | None = None,
    keep_serving: bool = False,
    stream: bool = True,
    on_stage: Callable[[str, str, str], None] | None = None,
) -> dict[str, Any]:
    """Serve ``model`` (a registry ``models:/`` URI, or a bundle folder) on the Ray at
    ``ray_address`` and replay the held-back transactions
    of ``test_dir`` at ``rps`` over HTTP. Returns the decision mix, fraud caught and latency
    (``latency_samples_ms``: every answered request's, in the order they completed).

    ``stream``: decisions to the online store through NATS and the stream processor (the
    result's ``stream``: published, folded, lost, freshness), or — no NATS, or ``stream``
    False — written back by the Ingress (``stream`` says why).

    ``on_stage(stage, state, detail)`` follows the stages — ``online-store``, ``stream``,
    ``deploy``, ``replay`` — through ``running`` and ``done`` (``detail``: a short note)."""
    import time

    from serving import local
    from serving.demo_stream import decision_log_stats, open_stream
    from serving.replay import replay

    def stage(name: str, state: str, detail: str = "") -> None:
        if on_stage is not None:
            on_stage(name, state, detail)

    t0 = time.perf_counter()
    workdir = Path(workdir or get_settings().home / "serve" / "demo-replay")
    requests, labels = held_back(test_dir, limit)
    as_of = dt.datetime.fromisoformat(requests[0]["ts"])
    stage("online-store", "running", f"as of {as_of:%Y-%m-%d %H:%M}")
    store = serving_store(dataset, workdir, as_of)
    stage("online-store", "done", f"as of {as_of:%Y-%m-%d %H:%M}")
    t_store = time.perf_counter()
    stage("stream", "running", "connecting")
    link = open_stream(store) if stream else None
    figures: dict[str, Any]
    try:
        if link is not None and link.active:
            stage("stream", "running", f"consuming decisions ({link.durable})")
        else:
            note = link.note if link is not None else "off: decisions written back directly"
            stage("stream", "done", note)
        config = {
            "applications": [
                local.app_config(
                    {**model_args(model), "feature_store": store},
                    # the whole platform shares this machine's cores with the replay client: a
                    # laptop budget, not serve_config.yaml's production 50 ms
                    user_configs={"Ingress": {**DEMO_INGRESS, **(link.ingress if link else {})}},
                )
            ]
        }
        state_path = workdir / "state.json"
        state_path.unlink(missing_ok=True)
        stage("deploy", "running")
        state = local.start(config, state_path, port=port, address=ray_address)
        stage("deploy", "done", state["url"])
        t_deploy = time.perf_counter()
        total = len(requests)
        stage("replay", "running", f"0 / {total:,} sent")

        def sent(i: int) -> None:
            if (i + 1) % 25 == 0 or i + 1 == total:
                stage("replay", "running", f"{i + 1:,} / {total:,} sent")

        logged: list[dict[str, Any]] = []
        try:
            # straight to the Ingress replicas where Serve direct ingress is on (no proxy hop)
            report = replay(
                local.replay_targets(state),
                requests,
                rps,
                keep_responses=True,
                retries=1,
                on_sent=sent if on_stage is not None else None,
            )
            if link is not None and link.active:
                logged = decision_log_stats(local.replay_targets(state))
        finally:
            if not keep_serving:
                local.stop(state, state_path)  # the replicas drain their outboxes
        summary = report.summary()
        p99 = report.latency_ms.get("p99", float("nan"))
        stage("replay", "done", f"{report.requests:,} tx, {report.errors} errors, p99 {p99:.1f} ms")
        outcomes = outcome_table(report.responses, labels)
        t_replay = time.perf_counter()
        if link is not None and link.active:
            decided = sum(outcomes["decisions"].values())
            figures = {"mode": "stream", **link.settle(logged, decided=decided)}
            p99 = figures["freshness_ms"]["p99"]
            stage(
                "stream",
                "done" if figures["lost"] == 0 else "failed",
                f"{figures['folded']:,} folded, {figures['lost']:,} lost"
                + (f", p99 {p99:,.1f} ms" if p99 is not None else ""),
            )
        else:
            figures = {"mode": "write-back", "note": link.note if link else "off"}
    finally:
        if link is not None:
            link.close()
    return {
        "url": state["url"],
        "replayed_via": local.replay_targets(state),
        "served_model": str(model),
        "replayed": report.requests,
        "replay_from": requests[0]["ts"],
        "replay_to": requests[-1]["ts"],
        "rps_target": rps,
        "rps_achieved": round(summary["achieved_rps"], 1),
        "errors": report.errors,
        "latency_ms": {k: round(v, 2) for k, v in report.latency_ms.items()},
        "latency_samples_ms": [round(v, 2) for v in report.latencies],
        "server_stage_p50_ms": {k: round(v, 2) for k, v in report.server_stage_p50_ms.items()},
        "decision_sources": report.sources,
        "fallback_reasons": report.fallback_reasons,
        **outcomes,
        "timings_s": {
            "serving_store": round(t_store - t0, 2),
            "deploy": round(t_deploy - t_store, 2),
            "replay": round(t_replay - t_deploy, 2),
            "stream_settle": round(time.perf_counter() - t_replay, 2),
        },
        "serving": keep_serving,
        "stream": figures,
    }
