"""Importing real dispute records and their documents."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from riskml.data.disputes.importer import (
    REASONS,
    DisputeImportMapping,
    import_disputes,
    load_disputes,
)
from riskml.data.disputes.simulator import DisputeSet
from riskml.data.importer import ImportSchemaError

HEADER = (
    "dispute_id,tx_id,customer_id,terminal_id,tx_ts,opened_at,amount,currency,reason_code,"
    "customer_message,outcome,resolved_at,documents"
)
ROWS = [
    # good: documents found in docs/D1/
    "D1,X1,C1,T1,2024-03-05 10:00:00,2024-03-20,12.50,USD,10.4,I did not buy this,won,2024-05-01,",
    # good: one listed document exists, one is missing
    "D2,X2,C2,T1,2024-03-05T10:00:00Z,2024-03-21,40,USD,13.1,never came,pending,,r2.pdf;gone.pdf",
    # bad in many ways
    "D3,X3,C3,T1,2024-03-05,2024-03-01,-3,usd,99.9,,won,,../outside.pdf",
    # a later row reusing D1
    "D1,X4,C4,T1,2024-03-05,2024-03-20,5,USD,4837,,lost,2024-04-01,",
    # bad tx id (a space)
    "D5,X 5,C5,T1,2024-03-05,2024-03-20,5,USD,4837,,lost,2024-04-01,",
    # pending with a resolution date; a resolved one without
    "D6,X6,C6,T1,2024-03-05,2024-03-20,5,USD,13.6,,pending,2024-04-01,",
    "D7,X7,C7,T1,2024-03-05,2024-03-20,5,USD,13.6,,refunded,,",
]


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, Path]:
    """(records.csv, documents folder)."""
    docs = tmp_path / "docs"
    (docs / "D1").mkdir(parents=True)
    (docs / "D1" / "receipt.pdf").write_bytes(b"%PDF-1.4 receipt")
    (docs / "D1" / "notes.txt").write_text("not a document type")
    (docs / "r2.pdf").write_bytes(b"%PDF-1.4 r2")
    records = tmp_path / "records.csv"
    records.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return records, docs


def test_csv_import_accepts_quarantines_and_reports_documents(
    source: tuple[Path, Path], tmp_path: Path
) -> None:
    records, docs = source
    result = import_disputes(records, tmp_path / "out", documents_dir=docs)
    assert result.rows_in == 7 == result.accepted + result.quarantined
    assert result.accepted == 2 and result.quarantined == 5
    assert result.reasons == {
        "bad_tx_id": 1,
        "opened_before_tx": 1,
        "nonpositive_amount": 1,
        "bad_currency": 1,
        "unknown_reason_code": 1,
        "missing_resolved_at": 2,
        "resolved_while_pending": 1,
        "bad_document_path": 1,
        "duplicate_dispute_id": 1,
    }
    assert result.missing_documents == {"D2": ["gone.pdf"]}
    assert result.no_documents == []
    assert result.documents == 2
    q = pl.read_parquet(result.quarantine_path)
    reasons = dict(zip(q["dispute_id"], q["reason"], strict=True))
    assert reasons["D3"].split(";") == [
        "opened_before_tx",
        "nonpositive_amount",
        "bad_currency",
        "unknown_reason_code",
        "missing_resolved_at",
        "bad_document_path",
    ]
    assert reasons["D5"] == "bad_tx_id" and reasons["D1"] == "duplicate_dispute_id"
    assert q.filter(pl.col("dispute_id") == "D3")["amount"].item() == "-3"  # original text
    assert set(q["source_row"]) == {2, 3, 4, 5, 6}

    ds = DisputeSet.read(tmp_path / "out")
    d = ds.disputes
    assert d["dispute_id"].to_list() == ["D1", "D2"]
    assert d["network"].to_list() == ["visa", "visa"]
    assert d["reason_family"].to_list() == ["fraud", "consumer_dispute"]
    assert d["tx_ts"][0] == dt.datetime(2024, 3, 5, 10, tzinfo=dt.UTC)
    assert d["outcome"].to_list() == ["won", "pending"] and d["resolved_at"][1] is None
    assert sorted(ds.documents["document"]) == [
        "documents/D1/receipt.pdf",
        "documents/D2/r2.pdf",
    ]
    assert (ds.root / "documents/D2/r2.pdf").read_bytes() == b"%PDF-1.4 r2"
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["counts"]["rows_in"] == 7 and manifest["missing_documents"] == {
        "D2": ["gone.pdf"]
    }


def test_every_reason_has_a_message() -> None:
    assert all(text.strip() for text in REASONS.values())
    assert REASONS["bad_dispute_id"].startswith("dispute_id must be 1-128 characters")
    assert REASONS["bad_currency"].startswith("currency must be")


def test_json_and_json_lines_with_listed_documents(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.pdf").write_bytes(b"%PDF a")
    rows = [
        {
            "case": "J1",
            "tx_id": "X1",
            "customer_id": "C1",
            "terminal_id": "T1",
            "tx_ts": "2024-03-05T10:00:00",
            "opened_at": "2024-03-10T09:00:00",
            "amount": 19.99,
            "reason_code": "4853",
            "network": "mastercard",
            "documents": ["a.pdf", "b.pdf"],
        },
        {
            "case": "J2",
            "tx_id": "X2",
            "customer_id": "C2",
            "terminal_id": "T1",
            "tx_ts": "2024-03-05T10:00:00",
            "opened_at": "2024-03-10T09:00:00",
            "amount": 5,
            "reason_code": "4853",
            "network": "visa",  # disagrees with the code
        },
    ]
    mapping = DisputeImportMapping(columns={"dispute_id": "case"}, timezone="Europe/London")
    (tmp_path / "r.json").write_text(json.dumps(rows))
    loaded = load_disputes(tmp_path / "r.json", mapping, documents_dir=docs)
    assert loaded.accepted["dispute_id"].to_list() == ["J1"]
    assert loaded.reasons == {"bad_network": 1}
    assert loaded.missing_documents == {"J1": ["b.pdf"]}
    assert loaded.accepted["amount"].item() == 19.99
    assert loaded.accepted["currency"].item() == "USD"  # the default
    assert loaded.accepted["tx_ts"].item() == dt.datetime(2024, 3, 5, 10, tzinfo=dt.UTC)
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    lines = load_disputes(tmp_path / "r.jsonl", mapping, documents_dir=docs)
    assert lines.accepted.equals(loaded.accepted) and lines.reasons == loaded.reasons


def test_file_level_problems_raise_before_writing(
    source: tuple[Path, Path], tmp_path: Path
) -> None:
    records, docs = source
    out = tmp_path / "out"
    frame = pl.read_csv(records, infer_schema=False)
    with pytest.raises(ImportSchemaError, match=r"missing required dispute columns.*reason_code"):
        load_disputes(frame.drop("reason_code"))
    with pytest.raises(ImportSchemaError, match="mapping names source columns not in the file"):
        load_disputes(frame, DisputeImportMapping(columns={"amount": "amt"}))
    with pytest.raises(ImportSchemaError, match=r"list documents .* no documents folder"):
        load_disputes(frame)
    early = frame.with_columns(opened_at=pl.lit("1970-01-02"))
    with pytest.raises(ImportSchemaError, match="opened_at <- 'opened_at': 7 of 7 rows outside"):
        load_disputes(
            early,
            documents_dir=docs,
            ts_window=(
                dt.datetime(1990, 1, 1, tzinfo=dt.UTC),
                dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
            ),
        )
    bad = tmp_path / "records.xml"
    bad.write_text("<x/>")
    with pytest.raises(ImportSchemaError, match="unsupported file type"):
        import_disputes(bad, out, documents_dir=docs)
    with pytest.raises(ValueError, match="unknown dispute columns"):
        DisputeImportMapping(columns={"amount_usd": "amount"})
    with pytest.raises(ValueError, match=r"defaults\.outcome"):
        DisputeImportMapping(defaults={"outcome": "maybe"})
    assert not out.exists()


def test_import_is_atomic_and_refuses_to_clobber(source: tuple[Path, Path], tmp_path: Path) -> None:
    records, docs = source
    out = tmp_path / "out"
    import_disputes(records, out, documents_dir=docs)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match="not empty"):
        import_disputes(records, out, documents_dir=docs)
    future = tmp_path / "future.csv"
    future.write_text(records.read_text().replace("2024-03-20", "2999-03-20"))
    with pytest.raises(ImportSchemaError, match="outside the plausible window"):
        import_disputes(future, out, documents_dir=docs, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging left
    again = import_disputes(records, out, documents_dir=docs, overwrite=True)
    assert again.accepted == 2


def test_a_simulated_set_imports_back(dispute_set: DisputeSet, tmp_path: Path) -> None:
    """Export the simulated records to CSV with their documents; the import keeps them all."""
    docs = tmp_path / "docs"
    shutil.copytree(dispute_set.root / "documents", docs)
    csv = tmp_path / "disputes.csv"
    dispute_set.disputes.with_columns(
        pl.col("tx_ts", "opened_at", "resolved_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
    ).write_csv(csv)
    result = import_disputes(csv, tmp_path / "out", documents_dir=docs)
    assert result.quarantined == 0 and result.accepted == dispute_set.disputes.height
    assert result.documents == dispute_set.documents.height and not result.missing_documents
    back = DisputeSet.read(tmp_path / "out").disputes
    original = dispute_set.disputes.sort("opened_at", "dispute_id")
    assert back.sort("opened_at", "dispute_id").equals(original)
