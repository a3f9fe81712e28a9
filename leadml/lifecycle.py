"""Champion and challenger: compare two registered models on the same latest holdout slice and
promote the challenger only when it is not worse beyond a bootstrap confidence interval.

Every `leadml train` registers a challenger (tracking.runs.log_training_run). `promote`
rebuilds the test slice from the lead database with the workflow's own split, scores it with
each model's own feature spec, and moves the `champion` alias; the decision is written to an
MLflow run and to the challenger's registry tags. MLflow is reached only through
`leadml.tracking` (registry and runs). Printing is console.py's (print_promotion).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from leadml.bundle import LeadModel
from leadml.config import Config, PromotionConfig
from leadml.data.io import read_dataset
from leadml.errors import LeadmlError, ModelError, TrainingError
from leadml.evaluate import metrics
from leadml.features import build_features
from leadml.predict import load_model, score_matrix
from leadml.split import TEST
from leadml.tracking import registry, runs
from leadml.workflow import prepare

Log = Callable[[str], None]


def _silent(_: str) -> None:
    """The default log: library calls print nothing (the CLI passes console.progress_log)."""


REPORTED = ("roc_auc", "pr_auc", "ece", "lift_top_decile", "brier")


@dataclass
class Holdout:
    """The latest test slice: snapshot rows of `leads`, their as_of times and labels."""

    leads: pd.DataFrame
    events: pd.DataFrame | None
    rows: np.ndarray
    as_of: np.ndarray | None
    y: np.ndarray


@dataclass
class Comparison:
    """Challenger against champion on one holdout slice, with the paired AUC interval."""

    challenger: dict
    champion: dict
    auc_diff: float
    diff_low: float
    diff_high: float
    confidence: float
    tolerance: float
    bootstrap_samples: int
    n: int
    positives: int

    @property
    def passed(self) -> bool:
        """Not worse beyond the interval: the upper bound of the AUC difference >= -tolerance."""
        return bool(self.diff_high >= -self.tolerance)


@dataclass
class Promotion:
    """What `promote` decided and recorded."""

    challenger_version: str
    champion_version: str | None  # the champion before this call
    promoted: bool
    forced: bool
    reason: str
    comparison: Comparison | None = None
    run_id: str | None = None
    tags: dict = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """The comparison ran and the challenger lost (the scheduler's failure signal)."""
        return not self.promoted and self.comparison is not None


def latest_holdout(config: Config, leads: pd.DataFrame, events: pd.DataFrame | None) -> Holdout:
    """The TEST part of the workflow's own snapshots and split on the current data."""

    prep = prepare(config, leads, events, log=lambda _: None)
    test = prep.split == TEST
    y = prep.y[test]
    if len(y) == 0 or len(np.unique(y)) < 2:
        raise TrainingError(
            f"the holdout slice has {len(y)} snapshots and {int(y.sum())} conversions: "
            "need both classes to compare models"
        )
    as_of = prep.snapshots["as_of"].to_numpy()[test] if "created_at" in leads.columns else None
    return Holdout(leads, events, prep.snapshots["row"].to_numpy()[test], as_of, y)


def holdout_probabilities(model: LeadModel, holdout: Holdout) -> np.ndarray:
    """Calibrated probabilities of `model` on the holdout, built with the model's own feature spec."""

    X = build_features(model.spec, holdout.leads.iloc[holdout.rows], holdout.events, holdout.as_of)
    return np.asarray(score_matrix(model, X, reasons=False)["probability"], dtype=np.float64)


def _auc_groups(p: np.ndarray) -> np.ndarray:
    """Rank group of each probability (ties share a group), for weighted AUCs."""
    return np.unique(p, return_inverse=True)[1]


def weighted_auc(groups: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """ROC AUC with row weights (bootstrap counts); ties count one half. NaN without both classes."""
    k = int(groups.max()) + 1 if len(groups) else 0
    pos = np.bincount(groups, weights=w * y, minlength=k)
    neg = np.bincount(groups, weights=w * (1 - y), minlength=k)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float(np.sum(pos * (below + 0.5 * neg)) / (total_pos * total_neg))


def paired_bootstrap(
    y: np.ndarray,
    p_new: np.ndarray,
    p_old: np.ndarray,
    samples: int = 500,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Percentile intervals of each AUC and of AUC(new) - AUC(old), resampling rows jointly."""
    y = np.asarray(y, dtype=np.float64)
    g_new, g_old = _auc_groups(p_new), _auc_groups(p_old)
    rng = np.random.default_rng(seed)
    n = len(y)
    draws = np.empty((samples, 2))
    for b in range(samples):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        draws[b] = weighted_auc(g_new, y, w), weighted_auc(g_old, y, w)
    draws = draws[~np.isnan(draws).any(axis=1)]
    tail = 100 * (1 - confidence) / 2
    ones = np.ones(n)

    def interval(values: np.ndarray) -> tuple[float, float]:
        low, high = np.percentile(values, [tail, 100 - tail])
        return float(low), float(high)

    return {
        "auc_new": weighted_auc(g_new, y, ones),
        "auc_old": weighted_auc(g_old, y, ones),
        "ci_new": interval(draws[:, 0]),
        "ci_old": interval(draws[:, 1]),
        "diff_ci": interval(draws[:, 0] - draws[:, 1]),
    }


def compare(
    y: np.ndarray, p_challenger: np.ndarray, p_champion: np.ndarray, cfg: PromotionConfig
) -> Comparison:
    """ROC AUC (with intervals), PR AUC, ECE, lift and Brier of both models on the same rows."""
    boot = paired_bootstrap(
        y, p_challenger, p_champion, cfg.bootstrap_samples, cfg.seed, cfg.confidence
    )
    sides = {}
    for role, p, ci in (
        ("challenger", p_challenger, boot["ci_new"]),
        ("champion", p_champion, boot["ci_old"]),
    ):
        m = metrics(y, p)
        sides[role] = {**{k: m[k] for k in REPORTED}, "roc_auc_low": ci[0], "roc_auc_high": ci[1]}
    low, high = boot["diff_ci"]
    return Comparison(
        sides["challenger"],
        sides["champion"],
        boot["auc_new"] - boot["auc_old"],
        low,
        high,
        cfg.confidence,
        cfg.tolerance,
        cfg.bootstrap_samples,
        int(len(y)),
        int(np.sum(y)),
    )


def promote(
    config: Config,
    *,
    url: str | None = None,
    candidate: str | None = None,
    force: bool = False,
    log: Log = _silent,
) -> Promotion:
    """Compare the challenger (or registered version `candidate`) with the champion; move the
    champion alias when it is not worse beyond the interval, or when forced. Always recorded."""
    challenger = (
        str(candidate) if candidate else registry.alias_version(config, registry.CHALLENGER)
    )
    if challenger is None:
        raise ModelError(
            f"no '{registry.CHALLENGER}' version of registered model "
            f"'{config.mlflow.registered_model}': train one first (leadml train)"
        )
    champion = registry.alias_version(config, registry.CHAMPION)
    if champion is None:
        return _record(
            config, Promotion(challenger, None, True, False, "first champion: no champion yet")
        )
    if champion == challenger:
        return Promotion(
            challenger, champion, False, False, f"version {challenger} is already the champion"
        )
    try:
        comparison = compare_versions(config, challenger, champion, url=url, log=log)
    except LeadmlError as exc:
        if not force:
            raise
        return _record(
            config,
            Promotion(challenger, champion, True, True, f"forced without a comparison ({exc})"),
        )
    result = Promotion(
        challenger,
        champion,
        comparison.passed or force,
        force and not comparison.passed,
        _reason(comparison, force),
        comparison,
    )
    return _record(config, result)


def compare_versions(
    config: Config, challenger: str, champion: str, *, url: str | None = None, log: Log = _silent
) -> Comparison:
    """Score both registered versions on the latest holdout slice of the lead database."""

    models = {
        "challenger": _load_version(config, challenger),
        "champion": _load_version(config, champion),
    }
    leads, events = read_dataset(config.data, url=url)
    holdout = latest_holdout(config, leads, events)
    log(f"holdout: {len(holdout.y):,} snapshots, {int(holdout.y.sum()):,} conversions")
    comparison = compare(
        holdout.y,
        holdout_probabilities(models["challenger"], holdout),
        holdout_probabilities(models["champion"], holdout),
        config.promotion,
    )
    for role, model in models.items():
        getattr(comparison, role)["model_version"] = model.version
    return comparison


def _load_version(config: Config, version: str) -> LeadModel:
    return load_model(registry.model_uri(config, version), config)


def _reason(c: Comparison, force: bool) -> str:
    interval = (
        f"{c.confidence:.0%} CI of the AUC difference [{c.diff_low:+.4f}, {c.diff_high:+.4f}]"
    )
    if c.passed:
        return f"not worse: {interval} reaches {-c.tolerance:+.4f}"
    verdict = f"worse: {interval} lies below {-c.tolerance:+.4f}"
    return f"forced although {verdict}" if force else verdict


def _record(config: Config, result: Promotion) -> Promotion:
    """Move the alias when promoted; write the comparison run and the registry tags."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    decision = ("forced" if result.forced else "promoted") if result.promoted else "refused"
    tags = {
        "leadml.promotion.decision": decision,
        "leadml.promotion.reason": result.reason,
        "leadml.promotion.at": now,
        "leadml.promotion.compared_with": result.champion_version or "",
        "leadml.promotion.forced": str(result.forced).lower(),
    }
    payload = {
        "challenger_version": result.challenger_version,
        "champion_version": result.champion_version,
        "decision": decision,
        "reason": result.reason,
        "at": now,
        "comparison": asdict(result.comparison) if result.comparison else None,
    }
    c = result.comparison
    if c is not None:
        tags["leadml.promotion.auc_diff"] = (
            f"{c.auc_diff:+.4f} [{c.diff_low:+.4f}, {c.diff_high:+.4f}]"
        )
    run_name = f"promote-v{result.challenger_version}-vs-v{result.champion_version or 'none'}"
    result.run_id = runs.log_comparison(config, run_name, _run_metrics(result), dict(tags), payload)
    tags["leadml.promotion.run_id"] = result.run_id
    if result.promoted:
        registry.set_alias(config, registry.CHAMPION, result.challenger_version)
        tags["leadml.previous_champion"] = result.champion_version or ""
    registry.tag_version(config, result.challenger_version, tags)
    result.tags = tags
    return result


def _run_metrics(result: Promotion) -> dict[str, float]:
    out = {"promoted": float(result.promoted), "forced": float(result.forced)}
    c = result.comparison
    if c is not None:
        out.update(
            {
                "auc_diff": c.auc_diff,
                "auc_diff_low": c.diff_low,
                "auc_diff_high": c.diff_high,
                "holdout_n": c.n,
                "holdout_positives": c.positives,
            }
        )
        for role in ("challenger", "champion"):
            out.update(
                {f"{role}_{k}": v for k, v in getattr(c, role).items() if k != "model_version"}
            )
    return out
