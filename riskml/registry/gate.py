"""The gate: challenger vs the registry's champion, both scored on the same holdout window."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_GATE_METRIC = "average_precision"


def gate(
    challenger_dir: Path,
    test_dir: Path,
    *,
    margin: float = 0.0,
    metric: str = DEFAULT_GATE_METRIC,
    name: str = "fraud",
) -> dict[str, Any]:
    """Challenger vs ``models:/<name>@champion``, both scored on the same backtest window.

    ``deploy`` when there is no champion, or when the challenger's ``metric`` beats the
    champion's by more than ``margin``; else ``keep``. ``champion_version`` is the registry
    version compared against (None: none): deploy goes ahead only if it is still the champion."""
    from riskml.evaluation.holdout import scores_on
    from riskml.metrics import evaluate

    def value(bundle_dir: Path) -> float:
        y, score, _ = scores_on(bundle_dir, test_dir)
        return float(evaluate(y, score)[metric])

    return compare_with_champion(name, value(challenger_dir), value, metric=metric, margin=margin)


def compare_with_champion(
    name: str,
    challenger: float,
    champion_value: Callable[[Path], float],
    *,
    metric: str,
    margin: float = 0.0,
) -> dict[str, Any]:
    """The gate's decision for any product line: ``challenger`` (the challenger's ``metric`` on
    the holdout) vs ``champion_value(<the champion's fetched bundle dir>)`` on the same holdout;
    higher is better. ``deploy`` when there is no champion of ``name`` or the challenger beats
    it by more than ``margin``, else ``keep``; ``champion_version`` is what deploy must still
    find as the champion."""
    from riskml.registry.store import champion, fetch

    current = champion(name)
    out: dict[str, Any] = {"metric": metric, "margin": margin, "challenger": challenger}
    if current is None:
        out.update(
            decision="deploy", champion=None, champion_version=None, reason="no champion yet"
        )
        return out
    incumbent = float(champion_value(fetch(current)))
    better = challenger > incumbent + margin
    out.update(
        decision="deploy" if better else "keep",
        champion=incumbent,
        champion_version=current.version,
        champion_bundle=current.bundle_version,
        reason=f"challenger {challenger:.4f} vs champion {incumbent:.4f} "
        f"(v{current.version}; +{margin:g} needed)",
    )
    return out
