"""The event stream as rendered: NATS JetStream (one server in staging, three clustered servers
in prod), the stream processor and the offline-log consumer, and the names that tie them to the
Serve app and to the settings; then the rendered nats.conf of each overlay run by a real
``nats-server`` (ports and paths moved to a temporary directory, routes to 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from riskml.k8s.manifests import iter_pod_templates
from riskml.k8s.policy import check_pod_security, selector_matches, split_image
from riskml.settings import Settings
from tests.support.services import free_port, need

from .helpers import Doc, find, of_kind

pytestmark = pytest.mark.k8s

PLATFORM, SERVING = "riskml-platform", "riskml-serving"
NATS_SECRET = {"name": "riskml-nats-auth", "key": "token"}
NATS_REPLICAS = {"staging": 1, "prod": 3}
METRICS_PORT = 9102


def _nats(docs: list[Doc]) -> Doc:
    return find(docs, "StatefulSet", "riskml-nats", PLATFORM)


def _container(obj: Doc) -> Doc:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return container


def _config_maps(docs: list[Doc], namespace: str) -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["name"]: d["data"]
        for d in of_kind(docs, "ConfigMap")
        if d["metadata"]["namespace"] == namespace
    }


def _nats_conf(docs: list[Doc]) -> str:
    """The nats.conf the servers read (through the hashed ConfigMap name of their volume)."""
    volumes = {v["name"]: v for v in _nats(docs)["spec"]["template"]["spec"]["volumes"]}
    return _config_maps(docs, PLATFORM)[volumes["config"]["configMap"]["name"]]["nats.conf"]


def _conf_value(conf: str, key: str) -> str:
    match = re.search(rf"^\s*{key}\s*[:=]\s*(\S+)\s*$", conf, flags=re.MULTILINE)
    assert match, f"nats.conf has no {key}"
    return match.group(1)


def _env(docs: list[Doc], obj: Doc, spec: Doc | None = None) -> dict[str, Any]:
    """A container's environment: literal values, ConfigMap keys resolved, Secrets as
    ``{"secret": {name, key}}``."""
    namespace = obj["metadata"]["namespace"]
    maps = _config_maps(docs, namespace)
    env: dict[str, Any] = {}
    for item in (spec or obj["spec"]["template"]["spec"])["containers"][0]["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        source = item["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[item["name"]] = maps[ref["name"]][ref["key"]]  # the hashed name exists
        elif "secretKeyRef" in source:
            env[item["name"]] = {"secret": source["secretKeyRef"]}
        else:
            env[item["name"]] = source
    return env


def _client_url(docs: list[Doc]) -> str:
    service = find(docs, "Service", "riskml-nats", PLATFORM)
    (port,) = service["spec"]["ports"]
    return f"nats://{service['metadata']['name']}.{PLATFORM}.svc.cluster.local:{port['port']}"


# --- NATS --------------------------------------------------------------------------------------


def test_nats_statefulset_services_and_config(rendered: dict[str, list[Doc]]) -> None:
    for overlay, docs in rendered.items():
        nats = _nats(docs)
        spec, template = nats["spec"], nats["spec"]["template"]
        labels = template["metadata"]["labels"]
        replicas = NATS_REPLICAS[overlay]
        assert spec["replicas"] == replicas
        assert spec["podManagementPolicy"] == "Parallel"  # clustered servers meet at start
        container = _container(nats)
        repo, tag, _ = split_image(container["image"])
        assert repo == "nats" and re.fullmatch(r"2\.10\.\d+-alpine", tag or ""), container["image"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"client": 4222, "cluster": 6222, "monitor": 8222}

        # Services: the client one for the pods' clients, the headless one for routes
        client = find(docs, "Service", "riskml-nats", PLATFORM)
        assert client["spec"]["ports"] == [{"name": "client", "port": 4222, "targetPort": "client"}]
        headless = find(docs, "Service", spec["serviceName"], PLATFORM)
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["publishNotReadyAddresses"] is True
        for service in (client, headless):
            assert service["spec"]["selector"].items() <= labels.items()

        # the config: token from the Secret, JetStream on the volume, pid file for lame duck
        conf = _nats_conf(docs)
        assert re.search(r"authorization\s*\{\s*token:\s*\$NATS_TOKEN\s*\}", conf)
        assert "jetstream {" in conf
        env = _env(docs, nats)
        assert env["NATS_TOKEN"] == {"secret": NATS_SECRET}
        assert env["SERVER_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert _conf_value(conf, "server_name") == "$SERVER_NAME"
        assert int(_conf_value(conf, "port")) == ports["client"]
        assert int(_conf_value(conf, "http_port")) == ports["monitor"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert container["args"] == ["--config", f"{mounts['config']}/nats.conf"]
        (claim,) = spec["volumeClaimTemplates"]
        assert _conf_value(conf, "store_dir") == mounts[claim["metadata"]["name"]]
        pid_file = _conf_value(conf, "pid_file")
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert "emptyDir" in volumes["pid"] and pid_file.startswith(mounts["pid"] + "/")
        assert container["lifecycle"]["preStop"]["exec"]["command"] == [
            "nats-server",
            "--signal",
            f"ldm={pid_file}",
        ]
        assert template["spec"]["terminationGracePeriodSeconds"] > 30  # lame_duck_duration

        # probes on the monitoring port
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {
                "path": "/healthz?js-enabled-only=true",
                "port": "monitor",
            }
        assert container["readinessProbe"]["httpGet"]["path"].startswith("/healthz")

        # routes: prod names every server through the headless Service; staging runs alone
        routes = re.findall(r"nats://([\w.-]+):(\d+)", conf)
        if replicas == 1:
            assert "cluster {" not in conf and routes == []
        else:
            assert _conf_value(conf, "port") == "4222"
            assert {host for host, _ in routes} == {
                f"riskml-nats-{i}.{headless['metadata']['name']}.{PLATFORM}.svc.cluster.local"
                for i in range(replicas)
            }
            assert {int(port) for _, port in routes} == {ports["cluster"]}

        pdb = find(docs, "PodDisruptionBudget", "riskml-nats", PLATFORM)
        assert pdb["spec"]["maxUnavailable"] == 1  # prod's three keep their quorum
        assert selector_matches(pdb["spec"]["selector"], labels)
        account = find(docs, "ServiceAccount", template["spec"]["serviceAccountName"], PLATFORM)
        assert account["automountServiceAccountToken"] is False
        assert template["spec"]["automountServiceAccountToken"] is False
        assert check_pod_security([nats]) == []

    # prod: one server per node, spread over zones, more room
    prod = _nats(rendered["prod"])["spec"]
    (term,) = prod["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selector_matches(term["labelSelector"], prod["template"]["metadata"]["labels"])
    spread = prod["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert prod["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert "affinity" not in _nats(rendered["staging"])["spec"]["template"]["spec"]


# --- the stream processor and the offline-log consumer ----------------------------------------


def test_stream_processor_and_offline_log(rendered: dict[str, list[Doc]]) -> None:
    for overlay, docs in rendered.items():
        url = _client_url(docs)
        processor = find(docs, "Deployment", "riskml-stream-processor", PLATFORM)
        offline = find(docs, "Deployment", "riskml-offline-log", PLATFORM)
        assert processor["spec"]["replicas"] == 2  # one durable consumer, work shared
        assert offline["spec"]["replicas"] == 1
        # the stream's copies: one per NATS server of the overlay (prod's three-server cluster)
        expected = "3" if overlay == "prod" else "1"
        for deployment in (processor, offline):
            env = {e["name"]: e for e in _container(deployment)["env"]}
            ref = env["RISKML_STREAM_REPLICAS"]["valueFrom"]["configMapKeyRef"]
            assert ref["name"].startswith("riskml-stream")  # kustomize's hashed name
            stream_cm = find(docs, "ConfigMap", ref["name"], PLATFORM)
            assert stream_cm["data"][ref["key"]] == expected
        assert offline["spec"]["strategy"]["type"] == "Recreate"  # never two writers

        run, log = _container(processor), _container(offline)
        assert run["command"] == log["command"] == ["riskml"]
        assert run["args"] == ["stream", "run", "--metrics-port", str(METRICS_PORT)]
        assert log["args"][:2] == ["stream", "offline-log"]
        assert log["args"][log["args"].index("--metrics-port") + 1] == str(METRICS_PORT)
        for deployment, container in ((processor, run), (offline, log)):
            assert {"name": "metrics", "containerPort": METRICS_PORT} in container["ports"]
            assert container["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
            env = _env(docs, deployment)
            assert env["RISKML_NATS_URL"] == url
            assert env["RISKML_NATS_TOKEN"] == {"secret": NATS_SECRET}
            # the settings accept what the pods get
            settings = Settings(
                nats_url=env["RISKML_NATS_URL"], stream_name=env["RISKML_STREAM_NAME"]
            )
            assert settings.stream_name == "riskml-events"
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert env["RISKML_HOME"].startswith("/tmp/") and mounts["/tmp"] == "tmp"
            spec = deployment["spec"]["template"]["spec"]
            assert spec["automountServiceAccountToken"] is False
            account = find(docs, "ServiceAccount", spec["serviceAccountName"], PLATFORM)
            assert account["automountServiceAccountToken"] is False
            assert check_pod_security([deployment]) == []

        # the offline log lands in the environment's bucket
        out = log["args"][log["args"].index("--out") + 1]
        variable = re.fullmatch(r"\$\((\w+)\)", out)  # the kubelet expands it
        assert variable is not None, out
        assert _env(docs, offline)[variable.group(1)] == f"s3://riskml-events-{overlay}/offline-log"
        assert (
            processor["spec"]["template"]["spec"]["serviceAccountName"]
            != (offline["spec"]["template"]["spec"]["serviceAccountName"])
        )  # only the offline log gets the bucket's identity

        # the processor opens the same Feast store as the scoring pods
        env = _env(docs, processor)
        scoring = find(docs, "RayService", "riskml-scoring", SERVING)
        worker = next(t for t in iter_pod_templates(scoring) if "workerGroupSpecs" in t.path)
        scoring_env = _env(docs, scoring, worker.spec)
        for name in ("RISKML_ONLINE_STORE", "RISKML_REDIS_URL", "RISKML_FEAST_CONFIG"):
            assert env[name] == scoring_env[name], name
        assert env["RISKML_REDIS_PASSWORD"] == scoring_env["RISKML_REDIS_PASSWORD"]
        assert env["FEAST_REGISTRY_PATH"] == scoring_env["FEAST_REGISTRY_PATH"]
        mounts = {m["name"]: m["mountPath"] for m in run["volumeMounts"]}
        assert env["RISKML_FEAST_CONFIG"] == f"{mounts['feast-config']}/feature_store.yaml"
        volumes = {v["name"]: v for v in processor["spec"]["template"]["spec"]["volumes"]}
        feast = _config_maps(docs, PLATFORM)[volumes["feast-config"]["configMap"]["name"]]
        serving_feast = next(
            data
            for name, data in _config_maps(docs, SERVING).items()
            if name.startswith("riskml-feature-store-")
        )
        assert feast == serving_feast

        # metrics Service, PDB
        service = find(docs, "Service", "riskml-stream-metrics", PLATFORM)
        assert service["spec"]["ports"] == [
            {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}
        ]
        pdb = find(docs, "PodDisruptionBudget", "riskml-stream-processor", PLATFORM)
        assert pdb["spec"]["minAvailable"] == 1
        for deployment in (processor, offline):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert service["spec"]["selector"].items() <= labels.items()
            assert selector_matches(pdb["spec"]["selector"], labels) is (deployment is processor)


def test_scoring_pods_publish_to_the_same_nats(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        scoring = find(docs, "RayService", "riskml-scoring", SERVING)
        templates = list(iter_pod_templates(scoring))
        assert len(templates) == 2
        for template in templates:
            env = _env(docs, scoring, template.spec)
            assert env["RISKML_NATS_URL"] == _client_url(docs), template.path
            assert env["RISKML_NATS_TOKEN"] == {"secret": NATS_SECRET}, template.path


def test_docs_tell_how_to_run_and_check_the_stream() -> None:
    from riskml.settings import REPO_ROOT

    text = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    section = text[text.index("## Event stream (NATS JetStream)") :]
    section = section[: section.index("\n## ", 1)]
    for needle in (
        "riskml-nats-auth",
        "riskml-stream-processor",
        "riskml-offline-log",
        "nats stream info",
        "/healthz?js-enabled-only=true",
        "RISKML_NATS_URL",
    ):
        assert needle in section, needle


# --- the rendered nats.conf runs -------------------------------------------------------------


def _local_conf(conf: str, folder: Path, client: int, monitor: int, routes: list[int]) -> str:
    """The rendered config with its listeners on 127.0.0.1 free ports, its paths under
    ``folder`` and each route ``riskml-nats-<i>...:6222`` pointing at ``routes[i]``."""
    conf = "host: 127.0.0.1\n" + conf
    conf = re.sub(r"^port: 4222$", f"port: {client}", conf, flags=re.MULTILINE)
    conf = re.sub(r"^http_port: 8222$", f'http: "127.0.0.1:{monitor}"', conf, flags=re.MULTILINE)
    conf = re.sub(r"^(\s*)store_dir: \S+$", rf"\1store_dir: {folder / 'js'}", conf, flags=re.M)
    conf = re.sub(r"^pid_file: \S+$", f"pid_file: {folder / 'nats.pid'}", conf, flags=re.M)
    if routes:
        index = int(folder.name.rsplit("-", 1)[-1])
        conf = re.sub(
            r"^(\s+)port: 6222$", rf'\1listen: "127.0.0.1:{routes[index]}"', conf, flags=re.M
        )
        conf = re.sub(
            r"nats://riskml-nats-(\d+)\.[\w.-]+:6222",
            lambda m: f"nats://127.0.0.1:{routes[int(m.group(1))]}",
            conf,
        )
    return conf


def _http_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:
        return 0, None


@contextmanager
def _servers(conf: str, replicas: int, tmp: Path, token: str) -> Iterator[list[tuple[int, int]]]:
    """Run ``replicas`` servers of ``conf`` as the StatefulSet would (SERVER_NAME = pod name,
    NATS_TOKEN from the Secret); yields (client port, monitoring port) per server."""
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    need(binary is not None, "nats-server not installed")
    assert binary is not None
    routes = [free_port() for _ in range(replicas)] if replicas > 1 else []
    ports = [(free_port(), free_port()) for _ in range(replicas)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, (client, monitor) in enumerate(ports):
            folder = tmp / f"riskml-nats-{i}"
            folder.mkdir()
            path = folder / "nats.conf"
            path.write_text(_local_conf(conf, folder, client, monitor, routes))
            env = {"SERVER_NAME": f"riskml-nats-{i}", "NATS_TOKEN": token, "PATH": "/usr/bin"}
            log = (folder / "nats.log").open("wb")
            procs.append(
                subprocess.Popen([binary, "--config", str(path)], env=env, stdout=log, stderr=log)
            )
            log.close()
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_healthy(ports: list[tuple[int, int]], query: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    for _, monitor in ports:
        while _http_json(f"http://127.0.0.1:{monitor}/healthz{query}")[0] != 200:
            assert time.monotonic() < deadline, f"server on {monitor} not healthy ({query})"
            time.sleep(0.2)


async def _use_the_stream(url: str, token: str, replicas: int) -> int:
    import nats
    from nats.errors import Error as NatsError

    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    client = await nats.connect(url, token=token, allow_reconnect=False, connect_timeout=2)
    try:
        js = client.jetstream()
        info = await js.add_stream(
            name="riskml-events", subjects=["riskml.events.>"], num_replicas=replicas
        )
        await js.publish("riskml.events.decision", b"{}")
        state = (await js.stream_info(info.config.name or "")).state
        return int(state.messages)
    finally:
        await client.close()


@pytest.mark.integration
@pytest.mark.parametrize("overlay", ["staging", "prod"])
def test_the_rendered_nats_conf_runs_with_jetstream_and_token_auth(
    rendered: dict[str, list[Doc]], overlay: str, tmp_path: Path
) -> None:
    """The overlay's nats.conf, as its StatefulSet runs it: the probes' health endpoint answers,
    a client without the token is refused, one with it stores an event; prod's three servers
    form one JetStream cluster through their routes and hold a stream with three replicas."""
    docs = rendered[overlay]
    replicas = _nats(docs)["spec"]["replicas"]
    path = _container(_nats(docs))["startupProbe"]["httpGet"]["path"]
    token = "s3cret-token"
    with _servers(_nats_conf(docs), replicas, tmp_path, token) as ports:
        _wait_healthy(ports, path.removeprefix("/healthz"))
        if replicas > 1:
            _wait_healthy(ports, "")  # full health: the JetStream meta group has a leader
            status, jsz = _http_json(f"http://127.0.0.1:{ports[0][1]}/jsz")
            assert status == 200 and jsz["meta_cluster"]["cluster_size"] == replicas
        url = f"nats://127.0.0.1:{ports[0][0]}"
        assert asyncio.run(_use_the_stream(url, token, replicas)) == 1
