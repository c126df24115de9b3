"""Shared fixtures. Every test gets its own RISKML_HOME so nothing leaks between tests; the
expensive ones (a private Ray head, synthetic training frames) are made once per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskml.models.features import FeatureSpec
from riskml.orchestration.head import RayHead, start_head
from riskml.settings import get_settings
from riskml.training.synthetic import synthetic_frame, synthetic_spec
from tests.support.services import (  # noqa: F401  (fixtures)
    auth_redis,
    mlflow_server,
    nats_server,
    nats_stream,
    registry_db,
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI=true, stop at once when a test prerequisite (redis-server, Redis, nats-server,
    NATS, kubectl, CRDs, skaffold schema, PostgreSQL, chromium, ...) is missing, naming every
    one; locally, warn about what will be skipped (tests/support/prerequisites.py)."""
    from tests.support.prerequisites import session_check

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    warn = (lambda m: reporter.write_line(f"warning: {m}", yellow=True)) if reporter else None
    session_check(warn=warn)


_SESSION: list[pytest.Session] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION[:] = [session]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with the session's exit status without finalising the interpreter. Native threads
    that libraries leave in this process (Ray's core worker and gRPC threads of the drivers the
    tests connect) crashed it during finalisation on a 2-core machine, after the summary: SIGSEGV
    in a non-main thread (the kernel log: an instruction fetch at a heap address), twice in two
    full runs, turning "1517 passed" into exit 139. By now every fixture is finalised (the Ray
    heads, servers and brokers the tests started are stopped) and the report is written."""
    if not _SESSION:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(_SESSION[0].exitstatus))


@pytest.fixture(autouse=True)
def riskml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "riskml-home"
    monkeypatch.setenv("RISKML_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """A private Ray head (1 CPU, dashboard on, free ports, own temp dir), stopped afterwards
    by its own process group — never `ray stop`, which would hit other Ray instances."""
    head = start_head(num_cpus=1, include_dashboard=True, timeout_s=180)
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One simulated month, Feast features as of the replay day and a bundle on the
    ``fraud_v1`` contract trained on the point-in-time training set before it (~10 s, on first
    use; :func:`tests.support.world.build_world`): the serving and fault tests read it, none
    writes to it."""
    from tests.support.world import build_world

    return build_world(tmp_path_factory.mktemp("bundle-world"))


# -- synthetic training data (models, training) -------------------------------------------


@pytest.fixture(scope="session")
def spec() -> FeatureSpec:
    return synthetic_spec(n_tabular=6, seq_len=8)


@pytest.fixture(scope="session")
def frame() -> Any:
    """6,000 rows over 20 days, 6 tabular features, 3 sequence features × 8 steps."""
    return synthetic_frame(6_000, days=20, n_tabular=6, seq_len=8, fraud_rate=0.05, seed=3)


@pytest.fixture(scope="session")
def later_frame() -> Any:
    """A later window (different seed) to test on."""
    return synthetic_frame(3_000, days=5, n_tabular=6, seq_len=8, fraud_rate=0.05, seed=11)


@pytest.fixture(scope="session")
def artifacts(frame: Any, spec: FeatureSpec) -> Any:
    """A small real bundle's contents (XGBoost + sequence model, calibrators, blend), for tests
    that save, register or serve one."""
    from riskml.models.bundle import ModelArtifacts
    from riskml.models.calibration import fit_calibrator
    from riskml.models.ensemble import fit_blend
    from riskml.models.features import extract_inputs
    from riskml.models.sequence import SequenceParams, load_model, predict_proba
    from riskml.models.xgb import XGBParams, fit_booster, predict, to_ubj
    from riskml.training.sequence_train import train_sequence_local

    inp = extract_inputs(frame, spec)
    assert inp.y is not None and inp.sequence is not None
    tr, va, ca = slice(0, 3600), slice(3600, 4800), slice(4800, 6000)
    booster, _ = fit_booster(
        XGBParams(num_boost_round=40, early_stopping_rounds=10),
        inp.tabular[tr],
        inp.y[tr],
        inp.tabular[va],
        inp.y[va],
        feature_names=spec.tabular,
    )
    seq = train_sequence_local(
        inp.tabular[tr],
        inp.sequence[tr],
        inp.y[tr],
        inp.tabular[va],
        inp.sequence[va],
        inp.y[va],
        params=SequenceParams(epochs=1, batch_size=256, hidden=8, tab_hidden=8),
    )
    module = load_model(seq.architecture, seq.weights)
    raw = {
        "xgb": (predict(booster, inp.tabular[va]), predict(booster, inp.tabular[ca])),
        "sequence": (
            predict_proba(module, inp.tabular[va], inp.sequence[va]),
            predict_proba(module, inp.tabular[ca], inp.sequence[ca]),
        ),
    }
    cals = {m: fit_calibrator(r[1], inp.y[ca]) for m, r in raw.items()}
    blend = fit_blend({m: cals[m](r[0]) for m, r in raw.items()}, inp.y[va], "weighted")
    return ModelArtifacts(
        spec=spec,
        calibrators=cals,
        blend=blend,
        xgb_ubj=to_ubj(booster),
        seq_weights=seq.weights,
        seq_architecture=seq.architecture,
        metrics={"valid": {"auc": 0.9}},
        config={"note": "test"},
    )
