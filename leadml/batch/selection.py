"""What a run scores: open leads (created by as_of), or with --since / incremental runs only the
new, changed (new events) or never-scored ones, past the run's progress marker. The SQL is
built by `data/leads.py` over the config's mapping; a `ScoringPlan` is what a ChunkSource reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd

from leadml.batch.options import ScoreOptions, now
from leadml.batch.runs import RunState, record_selected
from leadml.config import Config
from leadml.data import leads as db_leads
from leadml.data import sql
from leadml.data.leads import LeadTables
from leadml.data.scores import output_tables


@dataclass(frozen=True)
class ScoringPlan:
    """What one run scores; a ChunkSource reads these attributes (the Spark engine does)."""

    url: str
    tables: LeadTables  # the configured tables and their mapping
    where_sql: str  # trusted SQL condition on alias `l` of the mapped leads SELECT
    leads_sql: str  # SELECT of the leads still to score (canonical names), for JDBC readers
    events_sql: str | None  # SELECT of their events visible at as_of
    after: object  # resume past this lead_id (None: from the start)
    as_of: pd.Timestamp
    chunk_size: int
    model: object  # bundle.LeadModel
    total: int  # leads still to score
    scored_at: pd.Timestamp
    skipped: pd.DataFrame | None = None  # run-level rejects (batch/rejects.py), first page's

    @property
    def leads_table(self) -> str:
        return self.tables.leads.table

    @property
    def events_table(self) -> str | None:
        return None if self.tables.events is None else self.tables.events.table

    def pages(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None]]:
        """Validated lead pages (keyset order) with their events, read one page at a time."""
        for leads in db_leads.iter_leads_keyset(
            self.tables, self.chunk_size, self.after, self.where_sql
        ):
            yield leads, db_leads.events_for(self.tables, leads["lead_id"], self.as_of)

    def raw_pages(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None]]:
        """The same pages as read, with all their events, for row-by-row screening."""
        for leads in db_leads.iter_leads_keyset(
            self.tables, self.chunk_size, self.after, self.where_sql, raw=True
        ):
            yield leads, db_leads.events_for(self.tables, leads["lead_id"], None)


ChunkSource = Callable[[ScoringPlan], Iterator[pd.DataFrame]]


def make_plan(
    config: Config,
    options: ScoreOptions,
    model,
    state: RunState,
    tables: LeadTables,
    *,
    record: bool,
) -> ScoringPlan:
    """The selection of this run (past its progress marker) as SQL, with the count to go."""
    url = options.url
    scores = output_tables(config.data.leads_table).scores
    with sql.connect(url, table=tables.leads.table) as conn:
        scored = scores if sql.has_table(conn, scores) else None
        where = db_leads.selection_where(conn, tables, state.as_of, state.since, scored)
        leads_sql, events_sql = db_leads.selection_selects(
            conn, tables, where, state.last_lead_id, state.as_of
        )
        total = db_leads.count_rows(conn, leads_sql)
    if record and not state.leads_selected:
        record_selected(url, state, total)
    return ScoringPlan(
        url=url,
        tables=tables,
        where_sql=where,
        leads_sql=leads_sql,
        events_sql=events_sql,
        after=state.last_lead_id,
        as_of=state.as_of,
        chunk_size=options.chunk_size or config.batch.chunk_size,
        model=model,
        total=total,
        scored_at=now(),
    )
