"""The Spark engine gives the local engine's scores: Parquet staging (SQLite) and JDBC (PostgreSQL)."""

from __future__ import annotations

import shutil
import uuid

import pandas as pd
import pytest
from sqlalchemy import text

from leadml.batch import SCORES, ScoreOptions, run_scoring
from leadml.batch.spark import PG_JDBC_JAR, jdbc_options, score_partition
from leadml.config import Config
from leadml.data.io import engine_for, read_dataset, write_tables
from leadml.predict import score_leads

AS_OF = pd.Timestamp("2026-06-30 12:00:00")
COMPARED = ["lead_id", "probability", "score", "grade", "reasons", "model_version"]


@pytest.fixture(scope="module")
def frames(small_db_url):
    return read_dataset(Config().data, url=small_db_url)


@pytest.fixture(scope="module")
def expected(frames, lead_model) -> pd.DataFrame:
    """The local inference path's scores of the open leads as of AS_OF."""
    leads, events = frames
    open_leads = leads[(leads["status"] == "open") & (leads["created_at"] <= AS_OF)]
    out = score_leads(lead_model, open_leads, events, AS_OF)
    return out[COMPARED].sort_values("lead_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("the Spark engine needs Java")
    from leadml.batch.spark import spark_session

    session, _ = spark_session("local[2]", jdbc=True)
    yield session
    session.stop()


def _spark_scores(url: str, bundle) -> pd.DataFrame:
    from leadml.batch.spark import spark_source

    config = Config.model_validate({"batch": {"chunk_size": 400}})
    options = ScoreOptions(url=url, model_ref=str(bundle), as_of=str(AS_OF), all_leads=True)
    summary = run_scoring(config, options, source=spark_source("local[2]"))
    with engine_for(url).connect() as conn:
        result = conn.execute(text(f"SELECT {', '.join(COMPARED)} FROM {SCORES} ORDER BY lead_id"))
        frame = pd.DataFrame(result.fetchall(), columns=COMPARED)
    assert summary.run_total == len(frame)
    return frame


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert got["lead_id"].tolist() == expected["lead_id"].tolist()
    assert got["score"].tolist() == expected["score"].tolist()
    assert got["grade"].tolist() == expected["grade"].tolist()
    assert got["reasons"].tolist() == expected["reasons"].tolist()
    assert (got["probability"] - expected["probability"]).abs().max() < 1e-12


@pytest.mark.spark
@pytest.mark.slow
def test_spark_on_sqlite_matches_local(spark, tmp_path, small_db_url, trained_bundle, expected):
    shutil.copy(small_db_url.removeprefix("sqlite:///"), tmp_path / "leads.db")
    _assert_same(_spark_scores(f"sqlite:///{tmp_path / 'leads.db'}", trained_bundle), expected)


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.postgres
def test_spark_over_jdbc_matches_local(spark, pg_url_required, frames, trained_bundle, expected):
    if not PG_JDBC_JAR.is_file():
        pytest.skip(
            f"the PostgreSQL JDBC driver is missing: apt-get install libpostgresql-jdbc-java ({PG_JDBC_JAR})"
        )
    schema = f"leadml_spark_{uuid.uuid4().hex[:10]}"
    with engine_for(pg_url_required).begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = (
        f"{pg_url_required}{'&' if '?' in pg_url_required else '?'}options=-csearch_path%3D{schema}"
    )
    try:
        write_tables(url, {"leads": frames[0], "lead_events": frames[1]})
        _assert_same(_spark_scores(url, trained_bundle), expected)
    finally:
        engine_for(url).dispose()
        with engine_for(pg_url_required).begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def test_partition_scorer_reads_pandas3_arrow_frames_like_local(frames, lead_model, expected):
    """Inside a task, text arrives as pandas 3 `str` (NaN for missing) and times as ns: same scores."""
    leads, events = frames
    open_leads = leads[(leads["status"] == "open") & (leads["created_at"] <= AS_OF)]
    as_arrow = open_leads.copy()
    for column in as_arrow.columns:
        if as_arrow[column].dtype == object:
            as_arrow[column] = as_arrow[column].astype("str")
    as_arrow["created_at"] = as_arrow["created_at"].astype("datetime64[ns]")
    as_arrow["_bucket"] = 0
    ev = events[events["lead_id"].isin(open_leads["lead_id"])].assign(_bucket=0)
    ev["event_type"] = ev["event_type"].astype("str")
    threads = lead_model.model.threads
    try:
        got = score_partition(lead_model, as_arrow, ev, AS_OF, pd.Timestamp("2026-07-01"))
        assert lead_model.model.threads == 1
    finally:
        lead_model.set_threads(threads)
    _assert_same(got[COMPARED].sort_values("lead_id").reset_index(drop=True), expected)


def test_jdbc_options_from_sqlalchemy_url():
    options = jdbc_options(
        "postgresql+psycopg://ops:s3cret@db.example:6543/crm?options=-csearch_path%3Dsales"
    )
    assert options == {
        "url": "jdbc:postgresql://db.example:6543/crm?currentSchema=sales",
        "driver": "org.postgresql.Driver",
        "user": "ops",
        "password": "s3cret",
    }
