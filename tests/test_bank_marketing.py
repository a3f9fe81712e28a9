"""The quality bar on real data (UCI bank marketing, ../shared/data; skipped when absent).

Forward split (earliest 80% train + validation, latest 20% test, `duration` declared leaking):
leadml's test ROC AUC >= the logistic regression baseline's on the same rows, with the
base-rate shift said plainly; stratified 5-fold ROC AUC >= 0.80; with `duration` kept the leak
detector names it and `fail_on_leak` stops the run.
"""

import json
import math
import os
from pathlib import Path

import pytest

from leadml.config import load_config, override
from leadml.errors import TrainingError

ROOT = Path(__file__).resolve().parents[1]
CSV = Path(
    os.environ.get(
        "LEADML_BANK_CSV",
        ROOT.parent / "shared" / "data" / "bank-marketing" / "bank-additional-full.csv",
    )
)

pytestmark = pytest.mark.skipif(not CSV.is_file(), reason=f"bank marketing data not found at {CSV}")


@pytest.fixture(scope="module")
def config():
    cfg = load_config(ROOT / "configs" / "bank_marketing.yaml")
    return override(cfg, data__source=str(CSV), model__threads=2)


@pytest.fixture(scope="module")
def dataset(config):
    from leadml.data.io import read_dataset

    return read_dataset(config.data)


@pytest.mark.slow
def test_forward_split_beats_logistic_regression_and_warns_of_the_base_rate(
    config, tmp_path_factory
):
    from leadml.workflow import run_training

    out = tmp_path_factory.mktemp("bank_models")
    result = run_training(config, output=out, log=lambda _: None, track=False)
    ev = result.evaluation
    assert ev["split"]["test"] == 8238 and ev["split"]["method"] == "order"
    assert ev["test"]["roc_auc"] >= ev["baselines"]["logistic_regression"]["roc_auc"]
    assert ev["test"]["roc_auc"] > 0.70
    assert "duration" not in result.model.spec.names
    br = ev["base_rate"]
    assert br["shift_warning"] and br["test"] > 0.3 and "30.8%" in br["message"]
    metrics = json.loads((result.bundle_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["test"]["ece"]) and len(metrics["reliability"]) == 10
    assert "Base-rate shift" in (result.bundle_dir / "report.html").read_text()


@pytest.mark.slow
def test_stratified_five_fold_reaches_080(config, dataset):
    from leadml.backtest import backtest

    leads, events = dataset
    result = backtest(config, leads, events, folds=5, stratified=True, log=lambda _: None)
    summary = result.summary
    assert summary["leadml"]["roc_auc"]["mean"] >= 0.80
    assert summary["leadml"]["roc_auc"]["mean"] >= summary["logistic_regression"]["roc_auc"]["mean"]
    assert summary["leadml"]["roc_auc"]["std"] < 0.02


@pytest.mark.slow
def test_duration_is_caught_when_not_declared(config, dataset):
    from leadml.workflow import fit_model, prepare

    leads, events = dataset
    leaky = override(config, data__leaking=[], screening__fail_on_leak=True)
    prep = prepare(leaky, leads, events, log=lambda _: None)
    assert "duration" in prep.spec.names
    lines: list[str] = []
    with pytest.raises(TrainingError, match=r"\['duration'\].*fail_on_leak.*ROC AUC falls"):
        fit_model(leaky, prep, "leak", log=lines.append)
    assert any(line.startswith("LEAK WARNING: feature 'duration'") for line in lines)
