"""The training run's artifacts (metrics.json, report.html, model_card.md) exist and are true."""

from __future__ import annotations

import base64
import copy
import json
import re
from html import unescape
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from leadml.report import (
    format_percent,
    metrics_json,
    model_card,
    render_report,
    report_context,
    safe_source,
    split_summary,
)

METRIC_KEYS = {"roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top_decile", "n", "positives"}
FIGURES = ("roc", "reliability", "gains", "histogram", "grades", "shap")


def _recompute(y: np.ndarray, p: np.ndarray) -> dict:
    """The metrics, computed here independently of leadml.evaluate."""
    y = y.astype(int)
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    bins = np.array_split(np.argsort(p, kind="stable"), 10)
    ece = sum(len(b) * abs(p[b].mean() - y[b].mean()) for b in bins) / len(p)
    top = np.argsort(-p, kind="stable")[: int(np.ceil(0.1 * len(p)))]
    return {
        "roc_auc": roc_auc_score(y, p),
        "pr_auc": average_precision_score(y, p),
        "brier": brier_score_loss(y, p),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "ece": ece,
        "lift_top_decile": y[top].mean() / y.mean(),
        "n": len(y),
        "positives": int(y.sum()),
    }


@pytest.fixture(scope="module")
def metrics_file(trained_bundle) -> dict:
    return json.loads((trained_bundle / "metrics.json").read_text())


@pytest.fixture(scope="module")
def prep(small_config, trained):
    """The training run's prepared data, rebuilt (deterministic) with the same screening drops."""
    from leadml.data.io import read_dataset
    from leadml.workflow import drop_features, prepare

    leads, events = read_dataset(small_config.data)
    prepared = prepare(small_config, leads, events, log=lambda _: None)
    drop_features(prepared, trained.evaluation["screening"]["dropped"])
    return prepared


@pytest.fixture(scope="module")
def context(lead_model, prep, trained, small_config) -> dict:
    return report_context(lead_model, prep, trained.evaluation, small_config)


def test_bundle_holds_the_three_artifacts(trained_bundle):
    for name in ("metrics.json", "report.html", "model_card.md"):
        assert (trained_bundle / name).stat().st_size > 500, name


def test_metrics_json_has_the_design_shape(metrics_file, lead_model):
    assert metrics_file["model_version"] == lead_model.version
    assert set(metrics_file["test"]) == METRIC_KEYS
    assert set(metrics_file["baselines"]) == {"logistic_regression", "lightgbm", "naive_bayes"}
    assert set(metrics_file["peer_check"]) == {"lost_to", "best_peer", "message"}
    for baseline in metrics_file["baselines"].values():
        assert set(baseline) == METRIC_KEYS
    assert not any(key.startswith("_") for key in metrics_file)
    assert {"reliability", "gains", "screening", "calibration", "split", "base_rate"} <= set(
        metrics_file
    )


def test_metrics_json_equals_a_recomputation_from_the_arrays(metrics_file, trained):
    arrays = trained.evaluation["_arrays"]
    y = arrays["y_test"]
    expected = {
        "test": _recompute(y, arrays["p_test"]),
        **{
            peer: _recompute(y, arrays[f"p_{peer}"])
            for peer in ("logistic_regression", "lightgbm", "naive_bayes")
        },
    }
    written = {"test": metrics_file["test"], **metrics_file["baselines"]}
    for model, values in expected.items():
        for key, value in values.items():
            assert written[model][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (model, key)
    assert metrics_file["split"]["test"] == len(y)


def test_the_arrays_are_the_bundled_model_on_the_test_slice(lead_model, prep, trained):
    from leadml.split import TEST

    X_test, y_test = prep.part(TEST)
    assert lead_model.spec.names == prep.spec.names
    np.testing.assert_array_equal(y_test, trained.evaluation["_arrays"]["y_test"])
    p = lead_model.calibrator.predict(lead_model.model.margin(X_test))
    np.testing.assert_allclose(p, trained.evaluation["_arrays"]["p_test"], rtol=0, atol=1e-12)


def test_report_html_is_self_contained_and_shows_the_figures(trained_bundle, metrics_file):
    html = (trained_bundle / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<link" not in html.lower() and "<script" not in html.lower()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == len(FIGURES)
    for encoded in images:
        assert base64.b64decode(encoded)[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics_file["model_version"] in html
    assert f"{metrics_file['test']['roc_auc']:.4f}" in html
    assert f"{metrics_file['baselines']['logistic_regression']['roc_auc']:.4f}" in html
    assert f"{metrics_file['baselines']['naive_bayes']['roc_auc']:.4f}" in html
    assert f"{metrics_file['baselines']['lightgbm']['roc_auc']:.4f}" in html
    assert metrics_file["chosen_because"] in html
    assert metrics_file["peer_check"]["message"] in unescape(html)
    assert "Data hygiene" in html and "Ensemble members (forward origins)" in html


def test_model_card_names_version_metrics_and_limits(trained_bundle, metrics_file):
    card = (trained_bundle / "model_card.md").read_text()
    assert metrics_file["model_version"] in card
    assert f"Test ROC AUC {metrics_file['test']['roc_auc']:.4f}" in card
    assert metrics_file["model_kind"] in card
    assert "eligibility" in card and "## Intended use" in card
    assert "`pricing_page_view_count_7d` | Pricing-page views in the last 7 days" in card


def test_report_context_splits_and_metrics_match_the_evaluation(context, trained):
    ev = trained.evaluation
    rows = {s["name"]: s["rows"] for s in context["splits"]}
    assert rows == {k: ev["split"][k] for k in ("train", "valid", "test")}
    auc = next(r for r in context["metrics"] if r["key"] == "roc_auc")
    assert auc["values"]["leadml"] == ev["test"]["roc_auc"]
    assert auc["best"] == max(auc["values"], key=auc["values"].get)
    brier = next(r for r in context["metrics"] if r["key"] == "brier")
    assert brier["best"] == min(brier["values"], key=brier["values"].get)
    assert set(context["figures"]) == set(FIGURES)


def test_report_flags_leaks_drift_and_base_rate_shift(context):
    ctx = copy.deepcopy(context)
    ctx["screening"]["leaks"] = [{"name": "won_amount", "single_auc": 0.991}]
    ctx["screening"]["drifted"] = [{"name": "source", "psi": 0.42, "action": "dropped"}]
    ctx["screening"]["dropped"] = ["source", "won_amount"]
    ctx["base_rate"] = {"train": 0.06, "valid": 0.05, "test": 0.11, "shift_warning": True}
    html = render_report(ctx)
    leak_box = re.search(r'<div class="box leak".*?</div>', html, re.DOTALL).group(0)
    assert "LEAK WARNING" in leak_box and "won_amount" in leak_box and "0.991" in leak_box
    assert "conversion rate (11.0%) differs from\n  training (6.0%)" in html
    assert re.search(r"<code>source</code></td><td[^>]*>0.420</td><td>dropped</td>", html)
    card = model_card(ctx)
    assert "Leak warning: `won_amount`" in card and "miscalibrated until retrained" in card


def test_model_card_file_is_the_template_rendered_from_the_context(trained_bundle, context):
    def body(card: str) -> str:  # the training time is the only line that may differ
        return re.sub(r"^- Trained: .*$", "", card, flags=re.M)

    written = (trained_bundle / "model_card.md").read_text()
    assert body(written) == body(model_card(context))
    assert "\n\n\n" not in written and written.endswith(".\n") and not written.endswith("\n\n")


def test_model_card_of_a_single_table_export_says_every_finding(context):
    """The bank-marketing shape: no time column, stratified, hygiene, drift, leaks, a peer wins."""
    ctx = copy.deepcopy(context)
    for s in ctx["splits"]:
        s["start"] = s["end"] = None
    ctx["split_method"] = "stratified"
    ctx["hygiene"] = ["data: 12 'job' values read as missing ('unknown')"]
    ctx["screening"].update(
        leaks=[{"name": "duration", "single_auc": 0.97}],
        drifted=[{"name": "euribor3m", "psi": 1.234, "action": "dropped"}],
        dropped=["duration", "euribor3m"],
    )
    ctx["base_rate"] = {"train": 0.08, "valid": 0.1, "test": 0.31, "shift_warning": True}
    ctx["peer_check"] = {"lost_to": ["naive_bayes"], "message": "leadml LOSES to naive bayes"}
    card = model_card(ctx)
    train = ctx["splits"][0]
    assert f"- Split: stratified; train {train['rows']:,} rows, " in card
    assert "as of" not in card
    assert "\n\nData hygiene:\n\n- 12 'job' values read as missing ('unknown')\n" in card
    assert "Dropped by screening: `duration`, `euribor3m`." in card
    assert "\nAgainst the peers: leadml LOSES to naive bayes.\n" in card
    assert "test 31.0%. The test rate differs from training" in card
    assert "latest period: `euribor3m` (PSI 1.23, dropped).\n" in card
    assert "- Leak warning: `duration` predicted the outcome almost alone" in card
    assert card.endswith("check the data export.\n") and "\n\n\n" not in card
    assert "<h3>Split (stratified)</h3>" in render_report(ctx)


def test_split_summary_without_times_has_no_window():
    """A single-table export's snapshots carry an as_of column of NaT: no 'as of NaT'."""
    prep = SimpleNamespace(
        split=np.array(["train", "train", "valid", "test"]),
        y=np.array([0, 1, 0, 1]),
        snapshots=pd.DataFrame({"as_of": pd.to_datetime([None] * 4)}),
    )
    rows = split_summary(prep)
    assert [(r["name"], r["rows"], r["start"], r["end"]) for r in rows] == [
        ("train", 2, None, None),
        ("valid", 1, None, None),
        ("test", 1, None, None),
    ]
    prep.snapshots = pd.DataFrame({"as_of": pd.to_datetime(["2025-01-02", "2025-03-04"] * 2)})
    train = split_summary(prep)[0]
    assert (train["start"], train["end"]) == ("2025-01-02", "2025-03-04")


def test_report_without_findings_shows_no_alarm(context):
    ctx = copy.deepcopy(context)
    ctx["screening"].update(leaks=[], drifted=[], dropped=[])
    ctx["base_rate"] = {**ctx["base_rate"], "shift_warning": False}
    html = render_report(ctx)
    assert 'class="box leak"' not in html and 'class="box warn"' not in html
    assert 'class="box ok"' in html


def test_report_escapes_text_from_the_data(context):
    ctx = copy.deepcopy(context)
    ctx["segments"] = [
        {"segment": "<script>alert(1)</script>", "n": 60, "rate": 0.1, "roc_auc": 0.7}
    ]
    html = render_report(ctx)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_metrics_json_writes_nan_as_null_and_drops_arrays():
    evaluation = {
        "model_version": "v",
        "test": {"roc_auc": float("nan"), "n": np.int64(3), "brier": np.float32(0.25)},
        "data": {"source": "postgresql+psycopg://scott:tiger@db.example/leads"},
        "_arrays": {"y_test": np.zeros(3)},
    }
    out = json.loads(metrics_json(evaluation))
    assert out["test"] == {"roc_auc": None, "n": 3, "brier": 0.25}
    assert "_arrays" not in out
    assert "tiger" not in out["data"]["source"] and "scott" in out["data"]["source"]


def test_safe_source_hides_only_passwords():
    assert safe_source("data/leads.csv") == "data/leads.csv"
    assert safe_source("sqlite:///data/leads.db") == "sqlite:///data/leads.db"
    assert "secret" not in safe_source("postgresql://u:secret@h:5432/d")


def test_format_percent_handles_missing():
    assert format_percent(0.1234) == "12.3%"
    assert format_percent(None) == "n/a" and format_percent(float("nan")) == "n/a"
