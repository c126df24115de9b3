"""Credit bundles (riskml.models.credit.bundle): the PD model and the offer ranker written as
bundles of the line ``credit`` and loaded back verified — same predictions, every file pinned by
the manifest (a changed byte, an extra file or another digest is refused), the fraud loader
refuses them by name (the registry's part: tests/credit/test_credit_pipelines.py).

:func:`credit_bundles` (small simulated portfolio, GBDT PD model + ranker, ~5 s) is shared by the
other platform tests of the credit line (serving, CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from riskml.models.bundle import BundleIntegrityError, bundle_digest, load_bundle, verify_bundle
from riskml.models.credit.bundle import (
    LINE,
    MODEL_MANIFEST,
    OFFERS_NAME,
    PD_NAME,
    bundle_name,
    load_credit_bundle,
    save_credit_bundle,
)

#: A split small enough for LoanSimConfig.small (18 vintages, 6 of them complete).
SMALL_SPLIT = {
    "test_vintages": 1,
    "select_vintages": 1,
    "calibration_vintages": 1,
    "valid_vintages": 1,
    "min_train_vintages": 2,
}


def credit_bundles(root: Path, *, seed: int = 5, models: tuple[str, ...] = ("gbdt",)) -> Any:
    """A small simulated portfolio and the bundles trained on it: ``pd`` (the PD model, GBDT
    unless ``models`` says otherwise, no Ray), ``offers`` (the ranker), with the portfolio
    (``portfolio``, its directory ``data``) and the training results."""
    from riskml.data.credit.simulator import LoanSimConfig, simulate_portfolio
    from riskml.training.credit import PDTrainingConfig, train_pd
    from riskml.training.credit_offers import OfferTrainingConfig, train_offer_ranker

    portfolio = simulate_portfolio(LoanSimConfig.small(seed=seed))
    data = portfolio.write(root / "portfolio")
    pd_cfg = PDTrainingConfig.model_validate(
        {"split": SMALL_SPLIT, "models": list(models), "tune": None, "use_ray": False}
    )
    pd_result = train_pd(portfolio, pd_cfg)
    pd_dir = save_credit_bundle(
        root / "bundles",
        pd_result.champion_model,
        metrics={"gini_gbdt": 0.5, "note": "test"},
        reference={"held_out_vintages": pd_result.split.test},
        config=pd_cfg.model_dump(mode="json"),
    )
    offers_cfg = OfferTrainingConfig(test_months=1, valid_months=1)
    offers_result = train_offer_ranker(portfolio, offers_cfg)
    offers_dir = save_credit_bundle(
        root / "bundles",
        offers_result.ranker,
        metrics={"ndcg5_model": 0.7},
        reference={"held_out_months": offers_result.split.test_months},
        config=offers_cfg.model_dump(mode="json"),
    )
    return SimpleNamespace(
        portfolio=portfolio,
        data=data,
        pd=pd_dir,
        offers=offers_dir,
        pd_result=pd_result,
        offers_result=offers_result,
    )


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return credit_bundles(tmp_path_factory.mktemp("credit-bundles"))


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy" / src.name
    shutil.copytree(src, dst)
    return dst


def test_the_pd_bundle_round_trips_with_the_same_predictions(bundles: Any) -> None:
    manifest = verify_bundle(bundles.pd)
    assert manifest["line"] == LINE and manifest["name"] == PD_NAME
    assert manifest["models"]["pd"] == {
        "kind": "credit-pd-gbdt",
        "file": "model/pd_model.json",
        "booster": "model/gbdt.ubj",
    }
    assert set(manifest["required"]) == {
        "model/pd_model.json",
        "metrics.json",
        "reference.json",
        "training_config.json",
    }
    # the model's own manifest is kept under another name: one manifest.json per bundle
    assert f"model/{MODEL_MANIFEST}" in manifest["files"]
    assert not any(f.endswith("/manifest.json") for f in manifest["files"])

    loaded = load_credit_bundle(bundles.pd, digest=bundle_digest(bundles.pd))
    assert (loaded.name, loaded.kind, loaded.version) == (PD_NAME, "pd", bundles.pd.name)
    assert loaded.metrics == {"gini_gbdt": 0.5, "note": "test"}
    assert loaded.reference["held_out_vintages"] == bundles.pd_result.split.test
    assert loaded.config["split"]["test_vintages"] == 1
    loans = bundles.portfolio.loans.head(300)
    original = bundles.pd_result.champion_model
    np.testing.assert_array_equal(loaded.model.pd(loans), original.pd(loans))
    before, after = (
        original.decide(loans.head(20)).rows(),
        loaded.model.decide(loans.head(20)).rows(),
    )
    assert after == before


def test_the_offers_bundle_round_trips_with_the_same_ranking(bundles: Any) -> None:
    loaded = load_credit_bundle(bundles.offers)
    assert (loaded.name, loaded.kind) == (OFFERS_NAME, "offers")
    assert bundle_name(bundles.offers) == OFFERS_NAME and bundle_name(bundles.pd) == PD_NAME
    test = bundles.offers_result.split.test
    original = bundles.offers_result.ranker.score_frame(test)
    again = loaded.model.score_frame(test)
    np.testing.assert_array_equal(again.score, original.score)
    np.testing.assert_array_equal(again.expected_value, original.expected_value)
    assert loaded.reference["held_out_months"] == bundles.offers_result.split.test_months


def test_a_changed_byte_an_extra_file_or_another_digest_is_refused(
    bundles: Any, tmp_path: Path
) -> None:
    changed = _copy(bundles.pd, tmp_path / "a")
    booster = changed / "model" / "gbdt.ubj"
    data = bytearray(booster.read_bytes())
    data[len(data) // 2] ^= 0xFF
    booster.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=r"sha256 mismatch for model/gbdt\.ubj"):
        load_credit_bundle(changed)

    extra = _copy(bundles.offers, tmp_path / "b")
    (extra / "model" / "notes.txt").write_text("not in the manifest")
    with pytest.raises(BundleIntegrityError, match=r"files not in the manifest: \['model/notes"):
        load_credit_bundle(extra)

    with pytest.raises(BundleIntegrityError, match="is not the pinned"):
        load_credit_bundle(bundles.pd, digest="0" * 64)

    with pytest.raises(BundleIntegrityError, match=r"no manifest\.json"):
        load_credit_bundle(tmp_path)


def test_the_fraud_loader_refuses_a_credit_bundle_by_name(bundles: Any) -> None:
    with pytest.raises(BundleIntegrityError, match="a credit bundle, not a fraud bundle"):
        load_bundle(bundles.pd)


def test_only_credit_models_are_saved(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not a credit model: dict"):
        save_credit_bundle(tmp_path, {"a": 1})  # type: ignore[arg-type]
    assert not (tmp_path / PD_NAME).exists()


def test_a_bundle_whose_model_does_not_load_is_refused(bundles: Any, tmp_path: Path) -> None:
    """A bundle made with the manifest intact but a model document the PD loader refuses."""
    from riskml.models.bundle import save_line_bundle

    files = {
        f"model/{p.name}": p.read_bytes() for p in (bundles.pd / "model").iterdir() if p.is_file()
    }
    doc = json.loads(files["model/pd_model.json"])
    doc["kind"] = "neural"
    files["model/pd_model.json"] = json.dumps(doc).encode()
    for name in ("metrics.json", "reference.json", "training_config.json"):
        files[name] = (bundles.pd / name).read_bytes()
    bad = save_line_bundle(
        tmp_path, PD_NAME, line=LINE, files=files, required=["model/pd_model.json"]
    )
    with pytest.raises(BundleIntegrityError, match="the credit-pd model does not load"):
        load_credit_bundle(bad)
