"""The history routes and pages through FastAPI's TestClient, on a database scored by three
batch runs: /v1/leads/{id}/history (scorings, trend, ledger, ?since=), /v1/calllist (+ CSV),
the lead page (baseline + fit + engagement, fixed-scale bars, chart, ledger, closed leads),
the list (change, movers, fit and engagement columns, sort, filter, distinct top reason) and
the call-list page."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(history_db, trained_bundle, small_config):
    from leadml.config import override
    from leadml.serve.app import create_app

    config = override(small_config, data__source=history_db)
    with TestClient(create_app(trained_bundle, history_db, config)) as c:
        yield c


@pytest.fixture(scope="module")
def history(history_db) -> pd.DataFrame:
    from leadml.data.io import engine_for

    with engine_for(history_db).connect() as conn:
        return pd.read_sql("SELECT * FROM lead_score_history", conn)


@pytest.fixture(scope="module")
def mover(history) -> int:
    """A lead scored three times whose score moved most between the last two runs."""
    counts = history.groupby("lead_id").size()
    three = history[history.lead_id.isin(counts[counts == 3].index)].sort_values("scored_at")
    last_two = three.groupby("lead_id")["score"].apply(lambda s: abs(s.iloc[-1] - s.iloc[-2]))
    return int(last_two.idxmax())


def test_history_api_lists_scorings_and_an_exact_ledger(client, history, mover):
    body = client.get(f"/v1/leads/{mover}/history").json()
    mine = history[history.lead_id == mover].sort_values("scored_at")
    assert [s["score"] for s in body["scorings"]] == mine["score"].tolist()
    assert body["trend"] in ("rising", "steady", "falling")
    ledger = body["ledger"]
    assert ledger["change"] == mine["score"].iloc[-1] - mine["score"].iloc[-2] != 0
    assert sum(s["points"] for s in ledger["steps"]) == ledger["change"]
    for step in ledger["steps"]:
        assert sum(p["points"] for p in step["parts"]) == step["points"]
    assert [s["cause"] for s in ledger["steps"]][:4] == [
        "model",
        "attributes",
        "time",
        "engagement",
    ]
    first = client.get(f"/v1/leads/{mover}/history", params={"since": "2026-05-21"}).json()
    assert first["ledger"]["from"]["score"] == mine["score"].iloc[0]
    assert client.get("/v1/leads/999999999/history").status_code == 404
    assert client.get(f"/v1/leads/{mover}/history", params={"since": "soon"}).status_code == 422


def test_calllist_api_json_and_csv(client, history_db):
    from leadml.data.io import engine_for

    body = client.get("/v1/calllist", params={"capacity": 120, "grade": "warm,cold"}).json()
    with engine_for(history_db).connect() as conn:
        open_scores = pd.read_sql(
            "SELECT s.* FROM lead_scores s JOIN leads l ON l.lead_id = s.lead_id "
            "WHERE l.status = 'open' AND s.grade IN ('warm', 'cold')",
            conn,
        )
    best = open_scores.sort_values(["score", "probability"], ascending=False).head(120)
    assert body["called"] == 120 and body["available"] == len(open_scores)
    assert [r["lead_id"] for r in body["leads"]][:20] == best["lead_id"].head(20).tolist()
    assert body["expected_conversions"] == pytest.approx(best["probability"].sum(), abs=1e-3)
    iv = body["interval"]
    assert iv["low"] <= body["expected_conversions"] <= iv["high"] and iv["method"] == "exact"
    assert body["curve"][-1]["called"] == 120
    csv = client.get("/v1/calllist", params={"capacity": 25, "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert len(frame) == 25 and list(frame.columns)[:2] == ["rank", "lead_id"]
    assert "expected_so_far" in frame.columns
    assert client.get("/v1/calllist", params={"capacity": 0}).status_code == 422


def test_lead_page_shows_subscores_chart_ledger_and_fixed_scale(client, mover, history):
    page = client.get(f"/leads/{mover}").text
    row = history[history.lead_id == mover].sort_values("scored_at").iloc[-1]
    fit, engagement = int(row.fit_points), int(row.engagement_points)
    baseline = int(row.score) - fit - engagement
    assert f'Baseline <b class="baseline">{baseline}</b>' in page
    signed = lambda p: f"+{p}" if p > 0 else str(p)  # noqa: E731
    assert f'id="fit-score">{signed(fit)}</dd>' in page
    assert f'id="engagement-score">{signed(engagement)}</dd>' in page
    assert 'class="chart score-chart"' in page and page.count('class="score-point"') == 3
    assert page.count('class="band band-') == 3
    assert "Why the score changed" in page and 'class="ledger-step cause-time"' in page
    assert re.search(r"<title id=\"chart-title\">Score over time", page)
    # one fixed scale: a reason of p points gets 50 * |p| / 40 percent (capped at 50)
    import json

    for reason in json.loads(row.reasons):
        width = max(0.5, round(min(50.0, 50 * abs(reason["points"]) / 40), 1))
        assert f"width: {width}%" in page


def test_closed_lead_is_shown_as_closed(client, small_config, history_db):
    from leadml.data.io import read_dataset

    leads, _ = read_dataset(small_config.data, url=history_db)
    converted = leads[leads.status == "converted"].iloc[0]
    page = client.get(f"/leads/{converted.lead_id}").text
    assert f"Converted on {str(converted.converted_at)[:16]}" in page
    assert "Chance to convert" not in page and "Scored live" not in page


def test_list_shows_change_fit_engagement_and_sorts_by_movers(client, history):
    page = client.get("/leads").text
    for header in ("Change", "Fit", "Engagement"):
        assert f'<th scope="col" class="num">{header}</th>' in page
    assert '<th scope="col">Top reason</th>' in page
    movers = client.get("/leads", params={"sort": "movers"}).text
    changes = [
        int(x.replace("+", ""))
        for x in re.findall(
            r'<td class="num change"><span class="pts \w+">([+-]\d+)</span>', movers
        )
    ]
    assert changes and [abs(c) for c in changes] == sorted((abs(c) for c in changes), reverse=True)
    rising = client.get("/leads", params={"sort": "rising"}).text
    first = re.search(r'<td class="num change"><span class="pts up">\+(\d+)</span>', rising)
    assert first and int(first.group(1)) == max(abs(c) for c in changes if c > 0)
    strong = client.get("/leads", params={"fit": "above", "sort": "fit"}).text
    fits = [int(x) for x in re.findall(r'<td class="num fit">([+-]?\d+)</td>', strong)]
    assert fits and min(fits) > 0 and fits == sorted(fits, reverse=True)


def test_top_reason_is_what_sets_a_lead_apart():
    from leadml.serve.pages import distinct_reasons

    shared = {"feature": "engagement", "points": 8, "text": "Active"}
    rows = [
        {"score": 30, "reasons": [shared, {"feature": "industry", "points": 3, "text": "x"}]},
        {"score": 29, "reasons": [shared, {"feature": "budget", "points": 2, "text": "y"}]},
        {
            "score": 28,
            "reasons": [{**shared, "points": 9}, {"feature": "need", "points": 4, "text": "z"}],
        },
    ]
    tops = [r["top_reason"]["feature"] for r in distinct_reasons(rows)]
    assert tops == ["industry", "budget", "need"]  # the shared +8 sentence is typical here


def test_calllist_page_has_summary_plot_and_csv_link(client):
    page = client.get("/calllist", params={"capacity": 60, "grade": "warm,cold"}).text
    assert 'class="chart calllist-chart"' in page and 'class="interval-band"' in page
    assert "conversions expected from the top 60 open leads" in page
    assert (
        'href="/v1/calllist?capacity=60&amp;grade=warm%2Ccold&amp;source=&amp;format=csv"' in page
    )
    assert page.count('<td class="num score">') == 60


def test_values_carry_units():
    from leadml.config import Config
    from leadml.serve.pages import with_unit

    config = Config.model_validate({"explain": {"units": {"budget": "EUR", "seats": "seats"}}})
    assert with_unit("annual_revenue", 40223000.0, config) == "$40,223,000"
    assert with_unit("budget", 5000, config) == "€5,000"
    assert with_unit("seats", 12.0, config) == "12 seats"
    assert with_unit("employees", 1064.0, config) == "1,064 employees"
    assert with_unit("industry", "Media", config) == "Media"
    assert with_unit("budget", None, config) == "unknown"


def test_cli_calllist_csv_json_and_explain_since(run_cli, history_db, trained_bundle, tmp_path):
    import json

    target = tmp_path / "calls.csv"
    code, out, _ = run_cli(
        "calllist", "--db", history_db, "--capacity", "40", "--grade", "warm,cold",
        "--csv", str(target),
    )  # fmt: skip
    assert code == 0 and "Calling the top 40 of" in out and "90% interval" in out
    frame = pd.read_csv(target)
    assert len(frame) == 40 and set(frame["grade"]) <= {"warm", "cold"}
    code, out, _ = run_cli("calllist", "--db", history_db, "--capacity", "10", "--json")
    body = json.loads(out)
    assert code == 0 and body["called"] == 10 and len(body["curve"]) == 10
    lead = int(frame["lead_id"].iloc[0])
    code, out, _ = run_cli(
        "explain", str(lead), "--db", history_db, "--model", str(trained_bundle),
        "--since", "2026-05-21", "--json",
    )  # fmt: skip
    ledger = json.loads(out)["history"]["ledger"]
    assert code == 0 and sum(s["points"] for s in ledger["steps"]) == ledger["change"]
    code, out, _ = run_cli(
        "explain", str(lead), "--db", history_db, "--model", str(trained_bundle),
        "--since", "2026-05-21",
    )  # fmt: skip
    assert code == 0 and "time passing" in out and "baseline" in out


def test_monitor_never_calls_a_run_that_scored_no_lead_stable():
    from leadml.monitor import MonitorResult

    def result(scored: int) -> MonitorResult:
        run = {"run_id": "r1", "status": "succeeded", "scored": scored}
        return MonitorResult("v1", pd.Timestamp("2026-06-30"), 30, 500, [], run=run)

    assert result(0).status == "alert" and result(0).exit_code != 0
    assert result(120).status == "unknown"  # no drift judged, nothing wrong with the run


def test_every_page_says_when_the_latest_run_scored_past_the_data(
    history_db, trained_bundle, small_config, tmp_path
):
    """The batch summary's stale-data warning reaches the pages' header: after a run scored
    three months past the data's last event, every page says so; before it, none does."""
    import shutil

    from leadml.batch import ScoreOptions, run_scoring
    from leadml.config import override
    from leadml.serve.app import create_app

    url = f"sqlite:///{tmp_path / 'leads.db'}"
    shutil.copy(history_db.removeprefix("sqlite:///"), tmp_path / "leads.db")
    config = override(small_config, data__source=url)
    with TestClient(create_app(trained_bundle, url, config)) as c:
        assert "Scores may be stale" not in c.get("/leads").text
    options = ScoreOptions(url=url, model_ref=str(trained_bundle), as_of="2026-09-30")
    assert any("past the data" in note for note in run_scoring(config, options).notes)
    with TestClient(create_app(trained_bundle, url, config)) as c:
        for path in ("/leads", "/calllist"):
            page = c.get(path)
            assert page.status_code == 200
            assert "Scores may be stale" in page.text and "past the data" in page.text, path
