"""Reads of the lead database for the service: stored scores, the ranked list, one lead's
row and its recent events. Plain SQL through SQLAlchemy (`data.io.engine_for`), one short
read per call, bound parameters only; table names come from the config, never from a request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, bindparam, inspect, text
from sqlalchemy.engine import Connection, Engine

from leadml.config import DataConfig
from leadml.errors import DataSourceError

SCORES_TABLE = "lead_scores"
NAME_COLUMNS = ("name", "full_name", "contact_name", "company", "company_name")
SOURCE_COLUMNS = ("source", "lead_source", "channel")
CORE_COLUMNS = ("lead_id", "created_at", "status", "converted_at")
_INTEGER = re.compile(r"-?\d{1,18}")


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
    """The lead database as the service reads it (leads, lead_events, lead_scores)."""

    def __init__(self, url: str | None, data: DataConfig) -> None:
        self.url = url
        self.leads_table = data.leads_table
        self.events_table = data.events_table
        schema, _, _ = data.leads_table.rpartition(".")
        self.scores_table = f"{schema}.{SCORES_TABLE}" if schema else SCORES_TABLE  # beside leads
        self._columns: dict[str, dict[str, bool]] = {}  # table -> column -> is integer

    # ------------------------------------------------------------ plumbing

    def _engine(self) -> Engine:
        from leadml.data.io import engine_for, is_file_source

        if not self.url or is_file_source(self.url):
            raise DataSourceError("no lead database configured: start the server with --db URL")
        return engine_for(self.url)

    def columns(self, conn: Connection, table: str) -> dict[str, bool]:
        """Column name -> is-integer for a table ({} when it does not exist); cached once seen."""
        if table not in self._columns:
            schema, _, name = table.rpartition(".")
            inspector = inspect(conn)
            if not inspector.has_table(name, schema=schema or None):
                return {}
            cols = inspector.get_columns(name, schema=schema or None)
            self._columns[table] = {c["name"]: isinstance(c["type"], Integer) for c in cols}
        return self._columns[table]

    def _read(self, work):
        """Run `work(conn)` on a fresh connection; driver errors become DataSourceError."""
        from sqlalchemy.exc import SQLAlchemyError

        from leadml.data.io import mask_url

        try:
            with self._engine().connect() as conn:
                return work(conn)
        except SQLAlchemyError as exc:
            self._columns.clear()  # a table may have been replaced: look again next time
            first = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
            raise DataSourceError(f"reading from {mask_url(self.url)} failed: {first}") from None

    def _key(self, conn: Connection, table: str, lead_id: str) -> object | None:
        """The lead id as the table stores it; None when it cannot match (text id, int column)."""
        if self.columns(conn, table).get("lead_id"):
            return int(lead_id) if _INTEGER.fullmatch(lead_id.strip()) else None
        return lead_id

    # ------------------------------------------------------------ one lead

    def stored_score(self, lead_id: str) -> dict | None:
        """The lead_scores row of one lead (reasons parsed), or None (no row, or no table yet)."""

        def work(conn: Connection) -> dict | None:
            if not self.columns(conn, self.scores_table):
                return None
            key = self._key(conn, self.scores_table, lead_id)
            if key is None:
                return None
            query = text(f"SELECT * FROM {quote(conn, self.scores_table)} WHERE lead_id = :id")
            row = conn.execute(query, {"id": key}).mappings().first()
            return None if row is None else score_row(dict(row))

        return self._read(work)

    def lead(self, lead_id: str) -> dict | None:
        """One row of the leads table as a dict, or None."""

        def work(conn: Connection) -> dict | None:
            if not self.columns(conn, self.leads_table):
                return None
            key = self._key(conn, self.leads_table, lead_id)
            if key is None:
                return None
            query = text(f"SELECT * FROM {quote(conn, self.leads_table)} WHERE lead_id = :id")
            row = conn.execute(query, {"id": key}).mappings().first()
            return None if row is None else dict(row)

        return self._read(work)

    def events(self, lead_id: str, limit: int | None = None) -> list[dict]:
        """The lead's events, newest first (at most `limit`)."""
        table = self.events_table

        def work(conn: Connection) -> list[dict]:
            if not table or not self.columns(conn, table):
                return []
            key = self._key(conn, table, lead_id)
            if key is None:
                return []
            tail = "" if limit is None else f" LIMIT {int(limit)}"
            query = text(
                f"SELECT occurred_at, event_type, value FROM {quote(conn, table)} "
                f"WHERE lead_id = :id ORDER BY occurred_at DESC{tail}"
            )
            return [dict(r) for r in conn.execute(query, {"id": key}).mappings()]

        return self._read(work)

    # ------------------------------------------------------------ the ranked list

    def ranked(self, grade: str | None, source: str | None, page: int, per_page: int) -> Page:
        """Scored leads, best first, filtered by grade and source, one page at a time."""

        def work(conn: Connection) -> Page:
            lead_cols = self.columns(conn, self.leads_table)
            source_col = first_present(SOURCE_COLUMNS, lead_cols)
            sources = self._sources(conn, source_col) if lead_cols else []
            if not self.columns(conn, self.scores_table):
                return Page([], 0, 1, per_page, sources, has_scores=False)
            where, params = self._filters(grade, source if source_col else None, source_col)
            joined = self._joined(conn, lead_cols, where)
            total = conn.execute(text(f"SELECT COUNT(*) FROM {joined}"), params).scalar_one()
            page_no = min(max(page, 1), max(1, -(-total // per_page)))
            rows = self._page_rows(conn, joined, lead_cols, source_col, params, page_no, per_page)
            return Page(rows, int(total), page_no, per_page, sources, has_scores=True)

        return self._read(work)

    def _filters(self, grade: str | None, source: str | None, source_col: str | None):
        where, params = [], {}
        if grade:
            where.append("s.grade = :grade")
            params["grade"] = grade
        if source and source_col:
            where.append(f"l.{source_col} = :source")
            params["source"] = source
        return where, params

    def _joined(self, conn: Connection, lead_cols: dict, where: list[str]) -> str:
        scores = f"{quote(conn, self.scores_table)} s"
        if lead_cols:
            scores += f" LEFT JOIN {quote(conn, self.leads_table)} l ON l.lead_id = s.lead_id"
        return scores + (f" WHERE {' AND '.join(where)}" if where else "")

    def _page_rows(self, conn, joined, lead_cols, source_col, params, page_no, per_page):
        name_col = first_present(NAME_COLUMNS, lead_cols)
        extra = "".join(
            f", l.{c} AS {alias}" for c, alias in ((name_col, "name"), (source_col, "source")) if c
        )
        query = text(
            f"SELECT s.lead_id, s.score, s.grade, s.probability, s.reasons, s.model_version, "
            f"s.scored_at{extra} FROM {joined} "
            "ORDER BY s.score DESC, s.probability DESC, s.lead_id LIMIT :limit OFFSET :offset"
        )
        params = {**params, "limit": per_page, "offset": (page_no - 1) * per_page}
        rows = [score_row(dict(r)) for r in conn.execute(query, params).mappings()]
        last = self._last_activity(conn, [r["lead_id"] for r in rows])
        for row in rows:
            row["last_activity"] = last.get(row["lead_id"])
        return rows

    def _sources(self, conn: Connection, source_col: str | None) -> list[str]:
        if not source_col:
            return []
        query = text(
            f"SELECT DISTINCT {source_col} FROM {quote(conn, self.leads_table)} "
            f"WHERE {source_col} IS NOT NULL ORDER BY {source_col} LIMIT 200"
        )
        return [str(v) for v in conn.execute(query).scalars()]

    def _last_activity(self, conn: Connection, lead_ids: list) -> dict:
        table = self.events_table
        if not lead_ids or not table or not self.columns(conn, table):
            return {}
        query = text(
            f"SELECT lead_id, MAX(occurred_at) AS last FROM {quote(conn, table)} "
            "WHERE lead_id IN :ids GROUP BY lead_id"
        ).bindparams(bindparam("ids", expanding=True))
        return {r.lead_id: r.last for r in conn.execute(query, {"ids": lead_ids})}


def quote(conn: Connection, table: str) -> str:
    """A (schema-qualified) table name quoted for this dialect."""
    prep = conn.dialect.identifier_preparer
    return ".".join(prep.quote(part) for part in table.split("."))


def first_present(candidates: tuple[str, ...], columns: dict) -> str | None:
    return next((c for c in candidates if c in columns), None)


def score_row(row: dict) -> dict:
    """A lead_scores row with reasons parsed from JSON text and timestamps as ISO text."""
    reasons = row.get("reasons")
    if isinstance(reasons, str):
        try:
            reasons = json.loads(reasons)
        except json.JSONDecodeError:
            reasons = []
    row["reasons"] = reasons or []
    for key in ("scored_at", "last_activity"):
        if isinstance(row.get(key), datetime):
            row[key] = row[key].isoformat(sep=" ")
    return row
