"""The HTML reports (riskml.evaluation.report) from small synthetic inputs — no pipeline run.

The unit tests check the page's content and number format; the integration test opens the
demo-style report in headless Chromium (Debian's ``chromium``) over the DevTools protocol,
asserts no console errors and that every image rendered, and keeps a full-page screenshot
(in the test's tmp dir and ``out/report-screenshot.png``). Without Chromium it skips — and fails
under ``CI=true``, where ``.ci/run`` installs it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from riskml.evaluation.report import fmt, holdout_html, write_report
from tests.evaluation.report_inputs import holdout_result, replay_result, synthetic

REPO = Path(__file__).resolve().parents[2]
E_NOTATION = re.compile(r"\d(\.\d+)?e[+-]\d", re.IGNORECASE)
DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


@pytest.fixture(scope="module")
def demo_page() -> str:
    s = synthetic()
    gate = {
        "decision": "deploy",
        "metric": "average_precision",
        "challenger": 0.61,
        "champion": None,
        "reason": "no champion yet",
    }
    return holdout_html(holdout_result(s), gate, scores=s, replay=replay_result())


def _text(page: str) -> str:
    return DATA_URI.sub("", page)


def test_numbers_are_formatted_for_people() -> None:
    assert fmt(0.87312) == "0.873"
    assert fmt(1234) == "1,234"
    assert fmt(27490.31) == "27,490"
    assert fmt(12.34, "ms") == "12.3 ms"
    assert fmt(0.0421, "%") == "4.2%"
    assert fmt(27490.31, "$") == "$27,490"
    assert fmt(4.2e-05) == "0.000042"
    assert fmt(float("nan")) == fmt(None) == "–"
    for value in (2.749e4, 1e-7, 3.5e9, 0.5e-3):
        assert not E_NOTATION.search(fmt(value)), value


def test_demo_report_has_every_section_formatted_and_self_contained(demo_page: str) -> None:
    text = _text(demo_page)
    for heading in (
        "Models compared",
        "At the threshold",
        "Ranking",
        "Calibration and score distribution",
        "Day by day and by scenario",
        "Gate: challenger vs champion",
        "Served: the held-back transactions replayed over HTTP",
    ):
        assert f"<h2>{heading}" in text, heading
    # blend vs each calibrated model, one row each
    for label in ("blend (served)", "xgb (calibrated)", "sequence (calibrated)"):
        assert f"<th>{label}</th>" in text
    assert not E_NOTATION.search(text), E_NOTATION.search(text)
    assert " ms" in text and "1,000 transactions" in text and "$" in text
    images = re.findall(r"<img [^>]*src='([^']*)'", demo_page)
    # PR, ROC, calibration, score distribution, CP@k/day, scenarios, decisions, latency
    assert len(images) == 8
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(src|href)=['\"](?!data:)", demo_page)


def test_holdout_html_from_the_result_alone_still_renders() -> None:
    """The pipeline benchmark's call: ``holdout_html(result)`` without scores or replay."""
    page = holdout_html(holdout_result(synthetic(n=1500)))
    text = _text(page)
    assert "Models compared" in text and "Recall per fraud scenario" not in text.split("<h2>")[0]
    assert len(re.findall(r"<img ", page)) == 2  # ROC from the thinned points, scenarios
    assert "Served:" not in text and "Gate:" not in text
    assert not E_NOTATION.search(text)


def test_backtest_report_writes_html_and_plots(tmp_path: Path) -> None:
    s = synthetic(n=2000)
    pooled = {
        name: {"y": s["y"], "score": p, "day": s["day"], "card": s["card"]}
        for name, p in s["models"].items()
    }
    folds = [{"fold": 0, "auc": 0.9, "ap": 0.5, "cp_at_k": 0.3, "test_start": "2024-02-05"}]
    report = {
        "config": {"k": 20},
        "models": {
            name: {
                "mean": {"auc": 0.91, "ap": 0.52 + i / 10, "cp_at_k": 0.31},
                "std": {"auc": 0.01, "ap": 0.02, "cp_at_k": 0.03},
                "folds": folds,
            }
            for i, name in enumerate(pooled)
        },
        "folds": [
            {
                "fold": 0,
                "train_start": None,
                "train_end": "2024-02-01T00:00:00+00:00",
                "label_cutoff": "2024-02-04T00:00:00+00:00",
                "test_start": "2024-02-05T00:00:00+00:00",
                "test_end": "2024-02-12T00:00:00+00:00",
                "train_rows": 27490,
                "train_frauds_known": 301,
                "train_frauds_true": 340,
                "test_rows": 2000,
                "test_frauds": 61,
                "excluded_known_card_rows": 0,
            }
        ],
    }
    paths = write_report(report, pooled, tmp_path / "REPORT.json")
    page = paths["html"].read_text()
    assert "Prequential backtest" in page and "27,490" in page
    assert not E_NOTATION.search(_text(page))
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 3
    for name in ("pr_curves", "calibration", "cp_at_k_per_day"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a report without the quality sections (an older JSON) has none of their tables
    for title in ("Raw vs calibrated", "Feature-group ablations", "Recall per fraud scenario"):
        assert title not in page


def _cells(page: str, title: str) -> list[list[str]]:
    """The text of each row of the first table after the heading ``title``."""
    section = page.split(f"<h2>{title}</h2>", 1)[1]
    table = section.split("<table>", 1)[1].split("</table>", 1)[0]
    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
        for row in table.split("</tr>")
        if row
    ]


def test_backtest_report_quality_tables(tmp_path: Path) -> None:
    s = synthetic(n=2000)
    shared = {k: s[k] for k in ("y", "day", "card")}
    pooled = {"xgboost": {**shared, "score": s["models"]["blend"]}}
    folds = [{"fold": f, "auc": 0.9, "ap": 0.5 + f / 10, "cp_at_k": 0.3} for f in range(2)]
    groups = {"terminal": ["term_cnt_1d", "term_risk_30d"], "device": ["dev_cnt_30d"]}
    report = {
        "config": {"k": 20, "exclude_known_cards": True, "known_cards_window": "train"},
        "models": {
            "xgboost": {
                "mean": {"auc": 0.9, "ap": 0.55, "cp_at_k": 0.3},
                "std": {"auc": 0.0, "ap": 0.05, "cp_at_k": 0.0},
                "folds": folds,
            }
        },
        "folds": [
            {
                "fold": f,
                "test_start": f"2024-02-0{5 + f}T00:00:00+00:00",
                "cp_at_k_ceiling": 0.45,
                "max_fraud_cards_per_day": 12,
                "test_end": "2024-02-12T00:00:00+00:00",
            }
            for f in range(2)
        ],
        "cp_at_k_ceiling": {"mean": 0.45, "std": 0.0},
        "calibration": [
            {
                "fold": f,
                "model": "xgboost",
                "ap_raw": 0.52,
                "ap_calibrated": 0.5,
                "cp_raw": 0.31,
                "cp_calibrated": 0.3,
                "distinct_top2000_raw": 2000,
                "distinct_top2000_calibrated": 37,
            }
            for f in range(2)
        ],
        "ablations": {
            "reference": "xgboost",
            "reference_ap": {"folds": [0.5, 0.6], "mean": 0.55, "std": 0.05},
            "groups": groups,
            "folds": [
                {
                    "fold": f,
                    "group": g,
                    "ap": 0.4 + f / 10,
                    "ap_drop": 0.1,
                    "cp_at_k": 0.2,
                    "cp_at_k_drop": 0.1 if g == "terminal" else 0.0,
                }
                for f in range(2)
                for g in groups
            ],
            "mean": {
                "terminal": {"ap": 0.45, "ap_drop": 0.1, "cp_at_k": 0.2, "cp_at_k_drop": 0.1},
                "device": {"ap": 0.53, "ap_drop": 0.02, "cp_at_k": 0.3, "cp_at_k_drop": 0.0},
            },
        },
        "scenarios": {
            "frauds": {"card_testing": 40, "unlabelled": 3},
            "recall": {
                "xgboost": {"card_testing": 0.5, "unlabelled": 1 / 3},
                "perfect": {"card_testing": 1.0, "unlabelled": 1.0},
                "xgboost_without_terminal": {"card_testing": 0.25, "unlabelled": 0.0},
            },
        },
    }
    page = write_report(report, pooled, tmp_path / "REPORT.json")["html"].read_text()
    assert not E_NOTATION.search(_text(page))
    models = _cells(page, "Models, mean ± std over folds")
    assert models[-1] == ["perfect ranking (CP@20 ceiling)", "–", "–", "0.450 ± 0.000"]
    assert "since the fold&#x27;s training start" in page
    windows = _cells(page, "Windows and label cut-offs")
    assert windows[0][-2:] == ["CP@20 ceiling", "max fraud cards / day"]
    assert windows[1][-2:] == ["0.450", "12"]
    calibration = _cells(page, "Raw vs calibrated scores")
    assert calibration[0][-2:] == ["distinct in top 2000 raw", "distinct in top 2000 calibrated"]
    assert calibration[1] == ["xgboost", "0", "0.520", "0.500", "0.310", "0.300", "2,000", "37"]
    ablations = _cells(page, "Feature-group ablations")
    per_fold = ["AP fold 0", "AP fold 1"]
    assert ablations[0] == [
        "group removed",
        "columns",
        *per_fold,
        "mean AP",
        "mean AP drop",
        "mean CP@20 drop",
    ]
    assert ablations[1] == ["none (the full xgboost)", "0", "0.500", "0.600", "0.550", "–", "–"]
    assert ablations[2] == ["terminal", "2", "0.400", "0.500", "0.450", "0.100", "0.100"]
    assert "<b>0.100</b>" in page  # the group the model misses most
    scenarios = _cells(page, "Recall per fraud scenario")
    models_shown = ["xgboost", "perfect ranking", "xgboost without terminal"]
    assert scenarios[0] == ["fraud scenario", "fraud rows", *models_shown]
    assert scenarios[1] == ["card testing", "40", "0.500", "1.000", "0.250"]
    assert scenarios[2] == ["unlabelled", "3", "0.333", "1.000", "0.000"]


# -- the page in a real browser ---------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


async def _load_in_chromium(binary: str, page: Path, profile: Path) -> dict[str, Any]:
    """Open ``page`` in headless Chromium over the DevTools protocol: console errors, each
    image's natural size, and a full-page PNG."""
    import aiohttp

    proc = await asyncio.create_subprocess_exec(
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-extensions", "--hide-scrollbars", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", "about:blank",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        ws_url = ""
        while not ws_url:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "chromium exited before its DevTools endpoint was up"
            if m := re.search(r"DevTools listening on (ws://\S+)", line):
                ws_url = m.group(1)
        port = re.search(r":(\d+)/", ws_url).group(1)  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json()
            target = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                return await _inspect(ws, page)
    finally:
        proc.terminate()
        await proc.wait()


async def _inspect(ws: Any, page: Path) -> dict[str, Any]:
    ids = iter(range(1, 10_000))
    errors: list[str] = []
    loaded = asyncio.Event()

    async def call(method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(ids)
        await ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(ws.receive_json(), 30)
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return dict(msg.get("result", {}))
            on_event(msg)

    def on_event(msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(json.dumps(params["exceptionDetails"])[:300])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(json.dumps(params.get("args"))[:300])
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(str(params["entry"].get("text"))[:300])
        elif method == "Page.loadEventFired":
            loaded.set()

    for domain in ("Page", "Runtime", "Log"):
        await call(f"{domain}.enable")
    await call("Emulation.setDeviceMetricsOverride", width=1280, height=900,
               deviceScaleFactor=1, mobile=False)  # fmt: skip
    await call("Page.navigate", url=page.as_uri())
    while not loaded.is_set():
        on_event(await asyncio.wait_for(ws.receive_json(), 30))
    images = await call(
        "Runtime.evaluate",
        expression="Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,"
        " width: i.naturalWidth, height: i.naturalHeight}))",
        returnByValue=True,
    )
    metrics = await call("Page.getLayoutMetrics")
    height = min(int(metrics["cssContentSize"]["height"]) + 1, 16000)
    await call("Emulation.setDeviceMetricsOverride", width=1280, height=height,
               deviceScaleFactor=1, mobile=False)  # fmt: skip
    shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    return {
        "errors": errors,
        "images": images["result"]["value"],
        "height": height,
        "png": base64.b64decode(shot["data"]),
    }


@pytest.mark.integration
def test_report_renders_in_headless_chromium(demo_page: str, tmp_path: Path) -> None:
    binary = _chromium()
    if binary is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    page = tmp_path / "report.html"
    page.write_text(demo_page)
    seen = asyncio.run(asyncio.wait_for(_load_in_chromium(binary, page, tmp_path / "profile"), 120))
    shot = tmp_path / "report-screenshot.png"
    shot.write_bytes(seen["png"])
    (REPO / "out").mkdir(exist_ok=True)
    shutil.copyfile(shot, REPO / "out" / "report-screenshot.png")

    assert seen["errors"] == []
    assert len(seen["images"]) == 8
    for img in seen["images"]:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
    assert seen["png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert seen["height"] > 2000  # the whole page, not the first screen
