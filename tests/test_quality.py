"""The training run's quality contract on small in-memory data: the shipped model is the
forward-validated ensemble fitted on all pre-test rows, its calibrator was fitted on that
model's own out-of-time predictions (so a shifted base rate before the test period leaves no
stale calibrator), it is scored through predict, and the peers are fitted on the same rows."""

import numpy as np
import pandas as pd
import pytest

from leadml.config import Config
from leadml.predict import score_matrix
from leadml.split import TEST
from leadml.workflow import evaluate_model, fit_model, prepare

N = 8000


def ordered_export(n: int = N, seed: int = 3, step_at: float = 0.3) -> pd.DataFrame:
    """A single-table export in time order whose conversion rate steps up at `step_at`."""
    rng = np.random.default_rng(seed)
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(1, n + 1),
            "status": "open",
            "visits": rng.poisson(3, size=n).astype(float),
            "size": rng.gamma(2, 50, size=n),
            "source": rng.choice(["web", "referral", "event", "ads"], size=n),
        }
    )
    later = np.arange(n) >= step_at * n
    logit = (
        np.where(later, -1.6, -2.8)
        + 0.35 * leads["visits"]
        + 0.8 * (leads["source"] == "referral")
        + 0.004 * leads["size"]
    )
    won = rng.random(n) < 1 / (1 + np.exp(-logit.to_numpy()))
    leads["status"] = np.where(won, "converted", "disqualified")
    return leads


@pytest.fixture(scope="module")
def trained():
    config = Config.model_validate(
        {
            "data": {"created_at": None, "ordered": True},
            "split": {"test_fraction": 0.2},
            "model": {"threads": 1, "lightgbm": {"num_boost_round": 80}},
        }
    )
    prep = prepare(config, ordered_export(), None, log=lambda _: None)
    model, info = fit_model(config, prep, "quality", log=lambda _: None)
    return config, prep, model, info, evaluate_model(model, prep, config)


def test_the_model_is_fitted_on_all_pre_test_rows(trained):
    _, prep, model, info, _ = trained
    assert info["fit_rows"] == int(prep.pretest.sum()) == int(0.8 * N)
    assert model.kind == "ensemble" and len(info["forward"]["origins"]) == 3
    assert all(c["weight"] >= 0 for c in info["candidates"])
    assert set(model.model.names) == {c["name"] for c in info["candidates"] if c["weight"] > 0}


def test_a_shifted_base_rate_leaves_no_stale_calibrator(trained):
    """The rate steps up before the forward blocks: the calibrator, fitted on the shipped
    ensemble's out-of-time predictions there, puts the later test slice's levels right."""
    _, prep, model, info, ev = trained
    assert info["calibration"]["rows"] == len(info["forward"]["origins"]) * round(0.15 * 0.8 * N)
    rates = [o["rate"] for o in info["forward"]["origins"]]
    assert min(rates) > prep.y[: int(0.3 * N)].mean() + 0.05  # the blocks see the new rate
    assert ev["test"]["ece"] <= 0.03
    assert abs(ev["test"]["ece"]) <= ev["baselines"]["naive_bayes"]["ece"]


def test_evaluation_scores_through_predict_and_names_the_peers(trained):
    _, prep, model, _, ev = trained
    X_te, _ = prep.part(TEST)
    np.testing.assert_allclose(
        ev["_arrays"]["p_test"], score_matrix(model, X_te, reasons=False)["probability"]
    )
    assert set(ev["baselines"]) == {"logistic_regression", "lightgbm", "naive_bayes"}
    check = ev["peer_check"]
    assert set(check["lost_to"]) <= set(ev["baselines"])
    if check["lost_to"]:
        assert "LOSES" in check["message"]
    else:
        assert "at least every peer" in check["message"]
    assert ev["test"]["roc_auc"] >= ev["baselines"]["naive_bayes"]["roc_auc"]
