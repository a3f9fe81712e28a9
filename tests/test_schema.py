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


# ---------------------------------------------------------------- non-finite text, row screening


@pytest.mark.parametrize("text", ["inf", "-inf", "+Infinity", "NaN", "nan", "INF"])
def test_text_spelling_a_non_number_is_refused_in_training(leads_frame, text):
    raw = leads_frame.assign(employees=["12", text, "", "40"])
    error = _error(validate_leads, raw, now=NOW, numeric=["employees"])
    assert error.column == "employees" and "non-finite" in str(error) and text in str(error)


def test_text_spelling_a_non_number_can_read_as_missing(leads_frame, events_frame):
    raw = leads_frame.assign(employees=["12", "-inf", "NaN", "40"])
    out = validate_leads(raw, now=NOW, numeric=["employees"], non_finite="missing")
    assert out["employees"].isna().tolist() == [False, True, True, False]
    events = events_frame.assign(value=[None, "inf", 3.0, np.inf, None])
    assert "non-finite" in str(_error(validate_events, events.astype({"value": object}), now=NOW))
    kept = validate_events(events.astype({"value": object}), now=NOW, non_finite="missing")
    assert kept["value"].isna().sum() == 4


def _hostile_page() -> tuple[pd.DataFrame, pd.DataFrame]:
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, None, 5, 6, 6, 8, 9, 10, 11],
            "created_at": [
                "2025-01-01", "not a date", "2099-01-01", "2025-01-02", "2025-01-03",
                "2025-01-01", "2025-01-01", 12345, "2025-01-05", "2025-01-06", "2025/01/07 10:00",
            ],
            "status": ["open"] * 4 + ["weird"] + ["open"] * 6,
            "employees": ["10", "1", "2", "3", "4", "5", "6", "7", "-inf", "abc", "12"],
        }
    )  # fmt: skip
    events = pd.DataFrame(
        {
            "lead_id": [1, 11, 99, 11],
            "occurred_at": ["2025-01-02", "2025-01-08", "2025-01-02", "2025-01-09"],
            "event_type": ["web_visit", "call", "call", "meeting"],
            "value": [None, "Infinity", None, None],
        }
    )
    return leads, events


def test_screen_page_keeps_good_rows_and_names_each_bad_one():
    from leadml.schema import REJECT_COLUMNS, screen_page

    leads, events = _hostile_page()
    page = screen_page(leads, events, now=NOW, numeric=["employees"])
    assert page.leads["lead_id"].tolist() == [1]
    assert page.leads["created_at"].dtype == TIME_DTYPE
    assert page.events["lead_id"].tolist() == [1]
    got = list(zip(page.rejects["lead_id"], page.rejects["rule"], strict=True))
    assert got == [
        ("2", "unparseable_time"),
        ("3", "future_time"),
        (None, "missing_id"),
        ("5", "unknown_status"),
        ("6", "duplicate_id"),
        ("6", "duplicate_id"),
        ("8", "wrong_type"),
        ("9", "not_finite"),
        ("10", "not_a_number"),
        ("11", "not_finite"),  # its event's value: the lead is not scored either
        ("99", "unknown_lead"),
    ]
    assert tuple(page.rejects.columns) == REJECT_COLUMNS
    assert page.rejects["table_name"].tolist()[-2:] == ["lead_events", "lead_events"]
    assert page.rejects["bad_values"].iloc[0] == '{"created_at": "not a date"}'


def test_screen_page_non_finite_as_missing_keeps_those_rows():
    from leadml.schema import screen_page

    leads, events = _hostile_page()
    page = screen_page(leads, events, now=NOW, numeric=["employees"], non_finite="missing")
    assert page.leads["lead_id"].tolist() == [1, 9, 11]
    assert np.isnan(page.leads["employees"].iloc[1])
    assert "not_finite" not in set(page.rejects["rule"])


def test_screen_page_conversions_and_clean_pages(leads_frame, events_frame):
    from leadml.schema import first_reject, screen_page

    clean = screen_page(leads_frame, events_frame, now=NOW)
    assert len(clean.rejects) == 0 and first_reject(clean) is None
    assert clean.leads.equals(validate_leads(leads_frame, now=NOW))
    bad = leads_frame.assign(converted_at=pd.to_datetime([None, "2024-01-01", None, None]))
    page = screen_page(bad, None, now=NOW)
    assert page.rejects["rule"].tolist() == ["converted_before_created"]
    assert page.leads["lead_id"].tolist() == [1, 3, 4]
    error = first_reject(page)
    assert "lead 2" in str(error) and "converted_before_created" in str(error)


def test_screen_page_cuts_long_values_and_keeps_control_characters_escaped():
    from leadml.schema import VALUE_CHARS, screen_page

    leads = pd.DataFrame({"lead_id": [1], "created_at": ["x\r\n" * 500], "status": ["open"]})
    reject = screen_page(leads, now=NOW).rejects.iloc[0]
    assert reject["rule"] == "unparseable_time"
    assert "\n" not in reject["bad_values"] and len(reject["bad_values"]) < VALUE_CHARS * 3


def test_screen_page_still_raises_for_a_missing_column(leads_frame):
    from leadml.schema import screen_page

    error = _error(screen_page, leads_frame.drop(columns=["status"]), now=NOW)
    assert error.column == "status"
