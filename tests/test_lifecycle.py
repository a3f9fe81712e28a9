"""Champion/challenger: the paired bootstrap, the promotion rule, and the whole registry story
(first champion, a better model promoted, a worse one refused, --force, rollback, grade stability)
on a temporary MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from leadml.config import Config, PromotionConfig, override
from leadml.console import comparison_table
from leadml.lifecycle import (
    Comparison,
    Promotion,
    _auc_groups,
    compare,
    paired_bootstrap,
    weighted_auc,
)


def _labels_and_scores(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(np.int64)
    strong = np.round(1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.6 * y - 2))), 3)
    weak = np.round(1 / (1 + np.exp(-(rng.normal(0, 1, n) + 0.4 * y - 2))), 3)
    return y, strong, weak


def test_weighted_auc_matches_sklearn_with_ties_and_weights():
    y, strong, _ = _labels_and_scores()
    w = np.random.default_rng(1).integers(0, 4, len(y)).astype(float)
    groups = _auc_groups(np.round(strong, 2))  # many ties
    assert weighted_auc(groups, y, w) == pytest.approx(
        roc_auc_score(y, np.round(strong, 2), sample_weight=w), abs=1e-12
    )
    assert np.isnan(weighted_auc(groups, np.zeros(len(y)), w))


def test_paired_bootstrap_identical_models_have_a_zero_interval_and_is_seeded():
    y, strong, weak = _labels_and_scores()
    same = paired_bootstrap(y, strong, strong, samples=200, seed=3)
    assert same["diff_ci"] == (0.0, 0.0)
    assert same["auc_new"] == pytest.approx(roc_auc_score(y, strong))
    a = paired_bootstrap(y, strong, weak, samples=200, seed=3)
    b = paired_bootstrap(y, strong, weak, samples=200, seed=3)
    assert a == b
    assert a["ci_new"][0] < a["auc_new"] < a["ci_new"][1]


def test_compare_refuses_worse_accepts_better_and_respects_tolerance():
    y, strong, weak = _labels_and_scores()
    cfg = PromotionConfig(bootstrap_samples=300)
    better = compare(y, strong, weak, cfg)
    worse = compare(y, weak, strong, cfg)
    assert better.passed and better.diff_low > 0
    assert not worse.passed and worse.diff_high < 0
    assert better.auc_diff == pytest.approx(roc_auc_score(y, strong) - roc_auc_score(y, weak))
    assert {"roc_auc", "pr_auc", "ece", "lift_top_decile", "roc_auc_low"} <= set(better.challenger)
    lenient = compare(y, weak, strong, cfg.model_copy(update={"tolerance": 0.5}))
    assert lenient.passed  # allowed to lose up to 0.5 AUC


def test_passed_boundary():
    c = Comparison({}, {}, -0.01, -0.02, -0.001, 0.95, 0.0, 100, 10, 2)
    assert not c.passed
    c.tolerance = 0.001
    assert c.passed


def test_comparison_table_lists_metrics():
    from rich.console import Console

    y, strong, weak = _labels_and_scores()
    result = Promotion(
        "3",
        "2",
        True,
        False,
        "not worse",
        compare(y, strong, weak, PromotionConfig(bootstrap_samples=100)),
    )
    console = Console(record=True, width=200)
    console.print(comparison_table(result))
    text = console.export_text()
    for label in (
        "ROC AUC (95% CI)",
        "PR AUC",
        "ECE",
        "top-decile lift",
        "challenger v3 vs champion v2",
    ):
        assert label in text


# ---------------------------------------------------------------- the registry story


def _weak_config(url: str) -> Config:
    """A deliberately worse model: one attribute, one event type, logistic only, quantile grades."""
    return Config.model_validate(
        {
            "data": {"source": url, "categorical": ["source"], "numeric": []},
            "features": {"event_types": ["email_open"], "windows_days": [30]},
            "model": {"candidates": ["logistic"], "threads": 1},
            "grades": {"mode": "quantile"},
        }
    )


@pytest.fixture(scope="module")
def story(small_config, small_db_url, trained, tmp_path_factory):
    """Weak model first champion -> good model promoted -> weak retrain refused -> CLI refuse,
    --force, rollback. Returns what each step produced."""
    from typer.testing import CliRunner

    from leadml.cli import app
    from leadml.lifecycle import promote
    from leadml.tracking import registry, runs
    from leadml.workflow import _previous_grades, run_training

    root = tmp_path_factory.mktemp("registry")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    quiet, s = (lambda _: None), {}
    weak = _weak_config(small_db_url)
    s["ref_before"] = registry.default_model_ref(small_config)
    s["weak1"] = run_training(weak, output=root / "models", log=quiet, track=True)
    s["first"] = promote(small_config, log=quiet)
    s["good"] = runs.log_training_run(small_config, trained.bundle_dir, trained.evaluation)
    s["better"] = promote(small_config, log=quiet)
    s["tags_better"] = registry.version_tags(small_config, "2")  # before the rollback re-tags it
    s["weak2_log"] = []
    s["weak2"] = run_training(weak, output=root / "models", log=s["weak2_log"].append, track=True)
    s["prev_kept"] = _previous_grades(weak, True, quiet)
    s["prev_regrade"] = _previous_grades(override(weak, grades__regrade=True), True, quiet)
    s["worse"] = promote(small_config, log=quiet)
    config = root / "config.yaml"
    config.write_text(f"data:\n  source: {small_db_url}\n")
    runner = CliRunner()
    s["cli_refused"] = runner.invoke(app, ["promote", "--config", str(config)])
    s["cli_forced"] = runner.invoke(app, ["promote", "--config", str(config), "--force"])
    s["champion_after_force"] = registry.alias_version(small_config, registry.CHAMPION)
    good = s["good"]["registered_version"]
    s["cli_rollback"] = runner.invoke(
        app, ["promote", "--config", str(config), "--version", good, "--force"]
    )
    s["champion_after_rollback"] = registry.alias_version(small_config, registry.CHAMPION)
    s["ref_after"] = registry.default_model_ref(small_config)
    s["tags"] = {v: registry.version_tags(small_config, v) for v in ("1", "2", "3")}
    s["uri"] = f"sqlite:///{root}/mlflow.db"
    s["weak"] = weak
    yield s
    mp.undo()


@pytest.mark.slow
def test_first_challenger_becomes_champion(story):
    assert story["ref_before"] == "models/latest"  # no store yet: the bundle, and no store created
    first = story["first"]
    assert first.promoted and not first.forced and first.comparison is None
    assert first.challenger_version == story["weak1"].mlflow["registered_version"] == "1"
    assert story["tags"]["1"]["leadml.promotion.decision"] == "promoted"
    assert "first champion" in story["tags"]["1"]["leadml.promotion.reason"]


@pytest.mark.slow
def test_better_challenger_is_promoted_with_the_evidence_recorded(story, trained):
    import mlflow

    better = story["better"]
    c = better.comparison
    assert better.promoted and not better.forced
    assert (better.challenger_version, better.champion_version) == ("2", "1")
    assert c.diff_low > 0 and c.challenger["roc_auc"] > c.champion["roc_auc"] + 0.05
    assert c.challenger["model_version"] == trained.model.version
    assert c.n == trained.evaluation["test"]["n"]  # the same holdout slice as training's test
    assert c.challenger["roc_auc"] == pytest.approx(trained.evaluation["test"]["roc_auc"], abs=1e-9)
    tags = story["tags_better"]
    assert (
        tags["leadml.promotion.decision"] == "promoted" and tags["leadml.previous_champion"] == "1"
    )
    mlflow.set_tracking_uri(story["uri"])
    run = mlflow.get_run(tags["leadml.promotion.run_id"])
    assert run.data.metrics["auc_diff"] == pytest.approx(c.auc_diff)
    assert run.data.metrics["promoted"] == 1.0 and run.data.tags["leadml.kind"] == "promotion"
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="comparison.json"
    )
    payload = json.loads(Path(path).read_text())
    assert payload["decision"] == "promoted" and payload["comparison"]["diff_low"] == pytest.approx(
        c.diff_low
    )


@pytest.mark.slow
def test_worse_challenger_is_refused_and_champion_kept(story):
    worse = story["worse"]
    assert not worse.promoted and worse.refused
    assert (worse.challenger_version, worse.champion_version) == ("3", "2")
    assert worse.comparison.diff_high < 0
    # the CLI --force below re-tags it later
    assert story["tags"]["3"]["leadml.promotion.decision"] in ("refused", "forced")
    assert story["cli_refused"].exit_code == 1, story["cli_refused"].output
    assert (
        "not promoted" in story["cli_refused"].output and "ROC AUC" in story["cli_refused"].output
    )


@pytest.mark.slow
def test_force_promotes_and_is_recorded_then_rollback(story):
    assert story["cli_forced"].exit_code == 0, story["cli_forced"].output
    assert "FORCED" in story["cli_forced"].output
    assert story["champion_after_force"] == "3"
    assert story["tags"]["3"]["leadml.promotion.decision"] == "forced"
    assert story["tags"]["3"]["leadml.promotion.forced"] == "true"
    assert story["cli_rollback"].exit_code == 0, story["cli_rollback"].output
    assert story["champion_after_rollback"] == "2"


@pytest.mark.slow
def test_scorers_default_to_the_champion(story, trained, monkeypatch):
    from leadml.predict import load_model

    assert story["ref_after"] == "models:/leadml@champion"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", story["uri"])
    assert load_model("models:/leadml@champion").version == trained.model.version


@pytest.mark.slow
def test_quantile_grades_are_kept_across_retrains_unless_regrade(story):
    own = story["weak1"].model.grades
    kept = story["weak2"].model.grades
    # the champion at the time of the retrain is the good model, with fixed grades 40/15
    champion = story["prev_kept"]
    assert (champion.hot_min, champion.warm_min) == (40, 15)
    assert (own.hot_min, own.warm_min) != (40, 15)  # the weak model's own quantiles differ
    assert (kept.hot_min, kept.warm_min) == (40, 15)
    assert any("keeping the champion's thresholds" in line for line in story["weak2_log"])
    assert story["prev_regrade"] is None


@pytest.mark.slow
def test_server_started_before_the_first_promotion_reloads_the_champion(story, monkeypatch):
    """Started with no champion it serves models/latest; after a promotion a reload serves the
    champion, not the newer latest bundle (weak2, here standing for a refused challenger)."""
    import mlflow
    from fastapi.testclient import TestClient

    from leadml.serve.app import create_app
    from leadml.tracking import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", story["uri"])
    weak = override(story["weak"], models_dir=str(story["weak2"].bundle_dir.parent))
    client = mlflow.MlflowClient(tracking_uri=story["uri"], registry_uri=story["uri"])
    client.delete_registered_model_alias("leadml", registry.CHAMPION)
    try:
        with TestClient(create_app(None, weak.data.source, weak)) as c:
            assert c.get("/readyz").json()["model_version"] == story["weak2"].model.version
            registry.set_alias(weak, registry.CHAMPION, "1")  # the promotion, after start-up
            assert c.post("/admin/reload").status_code == 200
            ready = c.get("/readyz").json()
        assert ready["model_version"] == story["weak1"].model.version
        assert ready["model_ref"] == "models:/leadml@champion"
    finally:
        registry.set_alias(weak, registry.CHAMPION, story["champion_after_rollback"])
