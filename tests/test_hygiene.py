"""Data hygiene from the config, never silent: form defaults read as missing, a single-table
export put in order by a column, and rows that break the schema's rules dropped with a count
(`data.bad_rows: drop`) or stopping the run (`error`, the default)."""

import numpy as np
import pandas as pd
import pytest

from leadml.config import DataConfig
from leadml.data.io import canonical_leads
from leadml.errors import SchemaError
from leadml.hygiene import hygiene_lines, map_missing_values, order_rows


def export(n: int = 8) -> pd.DataFrame:
    """A web-form CRM export: one row per lead, text answers, a target column."""
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "signed_up": pd.date_range("2025-01-01", periods=n, freq="D").astype(str),
            "won": ["yes", "no"] * (n // 2),
            "industry": ["Select", "retail", " select ", "bank", "retail", "-", "bank", None][:n],
            "employees": ["12", "N/A", "40", "7", "", "300", "25", "9"][:n],
        }
    )


CFG = DataConfig(
    source="x.csv",
    id_column="id",
    created_at=None,
    converted_at=None,
    target={"column": "won", "positive": "yes"},
    numeric=["employees"],
    categorical=["industry"],
)


def test_form_defaults_become_missing_and_are_counted():
    leads = canonical_leads(export(), CFG)
    assert leads["industry"].isna().sum() == 4  # Select, ' select ', '-', and the real None
    assert leads["employees"].isna().sum() == 2  # 'N/A' and '' (a numeric column stays numeric)
    assert leads["employees"].dtype.kind == "f" and leads.loc[0, "employees"] == 12
    found = leads.attrs["hygiene"]["missing_values"]
    assert found["industry"]["count"] == 3 and "Select" in found["industry"]["values"]
    assert any(
        "3 'industry' values read as missing" in line
        for line in hygiene_lines(leads.attrs["hygiene"])
    )
    with pytest.raises(SchemaError, match="non-numeric"):  # [] keeps every value as written
        canonical_leads(export(), CFG.model_copy(update={"missing_values": []}))


def test_the_target_and_core_columns_are_never_mapped():
    df = pd.DataFrame({"lead_id": [1, 2], "status": ["open", "open"], "won": ["-", "yes"]})
    out, found = map_missing_values(df, ["-"], keep=("won",))
    assert out is df and found == {}


def test_order_by_sorts_a_single_table_export_and_leaves_the_column_out():
    raw = export().iloc[::-1].reset_index(drop=True)  # exported newest first
    ordered, info = order_rows(raw, "signed_up")
    assert list(ordered["id"]) == list(range(1, 9)) and info["rows_moved"] == 8
    cfg = CFG.model_copy(update={"order_by": "signed_up", "id_column": None})
    leads = canonical_leads(raw, cfg)
    assert "signed_up" not in leads.columns  # an ordering key, not a feature
    assert list(leads["lead_id"]) == list(range(1, 9))  # numbered in time order
    assert leads.attrs["hygiene"]["order_by"]["column"] == "signed_up"
    with pytest.raises(SchemaError, match="order_by"):
        order_rows(raw, "no_such_column")


def timed_export() -> pd.DataFrame:
    """Leads with creation and conversion times; lead 3 converted before it was created."""
    return pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4],
            "created_at": ["2025-01-01", "2025-01-02", "2025-01-05", "2025-01-06"],
            "status": ["converted", "open", "converted", "disqualified"],
            "converted_at": ["2025-01-10", None, "2025-01-03", None],
            "source": ["web", "Select", "ads", "web"],
        }
    )


def test_a_dirty_row_stops_the_run_by_default():
    with pytest.raises(SchemaError, match="converted before they were created"):
        canonical_leads(timed_export(), DataConfig())


def test_a_dirty_row_is_dropped_with_a_count_under_bad_rows_drop():
    leads = canonical_leads(timed_export(), DataConfig(bad_rows="drop"))
    assert list(leads["lead_id"]) == [1, 2, 4]
    bad = leads.attrs["hygiene"]["bad_rows"]
    assert bad["dropped"] == 1 and bad["of"] == 4
    assert bad["examples"][0]["lead_id"] == "3" and len(bad["by_rule"]) == 1
    line = next(s for s in hygiene_lines(leads.attrs["hygiene"]) if "dropped" in s)
    assert "1 of 4 rows dropped" in line and "lead 3" in line
    assert leads["source"].isna().sum() == 1  # the form default of lead 2 is missing too


def test_order_by_makes_the_split_forward_in_that_order():
    from leadml.config import Config
    from leadml.workflow import prepare

    rng = np.random.default_rng(0)
    n = 600
    raw = pd.DataFrame(
        {
            "signed_up": pd.date_range("2024-01-01", periods=n, freq="D").astype(str),
            "won": rng.choice(["yes", "no"], size=n),
            "visits": rng.poisson(3, size=n),
        }
    ).sample(frac=1.0, random_state=1)  # exported in no particular order
    data = {
        "source": "x.csv",
        "id_column": None,
        "created_at": None,
        "converted_at": None,
        "target": {"column": "won", "positive": "yes"},
        "order_by": "signed_up",
    }
    config = Config.model_validate({"data": data})
    leads = canonical_leads(raw, config.data)
    prep = prepare(config, leads, None, log=lambda _: None)
    assert prep.method == "order" and "signed_up" not in prep.spec.names
    test_rows = prep.snapshots["row"].to_numpy()[prep.split == "test"]
    assert test_rows.min() > prep.snapshots["row"].to_numpy()[prep.pretest].max()
    in_order = raw.sort_values("signed_up")["visits"].to_numpy()
    np.testing.assert_array_equal(leads["visits"].to_numpy(), in_order)  # rows in date order
    assert (leads["lead_id"].to_numpy()[test_rows] > 0.8 * n).all()  # the latest 20% test
