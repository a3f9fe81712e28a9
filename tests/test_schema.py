"""Canonical tables: coercion of good frames, and one clear SchemaError per kind of bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadml.errors import SchemaError
from leadml.schema import TIME_DTYPE, attribute_columns, validate_events, validate_leads

NOW = pd.Timestamp("2025-06-01")


def _error(call, *args, **kwargs) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        call(*args, **kwargs)
    return info.value


def test_valid_leads_are_coerced(leads_frame):
    raw = leads_frame.assign(
        lead_id=["1", "2", "3", "4"],
        status=["Open", " CONVERTED", "disqualified", "open"],
        created_at=["2025-01-01T10:00:00+01:00", "2025-01-02 10:30", "2025-01-03", "2025-01-04"],
        converted_at=[None, "2025-01-20 15:00", "", "2025-02-01"],
    )
    out = validate_leads(raw, now=NOW)
    assert out["lead_id"].dtype == "int64" and out["lead_id"].tolist() == [1, 2, 3, 4]
    assert out["status"].tolist() == ["open", "converted", "disqualified", "open"]
    assert out["created_at"].dtype == TIME_DTYPE
    assert out["created_at"].iloc[0] == pd.Timestamp("2025-01-01 09:00")  # +01:00 -> UTC, naive
    assert out["converted_at"].isna().tolist() == [
        True,
        False,
        True,
        True,
    ]  # cleared unless converted
    assert np.isnan(out["employees"].iloc[2])  # NaN in attributes means missing
    assert attribute_columns(out) == ["source", "employees"]


def test_tz_aware_datetimes_become_naive_utc(leads_frame):
    raw = leads_frame.assign(created_at=leads_frame["created_at"].dt.tz_localize("US/Eastern"))
    out = validate_leads(raw, now=NOW)
    assert out["created_at"].dt.tz is None
    assert out["created_at"].iloc[0] == pd.Timestamp("2025-01-01 14:00")


def test_text_ids_keep_leading_zeros():
    out = validate_leads(
        pd.DataFrame({"lead_id": ["007", "A-8"], "status": ["open", "converted"]}),
        require_time=False,
    )
    assert out["lead_id"].tolist() == ["007", "A-8"]
    assert "converted_at" in out.columns and out["converted_at"].isna().all()


def test_float_ids_that_are_whole_become_int():
    out = validate_leads(
        pd.DataFrame({"lead_id": [1.0, 2.0], "status": ["open", "open"]}), require_time=False
    )
    assert out["lead_id"].dtype == "int64"


LEAD_PROBLEMS = [
    # (change to the good frame, column named, words in the message, example shown)
    (lambda d: d.drop(columns="status"), "status", "required column is missing", None),
    (lambda d: d.drop(columns="created_at"), "created_at", "data.created_at: null", None),
    (lambda d: d.assign(lead_id=[1, 2, 2, 4]), "lead_id", "more than once", "2"),
    (lambda d: d.assign(lead_id=[1, None, 3, 4]), "lead_id", "have no lead_id", "rows [1]"),
    (
        lambda d: d.assign(status=["open", "won", "lost", "open"]),
        "status",
        "unknown status",
        "'won'",
    ),
    (
        lambda d: d.assign(status=["open", None, "open", "open"]),
        "status",
        "have no status",
        "rows [1]",
    ),
    (
        lambda d: d.assign(created_at=["2025-01-01", "yesterday", "2025-01-03", "2025-01-04"]),
        "created_at",
        "cannot be parsed",
        "'yesterday'",
    ),
    (
        lambda d: d.assign(
            created_at=pd.to_datetime(["2025-01-01", None, "2025-01-03", "2025-01-04"])
        ),
        "created_at",
        "have no created_at",
        "rows [1]",
    ),
    (
        lambda d: d.assign(
            created_at=pd.to_datetime(["2025-01-01", "2025-06-03", "2025-01-03", "2025-01-04"])
        ),
        "created_at",
        "in the future",
        "2025-06-03",
    ),
    (lambda d: d.assign(created_at=[1, 2, 3, 4]), "created_at", "got numbers", "1"),
    (
        lambda d: d.assign(converted_at=pd.NaT),
        "converted_at",
        "converted leads have no converted_at",
        "2",
    ),
    (
        lambda d: d.assign(converted_at=pd.to_datetime([None, "2024-12-31", None, None])),
        "converted_at",
        "converted before they were created",
        "2",
    ),
    (lambda d: d.assign(employees=[1.0, np.inf, 3.0, 4.0]), "employees", "infinite", "inf"),
    (lambda d: d.iloc[0:0], None, "empty", None),
]


@pytest.mark.parametrize(("change", "column", "words", "example"), LEAD_PROBLEMS)
def test_bad_leads_name_table_column_and_example(leads_frame, change, column, words, example):
    err = _error(validate_leads, change(leads_frame), now=NOW)
    message = str(err)
    assert message.startswith("table 'leads'")
    assert err.column == column
    if column:
        assert f"column '{column}'" in message
    assert words in message
    if example:
        assert example in message


def test_text_in_declared_numeric_column(leads_frame):
    raw = leads_frame.assign(employees=["12", "250", "n/a", ""])
    err = _error(validate_leads, raw, now=NOW, numeric=["employees"])
    assert err.column == "employees" and "non-numeric" in str(err) and "'n/a'" in str(err)
    ok = validate_leads(
        raw.assign(employees=["12", "250", " 7 ", ""]), now=NOW, numeric=["employees"]
    )
    assert ok["employees"].tolist()[:3] == [12.0, 250.0, 7.0] and np.isnan(ok["employees"].iloc[3])


def test_duplicate_column_names(leads_frame):
    raw = pd.concat([leads_frame, leads_frame[["source"]]], axis=1)
    assert "duplicate column names" in str(_error(validate_leads, raw, now=NOW))


def test_default_now_is_the_clock(leads_frame):
    future = leads_frame.assign(created_at=pd.Timestamp.now() + pd.Timedelta(days=3))
    assert "in the future" in str(_error(validate_leads, future.assign(converted_at=pd.NaT)))
    tomorrow_ok = leads_frame.assign(created_at=pd.Timestamp.now() + pd.Timedelta(hours=12))
    validate_leads(tomorrow_ok.assign(converted_at=pd.Timestamp.now() + pd.Timedelta(hours=13)))


def test_valid_events_are_coerced(events_frame, leads_frame):
    raw = events_frame.drop(columns="value").assign(
        lead_id=["1", "1", "2", "2", "2"], occurred_at=events_frame["occurred_at"].astype(str)
    )
    out = validate_events(raw, leads_frame["lead_id"], now=NOW)
    assert out["lead_id"].dtype == "int64"
    assert out["occurred_at"].dtype == TIME_DTYPE
    assert out["value"].isna().all()  # added when absent
    assert out["event_type"].iloc[3] == "pricing_page_view"


def test_events_match_text_lead_ids(events_frame):
    out = validate_events(events_frame, pd.Series(["1", "2"]), now=NOW)
    assert out["lead_id"].tolist() == ["1", "1", "2", "2", "2"]


EVENT_PROBLEMS = [
    (lambda e: e.drop(columns="event_type"), "event_type", "required column is missing", None),
    (lambda e: e.assign(lead_id=[1, 1, 2, 9, 2]), "lead_id", "not in the leads table", "9"),
    (lambda e: e.assign(lead_id=[1, 1, None, 2, 2]), "lead_id", "have no lead_id", "rows [2]"),
    (
        lambda e: e.assign(
            occurred_at=[None, "2025-01-05", "2025-01-02", "2025-01-10", "2025-01-18"]
        ),
        "occurred_at",
        "have no occurred_at",
        "rows [0]",
    ),
    (
        lambda e: e.assign(
            occurred_at=["2025-01-01", "31/31/2025", "2025-01-02", "2025-01-10", "2025-01-18"]
        ),
        "occurred_at",
        "cannot be parsed",
        "'31/31/2025'",
    ),
    (
        lambda e: e.assign(
            occurred_at=["2025-01-01", "2030-01-05", "2025-01-02", "2025-01-10", "2025-01-18"]
        ),
        "occurred_at",
        "in the future",
        "2030-01-05",
    ),
    (
        lambda e: e.assign(event_type=["a", None, "b", "c", "d"]),
        "event_type",
        "have no event_type",
        "rows [1]",
    ),
    (lambda e: e.assign(value=[1, "lots", 3, 4, 5]), "value", "non-numeric", "'lots'"),
    (lambda e: e.assign(value=[1, -np.inf, 3, 4, 5]), "value", "infinite", "-inf"),
    (lambda e: e.iloc[0:0], None, "empty", None),
]


@pytest.mark.parametrize(("change", "column", "words", "example"), EVENT_PROBLEMS)
def test_bad_events_name_table_column_and_example(events_frame, change, column, words, example):
    err = _error(validate_events, change(events_frame), [1, 2], now=NOW)
    assert str(err).startswith("table 'lead_events'")
    assert err.column == column and words in str(err)
    if example:
        assert example in str(err)


def test_no_events_allowed_when_asked(events_frame):
    out = validate_events(events_frame.iloc[0:0], [1], allow_empty=True)
    assert len(out) == 0 and list(out.columns) == ["lead_id", "occurred_at", "event_type", "value"]


def test_not_a_frame_is_a_schema_error():
    assert "expected a data frame" in str(_error(validate_leads, [{"lead_id": 1}]))
