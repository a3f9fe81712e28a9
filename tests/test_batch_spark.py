"""The Spark engine gives the local engine's scores: Parquet staging (SQLite) and JDBC (PostgreSQL);
it stores the change ledger's inputs as the local engine does (a lead scored twice by Spark has
the local engine's ledger), and hands the writer the local engine's pages. Its rejects are in
tests/test_rejects.py."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from sqlalchemy import text

from leadml.batch import HISTORY, SCORES, ScoreOptions, run_scoring
from leadml.batch.spark import (
    PG_JDBC_JAR,
    TASK_COLUMNS,
    Screened,
    _by_page,
    jdbc_options,
    score_partition,
)
from leadml.config import Config
from leadml.data.io import engine_for, read_dataset, write_tables
from leadml.errors import ScoringError
from leadml.ledger import lead_history_report, ledger_inputs
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


def _require_jdbc() -> None:
    if not PG_JDBC_JAR.is_file():
        pytest.skip(
            f"the PostgreSQL JDBC driver is missing: apt-get install libpostgresql-jdbc-java ({PG_JDBC_JAR})"
        )


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
def test_spark_over_jdbc_matches_local(spark, pg_schema, frames, trained_bundle, expected):
    _require_jdbc()
    with pg_schema("leadml_spark") as url:
        write_tables(url, {"leads": frames[0], "lead_events": frames[1]})
        _assert_same(_spark_scores(url, trained_bundle), expected)


@pytest.mark.spark
@pytest.mark.slow
def test_scored_at_is_utc_whatever_the_driver_time_zone(
    spark, tmp_path, small_db_url, trained_bundle
):
    """Spark returns timestamps in the driver's local time zone; scored_at never makes that
    trip, so a driver in New York stores the same naive-UTC scored_at as the local engine."""
    import os
    import time

    shutil.copy(small_db_url.removeprefix("sqlite:///"), tmp_path / "leads.db")
    url = f"sqlite:///{tmp_path / 'leads.db'}"
    before, zone = pd.Timestamp.now(tz="UTC").tz_localize(None), os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        _spark_scores(url, trained_bundle)
    finally:
        os.environ.pop("TZ") if zone is None else os.environ.update(TZ=zone)
        time.tzset()
    after = pd.Timestamp.now(tz="UTC").tz_localize(None)
    with engine_for(url).connect() as conn:
        stamps = pd.to_datetime(pd.read_sql(f"SELECT scored_at FROM {SCORES}", conn)["scored_at"])
    assert stamps.nunique() == 1 and before - pd.Timedelta(seconds=1) <= stamps.iloc[0] <= after


# ---------------------------------------------------------------- the change ledger's inputs

T1, T2 = pd.Timestamp("2026-06-05"), pd.Timestamp("2026-06-29")
EDITED = 7  # leads whose id is a multiple of this get new attributes between the scorings


def _score_twice(url: str, bundle, source=None) -> list[str]:
    """Score every open lead at T1, edit some leads' attributes, score again at T2: run ids."""
    config = Config.model_validate({"batch": {"chunk_size": 400}})
    runs = []
    for as_of in (T1, T2):
        options = ScoreOptions(url=url, model_ref=str(bundle), as_of=as_of, all_leads=True)
        runs.append(run_scoring(config, options, source=source).run_id)
        with engine_for(url).begin() as conn:
            conn.execute(
                text(
                    "UPDATE leads SET employees = employees * 3, need = 'high' "
                    f"WHERE lead_id % {EDITED} = 0"
                )
            )
    return runs


def _inputs_by_run(url: str, runs: list[str]) -> list[pd.DataFrame]:
    columns = "lead_id, score, fit_points, engagement_points, attributes, as_of"
    with engine_for(url).connect() as conn:
        return [
            pd.DataFrame(
                conn.execute(
                    text(f"SELECT {columns} FROM {HISTORY} WHERE run_id = :r ORDER BY lead_id"),
                    {"r": run},
                ).fetchall(),
                columns=[c.strip() for c in columns.split(",")],
            )
            for run in runs
        ]


def _ledger(url: str, lead_id: int, model_for) -> dict:
    report = lead_history_report(url, Config(), lead_id, model_for, since=str(T1.date()))
    assert "ledger_note" not in report, report["ledger_note"]
    ledger = report["ledger"]
    return {k: ledger[k] for k in ("change", "steps", "lines")}


@pytest.fixture(params=["sqlite", "postgres"])
def twin_urls(request, tmp_path, small_db_url, frames, pg_schema):
    """Two private copies of the small database (SQLite files or PostgreSQL schemas)."""
    if request.param == "sqlite":
        for name in ("local.db", "spark.db"):
            shutil.copy(small_db_url.removeprefix("sqlite:///"), tmp_path / name)
        yield f"sqlite:///{tmp_path / 'local.db'}", f"sqlite:///{tmp_path / 'spark.db'}"
        return
    _require_jdbc()
    with pg_schema("leadml_spark") as local_url, pg_schema("leadml_spark") as spark_url:
        for url in (local_url, spark_url):
            write_tables(url, {"leads": frames[0], "lead_events": frames[1]})
        yield local_url, spark_url


@pytest.mark.spark
@pytest.mark.slow
def test_a_lead_scored_twice_by_spark_has_the_local_ledger(
    spark, twin_urls, trained_bundle, lead_model
):
    """Twice locally and twice by Spark (attributes edited in between): the same stored ledger
    inputs (attributes JSON, as_of) row for row, and so the same exact change ledger."""
    from leadml.batch.spark import spark_source

    local_url, spark_url = twin_urls
    local = _inputs_by_run(local_url, _score_twice(local_url, trained_bundle))
    runs = _score_twice(spark_url, trained_bundle, spark_source("local[2]"))
    on_spark = _inputs_by_run(spark_url, runs)
    for got, want in zip(on_spark, local, strict=True):
        assert len(want) > 1000 and want["attributes"].notna().all()
        pd.testing.assert_frame_equal(got, want)
    edited = [int(i) for i in local[1]["lead_id"] if i % EDITED == 0][:5]
    models = {lead_model.version: lead_model}.get
    for lead_id in [*edited, int(local[1]["lead_id"].iloc[0])]:
        ledger = _ledger(spark_url, lead_id, models)
        assert ledger == _ledger(local_url, lead_id, models)
        assert all(s["cause"] != "other" for s in ledger["steps"] if s["points"])
        assert sum(s["points"] for s in ledger["steps"]) == ledger["change"]


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
    # the ledger's inputs, as the local engine stores them (batch.run.local_source)
    assert got["attributes"].tolist() == ledger_inputs(open_leads, lead_model)


def _rejects(*lead_ids) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": list(lead_ids), "rule": ["unknown_status"] * len(lead_ids)})


def _row(lead_id: int) -> tuple:
    """A task's score row for `lead_id` (values beside the id do not matter here)."""
    values = {"lead_id": lead_id, "scored_at": "2026-07-01 00:00:00"}
    return tuple(values.get(c) for c in TASK_COLUMNS)


def test_scores_come_back_cut_at_the_screened_pages_with_their_rejects():
    """Each chunk is one screened page: its good leads' scores, its rejects, its last raw
    lead_id as the progress marker (also for a page whose every lead was refused), the as_of."""
    rows = iter([_row(1), _row(2), _row(7)])
    pages = [(3, _rejects(3)), (5, _rejects(4, 5)), (9, _rejects()), (None, _rejects(None))]
    scored_at = pd.Timestamp("2026-07-01 00:00:05")
    chunks = list(_by_page(rows, Screened(pages=pages), AS_OF, scored_at))
    assert [c["lead_id"].tolist() if len(c) else [] for c in chunks] == [[1, 2], [], [7], []]
    assert [c.attrs["last_lead_id"] for c in chunks] == [3, 5, 9, None]
    assert [c.attrs["rejects"]["lead_id"].tolist() for c in chunks] == [[3], [4, 5], [], [None]]
    assert (chunks[0]["as_of"] == AS_OF).all() and "attributes" in chunks[0]
    assert (chunks[0]["scored_at"] == scored_at).all()  # the run's, set on the driver
    with pytest.raises(ScoringError, match="lead_id 12"):
        list(_by_page(iter([_row(12)]), Screened(pages=[(9, _rejects())]), AS_OF, scored_at))


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
