"""The exact change ledger: why a lead's score moved between two scorings, in points.

The change is split into causes by scoring a chain of states, each differing from the last in
one thing, with the same inference code as the scorers (`features.build_features`, the
model's contributions, `explain.score_shares`):

    earlier model, earlier inputs                      (the earlier scoring, re-scored)
    -> later model, earlier inputs                     model change
    -> later attributes                                attribute edits
    -> later moment, only the events seen earlier      time passing (recency, decay, age)
    -> every event up to the later moment              new engagement
    (+ data changed outside the stored inputs, e.g. backdated events: only when non-zero)

Each step's delta is a difference of integer scores, so the steps add up exactly to the
stored score change. Within a step the delta is split by signal (reason group) through the
differences of the unrounded points of the two states, rounded by largest remainder, so the
parts add up exactly to the step. What each scoring must keep for this: its as_of, the model
version and the lead's attribute values (lead_score_history.attributes, JSON of created_at and
the model's attribute columns); the events are re-read from lead_events with the time cut. A
column the later model reads that the earlier scoring did not keep counts as unchanged.

Past 500 lines on purpose: the chain of states, the split by signal and the wording of each
line are one algorithm whose exactness depends on all three agreeing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadml.bundle import LeadModel, load_bundle
from leadml.config import Config, HistoryConfig
from leadml.data.history import lead_scorings
from leadml.data.leads import lead_events, resolve_tables
from leadml.data.scores import output_tables
from leadml.errors import ModelError, SchemaError
from leadml.explain import largest_remainder, score_shares, sum_by_group
from leadml.features import EVENT_PHRASES, _days_text, build_features

CAUSES = ("model", "attributes", "time", "engagement", "other")
CAUSE_LABELS = {
    "model": "model change",
    "attributes": "attribute edits",
    "time": "time passing",
    "engagement": "new activity",
    "other": "data changed outside the stored inputs",
}
ModelFor = Callable[[str], LeadModel | None]


@dataclass(frozen=True)
class State:
    """One link of the chain scored by one model: integer scores and unrounded group points."""

    score: np.ndarray  # (n,)
    base: int
    shares: np.ndarray  # (n, groups of the model)
    X: np.ndarray


# ---------------------------------------------------------------- public entry points


def change_ledgers(
    earlier: pd.DataFrame,
    later: pd.DataFrame,
    events: pd.DataFrame | None,
    model_for: ModelFor,
) -> list[dict]:
    """One ledger per lead between two scorings (rows of `earlier` and `later` pair by position).

    Frames hold lead_id, score, model_version, as_of, created_at and the attribute columns as
    stored with each scoring; `events` every event of these leads (cut here by time).
    """
    _check_pairs(earlier, later)
    out: list[dict | None] = [None] * len(earlier)
    pairs = pd.DataFrame(
        {"old": earlier["model_version"].astype(str), "new": later["model_version"].astype(str)}
    )
    for (old_v, new_v), idx in pairs.groupby(["old", "new"], sort=False).indices.items():
        new_model = model_for(new_v)
        if new_model is None:
            raise ModelError(
                f"model {new_v} of the later scoring is not available: keep its bundle in models/"
            )
        old_model = new_model if old_v == new_v else model_for(old_v)
        rows = _ledgers_for(
            earlier.iloc[idx].reset_index(drop=True),
            later.iloc[idx].reset_index(drop=True),
            events,
            old_model,
            new_model,
        )
        for i, ledger in zip(idx, rows, strict=True):
            out[i] = ledger
    return out  # type: ignore[return-value]


def scoring_frame(rows: Sequence[Mapping]) -> pd.DataFrame:
    """History rows (attributes as JSON text or dicts) as the frame `change_ledgers` reads."""
    records = []
    for row in rows:
        attrs = row.get("attributes")
        attrs = json.loads(attrs) if isinstance(attrs, str) else dict(attrs or {})
        if row.get("as_of") is None:
            raise SchemaError(
                "lead_score_history", "as_of", "missing: this scoring predates the ledger"
            )
        records.append(
            {
                **attrs,
                "lead_id": row["lead_id"],
                "score": int(row["score"]),
                "model_version": str(row["model_version"]),
                "as_of": pd.Timestamp(row["as_of"]),
            }
        )
    frame = pd.DataFrame.from_records(records)
    if "created_at" in frame.columns:
        frame["created_at"] = pd.to_datetime(frame["created_at"], format="mixed")
    frame["as_of"] = pd.to_datetime(frame["as_of"], format="mixed")
    return frame


def pick_pair(history: Sequence[Mapping], since: object = None) -> tuple[Mapping, Mapping] | None:
    """(earlier, later) scorings of one lead: the latest and the one before, or with `since`
    the last scoring at or before that moment (else the first). None with fewer than two."""
    ordered = sorted(history, key=lambda r: pd.Timestamp(r["scored_at"]))
    if len(ordered) < 2:
        return None
    later = ordered[-1]
    if since is None:
        return ordered[-2], later
    cut = pd.Timestamp(since)
    before = [r for r in ordered[:-1] if pd.Timestamp(r["scored_at"]) <= cut]
    return (before[-1] if before else ordered[0]), later


def trend_word(scores: Sequence[int], cfg: HistoryConfig) -> str:
    """rising / steady / falling from the latest `trend_runs` scores (oldest first)."""
    recent = list(scores)[-cfg.trend_runs :]
    if len(recent) < 2:
        return "steady"
    change = recent[-1] - recent[0]
    if change >= cfg.rising_points:
        return "rising"
    if change <= -cfg.falling_points:
        return "falling"
    return "steady"


def bundle_finder(models_dir: str | Path, *loaded: LeadModel) -> ModelFor:
    """Models by version: those already loaded, else models_dir/<version> (cached); None if absent."""
    cache: dict[str, LeadModel | None] = {m.version: m for m in loaded}

    def find(version: str) -> LeadModel | None:
        if version not in cache:
            folder = Path(models_dir) / version
            cache[version] = load_bundle(folder) if (folder / "bundle.json").exists() else None
        return cache[version]

    return find


def ledger_lines(ledger: dict) -> list[str]:
    """Plain text: '+15 new activity: 3 new pricing-page views (+12), ...' one line per cause."""
    out = []
    for step in ledger["steps"]:
        parts = ", ".join(f"{p['text']} ({_signed(p['points'])})" for p in step["parts"])
        out.append(f"{_signed(step['points'])} {step['label']}" + (f": {parts}" if parts else ""))
    return out


# ---------------------------------------------------------------- the chain


def _ledgers_for(
    earlier: pd.DataFrame,
    later: pd.DataFrame,
    events: pd.DataFrame | None,
    old_model: LeadModel | None,
    new_model: LeadModel,
) -> list[dict]:
    unknown = [c for c in new_model.spec.attribute_columns if c not in earlier and c in later]
    if unknown:  # a column the earlier scoring did not keep: read as unchanged
        earlier = earlier.assign(**{c: later[c].to_numpy() for c in unknown})
    old_as_of = earlier["as_of"].to_numpy(dtype="datetime64[us]")
    new_as_of = later["as_of"].to_numpy(dtype="datetime64[us]")
    seen = _events_until(events, earlier["lead_id"], old_as_of)
    a_old = _state(old_model, earlier, seen, old_as_of) if old_model is not None else None
    a_new = a_old if old_model is new_model else _state(new_model, earlier, seen, old_as_of)
    b = _edited_state(new_model, a_new, earlier, later, seen, old_as_of)
    c = _state(new_model, later, seen, new_as_of)
    d = _state(new_model, later, events, new_as_of)
    stored_old = earlier["score"].to_numpy(dtype=np.int64)
    stored_new = later["score"].to_numpy(dtype=np.int64)
    start = a_old.score if a_old is not None else stored_old
    deltas = {
        "model": a_new.score - start,
        "attributes": b.score - a_new.score,
        "time": c.score - b.score,
        "engagement": d.score - c.score,
        "other": (start - stored_old) + (stored_new - d.score),
    }
    parts = {
        "model": _model_parts(a_old, a_new, old_model, new_model, deltas["model"]),
        "attributes": _parts(a_new, b, deltas["attributes"]),
        "time": _parts(b, c, deltas["time"]),
        "engagement": _parts(c, d, deltas["engagement"]),
    }
    texts = _Texts(new_model, earlier, later, events, old_as_of, new_as_of, c, old_model)
    return [
        _one_ledger(i, earlier, later, deltas, parts, texts, new_model) for i in range(len(earlier))
    ]


def _state(model: LeadModel, leads: pd.DataFrame, events, as_of: np.ndarray) -> State:
    frame = _with_columns(leads, model)
    X = build_features(model.spec, frame, events, as_of)
    contrib = model.model.contributions(X)
    _, score, base, share = score_shares(contrib, model.calibrator)
    groups = model.groups
    return State(score.astype(np.int64), int(base), sum_by_group(share, groups), X)


def _edited_state(model, a_new: State, earlier, later, seen, as_of) -> State:
    """State after the attribute edits: only edited leads are re-scored (rows are independent)."""
    columns = [c for c in [*model.spec.attribute_columns, "created_at"] if c in later]
    old = _with_columns(earlier, model)[columns].astype(object)
    new = later[columns].astype(object)
    same = ((old == new) | (old.isna() & new.isna())).all(axis=1).to_numpy()
    if same.all():
        return a_new
    rows = np.flatnonzero(~same)
    part = _state(model, later.iloc[rows], _rows_events(seen, later, rows), as_of[rows])
    score, shares, X = a_new.score.copy(), a_new.shares.copy(), a_new.X.copy()
    score[rows], shares[rows], X[rows] = part.score, part.shares, part.X
    return State(score, part.base, shares, X)


def _rows_events(events: pd.DataFrame | None, leads: pd.DataFrame, rows: np.ndarray):
    if events is None:
        return None
    return events[events["lead_id"].isin(leads["lead_id"].iloc[rows])]


def _with_columns(leads: pd.DataFrame, model: LeadModel) -> pd.DataFrame:
    """Columns the model reads that the stored attributes lack (added later) read as missing."""
    missing = [c for c in model.spec.attribute_columns if c not in leads.columns]
    return leads.assign(**{c: None for c in missing}) if missing else leads


def _events_until(events: pd.DataFrame | None, lead_ids: pd.Series, cut: np.ndarray):
    """The events each lead had at its own earlier as_of."""
    if events is None or not len(events):
        return None
    limit = pd.Series(cut, index=lead_ids.to_numpy())
    limit = limit[~limit.index.duplicated()]
    per_event = events["lead_id"].map(limit).to_numpy(dtype="datetime64[us]")
    occurred = events["occurred_at"].to_numpy(dtype="datetime64[us]")
    return events[~np.isnat(per_event) & (occurred <= per_event)]


def _parts(before: State, after: State, delta: np.ndarray) -> np.ndarray:
    """Integer points per group of one model's step, summing exactly to the step's delta."""
    return largest_remainder(after.shares - before.shares, delta)


def _model_parts(a_old, a_new, old_model, new_model, delta: np.ndarray) -> dict:
    """Per signal of either model plus the baseline's move; one lump without the old model."""
    if old_model is new_model:
        return {"keys": [], "labels": [], "points": np.zeros((len(delta), 0), np.int64)}
    if a_old is None:
        return {
            "keys": ["unavailable"],
            "labels": ["(earlier model not available for detail)"],
            "points": delta[:, None].copy(),
        }
    keys = list(dict.fromkeys(new_model.groups.keys + old_model.groups.keys))
    labels = [_label_of(k, new_model, old_model) for k in keys]
    diff = np.zeros((len(delta), len(keys) + 1))
    for model, state, sign in ((new_model, a_new, 1.0), (old_model, a_old, -1.0)):
        for g, key in enumerate(model.groups.keys):
            diff[:, keys.index(key)] += sign * state.shares[:, g]
    diff[:, -1] = a_new.base - a_old.base
    return {
        "keys": keys + ["baseline"],
        "labels": labels + ["baseline score"],
        "points": largest_remainder(diff, delta),
    }


def _label_of(key: str, *models: LeadModel) -> str:
    for model in models:
        if key in model.groups.keys:
            return model.groups.labels[model.groups.keys.index(key)]
    return key


# ---------------------------------------------------------------- one lead's ledger


def _one_ledger(i, earlier, later, deltas, parts, texts: _Texts, new_model) -> dict:
    steps = []
    versions = (texts.old_version, texts.new_version)
    for cause in CAUSES:
        points = int(deltas[cause][i])
        if cause == "other":
            if points:
                steps.append(_step(cause, points, [], versions))
            continue
        step_parts = _step_parts(cause, i, parts[cause], new_model, texts)
        steps.append(_step(cause, points, step_parts, versions))
    return {
        "lead_id": _plain(later["lead_id"].iloc[i]),
        "from": _end(earlier, i),
        "to": _end(later, i),
        "change": int(later["score"].iloc[i] - earlier["score"].iloc[i]),
        "steps": steps,
    }


def _step(cause: str, points: int, parts: list[dict], versions: tuple[str, str]) -> dict:
    label = CAUSE_LABELS[cause]
    if cause == "model" and versions[0] != versions[1]:
        label = f"{label} ({versions[0]} -> {versions[1]})"
    return {"cause": cause, "label": label, "points": points, "parts": parts}


def _step_parts(cause: str, i: int, part, model: LeadModel, texts: _Texts) -> list[dict]:
    if cause == "model":
        keys, labels, points = part["keys"], part["labels"], part["points"][i]
    else:
        keys, labels, points = model.groups.keys, model.groups.labels, part[i]
    out = [
        {
            "signal": key,
            "label": label,
            "points": int(p),
            "text": texts.text(cause, key, label, i),
        }
        for key, label, p in zip(keys, labels, points, strict=True)
        if p != 0
    ]
    return sorted(out, key=lambda r: -abs(r["points"]))


def _end(frame: pd.DataFrame, i: int) -> dict:
    row = frame.iloc[i]
    return {
        "score": int(row["score"]),
        "model_version": str(row["model_version"]),
        "as_of": pd.Timestamp(row["as_of"]).isoformat(),
    }


class _Texts:
    """Plain words for each part: what changed in that signal between the two scorings."""

    def __init__(self, model, earlier, later, events, old_as_of, new_as_of, c: State, old_model):
        self.model, self.earlier, self.later, self.c = model, earlier, later, c
        self.old_version = str(earlier["model_version"].iloc[0])
        self.new_version = str(later["model_version"].iloc[0])
        self.new_counts = _new_event_counts(events, later["lead_id"], old_as_of, new_as_of)
        self.names = model.spec.names

    def text(self, cause: str, key: str, label: str, i: int) -> str:
        kind, _, name = key.partition(":")
        if cause == "model":
            return label
        if cause == "attributes" and kind == "attr":
            old, new = self.earlier[name].iloc[i], self.later[name].iloc[i]
            if not _same(old, new):
                return f"{label}: {_shown(old)} -> {_shown(new)}"
        if kind == "attr":  # tree models: an unchanged attribute can weigh differently now
            return f"{label} (unchanged, weighs differently now)"
        if cause == "attributes":
            return f"{label} (weighs differently after the edits)"
        if cause == "time":
            return self._time_text(kind, name, label, i)
        if cause == "engagement":
            return self._new_activity_text(kind, name, label, i)
        return label

    def _time_text(self, kind: str, name: str, label: str, i: int) -> str:
        if kind == "age":
            return f"lead now {_days_text(self._value('lead_age_days', i))} old"
        column = f"{name}_days_since" if kind == "event" else "days_since_any_activity"
        if column not in self.names:
            return label
        days = self._value(column, i)
        what = name.replace("_", " ") if kind == "event" else "activity"
        if np.isnan(days):
            return f"no {what} yet"
        return f"last {what} now {_days_text(days)} ago"

    def _new_activity_text(self, kind: str, name: str, label: str, i: int) -> str:
        lead = _plain(self.later["lead_id"].iloc[i])
        counts = self.new_counts.get(lead, {})
        if kind == "event":
            n = counts.get(name, 0)
            noun = EVENT_PHRASES.get(name, (f"'{name}' events", ""))[0]
            return f"{noun}: {n} new" if n else f"{label} (none new, weighs differently now)"
        if kind in ("engagement", ""):
            total = sum(counts.values())
            return f"{total} new activities in all" if total else label
        return label

    def _value(self, column: str, i: int) -> float:
        return float(self.c.X[i, self.names.index(column)])


def _new_event_counts(events, lead_ids: pd.Series, old: np.ndarray, new: np.ndarray) -> dict:
    """lead_id -> event type -> events after the earlier as_of, up to the later one."""
    if events is None or not len(events):
        return {}
    ids = lead_ids.to_numpy()
    lo = pd.Series(old, index=ids)
    hi = pd.Series(new, index=ids)
    lo, hi = lo[~lo.index.duplicated()], hi[~hi.index.duplicated()]
    t = events["occurred_at"].to_numpy(dtype="datetime64[us]")
    a = events["lead_id"].map(lo).to_numpy(dtype="datetime64[us]")
    b = events["lead_id"].map(hi).to_numpy(dtype="datetime64[us]")
    fresh = events[~np.isnat(a) & (t > a) & (t <= b)]
    counts = fresh.groupby(["lead_id", "event_type"]).size()
    out: dict = {}
    for (lead, etype), n in counts.items():
        out.setdefault(_plain(lead), {})[str(etype)] = int(n)
    return out


# ---------------------------------------------------------------- small helpers


def _check_pairs(earlier: pd.DataFrame, later: pd.DataFrame) -> None:
    for frame, name in ((earlier, "earlier"), (later, "later")):
        missing = [c for c in ("lead_id", "score", "model_version", "as_of") if c not in frame]
        if missing:
            raise SchemaError("lead_score_history", missing[0], f"missing in the {name} scorings")
    if (
        len(earlier) != len(later)
        or not (earlier["lead_id"].to_numpy() == later["lead_id"].to_numpy()).all()
    ):
        raise SchemaError(
            "lead_score_history", "lead_id", "earlier and later scorings do not pair up"
        )


def _same(a: object, b: object) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    return not pd.isna(a) and not pd.isna(b) and str(a) == str(b)


def _shown(value: object) -> str:
    if pd.isna(value):
        return "unknown"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    return str(value).replace("_", " ")


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _signed(points: int) -> str:
    return f"+{points}" if points > 0 else str(points)


# ---------------------------------------------------------------- from the database


def lead_history_report(
    url: str,
    config: Config,
    lead_id: object,
    model_for: ModelFor,
    *,
    since: object = None,
    with_ledger: bool = True,
) -> dict | None:
    """A lead's scorings (oldest first), its trend word and the ledger between two of them
    (the latest and the one before, or the last one at or before `since`); None if unscored."""
    rows = lead_scorings(url, output_tables(config.data.leads_table), lead_id)
    if not rows:
        return None
    scorings = [{k: row.get(k) for k in HISTORY_KEYS} for row in rows]
    report = {
        "lead_id": rows[-1]["lead_id"],
        "trend": trend_word([int(r["score"]) for r in rows], config.history),
        "scorings": scorings,
        "ledger": None,
    }
    pair = pick_pair(rows, since)
    if with_ledger and pair is not None and all(r.get("attributes") for r in pair):
        tables = resolve_tables(url, config.data)
        events = _events_frame(lead_events(tables, lead_id))
        earlier, later = scoring_frame([pair[0]]), scoring_frame([pair[1]])
        report["ledger"] = change_ledgers(earlier, later, events, model_for)[0]
        report["ledger"]["lines"] = ledger_lines(report["ledger"])
    elif with_ledger and pair is not None:
        report["ledger_note"] = "these scorings predate the stored inputs the ledger needs"
    return report


HISTORY_KEYS = (
    "run_id",
    "scored_at",
    "as_of",
    "score",
    "grade",
    "probability",
    "model_version",
    "fit_points",
    "engagement_points",
)


def _events_frame(events: list[dict]) -> pd.DataFrame | None:
    if not events:
        return None
    frame = pd.DataFrame.from_records(events)
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], format="mixed")
    return frame


def ledger_inputs(leads: pd.DataFrame, model: LeadModel) -> list[str]:
    """Per lead, the JSON the ledger re-scores it from: created_at and the model's attributes."""
    columns = [c for c in ["created_at", *model.spec.attribute_columns] if c in leads.columns]
    if not len(leads):
        return []
    text = leads[columns].to_json(orient="records", lines=True, date_format="iso", date_unit="us")
    return text.splitlines()
