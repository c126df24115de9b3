"""Services a test starts for itself: a Redis with AUTH (and TLS) on free ports, a database on
the local PostgreSQL, an ``mlflow server`` backed by one with proxied artifacts. The fixtures are
session-scoped and exposed to every test by tests/conftest.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: The local PostgreSQL (trust auth) the tests create their databases in.
TEST_POSTGRES = os.environ.get("TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def need(ok: bool, what: str) -> None:
    """Skip a test whose prerequisite is missing; with CI=true fail instead."""
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"prerequisite missing (CI=true): {what}")
    pytest.skip(what)


# -- a Redis with AUTH (and TLS) of our own, a PostgreSQL database of our own ----------------
@dataclass(frozen=True)
class AuthRedis:
    """A ``redis-server --requirepass`` on a free port: the default user's password, an ACL
    user ``riskml`` with its own password, and (``tls_port``) a TLS listener with its CA."""

    host: str
    port: int
    password: str
    username: str
    user_password: str
    tls_port: int | None = None
    ca_file: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, **kwargs: Any) -> Any:
        import redis

        return redis.Redis(host=self.host, port=self.port, password=self.password, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _self_signed(folder: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for 127.0.0.1 (cert, key), made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def auth_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRedis]:
    """A Redis that requires AUTH, on free ports, killed at the end of the session."""
    import redis

    server = shutil.which("redis-server")
    need(server is not None, "redis-server not installed")
    assert server is not None
    folder = tmp_path_factory.mktemp("auth-redis")
    password, user_password = f"pw-{uuid.uuid4().hex}", f"upw-{uuid.uuid4().hex}"
    port = free_port()
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
            "--user", "riskml", "on", f">{user_password}", "~*", "&*", "+@all",
            "--save", "", "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    tls_port, ca_file = None, None
    certs = _self_signed(folder)
    if certs is not None:
        tls_port, (ca_file, key) = free_port(), certs
        args += ["--tls-port", str(tls_port), "--tls-cert-file", str(ca_file),
                 "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca_file),
                 "--tls-auth-clients", "no"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        info = AuthRedis("127.0.0.1", port, password, "riskml", user_password, tls_port, ca_file)
        deadline = time.monotonic() + 10
        while True:
            try:
                if info.client(socket_connect_timeout=1).ping():
                    break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"redis-server --requirepass did not start: {err[-500:]}")
                time.sleep(0.05)
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh database on the local PostgreSQL, made with createdb and dropped afterwards: its
    SQLAlchemy URL (``postgresql+psycopg://``)."""
    from urllib.parse import urlparse

    try:
        import psycopg  # noqa: F401  (the driver the registry URL names)
    except ImportError:
        need(False, "psycopg (3) is not installed: Feast's SQL registry on PostgreSQL needs it")
    createdb, dropdb = shutil.which("createdb"), shutil.which("dropdb")
    need(createdb is not None and dropdb is not None, "createdb/dropdb not installed")
    assert createdb is not None and dropdb is not None
    url = urlparse(TEST_POSTGRES)
    conn = ["-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432),
            "-U", url.username or "postgres", "-w"]  # fmt: skip
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    made = subprocess.run([createdb, *conn, name], capture_output=True, text=True, timeout=30)
    need(made.returncode == 0, f"no PostgreSQL at {TEST_POSTGRES}: {made.stderr.strip()}")
    try:
        yield f"postgresql+psycopg://{url.netloc}/{name}"
    finally:
        subprocess.run([dropdb, *conn, "--force", name], capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def registry_db() -> Iterator[str]:
    """A PostgreSQL database of this session for a Feast SQL registry."""
    with postgres_database("riskml_feast") as url:
        yield url


@dataclass(frozen=True)
class MlflowServer:
    """A tracking server: PostgreSQL backend store, artifacts proxied to a local folder (the
    stand-in for object storage), as the cluster runs it (``--serve-artifacts``)."""

    url: str
    artifacts: Path
    backend: str


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """``mlflow server`` on a free port over a PostgreSQL database of its own, stopped at the end
    of the session."""
    import importlib.util
    import urllib.request

    need(
        importlib.util.find_spec("flask") is not None,
        "the MLflow server (package mlflow, not mlflow-skinny) is not installed",
    )
    folder = tmp_path_factory.mktemp("mlflow-server")
    artifacts = folder / "artifacts"
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    port = free_port()
    with postgres_database("riskml_mlflow") as db:
        log = (folder / "server.log").open("wb")
        proc = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", db, "--serve-artifacts",
             "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, cwd=folder,
            env={**os.environ, "HOME": str(folder)},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (folder / "server.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"mlflow server did not start: {tail}")
                time.sleep(0.5)
            yield MlflowServer(url, artifacts, db)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


# -- a NATS server with JetStream of our own ---------------------------------------------------
def _nats_binary() -> str | None:
    return shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")


class NatsProcess:
    """``nats-server -js`` on a free port with its own store: :meth:`stop` kills it (the broker
    is gone), :meth:`start` brings it back on the same port with the same store (what was
    stored survives, as in a server restart). ``token``: require that auth token."""

    def __init__(self, folder: Path, token: str | None = None) -> None:
        binary = _nats_binary()
        need(binary is not None, "nats-server not installed")
        assert binary is not None
        self.binary, self.folder, self.token = binary, folder, token
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> NatsProcess:
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js",
                "-sd", str(self.folder / "store")]  # fmt: skip
        if self.token:
            args += ["--auth", self.token]
        log = (self.folder / "nats.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4096).startswith(b"INFO"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.folder / "nats.log").read_text(errors="replace")[-1000:]
                pytest.fail(f"nats-server did not start: {tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def nats_process(folder: Path, token: str | None = None) -> Iterator[NatsProcess]:
    server = NatsProcess(folder, token).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsProcess]:
    """A private ``nats-server -js`` for this session (streams made on it collide with no one's:
    every stream here covers the same ``riskml.events.>`` subjects)."""
    with nats_process(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def nats_stream(nats_server: NatsProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh stream name on the session's NATS, set as RISKML_NATS_URL/RISKML_STREAM_NAME;
    the stream is deleted afterwards. Yields the stream name."""
    import asyncio

    from riskml.settings import get_settings

    name = f"riskml-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("RISKML_NATS_URL", nats_server.url)
    monkeypatch.setenv("RISKML_STREAM_NAME", name)
    get_settings.cache_clear()
    yield name
    if nats_server.proc is None:
        return

    async def delete() -> None:
        import nats

        nc = await nats.connect(nats_server.url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await nc.jetstream().delete_stream(name)
        except Exception:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())
