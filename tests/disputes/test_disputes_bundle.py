"""The disputes bundle (riskml.models.disputes.bundle): the calibrated outcome model, the reason
classifier, the rules baseline, the policy, the compelling-evidence rule and the extraction
settings written as one bundle of the line ``disputes`` and loaded back verified — the same
predictions, every file pinned by the manifest (a changed byte, an extra file, another digest
are refused), the fraud loader refuses it by name, an uncalibrated model is never bundled.

:func:`disputes_bundles` (a 600-dispute simulated set, the pipeline's tasks: extract, features,
train, calibrate; ~20 s, built once per test session) is shared by the other platform tests of
the disputes line (serving, CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from riskml.models.bundle import (
    BundleIntegrityError,
    bundle_digest,
    load_bundle,
    save_line_bundle,
    verify_bundle,
)
from riskml.models.disputes.bundle import (
    LINE,
    NAME,
    REQUIRED,
    DecisionConfig,
    ExtractionConfig,
    load_disputes_bundle,
    save_disputes_bundle,
)

#: The run configuration of the shared bundle: a 20 % held-out window, 2 backtest folds.
RUN = {"test_share": 0.2, "n_folds": 2, "training": {"maturity_days": 60}}
_BUILT: dict[str, SimpleNamespace] = {}


def disputes_bundles(factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A simulated dispute set and the bundle the pipeline's tasks make of it (built once per
    session): ``set_dir``, ``evidence``, ``features``, ``model`` (before calibration),
    ``bundle`` (the bundle directory), ``config`` (the run config), ``calibrated`` (the
    calibrate task's result)."""
    if "bundle" not in _BUILT:
        from components import disputes_tasks as tasks
        from riskml.data.disputes.simulator import simulate_disputes

        root = factory.mktemp("disputes-platform")
        config = tasks.DisputesRunConfig.parse(RUN)
        dispute_config = tasks.dispute_config(
            "tiny",
            n_disputes=600,
            transactions={"n_customers": 500, "n_terminals": 200, "days": 400, "seed": 7},
        )
        simulate_disputes(dispute_config, root / "set")
        tasks.extract_task(root / "set", root / "evidence")
        tasks.features_task(root / "set", root / "evidence", root / "features", config=config)
        tasks.train_task(
            root / "set", root / "evidence", root / "features", root / "model", config=config
        )
        calibrated = tasks.calibrate_task(
            root / "set",
            root / "evidence",
            root / "features",
            root / "model",
            root / "bundles",
            config=config,
        )
        _BUILT["bundle"] = SimpleNamespace(
            root=root,
            set_dir=root / "set",
            evidence=root / "evidence",
            features=root / "features",
            model=root / "model",
            bundle=Path(calibrated["bundle_dir"]),
            config=config,
            calibrated=calibrated,
        )
    return _BUILT["bundle"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    return disputes_bundles(tmp_path_factory)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_the_bundle_holds_every_part_and_loads_back_verified(built: SimpleNamespace) -> None:
    bundle = load_disputes_bundle(built.bundle, digest=bundle_digest(built.bundle))
    manifest = json.loads((built.bundle / "manifest.json").read_text())
    assert manifest["line"] == LINE and manifest["name"] == NAME == bundle.name
    assert set(REQUIRED) <= set(manifest["files"]) and manifest["required"] == sorted(REQUIRED)
    assert manifest["models"]["outcome"]["booster"] == "model/outcome.ubj"
    # no pickle: a booster, JSON documents and nothing else
    suffixes = {Path(f).suffix for f in manifest["files"]}
    assert suffixes == {".json", ".ubj"}
    assert bundle.model.calibrator is not None
    assert bundle.reference["held_out"]["start"] == bundle.reference["cutoff"]
    assert bundle.decision == DecisionConfig.model_validate(
        {"policy": built.config.policy.model_dump(), "rule": built.config.training.rule}
    )
    assert bundle.extraction == ExtractionConfig()
    assert bundle.metrics["calibration_method"] == bundle.model.calibrator.method
    assert 0.5 < bundle.metrics["reason_family_accuracy"] <= 1.0


def test_a_saved_and_reloaded_bundle_predicts_the_same(
    built: SimpleNamespace, tmp_path: Path
) -> None:
    from components.disputes_tasks import load_dataset

    first = load_disputes_bundle(built.bundle)
    again = save_disputes_bundle(
        tmp_path,
        first.model,
        reason=first.reason,
        baseline=first.baseline,
        decision=first.decision,
        extraction=first.extraction,
        metrics=first.metrics,
        reference=first.reference,
        config=first.config,
    )
    second = load_disputes_bundle(again)
    dataset = load_dataset(built.set_dir, built.evidence)
    x = dataset.matrix()
    assert np.array_equal(first.model.predict(x), second.model.predict(x))
    assert np.array_equal(first.model.raw(x), second.model.raw(x))
    assert float(np.std(first.model.predict(x))) > 0.01  # a model, not a constant
    scores = np.linspace(0.05, 0.95, 7)
    assert np.array_equal(first.baseline(scores), second.baseline(scores))
    messages = dataset.disputes.get_column("customer_message").head(30).to_list()
    assert first.reason.predict(messages) == second.reason.predict(messages)
    assert second.policy == first.policy and second.rule == first.rule


def test_a_changed_byte_an_extra_file_or_another_digest_is_refused(
    built: SimpleNamespace, tmp_path: Path
) -> None:
    changed = _copy(built.bundle, tmp_path / "changed")
    reason = changed / "reason.json"
    reason.write_text(reason.read_text().replace('"classes"', '"classes" ', 1))
    with pytest.raises(BundleIntegrityError, match=r"reason\.json"):
        load_disputes_bundle(changed)
    extra = _copy(built.bundle, tmp_path / "extra")
    (extra / "model" / "notes.txt").write_text("hello")
    with pytest.raises(BundleIntegrityError, match=r"notes\.txt"):
        load_disputes_bundle(extra)
    with pytest.raises(BundleIntegrityError, match="digest"):
        load_disputes_bundle(built.bundle, digest="0" * 64)


def test_the_fraud_loader_refuses_it_by_name_and_other_names_are_refused(
    built: SimpleNamespace, tmp_path: Path
) -> None:
    with pytest.raises(BundleIntegrityError, match="a disputes bundle, not a fraud bundle"):
        load_bundle(built.bundle)
    verify_bundle(built.bundle)  # whole, as any bundle
    files = {f: (built.bundle / f).read_bytes() for f in REQUIRED}
    other = save_line_bundle(tmp_path, "disputes-other", line=LINE, files=files)
    with pytest.raises(BundleIntegrityError, match="named 'disputes-other'"):
        load_disputes_bundle(other)


def test_an_uncalibrated_model_is_never_bundled(built: SimpleNamespace, tmp_path: Path) -> None:
    from riskml.models.disputes.outcome import OutcomeModel

    uncalibrated = OutcomeModel.from_files(built.model)  # the train task's output
    assert uncalibrated.calibrator is None
    first = load_disputes_bundle(built.bundle)
    with pytest.raises(ValueError, match="not calibrated"):
        save_disputes_bundle(tmp_path, uncalibrated, reason=first.reason, baseline=first.baseline)
    assert not any(tmp_path.iterdir())


def test_the_bundle_extracts_and_reads_messages_as_configured(built: SimpleNamespace) -> None:
    from components.disputes_tasks import read_set
    from riskml.features.disputes.layout import LayoutExtractor

    bundle = load_disputes_bundle(built.bundle)
    dispute_set = read_set(built.set_dir)
    case = dispute_set.disputes.row(3, named=True)
    docs = dispute_set.case_documents(case["dispute_id"])
    got = bundle.extract(docs)
    assert got.extractor == "layout" and got.documents == [p.name for p in docs]
    assert got.evidence == LayoutExtractor().extract(docs).evidence
    assert bundle.reason_family("   ") is None
    assert bundle.reason_family("I never made this purchase, my card was stolen") == "fraud"


def test_the_bundle_assesses_a_dispute_with_its_own_policy(built: SimpleNamespace) -> None:
    from components.disputes_tasks import load_dataset, read_set
    from riskml.models.disputes.policy import PolicyConfig

    bundle = load_disputes_bundle(built.bundle)
    dataset = load_dataset(built.set_dir, built.evidence)
    history = read_set(built.set_dir).history
    record: dict[str, Any] = dataset.disputes.row(len(dataset) - 1, named=True)
    evidence = dataset.evidence[len(dataset) - 1]
    own = bundle.assess(record, evidence, history=history, prior_disputes=dataset.disputes)
    assert own.p_win == pytest.approx(
        float(bundle.model.predict(dataset.matrix(np.array([len(dataset) - 1])))[0]), abs=1e-6
    )
    # a policy that makes representing free and refunding dear: never a refund
    generous = PolicyConfig.model_validate(
        {"economics": {"represent_cost": 0.0, "refund_cost": 1e6, "review_cost": 1e7}}
    )
    assert bundle.assess(record, evidence, history=history, policy=generous).action == "represent"
