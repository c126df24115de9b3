"""What the test suite needs from the machine, checked once at session start.

Tests that need a binary, a service, a data folder or an optional Python package call
:func:`tests.support.services.need` (skip locally, fail under ``CI=true``). This module lists
the same prerequisites in one place so that a CI run (``CI=true``) fails at once, before any
test runs, with every missing one named and how to get it: :func:`session_check`, called from
``tests/conftest.py``'s ``pytest_sessionstart``. Locally (``CI`` unset) it only warns, listing
what will be skipped. ``.ci/run`` installs or starts what it can before the run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tests.support.services import TEST_POSTGRES

#: The local Redis of the Redis-backed tests (``host:port[,db=N]``, Feast's form).
TEST_REDIS = os.environ.get("TEST_REDIS_URL", "localhost:6379,db=7")
#: The local NATS (JetStream) that ``.ci/run`` starts for the event-stream tests.
TEST_NATS = ("127.0.0.1", 4222)
#: The skaffold JSON schema the k8s tests validate skaffold.yaml against.
SKAFFOLD_SCHEMA = "skaffold-v4beta14.json"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@dataclass(frozen=True)
class Prerequisite:
    """One thing the tests need: ``name`` (what a failure says is missing), ``needed_by`` (the
    tests that skip, or fail under CI, without it) and ``how`` (how to get it)."""

    name: str
    needed_by: str
    how: str


@dataclass
class Probes:
    """How the checks look at the machine (tests replace these with fakes)."""

    which: Callable[[str], str | None] = shutil.which
    port_open: Callable[[str, int], bool] = lambda host, port: port_open(host, port)
    is_dir: Callable[[Path], bool] = lambda p: p.is_dir()
    is_file: Callable[[Path], bool] = lambda p: p.is_file()
    has_module: Callable[[str], bool] = lambda m: importlib.util.find_spec(m) is not None
    crd_dir: Callable[[], Path | None] = lambda: _settings_dir("crd_dir")
    schema_dir: Callable[[], Path | None] = lambda: _settings_dir("schema_dir")


def port_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _settings_dir(field: str) -> Path | None:
    from riskml.settings import Settings

    value = getattr(Settings(), field)
    return Path(value) if value is not None else None


def _redis_address() -> tuple[str, int]:
    host, _, rest = TEST_REDIS.partition(":")
    return host or "localhost", int(rest.split(",")[0] or 6379)


def _postgres_address() -> tuple[str, int]:
    url = urlparse(TEST_POSTGRES)
    return url.hostname or "127.0.0.1", url.port or 5432


def _nats_binary(which: Callable[[str], str | None]) -> str | None:
    if found := which("nats-server"):
        return found
    sbin = Path("/usr/sbin/nats-server")  # Debian's package installs it outside a user's PATH
    return str(sbin) if sbin.is_file() else None


def missing(probes: Probes | None = None) -> list[Prerequisite]:
    """Every prerequisite of the suite that this machine lacks (empty: all there)."""
    p = probes or Probes()
    redis_host, redis_port = _redis_address()
    pg_host, pg_port = _postgres_address()
    nats_host, nats_port = TEST_NATS
    crd_dir, schema_dir = p.crd_dir(), p.schema_dir()
    checks: list[tuple[bool, Prerequisite]] = [
        (
            p.which("redis-server") is not None,
            Prerequisite(
                "redis-server",
                "private Redis servers (serving, feature store, Redis AUTH/TLS tests)",
                "apt-get install -y redis-server",
            ),
        ),
        (
            p.port_open(redis_host, redis_port),
            Prerequisite(
                f"Redis on {redis_host}:{redis_port}",
                "Redis online-store tests (TEST_REDIS_URL)",
                "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' "
                "--appendonly no (.ci/run starts it), or set TEST_REDIS_URL",
            ),
        ),
        (
            _nats_binary(p.which) is not None,
            Prerequisite(
                "nats-server",
                "event-stream tests (tests/streaming, tests/k8s/test_event_stream.py)",
                "apt-get install -y nats-server",
            ),
        ),
        (
            p.port_open(nats_host, nats_port),
            Prerequisite(
                f"NATS on {nats_host}:{nats_port}",
                "event-stream tests",
                f"nats-server -a {nats_host} -p {nats_port} -js (.ci/run starts it)",
            ),
        ),
        (
            p.which("kubectl") is not None,
            Prerequisite(
                "kubectl",
                "offline Kubernetes manifest checks (tests/k8s: `kubectl kustomize`)",
                "install kubectl on PATH (https://kubernetes.io/docs/tasks/tools/)",
            ),
        ),
        (
            crd_dir is not None and p.is_dir(crd_dir),
            Prerequisite(
                f"CRD directory (RISKML_CRD_DIR={crd_dir})",
                "CRD validation (tests/k8s, tests/orchestration)",
                "set RISKML_CRD_DIR to the CRD folder (default: ../shared/crds beside the "
                "checkout)",
            ),
        ),
        (
            schema_dir is not None and p.is_file(schema_dir / SKAFFOLD_SCHEMA),
            Prerequisite(
                f"skaffold schema ({SKAFFOLD_SCHEMA} in RISKML_SCHEMA_DIR={schema_dir})",
                "skaffold.yaml validation (tests/k8s)",
                "set RISKML_SCHEMA_DIR to the schema folder (default: ../shared/schemas "
                "beside the checkout)",
            ),
        ),
        (
            p.port_open(pg_host, pg_port),
            Prerequisite(
                f"PostgreSQL on {pg_host}:{pg_port}",
                "Feast SQL registry and MLflow server tests (TEST_POSTGRES)",
                "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
                "(.ci/run starts it), or set TEST_POSTGRES",
            ),
        ),
        (
            p.which("createdb") is not None and p.which("dropdb") is not None,
            Prerequisite(
                "createdb/dropdb",
                "tests that make a PostgreSQL database of their own",
                "apt-get install -y postgresql-client",
            ),
        ),
        (
            any(p.which(name) for name in CHROMIUM_NAMES),
            Prerequisite(
                "chromium",
                "the report's browser test (tests/evaluation/test_report.py)",
                "apt-get install -y chromium (.ci/run installs it)",
            ),
        ),
        (
            p.which("tesseract") is not None,
            Prerequisite(
                "tesseract",
                "OCR of scanned dispute evidence (tests/disputes)",
                "apt-get install -y tesseract-ocr (.ci/run installs it)",
            ),
        ),
        (
            p.which("openssl") is not None,
            Prerequisite(
                "openssl", "the TLS Redis test (certificates)", "apt-get install -y openssl"
            ),
        ),
        (
            p.has_module("psycopg"),
            Prerequisite(
                "psycopg (Python package)",
                "Feast's SQL registry on PostgreSQL",
                "pip install -r requirements.lock",
            ),
        ),
        (
            p.has_module("flask"),
            Prerequisite(
                "the MLflow server (Python package mlflow, not mlflow-skinny)",
                "MLflow server tests",
                "pip install -r requirements.lock",
            ),
        ),
    ]
    return [pre for ok, pre in checks if not ok]


def in_ci(environ: dict[str, str] | os._Environ[str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("CI", "").lower() == "true"


def report(absent: list[Prerequisite], ci: bool) -> str:
    """One message naming every missing prerequisite, what needs it and how to get it."""
    head = (
        f"CI=true and {len(absent)} test prerequisite(s) missing; the run stops here"
        if ci
        else f"{len(absent)} test prerequisite(s) missing: the tests that need them will skip "
        "(with CI=true they fail)"
    )
    lines = [f"  - {pre.name}: needed by {pre.needed_by}; get it: {pre.how}" for pre in absent]
    return "\n".join([head + ":", *lines])


def session_check(
    probes: Probes | None = None,
    environ: dict[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Under ``CI=true``: :func:`pytest.exit` (return code 4, a usage error) naming every
    missing prerequisite. Otherwise: ``warn`` the same list (nothing when all are there)."""
    import pytest

    absent = missing(probes)
    if not absent:
        return
    if in_ci(environ):
        pytest.exit(report(absent, ci=True), returncode=pytest.ExitCode.USAGE_ERROR)
    (warn or _stderr)(report(absent, ci=False))


def _stderr(message: str) -> None:
    import sys

    sys.stderr.write(f"warning: {message}\n")
