"""Score + reasons for 100,000 leads from a prepared feature matrix, against bare LightGBM.

Times on the same matrix and the same booster (same prediction threads):
  (a) bare `booster.predict(X, pred_contrib=True)`: the SHAP contributions alone;
  (b) `predict.score_matrix(model, X, reasons=True)`: probability, score, grade and reasons,
      and the same plus the reasons as JSON strings (what `score_leads` writes);
  (c) `score_matrix(model, X, reasons=False)` and bare `booster.predict(X)`.
Prints rows/s for each and leadml's overhead ratio against (a); the goal is <= 1.5x.

    .venv/bin/python bench/bench_explain.py                 # trains a model on 20,000 leads
    .venv/bin/python bench/bench_explain.py --model models/latest
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

GOAL = 1.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a LightGBM bundle to load instead of training one")
    parser.add_argument(
        "--train-leads", type=int, default=20_000, help="leads to train on (default 20,000)"
    )
    parser.add_argument(
        "--rows", type=int, default=100_000, help="leads to score (default 100,000)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="prediction threads (0: LightGBM default)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="timed runs per call; the best is kept"
    )
    parser.add_argument("--seed", type=int, default=3)
    return parser.parse_args()


def train_model(n_leads: int, seed: int, workdir: Path):
    """A LightGBM model trained by the package on a fresh synthetic database (no MLflow)."""
    from leadml.config import Config
    from leadml.data.synth import generate_database
    from leadml.predict import load_model
    from leadml.workflow import run_training

    url = f"sqlite:///{workdir / 'train.db'}"
    generate_database(url, n_leads, seed)
    config = Config.model_validate({"data": {"source": url}, "model": {"candidates": ["lightgbm"]}})
    result = run_training(config, output=workdir / "models", log=lambda _: None, track=False)
    return load_model(result.bundle_dir)


def feature_matrix(model, n_rows: int, seed: int):
    """Features of `n_rows` new synthetic leads, each seen 0-30 days after creation (as live,
    open leads are when the batch scorer runs), with the scoring feature builder."""
    import numpy as np
    import pandas as pd

    from leadml.data.synth import generate_leads
    from leadml.features import build_features, data_cutoff

    leads, events = generate_leads(n_rows, seed + 1)
    rng = np.random.default_rng(seed)
    age = pd.to_timedelta(rng.uniform(0, 30, len(leads)), unit="D")
    as_of = (leads["created_at"] + age).clip(upper=pd.Timestamp(data_cutoff(leads, events)))
    start = time.perf_counter()
    X = build_features(model.spec, leads, events, as_of.to_numpy())
    print(
        f"features: {X.shape[0]:,} x {X.shape[1]} from {len(events):,} events "
        f"in {time.perf_counter() - start:.1f}s"
    )
    return X


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """The result, wall seconds and process CPU seconds (all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run(model, X, threads: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Best (wall, cpu) seconds per variant over `repeat` rounds, on the same matrix and booster."""
    from leadml.explain import reasons_json
    from leadml.predict import score_matrix

    booster = model.model.booster
    model.set_threads(threads)
    best: dict[str, tuple[float, float]] = {}

    def keep(name: str, wall: float, cpu: float) -> None:
        best[name] = min(best.get(name, (wall, cpu)), (wall, cpu))

    for _ in range(repeat):
        _, wall, cpu = timed(lambda: booster.predict(X, pred_contrib=True, num_threads=threads))
        keep("bare pred_contrib", wall, cpu)
        out, wall, cpu = timed(lambda: score_matrix(model, X, reasons=True))
        keep("leadml score + reasons", wall, cpu)
        _, wall_json, cpu_json = timed(partial(reasons_json, out["reasons"]))
        keep("leadml score + reasons JSON", wall + wall_json, cpu + cpu_json)
        _, wall, cpu = timed(lambda: booster.predict(X, num_threads=threads))
        keep("bare predict", wall, cpu)
        _, wall, cpu = timed(lambda: score_matrix(model, X, reasons=False))
        keep("leadml scores alone", wall, cpu)
    per_lead = sum(map(len, out["reasons"])) / len(X)
    print(
        f"reasons per lead: {per_lead:.2f} (top {model.top_positive} positive, {model.top_negative} negative)"
    )
    return best


def report(seconds: dict[str, tuple[float, float]], n: int) -> float:
    base_wall, base_cpu = seconds["bare pred_contrib"]
    print(f"\n{'call':<30}{'wall s':>9}{'rows/s':>11}{'x bare':>8}{'cpu s':>9}{'x bare':>8}")
    for name, (wall, cpu) in seconds.items():
        print(
            f"{name:<30}{wall:>9.2f}{n / wall:>11,.0f}{wall / base_wall:>7.2f}x{cpu:>9.2f}{cpu / base_cpu:>7.2f}x"
        )
    wall, cpu = seconds["leadml score + reasons JSON"]
    ratio = wall / base_wall
    verdict = "meets" if ratio <= GOAL else "MISSES"
    print(
        f"\nleadml overhead (score + reasons as JSON) vs bare pred_contrib: {ratio:.2f}x wall, "
        f"{cpu / base_cpu:.2f}x CPU ({verdict} goal <= {GOAL}x)"
    )
    return ratio


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="leadml-bench-") as tmp:
        start = time.perf_counter()
        if args.model:
            from leadml.predict import load_model

            model = load_model(args.model)
        else:
            model = train_model(args.train_leads, args.seed, Path(tmp))
        if model.kind != "lightgbm":
            raise SystemExit(f"the bench needs a LightGBM model, {args.model} is {model.kind}")
        size = model.model.size
        print(
            f"model {model.version}: {size['trees']} trees, {size['leaves']} leaves, {len(model.spec.names)} features "
            f"({'loaded' if args.model else 'trained'} in {time.perf_counter() - start:.1f}s)"
        )
        X = feature_matrix(model, args.rows, args.seed)
        seconds = run(model, X, args.threads, args.repeat)
    report(seconds, len(X))


if __name__ == "__main__":
    main()
