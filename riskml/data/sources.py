"""Where a pipeline's transactions come from: the simulator (named sizes) or an import."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

#: Simulation sizes the pipelines accept (``demo`` is the simulator's demo preset).
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_customers": 800, "n_terminals": 800, "days": 42},
    "demo": {"n_customers": 2000, "n_terminals": 2000, "days": 60},
}


class SourceError(ValueError):
    """The data source cannot be loaded as asked; the message says why."""


def simulate_data(
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 7,
    start_date: str | None = None,
    drift: str = "",
) -> dict[str, Any]:
    """Simulate a dataset of a named size into ``out``; ``drift``: drift items in the
    ``riskml simulate --drift`` syntax, separated by ``;`` (riskml.data.simulator.parse_drift)."""
    from riskml.data.simulator import SimulationConfig, simulate

    if size not in SIZES:
        raise SourceError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    overrides: dict[str, Any] = {**SIZES[size], "seed": seed}
    if start_date:
        overrides["start_date"] = dt.date.fromisoformat(start_date)
    items = [d.strip() for d in drift.split(";") if d.strip()]
    try:
        config = SimulationConfig(**overrides, drift=items)
    except ValueError as exc:
        raise SourceError(f"cannot simulate {size!r} with drift {drift!r}: {exc}") from None
    manifest = simulate(config, Path(out))
    return {
        "source": "simulate",
        "size": size,
        "rows": manifest["rows"],
        "days": manifest["days"],
        "fraud_rows": manifest["fraud_rows"],
        "fraud_rate": manifest["fraud_rate"],
    }


def import_data(src: Path, out: Path, *, mapping: dict[str, Any] | None = None) -> dict[str, Any]:
    """Import external transactions (CSV/Parquet) into a dataset at ``out``."""
    from riskml.data.importer import ImportMapping, import_transactions

    result = import_transactions(
        Path(src),
        Path(out),
        ImportMapping.model_validate(mapping) if mapping else None,
        overwrite=True,
    )
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    counts = manifest.get("counts", {})
    return {
        "source": "import",
        "src": str(src),
        "rows": counts.get("accepted", getattr(result, "accepted", None)),
        "quarantined": counts.get("quarantined", getattr(result, "quarantined", None)),
    }


def load_data(
    out: Path,
    *,
    source_uri: str = "",
    size: str = "tiny",
    seed: int = 7,
    start_date: str | None = None,
    mapping: dict[str, Any] | None = None,
    drift: str = "",
) -> dict[str, Any]:
    """Import ``source_uri`` when given, else simulate ``size`` data (with ``drift``)."""
    if source_uri:
        return import_data(Path(source_uri), out, mapping=mapping)
    return simulate_data(out, size=size, seed=seed, start_date=start_date, drift=drift)
