"""Deploy a bundle: make it the registry's champion and point the serving app at it.

``local`` records the champion; ``cluster`` also points the RayService's ``serveConfigV2`` app
args at the bundle through the Kubernetes API, and KubeRay rolls the Serve app.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any


class DeployError(ValueError):
    """The deploy cannot go ahead; the message says why."""


def deploy(
    bundle_dir: Path,
    *,
    target: str = "local",
    root: Path | None = None,
    rayservice: str = "riskml-scoring",
    namespace: str = "riskml-serving",
    cluster_bundle_dir: str | None = None,
) -> dict[str, Any]:
    """Make ``bundle_dir`` the registry's champion.

    ``local``: record the champion. ``cluster``: also point the RayService's ``serveConfigV2``
    app args at ``cluster_bundle_dir`` (a path on the serving pods' models volume) through the
    kubernetes client; KubeRay rolls the Serve app."""
    from riskml.models.bundle import verify_bundle
    from riskml.registry.local import set_champion

    manifest = verify_bundle(bundle_dir)
    name, version = str(manifest["name"]), str(manifest["version"])
    record = {
        "name": name,
        "version": version,
        "path": str(Path(bundle_dir).resolve()),
        "deployed_at": dt.datetime.now(dt.UTC).isoformat(),
        "target": target,
    }
    out: dict[str, Any] = dict(record)
    if target == "cluster":
        out["rayservice"] = update_rayservice_bundle(
            cluster_bundle_dir or f"/models/{name}/{version}", name=rayservice, namespace=namespace
        )
    elif target not in ("local", "none"):
        raise DeployError(f"unknown deploy target {target!r}; choose local, cluster or none")
    set_champion(record, root)
    return out


def update_rayservice_bundle(
    bundle_dir: str,
    *,
    name: str = "riskml-scoring",
    namespace: str = "riskml-serving",
    app: str = "riskml",
    api_client: Any = None,
) -> dict[str, Any]:
    """Set ``args.bundle_dir`` of Serve app ``app`` in the RayService's ``serveConfigV2``."""
    import yaml
    from kubernetes import client

    from riskml.orchestration.rayjob import kube_api_client

    api = client.CustomObjectsApi(api_client or kube_api_client())
    obj = api.get_namespaced_custom_object("ray.io", "v1", namespace, "rayservices", name)
    text = (obj.get("spec") or {}).get("serveConfigV2")
    if not text:
        raise DeployError(f"RayService {namespace}/{name} has no serveConfigV2")
    doc = yaml.safe_load(text)
    apps = [a for a in doc.get("applications", []) if a.get("name") == app]
    if not apps:
        raise DeployError(f"RayService {namespace}/{name} has no Serve application {app!r}")
    previous = (apps[0].get("args") or {}).get("bundle_dir")
    apps[0].setdefault("args", {})["bundle_dir"] = bundle_dir
    patch = {"spec": {"serveConfigV2": yaml.safe_dump(doc, sort_keys=False)}}
    api.patch_namespaced_custom_object("ray.io", "v1", namespace, "rayservices", name, patch)
    return {"rayservice": f"{namespace}/{name}", "previous": previous, "bundle_dir": bundle_dir}
