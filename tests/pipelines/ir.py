"""What ``python -m pipelines compile`` writes: one IR file per pipeline and flavour."""

from __future__ import annotations

from pipelines.definitions import FLAVOURS, PIPELINES

#: every product line's pipelines are compiled (a new pipeline adds itself to PIPELINES)
LINE_PIPELINES = {
    "training",
    "retraining",
    "monitoring",
    "pd_training",
    "offer_ranking",
    "disputes_training",
}


def ir_names() -> list[str]:
    """The IR file names, sorted: ``<pipeline>.yaml`` (local) and ``<pipeline>-cluster.yaml``."""
    assert set(PIPELINES) >= LINE_PIPELINES, sorted(LINE_PIPELINES - set(PIPELINES))
    suffix = {"local": "", "cluster": "-cluster"}
    return sorted(f"{name}{suffix[flavour]}.yaml" for name in PIPELINES for flavour in FLAVOURS)
