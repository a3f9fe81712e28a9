"""A seeded synthetic lead database with a known hidden mechanism (fully vectorised numpy).

The mechanism follows how B2B deals are won, with the interactions, thresholds and timing that
make a point-in-time tree model clearly better than a linear one (as in real conversion data):
- Buying happens in an evaluation: a demo request, calls and meetings when sales-led (sales
  works the accounts that fit), a burst of pricing-page and web visits when self-serve (most
  small companies). Won evaluations close within days (self-serve) or weeks (sales-led), ending
  in a negotiation; lost ones stall and go quiet. So a burst in the last week or two counts far
  more than the same burst two months ago, activity that stops is a bad sign, and the first
  pricing view says more than the tenth. Part of the activity is never logged.
- Whether an evaluation starts depends on urgency (a need weighed by the contact's authority,
  the BANT combination) and fit; when it starts depends on the stated timeline, the source
  (inbound hand-raisers at once, trade-show and cold contacts after weeks of follow-up) and the
  company size (budget cycles). A "<1 month" lead still quiet after two months has gone cold,
  a "3-6 months" lead is just becoming due: very old open leads rarely convert.
- Whether it is won depends on account fit, which is about combinations: who buys depends on
  the company size (the founder of a small firm, a VP or director of a mid-size or large one),
  regulated and public buyers need a large organisation, a free e-mail domain is normal for a
  sole trader and a red flag at a large company, mid-size companies (around 400 employees) and
  those earning more per head fit best; plus what the CRM never records.
- BANT works as a combination: a budget that covers the entry price, a timeline under three
  months and a decision maker together lift the chance a lot; any one alone, little. A stated
  budget below the entry price rarely converts.
- Engagement counts mostly when the lead fits: students and researchers on free e-mail read,
  visit and view pricing a lot and rarely buy; colleagues' research at large accounts (matched
  by IP) adds pricing and web visits that say nothing about this lead.
Source mix and channel quality drift slowly; `drift=True` adds a strong shift in the latest fifth
of the period (more cold outbound, fewer deals won, less engagement), for monitoring tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadml.schema import EVENTS, LEADS, TIME_DTYPE, utc_now

DEFAULT_END = pd.Timestamp("2026-06-30")
SPAN_DAYS = 730
DAY = 86_400
DRIFT_START = 0.8  # fraction of the period after which drift=True shifts the world

# Fit, urgency and interest are in log-odds units: evaluating weighs fit by EVALUATE_FIT,
# winning by WIN_FIT (see _outcomes).
# name, share at start, share at end, share after DRIFT_START with drift=True, effect on fit,
# effect on interest, pace (multiplies the days until an evaluation starts)
_SOURCES = (
    ("web_form", 0.22, 0.20, 0.12, 0.2, 0.3, 0.4),
    ("referral", 0.10, 0.09, 0.05, 1.0, 0.0, 1.0),
    ("trade_show", 0.10, 0.06, 0.04, 0.3, 0.0, 3.0),
    ("paid_search", 0.16, 0.24, 0.34, 0.1, 0.3, 0.5),
    ("webinar", 0.09, 0.10, 0.06, 0.3, 0.5, 2.0),
    ("partner", 0.08, 0.08, 0.05, 0.7, -0.1, 1.0),
    ("organic", 0.15, 0.13, 0.09, 0.2, 0.4, 0.7),
    ("cold_outbound", 0.10, 0.10, 0.25, -0.7, -0.6, 3.0),
)
PAID_SEARCH_DECAY = 0.6  # paid search leads lose this much fit over the period
_COUNTRIES = (
    ("United States", 0.38, 0.05),
    ("United Kingdom", 0.10, 0.05),
    ("Germany", 0.08, 0.05),
    ("France", 0.06, 0.0),
    ("Canada", 0.06, 0.05),
    ("Australia", 0.04, 0.0),
    ("India", 0.09, -0.15),
    ("Brazil", 0.05, -0.1),
    ("Netherlands", 0.03, 0.05),
    ("Spain", 0.03, -0.05),
    ("Japan", 0.03, 0.0),
    ("Mexico", 0.05, -0.1),
)
# industry, share, effect on fit, taste for scale: regulated and public buyers need a large
# organisation behind a purchase (+1), digital ones buy in small teams too (-1)
_INDUSTRIES = (
    ("Software", 0.20, 0.2, -1),
    ("Financial Services", 0.12, 0.15, 1),
    ("Healthcare", 0.10, 0.05, 1),
    ("Retail", 0.10, -0.05, 0),
    ("Manufacturing", 0.12, 0.1, 0),
    ("Education", 0.07, -0.2, 1),
    ("Government", 0.05, -0.15, 1),
    ("Media", 0.06, -0.05, -1),
    ("Logistics", 0.08, 0.0, 0),
    ("Energy", 0.05, 0.05, 1),
    ("Other", 0.05, -0.1, 0),
)
_SCALE_FIT = np.array([-2.0, -1.0, 0.0, 1.0, 1.6])  # per company size band, times the taste
# band, share, employees low, employees high, share with a free e-mail domain, budget median,
# effect of a free e-mail domain on fit, share that buys self-serve rather than through sales,
# pace (larger companies wait for budget cycles)
_SIZES = (
    ("1-10", 0.25, 1, 10, 0.55, 4_000, -0.2, 0.85, 0.5),
    ("11-50", 0.27, 11, 50, 0.30, 12_000, -0.5, 0.6, 0.7),
    ("51-200", 0.22, 51, 200, 0.12, 35_000, -0.9, 0.3, 1.0),
    ("201-1000", 0.16, 201, 1000, 0.06, 90_000, -1.2, 0.1, 1.5),
    ("1000+", 0.10, 1001, 20_000, 0.04, 240_000, -1.2, 0.05, 2.0),
)
# seniority, share, P(decision_maker), P(influencer), P(user)
_SENIORITY = (
    ("c_level", 0.07, 0.75, 0.20, 0.02),
    ("vp", 0.09, 0.60, 0.30, 0.05),
    ("director", 0.15, 0.35, 0.45, 0.15),
    ("manager", 0.25, 0.15, 0.50, 0.30),
    ("individual", 0.32, 0.03, 0.30, 0.60),
    ("unknown", 0.12, 0.05, 0.15, 0.20),
)
# persona fit: seniority (rows, as above) x company size (columns, as above); a C-level contact
# at a very large company rarely runs the purchase himself
_PERSONA_FIT = np.array(
    [
        [2.4, 1.6, 0.6, -0.4, -1.8],
        [-2.4, 0.8, 2.2, 1.8, 0.4],
        [-3.6, -0.6, 2.0, 2.6, 2.0],
        [-4.0, -1.6, 0.6, 1.6, 1.4],
        [-2.4, -2.8, -2.4, -2.2, -2.6],
        [-2.6, -2.4, -2.0, -1.8, -2.0],
    ]
)
SWEET_SPOT_LOG10 = 2.6  # fit peaks around 400 employees and falls off on either side
SWEET_SPOT_CURVE = 0.25
REVENUE_PER_HEAD = 120_000  # median; earning more per head, a company can pay for more seats
SPEND_EFFECT = 0.8  # per unit of log revenue per head (clipped to +-1.5)
HIDDEN_FIT = 1.5  # sd of what the CRM never records: incumbents, politics, budget cycles
# students and researchers: P(curious) by (free e-mail, junior or unknown seniority)
_CURIOUS_SHARE = {(True, True): 0.6, (True, False): 0.15, (False, True): 0.08, (False, False): 0.02}
_CURIOUS_SENIORITY = ("individual", "unknown")
CURIOUS_FIT = -2.5
# authority, weight of the stated need (a user's pain rarely starts a purchase)
_AUTHORITY = (("decision_maker", 1.0), ("influencer", 0.5), ("user", 0.0), ("unknown", 0.3))
# need, share, effect on urgency
_NEED = (("high", 0.20, 1.3), ("medium", 0.30, 0.4), ("low", 0.20, -1.0), ("unknown", 0.30, 0.0))
# timeline, share, effect on urgency, median days from creation to an evaluation, soon (BANT)
_TIMELINE = (
    ("<1m", 0.10, 0.4, 2, True),
    ("1-3m", 0.20, 0.2, 20, True),
    ("3-6m", 0.20, 0.0, 60, False),
    ("6m+", 0.15, -0.3, 130, False),
    ("unknown", 0.35, -0.05, 10, False),
)
# BANT parts present (a budget covering the entry price, a timeline under three months, a
# decision maker): 0, 1, 2, 3 -> lift; a stated budget below the entry price costs BUDGET_SHORT
_BANT_LIFT = np.array([0.0, 0.1, 0.5, 2.0])
ENTRY_PRICE = 15_000
BUDGET_SHORT = 1.5
HIDDEN_URGENCY = 1.2
EVALUATE_BASE, EVALUATE_FIT = -1.9, 0.4
WIN_BASE, WIN_FIT, WIN_BANT, HIDDEN_WIN = 0.3, 0.6, 1.5, 1.5
DRIFT_WIN = 0.7  # drift=True: fewer deals won in the latest fifth
# event type, background count early in a lead's life at interest 0, sensitivity to interest,
# daily background rate while the lead is open, weekly rate during a sales-led evaluation and
# during a self-serve one, 1 if sales drives it (scaled by how well the account fits),
# multiplier for curious leads
_EVENTS = (
    ("email_open", 4.0, 0.3, 0.020, 0.0, 0.0, 0, 1.0),
    ("email_click", 1.0, 0.5, 0.004, 0.4, 0.3, 0, 1.0),
    ("web_visit", 2.8, 0.5, 0.006, 0.8, 2.0, 0, 1.5),
    ("pricing_page_view", 0.25, 0.6, 0.0005, 0.2, 1.5, 0, 4.0),
    ("form_submit", 0.25, 0.4, 0.0, 0.05, 0.1, 0, 1.0),
    ("webinar_attend", 0.20, 0.4, 0.0, 0.05, 0.0, 0, 1.5),
    ("content_download", 0.50, 0.4, 0.0, 0.2, 0.3, 0, 2.0),
    ("demo_request", 0.01, 0.6, 0.0, 0.0, 0.0, 0, 0.5),
    ("call", 0.10, 0.4, 0.0, 0.7, 0.05, 1, 0.3),
    ("meeting", 0.01, 0.6, 0.0, 0.6, 0.0, 1, 0.2),
)
LOGGED_EVALUATIONS = 0.5  # share of evaluations whose activity is logged (the rest runs by e-mail)
DEMO_REQUESTS = (0.9, 0.1)  # share of sales-led and self-serve evaluations opened by a demo request
NEGOTIATION_EVENTS = 1.6  # mean events in the days before a won deal is signed
# research bursts a month by colleagues at a 1,000-employee account (matched by reverse IP,
# scaling with the square root of the headcount) during the first days; web visits and pricing
# views in each burst
ACCOUNT_BURSTS = 0.8
ACCOUNT_TRACKING_DAYS = 90
ACCOUNT_BURST_VISITS = (2.0, 1.5)
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

    Deterministic for a seed; nothing is later than `end` (default 2026-06-30) or now.
    """
    if n_leads < 1:
        raise ValueError("n_leads must be at least 1")
    rng = np.random.default_rng(seed)
    stop = _end_seconds(end)
    created = _creation_times(rng, n_leads, stop)
    frac = (created - (stop - SPAN_DAYS * DAY)) / (SPAN_DAYS * DAY)
    shifted = drift & (frac > DRIFT_START)
    attrs, traits = _attributes(rng, frac, shifted)
    outcome = _outcomes(rng, traits, created, stop, shifted)
    events = _events(rng, traits, created, outcome, stop, attrs["source"], frac, shifted)
    return _leads_frame(created, outcome, attrs), events


def generate_database(
    url: str, n_leads: int, seed: int, drift: bool = False, replace: bool = False
) -> GenerateSummary:
    """Generate leads and events and write both tables to `url` in one transaction."""
    from leadml.data.io import safe_url, write_tables

    started = time.perf_counter()
    leads, events = generate_leads(n_leads, seed, drift=drift)
    write_tables(url, {LEADS: leads, EVENTS: events}, replace=replace)
    return GenerateSummary(
        url=safe_url(url),
        leads=len(leads),
        events=len(events),
        conversion_rate=float((leads["status"] == "converted").mean()),
        open_leads=int((leads["status"] == "open").sum()),
        seconds=time.perf_counter() - started,
    )


def _end_seconds(end: object) -> int:
    """The end of the period in epoch seconds, never later than now."""
    stamp = DEFAULT_END if end is None else pd.Timestamp(end)
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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


@dataclass(frozen=True)
class _Traits:
    """The hidden mechanism's inputs, one value per lead (log-odds units unless said otherwise)."""

    fit: np.ndarray  # how well the account fits: recorded attributes plus what the CRM misses
    bant: np.ndarray  # the BANT combination's lift (minus a budget below the entry price)
    urgency: np.ndarray  # how much the account is looking now (need, BANT, unrecorded)
    interest: np.ndarray  # how much the person engages with marketing at all
    curious: np.ndarray  # students and researchers: engaged, never buying
    self_serve: np.ndarray  # buys online (pricing page, checkout) rather than through sales
    headcount: np.ndarray  # true number of employees (the CRM misses some)
    eval_days: np.ndarray  # typical days from creation to an evaluation


def _attributes(
    rng: np.random.Generator, frac: np.ndarray, shifted: np.ndarray
) -> tuple[dict[str, np.ndarray], _Traits]:
    """Lead attributes (names and firmographics, source, BANT) and the hidden traits they drive."""
    n = len(frac)
    code = {"source": _pick_source(rng, frac, shifted)}
    for name, table in (("country", _COUNTRIES), ("industry", _INDUSTRIES), ("size", _SIZES)):
        code[name] = _choose(rng, n, table)
    code["seniority"] = _choose(rng, n, _SENIORITY)
    code["authority"] = _pick(rng, _authority_shares(code["seniority"]))
    code["need"] = _choose(rng, n, _NEED)
    code["timeline"] = _choose(rng, n, _TIMELINE)
    code["free_mail"] = rng.random(n) < _column(_SIZES, 4)[code["size"]]
    employees, revenue, budget, code["headcount"], code["spend"] = _firmographics(rng, code["size"])
    attrs = {
        "name": _names(rng, n),
        "company": _companies(rng, n),
        "email_domain_type": np.where(code["free_mail"], "free", "business"),
        "country": _column(_COUNTRIES, 0)[code["country"]],
        "industry": _column(_INDUSTRIES, 0)[code["industry"]],
        "company_size": _column(_SIZES, 0)[code["size"]],
        "employees": employees,
        "annual_revenue": revenue,
        "job_seniority": _column(_SENIORITY, 0)[code["seniority"]],
        "source": _column(_SOURCES, 0)[code["source"]],
        "budget": budget,
        "authority": _column(_AUTHORITY, 0)[code["authority"]],
        "need": _column(_NEED, 0)[code["need"]],
        "timeline": _column(_TIMELINE, 0)[code["timeline"]],
    }
    return attrs, _traits(rng, frac, code, budget)


def _traits(
    rng: np.random.Generator, frac: np.ndarray, code: dict[str, np.ndarray], budget: np.ndarray
) -> _Traits:
    """Fit, BANT lift, urgency, interest, curiosity, buying motion and pace from the attributes."""
    n = len(frac)
    junior = np.isin(code["seniority"], [_index(_SENIORITY, s) for s in _CURIOUS_SENIORITY])
    share = np.array([[_CURIOUS_SHARE[(f, j)] for j in (False, True)] for f in (False, True)])
    curious = rng.random(n) < share[code["free_mail"].astype(int), junior.astype(int)]
    fit = _fit(rng, frac, code) + CURIOUS_FIT * curious
    parts = (
        (budget >= ENTRY_PRICE).astype(int)
        + _column(_TIMELINE, 4)[code["timeline"]].astype(int)
        + (code["authority"] == _index(_AUTHORITY, "decision_maker"))
    )
    bant = _BANT_LIFT[parts] - BUDGET_SHORT * (budget < ENTRY_PRICE)
    urgency = (
        _column(_NEED, 2)[code["need"]] * _column(_AUTHORITY, 1)[code["authority"]]
        + _column(_TIMELINE, 2)[code["timeline"]]
        + bant
        + rng.normal(0.0, HIDDEN_URGENCY, n)
    )
    interest = (
        0.3 * fit
        + 0.4 * urgency
        + _column(_SOURCES, 5)[code["source"]]
        + 1.0 * curious
        + rng.normal(0.0, 0.6, n)
    )
    self_serve = rng.random(n) < _column(_SIZES, 7)[code["size"]]
    pace = _column(_SOURCES, 6)[code["source"]] * _column(_SIZES, 8)[code["size"]]
    eval_days = _column(_TIMELINE, 3)[code["timeline"]] * pace
    return _Traits(fit, bant, urgency, interest, curious, self_serve, code["headcount"], eval_days)


def _fit(rng: np.random.Generator, frac: np.ndarray, code: dict[str, np.ndarray]) -> np.ndarray:
    """Account fit: mostly combinations (persona x size, industry x size, e-mail x size)."""
    source, size = code["source"], code["size"]
    return (
        _column(_SOURCES, 4)[source]
        - PAID_SEARCH_DECAY * frac * (source == _index(_SOURCES, "paid_search"))
        + _column(_COUNTRIES, 2)[code["country"]]
        + _column(_INDUSTRIES, 2)[code["industry"]]
        + _column(_INDUSTRIES, 3)[code["industry"]] * _SCALE_FIT[size]
        + _PERSONA_FIT[code["seniority"], size]
        + _column(_SIZES, 6)[size] * code["free_mail"]
        - SWEET_SPOT_CURVE * (np.log10(code["headcount"]) - SWEET_SPOT_LOG10) ** 2
        + SPEND_EFFECT * code["spend"]
        + rng.normal(0.0, HIDDEN_FIT, len(frac))
    )


def _pick_source(rng: np.random.Generator, frac: np.ndarray, shifted: np.ndarray) -> np.ndarray:
    """Source mix moving slowly from the start shares to the end shares (or the drifted ones)."""
    first, last, drifted = (_column(_SOURCES, at).astype(float) for at in (1, 2, 3))
    shares = first + (last - first) * frac[:, None]
    shares[shifted] = drifted
    return _pick(rng, shares)


def _authority_shares(seniority: np.ndarray) -> np.ndarray:
    known = np.stack([_column(_SENIORITY, at).astype(float) for at in (2, 3, 4)], axis=1)
    return np.column_stack([known, 1 - known.sum(axis=1)])[seniority]


def _firmographics(rng: np.random.Generator, size: np.ndarray) -> tuple[np.ndarray, ...]:
    """Employees (log-uniform in the band), revenue and budget with values missing as in a CRM;
    also the true headcount and the clipped log revenue per head (never missing)."""
    n = len(size)
    low, high = (np.log(_column(_SIZES, at).astype(float)[size]) for at in (2, 3))
    employees = np.rint(np.exp(low + (high - low) * rng.random(n)))
    revenue = np.round(employees * np.exp(rng.normal(np.log(REVENUE_PER_HEAD), 0.8, n)), -3)
    has_budget = rng.random(n) < np.array([0.35, 0.45, 0.55, 0.65, 0.7])[size]
    budget = np.round(_column(_SIZES, 5).astype(float)[size] * np.exp(rng.normal(0, 1.0, n)), -2)
    headcount = employees.copy()
    spend = np.clip(np.log(np.maximum(revenue, 1000) / employees / REVENUE_PER_HEAD), -1.5, 1.5)
    employees[rng.random(n) < 0.15] = np.nan
    revenue[rng.random(n) < 0.30] = np.nan
    budget[~has_budget] = np.nan
    return employees, revenue, budget, headcount, spend


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
    """Hidden fates (times in epoch s), censored at the end of the period."""

    evaluates: np.ndarray  # starts an evaluation (perhaps after the end of the period)
    wins: np.ndarray  # the evaluation ends in a signed deal (perhaps after the end)
    eval_start: np.ndarray
    eval_end: np.ndarray  # the signing, or the day a lost evaluation stalls
    converts: np.ndarray  # signed on or before the end
    disqualified: np.ndarray
    closed_at: np.ndarray  # conversion, disqualification, or the end for open leads


def _outcomes(
    rng: np.random.Generator,
    traits: _Traits,
    created: np.ndarray,
    stop: int,
    shifted: np.ndarray,
) -> _Outcome:
    """Who evaluates and when, who wins and when, who is disqualified; censored at `stop`."""
    n = len(created)
    evaluate_odds = EVALUATE_BASE + traits.urgency + EVALUATE_FIT * traits.fit
    evaluates = rng.random(n) < _sigmoid(evaluate_odds)
    start_days = np.clip(traits.eval_days * np.exp(rng.normal(0.0, 0.6, n)), 0.05, 400)
    start = created + (start_days * DAY).astype(np.int64)
    win_odds = (
        WIN_BASE
        + WIN_FIT * traits.fit
        + WIN_BANT * traits.bant
        - DRIFT_WIN * shifted
        + rng.normal(0.0, HIDDEN_WIN, n)
    )
    wins = evaluates & (rng.random(n) < _sigmoid(win_odds))
    scale = np.where(traits.self_serve, 3.0, 6.0)  # self-serve deals close in days, sales in weeks
    length = np.where(wins, rng.gamma(3.0, scale), rng.gamma(2.0, scale)) + 1.0
    end = start + (length * DAY).astype(np.int64)
    converts = wins & (end <= stop)
    quiet = np.exp(rng.normal(np.log(35), 0.8, n))
    quit_after = np.where(evaluates, (end - created) / DAY + rng.exponential(25.0, n), quiet)
    disqualification = created + (np.clip(quit_after, 0.5, 800) * DAY).astype(np.int64)
    give_up = rng.random(n) < np.where(evaluates, 0.7, 0.5)
    disqualified = ~wins & give_up & (disqualification <= stop)
    closed_at = np.where(converts, end, np.where(disqualified, disqualification, stop))
    return _Outcome(evaluates, wins, start, end, converts, disqualified, closed_at)


def _events(
    rng: np.random.Generator,
    traits: _Traits,
    created: np.ndarray,
    outcome: _Outcome,
    stop: int,
    source: np.ndarray,
    frac: np.ndarray,
    shifted: np.ndarray,
) -> pd.DataFrame:
    """All engagement events, sorted by lead and time; none after the end."""
    parts = [
        _engagement(rng, traits, created, outcome.closed_at, frac, shifted),
        _account_visits(rng, traits, created, outcome.closed_at),
        _evaluations(rng, traits, outcome),
        _negotiations(rng, traits, outcome),
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
            "value": _event_values(rng, kind, traits.interest[lead]),
        }
    )


def _text(names: np.ndarray, index: np.ndarray) -> pd.Series:
    """Strings picked from `names` as a text column (object first: much faster than numpy str)."""
    return pd.Series(names.astype(object)[index], dtype="str")


def _engagement(
    rng: np.random.Generator,
    traits: _Traits,
    created: np.ndarray,
    closed_at: np.ndarray,
    frac: np.ndarray,
    shifted: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background engagement while open: a burst fading over ~3 weeks plus a steady trickle."""
    tau = 20.0
    life = np.maximum(closed_at - created, 0) / DAY
    level = np.where(shifted, 0.6, 1.0) * (1 - 0.25 * frac)  # e-mail fatigue; drift cuts it
    level = level[:, None] * np.where(traits.curious[:, None], _column(_EVENTS, 7)[None, :], 1.0)
    sensitivity = _column(_EVENTS, 2)[None, :] * traits.interest[:, None]
    burst = _column(_EVENTS, 1)[None, :] * np.exp(sensitivity) * level
    burst_counts = rng.poisson(burst * (1 - np.exp(-life / tau))[:, None])
    trickle = _column(_EVENTS, 3)[None, :] * np.exp(0.3 * traits.interest[:, None]) * life[:, None]
    trickle_counts = rng.poisson(trickle * level)
    lead_b, kind_b = _expand(burst_counts)
    fade = 1 - np.exp(-life[lead_b] / tau)
    offset_b = -tau * np.log(1 - rng.random(len(lead_b)) * fade)
    lead_t, kind_t = _expand(trickle_counts)
    offset_t = rng.random(len(lead_t)) * life[lead_t]
    lead = np.concatenate([lead_b, lead_t])
    offset = np.concatenate([offset_b, offset_t])
    return lead, created[lead] + (offset * DAY).astype(np.int64), np.concatenate([kind_b, kind_t])


def _account_visits(
    rng: np.random.Generator, traits: _Traits, created: np.ndarray, closed_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colleagues' research bursts (web and pricing visits within days), matched to the account
    by IP for a while: more at larger companies, unrelated to whether this lead buys."""
    tracked = np.minimum(np.maximum(closed_at - created, 0) / DAY, ACCOUNT_TRACKING_DAYS)
    bursts = rng.poisson(ACCOUNT_BURSTS * tracked / 30 * np.sqrt(traits.headcount / 1000))
    lead = np.repeat(np.arange(len(bursts)), bursts)
    at = rng.random(len(lead)) * tracked[lead]
    counts = rng.poisson(np.array(ACCOUNT_BURST_VISITS)[None, :], size=(len(lead), 2))
    burst, which = _expand(counts)
    kind = np.array([_index(_EVENTS, "web_visit"), _index(_EVENTS, "pricing_page_view")])[which]
    offset = (at[burst] + rng.exponential(1.0, len(burst))) * DAY
    return lead[burst], created[lead[burst]] + offset.astype(np.int64), kind


def _evaluations(
    rng: np.random.Generator, traits: _Traits, outcome: _Outcome
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An evaluation's steady activity from start to end, when logged: pricing and web visits
    when self-serve; a demo request, calls and meetings (more for accounts that fit) when not."""
    lead = np.flatnonzero(outcome.evaluates)
    weeks = (outcome.eval_end[lead] - outcome.eval_start[lead]) / (7 * DAY)
    own = traits.self_serve[lead]
    logged = np.where(rng.random(len(lead)) < LOGGED_EVALUATIONS, 1.0, 0.1)
    attention = 2 * _sigmoid(traits.fit[lead])
    rate = np.where(own[:, None], _column(_EVENTS, 5)[None, :], _column(_EVENTS, 4)[None, :])
    rate = rate * np.where(_column(_EVENTS, 6)[None, :] > 0, attention[:, None], 1.0)
    row, kind = _expand(rng.poisson(rate * (weeks * logged)[:, None]))
    demo_share = np.where(own, DEMO_REQUESTS[1], DEMO_REQUESTS[0]) * logged
    demo = np.flatnonzero(rng.random(len(lead)) < demo_share)
    row = np.concatenate([row, demo])
    kind = np.concatenate([kind, np.full(len(demo), _index(_EVENTS, "demo_request"))])
    who = lead[row]
    start, end = outcome.eval_start[who], outcome.eval_end[who]
    offset = rng.random(len(who)) * (end - start)
    is_demo = np.arange(len(who)) >= len(who) - len(demo)  # a demo request opens it
    offset[is_demo] = np.minimum(rng.exponential(1.0, len(demo)) * DAY, offset[is_demo] + DAY)
    return who, start + offset.astype(np.int64), kind


def _negotiations(
    rng: np.random.Generator, traits: _Traits, outcome: _Outcome
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The days before a won deal is signed: calls and meetings, or pricing and checkout visits."""
    counts = rng.poisson(np.where(outcome.wins, NEGOTIATION_EVENTS, 0.0))
    lead = np.repeat(np.arange(len(counts)), counts)
    length = (outcome.eval_end[lead] - outcome.eval_start[lead]) / DAY
    before = np.minimum(rng.gamma(2.0, 1.5, len(lead)), length)
    coin = rng.random(len(lead)) < 0.5
    sales = np.where(coin, _index(_EVENTS, "call"), _index(_EVENTS, "meeting"))
    online = np.where(coin, _index(_EVENTS, "pricing_page_view"), _index(_EVENTS, "web_visit"))
    kind = np.where(traits.self_serve[lead], online, sales)
    return lead, outcome.eval_end[lead] - (before * DAY).astype(np.int64), kind


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


def _event_values(rng: np.random.Generator, kind: np.ndarray, interest: np.ndarray) -> np.ndarray:
    """Pages per web visit, minutes per call or meeting; no value for other events."""
    value = np.full(len(kind), np.nan)
    visit, call, meeting = (kind == _index(_EVENTS, t) for t in ("web_visit", "call", "meeting"))
    value[visit] = 1 + rng.poisson(np.clip(2 + interest[visit], 0.2, None))
    value[call] = np.round(np.exp(rng.normal(np.log(8), 0.6, call.sum())), 1)
    value[meeting] = rng.choice([30.0, 45.0, 60.0], size=meeting.sum())
    return value


def _leads_frame(created: np.ndarray, outcome: _Outcome, attrs: dict) -> pd.DataFrame:
    """The canonical leads table, lead_id 1..n in order of creation."""
    status = np.where(
        outcome.converts, "converted", np.where(outcome.disqualified, "disqualified", "open")
    )
    converted_at = np.where(outcome.converts, outcome.eval_end, np.iinfo(np.int64).min)
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
