"""Run the decision service on a local (or given) Ray cluster: start, status, stop.

``start`` connects to ``address`` (or ``RISKML_RAY_ADDRESS``), or launches a private Ray head
(:func:`riskml.orchestration.head.start_head`: free ports, own temp dir, own process group) and
records it in a state file; ``stop`` shuts Serve down and stops only that head's processes.
Serve's controller and replicas are detached actors, so the service outlives the CLI process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from serving.config import APP_NAME


class _Detached:
    """Stands in for the ``Popen`` of a head started by an earlier ``riskml serve start``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def wait(self, timeout: float | None = None) -> int:
        return 0


def _head(state: dict[str, Any]) -> Any:
    from riskml.orchestration.head import RayHead

    temp = Path(state["head_temp_dir"])
    return RayHead(
        process=_Detached(int(state["head_pid"])),  # type: ignore[arg-type]
        temp_dir=temp,
        gcs_address=state["address"],
        dashboard_url="",
        log_path=temp / "ray-start.log",
    )


_RAY_ENV = ("RAY_ADDRESS", "RAY_AUTH_MODE")


def _connect(address: str) -> None:
    from riskml.training.runtime import ensure_ray

    global _saved_env
    _saved_env = {k: os.environ.get(k) for k in _RAY_ENV}
    ensure_ray(address=address, logging_level=logging.ERROR, log_to_driver=False)


def _disconnect() -> None:
    """``ray.shutdown()`` and undo the environment ``ray.init(address=...)`` set, so a later
    ``ray.init()`` in the same process (tests) starts its own cluster again."""
    import ray

    ray.shutdown()
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_saved_env: dict[str, str | None] = {}


def app_config(
    args: dict[str, Any],
    *,
    name: str = APP_NAME,
    route_prefix: str = "/",
    user_configs: dict[str, dict[str, Any]] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One application entry of a serve config (the shape of ``serving/serve_config.yaml``)."""
    names = sorted(set(user_configs or {}) | set(options or {}))
    deployments = []
    for dep in names:
        entry: dict[str, Any] = {"name": dep, **(options or {}).get(dep, {})}
        if dep in (user_configs or {}):
            entry["user_config"] = user_configs[dep]  # type: ignore[index]
        deployments.append(entry)
    return {
        "name": name,
        "route_prefix": route_prefix,
        "import_path": "serving.app:build_app",
        "args": args,
        "deployments": deployments,
    }


def shipped_logging_config() -> dict[str, Any]:
    """The ``logging_config`` of ``serving/serve_config.yaml`` (what the RayService runs)."""
    import yaml

    from riskml.k8s.manifests import SERVE_CONFIG_PATH

    doc = yaml.safe_load(SERVE_CONFIG_PATH.read_text())
    return dict(doc.get("logging_config") or {})


def with_shipped_logging(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the shipped ``logging_config`` where it names none."""
    if "logging_config" in config:
        return config
    return {**config, "logging_config": shipped_logging_config()}


def deploy_config(config: dict[str, Any]) -> None:
    """Apply a serve config declaratively, the way ``serve run config.yaml`` does.

    The applications listed become the whole declarative set (others deployed this way are
    removed). A change confined to a deployment's ``user_config`` is applied in place through
    ``reconfigure()`` without restarting replicas; a change of ``args`` restarts them. A config
    without a ``logging_config`` gets the shipped one (:func:`shipped_logging_config`), so local
    replicas log as the cluster's do.
    """
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(with_shipped_logging(config))
    client = _get_global_client()  # the client `serve run config.yaml` uses
    if client is None:  # pragma: no cover - serve.start() was called before
        raise RuntimeError("Serve is not running on this Ray cluster")
    client.deploy_apps(schema)


def _failures(app: Any) -> str:
    """The failed deployments' own messages (a replica constructor's exception is there, not
    in the application's message), each cut to its last lines."""
    out = []
    for dname, dep in (getattr(app, "deployments", None) or {}).items():
        status = str(getattr(dep.status, "value", dep.status))
        if status != "HEALTHY" and dep.message:
            tail = [line for line in str(dep.message).splitlines() if line.strip()][-6:]
            out.append(f"\n  {dname} ({status}): " + "\n    ".join(tail))
    return "".join(out)


def wait_running(name: str, timeout_s: float = 300.0) -> None:
    """Wait until Serve reports the application RUNNING (raise with Serve's message if its
    deployment failed)."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    last = "absent"
    while time.monotonic() < deadline:
        app = serve.status().applications.get(name)
        if app is not None:
            last = str(getattr(app.status, "value", app.status))
            if last == "RUNNING":
                return
            if last == "DEPLOY_FAILED":
                raise RuntimeError(
                    f"application {name!r} failed to deploy: {app.message}{_failures(app)}"
                )
        time.sleep(0.5)
    raise TimeoutError(f"application {name!r} not RUNNING after {timeout_s:.0f}s (last: {last})")


def wait_healthy(url: str, timeout_s: float = 300.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/healthz", timeout=2.0, trust_env=False)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise TimeoutError(f"{url}/healthz not healthy after {timeout_s:.0f}s (last: {last})")


def ingress_urls(app_name: str, host: str = "127.0.0.1") -> list[str]:
    """HTTP URLs of ``app_name``'s running ingress replicas themselves (Serve direct ingress:
    no proxy hop), from the controller's target groups; ``[]`` when the cluster runs without
    direct ingress (its target groups are then the proxies', not the app's). Call it once the
    app is RUNNING (a replica publishes its port before that); needs a connected driver."""
    import ray
    from ray.serve._private.common import RequestProtocol
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:  # pragma: no cover - serve.start() was called before
        raise RuntimeError("Serve is not running on this Ray cluster")
    urls = []
    for group in ray.get(client._controller.get_target_groups.remote(app_name)):
        if group.protocol != RequestProtocol.HTTP or group.app_name != app_name:
            continue
        prefix = (group.route_prefix or "/").rstrip("/")
        urls += [f"http://{host}:{t.port}{prefix}" for t in group.targets]
    return sorted(urls)


def replay_targets(state: dict[str, Any]) -> list[str]:
    """Where to replay against a started service (:func:`start`'s state): its Ingress
    replicas' own URLs where Serve direct ingress is on, else its proxy URL."""
    return list(state.get("direct_urls") or [state.get("url", "http://127.0.0.1:8000")])


def start(
    config: dict[str, Any],
    state_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    num_cpus: int = 8,
) -> dict[str, Any]:
    """Deploy a serve config (``applications`` as in ``serving/serve_config.yaml``) with its
    HTTP host/port replaced by ``host``/``port``; wait until /healthz answers."""
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    from serving.config import validate_app_args

    config = {
        **config,
        "http_options": {**config.get("http_options", {}), "host": host, "port": port},
    }
    schema = ServeDeploySchema.model_validate(config)  # validate before starting anything
    for app in schema.applications:
        validate_app_args(app.import_path, app.args)
    head = None
    if address is None:
        from riskml.orchestration.head import start_head

        head = start_head(num_cpus=num_cpus, include_dashboard=False, timeout_s=300)
        address = head.gcs_address
    try:
        _connect(address)
        serve.start(http_options=schema.http_options.model_dump())
        deploy_config(config)
        for app in schema.applications:
            wait_running(app.name)
        prefix = (schema.applications[0].route_prefix or "/").rstrip("/")
        loopback = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{loopback}:{port}{prefix}"
        wait_healthy(url)
        direct = ingress_urls(schema.applications[0].name, loopback)
        for replica_url in direct:
            wait_healthy(replica_url)
    except BaseException:
        if head is not None:
            head.stop()
        raise
    finally:
        _disconnect()
    state = {
        "address": address,
        "url": url,
        # the Ingress replicas' own ports (Serve direct ingress): what `serve replay` targets
        "direct_urls": direct,
        "app": schema.applications[0].name,
        "head_pid": None if head is None else head.pgid,
        "head_temp_dir": None if head is None else str(head.temp_dir),
    }
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    return state


def read_state(state_path: Path) -> dict[str, Any]:
    if not state_path.exists():
        return {}
    return dict(json.loads(state_path.read_text()))


def status(state: dict[str, Any]) -> dict[str, Any]:
    import httpx
    from ray import serve

    _connect(state["address"])
    try:
        st = serve.status()
        apps = {
            name: {
                "status": str(app.status.value if hasattr(app.status, "value") else app.status),
                "deployments": {
                    d: {
                        "status": str(getattr(ds.status, "value", ds.status)),
                        "replicas": {
                            str(getattr(k, "value", k)): v for k, v in ds.replica_states.items()
                        },
                    }
                    for d, ds in app.deployments.items()
                },
            }
            for name, app in st.applications.items()
        }
        host = urlsplit(state["url"]).hostname or "127.0.0.1"
        direct = ingress_urls(state["app"], host) if state.get("app") in apps else []
    finally:
        _disconnect()
    try:
        healthy = httpx.get(f"{state['url']}/healthz", timeout=2.0, trust_env=False).status_code
    except httpx.HTTPError:
        healthy = None
    return {
        "address": state["address"],
        "url": state["url"],
        "direct_urls": direct,
        "healthz": healthy,
        "apps": apps,
    }


def stop(state: dict[str, Any], state_path: Path) -> dict[str, Any]:
    from ray import serve

    stopped_serve = False
    try:
        _connect(state["address"])
        serve.shutdown()
        stopped_serve = True
    except Exception:  # the cluster may already be gone
        pass
    finally:
        _disconnect()
    ended_head = False
    if state.get("head_pid"):
        _head(state).stop()  # only the processes of the head `serve start` launched
        ended_head = True
    state_path.unlink(missing_ok=True)
    return {"serve_shutdown": stopped_serve, "ray_head_stopped": ended_head}


# -- one product line's app on its own (the credit and disputes demos, commands, benchmarks) ----

#: Environment a local app needs to reach this machine's registry (and its keys).
PASSED_ENV = (
    "RISKML_MLFLOW_TRACKING_URI",
    "RISKML_MLFLOW_REGISTRY_URI",
    "RISKML_API_KEYS",
    "RISKML_ADMIN_API_KEYS",
    "RISKML_REQUIRE_API_KEYS",
)


@contextlib.contextmanager
def line_app(
    module: str,
    args: Mapping[str, Any],
    *,
    port: int = 8000,
    address: str | None = None,
    host: str = "127.0.0.1",
    replicas: int = 1,
) -> Iterator[str]:
    """Serve one line's app — ``module`` (``serving.credit``, ``serving.disputes``) gives its
    ``APP_NAME``, ``ROUTE_PREFIX`` and ``app_config(args, num_replicas=, env=)`` — with ``args``
    on the Ray at ``address`` (``RISKML_RAY_ADDRESS``, else a new local head, stopped
    afterwards); yield its URL (``http://host:port<route prefix>``) once ``/healthz`` answers;
    shut Serve down on exit."""
    import importlib

    import ray
    from ray import serve

    from riskml.settings import get_settings
    from riskml.training.runtime import ensure_ray

    app = importlib.import_module(module)
    settings = get_settings()
    env = {"RISKML_HOME": str(settings.home.resolve())}
    env.update({k: os.environ[k] for k in PASSED_ENV if k in os.environ})
    config = app.app_config(dict(args), num_replicas=replicas, env=env)  # checks the args first
    head = None
    address = address or settings.ray_address
    if not address:
        from riskml.orchestration.head import start_head

        head = start_head(num_cpus=max(2, os.cpu_count() or 2), timeout_s=300)
        address = head.gcs_address
    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    try:
        ensure_ray(address=address, log_to_driver=False, logging_level=logging.ERROR)
        serve.start(http_options={"host": host, "port": port})
        deploy_config({"applications": [config]})
        wait_running(app.APP_NAME)
        loopback = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{loopback}:{port}{app.ROUTE_PREFIX}"
        wait_healthy(url)
        yield url
    finally:
        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if head is not None:
            head.stop()


def post_all(
    url: str, path: str, bodies: list[dict[str, Any]], headers: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[float], int]:
    """POST every body (one client, in order): the answers, latencies (ms), errors."""
    import httpx

    answers, latencies, errors = [], [], 0
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        for body in bodies:
            t0 = time.perf_counter()
            r = client.post(path, json=body, headers=dict(headers))
            latencies.append((time.perf_counter() - t0) * 1e3)
            if r.status_code == 200:
                answers.append(r.json())
            else:
                errors += 1
    return answers, latencies, errors


def latency_quantiles(latencies: list[float]) -> dict[str, float | None]:
    """p50 and p99 (ms, 2 decimals) of ``latencies``; None when there are none."""
    import numpy as np

    if not latencies:
        return {"p50": None, "p99": None}
    return {q: round(float(np.percentile(latencies, int(q[1:]))), 2) for q in ("p50", "p99")}
