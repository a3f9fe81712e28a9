"""The batch scorer refuses what training refuses, row by row, and says so: for every class of
bad input, on SQLite and PostgreSQL, the run's summary line, its scoring_rejects rows, its
count in scoring_runs, and every good lead of the same page still scored exactly once; --strict
and batch.max_reject_fraction fail the run (exit 2); a SIGKILL while rejects are written
duplicates nothing after the rerun. The Spark engine does all of it the same way (real local
Spark: the same rejects, counts, scores and ledger inputs as the local engine; resumed after an
interrupt, exactly once)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from leadml.batch import HISTORY, REJECTS, RUNS, SCORES, ScoreOptions, run_scoring
from leadml.batch.rejects import RejectedRowsError
from leadml.config import Config
from leadml.data.io import engine_for, read_dataset, write_tables

AS_OF = pd.Timestamp("2026-06-30 12:00:00")
N_LEADS = 400


@pytest.fixture(scope="module")
def frames(small_db_url):
    """The first N_LEADS leads of the small database and their events, times as text (as a
    CRM export stores them), so single values can be spoiled."""
    leads, events = read_dataset(Config().data, url=small_db_url)
    leads = leads[leads["lead_id"] <= N_LEADS].reset_index(drop=True)
    events = events[events["lead_id"].isin(leads["lead_id"])].reset_index(drop=True)
    return leads, events


def _open_ids(leads: pd.DataFrame) -> list[int]:
    mask = (leads["status"] == "open") & (pd.to_datetime(leads["created_at"]) <= AS_OF)
    return sorted(leads.loc[mask, "lead_id"].tolist())


def _as_text(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    out = frame.copy()
    for c in columns:
        stamps = pd.to_datetime(out[c])
        out[c] = [None if pd.isna(t) else t.strftime("%Y-%m-%d %H:%M:%S") for t in stamps]
        out[c] = out[c].astype(object)
    return out


# ---------------------------------------------------------------- the bad-input classes
# Each spoils copies of the frames and says which rejects (rule, lead_id) to expect and which
# open leads stop being scored. `victim` is an open lead picked by position.


def _set(frame: pd.DataFrame, lead_id, column: str, value) -> pd.DataFrame:
    out = frame.astype({column: object}) if frame[column].dtype != object else frame.copy()
    out.loc[out["lead_id"] == lead_id, column] = value
    return out


def unparseable_created_at(leads, events, victim, kind):
    return _set(leads, victim, "created_at", "not a date"), events, [("unparseable_time", victim)]


def future_created_at(leads, events, victim, kind):
    leads = _set(leads, victim, "created_at", "2099-01-01 00:00:00")
    return leads, events, [("future_time", victim)]


def null_lead_id(leads, events, victim, kind):
    leads = leads.astype({"lead_id": "Int64"})  # an integer column that holds a NULL
    leads.loc[leads["lead_id"] == victim, "lead_id"] = pd.NA
    events = events[events["lead_id"] != victim]
    return leads, events, [("missing_id", None)]


def unknown_status(leads, events, victim, kind):
    return _set(leads, victim, "status", "weird"), events, [("unknown_status", victim)]


def infinite_event_value(leads, events, victim, kind):
    events = events.astype({"value": object}).copy()
    row = events.index[events["lead_id"] == victim][0]
    events.loc[row, "value"] = "inf" if kind == "sqlite" else np.inf
    return leads, events, [("not_finite", victim)]


def events_of_unknown_leads(leads, events, victim, kind):
    stray = events.iloc[[0]].assign(lead_id=N_LEADS + 999)
    return leads, pd.concat([events, stray], ignore_index=True), [("unknown_lead", N_LEADS + 999)]


def duplicate_ids(leads, events, victim, kind):
    twin = leads[leads["lead_id"] == victim]
    rejects = [("duplicate_id", victim), ("duplicate_id", victim)]
    return pd.concat([leads, twin], ignore_index=True), events, rejects


def nan_text_in_a_numeric_column(leads, events, victim, kind):
    leads = leads.copy()
    leads["employees"] = [None if pd.isna(v) else f"{v:g}" for v in leads["employees"]]
    return _set(leads, victim, "employees", "NaN"), events, [("not_finite", victim)]


def text_in_a_numeric_column(leads, events, victim, kind):
    leads = leads.copy()
    leads["employees"] = [None if pd.isna(v) else f"{v:g}" for v in leads["employees"]]
    return _set(leads, victim, "employees", "about 50"), events, [("not_a_number", victim)]


CLASSES = [
    unparseable_created_at,
    future_created_at,
    null_lead_id,
    unknown_status,
    infinite_event_value,
    events_of_unknown_leads,
    duplicate_ids,
    nan_text_in_a_numeric_column,
    text_in_a_numeric_column,
]
SQLITE_ONLY: set = set()  # (a number in a SQLite text column is stored as its text)


# ---------------------------------------------------------------- databases


def _write(url: str, leads: pd.DataFrame, events: pd.DataFrame) -> None:
    """The tables as given; no primary key on leads, so NULL and duplicate ids can be stored."""
    write_tables(url, {"leads": leads.rename(columns={"status": "status_"}), "lead_events": events})
    with engine_for(url).begin() as conn:
        conn.execute(text('ALTER TABLE leads RENAME COLUMN "status_" TO status'))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path, pg_schema):
    """A writer of (leads, events) into a private SQLite file or PostgreSQL schema: its URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'leads.db'}"
        yield request.param, url
        return
    with pg_schema("leadml_rej") as url:
        yield request.param, url


def _query(url: str, sql: str, **params) -> pd.DataFrame:
    with engine_for(url).connect() as conn:
        result = conn.execute(text(sql), params)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _config(**batch) -> Config:
    return Config.model_validate({"batch": {"chunk_size": 50, "max_reject_fraction": 0.2, **batch}})


def _spoiled(frames, spoil, kind):
    leads = _as_text(frames[0], ("created_at", "converted_at"))
    events = _as_text(frames[1], ("occurred_at",))
    victim = _open_ids(frames[0])[len(_open_ids(frames[0])) // 2]  # mid-page, mid-run
    return (*spoil(leads, events, victim, kind), victim)


# ---------------------------------------------------------------- every class, both databases


@pytest.mark.parametrize("spoil", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_each_bad_row_is_rejected_and_the_rest_scored_once(database, trained_bundle, frames, spoil):
    kind, url = database
    if kind == "postgres" and spoil in SQLITE_ONLY:
        pytest.skip("a PostgreSQL column cannot mix numbers and text")
    leads, events, expected, victim = _spoiled(frames, spoil, kind)
    _write(url, leads, events)
    options = ScoreOptions(url=url, model_ref=str(trained_bundle), as_of=AS_OF, all_leads=True)
    summary = run_scoring(_config(), options)

    rejects = _query(url, f"SELECT lead_id, rule, run_id, {_values(url)} FROM {REJECTS}")
    got = sorted(
        (r, None if pd.isna(i) else int(i))
        for i, r in zip(rejects.lead_id, rejects.rule, strict=True)
    )
    assert got == sorted(expected)
    assert set(rejects["run_id"]) == {summary.run_id}
    assert rejects["bad_values"].str.len().max() <= 2000
    lost = {victim} if spoil is not events_of_unknown_leads else set()
    good = set(_open_ids(frames[0])) - lost
    history = _query(url, f"SELECT lead_id FROM {HISTORY} WHERE run_id = :r", r=summary.run_id)
    assert history["lead_id"].is_unique and set(history["lead_id"]) == good
    assert set(_query(url, f"SELECT lead_id FROM {SCORES}")["lead_id"]) == good
    run = _query(url, f"SELECT status, leads_scored, rows_rejected FROM {RUNS}").iloc[0]
    assert (run["status"], run["leads_scored"], run["rows_rejected"]) == (
        "succeeded",
        len(good),
        len(expected),
    )
    line = summary.line()
    assert line.startswith(
        f"scored {len(good):,} leads, {len(expected)} rejected (see scoring_rejects) ("
    )


def _values(url: str) -> str:
    return '"values" AS bad_values'


def test_a_clean_database_has_no_rejects_and_says_nothing(database, trained_bundle, frames):
    kind, url = database
    _write(url, _as_text(frames[0], ("created_at", "converted_at")), frames[1])
    options = ScoreOptions(url=url, model_ref=str(trained_bundle), as_of=AS_OF, all_leads=True)
    summary = run_scoring(_config(), options)
    assert summary.scored == len(_open_ids(frames[0])) and summary.rejected == 0
    assert "rejected" not in summary.line()
    assert _query(url, f"SELECT COUNT(*) AS n FROM {REJECTS}")["n"].iloc[0] == 0


# ---------------------------------------------------------------- strict, fraction, exit codes


def _cli(url: str, bundle: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    command = [
        *(sys.executable, "-m", "leadml", "score", "--db", url, "--model", str(bundle)),
        *("--as-of", str(AS_OF), "--all", *extra),
    ]
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _config_file(folder: Path, **batch) -> str:
    import yaml

    path = folder / f"leadml-{len(list(folder.glob('leadml-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({"batch": {"chunk_size": 50, **batch}}))
    return str(path)


@pytest.mark.slow
def test_cli_exit_codes_summary_strict_and_fraction(database, trained_bundle, frames, tmp_path):
    kind, url = database
    leads, events, expected, victim = _spoiled(frames, unknown_status, kind)
    _write(url, leads, events)
    loose = _config_file(tmp_path, max_reject_fraction=0.2)

    strict = _cli(url, trained_bundle, tmp_path, "--config", loose, "--strict")
    out, err = strict.communicate(timeout=300)
    assert strict.returncode == 2, err
    assert err.startswith("error: --strict") and f"lead {victim}" in err and "unknown_status" in err
    assert "Traceback" not in err
    for table in (RUNS, SCORES, REJECTS):  # nothing was written, not even the tables
        with pytest.raises(Exception):  # noqa: B017 - the table does not exist
            _query(url, f"SELECT COUNT(*) FROM {table}")

    tight = _config_file(tmp_path, max_reject_fraction=0.001)
    failed = _cli(url, trained_bundle, tmp_path, "--config", tight)
    out, err = failed.communicate(timeout=300)
    assert failed.returncode == 2 and "batch.max_reject_fraction" in err, err
    runs = _query(url, f"SELECT status, error FROM {RUNS}")
    assert runs["status"].tolist() == ["failed"] and "broken feed" in runs["error"].iloc[0]

    ok = _cli(url, trained_bundle, tmp_path, "--config", loose)
    out, err = ok.communicate(timeout=300)
    assert ok.returncode == 0, err
    good = len(_open_ids(frames[0])) - 1
    assert f"scored {good:,} leads, 1 rejected (see scoring_rejects)" in out


def test_strict_by_config_fails_before_anything_is_written(database, trained_bundle, frames):
    kind, url = database
    leads, events, _, _ = _spoiled(frames, infinite_event_value, kind)
    _write(url, leads, events)
    options = ScoreOptions(url=url, model_ref=str(trained_bundle), as_of=AS_OF, all_leads=True)
    with pytest.raises(RejectedRowsError, match="not_finite"):
        run_scoring(_config(on_bad_rows="fail"), options)
    with pytest.raises(Exception):  # noqa: B017 - no scoring_runs table: nothing was written
        _query(url, f"SELECT COUNT(*) FROM {RUNS}")


def test_dry_run_counts_rejects_and_writes_none(database, trained_bundle, frames):
    kind, url = database
    leads, events, expected, _ = _spoiled(frames, duplicate_ids, kind)
    _write(url, leads, events)
    options = ScoreOptions(
        url=url, model_ref=str(trained_bundle), as_of=AS_OF, all_leads=True, dry_run=True
    )
    summary = run_scoring(_config(), options)
    assert summary.rejected == len(expected) and "2 would be rejected" in summary.line()


# ---------------------------------------------------------------- SIGKILL while rejecting


def _progress(url: str) -> int:
    try:
        return int(_query(url, f"SELECT leads_scored FROM {RUNS}")["leads_scored"].iloc[0])
    except Exception:  # noqa: BLE001 - not there yet
        return 0


@pytest.mark.slow
def test_sigkill_while_rejects_are_written_duplicates_nothing(
    database, trained_bundle, frames, tmp_path
):
    """A bad row in every page: the kill lands between pages that each wrote rejects."""
    kind, url = database
    leads = _as_text(frames[0], ("created_at", "converted_at"))
    open_ids = _open_ids(frames[0])
    spoiled = open_ids[::10]  # one in ten open leads: a reject in every chunk of 20
    leads["employees"] = [None if pd.isna(v) else f"{v:g}" for v in leads["employees"]]
    leads = leads.astype({"employees": object})
    leads.loc[leads["lead_id"].isin(spoiled), "employees"] = "-Infinity"
    _write(url, leads, _as_text(frames[1], ("occurred_at",)))
    config = _config_file(tmp_path, max_reject_fraction=0.5)
    args = ("--config", config, "--chunk-size", "20")
    proc = _cli(url, trained_bundle, tmp_path, *args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and _progress(url) < 30:
        time.sleep(0.005)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _query(url, f"SELECT status FROM {RUNS}")["status"].tolist() == ["running"]
    partial = _query(url, f"SELECT COUNT(*) AS n FROM {REJECTS}")["n"].iloc[0]
    assert 0 < partial < len(spoiled)
    rerun = _cli(url, trained_bundle, tmp_path, *args)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "resumed" in out
    rejects = _query(url, f"SELECT lead_id, rule FROM {REJECTS}")
    assert rejects["lead_id"].is_unique and sorted(rejects["lead_id"]) == spoiled
    assert set(rejects["rule"]) == {"not_finite"}
    history = _query(url, f"SELECT lead_id FROM {HISTORY}")
    assert history["lead_id"].is_unique
    assert set(history["lead_id"]) == set(open_ids) - set(spoiled)
    run = _query(url, f"SELECT status, rows_rejected FROM {RUNS}").iloc[0]
    assert (run["status"], run["rows_rejected"]) == ("succeeded", len(spoiled))


def test_copy_of_the_small_database_is_untouched(small_db_url, tmp_path):
    """The fixtures write private databases only (the session database stays clean)."""
    path = tmp_path / "copy.db"
    shutil.copy(small_db_url.removeprefix("sqlite:///"), path)
    tables = _query(f"sqlite:///{path}", "SELECT name FROM sqlite_master WHERE type='table'")
    assert REJECTS not in set(tables["name"])


# ---------------------------------------------------------------- monitor


def test_monitor_shows_rejects_per_run_and_alerts_when_they_rise(database, trained_bundle, frames):
    from leadml.data.scores import output_tables, reject_counts
    from leadml.monitor import rejects_alert

    kind, url = database
    _write(url, _as_text(frames[0], ("created_at", "converted_at")), frames[1])
    options = ScoreOptions(url=url, model_ref=str(trained_bundle), as_of=AS_OF, all_leads=True)
    clean = run_scoring(_config(), options)
    with engine_for(url).begin() as conn:
        conn.execute(text("UPDATE leads SET status = 'weird' WHERE lead_id IN (3, 4)"))
    spoiled = run_scoring(_config(), options)
    runs = reject_counts(url, output_tables("leads"))
    assert [(r["run_id"], r["rows_rejected"]) for r in runs] == [
        (spoiled.run_id, 2),
        (clean.run_id, 0),
    ]
    assert "rejects rose" in rejects_alert(runs, 0.5)
    assert "over batch.max_reject_fraction" in rejects_alert(runs, 0.001)
    assert rejects_alert(runs[1:], 0.01) is None
    steady = [dict(runs[0], run_id="later"), *runs]
    assert rejects_alert(steady, 0.5) is None  # as many as before: no rise


# ---------------------------------------------------------------- the Spark engine


def _spark_source():
    from leadml.batch.spark import spark_source

    return spark_source("local[2]")


def _by_run(url: str, sql: str, run_id: str) -> list[tuple]:
    rows = _query(url, sql + " WHERE run_id = :r", r=run_id).drop(columns="run_id")
    return sorted(tuple(None if pd.isna(v) else str(v) for v in row) for row in rows.values)


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("spoil", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_spark_engine_rejects_and_scores_like_the_local_one(
    spark, database, trained_bundle, frames, spoil
):
    """The same data scored by Spark, then locally: the same scoring_rejects rows (rule, lead,
    table, column, values), the same run counts and summary, the same scores and ledger inputs."""
    kind, url = database
    leads, events, expected, victim = _spoiled(frames, spoil, kind)
    _write(url, leads, events)
    options = ScoreOptions(url=url, model_ref=str(trained_bundle), as_of=AS_OF, all_leads=True)
    on_spark = run_scoring(_config(), options, source=_spark_source())
    local = run_scoring(_config(), options)

    rejects = (
        f"SELECT run_id, lead_id, rule, table_name, column_name, {_values(url)} FROM {REJECTS}"
    )
    got = _by_run(url, rejects, on_spark.run_id)
    assert got == _by_run(url, rejects, local.run_id)
    assert sorted((r[1], None if r[0] is None else int(r[0])) for r in got) == sorted(expected)
    runs = _query(url, f"SELECT * FROM {RUNS}").set_index("run_id")
    counted = ["status", "leads_selected", "leads_scored", "rows_rejected"]
    assert runs.loc[on_spark.run_id, counted].tolist() == runs.loc[local.run_id, counted].tolist()
    assert runs.loc[on_spark.run_id, "rows_rejected"] == len(expected)
    grades = runs["grade_counts"].map(json.loads)
    assert grades[on_spark.run_id] == grades[local.run_id]
    line = f"scored {local.scored:,} leads, {len(expected)} rejected (see scoring_rejects) ("
    assert on_spark.line().split(") in ")[0] == local.line().split(") in ")[0]
    assert on_spark.line().startswith(line) and on_spark.rejected == len(expected)
    history = (
        f"SELECT run_id, lead_id, score, grade, reasons, fit_points, engagement_points, "
        f"attributes, as_of FROM {HISTORY}"
    )
    scored = _by_run(url, history, on_spark.run_id)
    assert scored == _by_run(url, history, local.run_id)
    lost = {victim} if spoil is not events_of_unknown_leads else set()
    assert sorted(int(r[0]) for r in scored) == sorted(set(_open_ids(frames[0])) - lost)


def test_spark_engine_strict_fails_before_anything_is_written(database, trained_bundle, frames):
    """--strict screens on the driver before Spark starts: exit 2, not even the tables."""
    kind, url = database
    leads, events, _, victim = _spoiled(frames, unknown_status, kind)
    _write(url, leads, events)
    options = ScoreOptions(
        url=url, model_ref=str(trained_bundle), as_of=AS_OF, all_leads=True, strict=True
    )
    with pytest.raises(RejectedRowsError, match=f"--strict.*lead {victim}.*unknown_status"):
        run_scoring(_config(), options, source=_spark_source())
    with pytest.raises(Exception):  # noqa: B017 - no scoring_runs table: nothing was written
        _query(url, f"SELECT COUNT(*) FROM {RUNS}")


@pytest.mark.spark
@pytest.mark.slow
def test_spark_engine_fails_a_run_over_the_reject_fraction(spark, database, trained_bundle, frames):
    kind, url = database
    leads, events, expected, _ = _spoiled(frames, duplicate_ids, kind)
    _write(url, leads, events)
    options = ScoreOptions(url=url, model_ref=str(trained_bundle), as_of=AS_OF, all_leads=True)
    with pytest.raises(RejectedRowsError, match="batch.max_reject_fraction"):
        run_scoring(_config(max_reject_fraction=0.001), options, source=_spark_source())
    run = _query(url, f"SELECT status, error, rows_rejected FROM {RUNS}").iloc[0]
    assert run["status"] == "failed" and "broken feed" in run["error"]
    assert run["rows_rejected"] == len(expected)
    assert _query(url, f"SELECT COUNT(*) AS n FROM {REJECTS}")["n"].iloc[0] == len(expected)


def _interrupted_spark(chunks: int):
    """The Spark engine, stopped like Ctrl-C after `chunks` chunks were handed to the writer."""
    source = _spark_source()

    def interrupted(plan):
        for i, scores in enumerate(source(plan)):
            if i == chunks:
                raise KeyboardInterrupt
            yield scores

    return interrupted


@pytest.mark.spark
@pytest.mark.slow
def test_spark_run_interrupted_while_rejecting_resumes_exactly_once(
    spark, database, trained_bundle, frames
):
    """A bad row in every page; Spark stopped after 3 pages, then resumed by Spark: every reject
    and every good lead written once, in the one run, counted once."""
    kind, url = database
    leads = _as_text(frames[0], ("created_at", "converted_at"))
    open_ids = _open_ids(frames[0])
    spoiled = open_ids[::10]  # one in ten open leads: a reject in every page of 20
    leads["employees"] = [None if pd.isna(v) else f"{v:g}" for v in leads["employees"]]
    leads = leads.astype({"employees": object})
    leads.loc[leads["lead_id"].isin(spoiled), "employees"] = "-Infinity"
    _write(url, leads, _as_text(frames[1], ("occurred_at",)))
    config = _config(chunk_size=20, max_reject_fraction=0.5)
    options = ScoreOptions(url=url, model_ref=str(trained_bundle), as_of=AS_OF, all_leads=True)
    with pytest.raises(KeyboardInterrupt):
        run_scoring(config, options, source=_interrupted_spark(3))
    run = _query(url, f"SELECT run_id, status, rows_rejected FROM {RUNS}").iloc[0]
    assert run["status"] == "running" and 0 < run["rows_rejected"] < len(spoiled)

    resumed = run_scoring(config, options, source=_spark_source())
    assert resumed.resumed and resumed.run_id == run["run_id"]
    rejects = _query(url, f"SELECT lead_id, rule, run_id FROM {REJECTS}")
    assert rejects["lead_id"].is_unique and sorted(rejects["lead_id"]) == spoiled
    assert set(rejects["rule"]) == {"not_finite"} and set(rejects["run_id"]) == {run["run_id"]}
    history = _query(url, f"SELECT lead_id FROM {HISTORY}")
    assert history["lead_id"].is_unique
    assert set(history["lead_id"]) == set(open_ids) - set(spoiled)
    final = _query(url, f"SELECT status, leads_scored, rows_rejected FROM {RUNS}").iloc[0]
    assert final.tolist() == ["succeeded", len(open_ids) - len(spoiled), len(spoiled)]


def test_monitor_report_lists_rejects_per_run():
    from leadml.config import MonitorConfig
    from leadml.monitor import MonitorResult, render_html

    runs = [
        {"run_id": "r2", "started_at": "2026-06-30", "status": "succeeded", "leads_scored": 98,
         "rows_rejected": 2},
        {"run_id": "r1", "started_at": "2026-06-29", "status": "succeeded", "leads_scored": 100,
         "rows_rejected": 0},
    ]  # fmt: skip
    realized = {"n": 0, "observed_until": "2026-06-30", "horizon_days": 30}  # none matured
    result = MonitorResult(
        "v1", AS_OF, 30, 0, [], realized=realized, rejects=runs, rejects_alert="rejects rose: r2"
    )
    assert result.status == "alert" and result.exit_code == 1
    page = render_html(result, MonitorConfig())
    assert "Rejected rows per run (scoring_rejects)" in page
    assert "<td>r2</td><td>2026-06-30</td><td>succeeded</td><td>98</td><td>2</td>" in page
