"""Server-rendered pages for sales ops (Jinja2, no JavaScript, no build step): `/leads` (the
ranked list, with the change since the previous scoring, fit and engagement), `/leads/{lead_id}`
(score = baseline + fit + engagement, reasons on one fixed scale, the score over time with the
grade bands, the change ledger, engagement) and `/calllist` (the top N with the expected
conversions and their curve). Charts are inline SVG drawn from the templates.

A lead without a stored score is scored live with the served model through
`predict.score_one` from its database rows, and the page says so; a converted or disqualified
lead is shown as such, never scored as if it were still open.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadml.calllist import split_list, stored_call_list, summary_line
from leadml.config import Config
from leadml.data.history import ranked_page
from leadml.data.scores import output_tables
from leadml.errors import LeadmlError
from leadml.ledger import lead_history_report
from leadml.predict import score_stored_lead
from leadml.serve import charts
from leadml.serve.routes_history import _since, model_finder
from leadml.serve.store import CORE_COLUMNS, LeadStore

PER_PAGE = 50
TIMELINE = 25
KEY_COOKIE = "leadml_api_key"
BAR_SCALE_POINTS = 40  # a reason of this many points fills half the track, on every page
FACET_MARGIN = 3  # fit / engagement within this many points of the baseline read as "average"
CALLLIST_ROWS = 100  # rows shown on the call-list page (the CSV has them all)
CONTACT_FIELDS = ("name", "full_name", "contact_name", "first_name", "last_name")
COMPANY_FIELDS = ("company", "company_name", "account", "organization")
REACH_FIELDS = ("title", "job_title", "job_seniority", "email", "phone", "country")
CLOSED_AT_FIELDS = ("disqualified_at", "closed_at", "updated_at")
SORT_LABELS = {
    "score": "Score",
    "movers": "Movers",
    "rising": "Rising",
    "falling": "Falling",
    "fit": "Fit",
    "engagement": "Engagement",
}


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
    return path in ("/leads", "/calllist") or path.startswith("/leads/")


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return templates().TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def page_router(slot, store: LeadStore, config: Config, *, keyed: bool = False) -> APIRouter:
    """The pages, reading the served model from `slot` at each request."""
    router = APIRouter(tags=["pages"])
    find = model_finder(slot, config)

    def header(context: dict) -> dict:
        """Every page's header says so when the latest run scored past the data's end."""
        return {**context, "stale_note": store.stale_note(config.snapshots.horizon_days)}

    @router.get("/leads", response_class=HTMLResponse)
    def leads_page(
        request: Request,
        grade: Annotated[str | None, Query(max_length=50)] = None,
        source: Annotated[str | None, Query(max_length=200)] = None,
        fit: Annotated[str | None, Query(pattern="^(above|below|)$")] = None,
        engagement: Annotated[str | None, Query(pattern="^(above|below|)$")] = None,
        sort: Annotated[str, Query(pattern="^(score|movers|rising|falling|fit|engagement)$")] = (
            "score"
        ),
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    ) -> Response:
        """The ranked list of scored leads: sort, filter, movers, fit and engagement."""
        if keyed and (redirect := _key_to_cookie(request)):
            return redirect
        filters = {"grade": grade, "source": source, "fit": fit, "engagement": engagement}
        context = list_context(slot.current, store, config, filters, sort, page)
        return templates().TemplateResponse(request, "leads.html", header(context))

    @router.get("/leads/{lead_id}", response_class=HTMLResponse)
    def lead_page(
        request: Request, lead_id: str, since: Annotated[str | None, Query(max_length=40)] = None
    ) -> Response:
        """One lead: score, sub-scores, reasons, history chart, change ledger, engagement."""
        if keyed and (redirect := _key_to_cookie(request)):
            return redirect
        context = lead_context(slot.current, store, lead_id, config, find, since)
        if context is None:
            return error_page(request, 404, f"Lead {lead_id} was not found in the lead database.")
        return templates().TemplateResponse(request, "lead.html", header(context))

    @router.get("/calllist", response_class=HTMLResponse)
    def calllist_page(
        request: Request,
        capacity: Annotated[int, Query(ge=1, le=100_000)] = 200,
        grade: Annotated[str | None, Query(max_length=200)] = None,
        source: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        """The top N open leads, the conversions they are expected to bring, and the curve."""
        if keyed and (redirect := _key_to_cookie(request)):
            return redirect
        grades = list(split_list(grade))
        context = calllist_context(slot.current, store, config, capacity, grades, source)
        return templates().TemplateResponse(request, "calllist.html", header(context))

    return router


# ---------------------------------------------------------------- the lead page


def lead_context(model, store: LeadStore, lead_id: str, config: Config, find, since=None):
    """Everything the lead page shows, or None when the lead is unknown."""
    stored = store.stored_score(lead_id)
    lead = store.lead(lead_id)
    if stored is None and lead is None:
        return None
    lead = lead or {}
    closed = closed_status(lead)
    live = stored is None and closed is None
    if live:
        # a bad stored row is a 422 page naming the rule (the app's LeadmlError handler)
        stored = score_stored_lead(
            model, lead, store.events(lead_id), non_finite=config.data.non_finite
        )
    history = _history(store, config, lead_id, find, since) if stored is not None else None
    score = stored or {}
    return {
        "lead_id": score.get("lead_id", lead.get("lead_id", lead_id)),
        "name": _pick(lead, CONTACT_FIELDS),
        "company": _pick(lead, COMPANY_FIELDS),
        "reach": [(_label(k), lead[k]) for k in REACH_FIELDS if lead.get(k) not in (None, "")],
        "source": _pick(lead, ("source", "lead_source", "channel")),
        "lead": lead,
        "closed": closed,
        "details": _details(lead, config),
        "score": score,
        "live": live,
        "facets": facets(score),
        "words": probability_words(float(score["probability"]), config.snapshots.horizon_days)
        if score
        else "",
        "reasons": reason_bars(score.get("reasons") or [], config),
        "scale_points": BAR_SCALE_POINTS,
        "history": history,
        "chart": charts.score_chart(history["scorings"], model.grades) if history else None,
        "timeline": [_event_row(e) for e in store.events(lead_id, TIMELINE)],
        "model_version": model.version,
        "since": since or "",
    }


def _history(store: LeadStore, config: Config, lead_id: str, find, since) -> dict | None:
    try:
        return lead_history_report(store.url, config, lead_id, find, since=_since(since))
    except LeadmlError as exc:  # the page still shows the score; the ledger says why it is absent
        return {"scorings": [], "trend": None, "ledger": None, "ledger_note": str(exc)}


def closed_status(lead: dict) -> dict | None:
    """{'status': 'converted', 'date': ...} for a lead that is no longer open, else None."""
    status = str(lead.get("status") or "open").lower()
    if status == "open":
        return None
    date = lead.get("converted_at") if status == "converted" else None
    if date is None:
        date = next((lead[k] for k in CLOSED_AT_FIELDS if lead.get(k) is not None), None)
    return {"status": status, "date": date}


def facets(score: dict) -> dict | None:
    """Baseline, fit and engagement points and the words for them, when the score has them."""
    fit, engagement = score.get("fit_points"), score.get("engagement_points")
    if fit is None or engagement is None or not score:
        return None
    fit, engagement = int(fit), int(engagement)
    fit_word = _level(fit, ("weak fit", "average fit", "strong fit"))
    eng_word = _level(engagement, ("cold engagement", "some engagement", "hot engagement"))
    advice = {
        ("strong fit", "hot engagement"): ": call now",
        ("strong fit", "cold engagement"): ": nurture",
        ("weak fit", "hot engagement"): ": check who it is",
        ("weak fit", "cold engagement"): ": low priority",
    }.get((fit_word, eng_word), "")
    return {
        "baseline": int(score["score"]) - fit - engagement,
        "fit": fit,
        "engagement": engagement,
        "words": f"{fit_word}, {eng_word}{advice}",
    }


def _level(points: int, words: tuple[str, str, str]) -> str:
    """Below, near or above the baseline, FACET_MARGIN points being 'near'."""
    if points >= FACET_MARGIN:
        return words[2]
    return words[0] if points <= -FACET_MARGIN else words[1]


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


def reason_bars(reasons: list[dict], config: Config | None = None) -> list[dict]:
    """Reasons with their bar's half-width in percent of the track, on one fixed scale:
    BAR_SCALE_POINTS fill the half (larger ones are capped and marked)."""
    out = []
    for r in reasons:
        points = int(r.get("points", 0))
        width = min(50.0, 50 * abs(points) / BAR_SCALE_POINTS)
        shown = with_unit(r.get("feature"), r.get("value"), config)
        out.append(
            {
                **r,
                "points": points,
                "width": max(0.5, round(width, 1)),
                "capped": abs(points) > BAR_SCALE_POINTS,
                "shown_value": shown,
            }
        )
    return out


# ---------------------------------------------------------------- the list


def list_context(model, store: LeadStore, config: Config, filters: dict, sort: str, page: int):
    """The ranked list's rows (with the reason that sets each lead apart) and its controls."""
    set_filters = {k: v for k, v in filters.items() if v}
    result = ranked_page(
        store.url,
        config.data,
        output_tables(config.data.leads_table),
        grade=filters["grade"] or None,
        source=filters["source"] or None,
        fit=filters["fit"] or None,
        engagement=filters["engagement"] or None,
        sort=sort,
        page=page,
        per_page=PER_PAGE,
    )
    rows = distinct_reasons(result.rows)
    keep = {**set_filters, **({"sort": sort} if sort != "score" else {})}
    return {
        "rows": rows,
        "result": result,
        "grades": list(model.grades.names),
        "grade": filters["grade"] or "",
        "source": filters["source"] or "",
        "fit": filters["fit"] or "",
        "engagement": filters["engagement"] or "",
        "filters": set_filters,
        "sort": sort,
        "sorts": [(k, v, _page_url({**set_filters, "sort": k}, 1)) for k, v in SORT_LABELS.items()],
        "prev_url": _page_url(keep, result.page - 1) if result.page > 1 else None,
        "next_url": _page_url(keep, result.page + 1) if result.page < result.pages else None,
        "model_version": model.version,
    }


def distinct_reasons(rows: list[dict]) -> list[dict]:
    """Each row's "top reason": the one furthest from that reason's typical points on the page,
    so a sentence every lead shares does not fill the column."""
    import numpy as np

    keys = sorted({r.get("feature") for row in rows for r in row.get("reasons") or []})
    typical = {}
    for key in keys:
        points = [
            next((int(r["points"]) for r in row["reasons"] if r.get("feature") == key), 0)
            for row in rows
        ]
        typical[key] = float(np.median(points))
    out = []
    for row in rows:
        reasons = row.get("reasons") or []
        best = max(
            reasons,
            key=lambda r: (abs(int(r["points"]) - typical[r.get("feature")]), abs(r["points"])),
            default=None,
        )
        top = None
        if best is not None:
            top = {**best, "typical": typical[best.get("feature")]}
        out.append({**row, "top_reason": top, "facets": facets(row)})
    return out


# ---------------------------------------------------------------- the call list


def calllist_context(model, store: LeadStore, config: Config, capacity, grades, source):
    """The call list page: the leads, the summary, the plot."""
    grades = [g for g in grades if g]
    sources = [source] if source else []
    result = stored_call_list(store.url, config, capacity, grades=grades, sources=sources)
    query = [("capacity", capacity), ("grade", ",".join(grades)), ("source", source or "")]
    names = list(model.grades.names)
    choices = [("", "All grades")] + [
        (",".join(names[: k + 1]), " + ".join(n.capitalize() for n in names[: k + 1]))
        for k in range(len(names) - 1)
    ]
    return {
        "result": result,
        "rows": result.leads.head(CALLLIST_ROWS).to_dict("records"),
        "summary": summary_line(result) if len(result.leads) else "",
        "plot": charts.calllist_chart(result.curve, result.available),
        "capacity": capacity,
        "choices": choices,
        "chosen": ",".join(grades),
        "source": source or "",
        "csv_url": "/v1/calllist?" + urlencode(query + [("format", "csv")]),
        "self_url": "/calllist?" + urlencode(query),
        "model_version": model.version,
    }


# ---------------------------------------------------------------- values for people


def with_unit(column: str | None, value: object, config: Config | None) -> str:
    """A value with its unit: currency for money columns, the catalogue's unit otherwise."""
    if value is None or (isinstance(value, float) and value != value):
        return "unknown"
    unit = unit_of(column or "", config)
    text = nice(value)
    if unit is None or not isinstance(value, int | float) or isinstance(value, bool):
        return text
    symbol = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}.get(unit)
    return f"{symbol}{text}" if symbol else f"{text} {unit}"


def unit_of(column: str, config: Config | None) -> str | None:
    """explain.units[column], else the currency for money-like names, 'days' for *_days."""
    explain = config.explain if config is not None else None
    units = dict(getattr(explain, "units", {}) or {})
    if column in units:
        return units[column] or None
    name = column.lower()
    money = ("revenue", "budget", "amount", "price", "deal_size", "arr", "mrr", "spend")
    if any(part in name for part in money):
        return getattr(explain, "currency", "USD")
    if name.endswith("_days") or name.startswith("days_since"):
        return "days"
    if name in ("employees", "employee_count", "headcount"):
        return "employees"
    return None


def _details(lead: dict, config: Config) -> list[tuple[str, str]]:
    skip = set(CORE_COLUMNS) | set(CONTACT_FIELDS) | set(COMPANY_FIELDS) | set(REACH_FIELDS)
    items = [(k, v) for k, v in lead.items() if k not in skip]
    return [(_label(k), with_unit(k, v, config)) for k, v in items][:16]


def _label(column: str) -> str:
    return column.replace("_", " ").capitalize()


def _event_row(event: dict) -> dict:
    kind = str(event.get("event_type") or "")
    return {
        "when": event.get("occurred_at"),
        "what": kind.replace("_", " ").capitalize(),
        "value": event.get("value"),
    }


def _pick(row: dict, names: tuple[str, ...]) -> object:
    return next((row[c] for c in names if row.get(c) not in (None, "")), None)


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
    return text.replace("T", " ")[:16]


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
