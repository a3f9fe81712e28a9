"""Point-in-time features: snapshots (lead, as_of, label) and the feature matrix.

One implementation serves training, batch scoring and the single-lead fast path: the pandas
entry points (`build_features`) and the dict entry point (`build_row`) both reduce their input
to numpy arrays and call the same `_feature_matrix`. Only events with `occurred_at <= as_of`
are ever visible. Pure: no I/O, no model.

Past 500 lines on purpose: the feature catalogue, its computation and its wording
(`reason_text`) are one definition; split across modules they would drift, and the scorers'
equality to training depends on their not drifting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadml.config import Config
from leadml.errors import SchemaError

RESERVED = ("lead_id", "created_at", "status", "converted_at")
DAY_US = 86_400_000_000
MISSING = np.nan

EVENT_PHRASES: dict[str, tuple[str, str]] = {
    # event type -> (noun for counts, verb phrase)
    "email_open": ("email opens", "Opened {n} emails"),
    "email_click": ("email clicks", "Clicked {n} email links"),
    "web_visit": ("website visits", "Visited the website {n} times"),
    "pricing_page_view": ("pricing-page views", "Viewed the pricing page {n} times"),
    "form_submit": ("form submissions", "Submitted {n} forms"),
    "webinar_attend": ("webinars attended", "Attended {n} webinars"),
    "content_download": ("content downloads", "Downloaded {n} pieces of content"),
    "demo_request": ("demo requests", "Requested a demo {n} times"),
    "call": ("calls", "Had {n} calls with sales"),
    "meeting": ("meetings", "Had {n} meetings with sales"),
}


@dataclass(frozen=True)
class FeatureInfo:
    """One column of the feature matrix, with what a salesperson needs to read it."""

    name: str
    label: str
    unit: str
    kind: str  # categorical | numeric | age | count | recency | score | trend | active_days
    group: str  # reasons are given per group (an attribute, an event type, overall engagement)
    event_type: str | None = None
    window: int | None = None


@dataclass
class FeatureSpec:
    """What the feature builder learned from training data; saved inside the model bundle."""

    categories: dict[str, list[str]]
    numeric: list[str]
    event_types: list[str]
    windows: list[int]
    half_life_days: float
    has_time: bool
    features: list[FeatureInfo] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.features) if f.kind == "categorical"]

    @property
    def attribute_columns(self) -> list[str]:
        return list(self.categories) + list(self.numeric)

    def lookup(self, column: str) -> dict[str, int]:
        """Category -> code; rare and unseen values share the 'other' code (len(categories))."""
        cache = self.__dict__.setdefault("_lookups", {})
        if column not in cache:
            cache[column] = {c: i for i, c in enumerate(self.categories[column])}
        return cache[column]


# ---------------------------------------------------------------- spec


def infer_attribute_columns(
    leads: pd.DataFrame, config: Config
) -> tuple[list[str], list[str], list[str]]:
    """Split attribute columns into categorical and numeric; also return the skipped ones."""
    data = config.data
    excluded = set(RESERVED) | set(data.ignore) | set(data.leaking)
    cat_declared, num_declared = data.categorical, data.numeric
    categorical, numeric, skipped = [], [], []
    for column in leads.columns:
        if column in excluded:
            continue
        series = leads[column]
        if cat_declared is not None and column in cat_declared:
            categorical.append(column)
        elif num_declared is not None and column in num_declared:
            numeric.append(column)
        elif cat_declared is not None and num_declared is not None:
            skipped.append(column)  # both lists declared: anything else is not a feature
        elif pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            if pd.api.types.is_datetime64_any_dtype(series):
                skipped.append(column)
            elif series.nunique(dropna=True) > max(200, 0.2 * len(series)):
                skipped.append(column)  # names, e-mails, free text: not a category
            else:
                categorical.append(column)
        else:
            numeric.append(column)
    return categorical, numeric, skipped


def fit_feature_spec(
    leads: pd.DataFrame, events: pd.DataFrame | None, config: Config
) -> FeatureSpec:
    """Learn categories, event types and the feature list from the training leads."""
    categorical, numeric, _ = infer_attribute_columns(leads, config)
    fcfg = config.features
    categories = {}
    for column in categorical:
        counts = pd.Series(
            _normalise_categories(leads[column].to_numpy(dtype=object))
        ).value_counts()
        keep = counts[counts >= fcfg.min_category_count].index[: fcfg.max_categories]
        categories[column] = sorted(str(v) for v in keep)
    has_time = "created_at" in leads.columns
    if fcfg.event_types is not None:
        event_types = list(fcfg.event_types)
    elif events is not None and len(events) and has_time:
        event_types = sorted(str(v) for v in events["event_type"].dropna().unique())
    else:
        event_types = []
    spec = FeatureSpec(
        categories=categories,
        numeric=numeric,
        event_types=event_types if has_time else [],
        windows=sorted(fcfg.windows_days),
        half_life_days=fcfg.decay_half_life_days,
        has_time=has_time,
    )
    spec.features = _catalogue(spec)
    return spec


def _catalogue(spec: FeatureSpec) -> list[FeatureInfo]:
    """The ordered feature list with labels and units."""
    out = [FeatureInfo(c, _title(c), "", "categorical", f"attr:{c}") for c in spec.categories]
    out += [FeatureInfo(c, _title(c), "", "numeric", f"attr:{c}") for c in spec.numeric]
    if not spec.has_time:
        return out
    out.append(FeatureInfo("lead_age_days", "Lead age", "days", "age", "age"))
    for etype in spec.event_types:
        noun = _noun(etype)
        for w in spec.windows:
            out.append(
                FeatureInfo(
                    f"{etype}_count_{w}d",
                    f"{noun.capitalize()} in the last {w} days",
                    noun,
                    "count",
                    f"event:{etype}",
                    etype,
                    w,
                )
            )
        out.append(
            FeatureInfo(
                f"{etype}_days_since",
                f"Days since last {_singular(etype)}",
                "days",
                "recency",
                f"event:{etype}",
                etype,
            )
        )
    if spec.event_types:
        out += [
            FeatureInfo(
                "engagement_score",
                "Engagement score (time-decayed)",
                "points",
                "score",
                "engagement",
            ),
            FeatureInfo(
                "engagement_trend_7d",
                "Activity in the last 7 days vs the 30 before",
                "events/week",
                "trend",
                "engagement",
            ),
            FeatureInfo(
                "active_days_30d",
                "Active days in the last 30 days",
                "days",
                "active_days",
                "engagement",
            ),
            FeatureInfo(
                "days_since_any_activity",
                "Days since any activity",
                "days",
                "recency",
                "engagement",
            ),
        ]
    return out


def _title(column: str) -> str:
    return column.replace("_", " ").strip().capitalize()


def _noun(etype: str) -> str:
    return EVENT_PHRASES.get(etype, (f"'{etype}' events", ""))[0]


def _singular(etype: str) -> str:
    return etype.replace("_", " ")


# ---------------------------------------------------------------- snapshots


def make_snapshots(
    leads: pd.DataFrame, offsets_days: Sequence[float], horizon_days: float, cutoff: np.datetime64
) -> pd.DataFrame:
    """Training rows: each lead at each offset while open, with a fully observed label window.

    Returns `row` (position in `leads`), `lead_id`, `as_of`, `label`. A snapshot exists only if
    the lead is still open at as_of and as_of + horizon <= cutoff (the label is known).
    """
    created = _days(leads["created_at"].to_numpy())
    converted = _days(leads["converted_at"].to_numpy())
    cut = _days(np.array([cutoff]))[0]
    rows, as_of = [], []
    for offset in offsets_days:
        t = created + offset
        still_open = np.isnan(converted) | (converted > t)
        ok = still_open & (t + horizon_days <= cut)
        rows.append(np.flatnonzero(ok))
        as_of.append(t[ok])
    row = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    t = np.concatenate(as_of) if as_of else np.empty(0)
    conv = converted[row]
    label = (~np.isnan(conv)) & (conv <= t + horizon_days)
    order = np.lexsort((row, t))
    return pd.DataFrame(
        {
            "row": row[order],
            "lead_id": leads["lead_id"].to_numpy()[row[order]],
            "as_of": _from_days(t[order]),
            "label": label[order].astype(np.int8),
        }
    )


def table_snapshots(leads: pd.DataFrame) -> pd.DataFrame:
    """Single-table exports without time: each closed lead is one snapshot, label from status."""
    closed = np.flatnonzero(leads["status"].to_numpy() != "open")
    return pd.DataFrame(
        {
            "row": closed,
            "lead_id": leads["lead_id"].to_numpy()[closed],
            "as_of": pd.NaT,
            "label": (leads["status"].to_numpy()[closed] == "converted").astype(np.int8),
        }
    )


# ---------------------------------------------------------------- matrix, pandas entry


def build_features(
    spec: FeatureSpec,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    as_of: object = None,
) -> np.ndarray:
    """Feature matrix (float64, one row per row of `leads`) as of `as_of`.

    `as_of` is a scalar timestamp, an array with one timestamp per lead row, or None (now).
    Lead rows may repeat (training snapshots); events are matched on lead_id.
    """
    _require_columns(spec, leads)
    n = len(leads)
    attrs = {c: leads[c].to_numpy() for c in spec.attribute_columns}
    if not spec.has_time:
        return _feature_matrix(spec, attrs, n, None, None, None)
    as_of_days = _as_of_days(as_of, n)
    created = _days(leads["created_at"].to_numpy())
    ev = None
    if spec.event_types and events is not None and len(events):
        ev = _event_arrays(spec, leads["lead_id"].to_numpy(), events)
    return _feature_matrix(spec, attrs, n, created, as_of_days, ev)


def _require_columns(spec: FeatureSpec, leads: pd.DataFrame) -> None:
    needed = spec.attribute_columns + (["created_at"] if spec.has_time else [])
    missing = [c for c in needed if c not in leads.columns]
    if missing:
        raise SchemaError("leads", missing[0], f"missing column(s) the model needs: {missing}")


def _as_of_days(as_of: object, n: int) -> np.ndarray:
    """as_of as float days per row: None (now), one timestamp, or one per row."""
    if as_of is None:
        as_of = pd.Timestamp.now(tz="UTC")
    if np.ndim(as_of) == 0:
        return np.full(n, _days(np.array([_to_datetime64(as_of)]))[0])
    series = pd.Series(pd.to_datetime(np.asarray(as_of)))
    if series.dt.tz is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    days = _days(series.to_numpy())
    if len(days) != n:
        raise SchemaError("snapshots", "as_of", f"expected {n} timestamps, got {len(days)}")
    return days


def _event_arrays(
    spec: FeatureSpec, lead_ids: np.ndarray, events: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Events as (lead row group code, day, type code) arrays; leads may repeat in `lead_ids`."""
    uniques, inverse = np.unique(lead_ids, return_inverse=True)
    pos = np.searchsorted(uniques, events["lead_id"].to_numpy())
    pos = np.clip(pos, 0, max(len(uniques) - 1, 0))
    known = uniques[pos] == events["lead_id"].to_numpy()
    types = pd.Categorical(events["event_type"], categories=spec.event_types).codes
    keep = known & (types >= 0)
    t = _days(events["occurred_at"].to_numpy())[keep]
    return pos[keep], t, types[keep].astype(np.int64), inverse


# ---------------------------------------------------------------- matrix, dict entry


def build_row(
    spec: FeatureSpec,
    lead: Mapping[str, object],
    events: Sequence[Mapping[str, object]] = (),
    as_of: object = None,
) -> np.ndarray:
    """One lead's feature row (1 x d) from plain dicts: the fast path, same definitions."""
    attrs = {c: np.array([lead.get(c)], dtype=object) for c in spec.attribute_columns}
    if not spec.has_time:
        return _feature_matrix(spec, attrs, 1, None, None, None)
    as_of_days = _as_of_days(as_of, 1)
    created = _days(np.array([_to_datetime64(lead.get("created_at"))]))
    ev = None
    if spec.event_types and events:
        type_code = {e: i for i, e in enumerate(spec.event_types)}
        codes = np.array([type_code.get(str(e.get("event_type")), -1) for e in events])
        t = _days(np.array([_to_datetime64(e.get("occurred_at")) for e in events]))
        keep = codes >= 0
        ev = (np.zeros(int(keep.sum()), dtype=np.int64), t[keep], codes[keep], np.zeros(1, int))
    return _feature_matrix(spec, attrs, 1, created, as_of_days, ev)


def _to_datetime64(value: object) -> np.datetime64:
    if value is None:
        return np.datetime64("NaT", "us")
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "us")


# ---------------------------------------------------------------- the one implementation


def _feature_matrix(
    spec: FeatureSpec,
    attrs: Mapping[str, np.ndarray],
    n: int,
    created: np.ndarray | None,
    as_of: np.ndarray | None,
    ev: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """Every feature of the catalogue, in order, for n rows."""
    columns: dict[str, np.ndarray] = {}
    for column in spec.categories:
        columns[column] = encode_categorical(attrs[column], spec.lookup(column))
    for column in spec.numeric:
        columns[column] = _numeric(attrs[column], column)
    if spec.has_time:
        columns["lead_age_days"] = np.maximum(as_of - created, 0.0)
        columns.update(_engagement(spec, n, as_of, ev))
    out = np.empty((n, len(spec.features)), dtype=np.float64)
    for j, info in enumerate(spec.features):
        out[:, j] = columns[info.name]
    return out


def encode_categorical(values: np.ndarray, lookup: Mapping[str, int]) -> np.ndarray:
    """Codes for LightGBM's native categoricals: known -> index, rare/unseen -> 'other', NaN."""
    other = float(len(lookup))
    normalised = _normalise_categories(values)
    if len(values) <= 32:
        return np.array(
            [MISSING if v is None else float(lookup.get(v, other)) for v in normalised],
            dtype=np.float64,
        )
    codes = normalised.map(lookup).astype("float64")
    missing = normalised.isna().to_numpy()
    out = codes.to_numpy(dtype=np.float64, na_value=np.nan).copy()
    out[np.isnan(out) & ~missing] = other
    return out


def _normalise_categories(values: np.ndarray) -> pd.Series | list:
    """Categories as strings; 3.0 and 3 read alike; None/NaN are missing."""

    def norm(v: object) -> str | None:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    if len(values) <= 32:
        return [norm(v) for v in values]
    series = pd.Series(values, dtype=object)
    uniques = pd.unique(series.dropna())
    mapping = {u: norm(u) for u in uniques}
    return series.map(mapping)


def _numeric(values: np.ndarray, column: str) -> np.ndarray:
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    if len(values) <= 32 and all(v is None or type(v) in (float, int) for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    try:
        return pd.to_numeric(pd.Series(values, dtype=object), errors="raise").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    except (ValueError, TypeError):
        bad = [v for v in values if not _is_number(v)][:3]
        raise SchemaError("leads", column, "expected numbers", bad) from None


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return value is None


def _engagement(
    spec: FeatureSpec,
    n: int,
    as_of: np.ndarray,
    ev: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """Counts per window, recency, decayed score, trend and active days, point in time."""
    out: dict[str, np.ndarray] = {}
    if ev is None:
        ev = (np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64), np.arange(n))
    codes, t, types, inverse = ev
    row_code = np.asarray(inverse, dtype=np.int64)
    if len(row_code) != n:
        row_code = np.zeros(n, dtype=np.int64)
    max_w = max(spec.windows + [37])
    origin = np.nanmin(np.concatenate([t, as_of])) - max_w - 1 if len(t) else 0.0
    span = (np.nanmax(np.concatenate([t, as_of])) - origin + max_w + 2) if len(t) else 1.0
    q = row_code * span + (as_of - origin)

    for k, etype in enumerate(spec.event_types):
        sel = types == k
        key = codes[sel] * span + (t[sel] - origin)
        by_key = np.argsort(key, kind="stable")
        key = key[by_key]
        hi = np.searchsorted(key, q, side="right")
        for w in spec.windows:
            out[f"{etype}_count_{w}d"] = (hi - np.searchsorted(key, q - w, side="right")).astype(
                np.float64
            )
        out[f"{etype}_days_since"] = _recency(
            codes[sel][by_key], t[sel][by_key], hi, row_code, as_of
        )

    order = np.lexsort((t, codes))
    key_all = codes[order] * span + (t[order] - origin)
    hi = np.searchsorted(key_all, q, side="right")
    c7 = hi - np.searchsorted(key_all, q - 7, side="right")
    c37 = hi - np.searchsorted(key_all, q - 37, side="right")
    out["engagement_trend_7d"] = c7 - (c37 - c7) * 7.0 / 30.0
    out["days_since_any_activity"] = _recency(codes[order], t[order], hi, row_code, as_of)
    out["engagement_score"] = _decayed(codes[order], t[order], hi, row_code, as_of, spec)
    out["active_days_30d"] = _active_days(codes[order], t[order], q, span, origin, 30)
    return out


def _recency(codes, t, hi, row_code, as_of) -> np.ndarray:
    """Days since the last event at or before as_of for the same lead (NaN if none).

    `codes`, `t` are sorted like the search key; the day is taken from `t` itself (as_of - t),
    never from the packed key, so one lead alone and the same lead in a batch get the same
    float to the last bit (the key's offset depends on the batch)."""
    if len(t) == 0:
        return np.full(len(as_of), np.nan)
    idx = np.maximum(hi - 1, 0)
    same_lead = (hi > 0) & (codes[idx] == row_code)
    return np.where(same_lead, as_of - t[idx], np.nan)


def _decayed(codes, t, hi, row_code, as_of, spec: FeatureSpec) -> np.ndarray:
    """Sum over visible events of 0.5 ** (age / half_life), via per-lead cumulative sums."""
    if len(t) == 0:
        return np.zeros(len(as_of))
    rate = np.log(2.0) / spec.half_life_days
    if codes[0] == codes[-1]:  # one lead (the single-row path): pandas' exact sums, no pandas
        first = np.full(len(t), t[0])  # sorted by time, NaN last
        cum = _kahan_cumsum(np.exp((t - first) * rate))
    else:
        first = pd.Series(t).groupby(codes).transform("min").to_numpy()
        cum = pd.Series(np.exp((t - first) * rate)).groupby(codes).cumsum().to_numpy()
    idx = np.maximum(hi - 1, 0)
    same = (hi > 0) & (codes[idx] == row_code)
    return np.where(same, cum[idx] * np.exp(-(as_of - first[idx]) * rate), 0.0)


def _kahan_cumsum(values: np.ndarray) -> np.ndarray:
    """Cumulative sum with pandas' compensated (Kahan) summation, bit for bit; NaN skipped."""
    out = np.empty(len(values))
    total = comp = 0.0
    for i, v in enumerate(values.tolist()):
        if v != v:
            out[i] = np.nan
            continue
        y = v - comp
        s = total + y
        comp = s - total - y
        total = out[i] = s
    return out


def _active_days(codes, t, q, span, origin, window: int) -> np.ndarray:
    """Distinct days with activity in the window, a day counted from its first event on.

    `codes`, `t` come sorted by (lead, time), so each (lead, day) is one run starting at its
    first event."""
    seen = ~np.isnan(t)
    codes, t = codes[seen], t[seen]
    if len(t) == 0:
        return np.zeros(len(q))
    day = np.floor(t)
    first = np.ones(len(t), dtype=bool)
    first[1:] = (codes[1:] != codes[:-1]) | (day[1:] != day[:-1])
    key = np.sort(codes[first] * span + (t[first] - origin))
    hi = np.searchsorted(key, q, side="right")
    return (hi - np.searchsorted(key, q - window, side="right")).astype(np.float64)


# ---------------------------------------------------------------- reasons text


def reason_text(spec: FeatureSpec, group: str, values: Mapping[str, float]) -> str:
    """Plain language for one reason group, from the lead's feature values."""
    kind, _, name = group.partition(":")
    if kind == "attr":
        value = values.get(name)
        if name in spec.categories:
            return f"{_title(name)}: {_category_name(spec, name, value)}"
        return f"{_title(name)}: {'unknown' if _nan(value) else _fmt(value)}"
    if kind == "age":
        return f"Lead created {_days_text(values.get('lead_age_days', 0))} ago"
    if kind == "event":
        return _event_text(spec, name, values)
    score = values.get("engagement_score", 0.0)
    active = values.get("active_days_30d", 0.0)
    since = values.get("days_since_any_activity", np.nan)
    if _nan(since):
        return "No recorded activity yet"
    if active == 0:
        return f"No activity in the last 30 days (last activity {_days_text(since)} ago)"
    return f"Active on {_fmt(active)} of the last 30 days (engagement score {score:.1f})"


def _event_text(spec: FeatureSpec, etype: str, values: Mapping[str, float]) -> str:
    noun, verb = EVENT_PHRASES.get(etype, (f"'{etype}' events", f"{{n}} '{etype}' events"))
    for w in spec.windows:
        n = values.get(f"{etype}_count_{w}d", 0.0)
        if n > 0:
            times = verb.format(n=_fmt(n))
            if n == 1:
                times = times.replace(" 1 times", " once").replace("1 emails", "1 email")
                times = times.replace("1 forms", "1 form").replace("1 webinars", "1 webinar")
                times = times.replace("1 calls", "1 call").replace("1 meetings", "1 meeting")
                times = times.replace("1 email links", "1 email link")
                times = times.replace("1 pieces", "1 piece")
            return f"{times} in the last {w} days"
    since = values.get(f"{etype}_days_since", np.nan)
    longest = spec.windows[-1]
    if _nan(since):
        return f"No {noun} yet"
    return f"No {noun} in the last {longest} days (last one {_days_text(since)} ago)"


def _category_name(spec: FeatureSpec, column: str, code: float | None) -> str:
    if _nan(code):
        return "unknown"
    cats = spec.categories[column]
    return cats[int(code)] if int(code) < len(cats) else "other"


def _nan(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _days_text(days: float) -> str:
    whole = int(np.floor(days))
    return "less than a day" if whole < 1 else ("1 day" if whole == 1 else f"{whole} days")


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.1f}"


# ---------------------------------------------------------------- time helpers


def _days(values: np.ndarray) -> np.ndarray:
    """Timestamps (datetime64, any unit; NaT allowed) to float days since the epoch."""
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = pd.to_datetime(pd.Series(arr)).to_numpy()
    arr = arr.astype("datetime64[us]")
    ints = arr.astype(np.int64)
    out = ints / DAY_US
    out[np.isnat(arr)] = np.nan
    return out


def _from_days(days: np.ndarray) -> np.ndarray:
    return np.round(days * DAY_US).astype(np.int64).astype("datetime64[us]")


def data_cutoff(leads: pd.DataFrame, events: pd.DataFrame | None) -> np.datetime64:
    """The latest moment the data knows about: labels are observed up to here."""
    stamps = [leads["created_at"].max(), leads["converted_at"].max()]
    if events is not None and len(events):
        stamps.append(events["occurred_at"].max())
    return np.datetime64(max(pd.Timestamp(s) for s in stamps if pd.notna(s)), "us")
