"""A small real world to serve: simulated payments, Feast features as of a replay day, a bundle
trained (in process) on the point-in-time training set before that day, and the day's
transactions. The serving tests, ``benchmarks/serving.py`` and ``benchmarks/write_back.py`` stand
on it.

:meth:`World.store` gives a fresh online store (SQLite, or a private Feast project on Redis)
materialised as of the replay day, so every served run starts from the same state and its
write-backs touch nothing else; :meth:`World.drop_store` removes it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Small, fast model settings (seconds on 2 cores); the world is for serving, not for accuracy.
SMALL_TRAINING: dict[str, Any] = {
    "xgb": {"num_boost_round": 60, "early_stopping_rounds": 20},
    "sequence": {"epochs": 2, "batch_size": 256, "hidden": 16, "tab_hidden": 16},
    "split": {"label_maturity_days": 5},
}


@dataclass
class World:
    root: Path
    features_dir: Path
    bundle: Path
    replay_day: dt.datetime
    day: Any  # polars frame: the replay day's transactions with their point-in-time features

    def store(self, online_store: str = "sqlite", redis_url: str | None = None) -> dict[str, Any]:
        """A fresh store materialised as of the replay day; returns its ``StoreConfig`` kwargs
        (the app's ``feature_store`` arg)."""
        from riskml.features.store import StoreConfig, apply, materialize

        project = f"w_{uuid.uuid4().hex[:10]}"
        home = self.root / "stores" / project
        cfg = StoreConfig(
            home=home,
            features_dir=self.features_dir,
            online_store=online_store,
            redis_url=redis_url,
            project=project,
        )
        apply(cfg)
        materialize(self.replay_day, config=cfg)
        out: dict[str, Any] = {
            "home": str(home),
            "features_dir": str(self.features_dir),
            "project": project,
            "online_store": online_store,
        }
        if redis_url:
            out["redis_url"] = redis_url
        return out

    def drop_store(self, store: dict[str, Any]) -> None:
        from riskml.features.store import StoreConfig, get_store

        try:
            if store.get("online_store") == "redis":
                get_store(StoreConfig.model_validate(store)).teardown()  # the project's keys
        finally:
            shutil.rmtree(store["home"], ignore_errors=True)

    def app_args(self, store: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"bundle_dir": str(self.bundle), "feature_store": store, **extra}

    def requests(self, frame: Any = None) -> list[dict[str, Any]]:
        """API requests for the rows of ``frame`` (default: the whole replay day), in order."""
        from serving.replay import requests_from_frame

        return requests_from_frame(self.day if frame is None else frame)

    def first_per_customer(self) -> Any:
        """Each customer's first transaction of the day: nothing of that customer happened
        between the materialisation and it, so its online features equal the offline ones."""
        return self.day.unique("customer_id", keep="first", maintain_order=True)

    def expected_scores(self, frame: Any) -> Any:
        """In-process scores of ``frame``'s training-set rows (riskml.models.bundle.score)."""
        from riskml.models.bundle import load_bundle, score
        from riskml.training.dataset import to_model_frame

        return score(load_bundle(self.bundle), to_model_frame(frame))


def build_world(
    root: Path,
    *,
    customers: int = 500,
    terminals: int = 300,
    days: int = 32,
    seed: int = 11,
    training: dict[str, Any] | None = None,
) -> World:
    """Simulate ``days`` days, build features as of the last day's 00:00, train a bundle on
    everything before it, and keep that day's transactions (with their features) for replay."""
    from riskml.data.simulator import SimulationConfig, simulate
    from riskml.features.batch import build_features
    from riskml.features.store import StoreConfig, apply, training_set
    from riskml.training.dataset import model_feature_spec, to_model_frame
    from riskml.training.pipeline import TrainConfig, train_models

    root = Path(root)
    start = dt.date(2024, 1, 1)
    sim = SimulationConfig(
        n_customers=customers, n_terminals=terminals, days=days, start_date=start, seed=seed
    )
    replay_day = dt.datetime.combine(start, dt.time(), dt.UTC) + dt.timedelta(days=days - 1)
    simulate(sim, root / "data")
    features = root / "features"
    build_features(root / "data", features, as_of=replay_day)
    cfg = StoreConfig(home=root / "offline", features_dir=features, project="world_offline")
    apply(cfg)  # the registry get_historical_features reads the FeatureService from
    history = to_model_frame(training_set(None, replay_day, config=cfg, sequences=True))
    outcome = train_models(
        history,
        model_feature_spec(),
        TrainConfig.model_validate(training or SMALL_TRAINING),
        out_dir=root / "models",
        in_process=True,
    )
    day = training_set(replay_day, replay_day + dt.timedelta(days=1), config=cfg, sequences=True)
    return World(
        root, features, outcome.bundle_path, replay_day, day.sort("ts", maintain_order=True)
    )
