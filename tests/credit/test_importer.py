"""The loan-tape importer: mapping, quarantine reasons, label maturity, file-level errors,
atomic writes (the old dataset survives a failure)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from riskml.data.credit.importer import (
    REASONS,
    ImportSchemaError,
    LoanImportMapping,
    import_loans,
    load_loans,
    read_loans,
)
from riskml.data.credit.simulator import Portfolio
from riskml.data.schema import SchemaError

AS_OF = dt.datetime(2024, 7, 1, tzinfo=dt.UTC)
HEADER = "loan_id,customer_id,application_ts,amount,term_months,apr,bureau_score,default_12m\n"
GOOD = [
    "L1,C1,2023-01-15T10:00:00Z,1000,12,0.19,700,0",
    "L2,C2,2023-02-01 09:30,500.5,6,0,640,1",
    "L3,C1,2024-05-01,800,3,0.1,,0",  # young: its 0 is not final yet
]


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def tape_of(portfolio: Portfolio) -> pl.DataFrame:
    """The simulated loans as a lender's tape: no sim_ columns, no derived columns, the outcome
    as the worst days past due seen in the first 12 months (as known at the end)."""
    loans = portfolio.loans
    return loans.drop(
        "sim_pd", "sim_default_12m", "vintage", "label_mature_at", "default_12m"
    ).with_columns(
        max_dpd_12m=pl.when(loans.get_column("default_12m") == 1).then(90).otherwise(0),
        application_ts=pl.col("application_ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


# --- the happy path ----------------------------------------------------------------------------
def test_a_simulated_tape_imports_back_to_the_simulated_loans(
    credit_portfolio: Portfolio, tmp_path: Path
) -> None:
    src = tmp_path / "tape.csv"
    tape_of(credit_portfolio).write_csv(src)
    result = import_loans(src, tmp_path / "out", as_of=credit_portfolio.observation_end)
    assert result.rows_in == result.accepted == credit_portfolio.loans.height
    assert result.quarantined == 0
    got = read_loans(tmp_path / "out")
    want = credit_portfolio.loans.drop("sim_pd", "sim_default_12m")
    assert got.sort("loan_id").equals(want.sort("loan_id"))
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["counts"] == {
        "rows_in": result.rows_in,
        "accepted": result.accepted,
        "quarantined": 0,
        "reasons": {},
    }
    assert manifest["labels"]["labelled"] == want.get_column("default_12m").is_not_null().sum()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "loans.parquet",
        "manifest.json",
        "quarantine.parquet",
    ]


def test_defaults_derivations_and_maturity(tmp_path: Path) -> None:
    loaded = load_loans(write_csv(tmp_path / "t.csv", GOOD), as_of=AS_OF)
    acc = loaded.accepted.sort("loan_id")
    assert loaded.quarantined.height == 0
    rows = {r["loan_id"]: r for r in acc.iter_rows(named=True)}
    assert rows["L1"]["vintage"] == "2023-01" and rows["L1"]["promotion"] == "none"
    assert rows["L1"]["origination_fee"] == 0.0
    assert rows["L1"]["monthly_payment"] == pytest.approx(92.16, abs=0.005)  # 1,000 / 12 / 19 %
    assert rows["L2"]["monthly_payment"] == pytest.approx(500.5 / 6, abs=0.005)
    assert rows["L1"]["default_12m"] == 0 and rows["L2"]["default_12m"] == 1
    assert rows["L3"]["default_12m"] is None  # 2 months on book at the as-of date
    assert rows["L3"]["bureau_score"] is None and rows["L3"]["age"] is None
    assert rows["L1"]["label_mature_at"] == dt.datetime(2024, 1, 15, 10, tzinfo=dt.UTC)
    # a default without default_mob is known at the latest at the as-of date
    assert rows["L2"]["label_mature_at"] == dt.datetime(2024, 2, 1, 9, 30, tzinfo=dt.UTC)
    assert set(loaded.defaulted) >= {"promotion", "origination_fee", "monthly_payment"}


def test_default_from_max_dpd_and_an_early_default_matures_early(tmp_path: Path) -> None:
    header = "loan_id,customer_id,application_ts,amount,term_months,apr,max_dpd_12m,default_mob\n"
    rows = [
        "A,C1,2024-03-10,600,6,0.2,90,4",  # default seen at the end of mob 4 (June)
        "B,C2,2024-03-10,600,6,0.2,60,",  # young, not (yet) a default: unlabelled
        "C,C3,2023-01-10,600,6,0.2,30,",  # old: a 0
    ]
    acc = load_loans(write_csv(tmp_path / "t.csv", rows, header), as_of=AS_OF).accepted
    got = {r["loan_id"]: r for r in acc.iter_rows(named=True)}
    assert got["A"]["default_12m"] == 1 and got["A"]["default_mob"] == 4
    assert got["A"]["label_mature_at"] == dt.datetime(2024, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
    assert got["B"]["default_12m"] is None and got["C"]["default_12m"] == 0


# --- quarantine --------------------------------------------------------------------------------
def test_every_bad_row_is_quarantined_with_its_reasons(tmp_path: Path) -> None:
    header = (
        "loan_id,customer_id,application_ts,amount,term_months,apr,promotion,bureau_score,"
        "category,default_12m,max_dpd_12m,default_mob\n"
    )
    rows = {
        "ok": "L1,C1,2023-01-02,100,3,0.1,none,700,home,0,0,",
        "missing_loan_id": ",C1,2023-01-02,100,3,0.1,none,700,home,0,0,",
        "bad_loan_id": "L 2,C1,2023-01-02,100,3,0.1,none,700,home,0,0,",
        "bad_application_ts": "L3,C1,yesterday,100,3,0.1,none,700,home,0,0,",
        "after_as_of": "L4,C1,2024-07-05,100,3,0.1,none,700,home,0,0,",
        "nonpositive_amount": "L5,C1,2023-01-02,-5,3,0.1,none,700,home,0,0,",
        "bad_amount": "L6,C1,2023-01-02,lots,3,0.1,none,700,home,0,0,",
        "bad_term_months": "L7,C1,2023-01-02,100,7,0.1,none,700,home,0,0,",
        "bad_apr": "L8,C1,2023-01-02,100,3,1.5,none,700,home,0,0,",
        "bad_promotion": "L9,C1,2023-01-02,100,3,0.1,bogus,700,home,0,0,",
        "bad_bureau_score": "L10,C1,2023-01-02,100,3,0.1,none,900,home,0,0,",
        "bad_category": "L11,C1,2023-01-02,100,3,0.1,none,700,toys,0,0,",
        "bad_default_12m": "L12,C1,2023-01-02,100,3,0.1,none,700,home,maybe,,",
        "label_conflict": "L13,C1,2023-01-02,100,3,0.1,none,700,home,0,120,",
        "bad_default_mob": "L14,C1,2023-01-02,100,3,0.1,none,700,home,1,90,13",
        "duplicate_loan_id": "L1,C9,2023-01-03,200,6,0.1,none,700,home,0,0,",
        "missing_term_months;bad_apr": "L15,C1,2023-01-02,100,,-0.1,none,700,home,0,0,",
    }
    loaded = load_loans(write_csv(tmp_path / "t.csv", list(rows.values()), header), as_of=AS_OF)
    assert loaded.rows_in == len(rows) == loaded.accepted.height + loaded.quarantined.height
    assert loaded.accepted.get_column("loan_id").to_list() == ["L1"]
    q = loaded.quarantined.sort("source_row")
    expected = [code for code in rows if code != "ok"]
    assert q.get_column("reason").to_list() == expected
    assert all(code in REASONS for reason in expected for code in reason.split(";"))
    # the quarantine keeps the original text and where it came from
    assert q.row(0, named=True)["amount"] == "100" and q.row(0, named=True)["source_row"] == 1
    assert loaded.reasons["duplicate_loan_id"] == 1


def test_percent_aprs_are_a_file_level_error_unless_declared(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "t.csv",
        ["L1,C1,2023-01-15,1000,12,19.9,700,0", "L2,C2,2023-02-01,500,6,24,640,1"],
    )
    with pytest.raises(
        ImportSchemaError, match=r"apr <- 'apr': 2 of 2 values are above 1 .*apr_unit: percent"
    ):
        load_loans(src, as_of=AS_OF)
    acc = load_loans(src, LoanImportMapping(apr_unit="percent"), as_of=AS_OF).accepted
    assert acc.sort("loan_id").get_column("apr").to_list() == pytest.approx([0.199, 0.24])


def test_column_mapping_and_mapping_file(tmp_path: Path) -> None:
    header = "id,cust,opened,principal,months,rate,score\n"
    src = write_csv(tmp_path / "t.csv", ["L1,C1,15/01/2023,1000,12,0.19,700"], header)
    mapping_file = tmp_path / "map.yaml"
    mapping_file.write_text(
        "columns: {loan_id: id, customer_id: cust, application_ts: opened, amount: principal,"
        " term_months: months, apr: rate, bureau_score: score}\n"
        "ts_format: '%d/%m/%Y'\ndefaults: {promotion: fee_waiver}\n"
    )
    mapping = LoanImportMapping.from_yaml(mapping_file)
    acc = load_loans(src, mapping, as_of=AS_OF).accepted
    row = acc.row(0, named=True)
    assert row["application_ts"] == dt.datetime(2023, 1, 15, tzinfo=dt.UTC)
    assert row["bureau_score"] == 700 and row["promotion"] == "fee_waiver"
    assert row["default_12m"] is None  # an unlabelled tape
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: {tx_id: id}\n")
    with pytest.raises(
        ImportSchemaError, match=r"invalid mapping file .*unknown loan columns \['tx_id'\]"
    ):
        LoanImportMapping.from_yaml(bad)


def test_file_level_errors_name_the_column(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "t.csv",
        ["L1,C1,2023-01-15,1000,12"],
        "loan_id,customer_id,application_ts,amount,term_months\n",
    )
    with pytest.raises(
        ImportSchemaError, match="missing required loan columns after mapping: apr"
    ) as info:
        load_loans(src, as_of=AS_OF)
    assert info.value.columns == ("apr",)
    with pytest.raises(
        ImportSchemaError, match=r"mapping names source columns not in the file: apr <- 'rate'"
    ):
        load_loans(src, LoanImportMapping(columns={"apr": "rate"}), as_of=AS_OF)
    frame = pl.DataFrame(
        {
            "loan_id": ["L1"],
            "customer_id": ["C1"],
            "application_ts": [1_700_000_000],
            "amount": [100.0],
            "term_months": [3],
            "apr": [0.1],
        }
    )
    with pytest.raises(
        ImportSchemaError, match=r"application_ts <- 'application_ts' has type Int64.*epoch"
    ):
        load_loans(frame, as_of=AS_OF)
    # epoch milliseconds read as seconds land outside the plausibility window
    window = (dt.datetime(1990, 1, 1, tzinfo=dt.UTC), AS_OF)
    with pytest.raises(
        ImportSchemaError, match="'application_ts': 1 of 1 rows outside the plausible window"
    ):
        load_loans(
            frame.with_columns(application_ts=pl.col("application_ts") * 1000),
            LoanImportMapping(ts_format="epoch_s"),
            as_of=AS_OF,
            ts_window=window,
        )


# --- atomic writes -----------------------------------------------------------------------------
def test_the_old_dataset_survives_a_failed_import(tmp_path: Path) -> None:
    out = tmp_path / "data" / "loans"
    import_loans(write_csv(tmp_path / "src" / "good.csv", GOOD), out, as_of=AS_OF)
    before = snapshot(out)
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        import_loans(write_csv(tmp_path / "src" / "good2.csv", GOOD[:1]), out, as_of=AS_OF)
    broken = write_csv(tmp_path / "src" / "bad.csv", ["L1,C1,2023-01-15,1000,12,19.9,700,0"])
    with pytest.raises(ImportSchemaError, match="look like percentages"):
        import_loans(broken, out, as_of=AS_OF, overwrite=True)
    future = write_csv(tmp_path / "src" / "future.csv", ["L1,C1,2031-01-15,1000,12,0.2,700,0"])
    with pytest.raises(ImportSchemaError, match="outside the plausible window"):
        import_loans(future, out, as_of=dt.datetime(2032, 1, 1), overwrite=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["loans"]  # no staging dirs left
    result = import_loans(
        write_csv(tmp_path / "src" / "good3.csv", GOOD[:2]), out, as_of=AS_OF, overwrite=True
    )
    assert result.accepted == 2 and read_loans(out).height == 2


def test_read_loans_checks_the_table(tmp_path: Path, credit_portfolio_dir: Path) -> None:
    assert read_loans(credit_portfolio_dir).height > 0  # a simulated portfolio reads too
    bad = tmp_path / "loans.parquet"
    pl.read_parquet(credit_portfolio_dir / "loans.parquet").with_columns(
        apr=pl.col("apr") + 2
    ).write_parquet(bad)
    with pytest.raises(SchemaError, match=r"loans.parquet: loans: values that break .*apr"):
        read_loans(bad)
