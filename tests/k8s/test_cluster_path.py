"""The cluster path as rendered: the MLflow tracking server, the deploy RBAC, the network paths
the platform needs (and only those), Ray token auth, restricted pods, and the contract between the
manifests, the compiled pipelines and the settings (ConfigMaps, Secrets, variable names)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from riskml.k8s.manifests import iter_containers, iter_pod_templates, iter_ray_cluster_specs
from riskml.k8s.policy import address, check_pod_security, network_allows, pod
from riskml.settings import REPO_ROOT

from .helpers import Doc, find, of_kind

pytestmark = pytest.mark.k8s

PLATFORM, TRAINING, SERVING = "riskml-platform", "riskml-training", "riskml-serving"
TRACKING_URI = "http://riskml-mlflow.riskml-platform.svc.cluster.local:5000"
#: The labels a kfp task pod of the cluster pipelines carries (kfp adds v2_component itself).
PIPELINE_POD = {
    "app.kubernetes.io/component": "pipeline",
    "app.kubernetes.io/part-of": "riskml",
    "pipelines.kubeflow.org/v2_component": "true",
}
#: An address in prod's data subnets (PostgreSQL, ElastiCache) and one outside them.
PROD_DATA_IP, OUTSIDE_DATA_IP = "10.40.33.20", "10.41.0.9"


def _mlflow(docs: list[Doc]) -> Doc:
    return find(docs, "Deployment", "riskml-mlflow", PLATFORM)


def _mlflow_container(docs: list[Doc]) -> Doc:
    (container,) = _mlflow(docs)["spec"]["template"]["spec"]["containers"]
    return container


def _config_map(docs: list[Doc], name: str, namespace: str) -> Doc:
    """A ConfigMap by its generator name (the hash suffix, if any, ignored)."""
    hits = [
        d
        for d in of_kind(docs, "ConfigMap")
        if d["metadata"]["namespace"] == namespace
        and re.fullmatch(rf"{name}(-[a-z0-9]{{10}})?", d["metadata"]["name"])
    ]
    assert len(hits) == 1, (name, namespace, [d["metadata"]["name"] for d in hits])
    return hits[0]


def _ray_objects(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["apiVersion"].startswith("ray.io/")]


# --- MLflow tracking server --------------------------------------------------------------------


def test_mlflow_server_backend_from_a_secret_and_proxied_artifacts(
    rendered: dict[str, list[Doc]], ray_version: str
) -> None:
    for overlay, docs in rendered.items():
        container = _mlflow_container(docs)
        assert container["command"] == ["mlflow"]
        args = container["args"]
        assert args[:5] == ["server", "--host", "0.0.0.0", "--port", "5000"]
        options = dict(zip(args[1::2], args[2::2], strict=False))
        assert options["--backend-store-uri"] == "$(MLFLOW_BACKEND_STORE_URI)"
        assert "--serve-artifacts" in args
        assert args[args.index("--artifacts-destination") + 1] == "$(MLFLOW_ARTIFACTS_DESTINATION)"
        env = {e["name"]: e for e in container["env"]}
        # every $(VAR) the arguments use is defined, so the kubelet expands it
        assert set(re.findall(r"\$\((\w+)\)", " ".join(args))) <= set(env)
        assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"] == {
            "secretKeyRef": {"name": "riskml-mlflow-db", "key": "uri"}
        }
        settings = _config_map(docs, "riskml-mlflow", PLATFORM)
        ref = env["MLFLOW_ARTIFACTS_DESTINATION"]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == settings["metadata"]["name"]  # the hashed name reached the pod
        assert settings["data"][ref["key"]] == f"s3://riskml-mlflow-{overlay}/artifacts"
        # the one project image, pinned like every other riskml pod
        assert container["image"] == f"riskml:0.1.0-ray{ray_version}"
        # the Service reaches the pod on the named port
        service = find(docs, "Service", "riskml-mlflow", PLATFORM)
        template = _mlflow(docs)["spec"]["template"]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        assert service["spec"]["ports"] == [{"name": "http", "port": 5000, "targetPort": "http"}]
        assert {"name": "http", "containerPort": 5000} in container["ports"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        # the server's DNS-rebinding guard answers the Service's name
        allowed = settings["data"]["MLFLOW_ALLOWED_HOSTS"].split(",")
        assert TRACKING_URI.removeprefix("http://") in allowed
        assert "*" not in allowed
    assert _mlflow(rendered["prod"])["spec"]["replicas"] == 2


def test_mlflow_pod_is_restricted_with_a_writable_tmp_only(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        deployment = _mlflow(docs)
        spec = deployment["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = _mlflow_container(docs)
        assert container["securityContext"] == {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert mounts == {"/tmp": "tmp"} and "emptyDir" in volumes["tmp"]
        limits = container["resources"]["limits"]
        assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(
            container["resources"]["requests"]
        )
        assert check_pod_security([deployment]) == []
        account = find(docs, "ServiceAccount", spec["serviceAccountName"], PLATFORM)
        assert account["automountServiceAccountToken"] is False


def test_every_client_is_pointed_at_the_tracking_server(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        service = find(docs, "Service", "riskml-mlflow", PLATFORM)
        port = service["spec"]["ports"][0]["port"]
        uri = f"http://{service['metadata']['name']}.{PLATFORM}.svc.cluster.local:{port}"
        assert uri == TRACKING_URI
        scoring = find(docs, "RayService", "riskml-scoring", SERVING)
        for template in iter_pod_templates(scoring):
            env = {e["name"]: e.get("value") for e in template.spec["containers"][0]["env"]}
            assert env["RISKML_MLFLOW_TRACKING_URI"] == uri, template.path
        job = find(docs, "RayJob", "riskml-train", TRAINING)
        env_vars = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
        assert env_vars["RISKML_MLFLOW_TRACKING_URI"] == uri
        pipeline_env = _config_map(docs, "riskml-pipeline-env", TRAINING)["data"]
        assert pipeline_env["RISKML_MLFLOW_TRACKING_URI"] == uri


# --- pod security, nested templates included ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "templates"),
    [
        ("RayService", "riskml-scoring", 2),
        ("RayJob", "riskml-train", 4),
        ("Deployment", "riskml-mlflow", 1),
        ("StatefulSet", "riskml-nats", 1),
        ("Deployment", "riskml-stream-processor", 1),
        ("Deployment", "riskml-offline-log", 1),
    ],
)
def test_every_pod_template_is_restricted(
    rendered: dict[str, list[Doc]], kind: str, name: str, templates: int
) -> None:
    """Each container of each template (RayService head/worker, RayJob head/workers/submitter,
    the MLflow Deployment, NATS, the stream processor and the offline log) meets Pod Security
    "restricted" with limits - checked one by one."""
    for docs in rendered.values():
        obj = find(docs, kind, name)
        found = list(iter_pod_templates(obj))
        assert len(found) == templates
        for template in found:
            pod_sc = template.spec["securityContext"]
            assert pod_sc["runAsNonRoot"] is True
            assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
            for _, container in iter_containers(template.spec):
                sc = container["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, (template.path, container["name"])
                assert sc["capabilities"]["drop"] == ["ALL"]
                assert sc["readOnlyRootFilesystem"] is True
                assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert check_pod_security([obj]) == []


# --- Ray token auth ----------------------------------------------------------------------------


def test_ray_token_auth_on_every_ray_cluster(
    rendered: dict[str, list[Doc]], crd_schemas: dict[tuple[str, str, str], dict[str, Any]]
) -> None:
    # the field exists in the KubeRay CRDs we validate against, with token mode
    for kind, cluster_key in (("RayService", "rayClusterConfig"), ("RayJob", "rayClusterSpec")):
        spec = crd_schemas[("ray.io", "v1", kind)]["properties"]["spec"]["properties"]
        auth = spec[cluster_key]["properties"]["authOptions"]["properties"]
        assert "token" in auth["mode"]["enum"] and auth["secretName"]["type"] == "string"
    for docs in rendered.values():
        clusters = [
            (obj, path, spec)
            for obj in _ray_objects(docs)
            for path, spec in iter_ray_cluster_specs(obj)
        ]
        assert {obj["kind"] for obj, _, _ in clusters} == {"RayService", "RayJob"}
        for _, path, spec in clusters:
            assert spec["authOptions"] == {"mode": "token", "secretName": "riskml-ray-auth"}, path
            # Ray >= 2.52 understands token auth
            major, minor = (int(x) for x in spec["rayVersion"].split(".")[:2])
            assert (major, minor) >= (2, 52)
        # `ray job submit` in the RayJob's submitter carries the same token
        job = find(docs, "RayJob", "riskml-train", TRAINING)
        env = {
            e["name"]: e
            for e in job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["env"]
        }
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "riskml-ray-auth",
            "key": "auth_token",  # the key KubeRay reads from authOptions.secretName
        }
    # the kfp Ray tasks read the same Secret and key
    from pipelines.definitions import SECRETS

    assert SECRETS["ray"] == {"riskml-ray-auth": {"auth_token": "RAY_AUTH_TOKEN"}}


# --- network paths -----------------------------------------------------------------------------


def _redis(overlay: str) -> Any:
    if overlay == "staging":
        return pod(
            SERVING,
            {"app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "online-store"},
        )
    return address("10.40.32.10")  # ElastiCache in prod's data subnets


def _postgres(overlay: str) -> Any:
    return address(PROD_DATA_IP if overlay == "prod" else "10.30.1.5")


MLFLOW = pod(
    PLATFORM, {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/component": "tracking"}
)
PIPELINE = pod(TRAINING, PIPELINE_POD)
SCORING_WORKER = pod(
    SERVING, {"app.kubernetes.io/component": "scoring", "riskml.io/ray-node": "worker"}
)
TRAINING_HEAD = pod(
    TRAINING, {"app.kubernetes.io/component": "training", "riskml.io/ray-node": "head"}
)
TRAINING_WORKER = pod(
    TRAINING, {"app.kubernetes.io/component": "training", "riskml.io/ray-node": "worker"}
)
SCORING_HEAD = pod(
    SERVING, {"app.kubernetes.io/component": "scoring", "riskml.io/ray-node": "head"}
)
STRANGER = pod(TRAINING, {"app": "something-else"})
MONITORING = pod("monitoring", {"app": "prometheus"})
NATS = pod(
    PLATFORM, {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "event-stream"}
)
NATS_PEER = NATS  # another server of the same StatefulSet
PROCESSOR = pod(
    PLATFORM,
    {"app.kubernetes.io/name": "riskml-stream", "app.kubernetes.io/component": "stream-processor"},
)
OFFLINE_LOG = pod(
    PLATFORM,
    {"app.kubernetes.io/name": "riskml-stream", "app.kubernetes.io/component": "offline-log"},
)
PLATFORM_STRANGER = pod(PLATFORM, {"app": "debug"})


def _paths(overlay: str) -> Iterator[tuple[str, Any, Any, int, bool]]:
    """(what, source, destination, port, allowed) for one overlay."""
    redis, postgres = _redis(overlay), _postgres(overlay)
    yield "pipeline -> online store", PIPELINE, redis, 6379, True
    yield "pipeline -> MLflow", PIPELINE, MLFLOW, 5000, True
    yield "pipeline -> PostgreSQL (Feast registry)", PIPELINE, postgres, 5432, True
    yield "pipeline -> training Jobs API", PIPELINE, TRAINING_HEAD, 8265, True
    yield "scoring -> online store", SCORING_WORKER, redis, 6379, True
    yield "scoring -> MLflow", SCORING_WORKER, MLFLOW, 5000, True
    yield "scoring -> PostgreSQL (Feast registry)", SCORING_WORKER, postgres, 5432, True
    yield "training Ray -> online store", TRAINING_WORKER, redis, 6379, True
    yield "MLflow -> PostgreSQL (backend store)", MLFLOW, postgres, 5432, True
    yield "MLflow -> object storage", MLFLOW, address("52.95.150.10"), 443, True
    yield "stream processor -> NATS", PROCESSOR, NATS, 4222, True
    yield "stream processor -> online store", PROCESSOR, redis, 6379, True
    yield "stream processor -> PostgreSQL (Feast registry)", PROCESSOR, postgres, 5432, True
    yield "offline log -> NATS", OFFLINE_LOG, NATS, 4222, True
    yield "offline log -> object storage", OFFLINE_LOG, address("52.95.150.10"), 443, True
    yield "scoring -> NATS (decision log)", SCORING_WORKER, NATS, 4222, True
    yield "scoring head -> NATS", SCORING_HEAD, NATS, 4222, True
    yield "NATS -> NATS routes", NATS, NATS_PEER, 6222, True
    yield "monitoring -> processor metrics", MONITORING, PROCESSOR, 9102, True
    yield "monitoring -> offline log metrics", MONITORING, OFFLINE_LOG, 9102, True
    yield "monitoring -> NATS monitoring endpoint", MONITORING, NATS, 8222, True
    # and nothing more
    yield "pipeline -> MLflow on another port", PIPELINE, MLFLOW, 5001, False
    yield "pipeline -> training Ray GCS", PIPELINE, TRAINING_HEAD, 6379, False
    yield "pipeline -> scoring dashboard", PIPELINE, SCORING_HEAD, 8265, False
    yield "unlabelled pod -> MLflow", STRANGER, MLFLOW, 5000, False
    yield "unlabelled pod -> online store", STRANGER, redis, 6379, False
    yield "monitoring -> MLflow", MONITORING, MLFLOW, 5000, False
    yield "MLflow -> online store", MLFLOW, redis, 6379, False
    yield "MLflow -> cloud metadata", MLFLOW, address("169.254.169.254"), 443, False
    yield "scoring -> training Jobs API", SCORING_WORKER, TRAINING_HEAD, 8265, False
    yield "unlabelled pod -> NATS", STRANGER, NATS, 4222, False
    yield "unlabelled platform pod -> NATS", PLATFORM_STRANGER, NATS, 4222, False
    yield "pipeline -> NATS", PIPELINE, NATS, 4222, False
    yield "training Ray -> NATS", TRAINING_WORKER, NATS, 4222, False
    yield "monitoring -> NATS client port", MONITORING, NATS, 4222, False
    yield "processor -> NATS routes", PROCESSOR, NATS, 6222, False
    yield "NATS -> online store", NATS, redis, 6379, False
    yield "NATS -> MLflow", NATS, MLFLOW, 5000, False
    yield "NATS -> object storage", NATS, address("52.95.150.10"), 443, False
    yield "NATS -> PostgreSQL", NATS, postgres, 5432, False
    yield "NATS -> scoring", NATS, SCORING_WORKER, 8000, False
    yield "offline log -> online store", OFFLINE_LOG, redis, 6379, False
    yield "offline log -> PostgreSQL", OFFLINE_LOG, postgres, 5432, False
    yield "processor -> object storage", PROCESSOR, address("52.95.150.10"), 443, False
    yield "processor -> MLflow", PROCESSOR, MLFLOW, 5000, False
    yield "unlabelled pod -> processor metrics", STRANGER, PROCESSOR, 9102, False
    yield "scoring -> processor metrics", SCORING_WORKER, PROCESSOR, 9102, False
    if overlay == "prod":
        yield (
            "prod PostgreSQL outside the data subnets",
            PIPELINE,
            address(OUTSIDE_DATA_IP),
            5432,
            False,
        )


@pytest.mark.parametrize("overlay", ["staging", "prod"])
def test_network_paths_the_platform_needs_and_no_others(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    wrong = [
        f"{what}: {'denied' if allowed else 'allowed'}"
        for what, source, destination, port, allowed in _paths(overlay)
        if network_allows(docs, source, destination, port) is not allowed
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("policy", "namespace", "source", "port"),
    [
        ("pipeline-egress", TRAINING, PIPELINE, 5000),  # the client side
        ("mlflow-clients", PLATFORM, PIPELINE, 5000),  # the server side
        ("online-store", SERVING, PIPELINE, 6379),  # staging's Redis admits the pipeline
        ("ray-training-jobs-api", TRAINING, PIPELINE, 8265),
        ("stream-processor-egress", PLATFORM, PROCESSOR, 4222),  # the client side
        ("nats-clients", PLATFORM, PROCESSOR, 4222),  # the server side
        ("ray-scoring-nats", SERVING, SCORING_WORKER, 4222),
        ("nats-clients", PLATFORM, SCORING_WORKER, 4222),
        ("stream-processor-egress", PLATFORM, PROCESSOR, 6379),
        ("online-store", SERVING, PROCESSOR, 6379),  # staging's Redis admits the processor
        ("stream-metrics", PLATFORM, MONITORING, 9102),
    ],
)
def test_each_side_of_a_path_is_needed(
    mutable: Callable[[str], list[Doc]], policy: str, namespace: str, source: Any, port: int
) -> None:
    destination = {
        5000: MLFLOW,
        6379: _redis("staging"),
        8265: TRAINING_HEAD,
        4222: NATS,
        9102: PROCESSOR,
    }[port]
    docs = mutable("staging")
    assert network_allows(docs, source, destination, port)
    docs.remove(find(docs, "NetworkPolicy", policy, namespace))
    assert not network_allows(docs, source, destination, port)


# --- the contract between manifests, the compiled pipelines and the settings -----------------


@pytest.fixture(scope="module")
def cluster_ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """{pipeline: the kubernetes platform spec of its cluster flavour, by executor}."""
    from pipelines.cli import compile_all

    out: dict[str, dict[str, Any]] = {}
    for path in compile_all(tmp_path_factory.mktemp("ir")):
        if path.stem.endswith("-cluster"):
            _, platform = yaml.safe_load_all(path.read_text())
            out[path.stem] = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return out


def _ir_references(executors: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(kind, name, key) of every ConfigMap/Secret the compiled tasks read."""
    for config in executors.values():
        for item in config.get("configMapAsEnv", []):
            for pair in item["keyToEnv"]:
                if not item.get("optional"):
                    yield "ConfigMap", item["configMapName"], pair["configMapKey"]
        for item in config.get("configMapAsVolume", []):
            yield "ConfigMap", item["configMapName"], ""
        for item in config.get("secretAsEnv", []):
            for pair in item["keyToEnv"]:
                yield "Secret", item["secretName"], pair["secretKey"]


def test_what_the_pipeline_reads_exists_in_the_training_namespace(
    rendered: dict[str, list[Doc]], cluster_ir: dict[str, dict[str, Any]]
) -> None:
    for docs in rendered.values():
        maps = {
            d["metadata"]["name"]: d
            for d in of_kind(docs, "ConfigMap")
            if d["metadata"]["namespace"] == TRAINING
        }
        for executors in cluster_ir.values():
            for kind, name, key in _ir_references(executors):
                if kind == "ConfigMap":
                    # referenced by a fixed name: kustomize must not have hashed it
                    assert name in maps, name
                    assert not key or key in maps[name]["data"], (name, key)
        # the task pods read the same feature_store.yaml as the training Ray pods
        pipeline_store = maps["riskml-pipeline-feature-store"]["data"]
        assert pipeline_store == _config_map(docs, "riskml-feature-store", TRAINING)["data"]
        env = maps["riskml-pipeline-env"]["data"]
        assert env["RISKML_FEAST_CONFIG"] == "/etc/riskml/feast/feature_store.yaml"
        assert env["RISKML_RAY_MODE"] in ("rayjob", "jobs")


def _manifest_secret_refs(docs: list[Doc]) -> set[tuple[str, str, str]]:
    """(namespace, Secret, key) of every secretKeyRef in the rendered objects."""
    found: set[tuple[str, str, str]] = set()

    def walk(node: Any, namespace: str) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                found.add((namespace, ref["name"], ref["key"]))
            for value in node.values():
                walk(value, namespace)
        elif isinstance(node, list):
            for value in node:
                walk(value, namespace)

    for obj in docs:
        walk(obj, obj["metadata"].get("namespace", ""))
        options = (
            (obj.get("spec") or {}).get("rayClusterConfig")
            or (obj.get("spec") or {}).get("rayClusterSpec")
            or {}
        )
        secret = (options.get("authOptions") or {}).get("secretName")
        if secret:
            found.add((obj["metadata"]["namespace"], secret, "auth_token"))
    return found


def test_secrets_are_referenced_never_committed_and_documented(
    rendered: dict[str, list[Doc]], cluster_ir: dict[str, dict[str, Any]]
) -> None:
    docs_text = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    expected = {
        (SERVING, "riskml-online-redis", "password"),
        (SERVING, "riskml-feast-registry", "url"),
        (SERVING, "riskml-ray-auth", "auth_token"),
        (TRAINING, "riskml-online-redis", "password"),
        (TRAINING, "riskml-feast-registry", "url"),
        (TRAINING, "riskml-ray-auth", "auth_token"),
        (PLATFORM, "riskml-mlflow-db", "uri"),
        # the event stream: NATS and its clients (the Serve app publishes the decision log)
        (PLATFORM, "riskml-nats-auth", "token"),
        (SERVING, "riskml-nats-auth", "token"),
        # the decision API's bearer keys (the scoring Ray pods)
        (SERVING, "riskml-api-keys", "keys"),
        (SERVING, "riskml-api-keys", "admin-keys"),
        # the stream processor opens the Feast store
        (PLATFORM, "riskml-online-redis", "password"),
        (PLATFORM, "riskml-feast-registry", "url"),
    }
    for overlay, docs in rendered.items():
        assert not of_kind(docs, "Secret"), overlay  # created out of band, never committed
        refs = _manifest_secret_refs(docs)
        for executors in cluster_ir.values():
            refs |= {
                (TRAINING, name, key)
                for kind, name, key in _ir_references(executors)
                if kind == "Secret"
            }
        extra = {(SERVING, "riskml-gcs-redis", "password")} if overlay == "prod" else set()
        assert refs == expected | extra, overlay
        for _, name, key in refs:
            assert re.search(rf"`{name}`.*`{key}`", docs_text), (
                f"docs/kubernetes.md lacks {name}/{key}"
            )


def _riskml_variables(docs: list[Doc]) -> set[str]:
    names: set[str] = set()
    for obj in docs:
        for template in iter_pod_templates(obj):
            for _, container in iter_containers(template.spec):
                names |= {e["name"] for e in container.get("env", [])}
        runtime_env = (obj.get("spec") or {}).get("runtimeEnvYAML")
        if runtime_env:
            names |= set(yaml.safe_load(runtime_env).get("env_vars") or {})
    pipeline_env = _config_map(docs, "riskml-pipeline-env", TRAINING)["data"]
    return {n for n in names | set(pipeline_env) if n.upper().startswith("RISKML_")}


def test_every_riskml_variable_set_on_the_cluster_is_a_setting(
    rendered: dict[str, list[Doc]], cluster_ir: dict[str, dict[str, Any]]
) -> None:
    """Settings reject unknown RISKML_* variables: a misspelt one in a manifest or the compiled
    pipeline would stop the pod at start-up."""
    from riskml.settings import env_names

    valid = set(env_names())
    for overlay, docs in rendered.items():
        names = _riskml_variables(docs)
        for executors in cluster_ir.values():
            for config in executors.values():
                for item in config.get("configMapAsEnv", []) + config.get("secretAsEnv", []):
                    names |= {
                        p["envVar"] for p in item["keyToEnv"] if p["envVar"].startswith("RISKML_")
                    }
        assert {
            "RISKML_FEAST_CONFIG",
            "RISKML_MLFLOW_TRACKING_URI",
            "RISKML_REDIS_PASSWORD",
            "RISKML_NATS_URL",
            "RISKML_NATS_TOKEN",
            "RISKML_STREAM_NAME",
            "RISKML_API_KEYS",
            "RISKML_ADMIN_API_KEYS",
            "RISKML_REQUIRE_API_KEYS",
        } <= names
        assert names - valid == set(), overlay


def test_staging_redis_requires_auth(rendered: dict[str, list[Doc]]) -> None:
    redis = find(rendered["staging"], "StatefulSet", "riskml-redis", SERVING)
    container = redis["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["REDIS_PASSWORD"] == {"name": "riskml-online-redis", "key": "password"}
    assert env["REDISCLI_AUTH"] == env["REDIS_PASSWORD"]  # the probe authenticates too


def test_docs_name_the_install_order_and_commands() -> None:
    text = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    section = text[text.index("## Run it on a cluster") :]
    section = section[: section.index("\n## ", 1)]
    install = section[section.index("### Install, in this order") :]
    steps = re.findall(r"^\d+\. \*\*(.+?)\*\*", install, flags=re.MULTILINE)
    order = ["KubeRay", "Kubeflow Pipelines", "PostgreSQL", "Redis", "Secrets", "overlay"]
    assert [next(i for i, s in enumerate(steps) if word in s) for word in order] == sorted(
        next(i for i, s in enumerate(steps) if word in s) for word in order
    ), steps
    assert "MLflow tracking server" in install[install.index("**The overlay**") :]
    for command in (
        "kubectl apply -k k8s/overlays/staging",
        "skaffold run -p prod",
        "python -m pipelines submit",
        "--service-account riskml-pipeline-runner",
        "python -m riskml k8s validate",
    ):
        assert command in section, command
