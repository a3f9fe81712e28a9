"""The scheduled batch scorer (`leadml score`): run.py orchestrates, runs.py keeps the books,
selection.py decides what to score, writer.py commits one transaction per chunk, lock.py keeps
it one run at a time, spark.py is the optional Spark engine (pyspark imported only there).
The SQL lives in `leadml/data/` (scores.py, runs.py, leads.py)."""

from leadml.batch.lock import scoring_lock
from leadml.batch.options import RunSummary, ScoreOptions
from leadml.batch.run import local_source, prefetched, run_scoring
from leadml.batch.runs import FAILED, RUNNING, SUCCEEDED, RunState, finish_run, open_run
from leadml.batch.selection import ChunkSource, ScoringPlan
from leadml.batch.writer import write_chunk
from leadml.data.scores import HISTORY, LOCKS, REJECTS, RUNS, SCORES, ensure_tables, score_tables

__all__ = [
    "FAILED",
    "HISTORY",
    "LOCKS",
    "REJECTS",
    "RUNNING",
    "RUNS",
    "SCORES",
    "SUCCEEDED",
    "ChunkSource",
    "RunState",
    "RunSummary",
    "ScoreOptions",
    "ScoringPlan",
    "ensure_tables",
    "finish_run",
    "local_source",
    "open_run",
    "prefetched",
    "run_scoring",
    "score_tables",
    "scoring_lock",
    "write_chunk",
]
