"""Training-path benchmark: generate, read, featurize and train on N synthetic leads.

.venv/bin/python bench/bench_train.py [--leads 200000] [--seed 42] [--db sqlite:///...]

Prints each stage's wall time beside the bare-library figure it is compared with: featurizing
against pandas' own groupby count of events per lead (the least any event feature costs), and
leadml's training run against a bare `lightgbm.train` of the chosen size on the same matrix.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    args = parse()
    from leadml.config import Config
    from leadml.data.io import read_dataset
    from leadml.data.synth import generate_database
    from leadml.workflow import fit_model, prepare

    tmp = Path(tempfile.mkdtemp(prefix="leadml-bench-train-"))
    atexit.register(shutil.rmtree, tmp, True)  # the generated database goes at exit
    url = args.db or f"sqlite:///{tmp / 'leads.db'}"
    t0 = time.perf_counter()
    if not args.db:
        generate_database(url, args.leads, args.seed)
    t_gen = time.perf_counter() - t0
    config = Config.model_validate({"data": {"source": url, "ignore": ["name", "company"]}})
    t0 = time.perf_counter()
    leads, events = read_dataset(config.data)
    t_read = time.perf_counter() - t0
    n_events = 0 if events is None else len(events)
    t0 = time.perf_counter()
    prep = prepare(config, leads, events, log=lambda _: None)
    t_prep = time.perf_counter() - t0
    t_feat = prep.info["featurize_seconds"]
    t0 = time.perf_counter()
    counts = events.groupby("lead_id").size() if events is not None else None
    t_bare_group = time.perf_counter() - t0
    t0 = time.perf_counter()
    model, info = fit_model(config, prep, "bench", log=lambda _: None)
    t_fit = time.perf_counter() - t0
    t_bare_lgb = bare_lightgbm(prep, model, config)
    print(
        f"leads: {len(leads):,}  events: {n_events:,}  snapshots: {prep.X.shape[0]:,} x {prep.X.shape[1]} features"
    )
    if not args.db:
        print(f"generate + write SQLite:           {t_gen:8.1f} s")
    print(f"read leads + events (validated):   {t_read:8.1f} s")
    print(
        f"snapshots + split + features:      {t_prep:8.1f} s  (featurize alone {t_feat:.1f} s, "
        f"{prep.X.shape[0] / max(t_feat, 1e-9):,.0f} snapshot rows/s)"
    )
    print(
        f"  bare pandas groupby count of events per lead: {t_bare_group:.2f} s (one feature, {len(counts) if counts is not None else 0:,} groups)"
    )
    print(
        f"screen + candidates + calibrate:   {t_fit:8.1f} s  (chosen: {info['chosen']}, size {model.model.size})"
    )
    print(f"  bare lightgbm.train, same params and rounds, train slice: {t_bare_lgb:.1f} s")
    print(f"total (read -> fitted model):      {t_read + t_prep + t_fit:8.1f} s")


def bare_lightgbm(prep, model, config) -> float:
    import lightgbm as lgb

    X, y = prep.part("train")
    rounds = (
        model.model.booster.num_trees()
        if model.kind == "lightgbm"
        else config.model.lightgbm.num_boost_round
    )
    params = {"objective": "binary", "verbosity": -1, **config.model.lightgbm.params}
    t0 = time.perf_counter()
    lgb.train(
        params,
        lgb.Dataset(X, y, categorical_feature=prep.spec.categorical_indices),
        num_boost_round=rounds,
    )
    return time.perf_counter() - t0


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--leads", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--db", default=None, help="use an existing lead database instead of generating")
    return p.parse_args()


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
