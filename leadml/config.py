"""Frozen, validated configuration read from configs/*.yaml (YAML in, pydantic models out)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadml.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FORM_DEFAULTS = ("", "select", "select one", "-", "--", "?", "n/a", "na", "null")


class TargetConfig(_Frozen):
    """Which column says a lead converted, and which value means yes."""

    column: str = "status"
    positive: str | int | bool = "converted"


class DataConfig(_Frozen):
    """Where the leads live and how the user's columns map onto the canonical tables."""

    source: str = Field(
        "sqlite:///data/leads.db",
        description="SQLAlchemy URL of the lead database, or a path to a CSV/Parquet file of leads.",
    )
    leads_table: str = "leads"
    events_table: str | None = "lead_events"
    events_source: str | None = Field(
        None, description="CSV/Parquet file of events (file sources)."
    )
    csv_separator: str = ","
    rename: dict[str, str] = Field(default_factory=dict, description="source column -> canonical")
    id_column: str | None = Field("lead_id", description="None: number rows 1..n in file order")
    created_at: str | None = Field("created_at", description="None: single-table export, no time")
    converted_at: str | None = "converted_at"
    target: TargetConfig = TargetConfig()
    categorical: list[str] | None = Field(None, description="None: inferred from dtypes")
    numeric: list[str] | None = Field(None, description="None: inferred from dtypes")
    ignore: list[str] = Field(default_factory=list)
    leaking: list[str] = Field(
        default_factory=list, description="Known only after the outcome: never used as features"
    )
    ordered: bool = Field(
        False, description="Rows are in time order (for sources without created_at)."
    )
    missing_values: list[str] = Field(
        default_factory=lambda: list(FORM_DEFAULTS),
        description="text values that mean 'not answered' (form defaults), read as missing; "
        "matched ignoring case and surrounding spaces; [] keeps every value as it is",
    )
    order_by: str | None = Field(
        None,
        description="a column (date or number) that puts a single-table export in time order: "
        "rows are sorted by it, the split keeps that order, and it is not a feature",
    )
    bad_rows: Literal["error", "drop"] = Field(
        "error",
        description="lead rows that break the schema's rules (converted before created, "
        "duplicate ids, ...): the run stops (error), or they are dropped with a count (drop)",
    )
    non_finite: Literal["invalid", "missing"] = Field(
        "invalid",
        description="'inf', '-inf', 'NaN' (as text or as numbers) in numeric columns: an error "
        "(training) or a rejected row (scoring); or read as missing values",
    )


class SnapshotConfig(_Frozen):
    """Training rows: each lead observed at these offsets after creation while still open."""

    offsets_days: list[float] = Field(default_factory=lambda: [0, 3, 7, 14, 30, 60])
    horizon_days: float = Field(30, gt=0, description="label: converts within this many days")


class FeatureConfig(_Frozen):
    windows_days: list[int] = Field(default_factory=lambda: [7, 30, 90])
    decay_half_life_days: float = Field(14, gt=0)
    event_types: list[str] | None = Field(None, description="None: those seen in training data")
    min_category_count: int = Field(10, ge=1, description="rarer categories pool into 'other'")
    max_categories: int = Field(60, ge=2)


class SplitConfig(_Frozen):
    method: Literal["auto", "time", "order", "stratified"] = "auto"
    valid_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    folds: int = Field(3, ge=2, description="rolling-origin folds for `leadml evaluate`")


class LightGBMConfig(_Frozen):
    params: dict[str, float | int | str | bool] = Field(
        default_factory=lambda: {
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_data_in_leaf": 100,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 10.0,
            "max_bin": 63,
            "cat_smooth": 20,
            "min_data_per_group": 50,
        }
    )
    num_boost_round: int = Field(400, ge=1)
    early_stopping_rounds: int = Field(40, ge=1)
    monotone_increasing: list[str] = Field(
        default_factory=list, description="feature names (or prefixes ending in *) forced upward"
    )


class ModelConfig(_Frozen):
    candidates: list[Literal["lightgbm", "logistic", "naive_bayes"]] = Field(
        default_factory=lambda: ["lightgbm", "logistic", "naive_bayes"],
        min_length=1,
        description="members of the forward-validated ensemble: log-odds combined with "
        "non-negative weights fitted on out-of-time predictions; zero-weight ones are dropped",
    )
    origins: int = Field(
        3, ge=1, le=10, description="expanding forward origins inside the pre-test period"
    )
    origin_share: float = Field(
        0.15,
        gt=0,
        lt=0.3,
        description="share of the pre-test timeline each origin's block covers (the latest ones)",
    )
    lightgbm: LightGBMConfig = LightGBMConfig()
    logistic_c: float = Field(0.1, gt=0)
    refit: Literal["auto", "always", "never"] = Field(
        "auto",
        description="no longer used (kept so older configs still load): the ensemble's members "
        "are always fitted on all pre-test rows and calibrated on their out-of-time margins",
    )
    seed: int = 42
    threads: int = Field(0, ge=0, description="0: LightGBM's default")


class ScreeningConfig(_Frozen):
    drift_psi: float = Field(
        0.25, gt=0, description="PSI train vs latest period flagged above this"
    )
    drift_action: Literal["report", "drop"] = "report"
    leak_auc: float = Field(0.95, gt=0.5, lt=1, description="single-feature AUC flagged above this")
    leak_share: float = Field(
        0.35, gt=0, le=1, description="a feature with this share of a quick model's gain is tested"
    )
    leak_auc_drop: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="... and flagged when dropping it costs this much holdout AUC",
    )
    leak_gap: float = Field(
        0.5, gt=0, le=1, description="... that is at least this share of 1 - AUC without it"
    )
    allow: list[str] = Field(
        default_factory=list, description="features you vouch for: never flagged as leaks"
    )
    fail_on_leak: bool = False


class CalibrationConfig(_Frozen):
    method: Literal["auto", "isotonic", "platt"] = "auto"


class GradeConfig(_Frozen):
    """Grades from score thresholds: fixed numbers, or quantiles of the training scores."""

    names: tuple[str, str, str] = ("hot", "warm", "cold")
    mode: Literal["fixed", "quantile"] = "fixed"
    hot_min_score: int = Field(40, ge=1, le=100)
    warm_min_score: int = Field(15, ge=1, le=100)
    hot_quantile: float = Field(0.9, gt=0, lt=1)
    warm_quantile: float = Field(0.6, gt=0, lt=1)
    regrade: bool = Field(
        False,
        description="quantile mode: recompute thresholds on a retrain instead of keeping the champion's",
    )

    @model_validator(mode="after")
    def _ordered(self) -> GradeConfig:
        if self.warm_min_score > self.hot_min_score:
            raise ValueError("warm_min_score must not exceed hot_min_score")
        if self.warm_quantile >= self.hot_quantile:
            raise ValueError("warm_quantile must be below hot_quantile")
        return self


class ExplainConfig(_Frozen):
    top_positive: int = Field(3, ge=0)
    top_negative: int = Field(3, ge=0)
    fit_features: list[str] = Field(
        default_factory=list,
        description="features (names or groups, fnmatch patterns) counted as fit; default: "
        "attributes are fit, events, recency, decay, trend, active days and lead age engagement",
    )
    engagement_features: list[str] = Field(
        default_factory=list, description="features counted as engagement (wins over fit_features)"
    )
    units: dict[str, str] = Field(
        default_factory=dict,
        description="column -> unit shown with its values on the pages (USD, EUR, employees, ...); "
        "default: the currency for money-like names, days for *_days",
    )
    currency: str = Field("USD", description="the currency of money-like columns")


class HistoryConfig(_Frozen):
    """Score history: how long lead_score_history is kept and what a trend word means."""

    keep_runs: int | None = Field(
        None, ge=2, description="keep each lead's rows of the latest N succeeded runs; None: all"
    )
    keep_days: float | None = Field(
        None, gt=0, description="drop history rows scored more than this many days ago"
    )
    trend_runs: int = Field(
        4, ge=2, description="the trend compares the latest of this many scorings"
    )
    rising_points: int = Field(5, ge=1, description="up by at least this much over them: rising")
    falling_points: int = Field(5, ge=1, description="down by at least this much: falling")


class CallListConfig(_Frozen):
    """`leadml calllist`: the interval around the expected conversions of the top N."""

    level: float = Field(0.9, gt=0.5, lt=1)
    exact_max: int = Field(
        20_000, ge=1, description="above this many leads the interval uses a normal approximation"
    )


class ServeConfig(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_batch: int = Field(1000, ge=1)
    max_body_bytes: int = Field(2_000_000, ge=1024)
    body_timeout_s: float = Field(
        10, gt=0, description="a request body not fully received in this time: 408, closed"
    )
    keep_alive_timeout_s: float = Field(
        5, gt=0, description="an idle keep-alive connection is closed after this (uvicorn)"
    )
    max_connections: int = Field(
        100, ge=1, description="concurrent connections and requests; more get 503 (uvicorn)"
    )
    access_log: Literal["text", "json", "off"] = Field(
        "text", description="one line per request, client values escaped and cut; json: JSON lines"
    )
    open_docs: bool = Field(
        False, description="with an API key set: keep /docs and /openapi.json open without it"
    )
    unknown_fields: Literal["reject", "ignore"] = Field(
        "reject",
        description="a lead field that is neither a model column nor a stored column (status, "
        "converted_at, data.ignore, data.leaking, the training table's): 422 naming it, or ignored",
    )


class BatchConfig(_Frozen):
    chunk_size: int = Field(5000, ge=1)
    on_bad_rows: Literal["reject", "fail"] = Field(
        "reject",
        description="rows training would refuse: kept in scoring_rejects (reject), or the run "
        "fails with exit 2 before writing anything (fail, as --strict)",
    )
    max_reject_fraction: float = Field(
        0.01, ge=0, le=1, description="a run rejecting more of the leads it read fails as a whole"
    )


class MlflowConfig(_Frozen):
    tracking_uri: str | None = Field(None, description="None: sqlite store under ./mlruns")
    experiment: str = "leadml"
    registered_model: str = "leadml"


class MonitorConfig(_Frozen):
    """`leadml monitor`: PSI bands (< watch stable, watch..alert watch, > alert alert)."""

    psi_watch: float = 0.1
    psi_alert: float = 0.25
    window_days: float = Field(
        30, gt=0, description="recent snapshots: as_of within this many days before the latest run"
    )
    min_rows: int = Field(
        100, ge=1, description="fewer recent snapshots than this: drift not judged"
    )


class PromotionConfig(_Frozen):
    """`leadml promote`: the challenger wins unless its ROC AUC is worse beyond the interval."""

    tolerance: float = Field(
        0.0,
        ge=0,
        description="promote when the CI upper bound of AUC(challenger) - AUC(champion) >= -tolerance",
    )
    bootstrap_samples: int = Field(500, ge=50)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 0


class Config(_Frozen):
    """The whole configuration of a leadml project."""

    data: DataConfig = DataConfig()
    snapshots: SnapshotConfig = SnapshotConfig()
    features: FeatureConfig = FeatureConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    screening: ScreeningConfig = ScreeningConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    grades: GradeConfig = GradeConfig()
    explain: ExplainConfig = ExplainConfig()
    history: HistoryConfig = HistoryConfig()
    calllist: CallListConfig = CallListConfig()
    serve: ServeConfig = ServeConfig()
    batch: BatchConfig = BatchConfig()
    mlflow: MlflowConfig = MlflowConfig()
    monitor: MonitorConfig = MonitorConfig()
    promotion: PromotionConfig = PromotionConfig()
    models_dir: str = "models"


def load_config(path: str | Path | None) -> Config:
    """Read a YAML config; None gives the defaults. Errors name the file and the key."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ConfigError(f"config {path}: {problems}") from None


def config_schema() -> str:
    """The JSON Schema of the configuration, for editors and validation."""
    return json.dumps(Config.model_json_schema(), indent=2)


def override(config: Config, **changes: object) -> Config:
    """A copy of a section-level config with dotted keys replaced, e.g. data__source='...'."""
    raw = config.model_dump()
    for key, value in changes.items():
        node = raw
        *parents, leaf = key.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return Config.model_validate(raw)
