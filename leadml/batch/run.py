"""The scheduled batch scorer's orchestration: open leads in keyset-paged chunks ->
`predict.score_leads` -> the chunk writer, one run at a time, resumable.

Another engine (Spark, `batch/spark.py`) plugs in as a `ChunkSource`, wired by the CLI; the
screening (`batch/rejects.py`), the writer, the lock and the run bookkeeping stay the local
engine's. The next page is read by a
background thread while this one is scored (`prefetched`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from queue import Full, Queue

import pandas as pd

from leadml.batch import rejects as bad_rows
from leadml.batch.lock import scoring_lock
from leadml.batch.options import RunSummary, ScoreOptions, check_options, now, option_time
from leadml.batch.runs import FAILED, SUCCEEDED, RunState, finish_run, open_run, window
from leadml.batch.selection import ChunkSource, ScoringPlan, make_plan
from leadml.batch.writer import write_all
from leadml.config import Config
from leadml.data import leads as db_leads
from leadml.data import sql
from leadml.data.history import prune_history
from leadml.data.leads import stale_data_note
from leadml.data.scores import ensure_tables, output_tables
from leadml.ledger import ledger_inputs
from leadml.predict import resolve_model, score_leads

Progress = Callable[[int, int], None]


def run_scoring(
    config: Config,
    options: ScoreOptions,
    *,
    source: ChunkSource | None = None,
    on_progress: Progress | None = None,
) -> RunSummary:
    """Score the selected open leads and write them chunk by chunk (or nothing, on a dry run)."""
    check_options(options)
    model = resolve_model(config, options.model_ref)
    source = source or local_source
    progress = on_progress or (lambda done, total: None)
    tables = db_leads.resolve_tables(options.url, config.data)
    if options.dry_run:
        return _dry_run(config, options, model, tables, source, progress)
    if _strict(config, options):  # read and screen everything first: a reject writes nothing
        _dry_run(config, options, model, tables, source, lambda done, total: None, strict=True)
    out = output_tables(config.data.leads_table)
    with scoring_lock(options.url, out) as lock:
        id_kind = ensure_tables(options.url, config.data.leads_table, id_kind=tables.id_kind)
        state, notes = open_run(options.url, model, options, id_kind, out)
        plan = make_plan(config, options, model, state, tables, record=True)
        if not state.chunks:  # the run-level rejects commit with the run's first chunk
            plan = replace(plan, skipped=bad_rows.skipped_rejects(model, tables, state.as_of))
        notes += _stale(config, tables, state.as_of)
        started = time.perf_counter()
        before = state.rows_rejected
        grades = write_all(options.url, state, lock, source(plan), progress, plan.total)
        _check_rejects(config, options.url, state)
        finish_run(options.url, state.run_id, SUCCEEDED, out=out)
        notes += _prune(config, options.url, out)
    summary = _summary(state, grades, time.perf_counter() - started, notes)
    return replace(summary, rejected=state.rows_rejected - before)


def _strict(config: Config, options: ScoreOptions) -> bool:
    return options.strict if options.strict is not None else config.batch.on_bad_rows == "fail"


def _check_rejects(config: Config, url: str, state: RunState) -> None:
    """Too many refused leads fail the run as a whole (its scores stay, its status says failed)."""
    read = state.leads_scored + state.leads_refused
    try:
        bad_rows.check_fraction(config, state.leads_refused, read)
    except bad_rows.RejectedRowsError as exc:
        finish_run(url, state.run_id, FAILED, str(exc)[:1000], state.out)
        raise


def _prune(config: Config, url: str, out) -> list[str]:
    """Drop history beyond config history.keep_runs / keep_days (the current scores stay)."""
    keep = config.history
    deleted = prune_history(url, out, keep_runs=keep.keep_runs, keep_days=keep.keep_days, now=now())
    return [f"pruned {deleted:,} history rows (history.keep_runs / keep_days)"] if deleted else []


def local_source(plan: ScoringPlan) -> Iterator[pd.DataFrame]:
    """The single-machine engine: each page screened by the training rules (bad rows become
    rejects, `batch/rejects.py`), its good leads scored by THE inference path."""
    for leads, events, rejects, last in prefetched(bad_rows.screened_pages(plan)):
        if len(leads):
            scores = score_leads(
                plan.model,
                leads,
                events,
                plan.as_of,
                scored_at=plan.scored_at,
                chunk_size=max(len(leads), 1),
            )
            # what the change ledger re-scores this scoring from (lead_score_history only)
            scores = scores.assign(attributes=ledger_inputs(leads, plan.model), as_of=plan.as_of)
        else:
            scores = pd.DataFrame()
        scores.attrs.update(rejects=rejects, last_lead_id=last)
        yield scores


def prefetched(items: Iterator, depth: int = 1) -> Iterator:
    """`items` produced by a background thread `depth` ahead: the next page is read while this one
    is scored (LightGBM releases the GIL); errors are raised here, in order."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(items, queue, stop), daemon=True)
    thread.start()
    try:
        while True:
            kind, item = queue.get()
            if kind == "error":
                raise item
            if kind == "done":
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


def _produce(items: Iterator, queue: Queue, stop: threading.Event) -> None:
    def put(kind: str, item: object) -> bool:
        while not stop.is_set():
            try:
                queue.put((kind, item), timeout=0.1)
                return True
            except Full:
                continue
        return False

    try:
        for item in items:
            if not put("item", item):
                return
        put("done", None)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
        put("error", exc)


def _stale(config: Config, tables, as_of: pd.Timestamp) -> list[str]:
    note = stale_data_note(tables, as_of, config.snapshots.horizon_days)
    return [note] if note else []


def _dry_run(
    config: Config,
    options: ScoreOptions,
    model,
    tables,
    source: ChunkSource,
    progress: Progress,
    *,
    strict: bool = False,
) -> RunSummary:
    """Score what a run would score; write nothing, take no lock. `strict`: read and screen
    only, and fail on the first refused row (before a real run writes anything)."""
    out = output_tables(config.data.leads_table)
    as_of = option_time(options.as_of, "as_of") or now()
    with sql.connect(options.url, table=out.runs) as conn:
        mode, since, note = window(conn, out, model, options, as_of)
    state = RunState("", model.version, mode, since, as_of, out=out)
    plan = make_plan(config, options, model, state, tables, record=False)
    plan = replace(plan, skipped=bad_rows.skipped_rejects(model, tables, as_of))
    if strict:
        bad_rows.prescan(plan)  # raises when any row is refused
        return replace(_summary(state, state.grades, 0.0, []), run_id=None, dry_run=True)
    notes = ([note] if note else []) + _stale(config, tables, as_of)
    started = time.perf_counter()
    progress(0, plan.total)
    rejected = 0
    for scores in source(plan):
        rejected += len(scores.attrs.get("rejects", ()))
        if len(scores):
            state.grades.update(scores["grade"].astype(str).value_counts().to_dict())
        state.leads_scored += len(scores)
        progress(state.leads_scored, plan.total)
    summary = _summary(state, state.grades, time.perf_counter() - started, notes)
    return replace(summary, run_id=None, dry_run=True, rejected=rejected)


def _summary(state: RunState, grades: Counter, seconds: float, notes: list[str]) -> RunSummary:
    return RunSummary(
        run_id=state.run_id,
        model_version=state.model_version,
        mode=state.mode,
        since=state.since,
        as_of=state.as_of,
        scored=sum(grades.values()),
        grades=dict(sorted(grades.items())),
        seconds=seconds,
        run_total=state.leads_scored,
        resumed=state.resumed,
        notes=tuple(notes),
    )
