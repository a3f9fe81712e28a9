"""A call list sized to the team's capacity: the top N open leads and what calling them brings.

The scores are calibrated, so the expected number of conversions among the leads called is
the sum of their probabilities, and the number that convert follows the Poisson-binomial
distribution (independent leads, each with its own probability). Its distribution is computed
exactly by convolution (O(N^2), about a second for 20,000 leads); above `exact_max` leads a
normal approximation with continuity correction is used and said so. The interval is the
integer range whose exact probability is closest to the level (90% by default), starting from
the equal-tailed quantiles; its actual probability is reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import erf, sqrt

import numpy as np
import pandas as pd

from leadml.config import Config
from leadml.data.history import open_scores
from leadml.data.scores import output_tables
from leadml.errors import SchemaError

CURVE_POINTS = 60


@dataclass(frozen=True)
class Interval:
    """An integer range of conversions and the probability that the count falls in it."""

    low: int
    high: int
    coverage: float
    method: str  # "exact" | "normal approximation"


@dataclass(frozen=True)
class CallList:
    """The leads to call, best first, and the expected conversions with their interval."""

    leads: pd.DataFrame  # rank, lead_id, score, grade, probability, expected_so_far, ...
    expected: float
    interval: Interval
    level: float
    curve: pd.DataFrame  # called, expected, low, high, next_100
    available: int  # open leads matching the filters (capacity may exceed it)


def call_list(
    scores: pd.DataFrame,
    capacity: int,
    *,
    grades: Sequence[str] = (),
    sources: Sequence[str] = (),
    level: float = 0.9,
    exact_max: int = 20_000,
) -> CallList:
    """The top `capacity` open leads by score (filtered by grade and source) and their outlook."""
    chosen, available = top_leads(scores, capacity, grades, sources)
    p = chosen["probability"].to_numpy(dtype=np.float64)
    chosen = chosen.assign(expected_so_far=np.cumsum(p))
    return CallList(
        leads=chosen,
        expected=float(p.sum()),
        interval=conversions_interval(p, level, exact_max),
        level=level,
        curve=expected_curve(p, level, exact_max),
        available=available,
    )


def top_leads(
    scores: pd.DataFrame, capacity: int, grades: Sequence[str] = (), sources: Sequence[str] = ()
) -> tuple[pd.DataFrame, int]:
    """Open leads best first (score, then probability, then lead_id), at most `capacity`."""
    if capacity < 1:
        raise SchemaError("calllist", "capacity", "must be at least 1", [capacity])
    for column in ("lead_id", "score", "probability"):
        if column not in scores.columns:
            raise SchemaError("lead_scores", column, "missing column")
    keep = np.ones(len(scores), dtype=bool)
    if "status" in scores.columns:
        keep &= (scores["status"].fillna("open") == "open").to_numpy()
    if grades:
        keep &= scores["grade"].isin(list(grades)).to_numpy()
    if sources:
        if "source" not in scores.columns:
            raise SchemaError("leads", "source", "no source column to filter on", list(sources))
        keep &= scores["source"].isin(list(sources)).to_numpy()
    pool = scores[keep]
    ranked = pool.sort_values(
        ["score", "probability", "lead_id"], ascending=[False, False, True], kind="stable"
    )
    top = ranked.head(capacity).reset_index(drop=True)
    return top.assign(rank=np.arange(1, len(top) + 1)), len(pool)


# ---------------------------------------------------------------- the distribution


def poisson_binomial(p: np.ndarray) -> np.ndarray:
    """P(K = k) for k = 0..n, K the number of successes of independent Bernoulli(p_i)."""
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, pi in enumerate(np.asarray(p, dtype=np.float64)):
        # in place, high to low: pmf[k] = pmf[k](1 - p) + pmf[k-1] p
        pmf[1 : i + 2] = pmf[1 : i + 2] * (1 - pi) + pmf[: i + 1] * pi
        pmf[0] *= 1 - pi
    return pmf


def interval_from_pmf(pmf: np.ndarray, level: float) -> Interval:
    """The integer range with probability closest to `level`, around the equal-tailed one."""
    cdf = np.cumsum(pmf)
    tail = (1 - level) / 2
    q_lo = int(np.searchsorted(cdf, tail, side="right"))
    q_hi = int(np.searchsorted(cdf, 1 - tail, side="left"))
    n = len(pmf) - 1
    best: tuple[float, float, int, int] | None = None
    for lo in (q_lo - 1, q_lo, q_lo + 1):
        for hi in (q_hi - 1, q_hi, q_hi + 1):
            if not 0 <= lo <= hi <= n:
                continue
            cover = cdf[hi] - (cdf[lo - 1] if lo > 0 else 0.0)
            balance = abs((cdf[lo - 1] if lo > 0 else 0.0) - (1 - cdf[hi]))
            key = (abs(cover - level), balance, lo, hi)
            best = key if best is None or key < best else best
    assert best is not None  # q_lo <= q_hi always leaves one candidate
    lo, hi = best[2], best[3]
    cover = cdf[hi] - (cdf[lo - 1] if lo > 0 else 0.0)
    return Interval(lo, hi, float(min(cover, 1.0)), "exact")


def normal_interval(p: np.ndarray, level: float) -> Interval:
    """Normal approximation with continuity correction (for very long lists)."""
    mean = float(np.sum(p))
    sd = float(np.sqrt(np.sum(p * (1 - p))))
    z = _z(level)
    lo = max(0, int(np.floor(mean - z * sd + 0.5)))
    hi = min(len(p), int(np.ceil(mean + z * sd - 0.5)))
    cover = _phi((hi + 0.5 - mean) / sd) - _phi((lo - 0.5 - mean) / sd) if sd > 0 else 1.0
    return Interval(lo, hi, float(cover), "normal approximation")


def conversions_interval(p: np.ndarray, level: float = 0.9, exact_max: int = 20_000) -> Interval:
    """The `level` interval of the number of conversions among leads with probabilities p."""
    if len(p) > exact_max:
        return normal_interval(p, level)
    return interval_from_pmf(poisson_binomial(p), level)


def expected_curve(p: np.ndarray, level: float = 0.9, exact_max: int = 20_000) -> pd.DataFrame:
    """Expected conversions (and the interval) after calling the first k leads, for ~60 k's.

    `next_100` is what the following 100 calls are expected to add: where it gets small, more
    calls stop paying. One pass of the convolution gives every checkpoint.
    """
    n = len(p)
    if n == 0:
        return pd.DataFrame(columns=["called", "expected", "low", "high", "next_100"])
    checkpoints = np.unique(np.linspace(1, n, min(n, CURVE_POINTS)).round().astype(int))
    cum = np.concatenate([[0.0], np.cumsum(p)])
    lows, highs = [], []
    if n > exact_max:
        for k in checkpoints:
            iv = normal_interval(p[:k], level)
            lows.append(iv.low)
            highs.append(iv.high)
    else:
        pmf = np.zeros(n + 1)
        pmf[0] = 1.0
        marks = set(checkpoints.tolist())
        for i, pi in enumerate(p):
            pmf[1 : i + 2] = pmf[1 : i + 2] * (1 - pi) + pmf[: i + 1] * pi
            pmf[0] *= 1 - pi
            if i + 1 in marks:
                iv = interval_from_pmf(pmf[: i + 2], level)
                lows.append(iv.low)
                highs.append(iv.high)
    nxt = cum[np.minimum(checkpoints + 100, n)] - cum[checkpoints]
    return pd.DataFrame(
        {
            "called": checkpoints,
            "expected": cum[checkpoints],
            "low": lows,
            "high": highs,
            "next_100": nxt,
        }
    )


def _phi(x: float) -> float:
    return 0.5 * (1 + erf(x / sqrt(2)))


def _z(level: float) -> float:
    """The two-sided normal quantile for `level` (bisection: no scipy needed)."""
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _phi(mid) - _phi(-mid) < level else (lo, mid)
    return (lo + hi) / 2


def stored_call_list(
    url: str,
    config: Config,
    capacity: int,
    *,
    grades: Sequence[str] = (),
    sources: Sequence[str] = (),
) -> CallList:
    """The call list from the stored scores (lead_scores joined with the open leads)."""
    if capacity < 1:
        raise SchemaError("calllist", "capacity", "must be at least 1", [capacity])
    out = output_tables(config.data.leads_table)
    frame, available = open_scores(
        url, config.data, out, grades=tuple(grades), sources=tuple(sources), limit=capacity
    )
    cfg = config.calllist
    result = call_list(frame, capacity, level=cfg.level, exact_max=cfg.exact_max)
    return CallList(
        result.leads, result.expected, result.interval, result.level, result.curve, available
    )


CSV_COLUMNS = ("rank", "lead_id", "name", "company", "source", "score", "grade", "probability")


def to_csv(result: CallList) -> str:
    """The call list as CSV for the CRM: rank, ids, names, score, grade, probability, running sum."""
    columns = [c for c in CSV_COLUMNS if c in result.leads.columns] + ["expected_so_far"]
    frame = result.leads[columns].copy()
    frame["probability"] = frame["probability"].round(4)
    frame["expected_so_far"] = frame["expected_so_far"].round(2)
    return frame.to_csv(index=False, lineterminator="\n")


def summary_line(result: CallList) -> str:
    """'Calling the top 200 open leads: 37.4 conversions expected, 90% interval 29-46.'"""
    iv = result.interval
    n = len(result.leads)
    approx = "" if iv.method == "exact" else f", {iv.method}"
    return (
        f"Calling the top {n:,} of {result.available:,} open leads: "
        f"{result.expected:.1f} conversions expected, {result.level:.0%} interval "
        f"{iv.low}-{iv.high} (probability {iv.coverage:.1%}{approx})"
    )


def split_list(value: str | None) -> tuple[str, ...]:
    """'hot,warm' -> ('hot', 'warm'); blanks dropped."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def calllist_json(result: CallList) -> dict:
    """The call list as JSON: summary, interval, the leads and the curve."""
    leads = result.leads.astype(object).where(result.leads.notna(), None)
    return {
        "called": len(result.leads),
        "available": result.available,
        "expected_conversions": round(result.expected, 3),
        "interval": {
            "level": result.level,
            "low": result.interval.low,
            "high": result.interval.high,
            "probability": round(result.interval.coverage, 4),
            "method": result.interval.method,
        },
        "leads": [
            {k: (str(v) if k == "scored_at" and v is not None else v) for k, v in row.items()}
            for row in leads.to_dict("records")
        ],
        "curve": result.curve.round(3).to_dict("records"),
    }
