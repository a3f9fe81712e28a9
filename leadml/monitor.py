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

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadml.bundle import LeadModel
from leadml.config import Config, MonitorConfig
from leadml.errors import DataSourceError, ModelError

RUNS, HISTORY = "scoring_runs", "lead_score_history"
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

    @property
    def status(self) -> str:
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


def psi(
    expected: np.ndarray, actual: np.ndarray, categorical: bool = False, bins: int = 10
) -> float:
    """Population stability index of `actual` against `expected` (missing is its own bin).

    Numeric bins are deciles of the reference; counts get half a pseudo-count per bin so a
    rare category absent from a few hundred rows does not swamp the sum (the training screen's
    1e-4 floor is fine for tens of thousands of rows, not for a monitoring window).
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if not len(expected) or not len(actual):
        return float("nan")
    e_codes, a_codes = _codes(expected, actual, categorical, bins)
    k = int(max(e_codes.max(), a_codes.max())) + 1
    e = (np.bincount(e_codes, minlength=k) + 0.5) / (len(e_codes) + 0.5 * k)
    a = (np.bincount(a_codes, minlength=k) + 0.5) / (len(a_codes) + 0.5 * k)
    return float(np.sum((a - e) * np.log(a / e)))


def _codes(
    expected: np.ndarray, actual: np.ndarray, categorical: bool, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    if categorical:
        values = np.unique(np.concatenate([expected, actual]))
        values = values[~np.isnan(values)]
        code = lambda x: np.where(np.isnan(x), 0, np.searchsorted(values, x) + 1)  # noqa: E731
        return code(expected).astype(np.int64), code(actual).astype(np.int64)
    finite = expected[~np.isnan(expected)]
    edges = (
        np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
        if len(finite)
        else np.zeros(0)
    )
    code = lambda x: np.where(np.isnan(x), 0, np.searchsorted(edges, x, side="right") + 1)  # noqa: E731
    return code(expected).astype(np.int64), code(actual).astype(np.int64)


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
    from leadml.features import make_snapshots

    snaps = make_snapshots(leads, config.snapshots.offsets_days, 0.0, np.datetime64(as_of, "us"))
    start = np.datetime64(as_of - pd.Timedelta(days=window_days), "us")
    return snaps[snaps["as_of"].to_numpy() > start].reset_index(drop=True)


def drift_table(
    model: LeadModel, X: np.ndarray, scores: np.ndarray, cfg: MonitorConfig
) -> list[Drift]:
    """Score PSI first, then every feature, highest PSI first."""
    ref = reference_scores(model)
    value = psi(ref, scores)
    rows = [
        Drift("score", "score", value, band(value, cfg), float(ref.mean()), float(np.mean(scores)))
    ]
    features = model.reference.get("features", {})
    for j, info in enumerate(model.spec.features):
        expected = np.asarray(features.get(info.name, []), dtype=np.float64)
        value = psi(expected, X[:, j], info.kind == "categorical")
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


def latest_run(url: str) -> dict | None:
    """The newest finished run in scoring_runs (or, without that table, the newest history run)."""
    from leadml.data.io import has_table

    if has_table(url, RUNS):
        runs = _query(url, f"SELECT * FROM {RUNS}")
        if len(runs):
            done = (
                runs[runs["status"].astype(str) == "succeeded"]
                if "status" in runs.columns
                else runs
            )
            done = done if len(done) else runs
            order = _times(done["started_at"] if "started_at" in done.columns else done["as_of"])
            return _clean(done.iloc[int(np.argmax(order.to_numpy()))].to_dict())
    if has_table(url, HISTORY):
        last = _query(
            url,
            f"SELECT run_id, model_version, MAX(scored_at) AS scored_at FROM {HISTORY} "
            "GROUP BY run_id, model_version ORDER BY MAX(scored_at) DESC LIMIT 1",
        )
        if len(last):
            row = _clean(last.iloc[0].to_dict())
            return {**row, "as_of": row["scored_at"]}
    return None


def run_scores(url: str, run_id: object) -> pd.DataFrame:
    """The history rows of one scoring run (lead_id, probability, score, grade, scored_at)."""
    from sqlalchemy import text

    from leadml.data.io import engine_for

    sql = f"SELECT lead_id, probability, score, grade, scored_at FROM {HISTORY} WHERE run_id = :run_id"
    with engine_for(url).connect() as conn:
        return pd.read_sql(text(sql), conn, params={"run_id": run_id})


def matured_scores(url: str, horizon_days: float, observed_until: pd.Timestamp) -> pd.DataFrame:
    """Each lead's latest score old enough that its horizon has passed, with its observation time.

    The observation time is the run's as_of when scoring_runs records it, else scored_at.
    """
    from leadml.data.io import has_table

    if not has_table(url, HISTORY):
        return pd.DataFrame(columns=["lead_id", "probability", "score", "grade", "observed_at"])
    limit = observed_until - pd.Timedelta(days=horizon_days)
    history = _query(
        url, f"SELECT lead_id, probability, score, grade, scored_at, run_id FROM {HISTORY}"
    )
    history["observed_at"] = _times(history["scored_at"])
    if has_table(url, RUNS):
        runs = _query(url, f"SELECT run_id, as_of FROM {RUNS}").dropna()
        as_of = pd.Series(_times(runs["as_of"]).to_numpy(), index=runs["run_id"].astype(str))
        mapped = history["run_id"].astype(str).map(as_of)
        history["observed_at"] = mapped.where(mapped.notna(), history["observed_at"])
    history = history[history["observed_at"] <= limit].sort_values("observed_at", kind="stable")
    return history.drop_duplicates("lead_id", keep="last").reset_index(drop=True)


def _query(url: str, sql: str) -> pd.DataFrame:
    from sqlalchemy import text

    from leadml.data.io import engine_for

    try:
        with engine_for(url).connect() as conn:
            return pd.read_sql(text(sql), conn)
    except Exception as exc:  # noqa: BLE001 - driver errors of any kind become one message
        raise DataSourceError(
            f"cannot read the scoring tables at {url}: {str(exc).splitlines()[0]}"
        ) from None


def _times(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_localize(None)


def _clean(row: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


# ---------------------------------------------------------------- realized conversion


def realized_conversion(
    scored: pd.DataFrame, leads: pd.DataFrame, horizon_days: float, grade_names: tuple[str, ...]
) -> dict:
    """Predicted against realized conversion by grade and by score decile (highest first)."""
    if not len(scored):
        return {"n": 0, "by_grade": [], "by_decile": []}
    converted = pd.Series(
        _times(leads["converted_at"]).to_numpy(), index=leads["lead_id"].astype(str)
    )
    conv = _times(scored["lead_id"].astype(str).map(converted))
    seen = _times(scored["observed_at"])
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
    from leadml.data.io import read_dataset
    from leadml.features import data_cutoff

    url = url or config.data.source
    leads, events = read_dataset(config.data, url=url)
    if "created_at" not in leads.columns:
        raise DataSourceError(
            f"table '{config.data.leads_table}' has no created_at: monitoring needs lead times"
        )
    cutoff = pd.Timestamp(data_cutoff(leads, events))
    run = latest_run(url)
    as_of, notes = _monitor_time(run, cutoff, model)
    result = _drift(config, model, leads, events, as_of, notes)
    result.run = _run_summary(url, run, model) if run else None
    matured = matured_scores(url, config.snapshots.horizon_days, cutoff)
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
    as_of = _times(pd.Series([run.get("as_of")])).iloc[0]
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
    from leadml.features import build_features
    from leadml.predict import score_matrix

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


def _run_summary(url: str, run: dict, model: LeadModel) -> dict:
    """The latest run as recorded, with its grade mix and mean score."""
    rows = run_scores(url, run.get("run_id")) if run.get("run_id") is not None else pd.DataFrame()
    summary = {k: (str(v) if v is not None else None) for k, v in run.items()}
    summary["scored"] = int(len(rows))
    if len(rows):
        summary["mean_score"] = float(rows["score"].mean())
        summary["grades"] = {g: float((rows["grade"] == g).mean()) for g in model.grades.names}
    return summary


# ---------------------------------------------------------------- output

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1000px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.stable{color:#1a7f37}.watch{color:#9a6700}.alert{color:#cf222e;font-weight:600}
.badge{display:inline-block;padding:.2rem .7rem;border-radius:1rem;color:#fff;font-weight:600}
.b-stable{background:#1a7f37}.b-watch{background:#9a6700}.b-alert{background:#cf222e}.b-unknown,.b-n\\/a{background:#777}
.note{background:#fff8e1;border-left:4px solid #e0b000;padding:.4rem .8rem;margin:.4rem 0}.muted{color:#666;font-size:.85rem}
"""


def render_html(result: MonitorResult, cfg: MonitorConfig) -> str:
    """The monitoring report as one self-contained HTML page (inline CSS and SVG, no assets)."""
    parts = [
        f"<h1>leadml monitoring: model {_e(result.model_version)} "
        f"<span class='badge b-{result.status}'>{result.status}</span></h1>",
        f"<p>Drift as of {result.as_of:%Y-%m-%d %H:%M} over the previous {result.window_days:g} days "
        f"({result.recent_rows:,} snapshots). PSI bands: &lt; {cfg.psi_watch:g} stable, "
        f"{cfg.psi_watch:g}-{cfg.psi_alert:g} watch, &gt; {cfg.psi_alert:g} alert.</p>",
    ]
    parts += [f"<div class='note'>{_e(n)}</div>" for n in result.notes]
    parts.append(_run_html(result.run))
    parts.append("<h2>Score distribution</h2>" + _histogram_svg(result.score_hist))
    parts.append("<h2>Drift (population stability index)</h2>" + _drift_html(result.drift))
    parts.append(_realized_html(result.realized))
    body = "\n".join(p for p in parts if p)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>leadml monitoring "
        f"{_e(result.model_version)}</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )


def write_report(result: MonitorResult, cfg: MonitorConfig, path: str | Path) -> Path:
    """Write the HTML report (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result, cfg), encoding="utf-8")
    return path


def _e(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: object, spec: str = ".3f") -> str:
    return (
        ""
        if value is None or (isinstance(value, float) and not np.isfinite(value))
        else format(value, spec)
    )


def _run_html(run: dict | None) -> str:
    if not run:
        return ""
    keys = [
        k
        for k in (
            "run_id",
            "model_version",
            "as_of",
            "started_at",
            "finished_at",
            "status",
            "scored",
            "mean_score",
        )
        if k in run
    ]
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(_fmt(run[k], '.1f') if k == 'mean_score' else run[k])}</td></tr>"
        for k in keys
    )
    grades = run.get("grades") or {}
    mix = ", ".join(f"{_e(g)} {share:.1%}" for g, share in grades.items())
    return (
        f"<h2>Latest scoring run</h2><table>{rows}<tr><td>grade mix</td><td>{mix}</td></tr></table>"
    )


def _drift_html(drift: list[Drift]) -> str:
    head = "<tr><th>distribution</th><th>kind</th><th>PSI</th><th>band</th><th>training mean</th><th>recent mean</th></tr>"
    rows = "".join(
        f"<tr><td>{_e(d.name)}</td><td>{_e(d.kind)}</td><td>{_fmt(d.psi)}</td>"
        f"<td class='{_e(d.band)}'>{_e(d.band)}</td><td>{_fmt(d.reference_mean, ',.2f')}</td>"
        f"<td>{_fmt(d.recent_mean, ',.2f')}</td></tr>"
        for d in drift
    )
    return f"<table>{head}{rows}</table>"


def _realized_html(realized: dict) -> str:
    if not realized.get("n"):
        return (
            "<h2>Realized conversion</h2><p>No scores old enough to have a known outcome yet "
            "(see the note above).</p>"
        )
    intro = (
        f"<h2>Realized conversion</h2><p>{realized['n']:,} leads scored at least "
        f"{realized['horizon_days']:g} days before {_e(realized['observed_until'])}, each at its latest such "
        f"score; {realized['conversions']:,} converted within {realized['horizon_days']:g} days. "
        "A score of 30 should convert about 30% of the time: rows marked <span class='alert'>off</span> "
        "have a predicted rate outside the 95% interval of the realized one.</p>"
    )
    return (
        intro
        + _calibration_table("grade", realized["by_grade"])
        + _calibration_table("score decile (1 = highest)", realized["by_decile"])
    )


def _calibration_table(label: str, rows: list[dict]) -> str:
    head = (
        f"<tr><th>{_e(label)}</th><th>leads</th><th>scores</th><th>predicted</th><th>realized</th>"
        "<th>95% interval</th><th></th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(r['group'])}</td><td>{r['n']:,}</td><td>{_e(r.get('scores', ''))}</td>"
        f"<td>{_fmt(r.get('predicted'), '.1%')}</td><td>{_fmt(r.get('realized'), '.1%')}</td>"
        f"<td>{_fmt(r.get('low'), '.1%')} - {_fmt(r.get('high'), '.1%')}</td>"
        f"<td class='alert'>{'off' if r.get('off') else ''}</td></tr>"
        if r["n"]
        else f"<tr><td>{_e(r['group'])}</td><td>0</td><td colspan='5'></td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def _histogram_svg(hist: dict, width: int = 900, height: int = 180) -> str:
    """Reference and recent score shares in 5-point buckets as an inline SVG bar chart."""
    if not hist:
        return ""
    shares = {}
    for key in ("reference", "recent"):
        counts = np.asarray(hist[key], dtype=np.float64)
        buckets = np.add.reduceat(counts[1:], np.arange(0, 100, 5))
        shares[key] = buckets / max(buckets.sum(), 1.0)
    top = max(float(max(shares["reference"].max(), shares["recent"].max())), 1e-9)
    slot = width / 20
    bars = []
    for i in range(20):
        for k, (key, colour) in enumerate((("reference", "#8c959f"), ("recent", "#0969da"))):
            h = (height - 20) * shares[key][i] / top
            x = i * slot + 4 + k * (slot - 8) / 2
            bars.append(
                f"<rect x='{x:.1f}' y='{height - 20 - h:.1f}' width='{(slot - 8) / 2:.1f}' height='{h:.1f}' "
                f"fill='{colour}'><title>{key} {5 * i + 1}-{5 * i + 5}: {shares[key][i]:.1%}</title></rect>"
            )
        bars.append(
            f"<text x='{i * slot + slot / 2:.1f}' y='{height - 5}' font-size='10' text-anchor='middle'>{5 * i + 1}</text>"
        )
    legend = (
        "<p class='muted'><span style='color:#8c959f'>&#9632;</span> training reference "
        "<span style='color:#0969da'>&#9632;</span> recent snapshots (share of leads per 5-point score bucket)</p>"
    )
    return f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>{''.join(bars)}</svg>{legend}"
