"""leadml.treeshap: the table kernel equals LightGBM's pred_contrib (max abs difference <= 1e-9)
on every model kind leadml trains and on planted models (categorical bitsets, NaN, zero as
missing, use_missing=False, deep leaf-wise trees, stumps, single-leaf trees, the fallback)."""

from __future__ import annotations

import pickle
import re
import tempfile

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadml.errors import ModelError
from leadml.train import TreeModel
from leadml.treeshap import K_ZERO, compile_booster, explainer_for

TOL = 1e-9
ODD_VALUES = [np.nan, 0.0, -0.0, 1e-36, -1e-36, K_ZERO, -K_ZERO, 2e-35, -2e-35, 1e300, -1e300]
ODD_CATEGORIES = [np.nan, -1.0, -0.5, 0.7, 3.99, 2.0**31, 1e12, -(2.0**40), 40.0, 1000.0]


def planted_data(seed: int, n: int = 600, n_feat: int = 5, n_cat: int = 2) -> tuple:
    """Rows with categorical columns (up to 45 codes: bitsets over two words), NaN and zeros."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_feat))
    for j in range(n_cat):
        X[:, j] = rng.integers(0, 45 if j == 0 else 6, n)
    X[rng.random((n, n_feat)) < 0.12] = np.nan
    X[:, n_cat:][rng.random((n, n_feat - n_cat)) < 0.2] = 0.0
    signal = np.nan_to_num(X[:, n_cat:]).sum(axis=1) + np.isin(X[:, 0], [1, 5, 7, 33, 40])
    y = (signal + rng.normal(size=n) > 0.3).astype(int)
    return X, y, list(range(n_cat))


def odd_rows(X: np.ndarray, n_cat: int, seed: int) -> np.ndarray:
    """Copies of training rows with edge values planted: NaN, +-0, values at kZeroThreshold,
    huge values, and for categoricals negatives, fractions and codes past any bitset."""
    rng = np.random.default_rng(seed)
    rows = X[rng.integers(0, len(X), 400)].copy()
    for j in range(rows.shape[1]):
        pool = ODD_CATEGORIES if j < n_cat else ODD_VALUES
        hit = rng.random(len(rows)) < 0.3
        rows[hit, j] = rng.choice(pool, hit.sum())
    return rows


def train(X, y, cats, rounds: int = 20, **params) -> lgb.Booster:
    base = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 1}
    base.update({"min_data_in_leaf": 5, "min_data_per_group": 5, "cat_smooth": 1, **params})
    return lgb.train(base, lgb.Dataset(X, y, categorical_feature=cats), rounds)


def max_diff(booster: lgb.Booster, X: np.ndarray, **kw) -> float:
    got = compile_booster(booster, **kw).contributions(booster, X, 1)
    want = booster.predict(X, pred_contrib=True)
    assert got.shape == want.shape
    return float(np.abs(got - want).max())


PLANTED = {
    "default-like": {"num_leaves": 15},
    "categorical, many codes": {"num_leaves": 31, "max_cat_to_onehot": 2, "max_cat_threshold": 64},
    "categorical one-hot": {"num_leaves": 15, "max_cat_to_onehot": 64},
    "zero as missing": {"num_leaves": 31, "zero_as_missing": True},
    "use_missing false": {"num_leaves": 31, "use_missing": False},
    "deep leaf-wise": {"num_leaves": 120, "min_data_in_leaf": 2, "min_data_per_group": 2},
    "stumps": {"num_leaves": 2},
    "depth limited": {"num_leaves": 31, "max_depth": 3},
}


@pytest.mark.parametrize("name", PLANTED)
def test_planted_models_equal_pred_contrib(name):
    X, y, cats = planted_data(seed=len(name))
    booster = train(X, y, cats, **PLANTED[name])
    rows = np.vstack([X[:200], odd_rows(X, len(cats), seed=2)])
    assert max_diff(booster, rows) <= TOL


def test_planted_models_do_split_on_categoricals_and_missing_values():
    """Guard for the planted cases above: the edges they claim to cover are in the trees."""
    X, y, cats = planted_data(seed=3)
    dump = train(X, y, cats, num_leaves=31, max_cat_to_onehot=2).dump_model()
    text = str(dump["tree_info"])
    assert "'decision_type': '=='" in text
    assert re.search(r"'threshold': '(\d+\|\|){3,}", text)  # a multi-category bitset
    assert "'missing_type': 'NaN'" in text
    dump = train(X, y, cats, num_leaves=31, zero_as_missing=True).dump_model()
    assert "'missing_type': 'Zero'" in str(dump["tree_info"])
    leaf_features = compile_booster(train(X, y, cats, num_leaves=15)).arrays[13]
    assert (leaf_features == 0).any()  # sibling leaves folded into one table are exercised


def test_single_leaf_trees_only_move_the_bias():
    X, y, cats = planted_data(seed=4)
    booster = with_single_leaf_trees(train(X, y, cats, rounds=6, num_leaves=7), [0.25, -0.5])
    assert [t["num_leaves"] for t in booster.dump_model()["tree_info"]].count(1) == 2
    rows = odd_rows(X, len(cats), seed=5)
    assert max_diff(booster, rows) <= TOL
    alone = train(X, y, cats, rounds=3, min_gain_to_split=1e9)
    assert alone.dump_model()["tree_info"][0]["num_leaves"] == 1
    assert max_diff(alone, rows) <= TOL


def with_single_leaf_trees(booster: lgb.Booster, values: list[float]) -> lgb.Booster:
    """The booster with single-leaf trees inserted after its first trees (model text edit)."""
    text = booster.model_to_string()
    head, rest = text.split("Tree=0", 1)
    body, tail = ("Tree=0" + rest).split("end of trees", 1)
    trees = re.split(r"(?m)^(?=Tree=\d+)", body)
    trees = [t for t in trees if t.strip()]
    for at, value in enumerate(values):
        leaf = (
            f"Tree=0\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\n"
            f"decision_type=\nleft_child=\nright_child=\nleaf_value={value!r}\nleaf_weight=\n"
            f"leaf_count=100\ninternal_value=\ninternal_weight=\ninternal_count=\nis_linear=0\n"
            f"shrinkage=1\n\n\n"
        )
        trees.insert(2 * at + 1, leaf)
    trees = [re.sub(r"^Tree=\d+", f"Tree={i}", t) for i, t in enumerate(trees)]
    head = re.sub(r"(?m)^tree_sizes=.*\n", "", head)
    return lgb.Booster(model_str=head + "".join(trees) + "end of trees" + tail)


@pytest.mark.parametrize(
    ("caps", "falls_back"),
    [
        ({"max_path_features": 1}, "all"),  # every path of a 31-leaf tree has two features
        ({"max_path_features": 3}, "some"),  # a mixture of table and fallback trees
        ({"max_table_bytes": 40_000}, "some"),  # the first trees fit, the rest fall back
        ({"max_path_features": 0}, "all"),  # everything through LightGBM
    ],
)
def test_trees_over_the_memory_cap_fall_back_exactly(caps, falls_back):
    X, y, cats = planted_data(seed=6)
    booster = train(X, y, cats, rounds=25, num_leaves=31)
    shap = compile_booster(booster, **caps)
    if falls_back == "all":
        assert shap.fallback == [(0, 25)]
    else:
        assert 0 < shap.n_fallback_trees < 25 and len(shap.fallback) >= 1
    assert max_diff(booster, odd_rows(X, len(cats), seed=7), **caps) <= TOL


def test_early_stopped_booster_uses_the_best_iteration_like_predict():
    X, y, cats = planted_data(seed=8, n=1500)
    params = {"objective": "binary", "verbosity": -1, "num_leaves": 31, "min_data_in_leaf": 5}
    train_set = lgb.Dataset(X[:1000], y[:1000], categorical_feature=cats)
    valid = lgb.Dataset(X[1000:], y[1000:], reference=train_set)
    booster = lgb.train(
        {**params, "learning_rate": 0.3},
        train_set,
        200,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(3, verbose=False)],
        keep_training_booster=True,
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    assert compile_booster(booster).n_iterations == booster.best_iteration
    assert max_diff(booster, X[1000:]) <= TOL


def test_threads_split_rows_without_changing_a_value():
    X, y, cats = planted_data(seed=9, n=2000)
    booster = train(X, y, cats, num_leaves=15)
    shap = compile_booster(booster)
    one = shap.contributions(booster, X, 1)
    assert np.array_equal(one, shap.contributions(booster, X, 3))
    assert np.array_equal(one[17:18], shap.contributions(booster, X[17:18], 1))
    assert shap.contributions(booster, X[:0], 2).shape == (0, X.shape[1] + 1)


def test_refuses_multiclass_and_wrong_shapes():
    X, y, cats = planted_data(seed=10)
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1},
        lgb.Dataset(X, np.asarray(np.nan_to_num(X[:, 2]) > 0, int) + (y == 1)),
        3,
    )
    with pytest.raises(ModelError, match="binary models only"):
        compile_booster(multi)
    booster = train(X, y, cats, rounds=3)
    with pytest.raises(ModelError, match="takes 5 features"):
        compile_booster(booster).contributions(booster, X[:, :4])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    seed=st.integers(0, 10_000),
    n_feat=st.integers(1, 6),
    n_cat=st.integers(0, 2),
    num_leaves=st.sampled_from([2, 3, 7, 15, 40]),
    missing=st.sampled_from(["nan", "zero", "off"]),
    rounds=st.integers(1, 8),
)
def test_property_random_models_and_rows(seed, n_feat, n_cat, num_leaves, missing, rounds):
    n_cat = min(n_cat, n_feat)
    X, y, cats = planted_data(seed, n=300, n_feat=n_feat, n_cat=n_cat)
    extra = {"zero": {"zero_as_missing": True}, "off": {"use_missing": False}}.get(missing, {})
    booster = train(X, y, cats, rounds=rounds, num_leaves=num_leaves, **extra)
    rows = odd_rows(X, n_cat, seed + 1)
    assert max_diff(booster, rows) <= TOL


# ---------------------------------------------------------------- the models leadml trains


@pytest.fixture(scope="module")
def fitted(small_config, lead_model):
    """Every member kind leadml fits on the small database (LightGBM early-stopped and with the
    forward-found rounds, the logistic model, naive Bayes) and the session's shipped ensemble,
    with the validation matrix of each."""
    import pandas as pd

    from leadml.data.io import read_dataset
    from leadml.features import build_features
    from leadml.split import TRAIN, VALID
    from leadml.train import fit_lightgbm, fit_lightgbm_rounds, fit_logistic, fit_naive_bayes
    from leadml.workflow import prepare

    leads, events = read_dataset(small_config.data)
    prep = prepare(small_config, leads, events, log=lambda _: None)
    (X_tr, y_tr), (X_va, y_va) = prep.part(TRAIN), prep.part(VALID)
    cfg, spec = small_config.model, prep.spec
    models = {
        "lightgbm": fit_lightgbm(X_tr, y_tr, X_va, y_va, spec, cfg),
        "lightgbm fixed rounds": fit_lightgbm_rounds(prep.X, prep.y, spec, cfg, 40),
        "logistic": fit_logistic(X_tr, y_tr, spec, cfg),
        "naive_bayes": fit_naive_bayes(X_tr, y_tr, spec, cfg),
    }
    X_model = build_features(lead_model.spec, leads, events, pd.Timestamp("2026-06-30"))
    inputs = dict.fromkeys(models, X_va) | {"ensemble": X_model[:500]}
    return models | {"ensemble": lead_model.model}, inputs


def reference_contributions(model, X: np.ndarray) -> np.ndarray:
    """pred_contrib for LightGBM parts, the model's own contributions for the others."""
    if isinstance(model, TreeModel):
        return model.booster.predict(X, pred_contrib=True)
    if hasattr(model, "parts"):  # the ensemble: weighted sum of its members, plus its intercept
        parts = zip(model.parts, model.weights, strict=True)
        out = sum(w * reference_contributions(p, X) for p, w in parts)
        out[:, -1] += model.intercept
        return out
    return model.contributions(X)


def test_every_model_kind_leadml_trains(fitted):
    models, inputs = fitted
    assert type(models["ensemble"]).__name__ == "EnsembleModel"
    assert tree_parts(models["ensemble"]), "the shipped ensemble holds a LightGBM member"
    for name, model in models.items():
        X = inputs[name]
        diff = np.abs(model.contributions(X) - reference_contributions(model, X)).max()
        assert diff <= TOL, name
    assert explainer_for(models["lightgbm"]).n_fallback_trees == 0


def tree_parts(model) -> list[TreeModel]:
    if isinstance(model, TreeModel):
        return [model]
    return [t for part in getattr(model, "parts", []) for t in tree_parts(part)]


def test_the_session_model_routes_reasons_through_the_kernel(lead_model):
    """Whatever the training pipeline chose, each LightGBM inside it explains through the
    kernel, and the reasons path (score_matrix) gets equal contributions."""
    import pandas as pd

    from leadml.data.synth import generate_leads
    from leadml.features import build_features
    from leadml.predict import score_matrix

    leads, events = generate_leads(6, 5)
    X = build_features(lead_model.spec, leads, events, pd.Timestamp(leads["created_at"].max()))
    for tree in tree_parts(lead_model.model):
        assert (
            np.abs(tree.contributions(X) - tree.booster.predict(X, pred_contrib=True)).max() <= TOL
        )
        assert "_treeshap" in tree.__dict__
    assert len(score_matrix(lead_model, X, reasons=True)["reasons"]) == 6


def test_tables_are_never_pickled_into_a_bundle(fitted):
    models, inputs = fitted
    model, X = models["lightgbm"], inputs["lightgbm"]
    before = pickle.dumps(model)
    model.contributions(X[:3])
    assert "_treeshap" in model.__dict__
    after = pickle.dumps(model)
    assert after == before
    assert "_treeshap" not in pickle.loads(after).__dict__


def test_bench_explain_small_runs_every_variant_on_the_same_rows(trained_bundle, capsys):
    """bench/bench_explain.py at CI size on the session bundle: every figure printed, and the
    kernel equal to pred_contrib on the bench's rows."""
    import importlib.util
    from pathlib import Path

    from leadml.predict import load_model

    path = Path(__file__).parents[1] / "bench" / "bench_explain.py"
    spec = importlib.util.spec_from_file_location("bench_explain", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    has_tree = bool(tree_parts(load_model(trained_bundle).model))
    model = ["--model", str(trained_bundle)] if has_tree else []  # else --small trains one
    result = bench.main(["--small", *model, "--rows", "300", "--shap"])
    printed = capsys.readouterr().out
    assert result["diff"]["leadml TreeSHAP kernel"] <= TOL
    assert result["diff"]["shap.TreeExplainer"] <= TOL
    for name in (
        "bare predict",
        "bare pred_contrib",
        "leadml TreeSHAP kernel",
        "leadml score + reasons",
    ):
        assert result["rates"][name] > 0 and name in printed
    assert "x pred_contrib" in printed and "load average" in printed


def test_numba_cache_moves_to_a_temp_folder_when_nothing_else_is_writable(monkeypatch):
    """A read-only install with no writable home still compiles (and caches) the kernel."""
    from numba.core import config

    import leadml.treeshap as treeshap

    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setattr(treeshap, "_writable", lambda folder: False)
    treeshap._choose_numba_cache()
    assert config.CACHE_DIR.startswith(tempfile.gettempdir())
    monkeypatch.setattr(config, "CACHE_DIR", "/somewhere/explicit")
    treeshap._choose_numba_cache()
    assert config.CACHE_DIR == "/somewhere/explicit"  # an explicit NUMBA_CACHE_DIR wins
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setattr(treeshap, "_writable", lambda folder: folder.name == "__pycache__")
    treeshap._choose_numba_cache()
    assert config.CACHE_DIR == ""  # next to the package, numba's own default


def test_serving_warm_up_builds_the_tables_before_ready(lead_model):
    """`leadml serve` scores a blank lead before /readyz says ready: that compiles the
    kernel and builds the tables of every LightGBM in the model."""
    from leadml.serve.app import warmed

    assert tree_parts(lead_model.model), "the session model has no LightGBM to explain"
    for tree in tree_parts(lead_model.model):
        tree.__dict__.pop("_treeshap", None)
    warmed(lead_model, "test")
    assert all("_treeshap" in tree.__dict__ for tree in tree_parts(lead_model.model))
