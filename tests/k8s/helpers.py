"""Small lookups over rendered manifests, shared by the k8s tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Doc = dict[str, Any]


def find(docs: list[Doc], kind: str, name: str, namespace: str | None = None) -> Doc:
    """The one object of ``kind``/``name`` (and namespace, when given)."""
    hits = [
        d
        for d in docs
        if d.get("kind") == kind
        and d["metadata"]["name"] == name
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    assert len(hits) == 1, f"expected one {kind}/{name} in {namespace}, found {len(hits)}"
    return hits[0]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def worker_group(cluster_spec: Mapping[str, Any], name: str) -> Doc:
    groups = [g for g in cluster_spec["workerGroupSpecs"] if g["groupName"] == name]
    assert len(groups) == 1, f"worker group {name!r} not found"
    return groups[0]
