"""The batch scorer on real SQLite and real PostgreSQL: tables, upserts, history, incremental
runs, dry runs, the lock, and resume after an interrupt or a SIGKILL (exactly once per run)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import inspect, text

from leadml.batch import (
    HISTORY,
    LOCKS,
    RUNS,
    SCORES,
    ScoreOptions,
    ensure_tables,
    open_run,
    run_scoring,
    scoring_lock,
)
from leadml.config import Config
from leadml.data.io import engine_for, read_dataset, write_tables
from leadml.errors import ScoringError, ScoringLockedError

AS_OF = "2026-06-30 12:00:00"
LATER = "2026-07-01 00:00:00"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def frames(small_db_url):
    """The small database's leads and events, to load into private databases."""
    return read_dataset(Config().data, url=small_db_url)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path, small_db_url, frames, pg_schema):
    """A private copy of the small lead database on SQLite or in its own PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "leads.db"
        shutil.copy(small_db_url.removeprefix("sqlite:///"), path)
        yield f"sqlite:///{path}"
        return
    with pg_schema("leadml_batch") as url:
        write_tables(url, {"leads": frames[0], "lead_events": frames[1]})
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request, tmp_path, pg_schema):
    """An empty private SQLite file or PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with pg_schema("leadml_batch") as url:
        yield url


def _config() -> Config:
    return Config.model_validate({"batch": {"chunk_size": 400}})


def _score(url: str, bundle: Path, **options) -> object:
    return run_scoring(_config(), ScoreOptions(url=url, model_ref=str(bundle), **options))


def _query(url: str, sql: str, **params) -> pd.DataFrame:
    with engine_for(url).connect() as conn:
        result = conn.execute(text(sql), params)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _open_ids(frames, as_of: str = AS_OF) -> set[int]:
    leads = frames[0]
    mask = (leads["status"] == "open") & (leads["created_at"] <= pd.Timestamp(as_of))
    return set(leads.loc[mask, "lead_id"].tolist())


# ---------------------------------------------------------------- tables and values


def test_tables_created_with_keys_and_indexes(db_url, trained_bundle, frames):
    summary = _score(db_url, trained_bundle, as_of=AS_OF)
    inspector = inspect(engine_for(db_url))
    assert inspector.get_pk_constraint(SCORES)["constrained_columns"] == ["lead_id"]
    assert inspector.get_pk_constraint(HISTORY)["constrained_columns"] == ["run_id", "lead_id"]
    assert inspector.get_pk_constraint(RUNS)["constrained_columns"] == ["run_id"]
    assert {"ix_lead_scores_grade_score"} <= {i["name"] for i in inspector.get_indexes(SCORES)}
    assert {"ix_lead_score_history_lead_id"} <= {i["name"] for i in inspector.get_indexes(HISTORY)}
    open_ids = _open_ids(frames)
    assert summary.scored == len(open_ids) and summary.run_total == len(open_ids)
    assert set(_query(db_url, f"SELECT lead_id FROM {SCORES}")["lead_id"]) == open_ids
    run = _query(db_url, f"SELECT * FROM {RUNS}").iloc[0]
    assert run["status"] == "succeeded" and run["leads_scored"] == len(open_ids)
    assert run["leads_selected"] == len(open_ids) and pd.Timestamp(run["as_of"]) == pd.Timestamp(
        AS_OF
    )
    assert json.loads(run["grade_counts"]) == summary.grades
    assert sum(summary.grades.values()) == len(open_ids)


def test_stored_scores_are_those_of_score_leads(
    tmp_path, small_db_url, trained_bundle, lead_model, frames
):
    url = f"sqlite:///{tmp_path / 'leads.db'}"
    shutil.copy(small_db_url.removeprefix("sqlite:///"), tmp_path / "leads.db")
    _score(url, trained_bundle, as_of=AS_OF)
    from leadml.predict import score_leads

    leads, events = frames
    ids = sorted(_open_ids(frames))
    expected = score_leads(lead_model, leads[leads["lead_id"].isin(ids)], events, AS_OF)
    stored = _query(url, f"SELECT * FROM {SCORES} ORDER BY lead_id")
    expected = expected.sort_values("lead_id").reset_index(drop=True)
    assert stored["lead_id"].tolist() == expected["lead_id"].tolist()
    assert stored["score"].tolist() == expected["score"].tolist()
    assert stored["grade"].tolist() == expected["grade"].tolist()
    assert stored["reasons"].tolist() == expected["reasons"].tolist()
    assert (stored["probability"] - expected["probability"]).abs().max() < 1e-12


def test_upsert_keeps_one_row_per_lead_and_history_one_per_run(db_url, trained_bundle, frames):
    first = _score(db_url, trained_bundle, as_of=AS_OF)
    second = _score(db_url, trained_bundle, as_of=AS_OF, all_leads=True)
    n = len(_open_ids(frames))
    scores = _query(db_url, f"SELECT lead_id, run_id FROM {SCORES}")
    assert len(scores) == n and scores["lead_id"].is_unique
    assert set(scores["run_id"]) == {second.run_id}
    per_run = _query(
        db_url,
        f"SELECT run_id, COUNT(*) AS n, COUNT(DISTINCT lead_id) AS d FROM {HISTORY} GROUP BY run_id",
    )
    assert dict(zip(per_run["run_id"], per_run["n"], strict=True)) == {
        first.run_id: n,
        second.run_id: n,
    }
    assert (per_run["n"] == per_run["d"]).all()


def test_incremental_run_scores_only_changed_leads(db_url, trained_bundle, frames):
    _score(db_url, trained_bundle, as_of=AS_OF)
    open_ids = sorted(_open_ids(frames))
    touched = open_ids[:3]
    new_id = int(frames[0]["lead_id"].max()) + 1
    template = frames[0][frames[0]["lead_id"] == open_ids[-1]].copy()
    template["lead_id"], template["created_at"] = new_id, pd.Timestamp("2026-06-30 18:00:00")
    with engine_for(db_url).begin() as conn:
        for lead_id in touched:
            conn.execute(
                text(
                    "INSERT INTO lead_events (lead_id, occurred_at, event_type, value) "
                    "VALUES (:id, :at, 'pricing_page_view', NULL)"
                ),
                {"id": lead_id, "at": "2026-06-30 20:00:00"},
            )
        columns = list(template.columns)
        row = {c: _plain(template.iloc[0][c]) for c in columns}
        conn.execute(
            text(
                f"INSERT INTO leads ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
            ),
            row,
        )
    summary = _score(db_url, trained_bundle, as_of=LATER)
    assert summary.mode == "incremental" and summary.since == pd.Timestamp(AS_OF)
    history = _query(db_url, f"SELECT lead_id FROM {HISTORY} WHERE run_id = :r", r=summary.run_id)
    assert sorted(history["lead_id"]) == sorted([*touched, new_id])
    assert len(_query(db_url, f"SELECT lead_id FROM {SCORES}")) == len(open_ids) + 1


def test_an_incremental_run_as_of_before_the_last_run_scores_every_open_lead(
    db_url, trained_bundle, frames
):
    """A point in the past after a newer run: no lead can have changed in between, so the run
    scores every open lead as of then (with a note), never 'scored 0 leads' in silence."""
    _score(db_url, trained_bundle, as_of=LATER)
    summary = _score(db_url, trained_bundle, as_of=AS_OF)
    assert summary.mode == "incremental" and summary.since is None
    assert summary.scored == len(_open_ids(frames)) > 0
    assert any("not after the last run's" in note for note in summary.notes)


def _plain(value):
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return None if pd.isna(value) else (value.item() if hasattr(value, "item") else value)


def test_text_lead_ids(empty_db_url, trained_bundle, frames):
    leads, events = frames[0].copy(), frames[1].copy()
    leads["lead_id"] = "L-" + leads["lead_id"].astype(str).str.zfill(6)
    events["lead_id"] = "L-" + events["lead_id"].astype(str).str.zfill(6)
    write_tables(empty_db_url, {"leads": leads, "lead_events": events})
    options = ScoreOptions(
        url=empty_db_url, model_ref=str(trained_bundle), as_of=AS_OF, chunk_size=300
    )
    with pytest.raises(KeyboardInterrupt):
        run_scoring(_config(), options, source=_interrupt_after(1))
    summary = run_scoring(_config(), options)
    expected = {f"L-{i:06d}" for i in _open_ids(frames)}
    assert summary.resumed
    _assert_exactly_once(empty_db_url, summary.run_id, expected)
    kind = inspect(engine_for(empty_db_url)).get_columns(SCORES)[0]["type"]
    assert "TEXT" in str(kind).upper()


def test_dry_run_writes_nothing(db_url, trained_bundle, frames):
    summary = _score(db_url, trained_bundle, as_of=AS_OF, dry_run=True)
    assert summary.dry_run and summary.run_id is None
    assert summary.scored == len(_open_ids(frames))
    inspector = inspect(engine_for(db_url))
    assert not any(inspector.has_table(t) for t in (SCORES, HISTORY, RUNS, LOCKS))
    _score(db_url, trained_bundle, as_of=AS_OF)
    before = _query(
        db_url, f"SELECT (SELECT COUNT(*) FROM {HISTORY}) AS h, (SELECT COUNT(*) FROM {RUNS}) AS r"
    )
    again = _score(db_url, trained_bundle, as_of=LATER, all_leads=True, dry_run=True)
    after = _query(
        db_url, f"SELECT (SELECT COUNT(*) FROM {HISTORY}) AS h, (SELECT COUNT(*) FROM {RUNS}) AS r"
    )
    assert again.scored == len(_open_ids(frames, LATER)) and before.equals(after)


def test_bad_options_exit_3(tmp_path, trained_bundle):
    with pytest.raises(ScoringError, match="exclude each other") as err:
        _score(f"sqlite:///{tmp_path / 'x.db'}", trained_bundle, since=AS_OF, all_leads=True)
    assert err.value.exit_code == 3
    with pytest.raises(ScoringError, match="--as-of: not a timestamp"):
        _score(f"sqlite:///{tmp_path / 'x.db'}", trained_bundle, as_of="yesterday-ish")


# ---------------------------------------------------------------- locking


def test_concurrent_run_is_refused(db_url, trained_bundle):
    with (
        scoring_lock(db_url),
        pytest.raises(ScoringLockedError, match="another scoring run") as err,
    ):
        _score(db_url, trained_bundle, as_of=AS_OF)
    assert err.value.exit_code == 75
    assert _score(db_url, trained_bundle, as_of=AS_OF).run_total > 0  # released


def test_stale_sqlite_lock_of_a_dead_process_is_taken_over(tmp_path, small_db_url, trained_bundle):
    url = f"sqlite:///{tmp_path / 'leads.db'}"
    shutil.copy(small_db_url.removeprefix("sqlite:///"), tmp_path / "leads.db")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with scoring_lock(url):
        pass  # creates the lock table
    with engine_for(url).begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {LOCKS} (name, token, host, pid) VALUES ('leadml-score', 'old', :h, :p)"
            ),
            {"h": socket.gethostname(), "p": dead.pid},
        )
    assert _score(url, trained_bundle, as_of=AS_OF).run_total > 0
    assert _query(url, f"SELECT COUNT(*) AS n FROM {LOCKS}")["n"].iloc[0] == 0


# ---------------------------------------------------------------- resume


def _interrupt_after(chunks: int):
    """A local source that stops the process's loop like Ctrl-C after `chunks` chunks."""
    from leadml.batch import local_source

    def source(plan):
        for i, scores in enumerate(local_source(plan)):
            if i == chunks:
                raise KeyboardInterrupt
            yield scores

    return source


def test_interrupted_run_resumes_with_same_run_and_as_of(db_url, trained_bundle, frames):
    options = ScoreOptions(url=db_url, model_ref=str(trained_bundle), as_of=AS_OF, chunk_size=300)
    with pytest.raises(KeyboardInterrupt):
        run_scoring(_config(), options, source=_interrupt_after(2))
    run = _query(db_url, f"SELECT * FROM {RUNS}").iloc[0]
    assert run["status"] == "running" and run["leads_scored"] == 600
    resumed = run_scoring(
        _config(), ScoreOptions(url=db_url, model_ref=str(trained_bundle), chunk_size=300)
    )
    assert (
        resumed.resumed and resumed.run_id == run["run_id"] and resumed.as_of == pd.Timestamp(AS_OF)
    )
    _assert_exactly_once(db_url, run["run_id"], _open_ids(frames))


def test_unmatched_interrupted_run_is_abandoned(db_url, trained_bundle, lead_model):
    ensure_tables(db_url)
    stale, _ = open_run(db_url, lead_model, ScoreOptions(url=db_url, as_of=AS_OF))
    summary = _score(db_url, trained_bundle, as_of=LATER)
    runs = _query(db_url, f"SELECT run_id, status, error FROM {RUNS}").set_index("run_id")
    assert (
        runs.loc[stale.run_id, "status"] == "failed"
        and "differs" in runs.loc[stale.run_id, "error"]
    )
    assert runs.loc[summary.run_id, "status"] == "succeeded" and not summary.resumed


def _assert_exactly_once(url: str, run_id: str, expected_ids: set) -> None:
    history = _query(url, f"SELECT lead_id FROM {HISTORY} WHERE run_id = :r", r=run_id)
    assert history["lead_id"].is_unique, "a lead was scored twice in one run"
    assert set(history["lead_id"]) == expected_ids, "leads lost or extra"
    runs = _query(url, f"SELECT run_id, status, leads_scored FROM {RUNS}")
    assert runs["run_id"].tolist() == [run_id]
    assert runs["status"].iloc[0] == "succeeded" and runs["leads_scored"].iloc[0] == len(
        expected_ids
    )
    scores = _query(url, f"SELECT lead_id, run_id FROM {SCORES}")
    assert set(scores["lead_id"]) == expected_ids and set(scores["run_id"]) == {run_id}


# ---------------------------------------------------------------- the real thing: SIGKILL


def _cli(url: str, bundle: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "leadml", "score", "--db", url, "--model", str(bundle), *extra]
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _progress(url: str) -> tuple[str | None, int]:
    try:
        runs = _query(url, f"SELECT status, leads_scored FROM {RUNS}")
    except Exception:  # noqa: BLE001 - the table does not exist yet
        return None, 0
    return (None, 0) if runs.empty else (runs["status"].iloc[0], int(runs["leads_scored"].iloc[0]))


def _kill_when_past(url: str, proc: subprocess.Popen, scored: int, timeout: float = 120) -> int:
    """SIGKILL the scorer as soon as more than `scored` leads are committed; the count then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        status, done = _progress(url)
        if done > scored:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return _progress(url)[1]
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"scorer ended before it could be killed: {proc.communicate()}")


@pytest.mark.slow
def test_sigkill_and_rerun_scores_every_lead_exactly_once(db_url, trained_bundle, tmp_path, frames):
    args = ("--chunk-size", "40")
    first = _kill_when_past(db_url, _cli(db_url, trained_bundle, tmp_path, *args), 0)
    status, _ = _progress(db_url)
    assert status == "running" and first > 0
    second = _kill_when_past(db_url, _cli(db_url, trained_bundle, tmp_path, *args), first + 40)
    assert second > first
    final = _cli(db_url, trained_bundle, tmp_path, *args)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert "resumed" in out and "scored" in out
    run = _query(db_url, f"SELECT run_id, as_of FROM {RUNS}").iloc[0]
    as_of = pd.Timestamp(run["as_of"])
    _assert_exactly_once(db_url, run["run_id"], _open_ids(frames, as_of))


@pytest.mark.slow
def test_cli_exits_75_while_another_run_holds_the_lock(db_url, trained_bundle, tmp_path):
    with scoring_lock(db_url):
        proc = _cli(db_url, trained_bundle, tmp_path)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 75
    assert "another scoring run is in progress" in err and out == ""
