"""Run bookkeeping: open a run (or resume the interrupted one that matches), its window, its end.

A run's row in `scoring_runs` holds its as_of and progress marker (`last_lead_id`); a start
that finds a `running` row resumes it when model, as_of and window agree, and otherwise marks
it failed ("abandoned") and records a new run. The statements are in `data/runs.py`.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Connection

from leadml.batch.options import ScoreOptions, fmt, now, option_time
from leadml.data import runs as run_rows
from leadml.data import sql
from leadml.data.scores import OutputTables

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


@dataclass
class RunState:
    """A scoring run as recorded in scoring_runs."""

    run_id: str
    model_version: str
    mode: str
    since: pd.Timestamp | None
    as_of: pd.Timestamp
    leads_selected: int = 0
    leads_scored: int = 0
    grades: Counter = field(default_factory=Counter)
    last_lead_id: object = None
    chunks: int = 0
    resumed: bool = False
    rows_rejected: int = 0  # scoring_rejects rows of this run
    leads_refused: int = 0  # lead rows among them, and leads refused for a bad event
    id_kind: str = "int"  # 'int' or 'text': the type of lead_id in the scorer's tables
    out: OutputTables = field(default_factory=OutputTables)


def open_run(
    url: str,
    model,
    options: ScoreOptions,
    id_kind: str = "int",
    out: OutputTables | None = None,
) -> tuple[RunState, list[str]]:
    """Resume the interrupted run when it matches this request, else record a new one."""
    out = out or OutputTables()
    notes: list[str] = []
    with sql.transaction(url, table=out.runs) as conn:
        running = run_rows.latest_run_row(conn, out, RUNNING)
        if running is not None:
            conflict = _resume_conflict(running, model, options)
            if conflict is None:
                notes.append(f"resuming run {running.run_id} after lead_id {running.last_lead_id}")
                return _state_from_row(running, id_kind, out), notes
            _set_status(conn, out, running.run_id, FAILED, f"abandoned: {conflict}")
            notes.append(f"run {running.run_id} was interrupted and is abandoned ({conflict})")
        as_of = option_time(options.as_of, "as_of") or now()
        mode, since, note = window(conn, out, model, options, as_of)
        notes += [note] if note else []
        state = RunState(
            new_run_id(as_of), model.version, mode, since, as_of, id_kind=id_kind, out=out
        )
        run_rows.insert_run(conn, out, _new_row(state, options))
    return state, notes


def _new_row(state: RunState, options: ScoreOptions) -> dict:
    return {
        "run_id": state.run_id,
        "model_version": state.model_version,
        "model_ref": options.model_ref,
        "mode": state.mode,
        "since": state.since,
        "as_of": state.as_of,
        "started_at": now(),
        "updated_at": now(),
        "status": RUNNING,
        "leads_scored": 0,
        "chunks": 0,
        "grade_counts": "{}",
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def _resume_conflict(row, model, options: ScoreOptions) -> str | None:
    """Why an interrupted run cannot be resumed by this request (None: it can)."""
    if row.model_version != model.version:
        return f"model changed from {row.model_version} to {model.version}"
    as_of = option_time(options.as_of, "as_of")
    if as_of is not None and as_of != pd.Timestamp(row.as_of):
        return f"--as-of {fmt(as_of)} differs from the run's {fmt(row.as_of)}"
    if options.all_leads and row.mode != "all":
        return "--all asked, the run was incremental"
    since = option_time(options.since, "since")
    if since is not None and (row.since is None or since != pd.Timestamp(row.since)):
        return f"--since {fmt(since)} differs from the run's window"
    return None


def _state_from_row(row, id_kind: str, out: OutputTables) -> RunState:
    return RunState(
        run_id=row.run_id,
        model_version=row.model_version,
        mode=row.mode,
        since=None if row.since is None else pd.Timestamp(row.since),
        as_of=pd.Timestamp(row.as_of),
        leads_selected=int(row.leads_selected or 0),
        leads_scored=int(row.leads_scored or 0),
        grades=Counter(json.loads(row.grade_counts or "{}")),
        last_lead_id=row.last_lead_id,
        chunks=int(row.chunks or 0),
        resumed=True,
        rows_rejected=int(getattr(row, "rows_rejected", None) or 0),
        id_kind=id_kind,
        out=out,
    )


def window(
    conn: Connection, out: OutputTables, model, options: ScoreOptions, as_of: pd.Timestamp
) -> tuple[str, pd.Timestamp | None, str]:
    """(mode, since, note): --all, --since, or changes since the last successful run's as_of
    (every open lead when there is none, the model changed, or `as_of` is not after it)."""
    if options.all_leads:
        return "all", None, ""
    since = option_time(options.since, "since")
    if since is not None:
        return "since", since, ""
    last = run_rows.latest_run_row(conn, out, SUCCEEDED, by="as_of")
    if last is None:
        return "incremental", None, "no earlier successful run: scoring every open lead"
    if last.model_version != model.version:
        return (
            "incremental",
            None,
            (
                f"model changed since the last run ({last.model_version} -> {model.version}): "
                "scoring every open lead"
            ),
        )
    last_as_of = pd.Timestamp(last.as_of)
    if as_of <= last_as_of:
        return (
            "incremental",
            None,
            (
                f"as_of {as_of:%Y-%m-%d %H:%M} is not after the last run's "
                f"({last_as_of:%Y-%m-%d %H:%M}), so no lead changed in between: "
                "scoring every open lead as of then"
            ),
        )
    return "incremental", last_as_of, ""


def record_selected(url: str, state: RunState, total: int) -> None:
    """Store how many leads the run selected (once, at its start)."""
    state.leads_selected = int(total) + state.leads_scored
    with sql.transaction(url, table=state.out.runs) as conn:
        run_rows.update_run(conn, state.out, state.run_id, leads_selected=state.leads_selected)


def finish_run(
    url: str, run_id: str, status: str, error: str | None = None, out: OutputTables | None = None
) -> None:
    """Mark a run succeeded or failed."""
    out = out or OutputTables()
    with sql.transaction(url, table=out.runs) as conn:
        _set_status(conn, out, run_id, status, error)


def _set_status(
    conn: Connection, out: OutputTables, run_id: str, status: str, error: str | None
) -> None:
    stamp = now()
    run_rows.update_run(
        conn, out, run_id, status=status, finished_at=stamp, updated_at=stamp, error=error
    )


def new_run_id(as_of: pd.Timestamp) -> str:
    """A sortable, unique run id: the as_of and 8 random hex digits."""
    return f"{as_of:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
