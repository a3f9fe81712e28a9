"""The one command-line entry point. Each command parses options and calls one function.

Heavy libraries (lightgbm, shap, mlflow, pyspark) are imported inside commands only, so
`leadml --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from leadml.errors import LeadmlError

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


def _config(path: Path):
    from leadml.config import Config, load_config

    if path == DEFAULT_CONFIG and not path.exists():
        return Config()
    return load_config(path)


@app.command("config")
def config_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema.")] = False,
) -> None:
    """Validate a config file and print it (or the JSON Schema with --schema)."""
    from leadml.config import config_schema

    if schema:
        typer.echo(config_schema())
        return
    typer.echo(_config(config).model_dump_json(indent=2))


DbOpt = Annotated[
    str | None, typer.Option("--db", help="SQLAlchemy URL of the lead database (default: config data.source).")
]


@app.command("train")
def train_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write the bundle under this folder.")] = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Skip MLflow logging and registration.")] = False,
) -> None:
    """Train, calibrate and evaluate a model; write models/<version>/ and models/latest."""
    from leadml.console import print_training_summary, progress_log
    from leadml.workflow import run_training

    cfg = _config(config)
    with progress_log() as log:
        result = run_training(cfg, url=db, output=output, log=log, track=not no_mlflow, config_path=str(config))
    print_training_summary(result)


@app.command("explain")
def explain_cmd(
    lead_id: Annotated[str, typer.Argument(help="The lead to explain.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    db: DbOpt = None,
    model: Annotated[str, typer.Option("--model", help="Bundle folder or models:/name@alias.")] = "models/latest",
    as_of: Annotated[str | None, typer.Option("--as-of", help="Score as of this time (default now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the terminal view.")] = False,
) -> None:
    """Score one lead from the database and show why: score, grade and reasons in points."""
    from leadml.console import explain_lead

    explain_lead(_config(config), lead_id, db=db, model_ref=model, as_of=as_of, as_json=as_json)


def main() -> None:
    """Run the CLI; a LeadmlError is printed in one line and exits with its code (2 by default)."""
    try:
        app()
    except LeadmlError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
