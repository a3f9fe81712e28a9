"""Read and write the canonical tables: SQLAlchemy URLs (SQLite, PostgreSQL), CSV and Parquet.

Reads apply the config's column mapping and return validated frames; writes are one
transaction each (all tables or none) with bulk paths: DBAPI `executemany` on SQLite and
`COPY ... FROM STDIN` on PostgreSQL.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from leadml.config import DataConfig, TargetConfig
from leadml.errors import DataSourceError, SchemaError
from leadml.schema import EVENTS, LEADS, validate_events, validate_leads

FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".csv.zip", ".parquet", ".pq")
READ_CHUNK = 100_000
_TRUE_TEXT = ("true", "yes", "y", "1", "1.0")
_FALSE_TEXT = ("false", "no", "n", "0", "0.0")


def is_file_source(source: str) -> bool:
    """True for a CSV/Parquet path, False for a SQLAlchemy URL."""
    return "://" not in source and source.lower().endswith(FILE_SUFFIXES)


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    """A pooled SQLAlchemy engine for `url` (cached); a bad or unreachable URL -> DataSourceError."""
    try:
        parsed = make_url(url)
        options = {"connect_args": {"connect_timeout": 10}} if _is_postgres(url) else {}
        engine = create_engine(parsed, **options)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise DataSourceError(f"invalid database URL {safe_url(url)}: {_one_line(exc)}") from None
    if parsed.get_backend_name() == "sqlite":
        _make_sqlite_transactional(engine)
    else:
        _ping(engine, url)
    return engine


def read_leads(data_cfg: DataConfig, *, url: str | None = None) -> pd.DataFrame:
    """The validated canonical leads table from the configured source (or `url`)."""
    source = url or data_cfg.source
    raw = (
        _read_file(source, data_cfg)
        if is_file_source(source)
        else read_table(source, data_cfg.leads_table)
    )
    return canonical_leads(raw, data_cfg)


def read_events(
    data_cfg: DataConfig, *, url: str | None = None, lead_ids: Sequence | pd.Series | None = None
) -> pd.DataFrame | None:
    """The validated lead_events table, or None when the source has no events."""
    source = url or data_cfg.source
    if is_file_source(source):
        if data_cfg.events_source is None:
            return None
        raw = _read_file(data_cfg.events_source, data_cfg)
    else:
        table = data_cfg.events_table
        if table is None or (table == EVENTS and not has_table(source, table)):
            return None
        raw = read_table(source, table)
    return validate_events(_map_columns(raw, data_cfg, EVENTS), lead_ids)


def read_dataset(
    data_cfg: DataConfig, *, url: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Leads and their events (None without an events table), both validated."""
    leads = read_leads(data_cfg, url=url)
    return leads, read_events(data_cfg, url=url, lead_ids=leads["lead_id"])


def import_dataset(data_cfg: DataConfig, url: str, *, replace: bool = False) -> dict[str, int]:
    """Load a user's source (per the data config) into canonical tables at `url`; row counts."""
    leads, events = read_dataset(data_cfg)
    tables = {LEADS: leads} if events is None else {LEADS: leads, EVENTS: events}
    write_tables(url, tables, replace=replace)
    return {name: len(frame) for name, frame in tables.items()}


def canonical_leads(raw: pd.DataFrame, data_cfg: DataConfig) -> pd.DataFrame:
    """Apply the config's mapping (rename, ignore, id, time, target) to a raw table and validate."""
    df = _map_columns(raw, data_cfg, LEADS)
    if "lead_id" not in df.columns and data_cfg.id_column is None:
        df.insert(0, "lead_id", np.arange(1, len(df) + 1, dtype="int64"))
    df = _with_status(df, data_cfg.target)
    _check_declared(df, data_cfg)
    return validate_leads(
        df, require_time=data_cfg.created_at is not None, numeric=data_cfg.numeric
    )


def _map_columns(raw: pd.DataFrame, data_cfg: DataConfig, table: str) -> pd.DataFrame:
    """Rename the user's columns to canonical names and drop the ignored ones."""
    mapping = dict(data_cfg.rename)
    for source, canonical in (
        (data_cfg.id_column, "lead_id"),
        (data_cfg.created_at, "created_at"),
        (data_cfg.converted_at, "converted_at"),
    ):
        if source and source != canonical and source in raw.columns:
            mapping.setdefault(source, canonical)
    df = raw.rename(columns=mapping)
    if data_cfg.id_column and "lead_id" not in df.columns:
        raise SchemaError(
            table, data_cfg.id_column, f"id column not found; columns are {list(raw.columns)[:12]}"
        )
    ignored = [
        c for c in df.columns if c in data_cfg.ignore or _source_name(c, mapping) in data_cfg.ignore
    ]
    return df.drop(columns=ignored)


def _source_name(column: str, mapping: Mapping[str, str]) -> str | None:
    return next((s for s, c in mapping.items() if c == column), None)


def _with_status(df: pd.DataFrame, target: TargetConfig) -> pd.DataFrame:
    """Derive `status` from the target: positive -> converted, null or 'open' -> open, else disqualified."""
    if target.column == "status" and str(target.positive).lower() == "converted":
        return df
    if target.column not in df.columns:
        if "status" in df.columns:
            return df  # already canonical (e.g. a table written by `leadml import`)
        raise SchemaError(LEADS, target.column, "target column not found")
    values = df[target.column]
    status = np.where(_is_positive(values, target.positive), "converted", "disqualified")
    out = df.drop(columns=[target.column])
    still_open = values.isna() | (values.astype(str).str.strip().str.lower() == "open")
    out["status"] = np.where(still_open.to_numpy(), "open", status)
    return out


def _is_positive(values: pd.Series, positive: str | int | bool) -> np.ndarray:
    """Rows equal to the positive value: numbers as numbers, text case-insensitively.

    YAML reads an unquoted `yes` as True, so a boolean positive also matches yes/true/y/1 text.
    """
    if pd.api.types.is_numeric_dtype(values) and not isinstance(positive, str):
        return (values == positive).to_numpy()
    text = values.astype(str).str.strip().str.lower()
    if isinstance(positive, bool):
        return text.isin(_TRUE_TEXT if positive else _FALSE_TEXT).to_numpy()
    return (text == str(positive).strip().lower()).to_numpy()


def _check_declared(df: pd.DataFrame, data_cfg: DataConfig) -> None:
    for field in ("numeric", "categorical", "leaking"):
        missing = [c for c in getattr(data_cfg, field) or [] if c not in df.columns]
        if missing:
            raise SchemaError(LEADS, missing[0], f"declared in data.{field} but not in the table")


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
        raise DataSourceError(f"cannot read {path}: {_one_line(exc)}") from None


def has_table(url: str, table: str) -> bool:
    """Whether `table` (optionally `schema.table`) exists at `url`."""
    _check_sqlite_file(url)
    with _connection(url) as conn:
        return _has_table(conn, table)


def read_table(url: str, table: str, *, chunk_size: int = READ_CHUNK) -> pd.DataFrame:
    """A whole table, fetched in chunks (server-side cursor on PostgreSQL) and concatenated."""
    _check_sqlite_file(url)
    with _connection(url) as conn:
        _require_table(conn, url, table)
        query = f"SELECT * FROM {_quote_table(conn, table)}"
        chunks, columns = _fetch_chunks(conn, query, chunk_size)
    if not chunks:
        return pd.DataFrame(columns=columns)
    return _decimals_to_float(pd.concat(chunks, ignore_index=True).infer_objects())


def _fetch_chunks(
    conn: Connection, query: str, chunk_size: int
) -> tuple[list[pd.DataFrame], list[str]]:
    """Rows through the DBAPI cursor (SQLAlchemy's Row objects cost about 3x more per row)."""
    raw = conn.connection.driver_connection
    server_side = conn.dialect.name == "postgresql"
    cursor = raw.cursor(name=f"leadml_{uuid.uuid4().hex[:12]}") if server_side else raw.cursor()
    try:
        cursor.execute(query)
        columns = [d[0] for d in cursor.description]
        chunks = []
        while rows := cursor.fetchmany(chunk_size):
            chunks.append(pd.DataFrame(rows, columns=columns))
    finally:
        cursor.close()
    return chunks, columns


def _decimals_to_float(df: pd.DataFrame) -> pd.DataFrame:
    """PostgreSQL NUMERIC arrives as Decimal objects: make those columns float."""
    for column in df.select_dtypes(include="object").columns:
        first = df[column].dropna()
        if len(first) and isinstance(first.iloc[0], Decimal):
            df[column] = pd.to_numeric(df[column].astype(float))
    return df


def iter_leads_keyset(
    url: str,
    table: str,
    chunk_size: int,
    after: object = None,
    where_sql: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Validated chunks of a canonical leads table ordered by lead_id, paged by key.

    Each page is its own short read, so writers are not blocked between pages. `where_sql`
    is a trusted SQL condition (e.g. "status = 'open'"); `after` resumes past that lead_id.
    """
    _check_sqlite_file(url)
    with _connection(url) as conn:
        _require_table(conn, url, table)
    while True:
        with _connection(url) as conn:
            chunk = _keyset_page(conn, table, chunk_size, after, where_sql)
        if chunk.empty:
            return
        after = chunk["lead_id"].iloc[-1]
        yield validate_leads(chunk, require_time="created_at" in chunk.columns)
        if len(chunk) < chunk_size:
            return


def _keyset_page(
    conn: Connection, table: str, chunk_size: int, after: object, where_sql: str | None
) -> pd.DataFrame:
    conditions = ([] if after is None else ["lead_id > :after"]) + (
        [f"({where_sql})"] if where_sql else []
    )
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    query = f"SELECT * FROM {_quote_table(conn, table)}{where} ORDER BY lead_id LIMIT :limit"
    params = {"limit": int(chunk_size)}
    if after is not None:
        params["after"] = after.item() if isinstance(after, np.generic) else after
    result = conn.execute(text(query), params)
    return pd.DataFrame([tuple(row) for row in result], columns=list(result.keys()))


def write_tables(url: str, tables: Mapping[str, pd.DataFrame], *, replace: bool = False) -> None:
    """Write frames as tables in one transaction: all or nothing; existing tables need replace=True.

    A frame with lead_id and status gets a primary key on lead_id; one with lead_id and
    occurred_at an index on (lead_id, occurred_at).
    """
    _ensure_sqlite_parent(url)
    with _connection(url, write=True) as conn:
        existing = [name for name in tables if _has_table(conn, name)]
        if existing and not replace:
            raise DataSourceError(
                f"table(s) {', '.join(existing)} already exist in {safe_url(url)}; "
                "use --replace (replace=True) to overwrite them"
            )
        for name, frame in tables.items():
            if name in existing:
                conn.exec_driver_sql(f"DROP TABLE {_quote_table(conn, name)}")
            _create_table(conn, name, frame)
            _insert_rows(conn, name, frame)


def _create_table(conn: Connection, name: str, frame: pd.DataFrame) -> None:
    dialect = conn.dialect.name
    quote = conn.dialect.identifier_preparer.quote
    columns = [f"{quote(str(c))} {_sql_type(frame[c], dialect)}" for c in frame.columns]
    if {"lead_id", "status"} <= set(frame.columns):
        columns.append("PRIMARY KEY (lead_id)")
    conn.exec_driver_sql(f"CREATE TABLE {_quote_table(conn, name)} ({', '.join(columns)})")
    if {"lead_id", "occurred_at"} <= set(frame.columns):
        index = quote(f"ix_{name.rsplit('.', 1)[-1]}_lead_id_occurred_at")
        conn.exec_driver_sql(
            f"CREATE INDEX {index} ON {_quote_table(conn, name)} (lead_id, occurred_at)"
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


def _insert_rows(conn: Connection, name: str, frame: pd.DataFrame) -> None:
    """Bulk insert: executemany on SQLite, COPY FROM STDIN on PostgreSQL (same transaction)."""
    if frame.empty:
        return
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(str(c)) for c in frame.columns)
    rows = zip(*(_python_values(frame[c]) for c in frame.columns), strict=True)
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {_quote_table(conn, name)} ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(frame.columns))
    raw.executemany(f"INSERT INTO {_quote_table(conn, name)} ({names}) VALUES ({marks})", rows)


def _python_values(values: pd.Series) -> list:
    """A column as Python values with None for missing; timestamps as ISO text (naive UTC)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return _iso_text(values)
    return values.to_numpy(dtype=object, na_value=None).tolist()


def _iso_text(values: pd.Series) -> list:
    """'YYYY-MM-DD HH:MM:SS[.ffffff]' strings (None for NaT); tz-aware values converted to UTC."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    stamps = values.to_numpy(dtype="datetime64[us]")
    missing = np.isnat(stamps)
    whole = (stamps[~missing].astype("int64") % 1_000_000 == 0).all()
    strings = np.datetime_as_string(stamps, unit="s" if whole else "us")
    codes = strings.view(np.uint32).reshape(len(strings), -1)
    codes[:, 10] = ord(" ")  # SQL style separator instead of ISO's 'T'
    out = codes.reshape(-1).view(strings.dtype).astype(object)
    out[missing] = None
    return out.tolist()


@contextmanager
def _connection(url: str, *, write: bool = False) -> Iterator[Connection]:
    """A connection (a transaction when writing); driver errors become DataSourceError."""
    engine = engine_for(url)
    try:
        with engine.begin() if write else engine.connect() as conn:
            yield conn
    except (SQLAlchemyError, *_driver_errors()) as exc:
        action = "writing to" if write else "reading from"
        raise DataSourceError(f"{action} {safe_url(url)} failed: {_one_line(exc)}") from None


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def _ping(engine: Engine, url: str) -> None:
    try:
        with engine.connect():
            pass
    except (SQLAlchemyError, *_driver_errors()) as exc:
        raise DataSourceError(f"cannot connect to {safe_url(url)}: {_one_line(exc)}") from None


def _make_sqlite_transactional(engine: Engine) -> None:
    """Let SQLAlchemy emit BEGIN itself so DDL is transactional too (pysqlite commits it otherwise)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN")


def _check_sqlite_file(url: str) -> None:
    """Reading a SQLite file that does not exist would silently create it: refuse instead."""
    path = _sqlite_path(url)
    if path is not None and not path.is_file():
        raise DataSourceError(
            f"database file not found: {path} (create it with `leadml generate` or `leadml import`)"
        )


def _ensure_sqlite_parent(url: str) -> None:
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    database = engine_for(url).url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql", "postgres"))


def _has_table(conn: Connection, table: str) -> bool:
    schema, name = _split_table(table)
    return inspect(conn).has_table(name, schema=schema)


def _require_table(conn: Connection, url: str, table: str) -> None:
    if not _has_table(conn, table):
        raise DataSourceError(f"table '{table}' not found in {safe_url(url)}")


def _split_table(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return schema or None, name


def _quote_table(conn: Connection, table: str) -> str:
    schema, name = _split_table(table)
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def _one_line(exc: BaseException) -> str:
    """The first line of an error (the driver's own message when wrapped), at most 300 chars."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return (lines[0] if lines else type(inner).__name__)[:300]


def read_lead(
    data_cfg: DataConfig, lead_id: object, *, url: str | None = None
) -> tuple[dict | None, list[dict]]:
    """One lead (as a dict) and its events (dicts), for explaining or scoring a single lead."""
    source = url or data_cfg.source
    if is_file_source(source):
        leads, events = read_dataset(data_cfg, url=url)
    else:
        leads, events = _read_one(source, data_cfg, lead_id)
    match = leads[leads["lead_id"].astype(str) == str(lead_id)]
    if match.empty:
        return None, []
    lead = match.iloc[0].to_dict()
    if events is None:
        return lead, []
    mine = events[events["lead_id"].astype(str) == str(lead_id)]
    return lead, mine.to_dict("records")


def _read_one(
    url: str, data_cfg: DataConfig, lead_id: object
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The rows of one lead from a database, mapped and validated like a full read."""
    ident = _lead_id_column(data_cfg)
    key = int(lead_id) if str(lead_id).lstrip("-").isdigit() else str(lead_id)
    with _connection(url) as conn:
        _require_table(conn, url, data_cfg.leads_table)
        table = _quote_table(conn, data_cfg.leads_table)
        quoted = conn.dialect.identifier_preparer.quote(ident)
        raw = pd.read_sql(
            text(f"SELECT * FROM {table} WHERE {quoted} = :k"), conn, params={"k": key}
        )
        if raw.empty and isinstance(key, int):
            raw = pd.read_sql(
                text(f"SELECT * FROM {table} WHERE {quoted} = :k"), conn, params={"k": str(key)}
            )
        events = None
        etable = data_cfg.events_table
        if etable and _has_table(conn, etable):
            ev_quoted = conn.dialect.identifier_preparer.quote(_event_id_column(data_cfg))
            found = raw[ident].iloc[0] if not raw.empty else key
            events = pd.read_sql(
                text(f"SELECT * FROM {_quote_table(conn, etable)} WHERE {ev_quoted} = :k"),
                conn,
                params={"k": found.item() if hasattr(found, "item") else found},
            )
    if raw.empty:
        return pd.DataFrame({"lead_id": []}), None
    leads = canonical_leads(raw, data_cfg)
    if events is not None:
        mapped = _map_columns(events, data_cfg, EVENTS)
        events = validate_events(mapped, leads["lead_id"], allow_empty=True)
    return leads, events


def _lead_id_column(data_cfg: DataConfig) -> str:
    """The source's name for lead_id (through rename and id_column)."""
    for source, canonical in data_cfg.rename.items():
        if canonical == "lead_id":
            return source
    return data_cfg.id_column or "lead_id"


def _event_id_column(data_cfg: DataConfig) -> str:
    return _lead_id_column(data_cfg)
