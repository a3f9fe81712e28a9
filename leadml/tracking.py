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
        if uri.startswith("sqlite:///"):
            # Artifacts beside the SQLite store (MLflow's default is ./mlruns under the cwd).
            location = (Path(uri[len("sqlite:///") :]).resolve().parent / "artifacts").as_uri()
        mlflow.create_experiment(config.mlflow.experiment, artifact_location=location)
    mlflow.set_experiment(config.mlflow.experiment)
    return uri


class LeadmlPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc flavor: a DataFrame of leads, or {'leads': df, 'events': df, 'as_of': ts},
    -> the lead_scores columns, computed by leadml.predict.score_leads itself."""

    def load_context(self, context) -> None:
        from leadml.bundle import load_bundle

        self.model = load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input, params: dict | None = None) -> pd.DataFrame:
        from leadml.predict import score_leads

        params = params or {}
        events, as_of = None, params.get("as_of")
        if isinstance(model_input, dict):
            # MLflow drops `params` for models logged without a params schema, so the dict form
            # also carries as_of: {"leads": df, "events": df, "as_of": "2026-06-30"}.
            as_of = model_input.get("as_of", as_of)
            events = model_input.get("events")
            model_input = model_input["leads"]
            if events is not None and not isinstance(events, pd.DataFrame):
                events = pd.DataFrame(events)
            if not isinstance(model_input, pd.DataFrame):
                model_input = pd.DataFrame(model_input)
        return score_leads(self.model, model_input, events, as_of=as_of)


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
    uri = configure(config)
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
        version = info.registered_model_version
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    client.set_model_version_tag(name, str(version), "model_version", evaluation["model_version"])
    return {
        "tracking_uri": uri,
        "run_id": run.info.run_id,
        "registered_model": name,
        "registered_version": str(version),
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


def download_bundle(uri: str, config: Config | None = None) -> Path:
    """Resolve models:/name@alias (or runs:/...) to a local bundle folder."""
    import yaml

    configure(config or Config())
    root = uri.rstrip("/")
    try:
        mlmodel = yaml.safe_load(mlflow.artifacts.load_text(f"{root}/MLmodel"))
        # log_model copies the bundle folder under artifacts/<its own name>; MLmodel records where.
        path = mlmodel["flavors"]["python_function"]["artifacts"]["bundle"]["path"]
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/{path}"))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a bad URI
        raise ModelError(
            f"cannot load {uri} from the MLflow registry at {mlflow.get_tracking_uri()}: {exc}".splitlines()[
                0
            ]
        ) from None
    return local


def alias_version(config: Config, alias: str) -> str | None:
    """The registered version an alias points at, or None."""
    configure(config)
    try:
        version = (
            mlflow.MlflowClient()
            .get_model_version_by_alias(config.mlflow.registered_model, alias)
            .version
        )
    except Exception:  # noqa: BLE001 - no such model or alias
        return None
    return str(version)  # MLflow 3 returns an int here, 2.x a string


# ---------------------------------------------------------------- registry helpers (lifecycle)


def model_uri(config: Config, ref: str) -> str:
    """models:/name/<version> for a version number, models:/name@<alias> for an alias."""
    name = config.mlflow.registered_model
    return f"models:/{name}/{ref}" if str(ref).isdigit() else f"models:/{name}@{ref}"


def set_alias(config: Config, alias: str, version: str) -> None:
    """Point `alias` (champion, challenger) at a registered version."""
    configure(config)
    mlflow.MlflowClient().set_registered_model_alias(
        config.mlflow.registered_model, alias, str(version)
    )


def version_tags(config: Config, version: str) -> dict[str, str]:
    """The tags of a registered version ({} when it does not exist)."""
    configure(config)
    try:
        return dict(
            mlflow.MlflowClient()
            .get_model_version(config.mlflow.registered_model, str(version))
            .tags
        )
    except Exception:  # noqa: BLE001 - no such model or version
        return {}


def tag_version(config: Config, version: str, tags: dict[str, object]) -> None:
    """Set tags on a registered version (values as text, at most 5,000 characters)."""
    configure(config)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(
            config.mlflow.registered_model, str(version), key, str(value)[:5000]
        )


def log_comparison(
    config: Config, run_name: str, metrics: dict[str, float], tags: dict[str, str], payload: dict
) -> str:
    """Record a champion/challenger comparison as its own run (metrics + comparison.json); its id."""
    configure(config)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"leadml.kind": "promotion", **tags})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)})
        mlflow.log_dict(payload, "comparison.json")
    return run.info.run_id


def champion_grades(config: Config):
    """The current champion's grade thresholds (GradeThresholds), or None without a champion."""
    from leadml.bundle import read_bundle_meta
    from leadml.calibrate import GradeThresholds

    version = alias_version(config, CHAMPION)
    if version is None:
        return None
    grades = read_bundle_meta(download_bundle(model_uri(config, version), config)).get("grades")
    if not grades:
        return None
    return GradeThresholds(config.grades.names, int(grades["hot_min"]), int(grades["warm_min"]))


def default_model_ref(config: Config, fallback: str | None = None) -> str:
    """models:/<name>@champion once a champion exists, else `fallback` (default <models_dir>/latest).

    No MLflow store is created just to look: a missing local SQLite store means no champion.
    """
    fallback = fallback or str(Path(config.models_dir) / "latest")
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config.mlflow.tracking_uri
    if not uri and not Path("mlruns/mlflow.db").exists():
        return fallback
    if uri and uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return fallback
    return model_uri(config, CHAMPION) if alias_version(config, CHAMPION) else fallback
