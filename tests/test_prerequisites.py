"""The session-start check: under CI=true a missing prerequisite stops the run at once, naming
every missing one and how to get it; without CI it only warns. The machine is faked (PATH,
ports, folders, Python packages), so the test runs anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from riskml.settings import REPO_ROOT
from tests.support.prerequisites import Probes, missing, session_check

ALL_NAMES = (
    "redis-server",
    "Redis on localhost:6379",
    "nats-server",
    "NATS on 127.0.0.1:4222",
    "kubectl",
    "CRD directory",
    "skaffold schema",
    "PostgreSQL on 127.0.0.1:5432",
    "createdb/dropdb",
    "chromium",
    "tesseract",
    "openssl",
    "psycopg",
    "the MLflow server",
)


def bare_machine() -> Probes:
    """A machine with nothing: no binaries, no listening ports, no folders, no packages."""
    return Probes(
        which=lambda name: None,
        port_open=lambda host, port: False,
        is_dir=lambda p: False,
        is_file=lambda p: False,
        has_module=lambda m: False,
        crd_dir=lambda: None,
        schema_dir=lambda: None,
    )


def full_machine(tmp_path: Path) -> Probes:
    return Probes(
        which=lambda name: f"/usr/bin/{name}",
        port_open=lambda host, port: True,
        is_dir=lambda p: True,
        is_file=lambda p: True,
        has_module=lambda m: True,
        crd_dir=lambda: tmp_path / "crds",
        schema_dir=lambda: tmp_path / "schemas",
    )


@pytest.fixture(autouse=True)
def no_nats_in_sbin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake PATH is the whole truth: no /usr/sbin/nats-server found behind its back."""
    import tests.support.prerequisites as prereq

    monkeypatch.setattr(prereq, "_nats_binary", lambda which: which("nats-server"))


def test_under_ci_every_missing_prerequisite_is_named_and_the_run_stops() -> None:
    with pytest.raises(pytest.exit.Exception) as stop:
        session_check(bare_machine(), environ={"CI": "true"})
    assert stop.value.returncode == pytest.ExitCode.USAGE_ERROR
    message = str(stop.value.msg)
    assert message.startswith(f"CI=true and {len(ALL_NAMES)} test prerequisite(s) missing")
    for name in ALL_NAMES:
        assert f"  - {name}" in message, name
    assert message.count("get it:") == len(ALL_NAMES)
    assert "apt-get install -y redis-server" in message and "pg_ctlcluster" in message
    assert "RISKML_CRD_DIR" in message and "RISKML_SCHEMA_DIR" in message


@pytest.mark.parametrize(
    ("lost", "name"),
    [
        ({"which:redis-server"}, "redis-server"),
        ({"port:6379"}, "Redis on localhost:6379"),
        ({"which:nats-server"}, "nats-server"),
        ({"port:4222"}, "NATS on 127.0.0.1:4222"),
        ({"which:kubectl"}, "kubectl"),
        ({"dir"}, "CRD directory"),
        ({"file"}, "skaffold schema"),
        ({"port:5432"}, "PostgreSQL on 127.0.0.1:5432"),
        ({"which:chromium", "which:chromium-browser", "which:google-chrome"}, "chromium"),
        ({"which:tesseract"}, "tesseract"),
    ],
)
def test_one_missing_prerequisite_is_the_only_one_named(
    tmp_path: Path, lost: set[str], name: str
) -> None:
    probes = full_machine(tmp_path)
    probes.which = lambda b: None if f"which:{b}" in lost else f"/usr/bin/{b}"
    probes.port_open = lambda host, port: f"port:{port}" not in lost
    probes.is_dir = lambda p: "dir" not in lost
    probes.is_file = lambda p: "file" not in lost
    absent = missing(probes)
    assert [pre.name.split(" (")[0] for pre in absent] == [name.split(" (")[0]]
    with pytest.raises(pytest.exit.Exception, match="1 test prerequisite"):
        session_check(probes, environ={"CI": "true"})


def test_with_ci_unset_it_only_warns(tmp_path: Path) -> None:
    warned: list[str] = []
    for environ in ({}, {"CI": "false"}, {"CI": ""}):
        session_check(bare_machine(), environ=environ, warn=warned.append)  # does not exit
    assert len(warned) == 3
    expected = f"{len(ALL_NAMES)} test prerequisite(s) missing: the tests that need them will skip"
    assert expected in warned[0]
    assert all(f"  - {name}" in warned[0] for name in ALL_NAMES)
    warned.clear()
    session_check(full_machine(tmp_path), environ={"CI": "true"}, warn=warned.append)
    assert warned == []  # all there: silent, even under CI


def test_a_ci_run_on_a_machine_without_them_stops_before_any_test(tmp_path: Path) -> None:
    """The real hook: pytest under CI=true with an empty PATH and nothing listening on the
    ports it probes exits with code 4 and the list, running no test."""
    env = {
        **os.environ,
        "CI": "true",
        "PATH": str(tmp_path / "empty-bin"),
        "TEST_REDIS_URL": "127.0.0.1:1,db=7",
        "TEST_POSTGRES": "postgresql://postgres@127.0.0.1:1/test",
        "RISKML_CRD_DIR": str(tmp_path / "no-crds"),
        "RISKML_SCHEMA_DIR": str(tmp_path / "no-schemas"),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/test_settings.py"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 4, out
    for name in ("redis-server", "Redis on 127.0.0.1:1", "kubectl", "CRD directory",
                 "skaffold schema", "PostgreSQL on 127.0.0.1:1", "chromium"):  # fmt: skip
        assert name in out, (name, out)
    assert " passed" not in out
