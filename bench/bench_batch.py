"""Batch scorer throughput and memory: end-to-end leads/s on SQLite and PostgreSQL beside the bare
model rate, and the peak RSS of the scoring process.

For each size N and database: N synthetic leads (all made open, with their events) are written
to a fresh database; `leadml.batch.run_scoring --all` runs in a subprocess (read, featurize,
score, top reasons, write) and reports its time and its own peak RSS (getrusage ru_maxrss and
/proc VmHWM); just before and after, the bare model rate is timed on a prepared matrix of the
same leads (`booster.predict` + `booster.predict(pred_contrib=True)`, the scorer's threads).

Data generation and the bare-rate timing run in their own processes too: on Linux a child's
ru_maxrss starts from its parent's RSS at fork, so the parent must stay small for the scoring
process's ru_maxrss to be its own.

    .venv/bin/python bench/bench_batch.py                       # 20k leads, SQLite (+ PostgreSQL if set)
    .venv/bin/python bench/bench_batch.py --leads 200000        # the issue's size
    .venv/bin/python bench/bench_batch.py --leads 100000 1000000 --dbs sqlite   # memory at 1M
    .venv/bin/python bench/bench_batch.py --leads 200000 --dbs sqlite --compare-pred-contrib

--compare-pred-contrib also runs the same scoring on the same database with every LightGBM's
reasons computed by `booster.predict(pred_contrib=True)` (the path before leadml's TreeSHAP
kernel), and prints the kernel's speed-up end to end.

PostgreSQL: --pg-url or LEADML_TEST_PG_URL (a throwaway schema is created and dropped).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

AS_OF = "2026-06-30 12:00:00"  # the synthetic data's end: recent activity, realistic features
BARE_ROWS = 20_000


def main() -> None:
    args = _args()
    if args.child:
        modes = {"score": _child, "bare": _bare_child, "make-db": _make_db, "model": _model_child}
        modes[args.child[0]](*args.child[1:])
        return
    described = _run_child("model", args.model)
    model = described["path"]
    if "leadml-bench-model-" in model:  # trained here for this run: removed at exit
        atexit.register(shutil.rmtree, Path(model).parents[1], True)
    pg_url = args.pg_url or os.environ.get("LEADML_TEST_PG_URL")
    dbs = [d for d in args.dbs if d != "postgres" or pg_url]
    if "postgres" in args.dbs and not pg_url:
        print("postgres skipped: set --pg-url or LEADML_TEST_PG_URL")
    print(
        f"model {model} ({described['size']}), as of {AS_OF}, chunk size {args.chunk_size}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    rows = []
    for n in args.leads:
        for db in dbs:
            with _database(db, n, pg_url, args.seed) as (url, events):
                rows.append(_measure(db, n, events, url, model, args.chunk_size))
                _print_row(rows[-1])
                if args.compare_pred_contrib:
                    rows.append(
                        _measure(db, n, events, url, model, args.chunk_size, "pred_contrib")
                    )
                    _print_row(rows[-1])
                    print(
                        f"{db}: the TreeSHAP kernel scores {rows[-2]['rate'] / rows[-1]['rate']:.2f}x "
                        "the leads/s of the pred_contrib path, end to end",
                        flush=True,
                    )
    _print_table(rows)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, nargs="+", default=[20_000], help="sizes (open leads)")
    parser.add_argument(
        "--dbs", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument(
        "--model", default="models/latest", help="bundle folder (trained if missing)"
    )
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--compare-pred-contrib",
        action="store_true",
        help="also score with LightGBM's pred_contrib for reasons (the pre-kernel path)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return parser.parse_args()


# ---------------------------------------------------------------- measuring


def _measure(
    db: str, n: int, events: int, url: str, model: str, chunk_size: int, via: str = "kernel"
) -> dict:
    bare_before = _run_child("bare", url, model)["rate"]
    started = time.perf_counter()
    result = _run_child("score", url, model, str(chunk_size), AS_OF, via)
    wall = time.perf_counter() - started
    bare_after = _run_child("bare", url, model)["rate"]
    bare = (bare_before + bare_after) / 2
    return {
        "db": db if via == "kernel" else f"{db}, reasons via pred_contrib",
        "leads": n,
        "events": events,
        "scored": result["scored"],
        "run_s": result["seconds"],
        "wall_s": wall,
        "rate": result["scored"] / result["seconds"],
        "bare": bare,
        "bare_before": bare_before,
        "bare_after": bare_after,
        "ratio": result["scored"] / result["seconds"] / bare,
        "rss_mb": result["maxrss_kb"] / 1024,
        "hwm_mb": result["hwm_kb"] / 1024,
        "grades": result["grades"],
        "load": os.getloadavg()[0],
    }


def _run_child(*args: str) -> dict:
    """Run this script in one of its child modes; the JSON it prints last."""
    child = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if child.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({child.returncode}): {child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def _child(url: str, model: str, chunk_size: str, as_of: str, via: str = "kernel") -> None:
    """The scoring process: one `--all` run; prints its summary and its own peak RSS as JSON.

    via="pred_contrib": every LightGBM's contributions come from LightGBM's own pred_contrib
    (the reasons path before leadml's TreeSHAP kernel), everything else unchanged."""
    from leadml.batch import ScoreOptions, run_scoring
    from leadml.config import Config

    if via == "pred_contrib":
        from leadml.train import TreeModel

        TreeModel.contributions = lambda self, X: self.booster.predict(
            X, pred_contrib=True, num_threads=self.threads
        )

    options = ScoreOptions(
        url=url, model_ref=model, as_of=as_of, all_leads=True, chunk_size=int(chunk_size)
    )
    summary = run_scoring(Config(), options)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"scored": summary.scored, "seconds": summary.seconds, "maxrss_kb": peak}
    print(json.dumps({**result, "hwm_kb": _vm_hwm_kb(), "grades": summary.grades}))


def _vm_hwm_kb() -> int:
    """Peak RSS of this process image (Linux /proc; reset at exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _bare_child(url: str, model: str) -> None:
    print(json.dumps({"rate": _bare_rate(url, model)}))


def _bare_rate(url: str, model_dir: str) -> float:
    """Rows/s of booster.predict + pred_contrib on a prepared matrix of the first leads."""
    import pandas as pd

    from leadml.config import DataConfig
    from leadml.data.leads import events_for, iter_leads_keyset, resolve_tables
    from leadml.features import build_features
    from leadml.predict import load_model

    model = load_model(model_dir)
    tables = resolve_tables(url, DataConfig(source=url))
    leads = next(iter_leads_keyset(tables, BARE_ROWS))
    events = events_for(tables, leads["lead_id"], pd.Timestamp(AS_OF))
    X = build_features(model.spec, leads, events, pd.Timestamp(AS_OF))
    booster, threads = _booster(model.model), model.model.threads
    started = time.perf_counter()
    booster.predict(X, raw_score=True, num_threads=threads)
    booster.predict(X, pred_contrib=True, num_threads=threads)
    return len(X) / (time.perf_counter() - started)


def _booster(model):
    """The LightGBM booster of a tree model, or of the first tree part of a blend / ensemble."""
    if hasattr(model, "booster"):
        return model.booster
    return next(_booster(p) for p in getattr(model, "parts", []) if _has_booster(p))


def _has_booster(model) -> bool:
    return hasattr(model, "booster") or any(_has_booster(p) for p in getattr(model, "parts", []))


# ---------------------------------------------------------------- data


class _database:
    """A fresh database of n open leads with events: a SQLite file or a PostgreSQL schema."""

    def __init__(self, db: str, n: int, pg_url: str | None, seed: int) -> None:
        self.db, self.n, self.pg_url, self.seed = db, n, pg_url, seed
        self.tmp = tempfile.TemporaryDirectory(prefix="leadml-bench-")
        self.schema = f"leadml_bench_{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> tuple[str, int]:
        url = self._url()
        started = time.perf_counter()
        made = _run_child("make-db", url, str(self.n), str(self.seed))
        print(
            f"{self.db}: wrote {made['leads']:,} open leads and {made['events']:,} events "
            f"in {time.perf_counter() - started:.0f}s",
            flush=True,
        )
        return url, made["events"]

    def _url(self) -> str:
        if self.db == "sqlite":
            return f"sqlite:///{Path(self.tmp.name) / 'bench.db'}"
        from sqlalchemy import text

        from leadml.data.io import engine_for

        with engine_for(self.pg_url).begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {self.schema}"))
        sep = "&" if "?" in self.pg_url else "?"
        return f"{self.pg_url}{sep}options=-csearch_path%3D{self.schema}"

    def __exit__(self, *exc) -> None:
        if self.db == "postgres":
            from sqlalchemy import text

            from leadml.data.io import engine_for

            with engine_for(self.pg_url).begin() as conn:
                conn.execute(text(f"DROP SCHEMA {self.schema} CASCADE"))
        self.tmp.cleanup()


def _make_db(url: str, n: str, seed: str) -> None:
    from leadml.data.io import write_tables

    leads, events = _open_leads(int(n), int(seed))
    write_tables(url, {"leads": leads, "lead_events": events})
    print(json.dumps({"leads": len(leads), "events": len(events)}))


def _open_leads(n: int, seed: int):
    """n synthetic leads, all made open (a scoring run scores every one of them), and their events."""
    import pandas as pd

    from leadml.data.synth import generate_leads

    leads, events = generate_leads(n, seed, end=AS_OF[:10])
    leads["status"] = "open"
    leads["converted_at"] = pd.NaT
    return leads, events[events["occurred_at"] <= pd.Timestamp(AS_OF)]


def _model_child(path: str) -> None:
    model = _model(path)
    print(json.dumps({"path": model, "size": _model_size(model)}))


def _model(path: str) -> str:
    """The bundle to use; without one, train a LightGBM-only model on 20k synthetic leads."""
    if Path(path).exists():
        return str(Path(path).resolve())
    from leadml.config import Config
    from leadml.data.synth import generate_database
    from leadml.workflow import run_training

    folder = Path(tempfile.mkdtemp(prefix="leadml-bench-model-"))
    url = f"sqlite:///{folder / 'train.db'}"
    print(
        f"no model at {path}: training one on 20,000 synthetic leads in {folder} (minutes)",
        flush=True,
    )
    generate_database(url, 20_000, 7, end=AS_OF[:10])
    config = Config.model_validate({"data": {"source": url}, "model": {"candidates": ["lightgbm"]}})
    result = run_training(config, output=folder / "models", log=lambda _: None, track=False)
    return str(result.bundle_dir)


def _model_size(path: str) -> str:
    from leadml.predict import load_model

    model = load_model(path)
    size = ", ".join(f"{k} {v}" for k, v in model.model.size.items())
    return f"{model.kind}, {size}, {len(model.spec.features)} features, threads {model.model.threads or 'all'}"


# ---------------------------------------------------------------- output


def _print_row(r: dict) -> None:
    print(
        f"{r['db']}: {r['scored']:,} leads scored in {r['run_s']:.1f}s ({r['wall_s']:.1f}s with "
        f"start-up) = {r['rate']:,.0f} leads/s end to end; bare model {r['bare']:,.0f} rows/s "
        f"(before {r['bare_before']:,.0f}, after {r['bare_after']:,.0f}); ratio {r['ratio']:.2f}; "
        f"peak RSS {r['rss_mb']:,.0f} MB (VmHWM {r['hwm_mb']:,.0f} MB); grades {r['grades']}",
        flush=True,
    )


def _print_table(rows: list[dict]) -> None:
    print(
        "\n| database | open leads | events | end-to-end leads/s | bare model rows/s | ratio | peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['db']} | {r['leads']:,} | {r['events']:,} | {r['rate']:,.0f} | {r['bare']:,.0f} "
            f"| {r['ratio']:.2f} | {r['rss_mb']:,.0f} MB |"
        )


if __name__ == "__main__":
    main()
