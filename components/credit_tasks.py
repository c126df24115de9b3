"""The credit line's tasks: what the kfp components of :mod:`components.credit`, the
``riskml credit`` commands and the credit demo run, so each runs the same code.

Glue of the core packages only (:mod:`riskml.data.credit`, :mod:`riskml.training.credit`,
:mod:`riskml.training.credit_offers`, :mod:`riskml.evaluation.credit`,
:mod:`riskml.models.credit.bundle`, :mod:`riskml.registry`): no kfp import (a component's process
has kfp's runtime only), heavy imports inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Portfolio sizes of the pipelines and commands (overrides of
#: :class:`riskml.data.credit.simulator.LoanSimConfig`; ``demo``: its defaults, 24 vintages x
#: 2,500 loans and 23 x 420 impressions x 8 candidates). ``tiny`` leaves 10 complete vintages
#: for the PD split (it needs 8) and 21 months of offers.
CREDIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_customers": 3_000, "months": 22, "loans_per_month": 200, "offers_per_month": 60},
    "demo": {},
}
#: What the PD and offer pipelines train with unless told otherwise (``train_config_json``
#: overrides them key by key): Ray for the GBDT / the ranker, a small Tune search.
DEFAULT_PD_CONFIG: dict[str, Any] = {
    "use_ray": True,
    "tune": {"num_samples": 2, "time_budget_s": 300},
    "time_plain_baseline": True,
}
DEFAULT_OFFERS_CONFIG: dict[str, Any] = {"use_ray": True, "time_plain_baseline": True}
#: The gate's metric per credit model (higher is better): the calibrated PD's Gini on the
#: held-out vintages; the ranker's off-policy (doubly robust) expected value per customer.
GATE_METRICS = {"credit-pd": "gini", "credit-offers": "ev_per_customer_model"}


def _merged(defaults: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``defaults`` updated by ``overrides`` (nested mappings merged key by key)."""
    out = dict(defaults)
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def simulation_config(size: str = "tiny", seed: int = 7, **overrides: Any) -> Any:
    """The :class:`~riskml.data.credit.simulator.LoanSimConfig` of a named size."""
    from riskml.data.credit.simulator import LoanSimConfig

    if size not in CREDIT_SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(CREDIT_SIZES)}")
    return LoanSimConfig.model_validate({**CREDIT_SIZES[size], "seed": seed, **overrides})


def portfolio_task(
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 7,
    source_uri: str = "",
    mapping: Mapping[str, Any] | None = None,
    as_of: str = "",
) -> dict[str, Any]:
    """Simulate a portfolio of ``size`` into the directory ``out`` — or import the loan tape at
    ``source_uri`` (:func:`riskml.data.credit.importer.import_loans`, extracted at ``as_of``;
    a tape has loans only: it trains PD models, not the offer ranker). Returns its summary."""
    if source_uri:
        import datetime as dt

        from riskml.data.credit.importer import LoanImportMapping, import_loans

        if not as_of:
            raise ValueError("importing a loan tape needs as_of: when it was extracted")
        result = import_loans(
            Path(source_uri),
            Path(out),
            LoanImportMapping.model_validate(dict(mapping or {})),
            as_of=dt.datetime.fromisoformat(as_of),
            overwrite=True,
        )
        keep = ("rows_in", "accepted", "quarantined", "labelled", "immature", "defaults")
        return {
            "source": "import",
            "source_uri": source_uri,
            **result.model_dump(include=set(keep)),
        }
    from riskml.data.credit.simulator import simulate_portfolio

    portfolio = simulate_portfolio(simulation_config(size, seed))
    portfolio.write(out, overwrite=True)
    return {"source": "simulate", "size": size, "seed": seed, **_flat(portfolio.summary())}


def _flat(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar entries of a summary (kfp metadata: no nested per-vintage tables)."""
    return {
        k: v for k, v in summary.items() if isinstance(v, str | int | float | bool) or v is None
    }


class CreditData:
    """What a credit dataset holds: a simulated portfolio (loans, performance, offers) or an
    imported loan tape (loans only, ``offers`` None), with its observation end."""

    def __init__(self, loans: Any, offers: Any, observation_end: Any) -> None:
        from types import SimpleNamespace

        self.loans, self.offers, self.observation_end = loans, offers, observation_end
        #: what riskml.training.credit.loans_of reads the observation end from
        self.config = SimpleNamespace(observation_end=observation_end)

    def need_offers(self) -> Any:
        if self.offers is None:
            raise ValueError("this dataset is a loan tape without an offers log: no ranker")
        return self.offers


def _portfolio(path: Path) -> CreditData:
    """The credit dataset at ``path`` (a portfolio written by the simulator, or a loan import)."""
    import datetime as dt
    import json

    from riskml.data.credit.simulator import MANIFEST, Portfolio

    manifest = json.loads((Path(path) / MANIFEST).read_text())
    if manifest.get("kind") == "credit_portfolio":
        p = Portfolio.read(path)
        return CreditData(p.loans, p.offers, p.observation_end)
    from riskml.data.credit.importer import read_loans

    end = dt.datetime.fromisoformat(manifest["observation_end"])
    return CreditData(read_loans(path), None, end)


#: The PD training figures a run logs as metrics (besides the per-model ones).
PD_HEADLINE = (
    "gini_gbdt",
    "gini_glm",
    "ks_gbdt",
    "ks_glm",
    "ece_gbdt",
    "ece_glm",
    "ece_calibrated",
    "ece_calibrated_quantile",
    "jeffreys_pass_share",
)


def train_pd_task(
    portfolio_dir: Path,
    out_root: Path,
    *,
    test_vintages: int = 1,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the PD models on ``portfolio_dir`` (:func:`riskml.training.credit.train_pd`, the
    last ``test_vintages`` complete vintages held out), report them
    (:func:`riskml.evaluation.credit.pd_report.training_report`) and save the champion as the
    ``credit-pd`` bundle under ``out_root``. Returns ``bundle_dir``, ``name``, ``version``,
    ``metrics`` (flat figures) and ``report`` (everything)."""
    import numpy as np

    from riskml.evaluation.credit.pd_report import training_report
    from riskml.models.bundle import finite_json
    from riskml.models.credit.bundle import save_credit_bundle
    from riskml.training.credit import PDTrainingConfig, train_pd

    doc = _merged(DEFAULT_PD_CONFIG, config)
    doc = _merged(doc, {"split": {"test_vintages": test_vintages}})
    cfg = PDTrainingConfig.model_validate(doc)
    portfolio = _portfolio(portfolio_dir)
    result = train_pd(portfolio, cfg)
    report = finite_json(training_report(result))
    champion = result.models[result.champion]
    deciles = np.quantile(champion.dev_raw, np.linspace(0.0, 1.0, 11)).tolist()
    reference = {
        "held_out_vintages": list(result.split.test),
        "split": result.split.summary(),
        "champion": result.champion,
        "dev_raw_pd_deciles": deciles,
        "dev_rows": len(champion.dev_raw),
        "observation_end": portfolio.observation_end.isoformat(),
        "feature_names": champion.model.spec.names,
        "grades": list(champion.model.grades.names),
    }
    metrics = {k: report[k] for k in PD_HEADLINE if k in report}
    metrics.update({f"timing_{k}": v for k, v in result.timings.items()})
    diff = report.get("gini_gbdt_minus_glm") or {}
    for key in ("difference", "low", "high"):
        if key in diff:
            metrics[f"gini_gbdt_minus_glm_{key}"] = diff[key]
    path = save_credit_bundle(
        out_root,
        champion.model,
        metrics=report,
        reference=reference,
        config=cfg.model_dump(mode="json"),
    )
    return {
        "bundle_dir": str(path),
        "name": path.parent.name,
        "version": path.name,
        "champion": result.champion,
        "metrics": metrics,
        "report": report,
    }


def _held_out_loans(bundle: Any, portfolio: Any) -> Any:
    """The portfolio's loans of the bundle's held-out vintages (labels mature)."""
    import polars as pl

    vintages = list(bundle.reference.get("held_out_vintages") or [])
    if not vintages:
        raise ValueError(f"{bundle.path}: the bundle names no held-out vintages")
    loans = portfolio.loans.filter(pl.col("vintage").is_in(vintages))
    if loans.is_empty():
        raise ValueError(f"the portfolio has no loans of the held-out vintages {vintages}")
    if loans.get_column("default_12m").null_count():
        raise ValueError(f"held-out vintages {vintages} have immature labels in this portfolio")
    return loans


def pd_holdout_report(bundle: Any, loans: Any) -> dict[str, Any]:
    """The PD bundle's report on held-out ``loans``
    (:func:`riskml.evaluation.credit.pd_report.pd_report`: Gini, KS, Brier, ECE, grade table with
    Jeffreys tests) and the PSI of its raw PD against the development deciles."""
    import numpy as np

    from riskml.evaluation.credit.pd_report import pd_report, psi
    from riskml.models.credit import labels

    model = bundle.model
    prediction = model.predict(loans)
    y = labels(loans, model.spec)
    out = pd_report(y, prediction.pd, prediction.grade, model.grades.names)
    deciles = bundle.reference.get("dev_raw_pd_deciles")
    if deciles:
        # the development distribution as its deciles: PSI over those bins
        dev = np.interp(np.linspace(0, 1, 1001), np.linspace(0, 1, len(deciles)), deciles)
        out["psi"] = psi(dev, prediction.raw)
    return out


def evaluate_pd_task(bundle_dir: Path, portfolio_dir: Path) -> dict[str, Any]:
    """The saved ``credit-pd`` bundle scored on its held-out vintages of ``portfolio_dir``, next
    to the training run's GLM vs GBDT figures; ``metrics`` (flat) and ``html`` (the report)."""
    from riskml.models.credit.bundle import load_credit_bundle

    bundle = load_credit_bundle(bundle_dir)
    if bundle.kind != "pd":
        raise ValueError(f"{bundle_dir}: a {bundle.name} bundle, not credit-pd")
    holdout = pd_holdout_report(bundle, _held_out_loans(bundle, _portfolio(portfolio_dir)))
    training = bundle.metrics
    metrics: dict[str, Any] = {
        f"bundle_{k}": holdout[k]
        for k in ("gini", "ks", "auc", "brier", "ece", "log_loss", "jeffreys_pass_share", "psi")
        if k in holdout
    }
    metrics.update({k: training[k] for k in PD_HEADLINE if k in training})
    return {"metrics": metrics, "holdout": holdout, "html": pd_html(bundle, holdout)}


def pd_html(bundle: Any, holdout: Mapping[str, Any]) -> str:
    """A short HTML report of a PD bundle: headline, GLM vs GBDT, grade table, per vintage."""
    from riskml.evaluation.report import _kv_table, _page, _table, fmt

    training = bundle.metrics
    models = training.get("models") or {}
    head = {
        "bundle": fmt(f"{bundle.name} {bundle.version}"),
        "champion": fmt(training.get("champion")),
        "held-out vintages": fmt(", ".join(bundle.reference.get("held_out_vintages", []))),
        "calibration": fmt(training.get("calibration_method")),
        "Gini (bundle, held out)": fmt(holdout.get("gini"), "ratio"),
        "ECE (bundle, held out)": fmt(holdout.get("ece"), "ratio"),
        "Jeffreys pass share": fmt(holdout.get("jeffreys_pass_share"), "%"),
        "PSI vs development": fmt(holdout.get("psi"), "ratio"),
    }
    compare = [
        [
            fmt(name),
            *(fmt(rep.get(k), "ratio") for k in ("gini", "ks", "brier", "ece")),
            fmt(rep.get("jeffreys_pass_share"), "%"),
        ]
        for name, rep in models.items()
    ]
    grades = [
        [
            fmt(g.get("grade")),
            fmt(g.get("n")),
            fmt(g.get("defaults")),
            fmt(g.get("mean_pd"), "%"),
            fmt(g.get("default_rate"), "%"),
            fmt(g.get("passed")),
        ]
        for g in holdout.get("grades", [])
    ]
    champion = models.get(training.get("champion"), {})
    vintages = [
        [
            fmt(v.get("vintage")),
            fmt(v.get("role")),
            fmt(v.get("n")),
            fmt(v.get("default_rate"), "%"),
            fmt(v.get("mean_pd"), "%"),
            fmt(v.get("gini"), "ratio"),
            fmt(v.get("psi"), "ratio"),
        ]
        for v in champion.get("per_vintage", [])
    ]
    body = [
        _kv_table(head),
        "<h2>GLM scorecard vs monotone GBDT (held-out vintages)</h2>",
        _table(["model", "Gini", "KS", "Brier", "ECE", "Jeffreys pass"], compare),
        "<h2>Grades: observed vs predicted, Jeffreys test</h2>",
        _table(["grade", "loans", "defaults", "mean PD", "default rate", "passed"], grades),
        "<h2>Per vintage (champion)</h2>",
        _table(["vintage", "role", "loans", "default rate", "mean PD", "Gini", "PSI"], vintages),
    ]
    return _page("riskml credit: probability of default", "out-of-time by vintage", body)


def offers_config(config: Mapping[str, Any] | None, test_months: int) -> Any:
    """The :class:`~riskml.training.credit_offers.OfferTrainingConfig` of a run."""
    from riskml.training.credit_offers import OfferTrainingConfig

    doc = _merged(_merged(DEFAULT_OFFERS_CONFIG, config), {"test_months": test_months})
    return OfferTrainingConfig.model_validate(doc)


#: The offer evaluation figures a run logs as metrics.
OFFERS_HEADLINE = (
    "ndcg5_model",
    "ndcg5_logging_policy",
    "ndcg5_largest_amount",
    "ev_per_customer_model",
    "ev_per_customer_logging_policy",
    "ev_per_customer_largest_amount",
    "uplift_model_vs_logging",
    "true_ev_per_customer_model",
    "true_ev_per_customer_logging_policy",
    "true_ev_per_customer_largest_amount",
)


def offers_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    """Flat figures of an offer ranking report (intervals as ``<key>_low`` / ``<key>_high``)."""
    out = {k: report[k] for k in OFFERS_HEADLINE if report.get(k) is not None}
    for key, value in report.items():
        if key.endswith("_ci") and isinstance(value, list | tuple) and len(value) == 2:
            out[f"{key[:-3]}_low"], out[f"{key[:-3]}_high"] = value
    return out


def train_offers_task(
    portfolio_dir: Path,
    out_root: Path,
    *,
    test_months: int = 1,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the offer ranker on ``portfolio_dir``'s offers log
    (:func:`riskml.training.credit_offers.train_offer_ranker`, the last ``test_months`` months
    held out), evaluate it off-policy on them
    (:func:`riskml.evaluation.credit.ope.evaluate_offer_ranking`) and save it as the
    ``credit-offers`` bundle under ``out_root``."""
    from riskml.evaluation.credit.ope import evaluate_offer_ranking
    from riskml.models.credit.bundle import save_credit_bundle
    from riskml.training.credit_offers import train_offer_ranker

    cfg = offers_config(config, test_months)
    portfolio = _portfolio(portfolio_dir)
    result = train_offer_ranker(portfolio.need_offers(), cfg)
    report = evaluate_offer_ranking(portfolio.offers, result=result).to_json()
    split = result.split.summary()
    reference = {
        "held_out_months": split["test_months"],
        "split": split,
        "observation_end": portfolio.observation_end.isoformat(),
    }
    metrics = offers_metrics(report)
    metrics.update({f"timing_{k}": v for k, v in result.timings.items()})
    path = save_credit_bundle(
        out_root,
        result.ranker,
        metrics=report,
        reference=reference,
        config=cfg.model_dump(mode="json"),
    )
    return {
        "bundle_dir": str(path),
        "name": path.parent.name,
        "version": path.name,
        "metrics": metrics,
        "report": report,
    }


def offers_holdout_report(bundle: Any, split_config: Any, portfolio: Any) -> dict[str, Any]:
    """An offers bundle's ranker evaluated off-policy on the held-out months ``split_config``
    (an ``OfferTrainingConfig``) gives of ``portfolio``'s offers log."""
    from riskml.evaluation.credit.ope import evaluate_offer_ranking
    from riskml.training.credit_offers import OfferTrainingResult, split_offers

    split = split_offers(
        portfolio.need_offers(),
        test_months=split_config.test_months,
        valid_months=split_config.valid_months,
        min_train_months=split_config.min_train_months,
    )
    result = OfferTrainingResult(ranker=bundle.model, split=split, config=split_config)
    return dict(evaluate_offer_ranking(split.test, result=result).to_json())


def evaluate_offers_task(bundle_dir: Path, portfolio_dir: Path) -> dict[str, Any]:
    """The saved ``credit-offers`` bundle evaluated on its held-out months: ``metrics`` (flat)
    and ``html``."""
    from riskml.models.credit.bundle import load_credit_bundle
    from riskml.training.credit_offers import OfferTrainingConfig

    bundle = load_credit_bundle(bundle_dir)
    if bundle.kind != "offers":
        raise ValueError(f"{bundle_dir}: a {bundle.name} bundle, not credit-offers")
    cfg = OfferTrainingConfig.model_validate(bundle.config)
    report = offers_holdout_report(bundle, cfg, _portfolio(portfolio_dir))
    return {
        "metrics": offers_metrics(report),
        "report": report,
        "html": offers_html(bundle, report),
    }


def offers_html(bundle: Any, report: Mapping[str, Any]) -> str:
    """A short HTML report of an offers bundle: NDCG@5 and EV per customer per policy."""
    from riskml.evaluation.report import _kv_table, _page, _table, fmt

    def ci(key: str) -> str:
        low_high = report.get(f"{key}_ci") or [None, None]
        return f"{fmt(low_high[0])} – {fmt(low_high[1])}"

    rows = [
        [
            fmt(label),
            fmt(report.get(f"ndcg5_{key}"), "ratio"),
            fmt(report.get(f"ev_per_customer_{key}")),
            ci(f"ev_per_customer_{key}") if f"ev_per_customer_{key}_ci" in report else "–",
            fmt(report.get(f"true_ev_per_customer_{key}")),
        ]
        for key, label in (
            ("model", "ranker"),
            ("logging_policy", "logging policy"),
            ("largest_amount", "largest amount"),
        )
    ]
    head = {
        "bundle": fmt(f"{bundle.name} {bundle.version}"),
        "held-out months": fmt(", ".join(bundle.reference.get("held_out_months", []))),
        "impressions": fmt(report.get("n_impressions")),
        "uplift vs logging (DR)": fmt(report.get("uplift_model_vs_logging"))
        + f" [{ci('uplift_model_vs_logging')}]",
    }
    body = [
        _kv_table(head),
        "<h2>Policies on the held-out months</h2>",
        _table(["policy", "NDCG@5", "EV / customer (OPE)", "95% CI", "EV (simulator truth)"], rows),
    ]
    return _page("riskml credit: offer ranking", "off-policy evaluation", body)


def gate_value(bundle_dir: Path, portfolio: Any, *, metric: str, holdout: Any) -> float:
    """``metric`` of the credit bundle at ``bundle_dir`` on the held-out data ``holdout`` (PD:
    the loans of the challenger's held-out vintages; offers: the challenger's split config)."""
    from riskml.models.credit.bundle import load_credit_bundle

    bundle = load_credit_bundle(bundle_dir)
    if bundle.kind == "pd":
        report = pd_holdout_report(bundle, holdout)
    else:
        report = offers_holdout_report(bundle, holdout, portfolio)
    value = report.get(metric)
    if not isinstance(value, int | float):
        raise ValueError(f"{bundle.name}: no numeric {metric!r} on the held-out data")
    return float(value)


def gate_task(
    bundle_dir: Path, portfolio_dir: Path, *, margin: float = 0.0, metric: str = ""
) -> dict[str, Any]:
    """The gate (:func:`riskml.registry.gate.compare_with_champion`) of a credit bundle: it and
    its model's champion scored on the challenger's held-out data of ``portfolio_dir``."""
    from riskml.models.credit.bundle import load_credit_bundle
    from riskml.registry.gate import compare_with_champion
    from riskml.training.credit_offers import OfferTrainingConfig

    challenger = load_credit_bundle(bundle_dir)
    chosen = metric or GATE_METRICS[challenger.name]
    portfolio = _portfolio(portfolio_dir)
    holdout: Any
    if challenger.kind == "pd":
        holdout = _held_out_loans(challenger, portfolio)
    else:
        holdout = OfferTrainingConfig.model_validate(challenger.config)

    def value(path: Path) -> float:
        return gate_value(path, portfolio, metric=chosen, holdout=holdout)

    out = compare_with_champion(
        challenger.name, value(Path(bundle_dir)), value, metric=chosen, margin=margin
    )
    return {**out, "name": challenger.name}


#: The issue's goals on the held-out data (what ``riskml credit evaluate`` checks).
GOALS = {
    "gini_gbdt_minus_glm_min": 0.02,
    "ece_calibrated_max": 0.02,
    "jeffreys_pass_share_min": 0.9,
}
#: The keys other tools read from ``riskml credit evaluate --out FILE`` (always present).
EVALUATE_KEYS = (
    "gini_gbdt",
    "gini_glm",
    "ece_calibrated",
    "jeffreys_pass_share",
    "ndcg5_model",
    "ndcg5_logging_policy",
    "ev_per_customer_model",
    "ev_per_customer_logging_policy",
)


def credit_figures(pd_training: Mapping[str, Any], offers: Mapping[str, Any]) -> dict[str, Any]:
    """The credit line's figures as one JSON document: the issue's keys at the top level (PD:
    GBDT vs GLM on the held-out vintages, from the training report; offers: NDCG@5 and expected
    value per customer, off-policy, with their confidence intervals), per-vintage and per-grade
    tables, the goals and whether they hold, and both full reports under ``pd`` / ``offers``."""
    out: dict[str, Any] = {k: pd_training.get(k) for k in EVALUATE_KEYS[:4]}
    out.update({k: offers.get(k) for k in EVALUATE_KEYS[4:]})
    for key in ("ks_gbdt", "ks_glm", "ece_gbdt", "ece_glm", "champion", "calibration_method"):
        out[key] = pd_training.get(key)
    out["held_out_vintages"] = pd_training.get("held_out_vintages")
    out["gini_gbdt_minus_glm"] = pd_training.get("gini_gbdt_minus_glm")
    for key in (
        "ev_per_customer_model_ci",
        "ev_per_customer_logging_policy_ci",
        "ndcg5_largest_amount",
        "ev_per_customer_largest_amount",
        "ev_per_customer_largest_amount_ci",
        "uplift_model_vs_logging",
        "uplift_model_vs_logging_ci",
        "true_ev_per_customer_model",
        "true_ev_per_customer_logging_policy",
        "true_ev_per_customer_largest_amount",
    ):
        out[key] = offers.get(key)
    out["held_out_months"] = (offers.get("split") or {}).get("test_months")
    models = pd_training.get("models") or {}
    out["per_vintage"] = {name: rep.get("per_vintage") for name, rep in models.items()}
    champion = models.get(str(pd_training.get("champion")), {})
    out["grades"] = champion.get("grades")
    diff = (out["gini_gbdt_minus_glm"] or {}).get("difference")
    ece, share = out["ece_calibrated"], out["jeffreys_pass_share"]
    out["goals"] = {
        **GOALS,
        "gini_gbdt_minus_glm_met": None
        if diff is None
        else diff >= GOALS["gini_gbdt_minus_glm_min"],
        "ece_calibrated_met": None if ece is None else ece <= GOALS["ece_calibrated_max"],
        "jeffreys_pass_share_met": None
        if share is None
        else share >= GOALS["jeffreys_pass_share_min"],
    }
    out["pd"] = dict(pd_training)
    out["offers"] = dict(offers)
    return out


def evaluate_task(
    data_dir: Path,
    *,
    pd_bundle: Path | None = None,
    offers_bundle: Path | None = None,
    bundles_out: Path | None = None,
    test_vintages: int = 1,
    test_months: int = 1,
    pd_config: Mapping[str, Any] | None = None,
    offers_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The credit figures (:func:`credit_figures`) on the dataset ``data_dir``.

    Without bundles both models are trained here (into ``bundles_out``) and reported on the
    held-out vintages / months. With a PD bundle its stored training report gives the GBDT vs
    GLM figures (the GLM is not in the bundle) and the bundle itself is re-scored on its
    held-out vintages of ``data_dir`` (``pd_bundle_holdout``); an offers bundle is evaluated
    off-policy on its held-out months of ``data_dir``."""
    import tempfile

    from riskml.models.credit.bundle import load_credit_bundle

    scratch = Path(bundles_out or tempfile.mkdtemp(prefix="credit-evaluate-"))
    extra: dict[str, Any] = {}
    if pd_bundle is None:
        trained = train_pd_task(data_dir, scratch, test_vintages=test_vintages, config=pd_config)
        pd_bundle, pd_training = Path(trained["bundle_dir"]), trained["report"]
    else:
        pd_training = load_credit_bundle(pd_bundle).metrics
        extra["pd_bundle_holdout"] = evaluate_pd_task(pd_bundle, data_dir)["holdout"]
    if offers_bundle is None:
        trained = train_offers_task(
            data_dir, scratch, test_months=test_months, config=offers_config
        )
        offers_bundle, offers = Path(trained["bundle_dir"]), trained["report"]
    else:
        offers = evaluate_offers_task(offers_bundle, data_dir)["report"]
    out = credit_figures(pd_training, offers)
    out.update(extra)
    out["bundles"] = {"pd": str(pd_bundle), "offers": str(offers_bundle)}
    out["data"] = str(data_dir)
    return out
