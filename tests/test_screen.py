"""Screening: planted leaks (label + noise, post-outcome values, a dominant feature) and planted
drift are caught; honest features are not."""

import numpy as np
import pandas as pd
import pytest

from leadml.config import Config, ScreeningConfig
from leadml.errors import TrainingError
from leadml.features import build_features, fit_feature_spec, make_snapshots
from leadml.screen import grouped_psi, matched_groups, post_outcome_columns, psi, screen_features
from leadml.workflow import fit_model, prepare

N = 3000


def table_leads(seed: int = 0, n: int = N) -> pd.DataFrame:
    """A single-table export: weak honest features plus three kinds of planted leak."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    region = rng.choice(["north", "south", "east", "west"], size=n)
    y = (
        rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 0.5 * signal + 0.3 * (region == "north"))))
    ).astype(int)
    return pd.DataFrame(
        {
            "lead_id": np.arange(1, n + 1),
            "status": np.where(y == 1, "converted", "disqualified"),
            "signal": signal,
            "noise": rng.normal(size=n),
            "region": region,
            "label_echo": y + rng.normal(scale=0.1, size=n),  # the label plus noise
            "contract_value": np.where(
                y == 1, rng.gamma(2.0, 500.0, size=n), np.nan
            ),  # post-outcome
            "call_minutes": 1.5 * y + rng.normal(size=n),  # strong but not perfect alone: dominance
        }
    )


def screen(leads: pd.DataFrame, cfg: ScreeningConfig | None = None):
    spec = fit_feature_spec(leads, None, Config())
    X = build_features(spec, leads, None)
    y = (leads["status"] == "converted").to_numpy().astype(int)
    cut = int(len(y) * 0.7)
    return screen_features(spec, X[:cut], y[:cut], X[cut:], cfg or ScreeningConfig())


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=5000), rng.normal(size=5000)
    assert psi(a, b) < 0.01
    assert psi(a, b + 1.5) > 0.25
    cats = rng.integers(0, 4, size=5000).astype(float)
    assert psi(cats, np.where(cats == 0, 1.0, cats), categorical=True) > 0.25


def test_planted_leaks_are_flagged_with_their_reason_and_honest_features_are_not():
    s = screen(table_leads())
    assert set(s.leaks) == {"label_echo", "contract_value", "call_minutes"}
    assert "alone separates" in s.leak_reasons["label_echo"]
    assert s.single_auc["label_echo"] > 0.99
    assert (
        "filled in for 100% of converted and 0% of other rows" in s.leak_reasons["contract_value"]
    )
    assert "carries" in s.leak_reasons["call_minutes"]
    assert s.single_auc["call_minutes"] < 0.95  # the single-feature test alone would miss it
    assert s.gain_share["call_minutes"] > 0.35
    assert set(s.dropped) == set(s.leaks)
    assert not s.drifted


def test_allow_list_keeps_a_vouched_feature():
    s = screen(table_leads(), ScreeningConfig(allow=["call_minutes"]))
    assert "call_minutes" not in s.leaks and "call_minutes" not in s.dropped
    assert "label_echo" in s.leaks


def test_no_leak_on_honest_data():
    leads = table_leads().drop(columns=["label_echo", "contract_value", "call_minutes"])
    s = screen(leads)
    assert s.leaks == [] and s.dropped == []
    assert max(s.gain_share.values()) < 1.0


def test_planted_drift_is_reported_and_dropped_only_when_asked():
    leads = table_leads().drop(columns=["label_echo", "contract_value", "call_minutes"])
    late = np.arange(len(leads)) >= int(len(leads) * 0.7)
    leads.loc[late, "noise"] += 3.0
    reported = screen(leads, ScreeningConfig(drift_action="report"))
    assert reported.drifted == ["noise"] and reported.psi["noise"] > 1.0
    assert reported.psi["signal"] < 0.05 and reported.dropped == []
    dropped = screen(leads, ScreeningConfig(drift_action="drop"))
    assert dropped.dropped == ["noise"]


def test_grouped_psi_ignores_a_change_in_the_mix_of_groups():
    rng = np.random.default_rng(2)
    g_train = rng.choice([0, 30], size=4000, p=[0.5, 0.5])
    g_latest = rng.choice([0, 30], size=4000, p=[0.9, 0.1])  # younger snapshots only
    x_train = np.where(g_train == 30, 10.0, 0.0) + rng.normal(size=4000)
    x_latest = np.where(g_latest == 30, 10.0, 0.0) + rng.normal(size=4000)
    assert psi(x_train, x_latest) > 0.25
    assert grouped_psi(x_train, x_latest, False, matched_groups(g_train, g_latest)) < 0.05


def test_post_outcome_timestamp_column_is_reported():
    n = 200
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(n), unit="D")
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(n),
            "created_at": created,
            "status": "open",
            "converted_at": pd.NaT,
            "closed_on": created + pd.Timedelta(days=90),  # after every snapshot
            "first_touch": created - pd.Timedelta(days=2),
        }
    )
    snaps = make_snapshots(leads, [0, 7], 30, np.datetime64("2026-01-01"))
    found = post_outcome_columns(leads, snaps)
    assert list(found) == ["closed_on"] and "100%" in found["closed_on"]


def ordered_config(**screening) -> Config:
    return Config.model_validate(
        {
            "data": {"ordered": True, "created_at": None, "converted_at": None},
            "model": {"candidates": ["logistic", "naive_bayes"], "threads": 1},
            "screening": screening,
        }
    )


def test_fail_on_leak_stops_the_run_and_names_the_column():
    leads = table_leads()
    config = ordered_config(fail_on_leak=True)
    prep = prepare(config, leads, None, log=lambda _: None)
    with pytest.raises(TrainingError, match="label_echo.*screening.fail_on_leak"):
        fit_model(config, prep, "v", log=lambda _: None)


def test_training_drops_leaks_and_drift_and_says_so():
    leads = table_leads().drop(columns=["contract_value"])
    late = np.arange(len(leads)) >= int(len(leads) * 0.65)
    leads.loc[late, "noise"] += 3.0
    config = ordered_config(drift_action="drop")
    prep = prepare(config, leads, None, log=lambda _: None)
    lines: list[str] = []
    model, info = fit_model(config, prep, "v", log=lines.append)
    assert {"label_echo", "call_minutes", "noise"}.isdisjoint(model.spec.names)
    assert {"signal", "region"} <= set(model.spec.names)
    assert sum("LEAK WARNING" in line for line in lines) == 2
    assert any("drift: ['noise']" in line and "dropped" in line for line in lines)
    assert info["screening"]["leaks"] == ["label_echo", "call_minutes"]
    assert info["fit_rows"] == int(prep.pretest.sum())  # the shipped model saw every pre-test row
