"""What `leadml score` was asked to do, what a run did, and the time helpers of the batch scorer."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from leadml.errors import ScoringError
from leadml.schema import utc_now


@dataclass(frozen=True)
class ScoreOptions:
    """What `leadml score` was asked to do."""

    url: str
    model_ref: str | None = None  # None: the registry's @champion if set, else models/latest
    as_of: object = None  # None: now (a resumed run keeps its own as_of)
    since: object = None
    all_leads: bool = False
    dry_run: bool = False
    chunk_size: int | None = None  # None: config batch.chunk_size
    strict: bool | None = None  # any rejected row fails the run; None: config batch.on_bad_rows


@dataclass(frozen=True)
class RunSummary:
    """What a run did, for the one-line summary and for callers."""

    run_id: str | None
    model_version: str
    mode: str
    since: pd.Timestamp | None
    as_of: pd.Timestamp
    scored: int  # by this invocation
    grades: dict[str, int]  # of this invocation
    seconds: float
    run_total: int  # the whole run, across resumes
    resumed: bool = False
    dry_run: bool = False
    notes: tuple[str, ...] = ()
    rejected: int = 0  # rows written to scoring_rejects by this invocation

    @property
    def rows_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One line for logs: leads scored, grade counts, time, rows/s, run and model."""
        grades = ", ".join(f"{k} {v:,}" for k, v in self.grades.items()) or "none"
        verb = "dry run: would write" if self.dry_run else "scored"
        where = "would be rejected" if self.dry_run else "rejected (see scoring_rejects)"
        refused = f", {self.rejected:,} {where}" if self.rejected else ""
        run = f"run {self.run_id}" + (
            f" (resumed, {self.run_total:,} in total)" if self.resumed else ""
        )
        window = f"since {fmt(self.since)}" if self.since is not None else "all open leads"
        return (
            f"{verb} {self.scored:,} leads{refused} ({grades}) in {self.seconds:.1f}s, "
            f"{self.rows_per_second:,.0f} leads/s; {run if self.run_id else 'nothing written'}, "
            f"model {self.model_version}, {self.mode} ({window}), as of {fmt(self.as_of)}"
        )


def check_options(options: ScoreOptions) -> None:
    """Refuse contradictory or malformed options before anything is read."""
    if options.since is not None and options.all_leads:
        raise ScoringError("--since and --all exclude each other: pick one")
    if options.chunk_size is not None and options.chunk_size < 1:
        raise ScoringError(f"--chunk-size must be at least 1, got {options.chunk_size}")
    if "://" not in options.url:
        raise ScoringError(
            "leadml score needs a database URL (sqlite:///... or postgresql+psycopg://...), "
            f"got {options.url!r}"
        )
    for name in ("as_of", "since"):
        option_time(getattr(options, name), name)


def option_time(value: object, option: str) -> pd.Timestamp | None:
    """An option's time as a tz-naive UTC timestamp (microseconds), or ScoringError."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ScoringError(f"--{option.replace('_', '-')}: not a timestamp: {value!r}") from None
    if ts is pd.NaT:
        raise ScoringError(f"--{option.replace('_', '-')}: not a timestamp: {value!r}")
    ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
    return ts.floor("us")


def now() -> pd.Timestamp:
    """The clock, tz-naive UTC, to the microsecond (what the tables store)."""
    return utc_now().floor("us")


def fmt(ts: object) -> str:
    """A timestamp for messages ('-' for none)."""
    return "-" if ts is None else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
