"""The scheduled batch scorer: open leads in keyset-paged chunks -> `predict.score_leads` -> the database.

Each chunk's `lead_score_history` rows, its `lead_scores` upserts and the run's progress marker
(`scoring_runs.last_lead_id`) commit in ONE transaction, so a run killed at any moment and
started again resumes the same run (same run_id, same as_of) from its marker and scores every
selected lead exactly once. One run at a time: a PostgreSQL advisory lock, or on SQLite a lock
row that goes stale when its process is gone. Another engine (Spark) plugs in as a
`ChunkSource`, wired by the CLI; the writer, the lock and the run bookkeeping stay here.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from queue import Full, Queue

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from leadml.config import Config
from leadml.data.io import engine_for, iter_leads_keyset, safe_url
from leadml.errors import DataSourceError, ScoringError, ScoringLockedError
from leadml.schema import utc_now

SCORES, HISTORY, RUNS, LOCKS = "lead_scores", "lead_score_history", "scoring_runs", "scoring_lock"
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
LOCK_NAME = "leadml-score"
LOCK_STALE_AFTER = pd.Timedelta(minutes=30)  # a lock row from another host without heartbeat
IN_LIST_BATCH = 900  # ids per IN (...) list, under SQLite's variable limit everywhere


# ---------------------------------------------------------------- options, plan, summary


@dataclass(frozen=True)
class ScoreOptions:
    """What `leadml score` was asked to do."""

    url: str
    model_ref: str | None = None  # None: the registry's @champion if set, else models/latest
    as_of: object = None  # None: now (a resumed run keeps its own as_of)
    since: object = None
    all_leads: bool = False
    dry_run: bool = False
    chunk_size: int | None = None  # None: config batch.chunk_size


@dataclass(frozen=True)
class ScoringPlan:
    """What one run scores; a ChunkSource reads these attributes (the Spark engine does)."""

    url: str
    leads_table: str
    events_table: str | None
    where_sql: str  # trusted SQL condition on the leads table
    leads_sql: str  # SELECT of the leads still to score (past `after`), for JDBC readers
    events_sql: str | None  # SELECT of their events visible at as_of
    after: object  # resume past this lead_id (None: from the start)
    as_of: pd.Timestamp
    chunk_size: int
    model: object  # bundle.LeadModel
    total: int  # leads still to score
    scored_at: pd.Timestamp

    def pages(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None]]:
        """Validated lead pages (keyset order) with their events, read one page at a time."""
        for leads in iter_leads_keyset(
            self.url, self.leads_table, self.chunk_size, self.after, self.where_sql
        ):
            yield leads, read_events_for(self.url, self.events_table, leads["lead_id"], self.as_of)


ChunkSource = Callable[[ScoringPlan], Iterator[pd.DataFrame]]


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
    id_kind: str = "int"  # 'int' or 'text': the type of lead_id in the scorer's tables


@dataclass(frozen=True)
class RunSummary:
    """What a run did, for the one-line summary and for callers."""

    run_id: str | None
    model_version: str
    mode: str
    since: pd.Timestamp | None
    as_of: pd.Timestamp
    scored: int  # by this invocation
    grades: dict[str, int]  # of this invocation
    seconds: float
    run_total: int  # the whole run, across resumes
    resumed: bool = False
    dry_run: bool = False
    notes: tuple[str, ...] = ()

    @property
    def rows_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One line for logs: leads scored, grade counts, time, rows/s, run and model."""
        grades = ", ".join(f"{k} {v:,}" for k, v in self.grades.items()) or "none"
        verb = "dry run: would write" if self.dry_run else "scored"
        run = f"run {self.run_id}" + (
            f" (resumed, {self.run_total:,} in total)" if self.resumed else ""
        )
        window = f"since {_fmt(self.since)}" if self.since is not None else "all open leads"
        return (
            f"{verb} {self.scored:,} leads ({grades}) in {self.seconds:.1f}s, "
            f"{self.rows_per_second:,.0f} leads/s; {run if self.run_id else 'nothing written'}, "
            f"model {self.model_version}, {self.mode} ({window}), as of {_fmt(self.as_of)}"
        )


# ---------------------------------------------------------------- entry points


def score_and_report(
    config: Config, options: ScoreOptions, source: ChunkSource | None = None
) -> RunSummary:
    """Run the scorer with a progress bar on a terminal, then print the one-line summary."""
    with _progress_bar(sys.stdout.isatty()) as progress:
        summary = run_scoring(config, options, source=source, on_progress=progress)
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    print(summary.line(), flush=True)
    return summary


def run_scoring(
    config: Config,
    options: ScoreOptions,
    *,
    source: ChunkSource | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Score the selected open leads and write them chunk by chunk (or nothing, on a dry run)."""
    _check_options(options)
    from leadml.predict import load_model

    model = load_model(options.model_ref or default_model_ref(config))
    source = source or local_source
    progress = on_progress or (lambda done, total: None)
    if options.dry_run:
        return _dry_run(config, options, model, source, progress)
    with scoring_lock(options.url) as lock:
        id_kind = ensure_tables(options.url, config.data.leads_table)
        state, notes = open_run(options.url, model, options, id_kind)
        plan = _plan(config, options, model, state, record=True)
        started = time.perf_counter()
        grades = _write_all(options.url, state, lock, source(plan), progress, plan.total)
        finish_run(options.url, state.run_id, SUCCEEDED)
    return _summary(state, grades, time.perf_counter() - started, notes)


def local_source(plan: ScoringPlan) -> Iterator[pd.DataFrame]:
    """The single-machine engine: each page of leads scored by THE inference path."""
    from leadml.predict import score_leads

    for leads, events in prefetched(plan.pages()):
        yield score_leads(
            plan.model,
            leads,
            events,
            plan.as_of,
            scored_at=plan.scored_at,
            chunk_size=max(len(leads), 1),
        )


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


def default_model_ref(config: Config) -> str:
    """models:/<registered_model>@champion when that alias exists, else <models_dir>/latest."""
    if _registry_configured(config):
        from leadml.tracking import CHAMPION, alias_version

        if alias_version(config, CHAMPION) is not None:
            return f"models:/{config.mlflow.registered_model}@{CHAMPION}"
    return str(Path(config.models_dir) / "latest")


def _registry_configured(config: Config) -> bool:
    """Only ask MLflow when a tracking store exists: asking would create ./mlruns otherwise."""
    return bool(
        os.environ.get("MLFLOW_TRACKING_URI")
        or config.mlflow.tracking_uri
        or Path("mlruns/mlflow.db").is_file()
    )


def _check_options(options: ScoreOptions) -> None:
    if options.since is not None and options.all_leads:
        raise ScoringError("--since and --all exclude each other: pick one")
    if options.chunk_size is not None and options.chunk_size < 1:
        raise ScoringError(f"--chunk-size must be at least 1, got {options.chunk_size}")
    if "://" not in options.url:
        raise ScoringError(
            f"leadml score needs a database URL (sqlite:///... or postgresql+psycopg://...), got {options.url!r}"
        )
    for name in ("as_of", "since"):
        _timestamp(getattr(options, name), name)


# ---------------------------------------------------------------- tables


@lru_cache(maxsize=2)
def score_tables(id_kind: str = "int") -> MetaData:
    """The scorer's tables; `id_kind` ('int' or 'text') follows the leads table's lead_id."""
    lead_id = BigInteger if id_kind == "int" else Text
    md = MetaData()
    Table(
        SCORES,
        md,
        Column("lead_id", lead_id, primary_key=True, autoincrement=False),
        *_score_columns(),
        Column("run_id", Text, nullable=False),
        Index("ix_lead_scores_grade_score", "grade", "score"),
    )
    Table(
        HISTORY,
        md,
        Column("run_id", Text, primary_key=True),
        Column("lead_id", lead_id, primary_key=True, autoincrement=False),
        *_score_columns(),
        Index("ix_lead_score_history_lead_id", "lead_id", "scored_at"),
    )
    _runs_table(md, lead_id)
    Table(
        LOCKS,
        md,
        Column("name", Text, primary_key=True),
        Column("token", Text, nullable=False),
        Column("host", Text),
        Column("pid", Integer),
        Column("process_start", Text),
        Column("acquired_at", DateTime),
        Column("heartbeat_at", DateTime),
    )
    return md


def _runs_table(md: MetaData, lead_id) -> Table:
    """scoring_runs: one row per run, with its progress marker (last_lead_id) and counts."""
    return Table(
        RUNS,
        md,
        Column("run_id", Text, primary_key=True),
        Column("model_version", Text, nullable=False),
        Column("model_ref", Text),
        Column("mode", Text, nullable=False),
        Column("since", DateTime),
        Column("as_of", DateTime, nullable=False),
        Column("started_at", DateTime, nullable=False),
        Column("updated_at", DateTime),
        Column("finished_at", DateTime),
        Column("status", Text, nullable=False),
        Column("leads_selected", BigInteger),
        Column("leads_scored", BigInteger, nullable=False),
        Column("grade_counts", Text),
        Column("last_lead_id", lead_id),
        Column("chunks", Integer),
        Column("host", Text),
        Column("pid", Integer),
        Column("error", Text),
        Index("ix_scoring_runs_status_as_of", "status", "as_of"),
    )


def _score_columns() -> list[Column]:
    return [
        Column("probability", Float(53), nullable=False),
        Column("score", Integer, nullable=False),
        Column("grade", Text, nullable=False),
        Column("reasons", Text),
        Column("model_version", Text, nullable=False),
        Column("scored_at", DateTime, nullable=False),
    ]


def ensure_tables(url: str, leads_table: str = "leads") -> str:
    """Create lead_scores, lead_score_history, scoring_runs (keys, indexes) if absent; the id kind."""
    with _transaction(url) as conn:
        id_kind = _id_kind(conn, leads_table)
        for table in score_tables(id_kind).sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))
            for index in sorted(table.indexes, key=lambda i: i.name):
                conn.execute(CreateIndex(index, if_not_exists=True))
    return id_kind


def _id_kind(conn: Connection, leads_table: str) -> str:
    """'int' when leads.lead_id is an integer column (or the scores table already says so)."""
    schema, name = _split(leads_table)
    inspector = inspect(conn)
    for table, table_schema in ((SCORES, None), (name, schema)):
        if inspector.has_table(table, schema=table_schema):
            columns = {
                c["name"]: c["type"] for c in inspector.get_columns(table, schema=table_schema)
            }
            if "lead_id" in columns:
                return "int" if isinstance(columns["lead_id"], Integer) else "text"
    raise DataSourceError(f"table '{leads_table}' with a lead_id column not found")


def _table(name: str, id_kind: str = "int") -> Table:
    return score_tables(id_kind).tables[name]


# ---------------------------------------------------------------- runs


def open_run(
    url: str, model, options: ScoreOptions, id_kind: str = "int"
) -> tuple[RunState, list[str]]:
    """Resume the interrupted run when it matches this request, else record a new one."""
    notes: list[str] = []
    with _transaction(url) as conn:
        running = _latest_run(conn, RUNNING)
        if running is not None:
            conflict = _resume_conflict(running, model, options)
            if conflict is None:
                notes.append(f"resuming run {running.run_id} after lead_id {running.last_lead_id}")
                return _state_from_row(running, id_kind), notes
            _set_status(conn, running.run_id, FAILED, f"abandoned: {conflict}")
            notes.append(f"run {running.run_id} was interrupted and is abandoned ({conflict})")
        mode, since, note = _window(conn, model, options)
        notes += [note] if note else []
        as_of = _timestamp(options.as_of, "as_of") or _now()
        state = RunState(_new_run_id(as_of), model.version, mode, since, as_of, id_kind=id_kind)
        conn.execute(
            _table(RUNS)
            .insert()
            .values(
                run_id=state.run_id,
                model_version=state.model_version,
                model_ref=options.model_ref,
                mode=mode,
                since=_py(since),
                as_of=_py(as_of),
                started_at=_py(_now()),
                updated_at=_py(_now()),
                status=RUNNING,
                leads_scored=0,
                chunks=0,
                grade_counts="{}",
                host=socket.gethostname(),
                pid=os.getpid(),
            )
        )
    return state, notes


def _latest_run(conn: Connection, status: str):
    runs = _table(RUNS)
    query = select(runs).where(runs.c.status == status).order_by(runs.c.started_at.desc()).limit(1)
    return conn.execute(query).first()


def _resume_conflict(row, model, options: ScoreOptions) -> str | None:
    """Why an interrupted run cannot be resumed by this request (None: it can)."""
    if row.model_version != model.version:
        return f"model changed from {row.model_version} to {model.version}"
    as_of = _timestamp(options.as_of, "as_of")
    if as_of is not None and as_of != pd.Timestamp(row.as_of):
        return f"--as-of {_fmt(as_of)} differs from the run's {_fmt(row.as_of)}"
    if options.all_leads and row.mode != "all":
        return "--all asked, the run was incremental"
    since = _timestamp(options.since, "since")
    if since is not None and (row.since is None or since != pd.Timestamp(row.since)):
        return f"--since {_fmt(since)} differs from the run's window"
    return None


def _state_from_row(row, id_kind: str) -> RunState:
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
        id_kind=id_kind,
    )


def _window(conn: Connection, model, options: ScoreOptions) -> tuple[str, pd.Timestamp | None, str]:
    """(mode, since, note): --all, --since, or changes since the last successful run's as_of."""
    if options.all_leads:
        return "all", None, ""
    since = _timestamp(options.since, "since")
    if since is not None:
        return "since", since, ""
    last = _latest_succeeded(conn)
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
    return "incremental", pd.Timestamp(last.as_of), ""


def _latest_succeeded(conn: Connection):
    if not inspect(conn).has_table(RUNS):
        return None
    runs = _table(RUNS)
    query = select(runs).where(runs.c.status == SUCCEEDED).order_by(runs.c.as_of.desc()).limit(1)
    return conn.execute(query).first()


def finish_run(url: str, run_id: str, status: str, error: str | None = None) -> None:
    """Mark a run succeeded or failed."""
    with _transaction(url) as conn:
        _set_status(conn, run_id, status, error)


def _set_status(conn: Connection, run_id: str, status: str, error: str | None) -> None:
    runs = _table(RUNS)
    now = _py(_now())
    conn.execute(
        update(runs)
        .where(runs.c.run_id == run_id)
        .values(status=status, finished_at=now, updated_at=now, error=error)
    )


def _new_run_id(as_of: pd.Timestamp) -> str:
    return f"{as_of:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- selection and plan


def _plan(
    config: Config, options: ScoreOptions, model, state: RunState, *, record: bool
) -> ScoringPlan:
    """The selection of this run (past its progress marker) as SQL, with the count to go."""
    url, data = options.url, config.data
    with _transaction(url, write=False) as conn:
        events = _events_table(conn, data.events_table)
        scores = SCORES if inspect(conn).has_table(SCORES) else None
        where = selection_sql(conn, data.leads_table, events, scores, state.as_of, state.since)
        leads_sql, events_sql = _page_sql(conn, data.leads_table, events, where, state)
        total = int(conn.execute(text(f"SELECT COUNT(*) FROM ({leads_sql}) q")).scalar_one())
    if record and not state.leads_selected:
        _record_selected(url, state, total)
    return ScoringPlan(
        url=url,
        leads_table=data.leads_table,
        events_table=events,
        where_sql=where,
        leads_sql=leads_sql,
        events_sql=events_sql,
        after=state.last_lead_id,
        as_of=state.as_of,
        chunk_size=options.chunk_size or config.batch.chunk_size,
        model=model,
        total=total,
        scored_at=_now(),
    )


def selection_sql(
    conn: Connection,
    leads_table: str,
    events_table: str | None,
    scores_table: str | None,
    as_of: pd.Timestamp,
    since: pd.Timestamp | None,
) -> str:
    """Open leads (created by as_of); with `since`, only those new, with new events, or never scored."""
    leads = _quoted(conn, leads_table)
    has_time = "created_at" in _columns(conn, leads_table)
    parts = ["status = 'open'"] + ([f"created_at <= {_literal(as_of)}"] if has_time else [])
    if since is None:
        return " AND ".join(parts)
    changed = [f"created_at > {_literal(since)}"] if has_time else []
    if events_table:
        changed.append(
            f"EXISTS (SELECT 1 FROM {_quoted(conn, events_table)} _ev WHERE _ev.lead_id = "
            f"{leads}.lead_id AND _ev.occurred_at > {_literal(since)} "
            f"AND _ev.occurred_at <= {_literal(as_of)})"
        )
    if scores_table:
        changed.append(
            f"NOT EXISTS (SELECT 1 FROM {_quoted(conn, scores_table)} _sc "
            f"WHERE _sc.lead_id = {leads}.lead_id)"
        )
    parts.append(f"({' OR '.join(changed)})" if changed else "1 = 0")
    return " AND ".join(parts)


def _page_sql(conn, leads_table, events_table, where, state: RunState) -> tuple[str, str | None]:
    """The leads still to score and their visible events, as plain SELECTs (JDBC readers use them)."""
    leads = _quoted(conn, leads_table)
    after = (
        "" if state.last_lead_id is None else f"lead_id > {_id_literal(state.last_lead_id)} AND "
    )
    leads_sql = f"SELECT * FROM {leads} WHERE {after}({where})"
    if events_table is None:
        return leads_sql, None
    events_sql = (
        f"SELECT * FROM {_quoted(conn, events_table)} WHERE occurred_at <= {_literal(state.as_of)} "
        f"AND lead_id IN (SELECT lead_id FROM {leads} WHERE {after}({where}))"
    )
    return leads_sql, events_sql


def _record_selected(url: str, state: RunState, total: int) -> None:
    state.leads_selected = int(total) + state.leads_scored
    runs = _table(RUNS)
    with _transaction(url) as conn:
        conn.execute(
            update(runs)
            .where(runs.c.run_id == state.run_id)
            .values(leads_selected=state.leads_selected)
        )


def _events_table(conn: Connection, events_table: str | None) -> str | None:
    if events_table is None:
        return None
    schema, name = _split(events_table)
    return events_table if inspect(conn).has_table(name, schema=schema) else None


def read_events_for(
    url: str, events_table: str | None, lead_ids: pd.Series, as_of: pd.Timestamp
) -> pd.DataFrame | None:
    """The events of these leads visible at as_of (a key range when ids are dense, else IN lists)."""
    if events_table is None or not len(lead_ids):
        return None
    ids = lead_ids.to_numpy()
    with _transaction(url, write=False) as conn:
        table, mark = _quoted(conn, events_table), _marker(conn)
        cut = {"as_of": _db_time(conn, as_of)}
        if ids.dtype.kind in "iu" and int(ids.max()) - int(ids.min()) < 4 * len(ids):
            query = (
                f"SELECT * FROM {table} WHERE lead_id BETWEEN {mark('lo')} AND {mark('hi')} "
                f"AND occurred_at <= {mark('as_of')}"
            )
            frame = _raw_query(conn, query, {"lo": int(ids.min()), "hi": int(ids.max()), **cut})
            frame = frame[frame["lead_id"].isin(ids)] if len(frame) else frame
        else:
            frame = pd.concat(
                [
                    _events_in(conn, table, ids[i : i + IN_LIST_BATCH], cut)
                    for i in range(0, len(ids), IN_LIST_BATCH)
                ],
                ignore_index=True,
            )
    if frame.empty:
        return None
    return _parse_times(frame.reset_index(drop=True), "occurred_at")


def _events_in(conn: Connection, table: str, ids: np.ndarray, cut: dict) -> pd.DataFrame:
    mark = _marker(conn)
    names = {f"i{k}": v.item() if isinstance(v, np.generic) else v for k, v in enumerate(ids)}
    marks = ", ".join(mark(k) for k in names)
    query = f"SELECT * FROM {table} WHERE lead_id IN ({marks}) AND occurred_at <= {mark('as_of')}"
    return _raw_query(conn, query, {**names, **cut})


def _raw_query(conn: Connection, query: str, params: dict) -> pd.DataFrame:
    """A query through the DBAPI cursor: plain tuples build a frame ~10x faster than Row objects."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(query, params)
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True)))


def _marker(conn: Connection) -> Callable[[str], str]:
    """Named DBAPI parameters: :name for sqlite3, %(name)s for psycopg."""
    if conn.dialect.name == "sqlite":
        return lambda name: f":{name}"
    return lambda name: f"%({name})s"


def _parse_times(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """ISO text (SQLite) to datetime64 with the fast ISO parser; driver datetimes pass through."""
    if column in frame.columns and not pd.api.types.is_datetime64_any_dtype(frame[column]):
        frame[column] = pd.to_datetime(frame[column], format="ISO8601", utc=True).dt.tz_localize(
            None
        )
    return frame


# ---------------------------------------------------------------- writing


def _write_all(
    url, state: RunState, lock, chunks: Iterator[pd.DataFrame], progress, total
) -> Counter:
    """Write every scored chunk (one transaction each); the grade counts written by this call.

    An error marks the run failed; an interrupt (Ctrl-C, SIGTERM, SIGKILL) leaves it running,
    so the next start resumes it.
    """
    grades: Counter = Counter()
    progress(0, total)
    try:
        for scores in chunks:
            if len(scores):
                grades += write_chunk(url, state, lock, scores)
                progress(sum(grades.values()), total)
    except Exception as exc:
        finish_run(url, state.run_id, FAILED, f"{type(exc).__name__}: {exc}"[:1000])
        raise
    return grades


def write_chunk(url: str, state: RunState, lock, scores: pd.DataFrame) -> Counter:
    """History rows, current-score upserts and the run's progress marker: one transaction."""
    ids = scores["lead_id"].to_numpy()
    first, last = _py_id(ids[0]), _py_id(ids[-1])
    if _not_after(first, state.last_lead_id):
        raise ScoringError(
            f"table '{HISTORY}': chunk starting at lead_id {first!r} is not past the run's "
            f"marker {state.last_lead_id!r} (chunks must come in lead_id order)"
        )
    chunk_grades = Counter(scores["grade"].astype(str).value_counts().to_dict())
    grades = state.grades + chunk_grades
    with _transaction(url) as conn:
        _insert_history(conn, state.run_id, scores)
        _upsert_current(conn, state.run_id, first, last)
        runs = _table(RUNS, state.id_kind)
        conn.execute(
            update(runs)
            .where(runs.c.run_id == state.run_id)
            .values(
                last_lead_id=last,
                leads_scored=state.leads_scored + len(scores),
                grade_counts=json.dumps(dict(grades)),
                chunks=state.chunks + 1,
                updated_at=_py(_now()),
            )
        )
        lock.heartbeat(conn)
    state.last_lead_id, state.grades = last, grades
    state.leads_scored += len(scores)
    state.chunks += 1
    return chunk_grades


def _insert_history(conn: Connection, run_id: str, scores: pd.DataFrame) -> None:
    """Bulk append: COPY on PostgreSQL, executemany on SQLite, inside the chunk's transaction."""
    rows = _history_rows(run_id, scores)
    columns = "run_id, lead_id, probability, score, grade, reasons, model_version, scored_at"
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cursor, cursor.copy(f"COPY {HISTORY} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    raw.executemany(f"INSERT INTO {HISTORY} ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _history_rows(run_id: str, scores: pd.DataFrame) -> Iterator[tuple]:
    n = len(scores)
    reasons = scores["reasons"] if "reasons" in scores else pd.Series([None] * n)
    return zip(
        [run_id] * n,
        scores["lead_id"].tolist(),
        scores["probability"].astype(float).tolist(),
        scores["score"].astype(int).tolist(),
        scores["grade"].astype(str).tolist(),
        reasons.to_numpy(dtype=object, na_value=None).tolist(),
        scores["model_version"].astype(str).tolist(),
        _iso_column(scores["scored_at"]),
        strict=True,
    )


def _iso_column(values: pd.Series) -> list[str]:
    """Timestamps as ISO text; formatted once per distinct value (a chunk has one or few)."""
    stamps = pd.to_datetime(values).to_numpy(dtype="datetime64[us]")
    uniques, inverse = np.unique(stamps, return_inverse=True)
    text_values = np.array([_iso(pd.Timestamp(u)) for u in uniques], dtype=object)
    return text_values[inverse.reshape(-1)].tolist()


def _upsert_current(conn: Connection, run_id: str, first: object, last: object) -> None:
    """lead_scores from this chunk's history rows: one statement, the same on both databases."""
    values = "probability, score, grade, reasons, model_version, scored_at"
    updates = ", ".join(f"{c} = excluded.{c}" for c in [*values.split(", "), "run_id"])
    conn.execute(
        text(
            f"INSERT INTO {SCORES} (lead_id, {values}, run_id) "
            f"SELECT lead_id, {values}, run_id FROM {HISTORY} "
            "WHERE run_id = :run_id AND lead_id >= :first AND lead_id <= :last "
            f"ON CONFLICT (lead_id) DO UPDATE SET {updates}"
        ),
        {"run_id": run_id, "first": first, "last": last},
    )


def _not_after(first: object, marker: object) -> bool:
    """An integer chunk that does not start past the marker (text ids follow the database's
    collation, which Python cannot check)."""
    return isinstance(first, int) and isinstance(marker, int) and first <= marker


# ---------------------------------------------------------------- dry run and summary


def _dry_run(
    config: Config, options: ScoreOptions, model, source: ChunkSource, progress
) -> RunSummary:
    """Score what a run would score; write nothing, take no lock."""
    with _transaction(options.url, write=False) as conn:
        mode, since, note = _window(conn, model, options)
    as_of = _timestamp(options.as_of, "as_of") or _now()
    state = RunState("", model.version, mode, since, as_of)
    plan = _plan(config, options, model, state, record=False)
    started = time.perf_counter()
    progress(0, plan.total)
    for scores in source(plan):
        state.grades.update(scores["grade"].astype(str).value_counts().to_dict())
        state.leads_scored += len(scores)
        progress(state.leads_scored, plan.total)
    summary = _summary(state, state.grades, time.perf_counter() - started, [note] if note else [])
    return replace(summary, run_id=None, dry_run=True)


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


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal; a no-op callback otherwise (cron, systemd logs)."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("scoring", total=None, rate="")
        started = time.perf_counter()

        def update_bar(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} leads/s")

        yield update_bar


# ---------------------------------------------------------------- the one-run-at-a-time lock


class _Lock:
    """A held scoring lock; `heartbeat` runs inside each chunk's transaction."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    def heartbeat(self, conn: Connection) -> None:
        if self.token is None:
            return
        locks = _table(LOCKS)
        moved = conn.execute(
            update(locks)
            .where(locks.c.name == LOCK_NAME, locks.c.token == self.token)
            .values(heartbeat_at=_py(_now()))
        ).rowcount
        if moved != 1:
            raise ScoringLockedError(
                f"table '{LOCKS}': this run's lock row was taken over by another run; stopping"
            )


@contextmanager
def scoring_lock(url: str) -> Iterator[_Lock]:
    """Hold the one-run-at-a-time lock for the scoring tables at `url`, or raise ScoringLockedError."""
    engine = engine_for(url)
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, url):
            yield _Lock()
        return
    token = uuid.uuid4().hex
    _take_lock_row(url, token)
    try:
        yield _Lock(token)
    finally:
        _release_lock_row(url, token)


@contextmanager
def _advisory_lock(engine: Engine, url: str) -> Iterator[None]:
    """A session-level advisory lock on its own autocommit connection (freed if the process dies)."""
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        key = _lock_key(f"{LOCK_NAME}:{schema}")
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
    except SQLAlchemyError as exc:
        raise DataSourceError(
            f"cannot take the scoring lock on {safe_url(url)}: {_one_line(exc)}"
        ) from None
    if not got:
        conn.close()
        raise ScoringLockedError(
            f"another scoring run is in progress on {safe_url(url)} (schema {schema}, "
            f"PostgreSQL advisory lock {key}); this run exits, try again later"
        )
    try:
        yield
    finally:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        finally:
            conn.close()


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _take_lock_row(url: str, token: str) -> None:
    """Insert the lock row, or take over a stale one (its process gone); else ScoringLockedError."""
    locks = score_tables("int").tables[LOCKS]
    me = {
        "token": token,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
        "acquired_at": _py(_now()),
        "heartbeat_at": _py(_now()),
    }
    with _transaction(url) as conn:
        conn.execute(CreateTable(locks, if_not_exists=True))
        # Writing first takes SQLite's write lock, so check-then-take is one serialised step.
        inserted = conn.execute(
            text(
                f"INSERT INTO {LOCKS} (name, token, host, pid, process_start, acquired_at, heartbeat_at) "
                "VALUES (:name, :token, :host, :pid, :process_start, :acquired_at, :heartbeat_at) "
                "ON CONFLICT (name) DO NOTHING"
            ),
            {"name": LOCK_NAME, **me},
        ).rowcount
        if inserted == 1:
            return
        holder = conn.execute(select(locks).where(locks.c.name == LOCK_NAME)).first()
        if _holder_alive(holder):
            raise ScoringLockedError(
                f"another scoring run is in progress on {safe_url(url)} (lock row in '{LOCKS}': "
                f"pid {holder.pid} on {holder.host} since {_fmt(holder.acquired_at)}); "
                "this run exits, try again later"
            )
        conn.execute(
            update(locks)
            .where(locks.c.name == LOCK_NAME, locks.c.token == holder.token)
            .values(**me)
        )


def _release_lock_row(url: str, token: str) -> None:
    with _transaction(url) as conn:
        conn.execute(
            text(f"DELETE FROM {LOCKS} WHERE name = :name AND token = :token"),
            {"name": LOCK_NAME, "token": token},
        )


def _holder_alive(holder) -> bool:
    """Same host: its process still runs (and is the same process). Else: a recent heartbeat."""
    if holder.host != socket.gethostname():
        beat = holder.heartbeat_at or holder.acquired_at
        return beat is not None and _now() - pd.Timestamp(beat) < LOCK_STALE_AFTER
    if not _pid_running(int(holder.pid)):
        return False
    start = _process_start(int(holder.pid))
    return holder.process_start is None or start is None or start == holder.process_start


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_stat(pid)[:1] != ["Z"]  # a zombie (killed, not yet reaped) holds nothing


def _process_start(pid: int) -> str | None:
    """The process start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else None


def _proc_stat(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return raw.rsplit(")", 1)[-1].split()


# ---------------------------------------------------------------- small helpers


@contextmanager
def _transaction(url: str, *, write: bool = True) -> Iterator[Connection]:
    """A transaction (or a read connection); database errors become DataSourceError."""
    engine = engine_for(url)
    try:
        with engine.begin() if write else engine.connect() as conn:
            yield conn
    except (SQLAlchemyError, sqlite3.Error, *_psycopg_errors()) as exc:
        action = "writing to" if write else "reading from"
        raise DataSourceError(f"{action} {safe_url(url)} failed: {_one_line(exc)}") from None


def _psycopg_errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:
        return ()
    return (psycopg.Error,)


def _one_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return (lines[0] if lines else type(inner).__name__)[:300]


def _columns(conn: Connection, table: str) -> set[str]:
    schema, name = _split(table)
    return {c["name"] for c in inspect(conn).get_columns(name, schema=schema)}


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return schema or None, name


def _quoted(conn: Connection, table: str) -> str:
    quote = conn.dialect.identifier_preparer.quote
    schema, name = _split(table)
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def _timestamp(value: object, option: str) -> pd.Timestamp | None:
    """An option's time as a tz-naive UTC timestamp (microseconds), or ScoringError."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ScoringError(f"--{option.replace('_', '-')}: not a timestamp: {value!r}") from None
    if ts is pd.NaT:
        raise ScoringError(f"--{option.replace('_', '-')}: not a timestamp: {value!r}")
    ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
    return ts.floor("us")


def _now() -> pd.Timestamp:
    return utc_now().floor("us")


def _py(ts: pd.Timestamp | None):
    return None if ts is None else pd.Timestamp(ts).to_pydatetime()


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f")


def _literal(ts: pd.Timestamp) -> str:
    """A timestamp as a SQL literal: ISO text compares right on SQLite, casts on PostgreSQL."""
    return f"'{_iso(pd.Timestamp(ts))}'"


def _db_time(conn: Connection, ts: pd.Timestamp):
    return _iso(ts) if conn.dialect.name == "sqlite" else ts.to_pydatetime()


def _id_literal(value: object) -> str:
    if isinstance(value, int | np.integer):
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


def _py_id(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _fmt(ts: object) -> str:
    return "-" if ts is None else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
