"""Benchmark: CPU per decision stage, the libraries' own call against riskml's serving path for the
same model on the same rows, side by side in one run (issue #26).

    python -m benchmarks.decision_stages --out out/bench/decision_stages.json

On the serving world's bundle (:func:`tests.support.world.build_world`: XGBoost + GRU trained in
process) and its replay day's feature rows, one row per call as serving scores them:

* XGBoost with Saabas reason codes: XGBoost's ``DMatrix`` + ``predict(pred_contribs=True)``
  (the stage before) vs :class:`riskml.models.compiled_trees.CompiledTrees` (``explain``);
* the GRU: torch's forward pass (``riskml.models.sequence.predict_proba``) vs
  :class:`riskml.models.sequence.FusedGRU`;
* calibration + blend: the vectorised maps on one-element arrays vs ``Calibrator.one`` /
  ``Blend.one``.

Each pair is timed in alternating blocks (CPU time, ``time.process_time``), and the largest
difference between the two answers is reported beside the timings (the goal: 1e-6 in
probability).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average
from riskml import __version__
from riskml.console import print_table, write_json


def _cpu_us(fn: Callable[[int], Any], rows: int, blocks: int, per_block: int) -> list[float]:
    """CPU µs per call of ``fn(i)`` for each of ``blocks`` blocks of ``per_block`` calls."""
    out = []
    for b in range(blocks):
        t0 = time.process_time()
        for i in range(per_block):
            fn((b * per_block + i) % rows)
        out.append((time.process_time() - t0) / per_block * 1e6)
    return out


def compare(
    name: str,
    before: Callable[[int], Any],
    after: Callable[[int], Any],
    rows: int,
    *,
    rounds: int,
    per_block: int,
) -> dict[str, Any]:
    """Alternate blocks of ``before`` and ``after`` (``rounds`` each); medians of the blocks."""
    before(0), after(0)  # warm both
    b_us: list[float] = []
    a_us: list[float] = []
    for _ in range(rounds):
        b_us += _cpu_us(before, rows, 1, per_block)
        a_us += _cpu_us(after, rows, 1, per_block)
    b, a = float(np.median(b_us)), float(np.median(a_us))
    return {
        "stage": name,
        "before_us": round(b, 1),
        "after_us": round(a, 1),
        "speedup": round(b / a, 2),
        "before_blocks_us": [round(v, 1) for v in b_us],
        "after_blocks_us": [round(v, 1) for v in a_us],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from riskml.models.bundle import load_bundle
    from riskml.models.features import extract_inputs
    from riskml.models.sequence import predict_proba
    from riskml.training.dataset import to_model_frame
    from serving.bundle import BundleBlend, BundleSequence, BundleXGBoost, _one_thread
    from serving.scorers import booster_contributions, booster_explain
    from tests.support.world import build_world

    out: dict[str, Any] = {
        "benchmark": "decision_stages",
        "riskml": __version__,
        "python": platform.python_version(),
        "load_average_start": load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="riskml-bench-stages-") as tmp:
        world = build_world(Path(tmp) / "world", customers=args.customers, seed=args.seed)
        _one_thread()
        bundle = load_bundle(world.bundle)
        frame = to_model_frame(world.day)
        xgb_model = BundleXGBoost(str(world.bundle))
        seq_model = BundleSequence(str(world.bundle))
        inputs = extract_inputs(frame, bundle.spec)
        x = np.ascontiguousarray(inputs.tabular, dtype=np.float32)
        seq = np.ascontiguousarray(inputs.sequence, dtype=np.float32)
        n = len(x)
        booster, trees = xgb_model.booster, xgb_model._trees
        compiled = xgb_model._compiled
        assert compiled is not None and seq_model.fused is not None

        def xgb_before(i: int) -> tuple[np.ndarray, np.ndarray]:
            # serving's XGBoost path as it was: DMatrix + pred_contribs, one pass
            return booster_explain(booster, x[i : i + 1], 1, False, trees, logistic=True)

        def seq_before(i: int) -> np.ndarray:
            return predict_proba(seq_model.model, x[i : i + 1], seq[i : i + 1])

        cal_x = bundle.calibrators["xgb"]
        cal_s = bundle.calibrators["sequence"]
        blend = BundleBlend(str(world.bundle)).blend
        p_x = np.asarray([xgb_before(i)[0][0] for i in range(min(n, 500))])
        p_s = seq_model.predict(x[: len(p_x)], seq[: len(p_x)])

        def cal_before(i: int) -> float:
            j = i % len(p_x)
            cx = cal_x(np.asarray([p_x[j]]))
            cs = cal_s(np.asarray([p_s[j]]))
            return float(blend({"xgb": cx, "sequence": cs})[0])

        def cal_after(i: int) -> float:
            j = i % len(p_x)
            return blend.one({"xgb": cal_x.one(p_x[j]), "sequence": cal_s.one(p_s[j])})

        kw = {"rounds": args.rounds, "per_block": args.per_block}
        rows = [
            compare(
                "xgboost + reason codes",
                xgb_before,
                lambda i: compiled.explain(x[i : i + 1]),
                n,
                **kw,
            ),
            compare(
                "sequence (GRU)",
                seq_before,
                lambda i: seq_model.fused.predict_proba(x[i : i + 1], seq[i : i + 1]),
                n,
                **kw,
            ),
            compare("calibrate + blend", cal_before, cal_after, n, **kw),
        ]
        # the answers: the largest differences over every row of the day
        margin, contribs = compiled.explain(x)
        want = booster_contributions(booster, x, 1, False, trees)
        p_compiled = 1 / (1 + np.exp(-margin))
        p_xgb = booster.inplace_predict(x, iteration_range=trees)
        out["max_abs_diff"] = {
            "xgboost_probability": float(np.abs(p_compiled - p_xgb).max()),
            "xgboost_contributions": float(np.abs(contribs - want).max()),
            "sequence_probability": float(
                np.abs(
                    seq_model.fused.predict_proba(x, seq) - predict_proba(seq_model.model, x, seq)
                ).max()
            ),
            "calibrate_blend": float(
                max(abs(cal_before(i) - cal_after(i)) for i in range(len(p_x)))
            ),
        }
        out["rows"] = n
    out["stages"] = rows
    out["load_average_end"] = load_average()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rounds", type=int, default=6, help="alternating blocks per side")
    p.add_argument("--per-block", type=int, default=500, help="calls per block")
    args = p.parse_args(argv)
    result = run(args)
    write_json(args.out, result)
    print_table(
        "CPU µs per call, one row (median of alternating blocks)",
        [
            {k: r[k] for k in ("stage", "before_us", "after_us", "speedup")}
            for r in result["stages"]
        ],
    )
    print_table("largest differences (after vs before)", [result["max_abs_diff"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
