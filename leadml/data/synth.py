"""A seeded synthetic lead database with a known hidden mechanism (fully vectorised numpy).

Each lead has a latent intent: an attribute score (source, firmographics, BANT) plus hidden
noise. Engagement rises with intent; converters show a ramp of high-intent events (pricing page,
demo request, call, meeting) in the weeks before `converted_at`, so point-in-time engagement
features carry signal that attributes alone do not. Source mix and channel quality drift slowly;
`drift=True` adds a strong shift in the latest fifth of the period (for monitoring tests).

The history ends today by default (UTC midnight), so leads scored "now" are scored as of their
data's end; `end` pins it, and a given seed and end always give the same data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadml.data.io import mask_url, write_tables
from leadml.errors import ConfigError
from leadml.schema import EVENTS, LEADS, TIME_DTYPE, utc_now

SPAN_DAYS = 730
DAY = 86_400
DRIFT_START = 0.8  # fraction of the period after which drift=True shifts the world

# name, share at start, share at end, share after DRIFT_START with drift=True, effect on intent
_SOURCES = (
    ("web_form", 0.22, 0.20, 0.12, 0.3),
    ("referral", 0.10, 0.09, 0.05, 1.0),
    ("trade_show", 0.10, 0.06, 0.04, 0.4),
    ("paid_search", 0.16, 0.24, 0.34, 0.2),
    ("webinar", 0.09, 0.10, 0.06, 0.5),
    ("partner", 0.08, 0.08, 0.05, 0.7),
    ("organic", 0.15, 0.13, 0.09, 0.3),
    ("cold_outbound", 0.10, 0.10, 0.25, -0.8),
)
PAID_SEARCH_DECAY = 0.6  # paid search leads lose this much intent over the period
_COUNTRIES = (
    ("United States", 0.38, 0.1),
    ("United Kingdom", 0.10, 0.1),
    ("Germany", 0.08, 0.1),
    ("France", 0.06, 0.0),
    ("Canada", 0.06, 0.1),
    ("Australia", 0.04, 0.0),
    ("India", 0.09, -0.3),
    ("Brazil", 0.05, -0.2),
    ("Netherlands", 0.03, 0.1),
    ("Spain", 0.03, -0.1),
    ("Japan", 0.03, 0.0),
    ("Mexico", 0.05, -0.2),
)
_INDUSTRIES = (
    ("Software", 0.20, 0.4),
    ("Financial Services", 0.12, 0.3),
    ("Healthcare", 0.10, 0.1),
    ("Retail", 0.10, -0.1),
    ("Manufacturing", 0.12, 0.2),
    ("Education", 0.07, -0.4),
    ("Government", 0.05, -0.3),
    ("Media", 0.06, -0.1),
    ("Logistics", 0.08, 0.0),
    ("Energy", 0.05, 0.1),
    ("Other", 0.05, -0.2),
)
# band, share, effect, employees low, employees high, share with a free e-mail domain, budget median
_SIZES = (
    ("1-10", 0.25, -0.6, 1, 10, 0.55, 4_000),
    ("11-50", 0.27, -0.1, 11, 50, 0.30, 12_000),
    ("51-200", 0.22, 0.3, 51, 200, 0.12, 35_000),
    ("201-1000", 0.16, 0.5, 201, 1000, 0.06, 90_000),
    ("1000+", 0.10, 0.4, 1001, 20_000, 0.04, 240_000),
)
# seniority, share, effect, P(decision_maker), P(influencer), P(user)
_SENIORITY = (
    ("c_level", 0.07, 0.5, 0.75, 0.20, 0.02),
    ("vp", 0.09, 0.6, 0.60, 0.30, 0.05),
    ("director", 0.15, 0.5, 0.35, 0.45, 0.15),
    ("manager", 0.25, 0.2, 0.15, 0.50, 0.30),
    ("individual", 0.32, -0.3, 0.03, 0.30, 0.60),
    ("unknown", 0.12, -0.4, 0.05, 0.15, 0.20),
)
_AUTHORITY = (("decision_maker", 0.5), ("influencer", 0.2), ("user", -0.2), ("unknown", -0.1))
_NEED = (("high", 0.20, 0.8), ("medium", 0.30, 0.3), ("low", 0.20, -0.6), ("unknown", 0.30, 0.0))
_TIMELINE = (
    ("<1m", 0.10, 0.7),
    ("1-3m", 0.20, 0.4),
    ("3-6m", 0.20, 0.0),
    ("6m+", 0.15, -0.5),
    ("unknown", 0.35, -0.1),
)
# event type, expected count early in a lead's life at intent 0, sensitivity to intent,
# daily rate that goes on while the lead is open, share of the pre-conversion ramp
_EVENTS = (
    ("email_open", 4.5, 0.3, 0.020, 0.00),
    ("email_click", 1.0, 0.5, 0.004, 0.08),
    ("web_visit", 3.2, 0.5, 0.006, 0.14),
    ("pricing_page_view", 0.35, 0.9, 0.0, 0.28),
    ("form_submit", 0.25, 0.4, 0.0, 0.02),
    ("webinar_attend", 0.20, 0.4, 0.0, 0.02),
    ("content_download", 0.50, 0.4, 0.0, 0.04),
    ("demo_request", 0.08, 1.0, 0.0, 0.12),
    ("call", 0.40, 0.6, 0.0, 0.18),
    ("meeting", 0.12, 0.9, 0.0, 0.12),
)
_FIRST_EVENT = {"web_form": "form_submit", "webinar": "webinar_attend", "paid_search": "web_visit"}
_FIRST_NAMES = np.array(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "  # noqa: SIM905
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Priya Wei Yuki Lars Sofia Mateo "
    "Amara Lukas Chloe Omar Ines Hiroshi Fatima Noah Emma Liam Olivia Arjun Ana Pierre".split()
)
_LAST_NAMES = np.array(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "  # noqa: SIM905
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Patel Chen Tanaka Larsen Rossi "
    "Silva Okafor Muller Dubois Haddad Costa Sato Khan Nguyen Schmidt Kowalski Singh Murphy".split()
)
_COMPANY_WORDS = np.array(
    "Acme Northwind Globex Initech Umbrella Stark Wayne Vandelay Hooli Pied Blue Red Green "  # noqa: SIM905
    "Summit Vertex Apex Nimbus Quantum Atlas Orion Helix Cobalt Silver Iron Maple Cedar Harbor "
    "Lumen Nova Polar Aurora Zenith Crescent Falcon Beacon Granite Pioneer Tidal Vector".split()
)
_COMPANY_SUFFIXES = np.array(
    "Labs Systems Analytics Logistics Health Capital Retail Foods Energy Media Software "  # noqa: SIM905
    "Partners Group Industries Solutions Networks Robotics Bank Insurance Consulting".split()
)


@dataclass(frozen=True)
class GenerateSummary:
    """What `generate_database` wrote."""

    url: str
    leads: int
    events: int
    conversion_rate: float
    open_leads: int
    seconds: float


def generate_leads(
    n_leads: int, seed: int, *, end: object = None, drift: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical `leads` and `lead_events` for `n_leads` leads created over two years before `end`.

    Deterministic for a seed and `end`; nothing is later than `end` (default: today) or now.
    """
    if n_leads < 1:
        raise ValueError("n_leads must be at least 1")
    rng = np.random.default_rng(seed)
    stop = _end_seconds(end)
    created = _creation_times(rng, n_leads, stop)
    frac = (created - (stop - SPAN_DAYS * DAY)) / (SPAN_DAYS * DAY)
    shifted = drift & (frac > DRIFT_START)
    attrs, score = _attributes(rng, frac, shifted)
    intent = score + rng.normal(0.0, 1.4, n_leads)
    outcome = _outcomes(rng, intent, created, stop, shifted)
    events = _events(rng, intent, created, outcome, stop, attrs["source"], frac, shifted)
    return _leads_frame(created, outcome, attrs), events


def generate_database(
    url: str,
    n_leads: int,
    seed: int,
    drift: bool = False,
    replace: bool = False,
    *,
    end: object = None,
) -> GenerateSummary:
    """Generate leads and events ending at `end` (default today) and write both tables to `url`
    in one transaction."""
    started = time.perf_counter()
    leads, events = generate_leads(n_leads, seed, end=end, drift=drift)
    write_tables(url, {LEADS: leads, EVENTS: events}, replace=replace)
    return GenerateSummary(
        url=mask_url(url),
        leads=len(leads),
        events=len(events),
        conversion_rate=float((leads["status"] == "converted").mean()),
        open_leads=int((leads["status"] == "open").sum()),
        seconds=time.perf_counter() - started,
    )


def default_end() -> pd.Timestamp:
    """Today at 00:00 UTC: the same all day, so one day's runs of one seed agree."""
    return utc_now().normalize()


def _end_seconds(end: object) -> int:
    """The end of the period in epoch seconds, never later than now."""
    try:
        stamp = default_end() if end is None else pd.Timestamp(end)
    except (ValueError, TypeError):
        raise ConfigError(f"the history's end must be a date (YYYY-MM-DD), got {end!r}") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    stamp = min(stamp, utc_now())
    return int(stamp.timestamp())


def _creation_times(rng: np.random.Generator, n: int, stop: int) -> np.ndarray:
    """Sorted creation times (epoch s): volume grows 2.5x over the period, fewer on weekends."""
    day = np.arange(SPAN_DAYS)
    start = stop - SPAN_DAYS * DAY
    weekday = ((start // DAY + day + 3) % 7).astype(int)  # 1970-01-01 was a Thursday
    weight = np.exp(np.log(2.5) * day / SPAN_DAYS) * np.where(weekday >= 5, 0.35, 1.0)
    weight *= 1 + 0.12 * np.sin(2 * np.pi * day / 365.25)
    days = rng.choice(SPAN_DAYS, size=n, p=weight / weight.sum())
    seconds = np.clip(rng.normal(14, 3.5, n), 0, 23.99) * 3600
    created = start + days * DAY + seconds.astype(np.int64)
    return np.sort(np.minimum(created, stop - 3600))


def _pick(rng: np.random.Generator, shares: np.ndarray) -> np.ndarray:
    """One category index per row of `shares` (a leads x categories matrix of probabilities)."""
    cumulative = np.cumsum(shares, axis=1)
    draws = rng.random(len(shares)) * cumulative[:, -1]
    return np.minimum((draws[:, None] > cumulative).sum(axis=1), shares.shape[1] - 1)


def _choose(rng: np.random.Generator, n: int, table: tuple, share_at: int = 1) -> np.ndarray:
    shares = np.array([row[share_at] for row in table], dtype=float)
    return rng.choice(len(table), size=n, p=shares / shares.sum())


def _column(table: tuple, at: int) -> np.ndarray:
    return np.array([row[at] for row in table])


def _index(table: tuple, name: str) -> int:
    return [row[0] for row in table].index(name)


def _attributes(
    rng: np.random.Generator, frac: np.ndarray, shifted: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Lead attributes (names and firmographics, source, BANT) and their intent score."""
    n = len(frac)
    source = _pick_source(rng, frac, shifted)
    country = _choose(rng, n, _COUNTRIES)
    industry = _choose(rng, n, _INDUSTRIES)
    size = _choose(rng, n, _SIZES)
    seniority = _choose(rng, n, _SENIORITY)
    authority = _pick(rng, _authority_shares(seniority))
    need = _choose(rng, n, _NEED)
    timeline = _choose(rng, n, _TIMELINE)
    free_mail = rng.random(n) < _column(_SIZES, 5)[size]
    employees, revenue, budget = _firmographics(rng, size)
    score = (
        _column(_SOURCES, 4)[source]
        - PAID_SEARCH_DECAY * frac * (source == _index(_SOURCES, "paid_search"))
        + _column(_COUNTRIES, 2)[country]
        + _column(_INDUSTRIES, 2)[industry]
        + _column(_SIZES, 2)[size]
        + _column(_SENIORITY, 2)[seniority]
        + _column(_AUTHORITY, 1)[authority]
        + _column(_NEED, 2)[need]
        + _column(_TIMELINE, 2)[timeline]
        - 0.5 * free_mail
        + np.where(np.isnan(budget), -0.2, 0.3)
        - 1.2
    )
    attrs = {
        "name": _names(rng, n),
        "company": _companies(rng, n),
        "email_domain_type": np.where(free_mail, "free", "business"),
        "country": _column(_COUNTRIES, 0)[country],
        "industry": _column(_INDUSTRIES, 0)[industry],
        "company_size": _column(_SIZES, 0)[size],
        "employees": employees,
        "annual_revenue": revenue,
        "job_seniority": _column(_SENIORITY, 0)[seniority],
        "source": _column(_SOURCES, 0)[source],
        "budget": budget,
        "authority": _column(_AUTHORITY, 0)[authority],
        "need": _column(_NEED, 0)[need],
        "timeline": _column(_TIMELINE, 0)[timeline],
    }
    return attrs, score


def _pick_source(rng: np.random.Generator, frac: np.ndarray, shifted: np.ndarray) -> np.ndarray:
    """Source mix moving slowly from the start shares to the end shares (or the drifted ones)."""
    first, last, drifted = (_column(_SOURCES, at).astype(float) for at in (1, 2, 3))
    shares = first + (last - first) * frac[:, None]
    shares[shifted] = drifted
    return _pick(rng, shares)


def _authority_shares(seniority: np.ndarray) -> np.ndarray:
    known = np.stack([_column(_SENIORITY, at).astype(float) for at in (3, 4, 5)], axis=1)
    return np.column_stack([known, 1 - known.sum(axis=1)])[seniority]


def _firmographics(
    rng: np.random.Generator, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Employees (log-uniform in the band), revenue and budget, with values missing as in a CRM."""
    n = len(size)
    low, high = (np.log(_column(_SIZES, at).astype(float)[size]) for at in (3, 4))
    employees = np.rint(np.exp(low + (high - low) * rng.random(n)))
    revenue = np.round(employees * np.exp(rng.normal(np.log(120_000), 0.6, n)), -3)
    has_budget = rng.random(n) < np.array([0.25, 0.35, 0.45, 0.55, 0.6])[size]
    budget = np.round(_column(_SIZES, 6).astype(float)[size] * np.exp(rng.normal(0, 0.7, n)), -2)
    employees[rng.random(n) < 0.15] = np.nan
    revenue[rng.random(n) < 0.30] = np.nan
    budget[~has_budget] = np.nan
    return employees, revenue, budget


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    first = _FIRST_NAMES[rng.integers(len(_FIRST_NAMES), size=n)].astype(object)
    return first + " " + _LAST_NAMES[rng.integers(len(_LAST_NAMES), size=n)].astype(object)


def _companies(rng: np.random.Generator, n: int) -> np.ndarray:
    word = _COMPANY_WORDS[rng.integers(len(_COMPANY_WORDS), size=n)].astype(object)
    return (
        word + " " + _COMPANY_SUFFIXES[rng.integers(len(_COMPANY_SUFFIXES), size=n)].astype(object)
    )


@dataclass(frozen=True)
class _Outcome:
    """Hidden fates: conversion or disqualification times (epoch s), censored at the end."""

    converts: np.ndarray  # converts on or before the end
    converted_at: np.ndarray
    disqualified: np.ndarray
    closed_at: np.ndarray  # converted_at, disqualification time, or the end for open leads


def _outcomes(
    rng: np.random.Generator,
    intent: np.ndarray,
    created: np.ndarray,
    stop: int,
    shifted: np.ndarray,
) -> _Outcome:
    """Who converts (logistic in intent) and when (median ~25 days, sooner with more intent)."""
    n = len(intent)
    logit = -2.2 + 1.0 * intent - 0.7 * shifted
    will_convert = rng.random(n) < 1 / (1 + np.exp(-logit))
    delay = np.exp(rng.normal(np.log(25) - 0.15 * intent, 0.7))
    conversion = created + (np.clip(delay, 0.05, 365) * DAY).astype(np.int64)
    converts = will_convert & (conversion <= stop)
    quit_after = np.exp(rng.normal(np.log(35), 0.8, n))
    disqualification = created + (np.clip(quit_after, 0.5, 400) * DAY).astype(np.int64)
    disqualified = ~will_convert & (rng.random(n) < 0.55) & (disqualification <= stop)
    closed_at = np.where(converts, conversion, np.where(disqualified, disqualification, stop))
    return _Outcome(converts, conversion, disqualified, closed_at)


def _events(
    rng: np.random.Generator,
    intent: np.ndarray,
    created: np.ndarray,
    outcome: _Outcome,
    stop: int,
    source: np.ndarray,
    frac: np.ndarray,
    shifted: np.ndarray,
) -> pd.DataFrame:
    """All engagement events, sorted by lead and time; none after the end."""
    parts = [
        _engagement(rng, intent, created, outcome.closed_at, frac, shifted),
        _ramps(rng, intent, created, outcome),
        _first_touches(created, source),
        _after_close(rng, outcome, stop),
    ]
    lead, when, kind = (np.concatenate([p[i] for p in parts]) for i in range(3))
    keep = (when <= stop) & (when >= created[lead])
    lead, when, kind = lead[keep], when[keep], kind[keep]
    # one int64 sort key (lead, second, kind) is several times faster than np.lexsort
    span = when - (stop - SPAN_DAYS * DAY)
    order = np.argsort((lead.astype(np.int64) << 31) | (span << 4) | kind)
    lead, when, kind = lead[order], when[order], kind[order]
    return pd.DataFrame(
        {
            "lead_id": lead + 1,
            "occurred_at": when.astype("datetime64[s]").astype(TIME_DTYPE),
            "event_type": _text(_column(_EVENTS, 0), kind),
            "value": _event_values(rng, kind, intent[lead]),
        }
    )


def _text(names: np.ndarray, index: np.ndarray) -> pd.Series:
    """Strings picked from `names` as a text column (object first: much faster than numpy str)."""
    return pd.Series(names.astype(object)[index], dtype="str")


def _engagement(
    rng: np.random.Generator,
    intent: np.ndarray,
    created: np.ndarray,
    closed_at: np.ndarray,
    frac: np.ndarray,
    shifted: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background engagement while open: a burst fading over ~3 weeks plus a steady trickle."""
    tau = 20.0
    life = np.maximum(closed_at - created, 0) / DAY
    level = np.where(shifted, 0.6, 1.0) * (1 - 0.25 * frac)  # e-mail fatigue; drift cuts it
    burst = _column(_EVENTS, 1)[None, :] * np.exp(_column(_EVENTS, 2)[None, :] * intent[:, None])
    burst_counts = rng.poisson(burst * level[:, None] * (1 - np.exp(-life / tau))[:, None])
    trickle = _column(_EVENTS, 3)[None, :] * np.exp(0.3 * intent[:, None]) * life[:, None]
    trickle_counts = rng.poisson(trickle * level[:, None])
    lead_b, kind_b = _expand(burst_counts)
    fade = 1 - np.exp(-life[lead_b] / tau)
    offset_b = -tau * np.log(1 - rng.random(len(lead_b)) * fade)
    lead_t, kind_t = _expand(trickle_counts)
    offset_t = rng.random(len(lead_t)) * life[lead_t]
    lead = np.concatenate([lead_b, lead_t])
    offset = np.concatenate([offset_b, offset_t])
    return lead, created[lead] + (offset * DAY).astype(np.int64), np.concatenate([kind_b, kind_t])


def _ramps(
    rng: np.random.Generator, intent: np.ndarray, created: np.ndarray, outcome: _Outcome
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """High-intent events in the weeks before a conversion (and a weaker one before some losses)."""
    n = len(intent)
    evaluating = ~outcome.converts & (rng.random(n) < 0.25 / (1 + np.exp(-(intent - 0.5))))
    mean = np.where(outcome.converts, 4.0 + 0.8 * np.maximum(intent, 0), 0.0)
    mean = np.where(evaluating, 1.6, mean)
    counts = rng.poisson(mean)
    lead = np.repeat(np.arange(n), counts)
    window = (outcome.closed_at[lead] - created[lead]) / DAY
    before = rng.gamma(2.0, 6.0, len(lead))
    before = np.where(before < window, before, window * rng.random(len(lead)))
    kind = _choose(rng, len(lead), _EVENTS, share_at=4)
    return lead, outcome.closed_at[lead] - (before * DAY).astype(np.int64), kind


def _first_touches(
    created: np.ndarray, source: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The event that created the lead (a form, a webinar, a visit from an ad), at created_at."""
    kind = np.full(len(created), -1)
    for channel, event_type in _FIRST_EVENT.items():
        kind[source == channel] = _index(_EVENTS, event_type)
    lead = np.flatnonzero(kind >= 0)
    return lead, created[lead], kind[lead]


def _after_close(
    rng: np.random.Generator, outcome: _Outcome, stop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A thin tail of e-mail opens after a lead closes (customers and lost leads still read mail)."""
    closed = outcome.converts | outcome.disqualified
    counts = rng.poisson(np.where(closed, 1.2, 0.0))
    lead = np.repeat(np.arange(len(closed)), counts)
    after = rng.exponential(30.0, len(lead)) * DAY
    return lead, outcome.closed_at[lead] + after.astype(np.int64), np.zeros(len(lead), dtype=int)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lead, event kind) pairs, one per event, from a leads x kinds matrix of counts."""
    flat = counts.ravel()
    cells = np.repeat(np.arange(flat.size), flat)
    return cells // counts.shape[1], cells % counts.shape[1]


def _event_values(rng: np.random.Generator, kind: np.ndarray, intent: np.ndarray) -> np.ndarray:
    """Pages per web visit, minutes per call or meeting; no value for other events."""
    value = np.full(len(kind), np.nan)
    visit, call, meeting = (kind == _index(_EVENTS, t) for t in ("web_visit", "call", "meeting"))
    value[visit] = 1 + rng.poisson(np.clip(2 + intent[visit], 0.2, None))
    value[call] = np.round(np.exp(rng.normal(np.log(8), 0.6, call.sum())), 1)
    value[meeting] = rng.choice([30.0, 45.0, 60.0], size=meeting.sum())
    return value


def _leads_frame(created: np.ndarray, outcome: _Outcome, attrs: dict) -> pd.DataFrame:
    """The canonical leads table, lead_id 1..n in order of creation."""
    status = np.where(
        outcome.converts, "converted", np.where(outcome.disqualified, "disqualified", "open")
    )
    converted_at = np.where(outcome.converts, outcome.converted_at, np.iinfo(np.int64).min)
    columns = {
        "lead_id": np.arange(1, len(created) + 1, dtype=np.int64),
        "created_at": created.astype("datetime64[s]").astype(TIME_DTYPE),
        "status": status.astype(object),
        "converted_at": converted_at.astype("datetime64[s]").astype(TIME_DTYPE),
    } | {
        name: values if values.dtype.kind == "f" else values.astype(object)
        for name, values in attrs.items()
    }
    return pd.DataFrame({name: _as_column(values) for name, values in columns.items()})


def _as_column(values: np.ndarray) -> pd.Series:
    return pd.Series(values, dtype="str") if values.dtype == object else pd.Series(values)
