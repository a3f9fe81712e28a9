"""History and call-list routes: `GET /v1/leads/{lead_id}/history` (scorings, trend, the exact
change ledger, `?since=`) and `GET /v1/calllist` (top N open leads, expected conversions with
their interval, the curve; `?format=csv` for the CRM). Included by `serve/app.py`.

Earlier models for the ledger come from the served model and `models_dir/<version>` bundles.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from leadml.calllist import calllist_json, split_list, stored_call_list, to_csv
from leadml.config import Config
from leadml.data.io import is_file_source
from leadml.errors import DataSourceError, SchemaError
from leadml.ledger import ModelFor, bundle_finder, lead_history_report
from leadml.serve.models import Timestamp


def model_finder(slot, config: Config) -> ModelFor:
    """Models by version: the one being served, else a bundle in models_dir (cached)."""
    finders: dict[str, ModelFor] = {}

    def find(version: str):
        current = slot.current
        if version == current.version:
            return current
        if current.version not in finders:
            finders.clear()
            finders[current.version] = bundle_finder(config.models_dir, current)
        return finders[current.version](version)

    return find


def history_router(slot, url: str | None, config: Config) -> APIRouter:
    """The JSON routes, reading the served model from `slot` at each request."""
    router = APIRouter(prefix="/v1", tags=["history"])
    find = model_finder(slot, config)

    @router.get("/leads/{lead_id}/history")
    def history(
        lead_id: str,
        since: Annotated[Timestamp | None, Query()] = None,  # the spec states the format
        ledger: bool = True,
    ) -> Response:
        """A lead's scorings (scores, grades, models, times), trend and change ledger in points."""
        report = lead_history_report(
            _url(url), config, lead_id, find, since=_since(since), with_ledger=ledger
        )
        if report is None:
            raise HTTPException(404, f"no score history for lead {lead_id!r} (run `leadml score`)")
        return JSONResponse(report)

    csv = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}  # ?format=csv

    @router.get("/calllist", response_model=None, responses=csv)
    def calllist(
        capacity: Annotated[int, Query(ge=1, le=100_000)] = 200,
        grade: Annotated[str | None, Query(max_length=200)] = None,
        source: Annotated[str | None, Query(max_length=500)] = None,
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",  # noqa: A002
    ) -> Response:
        """The top `capacity` open leads with expected conversions and their interval."""
        result = stored_call_list(
            _url(url), config, capacity, grades=split_list(grade), sources=split_list(source)
        )
        if format == "csv":
            headers = {"Content-Disposition": 'attachment; filename="calllist.csv"'}
            return PlainTextResponse(to_csv(result), media_type="text/csv", headers=headers)
        return JSONResponse(calllist_json(result))

    return router


def _url(url: str | None) -> str:
    if not url or is_file_source(url):
        raise DataSourceError("no lead database configured: start the server with --db URL")
    return url


def _since(value: str | None) -> object:
    if not value:
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        raise SchemaError("history", "since", "not a date or timestamp", [value]) from None
