"""The HTTP scorer and the pages through FastAPI's TestClient, on a copy of the small
database with a lead_scores table written by `predict.score_leads`."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from leadml.data.io import read_dataset, write_tables
from leadml.predict import score_leads, score_one

AS_OF = pd.Timestamp("2026-06-30")
KEY = "s3cret-key"


# ---------------------------------------------------------------- fixtures


def copy_db(small_db_url: str, folder: Path) -> str:
    """A private copy of the session database, so writing lead_scores touches no other test."""
    target = folder / "leads.db"
    shutil.copy(small_db_url.removeprefix("sqlite:///"), target)
    return f"sqlite:///{target}"


def write_scores(url: str, config, model) -> pd.DataFrame:
    """lead_scores for the open leads as of AS_OF (what the batch scorer would store)."""
    leads, events = read_dataset(config.data, url=url)
    scores = score_leads(model, leads[leads["status"] == "open"], events, AS_OF)
    write_tables(url, {"lead_scores": scores})
    return scores


@pytest.fixture(scope="module")
def dataset(small_config):
    return read_dataset(small_config.data)


@pytest.fixture(scope="module")
def scored_db(small_db_url, small_config, lead_model, tmp_path_factory):
    url = copy_db(small_db_url, tmp_path_factory.mktemp("serve-scored"))
    return url, write_scores(url, small_config, lead_model)


@pytest.fixture(scope="module")
def client(trained_bundle, scored_db, small_config):
    from leadml.serve.app import create_app

    with TestClient(create_app(trained_bundle, scored_db[0], small_config)) as c:
        yield c


def body_for(lead: dict, events: pd.DataFrame | None, spec, as_of=AS_OF) -> dict:
    """A /v1/score body for a lead row (JSON types only, like a CRM would send)."""

    def plain(v):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
            return None
        return v.item() if isinstance(v, np.generic) else v

    out = {"lead_id": plain(lead["lead_id"]), "created_at": lead["created_at"].isoformat()}
    out.update({c: plain(lead.get(c)) for c in spec.attribute_columns})
    evs = (
        []
        if events is None
        else [
            {
                "occurred_at": e["occurred_at"].isoformat(),
                "event_type": e["event_type"],
                "value": plain(e["value"]),
            }
            for e in events.to_dict("records")
        ]
    )
    return {"lead": out, "events": evs, "as_of": as_of.isoformat()}


def events_of(events: pd.DataFrame, lead_id) -> pd.DataFrame:
    return events[(events["lead_id"] == lead_id) & (events["occurred_at"] <= AS_OF)]


# ---------------------------------------------------------------- scores equal the library's


def test_http_score_equals_score_leads(client, dataset, lead_model):
    leads, events = dataset
    recent = leads[leads.created_at >= AS_OF - pd.Timedelta(days=60)]
    sample = pd.concat([recent.sample(45, random_state=3), leads.sample(15, random_state=3)])
    sample = sample.drop_duplicates("lead_id")
    expected = score_leads(lead_model, sample, events, AS_OF).set_index("lead_id")
    for lead in sample.to_dict("records"):
        r = client.post(
            "/v1/score", json=body_for(lead, events_of(events, lead["lead_id"]), lead_model.spec)
        )
        assert r.status_code == 200, r.text
        got, want = r.json(), expected.loc[lead["lead_id"]]
        assert got["lead_id"] == lead["lead_id"]
        assert (got["score"], got["grade"], got["probability"]) == (
            want.score,
            want.grade,
            want.probability,
        )
        assert got["reasons"] == json.loads(want.reasons)
        assert got["model_version"] == lead_model.version
    assert expected.score.nunique() > 3  # the sample is not all one score


def test_batch_endpoint_equals_score_leads(client, dataset, lead_model):
    leads, events = dataset
    sample = leads[leads.created_at >= AS_OF - pd.Timedelta(days=60)].sample(40, random_state=4)
    expected = score_leads(lead_model, sample, events, AS_OF)
    items = []
    for lead in sample.to_dict("records"):
        body = body_for(lead, events_of(events, lead["lead_id"]), lead_model.spec)
        items.append({"lead": body["lead"], "events": body["events"]})
    r = client.post("/v1/score/batch", json={"items": items, "as_of": AS_OF.isoformat()})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["lead_id"] for x in results] == expected.lead_id.tolist()
    assert [x["score"] for x in results] == expected.score.tolist()
    assert [x["probability"] for x in results] == expected.probability.tolist()
    assert [x["reasons"] for x in results] == [json.loads(s) for s in expected.reasons]


def test_single_row_features_equal_batch_features(dataset, lead_model):
    """Counts, attributes and the decayed score bit for bit; recencies (days since) to 1e-9
    days: the batch path offsets times per lead before subtracting, so they differ in the last
    bits (as before the fast-path changes)."""
    from leadml.features import build_features, build_row

    leads, events = dataset
    sample = leads.sample(300, random_state=5)
    X = build_features(lead_model.spec, sample, events[events.lead_id.isin(sample.lead_id)], AS_OF)
    rows = np.vstack(
        [
            build_row(
                lead_model.spec,
                lead,
                events[events.lead_id == lead["lead_id"]].to_dict("records"),
                AS_OF,
            )
            for lead in sample.to_dict("records")
        ]
    )
    recency = np.array([f.kind == "recency" for f in lead_model.spec.features])
    np.testing.assert_array_equal(rows[:, ~recency], X[:, ~recency])
    np.testing.assert_allclose(rows[:, recency], X[:, recency], rtol=0, atol=1e-9)
    assert np.isfinite(X[:, recency]).any() and (X[:, ~recency] > 0).any()


def test_single_lead_decay_sum_matches_pandas_bit_for_bit():
    from leadml.features import _kahan_cumsum

    rng = np.random.default_rng(0)
    for k in range(300):
        x = np.exp(rng.uniform(0, 40, size=rng.integers(1, 200)))
        if k % 3 == 0:
            x[rng.integers(0, len(x), 2)] = np.nan
        want = pd.Series(x).groupby(np.zeros(len(x), int)).cumsum().to_numpy()
        np.testing.assert_array_equal(_kahan_cumsum(x), want)


# ---------------------------------------------------------------- stored scores


def test_stored_score_from_lead_scores(client, scored_db):
    scores = scored_db[1]
    row = scores.sort_values("score").iloc[-1]
    r = client.get(f"/v1/leads/{row.lead_id}")
    assert r.status_code == 200
    got = r.json()
    assert (got["lead_id"], got["score"], got["grade"]) == (row.lead_id, row.score, row.grade)
    assert got["probability"] == pytest.approx(row.probability, abs=1e-12)
    assert got["reasons"] == json.loads(row.reasons)
    assert got["scored_at"].startswith(str(row.scored_at)[:19])


@pytest.mark.parametrize("lead_id", ["999999999", "not-an-id", "-1"])
def test_stored_score_unknown_lead_is_404(client, lead_id):
    r = client.get(f"/v1/leads/{lead_id}")
    assert r.status_code == 404
    assert lead_id in r.json()["error"] and "lead_scores" in r.json()["error"]


def test_stored_score_without_table_is_404(trained_bundle, small_db_url, small_config, tmp_path):
    from leadml.serve.app import create_app

    url = copy_db(small_db_url, tmp_path)  # no lead_scores table yet
    with TestClient(create_app(trained_bundle, url, small_config)) as c:
        r = c.get("/v1/leads/1")
        assert r.status_code == 404 and "leadml score" in r.json()["error"]
        page = c.get("/leads")
        assert page.status_code == 200 and "No stored scores yet" in page.text


# ---------------------------------------------------------------- bad input never 5xx


def good_lead() -> dict:
    return {
        "lead_id": 42,
        "created_at": "2026-06-01T09:00:00Z",
        "source": "referral",
        "budget": 5000.0,
    }


BAD_BODIES = [
    ({"lead": {**good_lead(), "colour": "red"}}, 422, "lead.colour", "Extra inputs"),
    ({"lead": {**good_lead(), "budget": "lots"}}, 422, "lead.budget", "valid number"),
    ({"lead": {**good_lead(), "source": ["a"]}}, 422, "lead.source", "valid string"),
    (
        {"lead": {k: v for k, v in good_lead().items() if k != "created_at"}},
        422,
        "lead.created_at",
        "required",
    ),
    (
        {"lead": {k: v for k, v in good_lead().items() if k != "lead_id"}},
        422,
        "lead.lead_id",
        "required",
    ),
    (
        {"lead": {**good_lead(), "lead_id": {"x": 1}}},
        422,
        "lead.lead_id",
        "integer or a non-empty text",
    ),
    ({"lead": {**good_lead(), "created_at": "yesterday"}}, 422, "lead.created_at", "datetime"),
    ({"lead": {**good_lead(), "created_at": "1066-10-14"}}, 422, "lead.created_at", "between"),
    (
        {"lead": good_lead(), "events": [{"occurred_at": "2026-06-02"}]},
        422,
        "events[0].event_type",
        "required",
    ),
    (
        {"lead": good_lead(), "events": [{"occurred_at": "2026-06-02", "event_type": "x", "y": 1}]},
        422,
        "events[0].y",
        "Extra",
    ),
    ({"lead": good_lead(), "as_of": "soon"}, 422, "as_of", "datetime"),
    ({}, 422, "lead", "required"),
]


@pytest.mark.parametrize("body,status,field,words", BAD_BODIES)
def test_bad_input_names_the_field(client, body, status, field, words):
    r = client.post("/v1/score", json=body)
    assert r.status_code == status
    fields = [d["field"] for d in r.json()["detail"]]
    assert field in fields and field in r.json()["error"]
    assert words in r.json()["error"]


def test_non_finite_number_is_refused(client):
    raw = json.dumps({"lead": good_lead()}).replace("5000.0", "NaN")
    r = client.post("/v1/score", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "lead.budget" in r.json()["error"]


@pytest.mark.parametrize("raw", [b'{"lead": ', b"not json", b'{"lead": {"lead_id": 1,}}'])
def test_malformed_json_is_400(client, raw):
    r = client.post("/v1/score", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"][0]["field"] == "body" and "malformed JSON" in r.json()["error"]


def test_oversized_body_by_content_length_is_413(client, small_config):
    limit = small_config.serve.max_body_bytes
    r = client.post(
        "/v1/score", content=b" " * (limit + 1), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and f"{limit:,}" in r.json()["error"]


def test_oversized_streamed_body_is_413(client, small_config):
    limit = small_config.serve.max_body_bytes

    def chunks():  # no Content-Length: chunked transfer, counted while it streams
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    r = client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_batch_over_the_limit_is_422(trained_bundle, scored_db, small_config):
    from leadml.config import override
    from leadml.serve.app import create_app

    config = override(small_config, serve__max_batch=3)
    with TestClient(create_app(trained_bundle, scored_db[0], config)) as c:
        items = [{"lead": {**good_lead(), "lead_id": i}} for i in range(4)]
        r = c.post("/v1/score/batch", json={"items": items})
        assert (
            r.status_code == 422
            and "items" in r.json()["error"]
            and "at most 3" in r.json()["error"]
        )
        assert c.post("/v1/score/batch", json={"items": items[:3]}).status_code == 200


def test_a_bad_event_in_a_batch_names_its_position(client):
    items = [
        {"lead": good_lead()},
        {"lead": good_lead(), "events": [{"occurred_at": 5, "event_type": ""}]},
    ]
    r = client.post("/v1/score/batch", json={"items": items})
    assert r.status_code == 422 and "items[1].events[0].event_type" in r.json()["error"]


# ---------------------------------------------------------------- key, reload, metrics, logs


def test_api_key_guards_api_admin_and_pages(trained_bundle, scored_db, small_config, monkeypatch):
    from leadml.serve.app import create_app

    monkeypatch.setenv("LEADML_API_KEY", KEY)
    with TestClient(create_app(trained_bundle, scored_db[0], small_config)) as c:
        body = {"lead": good_lead()}
        assert c.post("/v1/score", json=body).status_code == 401
        assert c.post("/v1/score", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/score", json=body, headers={"X-API-Key": KEY}).status_code == 200
        assert c.post("/admin/reload").status_code == 401
        assert c.get("/v1/leads/1").status_code == 401
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert c.get(open_path).status_code == 200
        page = c.get("/leads")
        assert page.status_code == 401 and "API key" in page.text and 'name="api_key"' in page.text
        first = c.get(f"/leads?grade=cold&api_key={KEY}", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/leads?grade=cold"
        assert "api_key" not in first.headers["location"]
        assert c.get("/leads?grade=cold").status_code == 200  # the cookie carries the key now


def test_reload_swaps_the_model_and_in_flight_work_keeps_the_old(
    lead_model, trained_bundle, scored_db, small_config, tmp_path
):
    import copy

    from leadml.bundle import save_bundle
    from leadml.serve.app import create_app

    second = copy.copy(lead_model)
    second.version = "second-version"
    save_bundle(second, tmp_path / "second")
    current = tmp_path / "current"
    current.symlink_to(Path(trained_bundle).resolve())
    app = create_app(current, scored_db[0], small_config)
    with TestClient(app) as c:
        assert c.get("/readyz").json()["model_version"] == lead_model.version
        held = app.state.slot.current  # what a request in flight holds
        current.unlink()
        current.symlink_to(tmp_path / "second")
        r = c.post("/admin/reload")
        assert r.status_code == 200
        assert r.json() == {
            "model_version": "second-version",
            "previous_version": lead_model.version,
            "swapped": True,
        }
        assert (
            c.post("/v1/score", json={"lead": good_lead()}).json()["model_version"]
            == "second-version"
        )
        assert c.get("/readyz").json()["model_version"] == "second-version"
        assert (
            score_one(held, dict.fromkeys(held.spec.attribute_columns) | good_lead())[
                "model_version"
            ]
            == lead_model.version
        )
        metrics = c.get("/metrics").text
        assert 'leadml_model_reloads_total{result="ok"} 1.0' in metrics
        assert 'leadml_model_info{model_version="second-version"} 1.0' in metrics


def test_reload_refuses_a_model_with_other_fields(
    lead_model, trained_bundle, scored_db, small_config, tmp_path
):
    import copy

    from leadml.bundle import save_bundle
    from leadml.serve.app import create_app

    other = copy.deepcopy(lead_model)
    other.version = "other-fields"
    dropped = other.spec.numeric.pop()
    other.spec.features = [f for f in other.spec.features if f.name != dropped]
    save_bundle(other, tmp_path / "other")
    current = tmp_path / "current"
    current.symlink_to(Path(trained_bundle).resolve())
    with TestClient(create_app(current, scored_db[0], small_config)) as c:
        current.unlink()
        current.symlink_to(tmp_path / "other")
        r = c.post("/admin/reload")
        assert r.status_code == 409
        assert dropped in r.json()["error"] and "restart" in r.json()["error"]
        assert c.get("/readyz").json()["model_version"] == lead_model.version
        assert 'leadml_model_reloads_total{result="failed"} 1.0' in c.get("/metrics").text


def test_metrics_count_requests_latency_and_scores(trained_bundle, scored_db, small_config):
    from leadml.serve.app import create_app

    with TestClient(create_app(trained_bundle, scored_db[0], small_config)) as c:
        for _ in range(3):
            assert c.post("/v1/score", json={"lead": good_lead()}).status_code == 200
        c.post("/v1/score", json={"lead": {}})
        c.get("/v1/leads/999999999")
        response = c.get("/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert 'leadml_http_requests_total{method="POST",route="/v1/score",status="200"} 3.0' in text
    assert 'leadml_http_requests_total{method="POST",route="/v1/score",status="422"} 1.0' in text
    assert (
        'leadml_http_requests_total{method="GET",route="/v1/leads/{lead_id}",status="404"} 1.0'
        in text
    )
    assert 'leadml_http_request_duration_seconds_count{route="/v1/score"} 4.0' in text
    assert "leadml_score_count 3.0" in text
    assert re.search(r'leadml_scored_leads_total\{grade="\w+"\} 3.0', text)


def test_logs_carry_ids_but_no_lead_data(client, caplog):
    secret = "Zebra Secret Industries"
    with caplog.at_level(logging.DEBUG):
        r = client.post(
            "/v1/score", json={"lead": {**good_lead(), "source": secret, "lead_id": 777}}
        )
        assert r.status_code == 200
        client.post("/v1/score", json={"lead": {**good_lead(), "budget": secret}})
        client.get("/v1/leads/777")
    text = " ".join(rec.getMessage() for rec in caplog.records)
    assert "POST /v1/score 200" in text and "/v1/leads/777" in text
    assert secret not in text and "5000" not in text


# ---------------------------------------------------------------- health, docs, pages


def test_health_and_readiness(client, lead_model, trained_bundle):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready == {
        "status": "ready",
        "model_version": lead_model.version,
        "model_ref": str(trained_bundle),
    }


def test_openapi_has_the_spec_fields_and_docs_are_local(client, lead_model, dataset):
    spec = client.get("/openapi.json").json()
    lead = spec["components"]["schemas"]["Lead"]
    used = {"lead_id", "created_at", *lead_model.spec.attribute_columns}
    assert set(lead["properties"]) == used | set(dataset[0].columns)  # + stored, never used
    assert set(lead["required"]) == {"lead_id", "created_at"}
    assert lead["additionalProperties"] is False
    assert {"/v1/score", "/v1/score/batch", "/v1/leads/{lead_id}", "/admin/reload"} <= set(
        spec["paths"]
    )
    docs = client.get("/docs").text
    assert "/static-offline-docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200


def test_leads_page_ranks_and_filters(client, scored_db):
    scores = scored_db[1].sort_values(
        ["score", "probability", "lead_id"], ascending=[False, False, True]
    )
    page = client.get("/leads")
    assert page.status_code == 200
    shown = [int(x) for x in re.findall(r'<td class="num score">(\d+)</td>', page.text)]
    assert shown == scores.score.head(50).tolist()
    assert f"{len(scores):,} scored leads" in page.text
    assert '<th scope="col">Top reason</th>' in page.text and '<label for="grade">' in page.text
    cold = client.get("/leads?grade=cold&page=2").text
    badges = re.findall(r'<span class="badge grade-(\w+)">', cold)
    assert badges and set(badges) == {"cold"}
    assert "Page 2 of" in cold and 'href="/leads?grade=cold&amp;page=1"' in cold
    source = scores.merge(read_dataset_leads(client), on="lead_id").source.iloc[0]
    by_source = client.get(f"/leads?source={source}").text
    assert f'<option value="{source}" selected>' in by_source


def read_dataset_leads(client) -> pd.DataFrame:
    from leadml.data.io import read_table

    return read_table(client.app.state.store.url, "leads")[["lead_id", "source"]]


def test_lead_page_shows_stored_score_reasons_and_timeline(client, scored_db):
    scores = scored_db[1]
    row = scores[scores.reasons.str.len() > 2].sort_values("score").iloc[-1]
    page = client.get(f"/leads/{row.lead_id}").text
    reasons = json.loads(row.reasons)
    assert f'<span class="num">{row.score}</span>' in page
    assert f"grade-{row.grade}" in page and "such leads converted within 30 days" in page
    for reason in reasons:
        assert reason["text"].replace("'", "&#39;") in page
    assert len(re.findall(r'class="track" role="img" aria-label="[+-]?\d+ points"', page)) == len(
        reasons
    )
    assert "Recent engagement" in page and "Stored score from model" in page


def test_lead_page_scores_a_lead_without_stored_score_live(client, dataset, scored_db):
    import sqlite3

    leads, events = dataset
    path = scored_db[0].removeprefix("sqlite:///")
    lead_id = int(scored_db[1].lead_id.iloc[0])
    with sqlite3.connect(path) as conn:  # an open lead the scorer has not stored yet
        conn.execute("ALTER TABLE lead_scores RENAME TO lead_scores_kept")
    try:
        page = client.get(f"/leads/{lead_id}")
    finally:
        with sqlite3.connect(path) as conn:
            conn.execute("ALTER TABLE lead_scores_kept RENAME TO lead_scores")
    assert page.status_code == 200 and "Scored live just now" in page.text
    closed = leads[leads.status != "open"].iloc[0]
    page = client.get(f"/leads/{closed.lead_id}").text  # closed: shown as such, never scored
    assert "Chance to convert" not in page and "Scored live" not in page
    assert ("Converted on" in page) or ("Disqualified" in page)
    assert client.get("/leads/999999999").status_code == 404


def test_probability_words():
    from leadml.serve.pages import probability_words

    assert probability_words(0.26, 30) == "about 1 in 4 such leads converted within 30 days"
    assert probability_words(0.62, 14.0) == "about 6 in 10 such leads converted within 14 days"
    assert probability_words(0.004, 30).startswith("fewer than 1 in 100")
    assert probability_words(0.97, 30).startswith("almost all")


def test_default_model_ref_without_a_registry_is_latest(small_config, tmp_path, monkeypatch):
    from leadml.tracking.registry import default_model_ref

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_model_ref(small_config) == str(Path(small_config.models_dir) / "latest")
    assert not (tmp_path / "mlruns").exists()  # looking did not create a tracking store


def test_serve_command_help():
    from typer.testing import CliRunner

    from leadml.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"])
    assert out.exit_code == 0
    for option in ("--model", "--db", "--host", "--port", "--config"):
        assert option in out.output


@pytest.mark.postgres
def test_postgres_lead_database(pg_url_required, small_config, lead_model, trained_bundle, dataset):
    """Stored scores, the ranked list and a live-scored lead page on PostgreSQL (own schema)."""
    import uuid

    from leadml.config import override
    from leadml.data.io import engine_for
    from leadml.serve.app import create_app

    schema = f"serve_{uuid.uuid4().hex[:10]}"
    engine = engine_for(pg_url_required)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        leads, events = dataset
        some = leads[leads.created_at >= AS_OF - pd.Timedelta(days=60)].head(80)
        some_events = events[events.lead_id.isin(some.lead_id)]
        scores = score_leads(lead_model, some[some.status == "open"], some_events, AS_OF)
        tables = {
            f"{schema}.leads": some,
            f"{schema}.lead_events": some_events,
            f"{schema}.lead_scores": scores,
        }
        write_tables(pg_url_required, tables)
        config = override(
            small_config,
            data__leads_table=f"{schema}.leads",
            data__events_table=f"{schema}.lead_events",
        )
        with TestClient(create_app(trained_bundle, pg_url_required, config)) as c:
            top = scores.sort_values("score").iloc[-1]
            got = c.get(f"/v1/leads/{top.lead_id}").json()
            assert (got["score"], got["grade"], got["reasons"]) == (
                top.score,
                top.grade,
                json.loads(top.reasons),
            )
            assert c.get("/v1/leads/not-a-number").status_code == 404
            page = c.get("/leads?page=1").text
            shown = [int(x) for x in re.findall(r'<td class="num score">(\d+)</td>', page)]
            assert shown == sorted(scores.score, reverse=True)[:50]
            closed = some[some.status != "open"].iloc[0]
            shown_closed = c.get(f"/leads/{closed.lead_id}")
            assert shown_closed.status_code == 200 and "is no longer open" in shown_closed.text
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


def test_detail_values_read_well():
    from leadml.serve.pages import nice

    assert [
        nice(13120000.0),
        nice(54.0),
        nice(2.5),
        nice(None),
        nice(float("nan")),
        nice("c_level"),
    ] == ["13,120,000", "54", "2.5", "unknown", "unknown", "c level"]
