"""Files and writes: CSV and Parquet sources, the column mapping, `leadml import`, table writes.

Database reads live in `data/leads.py` (which applies the same mapping in SQL) and the SQL
plumbing in `data/sql.py`; this module dispatches a configured source to the right reader,
maps raw frames onto the canonical tables through `data/frames.py` and writes tables in one
transaction each (all or nothing) with the bulk paths of `sql.bulk_insert`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection

from leadml.config import DataConfig
from leadml.data import leads as db_leads
from leadml.data import sql
from leadml.data.frames import canonical_leads, map_columns, with_status
from leadml.data.sql import engine_for, mask_url
from leadml.errors import DataSourceError
from leadml.schema import EVENTS, LEADS, validate_events

# re-exported: the common imports of callers and tests
__all__ = ["canonical_leads", "engine_for", "mask_url", "with_status"]

FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".csv.zip", ".parquet", ".pq")
READ_CHUNK = 100_000


def is_file_source(source: str) -> bool:
    """True for a CSV/Parquet path, False for a SQLAlchemy URL."""
    return "://" not in source and source.lower().endswith(FILE_SUFFIXES)


def read_leads(data_cfg: DataConfig, *, url: str | None = None) -> pd.DataFrame:
    """The validated canonical leads table from the configured source (or `url`)."""
    source = url or data_cfg.source
    if not is_file_source(source):
        return db_leads.read_leads(source, data_cfg)
    return canonical_leads(_read_file(source, data_cfg), data_cfg)


def read_events(
    data_cfg: DataConfig, *, url: str | None = None, lead_ids: Sequence | pd.Series | None = None
) -> pd.DataFrame | None:
    """The validated lead_events table, or None when the source has no events."""
    source = url or data_cfg.source
    if not is_file_source(source):
        table = data_cfg.events_table
        if table is None or (table == EVENTS and not has_table(source, table)):
            return None
        if not has_table(source, table):
            raise DataSourceError(f"table '{table}' not found in {mask_url(source)}")
        return db_leads.read_events(source, data_cfg, lead_ids)
    if data_cfg.events_source is None:
        return None
    raw = _read_file(data_cfg.events_source, data_cfg)
    mapped = map_columns(raw, data_cfg, EVENTS)
    return validate_events(mapped, lead_ids, non_finite=data_cfg.non_finite)


def read_dataset(
    data_cfg: DataConfig, *, url: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Leads and their events (None without an events table), both validated."""
    leads = read_leads(data_cfg, url=url)
    if data_cfg.bad_rows == "drop" and (leads.attrs.get("hygiene") or {}).get("bad_rows", {}).get(
        "dropped"
    ):
        # events of dropped leads go with them (counted), instead of failing as unknown leads
        events = read_events(data_cfg, url=url)
        if events is not None:
            known = events["lead_id"].isin(leads["lead_id"])
            leads.attrs["hygiene"]["bad_rows"]["events_dropped"] = int((~known).sum())
            events = events[known].reset_index(drop=True)
        return leads, events
    return leads, read_events(data_cfg, url=url, lead_ids=leads["lead_id"])


def import_dataset(data_cfg: DataConfig, url: str, *, replace: bool = False) -> dict[str, int]:
    """Load a user's source (per the data config) into canonical tables at `url`; row counts."""
    leads, events = read_dataset(data_cfg)
    tables = {LEADS: leads} if events is None else {LEADS: leads, EVENTS: events}
    write_tables(url, tables, replace=replace)
    return {name: len(frame) for name, frame in tables.items()}


def _read_file(path: str, data_cfg: DataConfig) -> pd.DataFrame:
    """A CSV or Parquet file as a raw frame; missing or malformed -> DataSourceError."""
    file = Path(path)
    if not file.is_file():
        raise DataSourceError(f"file not found: {path}")
    try:
        if file.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(file)
        return pd.read_csv(file, sep=data_cfg.csv_separator, low_memory=False)
    except (OSError, ValueError, ImportError) as exc:
        raise DataSourceError(f"cannot read {path}: {sql.one_line(exc)}") from None


def has_table(url: str, table: str) -> bool:
    """Whether `table` (optionally `schema.table`) exists at `url` (a missing SQLite file: error)."""
    with sql.connect(url, table=table) as conn:
        return sql.has_table(conn, table)


def read_table(url: str, table: str, *, chunk_size: int = READ_CHUNK) -> pd.DataFrame:
    """A whole table as stored (no mapping), fetched in chunks and concatenated."""
    with sql.connect(url, table=table) as conn:
        sql.require_table(conn, url, table)
        query = f"SELECT * FROM {sql.quote_table(conn, table)}"
        chunks, columns = sql.fetch_chunks(conn, query, chunk_size)
    if not chunks:
        return pd.DataFrame(columns=columns)
    return sql.decimals_to_float(pd.concat(chunks, ignore_index=True).infer_objects())


def write_tables(url: str, tables: Mapping[str, pd.DataFrame], *, replace: bool = False) -> None:
    """Write frames as tables in one transaction: all or nothing; existing tables need replace=True.

    A frame with lead_id and status gets a primary key on lead_id; one with lead_id and
    occurred_at an index on (lead_id, occurred_at).
    """
    with sql.transaction(url, create=True, table=", ".join(tables)) as conn:
        existing = [name for name in tables if sql.has_table(conn, name)]
        if existing and not replace:
            raise DataSourceError(
                f"table(s) {', '.join(existing)} already exist in {mask_url(url)}; "
                "use --replace (replace=True) to overwrite them"
            )
        for name, frame in tables.items():
            if name in existing:
                conn.exec_driver_sql(f"DROP TABLE {sql.quote_table(conn, name)}")
            _create_table(conn, name, frame)
            if len(frame):
                rows = zip(*(sql.python_values(frame[c]) for c in frame.columns), strict=True)
                sql.bulk_insert(conn, name, [str(c) for c in frame.columns], rows)


def _create_table(conn: Connection, name: str, frame: pd.DataFrame) -> None:
    dialect = conn.dialect.name
    quote = conn.dialect.identifier_preparer.quote
    columns = [f"{quote(str(c))} {_sql_type(frame[c], dialect)}" for c in frame.columns]
    if {"lead_id", "status"} <= set(frame.columns):
        columns.append("PRIMARY KEY (lead_id)")
    conn.exec_driver_sql(f"CREATE TABLE {sql.quote_table(conn, name)} ({', '.join(columns)})")
    if {"lead_id", "occurred_at"} <= set(frame.columns):
        index = quote(f"ix_{name.rsplit('.', 1)[-1]}_lead_id_occurred_at")
        conn.exec_driver_sql(
            f"CREATE INDEX {index} ON {sql.quote_table(conn, name)} (lead_id, occurred_at)"
        )


def _sql_type(values: pd.Series, dialect: str) -> str:
    sqlite = dialect == "sqlite"
    if pd.api.types.is_bool_dtype(values):
        return "INTEGER" if sqlite else "BOOLEAN"
    if pd.api.types.is_integer_dtype(values):
        return "INTEGER" if sqlite else "BIGINT"
    if pd.api.types.is_float_dtype(values):
        return "REAL" if sqlite else "DOUBLE PRECISION"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "TIMESTAMP"
    return "TEXT"


def read_lead(
    data_cfg: DataConfig, lead_id: object, *, url: str | None = None
) -> tuple[dict | None, list[dict]]:
    """One lead (as a dict) and its events (dicts), for explaining or scoring a single lead."""
    source = url or data_cfg.source
    if not is_file_source(source):
        return db_leads.read_lead(db_leads.resolve_tables(source, data_cfg), lead_id)
    leads, events = read_dataset(data_cfg, url=url)
    match = leads[leads["lead_id"].astype(str) == str(lead_id)]
    if match.empty:
        return None, []
    lead = match.iloc[0].to_dict()
    if events is None:
        return lead, []
    mine = events[events["lead_id"].astype(str) == str(lead_id)]
    return lead, mine.to_dict("records")
