"""Data: simulate a dataset or import external transactions."""

from kfp.dsl import Dataset, Output

from components.base import component


@component
def load_data(
    dataset: Output[Dataset],
    size: str = "tiny",
    seed: int = 7,
    source_uri: str = "",
    start_date: str = "",
    mapping_json: str = "",
    drift: str = "",
) -> None:
    """Import ``source_uri`` (CSV/Parquet file or directory) when given, else simulate ``size``
    (tiny | demo) data with ``seed`` starting at ``start_date`` (``drift``: the simulator's
    drift items, ``;``-separated, e.g. ``new_pattern@day=20``)."""
    import json
    from pathlib import Path

    from riskml.data.sources import load_data as load

    summary = load(
        Path(dataset.path),
        source_uri=source_uri,
        size=size,
        seed=seed,
        start_date=start_date or None,
        mapping=json.loads(mapping_json) if mapping_json else None,
        drift=drift,
    )
    dataset.metadata.update(summary)
    print(json.dumps(summary))
