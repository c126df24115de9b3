"""``riskml disputes simulate | import | extract | train | assess | evaluate | serve``: the
disputes line.

Thin wrappers over the disputes tasks (:mod:`components.disputes_tasks`, the same code the kfp
components run) and the disputes Serve app's in-process service (:mod:`serving.disputes`): parse
options, call one function, print a short table, write JSON. Heavy imports happen inside the
commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

disputes_app = typer.Typer(
    help="Disputes and chargebacks: simulate/import disputes with their evidence documents, "
    "extract the evidence, train and evaluate the outcome model and policy, assess a dispute, "
    "serve the app.",
    no_args_is_help=True,
)

Data = Annotated[
    Path,
    typer.Option(
        "--data", exists=True, file_okay=False, help="Dispute set (simulate / import output)."
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        exists=True,
        dir_okay=False,
        help="Run config (JSON/YAML): training, policy, extraction, test_share, n_folds.",
    ),
]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write the result JSON here.")]
SIZES_HELP = "tiny (800 disputes) | demo (1,500 disputes over 400 days)."


def _home(kind: str) -> Path:
    from riskml.settings import get_settings

    return get_settings().home / "disputes" / kind


def _fail(exc: Exception, hint: str | None = None) -> typer.BadParameter:
    return typer.BadParameter(str(exc), param_hint=hint)


def _run_config(path: Path | None, **overrides: Any) -> Any:
    from pydantic import ValidationError

    from components.disputes_tasks import DisputesRunConfig
    from riskml.training.jobs import load_document

    doc: dict[str, Any] = dict(load_document(path)) if path else {}
    doc.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return DisputesRunConfig.parse(doc)
    except ValidationError as exc:
        raise _fail(exc, "--config") from None


@disputes_app.command("simulate")
def simulate(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Directory [RISKML_HOME/disputes/data].")
    ] = None,
    size: Annotated[str, typer.Option(help=SIZES_HELP)] = "demo",
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 11,
    n_disputes: Annotated[int | None, typer.Option(min=1, help="Override the count.")] = None,
    held_out: Annotated[
        bool,
        typer.Option(
            "--held-out",
            help="The held-out extraction corpus instead: templates the rules were not "
            "written on, other seeds, about a fifth of the documents scanned (60 disputes).",
        ),
    ] = False,
    scanned_share: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Mean share of scanned documents.")
    ] = None,
) -> None:
    """Simulate disputes on simulated transactions: records, customer messages, evidence PDFs
    (some scanned), outcomes with their delays, the customers' history."""
    from pydantic import ValidationError

    from components.disputes_tasks import DISPUTE_SIZES, dispute_config
    from riskml.console import print_table, progress
    from riskml.data.disputes.simulator import simulate_disputes

    overrides = {
        k: v
        for k, v in {"n_disputes": n_disputes, "scanned_share": scanned_share}.items()
        if v is not None
    }
    try:
        if held_out:
            from riskml.evaluation.disputes import extraction_corpus_config

            config = extraction_corpus_config(seed=seed + 1000, **overrides)
        else:
            if size not in DISPUTE_SIZES:
                raise typer.BadParameter(
                    f"choose from {', '.join(DISPUTE_SIZES)}", param_hint="--size"
                )
            config = dispute_config(size, seed, **overrides)
    except ValidationError as exc:
        raise _fail(exc) from None
    target = out or _home("held_out" if held_out else "data")
    with progress("simulating disputes and rendering their documents", total=None):
        dispute_set = simulate_disputes(config, target)
    m = dispute_set.manifest
    print_table(
        f"dispute set: {dispute_set.root}",
        {
            "disputes": m["disputes"],
            "documents": m["documents"],
            "scanned documents": m["scanned_documents"],
            **{f"outcome {k}": v for k, v in m["outcomes"].items()},
            **{f"family {k}": v for k, v in m["reason_families"].items()},
        },
    )


@disputes_app.command("import")
def import_disputes_cmd(
    source: Annotated[
        Path,
        typer.Option("--source", exists=True, help="Records: CSV/JSON/Parquet file or folder."),
    ],
    documents: Annotated[
        Path | None,
        typer.Option(
            "--documents",
            exists=True,
            file_okay=False,
            help="Folder of the documents (listed per record, or <dispute_id>/ subfolders).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Directory [RISKML_HOME/disputes/import].")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Column mapping (YAML), as for `import`."),
    ] = None,
) -> None:
    """Import real dispute records and their documents (the transaction importer's rules:
    quarantine with reasons, plausibility window, atomic)."""
    from riskml.console import print_table
    from riskml.data.disputes.importer import DisputeImportMapping, import_disputes
    from riskml.data.importer import ImportSchemaError

    try:
        spec = DisputeImportMapping.from_yaml(mapping) if mapping else DisputeImportMapping()
        result = import_disputes(
            source, out or _home("import"), spec, documents_dir=documents, overwrite=True
        )
    except (ImportSchemaError, ValueError) as exc:
        raise _fail(exc, "--source") from None
    print_table(
        f"disputes: {result.out}",
        {
            "rows_in": result.rows_in,
            "accepted": result.accepted,
            "quarantined": result.quarantined,
            "documents": result.documents,
            "records without documents": len(result.no_documents),
            **{f"quarantined: {k}": v for k, v in result.reasons.items()},
        },
    )


@disputes_app.command("extract")
def extract(
    files: Annotated[
        list[Path] | None,
        typer.Argument(exists=True, dir_okay=False, help="One case's documents (PDF/image/text)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", exists=True, file_okay=False, help="Every case of a dispute set instead."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="With --data: directory [RISKML_HOME/disputes/evidence]."),
    ] = None,
    extractor: Annotated[
        str,
        typer.Option(
            help="layout (the rules and the learned layout model, offline, default) | rules "
            "(the rules alone) | llm (RISKML_LLM_* settings)."
        ),
    ] = "layout",
    ocr: Annotated[str, typer.Option(help="auto | never | always.")] = "auto",
    json_out: JsonOut = None,
) -> None:
    """Evidence from documents, each field with its confidence and provenance (document, page,
    span): one case's FILES, or every case of a dispute set (``--data``; F1 against the
    simulator's truth when it has one)."""
    from pydantic import ValidationError

    from riskml.console import print_table, progress, write_json
    from riskml.features.disputes.text import OCRUnavailable, TextExtractionError
    from riskml.models.disputes.bundle import ExtractionConfig

    try:
        config = ExtractionConfig.model_validate({"extractor": extractor, "ocr": ocr})
    except ValidationError as exc:
        raise _fail(exc) from None
    if (data is None) == (not files):
        raise typer.BadParameter("give documents or --data, not both or neither")
    try:
        if data is not None:
            from components.disputes_tasks import extract_task

            target = out or _home("evidence")
            with progress("extracting the evidence of every case", total=None):
                summary = extract_task(data, target, extraction=config)
            print_table(f"evidence: {target}", summary)
            if json_out:
                write_json(json_out, summary)
            return
        from riskml.features.disputes.extractors import extract_documents

        result = extract_documents(config.read(list(files or [])), config.extractor_instance())
    except (OCRUnavailable, TextExtractionError, RuntimeError) as exc:
        typer.echo(f"riskml disputes extract: {exc}", err=True)
        raise typer.Exit(code=1) from None
    rows = [
        {
            "field": name,
            "value": field.value,
            "confidence": field.confidence,
            "read from": ", ".join(
                f"{p.document} p{p.page} [{p.start}:{p.end}]" for p in field.provenance
            ),
        }
        for name, field in result.fields.items()
    ]
    print_table(f"evidence ({result.extractor}, {result.latency_ms:.0f} ms)", rows)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if json_out:
        write_json(json_out, result.model_dump(mode="json"))


@disputes_app.command("train")
def train(
    data: Data,
    evidence: Annotated[
        Path | None,
        typer.Option(
            exists=True, file_okay=False, help="Evidence `extract --data` wrote (else extract)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Bundle root [RISKML_HOME/disputes/bundles].")
    ] = None,
    work: Annotated[
        Path | None, typer.Option(help="Intermediate artifacts [RISKML_HOME/disputes/work].")
    ] = None,
    test_share: Annotated[
        float | None, typer.Option(min=0.01, max=0.99, help="Last share of openings held out.")
    ] = None,
    folds: Annotated[int | None, typer.Option(min=1, help="Backtest folds.")] = None,
    config: ConfigFile = None,
    no_backtest: Annotated[bool, typer.Option("--no-backtest", help="Skip the backtest.")] = False,
    json_out: JsonOut = None,
) -> None:
    """Extract -> features -> train the outcome model on what was known at the held-out
    window's start -> calibrate (with the rules baseline and the reason classifier: the
    ``disputes-outcome`` bundle) -> backtest; the held-out figures."""
    from components.disputes_tasks import train_chain
    from riskml.console import print_table, progress, write_json
    from riskml.training.disputes import DisputeTrainingError

    run = _run_config(config, test_share=test_share, n_folds=folds)
    try:
        with progress("training the disputes bundle", total=None):
            result = train_chain(
                data,
                work or _home("work"),
                out or _home("bundles"),
                evidence_dir=evidence,
                config=run,
                backtest=not no_backtest,
            )
    except (DisputeTrainingError, ValueError) as exc:
        raise _fail(exc) from None
    print_table("disputes bundle: held-out window and backtest", result["metrics"])
    typer.echo(f"bundle: {result['bundle_dir']}")
    if json_out:
        write_json(json_out, {k: v for k, v in result.items() if k != "html"})


@disputes_app.command("assess")
def assess(
    bundle: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="A disputes-outcome bundle directory."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Registry bundle [models:/disputes-outcome@champion].")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", exists=True, file_okay=False, help="A dispute set (with --dispute)."
        ),
    ] = None,
    dispute: Annotated[str | None, typer.Option(help="The dispute id in --data.")] = None,
    request: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="An /assess request body (JSON)."),
    ] = None,
    no_history: Annotated[
        bool, typer.Option("--no-history", help="With --data: send no transaction history.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Write response.json, packet.json and packet.pdf into this directory."),
    ] = None,
) -> None:
    """Assess one dispute as ``POST /v1/disputes/assess`` does (the same service, in process):
    evidence, decision, win probability, reasons, packet."""
    from pydantic import ValidationError

    from riskml.console import print_table, write_json
    from riskml.features.disputes.text import OCRUnavailable
    from riskml.registry.store import RegistryError
    from serving.disputes import AssessRequest, AssessResponse, DisputesService, DocumentError

    if bundle is not None and model is not None:
        raise typer.BadParameter("give --bundle or --model, not both")
    if (request is None) == (data is None):
        raise typer.BadParameter("give --request FILE or --data DIR with --dispute")
    source = (
        {"bundle_dir": str(bundle)}
        if bundle
        else {"model_uri": model or "models:/disputes-outcome@champion"}
    )
    try:
        if data is not None:
            if not dispute:
                raise typer.BadParameter("--data needs --dispute ID", param_hint="--dispute")
            from components.disputes_tasks import read_set
            from serving.disputes import case_request

            try:
                body = case_request(
                    read_set(data), dispute, documents="reference", history=not no_history
                )
            except KeyError as exc:
                raise _fail(exc, "--dispute") from None
        else:
            assert request is not None
            body = json.loads(request.read_text())
        parsed = AssessRequest.model_validate(body)
        service = DisputesService.from_source(source, documents_root=str(data) if data else None)
        answer = AssessResponse.model_validate(service.assess(parsed))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise _fail(exc, "--request") from None
    except DocumentError as exc:
        raise _fail(exc, f"documents[{exc.index}]") from None
    except (RegistryError, OCRUnavailable, RuntimeError, ValueError) as exc:
        typer.echo(f"riskml disputes assess: {exc}", err=True)
        raise typer.Exit(code=1) from None
    ev = answer.expected_value
    print_table(
        f"dispute {answer.dispute_id} ({answer.requirements.key})",
        {
            "decision": answer.decision,
            "win probability": answer.win_probability,
            "EV represent": ev.represent,
            "EV refund": ev.refund,
            "EV review": ev.review,
            "evidence fields": len(answer.evidence.fields),
            "requirements missing": ", ".join(answer.requirements.missing) or "none",
            "compelling evidence": answer.compelling_evidence.qualifies,
            "message reads as": answer.reason_family.message,
            "model version": answer.model_version,
        },
    )
    for reason in answer.reasons:
        typer.echo(f"- {reason}")
    if out is not None:
        write_json(out / "response.json", json.loads(answer.model_dump_json()))
        if answer.packet is not None:
            from riskml.models.disputes.packet import write_packet

            json_path, pdf_path = write_packet(answer.packet, out)
            typer.echo(f"packet: {json_path}, {pdf_path}")
        typer.echo(f"response: {out / 'response.json'}")


@disputes_app.command("evaluate")
def evaluate(
    out: Annotated[Path, typer.Option("--out", help="Write the figures (JSON) here.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            exists=True,
            file_okay=False,
            help="Dispute set for the backtest [simulate one of --size].",
        ),
    ] = None,
    held_out: Annotated[
        Path | None,
        typer.Option(
            "--held-out",
            exists=True,
            file_okay=False,
            help="Held-out extraction corpus [simulate one: `simulate --held-out`].",
        ),
    ] = None,
    size: Annotated[str, typer.Option(help=f"Without --data: {SIZES_HELP}")] = "demo",
    held_out_disputes: Annotated[
        int, typer.Option(min=1, help="Without --held-out: disputes of the corpus.")
    ] = 60,
    folds: Annotated[int, typer.Option(min=1, help="Backtest folds.")] = 3,
    max_scanned: Annotated[
        int | None, typer.Option(min=0, help="OCR at most this many scanned documents.")
    ] = None,
    no_extracted: Annotated[
        bool,
        typer.Option("--no-extracted", help="Skip scoring on rules-extracted evidence."),
    ] = False,
) -> None:
    """The disputes figures as JSON: extraction_f1_clean, extraction_f1_scanned,
    reason_family_accuracy (held-out corpus), outcome_auc, rules_baseline_auc, outcome_ece,
    policy_ev_per_dispute, always_represent_ev_per_dispute, always_refund_ev_per_dispute
    (time-ordered backtest), with per-field, per-fold and per-family details."""
    from components.disputes_tasks import DISPUTE_SIZES, dispute_config, evaluate_task
    from riskml.console import print_table, progress, write_json
    from riskml.data.disputes.simulator import simulate_disputes
    from riskml.evaluation.disputes import HEADLINE_KEYS, extraction_corpus_config
    from riskml.training.disputes import DisputeTrainingError

    if data is None:
        if size not in DISPUTE_SIZES:
            raise typer.BadParameter(f"choose from {', '.join(DISPUTE_SIZES)}", param_hint="--size")
        data = _home("data")
        with progress(f"simulating a {size} dispute set", total=None):
            simulate_disputes(dispute_config(size), data)
    if held_out is None:
        held_out = _home("held_out")
        with progress("simulating the held-out extraction corpus", total=None):
            simulate_disputes(extraction_corpus_config(n_disputes=held_out_disputes), held_out)
    try:
        with progress("backtest, extraction and reason-family figures", total=None):
            figures = evaluate_task(
                data,
                held_out,
                n_folds=folds,
                max_scanned=max_scanned,
                extracted_evidence=not no_extracted,
            )
    except DisputeTrainingError as exc:
        raise _fail(exc, "--data") from None
    path = write_json(out, figures)
    headline: dict[str, Any] = {k: figures.get(k) for k in HEADLINE_KEYS}
    for key in ("outcome_ap", "rules_baseline_ece", "rules_policy_ev_per_dispute"):
        headline[key] = figures.get(key)
    print_table("disputes figures (held out / time-ordered backtest)", headline)
    typer.echo(f"figures: {path}")


@disputes_app.command("serve")
def serve_disputes(
    model: Annotated[
        str | None, typer.Option(help="Registry bundle [models:/disputes-outcome@champion].")
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="A local disputes-outcome bundle."),
    ] = None,
    documents_root: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="Where referenced documents live."),
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8000,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster [RISKML_RAY_ADDRESS, else a new local one].")
    ] = None,
) -> None:
    """Serve the disputes app (``POST /v1/disputes/assess``) on a local Ray Serve in the
    foreground until Ctrl-C."""
    import time

    from pydantic import ValidationError

    from riskml.demo_disputes import disputes_serving
    from riskml.registry.store import RegistryError

    if model and bundle:
        raise typer.BadParameter("give --model or --bundle, not both")
    args: dict[str, Any] = (
        {"bundle_dir": str(bundle.resolve())}
        if bundle
        else {"model_uri": model or "models:/disputes-outcome@champion"}
    )
    if documents_root:
        args["documents_root"] = str(documents_root.resolve())
    try:
        with disputes_serving(args, port=port, address=address) as url:
            typer.echo(f"disputes app: {url}/assess (Ctrl-C stops it)")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        typer.echo("stopped")
    except (ValidationError, RegistryError) as exc:
        raise _fail(exc) from None
    except (RuntimeError, TimeoutError) as exc:
        typer.echo(f"riskml disputes serve: {exc}", err=True)
        raise typer.Exit(code=1) from None
