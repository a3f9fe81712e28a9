"""The training run's human-readable artifacts: metrics.json, model_card.md, report.html.

The report and the card are Jinja templates (leadml/templates/) fed by one context
(report_context); the figures are drawn in report_figures.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from leadml.bundle import LeadModel, jsonable, library_versions
from leadml.config import Config
from leadml.data.sql import mask_url
from leadml.hygiene import hygiene_lines
from leadml.report_figures import MODELS, figures
from leadml.split import TEST, TRAIN, VALID

METRICS = [  # key, label, higher is better
    ("roc_auc", "ROC AUC", True),
    ("pr_auc", "PR AUC", True),
    ("brier", "Brier score", False),
    ("log_loss", "Log loss", False),
    ("ece", "Expected calibration error", False),
    ("lift_top_decile", "Top-decile lift", True),
]


class PreparedData(Protocol):
    """What the report reads from the training run's prepared data (workflow.Prepared)."""

    X: np.ndarray
    y: np.ndarray
    split: np.ndarray
    snapshots: pd.DataFrame
    method: str

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]: ...


# ---------------------------------------------------------------- entry points


def write_artifacts(
    bundle_dir: Path, model: LeadModel, prep: PreparedData, evaluation: dict, config: Config
) -> None:
    """Write metrics.json, model_card.md and report.html into the bundle folder."""
    bundle_dir = Path(bundle_dir)
    context = report_context(model, prep, evaluation, config)
    (bundle_dir / "metrics.json").write_text(metrics_json(evaluation))
    (bundle_dir / "model_card.md").write_text(model_card(context))
    (bundle_dir / "report.html").write_text(render_report(context))


def metrics_json(evaluation: dict) -> str:
    """metrics.json as in DESIGN.md (plus context), NaN written as null, no passwords."""
    keep = jsonable({k: v for k, v in evaluation.items() if not k.startswith("_")})
    if isinstance(keep.get("data"), dict) and keep["data"].get("source"):
        keep["data"]["source"] = safe_source(str(keep["data"]["source"]))
    return json.dumps(keep, indent=2, default=_json_default, allow_nan=False)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def safe_source(source: str) -> str:
    """A data source for display: database URLs lose their password."""
    if "://" not in source:
        return source
    return mask_url(source)


# ---------------------------------------------------------------- context


def report_context(model: LeadModel, prep: PreparedData, evaluation: dict, config: Config) -> dict:
    """Everything the report and the card show: tables, warnings and the figures (base64 PNG)."""
    screening = evaluation.get("screening") or {}
    by_grade = grade_rows(evaluation, model)
    return {
        "version": model.version,
        "kind": model.kind,
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "libraries": library_versions(),
        "chosen_because": evaluation.get("chosen_because", ""),
        "ensemble": evaluation.get("chosen", ""),
        "candidates": [
            {**c, "chosen": c.get("weight", 0) > 0} for c in evaluation.get("candidates", [])
        ],
        "models": MODELS,
        "peer_check": evaluation.get("peer_check", {}),
        "hygiene": hygiene_lines(evaluation.get("data", {}).get("hygiene") or {}),
        "data": _data_summary(evaluation),
        "splits": split_summary(prep),
        "split_method": prep.method,
        "metrics": metrics_rows(evaluation),
        "reliability": evaluation.get("reliability", []),
        "gains": evaluation.get("gains", []),
        "by_grade": by_grade,
        "segments": [
            {"segment": k, **v}
            for k, v in sorted(evaluation.get("segments", {}).items(), key=lambda kv: -kv[1]["n"])
        ],
        "screening": screening_summary(screening, config),
        "calibration": evaluation.get("calibration", {}),
        "base_rate": evaluation.get("base_rate", {}),
        "features": [
            {"name": f.name, "label": f.label, "unit": f.unit, "kind": f.kind}
            for f in model.spec.features
        ],
        "test": evaluation["test"],
        "baselines": evaluation["baselines"],
        "grades": {
            "names": list(model.grades.names),
            "hot_min": model.grades.hot_min,
            "warm_min": model.grades.warm_min,
        },
        "top": {"positive": model.top_positive, "negative": model.top_negative},
        "figures": figures(model, prep.part(TEST)[0], evaluation, by_grade, config.model.seed),
    }


def _data_summary(evaluation: dict) -> dict:
    data = dict(evaluation.get("data", {}))
    if data.get("source"):
        data["source"] = safe_source(str(data["source"]))
    window = data.get("window") or [None, None]
    data["window_start"], data["window_end"] = (_day(window[0]), _day(window[1]))
    return data


def _day(value: object) -> str | None:
    return None if value in (None, "None", "NaT") else str(value)[:10]


def split_summary(prep: PreparedData) -> list[dict]:
    """Rows, conversions and the as-of window of each split (purged rows are in none)."""
    has_time = "as_of" in prep.snapshots.columns
    rows = []
    for name in (TRAIN, VALID, TEST):
        mask = prep.split == name
        y = prep.y[mask]
        row = {
            "name": name,
            "rows": int(mask.sum()),
            "positives": int(y.sum()),
            "rate": float(y.mean()) if len(y) else None,
            "start": None,
            "end": None,
        }
        if has_time and mask.any():
            as_of = pd.to_datetime(prep.snapshots["as_of"].to_numpy()[mask])
            row["start"], row["end"] = _day(str(as_of.min())), _day(str(as_of.max()))  # NaT: none
        rows.append(row)
    return rows


def metrics_rows(evaluation: dict) -> list[dict]:
    """One row per metric with leadml and both baselines side by side; the best one marked."""
    per_model = {"leadml": evaluation["test"], **evaluation["baselines"]}
    rows = []
    for key, label, higher in METRICS:
        values = {m: _finite(per_model.get(m, {}).get(key)) for m, _ in MODELS}
        known = {m: v for m, v in values.items() if v is not None}
        best = (max if higher else min)(known, key=known.get) if known else None
        digits = 2 if key == "lift_top_decile" else 4
        rows.append(
            {
                "key": key,
                "label": label,
                "higher": higher,
                "values": values,
                "best": best,
                "digits": digits,
            }
        )
    return rows


def _finite(value: object) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def grade_rows(evaluation: dict, model: LeadModel) -> list[dict]:
    """Test rows and conversion rate per grade, with the score range each grade covers."""
    g = model.grades
    ranges = {
        g.names[0]: f"{g.hot_min}-100",
        g.names[1]: f"{g.warm_min}-{g.hot_min - 1}",
        g.names[2]: f"1-{g.warm_min - 1}",
    }
    by_grade = evaluation.get("by_grade", {})
    return [
        {"grade": name, "scores": ranges[name], **by_grade.get(name, {"n": 0, "rate": None})}
        for name in g.names
    ]


def screening_summary(screening: dict, config: Config) -> dict:
    """Leaks, drifted features (PSI and the action taken) and what was dropped."""
    dropped = set(screening.get("dropped", []))
    psi = screening.get("psi", {})
    auc = screening.get("single_auc", {})
    return {
        "leaks": [{"name": n, "single_auc": auc.get(n)} for n in screening.get("leaks", [])],
        "drifted": [
            {"name": n, "psi": psi.get(n), "action": "dropped" if n in dropped else "kept"}
            for n in screening.get("drifted", [])
        ],
        "dropped": sorted(dropped),
        "declared_leaking": list(screening.get("declared_leaking", []))
        or list(config.data.leaking),
        "notes": list(screening.get("notes", [])),
        "drift_psi": config.screening.drift_psi,
        "leak_auc": config.screening.leak_auc,
        "drift_action": config.screening.drift_action,
        "top_psi": sorted(psi.items(), key=lambda kv: -kv[1])[:5],
    }


# ---------------------------------------------------------------- rendering


def render_report(context: dict) -> str:
    """report.html from the context (Jinja2, autoescaped, no external resources)."""
    return _render("report.html", context, autoescape=True)


def model_card(context: dict) -> str:
    """model_card.md: what the model is, what it is for, how good it is and where it falls short."""
    return _render("model_card.md.j2", context, autoescape=False)  # Markdown, not HTML


def _render(name: str, context: dict, *, autoescape: bool) -> str:
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    env.filters["pct"] = format_percent
    template = env.from_string((files("leadml") / "templates" / name).read_text(encoding="utf-8"))
    return template.render(**context)


def format_number(value: Any, digits: int = 4) -> str:
    """A number for a table cell; missing or not finite as 'n/a'."""
    value = _finite(value) if value is not None else None
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"


def format_percent(value: Any, digits: int = 1) -> str:
    value = _finite(value) if value is not None else None
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"
