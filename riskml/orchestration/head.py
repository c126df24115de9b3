"""A private local Ray head: ``ray start --head`` on free ports, stopped by process group.

``ray stop`` stops *every* Ray on the machine; this does not. ``ray start`` runs in a new session,
so every daemon it starts (GCS, raylet, dashboard, workers) stays in that process group after
``ray start`` itself returns; the head also gets its own ``--temp-dir``. :meth:`RayHead.stop`
signals exactly those processes: SIGTERM to the group, then SIGKILL to anything left in the
group, anything naming this head's temp dir as a Ray flag, or any job driver (own session) whose
``RAY_ADDRESS`` is this head. (No ``--block``: its monitor tears the whole head down when one
optional daemon, e.g. the Ray Client server, fails to start on a very loaded machine.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port(avoid: set[int] | None = None) -> int:
    """A TCP port free on 127.0.0.1 right now (never 6379, never one in ``avoid``)."""
    avoid = (avoid or set()) | {6379}
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


@dataclass
class RayHead:
    """A running private Ray head."""

    process: subprocess.Popen[bytes]
    temp_dir: Path
    gcs_address: str
    dashboard_url: str
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pgid(self) -> int:
        # start_new_session=True: the group id is ray-start's pid, kept by its daemons after it
        # exits (the kernel does not reuse a pid while a process group of that id exists).
        return self.process.pid

    def pids(self) -> list[int]:
        """PIDs of this head's processes: its process group, plus processes that name this
        head's temp dir as a Ray flag or run with ``RAY_ADDRESS`` = this head (job drivers run
        in sessions of their own). Never this process or its ancestors."""
        exclude = _ancestors()
        flags = [
            f"--{name}={self.temp_dir}".encode()
            for name in ("temp-dir", "temp_dir", "session-dir", "session_dir", "log-dir")
        ]
        # a whole entry (NUL-delimited): RISKML_RAY_ADDRESS=... must not match
        env_needle = f"\0RAY_ADDRESS={self.gcs_address}\0".encode()
        group = self.pgid if self._owns_group() else None
        found: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in exclude:
                continue
            pid = int(entry.name)
            try:
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # a zombie is already dead
                if group is not None and os.getpgid(pid) == group:
                    found.append(pid)
                    continue
                cmdline = (entry / "cmdline").read_bytes()
                if any(flag in cmdline for flag in flags):
                    found.append(pid)
                    continue
                if env_needle in b"\0" + (entry / "environ").read_bytes() + b"\0":
                    found.append(pid)
            except OSError:
                continue
        return found

    def _owns_group(self) -> bool:
        """True when process group ``pgid`` still holds a process of this head (one naming its
        temp dir): after the head died the number may belong to an unrelated group."""
        needle = str(self.temp_dir).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (
                    os.getpgid(int(entry.name)) == self.pgid
                    and needle in (entry / "cmdline").read_bytes()
                ):
                    return True
            except OSError:
                continue
        return False

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop this head and every process it started; remove its temp dir.

        SIGTERM to the process group, ``grace_s`` to exit, then SIGKILL to whatever is left.
        """
        if self._owns_group():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGTERM)
        else:  # the group is gone (pids wrap fast): signal only what is provably ours
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self.pids():
            time.sleep(0.2)
        for _ in range(3):
            left = self.pids()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _ancestors() -> set[int]:
    pids = {os.getpid()}
    pid = os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        pids.add(pid)
    return pids


def _ray_executable() -> str:
    candidate = Path(sys.executable).with_name("ray")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if not found:
        raise RuntimeError("the `ray` command is not installed next to this Python")
    return found


def start_head(
    *,
    num_cpus: int = 1,
    include_dashboard: bool = True,
    temp_dir: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 120.0,
    attempts: int = 3,
) -> RayHead:
    """Start a private Ray head on free ports; return once its dashboard answers.

    The head's environment puts this interpreter's ``bin/`` first on ``PATH``, so a Ray job's
    ``python`` is this venv's Python. Ray gives its raylet a fixed 30 s to register; on a
    machine loaded far beyond its cores that fails now and then, so a failed start is retried
    (``attempts``) on fresh ports.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for attempt in range(1, attempts + 1):
        try:
            return _start_head_once(
                num_cpus=num_cpus,
                include_dashboard=include_dashboard,
                temp_dir=temp_dir,
                env=env,
                timeout_s=timeout_s,
            )
        except (RuntimeError, TimeoutError):
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _start_head_once(
    *,
    num_cpus: int,
    include_dashboard: bool,
    temp_dir: Path | None,
    env: dict[str, str] | None,
    timeout_s: float,
) -> RayHead:
    ports = {
        "gcs": free_port(),
        "dashboard": free_port(),
        "agent_listen": free_port(),
        "metrics": free_port(),
        "client": free_port(),
    }
    if len(set(ports.values())) != len(ports):  # pragma: no cover - vanishingly unlikely
        raise RuntimeError(f"port collision {ports}")
    # Unix socket paths are limited to ~107 bytes: keep the temp dir short.
    temp = Path(temp_dir) if temp_dir else Path(tempfile.mkdtemp(prefix="rkh-", dir="/tmp"))
    temp.mkdir(parents=True, exist_ok=True)
    log_path = temp / "ray-start.log"
    child_env = {**os.environ, **(env or {})}
    child_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{child_env.get('PATH', '')}"
    child_env.pop("RAY_ADDRESS", None)
    from riskml.training.runtime import local_ray_env

    local_ray_env(child_env)  # workers at nice 0 on a machine of its own; Serve direct ingress
    pin_auth_mode(child_env)
    # Ray's state API inside this head's workers (Ray Train's PlacementGroupCleaner) otherwise
    # auto-detects "the" local cluster and fails when other Ray instances run on the machine.
    child_env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{ports['dashboard']}"
    cmd = [
        _ray_executable(),
        "start",
        "--head",
        f"--port={ports['gcs']}",
        f"--num-cpus={num_cpus}",
        f"--include-dashboard={'true' if include_dashboard else 'false'}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={ports['dashboard']}",
        f"--ray-client-server-port={ports['client']}",
        f"--dashboard-agent-listen-port={ports['agent_listen']}",
        f"--metrics-export-port={ports['metrics']}",
        f"--temp-dir={temp}",
        "--disable-usage-stats",
    ]
    log = log_path.open("wb")
    process = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env, start_new_session=True
    )
    log.close()
    head = RayHead(
        process=process,
        temp_dir=temp,
        gcs_address=f"127.0.0.1:{ports['gcs']}",
        dashboard_url=f"http://127.0.0.1:{ports['dashboard']}",
        log_path=log_path,
        ports=ports,
    )
    deadline = time.monotonic() + timeout_s
    probe = f"{head.dashboard_url}/api/version" if include_dashboard else None
    while True:
        if process.poll() not in (None, 0):
            tail = _tail(log_path)
            head.stop()
            raise RuntimeError(f"ray start exited with {process.returncode}: {tail}")
        address_file = temp / "ray_current_cluster"
        if address_file.exists() and (probe is None or _answers(probe)):
            # the GCS address drivers must use (Ray's node IP, not necessarily 127.0.0.1)
            head.gcs_address = address_file.read_text().strip() or head.gcs_address
            return head
        if time.monotonic() > deadline:
            tail = _tail(log_path)
            head.stop()
            raise TimeoutError(f"Ray head not up after {timeout_s:.0f} s: {tail}")
        time.sleep(0.5)


def pin_auth_mode(env: dict[str, str]) -> None:
    """Give a head about to start with ``env`` the token auth a client will assume.

    Ray 2.60 starts a ``ray.init()`` cluster with token auth (writing ``~/.ray/auth_token``
    when there is none) and a ``ray start`` head without it, while a client connects in token
    mode once it finds a token (Ray's job drivers and riskml's:
    :func:`~riskml.training.runtime.enable_token_auth_if_available`). A head started without
    auth before any ``ray.init()`` on the machine wrote the token then has every actor such a
    client creates cancelled before it runs (``ActorDiedError``: Ray Train's controller, Tune's
    trials). So a head riskml starts runs with token auth, as ``ray.init()``'s do, the token
    generated where none exists; ``RAY_AUTH_MODE`` in ``env`` (``disabled``) wins."""
    from riskml.training.runtime import auth_token, auth_token_path

    if env.get("RAY_AUTH_MODE"):
        return
    if not auth_token(env):
        from ray._private.authentication.authentication_token_generator import (
            generate_new_authentication_token,
        )

        path = auth_token_path(env)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # a token another process wrote first stays
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(generate_new_authentication_token())
    env["RAY_AUTH_MODE"] = "token"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answers (401 under Ray's token auth): it is up
    except OSError:
        return False


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def ray_head(**kwargs: object) -> Iterator[RayHead]:
    """``with ray_head(num_cpus=1) as head: ...`` — always stopped on exit."""
    head = start_head(**kwargs)  # type: ignore[arg-type]
    try:
        yield head
    finally:
        head.stop()
