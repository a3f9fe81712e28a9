"""The lead database as the service reads it: stored scores, one lead's row and its recent
events, and whether the latest run's as_of lies past the data (the ranked list and the score
history are `data/history.py`'s). Every read goes through `data/leads.py` (the
config's mapping: the user's own table and column names) and `data/scores.py` (the output
tables beside the leads table); table names come from the config, never from a request.
"""

from __future__ import annotations

import time

from leadml.config import DataConfig
from leadml.data import leads as leads_data
from leadml.data import scores as scores_data
from leadml.data import sql
from leadml.data.io import is_file_source
from leadml.errors import DataSourceError
from leadml.schema import naive_utc

CORE_COLUMNS = ("lead_id", "created_at", "status", "converted_at")
STALE_NOTE_TTL_S = 60.0


class LeadStore:
    """The configured lead database (leads, events, output tables), read one short query a call."""

    def __init__(self, url: str | None, data: DataConfig) -> None:
        self.url = url
        self.data = data
        self.out = scores_data.output_tables(data.leads_table)
        self.scores_table = self.out.scores
        self._tables: leads_data.LeadTables | None = None
        self._stale: dict[float, tuple[float, str | None]] = {}

    def _url(self) -> str:
        if not self.url or is_file_source(self.url):
            raise DataSourceError("no lead database configured: start the server with --db URL")
        return self.url

    def tables(self) -> leads_data.LeadTables | None:
        """The mapped leads/events tables (None while the leads table does not exist); cached."""
        if self._tables is None:
            url = self._url()
            with sql.connect(url, table=self.data.leads_table) as conn:
                if not sql.has_table(conn, self.data.leads_table):
                    return None
                self._tables = leads_data.resolve_on(conn, url, self.data)
        return self._tables

    def _fresh(self, read):
        """Run a read; on a database error forget the mapping (a table may have been replaced)."""
        try:
            return read()
        except DataSourceError:
            self._tables = None
            raise

    # ------------------------------------------------------------ one lead

    def stored_score(self, lead_id: str) -> dict | None:
        """The lead_scores row of one lead (JSON parsed), or None (no row, or no table yet)."""
        return self._fresh(lambda: scores_data.stored_score(self._url(), self.out, lead_id))

    def lead(self, lead_id: str) -> dict | None:
        """One lead's row under canonical names (ignored columns kept for display), or None."""
        tables = self._fresh(self.tables)
        return None if tables is None else self._fresh(lambda: leads_data.lead_row(tables, lead_id))

    def events(self, lead_id: str, limit: int | None = None) -> list[dict]:
        """The lead's events, newest first (at most `limit`)."""
        tables = self._fresh(self.tables)
        if tables is None:
            return []
        return self._fresh(lambda: leads_data.lead_events(tables, lead_id, limit))

    # ------------------------------------------------------------ freshness

    def stale_note(self, horizon_days: float) -> str | None:
        """The batch summary's warning for the latest run (its as_of more than the horizon past
        the data's last event), for the pages' header; None when fresh or nothing was scored.
        Read at most once a minute (the data's end is a scan of the events table)."""
        now = time.monotonic()
        cached = self._stale.get(horizon_days)
        if cached is not None and now - cached[0] < STALE_NOTE_TTL_S:
            return cached[1]
        note = self._stale_note(horizon_days)
        self._stale[horizon_days] = (now, note)
        return note

    def _stale_note(self, horizon_days: float) -> str | None:
        tables = self._fresh(self.tables)
        if tables is None:
            return None
        run = self._fresh(lambda: scores_data.latest_run(self._url(), self.out))
        as_of = naive_utc(run.get("as_of")) if run else None
        if as_of is None:
            return None
        return self._fresh(lambda: leads_data.stale_data_note(tables, as_of, horizon_days))
