"""The synthetic lead database: deterministic, valid, realistic rates, a learnable mechanism."""

from __future__ import annotations

import pandas as pd
import pytest

from leadml.data.io import read_dataset
from leadml.data.synth import default_end, generate_database, generate_leads
from leadml.schema import validate_events, validate_leads

LEAD_COLUMNS = [
    "lead_id",
    "created_at",
    "status",
    "converted_at",
    "name",
    "company",
    "email_domain_type",
    "country",
    "industry",
    "company_size",
    "employees",
    "annual_revenue",
    "job_seniority",
    "source",
    "budget",
    "authority",
    "need",
    "timeline",
]
END = pd.Timestamp("2026-06-30")  # pinned, so the rates below do not move with the calendar
HIGH_INTENT = ["pricing_page_view", "demo_request", "meeting", "call"]


@pytest.fixture(scope="module")
def synth() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_leads(6000, 5, end=END)


def test_same_seed_same_data_other_seed_other_data():
    first, first_events = generate_leads(400, 3)
    again, again_events = generate_leads(400, 3)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first_events, again_events)
    other, _ = generate_leads(400, 4)
    assert not first["created_at"].equals(other["created_at"])


def test_output_is_canonical_and_valid(synth):
    leads, events = synth
    assert list(leads.columns) == LEAD_COLUMNS
    assert leads["lead_id"].tolist() == list(range(1, len(leads) + 1))
    pd.testing.assert_frame_equal(validate_leads(leads), leads)
    pd.testing.assert_frame_equal(validate_events(events, leads["lead_id"]), events)
    assert leads["created_at"].is_monotonic_increasing  # ids follow creation, as in a CRM
    assert set(leads["company_size"]) == {"1-10", "11-50", "51-200", "201-1000", "1000+"}
    assert 0.05 < leads["employees"].isna().mean() < 0.3
    assert 0.3 < leads["budget"].isna().mean() < 0.8


def test_rates_look_like_a_real_funnel(synth):
    leads, events = synth
    status = leads["status"].value_counts(normalize=True)
    assert 0.08 <= status["converted"] <= 0.15
    assert status["disqualified"] > 0.2
    assert 10 <= len(events) / len(leads) <= 20
    recent = leads[leads["created_at"] > END - pd.Timedelta(days=60)]
    assert (recent["status"] == "open").mean() > 0.6
    converted = leads[leads["status"] == "converted"]
    days = (converted["converted_at"] - converted["created_at"]).dt.days
    assert (days <= 60).mean() > 0.7 and (converted["converted_at"] > converted["created_at"]).all()
    span = leads["created_at"].max() - leads["created_at"].min()
    assert pd.Timedelta(days=700) < span <= pd.Timedelta(days=730)
    first_year = (leads["created_at"] < leads["created_at"].min() + span / 2).sum()
    assert len(leads) - first_year > 1.2 * first_year  # volume grows


def test_nothing_after_the_end_or_before_creation(synth):
    leads, events = synth
    assert leads["created_at"].max() <= END and leads["converted_at"].max() <= END
    assert events["occurred_at"].max() <= END
    created = events["lead_id"].map(leads.set_index("lead_id")["created_at"])
    assert (events["occurred_at"] >= created).all()


def test_end_in_the_future_is_clamped_to_now():
    leads, events = generate_leads(300, 1, end=pd.Timestamp.now() + pd.Timedelta(days=400))
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    assert leads["created_at"].max() <= now and events["occurred_at"].max() <= now


def test_converters_ramp_up_before_converting(synth):
    leads, events = synth
    converted = leads[leads["status"] == "converted"].set_index("lead_id")["converted_at"]
    ev = events[events["lead_id"].isin(converted.index)]
    before = converted.loc[ev["lead_id"]].to_numpy() - ev["occurred_at"].to_numpy()
    high = ev["event_type"].isin(HIGH_INTENT).to_numpy()
    last_two_weeks = (before > pd.Timedelta(0)) & (before <= pd.Timedelta(days=14))
    per_lead = high & last_two_weeks
    assert per_lead.sum() / len(converted) > 2  # several high-intent events in the last 2 weeks
    assert (high & (before > pd.Timedelta(days=3))).sum() / len(converted) > 1  # visible early
    others = events[~events["lead_id"].isin(converted.index)]
    other_rate = others["event_type"].isin(HIGH_INTENT).sum() / (len(leads) - len(converted))
    assert other_rate < 0.5 * per_lead.sum() / len(converted)


def test_engagement_rises_with_outcome(synth):
    leads, events = synth
    first_week = events.merge(leads[["lead_id", "created_at", "status"]], on="lead_id")
    first_week = first_week[
        first_week["occurred_at"] <= first_week["created_at"] + pd.Timedelta(days=7)
    ]
    per_lead = first_week.groupby("lead_id").size().reindex(leads["lead_id"], fill_value=0)
    by_status = per_lead.groupby(leads.set_index("lead_id")["status"]).mean()
    assert by_status["converted"] > 1.3 * by_status["disqualified"]


def test_drift_shifts_the_latest_fifth():
    base, _ = generate_leads(8000, 9, end=END)
    drifted, _ = generate_leads(8000, 9, end=END, drift=True)
    cut = base["created_at"].min() + 0.8 * (base["created_at"].max() - base["created_at"].min())
    late_base, late_drift = base[base["created_at"] > cut], drifted[drifted["created_at"] > cut]
    assert (late_drift["source"] == "cold_outbound").mean() > 1.8 * (
        late_base["source"] == "cold_outbound"
    ).mean()
    old = late_base[late_base["created_at"] < cut + pd.Timedelta(days=60)]
    old_drift = late_drift[late_drift["created_at"] < cut + pd.Timedelta(days=60)]
    assert (old_drift["status"] == "converted").mean() < 0.8 * (old["status"] == "converted").mean()
    early = base["created_at"] < cut - pd.Timedelta(days=10)
    assert base.loc[early, "source"].equals(drifted.loc[early[early].index, "source"])


def test_generate_database_writes_both_tables(sqlite_url):
    summary = generate_database(sqlite_url, 500, 2, end=END)
    leads, events = read_dataset(_config(sqlite_url))
    assert (summary.leads, summary.events) == (len(leads), len(events))
    assert summary.conversion_rate == pytest.approx((leads["status"] == "converted").mean())
    expected, expected_events = generate_leads(500, 2, end=END)
    pd.testing.assert_frame_equal(leads, expected)
    pd.testing.assert_frame_equal(events, expected_events)


def test_cli_generate_and_a_bad_input(tmp_path, run_cli):
    db = f"sqlite:///{tmp_path / 'sub' / 'leads.db'}"
    code, out, _ = run_cli("generate", "--db", db, "--leads", "300", "--seed", "1")
    assert code == 0 and (tmp_path / "sub" / "leads.db").is_file()
    assert (
        out.startswith("generated 300 leads and ")
        and "conversion rate" in out
        and out.count("\n") == 1
    )
    code, _, err = run_cli("generate", "--db", db, "--leads", "300")
    assert code == 2 and err.count("\n") == 1 and "already exist" in err
    code, out, _ = run_cli("generate", "--db", db, "--leads", "200", "--replace", "--drift")
    assert code == 0 and "generated 200 leads" in out
    code, _, err = run_cli("generate", "--db", "nosuchdb://x", "--leads", "10")
    assert code == 2 and "invalid database URL" in err


def _config(url: str):
    from leadml.config import DataConfig

    return DataConfig(source=url)


def test_history_ends_today_by_default_and_end_pins_it(tmp_path, run_cli):
    leads, events = generate_leads(300, 6)
    today = default_end()
    assert today == pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    assert today - pd.Timedelta(days=3) < leads["created_at"].max() <= today
    assert events["occurred_at"].max() <= today
    db = f"sqlite:///{tmp_path / 'pinned.db'}"
    code, _, _ = run_cli(
        "generate", "--db", db, "--leads", "300", "--seed", "6", "--end", "2025-03-01"
    )
    assert code == 0
    pinned, pinned_events = read_dataset(_config(db))
    expected, expected_events = generate_leads(300, 6, end="2025-03-01")
    pd.testing.assert_frame_equal(pinned, expected)
    pd.testing.assert_frame_equal(pinned_events, expected_events)
    assert pinned["created_at"].max() <= pd.Timestamp("2025-03-01")
    code, _, err = run_cli("generate", "--db", db, "--end", "soon", "--replace")
    assert code == 2 and "YYYY-MM-DD" in err and "'soon'" in err
