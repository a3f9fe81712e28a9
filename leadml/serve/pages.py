"""Server-rendered pages for sales ops (Jinja2, no JavaScript, no build step):
`/leads` (the ranked list) and `/leads/{lead_id}` (score, grade, reasons, engagement).

A lead without a stored score is scored live with the served model through
`predict.score_one` from its database rows, and the page says so.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadml.config import Config
from leadml.serve.store import CORE_COLUMNS, NAME_COLUMNS, SOURCE_COLUMNS, LeadStore, first_present

PER_PAGE = 50
TIMELINE = 25
KEY_COOKIE = "leadml_api_key"


@lru_cache(maxsize=1)
def templates():
    """The Jinja2 templates shipped in the package (autoescaped)."""
    from importlib.resources import files

    from fastapi.templating import Jinja2Templates

    env = Jinja2Templates(directory=str(files("leadml.serve") / "templates"))
    env.env.filters["when"] = when
    env.env.filters["signed"] = signed
    env.env.filters["nice"] = nice
    return env


def wants_html(request: Request) -> bool:
    """Page routes answer errors as HTML; everything else as JSON."""
    path = request.url.path
    return path == "/leads" or path.startswith("/leads/")


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return templates().TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def page_router(slot, store: LeadStore, config: Config, *, keyed: bool = False) -> APIRouter:
    """The two pages, reading the served model from `slot` at each request."""
    router = APIRouter(tags=["pages"])
    horizon = config.snapshots.horizon_days

    @router.get("/leads", response_class=HTMLResponse)
    def leads_page(
        request: Request,
        grade: Annotated[str | None, Query(max_length=50)] = None,
        source: Annotated[str | None, Query(max_length=200)] = None,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    ) -> Response:
        """The ranked list of scored leads, filterable by grade and source."""
        if keyed and (redirect := _key_to_cookie(request)):
            return redirect
        model = slot.current
        result = store.ranked(grade or None, source or None, page, PER_PAGE)
        rows = [_list_row(r) for r in result.rows]
        filters = {k: v for k, v in (("grade", grade), ("source", source)) if v}
        context = {
            "rows": rows,
            "result": result,
            "grades": list(model.grades.names),
            "grade": grade or "",
            "source": source or "",
            "filters": filters,
            "prev_url": _page_url(filters, result.page - 1) if result.page > 1 else None,
            "next_url": _page_url(filters, result.page + 1) if result.page < result.pages else None,
            "model_version": model.version,
        }
        return templates().TemplateResponse(request, "leads.html", context)

    @router.get("/leads/{lead_id}", response_class=HTMLResponse)
    def lead_page(request: Request, lead_id: str) -> Response:
        """One lead: score, grade, chance in words, reasons in points, recent engagement."""
        if keyed and (redirect := _key_to_cookie(request)):
            return redirect
        context = lead_context(slot.current, store, lead_id, horizon)
        if context is None:
            return error_page(request, 404, f"Lead {lead_id} was not found in the lead database.")
        return templates().TemplateResponse(request, "lead.html", context)

    return router


def lead_context(model, store: LeadStore, lead_id: str, horizon: float) -> dict | None:
    """Everything the lead page shows, or None when the lead is unknown."""
    stored = store.stored_score(lead_id)
    lead = store.lead(lead_id)
    if stored is None and lead is None:
        return None
    live = stored is None
    if live:
        from leadml.predict import score_one

        stored = score_one(model, lead, store.events(lead_id))
    lead = lead or {}
    return {
        "lead_id": stored["lead_id"],
        "name": _pick(lead, NAME_COLUMNS),
        "source": _pick(lead, SOURCE_COLUMNS),
        "lead": lead,
        "details": _details(lead),
        "score": stored,
        "live": live,
        "words": probability_words(float(stored["probability"]), horizon),
        "reasons": reason_bars(stored["reasons"]),
        "timeline": [_event_row(e) for e in store.events(lead_id, TIMELINE)],
        "model_version": model.version,
    }


def probability_words(probability: float, horizon_days: float) -> str:
    """'about 1 in 4 such leads converted within 30 days' for a probability of 0.26."""
    days = f"{horizon_days:g} days"
    if probability >= 0.95:
        return f"almost all such leads converted within {days}"
    if probability >= 0.5:
        return f"about {round(probability * 10)} in 10 such leads converted within {days}"
    if probability >= 0.01:
        return f"about 1 in {round(1 / probability)} such leads converted within {days}"
    return f"fewer than 1 in 100 such leads converted within {days}"


def reason_bars(reasons: list[dict]) -> list[dict]:
    """Reasons with the half-width (percent of the track) of their bar, largest = 50%."""
    biggest = max((abs(int(r.get("points", 0))) for r in reasons), default=0) or 1
    out = []
    for r in reasons:
        points = int(r.get("points", 0))
        out.append({**r, "points": points, "width": max(1.0, round(50 * abs(points) / biggest, 1))})
    return out


def _list_row(row: dict) -> dict:
    positives = [r for r in row["reasons"] if r.get("points", 0) > 0]
    top = (positives or row["reasons"] or [None])[0]
    return {**row, "top_reason": top}


def _details(lead: dict) -> list[tuple[str, object]]:
    skip = set(CORE_COLUMNS) | set(NAME_COLUMNS[:1])
    return [(k.replace("_", " ").capitalize(), v) for k, v in lead.items() if k not in skip][:16]


def _event_row(event: dict) -> dict:
    kind = str(event.get("event_type") or "")
    return {
        "when": event.get("occurred_at"),
        "what": kind.replace("_", " ").capitalize(),
        "value": event.get("value"),
    }


def _pick(row: dict, names: tuple[str, ...]) -> object:
    column = first_present(names, row)
    return row.get(column) if column else None


def _page_url(filters: dict, page: int) -> str:
    return "/leads?" + urlencode({**filters, "page": page})


def _key_to_cookie(request: Request) -> Response | None:
    """A page opened with ?api_key= (already checked): keep the key in a cookie, drop it from the URL."""
    key = request.query_params.get("api_key")
    if not key:
        return None
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "api_key"]
    target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict")
    return response


def when(value: object) -> str:
    """A timestamp as 'YYYY-MM-DD HH:MM' (text or datetime); '' when missing."""
    if value is None:
        return ""
    text = value.isoformat(sep=" ") if hasattr(value, "isoformat") else str(value)
    return text[:16]


def nice(value: object) -> str:
    """A detail value for people: 13120000.0 -> '13,120,000', 2.50 -> '2.5', None -> 'unknown'."""
    if value is None or (isinstance(value, float) and value != value):
        return "unknown"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value).replace("_", " ")
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def signed(points: int) -> str:
    return f"+{points}" if points > 0 else str(points)
