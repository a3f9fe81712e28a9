"""Model-quality benchmark: leadml against the honest peers fitted in the same run.

.venv/bin/python bench/bench_quality.py [--only bank|synthetic] [--leads 30000] [--seed 7]

Two datasets, each trained exactly as `leadml train` does (the peers on the same pre-test rows):
- UCI bank marketing, forward split (earliest 80% of rows train, latest 20% test;
  configs/bank_marketing.yaml, `duration` declared leaking). Skipped when ../shared/data is absent.
- the synthetic default lead database (`make train`'s data: 30,000 leads, seed 7).
Prints ROC AUC, PR AUC, Brier, ECE and top-decile lift of leadml, the plain one-hot logistic
regression, LightGBM with early stopping and naive Bayes, the ensemble's weights and the time.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANK = ROOT.parent / "shared" / "data" / "bank-marketing" / "bank-additional-full.csv"
COLUMNS = ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile")


def main() -> int:
    args = parse()
    from leadml.config import load_config, override

    out = Path(tempfile.mkdtemp(prefix="leadml-bench-quality-"))
    atexit.register(shutil.rmtree, out, True)  # models and data go at exit
    if args.only in (None, "bank"):
        if BANK.is_file():
            cfg = load_config(ROOT / "configs" / "bank_marketing.yaml")
            run("bank marketing, forward split", override(cfg, data__source=str(BANK)), out)
        else:
            print(f"bank marketing: skipped ({BANK} not found)")
    if args.only in (None, "synthetic"):
        from leadml.data.synth import generate_database

        url = f"sqlite:///{out / 'leads.db'}"
        generate_database(url, args.leads, args.seed)
        cfg = override(load_config(ROOT / "configs" / "train.yaml"), data__source=url)
        run(f"synthetic default ({args.leads:,} leads, seed {args.seed})", cfg, out)
    return 0


def run(title: str, config, out: Path) -> None:
    """Train as `leadml train --no-mlflow` would and print leadml beside every peer."""
    from leadml.workflow import run_training

    started = time.perf_counter()
    result = run_training(config, output=out / "models", log=lambda _: None, track=False)
    seconds = time.perf_counter() - started
    ev = result.evaluation
    rows = {"leadml": ev["test"], **ev["baselines"]}
    print(f"\n{title}: test {ev['test']['n']:,} rows, {ev['test']['positives']:,} conversions")
    print(f"  {'model':<22}" + "".join(f"{c:>17}" for c in COLUMNS))
    for name, m in rows.items():
        print(f"  {name:<22}" + "".join(f"{m[c]:>17.4f}" for c in COLUMNS))
    forward = ev["forward"]["roc_auc"]
    print(f"  ensemble: {ev['chosen']}")
    print(
        "  forward origins ROC AUC: "
        + ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in forward.items())
    )
    cal = ev["calibration"]
    print(f"  calibration: {cal['method']} on {cal['rows']:,} out-of-time rows")
    print(f"  {ev['peer_check']['message']}")
    print(f"  trained in {seconds:.1f} s (train_seconds {ev['train_seconds']:.1f})")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["bank", "synthetic"], default=None)
    p.add_argument("--leads", type=int, default=30_000)
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(main())
