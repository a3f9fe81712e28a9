"""The training run, short and linear: read -> snapshots -> split -> features -> screen ->
forward-validated ensemble -> calibrate -> grade -> evaluate -> bundle (+ report, MLflow).

Past 500 lines on purpose: it is the one place that reads as the run's steps in order, each a
short function; the work of every step lives in its own module (features, ensemble,
calibrate, evaluate, report, tracking).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from leadml.bundle import LeadModel, point_latest, save_bundle
from leadml.calibrate import GradeThresholds, fit_calibrator, grade_thresholds, to_score
from leadml.config import Config
from leadml.data.io import read_dataset
from leadml.ensemble import (
    EnsembleModel,
    ForwardFit,
    calibration_margin,
    fit_ensemble,
    forward_validate,
)
from leadml.errors import ModelError, TrainingError
from leadml.evaluate import (
    fit_lightgbm_baseline,
    fit_logistic_baseline,
    fit_naive_bayes_baseline,
    gains_by_decile,
    metrics,
    reliability_table,
    segment_auc,
)
from leadml.features import (
    FeatureSpec,
    build_features,
    data_cutoff,
    fit_feature_spec,
    make_snapshots,
    table_snapshots,
)
from leadml.hygiene import hygiene_lines
from leadml.predict import score_matrix
from leadml.report import metrics_json as metrics_json  # re-exported; lives in report.py
from leadml.report import write_artifacts
from leadml.screen import Screening, post_outcome_columns, screen_features
from leadml.split import (
    TEST,
    TRAIN,
    VALID,
    Origin,
    choose_method,
    forward_origins,
    shuffled_origins,
    split_snapshots,
    time_rank,
)
from leadml.tracking.registry import champion_grades

Log = Callable[[str], None]


def silent(_: str) -> None:
    """The default log: library calls print nothing (the CLI passes console.progress_log)."""


@dataclass
class Prepared:
    """A featurized, split training set."""

    leads: pd.DataFrame
    events: pd.DataFrame | None
    snapshots: pd.DataFrame
    split: np.ndarray
    spec: FeatureSpec
    X: np.ndarray
    y: np.ndarray
    method: str
    info: dict = field(default_factory=dict)

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        mask = self.split == name
        return self.X[mask], self.y[mask]

    @property
    def pretest(self) -> np.ndarray:
        """Rows before the test period whose label is known before it: what the model is fitted on."""
        return (self.split == TRAIN) | (self.split == VALID)


def prepare(
    config: Config, leads: pd.DataFrame, events: pd.DataFrame | None, log: Log = silent
) -> Prepared:
    """Snapshots, split and point-in-time features for a validated dataset."""
    has_time = "created_at" in leads.columns
    if has_time:
        cutoff = data_cutoff(leads, events)
        snaps = make_snapshots(
            leads, config.snapshots.offsets_days, config.snapshots.horizon_days, cutoff
        )
    else:
        cutoff, snaps = None, table_snapshots(leads)
    if len(snaps) == 0:
        raise TrainingError(
            "no training snapshots: no lead has a fully observed label window "
            f"({config.snapshots.horizon_days} days) before the end of the data"
        )
    ordered = config.data.ordered or config.data.order_by is not None
    method = choose_method(config.split, has_time, ordered)
    split = split_snapshots(
        snaps,
        leads,
        config.split,
        method,
        horizon_days=config.snapshots.horizon_days,
        seed=config.model.seed,
    )
    # categories and event types of all pre-test rows: the final model is fitted on all of them
    pretest_rows = snaps["row"].to_numpy()[(split == TRAIN) | (split == VALID)]
    spec = fit_feature_spec(leads.iloc[np.unique(pretest_rows)], events, config)
    t0 = time.perf_counter()
    as_of = snaps["as_of"].to_numpy() if has_time else None
    X = build_features(spec, leads.iloc[snaps["row"].to_numpy()], events, as_of)
    log(
        f"features: {X.shape[0]:,} snapshots x {X.shape[1]} features in {time.perf_counter() - t0:.1f}s"
    )
    info = {
        "cutoff": str(cutoff) if cutoff is not None else None,
        "featurize_seconds": time.perf_counter() - t0,
        "leads": len(leads),
        "events": 0 if events is None else len(events),
        "snapshots": len(snaps),
    }
    if has_time:
        info["window"] = [str(leads["created_at"].min()), str(cutoff)]
    return Prepared(
        leads,
        events,
        snaps,
        split,
        spec,
        X,
        snaps["label"].to_numpy().astype(np.int64),
        method,
        info,
    )


def drop_features(prep: Prepared, names: list[str]) -> None:
    """Remove features from the spec and the matrix (drift or leak screening)."""
    if not names:
        return
    keep = [j for j, f in enumerate(prep.spec.features) if f.name not in names]
    spec = prep.spec
    spec.features = [spec.features[j] for j in keep]
    kept = set(spec.names)
    spec.categories = {c: v for c, v in spec.categories.items() if c in kept}
    spec.numeric = [c for c in spec.numeric if c in kept]
    spec.__dict__.pop("_lookups", None)
    prep.X = prep.X[:, keep]


def fit_model(
    config: Config,
    prep: Prepared,
    version: str,
    log: Log = silent,
    *,
    previous_grades: GradeThresholds | None = None,
) -> tuple[LeadModel, dict]:
    """Screen, fit the forward-validated ensemble on all pre-test rows, calibrate, set grades."""
    X_tr, y_tr = prep.part(TRAIN)
    X_va, y_va = prep.part(VALID)
    screening = screen_features(
        prep.spec, X_tr, y_tr, X_va, config.screening, **_age_groups(prep), seed=config.model.seed
    )
    screening.notes += [
        f"Column '{c}' {why}."
        for c, why in post_outcome_columns(prep.leads, prep.snapshots).items()
    ]
    _report_screening(screening, config, log)
    drop_features(prep, screening.dropped)
    t0 = time.perf_counter()
    pre = prep.pretest
    X_pre, y_pre = prep.X[pre], prep.y[pre]
    fwd = forward_validate(X_pre, y_pre, pretest_origins(prep, config), prep.spec, config.model)
    final = fit_ensemble(X_pre, y_pre, prep.spec, config.model, fwd)
    _report_forward(fwd, log)
    # calibrated on the out-of-time margins of the model that ships (same members and weights,
    # cross-fitted forward), so no refit can leave it behind
    oot_margin = calibration_margin(fwd, final, X_pre)
    calibrator, cal_info = fit_calibrator(
        oot_margin, y_pre[fwd.oot_rows], config.calibration.method
    )
    train_scores = to_score(calibrator.predict(final.margin(X_pre)))
    grades = grade_thresholds(config.grades, train_scores, previous=previous_grades)
    model = LeadModel(
        prep.spec,
        final,
        calibrator,
        grades,
        version,
        config.explain.top_positive,
        config.explain.top_negative,
        metadata={"ensemble": final.description},
        facet_patterns=(
            tuple(config.explain.fit_features),
            tuple(config.explain.engagement_features),
        ),
    )
    info = {
        "chosen": final.description,
        "chosen_because": _why(fwd),
        "fit_seconds": time.perf_counter() - t0,
        "fit_rows": int(pre.sum()),
        "forward": _finite_tree(fwd.summary),
        "candidates": _candidate_rows(fwd, final),
        "calibration": {
            **cal_info,
            "rows": int(len(fwd.oot_rows)),
            "forward": metrics(y_pre[fwd.oot_rows], calibrator.predict(oot_margin)),
        },
        "screening": screening.__dict__,
    }
    return model, info


def pretest_origins(prep: Prepared, config: Config) -> list[Origin]:
    """Forward origins over the pre-test rows (indices into them); K folds for unordered data."""
    pre = prep.pretest
    m = config.model
    if prep.method == "stratified":
        return shuffled_origins(prep.y[pre], max(m.origins, 2), m.seed)
    rank, as_of = time_rank(prep.snapshots, prep.leads, prep.method)
    horizon = config.snapshots.horizon_days if prep.method == "time" else 0.0
    return forward_origins(rank[pre], as_of[pre], m.origins, m.origin_share, horizon)


def _report_forward(fwd: ForwardFit, log: Log) -> None:
    auc = fwd.summary["roc_auc"]
    log(
        f"forward origins: {len(fwd.summary['origins'])}; ROC AUC mean ± sd "
        + ", ".join(f"{n} {v['mean']:.4f} ± {v['std']:.4f}" for n, v in auc.items())
    )
    dropped = [n for n in fwd.names if fwd.weights[n] == 0]
    log(
        "ensemble: "
        + ", ".join(f"{n} x {fwd.weights[n]:.3f}" for n in fwd.kept)
        + (f" ({', '.join(dropped)} dropped: no weight)" if dropped else "")
        + (f"; LightGBM {fwd.rounds} rounds" if fwd.rounds and "lightgbm" in fwd.kept else "")
    )


def _why(fwd: ForwardFit) -> str:
    n = len(fwd.summary["origins"])
    return (
        f"log-odds weights fitted on the out-of-time predictions of {n} forward origin"
        f"{'s' if n != 1 else ''} ({len(fwd.oot_rows):,} rows); members refitted on all pre-test rows"
    )


def _candidate_rows(fwd: ForwardFit, final: EnsembleModel) -> list[dict]:
    """Per candidate: forward ROC AUC mean and sd across origins, its weight and size."""
    sizes = dict(zip(final.names, (p.size for p in final.parts), strict=True))
    auc = fwd.summary["roc_auc"]
    return [
        {
            "name": n,
            "forward_auc": auc[n]["mean"],
            "forward_auc_sd": auc[n]["std"],
            "weight": fwd.weights.get(n, 0.0),
            "size": sizes.get(n, {}),
        }
        for n in [*fwd.names, *(["ensemble"] if "ensemble" in auc else [])]
    ]


def _finite_tree(value: object) -> object:
    """NaN to None, numpy to Python, for metrics.json."""
    if isinstance(value, dict):
        return {k: _finite_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_tree(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _age_groups(prep: Prepared) -> dict:
    """Snapshot age in whole days per row of the training and validation slices (time data)."""
    if "created_at" not in prep.leads.columns:
        return {}
    created = prep.leads["created_at"].to_numpy()[prep.snapshots["row"].to_numpy()]
    age = np.rint((prep.snapshots["as_of"].to_numpy() - created) / np.timedelta64(1, "D"))
    return {"groups_train": age[prep.split == TRAIN], "groups_latest": age[prep.split == VALID]}


def _report_screening(s: Screening, config: Config, log: Log) -> None:
    action = (
        "the run fails (screening.fail_on_leak)" if config.screening.fail_on_leak else "dropped"
    )
    for note in s.notes:
        log(f"LEAK WARNING: {note}")
    for name in s.leaks:
        s.notes.append(f"Leak warning: feature '{name}' {s.leak_reasons.get(name, '')}.")
        log(
            f"LEAK WARNING: feature '{name}' {s.leak_reasons.get(name, 'predicts the label almost alone')}. "
            f"Is it known before the outcome? {action}; declare known leaks in data.leaking."
        )
    if s.leaks and config.screening.fail_on_leak:
        reasons = "; ".join(f"'{n}' {s.leak_reasons.get(n, '')}".strip() for n in s.leaks)
        raise TrainingError(
            f"leaking feature(s) {s.leaks} (screening.fail_on_leak is true): {reasons}"
        )
    if s.drifted:
        action = (
            "dropped"
            if config.screening.drift_action == "drop"
            else "kept (screening.drift_action: report)"
        )
        log(
            f"drift: {s.drifted} differ between the training period and the latest period (PSI > {config.screening.drift_psi}); {action}"
        )


def evaluate_model(model: LeadModel, prep: Prepared, config: Config) -> dict:
    """Test-slice metrics for leadml (scored through predict) and the peers on the same rows."""
    X_tr, y_tr = prep.part(TRAIN)
    X_va, y_va = prep.part(VALID)
    X_te, y_te = prep.part(TEST)
    if len(y_te) == 0 or len(np.unique(y_te)) < 2:
        raise TrainingError(
            f"the test slice has {len(y_te)} rows and {int(y_te.sum())} conversions: need both classes"
        )
    scored = score_matrix(model, X_te, reasons=False)
    p_te, grades = scored["probability"], scored["grade"]
    peers = {name: peer.predict_proba(X_te) for name, peer in fit_peers(prep, config).items()}
    rates = {"train": float(y_tr.mean()), "valid": float(y_va.mean()), "test": float(y_te.mean())}
    seg = _segment_column(prep)
    test = metrics(y_te, p_te)
    baselines = {name: metrics(y_te, p) for name, p in peers.items()}
    return {
        "model_version": model.version,
        "model_kind": model.kind,
        "test": test,
        "baselines": baselines,
        "peer_check": peer_check(test, baselines),
        "reliability": reliability_table(y_te, p_te),
        "gains": gains_by_decile(y_te, p_te),
        "by_grade": {
            g: {
                "n": int((grades == g).sum()),
                "rate": float(y_te[grades == g].mean()) if (grades == g).any() else None,
            }
            for g in model.grades.names
        },
        "segments": segment_auc(y_te, p_te, seg[prep.split == TEST]) if seg is not None else {},
        "base_rate": _base_rate(rates, y_tr, y_va, y_te),
        "split": {
            "method": prep.method,
            **{k: int((prep.split == k).sum()) for k in (TRAIN, VALID, TEST)},
            "purged": int((prep.split == "").sum()),
        },
        "_arrays": {"y_test": y_te, "p_test": p_te, **{f"p_{k}": v for k, v in peers.items()}},
    }


PEERS = ("logistic_regression", "lightgbm", "naive_bayes")


def fit_peers(prep: Prepared, config: Config) -> dict[str, object]:
    """The honest peers, each fitted on all pre-test rows (LightGBM stops early on the last origin)."""
    pre = prep.pretest
    X, y, seed = prep.X[pre], prep.y[pre], config.model.seed
    last = pretest_origins(prep, config)[-1]
    stop = (last.fit, last.block)
    return {
        "logistic_regression": fit_logistic_baseline(X, y, prep.spec, seed),
        "lightgbm": fit_lightgbm_baseline(X, y, stop, prep.spec, seed, config.model.threads),
        "naive_bayes": fit_naive_bayes_baseline(X, y, prep.spec),
    }


def peer_check(test: dict, baselines: dict, tolerance: float = 0.0) -> dict:
    """Which peers beat leadml's test ROC AUC, said plainly (run output, report, card)."""
    lost = {
        name: m["roc_auc"]
        for name, m in baselines.items()
        if np.isfinite(m["roc_auc"]) and m["roc_auc"] > test["roc_auc"] + tolerance
    }
    best = max(baselines, key=lambda n: baselines[n]["roc_auc"]) if baselines else None
    if lost:
        names = ", ".join(f"{n.replace('_', ' ')} ({auc:.4f})" for n, auc in lost.items())
        message = (
            f"leadml LOSES to {names} on the test slice (leadml ROC AUC {test['roc_auc']:.4f}): "
            "a simpler model fitted on the same rows ranks these leads better"
        )
    else:
        message = (
            f"leadml's test ROC AUC {test['roc_auc']:.4f} is at least every peer's "
            f"(best: {best.replace('_', ' ') if best else 'none'})"
        )
    return {"lost_to": sorted(lost), "best_peer": best, "message": message}


def _segment_column(prep: Prepared) -> np.ndarray | None:
    for name in ("source", "channel", "lead_source"):
        if name in prep.leads.columns:
            return prep.leads[name].astype(str).to_numpy()[prep.snapshots["row"].to_numpy()]
    return None


def _base_rate(rates: dict, y_tr: np.ndarray, y_va: np.ndarray, y_te: np.ndarray) -> dict:
    """Conversion rates per slice, and a plain warning when test differs beyond the interval."""
    shifted, off_calibration = (
        _rate_shift(y_tr, y_te),
        _rate_shift(y_va, y_te) if len(y_va) else False,
    )
    out = {**rates, "shift_warning": shifted, "calibration_shift_warning": off_calibration}
    if shifted or off_calibration:
        anchor = "the calibration (validation) slice" if off_calibration else "training"
        out["message"] = (
            f"The test period converts at {rates['test']:.1%} against {rates['train']:.1%} in training "
            f"and {rates['valid']:.1%} in validation: outside the 95% interval of {anchor}. "
            "Probabilities are calibrated to the past rate; expect them to be off until retrained."
        )
    return out


def _rate_shift(y_train: np.ndarray, y_test: np.ndarray) -> bool:
    """True when the test conversion rate lies outside the training rate's 95% interval."""
    p, n = y_train.mean(), len(y_train)
    half = 1.96 * np.sqrt(max(p * (1 - p), 1e-12) / n) + 1.96 * np.sqrt(
        max(y_test.mean() * (1 - y_test.mean()), 1e-12) / len(y_test)
    )
    return bool(abs(y_test.mean() - p) > half)


def new_version(models_dir: Path) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    version, k = stamp, 1
    while (models_dir / version).exists():
        k += 1
        version = f"{stamp}-{k}"
    return version


def data_fingerprint(leads: pd.DataFrame, events: pd.DataFrame | None) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(leads, index=False).values.tobytes())
    if events is not None:
        h.update(pd.util.hash_pandas_object(events, index=False).values.tobytes())
    return h.hexdigest()[:16]


@dataclass
class TrainResult:
    bundle_dir: Path
    evaluation: dict
    model: LeadModel
    mlflow: dict = field(default_factory=dict)


def run_training(
    config: Config,
    *,
    url: str | None = None,
    output: str | Path | None = None,
    log: Log = silent,
    track: bool = True,
    config_path: str | None = None,
) -> TrainResult:
    """The whole training run; writes models/<version>/ and models/latest (or under output)."""
    t0 = time.perf_counter()
    leads, events = read_dataset(config.data, url=url)
    log(f"data: {len(leads):,} leads, {0 if events is None else len(events):,} events")
    hygiene = dict(leads.attrs.get("hygiene") or {})
    for line in hygiene_lines(hygiene):
        log(line)
    prep = prepare(config, leads, events, log)
    models_dir = Path(output or config.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    version = new_version(models_dir)
    model, fit_info = fit_model(
        config, prep, version, log, previous_grades=_previous_grades(config, track, log)
    )
    evaluation = evaluate_model(model, prep, config)
    evaluation.update(fit_info)
    evaluation["data"] = {
        **prep.info,
        "source": url or config.data.source,
        "fingerprint": data_fingerprint(leads, events),
        "hygiene": hygiene,
        # every column of the training table: the API accepts a stored row with all of them
        "columns": [str(c) for c in leads.columns],
    }
    evaluation["grades"] = {
        "names": list(model.grades.names),
        "hot_min": model.grades.hot_min,
        "warm_min": model.grades.warm_min,
    }
    evaluation["train_seconds"] = time.perf_counter() - t0
    model.metadata = {
        k: v
        for k, v in evaluation.items()
        if not k.startswith("_") and k not in ("reliability", "gains")
    }
    model.reference = _score_sample(model, prep)
    bundle_dir = models_dir / version
    save_bundle(model, bundle_dir)
    write_artifacts(bundle_dir, model, prep, evaluation, config)
    point_latest(models_dir, bundle_dir)
    result = TrainResult(bundle_dir, evaluation, model)
    if track:
        from leadml.tracking.runs import log_training_run  # lazy: mlflow only when tracked

        result.mlflow = log_training_run(config, bundle_dir, evaluation, config_path=config_path)
    return result


def _previous_grades(config: Config, track: bool, log: Log) -> GradeThresholds | None:
    """The champion's thresholds when grades are score quantiles kept across retrains (lifecycle)."""
    if not track or config.grades.mode != "quantile" or config.grades.regrade:
        return None
    try:
        previous = champion_grades(config)
    except ModelError as exc:
        log(f"grades: cannot read the champion's thresholds ({exc}); recomputing them")
        return None
    if previous is not None:
        log(
            f"grades: keeping the champion's thresholds (hot >= {previous.hot_min}, "
            f"warm >= {previous.warm_min}); grades.regrade or --regrade recomputes them"
        )
    return previous


def _score_sample(model: LeadModel, prep: Prepared, limit: int = 20_000) -> dict:
    """Reference distributions for monitoring: score histogram and feature quantiles (train)."""
    X_tr, _ = prep.part(TRAIN)
    rng = np.random.default_rng(0)
    idx = (
        rng.choice(len(X_tr), size=min(limit, len(X_tr)), replace=False)
        if len(X_tr)
        else np.zeros(0, int)
    )
    sample = X_tr[np.sort(idx)]
    keep = np.sort(rng.permutation(len(sample))[:2000])
    scores = (
        to_score(model.calibrator.predict(model.model.margin(sample)))
        if len(sample)
        else np.zeros(0)
    )
    return {
        "score_histogram": np.bincount(scores.astype(int), minlength=101).tolist(),
        # a random 2,000 of the sample: its first rows would be the oldest snapshots only
        "features": {n: sample[keep, j].tolist() for j, n in enumerate(model.spec.names)},
    }
