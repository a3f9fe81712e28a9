"""Raw tables onto the canonical ones: the config's column mapping (rename, id, time and
target columns, ignored columns), the status derived from the target, the declared columns
and the hygiene rules, then validation. One implementation for file sources (`data/io.py`),
database reads (`data/leads.py`, which applies the same mapping in SQL) and the scorers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from leadml import hygiene
from leadml.config import DataConfig, TargetConfig
from leadml.errors import SchemaError
from leadml.schema import CORE_LEAD_COLUMNS, LEADS, validate_leads

_TRUE_TEXT = ("true", "yes", "y", "1", "1.0")
_FALSE_TEXT = ("false", "no", "n", "0", "0.0")


def column_mapping(data: DataConfig, columns: Sequence[str]) -> dict[str, str]:
    """Source column -> canonical name for a table with these columns (the config's rules)."""
    rename = dict(data.rename)
    for source, canonical in (
        (data.id_column, "lead_id"),
        (data.created_at, "created_at"),
        (data.converted_at, "converted_at"),
    ):
        if source and source != canonical and source in columns:
            rename.setdefault(source, canonical)
    mapped = {c: rename.get(c, c) for c in columns}
    # a column already named like a canonical one that another column is renamed to gives way
    targets = {rename[c] for c in columns if c in rename and rename[c] != c}
    return {s: c for s, c in mapped.items() if not (s == c and c in targets and s not in rename)}


def canonical_leads(raw: pd.DataFrame, data_cfg: DataConfig) -> pd.DataFrame:
    """Apply the config's mapping (rename, ignore, id, time, target) and hygiene (order_by,
    missing_values, bad_rows; summary in `.attrs["hygiene"]`) to a raw table and validate."""
    raw, ordered = hygiene.order_rows(raw, data_cfg.order_by)
    df = map_columns(raw, data_cfg, LEADS)
    if ordered and data_cfg.order_by in df.columns and data_cfg.order_by not in CORE_LEAD_COLUMNS:
        df = df.drop(columns=[data_cfg.order_by])  # an ordering key, not a feature
    if "lead_id" not in df.columns and data_cfg.id_column is None:
        df.insert(0, "lead_id", np.arange(1, len(df) + 1, dtype="int64"))
    df, missing = hygiene.map_missing_values(df, data_cfg.missing_values, (data_cfg.target.column,))
    df = with_status(df, data_cfg.target)
    _check_declared(df, data_cfg)
    require_time = data_cfg.created_at is not None
    bad: dict = {}
    if data_cfg.bad_rows == "drop":
        df, bad = hygiene.drop_bad_rows(df, data_cfg, require_time)
    out = validate_leads(
        df, require_time=require_time, numeric=data_cfg.numeric, non_finite=data_cfg.non_finite
    )
    out.attrs["hygiene"] = {"missing_values": missing, "order_by": ordered, "bad_rows": bad}
    return out


def map_columns(raw: pd.DataFrame, data_cfg: DataConfig, table: str) -> pd.DataFrame:
    """Rename the user's columns to canonical names (`column_mapping`) and drop the ignored."""
    raw = raw.rename(columns=str)
    mapping = column_mapping(data_cfg, list(raw.columns))
    df = raw[list(mapping)].rename(columns=mapping)
    if data_cfg.id_column and "lead_id" not in df.columns:
        raise SchemaError(
            table, data_cfg.id_column, f"id column not found; columns are {list(raw.columns)[:12]}"
        )
    ignored = [
        c for c in df.columns if c in data_cfg.ignore or _source_name(c, mapping) in data_cfg.ignore
    ]
    return df.drop(columns=ignored)


def _source_name(column: str, mapping: Mapping[str, str]) -> str | None:
    return next((s for s, c in mapping.items() if c == column), None)


def with_status(df: pd.DataFrame, target: TargetConfig) -> pd.DataFrame:
    """Derive `status` from the target: positive -> converted, null or 'open' -> open, else disqualified."""
    if target.column == "status" and str(target.positive).lower() == "converted":
        return df
    if target.column not in df.columns:
        if "status" in df.columns:
            return df  # already canonical (e.g. a table written by `leadml import`)
        raise SchemaError(LEADS, target.column, "target column not found")
    values = df[target.column]
    status = np.where(_is_positive(values, target.positive), "converted", "disqualified")
    out = df.drop(columns=[target.column])
    still_open = values.isna() | (values.astype(str).str.strip().str.lower() == "open")
    out["status"] = np.where(still_open.to_numpy(), "open", status)
    return out


def _is_positive(values: pd.Series, positive: str | int | bool) -> np.ndarray:
    """Rows equal to the positive value: numbers as numbers, text case-insensitively.

    YAML reads an unquoted `yes` as True, so a boolean positive also matches yes/true/y/1 text.
    """
    if pd.api.types.is_numeric_dtype(values) and not isinstance(positive, str):
        return (values == positive).to_numpy()
    text = values.astype(str).str.strip().str.lower()
    if isinstance(positive, bool):
        return text.isin(_TRUE_TEXT if positive else _FALSE_TEXT).to_numpy()
    return (text == str(positive).strip().lower()).to_numpy()


def _check_declared(df: pd.DataFrame, data_cfg: DataConfig) -> None:
    for field in ("numeric", "categorical", "leaking"):
        missing = [c for c in getattr(data_cfg, field) or [] if c not in df.columns]
        if missing:
            raise SchemaError(LEADS, missing[0], f"declared in data.{field} but not in the table")
