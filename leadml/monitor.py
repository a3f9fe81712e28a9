"""Drift and realized conversion: is the model still looking at the leads it was trained on,
and is a score of 30 still about a 30% chance?

Drift compares like with like. The training reference (`LeadModel.reference`) holds training
*snapshots*: leads observed at the configured offsets after creation (0, 3, 7 ... days). The
batch scorer scores every open lead as of now, lead ages 0 to years, so comparing that raw
population with the reference flags lead age and every recency feature on a perfectly healthy
database (measured: score PSI 0.64, lead_age_days 2.4 on an undrifted synthetic one). So the
latest scoring run sets the moment (its as_of, capped at the data's end) and the model, and the
compared population is the snapshots built the training way whose as_of falls in the
`monitor.window_days` before it: the same offsets, features by the same builder.

Realized conversion uses `lead_score_history`: each lead's latest score that is at least
`snapshots.horizon_days` old, and whether it converted within the horizon after that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from leadml.bundle import LeadModel
from leadml.config import Config, MonitorConfig
from leadml.data import scores as scores_data
from leadml.data.io import read_dataset
from leadml.errors import DataSourceError, ModelError
from leadml.features import build_features, data_cutoff, make_snapshots
from leadml.predict import score_matrix
from leadml.schema import to_naive_utc
from leadml.screen import psi

PSEUDO_COUNT = 0.5  # per PSI bin: a monitoring window has hundreds of rows, not tens of thousands
BANDS = ("stable", "watch", "alert")
EXIT_ALERT = 1


@dataclass
class Drift:
    """PSI of one distribution (the score or a feature) against the training reference."""

    name: str
    kind: str
    psi: float
    band: str
    reference_mean: float | None = None
    recent_mean: float | None = None


@dataclass
class MonitorResult:
    """Everything `leadml monitor` reports; `status` is the worst band, `exit_code` 1 on alert."""

    model_version: str
    as_of: pd.Timestamp
    window_days: float
    recent_rows: int
    drift: list[Drift]
    run: dict | None = None
    realized: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    score_hist: dict = field(default_factory=dict)
    rejects: list[dict] = field(default_factory=list)  # the latest runs' reject counts
    rejects_alert: str | None = None  # why the rejects alert, when they rose

    @property
    def status(self) -> str:
        if self.run is not None and not self.run.get("scored"):
            return "alert"  # a run that scored no lead is never "stable"
        if self.rejects_alert:
            return "alert"
        bands = [d.band for d in self.drift if d.band in BANDS]
        return max(bands, key=BANDS.index) if bands else "unknown"

    @property
    def exit_code(self) -> int:
        return EXIT_ALERT if self.status == "alert" else 0


# ---------------------------------------------------------------- PSI


def band(value: float, cfg: MonitorConfig) -> str:
    """stable below psi_watch, watch up to psi_alert, alert above."""
    if not np.isfinite(value):
        return "n/a"
    return "alert" if value > cfg.psi_alert else "watch" if value >= cfg.psi_watch else "stable"


def window_psi(expected: np.ndarray, actual: np.ndarray, categorical: bool = False) -> float:
    """`screen.psi` with half a pseudo-count per bin, so a rare category absent from a few
    hundred rows does not swamp the sum (the training screen's floor suits larger samples)."""
    return psi(expected, actual, categorical, pseudo_count=PSEUDO_COUNT)


def reference_scores(model: LeadModel) -> np.ndarray:
    """The training score sample, expanded from the reference histogram (counts of 0..100)."""
    hist = np.asarray(model.reference.get("score_histogram", []), dtype=np.int64)
    if not len(hist) or not hist.sum():
        raise ModelError(
            f"model {model.version} has no training reference for monitoring: retrain it "
            "with this leadml (workflow stores reference distributions in the bundle)"
        )
    return np.repeat(np.arange(len(hist)), hist).astype(np.float64)


def recent_snapshots(
    config: Config, leads: pd.DataFrame, as_of: pd.Timestamp, window_days: float
) -> pd.DataFrame:
    """Snapshots built the training way (same offsets, lead still open) with as_of in the window."""
    snaps = make_snapshots(leads, config.snapshots.offsets_days, 0.0, np.datetime64(as_of, "us"))
    start = np.datetime64(as_of - pd.Timedelta(days=window_days), "us")
    return snaps[snaps["as_of"].to_numpy() > start].reset_index(drop=True)


def drift_table(
    model: LeadModel, X: np.ndarray, scores: np.ndarray, cfg: MonitorConfig
) -> list[Drift]:
    """Score PSI first, then every feature, highest PSI first."""
    ref = reference_scores(model)
    value = window_psi(ref, scores)
    rows = [
        Drift("score", "score", value, band(value, cfg), float(ref.mean()), float(np.mean(scores)))
    ]
    features = model.reference.get("features", {})
    for j, info in enumerate(model.spec.features):
        expected = np.asarray(features.get(info.name, []), dtype=np.float64)
        value = window_psi(expected, X[:, j], info.kind == "categorical")
        means = (
            (None, None) if info.kind == "categorical" else (_nanmean(expected), _nanmean(X[:, j]))
        )
        rows.append(Drift(info.name, info.kind, value, band(value, cfg), *means))
    rows[1:] = sorted(rows[1:], key=lambda d: -d.psi if np.isfinite(d.psi) else 0.0)
    return rows


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else None


# ---------------------------------------------------------------- scoring tables


def matured_scores(
    url: str, horizon_days: float, observed_until: pd.Timestamp, out: scores_data.OutputTables
) -> pd.DataFrame:
    """Each lead's latest score old enough that its horizon has passed, with its observation time
    (the run's as_of when scoring_runs records it, else scored_at)."""
    history = scores_data.observed_history(url, out)
    limit = observed_until - pd.Timedelta(days=horizon_days)
    history = history[history["observed_at"] <= limit].sort_values("observed_at", kind="stable")
    return history.drop_duplicates("lead_id", keep="last").reset_index(drop=True)


# ---------------------------------------------------------------- realized conversion


def realized_conversion(
    scored: pd.DataFrame, leads: pd.DataFrame, horizon_days: float, grade_names: tuple[str, ...]
) -> dict:
    """Predicted against realized conversion by grade and by score decile (highest first)."""
    if not len(scored):
        return {"n": 0, "by_grade": [], "by_decile": []}
    converted = pd.Series(
        to_naive_utc(leads["converted_at"]).to_numpy(), index=leads["lead_id"].astype(str)
    )
    conv = to_naive_utc(scored["lead_id"].astype(str).map(converted))
    seen = to_naive_utc(scored["observed_at"])
    before = conv.notna() & (conv <= seen)  # already converted when scored: not a prediction
    scored, conv, seen = scored[~before], conv[~before], seen[~before]
    y = (
        (conv.notna() & (conv <= seen + pd.Timedelta(days=horizon_days)))
        .to_numpy()
        .astype(np.float64)
    )
    p = scored["probability"].to_numpy(dtype=np.float64)
    score = scored["score"].to_numpy(dtype=np.float64)
    grade = scored["grade"].astype(str).to_numpy()
    by_grade = [
        _calibration_row(g, y[grade == g], p[grade == g], score[grade == g]) for g in grade_names
    ]
    order = np.argsort(-p, kind="stable")
    by_decile = [
        _calibration_row(f"{k + 1}", y[c], p[c], score[c])
        for k, c in enumerate(np.array_split(order, 10))
        if len(c)
    ]
    return {
        "n": int(len(y)),
        "conversions": int(y.sum()),
        "by_grade": by_grade,
        "by_decile": by_decile,
    }


def _calibration_row(label: str, y: np.ndarray, p: np.ndarray, score: np.ndarray) -> dict:
    n = len(y)
    if not n:
        return {"group": label, "n": 0}
    rate = float(y.mean())
    low, high = wilson_interval(int(y.sum()), n)
    predicted = float(p.mean())
    return {
        "group": label,
        "n": n,
        "scores": f"{int(score.min())}-{int(score.max())}",
        "predicted": predicted,
        "realized": rate,
        "low": low,
        "high": high,
        "off": bool(predicted < low or predicted > high),
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


# ---------------------------------------------------------------- the run


def run_monitor(config: Config, model: LeadModel, *, url: str | None = None) -> MonitorResult:
    """Drift of the recent snapshots and realized conversion of matured scores, for one model."""
    url = url or config.data.source
    out = scores_data.output_tables(config.data.leads_table)
    leads, events = read_dataset(config.data, url=url)
    if "created_at" not in leads.columns:
        raise DataSourceError(
            f"table '{config.data.leads_table}' has no created_at: monitoring needs lead times"
        )
    cutoff = pd.Timestamp(data_cutoff(leads, events))
    run = scores_data.latest_run(url, out)
    as_of, notes = _monitor_time(run, cutoff, model)
    result = _drift(config, model, leads, events, as_of, notes)
    result.run = _run_summary(url, out, run, model) if run else None
    if result.run is not None and not result.run["scored"]:
        notes.append(
            f"the latest run ({result.run.get('run_id')}) scored no lead: check its as_of, "
            "--since and the open leads; nothing here is current"
        )
    result.rejects = scores_data.reject_counts(url, out)
    result.rejects_alert = rejects_alert(result.rejects, config.batch.max_reject_fraction)
    if result.rejects_alert:
        notes.append(result.rejects_alert)
    matured = matured_scores(url, config.snapshots.horizon_days, cutoff, out)
    result.realized = realized_conversion(
        matured, leads, config.snapshots.horizon_days, model.grades.names
    )
    result.realized["observed_until"] = str(cutoff)
    result.realized["horizon_days"] = config.snapshots.horizon_days
    if not result.realized["n"]:
        notes.append(
            f"no scores old enough ({config.snapshots.horizon_days:g} days before {cutoff:%Y-%m-%d}) "
            "in lead_score_history: realized conversion not measured yet"
        )
    return result


def _monitor_time(
    run: dict | None, cutoff: pd.Timestamp, model: LeadModel
) -> tuple[pd.Timestamp, list[str]]:
    notes = []
    if run is None:
        notes.append(
            f"no scoring run found: drift measured as of the end of the data ({cutoff:%Y-%m-%d %H:%M})"
        )
        return cutoff, notes
    as_of = to_naive_utc(pd.Series([run.get("as_of")])).iloc[0]
    if pd.isna(as_of) or as_of > cutoff + pd.Timedelta(days=1):
        # minutes past the last event are normal (as_of = now); days past mean stale data
        notes.append(
            f"the latest run's as_of ({run.get('as_of')}) is past the end of the data; "
            f"drift measured as of {cutoff:%Y-%m-%d %H:%M}"
        )
    as_of = cutoff if pd.isna(as_of) else min(as_of, cutoff)
    if run.get("model_version") and str(run["model_version"]) != model.version:
        notes.append(
            f"the latest run was scored by model {run['model_version']}; "
            f"this report uses the reference of model {model.version}"
        )
    return as_of, notes


def _drift(
    config: Config,
    model: LeadModel,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    as_of: pd.Timestamp,
    notes: list[str],
) -> MonitorResult:
    cfg = config.monitor
    snaps = recent_snapshots(config, leads, as_of, cfg.window_days)
    X = build_features(
        model.spec, leads.iloc[snaps["row"].to_numpy()], events, snaps["as_of"].to_numpy()
    )
    scores = np.asarray(score_matrix(model, X, reasons=False)["score"], dtype=np.float64)
    drift = drift_table(model, X, scores, cfg)
    if len(snaps) < cfg.min_rows:
        notes.append(
            f"only {len(snaps)} snapshots in the {cfg.window_days:g} days before {as_of:%Y-%m-%d}: "
            f"fewer than monitor.min_rows ({cfg.min_rows}), drift not judged"
        )
        for d in drift:
            d.band = "n/a"
    hist = {
        "reference": np.bincount(reference_scores(model).astype(int), minlength=101).tolist(),
        "recent": np.bincount(scores.astype(int), minlength=101).tolist(),
    }
    return MonitorResult(
        model.version, as_of, cfg.window_days, len(snaps), drift, notes=notes, score_hist=hist
    )


def rejects_alert(runs: list[dict], max_fraction: float) -> str | None:
    """Alert when the latest run refused more than batch.max_reject_fraction of what it read,
    or more rows than any of the runs before it (a feed going bad, seen early)."""
    if not runs or not runs[0]["rows_rejected"]:
        return None
    latest, before = runs[0], runs[1:]
    read = latest["leads_scored"] + latest["rows_rejected"]
    share = latest["rows_rejected"] / read if read else 1.0
    if share > max_fraction:
        return (
            f"rejects: run {latest['run_id']} refused {latest['rows_rejected']:,} rows "
            f"({share:.1%} of what it read, over batch.max_reject_fraction {max_fraction:.1%}); "
            "see scoring_rejects"
        )
    most = max((r["rows_rejected"] for r in before), default=0)
    if before and latest["rows_rejected"] > most:
        return (
            f"rejects rose: run {latest['run_id']} refused {latest['rows_rejected']:,} rows, "
            f"the {len(before)} runs before it at most {most:,}; see scoring_rejects"
        )
    return None


def _run_summary(url: str, out: scores_data.OutputTables, run: dict, model: LeadModel) -> dict:
    """The latest run as recorded, with its grade mix and mean score."""
    run_id = run.get("run_id")
    rows = scores_data.run_scores(url, out, run_id) if run_id is not None else pd.DataFrame()
    summary = {k: (str(v) if v is not None else None) for k, v in run.items()}
    summary["scored"] = int(len(rows))
    if not len(rows) and summary.get("status") == "succeeded":
        summary["status"] = "succeeded, but scored no lead"
    if len(rows):
        summary["mean_score"] = float(rows["score"].mean())
        summary["grades"] = {g: float((rows["grade"] == g).mean()) for g in model.grades.names}
    return summary


# ---------------------------------------------------------------- output

RUN_KEYS = ("run_id", "model_version", "as_of", "started_at", "finished_at", "status", "scored")


def render_html(result: MonitorResult, cfg: MonitorConfig) -> str:
    """The monitoring report as one self-contained HTML page (templates/monitor.html, autoescaped)."""
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["fmt"] = _fmt
    source = (files("leadml") / "templates" / "monitor.html").read_text(encoding="utf-8")
    bars, labels, svg = _histogram(result.score_hist)
    return env.from_string(source).render(
        result=result,
        cfg=cfg,
        run=_run_rows(result.run),
        realized=result.realized,
        bars=bars,
        labels=labels,
        svg=svg,
    )


def write_report(result: MonitorResult, cfg: MonitorConfig, path: str | Path) -> Path:
    """Write the HTML report (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result, cfg), encoding="utf-8")
    return path


def _fmt(value: object, spec: str = ".3f") -> str:
    """A number for the page ('' for missing or not finite)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return format(value, spec)


def _run_rows(run: dict | None) -> dict | None:
    """The latest run's table rows and its grade mix, or None."""
    if not run:
        return None
    rows = [(k, run[k]) for k in RUN_KEYS if k in run]
    if "mean_score" in run:
        rows.append(("mean_score", _fmt(run["mean_score"], ".1f")))
    mix = ", ".join(f"{g} {share:.1%}" for g, share in (run.get("grades") or {}).items())
    return {"rows": rows, "mix": mix}


def _histogram(hist: dict, width: int = 900, height: int = 180) -> tuple[list, list, dict]:
    """Bars of reference and recent score shares in 5-point buckets, for an inline SVG."""
    svg = {"width": width, "height": height}
    if not hist:
        return [], [], svg
    shares = {}
    for key in ("reference", "recent"):
        counts = np.asarray(hist[key], dtype=np.float64)
        buckets = np.add.reduceat(counts[1:], np.arange(0, 100, 5))
        shares[key] = buckets / max(buckets.sum(), 1.0)
    top = max(float(max(shares["reference"].max(), shares["recent"].max())), 1e-9)
    slot, bars, labels = width / 20, [], []
    for i in range(20):
        for k, (key, colour) in enumerate((("reference", "#8c959f"), ("recent", "#0969da"))):
            h = (height - 20) * shares[key][i] / top
            bars.append(
                {
                    "x": f"{i * slot + 4 + k * (slot - 8) / 2:.1f}",
                    "y": f"{height - 20 - h:.1f}",
                    "w": f"{(slot - 8) / 2:.1f}",
                    "h": f"{h:.1f}",
                    "colour": colour,
                    "title": f"{key} {5 * i + 1}-{5 * i + 5}: {shares[key][i]:.1%}",
                }
            )
        labels.append({"x": f"{i * slot + slot / 2:.1f}", "text": 5 * i + 1})
    return bars, labels, svg
