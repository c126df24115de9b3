"""Load, render and walk Kubernetes manifests; keep the RayService's serveConfigV2 in sync.

Rendering shells out to ``kubectl kustomize`` (kustomize is built into kubectl), which needs no
cluster. Pod templates are found structurally - any mapping whose ``spec`` holds a
``containers`` list - so templates nested in custom resources (RayService, RayCluster, RayJob,
RayCronJob, ...) are reached exactly like a Deployment's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from riskml.settings import REPO_ROOT

#: Where the manifests live in a checkout.
K8S_DIR = REPO_ROOT / "k8s"
#: The deployable environments (one kustomize overlay each).
OVERLAYS: tuple[str, ...] = ("staging", "prod")
#: The overlays a release deploys with every image pinned by digest (``riskml k8s pin-digests``,
#: checked by ``riskml k8s validate --release``).
RELEASE_OVERLAYS: tuple[str, ...] = ("prod",)
#: Ray Serve config file; the RayService's serveConfigV2 is this document verbatim.
SERVE_CONFIG_PATH = REPO_ROOT / "serving" / "serve_config.yaml"
#: The RayService manifest holding the serveConfigV2 copy.
RAYSERVICE_PATH = K8S_DIR / "base" / "serving" / "rayservice.yaml"
#: The training RayJob template.
RAYJOB_PATH = K8S_DIR / "base" / "training" / "rayjob.yaml"

_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def overlay_path(name: str) -> Path:
    """``k8s/overlays/<name>``; a clear error for an unknown environment."""
    path = K8S_DIR / "overlays" / name
    if not (path / "kustomization.yaml").is_file():
        known = ", ".join(sorted(p.name for p in (K8S_DIR / "overlays").glob("*") if p.is_dir()))
        raise ValueError(f"unknown overlay {name!r} (no {path}/kustomization.yaml); known: {known}")
    return path


def load_yaml_documents(source: Path | str) -> list[dict[str, Any]]:
    """All non-empty YAML documents of a file (``Path``) or a YAML string, each a mapping."""
    text = source.read_text() if isinstance(source, Path) else source
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs: list[dict[str, Any]] = []
    for index, doc in enumerate(yaml.load_all(text, Loader=loader)):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            where = source if isinstance(source, Path) else "<string>"
            raise ValueError(f"{where}: document {index} is a {type(doc).__name__}, not a mapping")
        docs.append(doc)
    return docs


def find_kubectl() -> str | None:
    """Path of ``kubectl`` on PATH, or None."""
    return shutil.which("kubectl")


def render_overlay(path: Path | str, *, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Render a kustomization directory offline (``kubectl kustomize``) into its objects.

    Raises FileNotFoundError when ``path`` holds no kustomization, RuntimeError when kubectl is
    missing or kustomize fails (kubectl's message included).
    """
    path = Path(path)
    if not any((path / name).is_file() for name in ("kustomization.yaml", "kustomization.yml")):
        raise FileNotFoundError(f"no kustomization.yaml in {path}")
    kubectl = find_kubectl()
    if kubectl is None:
        raise RuntimeError("kubectl not found on PATH (needed for `kubectl kustomize`)")
    proc = subprocess.run(
        [kubectl, "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {proc.stderr.strip()}")
    return load_yaml_documents(proc.stdout)


def resource_id(obj: Mapping[str, Any]) -> str:
    """``Kind/namespace/name`` (``Kind/name`` for cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    parts = [str(obj.get("kind", "?"))]
    if meta.get("namespace"):
        parts.append(str(meta["namespace"]))
    parts.append(str(meta.get("name", "?")))
    return "/".join(parts)


def api_group_version(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(group, version) of an object's apiVersion; the core group is ``""``."""
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return group, version


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def format_path(parts: Any) -> str:
    """``['spec', 'containers', 0, 'image']`` -> ``spec.containers[0].image``."""
    out = ""
    for part in parts:
        out = _join(out, part)
    return out


@dataclass(frozen=True)
class PodTemplate:
    """A pod spec found inside an object: where it is, its labels/annotations and the spec."""

    path: str
    metadata: dict[str, Any]
    spec: dict[str, Any]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.metadata.get("labels") or {})


def _is_pod_spec(node: Any) -> bool:
    return isinstance(node, dict) and isinstance(node.get("containers"), list)


def iter_pod_templates(obj: Mapping[str, Any]) -> Iterator[PodTemplate]:
    """Every pod template in ``obj``, at any depth (Deployment, CronJob, RayService, RayJob...).

    A Pod itself yields its own ``spec`` with the object's metadata.
    """

    def walk(node: Any, path: str) -> Iterator[PodTemplate]:
        if isinstance(node, dict):
            spec = node.get("spec")
            if isinstance(spec, dict) and _is_pod_spec(spec):
                yield PodTemplate(_join(path, "spec"), dict(node.get("metadata") or {}), spec)
            for key, value in node.items():
                if key == "spec" and _is_pod_spec(value):
                    continue
                yield from walk(value, _join(path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, _join(path, index))

    yield from walk(obj, "")


def iter_pod_specs(obj: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, podspec)`` for every pod template in ``obj``, including nested Ray templates."""
    for template in iter_pod_templates(obj):
        yield template.path, template.spec


def iter_containers(podspec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(relative path, container)`` for init, regular and ephemeral containers."""
    for key in _CONTAINER_LISTS:
        for index, container in enumerate(podspec.get(key) or []):
            if isinstance(container, dict):
                yield f"{key}[{index}]", container


def iter_ray_cluster_specs(obj: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, RayClusterSpec)`` inside a RayCluster, RayService, RayJob or RayCronJob."""
    group, _ = api_group_version(obj)
    if group != "ray.io":
        return
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "RayCluster":
        yield "spec", spec
    elif kind == "RayService" and isinstance(spec.get("rayClusterConfig"), dict):
        yield "spec.rayClusterConfig", spec["rayClusterConfig"]
    elif kind == "RayJob" and isinstance(spec.get("rayClusterSpec"), dict):
        yield "spec.rayClusterSpec", spec["rayClusterSpec"]
    elif kind == "RayCronJob":
        job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        if isinstance(job_spec.get("rayClusterSpec"), dict):
            yield "spec.jobTemplate.spec.rayClusterSpec", job_spec["rayClusterSpec"]


# --- serveConfigV2 <-> serving/serve_config.yaml ------------------------------------------------

_SERVE_KEY = re.compile(r"^(?P<indent>[ ]*)serveConfigV2:[ ]*(?P<style>[|>][-+0-9]*)?[ ]*$")


def _block_header(text: str) -> str:
    """A literal block scalar header (``|`` or ``|2``) that round-trips ``text`` exactly."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return "|2" if first.startswith(" ") else "|"


def render_serve_config_block(serve_config_text: str, indent: str) -> list[str]:
    """The ``serveConfigV2: |`` lines (with trailing newlines) embedding ``serve_config_text``."""
    if "\t" in serve_config_text:
        raise ValueError("serve config contains tabs; YAML block scalars cannot hold them safely")
    if not serve_config_text.endswith("\n") or serve_config_text.endswith("\n\n"):
        raise ValueError("serve config must end with exactly one newline (clip-chomped block)")
    lines = [f"{indent}serveConfigV2: {_block_header(serve_config_text)}\n"]
    body_indent = indent + "  "
    for line in serve_config_text.splitlines():
        lines.append(f"{body_indent}{line}\n" if line.strip() else "\n")
    return lines


def sync_serve_config(
    rayservice_path: Path = RAYSERVICE_PATH,
    serve_config_path: Path = SERVE_CONFIG_PATH,
    *,
    check: bool = False,
) -> bool:
    """Rewrite the RayService's ``serveConfigV2`` block from the serve config file.

    Returns True when the manifest was (``check=False``) or would be (``check=True``) changed.
    Everything outside the block (comments included) is left as it is.
    """
    serve_text = serve_config_path.read_text()
    lines = rayservice_path.read_text().splitlines(keepends=True)
    start = None
    for index, line in enumerate(lines):
        match = _SERVE_KEY.match(line.rstrip("\n"))
        if match:
            if start is not None:
                raise ValueError(f"{rayservice_path}: more than one serveConfigV2 key")
            start, indent = index, match.group("indent")
    if start is None:
        raise ValueError(f"{rayservice_path}: no `serveConfigV2: |` block found")
    end = start + 1
    while end < len(lines):
        line = lines[end]
        if line.strip() and (len(line) - len(line.lstrip(" "))) <= len(indent):
            break
        end += 1
    # Blank lines that precede the next key belong to the document, not to the block.
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    new_block = render_serve_config_block(serve_text, indent)
    if lines[start:end] == new_block:
        return False
    if not check:
        rayservice_path.write_text("".join(lines[:start] + new_block + lines[end:]))
    return True
