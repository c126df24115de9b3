"""Benchmark: evidence extraction throughput, and the disputes endpoint's latency.

    python -m benchmarks.disputes [--size demo] [--documents 400] [--scanned 10]
                                  [--requests 200] [--repeat 3] [--out FILE]

One process, one simulated dispute set (``--size``: ``tiny`` = 800 disputes, ``demo`` = 1,500),
one private Ray head for serving:

* **Extraction** on the same ``--documents`` clean PDFs (the set's first, in document order):
  *plain text extraction* (:func:`riskml.features.disputes.text.extract_text`: the PDF's text
  layer with offsets, the work every extractor starts with) against the *rules extractor*
  (:class:`riskml.features.disputes.extract.RulesExtractor`: that text plus the pattern rules,
  per-field provenance and confidence), one document at a time, in this process. Documents per
  second of each (best of ``--repeat``) and ``rules_over_text``, the rules extractor's share of
  plain extraction's throughput (1.0: the rules cost nothing on top). With ``--scanned N``, the
  same for N of those documents rendered as scans (image-only PDFs: tesseract OCR), when
  tesseract is installed.
* **Endpoint**: the bundle the pipeline's tasks train on the set (extract -> features -> train
  -> calibrate) served by the disputes app (one replica); ``--requests`` disputes of its
  held-out window to ``POST /v1/disputes/assess`` with their documents as base64 PDFs and the
  card's history, one client, one request at a time, over HTTP: p50 / p99 / mean. Baseline in
  the same run: the same requests through the in-process service
  (:class:`serving.disputes.DisputesService`), so the difference is what HTTP and Serve add.

Writes ``benchmarks/results/<UTC date>/disputes.json`` (or ``--out``) and prints a short table.
The load average before and after is recorded: the machine may be shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, percentiles
from riskml import __version__
from riskml.console import print_table, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def _throughput(paths: list[Path], work: Any, repeat: int) -> dict[str, float]:
    """Documents per second of ``work(path)`` over ``paths`` (best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for path in paths:
            work(path)
        best = min(best, time.perf_counter() - t0)
    return {
        "documents": len(paths),
        "seconds": round(best, 4),
        "documents_per_second": round(len(paths) / best, 2),
        "ms_per_document": round(best * 1e3 / len(paths), 3),
    }


def extraction(paths: list[Path], repeat: int) -> dict[str, Any]:
    """Plain text extraction against the rules extractor and the layout extractor (the rules
    and the learned layout model, the default) on the same documents."""
    from riskml.features.disputes.extract import RulesExtractor
    from riskml.features.disputes.layout import LayoutExtractor
    from riskml.features.disputes.text import extract_text

    rules, layout = RulesExtractor(), LayoutExtractor()  # the layout model loads here
    text = _throughput(paths, extract_text, repeat)
    ruled = _throughput(paths, lambda p: rules.extract([p]), repeat)
    laid = _throughput(paths, lambda p: layout.extract([p]), repeat)
    return {
        "text": text,
        "rules": ruled,
        "layout": laid,
        "rules_over_text": round(ruled["documents_per_second"] / text["documents_per_second"], 4),
        "rules_extra_ms_per_document": round(ruled["ms_per_document"] - text["ms_per_document"], 3),
        "layout_over_text": round(laid["documents_per_second"] / text["documents_per_second"], 4),
        "layout_extra_ms_per_document": round(laid["ms_per_document"] - text["ms_per_document"], 3),
    }


def scanned_extraction(paths: list[Path], work: Path, repeat: int) -> dict[str, Any]:
    """The same on scans of ``paths`` (OCR): None figures without tesseract."""
    if shutil.which("tesseract") is None:
        return {"unavailable": "tesseract is not installed"}
    from riskml.data.disputes.documents import scan_pdf

    scans = []
    for i, path in enumerate(paths):
        target = work / f"scan-{i:04d}.pdf"
        scan_pdf(path, target, seed=i)
        scans.append(target)
    return extraction(scans, repeat)


def endpoint(
    dispute_set: Any, bundle: Path, *, address: str, requests: int, port: int
) -> dict[str, Any]:
    """p50/p99 of ``POST /v1/disputes/assess`` over HTTP, and of the same requests in process."""
    import httpx

    from riskml.demo_disputes import disputes_serving, held_out_ids
    from riskml.models.disputes.bundle import load_disputes_bundle
    from serving.disputes import AssessRequest, DisputesService, case_request

    reference = load_disputes_bundle(bundle).reference
    ids = held_out_ids(dispute_set.root, reference, requests)
    bodies = [case_request(dispute_set, i) for i in ids]
    service = DisputesService.from_source({"bundle_dir": str(bundle)})
    in_process: list[float] = []
    for body in bodies:
        t0 = time.perf_counter()
        service.assess(AssessRequest.model_validate(body))
        in_process.append((time.perf_counter() - t0) * 1e3)
    http: list[float] = []
    errors = 0
    with (
        disputes_serving({"bundle_dir": str(bundle)}, port=port, address=address) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=60) as client,
    ):
        for body in bodies[:10]:  # warm-up
            client.post("/assess", json=body)
        for body in bodies:
            t0 = time.perf_counter()
            r = client.post("/assess", json=body)
            http.append((time.perf_counter() - t0) * 1e3)
            errors += r.status_code != 200
    docs = [len(b.get("documents", [])) for b in bodies]
    return {
        "url_path": "/v1/disputes/assess",
        "requests": len(bodies),
        "documents_per_request": round(float(np.mean(docs)), 2) if docs else 0.0,
        "request_bytes_mean": round(
            float(np.mean([len(str(b)) for b in bodies])) if bodies else 0.0, 0
        ),
        "http_ms": percentiles(http) if http else None,
        "in_process_ms": percentiles(in_process) if in_process else None,
        "errors": errors,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import polars as pl

    from components.disputes_tasks import DisputesRunConfig, dispute_config, train_chain
    from riskml.data.disputes.simulator import simulate_disputes
    from riskml.orchestration.head import start_head
    from riskml.settings import get_settings

    cpus = args.cpus or os.cpu_count() or 1
    out: dict[str, Any] = {
        "benchmark": "disputes",
        "riskml": __version__,
        "python": platform.python_version(),
        "cpus": cpus,
        "size": args.size,
        "load_average_start": load_average(),
    }
    work = Path(tempfile.mkdtemp(prefix="bench-disputes-"))
    t0 = time.perf_counter()
    try:
        dispute_set = simulate_disputes(dispute_config(args.size, args.seed), work / "set")
        out["disputes"] = dispute_set.disputes.height
        out["simulate_seconds"] = round(time.perf_counter() - t0, 2)
        clean = dispute_set.documents.filter(~pl.col("scanned")).sort("document")
        paths = [dispute_set.document_path(d) for d in clean.get_column("document").to_list()]
        paths = paths[: args.documents]
        out["extraction_clean"] = extraction(paths, args.repeat)
        if args.scanned:
            out["extraction_scanned"] = scanned_extraction(
                paths[: args.scanned], work, max(1, args.repeat - 1)
            )
        if not args.skip_serving:
            t1 = time.perf_counter()
            trained = train_chain(
                work / "set",
                work / "tasks",
                work / "bundles",
                config=DisputesRunConfig(),
                backtest=False,
            )
            out["train_seconds"] = round(time.perf_counter() - t1, 2)
            out["bundle_holdout_auc"] = trained["metrics"].get("holdout_auc")
            head = start_head(num_cpus=cpus, include_dashboard=False, timeout_s=300)
            saved = os.environ.get("RISKML_RAY_ADDRESS")
            os.environ["RISKML_RAY_ADDRESS"] = head.gcs_address
            get_settings.cache_clear()
            try:
                out["endpoint"] = endpoint(
                    dispute_set,
                    Path(trained["bundle_dir"]),
                    address=head.gcs_address,
                    requests=args.requests,
                    port=args.port,
                )
            finally:
                import ray

                if ray.is_initialized():
                    ray.shutdown()
                if saved is None:
                    os.environ.pop("RISKML_RAY_ADDRESS", None)
                else:
                    os.environ["RISKML_RAY_ADDRESS"] = saved
                get_settings.cache_clear()
                head.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["load_average_end"] = load_average()
    out["total_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="demo", choices=("tiny", "demo"))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--documents", type=int, default=400)
    parser.add_argument("--scanned", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--port", type=int, default=18_090)
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    path = write_json(args.out or RESULTS / day / "disputes.json", result)
    clean = result["extraction_clean"]
    rows: dict[str, Any] = {
        "clean PDFs: text / rules / layout documents/s": (
            f"{clean['text']['documents_per_second']:.1f} / "
            f"{clean['rules']['documents_per_second']:.1f} / "
            f"{clean['layout']['documents_per_second']:.1f}"
        ),
        "clean PDFs: rules / text, layout / text": (
            f"{clean['rules_over_text']} / {clean['layout_over_text']}"
        ),
    }
    scanned = result.get("extraction_scanned") or {}
    if "rules" in scanned:
        rows["scans (OCR): text / rules documents/s"] = (
            f"{scanned['text']['documents_per_second']:.2f} / "
            f"{scanned['rules']['documents_per_second']:.2f}"
        )
    ep = result.get("endpoint") or {}
    if ep.get("http_ms"):
        q, base = ep["http_ms"], ep["in_process_ms"]
        rows["/assess p50 / p99 ms (in process)"] = (
            f"{q['p50']:.1f} / {q['p99']:.1f} ({base['p50']:.1f} / {base['p99']:.1f})"
        )
        rows["/assess errors"] = ep["errors"]
    print_table(f"disputes benchmark ({result['size']}, {result['cpus']} cpus)", rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
