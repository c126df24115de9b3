"""The one runtime image (kfp components, RayJobs, the RayService): name and pinned tag.

The tag is ``<riskml version>-ray<Ray version>`` — the tag the kustomize overlays set
(``k8s/overlays/*/kustomization.yaml``) and the skaffold tag template starts with. A test checks
:data:`RAY_VERSION` against the installed Ray.
"""

from __future__ import annotations

from riskml import __version__

#: Ray inside the image (must equal the installed ``ray.__version__``).
RAY_VERSION = "2.60.0"
#: The pinned tag of both image variants.
IMAGE_TAG = f"{__version__}-ray{RAY_VERSION}"
#: CPU image: kfp components, RayJob head/CPU workers, the RayService.
IMAGE = f"riskml:{IMAGE_TAG}"
#: CUDA image: GPU Ray workers and the GPU kfp task.
GPU_IMAGE = f"riskml-gpu:{IMAGE_TAG}"
#: Image name -> pinned reference, the way kustomize ``images:`` maps them.
PINNED_IMAGES: dict[str, str] = {"riskml": IMAGE, "riskml-gpu": GPU_IMAGE}


def image_repository(ref: str) -> str:
    """``"reg:5000/riskml:tag"`` -> ``"reg:5000/riskml"`` (digest and tag removed)."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref
