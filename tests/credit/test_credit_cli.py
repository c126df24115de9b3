"""``riskml credit ...`` through the real CLI (Typer's runner, in process): simulate, train, rank
and evaluate a tiny portfolio without Ray, the figures file other tools read (the issue's keys,
intervals, per-vintage tables, goals), evaluation of saved bundles, a loan-tape import, and clear
errors for bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from components.credit_tasks import EVALUATE_KEYS
from riskml.cli import app


def _run(*args: str) -> Any:
    result = CliRunner().invoke(app, ["credit", *args])
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("credit-cli")


@pytest.fixture(scope="module")
def data(workdir: Path) -> Path:
    out = workdir / "data"
    res = _run("simulate", "--size", "tiny", "--seed", "3", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "4,400" in res.output  # tiny: 22 vintages x 200 loans
    return out


@pytest.fixture(scope="module")
def figures(data: Path, workdir: Path) -> dict[str, Any]:
    out = workdir / "figures.json"
    res = _run("evaluate", "--data", str(data), "--out", str(out), "--no-ray")
    assert res.exit_code == 0, res.output
    assert "gini_gbdt" in res.output and "ev_per_customer_model_ci" in res.output
    return dict(json.loads(out.read_text()))


def test_evaluate_writes_the_keys_other_tools_read(figures: dict[str, Any]) -> None:
    for key in EVALUATE_KEYS:
        assert isinstance(figures[key], float) and math.isfinite(figures[key]), key
    assert 0 < figures["gini_gbdt"] <= 1 and 0 < figures["gini_glm"] <= 1
    assert 0 <= figures["ece_calibrated"] < 0.5 and 0 <= figures["jeffreys_pass_share"] <= 1
    assert 0 < figures["ndcg5_logging_policy"] <= figures["ndcg5_model"] <= 1
    diff = figures["gini_gbdt_minus_glm"]
    assert diff["difference"] == pytest.approx(figures["gini_gbdt"] - figures["gini_glm"])
    assert diff["low"] <= diff["difference"] <= diff["high"]
    for policy in ("model", "logging_policy", "largest_amount"):
        low, high = figures[f"ev_per_customer_{policy}_ci"]
        assert low <= figures[f"ev_per_customer_{policy}"] <= high, policy
    assert set(figures["per_vintage"]) == {"gbdt", "glm"}
    vintages = [row["vintage"] for row in figures["per_vintage"]["gbdt"]]
    assert figures["held_out_vintages"][0] in vintages and vintages == sorted(vintages)
    assert figures["grades"] and {"grade", "n", "passed"} <= set(figures["grades"][0])
    goals = figures["goals"]
    assert goals["ece_calibrated_met"] == (figures["ece_calibrated"] <= 0.02)
    assert goals["jeffreys_pass_share_met"] == (figures["jeffreys_pass_share"] >= 0.9)
    assert figures["held_out_months"] and figures["pd"]["champion"] == figures["champion"]


def test_evaluate_reads_saved_bundles(figures: dict[str, Any], data: Path, workdir: Path) -> None:
    out = workdir / "again.json"
    res = _run(
        "evaluate",
        "--data",
        str(data),
        "--out",
        str(out),
        "--pd-bundle",
        figures["bundles"]["pd"],
        "--offers-bundle",
        figures["bundles"]["offers"],
    )
    assert res.exit_code == 0, res.output
    again = json.loads(out.read_text())
    for key in EVALUATE_KEYS:
        assert again[key] == pytest.approx(figures[key]), key
    # the saved champion, re-scored on its held-out vintage, reproduces the training figures
    champion = figures["champion"]
    assert again["pd_bundle_holdout"]["gini"] == pytest.approx(figures[f"gini_{champion}"])


def test_train_and_rank_write_bundles(data: Path, workdir: Path) -> None:
    out = workdir / "bundles"
    res = _run("train", "--data", str(data), "--out", str(out), "--no-ray", "--tune-samples", "0")
    assert res.exit_code == 0, res.output
    (pd_bundle,) = (out / "credit-pd").iterdir()
    assert f"bundle: {pd_bundle}" in res.output.replace("\n", "")
    js = workdir / "rank.json"
    res = _run("rank", "--data", str(data), "--out", str(out), "--no-ray", "--json", str(js))
    assert res.exit_code == 0, res.output
    ranked = json.loads(js.read_text())
    assert ranked["name"] == "credit-offers" and Path(ranked["bundle_dir"]).is_dir()
    assert ranked["metrics"]["ndcg5_model"] > 0


def test_too_few_vintages_is_a_clear_error(workdir: Path) -> None:
    short = workdir / "short"
    res = _run("simulate", "--size", "tiny", "--months", "12", "--out", str(short))
    assert res.exit_code == 0, res.output
    res = _run("train", "--data", str(short), "--no-ray", "--out", str(workdir / "nope"))
    assert res.exit_code == 2
    assert "complete vintages" in res.output
    assert not (workdir / "nope" / "credit-pd").exists()


def test_import_a_loan_tape(data: Path, workdir: Path) -> None:
    loans = pl.read_parquet(data / "loans.parquet").head(300)
    tape = workdir / "tape.csv"
    keep = ["loan_id", "customer_id", "application_ts", "amount", "term_months", "apr"]
    loans.select(keep).write_csv(tape)
    out = workdir / "imported"
    res = _run("import", "--source", str(tape), "--as-of", "2024-11-01", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "accepted" in res.output and "300" in res.output
    assert (out / "loans.parquet").is_file()
    bad = _run("import", "--source", str(tape), "--as-of", "yesterday", "--out", str(out))
    assert bad.exit_code == 2 and "--as-of" in bad.output


def test_bad_options_are_refused() -> None:
    res = _run("simulate", "--size", "huge")
    assert res.exit_code == 2 and "tiny, demo" in res.output
    res = _run("serve", "--pd-model", "models:/credit-pd/1", "--pd-bundle", ".")
    assert res.exit_code == 2 and "not both" in res.output
    res = CliRunner().invoke(app, ["demo", "--line", "mortgages"])
    assert res.exit_code == 2 and "choose fraud, credit or disputes" in res.output
