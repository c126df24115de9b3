"""Offline schema validation of rendered manifests - no API server needed.

- Core kinds (Namespace, NetworkPolicy, Role, StatefulSet, ...): kubernetes-validate in strict
  mode (unknown fields are errors) against :data:`K8S_VERSION`.
- Custom resources (RayService, RayJob, RayCluster, NodePool, EC2NodeClass, ...): the
  ``openAPIV3Schema`` of their CRDs, found through ``RISKML_CRD_DIR`` (settings.crd_dir) plus
  the CRDs the repository vendors under ``k8s/crds/`` (:data:`VENDORED_CRD_DIR`: kinds the
  shared set lacks, e.g. prometheus-operator's PrometheusRule; ``RISKML_CRD_DIR`` wins for a
  kind both hold), converted to JSON Schema with the API server's structural-schema semantics:
  unknown fields are rejected unless ``x-kubernetes-preserve-unknown-fields``,
  ``x-kubernetes-int-or-string`` accepts both, ``nullable`` admits null. CEL rules
  (``x-kubernetes-validations``) need a CEL engine and are not evaluated here;
  :func:`crd_cel_rule_count` reports how many exist.
- skaffold.yaml: the skaffold JSON schema found through ``RISKML_SCHEMA_DIR``.
- The Serve config: ``ray.serve.schema.ServeDeploySchema``, plus a strict unknown-key check
  (Ray's schema silently ignores misspelt keys).

Every failure is a ``ValueError`` whose message starts with ``Kind/namespace/name: field.path``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from riskml.k8s import manifests
from riskml.k8s.manifests import api_group_version, format_path, load_yaml_documents, resource_id
from riskml.settings import get_settings

#: Kubernetes version the core kinds are validated against (kubectl 1.32 here).
K8S_VERSION = "1.32.0"
#: The skaffold config schema version skaffold.yaml is written for.
SKAFFOLD_SCHEMA = "skaffold-v4beta14.json"
SKAFFOLD_API_VERSION = "skaffold/v4beta14"
#: CRDs vendored in the repository, relative to ``k8s/`` (``k8s/crds/<project>-<version>/``,
#: sources in ``k8s/crds/README.md``), loaded next to ``RISKML_CRD_DIR``'s.
VENDORED_CRD_DIR = Path("crds")

GVK = tuple[str, str, str]

# ObjectMeta as a user may write it in a manifest (server-populated fields are not expected).
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": _DNS_SUBDOMAIN},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
}
_EMBEDDED_META: dict[str, Any] = {"type": "object"}

_DROP_KEYS = {"nullable", "default", "description", "example", "externalDocs"}


def _convert(node: Any) -> Any:
    """One node of a structural openAPIV3Schema -> JSON Schema (draft 7)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _convert(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_convert(sub) for sub in value]
        elif key.startswith("x-kubernetes-") or key in _DROP_KEYS:
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", _EMBEDDED_META)
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def crd_schema_to_jsonschema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A CRD version's ``openAPIV3Schema`` as a strict JSON Schema for the whole object."""
    converted = _convert(dict(schema))
    props = converted.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = OBJECT_META_SCHEMA
    converted.setdefault("required", [])
    for key in ("apiVersion", "kind", "metadata"):
        if key not in converted["required"]:
            converted["required"].append(key)
    converted["additionalProperties"] = False
    converted["$schema"] = "http://json-schema.org/draft-07/schema#"
    return converted


def _count_cel(node: Any) -> int:
    if isinstance(node, dict):
        own = len(node.get("x-kubernetes-validations") or [])
        return own + sum(_count_cel(value) for value in node.values())
    if isinstance(node, list):
        return sum(_count_cel(value) for value in node)
    return 0


@lru_cache(maxsize=4)
def _load_crds(crd_dir: str) -> tuple[tuple[Path, dict[str, Any]], ...]:
    found = []
    for path in sorted(Path(crd_dir).rglob("*.y*ml")):
        for doc in load_yaml_documents(path):
            if doc.get("kind") == "CustomResourceDefinition":
                found.append((path, doc))
    return tuple(found)


def _iter_crds(crd_dir: Path) -> Iterable[tuple[Path, dict[str, Any]]]:
    return _load_crds(str(crd_dir.resolve()))


@lru_cache(maxsize=4)
def _load_crd_schemas_cached(crd_dir: str) -> dict[GVK, dict[str, Any]]:
    schemas: dict[GVK, dict[str, Any]] = {}
    for path, crd in _iter_crds(Path(crd_dir)):
        spec = crd.get("spec") or {}
        group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
        if not group or not kind:
            raise ValueError(f"{path}: CRD without spec.group / spec.names.kind")
        for version in spec.get("versions") or []:
            raw = ((version.get("schema") or {}).get("openAPIV3Schema")) or None
            if raw is None or not version.get("served", True):
                continue
            schemas[(group, version["name"], kind)] = crd_schema_to_jsonschema(raw)
    if not schemas:
        raise ValueError(f"no CustomResourceDefinitions with openAPIV3Schema under {crd_dir}")
    return schemas


def load_crd_schemas(
    crd_dir: Path | str | None = None, *, vendored: bool = True
) -> dict[GVK, dict[str, Any]]:
    """``{(group, version, kind): JSON Schema}`` for every served CRD version under ``crd_dir``
    and (``vendored``) under ``k8s/crds/``; ``crd_dir``'s win for a kind both hold.

    ``crd_dir`` defaults to settings.crd_dir (``RISKML_CRD_DIR``). Cached per directory.
    """
    if crd_dir is None:
        crd_dir = get_settings().crd_dir
        if crd_dir is None:
            raise ValueError("no CRD directory: set RISKML_CRD_DIR (e.g. ../shared/crds)")
    path = Path(crd_dir)
    if not path.is_dir():
        raise ValueError(f"CRD directory {path} does not exist (RISKML_CRD_DIR)")
    schemas = _load_crd_schemas_cached(str(path.resolve()))
    if not vendored:
        return schemas
    vendored_dir = vendored_crd_dir()
    if not vendored_dir.is_dir() or vendored_dir.resolve() == path.resolve():
        return schemas
    return {**_load_crd_schemas_cached(str(vendored_dir.resolve())), **schemas}


def vendored_crd_dir() -> Path:
    """``k8s/crds`` of the checkout (the CRDs the repository vendors)."""
    return manifests.K8S_DIR / VENDORED_CRD_DIR


def crd_cel_rule_count(crd_dir: Path | str) -> dict[GVK, int]:
    """How many CEL rules each CRD version carries (not evaluated offline)."""
    counts: dict[GVK, int] = {}
    for _, crd in _iter_crds(Path(crd_dir)):
        spec = crd["spec"]
        for version in spec.get("versions") or []:
            gvk = (spec["group"], version["name"], spec["names"]["kind"])
            counts[gvk] = _count_cel((version.get("schema") or {}).get("openAPIV3Schema"))
    return counts


# id(schema) -> (schema, validator); holding the schema keeps its id from being reused.
_VALIDATORS: dict[int, tuple[Mapping[str, Any], Any]] = {}


def _validator_for(schema: Mapping[str, Any]) -> Any:
    import jsonschema

    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, jsonschema.Draft7Validator(schema))
        _VALIDATORS[id(schema)] = cached
    return cached[1]


def _first_error(validator: Any, obj: Mapping[str, Any]) -> Any | None:
    import jsonschema

    errors = list(validator.iter_errors(obj))
    if not errors:
        return None
    # Deepest, most specific error first: that is the offending field a human wants to see.
    return jsonschema.exceptions.best_match(errors, key=_error_relevance)


def _error_relevance(error: Any) -> Any:
    import jsonschema

    return (-len(error.absolute_path), *jsonschema.exceptions.relevance(error))


def _raise(obj: Mapping[str, Any], error: Any, what: str) -> None:
    path = format_path(error.absolute_path) or "<root>"
    raise ValueError(f"{resource_id(obj)}: {path}: {error.message} ({what})")


def validate_custom_resource(
    obj: Mapping[str, Any], schemas: Mapping[GVK, Mapping[str, Any]] | None = None
) -> None:
    """Validate a custom resource against its CRD's openAPIV3Schema.

    Raises ValueError naming the resource and the offending field's path; also when no CRD
    for its (group, version, kind) is known. ``schemas`` defaults to :func:`load_crd_schemas`.
    """
    if schemas is None:
        schemas = load_crd_schemas()
    group, version = api_group_version(obj)
    gvk = (group, version, str(obj.get("kind", "")))
    schema = schemas.get(gvk)
    if schema is None:
        known = ", ".join(sorted(f"{k}.{g}/{v}" for g, v, k in schemas))
        raise ValueError(f"{resource_id(obj)}: no CRD schema for {gvk} (known: {known})")
    validator = _validator_for(schema)
    error = _first_error(validator, obj)
    if error is not None:
        _raise(obj, error, f"CRD {gvk[2]}.{gvk[0]}/{gvk[1]}")


def validate_core(obj: Mapping[str, Any], k8s_version: str = K8S_VERSION) -> None:
    """Validate a built-in kind with kubernetes-validate (strict) for ``k8s_version``."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    try:
        kubernetes_validate.validate(dict(obj), k8s_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        _raise(obj, error, f"kubernetes {error.version} strict")
    except SchemaNotFoundError as error:
        raise ValueError(f"{resource_id(obj)}: {error.message}") from None


def is_custom_resource(obj: Mapping[str, Any], schemas: Mapping[GVK, Any]) -> bool:
    group, version = api_group_version(obj)
    return (group, version, obj.get("kind")) in schemas


def validate_manifest(
    obj: Mapping[str, Any],
    schemas: Mapping[GVK, Mapping[str, Any]],
    k8s_version: str = K8S_VERSION,
) -> None:
    """One object: custom resources against their CRD, everything else with kubernetes-validate."""
    for key in ("apiVersion", "kind"):
        if not obj.get(key):
            raise ValueError(f"{resource_id(obj)}: missing {key}")
    if is_custom_resource(obj, schemas):
        validate_custom_resource(obj, schemas)
    else:
        validate_core(obj, k8s_version)


def validate_manifests(
    docs: Iterable[Mapping[str, Any]],
    schemas: Mapping[GVK, Mapping[str, Any]] | None = None,
    k8s_version: str = K8S_VERSION,
) -> list[str]:
    """Validate every object; returns the error messages (empty when all pass)."""
    if schemas is None:
        schemas = load_crd_schemas()
    errors: list[str] = []
    for obj in docs:
        try:
            validate_manifest(obj, schemas, k8s_version)
        except ValueError as error:
            errors.append(str(error))
    return errors


# --- skaffold -------------------------------------------------------------------------------------


def skaffold_schema_path(schema_dir: Path | str | None = None) -> Path:
    if schema_dir is None:
        schema_dir = get_settings().schema_dir
        if schema_dir is None:
            raise ValueError("no schema directory: set RISKML_SCHEMA_DIR (e.g. ../shared/schemas)")
    path = Path(schema_dir) / SKAFFOLD_SCHEMA
    if not path.is_file():
        raise ValueError(f"skaffold schema {path} not found (RISKML_SCHEMA_DIR)")
    return path


def validate_skaffold(
    config: Mapping[str, Any] | Path, schema_dir: Path | str | None = None
) -> None:
    """Validate a skaffold config (mapping or file) against the v4beta14 JSON schema."""
    import jsonschema

    docs = load_yaml_documents(config) if isinstance(config, Path) else [dict(config)]
    schema = json.loads(skaffold_schema_path(schema_dir).read_text())
    validator = jsonschema.Draft7Validator(schema)
    for doc in docs:
        if doc.get("apiVersion") != SKAFFOLD_API_VERSION:
            raise ValueError(
                f"skaffold: apiVersion: {doc.get('apiVersion')!r} != {SKAFFOLD_API_VERSION!r}"
            )
        error = _first_error(validator, doc)
        if error is not None:
            path = format_path(error.absolute_path) or "<root>"
            raise ValueError(f"skaffold: {path}: {error.message}")


# --- Ray Serve config -----------------------------------------------------------------------------


def _strict_keys(model: Any, data: Any, path: str, nested: Mapping[str, Any]) -> list[str]:
    """Keys of ``data`` that ``model`` (a pydantic class) does not define, recursively."""
    if not isinstance(data, dict):
        return []
    known: set[str] = set()
    for name, field in model.model_fields.items():
        known.add(name)
        if field.alias:
            known.add(field.alias)
    problems = [f"{path}.{key}" if path else key for key in data if key not in known]
    for key, sub_model in nested.get(model.__name__, {}).items():
        value = data.get(key)
        where = f"{path}.{key}" if path else key
        if isinstance(value, list):
            for index, item in enumerate(value):
                problems += _strict_keys(sub_model, item, f"{where}[{index}]", nested)
        elif isinstance(value, dict):
            problems += _strict_keys(sub_model, value, where, nested)
    return problems


def validate_serve_config(doc: Mapping[str, Any]) -> Any:
    """Parse a Serve config with ``ServeDeploySchema``; unknown keys are errors too.

    Returns the parsed schema object; raises ValueError otherwise.
    """
    from pydantic import ValidationError
    from ray.serve.config import AutoscalingConfig, BackpressureConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        LoggingConfig,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    nested = {
        "ServeDeploySchema": {
            "applications": ServeApplicationSchema,
            "http_options": HTTPOptionsSchema,
            "logging_config": LoggingConfig,
        },
        "ServeApplicationSchema": {
            "deployments": DeploymentSchema,
            "logging_config": LoggingConfig,
        },
        "DeploymentSchema": {
            "autoscaling_config": AutoscalingConfig,
            "backpressure_config": BackpressureConfig,
            "ray_actor_options": RayActorOptionsSchema,
            "logging_config": LoggingConfig,
        },
    }
    unknown = _strict_keys(ServeDeploySchema, dict(doc), "", nested)
    if unknown:
        raise ValueError(f"serve config: unknown keys: {', '.join(unknown)}")
    try:
        parsed = ServeDeploySchema.model_validate(dict(doc))
        # Serve validates autoscaling_config only at deploy time; do it now.
        for app in parsed.applications:
            for deployment in app.deployments:
                if isinstance(deployment.autoscaling_config, dict):
                    AutoscalingConfig.model_validate(deployment.autoscaling_config)
    except ValidationError as error:
        raise ValueError(f"serve config: {error}") from None
    return parsed


def check_serve_config_matches(
    docs: Iterable[Mapping[str, Any]], serve_config_text: str
) -> list[str]:
    """Every RayService's serveConfigV2 is ``serve_config_text`` verbatim and a valid config."""
    import yaml

    errors: list[str] = []
    services = [obj for obj in docs if obj.get("kind") == "RayService"]
    if not services:
        return ["no RayService in the rendered manifests"]
    for obj in services:
        embedded = (obj.get("spec") or {}).get("serveConfigV2")
        if embedded != serve_config_text:
            errors.append(
                f"{resource_id(obj)}: spec.serveConfigV2 differs from serving/serve_config.yaml"
                " (run `make render-serve-config`)"
            )
            continue
        try:
            validate_serve_config(yaml.safe_load(embedded))
        except ValueError as error:
            errors.append(f"{resource_id(obj)}: spec.serveConfigV2: {error}")
    return errors
