"""Model factories and fitting: LightGBM, a regularised logistic regression, naive Bayes.

These are the members of the forward-validated ensemble (leadml/ensemble.py). Every model
exposes the same two methods, so calibration, reasons in points, predict and the pyfunc
wrapper work the same whatever the ensemble keeps: `margin(X)` (log-odds) and
`contributions(X)` (per-feature log-odds contributions plus a last column holding the
baseline margin; exact: TreeSHAP for trees, w * (z - mean z) for the linear model).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression

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
        """Exact TreeSHAP (equal to pred_contrib) from leadml's table kernel, built on first use."""
        from leadml.treeshap import tree_contributions  # lazy: numba and cache folders on use

        return tree_contributions(self, X)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_treeshap", None)  # derived from the booster: never pickled into a bundle
        return state

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
        # Elementwise sum, not a BLAS matmul: one row and a batch must give identical margins.
        return (self.design(X) * self.coef).sum(axis=1) + self.intercept

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
    cats = spec.categorical_indices
    train = lgb.Dataset(
        X, y, feature_name=spec.names, categorical_feature=cats, free_raw_data=False
    )
    valid = lgb.Dataset(X_valid, y_valid, reference=train, categorical_feature=cats)
    booster = lgb.train(
        _lgb_params(spec, cfg),
        train,
        num_boost_round=cfg.lightgbm.num_boost_round,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(cfg.lightgbm.early_stopping_rounds, verbose=False)],
    )
    booster.free_dataset()
    return TreeModel(booster=booster, threads=cfg.threads)


def _lgb_params(spec: FeatureSpec, cfg: ModelConfig) -> dict:
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
    return params


def fit_lightgbm_rounds(
    X: np.ndarray, y: np.ndarray, spec: FeatureSpec, cfg: ModelConfig, rounds: int
) -> TreeModel:
    """LightGBM with a fixed number of rounds (found by early stopping elsewhere)."""
    import lightgbm as lgb

    _check_labels(y, "training")
    data = lgb.Dataset(X, y, feature_name=spec.names, categorical_feature=spec.categorical_indices)
    booster = lgb.train(_lgb_params(spec, cfg), data, num_boost_round=max(1, int(rounds)))
    booster.free_dataset()
    return TreeModel(booster=booster, threads=cfg.threads)


def _monotone(spec: FeatureSpec, patterns: list[str]) -> list[int]:
    return [int(any(fnmatch.fnmatch(n, p) for p in patterns)) for n in spec.names]


def fit_logistic(
    X: np.ndarray,
    y: np.ndarray,
    spec: FeatureSpec,
    cfg: ModelConfig,
    start: LinearModel | None = None,
) -> LinearModel:
    """Regularised logistic regression on the same feature matrix.

    `start` (a fit of the same spec on overlapping rows, e.g. the previous forward origin)
    warm-starts the solver: the same optimum, reached in fewer iterations.
    """
    _check_labels(y, "training")
    kinds = [f.kind for f in spec.features]
    levels = [
        len(spec.categories[f.name]) + 1 if f.kind == "categorical" else 0 for f in spec.features
    ]
    fill = np.array(
        [RECENCY_CAP_DAYS if k == "recency" else _median(X[:, j]) for j, k in enumerate(kinds)]
    )
    model = LinearModel(kinds, levels, fill, np.zeros(0), np.ones(0), np.zeros(0, np.int64))
    owner = (
        np.concatenate(
            [
                np.full(lv + 1 if k == "categorical" else 2, j)
                for j, (k, lv) in enumerate(zip(kinds, levels, strict=False))
            ]
        ).astype(np.int64)
        if kinds
        else np.zeros(0, np.int64)
    )
    model.owner = owner
    model.mean, model.scale = np.zeros(len(owner)), np.ones(len(owner))
    raw = model.design(X)
    model.mean = raw.mean(axis=0)
    # one-hot columns are centred but stay 0/1: scaling them would loosen the penalty on rare levels
    onehot = np.array([kinds[j] == "categorical" for j in owner], dtype=bool)
    std = raw.std(axis=0)
    model.scale = np.where(onehot | (std <= 1e-12), 1.0, std)
    lr = LogisticRegression(
        C=cfg.logistic_c, max_iter=2000, random_state=cfg.seed, warm_start=start is not None
    )
    if start is not None and len(start.coef) == len(owner):
        lr.coef_ = (start.coef * model.scale / start.scale)[None, :]  # same units, new scaling
        lr.intercept_ = np.array([start.intercept])
    lr.fit(model.design(X), y)
    model.coef, model.intercept = lr.coef_[0].copy(), float(lr.intercept_[0])
    return model


@dataclass
class NaiveBayesModel:
    """Frequency naive Bayes in the manner of Odoo CRM: each feature's value adds its evidence.

    Per feature, log P(bin | converted) / P(bin | not) with Laplace smoothing (numerics in
    training-quantile bins, missing its own bin); the terms are centred on training, so the
    contributions are the terms themselves and the bias holds the prior. Effects are marginal,
    not conditional: cruder than the others, but steady when the latest period moves.
    """

    edges: list  # per feature: None (categorical codes) or numeric bin edges
    tables: list  # per feature: centred log-likelihood ratio by bin (0 = missing)
    bias: float
    kind: str = "naive_bayes"

    def _codes(self, j: int, x: np.ndarray) -> np.ndarray:
        edges = self.edges[j]
        codes = x + 1 if edges is None else np.searchsorted(edges, x, side="right") + 1
        codes = np.where(np.isnan(x), 0, codes)
        return np.clip(codes, 0, len(self.tables[j]) - 1).astype(np.int64)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        out = np.empty((len(X), len(self.tables) + 1))
        for j, table in enumerate(self.tables):
            out[:, j] = table[self._codes(j, X[:, j])]
        out[:, -1] = self.bias
        return out

    def margin(self, X: np.ndarray) -> np.ndarray:
        return self.contributions(X).sum(axis=1)

    @property
    def size(self) -> dict:
        return {"bins": int(sum(len(t) for t in self.tables))}


def fit_naive_bayes(
    X: np.ndarray, y: np.ndarray, spec: FeatureSpec, cfg: ModelConfig, bins: int = 10
) -> NaiveBayesModel:
    """Naive Bayes on the same feature matrix: categorical codes and numeric quantile bins."""
    _check_labels(y, "training")
    edges: list = []
    for j, info in enumerate(spec.features):
        finite = X[~np.isnan(X[:, j]), j]
        if info.kind == "categorical" or not len(finite):
            edges.append(None)
        else:
            edges.append(np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])))
    sizes = [
        len(spec.categories[f.name]) + 2
        if e is None and f.kind == "categorical"
        else (2 if e is None else len(e) + 2)
        for f, e in zip(spec.features, edges, strict=True)
    ]
    model = NaiveBayesModel(edges, [np.zeros(k) for k in sizes], 0.0)
    pos, bias = y == 1, float(np.log((y == 1).sum() + 1) - np.log((y == 0).sum() + 1))
    for j, k in enumerate(sizes):
        codes = model._codes(j, X[:, j])
        won = np.bincount(codes[pos], minlength=k) + 1.0
        lost = np.bincount(codes[~pos], minlength=k) + 1.0
        table = np.log(won / won.sum()) - np.log(lost / lost.sum())
        centre = float(table[codes].mean())
        model.tables[j], bias = table - centre, bias + centre
    model.bias = bias
    return model


def _median(x: np.ndarray) -> float:
    finite = x[~np.isnan(x)]
    return float(np.median(finite)) if len(finite) else 0.0


def _check_labels(y: np.ndarray, what: str) -> None:
    if len(np.unique(y)) < 2:
        raise TrainingError(f"the {what} slice has only one class ({len(y)} rows): need both")
