"""The HTTP scorer: FastAPI app factory, the model slot that reloads atomically, limits,
the API key, error handlers and the JSON routes. Pages live in `pages.py`.

Every score goes through `leadml.predict` (`score_one` for one lead; `build_row` +
`score_matrix` for a batch, the same definitions row by row), so the HTTP answer cannot differ
from the library's. No `from __future__ import annotations` here: FastAPI reads the
generated request models from the endpoint signatures at run time.

Past 500 lines on purpose: the factory, the model slot, the API-key check, the error handlers
and the JSON routes share the app's state and are read together; the pages (`pages.py`), the
history routes (`routes_history.py`), limits and metrics already live beside it.
"""

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import threading
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

from leadml import __version__
from leadml.bundle import LeadModel
from leadml.config import Config
from leadml.errors import DataSourceError, LeadmlError, ModelError
from leadml.features import build_row
from leadml.predict import load_model, model_ref, score_matrix, score_one
from leadml.schema import utc_now
from leadml.serve.limits import BodyTimeoutMiddleware
from leadml.serve.metrics import CONTENT_TYPE, MetricsMiddleware, ServeMetrics
from leadml.serve.models import (
    BatchResponse,
    ErrorResponse,
    Health,
    ReloadResponse,
    RequestModels,
    ScoreResponse,
    StoredScore,
    build_request_models,
    event_dicts,
    lead_dict,
    request_fields,
    stored_row,
)
from leadml.serve.pages import KEY_COOKIE, error_page, page_router, wants_html
from leadml.serve.routes_history import history_router
from leadml.serve.store import LeadStore
from leadml.tracking.registry import default_model_ref

log = logging.getLogger("leadml.serve")
API_KEY_ENV = "LEADML_API_KEY"
ERRORS = {c: {"model": ErrorResponse} for c in (400, 401, 404, 408, 413, 422)}
# The pages answer their errors as HTML pages: the spec says so.
PAGE_ERRORS = {
    c: {"description": "An error page", "content": {"text/html": {"schema": {"type": "string"}}}}
    for c in (400, 401, 404, 408, 413, 422)
}


class ModelSlot:
    """The model being served; `reload` swaps in a fresh load.

    A server started with `--model` reloads that reference; one started without re-applies the
    default rule on every reload, so the champion is picked up once one is promoted (never a
    challenger that promotion refused). Requests read `slot.current` once and keep that object,
    so a swap never changes the model under a request in flight.
    """

    def __init__(self, ref: str | Path | None, config: Config) -> None:
        self.config, self.pinned = config, ref is not None
        self.ref = model_ref(config, ref)
        self._lock = threading.Lock()
        self.current: LeadModel = warmed(load_for_serving(self.ref, config), self.ref)
        self.fields = request_fields(self.current.spec)

    def reload(self) -> tuple[str, str]:
        """Load the (pinned or default) reference and swap it in; (old version, new version)."""
        with self._lock:
            ref = self.ref if self.pinned else default_model_ref(self.config)
            fresh = load_for_serving(ref, self.config)
            if request_fields(fresh.spec) != self.fields:
                raise ModelError(_schema_change(self.fields, request_fields(fresh.spec), ref))
            fresh = warmed(fresh, ref)
            old, self.current, self.ref = self.current, fresh, ref
        return old.version, fresh.version


def load_for_serving(ref: str, config: Config) -> LeadModel:
    """Load a bundle (or registry URI) with one prediction thread: for one row OpenMP's
    start-up costs more than it saves."""
    model = load_model(ref, config)
    model.set_threads(1)
    return model


def warmed(model: LeadModel, ref: str) -> LeadModel:
    """Score a blank lead once, so the first request is not slow and a broken model is refused."""
    blank = dict.fromkeys(model.spec.attribute_columns) | {"lead_id": 0, "created_at": "2024-01-01"}
    try:
        score_one(model, blank, [], "2024-01-02")
    except Exception as exc:  # noqa: BLE001 - any failure here means the bundle cannot serve
        raise ModelError(
            f"model at {ref} failed a test prediction: {type(exc).__name__}: {exc}"
        ) from None
    return model


def _schema_change(old: tuple, new: tuple, ref: str) -> str:
    added = sorted(dict(new).keys() - dict(old).keys())
    removed = sorted(dict(old).keys() - dict(new).keys())
    return (
        f"the model at {ref} takes different lead fields than the running API "
        f"(added {added}, removed {removed}, or kinds changed); restart `leadml serve` to "
        "serve it: the request schema is fixed at start-up"
    )


def run_server(
    config: Config,
    *,
    model_ref: str | None = None,
    db_url: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """`leadml serve`: build the app and run it under uvicorn (one process, one event loop)."""
    import uvicorn

    _configure_logging()
    app = create_app(model_ref, db_url, config)
    uvicorn.run(app, **uvicorn_settings(config, host, port))


def uvicorn_settings(config: Config, host: str | None = None, port: int | None = None) -> dict:
    """uvicorn's keyword arguments: address, and the limits of config serve.* (body reads are
    timed by BodyTimeoutMiddleware, which uvicorn cannot do)."""
    serve = config.serve
    return {
        "host": host or serve.host,
        "port": port or serve.port,
        "access_log": False,  # our own access line: path without query string, values escaped
        "log_config": None,
        "server_header": False,
        "timeout_keep_alive": serve.keep_alive_timeout_s,
        "limit_concurrency": serve.max_connections,
    }


def _configure_logging() -> None:
    """One plain stderr handler for leadml and uvicorn, set when the server starts (not at import)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("leadml", "uvicorn"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def create_app(model_ref: str | Path | None, db_url: str | None, config: Config) -> FastAPI:
    """The service: JSON scorer under /v1, pages under /leads, health, metrics and docs.
    `model_ref` None: the default rule's model (tracking.registry.default_model_ref)."""
    from fastapi_offline import FastAPIOffline

    slot = ModelSlot(model_ref, config)
    metrics = ServeMetrics()
    metrics.serving(slot.current.version)
    store = LeadStore(db_url if db_url is not None else config.data.source, config.data)
    stored = stored_row(
        slot.current.spec, slot.current.metadata, config.data, config.serve.unknown_fields
    )
    models = build_request_models(slot.current.spec, config.serve.max_batch, stored)
    api_key = os.environ.get(API_KEY_ENV) or None
    # With a key, the docs and the spec (which list the model's lead columns) close too,
    # unless serve.open_docs keeps them open; /static (CSS), /healthz, /readyz, /metrics stay open.
    docs = api_key is None or config.serve.open_docs
    closed = {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = (FastAPIOffline if docs else FastAPI)(
        title="leadml scorer",
        version=__version__,
        description="Calibrated 1-100 lead scores with reasons in score points.",
        lifespan=_lifespan(slot, metrics),
        **({} if docs else closed),
    )
    app.state.slot, app.state.metrics, app.state.store = slot, metrics, store
    guard = _api_key_guard(api_key)
    app.include_router(_api_router(slot, metrics, store, models), dependencies=guard)
    app.include_router(
        history_router(slot, store.url, config),
        dependencies=[Depends(single_query_values), *guard],
        responses=ERRORS,
    )
    app.include_router(_admin_router(slot, metrics), dependencies=guard)
    app.include_router(_ops_router(slot, metrics))
    app.include_router(
        page_router(slot, store, config, keyed=api_key is not None),
        dependencies=[Depends(single_query_values), *_api_key_guard(api_key, pages=True)],
        responses=PAGE_ERRORS,
    )
    _mount_static(app)
    _install_error_handlers(app)
    serve = config.serve
    app.add_middleware(BodyTimeoutMiddleware, seconds=serve.body_timeout_s)
    app.add_middleware(BodyLimitMiddleware, max_bytes=serve.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, log_format=serve.access_log)
    return app


def _mount_static(app: FastAPI) -> None:
    from importlib.resources import files

    from fastapi.staticfiles import StaticFiles

    app.mount(
        "/static", StaticFiles(directory=str(files("leadml.serve") / "static")), name="static"
    )


# ---------------------------------------------------------------- routes


def _api_router(
    slot: ModelSlot, metrics: ServeMetrics, store: LeadStore, models: RequestModels
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["scoring"], responses=ERRORS)
    ScoreRequest, BatchRequest = models.score_request, models.batch_request  # noqa: N806

    # A plain `def`: scoring runs in the threadpool, so the loop keeps reading other requests
    # and LightGBM (which drops the GIL) overlaps with them. Measured with 16 clients: 2-3x the
    # throughput of an `async def` here, for about 1 ms more median latency one at a time.
    @router.post("/score", response_model=ScoreResponse)
    def score(body: ScoreRequest) -> Response:
        """Score one lead (with its recent events) as of `as_of` (default now)."""
        model = slot.current
        result = score_one(model, lead_dict(body.lead), event_dicts(body.events), body.as_of)
        metrics.observe_scores([result["score"]], [result["grade"]])
        return JSONResponse(result)

    @router.post("/score/batch", response_model=BatchResponse)
    def score_batch(body: BatchRequest) -> Response:
        """Score up to `serve.max_batch` leads in one call (one shared as_of)."""
        model = slot.current
        results = score_items(model, body.items, body.as_of)
        metrics.observe_scores([r["score"] for r in results], [r["grade"] for r in results])
        return JSONResponse({"results": results, "model_version": model.version})

    @router.get(
        "/leads/{lead_id}", response_model=StoredScore, responses={404: {"model": ErrorResponse}}
    )
    def stored(lead_id: str) -> Response:
        """The score the batch scorer stored for a lead (table lead_scores)."""
        row = store.stored_score(lead_id)
        if row is None:
            raise HTTPException(
                404,
                f"no stored score for lead {lead_id!r} in table "
                f"'{store.scores_table}' (run `leadml score` to score open leads)",
            )
        keep = ("lead_id", "probability", "score", "grade", "reasons", "model_version", "scored_at")
        return JSONResponse({k: row.get(k) for k in keep})

    return router


def score_items(model: LeadModel, items: list, as_of: object) -> list[dict]:
    """Many leads in one matrix: `build_row` per lead, one `score_matrix` (row-wise identical)."""
    when = utc_now() if as_of is None else as_of
    X = np.vstack(
        [build_row(model.spec, lead_dict(i.lead), event_dicts(i.events), when) for i in items]
    )
    out = score_matrix(model, X)
    return [
        {
            "lead_id": item.lead.lead_id,
            "probability": float(out["probability"][k]),
            "score": int(out["score"][k]),
            "grade": str(out["grade"][k]),
            "reasons": out["reasons"][k],
            "model_version": model.version,
        }
        for k, item in enumerate(items)
    ]


def _admin_router(slot: ModelSlot, metrics: ServeMetrics) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"], responses=ERRORS)

    @router.post(
        "/reload", response_model=ReloadResponse, responses={409: {"model": ErrorResponse}}
    )
    def reload() -> ReloadResponse:
        """Load the model reference again and swap it in; requests in flight finish on the old one."""
        try:
            old, new = reload_model(slot, metrics)
        except LeadmlError as exc:
            raise HTTPException(
                409, f"reload failed, still serving {slot.current.version}: {exc}"
            ) from None
        return ReloadResponse(model_version=new, previous_version=old, swapped=old != new)

    return router


def reload_model(slot: ModelSlot, metrics: ServeMetrics) -> tuple[str, str]:
    """Reload, count the outcome and log it (versions only)."""
    try:
        old, new = slot.reload()
    except LeadmlError as exc:
        metrics.reloads.labels("failed").inc()
        log.error("model reload failed, still serving %s: %s", slot.current.version, exc)
        raise
    metrics.reloads.labels("ok").inc()
    metrics.serving(new)
    log.info("model reloaded: %s -> %s", old, new)
    return old, new


def _ops_router(slot: ModelSlot, metrics: ServeMetrics) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=Health, response_model_exclude_none=True)
    async def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz() -> Response:
        """A model is loaded and ready to score."""
        model = getattr(slot, "current", None)
        if model is None:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse(
            {"status": "ready", "model_version": model.version, "model_ref": slot.ref}
        )

    @router.get(
        "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}}
    )
    async def prometheus() -> Response:
        """Prometheus text: requests by route and status, latency, score distribution."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router


# ---------------------------------------------------------------- key, limits, errors


def single_query_values(request: Request) -> None:
    """The pages take the query parameters their spec declares (and api_key), each once: an
    unknown one or one given twice (?grade=hot&grade=cold) is refused, not silently dropped
    or read as its last value."""
    route = request.scope.get("route")
    known = {"api_key"} | _query_names(getattr(route, "dependant", None))
    names = [k for k, _ in request.query_params.multi_items()]
    unknown = sorted({n[:50] for n in names if n not in known})[:5]
    repeated = sorted({n[:50] for n in names if names.count(n) > 1})[:5]
    if unknown:
        raise HTTPException(422, f"unknown query parameter(s) {unknown}; known: {sorted(known)}")
    if repeated:
        raise HTTPException(422, f"query parameter(s) {repeated} given more than once")


def _query_names(dependant) -> set[str]:
    """The query parameters a route and its dependencies declare."""
    if dependant is None:
        return set()
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _api_key_guard(expected: str | None, *, pages: bool = False) -> list:
    """No key configured: no guard. Otherwise the X-API-Key header; the pages also take their
    cookie or ?api_key= (a browser link), the JSON API never a key in the URL, where proxies
    and browser histories would keep it."""
    if not expected:
        return []
    header = APIKeyHeader(name="X-API-Key", auto_error=False)
    want = expected.encode()
    where = "the X-API-Key header" + (" (or ?api_key= once, for the pages)" if pages else "")

    def require_api_key(request: Request, x_api_key: str | None = Security(header)) -> None:
        given = x_api_key
        if pages and not given:
            given = request.query_params.get("api_key") or request.cookies.get(KEY_COOKIE)
        if not given or not secrets.compare_digest(given.encode(), want):
            raise HTTPException(401, f"missing or wrong API key: send it in {where}")

    return [Depends(require_api_key)]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit:,} bytes (serve.max_body_bytes)")


class BodyLimitMiddleware:
    """Refuse bodies over the limit: by Content-Length up front, and while streaming."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            message = (
                BodyTooLarge(self.max_bytes).detail if status == 413 else "invalid Content-Length"
            )
            await JSONResponse({"error": message, "detail": []}, status)(scope, receive, send)
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        details = validation_details(exc.errors())
        status = 400 if any(d["type"] == "json_invalid" for d in details) else 422
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        if wants_html(request):
            return error_page(request, status, f"Invalid request: {summary}")
        return JSONResponse({"error": f"invalid request: {summary}", "detail": details}, status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if wants_html(request):
            return error_page(request, exc.status_code, str(exc.detail))
        return JSONResponse(
            {"error": str(exc.detail), "detail": []}, exc.status_code, headers=exc.headers
        )

    @app.exception_handler(LeadmlError)
    async def leadml_error(request: Request, exc: LeadmlError) -> Response:
        status = 503 if isinstance(exc, DataSourceError) else 422
        if wants_html(request):
            return error_page(request, status, str(exc))
        return JSONResponse({"error": str(exc), "detail": []}, status)


_UNION_TAG = re.compile(r"^(int|str|float|bool|none|constrained-\w+|function-\w+\[.*\]|.*\[.*\])$")


def validation_details(errors: list[dict]) -> list[dict]:
    """pydantic errors as {field, message, type}: 'lead.budget', 'items[2].lead.lead_id'."""
    out, seen = [], set()
    for error in errors:
        field = field_name(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            field = "body"
            message = f"malformed JSON ({error.get('ctx', {}).get('error', 'decode error')})"
        if (field, message) not in seen:
            seen.add((field, message))
            out.append({"field": field, "message": message, "type": str(error.get("type", ""))})
    return out


def field_name(loc: tuple | list) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or [parts[0]]
    name = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            name += f"[{part}]"
        elif i > 0 and _UNION_TAG.match(str(part)):
            continue  # pydantic's name for a union member, not a field
        else:
            name += ("." if name else "") + str(part)
    return name or "body"


def _lifespan(slot: ModelSlot, metrics: ServeMetrics):
    """Install SIGHUP -> reload where the loop can take signals (the server's main thread)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        installed = _on_sighup(
            loop, lambda: loop.run_in_executor(None, _reload_quietly, slot, metrics)
        )
        log.info("serving model %s from %s", slot.current.version, slot.ref)
        yield
        if installed:
            loop.remove_signal_handler(signal.SIGHUP)

    return lifespan


def _on_sighup(loop: asyncio.AbstractEventLoop, callback) -> bool:
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None:
        return False
    try:
        loop.add_signal_handler(sighup, callback)
    except (NotImplementedError, RuntimeError, ValueError):
        return False  # not the main thread (e.g. a test client): POST /admin/reload still works
    return True


def _reload_quietly(slot: ModelSlot, metrics: ServeMetrics) -> None:
    with contextlib.suppress(LeadmlError):  # logged and counted; the old model keeps serving
        reload_model(slot, metrics)
