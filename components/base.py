"""The one decorator and base image every riskml kfp component uses."""

from __future__ import annotations

import functools
import time
from typing import Any

from kfp import dsl

from riskml.orchestration.images import GPU_IMAGE, IMAGE

#: The pinned runtime image of every component (``riskml:<version>-ray<ray>``).
BASE_IMAGE = IMAGE
#: The CUDA variant, set on GPU tasks of the cluster flavour.
GPU_BASE_IMAGE = GPU_IMAGE

#: ``@component`` = ``@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)``: the
#: image (or the local venv) already has kfp and riskml, so nothing is pip-installed at run time.
component: Any = functools.partial(
    dsl.component, base_image=BASE_IMAGE, install_kfp_package=False, packages_to_install=[]
)


def finite_metrics(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a flat dict as floats (kfp's Metrics cannot hold inf/NaN: the
    protobuf JSON encoding of an artifact's metadata rejects them)."""
    import math

    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], float]:
    """``(fn(*args, **kwargs), wall seconds)`` — used by the components and the benchmark."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
