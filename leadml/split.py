"""Train / validation / test assignment: forward in time, never one lead in two splits."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from leadml.config import SplitConfig
from leadml.errors import TrainingError

TRAIN, VALID, TEST = "train", "valid", "test"


def choose_method(cfg: SplitConfig, has_time: bool, ordered: bool) -> str:
    """'time' with timestamps, 'order' for a table in time order, else 'stratified'."""
    if cfg.method != "auto":
        if cfg.method == "time" and not has_time:
            raise TrainingError("split.method 'time' needs a created_at column in the leads")
        return cfg.method
    if has_time:
        return "time"
    return "order" if ordered else "stratified"


def split_snapshots(
    snapshots: pd.DataFrame,
    leads: pd.DataFrame,
    cfg: SplitConfig,
    method: str,
    *,
    horizon_days: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Split label per snapshot row ('train'/'valid'/'test', '' for purged rows)."""
    if method == "stratified":
        return _stratified(snapshots, cfg, seed)
    if method == "order":
        rank = snapshots["row"].to_numpy().astype(np.float64)
        return _forward(rank, rank, rank, cfg, 0.0)
    created = leads["created_at"].to_numpy()[snapshots["row"].to_numpy()]
    rank = created.astype("datetime64[us]").astype(np.int64) / 86_400e6
    as_of = snapshots["as_of"].to_numpy().astype("datetime64[us]").astype(np.int64) / 86_400e6
    return _forward(rank, rank, as_of, cfg, horizon_days)


def _forward(
    lead_rank: np.ndarray, rank: np.ndarray, as_of: np.ndarray, cfg: SplitConfig, horizon: float
) -> np.ndarray:
    """Earliest leads train, then valid, then test, by lead creation (or row order).

    Snapshots whose label window reaches past the start of the test period are purged, so no
    label before it is decided by events of the test period. Training and validation together
    are the pre-test rows the final model is fitted on; the validation slice is the latest
    period, for the screens. Forward origins (`forward_origins`) purge their own fit rows.
    """
    order = np.sort(np.unique(lead_rank))
    if len(order) < 10:
        raise TrainingError(f"only {len(order)} leads with labels: too few to split")
    valid_start = order[int(len(order) * (1 - cfg.valid_fraction - cfg.test_fraction))]
    test_start = order[int(len(order) * (1 - cfg.test_fraction))]
    out = np.full(len(rank), "", dtype=object)
    out[rank >= test_start] = TEST
    valid = (rank >= valid_start) & (rank < test_start)
    train = rank < valid_start
    if horizon > 0:
        valid &= as_of + horizon <= test_start
        train &= as_of + horizon <= test_start
    out[valid] = VALID
    out[train] = TRAIN
    return out


def _stratified(snapshots: pd.DataFrame, cfg: SplitConfig, seed: int) -> np.ndarray:
    idx = np.arange(len(snapshots))
    y = snapshots["label"].to_numpy()
    try:
        rest, test = train_test_split(
            idx, test_size=cfg.test_fraction, stratify=y, random_state=seed
        )
        share = cfg.valid_fraction / (1 - cfg.test_fraction)
        train, valid = train_test_split(rest, test_size=share, stratify=y[rest], random_state=seed)
    except ValueError as exc:
        raise TrainingError(f"cannot make a stratified split: {exc}") from None
    out = np.full(len(idx), "", dtype=object)
    out[train], out[valid], out[test] = TRAIN, VALID, TEST
    return out


def rolling_origins(n_folds: int, test_fraction: float) -> list[tuple[float, float]]:
    """(end of training+validation, end of test) as fractions of the timeline, oldest first."""
    ends = [1.0 - test_fraction * (n_folds - 1 - k) for k in range(n_folds)]
    return [(end - test_fraction, end) for end in ends]


def time_rank(
    snapshots: pd.DataFrame, leads: pd.DataFrame, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """(lead rank, as_of) in days per snapshot: creation time, or row order for 'order'."""
    if method != "time":
        rank = snapshots["row"].to_numpy().astype(np.float64)
        return rank, rank
    created = leads["created_at"].to_numpy()[snapshots["row"].to_numpy()]
    rank = created.astype("datetime64[us]").astype(np.int64) / 86_400e6
    as_of = snapshots["as_of"].to_numpy().astype("datetime64[us]").astype(np.int64) / 86_400e6
    return rank, as_of


class Origin(NamedTuple):
    """One forward origin, as row indices: fit on `fit`, score on the later `block`.

    LightGBM trains on `stop_fit` and stops early on `stop`, the latest stretch of its own fit
    window: stopping on the block it is scored on would let that block pick the tree count.
    """

    fit: np.ndarray
    block: np.ndarray
    stop_fit: np.ndarray
    stop: np.ndarray


def forward_origins(
    rank: np.ndarray, as_of: np.ndarray, n: int, share: float, horizon: float = 0.0
) -> list[Origin]:
    """Expanding-window origins over the given (pre-test) rows, oldest first.

    The last `n` shares of the timeline (by lead rank) are the blocks; block k is predicted by
    models fitted on the leads before it whose label window closed before it starts.
    """
    order = np.sort(np.unique(rank))
    if len(order) < 10 * (n + 1) or share * (n + 1) >= 0.9:
        raise TrainingError(
            f"only {len(order)} leads before the test period: too few for {n} forward origins "
            f"of {share:.0%} each (model.origins, model.origin_share)"
        )
    cut = [order[int(len(order) * (1 - share * (n + 1 - k)))] for k in range(n + 1)] + [np.inf]
    out = []
    for k in range(1, n + 1):
        start, end, stop_start = cut[k], cut[k + 1], cut[k - 1]
        fit = np.flatnonzero((rank < start) & (as_of + horizon <= start))
        block = np.flatnonzero((rank >= start) & (rank < end))
        stop_fit = np.flatnonzero((rank < stop_start) & (as_of + horizon <= stop_start))
        stop = fit[rank[fit] >= stop_start]
        out.append(Origin(fit, block, stop_fit, stop))
    return out


def shuffled_origins(y: np.ndarray, n: int, seed: int) -> list[Origin]:
    """Stratified K-fold origins for data with no order in time (LightGBM stops on a 15% draw)."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    try:
        out = []
        folds = StratifiedKFold(n_splits=n, shuffle=True, random_state=seed).split(y, y)
        for fit, block in folds:
            stop_fit, stop = train_test_split(
                fit, test_size=0.15, stratify=y[fit], random_state=seed
            )
            out.append(Origin(np.sort(fit), np.sort(block), np.sort(stop_fit), np.sort(stop)))
        return out
    except ValueError as exc:
        raise TrainingError(f"cannot make {n} stratified folds: {exc}") from None
