"""Evaluation reports as self-contained HTML pages (every plot an inline base64 PNG).

Two entry points share one set of plots, one number format and one page style:

- :func:`write_report` — the prequential backtest (``riskml backtest``): ``<stem>.html`` next to
  ``<stem>.json``, plus ``<stem>_<plot>.png`` files. Plots pool the test windows of every fold
  (each test day belongs to exactly one fold when ``step >= test days``). Tables: the models
  with the CP@k ceiling (a perfect ranking), the windows, each fold, raw vs calibrated scores,
  the feature-group ablations (with ``--ablations``) and the recall per fraud scenario.
- :func:`holdout_html` — the holdout evaluation of one bundle (the pipeline's ``backtest`` task,
  ``riskml demo``, the pipeline benchmark): the result of
  :func:`riskml.evaluation.holdout.evaluate_holdout`, optionally with the per-model scores of
  :func:`holdout_scores` (curves, calibration, CP@k per day, score distributions), the gate's
  decision and, in the demo, the replay of held-back transactions through the served model.

Numbers are written for people: ``0.873``, ``1,234``, ``12.3 ms``, ``$27,490`` — never
``2.749e+04``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

PLOTS = ("pr_curves", "calibration", "cp_at_k_per_day")

#: One colour per model, in order of appearance (matplotlib's tab10), the blend first.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_DECISION_COLOURS = {"approve": "#2ca02c", "review": "#ff7f0e", "decline": "#d62728"}
_MAX_CURVE_POINTS = 2000


# -- numbers ---------------------------------------------------------------------------------


def fmt(value: Any, unit: str = "") -> str:
    """A number as a person reads it (HTML-escaped): ``0.873``, ``1,234``, ``12.3 ms``,
    ``4.2%``, ``$27,490``, ``0.00042``; ``–`` for None/NaN. ``unit``: ``""``, ``"ratio"``
    (a score in 0..1: ``1.000``, not ``1``), ``"ms"``, ``"s"``, ``"%"`` (a share in 0..1) or
    ``"$"``."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return html.escape(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if unit == "%":
        pct = 100 * v
        return f"{pct:.1f}%" if abs(pct) >= 1 or pct == 0 else f"{_plain(pct, 2)}%"
    if unit == "$":
        return f"-${-v:,.0f}" if v < 0 else f"${v:,.0f}"
    if unit == "ratio":  # a score or rate in 0..1: always three decimals
        return f"{v:.3f}" if abs(v) >= 0.001 or v == 0 else _plain(v, 2)
    if unit in ("ms", "s"):
        return f"{v:,.0f} {unit}" if abs(v) >= 100 else f"{v:,.1f} {unit}"
    if isinstance(value, int) or (v.is_integer() and abs(v) >= 1):
        return f"{int(v):,}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:,.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.001 or a == 0:
        return f"{v:.3f}"
    return _plain(v, 2)


def _plain(v: float, digits: int) -> str:
    """``v`` with ``digits`` significant digits, never in e-notation."""
    import numpy as np

    return str(np.format_float_positional(v, precision=digits, fractional=False, trim="-"))


def _model_label(name: str) -> str:
    if name == "blend":
        return "blend (served)"
    return name.replace("_calibrated", " (calibrated)")


# -- plots (shared by both reports) ------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 8,
            "legend.frameon": False,
        }
    )
    return plt


def _colours(names: Sequence[str]) -> dict[str, str]:
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


def _png(fig: Any, path: Path | None = None) -> str:
    """The figure as base64 PNG (also written to ``path`` when given); closes it."""
    plt = _plt()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    if path is not None:
        Path(path).write_bytes(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _thin(*arrays: np.ndarray, n: int = _MAX_CURVE_POINTS) -> tuple[np.ndarray, ...]:
    import numpy as np

    if len(arrays[0]) <= n:
        return arrays
    idx = np.unique(np.linspace(0, len(arrays[0]) - 1, n).round().astype(int))
    return tuple(a[idx] for a in arrays)


def _pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` at every cut-off of the ranking by ``s``."""
    import numpy as np

    order = np.argsort(-s, kind="stable")
    ys = y[order].astype(np.float64)
    tp = np.cumsum(ys)
    k = np.arange(1, len(ys) + 1)
    precision = tp / k
    recall = tp / max(ys.sum(), 1.0)
    return recall, precision


def _reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bins: mean predicted vs observed fraud rate."""
    import numpy as np

    order = np.argsort(p, kind="stable")
    chunks = np.array_split(order, bins)
    pred = np.array([p[c].mean() for c in chunks if len(c)])
    obs = np.array([y[c].mean() for c in chunks if len(c)])
    return pred, obs


def cp_at_k_per_day(
    y: np.ndarray, score: np.ndarray, day: np.ndarray, card: np.ndarray, k: int
) -> tuple[list[str], list[float]]:
    """Card precision@k of each test day on its own (no carry-over of detected cards)."""
    import numpy as np

    from riskml.metrics import card_precision_at_k

    days = np.unique(day)
    values = []
    for d in days:
        rows = day == d
        values.append(card_precision_at_k(y[rows], score[rows], card[rows], day[rows], k))
    return [str(d) for d in days], values


def roc_points(y: Any, score: Any, max_points: int = 200) -> dict[str, list[float]]:
    """ROC curve thinned to at most ``max_points`` points (kfp's ClassificationMetrics)."""
    import numpy as np
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, score)
    thr = np.where(np.isfinite(thr), thr, 1.0)
    if len(fpr) > max_points:
        idx = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thr = fpr[idx], tpr[idx], thr[idx]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}


#: ``{model: {"y", "score", ["day", "card"]}}`` — what the plots take (the backtest's
#: ``pooled``, or :func:`holdout_scores` reshaped by :func:`_series`).
Series = Mapping[str, Mapping[str, Any]]


def plot_pr(series: Series, ap: Mapping[str, float] | None = None) -> Any:
    plt = _plt()
    colours = _colours(list(series))
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for name, d in series.items():
        r, p = _thin(*_pr_curve(d["y"], d["score"]))
        label = _model_label(name) + (
            f" (AP {fmt(ap[name], 'ratio')})" if ap and name in ap else ""
        )
        ax.plot(r, p, label=label, lw=1.4, color=colours[name])
    ax.set(xlabel="recall (share of frauds caught)", ylabel="precision (share of alerts fraud)")
    ax.set(title="Precision–recall", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return fig


def plot_roc(series: Series, max_fpr: float | None = None) -> Any:
    from sklearn.metrics import roc_curve

    plt = _plt()
    colours = _colours(list(series))
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for name, d in series.items():
        fpr, tpr, _ = roc_curve(d["y"], d["score"])
        fpr, tpr = _thin(fpr, tpr)
        ax.plot(fpr, tpr, label=_model_label(name), lw=1.4, color=colours[name])
    ax.plot([1e-4, 1], [1e-4, 1], ls=":", c="grey", lw=0.8, label="random")
    if max_fpr is not None:
        ax.axvline(max_fpr, ls="--", c="grey", lw=0.8)
        ax.annotate(f" FPR {fmt(max_fpr, '%')}", (max_fpr, 0.03), fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set(xlim=(1e-4, 1), ylim=(0, 1.02), title="ROC (false-positive rate on a log scale)")
    ax.set(xlabel="false-positive rate (genuine transactions flagged)", ylabel="true-positive rate")
    ax.legend(loc="lower right")
    return fig


def plot_roc_points(roc: Mapping[str, Sequence[float]]) -> Any:
    """The blend's ROC from thinned points (a holdout result without per-model scores)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    ax.plot(roc["fpr"], roc["tpr"], label=_model_label("blend"), lw=1.4, color=_PALETTE[0])
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8, label="random")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC", ylim=(0, 1.02))
    ax.legend(loc="lower right")
    return fig


def plot_calibration(series: Series) -> Any:
    plt = _plt()
    colours = _colours(list(series))
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for name, d in series.items():
        pred, obs = _reliability(d["y"], d["score"])
        ax.plot(pred, obs, marker="o", ms=3, lw=1.2, label=_model_label(name), color=colours[name])
    hi = max(max(float(d["score"].max()) for d in series.values()), 1e-3)
    ax.plot([0, hi], [0, hi], ls="--", c="grey", lw=0.8, label="perfectly calibrated")
    ax.set(xlabel="mean predicted fraud probability", ylabel="observed fraud rate")
    ax.set(title="Calibration (10 equal-count bins)")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend(loc="upper left")
    return fig


def plot_cp_per_day(series: Series, k: int) -> Any:
    plt = _plt()
    colours = _colours(list(series))
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    ticks: list[str] = []
    for name, d in series.items():
        days, values = cp_at_k_per_day(d["y"], d["score"], d["day"], d["card"], k)
        ax.plot(
            range(len(days)),
            values,
            marker="o",
            ms=3,
            lw=1.2,
            color=colours[name],
            label=_model_label(name),
        )
        ticks = days
    if series:
        import numpy as np

        # the ceiling: a day with fewer than k fraud cards cannot fill the k checks with fraud
        d = next(iter(series.values()))
        fraud_cards = [
            len(np.unique(d["card"][(d["day"] == day) & (d["y"] == 1)]))
            for day in np.unique(d["day"])
        ]
        ax.plot(
            range(len(fraud_cards)),
            [min(1.0, n / k) for n in fraud_cards],
            ls="--",
            c="grey",
            lw=0.9,
            label="best possible",
        )
    step = max(1, len(ticks) // 14)
    shown = range(0, len(ticks), step)
    ax.set_xticks(list(shown), [ticks[i][5:10] for i in shown], rotation=45, fontsize=8)
    ax.set(xlabel="test day", ylabel=f"card precision@{k}", ylim=(0, 1.02))
    ax.set(title=f"Card precision@{k} per day (the {k} riskiest cards each day)")
    ax.legend(loc="best")
    return fig


def plot_scenarios(per_scenario: Mapping[str, Mapping[str, Any]]) -> Any:
    plt = _plt()
    names = sorted(per_scenario, key=lambda n: per_scenario[n]["recall"])
    fig, ax = plt.subplots(figsize=(5.6, max(2.2, 0.45 * len(names) + 1.2)))
    recalls = [float(per_scenario[n]["recall"]) for n in names]
    ax.barh(range(len(names)), recalls, color=_PALETTE[0])
    for i, n in enumerate(names):
        ax.annotate(
            f" {fmt(recalls[i], 'ratio')} of {fmt(per_scenario[n]['frauds'])}",
            (recalls[i], i),
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.set(xlim=(0, 1.18), xlabel="recall at the threshold", title="Recall per fraud scenario")
    ax.grid(axis="y", visible=False)
    return fig


def plot_score_distribution(y: np.ndarray, score: np.ndarray, threshold: float | None) -> Any:
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    lo = max(float(np.min(score[score > 0])) if (score > 0).any() else 1e-6, 1e-6)
    bins = np.logspace(np.log10(lo), 0, 50)
    clipped = np.clip(score, lo, 1.0)
    for label, mask, colour in (("genuine", y == 0, "#7f7f7f"), ("fraud", y == 1, "#d62728")):
        if mask.any():
            ax.hist(
                clipped[mask],
                bins=bins,
                weights=np.full(int(mask.sum()), 1.0 / mask.sum()),
                histtype="stepfilled",
                alpha=0.45,
                color=colour,
                label=f"{label} ({fmt(int(mask.sum()))})",
            )
    if threshold is not None:
        ax.axvline(threshold, ls="--", c="black", lw=0.9)
        ax.annotate(" threshold", (threshold, ax.get_ylim()[1] * 0.7), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="blended fraud probability (log scale)", ylabel="share of the class")
    ax.set(title="Score distribution by class")
    ax.legend(loc="upper left")
    return fig


def plot_decisions(decisions: Mapping[str, int], fraud: Mapping[str, int]) -> Any:
    """Genuine and fraud transactions per decision, side by side (log scale: the mix is
    lopsided by design)."""
    plt = _plt()
    names = [n for n in ("approve", "review", "decline") if n in decisions]
    frauds = [fraud.get(n, 0) for n in names]
    genuine = [decisions[n] - f for n, f in zip(names, frauds, strict=True)]
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    width = 0.38
    for offset, counts, colour, label in (
        (-width / 2, genuine, "#7f7f7f", "genuine"),
        (width / 2, frauds, "#d62728", "fraud"),
    ):
        xs = [i + offset for i in range(len(names))]
        ax.bar(xs, [max(c, 0) for c in counts], width, color=colour, alpha=0.8, label=label)
        for x, c in zip(xs, counts, strict=True):
            ax.annotate(fmt(c), (x, max(c, 0.6)), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    top = max([*genuine, *frauds, 1])
    ax.set_ylim(0.5, top * 4)
    ax.set(ylabel="transactions (log scale)", title="Decisions on the replayed transactions")
    ax.legend(loc="upper right")
    ax.grid(axis="x", visible=False)
    return fig


def plot_latency(latencies_ms: Sequence[float], percentiles: Mapping[str, float]) -> Any:
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    values = np.asarray(latencies_ms, dtype=float)
    hi = float(np.percentile(values, 99.5)) if len(values) else 1.0
    ax.hist(np.clip(values, 0, hi), bins=60, color=_PALETTE[0], alpha=0.75)
    for i, key in enumerate(("p50", "p95", "p99")):
        if key in percentiles and math.isfinite(percentiles[key]):
            ax.axvline(percentiles[key], ls="--", c="black", lw=0.8)
            ax.annotate(
                f" {key} {fmt(percentiles[key], 'ms')}",
                (percentiles[key], ax.get_ylim()[1] * (0.92 - 0.1 * i)),
                fontsize=8,
            )
    ax.set(xlabel="end-to-end latency seen by the client (ms)", ylabel="requests")
    ax.set(title="Decision latency over HTTP")
    return fig


# -- the page --------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
  background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:1.5em 2em 3em}
h1{margin:.2em 0 .1em;font-size:1.6em}
h2{margin:1.6em 0 .4em;font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
p.sub{color:#555;margin:.2em 0 1em}
p.note{color:#555;font-size:.9em;max-width:60em}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{background:#fff;border:1px solid #e2e4e8;border-radius:8px;padding:.6em 1em;
  min-width:9em}
.card .v{font-size:1.5em;font-weight:600}
.card .k{color:#666;font-size:.85em}
.deploy{color:#1a7f37}.keep{color:#9a6700}
table{border-collapse:collapse;background:#fff;margin:.4em 0 1em;font-size:.92em}
th,td{border:1px solid #e2e4e8;padding:4px 10px}
th{background:#f0f2f5;text-align:left;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1em}
figure{margin:0;background:#fff;border:1px solid #e2e4e8;border-radius:8px;padding:.5em}
figure img{width:100%;height:auto;display:block}
figcaption{color:#555;font-size:.85em;padding:.3em .4em 0}
footer{color:#888;font-size:.8em;margin-top:3em}
"""


def _page(title: str, subtitle: str, body: Sequence[str]) -> str:
    e = html.escape
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{e(title)}</h1><p class='sub'>{subtitle}</p>"
        + "".join(body)
        + f"<footer>riskml · generated {stamp}</footer></main></body></html>\n"
    )


def _figure(png: str, alt: str, caption: str = "") -> str:
    e = html.escape
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure><img alt='{e(alt)}' src='data:image/png;base64,{png}'>{cap}</figure>"


def _grid(*figures: str) -> str:
    return "<div class='grid'>" + "".join(figures) + "</div>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """A table of already formatted (escaped) cells; columns from ``numeric_from`` right-aligned.
    A cell starting with ``<b>`` is marked best."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if i < numeric_from:
                cells.append(f"<th>{cell}</th>")
            else:
                cls = "n best" if cell.startswith("<b>") else "n"
                cells.append(f"<td class='{cls}'>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _kv_table(rows: Mapping[str, str]) -> str:
    """Label / value rows (values already formatted)."""
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _card(value: str, label: str, cls: str = "") -> str:
    c = f" {cls}" if cls else ""
    return f"<div class='card'><div class='v{c}'>{value}</div><div class='k'>{label}</div></div>"


# -- the prequential backtest ------------------------------------------------------------------


def write_report(
    report: dict[str, Any], pooled: dict[str, dict[str, np.ndarray]], json_path: Path
) -> dict[str, Path]:
    """Write ``<stem>.html`` (self-contained) and ``<stem>_<plot>.png`` next to ``json_path``;
    return the paths (``pr_curves``, ``calibration``, ``cp_at_k_per_day``, ``html``)."""
    json_path = Path(json_path)
    out_dir = json_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = json_path.stem
    k = int(report.get("config", {}).get("k", 100))
    paths = {name: out_dir / f"{stem}_{name}.png" for name in PLOTS}
    ap = {name: m["mean"]["ap"] for name, m in report["models"].items() if name in pooled}
    images = {
        "pr_curves": _png(plot_pr(pooled, ap), paths["pr_curves"]),
        "calibration": _png(plot_calibration(pooled), paths["calibration"]),
        "cp_at_k_per_day": _png(plot_cp_per_day(pooled, k), paths["cp_at_k_per_day"]),
    }
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(_backtest_html(report, images, k))
    return {**paths, "html": html_path}


def _backtest_html(report: dict[str, Any], images: dict[str, str], k: int) -> str:
    e = html.escape
    metrics = (("auc", "ROC AUC"), ("ap", "Average precision"), ("cp_at_k", f"CP@{k}"))
    best = {key: max(m["mean"][key] for m in report["models"].values()) for key, _ in metrics}
    rows = []
    for name, m in report["models"].items():
        cells = [e(name)]
        for key, _ in metrics:
            text = f"{fmt(m['mean'][key], 'ratio')} ± {fmt(m['std'][key], 'ratio')}"
            cells.append(f"<b>{text}</b>" if m["mean"][key] == best[key] else text)
        rows.append(cells)
    ceiling = report.get("cp_at_k_ceiling")
    if ceiling is not None:
        ceiling_text = f"{fmt(ceiling['mean'], 'ratio')} ± {fmt(ceiling['std'], 'ratio')}"
        rows.append([f"perfect ranking (CP@{k} ceiling)", "–", "–", ceiling_text])
    body = [
        "<h2>Models, mean ± std over folds</h2>",
        "<p class='note'>Each fold trains on the past (with only the labels known by then) and "
        "tests on the following days; bold marks the best mean.</p>",
        _table(["model", *(label for _, label in metrics)], rows),
    ]
    if ceiling is not None:
        body.append(_ceiling_note(report, k))
    if "ensemble_beats_all_on_ap" in report:
        verdict = "yes" if report["ensemble_beats_all_on_ap"] else "no"
        body.append(
            f"<p>Ranking by mean AP: {e(', '.join(report['ranking_by_ap']))}. The ensemble "
            f"beats every other model on AP: <b>{verdict}</b>.</p>"
        )
    body.append(
        _grid(
            _figure(images["pr_curves"], "precision-recall curves", "All test windows pooled."),
            _figure(
                images["calibration"],
                "calibration",
                "Points on the dashed line: predicted probabilities match observed fraud rates.",
            ),
            _figure(images["cp_at_k_per_day"], f"CP@{k} per day"),
        )
    )
    fold_cols: tuple[tuple[str, str], ...] = (
        ("fold", "fold"),
        ("train_start", "train start"),
        ("train_end", "train end (gap start)"),
        ("label_cutoff", "label cut-off"),
        ("test_start", "test start"),
        ("test_end", "test end"),
        ("train_rows", "train rows"),
        ("train_frauds_known", "frauds known"),
        ("train_frauds_true", "frauds true"),
        ("test_rows", "test rows"),
        ("test_frauds", "test frauds"),
        ("excluded_known_card_rows", "excluded rows"),
    )
    if any("cp_at_k_ceiling" in f for f in report.get("folds", [])):
        fold_cols += (
            ("cp_at_k_ceiling", f"CP@{k} ceiling"),
            ("max_fraud_cards_per_day", "max fraud cards / day"),
        )
    fold_rows = [
        [
            fmt(f.get("fold")),
            *(
                fmt(f.get(key), "ratio") if key == "cp_at_k_ceiling" else _when_or_num(f.get(key))
                for key, _ in fold_cols[1:]
            ),
        ]
        for f in report.get("folds", [])
    ]
    body += [
        "<h2>Windows and label cut-offs</h2>",
        "<p class='note'>Training labels: a fraud counts only if it was reported by the label "
        "cut-off (the end of the gap); test labels are the ground truth.</p>",
        _table([label for _, label in fold_cols], fold_rows),
        "<h2>Per fold</h2>",
        _table(
            ["model", "fold", "ROC AUC", "Average precision", f"CP@{k}"],
            [
                [
                    e(name),
                    fmt(r["fold"]),
                    *(fmt(r[key], "ratio") for key in ("auc", "ap", "cp_at_k")),
                ]
                for name, m in report["models"].items()
                for r in m["folds"]
            ],
        ),
    ]
    if report.get("calibration"):
        body += _calibration_section(report["calibration"], k)
    if report.get("ablations"):
        body += _ablation_section(report["ablations"], k)
    if report.get("scenarios", {}).get("recall"):
        body += _scenario_section(report["scenarios"], k)
    folds = report.get("folds", [])
    sub = f"{len(report['models'])} models"
    if folds:
        sub += f" · {len(folds)} folds · tests {_when(folds[0]['test_start'])} → "
        sub += _when(folds[-1]["test_end"])
    return _page("Prequential backtest", e(sub), body)


def _ceiling_note(report: Mapping[str, Any], k: int) -> str:
    config = report.get("config", {})
    text = (
        f"The CP@{k} ceiling is the CP@{k} of a perfect ranking of the same test rows (the "
        f"labels as scores): a day with fewer than {k} fraud cards cannot fill the {k} checks."
    )
    if config.get("exclude_known_cards"):
        window = config.get("known_cards_window", "train")
        where = {
            "all": "anywhere in the history",
            "train": "since the fold's training start",
        }.get(str(window), f"in the {window} days before")
        text += (
            " Test rows of cards with a fraud already known at 00:00 of their day (a fraud "
            f"{where}, its label available by then) are left out, which lowers the models' "
            "CP@k and the ceiling alike."
        )
    return f"<p class='note'>{html.escape(text)}</p>"


def _calibration_section(rows: Sequence[Mapping[str, Any]], k: int) -> list[str]:
    distinct = [k for k in rows[0] if k.startswith("distinct_top") and k.endswith("_raw")]
    top = distinct[0].removeprefix("distinct_top").removesuffix("_raw") if distinct else ""
    table_rows = []
    for r in rows:
        cells = [html.escape(str(r["model"])), fmt(r["fold"])]
        for key, unit in (("ap", "ratio"), ("cp", "ratio"), (f"distinct_top{top}", "")):
            raw, cal = r.get(f"{key}_raw"), r.get(f"{key}_calibrated")
            cells += [fmt(raw, unit), fmt(cal, unit)]
        table_rows.append(cells)
    return [
        "<h2>Raw vs calibrated scores</h2>",
        "<p class='note'>Each trained model's raw probabilities and its calibrated ones (what is "
        f"served and compared above) on the same test rows. Calibration should keep the "
        f"ranking: AP and CP@{k} equal, and as many distinct values among the "
        f"{html.escape(top)} highest scores (ties make the top of the ranking arbitrary).</p>",
        _table(
            [
                "model",
                "fold",
                "AP raw",
                "AP calibrated",
                f"CP@{k} raw",
                f"CP@{k} calibrated",
                f"distinct in top {top} raw",
                f"distinct in top {top} calibrated",
            ],
            table_rows,
            numeric_from=2,
        ),
    ]


def _ablation_section(ablations: Mapping[str, Any], k: int) -> list[str]:
    rows = ablations["folds"]
    folds = sorted({int(r["fold"]) for r in rows})
    reference = ablations.get("reference_ap", {})
    model = html.escape(str(ablations.get("reference", "xgboost")))
    table_rows = [
        [
            f"none (the full {model})",
            "0",
            *(fmt(v, "ratio") for v in reference.get("folds", [])),
            fmt(reference.get("mean"), "ratio"),
            "–",
            "–",
        ]
    ]
    top_drop = max(m["ap_drop"] for m in ablations["mean"].values())
    for group, columns in ablations["groups"].items():
        by_fold = {int(r["fold"]): r for r in rows if r["group"] == group}
        mean = ablations["mean"][group]
        drop = fmt(mean["ap_drop"], "ratio")
        table_rows.append(
            [
                html.escape(group.replace("_", " ")),
                fmt(len(columns)),
                *(fmt(by_fold[f]["ap"], "ratio") if f in by_fold else "–" for f in folds),
                fmt(mean["ap"], "ratio"),
                f"<b>{drop}</b>" if mean["ap_drop"] == top_drop else drop,
                fmt(mean["cp_at_k_drop"], "ratio"),
            ]
        )
    return [
        "<h2>Feature-group ablations</h2>",
        "<p class='note'>XGBoost retrained on each fold without one group of features (its "
        "columns removed), by the same training path; AP per fold, and the mean drop against "
        "the full model (positive: the group helps; bold: the group it misses most).</p>",
        _table(
            [
                "group removed",
                "columns",
                *(f"AP fold {f}" for f in folds),
                "mean AP",
                "mean AP drop",
                f"mean CP@{k} drop",
            ],
            table_rows,
        ),
    ]


def _scenario_label(name: str) -> str:
    prefix = "xgboost_without_"
    if name.startswith(prefix):
        return f"xgboost without {name.removeprefix(prefix).replace('_', ' ')}"
    if name == "perfect":
        return "perfect ranking"
    return name


def _scenario_section(scenarios: Mapping[str, Any], k: int) -> list[str]:
    recall = scenarios["recall"]
    models = list(recall)
    frauds = scenarios.get("frauds", {})
    names = sorted({s for r in recall.values() for s in r})
    table_rows = [
        [
            html.escape(name.replace("_", " ")),
            fmt(frauds.get(name)),
            *(fmt(recall[m].get(name), "ratio") for m in models),
        ]
        for name in names
    ]
    return [
        "<h2>Recall per fraud scenario</h2>",
        f"<p class='note'>At the alert budget of CP@{k}: the share of the scenario's fraud "
        f"test rows (all folds) whose card is among the {k} cards alerted on the row's day, or "
        "was detected on an earlier test day of the fold. Fraud rows without a scenario "
        "(imported data) count as unlabelled.</p>",
        _table(["fraud scenario", "fraud rows", *(_scenario_label(m) for m in models)], table_rows),
    ]


def _when(value: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD`` (``HH:MM`` added when not midnight)."""
    text = str(value)
    if len(text) >= 16 and text[10] in "T ":
        day, time = text[:10], text[11:16]
        return html.escape(day if time == "00:00" else f"{day} {time}")
    return html.escape(text)


def _when_or_num(value: Any) -> str:
    return _when(value) if isinstance(value, str) else fmt(value)


# -- the holdout evaluation of one bundle -------------------------------------------------------


def holdout_scores(bundle_dir: Path, test_dir: Path) -> dict[str, Any]:
    """What the holdout report's plots need, from one scoring of the test set: labels, day,
    card, fraud scenario and the blended and each calibrated model's score —
    ``{"y", "day", "card", "scenario", "models": {"blend": ..., "<m>_calibrated": ...}}``."""
    import numpy as np

    from riskml.models.bundle import load_bundle, score_inputs
    from riskml.models.features import extract_inputs
    from riskml.training.dataset import read_training_set

    frame, _ = read_training_set(Path(test_dir))
    bundle = load_bundle(Path(bundle_dir))
    inputs = extract_inputs(frame, bundle.spec)
    if inputs.y is None or inputs.ts is None or inputs.customer_id is None:
        raise ValueError(f"{test_dir} lacks labels, timestamps or customers for a report")
    scores = score_inputs(bundle, inputs)
    models = {"blend": np.asarray(scores["score"])}
    models.update({f"{m}_calibrated": np.asarray(scores[f"{m}_calibrated"]) for m in bundle.models})
    scenario = (
        np.asarray(frame["fraud_scenario"].to_numpy()).astype(str)
        if "fraud_scenario" in frame.columns
        else np.full(len(inputs.y), "", dtype=object)
    )
    return {
        "y": np.asarray(inputs.y).astype(np.int8),
        "day": inputs.ts.astype("datetime64[D]"),
        "card": np.asarray(inputs.customer_id),
        "scenario": scenario,
        "models": models,
    }


def _series(scores: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    shared = {k: scores[k] for k in ("y", "day", "card")}
    return {name: {**shared, "score": s} for name, s in scores["models"].items()}


def _find(metrics: Mapping[str, float], prefix: str) -> str | None:
    return next((key for key in metrics if key.startswith(prefix)), None)


#: Columns of the model comparison: (metric key or prefix, label, unit, higher is better).
_COMPARE = (
    ("roc_auc", "ROC AUC", "ratio", True),
    ("average_precision", "Average precision", "ratio", True),
    ("recall_at_fpr_", "Recall @ FPR", "ratio", True),
    ("card_precision_at_", "CP@k", "ratio", True),
    ("ece", "ECE", "", False),
    ("brier", "Brier", "", False),
    ("dollar_fraud_amount_caught_share", "Fraud $ caught", "%", True),
    ("dollar_false_declines", "False declines", "", False),
    ("dollar_net_savings", "Net savings", "$", True),
)


def _comparison(metrics: Mapping[str, Mapping[str, float]]) -> str:
    first = next(iter(metrics.values()))
    columns = []
    for key, label, unit, higher in _COMPARE:
        found = _find(first, key)
        if found is None:
            continue
        if key == "recall_at_fpr_":
            label = f"Recall @ {fmt(float(found.removeprefix(key)), '%')} FPR"
        elif key == "card_precision_at_":
            label = f"CP@{found.removeprefix(key)}"
        columns.append((found, label, unit, higher))
    rows = []
    for name, m in metrics.items():
        cells = [html.escape(_model_label(name))]
        for found, _, unit, higher in columns:
            values = [v[found] for v in metrics.values() if found in v and math.isfinite(v[found])]
            value = m.get(found)
            text = fmt(value, unit)
            is_best = (
                len(set(values)) > 1  # no winner among equals
                and value is not None
                and math.isfinite(value)
                and value == (max(values) if higher else min(values))
            )
            cells.append(f"<b>{text}</b>" if is_best else text)
        rows.append(cells)
    return _table(["model", *(label for _, label, _, _ in columns)], rows)


def _gate_section(gate: Mapping[str, Any]) -> list[str]:
    decision = str(gate.get("decision", "?"))
    metric = str(gate.get("metric", "the gate metric")).replace("_", " ")
    champion = gate.get("champion")
    rows = {
        "decision": f"<b class='{html.escape(decision)}'>{html.escape(decision)}</b>",
        f"challenger ({metric})": fmt(gate.get("challenger"), "ratio"),
        f"champion ({metric})": "none yet" if champion is None else fmt(champion, "ratio"),
    }
    if gate.get("reason"):
        rows["reason"] = html.escape(str(gate["reason"]))
    return [
        "<h2>Gate: challenger vs champion</h2>",
        "<p class='note'>Both models are scored on the same held-back window; the challenger "
        "replaces the champion only if it is better by more than the margin.</p>",
        _kv_table(rows),
    ]


def _replay_section(replay: Mapping[str, Any]) -> list[str]:
    lat = replay.get("latency_ms", {})
    decisions = dict(replay.get("decisions", {}))
    total = sum(decisions.values()) or 1
    fraud_by = {
        "decline": int(replay.get("fraud_declined", 0)),
        "review": int(replay.get("fraud_reviewed", 0)),
    }
    fraud_by["approve"] = int(replay.get("fraud", 0)) - fraud_by["decline"] - fraud_by["review"]
    rows = {
        "replayed": f"{fmt(replay.get('replayed'))} transactions at "
        f"{fmt(replay.get('rps_achieved'))}/s (target {fmt(replay.get('rps_target'))}/s)",
        "window": f"{_when(replay.get('replay_from', ''))} → {_when(replay.get('replay_to', ''))}",
        "errors": fmt(replay.get("errors")),
        "decision mix": ", ".join(
            f"{html.escape(k)} {fmt(v)} ({fmt(v / total, '%')})" for k, v in decisions.items()
        ),
        "fraud caught": f"{fmt(replay.get('fraud_declined'))} declined + "
        f"{fmt(replay.get('fraud_reviewed'))} sent to review, of {fmt(replay.get('fraud'))}",
        "good customers stopped": fmt(replay.get("good_declined_or_reviewed_share"), "%"),
        "latency p50 / p95 / p99 / max": " / ".join(
            fmt(lat.get(q), "ms") for q in ("p50", "p95", "p99", "max")
        ),
    }
    stages = replay.get("server_stage_p50_ms") or {}
    if stages:
        rows["server stages, p50"] = ", ".join(
            f"{html.escape(k)} {fmt(v, 'ms')}" for k, v in stages.items()
        )
    sources = replay.get("decision_sources") or {}
    if sources:
        rows["decided by"] = ", ".join(f"{html.escape(k)} {fmt(v)}" for k, v in sources.items())
    out = [
        "<h2>Served: the held-back transactions replayed over HTTP</h2>",
        "<p class='note'>The bundle behind the Ray Serve app, fed the held-back transactions in "
        "time order at a fixed rate; its online features move forward with the replay.</p>",
        _kv_table(rows),
    ]
    figures = []
    if decisions:
        figures.append(
            _figure(
                _png(plot_decisions(decisions, fraud_by)),
                "decision mix",
                "Fraud approved is fraud missed; genuine declined or reviewed is friction.",
            )
        )
    samples = replay.get("latency_samples_ms")
    if samples:
        figures.append(_figure(_png(plot_latency(samples, lat)), "latency histogram"))
    if figures:
        out.append(_grid(*figures))
    return out


def holdout_html(
    result: dict[str, Any],
    gate: Mapping[str, Any] | None = None,
    *,
    scores: Mapping[str, Any] | None = None,
    replay: Mapping[str, Any] | None = None,
    max_fpr: float | None = None,
    k: int = 100,
) -> str:
    """A self-contained HTML report of a holdout evaluation (``evaluate_holdout``'s result):
    headline cards, the model comparison, confusion at the threshold, recall per fraud scenario
    and — with ``scores`` (:func:`holdout_scores`) — PR and ROC curves, calibration, CP@``k``
    per day and the score distribution by class; plus the gate's decision and the demo's
    replay (decision mix, latency histogram) when given."""
    e = html.escape
    metrics = result["metrics"]
    blend = metrics["blend"]
    bundle = Path(result["bundle"])
    rows = int(result["rows"])
    tn, fp = result["confusion"]["matrix"][0]
    fn, tp = result["confusion"]["matrix"][1]
    frauds = fn + tp
    recall_key = _find(blend, "recall_at_fpr_")
    if max_fpr is None and recall_key is not None:
        max_fpr = float(recall_key.removeprefix("recall_at_fpr_"))
    cp_key = _find(blend, "card_precision_at_")
    if cp_key is not None:
        k = int(cp_key.removeprefix("card_precision_at_"))

    sub = f"bundle <b>{e(bundle.parent.name)}</b> version <b>{e(bundle.name)}</b> · "
    if scores is not None and len(scores["day"]):
        sub += f"held-back days {e(str(scores['day'].min()))} → {e(str(scores['day'].max()))} · "
    sub += f"{fmt(rows)} transactions, {fmt(frauds)} frauds ({fmt(frauds / max(rows, 1), '%')})"

    cards = [
        _card(fmt(blend.get("average_precision"), "ratio"), "average precision (blend)"),
        _card(fmt(blend.get("roc_auc"), "ratio"), "ROC AUC (blend)"),
    ]
    if recall_key is not None:
        cards.append(_card(fmt(blend[recall_key], "ratio"), f"recall @ {fmt(max_fpr, '%')} FPR"))
    if cp_key is not None:
        cards.append(_card(fmt(blend[cp_key], "ratio"), f"card precision@{k}"))
    if gate is not None:
        decision = str(gate.get("decision", "?"))
        cards.append(_card(e(decision), "gate decision", cls=e(decision)))
    if replay is not None:
        cards.append(_card(fmt(replay.get("latency_ms", {}).get("p99"), "ms"), "served p99"))

    body = [
        "<div class='cards'>" + "".join(cards) + "</div>",
        "<h2>Models compared</h2>",
        "<p class='note'>The served score is the blend of the calibrated models. All scored on "
        "the held-back window, which no model saw in training. Bold marks the best in each "
        f"column; dollar figures at the threshold that flags {fmt(max_fpr, '%')} of genuine "
        "transactions.</p>",
        _comparison(metrics),
        f"<h2>At the threshold ({fmt(result['threshold'])})</h2>",
        _table(
            ["", "predicted genuine", "predicted fraud"],
            [["genuine", fmt(tn), fmt(fp)], ["fraud", fmt(fn), fmt(tp)]],
        ),
    ]
    if scores is not None:
        series = _series(scores)
        ap = {name: metrics[name]["average_precision"] for name in series if name in metrics}
        body += [
            "<h2>Ranking</h2>",
            _grid(
                _figure(
                    _png(plot_pr(series, ap)),
                    "precision-recall curves",
                    "Further up and right is better; the served blend should lead.",
                ),
                _figure(
                    _png(plot_roc(series, max_fpr)),
                    "ROC curves",
                    "The dashed line is the operating false-positive rate.",
                ),
            ),
            "<h2>Calibration and score distribution</h2>",
            _grid(
                _figure(
                    _png(plot_calibration(series)),
                    "calibration (reliability) plot",
                    "Points on the dashed line: a predicted 2% means 2% of those are fraud.",
                ),
                _figure(
                    _png(
                        plot_score_distribution(
                            scores["y"], scores["models"]["blend"], result["threshold"]
                        )
                    ),
                    "score distribution by class",
                    "Frauds should sit right of the threshold, genuine transactions left.",
                ),
            ),
            "<h2>Day by day and by scenario</h2>",
            _grid(
                _figure(
                    _png(plot_cp_per_day(series, k)),
                    f"CP@{k} per day",
                    f"Share of fraud cards among the {k} cards an analyst team would check; "
                    "the dashed line is the most each day's fraud cards allow.",
                ),
                _figure(_png(plot_scenarios(result["per_scenario"])), "recall per fraud scenario")
                if result["per_scenario"]
                else "",
            ),
        ]
    else:
        body += [
            "<h2>Ranking and scenarios</h2>",
            _grid(
                _figure(_png(plot_roc_points(result["roc"])), "ROC curve"),
                _figure(_png(plot_scenarios(result["per_scenario"])), "recall per fraud scenario")
                if result["per_scenario"]
                else "",
            ),
        ]
    if result["per_scenario"]:
        body.append(
            _table(
                ["fraud scenario", "frauds", "recall at the threshold"],
                [
                    [e(name.replace("_", " ")), fmt(v["frauds"]), fmt(v["recall"], "ratio")]
                    for name, v in result["per_scenario"].items()
                ],
            )
        )
    if gate is not None:
        body += _gate_section(gate)
    if replay is not None:
        body += _replay_section(replay)
    return _page("Fraud model report", sub, body)
