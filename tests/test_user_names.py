"""The bar of issue 12: a lead database whose tables and columns carry the user's own names
(`prospects` with LeadId, Created, Stage, WonAt, ...; `touches` with ProspectId, TouchedAt, Kind,
Amount), on SQLite and on PostgreSQL in its own schema (schema-qualified `crm_<uuid>.prospects`),
driven through a config file alone: train, promote, score (local and Spark), serve
(/v1/score with a stored row as posted, /v1/leads/{id}, /leads, /leads/{id}), explain, monitor.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from leadml.config import load_config
from leadml.data import sql
from leadml.data.io import write_tables
from leadml.data.synth import generate_leads

pytestmark = pytest.mark.slow

END = "2026-06-30"
AS_OF = "2026-06-30 12:00:00"
N_LEADS, SEED, ID_OFFSET = 600, 7, 50_000
RENAME = {
    "ProspectId": "lead_id",
    "TouchedAt": "occurred_at",
    "Kind": "event_type",
    "Amount": "value",
    "Source": "source",
    "Name": "name",
    "Company": "company",
}


# ---------------------------------------------------------------- the user's database


def user_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A CRM's own tables: its names, its id range, its stage values (Won / Lost / Open / empty)."""
    leads, events = generate_leads(N_LEADS, SEED, end=END)
    stage = leads["status"].map({"converted": "Won", "disqualified": "Lost", "open": None})
    stage = stage.astype(object).where(
        ~((leads["status"] == "open") & (leads["lead_id"] % 3 == 0)), "Open"
    )
    prospects = pd.DataFrame(
        {
            "LeadId": leads["lead_id"] + ID_OFFSET,
            "Created": leads["created_at"],
            "Stage": stage,
            "WonAt": leads["converted_at"],
            "Name": leads["name"],
            "Company": leads["company"],
            "Source": leads["source"],
            "Country": leads["country"],
            "Industry": leads["industry"],
            "Employees": leads["employees"],
            "Budget": leads["budget"],
            "Seniority": leads["job_seniority"],
        }
    )
    touches = pd.DataFrame(
        {
            "TouchId": range(1, len(events) + 1),
            "ProspectId": events["lead_id"] + ID_OFFSET,
            "TouchedAt": events["occurred_at"],
            "Kind": events["event_type"],
            "Amount": events["value"],
        }
    )
    return prospects, touches


def _pg_base() -> str:
    url = os.environ.get("LEADML_TEST_PG_URL")
    if not url:
        if os.environ.get("LEADML_REQUIRE_PG"):
            pytest.fail("LEADML_REQUIRE_PG is set but LEADML_TEST_PG_URL is not")
        pytest.skip("PostgreSQL tests need LEADML_TEST_PG_URL")
    return url


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def user_db(request, tmp_path_factory):
    """(url, leads table, events table, frames) of the user's database on SQLite or PostgreSQL."""
    frames = user_frames()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('crm') / 'crm.db'}"
        write_tables(url, {"prospects": frames[0], "touches": frames[1]})
        yield url, "prospects", "touches", frames
        return
    base, schema = _pg_base(), f"crm_{uuid.uuid4().hex[:10]}"
    with sql.transaction(base) as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    leads_table, events_table = f"{schema}.prospects", f"{schema}.touches"
    write_tables(base, {leads_table: frames[0], events_table: frames[1]})
    try:
        yield base, leads_table, events_table, frames
    finally:
        with sql.transaction(base) as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def project(user_db, tmp_path_factory):
    """A project folder with the config that maps the user's names (and nothing else)."""
    url, leads_table, events_table, frames = user_db
    root = tmp_path_factory.mktemp("project")
    config = {
        "data": {
            "source": url,
            "leads_table": leads_table,
            "events_table": events_table,
            "id_column": "LeadId",
            "created_at": "Created",
            "converted_at": "WonAt",
            "target": {"column": "Stage", "positive": "Won"},
            "rename": RENAME,
            "ignore": ["name", "company"],
        },
        "model": {"lightgbm": {"num_boost_round": 40}, "threads": 1},
        "batch": {"chunk_size": 70},
        "models_dir": str(root / "models"),
        "mlflow": {
            "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "experiment": "user-names",
            "registered_model": "user-names",
        },
    }
    path = root / "leadml.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, root, user_db


def cli(root: Path, *args: str) -> tuple[int, str]:
    """`leadml ARGS...` in-process from the project folder; (exit code, output)."""
    from leadml.cli import app

    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(cwd)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def scored(project):
    """train -> promote -> score, each through the CLI with the config alone."""
    path, root, user_db = project
    code, out = cli(root, "train", "--config", str(path))
    assert code == 0, out
    code, out = cli(root, "promote", "--config", str(path))
    assert code == 0, out
    code, out = cli(root, "score", "--config", str(path), "--as-of", AS_OF)
    assert code == 0, out
    return path, root, user_db, load_config(path)


def _open_ids(frames, as_of: str = AS_OF) -> set[int]:
    prospects = frames[0]
    stage = prospects["Stage"]
    is_open = stage.isna() | (stage.astype(str).str.lower() == "open")
    return set(prospects.loc[is_open & (prospects["Created"] <= pd.Timestamp(as_of)), "LeadId"])


def _stored(url: str, leads_table: str) -> pd.DataFrame:
    scores = sql.beside(leads_table, "lead_scores")
    with sql.connect(url) as conn:
        return sql.fetch_frame(
            conn, f"SELECT * FROM {sql.quote_table(conn, scores)} ORDER BY lead_id"
        )


# ---------------------------------------------------------------- the story


def test_score_writes_every_open_lead_beside_the_users_table(scored):
    _, _, (url, leads_table, _, frames), config = scored
    stored = _stored(url, leads_table)
    assert set(stored["lead_id"]) == _open_ids(frames)
    assert stored["lead_id"].min() > ID_OFFSET  # the user's ids, not row numbers
    assert stored["score"].between(1, 100).all() and stored["score"].nunique() > 3
    from leadml.tracking.registry import CHAMPION, alias_version

    assert alias_version(config, CHAMPION) is not None  # promote made the first champion


def test_a_far_future_as_of_is_flagged_in_the_summary(scored, monkeypatch):
    from leadml.batch import ScoreOptions, run_scoring

    _, root, (url, *_), config = scored
    monkeypatch.chdir(root)
    summary = run_scoring(config, ScoreOptions(url=url, as_of="2027-03-01", dry_run=True))
    assert any("past the data's last event" in note for note in summary.notes), summary.notes
    at_end = run_scoring(config, ScoreOptions(url=url, as_of=AS_OF, dry_run=True, all_leads=True))
    assert not any("past the data's last event" in note for note in at_end.notes)


def test_serve_reads_and_scores_the_users_rows(scored, monkeypatch):
    from fastapi.testclient import TestClient

    from leadml.serve.app import create_app

    _, root, (url, leads_table, _, frames), config = scored
    stored = _stored(url, leads_table).set_index("lead_id")
    prospects, touches = frames
    lead_id = int(stored["score"].idxmax())
    row = prospects[prospects["LeadId"] == lead_id].iloc[0]
    monkeypatch.chdir(root)
    with TestClient(create_app(None, None, config)) as client:
        got = client.get(f"/v1/leads/{lead_id}")
        assert got.status_code == 200, got.text
        assert got.json()["score"] == stored.loc[lead_id, "score"]
        body = {
            "lead": json.loads(row.to_json(date_format="iso")),  # the stored row as is
            "events": _events_of(touches, lead_id),
            "as_of": AS_OF,
        }
        posted = client.post("/v1/score", json=body)
        assert posted.status_code == 200, posted.text
        assert posted.json()["score"] == stored.loc[lead_id, "score"]
        listing = client.get("/leads")
        assert listing.status_code == 200 and f"/leads/{lead_id}" in listing.text
        assert row["Name"] in listing.text
        by_source = client.get(f"/leads?source={row['Source']}")
        assert by_source.status_code == 200 and f"/leads/{lead_id}" in by_source.text
        page = client.get(f"/leads/{lead_id}")
        assert page.status_code == 200 and row["Name"] in page.text
        store = client.app.state.store
        assert (
            store.stale_note(config.snapshots.horizon_days) is None
        )  # scored as of the data's end
        assert "Scores may be stale" not in page.text
        assert "past the data's last event" in store.stale_note(horizon_days=0.01)


def _events_of(touches: pd.DataFrame, lead_id: int) -> list[dict]:
    mine = touches[(touches["ProspectId"] == lead_id) & (touches["TouchedAt"] <= AS_OF)]
    return [
        {
            "occurred_at": t.TouchedAt.isoformat(),
            "event_type": t.Kind,
            **({} if pd.isna(t.Amount) else {"value": float(t.Amount)}),
        }
        for t in mine.itertuples()
    ]


def test_explain_and_monitor_through_the_config(scored):
    path, root, (url, leads_table, _, _), _ = scored
    stored = _stored(url, leads_table).set_index("lead_id")
    lead_id = int(stored.index[len(stored) // 2])
    code, out = cli(
        root, "explain", str(lead_id), "--config", str(path), "--as-of", AS_OF, "--json"
    )
    assert code == 0, out
    assert json.loads(out)["score"] == stored.loc[lead_id, "score"]
    report = root / "monitor.html"
    code, out = cli(root, "monitor", "--config", str(path), "--report", str(report))
    assert code in (0, 1), out  # stable or alert on a few hundred leads; 2 would be an error
    assert stored["model_version"].iloc[0] in out and "Industry" in out  # the user's feature
    assert "leadml monitoring" in report.read_text()


@pytest.mark.spark
def test_spark_engine_scores_the_users_tables_like_the_local_one(spark, scored):
    path, root, (url, leads_table, _, _), _ = scored
    local = _stored(url, leads_table)
    code, out = cli(
        root,
        "score",
        "--config",
        str(path),
        "--as-of",
        AS_OF,
        "--all",
        "--engine",
        "spark",
        "--spark-master",
        "local[2]",
    )
    assert code == 0, out
    spark = _stored(url, leads_table)
    assert spark["run_id"].nunique() == 1 and set(spark["run_id"]) != set(local["run_id"])
    for column in ("lead_id", "score", "grade", "reasons"):
        assert spark[column].tolist() == local[column].tolist(), column
