"""A trained XGBoost ensemble as flat NumPy node tables, for scoring a few rows at a time.

Serving scores one transaction per call. XGBoost's own calls pay a fixed cost per call that dwarfs
the trees on one row (measured on the 2-core CI machine, 60 trees of depth 6, 83 features, one
thread: ``inplace_predict`` 250 µs, a ``DMatrix`` 190-270 µs plus ``pred_contribs`` 140 µs;
the trees themselves are a few hundred comparisons). :class:`CompiledTrees` reads the
booster's JSON model once and walks every tree of every row level by level with vectorised
NumPy gathers: the margin and the Saabas contributions (XGBoost's ``approx_contribs=True``)
from one walk, tens of microseconds per row.

It reproduces XGBoost exactly where the two can differ: a split sends ``x < threshold`` left in
float32 (XGBoost's comparison), NaN follows the node's default direction, the per-node means of
the Saabas attribution are XGBoost's cover-weighted means (``FillNodeMeanValues``: leaves their
value, inner nodes the hessian-weighted mean of their children), and the bias column and the
base margin come from the booster itself (one ``pred_contribs`` call on an all-missing row).
Sums run in float64 where XGBoost sums in float32, so margins agree to ~1e-6 (tests hold them
to XGBoost within 1e-5 in log-odds and 1e-6 in probability). Only numerical splits are
compiled: a booster with categorical splits, or more than one output, is refused with
:class:`NotCompilable` and callers keep XGBoost. TreeSHAP (``exact``) stays with XGBoost.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


class NotCompilable(ValueError):
    """The booster has something :class:`CompiledTrees` does not reproduce (see module doc)."""


class CompiledTrees:
    """The trees of ``iteration_range`` of a ``binary:logistic``-like single-output booster."""

    def __init__(self, booster: Any, iteration_range: tuple[int, int] = (0, 0)) -> None:
        model = json.loads(booster.save_raw("json"))
        learner = model["learner"]
        if (
            int(learner["learner_model_param"].get("num_target", "1")) != 1
            or int(learner["learner_model_param"].get("num_class", "0")) > 1
        ):
            raise NotCompilable("only single-output boosters are compiled")
        gbm = learner["gradient_booster"]
        if gbm.get("name", "gbtree") not in ("gbtree", "dart") or "model" not in gbm:
            raise NotCompilable(f"booster {gbm.get('name')!r} has no plain tree list")
        if gbm.get("name") == "dart":
            raise NotCompilable("dart boosters weight their trees at prediction time")
        trees_json = gbm["model"]["trees"]
        indptr = gbm["model"].get("iteration_indptr") or list(range(len(trees_json) + 1))
        begin, end = iteration_range
        end = end or len(indptr) - 1
        selected = trees_json[int(indptr[begin]) : int(indptr[end])]
        if not selected:
            raise NotCompilable(f"iteration range {iteration_range} selects no trees")
        self.n_features = int(learner["learner_model_param"]["num_feature"])
        self.iteration_range = (begin, end)
        feat, thr, left, right, dleft, value, mean, roots = [], [], [], [], [], [], [], []
        offset, depth = 0, 0
        for tree in selected:
            if any(int(t) != 0 for t in tree["split_type"]):
                raise NotCompilable("categorical splits are not compiled")
            lc = np.asarray(tree["left_children"], np.int64)
            rc = np.asarray(tree["right_children"], np.int64)
            leaf = lc == -1
            idx = np.arange(len(lc), dtype=np.int64)
            # a leaf points at itself: walking on from it changes nothing
            left.append(np.where(leaf, idx, lc) + offset)
            right.append(np.where(leaf, idx, rc) + offset)
            feat.append(np.where(leaf, 0, np.asarray(tree["split_indices"], np.int64)))
            cond = np.asarray(tree["split_conditions"], np.float64)
            thr.append(np.where(leaf, np.inf, cond).astype(np.float32))
            dleft.append(np.asarray(tree["default_left"], bool) | leaf)
            value.append(np.where(leaf, cond, 0.0))
            mean.append(_node_means(lc, rc, cond, np.asarray(tree["sum_hessian"], np.float64)))
            roots.append(offset)
            depth = max(depth, _depth(lc, rc))
            offset += len(lc)
        self._feat = np.concatenate(feat)
        self._thr = np.concatenate(thr)
        self._left = np.concatenate(left)
        self._right = np.concatenate(right)
        self._default_left = np.concatenate(dleft)
        self._value = np.concatenate(value)
        self._mean = np.concatenate(mean)
        self._roots = np.asarray(roots, np.int64)
        self._depth = depth
        self.n_trees = len(selected)
        # XGBoost's bias column on an all-missing row: its base margin + the roots' means
        probe = _xgb_contribs(booster, np.full((1, self.n_features), np.nan, np.float32), self)
        self.bias = float(probe[0, -1])
        self.base_margin = self.bias - float(self._mean[self._roots].sum())

    def _walk(self, x: np.ndarray, *, contributions: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got shape {x.shape}")
        n = x.shape[0]
        node = np.broadcast_to(self._roots, (n, self.n_trees))
        rows = np.arange(n)[:, None] * self.n_features
        flat = x.reshape(-1)
        path = [node]
        for _ in range(self._depth):
            v = flat[rows + self._feat[node]]
            go_left = np.where(np.isnan(v), self._default_left[node], v < self._thr[node])
            node = np.where(go_left, self._left[node], self._right[node])
            path.append(node)
        margin = self._value[node].sum(axis=1) + self.base_margin
        if not contributions:
            return margin, None
        # Saabas: each step's change of node mean goes to the feature split on (0 at a leaf)
        walked = np.stack(path)
        delta = self._mean[walked[1:]] - self._mean[walked[:-1]]
        at = rows + self._feat[walked[:-1]]
        contrib = np.empty((n, self.n_features + 1))
        contrib[:, :-1] = np.bincount(
            at.reshape(-1), delta.reshape(-1), n * self.n_features
        ).reshape(n, self.n_features)
        contrib[:, -1] = self.bias
        return margin, contrib

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Log-odds (XGBoost's ``output_margin=True``) of every row."""
        return self._walk(x, contributions=False)[0]

    def explain(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(margin, contributions)``: contributions ``(n, F + 1)``, Saabas, last column bias
        (XGBoost's ``pred_contribs=True, approx_contribs=True`` layout); each row sums to its
        margin."""
        margin, contrib = self._walk(x, contributions=True)
        assert contrib is not None
        return margin, contrib


def _breadth_first(left: np.ndarray, right: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Node ids from the root (0) down, parents before children, and each node's depth."""
    order, depth = [0], np.zeros(len(left), np.int64)
    for i in order:  # grows while it is walked
        if left[i] != -1:
            depth[left[i]] = depth[right[i]] = depth[i] + 1
            order += [int(left[i]), int(right[i])]
    return order, depth


def _node_means(
    left: np.ndarray, right: np.ndarray, value: np.ndarray, hess: np.ndarray
) -> np.ndarray:
    """XGBoost's ``FillNodeMeanValues``: a leaf's value, an inner node's children's means
    weighted by their hessian sums (children before their parent: the breadth-first order
    reversed)."""
    mean = np.zeros(len(left))
    for i in reversed(_breadth_first(left, right)[0]):
        if left[i] == -1:
            mean[i] = value[i]
        else:
            lo, hi = left[i], right[i]
            mean[i] = (mean[lo] * hess[lo] + mean[hi] * hess[hi]) / hess[i]
    return mean


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Edges on the longest root-to-leaf path."""
    return int(_breadth_first(left, right)[1].max())


def _xgb_contribs(booster: Any, x: np.ndarray, trees: CompiledTrees) -> np.ndarray:
    import xgboost as xgb

    return np.asarray(
        booster.predict(
            xgb.DMatrix(x, nthread=1),
            pred_contribs=True,
            approx_contribs=True,
            validate_features=False,
            iteration_range=trees.iteration_range,
        ),
        np.float64,
    )
