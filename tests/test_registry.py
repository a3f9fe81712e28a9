"""The one default-model rule and the registry's errors, without training a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadml.config import Config
from leadml.errors import ModelError
from leadml.tracking import registry


def _config(tmp_path: Path, uri: str | None) -> Config:
    return Config.model_validate(
        {"models_dir": str(tmp_path / "models"), "mlflow": {"tracking_uri": uri}}
    )


def test_no_store_means_latest_and_looking_creates_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "elsewhere" / "mlflow.db"
    for uri in (None, f"sqlite:///{store}", f"file:{tmp_path / 'runs'}"):
        config = _config(tmp_path, uri)
        assert not registry.store_exists(config)
        assert registry.default_model_ref(config) == str(tmp_path / "models" / "latest")
    assert not (tmp_path / "mlruns").exists() and not store.parent.exists()


def test_the_yaml_store_is_used_and_without_a_champion_latest(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("leadml")
    config = _config(tmp_path, uri)
    assert registry.store_exists(config)
    assert registry.alias_version(config, registry.CHAMPION) is None
    assert registry.default_model_ref(config) == str(tmp_path / "models" / "latest")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    assert not registry.store_exists(config)  # the environment wins over the YAML


def test_an_unreadable_store_is_one_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    broken = tmp_path / "mlflow.db"
    broken.write_bytes(b"this is not a database" * 100)
    config = _config(tmp_path, f"sqlite:///{broken}")
    with pytest.raises(ModelError, match=r"cannot read alias 'champion' from the MLflow registry"):
        registry.default_model_ref(config)
    with pytest.raises(ModelError, match=str(broken)):
        registry.download_bundle("models:/leadml@champion", config)


def test_model_uri_by_version_or_alias():
    config = Config()
    assert registry.model_uri(config, "3") == "models:/leadml/3"
    assert registry.model_uri(config, "champion") == "models:/leadml@champion"
    assert registry.is_registry_ref("runs:/abc/model") and not registry.is_registry_ref("models")
