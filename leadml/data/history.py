"""Reads of the score history and of the ranked scores, and history pruning: what the change
ledger, the movers list, the call list and `history.keep_runs` / `keep_days` need.

A lead's change "since the previous run" is its current score minus its latest history row
scored before the current one (a correlated lookup on the (lead_id, scored_at) index), so it
holds for incremental runs too, where leads are scored by different runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection

from leadml.config import DataConfig
from leadml.data import sql
from leadml.data.leads import LeadTables, lead_key, mapped_from, open_condition, resolve_on
from leadml.data.scores import OutputTables, parse_score_row

CONTACT_COLUMNS = ("name", "full_name", "contact_name", "first_name")
COMPANY_COLUMNS = ("company", "company_name", "account", "organization")
SOURCE_COLUMNS = ("source", "lead_source", "channel")
SORTS = {
    "score": "s.score DESC, s.probability DESC, s.lead_id",
    "movers": "ABS(COALESCE(s.score - s.previous_score, 0)) DESC, s.score DESC, s.lead_id",
    "rising": "COALESCE(s.score - s.previous_score, 0) DESC, s.score DESC, s.lead_id",
    "falling": "COALESCE(s.score - s.previous_score, 0) ASC, s.score DESC, s.lead_id",
    "fit": "COALESCE(s.fit_points, 0) DESC, s.score DESC, s.lead_id",
    "engagement": "COALESCE(s.engagement_points, 0) DESC, s.score DESC, s.lead_id",
}
FACET_FILTERS = {"above": "> 0", "below": "<= 0"}


@dataclass(frozen=True)
class RankedPage:
    """One page of the ranked list."""

    rows: list[dict]
    total: int
    page: int
    per_page: int
    sources: list[str]
    has_scores: bool

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


# ---------------------------------------------------------------- one lead's history


def lead_scorings(url: str, out: OutputTables, lead_id: object, limit: int = 500) -> list[dict]:
    """One lead's history rows, oldest first; as_of from the row, else from its run."""
    with sql.connect(url, table=out.history) as conn:
        columns = sql.table_columns(conn, out.history)
        key = _key(lead_id, columns.get("lead_id", False)) if columns else None
        if key is None:
            return []
        mark, h = sql.marker(conn), sql.quote_table(conn, out.history)
        runs = sql.has_table(conn, out.runs)
        join = f" LEFT JOIN {sql.quote_table(conn, out.runs)} r ON r.run_id = h.run_id"
        run_as_of = ", r.as_of AS run_as_of" if runs else ""
        query = (
            f"SELECT h.*{run_as_of} FROM {h} h{join if runs else ''} "
            f"WHERE h.lead_id = {mark('k')} ORDER BY h.scored_at DESC LIMIT {int(limit)}"
        )
        frame = sql.fetch_frame(conn, query, {"k": key})
    rows = []
    for row in frame.to_dict("records"):
        run_as_of = row.pop("run_as_of", None)
        if row.get("as_of") is None or pd.isna(row.get("as_of")):
            row["as_of"] = run_as_of
        rows.append(parse_score_row(row))
    return rows[::-1]


def _key(lead_id: object, integer: bool) -> object | None:
    text_id = str(lead_id).strip()
    if not integer:
        return text_id
    return int(text_id) if text_id.lstrip("-").isdigit() and len(text_id) < 19 else None


# ---------------------------------------------------------------- the ranked list


def ranked_page(
    url: str,
    data: DataConfig,
    out: OutputTables,
    *,
    grade: str | None = None,
    source: str | None = None,
    fit: str | None = None,
    engagement: str | None = None,
    sort: str = "score",
    page: int = 1,
    per_page: int = 50,
) -> RankedPage:
    """Scored leads with their change since the previous scoring, sorted and filtered."""
    with sql.connect(url, table=out.scores) as conn:
        tables = resolve_on(conn, url, data)
        source_col = _first(SOURCE_COLUMNS, tables)
        sources = _sources(conn, tables, source_col)
        if not sql.has_table(conn, out.scores):
            return RankedPage([], 0, 1, per_page, sources, has_scores=False)
        joined, where, params = _ranked_from(conn, tables, out, grade, source, source_col)
        where += _facet_where(fit, "fit_points") + _facet_where(engagement, "engagement_points")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total = int(
            sql.fetch_frame(conn, f"SELECT COUNT(*) AS n FROM {joined}{clause}", params)["n"][0]
        )
        page_no = min(max(page, 1), max(1, -(-total // per_page)))
        query = (
            f"SELECT {_ranked_columns(conn, tables, out, source_col)} FROM {joined}{clause} "
            f"ORDER BY {SORTS.get(sort, SORTS['score'])} "
            f"LIMIT {int(per_page)} OFFSET {int((page_no - 1) * per_page)}"
        )
        rows = [parse_score_row(r) for r in sql.fetch_frame(conn, query, params).to_dict("records")]
    for row in rows:
        previous = row.get("previous_score")
        known = previous is not None and not pd.isna(previous)
        row["previous_score"] = int(previous) if known else None
        row["change"] = int(row["score"]) - int(previous) if known else None
        for key in ("fit_points", "engagement_points"):
            value = row.get(key)
            row[key] = None if value is None or pd.isna(value) else int(value)
    return RankedPage(rows, total, page_no, per_page, sources, has_scores=True)


def _ranked_from(conn, tables: LeadTables, out: OutputTables, grade, source, source_col):
    """FROM clause: lead_scores with each lead's previous score, joined to the mapped leads."""
    s, h = sql.quote_table(conn, out.scores), sql.quote_table(conn, out.history)
    mark = sql.marker(conn)
    previous = "NULL"
    if sql.has_table(conn, out.history):
        previous = (
            f"(SELECT h.score FROM {h} h WHERE h.lead_id = s0.lead_id "
            "AND h.scored_at < s0.scored_at ORDER BY h.scored_at DESC LIMIT 1)"
        )
    scores = f"(SELECT s0.*, {previous} AS previous_score FROM {s} s0) s"
    joined = f"{scores} LEFT JOIN {mapped_from(conn, tables.leads, 'l')} ON l.lead_id = s.lead_id"
    where, params = [], {}
    if grade:
        where.append(f"s.grade = {mark('grade')}")
        params["grade"] = grade
    if source and source_col:
        where.append(f"l.{sql.quote_name(conn, source_col)} = {mark('source')}")
        params["source"] = source
    return joined, where, params


def _ranked_columns(conn, tables: LeadTables, out: OutputTables, source_col) -> str:
    have = sql.table_columns(conn, out.scores)
    cols = ["s.lead_id", "s.score", "s.grade", "s.probability", "s.reasons", "s.model_version"]
    cols += ["s.scored_at", "s.previous_score"]
    cols += [f"s.{c}" if c in have else f"NULL AS {c}" for c in ("fit_points", "engagement_points")]
    for alias, names in (("name", CONTACT_COLUMNS), ("company", COMPANY_COLUMNS)):
        column = _first(names, tables)
        cols.append(
            f"l.{sql.quote_name(conn, column)} AS {alias}" if column else f"NULL AS {alias}"
        )
    cols.append(
        f"l.{sql.quote_name(conn, source_col)} AS source" if source_col else "NULL AS source"
    )
    cols.append("l.status AS status" if tables.leads.has("status") else "NULL AS status")
    return ", ".join(cols)


def _facet_where(choice: str | None, column: str) -> list[str]:
    if not choice or choice not in FACET_FILTERS:
        return []
    return [f"s.{column} {FACET_FILTERS[choice]}"]


def _first(names: tuple[str, ...], tables: LeadTables) -> str | None:
    return next((n for n in names if tables.leads.has(n)), None)


def _sources(conn: Connection, tables: LeadTables, source_col: str | None) -> list[str]:
    if not source_col:
        return []
    column = sql.quote_name(conn, source_col)
    query = (
        f"SELECT DISTINCT l.{column} AS v FROM {mapped_from(conn, tables.leads, 'l')} "
        f"WHERE l.{column} IS NOT NULL ORDER BY l.{column} LIMIT 200"
    )
    return [str(v) for v in sql.fetch_frame(conn, query)["v"]]


# ---------------------------------------------------------------- the call list


def open_scores(
    url: str,
    data: DataConfig,
    out: OutputTables,
    *,
    grades: tuple[str, ...] = (),
    sources: tuple[str, ...] = (),
    limit: int | None = None,
) -> tuple[pd.DataFrame, int]:
    """Stored scores of open leads (best first, at most `limit`) with name, company, source;
    and how many open leads match the filters."""
    with sql.connect(url, table=out.scores) as conn:
        tables = resolve_on(conn, url, data)
        if not sql.has_table(conn, out.scores):
            return pd.DataFrame(columns=["lead_id", "score", "probability", "grade"]), 0
        source_col = _first(SOURCE_COLUMNS, tables)
        s = sql.quote_table(conn, out.scores)
        joined = f"{s} s JOIN {mapped_from(conn, tables.leads, 'l')} ON l.lead_id = s.lead_id"
        where, params = [open_condition(conn, tables, "l")], {}
        mark = sql.marker(conn)
        for name, values, column in (("g", grades, "s.grade"), ("src", sources, None)):
            if not values:
                continue
            if column is None:
                if not source_col:
                    return pd.DataFrame(columns=["lead_id", "score", "probability"]), 0
                column = f"l.{sql.quote_name(conn, source_col)}"
            keys = {f"{name}{i}": v for i, v in enumerate(values)}
            where.append(f"{column} IN ({', '.join(mark(k) for k in keys)})")
            params.update(keys)
        clause = " WHERE " + " AND ".join(where)
        count = sql.fetch_frame(conn, f"SELECT COUNT(*) AS n FROM {joined}{clause}", params)
        extra = []
        for alias, names in (("name", CONTACT_COLUMNS), ("company", COMPANY_COLUMNS)):
            column = _first(names, tables)
            if column:
                extra.append(f"l.{sql.quote_name(conn, column)} AS {alias}")
        if source_col:
            extra.append(f"l.{sql.quote_name(conn, source_col)} AS source")
        select = ", ".join(
            ["s.lead_id", "s.score", "s.probability", "s.grade", "s.scored_at", *extra]
        )
        tail = f" LIMIT {int(limit)}" if limit else ""
        query = (
            f"SELECT {select} FROM {joined}{clause} "
            f"ORDER BY s.score DESC, s.probability DESC, s.lead_id{tail}"
        )
        frame = sql.fetch_frame(conn, query, params)
    return frame, int(count["n"][0])


# ---------------------------------------------------------------- pruning


def prune_history(
    url: str,
    out: OutputTables,
    *,
    keep_runs: int | None,
    keep_days: float | None,
    now: pd.Timestamp,
) -> int:
    """Delete history rows beyond `keep_runs` runs per lead and older than `keep_days`.

    A lead's latest rows are what the ledger and the chart read; its current score lives in
    lead_scores and is never touched. Returns the number of rows deleted.
    """
    if keep_runs is None and keep_days is None:
        return 0
    deleted = 0
    with sql.transaction(url, table=out.history) as conn:
        if not sql.has_table(conn, out.history):
            return 0
        h = sql.quote_table(conn, out.history)
        mark = sql.marker(conn)
        if keep_days is not None:
            cut = now - pd.Timedelta(days=keep_days)
            result = conn.exec_driver_sql(
                f"DELETE FROM {h} WHERE scored_at < {mark('cut')}",
                {"cut": sql.db_time(conn, cut)},
            )
            deleted += max(result.rowcount or 0, 0)
        if keep_runs is not None:
            result = conn.exec_driver_sql(
                f"DELETE FROM {h} WHERE (SELECT COUNT(*) FROM {h} newer "
                f"WHERE newer.lead_id = {h}.lead_id AND newer.scored_at > {h}.scored_at) "
                f">= {mark('keep')}",
                {"keep": int(keep_runs)},
            )
            deleted += max(result.rowcount or 0, 0)
    return deleted


def lead_id_key(tables: LeadTables, lead_id: object) -> object | None:
    """The id as the leads table stores it (re-exported for the service's lookups)."""
    return lead_key(tables.leads, lead_id)
