"""MLflow runs: the training run's params, metrics and artifacts, its registration as the
challenger, promotion comparisons, and the pyfunc wrapper, which calls `predict.score_leads`
itself so MLflow gives the same numbers as leadml.

mlflow is imported at the top here on purpose: only training and promotion import this module,
and the pyfunc class must subclass `mlflow.pyfunc.PythonModel`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leadml import __version__
from leadml.bundle import load_bundle
from leadml.config import Config
from leadml.predict import score_leads
from leadml.tracking.registry import CHALLENGER, configure, quiet, tracking_uri

# Importing mlflow.pyfunc, and subclassing PythonModel with an untyped `predict`, make MLflow
# warn (it wants type hints for its own input validation, which would reject the dict form):
# both silenced here, for this module only.
with quiet():
    import mlflow
    import mlflow.pyfunc

    class LeadmlPyfunc(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc flavor: a DataFrame of leads, or {'leads': df, 'events': df,
        'as_of': ts}, -> the lead_scores columns, computed by leadml.predict.score_leads."""

        def load_context(self, context) -> None:
            self.model = load_bundle(context.artifacts["bundle"])

        def predict(self, context, model_input, params: dict | None = None) -> pd.DataFrame:
            params = params or {}
            events, as_of = None, params.get("as_of")
            if isinstance(model_input, dict):
                # MLflow drops `params` for models logged without a params schema, so the dict
                # form also carries as_of: {"leads": df, "events": df, "as_of": "2026-06-30"}.
                as_of = model_input.get("as_of", as_of)
                events = model_input.get("events")
                model_input = model_input["leads"]
                if events is not None and not isinstance(events, pd.DataFrame):
                    events = pd.DataFrame(events)
                if not isinstance(model_input, pd.DataFrame):
                    model_input = pd.DataFrame(model_input)
            return score_leads(self.model, model_input, events, as_of=as_of)


def start_experiment(config: Config) -> str:
    """Configure MLflow and select the experiment (created beside a SQLite store); the URI."""
    configure(config)
    uri = tracking_uri(config)
    if mlflow.get_experiment_by_name(config.mlflow.experiment) is None:
        location = None
        if uri.startswith("sqlite:///"):
            # Artifacts beside the SQLite store (MLflow's default is ./mlruns under the cwd).
            location = (Path(uri[len("sqlite:///") :]).resolve().parent / "artifacts").as_uri()
        mlflow.create_experiment(config.mlflow.experiment, artifact_location=location)
    mlflow.set_experiment(config.mlflow.experiment)
    return uri


def _flatten(prefix: str, value: object, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(value)[:500]
    return out


def log_training_run(
    config: Config, bundle_dir: Path, evaluation: dict, *, config_path: str | None = None
) -> dict:
    """Log params, metrics, artifacts and the pyfunc model; register it as the challenger."""
    with quiet():
        uri = start_experiment(config)
        name = config.mlflow.registered_model
        with mlflow.start_run(run_name=f"train-{evaluation['model_version']}") as run:
            mlflow.log_params(_flatten("", config.model_dump(mode="json"), {}))
            mlflow.set_tags(
                {
                    "leadml.version": __version__,
                    "model_version": evaluation["model_version"],
                    "model_kind": evaluation["model_kind"],
                    "config_path": str(config_path or ""),
                }
            )
            mlflow.log_metrics(_metrics(evaluation))
            for artifact in ("metrics.json", "report.html", "model_card.md"):
                if (bundle_dir / artifact).exists():
                    mlflow.log_artifact(str(bundle_dir / artifact))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=LeadmlPyfunc(),
                artifacts={"bundle": str(bundle_dir)},
                pip_requirements=[f"leadml=={__version__}"],
                registered_model_name=name,
            )
            version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(name, CHALLENGER, version)
        client.set_model_version_tag(name, version, "model_version", evaluation["model_version"])
    return {
        "tracking_uri": uri,
        "run_id": run.info.run_id,
        "registered_model": name,
        "registered_version": version,
        "alias": CHALLENGER,
    }


def _metrics(evaluation: dict) -> dict[str, float]:
    out = {}
    for section, values in [("test", evaluation["test"]), ("valid", evaluation.get("valid", {}))]:
        out.update({f"{section}_{k}": float(v) for k, v in values.items() if _finite(v)})
    for base, values in evaluation["baselines"].items():
        out.update({f"baseline_{base}_{k}": float(v) for k, v in values.items() if _finite(v)})
    out["train_seconds"] = float(evaluation.get("train_seconds", 0.0))
    return out


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and v == v and abs(v) != float("inf")


def log_comparison(
    config: Config, run_name: str, metrics: dict[str, float], tags: dict[str, str], payload: dict
) -> str:
    """Record a champion/challenger comparison as its own run (metrics + comparison.json); its id."""
    with quiet():
        start_experiment(config)
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags({"leadml.kind": "promotion", **tags})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)})
            mlflow.log_dict(payload, "comparison.json")
    return run.info.run_id
