"""`leadml evaluate`: repeated evaluation, so a user can see whether a win is real.

Data with time (timestamps, or `data.ordered`) is evaluated forward in time from rolling
origins: fold k keeps only what was known at its end and runs the training pipeline on it
unchanged, so its test slice is a later period each time and the last fold is `leadml train`'s
own split. Unordered tables (or `--stratified`) get stratified K-fold, grouped by lead. Every
fold reports leadml and both baselines, fitted on the same rows, side by side.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadml.config import Config, override
from leadml.data.io import read_dataset
from leadml.errors import TrainingError
from leadml.split import TEST, TRAIN, VALID, rolling_origins
from leadml.workflow import Prepared, evaluate_model, fit_model, prepare, silent

Log = Callable[[str], None]
MODELS = ("leadml", "logistic_regression", "lightgbm", "naive_bayes")
METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top_decile")


@dataclass
class Backtest:
    """Per-fold test metrics for leadml and the baselines, and their mean and spread."""

    method: str  # rolling_origin | stratified_kfold
    folds: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return _finite(
            {
                "method": self.method,
                "folds": self.folds,
                "summary": self.summary,
                "seconds": round(self.seconds, 2),
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def run_backtest(
    config: Config,
    *,
    url: str | None = None,
    folds: int | None = None,
    stratified: bool = False,
    log: Log = silent,
) -> Backtest:
    """Read the configured data and evaluate it fold by fold (see `backtest`)."""
    leads, events = read_dataset(config.data, url=url)
    log(f"data: {len(leads):,} leads, {0 if events is None else len(events):,} events")
    return backtest(config, leads, events, folds=folds, stratified=stratified, log=log)


def backtest(
    config: Config,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    folds: int | None = None,
    stratified: bool = False,
    log: Log = silent,
) -> Backtest:
    """Rolling-origin folds for data with an order in time, else stratified K-fold."""
    n = folds or config.split.folds
    if n < 2:
        raise TrainingError(f"--folds must be at least 2, got {n}")
    ordered = "created_at" in leads.columns or config.data.ordered or bool(config.data.order_by)
    kfold = stratified or config.split.method == "stratified" or not ordered
    started = time.perf_counter()
    result = Backtest("stratified_kfold" if kfold else "rolling_origin")
    preps = (
        _kfold_preps(config, leads, events, n, log)
        if kfold
        else _rolling_preps(config, leads, events, n, log)
    )
    for k, (cfg, prep) in enumerate(preps, start=1):
        result.folds.append(_run_fold(k, cfg, prep, log))
    result.summary = summarize(result.folds)
    result.seconds = time.perf_counter() - started
    return result


def _rolling_preps(
    config: Config, leads: pd.DataFrame, events: pd.DataFrame | None, n: int, log: Log
) -> Iterator[tuple[Config, Prepared]]:
    """Fold k: the data known at the end of its test period, split by the usual rule."""
    tf, vf = config.split.test_fraction, config.split.valid_fraction
    for start, end in rolling_origins(n, tf):
        if start - vf <= 0.1 * end or max(tf, vf) / end >= 0.5:
            raise TrainingError(
                f"{n} rolling folds of split.test_fraction {tf} leave the earliest fold too little "
                f"to train on: use fewer --folds or a smaller split.test_fraction"
            )
        cfg = override(config, split__test_fraction=tf / end, split__valid_fraction=vf / end)
        fold_leads, fold_events = known_at(leads, events, end)
        log(
            f"fold: test on the {start:.0%}-{end:.0%} stretch of the timeline, trained on what came before"
        )
        yield cfg, prepare(cfg, fold_leads, fold_events, log=_quiet)


def known_at(
    leads: pd.DataFrame, events: pd.DataFrame | None, fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The earliest `fraction` of leads (by creation, else row order) and what was known then."""
    if fraction >= 1.0:
        return leads, events
    if "created_at" not in leads.columns:
        return leads.iloc[: int(round(len(leads) * fraction))].reset_index(drop=True), events
    order = np.sort(leads["created_at"].to_numpy())
    end = order[min(int(len(order) * fraction), len(order) - 1)]
    keep = leads[leads["created_at"] < end].reset_index(drop=True)
    later = keep["converted_at"].notna() & (keep["converted_at"] >= end)
    keep.loc[later, "converted_at"] = pd.NaT  # not converted yet, as far as anyone knew then
    keep.loc[later, "status"] = "open"
    if events is not None:
        events = events[(events["occurred_at"] < end) & events["lead_id"].isin(keep["lead_id"])]
        events = events.reset_index(drop=True)
    return keep, events


def _kfold_preps(
    config: Config, leads: pd.DataFrame, events: pd.DataFrame | None, n: int, log: Log
) -> Iterator[tuple[Config, Prepared]]:
    """Stratified K-fold grouped by lead; features built once, the spec copied per fold."""
    cfg = override(config, split__method="stratified")
    base = prepare(cfg, leads, events, log=_quiet)
    groups = base.snapshots["lead_id"].to_numpy()
    inner_n = max(2, round((1 - 1 / n) / config.split.valid_fraction))
    for rest, test in _folds(n, config.model.seed, base.y, groups):
        fit, valid = next(_folds(inner_n, config.model.seed, base.y[rest], groups[rest]))
        split = np.full(len(base.y), "", dtype=object)
        split[rest[fit]], split[rest[valid]], split[test] = TRAIN, VALID, TEST
        log(f"fold: {len(test):,} test rows of {len(split):,}")
        yield cfg, _with_split(base, split)


def _folds(
    n: int, seed: int, y: np.ndarray, groups: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds; grouped by lead when a lead has several snapshots (much slower)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if len(np.unique(groups)) == len(groups):
        return StratifiedKFold(n_splits=n, shuffle=True, random_state=seed).split(y, y)
    return StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed).split(y, y, groups)


def _with_split(base: Prepared, split: np.ndarray) -> Prepared:
    """A fold's view of the prepared data: its own split and its own copy of the spec."""
    return Prepared(
        base.leads,
        base.events,
        base.snapshots,
        split,
        copy.deepcopy(base.spec),
        base.X,
        base.y,
        "stratified",
        dict(base.info),
    )


def _run_fold(k: int, cfg: Config, prep: Prepared, log: Log) -> dict:
    """Train on the fold as `leadml train` would and score the test slice with all three models."""
    t0 = time.perf_counter()
    model, info = fit_model(cfg, prep, f"fold-{k}", log=_quiet)
    ev = evaluate_model(model, prep, cfg)
    fold = {
        "fold": k,
        "rows": {name: int((prep.split == name).sum()) for name in (TRAIN, VALID, TEST)},
        "chosen": info["chosen"],
        "calibration": info.get("calibration", {}).get("method"),
        "refit": False,  # every fold's model is fitted on all its pre-test rows
        "base_rate": {
            key: ev["base_rate"][key] for key in ("train", "valid", "test", "shift_warning")
        },
        "models": {"leadml": ev["test"], **ev["baselines"]},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    m = fold["models"]
    log(
        f"fold {k}: leadml ({info['chosen']}) ROC AUC {m['leadml']['roc_auc']:.4f}, "
        + ", ".join(f"{n.replace('_', ' ')} {m[n]['roc_auc']:.4f}" for n in MODELS[1:])
        + f" on {fold['rows'][TEST]:,} test rows (conversion {fold['base_rate']['test']:.1%})"
    )
    return fold


def summarize(folds: list[dict]) -> dict:
    """Mean, standard deviation, min and max over folds of every metric of every model."""
    out: dict = {}
    for model in MODELS:
        out[model] = {}
        for metric in METRICS:
            values = np.array([f["models"][model][metric] for f in folds], dtype=np.float64)
            values = values[np.isfinite(values)]
            out[model][metric] = _spread(values)
    out["leadml_wins"] = {
        **{
            f"vs_{peer}": sum(
                f["models"]["leadml"]["roc_auc"] >= f["models"][peer]["roc_auc"] for f in folds
            )
            for peer in MODELS[1:]
        },
        "folds": len(folds),
    }
    return out


def _spread(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None, "std": None, "min": None, "max": None}
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {
        "mean": float(values.mean()),
        "std": std,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _finite(value: object) -> object:
    """JSON-safe: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _quiet(_: str) -> None:
    return None
