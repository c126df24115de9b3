"""The monitor's HTML report: one self-contained page (a jinja2 template, every plot an inline
base64 PNG drawn with matplotlib's Agg backend) from a :class:`MonitorReport` or its JSON.

Sections: the summary (model version, period, windows, the alarm that holds and why); drift
over time, PSI against its window-sized threshold, for the score and the features that
alarmed (the ten that alarmed most; a table lists every one); a heat-map of PSI / threshold
for every feature x window (above 1: the PSI alone crossed its threshold; a window alarms on
PSI *or* JS distance); data health over time (fallback share, unknown customers, decisions
without features, late events, the null rates of the worst features); the decision mix
against the one the reference expects; estimated (with its interval) against realised AP and
recall at the thresholds; and the label-maturity curve.

Only the alarmed / top features are plotted one by one, so a report of 84 features x 30
windows takes about a second.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from riskml.monitoring.monitor import MonitorReport

__all__ = ["render_html", "write_html"]

#: Features plotted one by one (besides the score): the ones that alarmed most.
TOP_FEATURES = 10
#: Null-rate lines in the data-health plot.
WORST_NULLS = 5
_SCORE = "score"
_DECISIONS = ("approve", "review", "decline")
_THRESHOLDS = ("review", "decline")
_DECISION_COLOURS = {"approve": "#2ca02c", "review": "#ff7f0e", "decline": "#d62728"}
_MARGINS = {"left": 0.06, "right": 0.98, "bottom": 0.16, "top": 0.88, "wspace": 0.25}

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
main{max-width:1180px;margin:0 auto;padding:1.5em 2em 3em}
h2{margin-top:1.6em;border-bottom:1px solid #ddd;font-size:1.2em}
.sub,.note,figcaption{color:#555}.note{font-size:.9em;max-width:60em}
.cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{background:#fff;border:1px solid #e2e4e8;border-radius:8px;padding:.6em 1em}
.card b{display:block;font-size:1.4em}.alarm{color:#b42318}.ok{color:#1a7f37}
table{border-collapse:collapse;background:#fff;font-size:.9em;margin:.4em 0 1em}
th,td{border:1px solid #e2e4e8;padding:3px 9px}th{background:#f0f2f5;text-align:left}
td{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.8em 0;background:#fff;border:1px solid #e2e4e8;border-radius:8px;padding:.5em}
figure img{width:100%;height:auto}
</style></head><body><main>
<h1>{{ title }}</h1>
<p class="sub">{{ period }} · generated {{ generated }}</p>
<div class="cards">
{% for label, value, cls in cards %}
<div class="card"><b class="{{ cls }}">{{ value }}</b>{{ label }}</div>
{% endfor %}</div>
{% if reason %}<p class="alarm"><strong>Alarm holds:</strong> {{ reason }}</p>
{% else %}<p class="ok">No alarm holds.</p>{% endif %}
<p class="note">Windows: {{ windowing }}. A feature alarms in a window when its PSI or its
Jensen-Shannon distance exceeds the threshold sized to the window (false-alarm rate
{{ alpha }} per feature per window); an alarm holds when the same feature alarms
{{ hold }} windows running.</p>
{% for section in sections %}
<h2>{{ section.title }}</h2>
{% if section.note %}<p class="note">{{ section.note }}</p>{% endif %}
{% if section.image %}<figure><img alt="{{ section.title }}"
  src="data:image/png;base64,{{ section.image }}"></figure>{% endif %}
{% if section.rows %}<table><tr>{% for h in section.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in section.rows %}<tr><th>{{ row[0] }}</th>
{% for cell in row[1:] %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}
{% endfor %}
</main></body></html>
"""


# -- numbers and series ------------------------------------------------------------------------


def _num(value: Any) -> float:
    """A float, NaN for None / what is not a number (the JSON writes NaN as null)."""
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _show(value: Any, digits: int = 3) -> str:
    v = _num(value)
    if math.isnan(v):
        return "–"
    if v.is_integer() and abs(v) >= 1:
        return f"{int(v):,}"
    return f"{v:.{digits}f}"


def _pct(value: Any) -> str:
    v = _num(value)
    return "–" if math.isnan(v) else f"{100 * v:.1f}%"


def _day(text: str) -> str:
    return dt.datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M")


def _ratio(drift: Mapping[str, Any]) -> float:
    """PSI / its threshold (NaN where undefined)."""
    psi, threshold = _num(drift.get("psi")), _num(drift.get("psi_threshold"))
    return psi / threshold if threshold > 0 else math.nan


def _features(windows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every drift name over the windows, the score first, then in profile order."""
    seen: dict[str, None] = {}
    for w in windows:
        seen.update(dict.fromkeys(w.get("drift", {})))
    names = [n for n in seen if n != _SCORE]
    return ([_SCORE] if _SCORE in seen else []) + names


def _alarmed(windows: Sequence[Mapping[str, Any]]) -> list[tuple[str, int, int, float]]:
    """(feature, windows alarmed, first alarming window, max PSI/threshold) of every feature
    (not the score) that alarmed, most alarms first."""
    out = []
    for name in _features(windows):
        if name == _SCORE:
            continue
        hits = [w["index"] for w in windows if w.get("drift", {}).get(name, {}).get("alarm")]
        if hits:
            ratios = [_ratio(w["drift"][name]) for w in windows if name in w.get("drift", {})]
            out.append((name, len(hits), hits[0], max(ratios, default=math.nan)))
    return sorted(out, key=lambda t: (-t[1], -t[3] if not math.isnan(t[3]) else 0.0, t[0]))


# -- plots ----------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, **margins: float) -> str:
    """The figure as base64 PNG; closes it. Fixed margins, not ``tight_layout`` (which draws
    the figure twice: half the report's time)."""
    plt = _plt()
    fig.subplots_adjust(**{**_MARGINS, **margins})
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax: Any) -> None:
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=7)


def _drift_plot(windows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    plt = _plt()
    cols = 3
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.2 * rows), squeeze=False, sharex=True)
    x_all = [w["index"] for w in windows]
    for ax, name in zip(axes.flat, names, strict=False):
        pts = [(w["index"], w["drift"][name]) for w in windows if name in w.get("drift", {})]
        x = [i for i, _ in pts]
        ax.plot(x, [_num(d["psi"]) for _, d in pts], "o-", ms=3, lw=1.2, label="PSI")
        ax.plot(
            x, [_num(d["psi_threshold"]) for _, d in pts], "--", lw=1, c="#555", label="threshold"
        )
        hit = [(i, _num(d["psi"])) for i, d in pts if d.get("alarm")]
        if hit:
            ax.plot(*zip(*hit, strict=True), "o", ms=5, mfc="none", c="#d62728", label="alarm")
        ax.set_title(name, fontsize=9)
        ax.set_xlim(min(x_all) - 0.5, max(x_all) + 0.5)
        _style(ax)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel("window", fontsize=8)
    height = 2.2 * rows
    return _png(fig, bottom=0.45 / height, top=1 - 0.3 / height, hspace=0.45)


def _heatmap(windows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    plt = _plt()
    grid = np.full((len(names), len(windows)), np.nan)
    for j, w in enumerate(windows):
        drift = w.get("drift", {})
        for i, name in enumerate(names):
            if name in drift:
                grid[i, j] = _ratio(drift[name])
    fig, ax = plt.subplots(figsize=(min(11, 3 + 0.25 * len(windows)), 1.2 + 0.14 * len(names)))
    image = ax.imshow(
        np.clip(grid, 0, 3),
        aspect="auto",
        cmap="RdYlGn_r",
        norm=TwoSlopeNorm(vmin=0, vcenter=1, vmax=3),
        interpolation="nearest",
    )
    ax.set_yticks(range(len(names)), names, fontsize=6)
    step = max(1, len(windows) // 15)
    ax.set_xticks(
        range(0, len(windows), step), [str(w["index"]) for w in windows][::step], fontsize=7
    )
    ax.set_xlabel("window", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="PSI / threshold (clipped at 3)")
    width, height = fig.get_size_inches()
    return _png(fig, left=1.7 / width, right=0.93, bottom=0.45 / height, top=1 - 0.15 / height)


def _health_plot(windows: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    plt = _plt()
    x = [w["index"] for w in windows]
    health = [w.get("health", {}) for w in windows]
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(11, 3))
    for key, label in (
        ("fallback_share", "fallback share"),
        ("unknown_customer_share", "unknown customers"),
        ("without_features_share", "without features"),
    ):
        left.plot(x, [_num(h.get(key)) for h in health], "o-", ms=3, label=label)
    left.set_title("Shares of decisions", fontsize=9)
    left.legend(fontsize=7, frameon=False)
    worst: dict[str, float] = {}
    for h in health:
        for name, rate in (h.get("null_rate") or {}).items():
            worst[name] = max(
                worst.get(name, 0.0), _num(rate) if not math.isnan(_num(rate)) else 0.0
            )
    top = [n for n, r in sorted(worst.items(), key=lambda t: -t[1]) if r > 0][:WORST_NULLS]
    for name in top:
        mid.plot(
            x, [_num((h.get("null_rate") or {}).get(name)) for h in health], "o-", ms=3, label=name
        )
    mid.set_title("Null rates of the worst features", fontsize=9)
    if top:
        mid.legend(fontsize=6, frameon=False)
    else:
        mid.text(0.5, 0.5, "no nulls", ha="center", transform=mid.transAxes)
    right.bar(x, [_num(h.get("late_events")) for h in health], color="#8c564b")
    right.set_title("Late events", fontsize=9)
    for ax in (left, mid, right):
        ax.set_xlabel("window", fontsize=8)
        _style(ax)
    return _png(fig), top


def _decision_plot(windows: Sequence[Mapping[str, Any]], expected: Mapping[str, Any]) -> str:
    plt = _plt()
    x = [w["index"] for w in windows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 2.6))
    for ax, decision in zip(axes, _DECISIONS, strict=True):
        colour = _DECISION_COLOURS[decision]
        shares = [_num(w.get("decision_share", {}).get(decision, 0.0)) for w in windows]
        ax.plot(x, shares, "o-", ms=3, c=colour, label="observed")
        if decision in expected:
            ax.axhline(_num(expected[decision]), ls="--", c="#555", lw=1, label="expected")
        ax.set_title(decision, fontsize=9)
        ax.set_xlabel("window", fontsize=8)
        _style(ax)
    axes[0].legend(fontsize=7, frameon=False)
    return _png(fig)


def _performance_plot(windows: Sequence[Mapping[str, Any]]) -> str:
    plt = _plt()
    x = [w["index"] for w in windows]
    panels = [("average_precision", "AP")] + [
        (f"recall_{t}", f"recall at {t}") for t in _THRESHOLDS
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 2.8))
    for ax, (key, title) in zip(axes, panels, strict=True):
        est = [w.get("estimated") or {} for w in windows]
        ax.plot(x, [_num(e.get(key)) for e in est], "o-", ms=3, label="estimated")
        lo, hi = [_num(e.get(f"{key}_lo")) for e in est], [_num(e.get(f"{key}_hi")) for e in est]
        ax.fill_between(x, lo, hi, alpha=0.2, label="95% interval")
        real = [(w["index"], _num((w.get("realised") or {}).get(key))) for w in windows]
        real = [(i, v) for i, v in real if not math.isnan(v)]
        if real:
            ax.plot(*zip(*real, strict=True), "s", ms=4, c="#d62728", label="realised")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("window", fontsize=8)
        _style(ax)
    axes[0].legend(fontsize=7, frameon=False)
    return _png(fig)


def _maturity_plot(curve: Sequence[Mapping[str, Any]], horizon: float) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.step([c["days"] for c in curve], [_num(c["share"]) for c in curve], where="post")
    ax.axvline(horizon, ls="--", c="#555", lw=1, label=f"maturity ({horizon:g} days)")
    ax.set(xlabel="days after the decision", ylabel="share of fraud labels arrived", ylim=(0, 1.02))
    ax.legend(fontsize=7, frameon=False)
    _style(ax)
    return _png(fig, left=0.12, bottom=0.18)


# -- the page ---------------------------------------------------------------------------------


def _as_dict(report: MonitorReport | Mapping[str, Any]) -> dict[str, Any]:
    return dict(report) if isinstance(report, Mapping) else report.to_json()


def _windowing(config: Mapping[str, Any]) -> str:
    if config.get("size"):
        return f"{int(config['size']):,} decisions each"
    seconds = _num(config.get("every_s"))
    for unit, span in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if not math.isnan(seconds) and seconds >= span and seconds % span == 0:
            return f"{int(seconds // span)} {unit} of event time each"
    return f"{_show(seconds)} s of event time each"


def render_html(report: MonitorReport | Mapping[str, Any]) -> str:
    """The report's page as a string (see :func:`write_html`)."""
    import jinja2

    data = _as_dict(report)
    windows: list[Mapping[str, Any]] = list(data.get("windows") or [])
    config = data.get("config") or {}
    expected = data.get("expected_decision_mix") or {}
    last = windows[-1] if windows else {}
    alarmed = _alarmed(windows)
    sections: list[dict[str, Any]] = []
    if windows:
        names = _features(windows)
        plotted = ([_SCORE] if _SCORE in names else []) + [a[0] for a in alarmed[:TOP_FEATURES]]
        if plotted:
            sections.append(
                {
                    "title": "Drift over time",
                    "note": "PSI per window against its threshold (dashed), for the score and the "
                    f"{min(len(alarmed), TOP_FEATURES)} features that alarmed most; circled: the "
                    "window alarmed (on PSI or JS distance).",
                    "image": _drift_plot(windows, plotted),
                }
            )
        if alarmed:
            held = set(last.get("held") or [])
            sections.append(
                {
                    "title": "Features that alarmed",
                    "header": [
                        "feature",
                        "windows alarmed",
                        "first",
                        "max PSI/threshold",
                        "last shift (sd)",
                        "holds",
                    ],
                    "rows": [
                        [
                            name,
                            str(k),
                            str(first),
                            _show(ratio, 2),
                            _show((last.get("drift", {}).get(name) or {}).get("mean_shift_sd"), 2),
                            "yes" if name in held else "",
                        ]
                        for name, k, first, ratio in alarmed
                    ],
                }
            )
        sections.append(
            {
                "title": "PSI / threshold, every feature x window",
                "note": "Above 1 (red) the PSI alone exceeds its threshold; grey: no figure "
                "(window too small, or the feature absent).",
                "image": _heatmap(windows, names),
            }
        )
        health_png, worst = _health_plot(windows)
        sections.append(
            {
                "title": "Data health",
                "note": "Null rates shown: " + (", ".join(worst) or "none (no nulls)") + ".",
                "image": health_png,
            }
        )
        sections.append(
            {
                "title": "Decision mix",
                "note": "Observed shares per window; dashed: the mix the thresholds gave on the "
                "reference.",
                "image": _decision_plot(windows, expected),
                "header": ["decision", "expected", "last window"],
                "rows": [
                    [d, _pct(expected.get(d)), _pct(last.get("decision_share", {}).get(d, 0.0))]
                    for d in _DECISIONS
                ],
            }
        )
        sections.append(
            {
                "title": "Performance: estimated vs realised",
                "note": "Estimated from the calibrated scores alone (band: the range a realised "
                "value should fall in); realised once a window's labels have matured "
                f"({_show(config.get('maturity_days'), 0)} days).",
                "image": _performance_plot(windows),
            }
        )
    maturity = data.get("label_maturity") or {}
    if maturity.get("curve"):
        sections.append(
            {
                "title": "Label maturity",
                "note": f"{int(maturity.get('frauds', 0)):,} fraud labels: the share that had "
                "arrived within each delay after the decision.",
                "image": _maturity_plot(maturity["curve"], _num(config.get("maturity_days"))),
            }
        )
    estimated = last.get("estimated") or {}
    health = last.get("health") or {}
    holds = bool(data.get("alarm_holds"))
    cards = [
        ("model version", data.get("model_version") or "–", ""),
        ("windows", f"{len(windows):,}", ""),
        ("decisions", f"{sum(int(w.get('decisions', 0)) for w in windows):,}", ""),
        ("features alarmed (any window)", str(len(alarmed)), "alarm" if alarmed else "ok"),
        ("alarm holds", "yes" if holds else "no", "alarm" if holds else "ok"),
        ("estimated AP (last window)", _show(estimated.get("average_precision")), ""),
        ("fallback share (last window)", _pct(health.get("fallback_share")), ""),
    ]
    period = (
        f"{_day(windows[0]['start'])} to {_day(windows[-1]['end'])}" if windows else "no windows"
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    for section in sections:
        section.setdefault("note", "")
        section.setdefault("image", "")
        section.setdefault("rows", [])
        section.setdefault("header", [])
    return env.from_string(_TEMPLATE).render(
        title=f"Model monitoring — {data.get('model_version') or 'unknown model'}",
        period=period,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cards=cards,
        reason=data.get("reason"),
        windowing=_windowing(config),
        alpha=_pct(config.get("alpha")),
        hold=config.get("hold_windows", "–"),
        sections=sections,
    )


def write_html(report: MonitorReport | Mapping[str, Any], out: Path | str) -> Path:
    """Write the report (a :class:`MonitorReport` or its ``to_json()``, e.g. read back from
    ``riskml monitor run --out``) as one self-contained HTML file; the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
