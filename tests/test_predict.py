"""The one inference path: batch, single-lead fast path and behaviour of the model."""

import json

import numpy as np
import pandas as pd
import pytest

from leadml.data.io import read_dataset
from leadml.errors import SchemaError
from leadml.predict import SCORE_COLUMNS, score_leads, score_one

AS_OF = pd.Timestamp("2026-06-30")


@pytest.fixture(scope="module")
def dataset(small_config):
    leads, events = read_dataset(small_config.data)
    return leads, events


def test_score_leads_columns_and_ranges(lead_model, dataset):
    leads, events = dataset
    out = score_leads(lead_model, leads.head(500), events, AS_OF)
    assert list(out.columns) == SCORE_COLUMNS
    assert out.lead_id.tolist() == leads.lead_id.head(500).tolist()
    assert out.score.between(1, 100).all()
    assert set(out.grade) <= {"hot", "warm", "cold"}
    np.testing.assert_array_equal(out.score, np.clip(np.rint(out.probability * 100), 1, 100))
    reasons = json.loads(out.reasons.iloc[0])
    assert all({"feature", "label", "value", "points", "text"} <= set(r) for r in reasons)


def test_chunking_does_not_change_scores(lead_model, dataset):
    leads, events = dataset
    a = score_leads(lead_model, leads.head(300), events, AS_OF, chunk_size=1000)
    b = score_leads(lead_model, leads.head(300), events, AS_OF, chunk_size=37)
    pd.testing.assert_frame_equal(a.drop(columns="scored_at"), b.drop(columns="scored_at"))


def test_fast_path_equals_batch_path(lead_model, dataset):
    leads, events = dataset
    sample = leads.sample(150, random_state=0)
    batch = score_leads(lead_model, sample, events, AS_OF).set_index("lead_id")
    grouped = dict(tuple(events[events.lead_id.isin(sample.lead_id)].groupby("lead_id")))
    for lead in sample.to_dict("records"):
        evs = grouped.get(lead["lead_id"], pd.DataFrame()).to_dict("records")
        one = score_one(lead_model, lead, evs, AS_OF)
        row = batch.loc[lead["lead_id"]]
        assert one["score"] == row.score and one["grade"] == row.grade
        assert one["probability"] == pytest.approx(row.probability, abs=1e-12)
        assert one["reasons"] == json.loads(row.reasons)


def test_points_add_up_to_score(lead_model, dataset):
    leads, events = dataset
    out = score_leads(lead_model, leads, events, AS_OF)
    from leadml.explain import score_and_points
    from leadml.features import build_features

    X = build_features(lead_model.spec, leads, events, AS_OF)
    _, score, base, points = score_and_points(
        lead_model.model.contributions(X), lead_model.calibrator
    )
    np.testing.assert_array_equal(base + points.sum(axis=1), out.score)


def test_invariance_to_id_and_unrelated_columns(lead_model, dataset):
    leads, events = dataset
    some = leads.head(200)
    base = score_leads(lead_model, some, events, AS_OF, reasons=False)
    shifted = some.assign(lead_id=some.lead_id + 10_000_000, favourite_colour="teal")
    moved = events.assign(lead_id=events.lead_id + 10_000_000)
    other = score_leads(lead_model, shifted, moved, AS_OF, reasons=False)
    np.testing.assert_array_equal(base.score, other.score)


def test_direction_more_pricing_views_and_a_demo_do_not_lower_the_score(lead_model, dataset):
    leads, events = dataset
    some = leads[leads.status == "open"].head(300)
    base = score_leads(lead_model, some, events, AS_OF, reasons=False)
    extra = pd.DataFrame(
        {
            "lead_id": np.repeat(some.lead_id.to_numpy(), 3),
            "occurred_at": AS_OF - pd.to_timedelta(np.tile([1, 2, 3], len(some)), unit="D"),
            "event_type": np.tile(
                ["pricing_page_view", "pricing_page_view", "demo_request"], len(some)
            ),
        }
    )
    more = score_leads(
        lead_model, some, pd.concat([events, extra], ignore_index=True), AS_OF, reasons=False
    )
    assert (more.probability.to_numpy() >= base.probability.to_numpy() - 0.02).mean() > 0.97
    assert more.probability.mean() > base.probability.mean()


def test_minimum_function_hot_beats_cold(lead_model):
    hot = {
        "lead_id": 1,
        "created_at": AS_OF - pd.Timedelta(days=10),
        "job_seniority": "c_level",
        "source": "referral",
        "authority": "decision_maker",
        "need": "high",
        "timeline": "<1m",
        "company_size": "201-1000",
        "email_domain_type": "business",
    }
    cold = {
        "lead_id": 2,
        "created_at": AS_OF - pd.Timedelta(days=200),
        "job_seniority": "individual",
        "source": "cold_outbound",
        "authority": "user",
        "need": "low",
        "timeline": "6m+",
        "company_size": "1-10",
        "email_domain_type": "free",
    }
    hot_events = [
        {"occurred_at": AS_OF - pd.Timedelta(days=d), "event_type": t}
        for d, t in [
            (1, "pricing_page_view"),
            (2, "demo_request"),
            (2, "pricing_page_view"),
            (3, "meeting"),
            (4, "email_click"),
            (5, "web_visit"),
        ]
    ]
    blank = dict.fromkeys(lead_model.spec.attribute_columns)  # every column, unknown = None
    assert (
        score_one(lead_model, blank | hot, hot_events, AS_OF)["score"]
        > score_one(lead_model, blank | cold, [], AS_OF)["score"]
    )


def test_every_path_refuses_a_model_whose_columns_the_lead_lacks(lead_model, dataset):
    """A model trained on other data (say the bank model on a synthetic lead) is refused with
    one message naming the model and the columns, never scored from missing values."""
    from leadml.errors import ModelError

    leads, events = dataset
    foreign = leads[["lead_id", "created_at", "status"]].head(5).assign(month="may")
    pattern = f"model {lead_model.version} reads .* lead columns that .* does not have: "
    with pytest.raises(ModelError, match=pattern) as info:
        score_leads(lead_model, foreign, None, AS_OF)
    assert all(c in str(info.value) for c in lead_model.spec.attribute_columns[:8])
    row = foreign.iloc[0].to_dict()
    with pytest.raises(ModelError, match=pattern + ".*trained on other data"):
        score_one(lead_model, row, [], AS_OF)
    partial = leads.drop(columns=[lead_model.spec.numeric[0]]).head(3)
    with pytest.raises(ModelError, match=f"1 of its .* {lead_model.spec.numeric[0]}"):
        score_leads(lead_model, partial, events, AS_OF)


def test_infinite_feature_values_are_never_scored(lead_model):
    column = lead_model.spec.numeric[0]
    lead = dict.fromkeys(lead_model.spec.attribute_columns) | {
        "lead_id": 1,
        "created_at": AS_OF - pd.Timedelta(days=3),
        column: "-inf",
    }
    with pytest.raises(SchemaError, match=f"infinite feature values in .*{column}"):
        score_one(lead_model, lead, [], AS_OF)


def test_bad_input_is_named(lead_model, dataset):
    leads, events = dataset
    with pytest.raises(SchemaError, match="lead_id"):
        score_leads(lead_model, leads.drop(columns="lead_id"), events, AS_OF)
    with pytest.raises(SchemaError, match="created_at.*yesterday-ish"):
        score_leads(lead_model, leads.head(3).assign(created_at="yesterday-ish"), events, AS_OF)
    with pytest.raises(SchemaError, match="as_of"):
        score_leads(lead_model, leads.head(3), events, "not a time")
