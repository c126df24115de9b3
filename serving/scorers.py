"""Generic model scorers behind the :mod:`riskml.decision.protocols` interfaces.

``XGBoostFileScorer`` loads a booster saved as UBJSON/JSON (feature names stored in the model)
and scores with ``inplace_predict`` (no DMatrix on the hot path); contributions for reason codes
use ``pred_contribs`` (Saabas approximation by default). ``TorchSequenceScorer`` builds a torch
module from an import path and loads safetensors weights. Both pin their libraries to one
thread: a Serve replica is one request stream on a small share of a node, and OpenMP thread
pools spinning on a busy 2-core machine cost more than they give (measured: a 1-row DMatrix
prediction took ~30 ms with default threads on a loaded machine vs ~0.5 ms with one).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from riskml.decision.ladder import TabularResult
from riskml.models.compiled_trees import CompiledTrees, NotCompilable
from serving.components import import_attr

log = logging.getLogger("ray.serve")


class XGBoostFileScorer:
    def __init__(self, path: str, version: str, nthread: int = 1) -> None:
        import xgboost as xgb

        if not Path(path).is_file():
            raise FileNotFoundError(f"XGBoost model file not found: {path}")
        self.booster = xgb.Booster(model_file=str(path))
        self.booster.set_param({"nthread": nthread})
        if not self.booster.feature_names:
            raise ValueError(
                f"{path}: the booster carries no feature names; the feature contract cannot be "
                "checked (train with a DMatrix that has feature_names)"
            )
        self.feature_names = list(self.booster.feature_names)
        self.version = version
        self.nthread = nthread
        self._logistic = is_logistic(self.booster)
        self._compiled = compile_booster(self.booster, logistic=self._logistic)
        # see serving.inprocess; a subclass may change what a call does: it declares for itself
        self.cpu_bounded = self._compiled is not None and type(self) is XGBoostFileScorer

    def predict(self, x: Any) -> np.ndarray:
        if self._compiled is not None:
            return np.asarray(expit(self._compiled.margin(x)), np.float64)
        x = np.ascontiguousarray(x, dtype=np.float32)
        return np.asarray(self.booster.inplace_predict(x, validate_features=False), np.float64)

    def contributions(self, x: Any, *, exact: bool = False) -> np.ndarray:
        if self._compiled is not None and not exact:
            return self._compiled.explain(x)[1]
        return booster_contributions(self.booster, x, self.nthread, exact)

    def explain(self, x: Any, *, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        return booster_explain(
            self.booster, x, self.nthread, exact, logistic=self._logistic, compiled=self._compiled
        )


def compile_booster(
    booster: Any, iteration_range: tuple[int, int] = (0, 0), *, logistic: bool
) -> CompiledTrees | None:
    """The booster's trees as :class:`riskml.models.compiled_trees.CompiledTrees` (a scorer's
    probabilities and Saabas contributions in ~0.09 ms a row instead of XGBoost's ~0.4 ms of
    per-call overhead), or None where they do not reproduce XGBoost: an objective other than
    ``binary:logistic``, categorical splits, several outputs (XGBoost then scores)."""
    if not logistic:
        return None
    try:
        return CompiledTrees(booster, iteration_range)
    except NotCompilable as exc:
        log.info("XGBoost scores this booster itself (%s)", exc)
        return None


def tabular_result(model: Any, x: Any, mode: str) -> TabularResult:
    """A :class:`riskml.decision.ladder.TabularResult` of ``model`` on ``x``: probabilities, and
    contributions unless ``mode`` is ``"off"`` (``"exact"``: TreeSHAP, else Saabas). A model
    with ``explain`` gives both from one pass."""
    contribs = None
    if mode == "off":
        probs = model.predict(x)
    elif hasattr(model, "explain"):
        probs, contribs = model.explain(x, exact=mode == "exact")
    else:
        probs = model.predict(x)
        contribs = model.contributions(x, exact=mode == "exact")
    return TabularResult(
        [float(p) for p in probs], None if contribs is None else np.asarray(contribs).tolist()
    )


def booster_explain(
    booster: Any,
    x: Any,
    nthread: int,
    exact: bool,
    iteration_range: tuple[int, int] = (0, 0),
    *,
    logistic: bool,
    compiled: CompiledTrees | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and contributions (:func:`booster_contributions`) from one prediction
    pass: a ``binary:logistic`` model's (``logistic``, :func:`is_logistic`) contributions add
    up to the log-odds of its probability, so ``p = sigmoid(sum)`` (equal to ``inplace_predict``
    to ~1e-7; one 1-row pass costs less than the two: 0.37 vs 0.7 ms). Other objectives
    predict separately. Saabas (not ``exact``) with ``compiled`` (:func:`compile_booster` of
    the same trees) walks the compiled trees once instead (~0.09 ms a row)."""
    if compiled is not None and not exact:
        margin, contribs = compiled.explain(x)
        return np.asarray(expit(margin), np.float64), contribs
    contribs = booster_contributions(booster, x, nthread, exact, iteration_range)
    if not logistic:
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        probs = booster.inplace_predict(x32, iteration_range=iteration_range)
        return np.asarray(probs, np.float64), contribs
    return 1.0 / (1.0 + np.exp(-contribs.sum(axis=1))), contribs


def is_logistic(booster: Any) -> bool:
    """Whether the booster's objective is ``binary:logistic`` (from its config: read it once,
    when the scorer is built)."""
    import json

    return bool(
        json.loads(booster.save_config())["learner"]["objective"]["name"] == "binary:logistic"
    )


def booster_contributions(
    booster: Any,
    x: Any,
    nthread: int,
    exact: bool,
    iteration_range: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """``(n, T + 1)`` per-feature log-odds contributions (last column: bias); Saabas
    approximation unless ``exact`` (TreeSHAP), over the trees ``iteration_range`` selects (those
    of the prediction they explain).

    The DMatrix carries no feature names: the scorer's contract is checked once, when the
    service is built (:func:`riskml.decision.protocols.check_model_contracts`); naming and
    validating a 1-row DMatrix per call cost more than the contributions themselves."""
    import xgboost as xgb

    dm = xgb.DMatrix(np.ascontiguousarray(x, dtype=np.float32), nthread=nthread)
    out = booster.predict(
        dm,
        pred_contribs=True,
        approx_contribs=not exact,
        validate_features=False,
        iteration_range=iteration_range,
    )
    return np.asarray(out, np.float64)


class TorchSequenceScorer:
    """``module`` builds an ``nn.Module`` whose ``forward(tabular, sequence)`` returns logits
    (``output="logit"``) or probabilities (``output="prob"``), shape ``(n,)`` or ``(n, 1)``."""

    def __init__(
        self,
        module: str,
        weights: str,
        version: str,
        module_kwargs: Mapping[str, Any] | None = None,
        output: str = "logit",
        threads: int = 1,
    ) -> None:
        import torch
        from safetensors.torch import load_file

        if output not in ("logit", "prob"):
            raise ValueError("output must be 'logit' or 'prob'")
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        self.model = import_attr(module)(**dict(module_kwargs or {}))
        self.model.load_state_dict(load_file(weights))
        self.model.eval()
        self.output = output
        self.version = version

    def predict(self, tabular: Any, sequence: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(
                torch.as_tensor(np.asarray(tabular, np.float32)),
                torch.as_tensor(np.asarray(sequence, np.float32)),
            )
            if self.output == "logit":
                out = torch.sigmoid(out)
        return out.reshape(-1).double().numpy()
