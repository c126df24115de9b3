"""Shared terminal output for the CLI: one rich console, short tables, progress bars, JSON files."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=False)
err_console = Console(stderr=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_table(title: str, rows: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
    """Print a key/value mapping, or a list of same-keyed mappings, as a short table."""
    table = Table(title=title, title_justify="left")
    if isinstance(rows, Mapping):
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in rows.items():
            table.add_row(str(key), _fmt(value))
    else:
        rows = list(rows)
        if not rows:
            console.print(f"{title}: (no rows)")
            return
        for key in rows[0]:
            table.add_column(str(key))
        for row in rows:
            table.add_row(*(_fmt(v) for v in row.values()))
    console.print(table)


def write_json(path: Path | str, payload: Any) -> Path:
    """Write ``payload`` as pretty JSON (creating parent dirs); non-JSON types become strings."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    return path


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar; yields a callable ``advance(n=1)``. Quiet when not a terminal."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
