"""The scoring model bundle: save and load with checks.

A bundle folder holds `model.joblib` (the pickled `LeadModel`) and `bundle.json` (format
version, SHA-256 of model.joblib, library versions, metadata, and `bundle_sha256`: the SHA-256
of bundle.json's own other fields, which include the model's hash, so it covers both files).
Joblib files are pickles and can run code when loaded: bundles are trusted files. Loading
verifies both hashes before unpickling, so a corrupt, truncated or swapped model.joblib and a
hand-edited bundle.json (say, its `model_version`) are refused alike. The hashes catch
accidents and edits, not an attacker who can rewrite both files: that is what file
permissions on models/ are for.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from leadml.calibrate import Calibrator, GradeThresholds
from leadml.errors import ModelError
from leadml.explain import Groups, feature_facets, reason_groups
from leadml.features import FeatureSpec

FORMAT_VERSION = 1
MODEL_FILE = "model.joblib"
META_FILE = "bundle.json"
SEAL_KEY = "bundle_sha256"  # bundle.json's hash of its own other fields
PINNED = ("lightgbm", "scikit-learn", "numpy")  # must match major.minor to unpickle safely


@dataclass
class LeadModel:
    """Everything needed to turn leads into scores, grades and reasons."""

    spec: FeatureSpec
    model: object  # train.TreeModel | train.LinearModel
    calibrator: Calibrator
    grades: GradeThresholds
    version: str
    top_positive: int = 3
    top_negative: int = 3
    metadata: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)  # training distributions, for monitoring
    # config explain.fit_features / explain.engagement_features at training time; a plain
    # default so bundles pickled before this field existed still load
    facet_patterns: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    @property
    def groups(self) -> Groups:
        cache = self.__dict__.setdefault("_groups", None)
        if cache is None:
            cache = self.__dict__["_groups"] = reason_groups(self.spec)
        return cache

    @property
    def is_fit(self) -> np.ndarray:
        """Per feature: True when it counts toward the fit sub-score, False for engagement."""
        cache = self.__dict__.get("_is_fit")
        if cache is None:
            fit, engagement = self.facet_patterns
            cache = self.__dict__["_is_fit"] = feature_facets(self.spec, fit, engagement)
        return cache

    @property
    def kind(self) -> str:
        return self.model.kind

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_groups", None)
        state.pop("_is_fit", None)
        return state

    def set_threads(self, threads: int) -> None:
        """Prediction threads (Spark tasks use 1)."""
        if hasattr(self.model, "threads"):
            self.model.threads = threads


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("leadml", "lightgbm", "scikit-learn", "numpy", "pandas"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(model: LeadModel, directory: str | Path) -> Path:
    """Write model.joblib then bundle.json (written last, atomically: its presence = complete)."""
    import joblib

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / MODEL_FILE
    tmp = model_path.with_suffix(".tmp")
    joblib.dump(model, tmp, compress=3)
    os.replace(tmp, model_path)
    meta = {
        "format_version": FORMAT_VERSION,
        "model_version": model.version,
        "model_kind": model.kind,
        "sha256": sha256_of(model_path),
        "libraries": library_versions(),
        "features": model.spec.names,
        "grades": {
            "names": list(model.grades.names),
            "hot_min": model.grades.hot_min,
            "warm_min": model.grades.warm_min,
        },
        "metadata": jsonable(model.metadata),
    }
    meta = seal_meta(meta)
    tmp_meta = directory / (META_FILE + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2))
    os.replace(tmp_meta, directory / META_FILE)
    return directory


def meta_digest(meta: dict) -> str:
    """SHA-256 of bundle.json's fields other than `bundle_sha256` (canonical JSON)."""
    body = {k: v for k, v in meta.items() if k != SEAL_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def seal_meta(meta: dict) -> dict:
    """The metadata with its own hash recorded (what save_bundle writes)."""
    return {**{k: v for k, v in meta.items() if k != SEAL_KEY}, SEAL_KEY: meta_digest(meta)}


def _check_seal(directory: Path, meta: dict) -> None:
    recorded = meta.get(SEAL_KEY)
    if not isinstance(recorded, str):
        raise ModelError(
            f"model bundle {directory}: {META_FILE} has no {SEAL_KEY} (saved by a leadml that "
            "did not hash its metadata, or the field was removed): retrain it; refusing to load it"
        )
    actual = meta_digest(meta)
    if actual != recorded:
        raise ModelError(
            f"model bundle {directory}: {META_FILE} was modified after it was saved "
            f"(model_version {meta.get('model_version')!r}; sha256 {actual[:12]}... != recorded "
            f"{recorded[:12]}...); refusing to load it"
        )


def read_bundle_meta(directory: str | Path) -> dict:
    """bundle.json, checked for shape and for edits (its own hash); a clear ModelError otherwise."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not directory.is_dir():
        raise ModelError(
            f"model bundle not found: {directory} is not a folder (train first: make train)"
        )
    if not meta_path.exists():
        raise ModelError(f"model bundle {directory} is incomplete: {META_FILE} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"model bundle {directory}: {META_FILE} is not valid JSON ({exc})"
        ) from None
    if not isinstance(meta, dict) or "format_version" not in meta or "sha256" not in meta:
        raise ModelError(f"model bundle {directory}: {META_FILE} lacks format_version/sha256")
    if meta["format_version"] != FORMAT_VERSION:
        raise ModelError(
            f"model bundle {directory} has format {meta['format_version']}, this leadml reads "
            f"{FORMAT_VERSION}: retrain with this version"
        )
    _check_seal(directory, meta)
    return meta


def load_bundle(directory: str | Path) -> LeadModel:
    """Load a bundle after checking format, library versions and the SHA-256 of model.joblib."""
    import joblib

    directory = Path(directory)
    meta = read_bundle_meta(directory)
    _check_versions(directory, meta.get("libraries", {}))
    model_path = directory / MODEL_FILE
    if not model_path.exists():
        raise ModelError(f"model bundle {directory} is incomplete: {MODEL_FILE} is missing")
    actual = sha256_of(model_path)
    if actual != meta["sha256"]:
        raise ModelError(
            f"model bundle {directory}: {MODEL_FILE} is corrupt or was modified "
            f"(sha256 {actual[:12]}... != recorded {meta['sha256'][:12]}...); refusing to load it"
        )
    try:
        model = joblib.load(model_path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad bundle
        raise ModelError(
            f"model bundle {directory}: cannot load {MODEL_FILE} ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(model, LeadModel):
        raise ModelError(f"model bundle {directory}: {MODEL_FILE} does not hold a leadml model")
    if meta.get("model_version") != model.version:
        raise ModelError(
            f"model bundle {directory}: {META_FILE} names model_version "
            f"{meta.get('model_version')!r} but {MODEL_FILE} holds {model.version!r}; refusing it"
        )
    return model


def _check_versions(directory: Path, saved: dict) -> None:
    now = library_versions()
    for name in PINNED:
        was, is_ = saved.get(name), now.get(name)
        if was and is_ and was.split(".")[:2] != is_.split(".")[:2]:
            raise ModelError(
                f"model bundle {directory} was saved with {name} {was}, this environment has "
                f"{is_}: install {name}=={was} or retrain"
            )


def jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def point_latest(models_dir: str | Path, version_dir: Path) -> Path:
    """Make models/latest point at version_dir (a relative symlink, swapped atomically)."""
    models_dir = Path(models_dir)
    latest = models_dir / "latest"
    tmp = models_dir / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(version_dir.name)
    os.replace(tmp, latest)
    return latest
