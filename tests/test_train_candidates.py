"""The candidates (naive Bayes, the blend), the choice on validation and the refit: every model
keeps exact contributions, so reasons in points work whichever wins."""

import numpy as np
import pandas as pd
import pytest

from leadml.config import Config, ModelConfig
from leadml.features import build_features, fit_feature_spec
from leadml.train import (
    BlendModel,
    Candidate,
    LinearModel,
    NaiveBayesModel,
    TreeModel,
    choose,
    fit_candidates,
    fit_naive_bayes,
    refit,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    n = 3000
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
        -2
        + 0.4 * leads["visits"]
        + 0.8 * (leads["source"] == "referral")
        + 0.5 * (leads["visits"] > 5)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(int)
    spec = fit_feature_spec(leads, None, Config())
    X = build_features(spec, leads, None)
    return X, y, spec


CFG = ModelConfig(threads=1, lightgbm={"num_boost_round": 60})


def test_naive_bayes_contributions_add_up_and_are_centred(data):
    X, y, spec = data
    model = fit_naive_bayes(X[:2000], y[:2000], spec, CFG)
    contrib = model.contributions(X)
    assert np.allclose(contrib.sum(axis=1), model.margin(X))
    assert np.allclose(contrib[:2000, :-1].mean(axis=0), 0.0, atol=1e-9)  # centred on training
    visits = spec.names.index("visits")
    low, high = X[:, visits] <= 1, X[:, visits] >= 7
    assert contrib[high, visits].mean() > contrib[low, visits].mean()  # more visits, more evidence
    assert np.isfinite(model.margin(np.full((1, X.shape[1]), np.nan))).all()  # all missing: fine


def test_all_candidates_fitted_scored_and_the_blend_is_exact(data):
    X, y, spec = data
    cands = fit_candidates(X[:2000], y[:2000], X[2000:], y[2000:], spec, CFG)
    assert [c.name for c in cands] == ["lightgbm", "logistic", "naive_bayes", "blend"]
    assert all(0.6 < c.valid_auc < 1 and c.fitted_rows == 2000 for c in cands)
    blend = cands[-1].model
    assert isinstance(blend, BlendModel) and sum(blend.weights) == pytest.approx(1.0)
    assert isinstance(blend.parts[0], TreeModel) and isinstance(blend.parts[1], LinearModel)
    assert np.allclose(blend.contributions(X[:50]).sum(axis=1), blend.margin(X[:50]), atol=1e-6)
    blend.threads = 2
    assert blend.parts[0].threads == 2


def test_choice_prefers_the_simplest_within_tolerance():
    c = [
        Candidate("lightgbm", None, 0.801, 0.3),
        Candidate("logistic", None, 0.8, 0.3),
        Candidate("naive_bayes", None, 0.7, 0.5),
        Candidate("blend", None, 0.8015, 0.3),
    ]
    best, why = choose(c)
    assert best.name == "logistic" and "simpler" in why
    best, why = choose(
        [Candidate("lightgbm", None, 0.85, 0.3), Candidate("naive_bayes", None, 0.8, 0.4)]
    )
    assert best.name == "lightgbm" and "best validation" in why


@pytest.mark.parametrize("name", ["lightgbm", "logistic", "naive_bayes", "blend"])
def test_refit_uses_more_rows_and_keeps_the_kind(data, name):
    X, y, spec = data
    cfg = CFG.model_copy(update={"candidates": [name]})
    (cand,) = fit_candidates(X[:1500], y[:1500], X[1500:2200], y[1500:2200], spec, cfg)
    model = refit(cand, X[:2200], y[:2200], spec, cfg)
    assert type(model) is type(cand.model) and model is not cand.model
    assert not np.allclose(model.margin(X[2200:]), cand.model.margin(X[2200:]))
    assert np.allclose(
        model.contributions(X[2200:2300]).sum(axis=1), model.margin(X[2200:2300]), atol=1e-6
    )
    if isinstance(model, TreeModel):  # early-stopped tree count scaled to the larger slice
        best = cand.model.booster.best_iteration
        assert model.booster.num_trees() == max(1, round(best * 2200 / 1500))
    if isinstance(model, NaiveBayesModel):  # the prior moves with the rows it was fitted on
        assert model.bias != cand.model.bias


def test_linear_margin_is_identical_for_one_row_and_a_batch():
    """The single-lead fast path scores row by row: the linear model must not drift in the last digits."""
    import numpy as np

    from leadml.train import LinearModel

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
