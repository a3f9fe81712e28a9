"""Probability calibration on a held-out slice, the 1..100 score and the grades."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from leadml.config import GradeConfig

EPS = 1e-4
ISOTONIC_MIN_ROWS = 5000
ISOTONIC_MIN_POSITIVES = 250
TILT = 1e-6


@dataclass
class Calibrator:
    """Monotone map from model margin (log-odds) to an honest probability."""

    method: str
    x: np.ndarray  # isotonic knots (margin)
    y: np.ndarray  # isotonic knot probabilities
    a: float = 1.0  # Platt slope
    b: float = 0.0  # Platt intercept

    def predict(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(margin, self.x, self.y)
        return expit(self.a * margin + self.b)  # no overflow on extreme margins


def fit_calibrator(
    margin: np.ndarray, y: np.ndarray, method: str = "auto"
) -> tuple[Calibrator, dict]:
    """Isotonic or Platt on out-of-time margins; 'auto' picks by out-of-sample log loss.

    For 'auto' both are fitted on the first half of the (time-ordered) rows and compared on
    the second half, then the winner is refitted on all of them. With fewer than
    ISOTONIC_MIN_ROWS rows or ISOTONIC_MIN_POSITIVES of the rarer class, 'auto' is Platt:
    isotonic's steps overfit small samples, and half of a small sample judges nothing.
    """
    info: dict = {}
    rare = int(min(y.sum(), len(y) - y.sum()))
    if method == "auto" and (len(y) < ISOTONIC_MIN_ROWS or rare < ISOTONIC_MIN_POSITIVES):
        info["why"] = (
            f"Platt: {len(y):,} out-of-time rows, {rare:,} of the rarer class "
            f"(isotonic needs {ISOTONIC_MIN_ROWS:,} and {ISOTONIC_MIN_POSITIVES:,})"
        )
        method = "platt"
    if method == "auto":
        half = len(y) // 2
        losses = {}
        for m in ("isotonic", "platt"):
            if len(np.unique(y[:half])) < 2 or len(np.unique(y[half:])) < 2:
                losses[m] = np.inf
                continue
            p = _fit(margin[:half], y[:half], m).predict(margin[half:])
            losses[m] = log_loss(y[half:], p)
        method = "platt" if losses["platt"] <= losses["isotonic"] else "isotonic"
        info["candidates_log_loss"] = {k: round(float(v), 5) for k, v in losses.items()}
    info["method"] = method
    return _fit(margin, y, method), info


def _fit(margin: np.ndarray, y: np.ndarray, method: str) -> Calibrator:
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=EPS, y_max=1 - EPS)
        iso.fit(margin, y)
        # a tilt of at most 1e-6 makes the steps strictly increasing: ties would cost ROC AUC
        tilt = np.linspace(0.0, 1.0, len(iso.y_thresholds_))
        knots = (1 - TILT) * iso.y_thresholds_ + TILT * tilt
        return Calibrator("isotonic", iso.X_thresholds_.copy(), knots)
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(margin.reshape(-1, 1), y)
    return Calibrator(
        "platt", np.zeros(0), np.zeros(0), float(lr.coef_[0, 0]), float(lr.intercept_[0])
    )


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def to_score(probability: np.ndarray) -> np.ndarray:
    """Map calibrated probabilities to integer scores 1..100 (score ~ percent chance)."""
    return np.clip(np.rint(np.asarray(probability) * 100), 1, 100).astype(np.int16)


@dataclass(frozen=True)
class GradeThresholds:
    """Lowest score of each grade above the last one."""

    names: tuple[str, str, str]
    hot_min: int
    warm_min: int

    def grade(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores)
        hot, warm, cold = self.names
        return np.where(scores >= self.hot_min, hot, np.where(scores >= self.warm_min, warm, cold))


def grade_thresholds(
    cfg: GradeConfig, train_scores: np.ndarray, previous: GradeThresholds | None = None
) -> GradeThresholds:
    """Fixed thresholds, or quantiles of training scores (kept from `previous` when given)."""
    if cfg.mode == "fixed":
        return GradeThresholds(cfg.names, cfg.hot_min_score, cfg.warm_min_score)
    if previous is not None:
        return previous
    hot = int(np.ceil(np.quantile(train_scores, cfg.hot_quantile)))
    warm = int(np.ceil(np.quantile(train_scores, cfg.warm_quantile)))
    return GradeThresholds(cfg.names, max(hot, warm + 1), warm)
