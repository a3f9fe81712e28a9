"""The canonical tables (`leads`, `lead_events`) and their validation: coerced frames or a SchemaError.

Every check is vectorised (200k leads and 3M events validate in about a second) and every
failure names the table, the column and a few offending values; no pandas traceback escapes.

Past 500 lines on purpose: the column contract and every rule training and the scorers apply to
it (`validate_leads`, `screen_page`) live once, here, so no path can check less than another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

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
_NON_FINITE_TEXT = r"[+-]?(?:inf|infinity|nan|snan|nan\(.*\))"


# ---------------------------------------------------------------- the output tables' columns


@dataclass(frozen=True)
class OutputColumn:
    """One column of the scorer's output tables; `kind` is int, float, text, json or time."""

    name: str
    kind: str
    nullable: bool = True


# The contract of `lead_scores` (after lead_id) and of `predict.score_leads`' frame. The DDL,
# the writers and the readers all follow this tuple: a new nullable column added here is
# created (ALTER TABLE on existing tables), written when the frame has it and read back.
SCORE_FIELDS: tuple[OutputColumn, ...] = (
    OutputColumn("probability", "float", nullable=False),
    OutputColumn("score", "int", nullable=False),
    OutputColumn("grade", "text", nullable=False),
    OutputColumn("reasons", "json"),
    OutputColumn("model_version", "text", nullable=False),
    OutputColumn("scored_at", "time", nullable=False),
    # baseline + fit_points + engagement_points = score (NULL when scored without reasons)
    OutputColumn("fit_points", "int"),
    OutputColumn("engagement_points", "int"),
)
# Columns kept in `lead_score_history` only, written when present. `attributes` (the lead's
# attribute values and created_at, JSON) and `as_of` are what the change ledger re-scores
# an earlier scoring from; events are re-read from lead_events with the as_of cut.
HISTORY_FIELDS: tuple[OutputColumn, ...] = (
    OutputColumn("attributes", "json"),
    OutputColumn("as_of", "time"),
)
SCORE_COLUMNS: list[str] = ["lead_id", *(c.name for c in SCORE_FIELDS)]
REJECT_VALUES_CHARS = 2000  # scoring_rejects.values is truncated to this many characters


def to_naive_utc(values: object) -> pd.Series:
    """Timestamps in any form (text, aware, naive, driver datetimes) as tz-naive UTC; bad -> NaT.

    The one lenient parser for values leadml wrote itself (run times, scored_at); input data
    goes through the strict `validate_leads` / `validate_events` instead.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series) and not isinstance(
        series.dtype, pd.DatetimeTZDtype
    ):
        return series.astype(TIME_DTYPE)
    parsed = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
    retry = (parsed.isna() & series.notna()).to_numpy()
    if retry.any():  # the fast ISO parser first, the slow mixed one only where it failed
        parsed = parsed.astype("datetime64[us, UTC]")
        mixed = pd.to_datetime(series[retry], errors="coerce", utc=True, format="mixed")
        parsed.loc[retry] = mixed.astype("datetime64[us, UTC]")
    return parsed.dt.tz_localize(None).astype(TIME_DTYPE)


def naive_utc(value: object) -> pd.Timestamp | None:
    """One timestamp as tz-naive UTC (None for missing or unparseable)."""
    if value is None:
        return None
    stamp = to_naive_utc(pd.Series([value])).iloc[0]
    return None if pd.isna(stamp) else stamp


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
    non_finite: str = "invalid",
) -> pd.DataFrame:
    """Check and coerce a leads table to the canonical schema, or raise SchemaError.

    `numeric` names attribute columns declared numeric (text in them is an error). A
    non-converted lead's converted_at is cleared; a missing converted_at column is added empty.
    `non_finite` ("invalid" or "missing", config data.non_finite) says what 'inf'/'NaN' are.
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
        declared = column in (numeric or ())
        out[column] = _attribute(out[column], column, declared, non_finite)
    return out


def validate_events(
    df: pd.DataFrame,
    lead_ids: Iterable | None = None,
    *,
    now: object = None,
    allow_empty: bool = False,
    non_finite: str = "invalid",
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
    out["value"] = _numeric(out["value"], EVENTS, "value", non_finite)
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


def _attribute(
    values: pd.Series, column: str, declared: bool, non_finite: str = "invalid"
) -> pd.Series:
    """Numeric attributes (declared, or numeric already) without infinities; others as they are."""
    if declared or (
        pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    ):
        return _numeric(values, LEADS, column, non_finite)
    return values


def non_finite_text(text: pd.Series) -> np.ndarray:
    """Text that spells a non-number ('inf', '-Infinity', 'NaN', 'nan'): never read as a number."""
    return text.str.fullmatch(_NON_FINITE_TEXT, case=False).fillna(False).to_numpy(dtype=bool)


def _numeric(values: pd.Series, table: str, column: str, non_finite: str = "invalid") -> pd.Series:
    """Numbers (NaN means missing); non-numeric text or infinities are errors.

    The text 'inf', 'NaN' and the like, and real infinities, follow `non_finite`: errors
    ("invalid", the default) or missing values ("missing").
    """
    if pd.api.types.is_bool_dtype(values):
        values = values.astype("float64")
    if not pd.api.types.is_numeric_dtype(values):
        text = values.where(values.isna(), values.astype(str).str.strip())
        text = text.mask(text == "")
        spelled = non_finite_text(text.astype(object).where(text.notna(), "").astype(str))
        if spelled.any() and non_finite != "missing":
            raise SchemaError(
                table,
                column,
                f"{int(spelled.sum())} values spell a non-finite number (only finite numbers "
                "or empty allowed; data.non_finite: missing reads them as missing)",
                _shown(values, spelled),
            )
        text = text.mask(spelled)
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
        if infinite.any() and non_finite == "missing":
            return values.mask(infinite)
        if infinite.any():
            raise SchemaError(
                table,
                column,
                f"{int(infinite.sum())} infinite values (only finite numbers or empty allowed)",
                _shown(values, infinite),
            )
    return values


# ---------------------------------------------------------------- scoring: row by row
# Training refuses a whole table for one bad row (above); a scorer keeps a page's good rows and
# names every bad one. The masks below mirror the checks above, and the good rows still go
# through validate_leads / validate_events, so training and scoring coerce alike.

REJECT_COLUMNS = ("table_name", "lead_id", "rule", "column_name", "bad_values")
VALUE_CHARS = 100  # each offending value is cut to this many characters in a reject


class ScreenedPage(NamedTuple):
    """One page split into the rows training would accept (coerced) and the rejects."""

    leads: pd.DataFrame
    events: pd.DataFrame | None
    rejects: pd.DataFrame  # REJECT_COLUMNS; one row per refused lead row or event row
    kept: np.ndarray  # per input lead row: True when it is in `leads`


def screen_page(
    leads: pd.DataFrame,
    events: pd.DataFrame | None = None,
    *,
    now: object = None,
    numeric: Sequence[str] | None = None,
    non_finite: str = "invalid",
    require_time: bool | None = None,
) -> ScreenedPage:
    """Good rows and rejects of a page of leads (and their events), by the training rules.

    A lead is refused for a bad value of its own or for a bad event of its own (its score
    would rest on data training refuses); events of leads not in the page are refused too.
    Table-level faults (a required column missing) still raise SchemaError.
    """
    raw = _frame(leads, LEADS, allow_empty=True)
    timed = ("created_at" in raw.columns) if require_time is None else require_time
    _require(raw, LEADS, ["lead_id", "status"] + (["created_at"] if timed else []))
    limit = _future_limit(now, LEADS)
    keys = _id_keys(raw["lead_id"])
    rejects = [_lead_rejects(raw, keys, limit, numeric or (), non_finite)]
    refused = raw.index.isin(rejects[0].index)
    good_events = None
    if events is not None:
        ev_raw = _frame(events, EVENTS, allow_empty=True)
        _require(ev_raw, EVENTS, ["lead_id", "occurred_at", "event_type"])
        ev_keys = _id_keys(ev_raw["lead_id"])
        ev_bad = _event_rejects(ev_raw, ev_keys, set(keys.dropna()), limit, non_finite)
        rejects.append(ev_bad)
        refused |= keys.isin(set(ev_keys[ev_bad.index].dropna())).to_numpy()
        kept = ~ev_raw.index.isin(ev_bad.index) & ev_keys.isin(set(keys[~refused])).to_numpy()
        good_events = ev_raw[kept]
    good = _coerced_leads(raw[~refused], timed, now, numeric, non_finite)
    if good_events is not None:
        good_events = validate_events(
            good_events, good["lead_id"], now=now, allow_empty=True, non_finite=non_finite
        )
    found = [r for r in rejects if len(r)]
    out = pd.concat(found, ignore_index=True) if found else _no_rejects()
    return ScreenedPage(good, good_events, out, ~np.asarray(refused, dtype=bool))


def first_reject(page: ScreenedPage) -> SchemaError | None:
    """The first reject as the SchemaError the one-lead paths (pages, explain) raise."""
    if not len(page.rejects):
        return None
    row = page.rejects.iloc[0]
    who = f"lead {row['lead_id']}" if row["lead_id"] is not None else "a lead without lead_id"
    return SchemaError(
        row["table_name"],
        row["column_name"],
        f"{who} breaks rule '{row['rule']}' (values {row['bad_values']}); it is not scored",
    )


def _coerced_leads(
    good: pd.DataFrame, timed: bool, now: object, numeric, non_finite: str
) -> pd.DataFrame:
    if len(good):
        return validate_leads(
            good, require_time=timed, now=now, numeric=numeric, non_finite=non_finite
        )
    empty = good.copy()
    if "converted_at" not in empty.columns:
        empty["converted_at"] = pd.Series(dtype=TIME_DTYPE)
    return empty


def _no_rejects() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in REJECT_COLUMNS})


def _id_keys(ids: pd.Series) -> pd.Series:
    """Ids as comparable text (7, 7.0 and ' 7' alike); None where missing."""

    def key(value: object) -> str | None:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return None
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return str(int(value))
        return str(value).strip()

    if pd.api.types.is_integer_dtype(ids) and not ids.isna().any():  # the common case, vectorised
        return ids.astype("int64").astype(str).astype(object)
    return pd.Series([key(v) for v in ids.to_numpy(dtype=object)], index=ids.index, dtype=object)


def _lead_rejects(
    raw: pd.DataFrame, keys: pd.Series, limit: pd.Timestamp, numeric, non_finite: str
) -> pd.DataFrame:
    """One reject per bad lead row (its first broken rule), indexed like `raw`."""
    checks: list[tuple[str, tuple[str, ...], np.ndarray]] = [
        ("missing_id", ("lead_id",), keys.isna().to_numpy()),
        ("duplicate_id", ("lead_id",), (keys.duplicated(keep=False) & keys.notna()).to_numpy()),
    ]
    status = raw["status"].astype(str).str.strip().str.lower()
    unknown = (raw["status"].isna() | ~status.isin(STATUSES)).to_numpy()
    checks.append(("unknown_status", ("status",), unknown))
    times = {}
    for column in ("created_at", "converted_at"):
        if column in raw.columns:
            times[column], found = _time_checks(raw[column], limit, column == "created_at")
            checks += [(rule, (column,), mask) for rule, mask in found]
    if "created_at" in times:
        checks += _conversion_checks(raw, times)
    for column in attribute_columns(raw):
        if column in numeric or (
            pd.api.types.is_numeric_dtype(raw[column])
            and not pd.api.types.is_bool_dtype(raw[column])
        ):
            checks += [(r, (column,), m) for r, m in _number_checks(raw[column], non_finite)]
    return _rejects_of(raw, LEADS, keys, checks)


def _event_rejects(
    raw: pd.DataFrame, keys: pd.Series, known: set, limit: pd.Timestamp, non_finite: str
) -> pd.DataFrame:
    """One reject per bad event row, indexed like `raw`."""
    checks: list[tuple[str, tuple[str, ...], np.ndarray]] = [
        ("missing_id", ("lead_id",), keys.isna().to_numpy()),
        ("unknown_lead", ("lead_id",), (keys.notna() & ~keys.isin(known)).to_numpy()),
    ]
    _, found = _time_checks(raw["occurred_at"], limit, True)
    checks += [(rule, ("occurred_at",), mask) for rule, mask in found]
    kind = raw["event_type"]
    empty = (kind.isna() | (kind.astype(str).str.strip() == "")).to_numpy()
    checks.append(("missing_event_type", ("event_type",), empty))
    if "value" in raw.columns:
        checks += [(r, ("value",), m) for r, m in _number_checks(raw["value"], non_finite)]
    return _rejects_of(raw, EVENTS, keys, checks)


def _rejects_of(raw: pd.DataFrame, table: str, keys: pd.Series, checks: list) -> pd.DataFrame:
    """The first failing check of each row as a reject (rule, column, values cut short)."""
    taken = np.zeros(len(raw), dtype=bool)
    rows = []
    for rule, columns, mask in checks:
        fresh = np.asarray(mask, dtype=bool) & ~taken
        taken |= fresh
        for i in np.flatnonzero(fresh):
            bad = {c: keys.iat[i] if c == "lead_id" else _cut(raw[c].iat[i]) for c in columns}
            rows.append((i, table, keys.iat[i], rule, columns[-1], json.dumps(bad)))
    if not rows:
        return _no_rejects()
    frame = pd.DataFrame([r[1:] for r in rows], columns=REJECT_COLUMNS, dtype=object)
    frame.index = raw.index[[r[0] for r in rows]]
    ids = [None if k is None else k[:VALUE_CHARS] for k in frame["lead_id"]]
    frame["lead_id"] = pd.Series(ids, index=frame.index, dtype=object)
    return frame.sort_index()


def _cut(value: object) -> str | None:
    """An offending value as short text for the rejects table (None stays None)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


def _time_checks(
    values: pd.Series, limit: pd.Timestamp, required: bool
) -> tuple[pd.Series, list[tuple[str, np.ndarray]]]:
    """Parsed times and the masks of wrong_type, unparseable_time, missing_time, future_time."""
    cells = values.astype(object)
    present = cells.notna() & (cells.astype(str).str.strip() != "")
    if pd.api.types.is_string_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        numbers = pd.Series(False, index=values.index)  # one type in the column: no numbers
    else:
        numbers = cells.map(lambda v: isinstance(v, bool | int | float | np.number)) & present
    parsed = pd.Series(pd.NaT, index=values.index, dtype=TIME_DTYPE)
    todo = present & ~numbers
    if todo.any():
        parsed[todo] = _row_times(cells[todo])
    unparseable = todo & parsed.isna()
    found = [("wrong_type", numbers.to_numpy()), ("unparseable_time", unparseable.to_numpy())]
    if required:
        found.append(("missing_time", (~present).to_numpy()))
    found.append(("future_time", (parsed > limit).to_numpy()))
    return parsed, found


def _row_times(cells: pd.Series) -> pd.Series:
    """Each cell parsed alone when ISO 8601 fails (one odd row must not spoil its page)."""
    try:
        parsed = pd.to_datetime(cells, errors="coerce", utc=True, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        parsed = pd.Series(pd.NaT, index=cells.index, dtype="datetime64[us, UTC]")
    parsed = parsed.astype("datetime64[us, UTC]")
    for i in np.flatnonzero(parsed.isna().to_numpy()):
        parsed.iat[i] = _one_time(cells.iat[i])
    return parsed.dt.tz_localize(None).astype(TIME_DTYPE)


def _one_time(value: object) -> pd.Timestamp:
    text = value.strip() if isinstance(value, str) else value
    try:
        return pd.to_datetime(pd.Series([text]), errors="coerce", utc=True, format="mixed").iat[0]
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


def _conversion_checks(raw: pd.DataFrame, times: dict) -> list:
    converted = (raw["status"].astype(str).str.strip().str.lower() == "converted").to_numpy()
    if "converted_at" not in times:
        return [("converted_without_time", ("status",), converted)]
    done, created = times["converted_at"], times["created_at"]
    columns = ("created_at", "converted_at")
    return [
        ("converted_without_time", ("status", "converted_at"), converted & done.isna().to_numpy()),
        ("converted_before_created", columns, converted & (done < created).to_numpy()),
    ]


def _number_checks(values: pd.Series, non_finite: str) -> list[tuple[str, np.ndarray]]:
    """Masks of not_a_number (text that is no number) and not_finite ('inf', 'NaN', ±inf)."""
    if pd.api.types.is_bool_dtype(values):
        return []
    if pd.api.types.is_numeric_dtype(values):
        infinite = np.isinf(values.to_numpy(dtype="float64", na_value=np.nan))
        return [] if non_finite == "missing" else [("not_finite", infinite)]
    cells = values.astype(object)
    text = cells.where(cells.isna(), cells.astype(str).str.strip())
    text = text.mask(text == "")
    spelled = non_finite_text(text.where(text.notna(), "").astype(str))
    number = pd.to_numeric(text.mask(spelled), errors="coerce")
    not_number = (number.isna() & text.notna()).to_numpy() & ~spelled
    infinite = np.isinf(number.to_numpy(dtype="float64", na_value=np.nan)) | spelled
    found = [("not_a_number", not_number)]
    return found if non_finite == "missing" else found + [("not_finite", infinite)]
