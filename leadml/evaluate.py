"""Metrics on the test slice and the honest peers leadml is measured against.

The peers are what an analyst fits in an afternoon, on the same rows (all pre-test rows) and
features: a plain one-hot logistic regression, LightGBM with early stopping and an Odoo-style
naive Bayes. leadml must beat the best of them, and the report says so when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from leadml.calibrate import log_loss
from leadml.features import FeatureSpec


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-frequency bins."""
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            total += len(chunk) * abs(p[chunk].mean() - y[chunk].mean())
    return float(total / max(len(p), 1))


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    order = np.argsort(p, kind="stable")
    rows = []
    for k, chunk in enumerate(np.array_split(order, bins)):
        if len(chunk):
            rows.append(
                {
                    "bin": k + 1,
                    "n": int(len(chunk)),
                    "mean_predicted": float(p[chunk].mean()),
                    "observed_rate": float(y[chunk].mean()),
                }
            )
    return rows


def lift_top_decile(y: np.ndarray, p: np.ndarray) -> float:
    k = max(int(np.ceil(len(p) * 0.1)), 1)
    top = np.argsort(-p, kind="stable")[:k]
    base = y.mean()
    return float(y[top].mean() / base) if base > 0 else float("nan")


def metrics(y: np.ndarray, p: np.ndarray) -> dict:
    """The metrics of metrics.json for one model on one slice."""
    y = np.asarray(y).astype(np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    two = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if two else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": log_loss(y, p),
        "ece": ece(y, p),
        "lift_top_decile": lift_top_decile(y, p),
        "n": int(len(y)),
        "positives": int(y.sum()),
    }


def gains_by_decile(y: np.ndarray, p: np.ndarray) -> list[dict]:
    order = np.argsort(-p, kind="stable")
    base = max(y.mean(), 1e-12)
    rows, captured = [], 0
    for k, chunk in enumerate(np.array_split(order, 10)):
        captured += y[chunk].sum()
        rows.append(
            {
                "decile": k + 1,
                "rate": float(y[chunk].mean()) if len(chunk) else 0.0,
                "lift": float(y[chunk].mean() / base) if len(chunk) else 0.0,
                "cumulative_gain": float(captured / max(y.sum(), 1)),
            }
        )
    return rows


@dataclass
class LogisticBaseline:
    """Plain logistic regression: one-hot categoricals, imputed and scaled numerics."""

    pipeline: object

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(X)[:, 1]


def fit_logistic_baseline(
    X: np.ndarray, y: np.ndarray, spec: FeatureSpec, seed: int = 0
) -> LogisticBaseline:
    cats = spec.categorical_indices
    nums = [j for j in range(X.shape[1]) if j not in cats]
    pre = ColumnTransformer(
        [
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value=-1),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                cats,
            ),
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                ),
                nums,
            ),
        ]
    )
    pipe = make_pipeline(pre, LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    pipe.fit(X, y)
    return LogisticBaseline(pipe)


@dataclass
class LightGBMBaseline:
    """LightGBM with its library defaults, rounds found by early stopping, refitted on all rows."""

    booster: object
    threads: int = 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(X, num_threads=self.threads)


PEER_LGB_PARAMS = {
    "objective": "binary",
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
}
PEER_LGB_ROUNDS, PEER_LGB_PATIENCE = 500, 20


def fit_lightgbm_baseline(
    X: np.ndarray,
    y: np.ndarray,
    stop: tuple[np.ndarray, np.ndarray],
    spec: FeatureSpec,
    seed: int = 0,
    threads: int = 0,
) -> LightGBMBaseline:
    """Early stopping on `stop` = (fit rows, later rows), then all rows with the rounds scaled."""
    import lightgbm as lgb

    params = {**PEER_LGB_PARAMS, "seed": seed, "num_threads": threads}
    cats = spec.categorical_indices
    fit, later = stop
    train = lgb.Dataset(X[fit], y[fit], categorical_feature=cats, free_raw_data=False)
    valid = lgb.Dataset(X[later], y[later], reference=train, categorical_feature=cats)
    probe = lgb.train(
        params,
        train,
        num_boost_round=PEER_LGB_ROUNDS,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(PEER_LGB_PATIENCE, verbose=False)],
    )
    rounds = max(1, round((probe.best_iteration or 1) * len(y) / max(len(fit), 1)))
    data = lgb.Dataset(X, y, categorical_feature=cats)
    return LightGBMBaseline(lgb.train(params, data, num_boost_round=rounds), threads)


@dataclass
class NaiveBayesBaseline:
    """Frequency naive Bayes in the manner of Odoo CRM's predictive lead scoring.

    Each field value's frequency among won and lost leads (Laplace-smoothed), multiplied
    across fields with the prior; numerics are cut into training quantile bins first.
    """

    edges: list[np.ndarray | None]
    log_ratio: list[np.ndarray]
    prior_log_odds: float

    def _codes(self, X: np.ndarray) -> list[np.ndarray]:
        out = []
        for j, edges in enumerate(self.edges):
            x = X[:, j]
            if edges is None:
                codes = np.where(np.isnan(x), 0, x + 1)
            else:
                codes = np.where(np.isnan(x), 0, np.searchsorted(edges, x, side="right") + 1)
            out.append(np.clip(codes.astype(np.int64), 0, len(self.log_ratio[j]) - 1))
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logit = np.full(len(X), self.prior_log_odds)
        for j, codes in enumerate(self._codes(X)):
            logit += self.log_ratio[j][codes]
        return 1 / (1 + np.exp(-np.clip(logit, -30, 30)))


def fit_naive_bayes_baseline(
    X: np.ndarray, y: np.ndarray, spec: FeatureSpec, bins: int = 10
) -> NaiveBayesBaseline:
    cats = set(spec.categorical_indices)
    edges: list[np.ndarray | None] = []
    for j in range(X.shape[1]):
        finite = X[~np.isnan(X[:, j]), j]
        if j in cats or not len(finite):
            edges.append(None)
        else:
            edges.append(np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])))
    model = NaiveBayesBaseline(edges, [np.zeros(1)] * X.shape[1], 0.0)
    size = [
        int(np.nanmax(X[:, j], initial=0)) + 3 if e is None else len(e) + 2
        for j, e in enumerate(edges)
    ]
    model.log_ratio = [np.zeros(s) for s in size]
    pos, neg = y == 1, y == 0
    for j, codes in enumerate(model._codes(X)):
        k = size[j]
        won = np.bincount(codes[pos], minlength=k) + 1.0
        lost = np.bincount(codes[neg], minlength=k) + 1.0
        model.log_ratio[j] = np.log(won / won.sum()) - np.log(lost / lost.sum())
    model.prior_log_odds = float(np.log(pos.sum() + 1) - np.log(neg.sum() + 1))
    return model


def segment_auc(y: np.ndarray, p: np.ndarray, segments: np.ndarray, min_rows: int = 50) -> dict:
    """ROC AUC per segment (e.g. source), for segments with both classes and enough rows."""
    out = {}
    for value in np.unique(segments.astype(str)):
        mask = segments.astype(str) == value
        if mask.sum() >= min_rows and len(np.unique(y[mask])) == 2:
            out[value] = {
                "roc_auc": float(roc_auc_score(y[mask], p[mask])),
                "n": int(mask.sum()),
                "rate": float(y[mask].mean()),
            }
    return out
