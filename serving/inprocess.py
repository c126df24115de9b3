"""The decision service's scoring code in one process, without Ray or HTTP.

Builds the same components from the same :class:`serving.app.AppArgs` and runs the same
:class:`riskml.decision.ladder.Ladder` with direct calls. The benchmark uses it as the
in-process baseline next to the served app, and the tests use it as the reference the HTTP
answers must match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from riskml.decision.config import DeciderConfig, IngressConfig
from riskml.decision.ladder import Ladder, LadderResult, Stages, TabularResult
from riskml.decision.policy import DecisionPolicy, ModelScores, Verdict
from riskml.decision.protocols import FeatureRow, check_feature_contract
from serving.app import AppArgs
from serving.components import build
from serving.schemas import DecisionResponse, TransactionRequest, to_response


class InProcessApp:
    def __init__(self, args: Mapping[str, Any] | AppArgs, *, write_back: bool = False) -> None:
        a = args if isinstance(args, AppArgs) else AppArgs.model_validate(dict(args))
        self.source = build(a.feature_source)  # type: ignore[arg-type]
        names = list(self.source.feature_names)
        self.models = {v: build(spec) for v, spec in a.tabular_models.items()}
        for model in self.models.values():
            check_feature_contract(model.feature_names, names)
        self.sequence = build(a.sequence_model) if a.sequence_model is not None else None
        self.policy = DecisionPolicy(
            a.decider_config or DeciderConfig(),
            names,
            {m: build(s) for m, s in a.calibrators.items()},
            build(a.blend) if a.blend is not None else None,
        )
        config = a.ingress_config or IngressConfig()
        self.write_back = write_back
        self.ladder = Ladder(
            Stages(
                fetch=self._fetch,
                tabular=self._tabular,
                decide=self._decide,
                sequence=self._sequence if self.sequence is not None else None,
            ),
            config,
            versions=list(self.models),
            champion=a.champion or next(iter(self.models)),
            feature_names=names,
        )

    async def _fetch(self, txs: list[dict[str, Any]]) -> list[FeatureRow]:
        return list(self.source.get_many(txs))

    async def _tabular(self, version: str, x: np.ndarray, mode: str) -> TabularResult:
        model = self.models[version]
        contribs = None if mode == "off" else model.contributions(x, exact=mode == "exact")
        return TabularResult(
            [float(p) for p in model.predict(x)],
            None if contribs is None else contribs.tolist(),
        )

    async def _sequence(self, x: np.ndarray, seq: np.ndarray) -> list[float]:
        return [float(p) for p in self.sequence.predict(x, seq)]  # type: ignore[union-attr]

    async def _decide(self, items: list[ModelScores]) -> list[Verdict]:
        return self.policy.verdicts(items)

    async def decide_raw(self, txs: Sequence[Mapping[str, Any]]) -> LadderResult:
        result = await self.ladder.decide(txs)
        if self.write_back:
            for tx in txs:
                self.source.write_back(tx)
        return result

    async def decide(self, requests: Sequence[Mapping[str, Any]]) -> list[DecisionResponse]:
        """Validate like the API, decide, and return the API responses."""
        txs = [TransactionRequest.model_validate(dict(r)).model_dump() for r in requests]
        result = await self.decide_raw(txs)
        default = self.ladder.config.default_decision
        return [to_response(o, default) for o in result.outcomes]
