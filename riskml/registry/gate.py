"""The gate: challenger vs the registry's champion, both scored on the same holdout window."""

from __future__ import annotations

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
    from riskml.registry.store import champion, fetch

    y, score, _ = scores_on(challenger_dir, test_dir)
    challenger = float(evaluate(y, score)[metric])
    current = champion(name)
    out: dict[str, Any] = {"metric": metric, "margin": margin, "challenger": challenger}
    if current is None:
        out.update(
            decision="deploy", champion=None, champion_version=None, reason="no champion yet"
        )
        return out
    cy, cscore, _ = scores_on(fetch(current), test_dir)
    incumbent = float(evaluate(cy, cscore)[metric])
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
