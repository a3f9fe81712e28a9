"""The training run's human-readable artifacts: metrics.json, model_card.md, report.html."""

from __future__ import annotations

from pathlib import Path

from leadml.bundle import LeadModel
from leadml.config import Config


def write_artifacts(bundle_dir: Path, model: LeadModel, prep, evaluation: dict, config: Config) -> None:
    from leadml.workflow import metrics_json

    (bundle_dir / "metrics.json").write_text(metrics_json(evaluation))
    (bundle_dir / "model_card.md").write_text(f"# leadml model {model.version}\n")
    (bundle_dir / "report.html").write_text(f"<html><body><h1>leadml model {model.version}</h1></body></html>")
