"""``python -m riskml.training.entrypoint JOB.yaml`` — what a KubeRay RayJob (or a Ray Jobs API
submission, or a laptop) runs.

It joins the Ray cluster it runs in (``RAY_ADDRESS`` is set by Ray jobs) or starts a local Ray,
runs the job spec (see :mod:`riskml.training.jobs`), writes ``<output>/result.json`` and prints
a one-line JSON summary. The same command trains with 1 worker on a laptop and N workers on a
cluster: only ``config.ray.num_workers`` / ``use_gpu`` in the job spec change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m riskml.training.entrypoint", description=__doc__)
    p.add_argument("job", type=Path, help="job spec (JSON or YAML)")
    p.add_argument("--output", type=Path, default=None, help="override the job's output dir")
    p.add_argument("--workers", type=int, default=None, help="override config.ray.num_workers")
    p.add_argument("--gpu", action="store_true", help="set config.ray.use_gpu")
    return p


def main(argv: list[str] | None = None) -> int:
    from riskml.training.jobs import JobSpec, load_document, run_job

    args = build_parser().parse_args(argv)
    doc = load_document(args.job)
    if args.output is not None:
        doc["output"] = str(args.output)
    ray_overrides = {}
    if args.workers is not None:
        ray_overrides["num_workers"] = args.workers
    if args.gpu:
        ray_overrides["use_gpu"] = True
    if ray_overrides:
        config = dict(doc.get("config") or {})
        config["ray"] = {**dict(config.get("ray") or {}), **ray_overrides}
        doc["config"] = config
    job = JobSpec.model_validate(doc)
    result = run_job(job)
    summary = {k: result[k] for k in ("task", "bundle") if k in result}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
