"""The forward-validated ensemble: no winner-take-all choice on one thin slice.

Each candidate (LightGBM, the plain logistic regression, naive Bayes) is fitted on several
expanding forward origins inside the pre-test period and scored on the block after each one.
Their out-of-time margins are combined in log-odds with non-negative weights and an intercept
fitted on all blocks together (stacking, log loss), so a candidate that was lucky on one block
cannot take the whole model. The members that keep a weight are then fitted on all pre-test
rows (LightGBM with the number of rounds its origins stopped at), and the ensemble is one
more model with exact `margin(X)` and `contributions(X)`: the weighted sum of its members'
(bias included), so reasons in points, predict, batch, serve, Spark and the pyfunc are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from leadml.config import ModelConfig
from leadml.errors import TrainingError
from leadml.features import FeatureSpec
from leadml.split import Origin
from leadml.train import fit_lightgbm, fit_lightgbm_rounds, fit_logistic, fit_naive_bayes

MIN_EFFECT = 0.02  # a member whose weighted margin moves by less (sd, log-odds) is dropped
STACK_L2 = 1e-4
RECENCY = 2.0  # each later block weighs this much more in the stacking


@dataclass
class EnsembleModel:
    """Members' log-odds combined with non-negative weights plus an intercept (exact)."""

    parts: list
    weights: list[float]
    intercept: float
    names: list[str]
    kind: str = "ensemble"

    def margin(self, X: np.ndarray) -> np.ndarray:
        out = np.full(len(X), self.intercept, dtype=np.float64)
        for part, w in zip(self.parts, self.weights, strict=True):
            out = out + w * part.margin(X)
        return out

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Weighted sum of the members' contributions; the last column (bias) gets the intercept."""
        out = np.zeros((len(X), X.shape[1] + 1))
        for part, w in zip(self.parts, self.weights, strict=True):
            out = out + w * part.contributions(X)
        out[:, -1] += self.intercept
        return out

    @property
    def threads(self) -> int:
        return max((getattr(part, "threads", 0) for part in self.parts), default=0)

    @threads.setter
    def threads(self, value: int) -> None:
        for part in self.parts:
            if hasattr(part, "threads"):
                part.threads = value

    @property
    def size(self) -> dict:
        return {
            name: {"weight": round(w, 4), **part.size}
            for name, part, w in zip(self.names, self.parts, self.weights, strict=True)
        }

    @property
    def description(self) -> str:
        return " + ".join(f"{w:.2f} x {n}" for n, w in zip(self.names, self.weights, strict=True))


@dataclass
class OriginResult:
    """The candidates fitted on one origin and their margins on the block after it."""

    fit_rows: int
    block: np.ndarray
    margins: dict[str, np.ndarray]
    rounds: int | None = None
    linear: object = None  # the logistic fit, a warm start for the next origin and the final


@dataclass
class ForwardFit:
    """What the forward origins said: weights, LightGBM rounds and out-of-time margins."""

    names: list[str]
    weights: dict[str, float]
    intercept: float
    rounds: int | None
    oot_rows: np.ndarray  # the block rows, oldest block first
    oot_margin: np.ndarray  # the ensemble's out-of-time margin on them
    oot_block: np.ndarray  # which block each of them is in
    summary: dict = field(default_factory=dict)
    start: object = None  # the latest origin's logistic fit (warm start for the final one)

    @property
    def kept(self) -> list[str]:
        return [n for n in self.names if self.weights[n] > 0]


def fit_origin(
    X: np.ndarray,
    y: np.ndarray,
    origin: Origin,
    spec: FeatureSpec,
    cfg: ModelConfig,
    previous: OriginResult | None = None,
) -> OriginResult:
    """Every candidate fitted before the origin and scored on its block (never tuned on it)."""
    fit, block = origin.fit, origin.block
    X_fit, y_fit, X_b = X[fit], y[fit], X[block]
    margins: dict[str, np.ndarray] = {}
    rounds, linear = None, None
    for name in dict.fromkeys(cfg.candidates):
        if name == "lightgbm":
            a, b = origin.stop_fit, origin.stop
            model = fit_lightgbm(X[a], y[a], X[b], y[b], spec, cfg)
            rounds = int(model.booster.best_iteration or model.booster.current_iteration())
            rounds = max(1, round(rounds * len(fit) / max(len(a), 1)))  # per fit row count
        elif name == "logistic":
            start = previous.linear if previous is not None else None
            model = linear = fit_logistic(X_fit, y_fit, spec, cfg, start)
        else:
            model = fit_naive_bayes(X_fit, y_fit, spec, cfg)
        margins[name] = model.margin(X_b)
    return OriginResult(len(fit), block, margins, rounds, linear)


def stack(
    margins: np.ndarray, y: np.ndarray, blocks: np.ndarray, l2: float = STACK_L2
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative weights (and one intercept per block) minimising the log loss of `b + M @ w`.

    Each block has its own intercept, so the weights judge how well the members rank leads
    within each period, not how well they guessed its conversion rate (a level that moves from
    period to period is the calibrator's job). Later blocks count more (each twice the one
    before): they look most like the period to come.
    """
    from scipy.optimize import minimize

    n, k = margins.shape
    y = y.astype(np.float64)
    _, block = np.unique(blocks, return_inverse=True)
    g = int(block.max()) + 1
    sw = RECENCY ** block.astype(np.float64)
    sw /= sw.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:k], theta[k:]
        z = b[block] + margins @ w
        value = float(np.sum(sw * (np.logaddexp(0.0, z) - y * z)) + l2 * np.sum(w * w))
        residual = sw * (1.0 / (1.0 + np.exp(-z)) - y)
        grad_b = np.bincount(block, weights=residual, minlength=g)
        return value, np.concatenate([margins.T @ residual + 2 * l2 * w, grad_b])

    rate = np.clip(y.mean(), 1e-4, 1 - 1e-4)
    start = np.concatenate([np.full(k, 1.0 / k), np.full(g, np.log(rate / (1 - rate)))])
    bounds = [(0.0, None)] * k + [(None, None)] * g
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return np.maximum(result.x[:k], 0.0), result.x[k:]


def stack_and_prune(
    margins: np.ndarray, y: np.ndarray, blocks: np.ndarray, names: list[str]
) -> tuple[dict[str, float], float]:
    """Stacked weights and the latest block's intercept; members that barely move the margin
    (weight x sd below MIN_EFFECT log-odds) are dropped and the rest restacked."""
    active = list(range(len(names)))
    while True:
        w, b = stack(margins[:, active], y, blocks)
        effect = w * margins[:, active].std(axis=0)
        weak = [a for a, e in zip(active, effect, strict=True) if e < MIN_EFFECT]
        if not weak or len(weak) == len(active):
            break
        active = [a for a in active if a not in weak]
    weights = dict.fromkeys(names, 0.0)
    for a, value in zip(active, w, strict=True):
        weights[names[a]] = float(value)
    return weights, float(b[-1])


def forward_validate(
    X: np.ndarray,
    y: np.ndarray,
    origins: list[Origin],
    spec: FeatureSpec,
    cfg: ModelConfig,
) -> ForwardFit:
    """Fit the candidates on every usable origin, stack their out-of-time margins."""
    results: list[OriginResult] = []
    for o in origins:
        if all(_two_classes(y[rows]) for rows in (o.fit, o.block, o.stop_fit, o.stop)):
            results.append(fit_origin(X, y, o, spec, cfg, results[-1] if results else None))
    if not results:
        raise TrainingError(
            f"no forward origin has both classes in its fit rows and its block "
            f"({len(origins)} origins over {len(y):,} pre-test rows): need more conversions"
        )
    names = list(results[0].margins)
    rows = np.concatenate([r.block for r in results])
    blocks = np.concatenate([np.full(len(r.block), k) for k, r in enumerate(results)])
    M = np.vstack([np.column_stack([r.margins[n] for n in names]) for r in results])
    weights, intercept = stack_and_prune(M, y[rows], blocks, names)
    w = np.array([weights[n] for n in names])
    rounds = _final_rounds(results, len(y), cfg)
    fwd = ForwardFit(names, weights, intercept, rounds, rows, intercept + M @ w, blocks)
    fwd.start = results[-1].linear
    fwd.summary = _summary(results, y, names, weights)
    return fwd


def fit_ensemble(
    X: np.ndarray, y: np.ndarray, spec: FeatureSpec, cfg: ModelConfig, fwd: ForwardFit
) -> EnsembleModel:
    """The members that kept a weight, fitted on all pre-test rows, with the stacked weights."""
    parts = []
    for name in fwd.kept:
        if name == "lightgbm":
            parts.append(fit_lightgbm_rounds(X, y, spec, cfg, fwd.rounds or 1))
        elif name == "logistic":
            parts.append(fit_logistic(X, y, spec, cfg, fwd.start))
        else:
            parts.append(fit_naive_bayes(X, y, spec, cfg))
    return EnsembleModel(parts, [fwd.weights[n] for n in fwd.kept], fwd.intercept, fwd.kept)


def calibration_margin(fwd: ForwardFit, final: EnsembleModel, X: np.ndarray) -> np.ndarray:
    """The out-of-time margins, block by block, moved to the shipped model's level there.

    Within a block the order (and spread) is out of time; the block's mean probability is the
    shipped model's own on those rows. A calibrator fitted on these maps the shipped model's margins,
    so a base rate that moved before the test period is neither missed nor counted twice (the
    forward models saw less of the new rate than the shipped one has).
    """
    z = fwd.oot_margin.copy()
    level = 1.0 / (1.0 + np.exp(-final.margin(X[fwd.oot_rows])))
    for k in np.unique(fwd.oot_block):
        rows = fwd.oot_block == k
        z[rows] += _shift_to_mean(z[rows], float(level[rows].mean()))
    return z


def _shift_to_mean(z: np.ndarray, target: float) -> float:
    """The log-odds shift d with mean(sigmoid(z + d)) == target (Newton; levels in probability,
    not in log-odds, where a model's spread would move the mean)."""
    d = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z + d)))
        step = (p.mean() - target) / max(float((p * (1 - p)).mean()), 1e-9)
        d -= step
        if abs(step) < 1e-10:
            break
    return d


def _final_rounds(results: list[OriginResult], rows: int, cfg: ModelConfig) -> int | None:
    """LightGBM rounds for all pre-test rows: each origin's early stop scaled to the row count."""
    found = [r.rounds * rows / max(r.fit_rows, 1) for r in results if r.rounds]
    if not found:
        return None
    return int(np.clip(round(float(np.mean(found))), 1, 2 * cfg.lightgbm.num_boost_round))


def _summary(results: list[OriginResult], y: np.ndarray, names: list[str], weights: dict) -> dict:
    """Per-origin ROC AUC of every candidate and of the ensemble with weights from the others."""
    per_origin = []
    for k, r in enumerate(results):
        yb = y[r.block]
        row = {
            "fit_rows": r.fit_rows,
            "rows": int(len(r.block)),
            "rate": float(yb.mean()),
            "rounds": r.rounds,
            "roc_auc": {n: _auc(yb, r.margins[n]) for n in names},
        }
        others = [o for j, o in enumerate(results) if j != k]
        if others:  # the ensemble's honest figure: weights fitted without this block
            Mo = np.vstack([np.column_stack([o.margins[n] for n in names]) for o in others])
            yo = np.concatenate([y[o.block] for o in others])
            go = np.concatenate([np.full(len(o.block), j) for j, o in enumerate(others)])
            w, b = stack_and_prune(Mo, yo, go, names)
            z = b + np.column_stack([r.margins[n] for n in names]) @ np.array([w[n] for n in names])
            row["roc_auc"]["ensemble"] = _auc(yb, z)
        per_origin.append(row)
    keys = names + (["ensemble"] if len(results) > 1 else [])
    spread = {}
    for key in keys:
        values = np.array([row["roc_auc"][key] for row in per_origin])
        spread[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        }
    return {"origins": per_origin, "roc_auc": spread, "weights": weights}


def _auc(y: np.ndarray, margin: np.ndarray) -> float:
    return float(roc_auc_score(y, margin)) if _two_classes(y) else float("nan")


def _two_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2
