"""Module-level fixtures: small canonical frames and database URLs (session fixtures: ../conftest.py)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import pytest


@pytest.fixture
def leads_frame() -> pd.DataFrame:
    """Four valid leads: one of each status plus an open lead with missing attributes."""
    return pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4],
            "created_at": pd.to_datetime(
                ["2025-01-01 09:00", "2025-01-02 10:30", "2025-01-03 11:00", "2025-01-04 12:00"]
            ),
            "status": ["open", "converted", "disqualified", "open"],
            "converted_at": pd.to_datetime([None, "2025-01-20 15:00", None, None]),
            "source": ["web_form", "referral", "paid_search", None],
            "employees": [12.0, 250.0, None, 40.0],
        }
    )


@pytest.fixture
def events_frame() -> pd.DataFrame:
    """Five valid events of leads 1 and 2."""
    return pd.DataFrame(
        {
            "lead_id": [1, 1, 2, 2, 2],
            "occurred_at": pd.to_datetime(
                [
                    "2025-01-01 09:00",
                    "2025-01-05 08:00",
                    "2025-01-02 10:30",
                    "2025-01-10 14:00",
                    "2025-01-18 16:00",
                ]
            ),
            "event_type": [
                "form_submit",
                "email_open",
                "web_visit",
                "pricing_page_view",
                "meeting",
            ],
            "value": [None, None, 3.0, None, 30.0],
        }
    )


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLite URL in the test's own folder (the file does not exist yet)."""
    return f"sqlite:///{tmp_path / 'leads.db'}"


@pytest.fixture
def pg_url(pg_url_required: str) -> str:
    """LEADML_TEST_PG_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test), or skip."""
    return pg_url_required


@pytest.fixture
def pg_tables(pg_url: str) -> Iterator[tuple[str, str]]:
    """Unique (leads, events) table names on PostgreSQL, dropped after the test."""
    suffix = uuid.uuid4().hex[:10]
    names = (f"leads_t{suffix}", f"lead_events_t{suffix}")
    yield names
    from leadml.data.io import engine_for

    with engine_for(pg_url).begin() as conn:
        for name in names:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `leadml ARGS...` in this process through main(); returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        from leadml.cli import main

        monkeypatch.setattr("sys.argv", ["leadml", *args])
        with pytest.raises(SystemExit) as info:
            main()
        captured = capsys.readouterr()
        return info.value.code or 0, captured.out, captured.err

    return run


HISTORY_RUNS = ("2026-05-20", "2026-06-05", "2026-06-29")


@pytest.fixture(scope="session")
def history_db(small_db_url, trained_bundle, tmp_path_factory) -> str:
    """A copy of the small database scored by three batch runs (HISTORY_RUNS), with attribute
    edits between them (employees doubled for every fifth lead): history, ledger, movers."""
    import shutil

    from sqlalchemy import text

    from leadml.batch import ScoreOptions, run_scoring
    from leadml.config import Config
    from leadml.data.io import engine_for

    path = tmp_path_factory.mktemp("history-db") / "leads.db"
    shutil.copy(small_db_url.removeprefix("sqlite:///"), path)
    url = f"sqlite:///{path}"
    config = Config.model_validate({"data": {"source": url}})
    for as_of in HISTORY_RUNS:
        options = ScoreOptions(url=url, model_ref=str(trained_bundle), as_of=as_of, all_leads=True)
        run_scoring(config, options)
        if as_of == HISTORY_RUNS[-1]:
            break
        with engine_for(url).begin() as conn:
            conn.execute(text("UPDATE leads SET employees = employees * 2 WHERE lead_id % 5 = 0"))
    return url


@pytest.fixture
def pg_schema(request):
    """Private PostgreSQL schemas for this test, dropped afterwards: `with pg_schema("prefix") as
    url` (the URL's search_path is the schema). Skips without LEADML_TEST_PG_URL, only when used."""

    @contextmanager
    def make(prefix: str = "leadml_test") -> Iterator[str]:
        from leadml.data.io import engine_for

        base = request.getfixturevalue("pg_url_required")
        schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with engine_for(base).begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
        try:
            yield url
        finally:
            engine_for(url).dispose()
            with engine_for(base).begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")

    return make


@pytest.fixture(scope="module")
def spark():
    """One local Spark session (with the PostgreSQL JDBC driver) for the module; the engine and
    the CLI reuse it. Skips without pyspark or Java."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("the Spark engine needs Java")
    from leadml.batch.spark import spark_session

    session, _ = spark_session("local[2]", jdbc=True)
    yield session
    session.stop()
