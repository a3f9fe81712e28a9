"""The chunk writer: a chunk's `lead_score_history` rows, its `lead_scores` upserts and the run's
progress marker (`scoring_runs.last_lead_id`) commit in ONE transaction, so a run killed at any
moment and started again resumes from its marker and scores every selected lead exactly once.

`write_chunk(url, state, lock, scores, extra=...)`: `extra(conn, state, scores)` runs inside the
same transaction (e.g. scoring_rejects rows), so whatever it writes commits with the chunk.
A chunk's rejects ride in `scores.attrs["rejects"]` (batch/rejects.py) and its page's last
lead_id in `scores.attrs["last_lead_id"]`: the marker moves past rejected rows too, so a
resumed run never writes a reject twice, and a page whose every lead was refused still commits.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator

import pandas as pd
from sqlalchemy import Connection

from leadml.batch.lock import ScoringLock
from leadml.batch.options import now
from leadml.batch.rejects import leads_refused, rejects_writer
from leadml.batch.runs import FAILED, RunState, finish_run
from leadml.data import runs as run_rows
from leadml.data import scores as score_tables
from leadml.data import sql
from leadml.errors import ScoringError

ChunkExtra = Callable[[Connection, RunState, pd.DataFrame], None]


def write_all(
    url: str,
    state: RunState,
    lock: ScoringLock,
    chunks: Iterator[pd.DataFrame],
    progress: Callable[[int, int], None],
    total: int,
) -> Counter:
    """Write every scored chunk (one transaction each); the grade counts written by this call.

    An error marks the run failed; an interrupt (Ctrl-C, SIGTERM, SIGKILL) leaves it running,
    so the next start resumes it.
    """
    grades: Counter = Counter()
    progress(0, total)
    try:
        for scores in chunks:
            rejects = scores.attrs.get("rejects")
            bad = 0 if rejects is None else len(rejects)
            if len(scores) or bad:
                extra = rejects_writer(rejects) if bad else None
                grades += write_chunk(url, state, lock, scores, extra)
                state.rows_rejected += bad
                state.leads_refused += leads_refused(rejects) if bad else 0
                progress(sum(grades.values()), total)
    except Exception as exc:
        finish_run(url, state.run_id, FAILED, f"{type(exc).__name__}: {exc}"[:1000], state.out)
        raise
    return grades


def write_chunk(
    url: str,
    state: RunState,
    lock: ScoringLock,
    scores: pd.DataFrame,
    extra: ChunkExtra | None = None,
) -> Counter:
    """History rows, current-score upserts and the run's progress marker: one transaction."""
    ids = scores["lead_id"].to_numpy() if len(scores) else None
    page_last = scores.attrs.get("last_lead_id")
    if ids is None:  # every lead of the page was refused: only its rejects and the marker
        first = last = sql.py_value(page_last) if page_last is not None else state.last_lead_id
    else:
        first, last = sql.py_value(ids[0]), sql.py_value(ids[-1])
        last = sql.py_value(page_last) if page_last is not None else last
    if (ids is not None or page_last is not None) and _not_after(first, state.last_lead_id):
        raise ScoringError(
            f"table '{state.out.history}': chunk starting at lead_id {first!r} is not past the "
            f"run's marker {state.last_lead_id!r} (chunks must come in lead_id order)"
        )
    chunk_grades = (
        Counter(scores["grade"].astype(str).value_counts().to_dict()) if len(scores) else Counter()
    )
    grades = state.grades + chunk_grades
    with sql.transaction(url, table=state.out.history) as conn:
        if len(scores):
            score_tables.insert_history(conn, state.out, state.run_id, scores)
            score_tables.upsert_current(conn, state.out, state.run_id, first, last)
        if extra is not None:
            extra(conn, state, scores)
        run_rows.update_run(
            conn,
            state.out,
            state.run_id,
            state.id_kind,
            last_lead_id=last,
            leads_scored=state.leads_scored + len(scores),
            grade_counts=json.dumps(dict(grades)),
            chunks=state.chunks + 1,
            updated_at=now(),
        )
        lock.heartbeat(conn)
    state.last_lead_id, state.grades = last, grades
    state.leads_scored += len(scores)
    state.chunks += 1
    return chunk_grades


def _not_after(first: object, marker: object) -> bool:
    """An integer chunk that does not start past the marker (text ids follow the database's
    collation, which Python cannot check)."""
    return isinstance(first, int) and isinstance(marker, int) and first <= marker
