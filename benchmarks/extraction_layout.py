"""Benchmark: the layout extractor (rules + learned layout model) against the rules alone on
template variants neither has seen, clean PDFs, per document and per case, in one run.

    python -m benchmarks.extraction_layout --out out/bench/extraction_layout.json
    python -m benchmarks.extraction_layout --history --out out/bench/extraction_layout_history.json

Held-out part (default): a corpus in the held-out variants
(:data:`~riskml.data.disputes.documents.HELD_OUT_VARIANTS`, :meth:`DisputeConfig.held_out`'s
seeds, no scans), each document's text read once and given to both extractors; the shipped model
(:data:`riskml.features.disputes.layout.MODEL_FILE`, trained on the development variants only).

``--history``: how the combination was chosen, without the held-out variants. Each pair of
development variants from 8-9 on was blind to the rules once: the rules of the commit that
added the pair (loaded with ``git show``) read it as they did then, and a model trained on the
other development variants reads it too (leave one pair out; pairs 0-1 ... 6-7 are scored by
the model alone: no blind rules exist for them). Per pair: the rules, the model alone, and the
combination for a grid of thresholds (each document read once by the rules and once by the
model, combined at each point); the mean over the blind pairs per point.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from riskml.console import print_table, write_json

#: The commit that added each pair, blind to the rules (the rules at that commit never saw it).
BLIND_RULES: dict[tuple[int, int], str] = {
    (8, 9): "750d690",
    (10, 11): "3e0ce6b",
    (12, 13): "8dfe460",
    (14, 15): "f75e5b2",
    (16, 17): "e407996",
    (18, 19): "5ea6a3d",
    (20, 21): "5020b59",
    (22, 23): "0712687",
    (24, 25): "97b2458",
    (26, 27): "7229909",
    (28, 29): "1dfea0f",
}


def _summary(s: Any) -> dict[str, Any]:
    """Pooled counts and precision / recall / F1 of an ``ExtractionScores``."""
    t = s.total
    return {
        "pairs": s.pairs,
        "tp": t.tp,
        "fp": t.fp,
        "fn": t.fn,
        "precision": t.precision,
        "recall": t.recall,
        "f1": t.f1,
    }


def _scores(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    from riskml.data.disputes.evidence import score

    return _summary(score(pairs))


def held_out(n_disputes: int, seed: int, variants: Sequence[int] | None) -> dict[str, Any]:
    from riskml.data.disputes.evidence import Evidence, merge, score
    from riskml.data.disputes.simulator import DisputeConfig, simulate_disputes
    from riskml.features.disputes.extract import RulesExtractor
    from riskml.features.disputes.layout import LayoutExtractor
    from riskml.features.disputes.text import extract_text

    overrides: dict[str, Any] = {"n_disputes": n_disputes, "seed": seed, "scanned_share": 0.0}
    if variants:
        overrides["variants"] = tuple(variants)
    config = DisputeConfig.held_out(**overrides)
    with tempfile.TemporaryDirectory() as tmp:
        ds = simulate_disputes(config, Path(tmp) / "held-out")
        rows = list(ds.documents.iter_rows(named=True))
        texts = {r["document"]: extract_text(ds.root / r["document"]) for r in rows}
    truth = {r["document"]: Evidence.model_validate_json(r["truth"]) for r in rows}
    cases: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        cases[r["dispute_id"]].append(r)
    out: dict[str, Any] = {"variants": sorted({r["variant"] for r in rows}), "documents": len(rows)}
    # both made before the clock (the layout extractor loads its model when it is made)
    for name, extractor in (("rules", RulesExtractor()), ("layout", LayoutExtractor())):
        t0 = time.perf_counter()
        got = {r["document"]: extractor.extract([texts[r["document"]]]).evidence for r in rows}
        seconds = time.perf_counter() - t0
        per_variant = {
            v: _scores(
                [(got[r["document"]], truth[r["document"]]) for r in rows if r["variant"] == v]
            )
            for v in out["variants"]
        }
        per_case = _scores(
            [
                (
                    extractor.extract([texts[r["document"]] for r in rs]).evidence,
                    merge(truth[r["document"]] for r in rs),
                )
                for rs in cases.values()
            ]
        )
        per_document = score([(got[d], truth[d]) for d in got])
        out[name] = {
            "per_document": _summary(per_document),
            "per_case": per_case,
            "per_variant": {str(v): s for v, s in per_variant.items()},
            "fields": {
                f: c.as_dict() for f, c in per_document.per_field.items() if c.tp + c.fp + c.fn
            },
            "ms_per_document": seconds / len(rows) * 1000,
        }
    return out


def history(
    n_disputes: int,
    thresholds: Sequence[float],
    overrides: Sequence[float],
    sures: Sequence[float],
) -> dict[str, Any]:
    from benchmarks.extraction_heldout import _extractor_at
    from riskml.data.disputes.documents import DEVELOPMENT_VARIANTS
    from riskml.features.disputes.extract import RulesExtractor
    from riskml.features.disputes.layout import LayoutExtractor, LayoutModel, training_examples

    with tempfile.TemporaryDirectory() as tmp:
        examples = training_examples(Path(tmp) / "dev", n_disputes=n_disputes)
        old = {}
        for pair, rev in BLIND_RULES.items():
            (Path(tmp) / rev).mkdir()
            old[pair] = _extractor_at(rev, Path(tmp) / rev)
    out: dict[str, Any] = {"documents": len(examples), "pairs": {}}
    for k in range(len(DEVELOPMENT_VARIANTS) // 2):
        pair = (2 * k, 2 * k + 1)
        train = [(d, t) for d, t, v in examples if v not in pair]
        test = [(d, t) for d, t, v in examples if v in pair]
        t0 = time.perf_counter()
        model = LayoutModel.fit(train)
        fit_s = time.perf_counter() - t0
        entry: dict[str, Any] = {"documents": len(test), "fit_seconds": fit_s}
        readings = [[model.read(d)] for d, _ in test]
        empty = RulesExtractor(rules=[])  # no rules: the model alone
        entry["model_alone"] = _scores(
            [
                (
                    LayoutExtractor(rules=empty, model=model, threshold=0.3)
                    .combine([d], empty.extract([d]), r)
                    .evidence,
                    t,
                )
                for (d, t), r in zip(test, readings, strict=True)
            ]
        )
        if pair in old:
            rules = old[pair]
            results = [rules.extract([d]) for d, _ in test]
            entry["rules_blind"] = _scores(
                [(res.evidence, t) for res, (_, t) in zip(results, test, strict=True)]
            )
            entry["combined"] = {
                f"threshold={th},override={ov},sure={sure}": _scores(
                    [
                        (
                            LayoutExtractor(
                                rules=rules, model=model, threshold=th, override=ov, sure=sure
                            )
                            .combine([d], res, r)
                            .evidence,
                            t,
                        )
                        for (d, t), res, r in zip(test, results, readings, strict=True)
                    ]
                )
                for th in thresholds
                for ov in overrides
                for sure in sures
            }
        out["pairs"][f"{pair[0]}-{pair[1]}"] = entry
        print(
            pair,
            {k: v["f1"] for k, v in entry.items() if isinstance(v, dict) and "f1" in v},
            flush=True,
        )
    blind = [e for e in out["pairs"].values() if "rules_blind" in e]
    mean: dict[str, float] = {
        name: sum(e[name]["f1"] for e in blind) / len(blind)
        for name in ("rules_blind", "model_alone")
    }
    for combo in blind[0]["combined"]:
        mean[combo] = sum(e["combined"][combo]["f1"] for e in blind) / len(blind)
    out["mean_f1_over_blind_pairs"] = mean
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--disputes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1011)
    parser.add_argument("--variants", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--history", action="store_true", help="the leave-pair-out history")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.history:
        results = history(900, (0.2, 0.3), (0.5, 0.7, 0.9), (0.99, 1.01))
    else:
        results = held_out(args.disputes, args.seed, args.variants)
        print_table(
            f"extraction on variants {results['variants']} "
            f"({results['documents']} clean documents)",
            [
                {
                    "extractor": n,
                    **{
                        f"doc_{k}": results[n]["per_document"][k]
                        for k in ("precision", "recall", "f1")
                    },
                    "case_f1": results[n]["per_case"]["f1"],
                    **{f"v{v}": s["f1"] for v, s in results[n]["per_variant"].items()},
                    "ms_per_doc": results[n]["ms_per_document"],
                }
                for n in ("rules", "layout")
            ],
        )
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
