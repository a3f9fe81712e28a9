"""Request and response models of the HTTP scorer, generated from the model's feature spec.

The lead model has one optional field per attribute column the model reads (categorical ->
text, numeric -> a finite number), plus `lead_id` and, for models with time, `created_at`.
A lead row as stored is accepted too: its columns may carry their stored (source) names
(data.rename, id_column, created_at), and the stored columns the model never reads (status,
converted_at, data.ignore, data.leaking, the training table's other columns) are accepted and
dropped. Any other field is refused (extra="forbid"), so a misspelt column is an error that
names it instead of a silently missing value; `serve.unknown_fields: ignore` drops them instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
    create_model,
)

from leadml.config import DataConfig
from leadml.data.frames import column_mapping
from leadml.features import FeatureSpec

MAX_EVENTS = 10_000
EARLIEST, LATEST = datetime(1900, 1, 1), datetime(2200, 1, 1)
FORBID = ConfigDict(extra="forbid")


def _category_text(value: object) -> object:
    """Numbers and booleans sent for a categorical column read as their text ('3', 'True')."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value


def _naive_utc(value: datetime) -> datetime:
    """Timestamps as naive UTC (the canonical time zone) within a sane range, judged as written
    (before any offset is applied), as the spec's pattern on the year says."""
    if not EARLIEST <= value.replace(tzinfo=None) < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _timestamp_text(value: object) -> object:
    """Timestamps come as ISO 8601 text: a number (0, or "1700000000") is not read as Unix time."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("must be an ISO 8601 timestamp text, e.g. 2024-05-01T09:30:00Z")
    return value


ASCII_SPACE = " \t\n\r\f\v"  # what a blank id is made of (the spec's pattern says the same)


def _lead_id(value: object) -> object:
    """An integer or a short non-empty text; one clear message otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value.strip(ASCII_SPACE)) > 0 and len(value) <= 200:
        return value
    raise ValueError("must be an integer or a non-empty text of at most 200 characters")


CATEGORY_SCHEMA = {
    "anyOf": [
        {"type": "string", "maxLength": 500},
        {"type": "integer"},
        {"type": "boolean"},
        {"type": "null"},
    ],
    "description": "a category: text, or an integer or boolean read as its text",
}
Category = Annotated[
    Annotated[str, StringConstraints(max_length=500)] | None,
    BeforeValidator(_category_text),
    WithJsonSchema(CATEGORY_SCHEMA),
]
Number = Annotated[float, Strict(), AllowInfNan(False)] | None
# The spec states what the validators hold: ISO 8601 text with a year 1900-2199 (before 2200).
TIMESTAMP_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^(19|20|21)\d\d-",
    "description": "ISO 8601 date-time (UTC unless an offset is given), from 1900 to before 2200",
}
Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp_text),
    AfterValidator(_naive_utc),
    WithJsonSchema(TIMESTAMP_SCHEMA),
]
LEAD_ID_SCHEMA = {
    "anyOf": [
        {"type": "integer"},
        {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"[^ \t\n\r\f\v]"},
    ],
    "description": "an integer, or a text with at least one non-blank character (at most 200)",
}
LeadId = Annotated[int | str, BeforeValidator(_lead_id), WithJsonSchema(LEAD_ID_SCHEMA)]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class Event(BaseModel):
    """One engagement event of the lead (only those at or before as_of count)."""

    model_config = FORBID
    occurred_at: Timestamp
    event_type: EventType = Field(examples=["pricing_page_view"])
    value: Number = None


class Reason(BaseModel):
    """One factor behind the score, in score points (baseline + points = score)."""

    feature: str
    label: str
    value: str | float | int | None
    points: int
    text: str


class ScoreResponse(BaseModel):
    lead_id: int | str | None
    probability: float = Field(description="Calibrated chance to convert within the horizon")
    score: int = Field(ge=1, le=100)
    grade: str
    reasons: list[Reason]
    model_version: str


class BatchResponse(BaseModel):
    results: list[ScoreResponse]
    model_version: str


class StoredScore(ScoreResponse):
    scored_at: str | None = Field(description="When the batch scorer stored this score (UTC)")


class ErrorDetail(BaseModel):
    field: str
    message: str
    type: str


class ErrorResponse(BaseModel):
    error: str
    detail: list[ErrorDetail] = Field(default_factory=list)


class Health(BaseModel):
    status: str
    model_version: str | None = None
    model_ref: str | None = None


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str
    swapped: bool


@dataclass(frozen=True)
class RequestModels:
    """The generated request models of one feature spec."""

    lead: type[BaseModel]
    score_request: type[BaseModel]
    batch_request: type[BaseModel]
    fields: tuple[tuple[str, str], ...]  # (column, kind): what a reload must keep the same


def request_fields(spec: FeatureSpec) -> tuple[tuple[str, str], ...]:
    """The lead fields a spec takes, with their kind; equal tuples mean equal request schemas."""
    time = (("created_at", "timestamp"),) if spec.has_time else ()
    cats = tuple((c, "categorical") for c in spec.categories)
    return time + cats + tuple((c, "numeric") for c in spec.numeric)


@dataclass(frozen=True)
class StoredRow:
    """How a lead row as stored (in the user's own column names) maps onto the request:
    `aliases` canonical -> source name, `unused` the stored columns the model never reads."""

    aliases: dict[str, str] = field(default_factory=dict)
    unused: tuple[str, ...] = ()
    unknown: str = "reject"


def stored_row(spec: FeatureSpec, metadata: dict, data: DataConfig, unknown: str) -> StoredRow:
    """The stored columns a request may carry besides the model's: the canonical non-features
    (status, converted_at), data.ignore and data.leaking, and the training table's others."""
    sources = [*data.rename, data.id_column, data.created_at, data.converted_at]
    mapping = column_mapping(data, [s for s in sources if s])
    aliases = {c: s for s, c in mapping.items() if s != c}
    used = {"lead_id", *spec.attribute_columns} | ({"created_at"} if spec.has_time else set())
    stored = {data.target.column, "status", "converted_at", "created_at"}
    stored |= {*data.ignore, *data.leaking, *metadata.get("data", {}).get("columns", [])}
    stored |= {mapping.get(c, c) for c in stored}  # named either way
    unused = sorted(stored - used)
    return StoredRow(aliases, tuple(unused), unknown)


def build_request_models(
    spec: FeatureSpec, max_batch: int, stored: StoredRow | None = None
) -> RequestModels:
    """Lead, ScoreRequest and BatchRequest models for this spec: the model's columns, stored
    columns accepted and never used, any other field refused (or ignored: serve.unknown_fields)."""
    stored = stored or StoredRow()
    extra = ConfigDict(extra="ignore" if stored.unknown == "ignore" else "forbid")
    lead = create_model("Lead", __config__=extra, **_lead_fields(spec, stored))
    score_request = create_model(
        "ScoreRequest", __config__=FORBID, lead=(lead, ...), events=_events(), as_of=_as_of()
    )
    item = create_model("BatchItem", __config__=FORBID, lead=(lead, ...), events=_events())
    items = Annotated[list[item], Field(min_length=1, max_length=max_batch)]
    batch_request = create_model(
        "BatchRequest", __config__=FORBID, items=(items, ...), as_of=_as_of()
    )
    return RequestModels(lead, score_request, batch_request, request_fields(spec))


def _events() -> tuple:
    return (list[Event], Field(default_factory=list, max_length=MAX_EVENTS))


def _as_of() -> tuple:
    return (Timestamp | None, Field(None, description="Score as of this time (default: now)"))


def _lead_fields(spec: FeatureSpec, stored: StoredRow) -> dict[str, Any]:
    """Field definitions; columns go by alias so any column name is a valid field, and each
    also answers to its stored (source) name. Unused stored columns are excluded from the dump."""
    fields: dict[str, Any] = {"lead_id": (LeadId, _named("lead_id", stored, examples=[1001]))}
    if spec.has_time:
        example = ["2024-05-01T09:30:00Z"]
        fields["created_at"] = (Timestamp, _named("created_at", stored, examples=example))
    for i, column in enumerate(spec.categories):
        fields[f"cat_{i}"] = (Category, _named(column, stored, default=None))
    for i, column in enumerate(spec.numeric):
        fields[f"num_{i}"] = (Number, _named(column, stored, default=None))
    for i, column in enumerate(stored.unused):
        unused = f"stored column {column!r}: accepted as stored, never used by the model"
        fields[f"unused_{i}"] = (
            Any,
            _named(column, stored, None, exclude=True, description=unused),
        )
    return fields


def _named(column: str, stored: StoredRow, default: Any = ..., **kwargs: Any) -> Any:
    """A Field read as `column` or its stored name, dumped as `column`."""
    source = stored.aliases.get(column)
    names = AliasChoices(column, source) if source and source != column else column
    return Field(default, validation_alias=names, serialization_alias=column, **kwargs)


def lead_dict(lead: BaseModel) -> dict[str, object]:
    """The validated lead as the plain dict `predict.score_one` takes (column names as keys)."""
    return lead.model_dump(by_alias=True)


def event_dicts(events: list[BaseModel]) -> list[dict[str, object]]:
    return [
        {"occurred_at": e.occurred_at, "event_type": e.event_type, "value": e.value} for e in events
    ]
