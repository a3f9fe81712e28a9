"""Bundles: round trip, and clear refusals of corrupt, truncated, tampered or foreign files."""

import json
import shutil

import numpy as np
import pytest

from leadml.bundle import META_FILE, MODEL_FILE, SEAL_KEY, load_bundle, read_bundle_meta, seal_meta
from leadml.errors import ModelError
from leadml.predict import load_model


def _write_sealed(bundle, meta: dict) -> None:
    """Write bundle.json as save_bundle would (hash recomputed): tests of the other checks."""
    (bundle / META_FILE).write_text(json.dumps(seal_meta(meta)))


@pytest.fixture
def copy(trained_bundle, tmp_path):
    dest = tmp_path / "bundle"
    shutil.copytree(trained_bundle, dest)
    return dest


def test_round_trip_keeps_everything(copy, lead_model):
    loaded = load_bundle(copy)
    assert loaded.version == lead_model.version
    assert loaded.spec.names == lead_model.spec.names
    meta = read_bundle_meta(copy)
    assert meta["model_version"] == lead_model.version
    assert {"lightgbm", "scikit-learn", "numpy", "pandas", "leadml"} <= set(meta["libraries"])
    assert meta["metadata"]["data"]["fingerprint"]


def test_truncated_model_file_is_refused(copy):
    data = (copy / MODEL_FILE).read_bytes()
    (copy / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupt or was modified"):
        load_bundle(copy)


def test_corrupt_file_even_with_matching_hash_is_a_clear_error(copy):
    import hashlib

    (copy / MODEL_FILE).write_bytes(b"not a pickle at all")
    meta = json.loads((copy / META_FILE).read_text())
    meta["sha256"] = hashlib.sha256(b"not a pickle at all").hexdigest()
    _write_sealed(copy, meta)
    with pytest.raises(ModelError, match="cannot load model.joblib"):
        load_bundle(copy)


def test_malformed_metadata_and_missing_parts(copy, tmp_path):
    (copy / META_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_bundle(copy)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="bundle.json is missing"):
        load_bundle(empty)


def test_incompatible_format_and_library_versions(copy):
    meta = json.loads((copy / META_FILE).read_text())
    (copy / META_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelError, match="format 99"):
        load_bundle(copy)
    meta["libraries"]["lightgbm"] = "1.0.0"
    _write_sealed(copy, meta)
    with pytest.raises(ModelError, match="lightgbm 1.0.0"):
        load_bundle(copy)


def test_loaded_model_scores_like_the_original(copy, lead_model):
    X = np.zeros((3, len(lead_model.spec.names)))
    X[:] = np.nan
    a = lead_model.model.margin(X)
    b = load_bundle(copy).model.margin(X)
    np.testing.assert_array_equal(a, b)


def test_edited_model_version_is_refused_like_a_corrupt_model(copy):
    meta = json.loads((copy / META_FILE).read_text())
    assert meta[SEAL_KEY]
    (copy / META_FILE).write_text(
        json.dumps({**meta, "model_version": "20990101-000000"}, indent=2)
    )
    for read in (load_bundle, read_bundle_meta, load_model):
        with pytest.raises(ModelError, match="bundle.json was modified after it was saved") as info:
            read(copy)
        assert "20990101-000000" in str(info.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: {**m, "grades": {**m["grades"], "hot_min": 1}},
        lambda m: {**m, "features": m["features"][:-1]},
        lambda m: {**m, "metadata": {**m["metadata"], "note": "x"}},
        lambda m: {k: v for k, v in m.items() if k != SEAL_KEY},
    ],
    ids=["grades", "features", "metadata", "seal-removed"],
)
def test_any_edit_of_bundle_json_is_refused(copy, edit):
    meta = json.loads((copy / META_FILE).read_text())
    (copy / META_FILE).write_text(json.dumps(edit(meta)))
    with pytest.raises(ModelError, match=f"modified after it was saved|has no {SEAL_KEY}"):
        load_bundle(copy)


def test_reformatting_bundle_json_is_not_an_edit(copy):
    meta = json.loads((copy / META_FILE).read_text())
    (copy / META_FILE).write_text(json.dumps(dict(reversed(meta.items())), indent=4))
    assert load_bundle(copy).version == meta["model_version"]


def test_resealed_metadata_naming_another_version_is_refused(copy, lead_model):
    meta = json.loads((copy / META_FILE).read_text())
    _write_sealed(copy, {**meta, "model_version": "other"})
    with pytest.raises(ModelError, match="names model_version 'other' but model.joblib holds"):
        load_bundle(copy)
