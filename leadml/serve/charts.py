"""Geometry of the inline SVG charts (the templates draw them): the score over time with the
grade bands, and expected conversions against the number of leads called. No JavaScript."""

from __future__ import annotations

import pandas as pd

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 12, 10, 28


def _x(i: float, lo: float, hi: float) -> float:
    span = (hi - lo) or 1.0
    return round(LEFT + (i - lo) / span * (WIDTH - LEFT - RIGHT), 1)


def _y(v: float, top: float) -> float:
    return round(TOP + (1 - v / (top or 1.0)) * (HEIGHT - TOP - BOTTOM), 1)


def score_chart(scorings: list[dict], grades) -> dict | None:
    """Points of the score over time (0..100) with the hot / warm / cold bands."""
    if not scorings:
        return None
    times = [pd.Timestamp(s.get("as_of") or s["scored_at"]) for s in scorings]
    t = [ts.value / 86_400e9 for ts in times]
    lo, hi = min(t), max(t)
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    points = [
        {
            "x": _x(ti, lo, hi),
            "y": _y(int(s["score"]), 100),
            "score": int(s["score"]),
            "grade": s.get("grade"),
            "when": ts.strftime("%Y-%m-%d"),
            "model": s.get("model_version"),
        }
        for ti, ts, s in zip(t, times, scorings, strict=True)
    ]
    hot, warm, cold = grades.names
    bands = [
        {"name": hot, "y": _y(100, 100), "h": _y(grades.hot_min, 100) - _y(100, 100)},
        {
            "name": warm,
            "y": _y(grades.hot_min, 100),
            "h": _y(grades.warm_min, 100) - _y(grades.hot_min, 100),
        },
        {"name": cold, "y": _y(grades.warm_min, 100), "h": _y(0, 100) - _y(grades.warm_min, 100)},
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "bottom": HEIGHT - BOTTOM,
        "points": points,
        "path": " ".join(f"{p['x']},{p['y']}" for p in points),
        "bands": bands,
        "ticks": [{"y": _y(v, 100), "label": v} for v in (0, 25, 50, 75, 100)],
        "first": points[0]["when"],
        "last": points[-1]["when"],
    }


def calllist_chart(curve: pd.DataFrame, available: int) -> dict | None:
    """Expected conversions (line) and the interval (band) against the number called."""
    if curve is None or not len(curve):
        return None
    n = int(curve["called"].max())
    top = float(max(curve["high"].max(), curve["expected"].max(), 1))
    pts = [
        (_x(float(c), 0, n), _y(float(e), top), _y(float(lo), top), _y(float(hi), top))
        for c, e, lo, hi in zip(
            curve["called"], curve["expected"], curve["low"], curve["high"], strict=True
        )
    ]
    band = [f"{x},{hi}" for x, _, _, hi in pts] + [f"{x},{lo}" for x, _, lo, _ in pts[::-1]]
    ticks = sorted({round(top * f) for f in (0, 0.25, 0.5, 0.75, 1)})
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "bottom": HEIGHT - BOTTOM,
        "line": " ".join(f"{x},{y}" for x, y, _, _ in pts),
        "band": " ".join(band),
        "ticks": [{"y": _y(v, top), "label": v} for v in ticks],
        "called": n,
        "available": available,
        "expected": round(float(curve["expected"].iloc[-1]), 1),
    }
