"""Monitoring: PSI and its bands, realized conversion, the HTML report, and end to end: a drifted
synthetic database raises the alert (exit code 1) and a healthy one does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadml.config import Config, MonitorConfig
from leadml.monitor import (
    Drift,
    MonitorResult,
    band,
    realized_conversion,
    recent_snapshots,
    render_html,
    wilson_interval,
    window_psi,
)

CFG = MonitorConfig()


# ---------------------------------------------------------------- PSI and bands


def test_psi_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 4000)
    assert window_psi(ref, rng.normal(0, 1, 4000)) < 0.01
    shifted = window_psi(ref, rng.normal(0.5, 1, 4000))
    assert 0.1 < shifted < 0.5
    assert window_psi(ref, rng.normal(1.5, 1, 4000)) > 1.0


def test_psi_categorical_mix_and_missing_as_own_bin():
    ref = np.repeat([0.0, 1.0, 2.0], [500, 300, 200])
    same = np.repeat([0.0, 1.0, 2.0], [250, 150, 100])
    moved = np.repeat([0.0, 1.0, 2.0], [200, 300, 500])
    assert window_psi(ref, same, categorical=True) == pytest.approx(0.0, abs=1e-3)
    # hand computation with shares (0.5, 0.3, 0.2) -> (0.2, 0.3, 0.5), smoothing aside
    expected = (0.2 - 0.5) * np.log(0.2 / 0.5) + (0.5 - 0.2) * np.log(0.5 / 0.2)
    assert window_psi(ref, moved, categorical=True) == pytest.approx(expected, rel=0.01)
    half_missing = np.where(np.arange(1000) % 2 == 0, np.nan, np.linspace(0, 1, 1000))
    assert window_psi(np.linspace(0, 1, 1000), half_missing) > 1.0


def test_psi_of_empty_sample_is_nan_and_band_na():
    value = window_psi(np.arange(10.0), np.zeros(0))
    assert np.isnan(value)
    assert band(value, CFG) == "n/a"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "stable"),
        (0.099, "stable"),
        (0.1, "watch"),
        (0.25, "watch"),
        (0.2501, "alert"),
        (3.0, "alert"),
    ],
)
def test_bands_follow_config(value, expected):
    assert band(value, CFG) == expected


def test_bands_use_configured_thresholds():
    strict = MonitorConfig(psi_watch=0.02, psi_alert=0.05)
    assert band(0.03, strict) == "watch" and band(0.06, strict) == "alert"


# ---------------------------------------------------------------- snapshots, realized conversion


def test_recent_snapshots_are_training_offsets_inside_the_window():
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3],
            "created_at": pd.to_datetime(["2026-01-01", "2026-01-08", "2026-01-09"]),
            "status": ["open", "converted", "open"],
            "converted_at": pd.to_datetime([None, "2026-01-10", None]),
        }
    )
    config = Config.model_validate({"snapshots": {"offsets_days": [0, 3, 7]}})
    snaps = recent_snapshots(config, leads, pd.Timestamp("2026-01-11"), window_days=4)
    got = sorted(zip(snaps.lead_id, snaps.as_of.dt.strftime("%Y-%m-%d"), strict=True))
    # lead 1 at day 7 (01-08); lead 2 at day 0 (01-08) only: converted on 01-10 before day 3;
    # lead 3 at day 0 (01-09); day 3 of lead 3 is 01-12, after as_of.
    assert got == [(1, "2026-01-08"), (2, "2026-01-08"), (3, "2026-01-09")]


def test_wilson_interval():
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0


def test_realized_conversion_by_grade_counts_the_horizon():
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 5],
            "converted_at": pd.to_datetime(
                ["2026-02-10", "2026-04-01", None, "2026-02-01", "2026-03-15"]
            ),
        }
    )
    scored = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 5],
            "probability": [0.6, 0.5, 0.1, 0.9, 0.2],
            "score": [60, 50, 10, 90, 20],
            "grade": ["hot", "hot", "cold", "hot", "warm"],
            "observed_at": pd.to_datetime(["2026-02-01"] * 5),
        }
    )
    out = realized_conversion(scored, leads, 30, ("hot", "warm", "cold"))
    # lead 4 converted at the scoring moment: not a prediction; 2 and 5 converted after 30 days.
    assert out["n"] == 4 and out["conversions"] == 1
    hot, warm, cold = out["by_grade"]
    assert (hot["n"], hot["realized"], hot["predicted"]) == (2, 0.5, pytest.approx(0.55))
    assert (warm["n"], warm["realized"]) == (1, 0.0)
    assert (cold["n"], cold["realized"]) == (1, 0.0)
    top = out["by_decile"][0]
    assert top["group"] == "1" and top["predicted"] == pytest.approx(0.6)


def test_report_is_self_contained_and_shows_status():
    result = MonitorResult(
        "v1",
        pd.Timestamp("2026-06-30"),
        30,
        500,
        [
            Drift("score", "score", 0.02, "stable", 12.0, 12.5),
            Drift("source", "categorical", 0.4, "alert"),
        ],
        run={
            "run_id": "r1",
            "model_version": "v1",
            "as_of": "2026-06-30",
            "scored": 10,
            "mean_score": 14.0,
            "grades": {"hot": 0.1, "warm": 0.3, "cold": 0.6},
        },
        realized={"n": 0},
        notes=["a <note>"],
        score_hist={"reference": [0] + [1] * 100, "recent": [0] + [2] * 100},
    )
    assert result.status == "alert" and result.exit_code == 1
    page = render_html(result, CFG)
    assert "b-alert" in page and "source" in page and "a &lt;note&gt;" in page
    assert "<svg" in page and "grade mix" in page
    for external in ("<script", "<link", "src=", "href=", "@import", "url("):
        assert external not in page


# ---------------------------------------------------------------- end to end with the batch scorer


def _write_past_run(
    url: str, model, leads: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp
) -> int:
    """A scoring run as of `as_of` in the batch scorer's own tables (the leads open back then)."""
    from leadml.batch import HISTORY, RUNS, ensure_tables, score_tables
    from leadml.data.io import engine_for
    from leadml.predict import score_leads

    converted = pd.to_datetime(leads["converted_at"])
    open_then = leads[(leads["created_at"] <= as_of) & (converted.isna() | (converted > as_of))]
    scores = score_leads(model, open_then, events, as_of, reasons=False, scored_at=as_of)
    ensure_tables(url)
    tables = score_tables("int").tables
    run_id = f"past-{as_of:%Y%m%d}"
    history = [
        {
            "run_id": run_id,
            "lead_id": int(r.lead_id),
            "probability": float(r.probability),
            "score": int(r.score),
            "grade": r.grade,
            "reasons": None,
            "model_version": r.model_version,
            "scored_at": as_of.to_pydatetime(),
        }
        for r in scores.itertuples()
    ]
    with engine_for(url).begin() as conn:
        conn.execute(tables[HISTORY].insert(), history)
        conn.execute(
            tables[RUNS]
            .insert()
            .values(
                run_id=run_id,
                model_version=model.version,
                mode="all",
                as_of=as_of.to_pydatetime(),
                started_at=as_of.to_pydatetime(),
                finished_at=as_of.to_pydatetime(),
                status="succeeded",
                leads_scored=len(history),
            )
        )
    return len(history)


@pytest.fixture(scope="module")
def scored_dbs(tmp_path_factory, lead_model, trained_bundle, small_config):
    """A healthy and a drifted database (same seed), each with a matured run and a latest run."""
    from leadml.batch import ScoreOptions, run_scoring
    from leadml.data.io import read_dataset
    from leadml.data.synth import generate_database
    from leadml.features import data_cutoff

    out = {}
    for name, drift in (("healthy", False), ("drifted", True)):
        url = f"sqlite:///{tmp_path_factory.mktemp(name)}/leads.db"
        generate_database(url, 3000, 12, drift=drift, end="2026-06-30")
        leads, events = read_dataset(small_config.data, url=url)
        cutoff = pd.Timestamp(data_cutoff(leads, events))
        past = _write_past_run(url, lead_model, leads, events, cutoff - pd.Timedelta(days=45))
        latest = run_scoring(
            small_config,
            ScoreOptions(url=url, model_ref=str(trained_bundle), as_of=cutoff, all_leads=True),
        )
        out[name] = {"url": url, "past": past, "latest": latest}
    return out


@pytest.mark.slow
def test_healthy_database_does_not_alert(scored_dbs, lead_model, small_config):
    from leadml.monitor import run_monitor

    db = scored_dbs["healthy"]
    result = run_monitor(small_config, lead_model, url=db["url"])
    assert result.status in ("stable", "watch") and result.exit_code == 0
    assert max(d.psi for d in result.drift) <= small_config.monitor.psi_alert
    assert result.drift[0].name == "score" and result.drift[0].band == "stable"
    assert result.recent_rows >= small_config.monitor.min_rows
    assert (
        result.run["run_id"] == db["latest"].run_id and result.run["scored"] == db["latest"].scored
    )
    realized = result.realized
    assert realized["n"] == db["past"]  # the latest run is too recent to have matured
    hot, warm, cold = (r["realized"] for r in realized["by_grade"])
    assert hot > cold and warm > cold
    deciles = [r["realized"] for r in realized["by_decile"]]
    assert deciles[0] > 3 * max(deciles[-1], 0.01)
    overall = sum(r["n"] * r["predicted"] for r in realized["by_decile"]) / realized["n"]
    assert abs(overall - realized["conversions"] / realized["n"]) < 0.05  # still about calibrated


@pytest.mark.slow
def test_drifted_database_alerts_from_the_cli(scored_dbs, trained_bundle, small_config, tmp_path):
    from typer.testing import CliRunner

    from leadml.cli import app

    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  source: {small_config.data.source}\n")
    report = tmp_path / "monitor.html"
    args = [
        "monitor",
        "--config",
        str(config),
        "--db",
        scored_dbs["drifted"]["url"],
        "--model",
        str(trained_bundle),
        "--report",
        str(report),
    ]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 1, out.output
    assert "alert" in out.output and "source" in out.output
    page = report.read_text()
    assert "b-alert" in page and "Realized conversion" in page
    assert "src=" not in page and "<script" not in page


@pytest.mark.postgres
def test_monitor_errors_never_show_the_database_password(pg_url_required, lead_model):
    from leadml.errors import DataSourceError
    from leadml.monitor import run_monitor

    url = pg_url_required.replace("postgres@", "postgres:s3cret@", 1)
    config = Config.model_validate({"data": {"source": url, "leads_table": "no_such_leads_t"}})
    with pytest.raises(DataSourceError) as err:
        run_monitor(config, lead_model, url=url)
    assert "no_such_leads_t" in str(err.value) and "s3cret" not in str(err.value)
    assert "postgres:***@" in str(err.value)
