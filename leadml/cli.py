"""The one command-line entry point. Each command parses options and calls one function.

The modules behind the commands are imported inside them, and only there, because they pull in
heavy libraries (pandas, lightgbm, shap, mlflow, pyspark): `leadml --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from leadml import __version__, console
from leadml.config import Config, config_schema, load_config, override
from leadml.errors import LeadmlError, ScoringError

app = typer.Typer(
    help="leadml: predictive lead scoring with calibrated 1-100 scores and reasons in points.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="YAML config file.", show_default=True)
]
DEFAULT_CONFIG = Path("configs/train.yaml")
ModelRefOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Bundle folder or models:/name@alias (default: the champion alias if registered, else models/latest).",
    ),
]


def _show_version(value: bool) -> None:
    if value:
        console.print_version(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """leadml: predictive lead scoring with calibrated 1-100 scores and reasons in points."""


def _config(path: Path) -> Config:
    if path == DEFAULT_CONFIG and not path.exists():
        return Config()
    return load_config(path)


@app.command("config")
def config_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema.")] = False,
) -> None:
    """Validate a config file and print it (or the JSON Schema with --schema)."""
    if schema:
        console.echo(config_schema())
        return
    console.echo(_config(config).model_dump_json(indent=2))


DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL of the lead database (default: config data.source)."),
]


DEFAULT_DB = "sqlite:///data/leads.db"
ReplaceOpt = Annotated[bool, typer.Option("--replace", help="Overwrite tables that already exist.")]


@app.command("generate")
def generate_cmd(
    db: Annotated[
        str, typer.Option("--db", help="SQLAlchemy URL to write leads and lead_events to.")
    ] = DEFAULT_DB,
    leads: Annotated[int, typer.Option("--leads", min=1, help="Number of leads.")] = 50_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 42,
    drift: Annotated[
        bool, typer.Option("--drift", help="Shift the latest fifth of the period strongly.")
    ] = False,
    end: Annotated[
        str | None,
        typer.Option(
            "--end", help="Last day of the history, YYYY-MM-DD (default today; pins the data)."
        ),
    ] = None,
    replace: ReplaceOpt = False,
) -> None:
    """Write a seeded synthetic lead database (leads with engagement events) ending today."""
    from leadml.data.synth import generate_database  # lazy: keeps leadml --help fast

    s = generate_database(db, leads, seed, drift=drift, replace=replace, end=end)
    console.echo(
        f"generated {s.leads:,} leads and {s.events:,} events in {s.url} "
        f"(conversion rate {s.conversion_rate:.1%}, {s.open_leads:,} open) in {s.seconds:.1f} s"
    )


@app.command("import")
def import_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    db: Annotated[
        str, typer.Option("--db", help="SQLAlchemy URL to write the canonical tables to.")
    ] = DEFAULT_DB,
    replace: ReplaceOpt = False,
) -> None:
    """Load your leads (and events) per the config's data section into canonical tables in --db."""
    from leadml.data.io import import_dataset, mask_url  # lazy: keeps leadml --help fast

    counts = import_dataset(_config(config).data, db, replace=replace)
    tables = ", ".join(f"{name}: {rows:,} rows" for name, rows in counts.items())
    console.echo(f"imported into {mask_url(db)}: {tables}")


@app.command("train")
def train_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the bundle under this folder.")
    ] = None,
    no_mlflow: Annotated[
        bool, typer.Option("--no-mlflow", help="Skip MLflow logging and registration.")
    ] = False,
    regrade: Annotated[
        bool,
        typer.Option(
            "--regrade",
            help="grades.mode quantile: recompute the thresholds instead of keeping the champion's.",
        ),
    ] = False,
) -> None:
    """Train, calibrate and evaluate a model; write models/<version>/ and models/latest."""
    from leadml.workflow import run_training  # lazy: keeps leadml --help fast

    cfg = _config(config)
    if regrade:
        cfg = override(cfg, grades__regrade=True)
        if cfg.grades.mode != "quantile":
            console.print_notes(
                [
                    f"--regrade changes nothing: grades.mode is {cfg.grades.mode!r}, whose "
                    "thresholds come from the config (only quantile grades are kept across retrains)"
                ]
            )
    with console.progress_log() as log:
        result = run_training(
            cfg, url=db, output=output, log=log, track=not no_mlflow, config_path=str(config)
        )
    console.print_training_summary(result)


@app.command("evaluate")
def evaluate_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    folds: Annotated[
        int | None,
        typer.Option("--folds", min=2, help="Number of folds (default: config split.folds)."),
    ] = None,
    stratified: Annotated[
        bool, typer.Option("--stratified", help="Stratified K-fold even for data in time order.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", help="Also write the results as JSON to this file.")
    ] = None,
) -> None:
    """Repeated forward-in-time folds (or stratified K-fold): leadml and both baselines, mean and spread."""
    from leadml.backtest import run_backtest  # lazy: keeps leadml --help fast

    with console.progress_log("evaluating...") as log:
        result = run_backtest(_config(config), url=db, folds=folds, stratified=stratified, log=log)
    console.print_backtest(result)
    if output is not None:
        output.write_text(result.to_json())
        console.echo(f"results: {output}")


@app.command("explain")
def explain_cmd(
    lead_id: Annotated[str, typer.Argument(help="The lead to explain.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    model: ModelRefOpt = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Score as of this time (default now).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of the terminal view.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Also show why the stored score changed since the scoring at or before this "
            "date (the change ledger, in points).",
        ),
    ] = None,
) -> None:
    """Score one lead from the database and show why: score, grade and reasons in points."""
    from leadml.predict import explain_stored_lead  # lazy: keeps leadml --help fast

    cfg = _config(config)
    result, scorer = explain_stored_lead(cfg, lead_id, url=db, ref=model, as_of=as_of)
    history = None
    if since is not None:
        from leadml.ledger import (  # lazy: keeps leadml --help fast
            bundle_finder,
            lead_history_report,
        )

        finder = bundle_finder(cfg.models_dir, scorer)
        history = lead_history_report(db or cfg.data.source, cfg, lead_id, finder, since=since)
    if as_json:
        console.print_json(result if since is None else {**result, "history": history})
    else:
        console.print_explanation(result, scorer.metadata.get("base_score"))
        if since is not None:
            console.print_ledger(history)


@app.command("calllist")
def calllist_cmd(
    capacity: Annotated[
        int, typer.Option("--capacity", min=1, help="How many leads the team can call.")
    ] = 200,
    grade: Annotated[
        str | None, typer.Option("--grade", help="Only these grades, e.g. hot,warm.")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Only these sources, comma-separated.")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write the list as CSV here (for the CRM).")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The top N open leads by stored score, the conversions they are expected to bring and
    its 90% interval (exact Poisson-binomial), and the curve against the number called."""
    from leadml.calllist import (  # lazy: keeps leadml --help fast
        calllist_json,
        split_list,
        stored_call_list,
        to_csv,
    )

    cfg = _config(config)
    result = stored_call_list(
        db or cfg.data.source, cfg, capacity, grades=split_list(grade), sources=split_list(source)
    )
    if csv is not None:
        csv.write_text(to_csv(result))
    if as_json:
        console.print_json(calllist_json(result))
    else:
        console.print_call_list(result, csv)


@app.command("score")
def score_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    model: ModelRefOpt = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Score as of this time, UTC (default now; a resumed run keeps its own)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Score leads new or with events after this time (default: since the last successful run).",
        ),
    ] = None,
    all_leads: Annotated[bool, typer.Option("--all", help="Score every open lead.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Score but write nothing.")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local or spark.")] = "local",
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="Spark master URL (default: Spark's own configuration, else local[*]).",
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            "--chunk-size", min=1, help="Leads per transaction (default: config batch.chunk_size)."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Any row training would refuse fails the run (exit 2) before anything is "
            "written (default: config batch.on_bad_rows; reject keeps them in scoring_rejects).",
        ),
    ] = False,
) -> None:
    """Score open leads into lead_scores, lead_score_history and scoring_runs (exit codes: README)."""
    from leadml.batch import ScoreOptions, run_scoring  # lazy: keeps leadml --help fast

    cfg = _config(config)
    if engine not in ("local", "spark"):
        raise ScoringError(f"--engine must be local or spark, got {engine!r}")
    source = None
    if engine == "spark":
        from leadml.batch.spark import spark_source  # lazy: keeps leadml --help fast

        source = spark_source(spark_master)
    options = ScoreOptions(
        url=db or cfg.data.source,
        model_ref=model,
        as_of=as_of,
        since=since,
        all_leads=all_leads,
        dry_run=dry_run,
        chunk_size=chunk_size,
        strict=True if strict else None,
    )
    with console.score_progress() as progress:
        summary = run_scoring(cfg, options, source=source, on_progress=progress)
    console.print_score_summary(summary)


@app.command("serve")
def serve_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    model: ModelRefOpt = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Interface to bind (default serve.host, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default serve.port, 8000).")
    ] = None,
) -> None:
    """Start the HTTP scorer (/v1/score) and the sales-ops pages (/leads); SIGHUP reloads the model."""
    from leadml.serve.app import run_server  # lazy: keeps leadml --help fast

    run_server(_config(config), model_ref=model, db_url=db, host=host, port=port)


@app.command("promote")
def promote_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Registered version to promote (default: the challenger alias); with --force, a rollback.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if worse (recorded as forced).")
    ] = False,
) -> None:
    """Compare challenger and champion on the latest holdout slice; promote if not worse (exit 1 if refused)."""
    from leadml.lifecycle import promote  # lazy: keeps leadml --help fast

    with console.progress_log("comparing...") as log:
        result = promote(_config(config), url=db, candidate=version, force=force, log=log)
    console.print_promotion(result)
    if result.refused:
        raise typer.Exit(1)


@app.command("monitor")
def monitor_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    model: ModelRefOpt = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the self-contained HTML report here.")
    ] = None,
) -> None:
    """Drift (PSI) against training and realized conversion by grade and decile; exit 1 on alert."""
    from leadml.monitor import run_monitor, write_report  # lazy: keeps leadml --help fast
    from leadml.predict import resolve_model  # lazy: keeps leadml --help fast

    cfg = _config(config)
    result = run_monitor(cfg, resolve_model(cfg, model), url=db)
    console.print_monitor(result)
    if report is not None:
        console.echo(f"report: {write_report(result, cfg.monitor, report)}")
    raise typer.Exit(result.exit_code)


def main() -> None:
    """Run the CLI; a LeadmlError is printed in one line and exits with its code (2 by default)."""
    try:
        app()
    except LeadmlError as exc:
        console.print_error(exc)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
