"""Run every bench/bench_*.py in its own process and print what each measured.

.venv/bin/python bench/run_all.py            # all benchmarks
.venv/bin/python bench/run_all.py explain    # only those whose name contains 'explain'
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks(filters: list[str]) -> list[Path]:
    """bench_*.py files here, optionally only those whose name contains one of `filters`."""
    found = sorted(HERE.glob("bench_*.py"))
    return [p for p in found if not filters or any(f in p.stem for f in filters)]


def run_one(path: Path) -> int:
    """Run one benchmark with this interpreter, streaming its output; its exit status."""
    print(f"\n=== {path.name} ===", flush=True)
    start = time.perf_counter()
    code = subprocess.call([sys.executable, str(path)], cwd=HERE.parent)
    print(f"=== {path.name}: exit {code} in {time.perf_counter() - start:.1f}s ===", flush=True)
    return code


def main() -> int:
    paths = benchmarks(sys.argv[1:])
    if not paths:
        print("no benchmark matched", file=sys.stderr)
        return 2
    failed = [p.name for p in paths if run_one(p) != 0]
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
