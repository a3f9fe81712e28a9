"""One error family whose messages name the table, the column and a few bad values."""

from __future__ import annotations

from collections.abc import Iterable


class LeadmlError(Exception):
    """Base of every error leadml raises on purpose; the CLI prints it in one line, exit 2."""

    exit_code = 2


class ConfigError(LeadmlError):
    """A configuration file is missing, malformed or has unknown keys."""


class SchemaError(LeadmlError):
    """A table does not match the canonical schema (missing column, wrong type, bad values)."""

    def __init__(self, table: str, column: str | None, problem: str, examples: Iterable = ()):
        self.table, self.column, self.problem = table, column, problem
        self.examples = list(examples)[:5]
        where = f"table '{table}'" + (f", column '{column}'" if column else "")
        shown = f" (e.g. {', '.join(map(repr, self.examples))})" if self.examples else ""
        super().__init__(f"{where}: {problem}{shown}")


class DataSourceError(LeadmlError):
    """The lead database or file cannot be read or written."""


class DatabaseError(DataSourceError):
    """A statement against the lead database failed; `table` names the table when known."""

    def __init__(self, message: str, table: str | None = None) -> None:
        self.table = table
        super().__init__(message)


class ModelError(LeadmlError):
    """A model bundle is missing, corrupt, tampered with or incompatible."""


class TrainingError(LeadmlError):
    """Training cannot proceed (too few rows, one class only, a leak with fail_on_leak)."""


class ScoringError(LeadmlError):
    """A scoring run cannot proceed (lock held, bad options)."""

    exit_code = 3


class ScoringLockedError(ScoringError):
    """Another scoring run holds the lock: exit 75 (EX_TEMPFAIL), so a scheduler can retry later."""

    exit_code = 75


def examples_of(values: Iterable, limit: int = 5) -> list:
    """A few distinct offending values to show in a message."""
    seen: list = []
    for value in values:
        if value not in seen:
            seen.append(value)
        if len(seen) >= limit:
            break
    return seen
