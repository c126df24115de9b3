"""Pluggable components: ``{"factory": "module:attr", "kwargs": {...}}`` specs.

Each deployment builds its own component (feature source, tabular scorers, sequence scorer,
calibrators) from a spec inside its replica, so the real implementations (the Feast online store,
the verified bundle's models) and the stand-ins used by tests and benchmarks plug in the same way.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ComponentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


def import_attr(path: str) -> Any:
    """``"package.module:attr.sub"`` -> the object."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:attr', got {path!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def build(spec: ComponentSpec | dict[str, Any]) -> Any:
    spec = spec if isinstance(spec, ComponentSpec) else ComponentSpec.model_validate(spec)
    factory = import_attr(spec.factory)
    if not callable(factory):
        raise TypeError(f"{spec.factory} is not callable")
    return factory(**spec.kwargs)
