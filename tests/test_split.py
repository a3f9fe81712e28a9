"""Forward split: later leads test, never one lead in two splits, label windows purged."""

import numpy as np
import pandas as pd
import pytest

from leadml.config import SplitConfig
from leadml.errors import TrainingError
from leadml.features import make_snapshots
from leadml.split import (
    choose_method,
    forward_origins,
    rolling_origins,
    split_snapshots,
    time_rank,
)


@pytest.fixture
def data():
    n = 400
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="D")
    leads = pd.DataFrame(
        {"lead_id": np.arange(n), "created_at": created, "status": "open", "converted_at": pd.NaT}
    )
    snaps = make_snapshots(leads, [0, 7, 30], 30, np.datetime64("2025-03-01"))
    return leads, snaps


def test_time_split_orders_and_separates_leads(data):
    leads, snaps = data
    split = split_snapshots(snaps, leads, SplitConfig(), "time", horizon_days=30)
    created = leads.created_at.to_numpy()[snaps.row]
    assert created[split == "train"].max() < created[split == "valid"].min()
    assert created[split == "valid"].max() < created[split == "test"].min()
    ids = {k: set(snaps.lead_id[split == k]) for k in ("train", "valid", "test")}
    assert (
        not ids["train"] & ids["valid"]
        and not ids["valid"] & ids["test"]
        and not ids["train"] & ids["test"]
    )


def test_label_windows_do_not_reach_the_test_period(data):
    """Pre-test labels are decided before the test period; forward origins purge their own."""
    leads, snaps = data
    split = split_snapshots(snaps, leads, SplitConfig(), "time", horizon_days=30)
    as_of = snaps.as_of.to_numpy()
    test_start = leads.created_at.to_numpy()[snaps.row][split == "test"].min()
    pre = (split == "train") | (split == "valid")
    assert (as_of[pre] + np.timedelta64(30, "D") <= test_start).all()
    assert (split == "").any()  # some snapshots purged
    rank, as_of_days = time_rank(snaps, leads, "time")
    for origin in forward_origins(rank[pre], as_of_days[pre], 3, 0.15, horizon=30):
        start = rank[pre][origin.block].min()
        assert (as_of_days[pre][origin.fit] + 30 <= start).all()  # no fit label reaches the block


def test_stratified_keeps_rates():
    snaps = pd.DataFrame({"row": np.arange(1000), "label": (np.arange(1000) % 10 == 0).astype(int)})
    split = split_snapshots(snaps, None, SplitConfig(), "stratified", seed=1)
    for part in ("train", "valid", "test"):
        assert snaps.label[split == part].mean() == pytest.approx(0.1, abs=0.01)


def test_order_split_is_by_row():
    snaps = pd.DataFrame({"row": np.arange(100), "label": np.arange(100) % 2})
    split = split_snapshots(snaps, None, SplitConfig(), "order")
    assert (split[:70] == "train").all() and (split[85:] == "test").all()


def test_method_choice_and_errors():
    assert choose_method(SplitConfig(), True, False) == "time"
    assert choose_method(SplitConfig(), False, True) == "order"
    assert choose_method(SplitConfig(), False, False) == "stratified"
    with pytest.raises(TrainingError, match="created_at"):
        choose_method(SplitConfig(method="time"), False, False)


def test_rolling_origins_move_forward():
    folds = rolling_origins(3, 0.15)
    assert folds[-1][1] == pytest.approx(1.0)
    assert all(
        a[1] <= b[0] + 1e-9 or a[1] == pytest.approx(b[0])
        for a, b in zip(folds, folds[1:], strict=False)
    )
