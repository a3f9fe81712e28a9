"""THE inference path: features -> model -> calibrated probability -> score, grade, reasons.

Batch (`score_leads`, vectorised, in chunks) and single-lead (`score_one`, no pandas) share
the feature definitions (`features._feature_matrix`) and `_finish`, so they cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from leadml.bundle import LeadModel, load_bundle
from leadml.calibrate import to_score
from leadml.config import Config
from leadml.data.io import read_lead
from leadml.errors import DataSourceError, ModelError, SchemaError
from leadml.explain import (
    build_reasons,
    facet_points,
    group_points,
    reasons_json,
    score_and_points,
    sum_by_group,
)
from leadml.features import build_features, build_row
from leadml.schema import SCORE_COLUMNS, first_reject, screen_page
from leadml.tracking.registry import default_model_ref, download_bundle, is_registry_ref


def load_model(path_or_uri: str | Path, config: Config | None = None) -> LeadModel:
    """A bundle folder (e.g. models/latest) or a registry URI (models:/leadml@champion), the
    latter looked up in `config`'s tracking store (without a config: MLFLOW_TRACKING_URI or
    ./mlruns)."""
    text = str(path_or_uri)
    if is_registry_ref(text):
        return load_bundle(download_bundle(text, config or Config()))
    path = Path(text)
    if not path.exists():
        raise ModelError(f"model not found: {text} (train one with `make train`)")
    return load_bundle(path.resolve())


def model_ref(config: Config, ref: str | Path | None = None) -> str:
    """`ref` when given, else the one default rule (the champion once one exists, else latest)."""
    return str(ref) if ref is not None else default_model_ref(config)


def resolve_model(config: Config, ref: str | Path | None = None) -> LeadModel:
    """The model an entry point scores with: `ref` when given, else the default rule's."""
    return load_model(model_ref(config, ref), config)


def score_leads(
    model: LeadModel,
    leads: pd.DataFrame,
    events: pd.DataFrame | None = None,
    as_of: object = None,
    *,
    reasons: bool = True,
    chunk_size: int = 20_000,
    scored_at: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Score leads as of `as_of` (default now): one row per lead with the lead_scores columns."""
    if "lead_id" not in leads.columns:
        raise SchemaError("leads", "lead_id", "missing column")
    require_columns(model, leads.columns, "the leads table")
    leads = _coerce_times(leads, "leads", ["created_at"])
    if events is not None:
        events = _coerce_times(events, "lead_events", ["occurred_at"])
    as_of = _default_as_of(as_of)
    scored_at = scored_at or pd.Timestamp.now(tz="UTC").tz_localize(None)
    parts = []
    for start in range(0, max(len(leads), 1), chunk_size):
        chunk = leads.iloc[start : start + chunk_size]
        chunk_events = _events_for(events, chunk)
        X = build_features(model.spec, chunk, chunk_events, as_of)
        parts.append(_finish(model, X, chunk["lead_id"].to_numpy(), reasons, scored_at))
    if not parts:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def model_columns(model: LeadModel) -> list[str]:
    """The lead columns the model reads (its attributes, and created_at for a model with time)."""
    return (["created_at"] if model.spec.has_time else []) + model.spec.attribute_columns


def require_columns(model: LeadModel, columns: Iterable[str], where: str) -> None:
    """Refuse leads that lack columns the model reads: a model trained on other data would
    score them from missing values alone (the bank model on a synthetic lead: "99/100 hot")."""
    have = set(columns)
    needed = model_columns(model)
    missing = [c for c in needed if c not in have]
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        raise ModelError(
            f"model {model.version} reads {len(missing)} of its {len(needed)} lead columns that "
            f"{where} does not have: {shown}. It was trained on other data: score with the model "
            "trained on this data (--model), or map the columns (data.rename)"
        )


def _require_finite(model: LeadModel, X: np.ndarray) -> None:
    """An infinite feature value is never scored (training refuses infinities too)."""
    bad = np.isinf(X)
    if bad.any():
        names = [model.spec.names[j] for j in np.flatnonzero(bad.any(axis=0))]
        raise SchemaError("leads", names[0], f"infinite feature values in {names[:5]}")


def score_matrix(model: LeadModel, X: np.ndarray, *, reasons: bool = True) -> dict:
    """Probability, score, grade (and reasons) for a prepared feature matrix."""
    _require_finite(model, X)
    if reasons:
        contrib = model.model.contributions(X)
        prob, score, _, points = score_and_points(contrib, model.calibrator)
        groups = model.groups
        gp = group_points(points, groups)
        gm = sum_by_group(contrib[:, :-1], groups)
        why = build_reasons(model.spec, X, gp, gm, groups, model.top_positive, model.top_negative)
        fit, engagement = facet_points(points, model.is_fit)
    else:
        prob = model.calibrator.predict(model.model.margin(X))
        score, why = to_score(prob).astype(np.int64), None
        fit = engagement = None
    return {
        "probability": prob,
        "score": score,
        "grade": model.grades.grade(score),
        "reasons": why,
        "fit_points": fit,
        "engagement_points": engagement,
    }


def _finish(
    model: LeadModel, X: np.ndarray, lead_ids: np.ndarray, reasons: bool, scored_at
) -> pd.DataFrame:
    out = score_matrix(model, X, reasons=reasons)
    return pd.DataFrame(
        {
            "lead_id": lead_ids,
            "probability": out["probability"].astype(np.float64),
            "score": out["score"].astype(np.int64),
            "grade": out["grade"].astype(object),
            "reasons": reasons_json(out["reasons"]) if reasons else None,
            "model_version": model.version,
            "scored_at": scored_at,
            "fit_points": _nullable_int(out["fit_points"], len(X)),
            "engagement_points": _nullable_int(out["engagement_points"], len(X)),
        }
    )


def _nullable_int(values: np.ndarray | None, n: int) -> pd.Series:
    """Sub-score points as Int64 (missing when the scoring computed no reasons)."""
    if values is None:
        return pd.Series(pd.array([pd.NA] * n, dtype="Int64"))
    return pd.Series(values.astype(np.int64))


def score_one(
    model: LeadModel,
    lead: Mapping[str, object],
    events: Sequence[Mapping[str, object]] = (),
    as_of: object = None,
    *,
    reasons: bool = True,
) -> dict:
    """One lead from plain dicts, without pandas: the online scorer's fast path."""
    require_columns(model, lead.keys(), f"lead {lead.get('lead_id')!r}")
    X = build_row(model.spec, lead, events, _default_as_of(as_of))
    out = score_matrix(model, X, reasons=reasons)
    return {
        "lead_id": lead.get("lead_id"),
        "probability": float(out["probability"][0]),
        "score": int(out["score"][0]),
        "grade": str(out["grade"][0]),
        "reasons": out["reasons"][0] if reasons else [],
        "model_version": model.version,
        "fit_points": None if out["fit_points"] is None else int(out["fit_points"][0]),
        "engagement_points": (
            None if out["engagement_points"] is None else int(out["engagement_points"][0])
        ),
    }


def score_stored_lead(
    model: LeadModel,
    lead: Mapping[str, object],
    events: Sequence[Mapping[str, object]] = (),
    as_of: object = None,
    *,
    non_finite: str = "invalid",
) -> dict:
    """A stored lead row scored live (the pages, `leadml explain`): screened first by the rules training applies
    (`schema.screen_page`), so a bad row is a SchemaError naming the rule, never a score from
    values training would refuse; then `score_one`."""
    require_columns(model, lead.keys(), f"stored lead {lead.get('lead_id')!r}")
    rows = [{"lead_id": lead.get("lead_id"), **e} for e in events]
    page = screen_page(
        pd.DataFrame([dict(lead)]),
        pd.DataFrame(rows) if rows else None,
        numeric=model.spec.numeric,
        non_finite=non_finite,
        require_time=model.spec.has_time,
    )
    error = first_reject(page)
    if error is not None:
        raise error
    return score_one(model, lead, events, as_of)


def explain_stored_lead(
    config: Config,
    lead_id: str,
    *,
    url: str | None = None,
    ref: str | Path | None = None,
    as_of: object = None,
) -> tuple[dict, LeadModel]:
    """`leadml explain`: one lead read from the database, scored with the default rule's model
    (or `ref`); the score_one result and the model (for its baseline score)."""
    model = resolve_model(config, ref)
    lead, events = read_lead(config.data, lead_id, url=url)
    if lead is None:
        raise DataSourceError(f"lead {lead_id!r} not found in table '{config.data.leads_table}'")
    scored = score_stored_lead(model, lead, events, as_of, non_finite=config.data.non_finite)
    return scored, model


def _default_as_of(as_of: object) -> pd.Timestamp:
    if as_of is None:
        return pd.Timestamp.now(tz="UTC").tz_localize(None)
    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError):
        raise SchemaError("scoring", "as_of", "not a timestamp", [as_of]) from None
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _coerce_times(df: pd.DataFrame, table: str, columns: list[str]) -> pd.DataFrame:
    todo = [
        c for c in columns if c in df.columns and not pd.api.types.is_datetime64_any_dtype(df[c])
    ]
    if not todo:
        return df
    df = df.copy()
    for c in todo:
        parsed = pd.to_datetime(df[c], errors="coerce", utc=True, format="mixed")
        bad = parsed.isna() & df[c].notna()
        if bad.any():
            raise SchemaError(table, c, "timestamps that cannot be parsed", df.loc[bad, c].head(3))
        df[c] = parsed.dt.tz_localize(None)
    return df


def _events_for(events: pd.DataFrame | None, chunk: pd.DataFrame) -> pd.DataFrame | None:
    if events is None or not len(events):
        return None
    return events[events["lead_id"].isin(chunk["lead_id"])]


def parse_reasons(value: str | list | None) -> list[dict]:
    if value is None:
        return []
    return value if isinstance(value, list) else json.loads(value)
