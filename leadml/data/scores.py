"""The scorer's output tables: `lead_scores`, `lead_score_history`, `scoring_runs`, the lock table
and `scoring_rejects`: their DDL, the writes of one scored chunk, and the reads serve and monitor need.

The tables live beside the leads table (`crm.prospects` -> `crm.lead_scores`); their lead_id
follows the leads table's type (BIGINT or TEXT). The score columns are not spelled here: they
come from `schema.SCORE_FIELDS` (lead_scores and history) and `schema.HISTORY_FIELDS` (history
only), so a column added there is created by `ensure_tables` (ALTER TABLE on an existing
table), written by `insert_history` when the scored frame has it, and read back by the readers.
Run bookkeeping and lock rows: `data/runs.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.schema import CreateIndex, CreateTable

from leadml.data import sql
from leadml.errors import DataSourceError
from leadml.schema import (
    HISTORY_FIELDS,
    REJECT_VALUES_CHARS,
    SCORE_FIELDS,
    OutputColumn,
    to_naive_utc,
)

SCORES, HISTORY, RUNS, LOCKS, REJECTS = (
    "lead_scores",
    "lead_score_history",
    "scoring_runs",
    "scoring_lock",
    "scoring_rejects",
)
_TYPES = {"int": Integer, "float": lambda: Float(53), "text": Text, "json": Text, "time": DateTime}


@dataclass(frozen=True)
class OutputTables:
    """The qualified names of the output tables in one schema (None: the connection's default)."""

    schema: str | None = None

    def name(self, base: str) -> str:
        return f"{self.schema}.{base}" if self.schema else base

    @property
    def scores(self) -> str:
        return self.name(SCORES)

    @property
    def history(self) -> str:
        return self.name(HISTORY)

    @property
    def runs(self) -> str:
        return self.name(RUNS)

    @property
    def locks(self) -> str:
        return self.name(LOCKS)

    @property
    def rejects(self) -> str:
        return self.name(REJECTS)


def output_tables(leads_table: str = "leads") -> OutputTables:
    """The output tables beside `leads_table` (same schema)."""
    return OutputTables(sql.split_table(leads_table)[0])


# ---------------------------------------------------------------- DDL


def _columns(fields: tuple[OutputColumn, ...]) -> list[Column]:
    return [Column(f.name, _TYPES[f.kind](), nullable=f.nullable) for f in fields]


@lru_cache(maxsize=8)
def score_tables(id_kind: str = "int", schema: str | None = None) -> MetaData:
    """The output tables; `id_kind` ('int' or 'text') follows the leads table's lead_id."""
    lead_id = BigInteger if id_kind == "int" else Text
    md = MetaData(schema=schema)
    Table(
        SCORES,
        md,
        Column("lead_id", lead_id, primary_key=True, autoincrement=False),
        *_columns(SCORE_FIELDS),
        Column("run_id", Text, nullable=False),
        Index("ix_lead_scores_grade_score", "grade", "score"),
    )
    Table(
        HISTORY,
        md,
        Column("run_id", Text, primary_key=True),
        Column("lead_id", lead_id, primary_key=True, autoincrement=False),
        *_columns(SCORE_FIELDS + HISTORY_FIELDS),
        Index("ix_lead_score_history_lead_id", "lead_id", "scored_at"),
    )
    _runs_table(md, lead_id)
    _lock_table(md)
    Table(
        REJECTS,
        md,
        Column("run_id", Text, nullable=False),
        Column("lead_id", lead_id, nullable=True),
        Column("rule", Text, nullable=False),
        Column("values", Text),
        Column("table_name", Text),  # leads or lead_events: which row broke the rule
        Column("column_name", Text),
        Column("created_at", DateTime, nullable=False),
        Index("ix_scoring_rejects_run_id", "run_id"),
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
        Column("rows_rejected", BigInteger),  # rows in scoring_rejects for this run
        Column("grade_counts", Text),
        Column("last_lead_id", lead_id),
        Column("chunks", Integer),
        Column("host", Text),
        Column("pid", Integer),
        Column("error", Text),
        Index("ix_scoring_runs_status_as_of", "status", "as_of"),
    )


def _lock_table(md: MetaData) -> Table:
    """scoring_lock: the SQLite one-run-at-a-time lock row (PostgreSQL uses an advisory lock)."""
    return Table(
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


def table(out: OutputTables, base: str, id_kind: str = "int") -> Table:
    """The SQLAlchemy Table of one output table."""
    return score_tables(id_kind, out.schema).tables[out.name(base)]


def ensure_tables(url: str, leads_table: str = "leads", *, id_kind: str | None = None) -> str:
    """Create the output tables (keys, indexes) if absent, add missing columns; the id kind.

    The id kind is an existing lead_scores table's, else `id_kind` (the mapped leads table's,
    see `data.leads.LeadTables.id_kind`), else that of a canonical `lead_id` in `leads_table`.
    """
    out = output_tables(leads_table)
    with sql.transaction(url, table=out.scores) as conn:
        id_kind = id_kind_of(conn, leads_table, out, id_kind)
        for t in score_tables(id_kind, out.schema).sorted_tables:
            create_table(conn, t)
    return id_kind


def create_table(conn: Connection, t: Table) -> None:
    """CREATE TABLE/INDEX IF NOT EXISTS, then ALTER TABLE ADD COLUMN for new nullable columns."""
    conn.execute(CreateTable(t, if_not_exists=True))
    for index in sorted(t.indexes, key=lambda i: i.name):
        conn.execute(CreateIndex(index, if_not_exists=True))
    present = {c["name"] for c in inspect(conn).get_columns(t.name, schema=t.schema)}
    for column in t.columns:
        if column.name not in present and column.nullable:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(
                text(
                    f"ALTER TABLE {sql.quote_table(conn, t.fullname)} "
                    f"ADD COLUMN {sql.quote_name(conn, column.name)} {kind}"
                )
            )


def id_kind_of(
    conn: Connection,
    leads_table: str,
    out: OutputTables | None = None,
    fallback: str | None = None,
) -> str:
    """'int' when lead_id is an integer column (the scores table if it exists, else the leads')."""
    out = out or output_tables(leads_table)
    for name in (out.scores, None if fallback else leads_table):
        columns = sql.table_columns(conn, name) if name else {}
        if "lead_id" in columns:
            return "int" if columns["lead_id"] else "text"
    if fallback:
        return fallback
    raise DataSourceError(f"table '{leads_table}' with a lead_id column not found")


# ---------------------------------------------------------------- writes (caller's transaction)


def insert_history(conn: Connection, out: OutputTables, run_id: str, scores: pd.DataFrame) -> None:
    """Bulk append a scored chunk to lead_score_history: the contract's columns the frame has."""
    fields = [f for f in SCORE_FIELDS + HISTORY_FIELDS if f.name in scores or not f.nullable]
    columns = ["run_id", "lead_id", *(f.name for f in fields)]
    values = [[run_id] * len(scores), scores["lead_id"].tolist()]
    values += [_db_values(scores[f.name], f) for f in fields]
    sql.bulk_insert(conn, out.history, columns, zip(*values, strict=True))


def _db_values(values: pd.Series, field: OutputColumn) -> list:
    """One contract column as driver values (JSON objects dumped, times as ISO text)."""
    if field.kind == "time":
        return _iso_column(values)
    if field.kind == "int" and not field.nullable:
        return values.astype(int).tolist()
    if field.kind == "float" and not field.nullable:
        return values.astype(float).tolist()
    plain = values.to_numpy(dtype=object, na_value=None).tolist()
    if field.kind == "json":
        return [v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in plain]
    if field.kind == "text" and not field.nullable:
        return [str(v) for v in plain]
    return [sql.py_value(v) for v in plain]


def _iso_column(values: pd.Series) -> list[str]:
    """Timestamps as ISO text; formatted once per distinct value (a chunk has one or few)."""
    stamps = pd.to_datetime(values).to_numpy(dtype="datetime64[us]")
    uniques, inverse = np.unique(stamps, return_inverse=True)
    text_values = np.array(
        [pd.Timestamp(u).strftime("%Y-%m-%d %H:%M:%S.%f") for u in uniques], dtype=object
    )
    return text_values[inverse.reshape(-1)].tolist()


def upsert_current(
    conn: Connection, out: OutputTables, run_id: str, first: object, last: object
) -> None:
    """lead_scores from this run's history rows in [first, last]: one statement on both databases."""
    names = [sql.quote_name(conn, f.name) for f in SCORE_FIELDS]
    values = ", ".join(names)
    updates = ", ".join(f"{c} = excluded.{c}" for c in [*names, "run_id"])
    conn.execute(
        text(
            f"INSERT INTO {sql.quote_table(conn, out.scores)} (lead_id, {values}, run_id) "
            f"SELECT lead_id, {values}, run_id FROM {sql.quote_table(conn, out.history)} "
            "WHERE run_id = :run_id AND lead_id >= :first AND lead_id <= :last "
            f"ON CONFLICT (lead_id) DO UPDATE SET {updates}"
        ),
        {"run_id": run_id, "first": first, "last": last},
    )


def insert_rejects(
    conn: Connection, out: OutputTables, run_id: str, rejects: pd.DataFrame, at: pd.Timestamp
) -> None:
    """Append refused rows (columns lead_id (may be null), rule, values; optional table_name,
    column_name) to scoring_rejects."""
    if rejects.empty:
        return
    n = len(rejects)
    lead_ids = rejects["lead_id"] if "lead_id" in rejects else pd.Series([None] * n)
    shown = [None if v is None else str(v)[:REJECT_VALUES_CHARS] for v in _plain(rejects["values"])]
    where = [
        _plain(rejects[c]) if c in rejects else [None] * n for c in ("table_name", "column_name")
    ]
    rows = zip(
        [run_id] * n,
        [_reject_id(v) for v in _plain(lead_ids)],
        rejects["rule"].astype(str).tolist(),
        shown,
        *where,
        [pd.Timestamp(at).strftime("%Y-%m-%d %H:%M:%S.%f")] * n,
        strict=True,
    )
    columns = ["run_id", "lead_id", "rule", "values", "table_name", "column_name", "created_at"]
    sql.bulk_insert(conn, out.rejects, columns, rows)


def _reject_id(value: object) -> object:
    """A rejected row's id as the driver takes it (1.0 from a column with nulls -> 1)."""
    value = sql.py_value(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _plain(values: pd.Series) -> list:
    return values.to_numpy(dtype=object, na_value=None).tolist()


# ---------------------------------------------------------------- reads for serve and monitor


def parse_score_row(row: dict) -> dict:
    """A lead_scores/history row with JSON columns parsed and timestamps as ISO text."""
    for field in SCORE_FIELDS + HISTORY_FIELDS:
        if field.kind == "json" and field.name in row:
            row[field.name] = _loads(row[field.name], [] if field.name == "reasons" else None)
    for key, value in row.items():
        if hasattr(value, "isoformat") and not isinstance(value, str):
            row[key] = pd.Timestamp(value).isoformat(sep=" ")
        else:
            row[key] = sql.py_value(value)
    return row


def _loads(value: object, empty: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value) or empty
        except json.JSONDecodeError:
            return empty
    return value if value is not None else empty


def stored_score(url: str, out: OutputTables, lead_id: object) -> dict | None:
    """One lead's lead_scores row (JSON parsed), or None (no row, or no table yet)."""
    with sql.connect(url, table=out.scores) as conn:
        columns = sql.table_columns(conn, out.scores)
        if not columns:
            return None
        key = _key(lead_id, columns["lead_id"])
        if key is None:
            return None
        mark = sql.marker(conn)
        query = f"SELECT * FROM {sql.quote_table(conn, out.scores)} WHERE lead_id = {mark('k')}"
        rows = sql.fetch_frame(conn, query, {"k": key}).to_dict("records")
    return parse_score_row(rows[0]) if rows else None


def _key(lead_id: object, integer: bool) -> object | None:
    text_id = str(lead_id).strip()
    if not integer:
        return text_id
    return int(text_id) if text_id.lstrip("-").isdigit() and len(text_id) < 19 else None


def reject_counts(url: str, out: OutputTables, limit: int = 10) -> list[dict]:
    """The latest runs, newest first: run_id, started_at, status, leads_scored, rows_rejected
    (from scoring_rejects when the run did not record it); [] without scoring_runs."""
    with sql.connect(url, table=out.runs) as conn:
        if not sql.has_table(conn, out.runs):
            return []
        runs = sql.fetch_frame(conn, f"SELECT * FROM {sql.quote_table(conn, out.runs)}")
        counted = {}
        if sql.has_table(conn, out.rejects):
            counts = sql.fetch_frame(
                conn,
                f"SELECT run_id, COUNT(*) AS n FROM {sql.quote_table(conn, out.rejects)} "
                "GROUP BY run_id",
            )
            counted = dict(zip(counts["run_id"], counts["n"], strict=True))
    if not len(runs):
        return []
    runs = runs.iloc[np.argsort(-to_naive_utc(runs["started_at"]).to_numpy().astype("int64"))]
    rows = []
    for run in runs.head(limit).to_dict("records"):
        recorded = run.get("rows_rejected")
        rejected = (
            counted.get(run["run_id"], 0) if recorded is None or pd.isna(recorded) else recorded
        )
        rows.append(
            {
                "run_id": run["run_id"],
                "started_at": str(run["started_at"]),
                "status": run["status"],
                "leads_scored": int(run["leads_scored"] or 0),
                "rows_rejected": int(rejected),
            }
        )
    return rows


def latest_run(url: str, out: OutputTables) -> dict | None:
    """The newest succeeded run in scoring_runs (any run when none succeeded), or the newest
    history run when there is no scoring_runs table; None without either."""
    with sql.connect(url, table=out.runs) as conn:
        if sql.has_table(conn, out.runs):
            runs = sql.fetch_frame(conn, f"SELECT * FROM {sql.quote_table(conn, out.runs)}")
            if len(runs):
                done = runs[runs["status"].astype(str) == "succeeded"]
                done = done if len(done) else runs
                order = to_naive_utc(done["started_at"])
                return _clean(done.iloc[int(np.argmax(order.to_numpy()))].to_dict())
        if not sql.has_table(conn, out.history):
            return None
        last = sql.fetch_frame(
            conn,
            f"SELECT run_id, model_version, MAX(scored_at) AS scored_at "
            f"FROM {sql.quote_table(conn, out.history)} "
            "GROUP BY run_id, model_version ORDER BY MAX(scored_at) DESC LIMIT 1",
        )
    if not len(last):
        return None
    row = _clean(last.iloc[0].to_dict())
    return {**row, "as_of": row["scored_at"]}


def run_scores(url: str, out: OutputTables, run_id: object) -> pd.DataFrame:
    """The history rows of one scoring run (lead_id, probability, score, grade, scored_at)."""
    with sql.connect(url, table=out.history) as conn:
        mark = sql.marker(conn)
        query = (
            "SELECT lead_id, probability, score, grade, scored_at "
            f"FROM {sql.quote_table(conn, out.history)} WHERE run_id = {mark('r')}"
        )
        return sql.fetch_frame(conn, query, {"r": sql.py_value(run_id)})


def observed_history(url: str, out: OutputTables) -> pd.DataFrame:
    """Every history row with its observation time: the run's as_of when recorded, else scored_at."""
    columns = ["lead_id", "probability", "score", "grade", "scored_at", "run_id", "observed_at"]
    with sql.connect(url, table=out.history) as conn:
        if not sql.has_table(conn, out.history):
            return pd.DataFrame(columns=columns)
        history = sql.fetch_frame(
            conn,
            "SELECT lead_id, probability, score, grade, scored_at, run_id "
            f"FROM {sql.quote_table(conn, out.history)}",
        )
        runs = None
        if sql.has_table(conn, out.runs):
            runs = sql.fetch_frame(
                conn, f"SELECT run_id, as_of FROM {sql.quote_table(conn, out.runs)}"
            ).dropna()
    history["observed_at"] = to_naive_utc(history["scored_at"])
    if runs is not None and len(runs):
        as_of = pd.Series(to_naive_utc(runs["as_of"]).to_numpy(), index=runs["run_id"].astype(str))
        mapped = history["run_id"].astype(str).map(as_of)
        history["observed_at"] = mapped.where(mapped.notna(), history["observed_at"])
    return history


def _clean(row: dict) -> dict:
    return {k: sql.py_value(v) for k, v in row.items()}
