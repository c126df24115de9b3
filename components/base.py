"""The one decorator and base image every riskml kfp component uses."""

from __future__ import annotations

import functools
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
