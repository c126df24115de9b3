"""The outcome model's features, its time-honest training, its files, and the one-call
assessment that serving uses."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from riskml.data.disputes.evidence import Evidence
from riskml.data.disputes.simulator import DisputeConfig, DisputeSet, simulate_disputes
from riskml.data.simulator import SimulationConfig
from riskml.features.disputes.features import (
    FEATURE_NAMES,
    DisputeFeatureError,
    build_features,
    code_claim,
    evidence_features,
)
from riskml.metrics import roc_auc
from riskml.models.disputes import assess_dispute
from riskml.models.disputes.outcome import (
    MODEL_FEATURES,
    OutcomeModel,
    OutcomeModelError,
    OutcomeParams,
    fit_outcome_model,
)
from riskml.models.disputes.policy import ACTIONS
from riskml.training.disputes import (
    DisputeDataset,
    DisputeTrainingConfig,
    DisputeTrainingError,
    OutcomeTrainingResult,
    dataset_from_set,
    split_at,
    train_outcome,
)

#: Small data: labelled disputes 60 days old are mature enough, fewer rows needed.
SMALL = DisputeTrainingConfig(maturity_days=60, min_train=30, min_calibration=15)


@pytest.fixture(scope="session")
def outcome_set(tmp_path_factory: pytest.TempPathFactory) -> DisputeSet:
    """500 disputes on 400 customers over 420 days, no scans (~5 s): enough resolved
    representments to train at a cut-off."""
    config = DisputeConfig(
        seed=3,
        n_disputes=500,
        scanned_share=0.0,
        transactions=SimulationConfig(n_customers=400, n_terminals=150, days=420, seed=5),
    )
    return simulate_disputes(config, tmp_path_factory.mktemp("disputes-outcome") / "set")


@pytest.fixture(scope="session")
def outcome_dataset(outcome_set: DisputeSet) -> DisputeDataset:
    return dataset_from_set(outcome_set)


@pytest.fixture(scope="session")
def trained(outcome_dataset: DisputeDataset) -> OutcomeTrainingResult:
    return train_outcome(outcome_dataset, None, SMALL)


def _truth(ds: DisputeSet) -> dict[str, Evidence]:
    return {
        r["dispute_id"]: Evidence.model_validate_json(r["evidence"])
        for r in ds.truth.iter_rows(named=True)
    }


# --- features -------------------------------------------------------------------------------------


def test_feature_frame_contract(outcome_set: DisputeSet) -> None:
    d = outcome_set.disputes
    feats = build_features(d, _truth(outcome_set), outcome_set.history)
    assert feats.frame.columns == ["dispute_id", *FEATURE_NAMES]
    assert feats.frame.get_column("dispute_id").to_list() == d.get_column("dispute_id").to_list()
    assert all(feats.frame.schema[c] == pl.Float64 for c in FEATURE_NAMES)
    fam = feats.frame.select(pl.sum_horizontal(pl.col("^dsp_family_.*$"))).to_series()
    assert (fam == 1.0).all()
    qualifies = [feats.compelling[i].qualifies for i in d.get_column("dispute_id").to_list()]
    assert feats.frame.get_column("ce_qualifies").to_list() == [float(q) for q in qualifies]
    assert 0 < sum(qualifies) < len(qualifies)
    # the simulator's evidence carries the disputed amount
    ev_amount = feats.frame.get_column("ev_amount_matches").drop_nans()
    assert ev_amount.len() > 0 and (ev_amount == 1.0).all()
    no_history = build_features(d.head(3), _truth(outcome_set))
    assert no_history.frame.select(pl.col("cust_tenure_days").is_nan().all()).item()
    assert not any(r.qualifies for r in no_history.compelling.values())


def test_features_do_not_look_ahead(outcome_set: DisputeSet) -> None:
    """Transactions after a disputed one and disputes opened after it change nothing."""
    d, h = outcome_set.disputes, outcome_set.history
    base = build_features(d, _truth(outcome_set), h).frame
    later = h.with_columns(
        (pl.col("ts") + pl.duration(days=2)).alias("ts"),
        (pl.col("label_available_at") + pl.duration(days=2)).alias("label_available_at"),
        (pl.col("tx_id") + "L").alias("tx_id"),
    )
    # shift the copies past each customer's last disputed transaction
    last = d.group_by("customer_id").agg(pl.col("opened_at").max().alias("_last"))
    later = (
        later.join(last, on="customer_id")
        .with_columns(
            (pl.col("ts") + (pl.col("_last") - pl.col("ts").min().over("customer_id"))).alias("ts")
        )
        .drop("_last")
    )
    later = later.with_columns(pl.col("ts").alias("label_available_at"))
    more = pl.concat([h, later.select(h.columns)])
    extra = d.with_columns(
        (pl.col("dispute_id") + "Z").alias("dispute_id"),
        (pl.col("opened_at") + pl.duration(days=400)).alias("opened_at"),
        (pl.col("tx_ts") + pl.duration(days=400)).alias("tx_ts"),
    )
    evidence = _truth(outcome_set) | {i + "Z": Evidence() for i in d.get_column("dispute_id")}
    both = build_features(pl.concat([d, extra]), evidence, more).frame.head(d.height)
    assert both.equals(base)


def test_evidence_features_by_hand() -> None:
    day = dt.date(2025, 3, 10)
    ev = Evidence(
        transaction_date=day,
        shipping_date=day + dt.timedelta(days=2),
        cancellation_date=day - dt.timedelta(days=4),
        refund_amount=25.0,
        amount=100.0,
        ip_address="2001:db8::1",
        device_id="Dev-1",
        avs_result="partial",
        customer_acknowledged=False,
    )
    f = evidence_features(
        ev, amount=100.0, tx_date=day, device_id="dev-1", ip_address="2001:0db8:0:0::1"
    )
    assert f["ev_ship_days"] == 2 and f["ev_cancel_after_charge_days"] == -4
    assert f["ev_refund_share"] == 0.25 and f["ev_amount_matches"] == 1.0
    assert f["ev_ip_matches_tx"] == 1.0 and f["ev_device_matches_tx"] == 1.0
    assert f["ev_avs_partial"] == 1.0 and f["ev_avs_match"] == 0.0
    assert f["ev_customer_acknowledged"] == 0.0 and np.isnan(f["ev_policy_accepted"])
    assert f["ev_n_fields"] == 9
    other = evidence_features(ev, amount=120.0, device_id="unknown", ip_address="24.0.0.1")
    assert other["ev_amount_matches"] == 0.0 and other["ev_ip_matches_tx"] == 0.0
    assert np.isnan(other["ev_device_matches_tx"])


def test_claims_from_reason_codes() -> None:
    assert code_claim("13.1") == "not_received"
    assert code_claim("10.1") == "fraud"
    assert code_claim("4853", "mastercard") is None
    assert code_claim("99.9") is None


def test_bad_feature_input_is_refused(outcome_set: DisputeSet) -> None:
    d = outcome_set.disputes.head(2)
    with pytest.raises(DisputeFeatureError, match="no evidence"):
        build_features(d, {})
    with pytest.raises(DisputeFeatureError, match="lack columns"):
        build_features(d.drop("reason_code"), [Evidence(), Evidence()])
    with pytest.raises(DisputeFeatureError, match="2 disputes"):
        build_features(d, [Evidence()])


# --- split and training -------------------------------------------------------------------------


def test_split_uses_only_what_was_known_at_the_cutoff(outcome_dataset: DisputeDataset) -> None:
    d = outcome_dataset.disputes
    cutoff = d.get_column("opened_at").quantile(0.7)
    assert isinstance(cutoff, dt.datetime)
    split = split_at(outcome_dataset, cutoff, SMALL)
    rows = np.concatenate([split.train, split.valid, split.calibration])
    sub = d[rows.tolist()]
    assert sub.get_column("outcome").is_in(["won", "lost"]).all()
    assert (sub.get_column("resolved_at") <= cutoff).all()
    assert (sub.get_column("opened_at") <= cutoff - dt.timedelta(days=60)).all()
    opened = d.get_column("opened_at").to_numpy()
    assert opened[split.train].max() <= opened[split.valid].min()
    assert opened[split.valid].max() <= opened[split.calibration].min()
    assert split.calibration.size == round(split.labelled * SMALL.calibration_share)
    assert split.skipped_immature > 0  # resolved quick wins of the last 60 days are left out


def test_outcomes_after_the_cutoff_change_nothing(outcome_dataset: DisputeDataset) -> None:
    d = outcome_dataset.disputes
    cutoff = d.get_column("opened_at").quantile(0.75)
    assert isinstance(cutoff, dt.datetime)
    first = train_outcome(outcome_dataset, cutoff, SMALL)
    flipped = d.with_columns(
        pl.when(pl.col("resolved_at") > cutoff)
        .then(pl.lit("won"))
        .otherwise(pl.col("outcome"))
        .alias("outcome")
    )
    assert not flipped.equals(d)
    other = DisputeDataset(**{**outcome_dataset.__dict__, "disputes": flipped, "_matrix": None})
    second = train_outcome(other, cutoff, SMALL)
    x = outcome_dataset.matrix()
    assert np.array_equal(first.model.predict(x), second.model.predict(x))
    assert first.model.metadata["cutoff"] == cutoff.isoformat()


def test_training_refuses_too_little_data(outcome_dataset: DisputeDataset) -> None:
    early = outcome_dataset.disputes.get_column("opened_at").quantile(0.2)
    assert isinstance(early, dt.datetime)
    with pytest.raises(DisputeTrainingError, match="known outcomes"):
        train_outcome(outcome_dataset, early, SMALL)


def test_trained_model_is_calibrated_and_keeps_order(
    trained: OutcomeTrainingResult, outcome_dataset: DisputeDataset
) -> None:
    model = trained.model
    assert model.feature_names == list(MODEL_FEATURES)
    assert model.calibrator is not None and model.calibrator.method == "platt"
    x = outcome_dataset.matrix()
    raw, cal = model.raw(x), model.predict(x)
    assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(cal, kind="stable"))
    rows = trained.split.calibration
    y = outcome_dataset.labels[rows]
    assert abs(cal[rows].mean() - y.mean()) < 0.05  # Platt matches the slice's win rate
    support = model.metadata["family_support"]
    assert sum(support.values()) == trained.split.train.size + trained.split.valid.size
    reasons = model.reasons(x[:3], k=2)
    assert len(reasons) == 3 and all(len(r) <= 2 for r in reasons)
    assert all(name in MODEL_FEATURES for r in reasons for name, _ in r)


def test_the_booster_learns_a_signal() -> None:
    rng = np.random.default_rng(1)
    names = ["a", "b", "c"]

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, 3))
        p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - x[:, 1])))
        return x, (rng.random(n) < p).astype(int)

    x, y = draw(1500)
    xv, yv = draw(400)
    model, info = fit_outcome_model(x, y, names, x_valid=xv, y_valid=yv)
    xt, yt = draw(1000)
    assert roc_auc(yt, model.predict(xt)) > 0.75
    assert info["train_rows"] == 1500 and 1 <= info["rounds"] <= 400
    with pytest.raises(OutcomeModelError, match="both outcomes"):
        fit_outcome_model(x, np.zeros(1500, dtype=int), names)
    with pytest.raises(OutcomeModelError, match="3 columns"):
        fit_outcome_model(x[:, :2], y, names)


def test_model_files_round_trip_and_are_verified(
    trained: OutcomeTrainingResult, outcome_dataset: DisputeDataset, tmp_path: Path
) -> None:
    out = trained.model.to_files(tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "outcome.ubj",
        "outcome_model.json",
    ]
    loaded = OutcomeModel.from_files(out)
    x = outcome_dataset.matrix()
    assert np.array_equal(loaded.predict(x), trained.model.predict(x))
    assert loaded.metadata["family_support"] == trained.model.metadata["family_support"]
    assert loaded.params == trained.model.params
    # a changed byte, a missing file, a feature list that does not match the booster
    booster = out / "outcome.ubj"
    data = bytearray(booster.read_bytes())
    data[-1] ^= 1
    booster.write_bytes(bytes(data))
    with pytest.raises(OutcomeModelError, match="sha256"):
        OutcomeModel.from_files(out)
    out2 = trained.model.to_files(tmp_path / "model2")
    doc = json.loads((out2 / "outcome_model.json").read_text())
    doc["feature_names"] = doc["feature_names"][::-1]
    (out2 / "outcome_model.json").write_text(json.dumps(doc))
    manifest = json.loads((out2 / "manifest.json").read_text())
    from riskml.models.bundle import sha256_file

    manifest["files"]["outcome_model.json"] = sha256_file(out2 / "outcome_model.json")
    (out2 / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OutcomeModelError, match="booster's features"):
        OutcomeModel.from_files(out2)
    with pytest.raises(OutcomeModelError, match="manifest"):
        OutcomeModel.from_files(tmp_path)
    with pytest.raises(OutcomeModelError, match="feature columns missing"):
        loaded.predict(outcome_dataset.frame.drop("ev_n_fields"))
    with pytest.raises(OutcomeModelError, match="expected"):
        loaded.predict(x[:, :5])


def test_params_are_validated() -> None:
    with pytest.raises(ValueError):
        OutcomeParams(max_depth=0)
    with pytest.raises(ValueError):
        OutcomeParams(calibration="magic")


# --- the one-call assessment ----------------------------------------------------------------------


def test_assess_dispute_scores_as_training_does(
    trained: OutcomeTrainingResult, outcome_dataset: DisputeDataset, outcome_set: DisputeSet
) -> None:
    """Serving's call gives the win probability the backtest computes for the same dispute."""
    d = outcome_set.disputes
    truth = _truth(outcome_set)
    ids = outcome_dataset.ids
    checked = 0
    for row in d.filter(pl.col("reason_family") == "fraud").head(4).iter_rows(named=True):
        history = outcome_set.history.filter(pl.col("customer_id") == row["customer_id"])
        prior = d.filter(pl.col("customer_id") == row["customer_id"])
        got = assess_dispute(
            row, truth[row["dispute_id"]], trained.model, history=history, prior_disputes=prior
        )
        i = ids.index(row["dispute_id"])
        expected = float(trained.model.predict(outcome_dataset.matrix(np.array([i])))[0])
        assert got.p_win == pytest.approx(expected, abs=1e-7)
        assert got.action in ACTIONS
        assert (
            got.compelling.qualifies
            == outcome_dataset.features.compelling[row["dispute_id"]].qualifies
        )
        assert got.requirements.key == "fraud"
        assert (got.packet is None) == (got.action == "auto_refund")
        payload = got.as_dict()
        json.dumps(payload, default=str)
        assert set(payload["features"]) == set(MODEL_FEATURES)
        checked += 1
    assert checked == 4
    with pytest.raises(ValueError, match="lacks"):
        assess_dispute({"dispute_id": "x"}, Evidence(), trained.model)


def test_a_card_with_no_earlier_transaction_on_the_device_is_assessed(
    trained: OutcomeTrainingResult, outcome_set: DisputeSet
) -> None:
    """Only the disputed transaction in the history: the device-age feature has no value (NaN to
    the model, null in the answer), which once failed the request."""
    truth = _truth(outcome_set)
    row = outcome_set.disputes.row(0, named=True)
    history = outcome_set.history.filter(pl.col("tx_id") == row["tx_id"])
    got = assess_dispute(row, truth[row["dispute_id"]], trained.model, history=history)
    assert 0.0 <= got.p_win <= 1.0
    assert any(math.isnan(v) for v in got.features.values())
    payload = got.as_dict()
    assert any(v is None for v in payload["features"].values())
    json.dumps(payload, allow_nan=False, default=str)


def test_assess_without_history_says_why(
    trained: OutcomeTrainingResult, outcome_set: DisputeSet
) -> None:
    row = outcome_set.disputes.filter(pl.col("reason_family") == "fraud").row(0, named=True)
    got = assess_dispute(row, Evidence(order_id="X"), trained.model, packet=False)
    assert got.packet is None
    assert got.requirements.compelling is None
    assert not got.compelling.qualifies
    assert np.isnan(got.features["ce_qualifies"])
    # no history: the fraud claim's compelling evidence could not be checked (a doubt)
    assert got.decision.action != "human_review" or any(
        "compelling evidence could not be checked" in r for r in got.decision.reasons
    )
