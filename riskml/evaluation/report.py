"""HTML report with PNG plots for a backtest (PR curves, calibration, CP@k per test day).

Written next to ``REPORT.json``: ``REPORT.html`` and ``REPORT_<plot>.png``. Plots pool the test
windows of every fold (each test day belongs to exactly one fold when ``step >= test days``).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

PLOTS = ("pr_curves", "calibration", "cp_at_k_per_day")


def _pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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

    from riskml.evaluation.metrics import card_precision_at_k

    days = np.unique(day)
    values = []
    for d in days:
        rows = day == d
        values.append(card_precision_at_k(y[rows], score[rows], card[rows], day[rows], k))
    return [str(d) for d in days], values


def write_report(
    report: dict[str, Any], pooled: dict[str, dict[str, np.ndarray]], json_path: Path
) -> dict[str, Path]:
    """Write ``<stem>.html`` and ``<stem>_<plot>.png`` next to ``json_path``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    json_path = Path(json_path)
    out_dir = json_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = json_path.stem
    k = int(report.get("config", {}).get("k", 100))
    paths: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, d in pooled.items():
        r, p = _pr_curve(d["y"], d["score"])
        ap = report["models"][name]["mean"]["ap"]
        ax.plot(r, p, label=f"{name} (mean AP {ap:.3f})", lw=1.2)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (all test windows)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    paths["pr_curves"] = _save(fig, out_dir / f"{stem}_pr_curves.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, d in pooled.items():
        pred, obs = _reliability(d["y"], d["score"])
        ax.plot(pred, obs, marker="o", ms=3, lw=1, label=name)
    hi = max(max(float(d["score"].max()) for d in pooled.values()), 1e-3)
    ax.plot([0, hi], [0, hi], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="mean predicted", ylabel="observed fraud rate", title="Calibration (deciles)")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend(fontsize=8)
    paths["calibration"] = _save(fig, out_dir / f"{stem}_calibration.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, d in pooled.items():
        days, values = cp_at_k_per_day(d["y"], d["score"], d["day"], d["card"], k)
        ax.plot(range(len(days)), values, marker=".", lw=1, label=name)
        ticks = days
    ax.set_xticks(range(len(ticks)), [t[5:] for t in ticks], rotation=60, fontsize=7)
    ax.set(xlabel="test day", ylabel=f"card precision@{k}", title=f"CP@{k} per test day")
    ax.legend(fontsize=8)
    paths["cp_at_k_per_day"] = _save(fig, out_dir / f"{stem}_cp_at_k_per_day.png")

    html_path = out_dir / f"{stem}.html"
    html_path.write_text(_html(report, {n: p.name for n, p in paths.items()}))
    paths["html"] = html_path
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _html(report: dict[str, Any], images: dict[str, str]) -> str:
    e = html.escape
    rows = []
    for name, m in report["models"].items():
        mean, std = m["mean"], m["std"]
        cells = "".join(
            f"<td>{mean[key]:.4f} ± {std[key]:.4f}</td>" for key in ("auc", "ap", "cp_at_k")
        )
        rows.append(f"<tr><th>{e(name)}</th>{cells}</tr>")
    fold_rows = []
    for f in report.get("folds", []):
        fold_rows.append(
            "<tr>"
            + "".join(
                f"<td>{e(str(f.get(key)))}</td>"
                for key in (
                    "fold",
                    "train_start",
                    "train_end",
                    "label_cutoff",
                    "test_start",
                    "test_end",
                    "train_rows",
                    "train_frauds_known",
                    "train_frauds_true",
                    "test_rows",
                    "test_frauds",
                    "excluded_known_card_rows",
                )
            )
            + "</tr>"
        )
    per_fold = []
    for name, m in report["models"].items():
        for r in m["folds"]:
            per_fold.append(
                f"<tr><td>{e(name)}</td><td>{r['fold']}</td><td>{r['auc']:.4f}</td>"
                f"<td>{r['ap']:.4f}</td><td>{r['cp_at_k']:.4f}</td></tr>"
            )
    k = report.get("config", {}).get("k", "k")
    verdict = ""
    if "ensemble_beats_all_on_ap" in report:
        verdict = (
            f"<p>Ranking by mean AP: {e(', '.join(report['ranking_by_ap']))}. Ensemble beats "
            f"every other model on AP: <b>{report['ensemble_beats_all_on_ap']}</b>.</p>"
        )
    imgs = "".join(
        f'<h2>{e(title)}</h2><img src="{e(src)}" alt="{e(title)}">' for title, src in images.items()
    )
    head = "<th>fold</th><th>train start</th><th>train end (gap start)</th><th>label cut-off"
    head += "</th><th>test start</th><th>test end</th><th>train rows</th><th>frauds known</th>"
    head += "<th>frauds true</th><th>test rows</th><th>test frauds</th><th>excluded rows</th>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>riskml backtest</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>Prequential backtest</h1>
<h2>Mean ± std over folds</h2>
<table><tr><th>model</th><th>AUC</th><th>AP</th><th>CP@{e(str(k))}</th></tr>{"".join(rows)}</table>
{verdict}
<h2>Windows and label cut-offs</h2>
<p>Training labels: fraud counts only if label_available_at &lt;= label cut-off (end of the
gap); test labels are the ground truth.</p>
<table><tr>{head}</tr>{"".join(fold_rows)}</table>
<h2>Per fold</h2>
<table><tr><th>model</th><th>fold</th><th>AUC</th><th>AP</th><th>CP@k</th></tr>
{"".join(per_fold)}</table>
{imgs}
</body></html>
"""


# -- the holdout evaluation of one bundle (the pipeline's evaluate task) ----------------


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


def holdout_html(result: dict[str, Any], gate: dict[str, Any] | None = None) -> str:
    """A self-contained HTML report of a holdout evaluation (metrics tables, ROC as a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(result["roc"]["fpr"], result["roc"]["tpr"], label="blend")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC on the backtest window")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode()

    def table(rows: dict[str, Any]) -> str:
        body = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in rows.items()
        )
        return f"<table>{body}</table>"

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>riskml backtest</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td{border:1px solid #ccc;padding:2px 8px}</style></head><body>",
        f"<h1>Backtest: {html.escape(Path(result['bundle']).name)}</h1>",
        f"<p>{result['rows']:,} transactions; threshold {result['threshold']:.4g} "
        "(false-positive rate target)</p>",
    ]
    for name, metrics in result["metrics"].items():
        parts.append(f"<h2>{html.escape(name)}</h2>{table(metrics)}")
    tn, fp = result["confusion"]["matrix"][0]
    fn, tp = result["confusion"]["matrix"][1]
    parts.append(
        f"<h2>Confusion at threshold</h2>{table({'TN': tn, 'FP': fp, 'FN': fn, 'TP': tp})}"
    )
    parts.append(
        "<h2>Recall per fraud scenario</h2>"
        + table(
            {k: f"{v['recall']:.3f} of {v['frauds']}" for k, v in result["per_scenario"].items()}
        )
    )
    if gate is not None:
        parts.append(f"<h2>Gate: {html.escape(gate['decision'])}</h2>{table(gate)}")
    parts.append(f"<img alt='ROC' src='data:image/png;base64,{png}'/></body></html>")
    return "".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))
