"""The MLflow model registry: which store, aliases, version tags, `models:/` downloads and THE
default-model rule every entry point uses (`default_model_ref`).

mlflow itself is imported inside `_mlflow()` only: it takes seconds to import, and scoring a
plain bundle folder (or `leadml --help`) must not pay for it. MLflow is configured when a call
needs it, never at import, and its own logging, warnings and progress bars are kept out of
leadml's output (`quiet`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import yaml

from leadml.bundle import read_bundle_meta
from leadml.calibrate import GradeThresholds
from leadml.config import Config
from leadml.errors import ModelError

CHAMPION, CHALLENGER = "champion", "challenger"
REGISTRY_PREFIXES = ("models:/", "runs:/")
DEFAULT_STORE = Path("mlruns") / "mlflow.db"
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # no such model / alias
_QUIET_LOGGERS = ("mlflow", "alembic")


def _mlflow() -> ModuleType:
    import mlflow

    return mlflow


def _drop_warning(*_args: object, **_kwargs: object) -> None:
    return None


@contextmanager
def quiet() -> Iterator[None]:
    """MLflow's log lines, messages, warnings and artifact progress bars silenced for one call
    (imports mlflow: used around MLflow calls only)."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # MLflow re-enables some of its warnings ("once") inside its own calls: not shown.
            warnings.showwarning = _drop_warning
            # Its own stderr stream ("Successfully registered model ...", log lines) is muted.
            from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM as stream

            was, stream.enabled = stream.enabled, False
            try:
                yield
            finally:
                stream.enabled = was
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar


def is_registry_ref(ref: str | Path) -> bool:
    """True for models:/name@alias, models:/name/3 and runs:/... references."""
    return str(ref).startswith(REGISTRY_PREFIXES)


def tracking_uri(config: Config) -> str:
    """MLFLOW_TRACKING_URI, else the config's mlflow.tracking_uri, else ./mlruns/mlflow.db."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config.mlflow.tracking_uri
    return uri or f"sqlite:///{DEFAULT_STORE.resolve()}"


def store_exists(config: Config) -> bool:
    """Whether a tracking store is there to ask; a local one is looked for, never created."""
    uri = tracking_uri(config)
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).is_file()
    if uri.startswith("file:"):
        return Path(uri[len("file:") :].removeprefix("//")).exists()
    if "://" not in uri:
        return Path(uri).exists()  # a plain folder: MLflow's file store
    return True  # a tracking server or database elsewhere: asking creates nothing here


def configure(config: Config) -> ModuleType:
    """Point MLflow at the configured store (the call-time configuration); the mlflow module."""
    mlflow = _mlflow()
    uri = tracking_uri(config)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return mlflow


def model_uri(config: Config, ref: str) -> str:
    """models:/name/<version> for a version number, models:/name@<alias> for an alias."""
    name = config.mlflow.registered_model
    return f"models:/{name}/{ref}" if str(ref).isdigit() else f"models:/{name}@{ref}"


def default_model_ref(config: Config) -> str:
    """THE default model of every entry point: the champion alias once one exists, else
    <models_dir>/latest. Looking never creates a tracking store."""
    latest = str(Path(config.models_dir) / "latest")
    if not store_exists(config):
        return latest
    return model_uri(config, CHAMPION) if alias_version(config, CHAMPION) else latest


def alias_version(config: Config, alias: str) -> str | None:
    """The registered version an alias points at; None when the model or the alias is absent."""
    with quiet():
        mlflow = configure(config)
        try:
            version = (
                mlflow.MlflowClient()
                .get_model_version_by_alias(config.mlflow.registered_model, alias)
                .version
            )
        except Exception as exc:  # noqa: BLE001 - a store that cannot be read is one clear error
            if getattr(exc, "error_code", None) in _MISSING:
                return None
            raise _registry_error(config, f"alias {alias!r}", exc) from None
    return str(version)  # MLflow 3 returns an int here, 2.x a string


def download_bundle(uri: str, config: Config) -> Path:
    """Resolve models:/name@alias (or runs:/...) in the configured store to a local bundle folder."""
    with quiet():
        mlflow = configure(config)
        root = uri.rstrip("/")
        try:
            mlmodel = yaml.safe_load(mlflow.artifacts.load_text(f"{root}/MLmodel"))
            # log_model copies the bundle folder under artifacts/<its own name>; MLmodel says where.
            path = mlmodel["flavors"]["python_function"]["artifacts"]["bundle"]["path"]
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/{path}"))
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a bad URI
            raise _registry_error(config, uri, exc) from None


def _registry_error(config: Config, what: str, exc: Exception) -> ModelError:
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    return ModelError(
        f"cannot read {what} from the MLflow registry at {tracking_uri(config)}: {first}"
    )


def set_alias(config: Config, alias: str, version: str) -> None:
    """Point `alias` (champion, challenger) at a registered version."""
    with quiet():
        configure(config).MlflowClient().set_registered_model_alias(
            config.mlflow.registered_model, alias, str(version)
        )


def version_tags(config: Config, version: str) -> dict[str, str]:
    """The tags of a registered version ({} when it does not exist)."""
    with quiet():
        mlflow = configure(config)
        try:
            mv = mlflow.MlflowClient().get_model_version(
                config.mlflow.registered_model, str(version)
            )
        except Exception as exc:  # noqa: BLE001 - a store that cannot be read is one clear error
            if getattr(exc, "error_code", None) in _MISSING:
                return {}
            raise _registry_error(config, f"version {version}", exc) from None
    return dict(mv.tags)


def tag_version(config: Config, version: str, tags: dict[str, object]) -> None:
    """Set tags on a registered version (values as text, at most 5,000 characters)."""
    with quiet():
        client = configure(config).MlflowClient()
        for key, value in tags.items():
            client.set_model_version_tag(
                config.mlflow.registered_model, str(version), key, str(value)[:5000]
            )


def champion_grades(config: Config) -> GradeThresholds | None:
    """The current champion's grade thresholds, or None without a champion (or a store)."""
    if not store_exists(config):
        return None
    version = alias_version(config, CHAMPION)
    if version is None:
        return None
    grades = read_bundle_meta(download_bundle(model_uri(config, version), config)).get("grades")
    if not grades:
        return None
    return GradeThresholds(config.grades.names, int(grades["hot_min"]), int(grades["warm_min"]))
