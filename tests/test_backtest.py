"""`leadml evaluate`: rolling-origin folds forward in time, stratified K-fold, mean and spread of
every metric for leadml and both baselines."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadml.backtest import METRICS, MODELS, backtest, known_at
from leadml.config import Config
from leadml.errors import TrainingError
from leadml.workflow import evaluate_model, fit_model, prepare

N = 2400


def export(seed: int = 3, n: int = N) -> pd.DataFrame:
    """A single-table export in time order whose conversion rate climbs over time."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    score = rng.normal(size=n)
    channel = rng.choice(["web", "phone", "event"], size=n)
    logit = -2.2 + 1.2 * t + 0.9 * score + 0.6 * (channel == "event")
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "score": score,
            "age": rng.integers(20, 70, size=n),
            "channel": channel,
            "y": np.where(y, "yes", "no"),
        }
    )


def table_config(**split) -> Config:
    return Config.model_validate(
        {
            "data": {
                "id_column": None,
                "created_at": None,
                "converted_at": None,
                "ordered": True,
                "target": {"column": "y", "positive": "yes"},
            },
            "split": {"test_fraction": 0.2, **split},
            "model": {"threads": 1, "lightgbm": {"num_boost_round": 60}},
        }
    )


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    from leadml.data.io import canonical_leads

    return canonical_leads(export(), table_config().data)


@pytest.fixture(scope="module")
def rolling(leads):
    return backtest(table_config(), leads, None, folds=3, log=lambda _: None)


def test_rolling_origin_moves_forward_fold_by_fold(rolling):
    assert rolling.method == "rolling_origin" and len(rolling.folds) == 3
    seen = [f["rows"]["train"] + f["rows"]["valid"] for f in rolling.folds]
    assert seen == sorted(seen) and seen[0] < seen[-1]  # each origin knows more history
    assert [f["rows"]["test"] for f in rolling.folds] == [480, 480, 480]  # a fifth of the rows each
    rates = [f["base_rate"]["test"] for f in rolling.folds]
    assert rates[-1] > rates[0]  # later periods convert more in this export


def test_every_fold_has_all_three_models_and_the_summary_their_spread(rolling):
    for fold in rolling.folds:
        assert set(fold["models"]) == set(MODELS)
        assert all(0.5 < fold["models"][m]["roc_auc"] < 1 for m in MODELS)
        members = [part.split(" x ")[-1] for part in fold["chosen"].split(" + ")]
        assert members and set(members) <= {"lightgbm", "logistic", "naive_bayes"}
    for model in MODELS:
        for metric in METRICS:
            values = [f["models"][model][metric] for f in rolling.folds]
            stats = rolling.summary[model][metric]
            assert stats["mean"] == pytest.approx(np.mean(values))
            assert stats["std"] == pytest.approx(np.std(values, ddof=1))
            assert stats["min"] <= stats["mean"] <= stats["max"]
    assert rolling.summary["leadml_wins"]["folds"] == 3


def test_the_last_fold_is_the_training_runs_own_split(rolling, leads):
    config = table_config()
    prep = prepare(config, leads, None, log=lambda _: None)
    model, _ = fit_model(config, prep, "v", log=lambda _: None)
    ev = evaluate_model(model, prep, config)
    last = rolling.folds[-1]["models"]
    assert last["leadml"]["roc_auc"] == pytest.approx(ev["test"]["roc_auc"])
    assert last["logistic_regression"]["roc_auc"] == pytest.approx(
        ev["baselines"]["logistic_regression"]["roc_auc"]
    )


def test_stratified_kfold_tests_every_row_once(leads):
    result = backtest(table_config(), leads, None, folds=3, stratified=True, log=lambda _: None)
    assert result.method == "stratified_kfold" and len(result.folds) == 3
    assert sum(f["rows"]["test"] for f in result.folds) == len(leads)
    overall = (leads["status"] == "converted").mean()
    assert all(abs(f["base_rate"]["test"] - overall) < 0.01 for f in result.folds)


def test_json_is_strict_and_keeps_per_fold_and_summary(rolling):
    rolling = copy.deepcopy(rolling)
    rolling.folds[0]["models"]["naive_bayes"]["lift_top_decile"] = float("nan")
    data = json.loads(rolling.to_json())
    assert data["folds"][0]["models"]["naive_bayes"]["lift_top_decile"] is None
    assert data["summary"]["leadml"]["roc_auc"]["mean"] == pytest.approx(
        rolling.summary["leadml"]["roc_auc"]["mean"]
    )
    assert len(data["folds"]) == 3 and data["method"] == "rolling_origin"


def test_bad_fold_counts_are_refused(leads):
    with pytest.raises(TrainingError, match="at least 2"):
        backtest(table_config(), leads, None, folds=1)
    with pytest.raises(TrainingError, match="fewer --folds"):
        backtest(table_config(), leads, None, folds=5)


def test_known_at_forgets_the_future():
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(10), unit="D")
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(10),
            "created_at": created,
            "status": ["converted"] * 10,
            "converted_at": created + pd.Timedelta(days=3),
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": np.arange(10),
            "occurred_at": created + pd.Timedelta(days=1),
            "event_type": "web_visit",
        }
    )
    past, past_events = known_at(leads, events, 0.5)
    end = pd.Timestamp("2025-01-06")
    assert list(past["lead_id"]) == [0, 1, 2, 3, 4]
    assert (past["converted_at"].dropna() < end).all() and list(past["status"]).count("open") == 3
    assert (past_events["occurred_at"] < end).all() and list(past_events["lead_id"]) == [0, 1, 2, 3]


def test_evaluate_command_prints_the_table_and_writes_json(tmp_path):
    from leadml.cli import app

    csv = tmp_path / "export.csv"
    export(n=1500).to_csv(csv, sep=";", index=False)
    cfg = tmp_path / "export.yaml"
    cfg.write_text(
        f"data:\n  source: {csv}\n  csv_separator: ';'\n  id_column: null\n  created_at: null\n"
        "  converted_at: null\n  ordered: true\n  target: {column: y, positive: 'yes'}\n"
        "split:\n  test_fraction: 0.2\nmodel:\n  threads: 1\n  lightgbm: {num_boost_round: 40}\n"
    )
    out = tmp_path / "evaluate.json"
    result = CliRunner().invoke(
        app, ["evaluate", "--config", str(cfg), "--folds", "2", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "rolling-origin" in result.output and "logistic regression" in result.output
    data = json.loads(out.read_text())
    assert len(data["folds"]) == 2 and set(data["summary"]) >= set(MODELS)


@pytest.mark.slow
def test_rolling_origin_on_time_data(small_config):
    from leadml.data.io import read_dataset

    leads, events = read_dataset(small_config.data)
    result = backtest(small_config, leads, events, folds=2, log=lambda _: None)
    assert result.method == "rolling_origin" and len(result.folds) == 2
    first, last = result.folds
    assert first["rows"]["train"] < last["rows"]["train"]
    assert all(f["models"]["leadml"]["roc_auc"] > 0.7 for f in result.folds)
