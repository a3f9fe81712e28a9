"""Reading and writing: SQLite and PostgreSQL round trips, mapping of user files, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import inspect

from leadml.config import DataConfig, TargetConfig, load_config
from leadml.data.io import (
    engine_for,
    has_table,
    import_dataset,
    is_file_source,
    mask_url,
    read_dataset,
    read_events,
    read_leads,
    read_table,
    write_tables,
)
from leadml.data.leads import iter_leads_keyset, resolve_tables
from leadml.errors import DataSourceError, SchemaError
from leadml.schema import validate_events, validate_leads

ROOT = Path(__file__).resolve().parents[1]
BANK_CONFIG = ROOT / "configs" / "bank_marketing.yaml"
BANK_CSV = ROOT / "../shared/data/bank-marketing/bank-additional-full.csv"


def _write_canonical(
    url: str, leads: pd.DataFrame, events: pd.DataFrame, names=("leads", "lead_events")
):
    write_tables(url, {names[0]: leads, names[1]: events})
    return DataConfig(source=url, leads_table=names[0], events_table=names[1])


def test_is_file_source_and_mask_url():
    assert is_file_source("exports/leads.csv") and is_file_source("x.PARQUET")
    assert not is_file_source("sqlite:///data/leads.db")
    assert not is_file_source("postgresql+psycopg://u:p@h/db")
    masked = mask_url("postgresql+psycopg://sales:s3cret@db.example.com:5432/crm")
    assert "s3cret" not in masked and "sales" in masked and "db.example.com" in masked


def test_sqlite_round_trip(sqlite_url, leads_frame, events_frame):
    cfg = _write_canonical(sqlite_url, leads_frame, events_frame)
    leads, events = read_dataset(cfg)
    pd.testing.assert_frame_equal(leads, validate_leads(leads_frame))
    pd.testing.assert_frame_equal(events, validate_events(events_frame))
    assert leads["created_at"].iloc[1] == pd.Timestamp("2025-01-02 10:30")


def test_tables_get_primary_key_and_index(sqlite_url, leads_frame, events_frame):
    _write_canonical(sqlite_url, leads_frame, events_frame)
    inspector = inspect(engine_for(sqlite_url))
    assert inspector.get_pk_constraint("leads")["constrained_columns"] == ["lead_id"]
    indexes = inspector.get_indexes("lead_events")
    assert [ix["column_names"] for ix in indexes] == [["lead_id", "occurred_at"]]


def test_text_lead_ids_round_trip(sqlite_url, leads_frame):
    leads = leads_frame.assign(lead_id=["A-1", "A-2", "007", "B"])
    write_tables(sqlite_url, {"leads": leads})
    out = read_leads(DataConfig(source=sqlite_url))
    assert out["lead_id"].tolist() == ["A-1", "A-2", "007", "B"]


def test_write_refuses_existing_tables_unless_replace(sqlite_url, leads_frame):
    write_tables(sqlite_url, {"leads": leads_frame})
    with pytest.raises(DataSourceError, match=r"leads already exist.*--replace"):
        write_tables(sqlite_url, {"leads": leads_frame.head(2)})
    write_tables(sqlite_url, {"leads": leads_frame.head(2)}, replace=True)
    assert len(read_table(sqlite_url, "leads")) == 2


def test_failed_write_leaves_nothing_behind(sqlite_url, leads_frame):
    duplicate = leads_frame.assign(lead_id=[1, 1, 2, 3])  # violates the primary key
    with pytest.raises(DataSourceError, match="writing to"):
        write_tables(sqlite_url, {"other": leads_frame[["lead_id", "source"]], "leads": duplicate})
    assert not has_table(sqlite_url, "other") and not has_table(sqlite_url, "leads")
    write_tables(sqlite_url, {"leads": leads_frame})
    with pytest.raises(DataSourceError):
        write_tables(sqlite_url, {"leads": duplicate}, replace=True)
    assert read_table(sqlite_url, "leads")["lead_id"].tolist() == [1, 2, 3, 4]  # old table intact


def test_keyset_pages_in_lead_order(sqlite_url, leads_frame):
    shuffled = leads_frame.sample(frac=1.0, random_state=0)
    write_tables(sqlite_url, {"leads": shuffled})
    tables = resolve_tables(sqlite_url, DataConfig(source=sqlite_url, events_table=None))
    pages = list(iter_leads_keyset(tables, 2))
    assert [p["lead_id"].tolist() for p in pages] == [[1, 2], [3, 4]]
    assert pages[0]["created_at"].dtype.kind == "M"
    open_only = list(iter_leads_keyset(tables, 10, where_sql="l.status = 'open'"))
    assert [p["lead_id"].tolist() for p in open_only] == [[1, 4]]
    resumed = list(iter_leads_keyset(tables, 10, after=np.int64(2)))
    assert resumed[0]["lead_id"].tolist() == [3, 4]


def test_missing_table_file_and_bad_url_are_named(tmp_path, sqlite_url, leads_frame):
    missing_db = f"sqlite:///{tmp_path / 'nope.db'}"
    with pytest.raises(DataSourceError, match="nope.db"):
        read_leads(DataConfig(source=missing_db))
    assert not (tmp_path / "nope.db").exists()  # reading never creates an empty database
    write_tables(sqlite_url, {"leads": leads_frame})
    with pytest.raises(DataSourceError, match="table 'crm_leads' not found"):
        read_leads(DataConfig(source=sqlite_url, leads_table="crm_leads"))
    with pytest.raises(DataSourceError, match="invalid database URL"):
        engine_for("nosuchdb://x")
    with pytest.raises(DataSourceError, match="file not found: .*absent.csv"):
        read_leads(DataConfig(source=str(tmp_path / "absent.csv")))


def test_unreachable_database_hides_the_password():
    url = "postgresql+psycopg://sales:s3cret@127.0.0.1:1/crm"
    with pytest.raises(DataSourceError, match="cannot connect") as info:
        read_leads(DataConfig(source=url))
    assert "s3cret" not in str(info.value) and "127.0.0.1:1" in str(info.value)


def test_events_absent_or_not_configured(sqlite_url, leads_frame):
    write_tables(sqlite_url, {"leads": leads_frame})
    assert read_events(DataConfig(source=sqlite_url)) is None
    assert read_events(DataConfig(source=sqlite_url, events_table=None)) is None
    with pytest.raises(DataSourceError, match="'touches' not found"):
        read_events(DataConfig(source=sqlite_url, events_table="touches"))


def test_csv_export_is_mapped(tmp_path):
    path = tmp_path / "crm.csv"
    path.write_text(
        "Email;Outcome;Employees;Notes;Call minutes\n"
        "a@x.com;Won;12;hot;30\n"
        "b@y.com;Lost;;cold;5\n"
        "c@z.com;;300;;0\n"
    )
    cfg = DataConfig(
        source=str(path),
        csv_separator=";",
        id_column=None,
        created_at=None,
        rename={"Employees": "employees", "Call minutes": "call_minutes"},
        target=TargetConfig(column="Outcome", positive="won"),
        ignore=["Email", "Notes"],
        leaking=["call_minutes"],
    )
    leads = read_leads(cfg)
    assert leads["lead_id"].tolist() == [1, 2, 3]
    assert leads["status"].tolist() == ["converted", "disqualified", "open"]
    assert set(leads.columns) == {"lead_id", "status", "converted_at", "employees", "call_minutes"}
    assert leads["employees"].tolist()[0] == 12 and np.isnan(leads["employees"].iloc[1])
    assert read_events(cfg) is None


def test_csv_with_events_file(tmp_path, leads_frame, events_frame):
    leads = leads_frame.rename(columns={"lead_id": "LeadId", "created_at": "Created"})
    leads.to_csv(tmp_path / "leads.csv", index=False)
    events_frame.rename(columns={"lead_id": "LeadId"}).to_parquet(tmp_path / "events.parquet")
    cfg = DataConfig(
        source=str(tmp_path / "leads.csv"),
        events_source=str(tmp_path / "events.parquet"),
        id_column="LeadId",
        created_at="Created",
    )
    leads, events = read_dataset(cfg)
    pd.testing.assert_frame_equal(leads, validate_leads(leads_frame))
    pd.testing.assert_frame_equal(events, validate_events(events_frame))


@pytest.mark.parametrize(
    ("column", "positive"),
    [(["yes", "no", None], True), (["Y", "n", None], "y"), ([1, 0, None], 1)],
)
def test_target_values_become_status(tmp_path, column, positive):
    pd.DataFrame({"subscribed": column}).to_csv(tmp_path / "x.csv", index=False)
    cfg = DataConfig(
        source=str(tmp_path / "x.csv"),
        id_column=None,
        created_at=None,
        target=TargetConfig(column="subscribed", positive=positive),
    )
    assert read_leads(cfg)["status"].tolist() == ["converted", "disqualified", "open"]


def test_declared_columns_must_exist(tmp_path, leads_frame):
    leads_frame.to_csv(tmp_path / "leads.csv", index=False)
    cfg = DataConfig(source=str(tmp_path / "leads.csv"), numeric=["employes"])
    with pytest.raises(SchemaError, match="column 'employes': declared in data.numeric"):
        read_leads(cfg)


def test_missing_target_column_is_named(tmp_path, leads_frame):
    leads_frame.drop(columns="status").to_csv(tmp_path / "leads.csv", index=False)
    cfg = DataConfig(
        source=str(tmp_path / "leads.csv"), target=TargetConfig(column="won", positive=1)
    )
    with pytest.raises(SchemaError, match="column 'won': target column not found"):
        read_leads(cfg)


def test_malformed_files_are_data_source_errors(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("lead_id,status\n1,open\n2,open,extra,fields\n")
    with pytest.raises(DataSourceError, match=r"cannot read .*ragged.csv.*Expected 2 fields"):
        read_leads(DataConfig(source=str(ragged)))
    binary = tmp_path / "leads.parquet"
    binary.write_bytes(b"definitely not parquet")
    with pytest.raises(DataSourceError, match="cannot read .*leads.parquet"):
        read_leads(DataConfig(source=str(binary)))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataSourceError, match="empty.csv"):
        read_leads(DataConfig(source=str(empty)))


def test_import_then_read_from_the_database(tmp_path, sqlite_url, leads_frame, events_frame):
    leads_frame.to_csv(tmp_path / "leads.csv", index=False)
    events_frame.to_csv(tmp_path / "events.csv", index=False)
    cfg = DataConfig(source=str(tmp_path / "leads.csv"), events_source=str(tmp_path / "events.csv"))
    assert import_dataset(cfg, sqlite_url) == {"leads": 4, "lead_events": 5}
    leads, events = read_dataset(DataConfig(source=sqlite_url))
    pd.testing.assert_frame_equal(leads, validate_leads(leads_frame))
    assert len(events) == 5


@pytest.mark.skipif(not BANK_CSV.is_file(), reason="bank marketing CSV not in ../shared/data")
def test_bank_marketing_import(sqlite_url, monkeypatch):
    monkeypatch.chdir(ROOT)  # the config's path is relative to the project root
    cfg = load_config(BANK_CONFIG)
    assert import_dataset(cfg.data, sqlite_url) == {"leads": 41188}
    leads = read_leads(cfg.data, url=sqlite_url)
    assert leads["lead_id"].tolist()[:3] == [1, 2, 3] and leads["lead_id"].is_monotonic_increasing
    assert leads["status"].value_counts().to_dict() == {"disqualified": 36548, "converted": 4640}
    assert "y" not in leads.columns and "created_at" not in leads.columns
    assert "duration" in leads.columns  # leaking columns are kept; training reports and drops them
    assert leads["emp.var.rate"].dtype == "float64"


def test_cli_import_and_its_errors(tmp_path, leads_frame, run_cli):
    leads_frame.to_csv(tmp_path / "leads.csv", index=False)
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  source: {tmp_path / 'leads.csv'}\n")
    args = ("import", "--config", str(config), "--db", f"sqlite:///{tmp_path / 'out.db'}")
    code, out, _ = run_cli(*args)
    assert code == 0 and "leads: 4 rows" in out
    code, _, err = run_cli(*args)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "already exist" in err and "--replace" in err


@pytest.mark.postgres
def test_postgres_round_trip(pg_url, pg_tables, leads_frame, events_frame):
    leads_frame = leads_frame.assign(budget=pd.array([1.5, None, 3.0, None], dtype="Float64"))
    cfg = _write_canonical(pg_url, leads_frame, events_frame, pg_tables)
    leads, events = read_dataset(cfg)
    expected = validate_leads(leads_frame)
    pd.testing.assert_frame_equal(leads.drop(columns="budget"), expected.drop(columns="budget"))
    assert leads["budget"].dtype == "float64" and leads["budget"].isna().tolist() == [
        False,
        True,
        False,
        True,
    ]
    pd.testing.assert_frame_equal(events, validate_events(events_frame))
    tables = resolve_tables(pg_url, cfg)
    pages = list(iter_leads_keyset(tables, 3, where_sql="l.status <> 'converted'"))
    assert [p["lead_id"].tolist() for p in pages] == [[1, 3, 4]]


@pytest.mark.postgres
def test_postgres_failed_write_leaves_nothing(pg_url, pg_tables, leads_frame):
    duplicate = leads_frame.assign(lead_id=[1, 1, 2, 3])
    with pytest.raises(DataSourceError, match="writing to"):
        write_tables(pg_url, {pg_tables[1]: leads_frame[["lead_id"]], pg_tables[0]: duplicate})
    assert not has_table(pg_url, pg_tables[0]) and not has_table(pg_url, pg_tables[1])
    write_tables(pg_url, {pg_tables[0]: leads_frame})
    with pytest.raises(DataSourceError, match="already exist"):
        write_tables(pg_url, {pg_tables[0]: leads_frame})


def test_scrub_masks_the_url_and_its_password():
    from leadml.data.sql import scrub

    url = "postgresql+psycopg://sales:s3cret@db.example.com:5432/crm"
    message = scrub(f"connect {url} failed; password s3cret rejected", url)
    assert "s3cret" not in message and "sales:***@db.example.com" in message


@pytest.mark.postgres
def test_driver_errors_name_the_table_and_hide_the_password(pg_url):
    from leadml.data.sql import connect
    from leadml.errors import DatabaseError

    with_password = pg_url.replace("postgres@", "postgres:s3cret@", 1)
    with pytest.raises(DatabaseError) as err, connect(with_password, table="crm.nope") as conn:
        conn.exec_driver_sql("SELECT * FROM crm_nope_schema.nope")
    assert "table 'crm.nope'" in str(err.value) and "s3cret" not in str(err.value)
    assert err.value.table == "crm.nope"
