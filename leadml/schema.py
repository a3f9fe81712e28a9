"""The canonical tables (`leads`, `lead_events`) and their validation: coerced frames or a SchemaError.

Every check is vectorised (200k leads and 3M events validate in about a second) and every
failure names the table, the column and a few offending values; no pandas traceback escapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from leadml.errors import SchemaError, examples_of

LEADS = "leads"
EVENTS = "lead_events"
TIME_DTYPE = "datetime64[us]"
STATUSES = ("open", "converted", "disqualified")
CORE_LEAD_COLUMNS = ("lead_id", "created_at", "status", "converted_at")
EVENT_COLUMNS = ("lead_id", "occurred_at", "event_type", "value")
EVENT_TYPES = (
    "email_open",
    "email_click",
    "web_visit",
    "pricing_page_view",
    "form_submit",
    "webinar_attend",
    "content_download",
    "demo_request",
    "call",
    "meeting",
)
FUTURE_TOLERANCE = pd.Timedelta(days=1)
_INT_TEXT = r"-?(?:0|[1-9]\d{0,17})"


def attribute_columns(df: pd.DataFrame) -> list[str]:
    """All lead columns except the core ones (lead_id, created_at, status, converted_at)."""
    return [c for c in df.columns if c not in CORE_LEAD_COLUMNS]


def utc_now() -> pd.Timestamp:
    """The current time as a tz-naive UTC timestamp (the canonical time zone)."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def validate_leads(
    df: pd.DataFrame,
    *,
    require_time: bool = True,
    now: object = None,
    numeric: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Check and coerce a leads table to the canonical schema, or raise SchemaError.

    `numeric` names attribute columns declared numeric (text in them is an error). A
    non-converted lead's converted_at is cleared; a missing converted_at column is added empty.
    """
    out = _frame(df, LEADS)
    _require(out, LEADS, ["lead_id", "status"] + (["created_at"] if require_time else []))
    out["lead_id"] = _lead_ids(out["lead_id"], LEADS)
    _check_unique(out, LEADS)
    out["status"] = _statuses(out["status"])
    limit = _future_limit(now, LEADS)
    if "converted_at" not in out.columns:
        out["converted_at"] = pd.Series(pd.NaT, index=out.index, dtype=TIME_DTYPE)
    out["converted_at"] = _timestamps(out["converted_at"], LEADS, "converted_at", True, limit)
    if "created_at" in out.columns:
        out["created_at"] = _timestamps(out["created_at"], LEADS, "created_at", False, limit)
        _check_conversions(out)
    out.loc[out["status"] != "converted", "converted_at"] = pd.NaT
    for column in attribute_columns(out):
        out[column] = _attribute(out[column], column, declared=column in (numeric or ()))
    return out


def validate_events(
    df: pd.DataFrame,
    lead_ids: Iterable | None = None,
    *,
    now: object = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Check and coerce a lead_events table, or raise SchemaError.

    `lead_ids` (the validated leads' ids) makes events of unknown leads an error. A missing
    `value` column is added empty; `allow_empty` accepts a table with no rows (one lead, no events).
    """
    out = _frame(df, EVENTS, allow_empty=allow_empty)
    _require(out, EVENTS, ["lead_id", "occurred_at", "event_type"])
    known = None if lead_ids is None else pd.Series(lead_ids)
    as_text = known is not None and not pd.api.types.is_integer_dtype(known)
    out["lead_id"] = _lead_ids(out["lead_id"], EVENTS, as_text=as_text)
    if known is not None:
        _check_known(out["lead_id"], known)
    limit = _future_limit(now, EVENTS)
    out["occurred_at"] = _timestamps(out["occurred_at"], EVENTS, "occurred_at", False, limit)
    out["event_type"] = _event_types(out["event_type"])
    if "value" not in out.columns:
        out["value"] = np.nan
    out["value"] = _numeric(out["value"], EVENTS, "value")
    return out


def _frame(df: object, table: str, allow_empty: bool = False) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(table, None, f"expected a data frame, got {type(df).__name__}")
    if len(df) == 0 and not allow_empty:
        raise SchemaError(table, None, "the table is empty (no rows)")
    names = pd.Index(map(str, df.columns))
    if names.has_duplicates:
        raise SchemaError(table, None, "duplicate column names", names[names.duplicated()])
    out = df.copy()
    out.columns = names
    return out.reset_index(drop=True)


def _require(df: pd.DataFrame, table: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if not missing:
        return
    hint = " (a single-table export without time needs data.created_at: null)"
    hint = hint if "created_at" in missing else ""
    raise SchemaError(
        table, missing[0], f"required column is missing{hint}; columns are {list(df.columns)[:12]}"
    )


def _lead_ids(ids: pd.Series, table: str, as_text: bool = False) -> pd.Series:
    """Lead ids as int64 when every id is an integer, else as stripped text."""
    _check_present(ids, table, "lead_id")
    if as_text:
        return _id_text(ids)
    if pd.api.types.is_bool_dtype(ids):
        return ids.astype(str)
    if pd.api.types.is_integer_dtype(ids):
        return ids.astype("int64")
    if pd.api.types.is_float_dtype(ids):
        values = ids.to_numpy(dtype="float64")
        if np.all(np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2**62)):
            return pd.Series(values.astype("int64"), index=ids.index)
        return _id_text(ids)
    text = ids.astype(str).str.strip()
    if text.str.fullmatch(_INT_TEXT).all():
        return text.astype("int64")
    return text


def _id_text(ids: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(ids):
        values = ids.to_numpy(dtype="float64")
        if np.all(values == np.round(values)):
            return pd.Series(values.astype("int64"), index=ids.index).astype(str)
    return ids.astype(str).str.strip()


def _shown(values: pd.Series, mask: np.ndarray | slice) -> list:
    """A few distinct offending values (looking at the first thousand only)."""
    return examples_of(values.to_numpy()[mask][:1000].tolist())


def _check_unique(df: pd.DataFrame, table: str) -> None:
    dup = df["lead_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        shown = _shown(df["lead_id"], dup)
        count = int(df["lead_id"][dup].nunique())
        raise SchemaError(table, "lead_id", f"{count} lead_id values appear more than once", shown)


def _check_known(ids: pd.Series, known: pd.Series) -> None:
    known = known.astype("int64") if pd.api.types.is_integer_dtype(known) else known.astype(str)
    unknown = ~ids.isin(known).to_numpy()
    if unknown.any():
        count = int(unknown.sum())
        raise SchemaError(
            EVENTS,
            "lead_id",
            f"{count} events belong to leads not in the leads table",
            _shown(ids, unknown),
        )


def _statuses(status: pd.Series) -> pd.Series:
    _check_present(status, LEADS, "status")
    text = status.astype(str).str.strip().str.lower()
    bad = (~text.isin(STATUSES)).to_numpy()
    if bad.any():
        shown = _shown(status, bad)
        raise SchemaError(
            LEADS, "status", f"unknown status values, expected one of {STATUSES}", shown
        )
    return text


def _check_present(values: pd.Series, table: str, column: str) -> None:
    """Missing values are errors in this column: say how many and in which rows."""
    null = values.isna().to_numpy()
    if null.any():
        rows = np.flatnonzero(null)[:5].tolist()
        raise SchemaError(table, column, f"{int(null.sum())} rows have no {column} (rows {rows})")


def _event_types(types: pd.Series) -> pd.Series:
    _check_present(types, EVENTS, "event_type")
    text = types.astype(str).str.strip()
    empty = (text == "").to_numpy()
    if empty.any():
        rows = np.flatnonzero(empty)[:5].tolist()
        raise SchemaError(
            EVENTS, "event_type", f"{int(empty.sum())} events have an empty type (rows {rows})"
        )
    return text


def _future_limit(now: object, table: str) -> pd.Timestamp:
    """Latest accepted timestamp: `now` (default: the clock) plus a day of tolerance."""
    if now is None:
        return utc_now() + FUTURE_TOLERANCE
    try:
        stamp = pd.Timestamp(now)
    except (ValueError, TypeError) as exc:
        raise SchemaError(table, None, f"invalid reference time now={now!r}: {exc}") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp + FUTURE_TOLERANCE


def _timestamps(
    values: pd.Series, table: str, column: str, nullable: bool, limit: pd.Timestamp
) -> pd.Series:
    """Parse to tz-naive UTC datetime64; unparseable, missing (unless nullable) or future -> error."""
    parsed = _parse_times(values, table, column)
    if not nullable:
        _check_present(parsed, table, column)
    future = (parsed > limit).to_numpy()
    if future.any():
        shown = [str(t) for t in _shown(parsed, future)]
        raise SchemaError(
            table,
            column,
            f"{int(future.sum())} timestamps are in the future (after {limit})",
            shown,
        )
    return parsed


def _parse_times(values: pd.Series, table: str, column: str) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None).astype(TIME_DTYPE)
    if pd.api.types.is_datetime64_dtype(values):
        return values.astype(TIME_DTYPE)
    if values.isna().all():
        return pd.Series(pd.NaT, index=values.index, dtype=TIME_DTYPE)
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        shown = _shown(values.dropna(), slice(None))
        raise SchemaError(
            table, column, f"expected timestamps, got numbers ({values.dtype})", shown
        )
    return _parse_text_times(values, table, column)


def _parse_text_times(values: pd.Series, table: str, column: str) -> pd.Series:
    """ISO 8601 first (fast); blanks are missing; other formats only for the rows that fail."""
    parsed = _to_utc(values, "ISO8601")
    failed = (parsed.isna() & values.notna()).to_numpy()
    if failed.any():
        text = values[failed].astype(str).str.strip()
        text = text[text != ""]
        retry = _to_utc(text, "mixed")
        parsed.loc[retry.index] = retry
        failed = np.zeros(len(values), dtype=bool)
        failed[values.index.get_indexer(retry.index[retry.isna()])] = True
    if failed.any():
        raise SchemaError(
            table,
            column,
            f"{int(failed.sum())} values cannot be parsed as timestamps (use ISO 8601)",
            _shown(values, failed),
        )
    return parsed.dt.tz_localize(None).astype(TIME_DTYPE)


def _to_utc(text: pd.Series, fmt: str) -> pd.Series:
    try:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
    except (ValueError, TypeError, OverflowError):
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    return parsed.astype("datetime64[us, UTC]")


def _check_conversions(df: pd.DataFrame) -> None:
    converted = (df["status"] == "converted").to_numpy()
    undated = converted & df["converted_at"].isna().to_numpy()
    if undated.any():
        raise SchemaError(
            LEADS,
            "converted_at",
            f"{int(undated.sum())} converted leads have no converted_at (lead_id shown)",
            _shown(df["lead_id"], undated),
        )
    early = converted & (df["converted_at"] < df["created_at"]).to_numpy()
    if early.any():
        raise SchemaError(
            LEADS,
            "converted_at",
            f"{int(early.sum())} leads converted before they were created (lead_id shown)",
            _shown(df["lead_id"], early),
        )


def _attribute(values: pd.Series, column: str, declared: bool) -> pd.Series:
    """Numeric attributes (declared, or numeric already) without infinities; others as they are."""
    if declared or (
        pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    ):
        return _numeric(values, LEADS, column)
    return values


def _numeric(values: pd.Series, table: str, column: str) -> pd.Series:
    """Numbers (NaN means missing); non-numeric text or infinities are errors."""
    if pd.api.types.is_bool_dtype(values):
        values = values.astype("float64")
    if not pd.api.types.is_numeric_dtype(values):
        text = values.where(values.isna(), values.astype(str).str.strip())
        text = text.mask(text == "")
        converted = pd.to_numeric(text, errors="coerce")
        bad = (converted.isna() & text.notna()).to_numpy()
        if bad.any():
            raise SchemaError(
                table,
                column,
                f"{int(bad.sum())} non-numeric values in a numeric column",
                _shown(values, bad),
            )
        values = converted
    if pd.api.types.is_float_dtype(values):
        infinite = np.isinf(values.to_numpy(dtype="float64", na_value=np.nan))
        if infinite.any():
            raise SchemaError(
                table,
                column,
                f"{int(infinite.sum())} infinite values (only finite numbers or empty allowed)",
                _shown(values, infinite),
            )
    return values
