"""Credit line components: the loan portfolio, the PD model, the offer ranker, their evaluation,
the gate against the registry's champion and the release of a credit bundle.

Thin adapters, like the fraud components: each body imports inside and calls one task of
:mod:`components.credit_tasks` (the credit line's glue of the core packages, shared with the
``riskml credit`` commands and the credit demo; a separate module because a task's process
imports kfp's runtime only, which cannot define components). Registration reuses
:func:`components.registry.register` (any bundle registers the same way).
"""

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.base import component

# -- components ------------------------------------------------------------------------------


@component
def load_portfolio(
    portfolio: Output[Dataset],
    size: str = "tiny",
    seed: int = 7,
    source_uri: str = "",
    mapping_json: str = "",
    as_of: str = "",
) -> None:
    """Import the loan tape at ``source_uri`` when given (``mapping_json``: its column mapping,
    ``as_of``: when the tape was extracted, ISO 8601), else simulate a ``size`` (tiny | demo)
    portfolio with ``seed``: loans, their monthly performance and the logged offer impressions
    (Parquet, validated)."""
    import json
    from pathlib import Path

    from components.credit_tasks import portfolio_task

    summary = portfolio_task(
        Path(portfolio.path),
        size=size,
        seed=seed,
        source_uri=source_uri,
        mapping=json.loads(mapping_json) if mapping_json else None,
        as_of=as_of,
    )
    portfolio.metadata.update(summary)
    print(json.dumps(summary))


@component
def train_pd_model(
    portfolio: Input[Dataset],
    bundle: Output[Model],
    metrics: Output[Metrics],
    test_vintages: int = 1,
    train_config_json: str = "",
) -> None:
    """Train the PD models on the vintages before the held-out ones (the scorecard baseline and
    the monotone GBDT, on Ray; calibration chosen out of time), report both on the held-out
    vintages, and write the champion as the ``credit-pd`` bundle."""
    import json
    from pathlib import Path

    from components.credit_tasks import train_pd_task
    from riskml.metrics import finite_metrics

    out = train_pd_task(
        Path(portfolio.path),
        Path(bundle.path),
        test_vintages=test_vintages,
        config=json.loads(train_config_json) if train_config_json else None,
    )
    for key, value in finite_metrics(out["metrics"]).items():
        metrics.log_metric(key, value)
    bundle.metadata.update({"name": out["name"], "version": out["version"]})
    print(json.dumps({"bundle": out["bundle_dir"], "metrics": out["metrics"]}))


@component
def evaluate_pd(
    bundle: Input[Model],
    portfolio: Input[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
) -> None:
    """The saved PD bundle on its held-out vintages (Gini/KS, Brier, ECE, grade table with
    Jeffreys tests, per-vintage PSI), with the training run's GLM vs GBDT comparison: metrics
    and an HTML report."""
    import json
    from pathlib import Path

    from components.credit_tasks import evaluate_pd_task
    from riskml.metrics import finite_metrics
    from riskml.models.bundle import find_bundle

    out = evaluate_pd_task(find_bundle(Path(bundle.path)), Path(portfolio.path))
    for key, value in finite_metrics(out["metrics"]).items():
        metrics.log_metric(key, value)
    Path(report.path).write_text(out["html"])
    print(json.dumps(out["metrics"]))


@component
def train_offer_model(
    portfolio: Input[Dataset],
    bundle: Output[Model],
    metrics: Output[Metrics],
    test_months: int = 1,
    train_config_json: str = "",
) -> None:
    """Train the offer ranker on the logged impressions before the held-out months (on Ray),
    evaluate it off-policy on them, and write the ``credit-offers`` bundle."""
    import json
    from pathlib import Path

    from components.credit_tasks import train_offers_task
    from riskml.metrics import finite_metrics

    out = train_offers_task(
        Path(portfolio.path),
        Path(bundle.path),
        test_months=test_months,
        config=json.loads(train_config_json) if train_config_json else None,
    )
    for key, value in finite_metrics(out["metrics"]).items():
        metrics.log_metric(key, value)
    bundle.metadata.update({"name": out["name"], "version": out["version"]})
    print(json.dumps({"bundle": out["bundle_dir"], "metrics": out["metrics"]}))


@component
def evaluate_offers(
    bundle: Input[Model],
    portfolio: Input[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
) -> None:
    """The saved ranker on its held-out months: NDCG@5 and expected value per customer against
    the logging policy and "largest amount", off-policy estimates (IPS, SNIPS, DR) with
    confidence intervals: metrics and an HTML report."""
    import json
    from pathlib import Path

    from components.credit_tasks import evaluate_offers_task
    from riskml.metrics import finite_metrics
    from riskml.models.bundle import find_bundle

    out = evaluate_offers_task(find_bundle(Path(bundle.path)), Path(portfolio.path))
    for key, value in finite_metrics(out["metrics"]).items():
        metrics.log_metric(key, value)
    Path(report.path).write_text(out["html"])
    print(json.dumps(out["metrics"]))


@component
def gate_credit(
    bundle: Input[Model],
    portfolio: Input[Dataset],
    metrics: Output[Metrics],
    margin: float = 0.0,
    metric: str = "",
) -> str:
    """``deploy`` if the challenger beats the registry's champion of its model (``credit-pd`` or
    ``credit-offers``) on ``metric`` (default: :data:`GATE_METRICS`), both scored on the
    challenger's held-out vintages / months of this portfolio, by more than ``margin`` — or if
    there is no champion; else ``keep``. The decision is the single ``str`` output (kfp.local
    resolves a ``dsl.If`` on it)."""
    import json
    from pathlib import Path

    from components.credit_tasks import gate_task
    from riskml.metrics import finite_metrics
    from riskml.models.bundle import find_bundle

    out = gate_task(
        find_bundle(Path(bundle.path)), Path(portfolio.path), margin=margin, metric=metric
    )
    values = {
        "challenger": out["challenger"],
        "champion": -1.0 if out["champion"] is None else out["champion"],
        "deploy": 1.0 if out["decision"] == "deploy" else 0.0,
    }
    for key, val in finite_metrics(values).items():
        metrics.log_metric(key, val)
    metrics.metadata["reason"] = out["reason"]
    metrics.metadata["metric"] = out["metric"]
    # the registry version compared against: deploy promotes only if it is still the champion
    metrics.metadata["champion_version"] = out["champion_version"] or ""
    print(json.dumps(out))
    return str(out["decision"])


@component
def deploy_credit(
    registered: Input[Model],
    gate_metrics: Input[Metrics],
    deployment: Output[Artifact],
    target: str = "local",
    app: str = "credit",
    uri_arg: str = "pd_model_uri",
) -> None:
    """Make the registered credit bundle the champion of its model, if the champion is still
    the one the gate compared against; ``cluster``: also roll the RayService's Serve app
    ``app`` to it (its ``uri_arg`` and the matching digest), roll back on failure. Side effect:
    never cached."""
    import json
    from pathlib import Path

    from riskml.orchestration.release import release
    from riskml.registry.store import ModelRef

    record = json.loads(Path(registered.path).read_text())
    ref = ModelRef.from_record(record)
    expected = str(gate_metrics.metadata.get("champion_version") or "") or None
    out = release(ref, expected=expected, target=target, app=app, uri_arg=uri_arg)
    Path(deployment.path).write_text(json.dumps(out, indent=2))
    deployment.metadata.update({k: v for k, v in out.items() if isinstance(v, str)})
    print(json.dumps(out))
