"""Point-in-time features: values, leakage, one implementation for frames and dicts."""

import numpy as np
import pandas as pd
import pytest

from leadml.config import Config
from leadml.errors import SchemaError
from leadml.features import (
    build_features,
    build_row,
    fit_feature_spec,
    make_snapshots,
    table_snapshots,
)

CFG = Config.model_validate({"features": {"min_category_count": 1}})


@pytest.fixture
def leads():
    return pd.DataFrame(
        {
            "lead_id": [1, 2, 3],
            "created_at": pd.to_datetime(["2025-01-01", "2025-01-05", "2025-02-01"]),
            "status": ["open", "converted", "open"],
            "converted_at": pd.to_datetime([None, "2025-02-10", None]),
            "source": ["web", "referral", "web"],
            "employees": [10.0, np.nan, 300.0],
        }
    )


@pytest.fixture
def events():
    return pd.DataFrame(
        {
            "lead_id": [1, 1, 2, 2, 2, 3],
            "occurred_at": pd.to_datetime(
                ["2025-01-02", "2025-01-20", "2025-01-06", "2025-02-01", "2025-02-09", "2025-03-01"]
            ),
            "event_type": [
                "web_visit",
                "pricing_page_view",
                "pricing_page_view",
                "pricing_page_view",
                "demo_request",
                "web_visit",
            ],
        }
    )


def frame(spec, X):
    return pd.DataFrame(X, columns=spec.names)


def test_counts_recency_and_age(leads, events):
    spec = fit_feature_spec(leads, events, CFG)
    f = frame(spec, build_features(spec, leads, events, pd.Timestamp("2025-02-05")))
    assert f.loc[1, "pricing_page_view_count_7d"] == 1  # 02-01
    assert f.loc[1, "pricing_page_view_count_30d"] == 1  # 01-06 is exactly 30 days back: out
    assert f.loc[1, "pricing_page_view_count_90d"] == 2
    assert f.loc[1, "pricing_page_view_days_since"] == 4
    assert f.loc[0, "web_visit_days_since"] == 34
    assert f.loc[2, "lead_age_days"] == 4
    assert np.isnan(f.loc[2, "days_since_any_activity"])  # its only event is after as_of
    assert f.loc[0, "engagement_score"] == pytest.approx(0.5 ** (16 / 14) + 0.5 ** (34 / 14))


def test_events_after_as_of_are_never_seen(leads, events):
    spec = fit_feature_spec(leads, events, CFG)
    as_of = pd.Timestamp("2025-02-05")
    base = build_features(spec, leads, events, as_of)
    future = pd.DataFrame(
        {
            "lead_id": [1, 2, 3] * 20,
            "occurred_at": as_of + pd.to_timedelta(np.arange(60) + 1, unit="h"),
            "event_type": ["pricing_page_view", "demo_request", "web_visit"] * 20,
        }
    )
    with_future = build_features(spec, leads, pd.concat([events, future]), as_of)
    np.testing.assert_array_equal(base, with_future)


def test_event_exactly_at_as_of_is_visible(leads, events):
    spec = fit_feature_spec(leads, events, CFG)
    f = frame(spec, build_features(spec, leads, events, pd.Timestamp("2025-02-09")))
    assert f.loc[1, "demo_request_count_7d"] == 1
    assert f.loc[1, "demo_request_days_since"] == 0


def test_per_row_as_of_matches_scalar(leads, events):
    spec = fit_feature_spec(leads, events, CFG)
    stamps = pd.to_datetime(["2025-01-10", "2025-02-05", "2025-03-02"])
    per_row = build_features(spec, leads, events, stamps.to_numpy())
    for i, ts in enumerate(stamps):
        alone = build_features(spec, leads.iloc[[i]], events, ts)
        np.testing.assert_allclose(per_row[i], alone[0], equal_nan=True)


def test_dict_fast_path_equals_frames(leads, events):
    spec = fit_feature_spec(leads, events, CFG)
    as_of = pd.Timestamp("2025-02-05")
    X = build_features(spec, leads, events, as_of)
    for i, lead in enumerate(leads.to_dict("records")):
        evs = events[events.lead_id == lead["lead_id"]].to_dict("records")
        np.testing.assert_array_equal(build_row(spec, lead, evs, as_of)[0], X[i])


def test_one_lead_alone_equals_it_in_a_batch_to_the_last_bit():
    """Times to the second over a year and a batch of 300 leads, so any batch-dependent offset
    in the arithmetic would show: the HTTP score equals the batch score exactly."""
    rng = np.random.default_rng(5)
    start = pd.Timestamp("2025-01-01")
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(300),
            "created_at": start + pd.to_timedelta(rng.integers(0, 200 * 86_400, 300), unit="s"),
            "status": "open",
            "converted_at": pd.NaT,
            "source": rng.choice(["web", "referral"], 300),
            "employees": rng.integers(1, 500, 300).astype(float),
        }
    )
    lead_of = rng.integers(0, 300, 3_000)
    events = pd.DataFrame(
        {
            "lead_id": lead_of,
            "occurred_at": leads["created_at"].to_numpy()[lead_of]
            + pd.to_timedelta(rng.integers(0, 150 * 86_400, 3_000), unit="s"),
            "event_type": rng.choice(["web_visit", "pricing_page_view", "email_open"], 3_000),
        }
    )
    spec = fit_feature_spec(leads, events, CFG)
    as_of = pd.Timestamp("2025-09-30 13:32:52")
    X = build_features(spec, leads, events, as_of)
    for i, lead in enumerate(leads.to_dict("records")):
        evs = events[events.lead_id == lead["lead_id"]].to_dict("records")
        np.testing.assert_array_equal(build_row(spec, lead, evs, as_of)[0], X[i])


def test_unseen_and_missing_categories(leads, events):
    spec = fit_feature_spec(leads, events, CFG)
    other = float(len(spec.categories["source"]))
    new = leads.assign(source=["web", "carrier pigeon", None])
    f = frame(spec, build_features(spec, new, events, pd.Timestamp("2025-02-05")))
    assert f.loc[0, "source"] == spec.categories["source"].index("web")
    assert f.loc[1, "source"] == other
    assert np.isnan(f.loc[2, "source"])
    row = build_row(
        spec, {"created_at": "2025-01-05", "source": "carrier pigeon"}, [], "2025-02-05"
    )
    assert row[0, spec.names.index("source")] == other


def test_missing_column_names_it(leads, events):
    spec = fit_feature_spec(leads, events, CFG)
    with pytest.raises(SchemaError, match="employees"):
        build_features(spec, leads.drop(columns=["employees"]), events, "2025-02-05")


def test_non_numeric_text_in_numeric_column(leads, events):
    spec = fit_feature_spec(leads, events, CFG)
    bad = leads.assign(employees=["10", "lots", None])
    with pytest.raises(SchemaError, match="employees.*lots"):
        build_features(spec, bad, events, "2025-02-05")


def test_snapshots_respect_open_state_and_label_window(leads):
    snaps = make_snapshots(leads, [0, 7, 40], 30, np.datetime64("2025-03-10"))
    lead2 = snaps[snaps.lead_id == 2].set_index("as_of")["label"]
    assert lead2[pd.Timestamp("2025-01-05")] == 0  # converts 36 days later: outside 30
    assert lead2[pd.Timestamp("2025-01-12")] == 1
    assert pd.Timestamp("2025-02-14") not in lead2.index  # converted by then: not open
    # lead 3 created 02-01: +7 = 02-08, window ends 03-10 (= cutoff) is allowed, +40 is not
    assert sorted(snaps[snaps.lead_id == 3].as_of) == [
        pd.Timestamp("2025-02-01"),
        pd.Timestamp("2025-02-08"),
    ]


def test_table_snapshots_skip_open_leads():
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3],
            "status": ["converted", "open", "disqualified"],
            "converted_at": pd.NaT,
            "x": [1, 2, 3],
        }
    )
    snaps = table_snapshots(leads)
    assert snaps.lead_id.tolist() == [1, 3] and snaps.label.tolist() == [1, 0]


def test_every_feature_has_label_and_unit(leads, events):
    spec = fit_feature_spec(leads, events, CFG)
    assert all(f.label and f.group for f in spec.features)
    counts = [f for f in spec.features if f.kind == "count"]
    assert counts and all(f.unit for f in counts)


def test_featurize_is_fast_enough():
    """Vectorised: 20k leads x 5 snapshots with 300k events in well under a few seconds."""
    import time

    rng = np.random.default_rng(0)
    n, m = 20_000, 300_000
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(n),
            "status": "open",
            "converted_at": pd.NaT,
            "created_at": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.uniform(0, 600, n), unit="D"),
            "source": rng.choice(["a", "b", "c"], n),
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": rng.integers(0, n, m),
            "occurred_at": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.uniform(0, 700, m), unit="D"),
            "event_type": rng.choice(["web_visit", "email_open", "pricing_page_view"], m),
        }
    )
    spec = fit_feature_spec(leads, events, CFG)
    rows = np.repeat(np.arange(n), 5)
    as_of = leads.created_at.to_numpy()[rows] + np.tile(np.arange(5), n) * np.timedelta64(7, "D")
    t0 = time.perf_counter()
    X = build_features(spec, leads.iloc[rows], events, as_of)
    assert X.shape == (5 * n, len(spec.names))
    assert time.perf_counter() - t0 < 20
