"""Rows of `scoring_runs` and `scoring_lock`: the statements of run bookkeeping and the lock.

The decisions (resume or abandon, which window, whether a lock holder is alive) are the batch
scorer's (`batch/runs.py`, `batch/lock.py`); this module only reads and writes the rows, on the
caller's connection so that a chunk's progress marker commits with its scores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
from sqlalchemy import Connection, Row, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateTable

from leadml.data import sql
from leadml.data.scores import LOCKS, RUNS, OutputTables, table
from leadml.errors import DataSourceError, ScoringLockedError


def _py(ts: pd.Timestamp | None):
    return None if ts is None else pd.Timestamp(ts).to_pydatetime()


# ---------------------------------------------------------------- scoring_runs


def insert_run(conn: Connection, out: OutputTables, values: dict) -> None:
    """Record a new run (timestamps as pandas or datetime values)."""
    row = {k: _py(v) if isinstance(v, pd.Timestamp) else v for k, v in values.items()}
    conn.execute(table(out, RUNS).insert().values(**row))


def latest_run_row(
    conn: Connection, out: OutputTables, status: str, by: str = "started_at"
) -> Row | None:
    """The newest run with this status (by `started_at` or `as_of`); None without the table."""
    if not sql.has_table(conn, out.runs):
        return None
    runs = table(out, RUNS)
    query = select(runs).where(runs.c.status == status).order_by(runs.c[by].desc()).limit(1)
    return conn.execute(query).first()


def update_run(
    conn: Connection, out: OutputTables, run_id: str, id_kind: str = "int", **values
) -> None:
    """Set columns of one run (timestamps converted)."""
    row = {k: _py(v) if isinstance(v, pd.Timestamp) else v for k, v in values.items()}
    runs = table(out, RUNS, id_kind)
    conn.execute(update(runs).where(runs.c.run_id == run_id).values(**row))


# ---------------------------------------------------------------- scoring_lock (SQLite)


def insert_lock_row(conn: Connection, out: OutputTables, name: str, me: dict) -> bool:
    """Create the lock table if needed and insert the lock row; False when one exists already.

    Writing first takes SQLite's write lock, so check-then-take is one serialised step.
    """
    locks = table(out, LOCKS)
    conn.execute(CreateTable(locks, if_not_exists=True))
    row = {k: _py(v) if isinstance(v, pd.Timestamp) else v for k, v in me.items()}
    inserted = conn.execute(
        text(
            f"INSERT INTO {sql.quote_table(conn, out.locks)} "
            "(name, token, host, pid, process_start, acquired_at, heartbeat_at) "
            "VALUES (:name, :token, :host, :pid, :process_start, :acquired_at, :heartbeat_at) "
            "ON CONFLICT (name) DO NOTHING"
        ),
        {"name": name, **row},
    ).rowcount
    return inserted == 1


def lock_holder(conn: Connection, out: OutputTables, name: str) -> Row | None:
    """The lock row now held."""
    locks = table(out, LOCKS)
    return conn.execute(select(locks).where(locks.c.name == name)).first()


def take_over_lock(
    conn: Connection, out: OutputTables, name: str, old_token: str, me: dict
) -> None:
    """Replace a stale holder's row with ours."""
    locks = table(out, LOCKS)
    row = {k: _py(v) if isinstance(v, pd.Timestamp) else v for k, v in me.items()}
    conn.execute(
        update(locks).where(locks.c.name == name, locks.c.token == old_token).values(**row)
    )


def delete_lock_row(conn: Connection, out: OutputTables, name: str, token: str) -> None:
    """Release the lock row we hold."""
    conn.execute(
        text(
            f"DELETE FROM {sql.quote_table(conn, out.locks)} WHERE name = :name AND token = :token"
        ),
        {"name": name, "token": token},
    )


def beat_lock_row(
    conn: Connection, out: OutputTables, name: str, token: str, at: pd.Timestamp
) -> int:
    """Refresh our lock row's heartbeat; the number of rows moved (0: it was taken over)."""
    locks = table(out, LOCKS)
    return conn.execute(
        update(locks)
        .where(locks.c.name == name, locks.c.token == token)
        .values(heartbeat_at=_py(at))
    ).rowcount


# ---------------------------------------------------------------- advisory lock (PostgreSQL)


@contextmanager
def advisory_lock(url: str, name: str, schema: str | None = None) -> Iterator[None]:
    """A session-level advisory lock keyed on `name` and the output schema, on its own autocommit
    connection (freed if the process dies); ScoringLockedError when another session holds it."""
    engine = sql.engine_for(url)
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        where = schema or conn.execute(text("SELECT current_schema()")).scalar()
        key = lock_key(f"{name}:{where}")
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
    except SQLAlchemyError as exc:
        raise DataSourceError(
            f"cannot take the scoring lock on {sql.mask_url(url)}: {sql.one_line(exc, url)}"
        ) from None
    if not got:
        conn.close()
        raise ScoringLockedError(
            f"another scoring run is in progress on {sql.mask_url(url)} (schema {where}, "
            f"PostgreSQL advisory lock {key}); this run exits, try again later"
        )
    try:
        yield
    finally:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        finally:
            conn.close()


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
