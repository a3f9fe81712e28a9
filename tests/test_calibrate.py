"""Calibration on a held-out slice, score 1..100, grades."""

import numpy as np
import pytest

from leadml.calibrate import fit_calibrator, grade_thresholds, to_score
from leadml.config import GradeConfig
from leadml.evaluate import ece


def synthetic_margins(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    margin = rng.normal(-2, 1.5, n)
    true_p = 1 / (1 + np.exp(-(0.6 * margin - 0.5)))  # miscalibrated margins
    y = (rng.random(n) < true_p).astype(int)
    return margin, y, true_p


@pytest.mark.parametrize("method", ["isotonic", "platt", "auto"])
def test_calibration_is_honest_out_of_sample(method):
    margin, y, _ = synthetic_margins()
    cal, info = fit_calibrator(margin[:10_000], y[:10_000], method)
    p = cal.predict(margin[10_000:])
    assert ece(y[10_000:], p) < 0.02
    raw = 1 / (1 + np.exp(-margin[10_000:]))
    assert ece(y[10_000:], raw) > 0.05  # it was miscalibrated before
    assert info["method"] in ("isotonic", "platt")


def test_calibration_is_monotone():
    margin, y, _ = synthetic_margins()
    cal, _ = fit_calibrator(margin, y, "isotonic")
    grid = np.linspace(-8, 6, 500)
    assert (np.diff(cal.predict(grid)) >= 0).all()


def test_score_range_and_rounding():
    np.testing.assert_array_equal(
        to_score(np.array([0.0, 0.004, 0.305, 0.5, 0.996, 1.0])), [1, 1, 30, 50, 100, 100]
    )


def test_grades_fixed_and_quantile_stable():
    cfg = GradeConfig(hot_min_score=40, warm_min_score=15)
    g = grade_thresholds(cfg, np.arange(100))
    assert list(g.grade(np.array([39, 40, 14, 15]))) == ["warm", "hot", "cold", "warm"]
    q = GradeConfig(mode="quantile", hot_quantile=0.9, warm_quantile=0.5)
    first = grade_thresholds(q, np.arange(1, 101))
    assert first.hot_min > first.warm_min
    again = grade_thresholds(q, np.arange(1, 101) // 2 + 1, previous=first)
    assert again == first  # retrains keep thresholds unless asked


def test_auto_is_platt_on_small_data_and_says_why():
    margin, y, _ = synthetic_margins(n=1500)
    cal, info = fit_calibrator(margin, y, "auto")
    assert cal.method == "platt" and "1,500 out-of-time rows" in info["why"]
    big, yb, _ = synthetic_margins(n=20_000)
    _, info = fit_calibrator(big, yb, "auto")
    assert "why" not in info and set(info["candidates_log_loss"]) == {"isotonic", "platt"}


def test_isotonic_keeps_the_ranking_it_was_given():
    """Flat isotonic steps would tie leads the model told apart and cost ROC AUC."""
    from sklearn.metrics import roc_auc_score

    margin, y, _ = synthetic_margins()
    cal, _ = fit_calibrator(margin[:10_000], y[:10_000], "isotonic")
    p = cal.predict(margin[10_000:])
    inside = (margin[10_000:] > cal.x[0]) & (margin[10_000:] < cal.x[-1])
    assert (np.diff(p[inside][np.argsort(margin[10_000:][inside])]) > 0).all()
    assert roc_auc_score(y[10_000:], p) == pytest.approx(
        roc_auc_score(y[10_000:], margin[10_000:]), abs=1e-3
    )
