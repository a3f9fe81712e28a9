"""Reasons in score points: baseline + points = score exactly, for every lead."""

import numpy as np
import pandas as pd
import pytest

from leadml.calibrate import Calibrator, fit_calibrator
from leadml.config import Config, ModelConfig
from leadml.explain import (
    build_reasons,
    group_points,
    largest_remainder,
    reason_groups,
    score_and_points,
)
from leadml.features import fit_feature_spec
from leadml.train import fit_lightgbm, fit_logistic


def test_largest_remainder_sums_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 5, (5000, 12))
    totals = np.rint(x.sum(axis=1) + rng.normal(0, 0.3, 5000))
    x *= (totals / x.sum(axis=1))[:, None]
    out = largest_remainder(x, totals)
    np.testing.assert_array_equal(out.sum(axis=1), totals)
    assert np.abs(out - x).max() < 1.0 + 1e-9


def platt(a=1.0, b=0.0):
    return Calibrator("platt", np.zeros(0), np.zeros(0), a, b)


@pytest.mark.parametrize(
    "cal",
    [
        platt(),
        platt(2.5, -1.0),
        Calibrator(
            "isotonic", np.array([-3.0, -1, 0, 1, 3]), np.array([0.001, 0.05, 0.2, 0.7, 0.999])
        ),
    ],
)
def test_points_add_up_for_thousands_of_leads_including_1_and_100(cal):
    rng = np.random.default_rng(1)
    n, d = 5000, 20
    contrib = np.column_stack(
        [rng.normal(0, 1.2, (n, d)) * rng.random((n, 1)) * 2, np.full(n, -0.5)]
    )
    prob, score, base, points = score_and_points(contrib, cal)
    np.testing.assert_array_equal(base + points.sum(axis=1), score)
    assert score.min() == 1 and score.max() == 100  # extremes covered
    # a feature pushing up never loses points, one pushing down never gains (same-sign totals)
    delta = score - base
    same = np.sign(contrib[:, :-1]) * np.sign(delta)[:, None]
    assert (points[same < 0] * np.sign(delta)[np.nonzero(same < 0)[0]] <= 1).all()


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    n = 6000
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 300, n), unit="D")
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(n),
            "created_at": created,
            "status": "open",
            "converted_at": pd.NaT,
            "source": rng.choice(["web", "referral", "ads"], n),
            "employees": rng.lognormal(3, 1, n),
        }
    )
    spec = fit_feature_spec(leads, None, Config())
    from leadml.features import build_features

    X = build_features(spec, leads, None, created.max())
    logit = -2 + 1.5 * (leads.source == "referral") + 0.5 * np.log(leads.employees) - 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    return spec, X, y


@pytest.mark.parametrize("kind", ["lightgbm", "logistic"])
def test_real_models_points_are_exact_and_reasons_consistent(fitted, kind):
    spec, X, y = fitted
    cfg = ModelConfig()
    model = (
        fit_lightgbm(X[:4000], y[:4000], X[4000:], y[4000:], spec, cfg)
        if kind == "lightgbm"
        else fit_logistic(X[:4000], y[:4000], spec, cfg)
    )
    contrib = model.contributions(X)
    np.testing.assert_allclose(contrib.sum(axis=1), model.margin(X), atol=1e-6)
    cal, _ = fit_calibrator(model.margin(X[4000:]), y[4000:], "platt")
    prob, score, base, points = score_and_points(contrib, cal)
    np.testing.assert_array_equal(base + points.sum(axis=1), score)
    groups = reason_groups(spec)
    gp = group_points(points, groups)
    np.testing.assert_array_equal(gp.sum(axis=1), points.sum(axis=1))
    reasons = build_reasons(spec, X, gp, np.zeros_like(gp, dtype=float), groups, 3, 3)
    for i in range(0, len(X), 97):
        pos = [r["points"] for r in reasons[i] if r["points"] > 0]
        assert pos == sorted(pos, reverse=True)
        for r in reasons[i]:
            assert r["text"] and r["points"] != 0
            key = next(k for k in groups.keys if (k.partition(":")[2] or k) == r["feature"])
            assert r["points"] == gp[i, groups.keys.index(key)]


def test_reason_text_reads_plainly():
    from leadml.features import FeatureSpec, reason_text

    spec = FeatureSpec(
        {"source": ["referral", "web"]},
        [],
        ["pricing_page_view", "email_open"],
        [7, 30, 90],
        14,
        True,
    )
    vals = {"pricing_page_view_count_7d": 4.0, "pricing_page_view_count_30d": 5.0}
    assert (
        reason_text(spec, "event:pricing_page_view", vals)
        == "Viewed the pricing page 4 times in the last 7 days"
    )
    assert reason_text(spec, "attr:source", {"source": 0.0}) == "Source: referral"
    quiet = {
        "email_open_count_7d": 0.0,
        "email_open_count_30d": 0.0,
        "email_open_count_90d": 0.0,
        "email_open_days_since": 120.0,
    }
    assert (
        reason_text(spec, "event:email_open", quiet)
        == "No email opens in the last 90 days (last one 120 days ago)"
    )
