"""Training-time screening: features that drift between periods, features that leak the label."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from leadml.config import ScreeningConfig
from leadml.features import FeatureSpec


@dataclass
class Screening:
    """What the screens found and what was done about it (shown in the run and the report)."""

    psi: dict[str, float] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)
    single_auc: dict[str, float] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    declared_leaking: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def psi(expected: np.ndarray, actual: np.ndarray, categorical: bool = False, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected` (missing is its own bin)."""
    e_bins, a_bins = _bin(expected, actual, categorical, bins)
    k = int(max(e_bins.max(initial=0), a_bins.max(initial=0))) + 1
    e = np.bincount(e_bins, minlength=k) / max(len(e_bins), 1)
    a = np.bincount(a_bins, minlength=k) / max(len(a_bins), 1)
    e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def _bin(expected, actual, categorical: bool, bins: int) -> tuple[np.ndarray, np.ndarray]:
    if categorical:
        to_int = lambda x: np.where(np.isnan(x), -1, x).astype(np.int64) + 1  # noqa: E731
        return to_int(expected), to_int(actual)
    finite = expected[~np.isnan(expected)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if len(finite) else []
    to_bin = lambda x: np.where(np.isnan(x), 0, np.searchsorted(edges, x, side="right") + 1)  # noqa: E731
    return to_bin(expected), to_bin(actual)


def single_feature_auc(x: np.ndarray, y: np.ndarray, categorical: bool) -> float:
    """How well one feature alone separates the classes (0.5 = not at all, 1 = perfectly)."""
    if len(np.unique(y)) < 2:
        return 0.5
    if categorical:
        codes = np.where(np.isnan(x), -1, x).astype(np.int64) + 1
        pos = np.bincount(codes, weights=y, minlength=codes.max() + 1)
        cnt = np.bincount(codes, minlength=codes.max() + 1)
        score = (pos / np.maximum(cnt, 1))[codes]
    else:
        score = np.where(np.isnan(x), np.nanmin(x) - 1 if np.isfinite(np.nanmin(x)) else 0, x) if not np.all(np.isnan(x)) else np.zeros(len(x))
    auc = roc_auc_score(y, score)
    return float(max(auc, 1 - auc))


def screen_features(
    spec: FeatureSpec,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_latest: np.ndarray,
    cfg: ScreeningConfig,
) -> Screening:
    """PSI train vs the latest pre-test period, and single-feature AUC on the training slice."""
    out = Screening()
    for j, info in enumerate(spec.features):
        cat = info.kind == "categorical"
        out.psi[info.name] = round(psi(X_train[:, j], X_latest[:, j], cat), 4)
        out.single_auc[info.name] = round(single_feature_auc(X_train[:, j], y_train, cat), 4)
        if out.psi[info.name] > cfg.drift_psi:
            out.drifted.append(info.name)
        if out.single_auc[info.name] >= cfg.leak_auc:
            out.leaks.append(info.name)
    if cfg.drift_action == "drop":
        out.dropped = [n for n in out.drifted if n not in out.leaks]
    out.dropped += out.leaks
    return out
