"""Rows the batch scorer refuses: screened by the training rules (`schema.screen_page`), never
dropped silently. Each refused row becomes a `scoring_rejects` row written in the same
transaction as its page's scores (so a killed run resumed later writes it exactly once),
counted in `scoring_runs.rows_rejected` and in the run's summary line.

Two kinds of bad rows: those a page holds (a text in a numeric column, an infinite event
value, a created_at of the wrong type), screened page by page; and those the selection's SQL
passes over (no lead_id, a duplicated id, an unknown status, an open lead whose created_at is
missing, unparseable or in the future, events of unknown leads), found once per run by
`data.leads.skipped_rows` / `orphan_events` and written with the run's first chunk.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from sqlalchemy import Connection

from leadml.config import Config, DataConfig
from leadml.data import leads as db_leads
from leadml.data import runs as run_rows
from leadml.data import scores as score_tables
from leadml.data.frames import canonical_leads, with_status
from leadml.errors import LeadmlError
from leadml.hygiene import map_missing_values
from leadml.schema import EVENTS, REJECT_COLUMNS, ScreenedPage, screen_page, utc_now

SKIPPED_LIMIT = 10_000  # run-level rejects kept per run (a broken feed fails by fraction anyway)


class RejectedRowsError(LeadmlError):
    """A run refused rows under --strict (batch.on_bad_rows: fail), or more than
    batch.max_reject_fraction of what it read: exit 2, with the first rule named."""


def no_rejects() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in REJECT_COLUMNS})


def screen_raw_page(
    data: DataConfig, model, raw: pd.DataFrame, events: pd.DataFrame | None, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame]:
    """(leads, events, rejects) of a raw page: good rows validated exactly as training reads
    them (`frames.canonical_leads`), events cut at as_of, bad rows as rejects."""
    probe = with_status(_missing_as_null(raw, data), data.target)
    numeric = sorted(set(data.numeric or ()) | set(model.spec.numeric))
    page = screen_page(probe, events, numeric=numeric, non_finite=data.non_finite)
    if not page.kept.any():
        return raw.iloc[:0], None, page.rejects
    leads = canonical_leads(raw[page.kept], data)
    return leads, _visible(page, leads, as_of), page.rejects


def _visible(page: ScreenedPage, leads: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame | None:
    if page.events is None or not len(page.events):
        return None
    events = page.events[page.events["occurred_at"] <= as_of]
    events = events[events["lead_id"].isin(leads["lead_id"])]
    return events.reset_index(drop=True) if len(events) else None


def _missing_as_null(raw: pd.DataFrame, data) -> pd.DataFrame:
    """The config's 'not answered' texts as missing, as training reads them (data.missing_values)."""
    values = data.missing_values
    return map_missing_values(raw, values, (data.target.column,))[0] if values else raw


def skipped_rejects(model, tables, as_of: pd.Timestamp) -> pd.DataFrame:
    """Rejects of the rows the selection passes over (see the module docstring)."""
    data = tables.data
    found = [no_rejects()]
    skipped = db_leads.skipped_rows(tables, as_of, SKIPPED_LIMIT)
    if len(skipped):
        probe = with_status(_missing_as_null(skipped, data), data.target)
        numeric = sorted(set(data.numeric or ()) | set(model.spec.numeric))
        found.append(screen_page(probe, None, numeric=numeric, non_finite=data.non_finite).rejects)
    orphans = db_leads.orphan_events(tables, SKIPPED_LIMIT)
    if orphans is not None and len(orphans):
        found.append(_orphan_rejects(orphans))
    found = [f for f in found if len(f)]
    return pd.concat(found, ignore_index=True) if found else no_rejects()


def _orphan_rejects(orphans: pd.DataFrame) -> pd.DataFrame:
    """Events of no known lead: screened against an empty page, so each is `unknown_lead`
    (or `missing_id`)."""
    empty = pd.DataFrame({"lead_id": pd.Series(dtype=object), "status": pd.Series(dtype=object)})
    return screen_page(empty, orphans, require_time=False).rejects


def stored_rejects(rejects: pd.DataFrame, id_kind: str) -> pd.DataFrame:
    """Rejects as scoring_rejects rows: ids in the table's kind, values as `values`."""
    ids = rejects["lead_id"].map(lambda k: _as_kind(k, id_kind))
    return pd.DataFrame(
        {
            "lead_id": ids.astype(object),
            "rule": rejects["rule"],
            "values": rejects["bad_values"],
            "table_name": rejects["table_name"],
            "column_name": rejects["column_name"],
        }
    )


def _as_kind(key: object, id_kind: str) -> object:
    if key is None or id_kind != "int":
        return key
    text = str(key).strip()
    return int(text) if text.lstrip("-").isdigit() and len(text) < 19 else None


def rejects_writer(rejects: pd.DataFrame):
    """The chunk writer's `extra`: this page's rejects, and the run's count, in its transaction."""

    def write(conn: Connection, state, scores: pd.DataFrame) -> None:
        rows = stored_rejects(rejects, state.id_kind)
        score_tables.insert_rejects(conn, state.out, state.run_id, rows, utc_now())
        total = state.rows_rejected + len(rejects)
        run_rows.update_run(conn, state.out, state.run_id, rows_rejected=total)

    return write


def leads_refused(rejects: pd.DataFrame) -> int:
    """How many lead rows (not events) a set of rejects refused, events' leads included."""
    if not len(rejects):
        return 0
    events = rejects["table_name"] == EVENTS
    own = int((~events).sum())
    spoiled = rejects.loc[events, "lead_id"].dropna().nunique()
    return own + int(spoiled)


def check_fraction(config: Config, rejected: int, read: int) -> None:
    """A run refusing more than batch.max_reject_fraction of the leads it read fails."""
    limit = config.batch.max_reject_fraction
    if read and rejected / read > limit:
        raise RejectedRowsError(
            f"{rejected:,} of {read:,} leads rejected ({rejected / read:.1%}), more than "
            f"batch.max_reject_fraction {limit:.1%}: a broken feed, not a quiet day; the run is "
            "marked failed (see scoring_rejects for the rules broken)"
        )


def first_rule(rejects: pd.DataFrame) -> str:
    """'lead 2: created_at unparseable_time {"created_at": "x"}' for messages."""
    row = rejects.iloc[0]
    who = "a row without lead_id" if row["lead_id"] is None else f"lead {row['lead_id']}"
    return f"{who} ({row['table_name']}): {row['column_name']} {row['rule']} {row['bad_values']}"


def prescan(plan) -> None:
    """--strict: read and screen every page before anything is written; any reject fails."""
    rejects = [bad for _, _, bad, _ in screened_pages(plan) if len(bad)]
    if rejects:
        found = pd.concat(rejects, ignore_index=True)
        raise RejectedRowsError(
            f"--strict (batch.on_bad_rows: fail): {len(found):,} rows break the training rules, "
            f"nothing was written; first: {first_rule(found)}"
        )


def _dedupe(raw: pd.DataFrame, known: set) -> pd.DataFrame:
    """A page without the rows already rejected at run level (duplicated ids)."""
    if not known or not len(raw):
        return raw
    keys = raw["lead_id"].map(lambda v: None if v is None else str(v).strip())
    return raw[~keys.isin(known).to_numpy()]


def _duplicate_keys(skipped: pd.DataFrame | None) -> set:
    if skipped is None or not len(skipped):
        return set()
    return set(skipped.loc[skipped["rule"] == "duplicate_id", "lead_id"].dropna().astype(str))


def screened_pages(
    plan, *, with_skipped: bool = True
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame, object]]:
    """(leads, events, rejects, last raw lead_id) per page. The run-level rejects (plan.skipped)
    ride with the first page, or alone when there is no page."""
    skipped = plan.skipped if with_skipped and plan.skipped is not None else no_rejects()
    dups, first = _duplicate_keys(plan.skipped), True
    for raw, events in plan.raw_pages():
        last = raw["lead_id"].iloc[-1]
        page = _dedupe(raw, dups)
        events = _dedupe(events, dups) if events is not None else None
        leads, visible, bad = screen_raw_page(
            plan.tables.data, plan.model, page, events, plan.as_of
        )
        if first and len(skipped):
            bad = pd.concat([skipped, bad], ignore_index=True) if len(bad) else skipped
        first = False
        yield leads, visible, bad, last
    if first and len(skipped):
        yield pd.DataFrame(), None, skipped, None
