"""Data hygiene of a leads table before validation, configured and always reported.

Three steps, each from `data` in the config and none silent: form defaults that mean "not
answered" ("Select", "-", "N/A", ...) become missing values (`data.missing_values`); a
single-table export is put in the order of a column (`data.order_by`); and rows that break the
schema's rules are dropped with a count and examples (`data.bad_rows: drop`) instead of
stopping the run (`error`, the default). What was done is kept in `frame.attrs["hygiene"]` for
the run output and the report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadml.config import DataConfig
from leadml.errors import SchemaError
from leadml.schema import CORE_LEAD_COLUMNS, LEADS, screen_page

EXAMPLES = 5


def map_missing_values(
    df: pd.DataFrame, values: list[str], keep: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, dict]:
    """Text cells equal to one of `values` (case and surrounding spaces ignored) -> missing.

    Only text columns other than the core ones and `keep` (the target) are touched; the
    summary gives per column how many cells were mapped and which spellings were seen.
    """
    wanted = {str(v).strip().lower() for v in values}
    if not wanted:
        return df, {}
    out, found = df, {}
    for column in df.columns:
        if column in CORE_LEAD_COLUMNS or column in keep:
            continue
        series = df[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series):
            continue
        text = series.astype("string").str.strip().str.lower()
        hit = text.isin(wanted).fillna(False).to_numpy(dtype=bool) & series.notna().to_numpy()
        if not hit.any():
            continue
        if out is df:
            out = df.copy()
        seen = pd.Series(series.to_numpy()[hit]).astype(str).value_counts()
        found[column] = {"count": int(hit.sum()), "values": seen.index[:EXAMPLES].tolist()}
        out[column] = series.mask(hit)
    return out, found


def order_rows(df: pd.DataFrame, column: str | None) -> tuple[pd.DataFrame, dict]:
    """The table sorted by `column` (stable; times parsed when the column is text; missing last)."""
    if column is None:
        return df, {}
    if column not in df.columns:
        raise SchemaError(
            LEADS,
            column,
            f"data.order_by names a column not in the table; columns are {list(df.columns)[:12]}",
        )
    key = df[column]
    if not (pd.api.types.is_numeric_dtype(key) or pd.api.types.is_datetime64_any_dtype(key)):
        parsed = pd.to_datetime(key, errors="coerce", utc=True, format="mixed")
        key = parsed if parsed.notna().sum() >= 0.9 * key.notna().sum() else key.astype(str)
    order = np.argsort(key.rank(method="first", na_option="bottom").to_numpy(), kind="stable")
    moved = int((order != np.arange(len(order))).sum())
    out = df.iloc[order].reset_index(drop=True)
    return out, {"column": column, "rows_moved": moved, "missing": int(df[column].isna().sum())}


def drop_bad_rows(
    df: pd.DataFrame, data_cfg: DataConfig, require_time: bool
) -> tuple[pd.DataFrame, dict]:
    """Rows breaking the schema's rules removed (`data.bad_rows: drop`): counts by rule, examples."""
    page = screen_page(
        df,
        None,
        numeric=data_cfg.numeric,
        non_finite=data_cfg.non_finite,
        require_time=require_time,
    )
    rejects = page.rejects
    if not len(rejects):
        return page.leads, {"dropped": 0}
    by_rule = rejects.groupby("rule").size().sort_values(ascending=False)
    examples = [
        {"lead_id": r.lead_id, "rule": r.rule, "column": r.column_name, "values": r.bad_values}
        for r in rejects.head(EXAMPLES).itertuples()
    ]
    summary = {
        "dropped": int(len(rejects)),
        "of": int(len(df)),
        "by_rule": {str(k): int(v) for k, v in by_rule.items()},
        "examples": examples,
    }
    return page.leads, summary


def hygiene_lines(hygiene: dict) -> list[str]:
    """The hygiene summary as plain sentences for the run output and the report."""
    lines = []
    for column, info in (hygiene.get("missing_values") or {}).items():
        shown = ", ".join(repr(v) for v in info["values"])
        lines.append(f"data: {info['count']:,} '{column}' values read as missing ({shown})")
    order = hygiene.get("order_by") or {}
    if order:
        lines.append(
            f"data: rows ordered by '{order['column']}' ({order['rows_moved']:,} moved, "
            f"{order['missing']:,} without a value placed last); the column is not a feature"
        )
    bad = hygiene.get("bad_rows") or {}
    if bad.get("dropped"):
        rules = ", ".join(f"{k} {v:,}" for k, v in bad["by_rule"].items())
        shown = "; ".join(
            f"lead {e['lead_id']}: {e['rule']} {e['values']}" for e in bad["examples"]
        )
        lines.append(
            f"data: {bad['dropped']:,} of {bad['of']:,} rows dropped for breaking the schema's "
            f"rules (data.bad_rows: drop): {rules}. Examples: {shown}"
        )
    return lines
