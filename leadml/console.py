"""ALL terminal output of leadml: the CLI asks this module to print; every other module returns
data (results, summaries, notes) and prints nothing.

Only rich and the standard library are imported at the top, so `leadml --help` stays fast; the
results printed here are duck-typed (their classes live in heavier modules).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=False, highlight=False)
errors = Console(stderr=True, highlight=False)


# ---------------------------------------------------------------- plain lines


def echo(text: str = "", *, err: bool = False) -> None:
    """One plain line (no markup) on stdout, or stderr with err=True."""
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def print_error(exc: BaseException) -> None:
    """A LeadmlError in one line on stderr: `error: <message>`."""
    echo(f"error: {exc}", err=True)


def print_version(version: str) -> None:
    echo(f"leadml {version}")


def print_notes(notes: Any) -> None:
    """Warnings a run returned (e.g. stale data), one `note:` line each on stderr."""
    for note in notes:
        echo(f"note: {note}", err=True)


def print_json(value: object) -> None:
    """Machine-readable output: indented JSON on stdout."""
    echo(json.dumps(value, default=str, indent=2))


# ---------------------------------------------------------------- progress


@contextmanager
def progress_log(label: str = "training...") -> Iterator[Callable[[str], None]]:
    """A log function that shows elapsed time; a spinner when attached to a terminal."""
    start = time.perf_counter()
    status = console.status(label) if sys.stdout.isatty() else None
    if status:
        status.start()

    def log(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - start:6.1f}s[/dim] {message}")

    try:
        yield log
    finally:
        if status:
            status.stop()


@contextmanager
def score_progress(enabled: bool | None = None) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal; a no-op callback otherwise (cron, systemd logs)."""
    if not (sys.stdout.isatty() if enabled is None else enabled):
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"))
    with Progress(TextColumn("scoring"), *columns, TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("scoring", total=None, rate="")
        started = time.perf_counter()

        def update_bar(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} leads/s")

        yield update_bar


# ---------------------------------------------------------------- train, evaluate


def print_training_summary(result: Any) -> None:
    """The test-slice metrics of leadml and the baselines, the bundle and the MLflow run."""
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
    shifted = "  [bold yellow]base rate shifted between training and test[/]"
    console.print(
        f"conversion rate train {br['train']:.3f}, test {br['test']:.3f}"
        + (shifted if br["shift_warning"] else "")
    )
    check = ev.get("peer_check") or {}
    if check.get("message"):
        console.print(f"[bold red]{check['message']}[/]" if check["lost_to"] else check["message"])
    console.print(f"bundle: {result.bundle_dir}  (report.html, model_card.md, metrics.json)")
    if result.mlflow:
        m = result.mlflow
        console.print(
            f"mlflow: run {m['run_id']}, registered {m['registered_model']} "
            f"v{m['registered_version']} @{m['alias']}"
        )
    console.print(f"trained in {ev['train_seconds']:.1f}s")


def print_backtest(result: Any) -> None:
    """Side-by-side mean +- sd of every metric, then each fold's ROC AUC (rich tables)."""
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 100)
    models = [k for k in result.summary if k != "leadml_wins"]
    title = "rolling-origin (forward in time)"
    if result.method != "rolling_origin":
        title = "stratified K-fold"
    table = Table(
        title=f"leadml evaluate: {len(result.folds)} folds, {title}; test-slice mean ± sd"
    )
    table.add_column("metric")
    for model in models:
        table.add_column(model.replace("_", " "), justify="right")
    for metric in result.summary[models[0]]:
        table.add_row(metric, *(_spread_cell(result.summary[m][metric]) for m in models))
    out.print(table)
    out.print(_folds_table(result.folds, models))
    wins = result.summary["leadml_wins"]
    peers = ", ".join(
        f">= {k[3:].replace('_', ' ')} in {v}" for k, v in wins.items() if k.startswith("vs_")
    )
    out.print(
        f"leadml ROC AUC {peers} of {wins['folds']} folds; "
        f"* test conversion rate outside training's 95% interval. {result.seconds:.0f}s"
    )


def _folds_table(folds: list[dict], models: list[str]) -> Table:
    table = Table(title="ROC AUC per fold (fit rows: training + validation)")
    for col in ("fold", "fit rows", "test rows", "test rate", "leadml model"):
        table.add_column(col, justify="right", no_wrap=True)
    for model in models:
        table.add_column(model.replace("_", " "), justify="right", no_wrap=True)
    for f in folds:
        m, rate = f["models"], f["base_rate"]
        table.add_row(
            str(f["fold"]),
            f"{f['rows']['train'] + f['rows']['valid']:,}",
            f"{f['rows']['test']:,}",
            f"{rate['test']:.1%}" + (" *" if rate["shift_warning"] else ""),
            f["chosen"] + ("+refit" if f["refit"] else ""),
            *(f"{m[k]['roc_auc']:.4f}" for k in models),
        )
    return table


def _spread_cell(stats: dict) -> str:
    if stats["mean"] is None:
        return "-"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


# ---------------------------------------------------------------- score, explain


def print_score_summary(summary: Any) -> None:
    """A scoring run's notes on stderr, then its one-line summary on stdout (for logs)."""
    print_notes(getattr(summary, "notes", ()))
    echo(summary.line())


def print_explanation(result: dict, base_score: int | None = None) -> None:
    """One lead's score, grade and reasons in points as bars (green up, red down)."""
    console.print(
        f"[bold]Lead {result['lead_id']}[/]  score [bold]{result['score']}[/]/100  "
        f"grade [bold]{result['grade']}[/]  ({result['probability']:.1%} chance to convert)"
    )
    fit, engagement = result.get("fit_points"), result.get("engagement_points")
    if fit is not None and engagement is not None:
        baseline = result["score"] - fit - engagement
        console.print(
            f"  baseline {baseline} + fit {fit:+d} + engagement {engagement:+d} = {result['score']}"
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


def print_ledger(history: dict | None) -> None:
    """The score history's trend and the change ledger: causes and their signals, in points."""
    if history is None:
        console.print("no score history for this lead yet (run `leadml score`)")
        return
    scores = " -> ".join(str(s["score"]) for s in history["scorings"][-8:])
    console.print(f"history: {scores}  ({history['trend']})")
    ledger = history.get("ledger")
    if ledger is None:
        console.print(history.get("ledger_note") or "one scoring only: nothing to compare")
        return
    console.print(
        f"[bold]{ledger['change']:+d}[/] points from {ledger['from']['score']} "
        f"(as of {ledger['from']['as_of'][:10]}) to {ledger['to']['score']} "
        f"(as of {ledger['to']['as_of'][:10]}):"
    )
    for step in ledger["steps"]:
        colour = "green" if step["points"] > 0 else ("red" if step["points"] < 0 else "dim")
        console.print(f"  [{colour}]{step['points']:+4d}[/] {step['label']}")
        for part in step["parts"][:8]:
            console.print(f"        {part['points']:+4d} {part['text']}")
        if len(step["parts"]) > 8:
            rest = sum(p["points"] for p in step["parts"][8:])
            console.print(f"        {rest:+4d} {len(step['parts']) - 8} smaller signals")


def print_call_list(result: Any, csv_path: Any = None, rows: int = 20) -> None:
    """The call list's outlook (expected conversions, interval) and its first rows."""
    from leadml.calllist import summary_line  # lazy: pandas, keeps leadml --help fast

    if not len(result.leads):
        console.print("no open scored leads match (run `leadml score`, or widen the filters)")
        return
    console.print(summary_line(result))
    table = Table("#", "lead", "score", "grade", "chance", "expected so far")
    for r in result.leads.head(rows).to_dict("records"):
        who = r.get("name") or r.get("company") or r["lead_id"]
        table.add_row(
            str(r["rank"]),
            f"{who} ({r['lead_id']})",
            str(r["score"]),
            str(r["grade"]),
            f"{r['probability']:.0%}",
            f"{r['expected_so_far']:.1f}",
        )
    console.print(table)
    curve = result.curve
    marks = curve[curve["called"].isin(curve["called"].iloc[:: max(1, len(curve) // 6)])]
    pairs = zip(marks["called"], marks["expected"], strict=True)
    console.print("expected after N calls: " + ", ".join(f"{int(c)}: {e:.1f}" for c, e in pairs))
    if csv_path is not None:
        console.print(f"wrote {len(result.leads):,} rows to {csv_path}")


# ---------------------------------------------------------------- promote, monitor


def comparison_table(result: Any) -> Table:
    """A rich Table of a promotion's comparison (challenger, champion, difference)."""
    c = result.comparison
    table = Table(
        title=f"challenger v{result.challenger_version} vs champion v{result.champion_version} "
        f"on the latest holdout ({c.n:,} snapshots, {c.positives:,} conversions)"
    )
    for col in ("metric", "challenger", "champion", "difference"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    new, old = c.challenger, c.champion
    table.add_row(
        "model version", str(new.get("model_version", "")), str(old.get("model_version", "")), ""
    )
    table.add_row(
        f"ROC AUC ({c.confidence:.0%} CI)",
        f"{new['roc_auc']:.4f} [{new['roc_auc_low']:.4f}, {new['roc_auc_high']:.4f}]",
        f"{old['roc_auc']:.4f} [{old['roc_auc_low']:.4f}, {old['roc_auc_high']:.4f}]",
        f"{c.auc_diff:+.4f} [{c.diff_low:+.4f}, {c.diff_high:+.4f}]",
    )
    for key, label, fmt in (
        ("pr_auc", "PR AUC", "{:.4f}"),
        ("ece", "ECE (lower is better)", "{:.4f}"),
        ("brier", "Brier (lower is better)", "{:.4f}"),
        ("lift_top_decile", "top-decile lift", "{:.2f}"),
    ):
        diff = ("{:+" + fmt[2:]).format(new[key] - old[key])
        table.add_row(label, fmt.format(new[key]), fmt.format(old[key]), diff)
    return table


def print_promotion(result: Any) -> None:
    """The comparison table (when there was one) and the decision."""
    if result.comparison is not None:
        console.print(comparison_table(result))
    if result.promoted:
        colour, verb = ("yellow", "FORCED") if result.forced else ("green", "promoted")
        console.print(
            f"[bold {colour}]{verb}[/]: version {result.challenger_version} is now the champion "
            f"({result.reason})"
        )
        if result.champion_version:
            console.print(
                f"roll back with: leadml promote --version {result.champion_version} --force"
            )
    else:
        console.print(
            f"[bold red]not promoted[/]: version {result.challenger_version} ({result.reason}); "
            f"the champion stays version {result.champion_version}"
        )
    if result.run_id:
        console.print(f"recorded in MLflow run {result.run_id}")


def print_monitor(result: Any, limit: int = 12) -> None:
    """The drift status, the notes, the largest PSIs and realized conversion by grade."""
    colour = {"stable": "green", "watch": "yellow", "alert": "bold red"}.get(result.status, "dim")
    console.print(
        f"model {result.model_version}: [{colour}]{result.status}[/] "
        f"({result.recent_rows:,} snapshots in the {result.window_days:g} days "
        f"before {result.as_of:%Y-%m-%d})"
    )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    table = Table(title="population stability index against training")
    for col in ("distribution", "PSI", "band"):
        table.add_column(col, justify="left" if col != "PSI" else "right")
    for d in result.drift[:limit]:
        psi = f"{d.psi:.3f}" if d.psi is not None and math.isfinite(d.psi) else ""
        table.add_row(d.name, psi, d.band)
    console.print(table)
    runs = getattr(result, "rejects", None) or []
    if runs:
        shown = ", ".join(f"{r['run_id']} {r['rows_rejected']:,}" for r in runs[:5])
        console.print(f"rejected rows per run (scoring_rejects), newest first: {shown}")
    realized = result.realized
    if realized.get("n"):
        grades = ", ".join(
            f"{r['group']} {r['predicted']:.1%} predicted / {r['realized']:.1%} realized"
            for r in realized["by_grade"]
            if r["n"]
        )
        console.print(f"realized conversion ({realized['n']:,} matured leads): {grades}")
