"""The lead database as the service reads it: stored scores, the ranked list, one lead's row and
its recent events, one lead's score history. Every read goes through `data/leads.py` (the
config's mapping: the user's own table and column names) and `data/scores.py` (the output
tables beside the leads table); table names come from the config, never from a request.
"""

from __future__ import annotations

from dataclasses import dataclass

from leadml.config import DataConfig
from leadml.data import leads as leads_data
from leadml.data import scores as scores_data
from leadml.data import sql
from leadml.data.io import is_file_source
from leadml.errors import DataSourceError

NAME_COLUMNS = ("name", "full_name", "contact_name", "company", "company_name")
SOURCE_COLUMNS = ("source", "lead_source", "channel")
CORE_COLUMNS = ("lead_id", "created_at", "status", "converted_at")


@dataclass(frozen=True)
class Page:
    """One page of the ranked list and what it took to get there."""

    rows: list[dict]
    total: int
    page: int
    per_page: int
    sources: list[str]
    has_scores: bool

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


class LeadStore:
    """The configured lead database (leads, events, output tables), read one short query a call."""

    def __init__(self, url: str | None, data: DataConfig) -> None:
        self.url = url
        self.data = data
        self.out = scores_data.output_tables(data.leads_table)
        self.scores_table = self.out.scores
        self._tables: leads_data.LeadTables | None = None

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

    def history(self, lead_id: str, limit: int = 100) -> list[dict]:
        """One lead's lead_score_history rows, newest first."""
        return self._fresh(lambda: scores_data.lead_history(self._url(), self.out, lead_id, limit))

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

    # ------------------------------------------------------------ the ranked list

    def ranked(self, grade: str | None, source: str | None, page: int, per_page: int) -> Page:
        """Scored leads, best first, filtered by grade and source, one page at a time."""
        tables = self._fresh(self.tables)
        columns = list(tables.leads.columns.values()) if tables is not None else []
        source_col = first_present(SOURCE_COLUMNS, columns)
        filters = {
            "grade": grade,
            "source": source if source_col else None,
            "source_col": source_col,
            "name_col": first_present(NAME_COLUMNS, columns),
        }

        def read() -> Page:
            url = self._url()
            sources = self._sources(tables, source_col)
            with sql.connect(url, table=self.out.scores) as conn:
                has_scores = sql.has_table(conn, self.out.scores)
            if not has_scores:
                return Page([], 0, 1, per_page, sources, has_scores=False)
            rows, total, page_no = scores_data.ranked_scores(
                url, self.out, tables, filters, page, per_page
            )
            return Page(rows, total, page_no, per_page, sources, has_scores=True)

        return self._fresh(read)

    def _sources(self, tables: leads_data.LeadTables | None, column: str | None) -> list[str]:
        if tables is None or not column:
            return []
        with sql.connect(tables.url, table=tables.leads.table) as conn:
            return leads_data.distinct_values(conn, tables, column)


def first_present(candidates: tuple[str, ...], columns) -> str | None:
    """The first candidate name that is among `columns`."""
    return next((c for c in candidates if c in columns), None)
