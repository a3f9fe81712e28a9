"""Everything MLflow: configured when a job starts (never at import of leadml), the training
run's params, metrics and artifacts, the registered model and its aliases, and the pyfunc
wrapper, which calls `predict.score_leads` itself so MLflow gives the same numbers."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd

from leadml import __version__
from leadml.config import Config
from leadml.errors import ModelError

CHAMPION, CHALLENGER = "champion", "challenger"


def tracking_uri(config: Config) -> str:
    """MLFLOW_TRACKING_URI, else the config's, else a SQLite store under ./mlruns."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config.mlflow.tracking_uri
    if uri:
        return uri
    root = Path("mlruns").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def configure(config: Config) -> str:
    uri = tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(config.mlflow.experiment) is None:
        location = None
        if uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI"):
            location = (Path(uri[len("sqlite:///"):]).parent / "artifacts").as_uri()
        mlflow.create_experiment(config.mlflow.experiment, artifact_location=location)
    mlflow.set_experiment(config.mlflow.experiment)
    return uri


class LeadmlPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc flavor: a DataFrame of leads (or {'leads': df, 'events': df}) -> scores."""

    def load_context(self, context) -> None:
        from leadml.bundle import load_bundle

        self.model = load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input, params: dict | None = None) -> pd.DataFrame:
        from leadml.predict import score_leads

        params = params or {}
        events = None
        if isinstance(model_input, dict):
            events = model_input.get("events")
            model_input = model_input["leads"]
            if events is not None and not isinstance(events, pd.DataFrame):
                events = pd.DataFrame(events)
            if not isinstance(model_input, pd.DataFrame):
                model_input = pd.DataFrame(model_input)
        return score_leads(self.model, model_input, events, as_of=params.get("as_of"))


def _flatten(prefix: str, value: object, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(value)[:500]
    return out


def log_training_run(config: Config, bundle_dir: Path, evaluation: dict, *, config_path: str | None = None) -> dict:
    """Log params, metrics, artifacts and the pyfunc model; register it as the challenger."""
    uri = configure(config)
    name = config.mlflow.registered_model
    with mlflow.start_run(run_name=f"train-{evaluation['model_version']}") as run:
        mlflow.log_params(_flatten("", config.model_dump(mode="json"), {}))
        mlflow.set_tags({"leadml.version": __version__, "model_version": evaluation["model_version"],
                         "model_kind": evaluation["model_kind"], "config_path": str(config_path or "")})
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
        version = info.registered_model_version
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    client.set_model_version_tag(name, str(version), "model_version", evaluation["model_version"])
    return {"tracking_uri": uri, "run_id": run.info.run_id, "registered_model": name,
            "registered_version": str(version), "alias": CHALLENGER}


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


def download_bundle(uri: str, config: Config | None = None) -> Path:
    """Resolve models:/name@alias (or runs:/...) to a local bundle folder."""
    configure(config or Config())
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/artifacts/bundle"))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a bad URI
        raise ModelError(f"cannot load {uri} from the MLflow registry at {mlflow.get_tracking_uri()}: {exc}".splitlines()[0]) from None
    return local


def alias_version(config: Config, alias: str) -> str | None:
    """The registered version an alias points at, or None."""
    configure(config)
    try:
        return mlflow.MlflowClient().get_model_version_by_alias(config.mlflow.registered_model, alias).version
    except Exception:  # noqa: BLE001 - no such model or alias
        return None
