"""The call list: ranking and filters, the exact Poisson-binomial distribution, its interval
checked against simulation, the normal approximation and the expected-conversions curve."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from leadml.calllist import (
    call_list,
    conversions_interval,
    expected_curve,
    interval_from_pmf,
    normal_interval,
    poisson_binomial,
    top_leads,
)
from leadml.errors import SchemaError


def _scores(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 4.0, n)
    return pd.DataFrame(
        {
            "lead_id": np.arange(1, n + 1),
            "probability": p,
            "score": np.clip(np.rint(p * 100), 1, 100).astype(int),
            "grade": np.where(p >= 0.4, "hot", np.where(p >= 0.15, "warm", "cold")),
            "source": rng.choice(["web", "referral", "event"], n),
            "status": rng.choice(["open", "open", "open", "converted"], n),
        }
    )


def test_poisson_binomial_matches_brute_force_and_binomial():
    p = np.array([0.1, 0.5, 0.9, 0.3, 0.05, 0.7, 0.2, 0.6])
    brute = np.zeros(len(p) + 1)
    for outcome in itertools.product([0, 1], repeat=len(p)):
        o = np.array(outcome)
        brute[o.sum()] += np.prod(np.where(o == 1, p, 1 - p))
    assert np.allclose(poisson_binomial(p), brute, atol=1e-15)
    from scipy.stats import binom

    same = poisson_binomial(np.full(300, 0.23))
    assert np.allclose(same, binom.pmf(np.arange(301), 300, 0.23), atol=1e-12)
    assert abs(same.sum() - 1) < 1e-12


def test_interval_covers_90_percent_of_10000_simulated_outcomes():
    p = _scores(2000, seed=3)["probability"].to_numpy()
    iv = conversions_interval(p, 0.9)
    assert iv.method == "exact"
    assert abs(iv.coverage - 0.9) < 0.01
    assert iv.low < p.sum() < iv.high
    rng = np.random.default_rng(20261202)
    draws = np.empty(10_000, dtype=np.int64)
    for start in range(0, 10_000, 1000):  # 1000 draws at a time keeps memory small
        draws[start : start + 1000] = (rng.random((1000, len(p))) < p).sum(axis=1)
    simulated = np.mean((draws >= iv.low) & (draws <= iv.high))
    assert abs(simulated - 0.9) <= 0.01, (iv, simulated)
    assert abs(draws.mean() - p.sum()) < 0.5


def test_interval_for_a_short_list_reports_its_true_coverage():
    pmf = poisson_binomial(np.array([0.5, 0.5, 0.5]))  # 1/8, 3/8, 3/8, 1/8
    iv = interval_from_pmf(pmf, 0.9)
    covered = pmf[iv.low : iv.high + 1].sum()
    assert iv.coverage == pytest.approx(covered)
    assert (iv.low, iv.high) in ((0, 2), (1, 3))  # 87.5%: the closest any range gets to 90%


def test_normal_approximation_agrees_with_exact_for_long_lists():
    p = _scores(6000, seed=5)["probability"].to_numpy()
    exact = conversions_interval(p, 0.9)
    approx = conversions_interval(p, 0.9, exact_max=1000)
    assert approx.method == "normal approximation"
    assert abs(approx.low - exact.low) <= 1 and abs(approx.high - exact.high) <= 1
    assert abs(normal_interval(p, 0.9).coverage - 0.9) < 0.01


def test_top_leads_rank_filter_and_capacity():
    scores = _scores(500)
    top, available = top_leads(scores, 50, grades=["hot", "warm"], sources=["web"])
    pool = scores[
        (scores.status == "open") & scores.grade.isin(["hot", "warm"]) & (scores.source == "web")
    ]
    assert available == len(pool)
    assert len(top) == 50 and list(top["rank"]) == list(range(1, 51))
    assert top["score"].is_monotonic_decreasing
    assert set(top["lead_id"]) <= set(pool["lead_id"])
    assert top["score"].min() >= pool.nlargest(50, "score")["score"].min()
    everything, n = top_leads(scores, 10_000)
    assert len(everything) == n == (scores.status == "open").sum()
    with pytest.raises(SchemaError, match="capacity"):
        top_leads(scores, 0)


def test_call_list_expected_and_curve():
    scores = _scores(800)
    result = call_list(scores, 200)
    p = result.leads["probability"].to_numpy()
    assert result.expected == pytest.approx(p.sum())
    assert result.leads["expected_so_far"].iloc[-1] == pytest.approx(p.sum())
    curve = result.curve
    assert curve["called"].iloc[-1] == 200 and curve["expected"].is_monotonic_increasing
    assert curve["expected"].iloc[-1] == pytest.approx(result.expected)
    wide = curve[curve["called"] >= 20]  # one or two leads: a range of one count can be closest
    assert (wide["low"] <= wide["expected"]).all() and (wide["expected"] <= wide["high"]).all()
    last = result.interval
    assert (curve["low"].iloc[-1], curve["high"].iloc[-1]) == (last.low, last.high)
    # ranked best first, so each next 100 calls add no more than the previous 100
    assert curve["next_100"].diff().dropna().le(1e-9).all()
    approx = expected_curve(p, 0.9, exact_max=10)
    long = approx["called"] >= 100  # the normal approximation is for long lists
    assert (approx["high"] - curve["high"])[long].abs().max() <= 1
