"""Every read of the user's leads and events from a database, ALL through the config's mapping.

`resolve_tables` looks at the configured tables once and maps each column onto its canonical
name (`data.rename`, `id_column`, `created_at`, `converted_at`, per table); `mapped_sql` is the
one SELECT that renames them, and every reader (whole table, keyset page, one lead, events of
a set of leads up to a point in time, the batch scorer's selection) wraps that SELECT. So a
database whose table is `crm.prospects` with `LeadId, Created, Stage` reads exactly like a
canonical `leads` table, on SQLite and PostgreSQL alike. Rows come back through
`frames.canonical_leads` / `schema.validate_events`, the same validation as file sources.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection

from leadml.config import DataConfig
from leadml.data import sql
from leadml.data.frames import canonical_leads, column_mapping, with_status
from leadml.errors import SchemaError
from leadml.schema import EVENT_COLUMNS, EVENTS, LEADS, to_naive_utc, validate_events

READ_CHUNK = 100_000


@dataclass(frozen=True)
class MappedTable:
    """A user's table and how its columns map: source name -> canonical name, in table order."""

    table: str
    columns: dict[str, str]
    integer_id: bool

    def source(self, canonical: str) -> str | None:
        """The table's own name of a canonical column (None when absent)."""
        return next((s for s, c in self.columns.items() if c == canonical), None)

    def has(self, canonical: str) -> bool:
        return canonical in self.columns.values()


@dataclass(frozen=True)
class LeadTables:
    """The configured leads (and events, None when absent) tables of one database, mapped."""

    url: str
    data: DataConfig
    leads: MappedTable
    events: MappedTable | None

    @property
    def id_kind(self) -> str:
        """'int' or 'text': the type of lead_id, which the scorer's tables follow."""
        return "int" if self.leads.integer_id else "text"


# ---------------------------------------------------------------- mapping


def resolve_tables(url: str, data: DataConfig) -> LeadTables:
    """Look at the configured tables and map their columns (a missing leads table is an error)."""
    with sql.connect(url, table=data.leads_table) as conn:
        return resolve_on(conn, url, data)


def resolve_on(conn: Connection, url: str, data: DataConfig) -> LeadTables:
    """`resolve_tables` on an open connection."""
    sql.require_table(conn, url, data.leads_table)
    leads = _mapped(conn, data, data.leads_table, LEADS)
    events = None
    if data.events_table and sql.has_table(conn, data.events_table):
        events = _mapped(conn, data, data.events_table, EVENTS)
    return LeadTables(url, data, leads, events)


def _mapped(conn: Connection, data: DataConfig, table: str, kind: str) -> MappedTable:
    types = sql.table_columns(conn, table)
    mapping = column_mapping(data, list(types))
    if kind == EVENTS:
        mapping = {s: c for s, c in mapping.items() if c in EVENT_COLUMNS}
    _check_mapping(table, kind, mapping, list(types))
    ident = next(s for s, c in mapping.items() if c == "lead_id")
    return MappedTable(table, mapping, bool(types[ident]))


def _check_mapping(table: str, kind: str, mapping: dict[str, str], columns: list[str]) -> None:
    names = pd.Index(list(mapping.values()))
    if names.has_duplicates:
        raise SchemaError(
            table, None, "two columns map to the same name", names[names.duplicated()]
        )
    required = ["lead_id"] if kind == LEADS else ["lead_id", "occurred_at", "event_type"]
    missing = [c for c in required if c not in mapping.values()]
    if missing:
        raise SchemaError(
            table,
            missing[0],
            f"no column maps to {missing[0]} (set data.rename or data.id_column); "
            f"columns are {columns[:12]}",
        )


def mapped_sql(conn: Connection, mapped: MappedTable) -> str:
    """SELECT of the table with every column under its canonical name (the view all reads wrap)."""
    q = lambda name: sql.quote_name(conn, name)  # noqa: E731
    items = [q(s) if s == c else f"{q(s)} AS {q(c)}" for s, c in mapped.columns.items()]
    return f"SELECT {', '.join(items)} FROM {sql.quote_table(conn, mapped.table)}"


def mapped_from(conn: Connection, mapped: MappedTable, alias: str) -> str:
    """`(mapped SELECT) alias`, for FROM clauses (both databases inline it, indexes still apply)."""
    return f"({mapped_sql(conn, mapped)}) {alias}"


def open_condition(conn: Connection, tables: LeadTables, alias: str = "l") -> str:
    """SQL: the lead is open (status 'open', or the target column null or 'open')."""
    target = tables.data.target
    column = target.column
    canonical = column == "status" and str(target.positive).lower() == "converted"
    if canonical or not tables.leads.has(column):
        if not tables.leads.has("status"):
            raise SchemaError(tables.leads.table, column, "target column not found")
        return f"{alias}.status = 'open'"
    value = f"{alias}.{sql.quote_name(conn, column)}"
    return f"({value} IS NULL OR LOWER(TRIM(CAST({value} AS TEXT))) = 'open')"


# ---------------------------------------------------------------- whole tables


def read_leads(url: str, data: DataConfig) -> pd.DataFrame:
    """The whole leads table, mapped and validated."""
    with sql.connect(url, table=data.leads_table) as conn:
        tables = resolve_on(conn, url, data)
        raw = _read_all(conn, mapped_sql(conn, tables.leads))
    return canonical_leads(raw, data)


def read_events(
    url: str,
    data: DataConfig,
    lead_ids: Sequence | pd.Series | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame | None:
    """The whole events table (up to `as_of` when given), validated; None without one."""
    with sql.connect(url, table=data.events_table) as conn:
        tables = resolve_on(conn, url, data)
        if tables.events is None:
            return None
        query = mapped_sql(conn, tables.events)
        if as_of is not None:
            query = f"SELECT * FROM ({query}) e WHERE e.occurred_at <= {sql.time_literal(as_of)}"
        raw = _read_all(conn, query)
    return validate_events(raw, lead_ids, allow_empty=as_of is not None, non_finite=data.non_finite)


def _read_all(conn: Connection, query: str) -> pd.DataFrame:
    chunks, columns = sql.fetch_chunks(conn, query, READ_CHUNK)
    if not chunks:
        return pd.DataFrame(columns=columns)
    return sql.decimals_to_float(pd.concat(chunks, ignore_index=True).infer_objects())


# ---------------------------------------------------------------- pages and one lead


def iter_leads_keyset(
    tables: LeadTables,
    chunk_size: int,
    after: object = None,
    where_sql: str | None = None,
    *,
    raw: bool = False,
) -> Iterator[pd.DataFrame]:
    """Validated chunks of leads in lead_id order, paged by key (each page its own short read).

    `where_sql` is a trusted condition over the mapped columns of alias `l` (see `open_condition`);
    `after` resumes past that lead_id. `raw`: the pages as read (canonical names, not validated),
    for the batch scorer, which screens them row by row (`schema.screen_page`).
    """
    while True:
        with sql.connect(tables.url, table=tables.leads.table) as conn:
            page = _keyset_page(conn, tables, chunk_size, after, where_sql)
        if page.empty:
            return
        after = page["lead_id"].iloc[-1]
        yield page if raw else canonical_leads(page, tables.data)
        if len(page) < chunk_size:
            return


def _keyset_page(
    conn: Connection, tables: LeadTables, chunk_size: int, after: object, where_sql: str | None
) -> pd.DataFrame:
    mark = sql.marker(conn)
    conditions = ([] if after is None else [f"l.lead_id > {mark('after')}"]) + (
        [f"({where_sql})"] if where_sql else []
    )
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    query = (
        f"SELECT * FROM {mapped_from(conn, tables.leads, 'l')}{where} "
        f"ORDER BY l.lead_id LIMIT {int(chunk_size)}"
    )
    params = {} if after is None else {"after": sql.py_value(after)}
    return sql.fetch_frame(conn, query, params)


def lead_key(mapped: MappedTable, lead_id: object) -> object | None:
    """The id as the table stores it; None when it cannot match (text id, integer column)."""
    text = str(lead_id).strip()
    if not mapped.integer_id:
        return text
    return int(text) if text.lstrip("-").isdigit() and len(text) < 19 else None


def lead_row(tables: LeadTables, lead_id: object) -> dict | None:
    """One lead's row under canonical names (status derived, ignored columns kept), or None."""
    key = lead_key(tables.leads, lead_id)
    if key is None:
        return None
    with sql.connect(tables.url, table=tables.leads.table) as conn:
        mark = sql.marker(conn)
        query = (
            f"SELECT * FROM {mapped_from(conn, tables.leads, 'l')} WHERE l.lead_id = {mark('k')}"
        )
        raw = sql.fetch_frame(conn, query, {"k": key})
    if raw.empty:
        return None
    row = with_status(raw, tables.data.target).iloc[0].to_dict()
    return {k: sql.py_value(v) for k, v in row.items()}


def read_lead(tables: LeadTables, lead_id: object) -> tuple[dict | None, list[dict]]:
    """One lead, validated like a full read (ignored columns dropped), and all its events."""
    key = lead_key(tables.leads, lead_id)
    if key is None:
        return None, []
    with sql.connect(tables.url, table=tables.leads.table) as conn:
        mark = sql.marker(conn)
        query = (
            f"SELECT * FROM {mapped_from(conn, tables.leads, 'l')} WHERE l.lead_id = {mark('k')}"
        )
        raw = sql.fetch_frame(conn, query, {"k": key})
    if raw.empty:
        return None, []
    leads = canonical_leads(raw, tables.data)
    events = lead_events(tables, lead_id)
    return leads.iloc[0].to_dict(), events


def lead_events(tables: LeadTables, lead_id: object, limit: int | None = None) -> list[dict]:
    """One lead's events, newest first (at most `limit`), as dicts with canonical keys."""
    if tables.events is None:
        return []
    key = lead_key(tables.events, lead_id)
    if key is None:
        return []
    with sql.connect(tables.url, table=tables.events.table) as conn:
        mark = sql.marker(conn)
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        query = (
            f"SELECT * FROM {mapped_from(conn, tables.events, 'e')} WHERE e.lead_id = {mark('k')} "
            f"ORDER BY e.occurred_at DESC{tail}"
        )
        frame = sql.fetch_frame(conn, query, {"k": key})
    if frame.empty:
        return []
    frame["occurred_at"] = to_naive_utc(frame["occurred_at"])
    return [{k: sql.py_value(v) for k, v in r.items()} for r in frame.to_dict("records")]


# ---------------------------------------------------------------- events of a page of leads


def events_for(
    tables: LeadTables, lead_ids: pd.Series, as_of: pd.Timestamp | None
) -> pd.DataFrame | None:
    """The events of these leads visible at as_of (a key range when ids are dense, else IN lists).

    `as_of` None: all their events, as stored (times not parsed), for row-by-row screening: a
    text time the database cannot compare must not vanish in the SQL.
    """
    if tables.events is None or not len(lead_ids):
        return None
    ids = lead_ids.to_numpy()
    with sql.connect(tables.url, table=tables.events.table) as conn:
        source, mark = mapped_from(conn, tables.events, "e"), sql.marker(conn)
        cut = {} if as_of is None else {"as_of": sql.db_time(conn, as_of)}
        when = "" if as_of is None else f"e.occurred_at <= {mark('as_of')} AND "
        base = f"SELECT * FROM {source} WHERE {when}"
        if ids.dtype.kind in "iu" and int(ids.max()) - int(ids.min()) < 4 * len(ids):
            query = f"{base}e.lead_id BETWEEN {mark('lo')} AND {mark('hi')}"
            frame = sql.fetch_frame(
                conn, query, {"lo": int(ids.min()), "hi": int(ids.max()), **cut}
            )
            frame = frame[frame["lead_id"].isin(ids)] if len(frame) else frame
        else:
            parts = []
            for names in sql.in_batches(ids):
                marks = ", ".join(mark(k) for k in names)
                parts.append(
                    sql.fetch_frame(conn, f"{base}e.lead_id IN ({marks})", {**names, **cut})
                )
            frame = pd.concat(parts, ignore_index=True)
    if frame.empty:
        return None
    frame = frame.reset_index(drop=True)
    if as_of is None:
        return frame
    if not pd.api.types.is_datetime64_any_dtype(frame["occurred_at"]):
        parsed = pd.to_datetime(frame["occurred_at"], format="ISO8601", utc=True)
        frame["occurred_at"] = parsed.dt.tz_localize(None)
    return frame


def data_end(tables: LeadTables) -> pd.Timestamp | None:
    """The latest event (or, without events, lead creation) time in the database."""
    with sql.connect(tables.url, table=tables.leads.table) as conn:
        if tables.events is not None:
            query = f"SELECT MAX(e.occurred_at) AS t FROM {mapped_from(conn, tables.events, 'e')}"
        elif tables.leads.has("created_at"):
            query = f"SELECT MAX(l.created_at) AS t FROM {mapped_from(conn, tables.leads, 'l')}"
        else:
            return None
        value = sql.fetch_frame(conn, query)["t"]
    stamp = to_naive_utc(value).iloc[0] if len(value) else pd.NaT
    return None if pd.isna(stamp) else stamp


# ---------------------------------------------------------------- the batch scorer's selection


def selection_where(
    conn: Connection,
    tables: LeadTables,
    as_of: pd.Timestamp,
    since: pd.Timestamp | None,
    scores_table: str | None,
) -> str:
    """Open leads created by as_of; with `since`, only those new, with new events, or never scored.

    A condition over alias `l` of the mapped leads SELECT (see `iter_leads_keyset`).
    """
    has_time = tables.leads.has("created_at")
    parts = ["l.lead_id IS NOT NULL", open_condition(conn, tables)]
    parts += [f"l.created_at <= {sql.time_literal(as_of)}"] if has_time else []
    if since is None:
        return " AND ".join(parts)
    changed = [f"l.created_at > {sql.time_literal(since)}"] if has_time else []
    if tables.events is not None:
        changed.append(
            f"EXISTS (SELECT 1 FROM {mapped_from(conn, tables.events, '_ev')} WHERE _ev.lead_id = "
            f"l.lead_id AND _ev.occurred_at > {sql.time_literal(since)} "
            f"AND _ev.occurred_at <= {sql.time_literal(as_of)})"
        )
    if scores_table:
        changed.append(
            f"NOT EXISTS (SELECT 1 FROM {sql.quote_table(conn, scores_table)} _sc "
            "WHERE _sc.lead_id = l.lead_id)"
        )
    parts.append(f"({' OR '.join(changed)})" if changed else "1 = 0")
    return " AND ".join(parts)


def selection_selects(
    conn: Connection, tables: LeadTables, where: str, after: object, as_of: pd.Timestamp
) -> tuple[str, str | None]:
    """The selected leads past `after` and their events visible at as_of, as plain SELECTs with
    canonical column names (JDBC readers take no parameters)."""
    past = "" if after is None else f"l.lead_id > {sql.id_literal(after)} AND "
    leads_sql = f"SELECT * FROM {mapped_from(conn, tables.leads, 'l')} WHERE {past}({where})"
    if tables.events is None:
        return leads_sql, None
    events_sql = (
        f"SELECT * FROM {mapped_from(conn, tables.events, 'e')} "
        f"WHERE e.occurred_at <= {sql.time_literal(as_of)} AND e.lead_id IN "
        f"(SELECT l.lead_id FROM {mapped_from(conn, tables.leads, 'l')} WHERE {past}({where}))"
    )
    return leads_sql, events_sql


def count_rows(conn: Connection, query: str) -> int:
    """The number of rows a SELECT returns."""
    return int(sql.fetch_frame(conn, f"SELECT COUNT(*) AS n FROM ({query}) q")["n"].iloc[0])


def id_bounds(url: str, query: str) -> tuple[object, object]:
    """(MIN(lead_id), MAX(lead_id)) of a SELECT with a lead_id column ((None, None) when empty)."""
    with sql.connect(url) as conn:
        frame = sql.fetch_frame(
            conn, f"SELECT MIN(lead_id) AS lo, MAX(lead_id) AS hi FROM ({query}) q"
        )
    return sql.py_value(frame["lo"].iloc[0]), sql.py_value(frame["hi"].iloc[0])


# ---------------------------------------------------------------- rows the selection cannot see


def skipped_rows(tables: LeadTables, as_of: pd.Timestamp, limit: int) -> pd.DataFrame:
    """Lead rows the batch selection's SQL passes over for a bad value, as read (at most `limit`):
    no lead_id, a duplicated lead_id, a status outside open/converted/disqualified, or an open
    lead whose created_at is missing or not comparable with as_of (text, future). The batch
    scorer screens them (`schema.screen_page`) so none vanishes without a reject."""
    with sql.connect(tables.url, table=tables.leads.table) as conn:
        source = mapped_from(conn, tables.leads, "l")
        inner = mapped_from(conn, tables.leads, "d")
        bad = [
            "l.lead_id IS NULL",
            f"l.lead_id IN (SELECT d.lead_id FROM {inner} GROUP BY d.lead_id HAVING COUNT(*) > 1)",
        ]
        if tables.leads.has("status"):
            known = ", ".join(f"'{s}'" for s in ("open", "converted", "disqualified"))
            bad.append(f"l.status IS NULL OR LOWER(TRIM(CAST(l.status AS TEXT))) NOT IN ({known})")
        if tables.leads.has("created_at"):
            late = f"l.created_at IS NULL OR NOT (l.created_at <= {sql.time_literal(as_of)})"
            bad.append(f"({open_condition(conn, tables)}) AND ({late})")
        where = " OR ".join(f"({b})" for b in bad)
        return sql.fetch_frame(conn, f"SELECT * FROM {source} WHERE {where} LIMIT {int(limit)}")


def orphan_events(tables: LeadTables, limit: int) -> pd.DataFrame | None:
    """Events without a lead_id or whose lead is not in the leads table (at most `limit`)."""
    if tables.events is None:
        return None
    with sql.connect(tables.url, table=tables.events.table) as conn:
        events = mapped_from(conn, tables.events, "e")
        leads = mapped_from(conn, tables.leads, "l")
        query = (
            f"SELECT * FROM {events} WHERE e.lead_id IS NULL OR NOT EXISTS "
            f"(SELECT 1 FROM {leads} WHERE l.lead_id = e.lead_id) LIMIT {int(limit)}"
        )
        return sql.fetch_frame(conn, query)


def stale_data_note(tables: LeadTables, as_of: pd.Timestamp, horizon_days: float) -> str | None:
    """A warning when as_of lies more than the horizon past the data's last event (the batch
    summary and the service's pages say it the same way)."""
    end = data_end(tables)
    if end is None or as_of - end <= pd.Timedelta(days=horizon_days):
        return None
    days = (as_of - end) / pd.Timedelta(days=1)
    return (
        f"as_of {as_of:%Y-%m-%d %H:%M} is {days:,.0f} days past the data's last event "
        f"({end:%Y-%m-%d %H:%M}), more than the {horizon_days:g}-day horizon: every lead looks "
        "inactive and scores low; is the data current? (pass --as-of to score as of another time)"
    )
