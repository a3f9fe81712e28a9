"""Model factories and fitting: LightGBM (default) and a regularised logistic regression.

Both models expose the same two methods, so calibration, reasons in points, predict and the
pyfunc wrapper work the same whichever wins: `margin(X)` (log-odds) and `contributions(X)`
(per-feature log-odds contributions plus a last column holding the baseline margin; exact:
TreeSHAP for trees, w * (z - mean z) for the linear model).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from leadml.config import ModelConfig
from leadml.errors import TrainingError
from leadml.features import FeatureSpec

LOG1P_KINDS = {"count", "score", "active_days", "age"}
RECENCY_CAP_DAYS = 365.0


@dataclass
class TreeModel:
    """A LightGBM booster with native categoricals."""

    booster: object
    kind: str = "lightgbm"
    threads: int = 0

    def margin(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(X, raw_score=True, num_threads=self.threads)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(X, pred_contrib=True, num_threads=self.threads)

    @property
    def size(self) -> dict:
        return {"trees": self.booster.num_trees(), "leaves": self.booster.params.get("num_leaves")}


@dataclass
class LinearModel:
    """Logistic regression on a one-hot / log / standardised design built from the matrix."""

    kinds: list[str]
    levels: list[int]  # categorical: number of codes (incl. 'other'); numeric: 0
    fill: np.ndarray  # per-feature fill value for missing numerics
    mean: np.ndarray  # design column means (training)
    scale: np.ndarray  # design column scales (training)
    owner: np.ndarray  # design column -> feature index
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intercept: float = 0.0
    kind: str = "logistic"

    def design(self, X: np.ndarray) -> np.ndarray:
        """The standardised design matrix (one-hot categoricals, missing flags, log counts)."""
        blocks = []
        for j, kind in enumerate(self.kinds):
            x = X[:, j]
            missing = np.isnan(x)
            if kind == "categorical":
                codes = np.where(missing, self.levels[j], x).astype(np.int64)
                blocks.append(np.eye(self.levels[j] + 1)[np.clip(codes, 0, self.levels[j])])
                continue
            v = np.where(missing, self.fill[j], x)
            if kind in LOG1P_KINDS:
                v = np.log1p(np.maximum(v, 0.0))
            elif kind == "trend":
                v = np.sign(v) * np.log1p(np.abs(v))
            blocks.append(np.column_stack([v, missing.astype(np.float64)]))
        Z = np.hstack(blocks) if blocks else np.zeros((len(X), 0))
        return (Z - self.mean) / self.scale

    def margin(self, X: np.ndarray) -> np.ndarray:
        return self.design(X) @ self.coef + self.intercept

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Exact additive contributions; the design is centred, so the bias is the intercept."""
        terms = self.design(X) * self.coef
        out = np.zeros((len(X), len(self.kinds) + 1))
        np.add.at(out.T, self.owner, terms.T)
        out[:, -1] = self.intercept
        return out

    @property
    def size(self) -> dict:
        return {"coefficients": int(len(self.coef))}


def fit_lightgbm(
    X: np.ndarray,
    y: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    spec: FeatureSpec,
    cfg: ModelConfig,
) -> TreeModel:
    """LightGBM with early stopping on the validation slice; deterministic for a seed."""
    import lightgbm as lgb

    _check_labels(y, "training")
    params = {
        "objective": "binary",
        "verbosity": -1,
        "seed": cfg.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": cfg.threads,
        **cfg.lightgbm.params,
    }
    monotone = _monotone(spec, cfg.lightgbm.monotone_increasing)
    if any(monotone):
        params["monotone_constraints"] = monotone
    cats = spec.categorical_indices
    train = lgb.Dataset(X, y, feature_name=spec.names, categorical_feature=cats, free_raw_data=False)
    valid = lgb.Dataset(X_valid, y_valid, reference=train, categorical_feature=cats)
    booster = lgb.train(
        params,
        train,
        num_boost_round=cfg.lightgbm.num_boost_round,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(cfg.lightgbm.early_stopping_rounds, verbose=False)],
    )
    booster.free_dataset()
    return TreeModel(booster=booster, threads=cfg.threads)


def _monotone(spec: FeatureSpec, patterns: list[str]) -> list[int]:
    return [int(any(fnmatch.fnmatch(n, p) for p in patterns)) for n in spec.names]


def fit_logistic(X: np.ndarray, y: np.ndarray, spec: FeatureSpec, cfg: ModelConfig) -> LinearModel:
    """Regularised logistic regression on the same feature matrix."""
    _check_labels(y, "training")
    kinds = [f.kind for f in spec.features]
    levels = [len(spec.categories[f.name]) + 1 if f.kind == "categorical" else 0 for f in spec.features]
    fill = np.array(
        [RECENCY_CAP_DAYS if k == "recency" else _median(X[:, j]) for j, k in enumerate(kinds)]
    )
    model = LinearModel(kinds, levels, fill, np.zeros(0), np.ones(0), np.zeros(0, np.int64))
    owner = np.concatenate(
        [np.full(lv + 1 if k == "categorical" else 2, j) for j, (k, lv) in enumerate(zip(kinds, levels))]
    ).astype(np.int64) if kinds else np.zeros(0, np.int64)
    model.owner = owner
    model.mean, model.scale = np.zeros(len(owner)), np.ones(len(owner))
    raw = model.design(X)
    model.mean = raw.mean(axis=0)
    model.scale = np.where(raw.std(axis=0) > 1e-12, raw.std(axis=0), 1.0)
    lr = LogisticRegression(C=cfg.logistic_c, max_iter=2000, random_state=cfg.seed)
    lr.fit(model.design(X), y)
    model.coef, model.intercept = lr.coef_[0].copy(), float(lr.intercept_[0])
    return model


def _median(x: np.ndarray) -> float:
    finite = x[~np.isnan(x)]
    return float(np.median(finite)) if len(finite) else 0.0


def _check_labels(y: np.ndarray, what: str) -> None:
    if len(np.unique(y)) < 2:
        raise TrainingError(f"the {what} slice has only one class ({len(y)} rows): need both")


@dataclass
class Candidate:
    """A fitted candidate and how it did on the validation slice."""

    name: str
    model: object
    valid_auc: float
    valid_log_loss: float


def fit_candidates(
    X: np.ndarray,
    y: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    spec: FeatureSpec,
    cfg: ModelConfig,
) -> list[Candidate]:
    """Fit every configured candidate; scored on the validation slice (the latest before test)."""
    _check_labels(y_valid, "validation")
    out = []
    for name in cfg.candidates:
        if name == "lightgbm":
            model = fit_lightgbm(X, y, X_valid, y_valid, spec, cfg)
        else:
            model = fit_logistic(X, y, spec, cfg)
        margin = model.margin(X_valid)
        out.append(Candidate(name, model, float(roc_auc_score(y_valid, margin)), _log_loss(y_valid, margin)))
    return out


def choose(candidates: list[Candidate], tolerance: float = 0.002) -> tuple[Candidate, str]:
    """The candidate with the best validation ROC AUC; LightGBM only when it wins by a margin."""
    best = max(candidates, key=lambda c: c.valid_auc)
    simple = [c for c in candidates if c.name == "logistic"]
    if best.name != "logistic" and simple and best.valid_auc - simple[0].valid_auc < tolerance:
        best = simple[0]
        why = f"logistic within {tolerance} validation AUC of the best: the simpler model wins ties"
    else:
        why = f"{best.name} had the best validation ROC AUC ({best.valid_auc:.4f})"
    return best, why


def _log_loss(y: np.ndarray, margin: np.ndarray) -> float:
    p = np.clip(1 / (1 + np.exp(-margin)), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
