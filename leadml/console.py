"""Terminal output for the CLI: progress while training, summary tables, the explain view."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

console = Console(stderr=False, highlight=False)


@contextmanager
def progress_log() -> Iterator:
    """A log function that shows elapsed time; a spinner when attached to a terminal."""
    start = time.perf_counter()
    status = console.status("training...") if sys.stdout.isatty() else None
    if status:
        status.start()

    def log(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - start:6.1f}s[/dim] {message}")

    try:
        yield log
    finally:
        if status:
            status.stop()


def print_training_summary(result) -> None:
    ev = result.evaluation
    table = Table(title=f"leadml {ev['model_version']} ({ev['model_kind']}) on the test slice")
    table.add_column("model")
    for col in ("ROC AUC", "PR AUC", "Brier", "ECE", "top-decile lift"):
        table.add_column(col, justify="right")
    rows = [("leadml", ev["test"])] + [(k.replace("_", " "), v) for k, v in ev["baselines"].items()]
    for name, m in rows:
        table.add_row(
            name,
            *(f"{m[k]:.4f}" for k in ("roc_auc", "pr_auc", "brier", "ece")),
            f"{m['lift_top_decile']:.2f}",
        )
    console.print(table)
    br = ev["base_rate"]
    console.print(
        f"conversion rate train {br['train']:.3f}, test {br['test']:.3f}"
        + (
            "  [bold yellow]base rate shifted between training and test[/]"
            if br["shift_warning"]
            else ""
        )
    )
    console.print(f"bundle: {result.bundle_dir}  (report.html, model_card.md, metrics.json)")
    if result.mlflow:
        m = result.mlflow
        console.print(
            f"mlflow: run {m['run_id']}, registered {m['registered_model']} v{m['registered_version']} @{m['alias']}"
        )
    console.print(f"trained in {ev['train_seconds']:.1f}s")


def explain_lead(
    config, lead_id: str, *, db: str | None, model_ref: str, as_of: str | None, as_json: bool
) -> None:
    from leadml.data.io import read_lead
    from leadml.errors import DataSourceError
    from leadml.predict import load_model, score_one

    model = load_model(model_ref)
    lead, events = read_lead(config.data, lead_id, url=db)
    if lead is None:
        raise DataSourceError(f"lead {lead_id!r} not found in table '{config.data.leads_table}'")
    result = score_one(model, lead, events, as_of)
    if as_json:
        print(json.dumps(result, default=str, indent=2))
        return
    render_explanation(result, model.metadata.get("base_score"))


def render_explanation(result: dict, base_score: int | None = None) -> None:
    console.print(
        f"[bold]Lead {result['lead_id']}[/]  score [bold]{result['score']}[/]/100  "
        f"grade [bold]{result['grade']}[/]  ({result['probability']:.1%} chance to convert)"
    )
    reasons = result["reasons"]
    if not reasons:
        console.print("no reasons: the lead scores at the baseline")
        return
    width = max(abs(r["points"]) for r in reasons) or 1
    for r in reasons:
        bar = "█" * max(1, round(20 * abs(r["points"]) / width))
        colour = "green" if r["points"] > 0 else "red"
        console.print(f"  [{colour}]{r['points']:+4d} {bar:<20}[/] {r['text']}")
