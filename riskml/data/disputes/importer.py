"""Import real dispute records (CSV / JSON / JSON lines / Parquet) and their documents.

The rules are the transaction importer's (:mod:`riskml.data.importer`), applied to the dispute
schema (:data:`~riskml.data.disputes.schema.DISPUTE_COLUMNS`), and its machinery is reused:
source columns are mapped onto the schema; every row is parsed and checked and either
*accepted* (schema-exact) or *quarantined* (original values as text plus ``;``-joined reason
codes in the order of :data:`REASONS`, its source file and row); ``rows_in == accepted +
quarantined`` always holds and is recorded in the manifest. File-level problems (a mapping that
names a column the source lacks, a missing required column, an unreadable file, a timestamp
outside the plausible window, a records file that lists documents without a documents folder)
raise :class:`~riskml.data.importer.ImportSchemaError` before anything is written.

Rules:

* Ids (``dispute_id``, ``tx_id``, ``customer_id``, ``terminal_id``) and ``currency`` follow the
  transaction schema's value rules; a value that breaks one quarantines the row as
  ``bad_<column>`` (never rewritten).
* Timestamps (``tx_ts``, ``opened_at``, ``resolved_at``): ``ts_format`` or ISO 8601, naive ones
  in ``timezone``, stored in UTC (:func:`riskml.data.importer.parse_datetime`); each must lie in
  the plausible window (default :func:`riskml.data.importer.default_ts_window`).
* ``amount`` a finite number > 0. ``reason_code`` a code of the catalogue; ``network``, when
  given, the code's network (else derived from it); ``reason_family`` derived from the code (a
  given one must agree). ``outcome`` one of ``won lost refunded pending`` (default
  ``pending``); a resolved outcome needs ``resolved_at``, a pending one must not have it.
* Duplicate ``dispute_id``: the first row (source order) that passes every other check wins.
* Documents: a ``documents`` source column lists each record's files (``;``-separated in CSV, a
  list in JSON), relative to ``documents_dir``; without that column (or where a row lists
  none), every PDF/image file under ``documents_dir/<dispute_id>/`` belongs to the record. A
  listed path outside the folder quarantines the row (``bad_document_path``); a listed file
  that does not exist is reported per record in ``missing_documents`` (the record is kept),
  and records with no document at all in ``no_documents``.

The output is a dispute set directory (:class:`~riskml.data.disputes.simulator.DisputeSet`
reads it): ``disputes.parquet``, ``documents.parquet``, ``documents/<dispute_id>/...`` (copies),
``quarantine.parquet``, ``manifest.json``; written to a temporary sibling, read back and
verified, then swapped into place, so a failed import leaves ``out`` as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from riskml.data.disputes.schema import (
    BY_CODE,
    DISPUTE_BY_NAME,
    DISPUTE_COLUMN_NAMES,
    DISPUTE_REQUIRED,
    NETWORKS,
    OUTCOMES,
    RESOLVED_OUTCOMES,
    UNKNOWN,
    dispute_schema,
    validate_disputes,
)
from riskml.data.importer import (
    QUARANTINE_COLUMNS,
    ImportSchemaError,
    SourceMapping,
    as_string,
    breaks_rule,
    check_ts_window,
    const_series,
    default_ts_window,
    is_blank,
    parse_datetime,
    quarantine_frame,
    read_file,
    staged_dataset,
)
from riskml.data.schema import is_valid_value, rule_message

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

#: Source column that lists a record's documents (besides the schema's columns).
DOCUMENTS_COLUMN = "documents"
#: Record file types.
RECORD_SUFFIXES = (".csv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq")
#: Document file types picked up from ``documents_dir/<dispute_id>/``.
DOCUMENT_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
QUARANTINE_FILE = "quarantine.parquet"

_ID_COLUMNS = ("dispute_id", "tx_id", "customer_id", "terminal_id")
_TS_COLUMNS = ("tx_ts", "opened_at", "resolved_at")
_DEFAULTABLE = ("merchant_name", "currency", "customer_message", "outcome")


def _id_message(column: str) -> str:
    return rule_message("tx_id").replace("tx_id", column, 1)


#: Row-level reason codes, in the order they appear in ``reason``.
REASONS: dict[str, str] = {
    **{
        code: text
        for col in _ID_COLUMNS
        for code, text in (
            (f"missing_{col}", f"{col} is null or empty"),
            (f"bad_{col}", _id_message(col)),
        )
    },
    "missing_tx_ts": "tx_ts is null or empty",
    "bad_tx_ts": "tx_ts cannot be parsed",
    "missing_opened_at": "opened_at is null or empty",
    "bad_opened_at": "opened_at cannot be parsed",
    "opened_before_tx": "opened_at is before tx_ts",
    "missing_amount": "amount is null or empty",
    "bad_amount": "amount is not a number",
    "nonfinite_amount": "amount is NaN or infinite",
    "nonpositive_amount": "amount is not > 0",
    "bad_currency": rule_message("currency"),
    "missing_reason_code": "reason_code is null or empty",
    "unknown_reason_code": "reason_code is not a Visa or Mastercard code of the catalogue",
    "bad_network": f"network must be one of {', '.join(NETWORKS)} and match the reason code",
    "bad_reason_family": "reason_family disagrees with the reason code's family",
    "bad_outcome": f"outcome must be one of {', '.join(OUTCOMES)}",
    "bad_resolved_at": "resolved_at cannot be parsed",
    "missing_resolved_at": "the outcome is resolved but resolved_at is null or empty",
    "resolved_while_pending": "resolved_at is set but the outcome is pending",
    "resolved_before_opened": "resolved_at is before opened_at",
    "bad_document_path": "a listed document path is absolute or leaves the documents folder",
    "duplicate_dispute_id": "dispute_id already seen in an earlier accepted row",
}


class DisputeImportMapping(SourceMapping):
    """How a records file maps onto the dispute schema: ``columns`` maps schema column (or
    ``documents``) -> source column; ``defaults`` fill ``merchant_name``, ``currency``,
    ``customer_message`` and ``outcome`` where the source has no value."""

    TARGETS: ClassVar[tuple[str, ...]] = (*DISPUTE_COLUMN_NAMES, DOCUMENTS_COLUMN)
    KIND: ClassVar[str] = "dispute"

    defaults: dict[str, str] = Field(default_factory=dict)

    @field_validator("defaults")
    @classmethod
    def _known_defaults(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(_DEFAULTABLE))
        if unknown:
            raise ValueError(f"no default can be set for {unknown}; allowed: {list(_DEFAULTABLE)}")
        if "currency" in value and not is_valid_value("currency", value["currency"]):
            raise ValueError(f"defaults.currency {value['currency']!r}: {rule_message('currency')}")
        if "outcome" in value and value["outcome"] not in OUTCOMES:
            raise ValueError(f"defaults.outcome must be one of {', '.join(OUTCOMES)}")
        return value


class DisputeImportResult(BaseModel):
    """What :func:`import_disputes` did."""

    model_config = ConfigDict(extra="forbid")

    rows_in: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]
    documents: int
    missing_documents: dict[str, list[str]]
    no_documents: list[str]
    out: Path
    manifest_path: Path
    quarantine_path: Path
    files: list[Path]
    mapping: dict[str, str]


@dataclass
class LoadedDisputes:
    """In-memory result of :func:`load_disputes`."""

    accepted: pl.DataFrame
    quarantined: pl.DataFrame
    rows_in: int
    reasons: dict[str, int]
    mapping: dict[str, str]
    #: accepted record -> its documents: (path relative to documents_dir, exists)
    documents: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def missing_documents(self) -> dict[str, list[str]]:
        """Accepted record -> the listed documents that do not exist."""
        out = {k: [p for p, ok in v if not ok] for k, v in self.documents.items()}
        return {k: v for k, v in out.items() if v}

    @property
    def no_documents(self) -> list[str]:
        """Accepted records without any existing document."""
        ids = self.accepted.get_column("dispute_id").to_list() if self.accepted.height else []
        return [d for d in ids if not any(ok for _, ok in self.documents.get(d, []))]


# --- reading ---------------------------------------------------------------------------------


def record_files(src: Path) -> list[Path]:
    """The record files of ``src``: the file itself, or the record files directly in a
    directory (not in its subfolders, where documents may live)."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"no such file or directory: {src}")
    if src.is_file():
        if src.suffix.lower() not in RECORD_SUFFIXES:
            raise ImportSchemaError(
                f"{src}: unsupported file type {src.suffix!r}; expected one of {RECORD_SUFFIXES}"
            )
        return [src]
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in RECORD_SUFFIXES)
    if not files:
        raise ImportSchemaError(f"{src}: no {'/'.join(RECORD_SUFFIXES)} files in this directory")
    return files


def _read_json(path: Path) -> pl.DataFrame:
    """A JSON array of objects (``.json``) or JSON lines (``.jsonl``/``.ndjson``); scalar values
    as text (as a CSV is read), lists kept (the ``documents`` column)."""
    import polars as pl

    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())
            if isinstance(rows, dict) and isinstance(rows.get("disputes"), list):
                rows = rows["disputes"]
        else:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise ImportSchemaError(f"cannot read {path}: {exc}") from exc
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ImportSchemaError(
            f"{path}: expected a JSON array of objects (or {{'disputes': [...]}}), one per record"
        )
    if not rows:
        raise ImportSchemaError(f"{path}: no records")
    names = list(dict.fromkeys(k for r in rows for k in r))
    clash = [c for c in QUARANTINE_COLUMNS if c in names]
    if clash:
        raise ImportSchemaError(
            f"{path}: source columns {clash} clash with the quarantine's own columns", tuple(clash)
        )

    def text(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, dict | list):
            return json.dumps(value)
        return str(value)

    columns: dict[str, pl.Series] = {}
    for name in names:
        values = [r.get(name) for r in rows]
        if name == DOCUMENTS_COLUMN and any(isinstance(v, list) for v in values):
            lists = [
                [str(x) for x in v] if isinstance(v, list) else (None if v is None else [str(v)])
                for v in values
            ]
            columns[name] = pl.Series(name, lists, dtype=pl.List(pl.String))
        else:
            columns[name] = pl.Series(name, [text(v) for v in values], dtype=pl.String)
    return pl.DataFrame(list(columns.values())).with_columns(
        source_file=pl.lit(str(path)), source_row=pl.int_range(pl.len(), dtype=pl.Int64)
    )


def _read_records(files: list[Path]) -> pl.DataFrame:
    import polars as pl

    frames = [_read_json(p) if ".json" in p.suffix.lower() else read_file(p) for p in files]
    if len(frames) == 1:
        return frames[0]
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except Exception as exc:
        raise ImportSchemaError(f"record files have incompatible column types: {exc}") from exc


def _resolve(source_columns: list[str], mapping: DisputeImportMapping) -> dict[str, str]:
    """Schema column (and ``documents``) -> source column. Raises on what the source lacks."""
    absent = {t: s for t, s in mapping.columns.items() if s not in source_columns}
    if absent:
        listed = ", ".join(f"{t} <- {s!r}" for t, s in sorted(absent.items()))
        raise ImportSchemaError(
            f"mapping names source columns not in the file: {listed} "
            f"(source columns: {', '.join(source_columns)})",
            tuple(sorted(absent.values())),
        )
    resolved = dict(mapping.columns)
    for name in (*DISPUTE_COLUMN_NAMES, DOCUMENTS_COLUMN):
        if name not in resolved and name in source_columns:
            resolved[name] = name
    missing = [c for c in DISPUTE_REQUIRED if c not in resolved]
    if missing:
        raise ImportSchemaError(
            f"missing required dispute columns after mapping: {', '.join(missing)} "
            f"(source columns: {', '.join(source_columns)}); map them with a mapping "
            f"(columns: {{{missing[0]}: <source column>}})",
            tuple(missing),
        )
    return resolved


def _document_lists(s: pl.Series) -> list[list[str]]:
    """The ``documents`` column as one list of paths per row (``;``-separated text or lists)."""
    import polars as pl

    if s.dtype == pl.List(pl.String):
        return [[p.strip() for p in (v or []) if p and p.strip()] for v in s.to_list()]
    text = as_string(s).to_list()
    return [[p.strip() for p in (v or "").split(";") if p.strip()] for v in text]


def _safe_relative(path: str) -> bool:
    p = PurePosixPath(path.replace("\\", "/"))
    return not p.is_absolute() and ".." not in p.parts and not path.startswith("~")


# --- loading -----------------------------------------------------------------------------------


def load_disputes(
    src: Path | pl.DataFrame,
    mapping: DisputeImportMapping | None = None,
    *,
    documents_dir: Path | None = None,
    ts_window: tuple[dt.datetime, dt.datetime] | None = None,
) -> LoadedDisputes:
    """Read, map, parse and check dispute records; split them into accepted and quarantined
    rows and find each accepted record's documents (nothing is written). ``ts_window``: UTC
    ``(min, max)``; a parsed timestamp outside it is a file-level error."""
    import polars as pl

    mapping = mapping or DisputeImportMapping()
    if isinstance(src, pl.DataFrame):
        files: list[Path] = []
        raw = src.with_columns(
            source_file=pl.lit("<frame>"), source_row=pl.int_range(pl.len(), dtype=pl.Int64)
        )
    else:
        files = record_files(Path(src))
        raw = _read_records(files)
    source_cols = [c for c in raw.columns if c not in QUARANTINE_COLUMNS]
    resolved = _resolve(source_cols, mapping)
    n = raw.height
    false = const_series(False, n, pl.Boolean)

    def col(target: str) -> pl.Series:
        return raw.get_column(resolved[target]).alias(target)

    problems: dict[str, pl.Series] = {}
    parsed: dict[str, pl.Series] = {}
    for name in _ID_COLUMNS:
        value = as_string(col(name))
        problems[f"missing_{name}"] = is_blank(value)
        parsed[name] = value
        # the id rule is the transaction schema's (VALUE_RULES["tx_id"])
        problems[f"bad_{name}"] = ~problems[f"missing_{name}"] & breaks_rule(
            value.alias("tx_id")
        ).alias(name)

    for name in ("tx_ts", "opened_at"):
        text = col(name)
        ts = parse_datetime(text, mapping.ts_format, mapping.timezone).alias(name)
        problems[f"missing_{name}"] = is_blank(text)
        problems[f"bad_{name}"] = ~problems[f"missing_{name}"] & ts.is_null()
        parsed[name] = ts
    problems["opened_before_tx"] = (parsed["opened_at"] < parsed["tx_ts"]).fill_null(False)

    amount_text = col("amount")
    amount = as_string(amount_text).str.strip_chars().cast(pl.Float64, strict=False)
    problems["missing_amount"] = is_blank(amount_text)
    problems["bad_amount"] = ~problems["missing_amount"] & amount.is_null()
    problems["nonfinite_amount"] = (~amount.is_finite()).fill_null(False)
    problems["nonpositive_amount"] = (amount <= 0).fill_null(False)
    parsed["amount"] = amount.alias("amount")

    defaults = {c: DISPUTE_BY_NAME[c].default for c in _DEFAULTABLE} | dict(mapping.defaults)
    for name in ("merchant_name", "currency", "customer_message"):
        if name in resolved:
            value = as_string(col(name))
            value = value.set(is_blank(value), None).fill_null(str(defaults[name])) if n else value
        else:
            value = const_series(str(defaults[name]), n, pl.String, name)
        parsed[name] = value.alias(name)
    problems["bad_currency"] = breaks_rule(parsed["currency"])

    code = as_string(col("reason_code")).str.strip_chars().alias("reason_code")
    problems["missing_reason_code"] = is_blank(code)
    catalogue = pl.DataFrame(
        {
            "_code": [c for _, c in BY_CODE],
            "_network": [net for net, _ in BY_CODE],
            "_family": [r.family for r in BY_CODE.values()],
        }
    )
    looked = code.to_frame().join(
        catalogue, left_on="reason_code", right_on="_code", how="left", maintain_order="left"
    )
    problems["unknown_reason_code"] = (
        ~problems["missing_reason_code"] & looked.get_column("_family").is_null()
    )
    parsed["reason_code"] = code
    code_network = looked.get_column("_network")
    if "network" in resolved:
        given = as_string(col("network"))
        blank = is_blank(given)
        problems["bad_network"] = (~blank & (given != code_network).fill_null(True)) & ~problems[
            "unknown_reason_code"
        ]
        network = given.set(blank, None).fill_null(code_network) if n else given
    else:
        problems["bad_network"] = false
        network = code_network
    parsed["network"] = network.alias("network")
    family = looked.get_column("_family")
    if "reason_family" in resolved:
        given = as_string(col("reason_family"))
        blank = is_blank(given)
        problems["bad_reason_family"] = (~blank & (given != family).fill_null(True)) & ~problems[
            "unknown_reason_code"
        ]
    else:
        problems["bad_reason_family"] = false
    parsed["reason_family"] = family.alias("reason_family")

    if "outcome" in resolved:
        outcome = as_string(col("outcome"))
        outcome = outcome.set(is_blank(outcome), None).fill_null(str(defaults["outcome"]))
    else:
        outcome = const_series(str(defaults["outcome"]), n, pl.String)
    parsed["outcome"] = outcome.alias("outcome")
    problems["bad_outcome"] = ~outcome.is_in(OUTCOMES)
    if "resolved_at" in resolved:
        text = col("resolved_at")
        resolved_ts = parse_datetime(text, mapping.ts_format, mapping.timezone)
        resolved_blank = is_blank(text)
        problems["bad_resolved_at"] = ~resolved_blank & resolved_ts.is_null()
    else:
        resolved_ts = const_series(None, n, pl.Datetime("us", "UTC"))
        resolved_blank = ~false
        problems["bad_resolved_at"] = false
    parsed["resolved_at"] = resolved_ts.alias("resolved_at")
    is_resolved = outcome.is_in(RESOLVED_OUTCOMES)
    problems["missing_resolved_at"] = is_resolved & resolved_blank
    problems["resolved_while_pending"] = (outcome == "pending") & ~resolved_blank
    problems["resolved_before_opened"] = (resolved_ts < parsed["opened_at"]).fill_null(False)

    if DOCUMENTS_COLUMN in resolved:
        listed: list[list[str]] | None = _document_lists(col(DOCUMENTS_COLUMN))
        assert listed is not None
        if documents_dir is None and any(listed):
            raise ImportSchemaError(
                f"the records list documents (column {resolved[DOCUMENTS_COLUMN]!r}) but no "
                "documents folder was given",
                (DOCUMENTS_COLUMN,),
            )
        problems["bad_document_path"] = pl.Series(
            [not all(_safe_relative(p) for p in row) for row in listed], dtype=pl.Boolean
        )
    else:
        listed = None
        problems["bad_document_path"] = false

    if ts_window is not None:
        for name in _TS_COLUMNS:
            if name in resolved:
                check_ts_window(col(name), parsed[name], resolved[name], raw, ts_window, name)

    valid = ~pl.select(pl.any_horizontal(list(problems.values()))).to_series() if n else ~false
    ids = parsed["dispute_id"]
    first = pl.select(pl.when(pl.lit(valid)).then(pl.lit(ids)).is_first_distinct()).to_series()
    problems["duplicate_dispute_id"] = valid & ~first
    assert list(problems) == list(REASONS), "reason order drifted from REASONS"

    reason_exprs = [pl.when(pl.lit(m)).then(pl.lit(code)) for code, m in problems.items()]
    reason = (
        pl.select(pl.concat_str(reason_exprs, separator=";", ignore_nulls=True)).to_series()
        if n
        else pl.Series("reason", [], dtype=pl.String)
    ).alias("reason")
    bad = (reason.is_not_null() & (reason.str.len_bytes() > 0)).fill_null(False)

    frame = pl.DataFrame(
        [parsed[c].alias(c) for c in DISPUTE_COLUMN_NAMES], schema=dispute_schema()
    )
    accepted = validate_disputes(frame.filter(~bad).sort("opened_at", maintain_order=True))
    quarantined = quarantine_frame(raw, source_cols, bad, reason)
    if accepted.height + quarantined.height != n:
        raise AssertionError(f"row accounting broke: {n} != {accepted.height}+{quarantined.height}")

    documents: dict[str, list[tuple[str, bool]]] = {}
    keep = (~bad).to_list()
    for i, dispute_id in enumerate(ids.to_list()):
        if not keep[i]:
            continue
        if listed is not None and listed[i]:
            documents[dispute_id] = [
                (p, documents_dir is not None and (Path(documents_dir) / p).is_file())
                for p in listed[i]
            ]
        elif documents_dir is not None:
            folder = Path(documents_dir) / dispute_id
            found = (
                sorted(
                    q
                    for q in folder.rglob("*")
                    if q.is_file() and q.suffix.lower() in DOCUMENT_SUFFIXES
                )
                if folder.is_dir()
                else []
            )
            documents[dispute_id] = [(q.relative_to(documents_dir).as_posix(), True) for q in found]
        else:
            documents[dispute_id] = []
    counts = {code: int(m.sum()) for code, m in problems.items()} if n else {}
    return LoadedDisputes(
        accepted=accepted,
        quarantined=quarantined,
        rows_in=n,
        reasons={k: v for k, v in counts.items() if v},
        mapping={k: v for k, v in resolved.items()},
        documents=documents,
        files=files,
    )


# --- writing -----------------------------------------------------------------------------------


def import_disputes(
    src: Path,
    out: Path,
    mapping: DisputeImportMapping | None = None,
    *,
    documents_dir: Path | None = None,
    overwrite: bool = False,
    ts_window: tuple[dt.datetime, dt.datetime] | None = None,
) -> DisputeImportResult:
    """Import dispute records ``src`` and their documents (``documents_dir``) into a dispute
    set at ``out``. Refuses to replace an existing directory unless ``overwrite``. Atomic: the
    set is written into a temporary sibling of ``out``, read back and verified (records,
    counts, every copied document), then swapped into place; any failure leaves ``out`` as it
    was."""
    import polars as pl

    from riskml import __version__
    from riskml.data.disputes.simulator import DOCUMENT_SCHEMA, DOCUMENTS_DIR, DisputeSet

    src, out = Path(src), Path(out)
    window = ts_window or default_ts_window()
    target = out.resolve()
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
    if target == src.resolve() or src.resolve() in target.parents:
        raise ImportSchemaError(f"out {out} must not be the source or lie inside it")
    loaded = load_disputes(src, mapping, documents_dir=documents_dir, ts_window=window)

    with staged_dataset(target) as staging:
        rows: list[dict[str, Any]] = []
        for dispute_id, docs in loaded.documents.items():
            for rel, exists in docs:
                if not exists:
                    continue
                assert documents_dir is not None
                dest = f"{DOCUMENTS_DIR}/{dispute_id}/{PurePosixPath(rel).name}"
                (staging / dest).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(documents_dir) / rel, staging / dest)
                rows.append(
                    {
                        "dispute_id": dispute_id,
                        "document": dest,
                        "doc_type": UNKNOWN,
                        "variant": None,
                        "scanned": None,
                        "pages": None,
                        "truth": None,
                    }
                )
        documents = pl.DataFrame(rows, schema=DOCUMENT_SCHEMA)
        manifest: dict[str, Any] = {
            "kind": "import",
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "riskml_version": __version__,
            "source": {"path": str(src.resolve()), "files": [str(p) for p in loaded.files]},
            "documents_dir": None if documents_dir is None else str(Path(documents_dir).resolve()),
            "mapping": loaded.mapping,
            "ts_window": [window[0].isoformat(), window[1].isoformat()],
            "duplicate_rule": "first accepted occurrence of a dispute_id in source order wins",
            "counts": {
                "rows_in": loaded.rows_in,
                "accepted": loaded.accepted.height,
                "quarantined": loaded.quarantined.height,
                "reasons": loaded.reasons,
                "documents": documents.height,
                "missing_documents": sum(len(v) for v in loaded.missing_documents.values()),
                "no_documents": len(loaded.no_documents),
            },
            "missing_documents": loaded.missing_documents,
            "no_documents": loaded.no_documents,
            "disputes": loaded.accepted.height,
            "quarantine": QUARANTINE_FILE,
        }
        result = DisputeSet(
            root=staging,
            disputes=loaded.accepted,
            truth=pl.DataFrame(schema=_truth_schema()),
            documents=documents,
            history=pl.DataFrame(),
            manifest=manifest,
        )
        result.write_tables(staging)
        loaded.quarantined.write_parquet(staging / QUARANTINE_FILE)
        _verify(staging, loaded, documents.height)
    return DisputeImportResult(
        rows_in=loaded.rows_in,
        accepted=loaded.accepted.height,
        quarantined=loaded.quarantined.height,
        reasons=loaded.reasons,
        documents=documents.height,
        missing_documents=loaded.missing_documents,
        no_documents=loaded.no_documents,
        out=out,
        manifest_path=out / "manifest.json",
        quarantine_path=out / QUARANTINE_FILE,
        files=loaded.files,
        mapping=loaded.mapping,
    )


def _truth_schema() -> dict[str, Any]:
    from riskml.data.disputes.simulator import TRUTH_SCHEMA

    return TRUTH_SCHEMA


def _verify(root: Path, loaded: LoadedDisputes, n_documents: int) -> None:
    """Read the written set back: records, counts, quarantine, every document file."""
    import polars as pl

    from riskml.data.disputes.simulator import DisputeSet
    from riskml.data.schema import SchemaError

    try:
        ds = DisputeSet.read(root)
        if ds.disputes.height != loaded.accepted.height:
            raise ImportSchemaError(
                f"read back {ds.disputes.height} disputes, wrote {loaded.accepted.height}"
            )
        if ds.documents.height != n_documents:
            raise ImportSchemaError(
                f"read back {ds.documents.height} documents, wrote {n_documents}"
            )
        absent = [
            d for d in ds.documents.get_column("document").to_list() if not (root / d).is_file()
        ]
        if absent:
            raise ImportSchemaError(f"documents missing after the copy: {absent[:3]}")
        q = pl.read_parquet(root / QUARANTINE_FILE)
        if q.height != loaded.quarantined.height:
            raise ImportSchemaError(
                f"quarantine has {q.height} rows, wrote {loaded.quarantined.height}"
            )
    except SchemaError as exc:
        if isinstance(exc, ImportSchemaError):
            raise
        raise ImportSchemaError(f"written dispute set failed verification: {exc}") from exc
