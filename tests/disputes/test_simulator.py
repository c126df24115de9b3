"""The dispute simulator: records, ground truth, documents, outcomes, determinism."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pypdf
import pytest
from pydantic import ValidationError

from riskml.data.disputes.evidence import Evidence, merge
from riskml.data.disputes.schema import (
    BY_CODE,
    CLAIM_CODES,
    DISPUTE_COLUMN_NAMES,
    reason_family,
    validate_disputes,
)
from riskml.data.disputes.simulator import DisputeConfig, DisputeSet, simulate_disputes
from riskml.data.schema import SchemaError
from riskml.data.simulator import SimulationConfig

TINY_TX = SimulationConfig(n_customers=80, n_terminals=60, days=200, seed=3)


def _tiny(**overrides: object) -> DisputeConfig:
    base: dict[str, object] = {"n_disputes": 25, "transactions": TINY_TX, "scanned_share": 0.0}
    return DisputeConfig(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_tx(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """TINY_TX's transactions, simulated once (the transaction simulator's determinism is
    tested with it; here the disputes built on them are)."""
    from riskml.data.io import read_transactions
    from riskml.data.simulator import simulate

    out = tmp_path_factory.mktemp("tiny-tx")
    simulate(TINY_TX, out)
    return read_transactions(out)


def _text(path: Path) -> str:
    return " ".join(" ".join((p.extract_text() or "").split()) for p in pypdf.PdfReader(path).pages)


def test_records_follow_the_schema_and_the_catalogue(dispute_set: DisputeSet) -> None:
    d = dispute_set.disputes
    assert d.columns == list(DISPUTE_COLUMN_NAMES) and d.height == 60
    validate_disputes(d)  # raises on any breach
    for network, code, family in d.select("network", "reason_code", "reason_family").iter_rows():
        assert BY_CODE[(network, code)].family == family
    assert d.get_column("dispute_id").n_unique() == 60
    assert (d.get_column("opened_at") >= d.get_column("tx_ts")).all()
    assert d.get_column("outcome").is_in(["won", "lost", "refunded"]).all()
    assert (d.get_column("resolved_at") > d.get_column("opened_at")).all()
    # every disputed transaction is in the history, with its customer and amount
    joined = d.join(dispute_set.history, on="tx_id", how="left", suffix="_h")
    assert joined.get_column("customer_id_h").null_count() == 0
    assert (joined.get_column("customer_id") == joined.get_column("customer_id_h")).all()
    assert np.allclose(joined["amount"], joined["amount_h"].round(2))


def test_types_rates_and_claims(dispute_set: DisputeSet, dispute_config: DisputeConfig) -> None:
    t = dispute_set.truth.join(dispute_set.disputes, on="dispute_id")
    counts = dict(t.group_by("dispute_type").len().iter_rows())
    assert counts["true_fraud"] == round(60 * dispute_config.fraud_share)
    genuine = 60 - counts["true_fraud"]
    mix = dispute_config.type_mix
    for name, share in mix.items():  # largest-remainder allocation: within one of exact
        assert abs(counts.get(name, 0) - genuine * share / sum(mix.values())) < 1.0, name
    # a true fraud is always a fraud dispute on a fraud transaction
    fraud = t.filter(pl.col("dispute_type") == "true_fraud")
    assert (fraud["claim"] == "fraud").all() and (fraud["reason_family"] == "fraud").all()
    history = dispute_set.history.select("tx_id", "is_fraud")
    assert (fraud.join(history, on="tx_id")["is_fraud"] == 1).all()
    genuine_rows = t.filter(pl.col("dispute_type") != "true_fraud").join(history, on="tx_id")
    assert (genuine_rows["is_fraud"] == 0).all()
    # each code is one the claim is filed under (fraud by channel: 10.x / 48xx fraud codes)
    for claim, network, code in t.select("claim", "network", "reason_code").iter_rows():
        if claim == "fraud":
            assert reason_family(code, network) == "fraud"
        else:
            assert code in CLAIM_CODES[claim][network]
    assert set(t.get_column("network")) == {"visa", "mastercard"}


def test_messages_vary_and_speak_of_the_claim(dispute_set: DisputeSet) -> None:
    t = dispute_set.truth.join(dispute_set.disputes, on="dispute_id")
    messages = t.get_column("customer_message").to_list()
    assert all(m.strip() for m in messages)
    assert len(set(messages)) >= 0.8 * len(messages)
    fraud = " ".join(t.filter(pl.col("claim") == "fraud")["customer_message"]).lower()
    assert any(w in fraud for w in ("recognise", "did not", "stolen", "fraud", "unauthorised"))


def test_documents_exist_open_and_show_their_truth(dispute_set: DisputeSet) -> None:
    docs = dispute_set.documents
    assert docs.height >= 2 * dispute_set.disputes.height
    scanned = docs.filter(pl.col("scanned"))
    assert 0.05 <= scanned.height / docs.height <= 0.4
    for row in docs.iter_rows(named=True):
        path = dispute_set.root / row["document"]
        reader = pypdf.PdfReader(path)
        assert len(reader.pages) == row["pages"]
        truth = Evidence.model_validate_json(row["truth"])
        text = " ".join(" ".join((p.extract_text() or "").split()) for p in reader.pages)
        if row["scanned"]:
            assert text.strip() == "", row["document"]
        elif truth.order_id is not None:
            assert truth.order_id in text, row["document"]
    # what a case's documents show, merged, is the case's truth
    for dispute_id in dispute_set.disputes.get_column("dispute_id").head(10):
        shown = [
            Evidence.model_validate_json(j)
            for j in docs.filter(pl.col("dispute_id") == dispute_id)["truth"]
        ]
        assert dispute_set.case_truth(dispute_id) == merge(shown)
    first = docs.row(0, named=True)
    assert dispute_set.document_truth(first["document"]) == Evidence.model_validate_json(
        first["truth"]
    )
    with pytest.raises(KeyError):
        dispute_set.case_truth("nope")


def test_evidence_follows_the_truth(dispute_set: DisputeSet) -> None:
    t = dispute_set.truth
    ev = {d: Evidence.model_validate_json(j) for d, j in t.select("dispute_id", "evidence").rows()}
    kinds = dict(t.select("dispute_id", "dispute_type").rows())
    fraud_avs = [
        ev[d].avs_result for d, k in kinds.items() if k == "true_fraud" and ev[d].avs_result
    ]
    genuine_avs = [
        ev[d].avs_result for d, k in kinds.items() if k != "true_fraud" and ev[d].avs_result
    ]
    assert np.mean([a == "match" for a in genuine_avs]) > np.mean([a == "match" for a in fraud_avs])
    friendly = [ev[d] for d, k in kinds.items() if k == "friendly_fraud"]
    assert not any(e.customer_acknowledged is False for e in friendly)
    assert any(e.customer_acknowledged is True for e in friendly)


@pytest.fixture(scope="module")
def outcome_set(tmp_path_factory: pytest.TempPathFactory) -> DisputeSet:
    """300 disputes without scans: enough to see what drives outcomes."""
    config = DisputeConfig(
        n_disputes=300,
        transactions=SimulationConfig(n_customers=150, n_terminals=100, days=240, seed=5),
        scanned_share=0.0,
        seed=21,
    )
    return simulate_disputes(config, tmp_path_factory.mktemp("outcomes") / "set")


def test_outcome_depends_on_evidence_and_merit(outcome_set: DisputeSet) -> None:
    from sklearn.metrics import roc_auc_score

    t = outcome_set.truth.join(outcome_set.disputes, on="dispute_id")
    rep = t.filter(pl.col("outcome").is_in(["won", "lost"]))
    assert rep.height >= 80 and (rep["represented"]).all()
    won = (rep["outcome"] == "won").to_numpy()
    assert roc_auc_score(won, rep["evidence_strength"].to_numpy()) > 0.7
    assert roc_auc_score(won, rep["p_win"].to_numpy()) > 0.75
    by_type = dict(t.group_by("dispute_type").agg(pl.col("p_win").mean()).rows())
    assert by_type["friendly_fraud"] > by_type["true_fraud"] + 0.25
    merit = dict(rep.group_by("merit").agg((pl.col("outcome") == "won").mean()).rows())
    assert merit[True] > merit[False] + 0.2
    # refunds come fast, representments take weeks
    delay = (pl.col("resolved_at") - pl.col("opened_at")).dt.total_days()
    means = dict(t.group_by("outcome").agg(delay.mean()).rows())
    assert means["refunded"] < 10 < 20 < means["won"] <= means["lost"] + 10
    # merchants with no documents never represent
    n_docs = outcome_set.documents.group_by("dispute_id").len()
    bare = t.join(n_docs, on="dispute_id", how="anti")
    assert bare.height > 0 and (bare["outcome"] == "refunded").all()


def test_known_device_separates_friendly_from_true_fraud(outcome_set: DisputeSet) -> None:
    """Compelling evidence: a friendly fraudster's device or IP was used before."""
    h = outcome_set.history
    t = outcome_set.truth.join(outcome_set.disputes, on="dispute_id").join(
        h.select("tx_id", "device_id", "ip_address"), on="tx_id"
    )
    cnp = t.filter(pl.col("ip_address").is_not_null())

    def seen_before(row: dict[str, object]) -> bool:
        earlier = h.filter(
            (pl.col("customer_id") == row["customer_id"])
            & (pl.col("ts") < row["tx_ts"])
            & (pl.col("is_fraud") == 0)  # earlier undisputed, genuine use
            & (
                (pl.col("device_id") == row["device_id"])
                | (pl.col("ip_address") == row["ip_address"])
            )
        )
        return earlier.height > 0

    rate = {
        kind: np.mean(
            [
                seen_before(r)
                for r in cnp.filter(pl.col("dispute_type") == kind).iter_rows(named=True)
            ]
        )
        for kind in ("friendly_fraud", "true_fraud")
    }
    # (a fraud on the customer's own device, e.g. a high-amount one, also counts as seen)
    assert rate["friendly_fraud"] > 0.8 and rate["true_fraud"] < 0.5


def test_deterministic_per_seed(tmp_path: Path, tiny_tx: pl.DataFrame) -> None:
    config = _tiny(n_disputes=12, scanned_share=0.3)
    a = simulate_disputes(config, tmp_path / "a", transactions=tiny_tx)
    b = simulate_disputes(config, tmp_path / "b", transactions=tiny_tx)
    c = simulate_disputes(_tiny(n_disputes=12, seed=99), tmp_path / "c", transactions=tiny_tx)
    assert a.documents["scanned"].any()
    assert a.disputes.equals(b.disputes) and a.truth.equals(b.truth)
    assert a.documents.equals(b.documents)
    for doc in a.documents.get_column("document"):
        assert (a.root / doc).read_bytes() == (b.root / doc).read_bytes(), doc
    assert not a.truth.equals(c.truth)


def test_write_read_roundtrip_and_as_of(tmp_path: Path, tiny_tx: pl.DataFrame) -> None:
    config = _tiny(as_of="2024-06-01T00:00:00Z")
    ds = simulate_disputes(config, tmp_path / "set", transactions=tiny_tx)
    pending = ds.disputes.filter(pl.col("outcome") == "pending")
    assert pending.height > 0 and pending["resolved_at"].null_count() == pending.height
    resolved = ds.disputes.filter(pl.col("outcome") != "pending")["resolved_at"]
    assert resolved.len() > 0 and resolved.max() <= dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    copy = ds.write(tmp_path / "copy")
    again = DisputeSet.read(tmp_path / "copy")
    assert copy.root == tmp_path / "copy"
    assert again.disputes.equals(ds.disputes) and again.documents.equals(ds.documents)
    assert again.history.equals(ds.history) and again.manifest == ds.manifest
    for doc in ds.documents.get_column("document"):
        assert (again.root / doc).read_bytes() == (ds.root / doc).read_bytes()
    with pytest.raises(FileNotFoundError, match="no dispute set"):
        DisputeSet.read(tmp_path / "nothing")


def test_given_transactions_are_used(tmp_path: Path, tiny_tx: pl.DataFrame) -> None:
    ds = simulate_disputes(
        _tiny(n_disputes=10, history_days=150), tmp_path / "set", transactions=tiny_tx
    )
    assert set(ds.disputes["tx_id"]) <= set(tiny_tx["tx_id"])
    first = tiny_tx["ts"].min()
    assert isinstance(first, dt.datetime)
    assert (ds.disputes["tx_ts"] >= first + dt.timedelta(days=150)).all()  # history_days
    with pytest.raises(SchemaError):
        simulate_disputes(_tiny(), tmp_path / "bad", transactions=tiny_tx.drop("amount"))
    late = tiny_tx.filter(pl.col("ts") < first + dt.timedelta(days=100))
    with pytest.raises(ValueError, match="no transaction can be disputed"):
        simulate_disputes(_tiny(history_days=150), tmp_path / "none", transactions=late)


def test_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="unknown genuine dispute types"):
        DisputeConfig(type_mix={"chargeback_fun": 1.0})
    with pytest.raises(ValidationError, match="variants must be 0-31"):
        DisputeConfig(variants=(32,))
    with pytest.raises(ValidationError, match="history_days"):
        DisputeConfig(history_days=500, transactions=SimulationConfig(days=100))
    with pytest.raises(ValidationError, match="extra"):
        DisputeConfig(disputes=5)  # type: ignore[call-arg]


def test_validate_disputes_names_the_problem(dispute_set: DisputeSet) -> None:
    d = dispute_set.disputes
    with pytest.raises(SchemaError, match="unknown reason code"):
        validate_disputes(d.with_columns(reason_code=pl.lit("99.9")))
    with pytest.raises(SchemaError, match="reason_family disagrees"):
        validate_disputes(d.with_columns(reason_family=pl.lit("authorisation")))
    with pytest.raises(SchemaError, match="dispute_id: 60 rows break the id rule"):
        validate_disputes(d.with_columns(dispute_id=pl.lit("a b")))
    with pytest.raises(SchemaError, match="duplicate dispute_id"):
        validate_disputes(pl.concat([d, d.head(1)]))
    with pytest.raises(SchemaError, match="opened_at must not be before tx_ts"):
        validate_disputes(d.with_columns(opened_at=pl.col("tx_ts") - pl.duration(days=1)))
    with pytest.raises(SchemaError, match="resolved_at is null but the outcome is not pending"):
        validate_disputes(d.with_columns(resolved_at=pl.lit(None, pl.Datetime("us", "UTC"))))
    with pytest.raises(SchemaError, match="missing dispute columns: amount"):
        validate_disputes(d.drop("amount"))
