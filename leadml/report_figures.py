"""The training report's figures, each a base64 PNG for report.html.

Figures are drawn on standalone matplotlib Figures (no pyplot state, so a notebook's backend
is left alone) and embedded as base64 PNG: report.html is one self-contained file.
"""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np

from leadml.bundle import LeadModel
from leadml.calibrate import to_score

SHAP_SAMPLE = 2000
MODELS = [  # key, label: leadml and its peers, in the order of every table and legend
    ("leadml", "leadml"),
    ("logistic_regression", "Logistic regression (one-hot, C=1)"),
    ("lightgbm", "LightGBM (early stopping)"),
    ("naive_bayes", "Naive Bayes (Odoo-style)"),
]
COLORS = {
    "leadml": "#1f6feb",
    "logistic_regression": "#d97706",
    "lightgbm": "#16a34a",
    "naive_bayes": "#6b7280",
}


def figures(
    model: LeadModel, X_test: np.ndarray, evaluation: dict, by_grade: list[dict], seed: int
) -> dict[str, str]:
    """Every plot of the report as a base64 PNG (by_grade: the report's grade rows)."""
    arrays = evaluation["_arrays"]
    y, p = np.asarray(arrays["y_test"]), np.asarray(arrays["p_test"])
    peers = {m: arrays[f"p_{m}"] for m, _ in MODELS[1:] if f"p_{m}" in arrays}
    return {
        "roc": roc_figure(y, {"leadml": p, **peers}),
        "reliability": reliability_figure(evaluation.get("reliability", [])),
        "gains": gains_figure(evaluation.get("gains", [])),
        "histogram": score_histogram_figure(y, p, model),
        "grades": grade_figure(by_grade),
        "shap": shap_figure(model, shap_sample(X_test, seed)),
    }


def shap_sample(X: np.ndarray, seed: int, limit: int = SHAP_SAMPLE) -> np.ndarray:
    """At most `limit` rows, drawn without replacement, in their original order."""
    if len(X) <= limit:
        return X
    idx = np.random.default_rng(seed).choice(len(X), size=limit, replace=False)
    return X[np.sort(idx)]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def png_base64(fig) -> str:
    """A figure as base64-encoded PNG (for a data: URI)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def roc_figure(y: np.ndarray, probabilities: dict[str, np.ndarray]) -> str:
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure(5.5, 4.5)
    ax = fig.add_subplot()
    for name, label in MODELS:
        if name not in probabilities:
            continue
        p = np.asarray(probabilities[name])
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(
            fpr,
            tpr,
            color=COLORS[name],
            lw=2 if name == "leadml" else 1.3,
            label=f"{label} (AUC {roc_auc_score(y, p):.3f})",
        )
    ax.plot([0, 1], [0, 1], ls=":", color="#999999", lw=1)
    ax.set(
        xlabel="False positive rate",
        ylabel="True positive rate",
        title="ROC curves (test slice)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="lower right", fontsize=8)
    return png_base64(fig)


def reliability_figure(rows: list[dict]) -> str:
    fig = _figure(5.5, 4.5)
    ax = fig.add_subplot()
    pred = [r["mean_predicted"] for r in rows]
    obs = [r["observed_rate"] for r in rows]
    top = max(pred + obs + [0.05]) * 1.08
    ax.plot([0, top], [0, top], ls=":", color="#999999", lw=1, label="perfect calibration")
    ax.plot(pred, obs, marker="o", color=COLORS["leadml"], label="leadml (10 equal-size bins)")
    ax.set(
        xlabel="Mean predicted probability",
        ylabel="Observed conversion rate",
        title="Reliability diagram (test slice)",
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(loc="upper left", fontsize=8)
    return png_base64(fig)


def gains_figure(rows: list[dict]) -> str:
    fig = _figure(9, 3.8)
    left, right = fig.subplots(1, 2)
    deciles = [r["decile"] for r in rows]
    left.bar(deciles, [r["lift"] for r in rows], color=COLORS["leadml"])
    left.axhline(1, ls=":", color="#999999")
    left.set(
        xlabel="Score decile (1 = highest scores)",
        ylabel="Lift over average",
        title="Lift by decile",
        xticks=deciles,
    )
    right.plot(
        [0] + [d * 10 for d in deciles],
        [0] + [100 * r["cumulative_gain"] for r in rows],
        marker="o",
        color=COLORS["leadml"],
        label="leadml",
    )
    right.plot([0, 100], [0, 100], ls=":", color="#999999", label="random")
    right.set(
        xlabel="% of leads contacted (highest scores first)",
        ylabel="% of conversions captured",
        title="Cumulative gains",
        xlim=(0, 100),
        ylim=(0, 100),
    )
    right.legend(loc="lower right", fontsize=8)
    return png_base64(fig)


def score_histogram_figure(y: np.ndarray, p: np.ndarray, model: LeadModel) -> str:
    scores = to_score(p).astype(int)
    fig = _figure(9, 3.5)
    ax = fig.add_subplot()
    bins = np.arange(0.5, 101.5, 1)
    ax.hist(
        [scores[y == 0], scores[y == 1]],
        bins=bins,
        stacked=True,
        color=["#9ca3af", COLORS["leadml"]],
        label=["did not convert", "converted"],
    )
    for threshold, name in (
        (model.grades.warm_min, model.grades.names[1]),
        (model.grades.hot_min, model.grades.names[0]),
    ):
        ax.axvline(threshold - 0.5, ls="--", color="#b91c1c", lw=1)
        ax.text(
            threshold,
            ax.get_ylim()[1] * 0.95,
            f" {name} ≥ {threshold}",
            color="#b91c1c",
            fontsize=8,
            va="top",
        )
    ax.set(
        xlabel="Score (1-100)",
        ylabel="Test snapshots",
        title="Score distribution (test slice)",
        xlim=(0.5, 100.5),
    )
    ax.legend(loc="upper right", fontsize=8)
    return png_base64(fig)


def grade_figure(rows: list[dict]) -> str:
    fig = _figure(5.5, 3.8)
    ax = fig.add_subplot()
    names = [r["grade"] for r in rows]
    rates = [100 * (r["rate"] or 0.0) for r in rows]
    bars = ax.bar(names, rates, color=["#b91c1c", "#d97706", "#2563eb"][: len(names)])
    for bar, r in zip(bars, rows, strict=True):
        ax.annotate(
            f"{bar.get_height():.1f}%\nn={r['n']:,}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set(
        ylabel="Conversion rate (%)",
        title="Conversion rate by grade (test slice)",
        ylim=(0, max(rates + [1]) * 1.3),
    )
    return png_base64(fig)


def shap_figure(model: LeadModel, X: np.ndarray, max_display: int = 15) -> str:
    """SHAP beeswarm from the model's own exact contributions (no explainer is refitted)."""
    import shap  # slow to import: only when a report is drawn

    contrib = model.model.contributions(X)
    data = X.astype(np.float64).copy()
    data[:, model.spec.categorical_indices] = np.nan  # category codes have no order: grey dots
    explanation = shap.Explanation(
        values=contrib[:, :-1],
        base_values=contrib[:, -1],
        data=data,
        feature_names=[f.label for f in model.spec.features],
    )
    fig = _figure(9, 0.4 * min(max_display, X.shape[1]) + 1.8)
    ax = fig.add_subplot()
    with warnings.catch_warnings():  # all-NaN colour columns (categoricals) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        shap.plots.beeswarm(explanation, max_display=max_display, ax=ax, show=False, plot_size=None)
    ax.set_title(f"SHAP values (log-odds) on {len(X):,} test snapshots", fontsize=11)
    return png_base64(fig)
