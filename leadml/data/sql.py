"""The only SQL plumbing: engines, connections and transactions, quoting, bulk inserts, errors.

Every module that talks to a database goes through here, so that three rules hold everywhere:
a URL's password never appears in a message (`mask_url`), a driver error becomes one
`DatabaseError` naming the table, and reading never creates a database (a SQLite file that
does not exist is an error naming the file; only `create=True`, used by `generate` and
`import`, makes one).
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Integer, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from leadml.errors import DatabaseError, DataSourceError

IN_LIST_BATCH = 900  # ids per IN (...) list, under SQLite's variable limit everywhere


# ---------------------------------------------------------------- URLs and engines


def mask_url(url: str) -> str:
    """The URL with its password masked: the only form of a URL that goes into a message or log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", str(url))


def scrub(message: str, url: str) -> str:
    """`message` with the URL masked and its password (if any) replaced by ***."""
    text = str(message).replace(str(url), mask_url(url))
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    return text.replace(str(password), "***") if password else text


def is_postgres(url: str) -> bool:
    """True for a PostgreSQL URL (any driver)."""
    return str(url).startswith(("postgresql", "postgres"))


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    """A pooled SQLAlchemy engine for `url` (cached per URL); a bad or unreachable URL -> error.

    Creating the engine never touches a SQLite file; `connect` checks it exists first.
    """
    try:
        parsed = make_url(url)
        options = {"connect_args": {"connect_timeout": 10}} if is_postgres(url) else {}
        engine = create_engine(parsed, **options)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise DataSourceError(
            f"invalid database URL {mask_url(url)}: {one_line(exc, url)}"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        _make_sqlite_transactional(engine)
    else:
        _ping(engine, url)
    return engine


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory ones)."""
    if not str(url).startswith("sqlite"):
        return None
    database = engine_for(url).url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def require_database(url: str, *, create: bool = False) -> None:
    """Reading never creates: a missing SQLite file is an error (create=True makes its folder)."""
    path = sqlite_path(url)
    if path is None:
        return
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.is_file():
        raise DataSourceError(
            f"database file not found: {path} (create it with `leadml generate` or `leadml import`)"
        )


def dialect_name(url: str) -> str:
    """'sqlite', 'postgresql', ... for a URL."""
    return engine_for(url).dialect.name


# ---------------------------------------------------------------- connections


@contextmanager
def connect(
    url: str, *, write: bool = False, create: bool = False, table: str | None = None
) -> Iterator[Connection]:
    """A connection (a transaction when `write`); driver errors -> DatabaseError naming `table`.

    A SQLite file must exist unless `create` is set.
    """
    require_database(url, create=create)
    engine = engine_for(url)
    try:
        with engine.begin() if write else engine.connect() as conn:
            yield conn
    except (SQLAlchemyError, *driver_errors()) as exc:
        raise database_error(exc, url, table, write) from None


def transaction(url: str, *, create: bool = False, table: str | None = None):
    """One transaction at `url`: all of it commits or none (see `connect`)."""
    return connect(url, write=True, create=create, table=table)


def database_error(
    exc: BaseException, url: str, table: str | None = None, write: bool = False
) -> DatabaseError:
    """The one error a failed statement becomes: action, table, masked URL, the driver's line."""
    action = "writing to" if write else "reading from"
    where = f"table '{table}' at " if table else ""
    return DatabaseError(f"{action} {where}{mask_url(url)} failed: {one_line(exc, url)}", table)


def driver_errors() -> tuple[type[Exception], ...]:
    """The DBAPI error classes of the installed drivers."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def one_line(exc: BaseException, url: str = "") -> str:
    """The first line of an error (the driver's own when wrapped), masked, at most 300 chars."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    first = lines[0] if lines else type(inner).__name__
    return (scrub(first, url) if url else first)[:300]


def _ping(engine: Engine, url: str) -> None:
    try:
        with engine.connect():
            pass
    except (SQLAlchemyError, *driver_errors()) as exc:
        raise DataSourceError(f"cannot connect to {mask_url(url)}: {one_line(exc, url)}") from None


def _make_sqlite_transactional(engine: Engine) -> None:
    """Let SQLAlchemy emit BEGIN itself so DDL is transactional too (pysqlite commits it otherwise)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN")


# ---------------------------------------------------------------- names


def split_table(table: str) -> tuple[str | None, str]:
    """('crm', 'leads') for 'crm.leads', (None, 'leads') for 'leads'."""
    schema, _, name = str(table).rpartition(".")
    return schema or None, name


def beside(table: str, name: str) -> str:
    """`name` in the schema of `table` ('crm.leads', 'lead_scores' -> 'crm.lead_scores')."""
    schema, _ = split_table(table)
    return f"{schema}.{name}" if schema else name


def quote_name(conn: Connection, name: str) -> str:
    """One identifier quoted for this dialect (only when it needs quoting)."""
    return conn.dialect.identifier_preparer.quote(str(name))


def quote_table(conn: Connection, table: str) -> str:
    """A (schema-qualified) table name quoted for this dialect: crm.leads -> crm.leads, "Crm"."Leads"."""
    schema, name = split_table(table)
    return (
        f"{quote_name(conn, schema)}.{quote_name(conn, name)}" if schema else quote_name(conn, name)
    )


def has_table(conn: Connection, table: str) -> bool:
    """Whether `table` (optionally `schema.table`) exists."""
    schema, name = split_table(table)
    return inspect(conn).has_table(name, schema=schema)


def table_columns(conn: Connection, table: str) -> dict[str, bool]:
    """Column name -> is-integer, in table order ({} when the table does not exist)."""
    if not has_table(conn, table):
        return {}
    schema, name = split_table(table)
    columns = inspect(conn).get_columns(name, schema=schema)
    return {c["name"]: isinstance(c["type"], Integer) for c in columns}


def require_table(conn: Connection, url: str, table: str) -> None:
    """A clear error when `table` is not there."""
    if not has_table(conn, table):
        raise DatabaseError(f"table '{table}' not found in {mask_url(url)}", table)


# ---------------------------------------------------------------- reading rows fast


def marker(conn: Connection) -> Callable[[str], str]:
    """Named DBAPI parameters: :name for sqlite3, %(name)s for psycopg."""
    if conn.dialect.name == "sqlite":
        return lambda name: f":{name}"
    return lambda name: f"%({name})s"


def fetch_frame(conn: Connection, query: str, params: dict | None = None) -> pd.DataFrame:
    """A DBAPI query (named `marker` parameters) as a frame: tuples build it ~10x faster than Rows."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(query, params or {})
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return pd.DataFrame(columns=columns)
    data = dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True))
    return decimals_to_float(pd.DataFrame(data))


def fetch_chunks(
    conn: Connection, query: str, chunk_size: int
) -> tuple[list[pd.DataFrame], list[str]]:
    """A large SELECT in chunks (a server-side cursor on PostgreSQL, so memory stays one chunk)."""
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


def decimals_to_float(df: pd.DataFrame) -> pd.DataFrame:
    """PostgreSQL NUMERIC arrives as Decimal objects: make those columns float."""
    for column in df.select_dtypes(include="object").columns:
        first = df[column].dropna()
        if len(first) and isinstance(first.iloc[0], Decimal):
            df[column] = pd.to_numeric(df[column].astype(float))
    return df


def in_batches(ids: Sequence) -> Iterator[dict[str, object]]:
    """Ids as parameter dicts {i0: .., i1: ..} of at most IN_LIST_BATCH each."""
    for start in range(0, len(ids), IN_LIST_BATCH):
        part = ids[start : start + IN_LIST_BATCH]
        yield {f"i{k}": py_value(v) for k, v in enumerate(part)}


def py_value(value: object) -> object:
    """A numpy scalar as the Python value a driver accepts."""
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------- writing rows fast


def bulk_insert(
    conn: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple]
) -> None:
    """Append rows inside the caller's transaction: COPY FROM STDIN on PostgreSQL, else executemany."""
    names = ", ".join(quote_name(conn, c) for c in columns)
    target = quote_table(conn, table)
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cursor, cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    raw.executemany(f"INSERT INTO {target} ({names}) VALUES ({marks})", rows)


def python_values(values: pd.Series) -> list:
    """A column as driver values: None for missing, timestamps as ISO text (naive UTC)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return iso_text(values)
    return values.to_numpy(dtype=object, na_value=None).tolist()


def iso_text(values: pd.Series) -> list:
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


def db_time(conn: Connection, ts: pd.Timestamp) -> object:
    """A timestamp as a bound parameter: ISO text on SQLite (compares as text), datetime elsewhere."""
    stamp = pd.Timestamp(ts)
    return (
        stamp.strftime("%Y-%m-%d %H:%M:%S.%f")
        if conn.dialect.name == "sqlite"
        else stamp.to_pydatetime()
    )


def time_literal(ts: pd.Timestamp) -> str:
    """A timestamp as a SQL literal: ISO text compares right on SQLite and casts on PostgreSQL."""
    return f"'{pd.Timestamp(ts).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def id_literal(value: object) -> str:
    """A lead id as a SQL literal (for SELECTs handed to JDBC readers, which take no parameters)."""
    if isinstance(value, int | np.integer):
        return str(int(value))
    return "'" + str(value).replace("'", "''") + "'"
