"""The change ledger: over three scorings (new events, attribute edits, time passing and a
model change) the causes add up exactly to each lead's score change and each cause's parts to
the cause; fit + engagement sub-scores add up to the score; the facet rules and trend words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadml.explain import facet_points, feature_facets
from leadml.ledger import change_ledgers, ledger_lines, pick_pair, scoring_frame, trend_word

T1, T2, T3 = pd.Timestamp("2026-05-20"), pd.Timestamp("2026-06-05"), pd.Timestamp("2026-06-29")


@pytest.fixture(scope="module")
def second_model(small_config, tmp_path_factory):
    """Another model on the same data (a retrain with other settings): the model change."""
    from leadml.config import override
    from leadml.predict import load_model
    from leadml.workflow import run_training

    config = override(
        small_config,
        model__candidates=["lightgbm"],
        model__seed=7,
        model__lightgbm__num_boost_round=60,
    )
    out = tmp_path_factory.mktemp("models-b")
    result = run_training(config, output=out, log=lambda _: None, track=False)
    return load_model(result.bundle_dir)


@pytest.fixture(scope="module")
def second_bundle(second_model, tmp_path_factory):
    """The second model as a bundle folder (what `leadml score --model` takes)."""
    from leadml.bundle import save_bundle

    return save_bundle(second_model, tmp_path_factory.mktemp("bundle-b") / second_model.version)


@pytest.fixture(scope="module")
def history(small_config, small_db_url, lead_model, second_model):
    """Three scorings of the open leads: (scores, inputs) at T1, T2 (edits), T3 (new model)."""
    from leadml.data.io import read_dataset
    from leadml.predict import score_leads

    leads, events = read_dataset(small_config.data, url=small_db_url)
    first = leads[(leads.status == "open") & (leads.created_at <= T1)].reset_index(drop=True)
    rng = np.random.default_rng(0)
    edited = first.copy()
    pick = rng.random(len(edited)) < 0.2
    edited.loc[pick, "employees"] = edited.loc[pick, "employees"] * 3
    pick = rng.random(len(edited)) < 0.1
    edited.loc[pick, "need"] = "high"
    runs = []
    for model, frame, as_of in (
        (lead_model, first, T1),
        (lead_model, edited, T2),
        (second_model, edited, T3),
    ):
        scores = score_leads(model, frame, events, as_of)
        inputs = frame.drop(columns=["status", "converted_at"]).assign(
            score=scores["score"].to_numpy(),
            model_version=scores["model_version"].to_numpy(),
            as_of=as_of,
        )
        runs.append((scores, inputs))
    return runs, events, {lead_model.version: lead_model, second_model.version: second_model}


def _check_exact(ledgers: list[dict]) -> dict:
    totals = dict.fromkeys(("model", "attributes", "time", "engagement", "other"), 0)
    for ledger in ledgers:
        assert sum(s["points"] for s in ledger["steps"]) == ledger["change"]
        assert ledger["change"] == ledger["to"]["score"] - ledger["from"]["score"]
        for step in ledger["steps"]:
            totals[step["cause"]] += abs(step["points"])
            if step["parts"]:
                assert sum(p["points"] for p in step["parts"]) == step["points"]
            else:
                assert step["points"] == 0 or step["cause"] == "other"
    return totals


def test_ledger_parts_add_up_exactly_over_three_runs(history):
    runs, events, models = history
    (_, f1), (_, f2), (_, f3) = runs
    assert len(f1) > 1000
    one_two = _check_exact(change_ledgers(f1, f2, events, models.get))
    two_three = _check_exact(change_ledgers(f2, f3, events, models.get))
    one_three = _check_exact(change_ledgers(f1, f3, events, models.get))
    # each cause shows up where it happened, and nowhere else
    assert one_two["model"] == 0 and one_two["attributes"] > 0
    assert one_two["time"] > 0 and one_two["engagement"] > 0
    assert two_three["model"] > 0 and two_three["attributes"] == 0
    assert one_three["model"] > 0 and one_three["attributes"] > 0
    # the stored inputs reproduce every stored score: nothing is left unexplained
    assert one_two["other"] == one_three["other"] == two_three["other"] == 0


def test_ledger_reads_plainly(history):
    runs, events, models = history
    (_, f1), (_, f2), _ = runs
    ledgers = change_ledgers(f1, f2, events, models.get)
    lines = [line for lg in ledgers for line in ledger_lines(lg)]
    edits = [line for line in lines if line.split()[1:3] == ["attribute", "edits:"]]
    assert any("Employees: " in line and " -> " in line for line in edits)
    fresh = [line for line in lines if line.split()[1:3] == ["new", "activity:"]]
    assert any(": 1 new" in line or " new (" in line for line in fresh)
    passing = [line for line in lines if line.split()[1:3] == ["time", "passing:"]]
    assert any(" now " in line and " ago" in line for line in passing)


def test_missing_old_model_lumps_the_model_step(history):
    runs, events, models = history
    _, (_, f2), (_, f3) = runs
    newer = f3["model_version"].iloc[0]
    ledgers = change_ledgers(f2, f3, events, lambda v: models[v] if v == newer else None)
    _check_exact(ledgers)
    step = ledgers[0]["steps"][0]
    assert step["cause"] == "model"
    assert all(p["signal"] == "unavailable" for p in step["parts"])


def test_sub_scores_add_up_to_the_score(history, lead_model, second_model):
    from leadml.explain import score_and_points

    runs, _, _ = history
    for (scores, inputs), model in zip(runs, (lead_model, lead_model, second_model), strict=True):
        assert scores["fit_points"].notna().all()
        base = scores["score"] - scores["fit_points"] - scores["engagement_points"]
        contrib = model.model.contributions(np.zeros((1, len(model.spec.names))))
        assert set(base) == {score_and_points(contrib, model.calibrator)[2]}
        assert len(scores) == len(inputs) > 1000


def test_facets_inferred_from_kind_and_overridden_by_patterns(lead_model):
    spec = lead_model.spec
    inferred = feature_facets(spec)
    kinds = {f.name: f.kind for f in spec.features}
    for name, fit in zip(spec.names, inferred, strict=True):
        assert fit == (kinds[name] in ("categorical", "numeric"))
    moved = feature_facets(spec, fit_features=["age"], engagement_features=["attr:source"])
    assert moved[spec.names.index("lead_age_days")]
    assert not moved[spec.names.index("source")]
    points = np.array([[3, -1, 2]] * 2)
    fit, engagement = facet_points(points, np.array([True, False, True]))
    assert list(fit) == [5, 5] and list(engagement) == [-1, -1]


def test_scoring_frame_pick_pair_and_trend():
    from leadml.config import HistoryConfig

    rows = [
        {
            "lead_id": 7,
            "score": s,
            "model_version": "v1",
            "as_of": f"2026-06-0{d}",
            "scored_at": f"2026-06-0{d} 01:00",
            "attributes": '{"created_at": "2026-05-01T00:00:00", "employees": 12.0}',
        }
        for s, d in ((20, 1), (24, 3), (31, 5))
    ]
    earlier, later = pick_pair(rows)
    assert (earlier["score"], later["score"]) == (24, 31)
    assert pick_pair(rows, since="2026-06-02")[0]["score"] == 20
    assert pick_pair(rows[:1]) is None
    frame = scoring_frame(rows)
    assert frame["created_at"].iloc[0] == pd.Timestamp("2026-05-01")
    assert frame["employees"].tolist() == [12.0, 12.0, 12.0]
    cfg = HistoryConfig(trend_runs=3, rising_points=5, falling_points=5)
    assert trend_word([20, 24, 31], cfg) == "rising"
    assert trend_word([31, 30, 29], cfg) == "steady"
    assert trend_word([50, 20, 31, 30, 20], cfg) == "falling"


# ---------------------------------------------------------------- through the batch scorer


@pytest.fixture(params=["sqlite", "postgres"])
def scored_db(request, tmp_path, small_db_url, trained_bundle, second_bundle, pg_schema):
    """A private database scored three times by `leadml score`: T1; attribute edits, T2; a new
    model, T3. Yields (url, config)."""
    import shutil

    from leadml.config import Config

    if request.param == "sqlite":
        path = tmp_path / "leads.db"
        shutil.copy(small_db_url.removeprefix("sqlite:///"), path)
        yield _three_runs(f"sqlite:///{path}", trained_bundle, second_bundle), Config()
        return
    with _pg_copy(pg_schema, small_db_url) as url:
        yield _three_runs(url, trained_bundle, second_bundle), Config()


def _three_runs(url: str, first_bundle, second_bundle) -> str:
    from sqlalchemy import text

    from leadml.batch import ScoreOptions, run_scoring
    from leadml.config import Config
    from leadml.data.io import engine_for

    config = Config.model_validate({"batch": {"chunk_size": 700}})

    def score(bundle, as_of):
        options = ScoreOptions(url=url, model_ref=str(bundle), as_of=as_of, all_leads=True)
        return run_scoring(config, options)

    assert score(first_bundle, T1).scored > 1000
    with engine_for(url).begin() as conn:
        conn.execute(
            text("UPDATE leads SET employees = employees * 3, need = 'high' WHERE lead_id % 7 = 0")
        )
    score(first_bundle, T2)
    score(second_bundle, T3)
    return url


def _pg_copy(pg_schema, small_db_url: str):
    """A private PostgreSQL schema holding a copy of the small database."""
    import contextlib

    from leadml.config import Config
    from leadml.data.io import read_dataset, write_tables

    @contextlib.contextmanager
    def copy():
        with pg_schema("leadml_hist") as url:
            leads, events = read_dataset(Config().data, url=small_db_url)
            write_tables(url, {"leads": leads, "lead_events": events})
            yield url

    return copy()


def _history(url: str) -> pd.DataFrame:
    from leadml.data.io import engine_for

    with engine_for(url).connect() as conn:
        return pd.read_sql("SELECT * FROM lead_score_history", conn)


@pytest.mark.slow
def test_batch_history_ledgers_add_up_for_thousands_of_leads(scored_db, lead_model, second_model):
    from leadml.data.io import read_dataset

    url, config = scored_db
    history = _history(url)
    runs = sorted(
        history["run_id"].unique(), key=lambda r: history[history.run_id == r].as_of.min()
    )
    assert len(runs) == 3 and history["attributes"].notna().all()
    base = history["score"] - history["fit_points"] - history["engagement_points"]
    assert base.groupby(history["model_version"]).nunique().eq(1).all()  # one baseline a model
    _, events = read_dataset(config.data, url=url)
    models = {lead_model.version: lead_model, second_model.version: second_model}
    totals = {}
    for a, b in ((runs[0], runs[1]), (runs[1], runs[2]), (runs[0], runs[2])):
        earlier = history[history.run_id == a].sort_values("lead_id")
        later = history[history.run_id == b].sort_values("lead_id")
        later = later[later.lead_id.isin(earlier.lead_id)]
        earlier = earlier[earlier.lead_id.isin(later.lead_id)]
        assert len(later) > 1000
        frames = [scoring_frame(f.to_dict("records")) for f in (earlier, later)]
        totals[(a, b)] = _check_exact(change_ledgers(*frames, events, models.get))
    first, second, both = totals.values()
    assert first["attributes"] > 0 and first["model"] == 0 and second["model"] > 0
    assert first["engagement"] > 0 and first["time"] > 0 and both["model"] > 0
    assert first["other"] == second["other"] == both["other"] == 0


@pytest.mark.slow
def test_history_report_and_pruning(scored_db, lead_model, second_model):
    from leadml.data.history import prune_history
    from leadml.data.scores import OutputTables
    from leadml.ledger import lead_history_report

    url, config = scored_db
    models = {lead_model.version: lead_model, second_model.version: second_model}
    report = lead_history_report(url, config, 7, models.get)
    assert [s["model_version"] for s in report["scorings"]] == [lead_model.version] * 2 + [
        second_model.version
    ]
    assert report["trend"] in ("rising", "steady", "falling")
    ledger = report["ledger"]
    assert ledger["from"]["score"] == report["scorings"][1]["score"]
    assert sum(s["points"] for s in ledger["steps"]) == ledger["change"]
    since = lead_history_report(url, config, 7, models.get, since=str(T1.date()) + " 23:59")
    assert since["ledger"]["from"]["as_of"].startswith(str(T1.date()))
    edits = next(s for s in since["ledger"]["steps"] if s["cause"] == "attributes")
    assert since["ledger"]["change"] == sum(s["points"] for s in since["ledger"]["steps"])
    assert edits["points"] == sum(p["points"] for p in edits["parts"])
    before = _history(url)
    deleted = prune_history(
        url, OutputTables(), keep_runs=2, keep_days=None, now=pd.Timestamp.now()
    )
    after = _history(url)
    assert deleted == len(before) - len(after) > 0
    assert after.groupby("lead_id").size().max() == 2
    assert prune_history(url, OutputTables(), keep_runs=None, keep_days=None, now=T3) == 0
