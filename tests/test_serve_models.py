"""The API takes a lead row as stored: the user's column names, the columns the model never
reads (status, converted_at, ignored, leaking, the training table's others) accepted and
unused; a truly unknown field is a 422 naming it, or ignored with serve.unknown_fields."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from leadml.config import override
from leadml.predict import score_one
from leadml.serve.app import create_app
from leadml.serve.models import build_request_models, lead_dict, stored_row

AS_OF = "2026-06-30T00:00:00"


def stored_rows(url: str, n: int = 5) -> list[dict]:
    """Rows of the leads table exactly as stored (every column, text timestamps)."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT * FROM leads WHERE status = 'open' ORDER BY lead_id LIMIT ?", (n,)
        )
        return [dict(r) for r in rows]


def iso(row: dict) -> dict:
    return {k: (v.replace(" ", "T") if k.endswith("_at") and v else v) for k, v in row.items()}


@pytest.fixture(scope="module")
def client(trained_bundle, small_db_url, small_config):
    with TestClient(create_app(trained_bundle, small_db_url, small_config)) as c:
        yield c


def test_a_stored_row_scores_like_its_model_columns(client, small_db_url, lead_model):
    spec = lead_model.spec
    for row in map(iso, stored_rows(small_db_url)):
        assert {"status", "converted_at", "name", "company"} <= row.keys()
        r = client.post("/v1/score", json={"lead": row, "as_of": AS_OF})
        assert r.status_code == 200, r.text
        used = {k: row[k] for k in ("lead_id", "created_at", *spec.attribute_columns)}
        want = score_one(lead_model, used, [], AS_OF)
        assert (r.json()["score"], r.json()["reasons"]) == (want["score"], want["reasons"])


def test_a_truly_unknown_field_is_a_422_naming_it(client, small_db_url):
    row = iso(stored_rows(small_db_url, 1)[0]) | {"favourite_colour": "teal"}
    r = client.post("/v1/score", json={"lead": row, "as_of": AS_OF})
    assert r.status_code == 422 and "lead.favourite_colour" in r.json()["error"]


def test_unknown_fields_ignored_when_configured(trained_bundle, small_db_url, small_config):
    config = override(small_config, serve__unknown_fields="ignore")
    row = iso(stored_rows(small_db_url, 1)[0])
    with TestClient(create_app(trained_bundle, small_db_url, config)) as c:
        plain = c.post("/v1/score", json={"lead": row, "as_of": AS_OF})
        extra = c.post("/v1/score", json={"lead": row | {"colour": "teal"}, "as_of": AS_OF})
    assert extra.status_code == 200 and extra.json()["score"] == plain.json()["score"]


def test_the_users_own_column_names_are_read_through_the_mapping(lead_model, small_config):
    """A row from a table with the user's names (LeadId, Created, Source) per data.rename."""
    data = small_config.data.model_copy(
        update={"id_column": "LeadId", "created_at": "Created", "rename": {"Origin": "source"}}
    )
    models = build_request_models(
        lead_model.spec, 10, stored_row(lead_model.spec, {}, data, "reject")
    )
    canonical = {"lead_id": 7, "created_at": "2026-06-01T10:00:00", "source": "referral"}
    theirs = {"LeadId": 7, "Created": "2026-06-01T10:00:00", "Origin": "referral", "status": "open"}
    a, b = models.lead.model_validate(canonical), models.lead.model_validate(theirs)
    assert lead_dict(a) == lead_dict(b)
    assert lead_dict(b)["source"] == "referral" and "status" not in lead_dict(b)
    assert pd.Timestamp(lead_dict(b)["created_at"]) == pd.Timestamp("2026-06-01 10:00")
