"""MLflow: run logged, model registered as challenger, pyfunc and explain give the same numbers."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from leadml.data.io import read_dataset
from leadml.predict import load_model, score_leads

pytestmark = pytest.mark.slow
AS_OF = "2026-06-30"


@pytest.fixture(scope="module")
def tracked(small_config, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    from leadml.workflow import run_training

    result = run_training(small_config, output=root / "models", log=lambda _: None, track=True)
    yield result, uri
    mp.undo()


def test_run_logged_and_registered(tracked):
    import mlflow

    result, uri = tracked
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(result.mlflow["run_id"])
    assert run.data.metrics["test_roc_auc"] == pytest.approx(result.evaluation["test"]["roc_auc"])
    assert "baseline_logistic_regression_roc_auc" in run.data.metrics
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"metrics.json", "report.html", "model_card.md"} <= names
    mv = mlflow.MlflowClient().get_model_version_by_alias("leadml", "challenger")
    assert str(mv.version) == result.mlflow["registered_version"]


def test_pyfunc_registry_and_bundle_give_identical_scores(tracked, small_config, monkeypatch):
    import mlflow

    result, uri = tracked
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    leads, events = read_dataset(small_config.data)
    some = leads.head(200)
    direct = score_leads(load_model(result.bundle_dir), some, events, AS_OF)
    via_registry = score_leads(load_model("models:/leadml@challenger"), some, events, AS_OF)
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model("models:/leadml@challenger")
    via_pyfunc = pyfunc.predict({"leads": some, "events": events, "as_of": AS_OF})
    cols = ["lead_id", "probability", "score", "grade", "reasons", "model_version"]
    pd.testing.assert_frame_equal(direct[cols], via_registry[cols])
    pd.testing.assert_frame_equal(direct[cols], via_pyfunc[cols])


def test_explain_cli_matches_predict(tracked, small_config, small_db_url):
    result, _ = tracked
    leads, events = read_dataset(small_config.data)
    lead_id = int(leads.lead_id.iloc[7])
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadml",
            "explain",
            str(lead_id),
            "--db",
            small_db_url,
            "--model",
            str(result.bundle_dir),
            "--as-of",
            AS_OF,
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    expected = score_leads(
        load_model(result.bundle_dir), leads[leads.lead_id == lead_id], events, AS_OF
    ).iloc[0]
    assert shown["score"] == expected.score and shown["grade"] == expected.grade
    assert shown["reasons"] == json.loads(expected.reasons)
    view = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadml",
            "explain",
            str(lead_id),
            "--db",
            small_db_url,
            "--model",
            str(result.bundle_dir),
            "--as-of",
            AS_OF,
        ],
        capture_output=True,
        text=True,
    )
    assert f"score {expected.score}/100" in view.stdout


def test_registry_model_found_through_the_yaml_tracking_uri(
    tracked, small_config, small_db_url, tmp_path
):
    """--model models:/... looks in the config's mlflow.tracking_uri, not in ./mlruns, and
    MLflow's own log lines and download bars stay out of leadml's output."""
    result, uri = tracked
    leads, events = read_dataset(small_config.data)
    lead_id = int(leads.lead_id.iloc[3])
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  source: {small_db_url}\nmlflow:\n  tracking_uri: {uri}\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = ["explain", str(lead_id), "--config", str(config), "--as-of", AS_OF, "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "leadml", *args, "--model", "models:/leadml@challenger"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    expected = score_leads(result.model, leads[leads.lead_id == lead_id], events, AS_OF).iloc[0]
    assert json.loads(out.stdout)["score"] == expected.score
    assert not (tmp_path / "mlruns").exists()  # the config's store was used, none created here
    assert "mlflow" not in out.stderr.lower() and "Downloading" not in out.stderr, out.stderr


def test_mlflow_keeps_out_of_leadmls_output(tracked, small_config, capfd):
    """Registering and downloading print nothing of MLflow's own (messages, logs, bars)."""
    from leadml.tracking import runs

    result, _ = tracked
    capfd.readouterr()
    logged = runs.log_training_run(small_config, result.bundle_dir, result.evaluation)
    load_model(f"models:/leadml/{logged['registered_version']}", small_config)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
