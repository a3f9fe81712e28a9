"""Contributions -> score points -> plain-language reasons.

The score is non-linear in the model's log-odds (calibration), so each lead's score change
from the baseline score is spread over the features in proportion to their log-odds
contributions (the secant slope of the calibrated score between the baseline margin and the
lead's margin), then rounded to integers by largest remainder: baseline + points = score,
exactly, for every lead.

Every feature also belongs to one facet: "fit" (who the lead is: its attributes) or
"engagement" (what it did: events, recency, decay, trend, active days, and the lead's age,
which moves with time like engagement does). The facet sub-scores are sums of the same
integer points, so baseline + fit + engagement = score, exactly.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np

from leadml.calibrate import Calibrator, to_score
from leadml.features import FeatureSpec, reason_text


@dataclass(frozen=True)
class Groups:
    """Reason groups: features of one signal (an attribute, an event type) read as one reason."""

    keys: list[str]
    labels: list[str]
    of_feature: np.ndarray  # feature index -> group index
    members: list[list[int]]


def reason_groups(spec: FeatureSpec) -> Groups:
    keys: list[str] = []
    labels: list[str] = []
    of_feature = np.zeros(len(spec.features), dtype=np.int64)
    for j, info in enumerate(spec.features):
        if info.group not in keys:
            keys.append(info.group)
            labels.append(_group_label(info))
        of_feature[j] = keys.index(info.group)
    members = [list(np.flatnonzero(of_feature == g)) for g in range(len(keys))]
    return Groups(keys, labels, of_feature, members)


def _group_label(info) -> str:
    if info.kind in ("count", "recency") and info.event_type:
        return info.unit.capitalize() if info.kind == "count" else info.label
    return {"engagement": "Overall engagement", "age": "Lead age"}.get(info.group, info.label)


FIT, ENGAGEMENT = "fit", "engagement"
FIT_KINDS = ("categorical", "numeric")  # attributes: demographics, firmographics, source, BANT


def feature_facets(
    spec: FeatureSpec,
    fit_features: Sequence[str] = (),
    engagement_features: Sequence[str] = (),
) -> np.ndarray:
    """True where a feature counts toward fit, False for engagement (one bool per feature).

    Inferred from the feature kind; a feature whose name or reason group (`attr:industry`,
    `event:web_visit`, `age`) matches a pattern (fnmatch, e.g. `web_visit_*`) of
    `engagement_features` or `fit_features` is moved there (engagement wins a tie).
    """
    out = np.array([f.kind in FIT_KINDS for f in spec.features], dtype=bool)
    for j, info in enumerate(spec.features):
        names = (info.name, info.group)
        if any(fnmatchcase(n, p) for p in fit_features for n in names):
            out[j] = True
        if any(fnmatchcase(n, p) for p in engagement_features for n in names):
            out[j] = False
    return out


def facet_points(points: np.ndarray, is_fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit and engagement points per lead: sums of the exact integer points."""
    points = np.asarray(points, dtype=np.int64)
    return points[:, is_fit].sum(axis=1), points[:, ~is_fit].sum(axis=1)


def largest_remainder(x: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Integers close to x (n x d) whose rows sum exactly to the integer totals."""
    n, d = x.shape
    floor = np.floor(x)
    deficit = np.clip(np.rint(totals - floor.sum(axis=1)), 0, d).astype(np.int64)
    order = np.argsort(-(x - floor), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(d), (n, d)), axis=1)
    return (floor + (rank < deficit[:, None])).astype(np.int64)


def score_and_points(
    contrib: np.ndarray, calibrator: Calibrator
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Probability, score, baseline score and integer points per feature from contributions.

    `contrib` is (n, d + 1) with the baseline margin in the last column.
    """
    prob, score, base_score, share = score_shares(contrib, calibrator)
    return prob, score, base_score, largest_remainder(share, score - base_score)


def score_shares(
    contrib: np.ndarray, calibrator: Calibrator
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Like `score_and_points` but with the unrounded points (rows sum to score - baseline).

    The change ledger splits a score change by differences of these shares, so it is not
    thrown off by one state's rounding.
    """
    base_margin = contrib[:, -1]
    feats = contrib[:, :-1]
    margin = base_margin + feats.sum(axis=1)
    prob = calibrator.predict(margin)
    score = to_score(prob).astype(np.int64)
    base_score = to_score(calibrator.predict(base_margin[:1]))[0] if len(contrib) else 1
    base_score = int(base_score)
    delta = score - base_score
    total = feats.sum(axis=1)
    tiny = np.abs(total) < 1e-12
    scale = np.divide(delta, total, out=np.zeros_like(total, dtype=np.float64), where=~tiny)
    share = feats * scale[:, None]
    if tiny.any():  # no net contribution but a score change (rounding edge): spread by size
        weight = np.abs(feats[tiny])
        weight_sum = weight.sum(axis=1, keepdims=True)
        even = np.where(
            weight_sum > 0,
            weight / np.where(weight_sum > 0, weight_sum, 1),
            1 / max(feats.shape[1], 1),
        )
        share[tiny] = even * delta[tiny, None]
    return prob, score, base_score, share


def group_points(points: np.ndarray, groups: Groups) -> np.ndarray:
    """Sum feature points within each reason group (integers stay exact)."""
    return sum_by_group(points, groups, np.int64)


def sum_by_group(values: np.ndarray, groups: Groups, dtype=np.float64) -> np.ndarray:
    """Per row, the sum of each group's columns, added in feature order: the same arithmetic as
    `np.add.at` (so a row's sums never depend on the other rows), a column at a time (faster)."""
    out = np.zeros((values.shape[0], len(groups.keys)), dtype=dtype)
    for j, g in enumerate(groups.of_feature.tolist()):
        out[:, g] += values[:, j]
    return out


def build_reasons(
    spec: FeatureSpec,
    X: np.ndarray,
    gpoints: np.ndarray,
    gmargin: np.ndarray,
    groups: Groups,
    top_positive: int,
    top_negative: int,
) -> list[list[dict]]:
    """Top positive and top negative reasons per lead, biggest first.

    Ties in points are broken by the size of the log-odds contribution (`gmargin`).
    """
    n, g = gpoints.shape
    key = gpoints + np.tanh(gmargin) * 0.49  # order by points, then by contribution
    order = np.argsort(-key, axis=1, kind="stable")
    picked = np.concatenate(
        [order[:, : min(top_positive, g)], order[:, ::-1][:, : min(top_negative, g)]], axis=1
    )
    points = np.take_along_axis(gpoints, picked, axis=1)
    kp = min(top_positive, g)
    keep = np.concatenate([points[:, :kp] > 0, points[:, kp:] < 0], axis=1)
    rows, cols = np.nonzero(keep)  # row-major: each lead's positives, then its negatives
    with _no_gc():  # many small dicts, no cycles: the collector would only rescan the heap
        return _reason_dicts(spec, X, groups, n, rows, picked[rows, cols], points[rows, cols])


def _reason_dicts(spec, X, groups: Groups, n: int, rows, chosen, pts) -> list[list[dict]]:
    out: list[list[dict]] = [[] for _ in range(n)]
    members = [np.asarray(m, dtype=np.int64) for m in groups.members]
    names = spec.names
    worded: dict[tuple, tuple] = {}  # (group, its values) -> (feature, label, value, text)
    for i, gg, p in zip(rows.tolist(), chosen.tolist(), pts.tolist(), strict=True):
        values = tuple(X[i, members[gg]].tolist())
        words = worded.get((gg, values))
        if words is None:
            words = worded[(gg, values)] = _words(spec, groups, gg, values, names)
        feature, label, value, text = words
        out[i].append(
            {"feature": feature, "label": label, "value": value, "points": p, "text": text}
        )
    return out


@contextmanager
def _no_gc():
    """The cyclic garbage collector paused (and restored as it was): building 100k reason dicts
    triggers full collections that rescan every object of the process (~30% of the time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _words(spec, groups: Groups, g: int, values: tuple, names) -> tuple:
    """What a reason says for a group's values (the same whatever its points), phrased once per
    distinct (group, values) in a call: attribute reasons (source, industry, ...) repeat across
    leads; engagement values mostly do not, and cost one dict look-up more."""
    named = {names[j]: v for j, v in zip(groups.members[g], values, strict=True)}
    key = groups.keys[g]
    return (
        key.partition(":")[2] or key,
        groups.labels[g],
        _display_value(spec, key, named),
        reason_text(spec, key, named),
    )


def _display_value(spec: FeatureSpec, key: str, values: dict) -> object:
    kind, _, name = key.partition(":")
    if kind == "attr" and name in spec.categories:
        code = values[name]
        cats = spec.categories[name]
        return None if np.isnan(code) else (cats[int(code)] if int(code) < len(cats) else "other")
    first = next(iter(values.values()))
    return None if np.isnan(first) else round(first, 3)


def reasons_json(reasons: list[list[dict]]) -> list[str]:
    return [json.dumps(r, separators=(",", ":")) for r in reasons]


def format_points(points: int) -> str:
    return f"+{points}" if points > 0 else str(points)
