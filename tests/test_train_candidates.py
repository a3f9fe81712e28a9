"""The forward-validated ensemble: candidates on expanding forward origins, non-negative log-odds
weights stacked on their out-of-time margins, members refitted on all pre-test rows, and exact
additive contributions whatever the weights."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadml.config import Config, ModelConfig
from leadml.ensemble import EnsembleModel, fit_ensemble, forward_validate, stack, stack_and_prune
from leadml.features import build_features, fit_feature_spec
from leadml.split import forward_origins
from leadml.train import LinearModel, NaiveBayesModel, TreeModel, fit_logistic, fit_naive_bayes

CFG = ModelConfig(threads=1, lightgbm={"num_boost_round": 60})


def leads_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Leads in time order whose conversion follows visits, source and budget (some missing)."""
    rng = np.random.default_rng(seed)
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(n),
            "status": "open",
            "visits": rng.poisson(3, size=n).astype(float),
            "budget": np.where(rng.random(n) < 0.2, np.nan, rng.gamma(2, 1000, size=n)),
            "source": rng.choice(["web", "referral", "event", "ads"], size=n),
        }
    )
    logit = (
        -2.2
        + 0.45 * leads["visits"]
        + 0.9 * (leads["source"] == "referral")
        + 0.3 * np.log1p(leads["budget"].fillna(0)) / 4
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(int)
    return leads, y


@pytest.fixture(scope="module")
def data():
    leads, y = leads_frame(4000, 5)
    spec = fit_feature_spec(leads.iloc[:3000], None, Config())
    return build_features(spec, leads, None), y, spec


def origins_of(n: int, k: int = 3, share: float = 0.15):
    rank = np.arange(n, dtype=float)
    return forward_origins(rank, rank, k, share)


def test_forward_origins_expand_and_never_look_ahead():
    origins = origins_of(1000)
    assert len(origins) == 3
    for o, later in zip(origins, origins[1:], strict=False):
        assert o.fit.max() < o.block.min() and len(later.fit) > len(o.fit)
        assert set(o.block) <= set(later.fit)  # expanding: the block joins the next fit window
        # LightGBM stops early on the end of its own window, never on the block it scores
        assert o.stop_fit.max() < o.stop.min() and o.stop.max() < o.block.min()
        assert set(o.stop) <= set(o.fit) and not set(o.stop) & set(o.stop_fit)
    assert origins[-1].block.max() == 999


def test_stack_recovers_planted_weights_and_prunes_a_useless_member():
    rng = np.random.default_rng(0)
    useful, useless = rng.normal(0, 1.5, 20_000), rng.normal(0, 1.5, 20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(0.8 * useful - 1.0)))).astype(int)
    M, blocks = np.column_stack([useful, useless]), np.repeat([0, 1], 10_000)
    w, b = stack(M, y, blocks)
    assert w[0] == pytest.approx(0.8, abs=0.08) and w[1] < 0.05 and (w >= 0).all()
    weights, intercept = stack_and_prune(M, y, blocks, ["useful", "useless"])
    assert weights["useless"] == 0.0 and weights["useful"] > 0.7
    assert intercept == pytest.approx(-1.0, abs=0.1)


def test_ensemble_contributions_add_up_exactly(data):
    X, y, spec = data
    fwd = forward_validate(X[:3000], y[:3000], origins_of(3000), spec, CFG)
    model = fit_ensemble(X[:3000], y[:3000], spec, CFG, fwd)
    assert isinstance(model, EnsembleModel) and model.names == fwd.kept
    assert all(w > 0 for w in model.weights)
    contrib = model.contributions(X[3000:3100])
    assert contrib.shape == (100, X.shape[1] + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), model.margin(X[3000:3100]), atol=1e-8)
    bias = sum(
        w * p.contributions(X[:1])[0, -1] for p, w in zip(model.parts, model.weights, strict=True)
    )
    assert contrib[0, -1] == pytest.approx(bias + model.intercept)
    model.threads = 2
    assert all(getattr(p, "threads", 2) == 2 for p in model.parts)


def test_members_are_refitted_on_all_rows_with_the_forward_rounds(data):
    X, y, spec = data
    fwd = forward_validate(X[:3000], y[:3000], origins_of(3000), spec, CFG)
    model = fit_ensemble(X[:3000], y[:3000], spec, CFG, fwd)
    kinds = {type(p) for p in model.parts}
    assert kinds <= {TreeModel, LinearModel, NaiveBayesModel}
    summary = fwd.summary
    assert len(summary["origins"]) == 3 and "ensemble" in summary["roc_auc"]
    assert all(0.6 < v["mean"] < 1 for k, v in summary["roc_auc"].items() if k != "naive_bayes")
    if "lightgbm" in model.names:  # rounds: each origin's early stop, scaled to 3000 rows
        tree = model.parts[model.names.index("lightgbm")]
        expected = np.mean([o["rounds"] * 3000 / o["fit_rows"] for o in summary["origins"]])
        assert tree.booster.num_trees() == int(round(expected))
    nb_alone = fit_naive_bayes(X[:3000], y[:3000], spec, CFG)
    assert not np.allclose(nb_alone.margin(X[3000:]), model.margin(X[3000:]))


def test_a_noisy_validation_slice_does_not_hand_the_model_to_a_lucky_candidate(data):
    """The latest pre-test block's labels are coin flips: whichever candidate looks best there is
    luck. The weights come from every origin, so the ensemble still ranks like the best model."""
    X, y, spec = data
    noisy = y.copy()
    rng = np.random.default_rng(1)
    origins = origins_of(3000)
    last = origins[-1][1]
    noisy[last] = rng.integers(0, 2, size=len(last))
    one = forward_validate(X[:3000], noisy[:3000], [origins[-1]], spec, CFG)
    lucky = one.summary["origins"][0]["roc_auc"]
    assert max(lucky.values()) < 0.6  # nothing ranks on the noisy block: any winner is luck
    fwd = forward_validate(X[:3000], noisy[:3000], origins, spec, CFG)
    model = fit_ensemble(X[:3000], noisy[:3000], spec, CFG, fwd)
    test_auc = roc_auc_score(y[3000:], model.margin(X[3000:]))
    clean = forward_validate(X[:3000], y[:3000], origins, spec, CFG)
    true_kind = fit_logistic(X[:3000], y[:3000], spec, CFG)  # fitted on the clean labels
    best_single = roc_auc_score(y[3000:], true_kind.margin(X[3000:]))
    # the true model here is linear: it keeps the largest weight, and no lucky member takes over
    assert (
        max(fwd.weights, key=fwd.weights.get)
        == "logistic"
        == max(clean.weights, key=clean.weights.get)
    )
    assert test_auc >= best_single - 0.01


def test_linear_margin_is_identical_for_one_row_and_a_batch():
    """The single-lead fast path scores row by row: the linear model must not drift in the last digits."""
    rng = np.random.default_rng(0)
    model = LinearModel(
        ["numeric"] * 3,
        [0] * 3,
        np.zeros(3),
        np.zeros(6),
        np.ones(6),
        np.repeat(np.arange(3), 2),
        rng.normal(size=6),
        0.3,
    )
    X = rng.normal(size=(500, 3))
    batch = model.margin(X)
    single = np.array([model.margin(X[i : i + 1])[0] for i in range(len(X))])
    np.testing.assert_array_equal(batch, single)


def test_naive_bayes_contributions_add_up_and_are_centred(data):
    X, y, spec = data
    model = fit_naive_bayes(X[:2000], y[:2000], spec, CFG)
    contrib = model.contributions(X)
    assert np.allclose(contrib.sum(axis=1), model.margin(X))
    assert np.allclose(contrib[:2000, :-1].mean(axis=0), 0.0, atol=1e-9)  # centred on training
    visits = spec.names.index("visits")
    low, high = X[:, visits] <= 1, X[:, visits] >= 7
    assert contrib[high, visits].mean() > contrib[low, visits].mean()
    assert np.isfinite(model.margin(np.full((1, X.shape[1]), np.nan))).all()
