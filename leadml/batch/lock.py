"""One scoring run at a time: a PostgreSQL advisory lock, or on SQLite a lock row that goes stale
when its process is gone (same host: the pid and its start time; another host: no heartbeat
for LOCK_STALE_AFTER). The heartbeat runs inside each chunk's transaction."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection

from leadml.batch.options import fmt, now
from leadml.data import runs as run_rows
from leadml.data import sql
from leadml.data.scores import OutputTables
from leadml.errors import ScoringLockedError

LOCK_NAME = "leadml-score"
LOCK_STALE_AFTER = pd.Timedelta(minutes=30)  # a lock row from another host without heartbeat


class ScoringLock:
    """A held scoring lock; `heartbeat` runs inside each chunk's transaction."""

    def __init__(self, out: OutputTables, token: str | None = None) -> None:
        self.out, self.token = out, token

    def heartbeat(self, conn: Connection) -> None:
        """Refresh the lock row (SQLite); a row taken over by another run stops this one."""
        if self.token is None:
            return
        if run_rows.beat_lock_row(conn, self.out, LOCK_NAME, self.token, now()) != 1:
            raise ScoringLockedError(
                f"table '{self.out.locks}': this run's lock row was taken over by another run; stopping"
            )


@contextmanager
def scoring_lock(url: str, out: OutputTables | None = None) -> Iterator[ScoringLock]:
    """Hold the one-run-at-a-time lock for the output tables at `url`, or raise ScoringLockedError."""
    out = out or OutputTables()
    if sql.dialect_name(url) == "postgresql":
        with run_rows.advisory_lock(url, LOCK_NAME, out.schema):
            yield ScoringLock(out)
        return
    token = uuid.uuid4().hex
    _take_lock_row(url, out, token)
    try:
        yield ScoringLock(out, token)
    finally:
        with sql.transaction(url, table=out.locks) as conn:
            run_rows.delete_lock_row(conn, out, LOCK_NAME, token)


def _take_lock_row(url: str, out: OutputTables, token: str) -> None:
    """Insert the lock row, or take over a stale one (its process gone); else ScoringLockedError."""
    me = {
        "token": token,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
        "acquired_at": now(),
        "heartbeat_at": now(),
    }
    with sql.transaction(url, table=out.locks) as conn:
        if run_rows.insert_lock_row(conn, out, LOCK_NAME, me):
            return
        holder = run_rows.lock_holder(conn, out, LOCK_NAME)
        if _holder_alive(holder):
            raise ScoringLockedError(
                f"another scoring run is in progress on {sql.mask_url(url)} (lock row in "
                f"'{out.locks}': pid {holder.pid} on {holder.host} since {fmt(holder.acquired_at)}); "
                "this run exits, try again later"
            )
        run_rows.take_over_lock(conn, out, LOCK_NAME, holder.token, me)


def _holder_alive(holder) -> bool:
    """Same host: its process still runs (and is the same process). Else: a recent heartbeat."""
    if holder.host != socket.gethostname():
        beat = holder.heartbeat_at or holder.acquired_at
        return beat is not None and now() - pd.Timestamp(beat) < LOCK_STALE_AFTER
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
