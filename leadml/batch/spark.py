"""The Spark engine of `leadml score --engine spark`: the same scoring, on partitions of leads.

Imported only when asked for (pyspark and its JVM are heavy). The driver first reads and screens
the selection page by page with the local engine's own code (`rejects.screened_pages`), so the
same rows are refused by the same rules, in the same pages. The good leads and their events are
read over JDBC from PostgreSQL (Debian's libpostgresql-jdbc-java driver; the refused leads left
out by a semi-join on the good ids) or, from any other source, staged as Parquet by that same
pass; they are grouped by lead-id bucket (cogroup + applyInPandas) and scored inside the tasks by
`predict.score_leads`, with LightGBM on one thread per task so tasks do not fight over cores,
with the ledger's inputs (`ledger.ledger_inputs`). The scores come back to the driver in lead_id
order and are cut where the local engine's pages end, each chunk carrying its page's rejects and
progress marker to the batch scorer's transactional writer, so locking, resume, exactly-once
and the rejects' bookkeeping are the local engine's.

pandas 3 and pyspark 4.3 (which warns it "does not yet fully support pandas >= 3.0.0"), checked
here: the Arrow paths (pandas UDF input and output, createDataFrame, toPandas) give the right
values and types; the non-Arrow `createDataFrame(pandas)` path turns a missing value of
pandas 3's default `str` dtype into the text 'nan'. So the session forces Arrow on with the
silent fallback off (`spark.sql.execution.arrow.pyspark.fallback.enabled=false`), never
creates frames from pandas without it, and each task re-validates its leads with
`schema.validate_leads` exactly as the local reader does. The warning itself is silenced by
message, in the driver and (PYTHONWARNINGS) in the Python workers.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadml.batch.rejects import screened_pages
from leadml.config import DataConfig
from leadml.data.frames import canonical_leads
from leadml.data.leads import id_bounds
from leadml.data.sql import is_postgres
from leadml.errors import ScoringError
from leadml.ledger import ledger_inputs
from leadml.predict import score_leads
from leadml.schema import EVENT_COLUMNS, SCORE_COLUMNS, SCORE_FIELDS

_SPARK_TYPES = {
    "int": "long",
    "float": "double",
    "text": "string",
    "json": "string",
    "time": "timestamp",
}
# what a task returns: the scores and the lead's ledger inputs (as_of is the run's, added after)
TASK_COLUMNS = [*SCORE_COLUMNS, "attributes"]
SCORE_SCHEMA = ", ".join(
    [
        "lead_id long",
        *(f"{f.name} {_SPARK_TYPES[f.kind]}" for f in SCORE_FIELDS),
        "attributes string",
    ]
)
EVENT_COLUMNS = list(EVENT_COLUMNS)
EMPTY_EVENTS = "lead_id long, occurred_at timestamp, event_type string, value double"
PG_JDBC_JAR = Path("/usr/share/java/postgresql.jar")
PANDAS3_WARNING = "PySpark does not yet fully support pandas"
MAX_BUCKETS = 20_000


def spark_source(
    master: str | None = None, *, conf: Mapping[str, str] | None = None
) -> Callable[[object], Iterator[pd.DataFrame]]:
    """A ChunkSource for `batch.run_scoring`: plan -> scored frames in lead_id order.

    `master` (e.g. local[4], spark://host:7077, yarn) overrides Spark's own configuration.
    """

    def source(plan) -> Iterator[pd.DataFrame]:
        staging = Path(tempfile.mkdtemp(prefix="leadml-spark-"))
        try:
            jdbc = is_postgres(plan.url)
            screened = screen_selection(plan, None if jdbc else staging)
            if not screened.good:  # nothing for Spark: only rejects (if any) to write
                yield from _by_page(iter(()), screened, plan.as_of, plan.scored_at)
                return
            spark, owned = spark_session(master, conf=conf, jdbc=jdbc)
            try:
                leads, events = _inputs(spark, plan, staging, screened)
                scored = _score_frames(spark, leads, events, plan)
                yield from _by_page(_in_order(scored), screened, plan.as_of, plan.scored_at)
            finally:
                if owned:
                    spark.stop()
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    return source


def spark_session(
    master: str | None = None, *, conf: Mapping[str, str] | None = None, jdbc: bool = False
):
    """The active SparkSession, or a new one set up for pandas UDFs; (session, created_here)."""
    _quiet_pandas3_warning()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers use this venv's Python
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    builder = SparkSession.builder.appName("leadml-score")
    if master:
        builder = builder.master(master)
    for key, value in {**_default_conf(master, jdbc), **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark, True


def _default_conf(master: str | None, jdbc: bool) -> dict[str, str]:
    quiet = f"ignore:{PANDAS3_WARNING}:FutureWarning"
    conf = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        "spark.executorEnv.PYTHONWARNINGS": quiet,
        "spark.executorEnv.OMP_NUM_THREADS": "1",
    }
    if master is None or master.startswith("local"):
        conf["spark.ui.enabled"] = "false"
    if jdbc and PG_JDBC_JAR.is_file():
        conf["spark.jars"] = str(PG_JDBC_JAR)
    return conf


def _quiet_pandas3_warning() -> None:
    """Silence pyspark's pandas-3 FutureWarning here and in the Python workers it starts."""
    warnings.filterwarnings("ignore", message=PANDAS3_WARNING, category=FutureWarning)
    rule = f"ignore:{PANDAS3_WARNING}:FutureWarning"
    current = os.environ.get("PYTHONWARNINGS", "")
    if rule not in current:
        os.environ["PYTHONWARNINGS"] = f"{current},{rule}" if current else rule


# ---------------------------------------------------------------- screening


@dataclass
class Screened:
    """The selection as the local engine screens it: per page, its last raw lead_id (the run's
    progress marker after it) and its rejects; the ids of the good leads, per page."""

    pages: list[tuple[object, pd.DataFrame]] = field(default_factory=list)
    good_ids: list[np.ndarray] = field(default_factory=list)

    @property
    def good(self) -> int:
        return sum(len(ids) for ids in self.good_ids)


def screen_selection(plan, staging: Path | None = None) -> Screened:
    """Every page of the plan read and screened on the driver by the local engine's code; with
    `staging`, the good leads and their visible events written there as Parquet, a page at a
    time (memory stays one page, plus the rejects and the good ids)."""
    screened, schemas = Screened(), {}
    for i, (leads, events, rejects, last) in enumerate(screened_pages(plan)):
        screened.pages.append((last, rejects))
        if not len(leads):
            continue
        screened.good_ids.append(_integer_ids(leads, plan))
        if staging is None:
            continue
        _write_part(leads, staging / "leads" / f"part-{i:05d}.parquet", schemas, "leads")
        if events is not None and len(events):
            events = events[[c for c in EVENT_COLUMNS if c in events.columns]]
            _write_part(events, staging / "events" / f"part-{i:05d}.parquet", schemas, "events")
    return screened


def _integer_ids(leads: pd.DataFrame, plan) -> np.ndarray:
    if leads["lead_id"].dtype.kind not in "iu":
        raise _not_integer_ids(plan, leads["lead_id"].dtype)
    return leads["lead_id"].to_numpy(dtype="int64")


def _not_integer_ids(plan, got: object = None) -> ScoringError:
    """Spark buckets and orders leads by id: only integer ids (the one message for it)."""
    shown = f" (got {got})" if got is not None else ""
    return ScoringError(
        f"table '{plan.leads_table}', column 'lead_id': the Spark engine needs integer ids"
        f"{shown}; use --engine local"
    )


# ---------------------------------------------------------------- inputs


def _inputs(spark, plan, staging: Path, screened: Screened):
    """(leads, events) Spark frames of the good leads: over JDBC from PostgreSQL, else the
    Parquet the screening staged."""
    if is_postgres(plan.url):
        leads, events = _jdbc_inputs(spark, plan, screened)
    else:
        leads, events = _parquet_inputs(spark, staging)
    if dict(leads.dtypes).get("lead_id") not in ("bigint", "int", "smallint"):
        raise _not_integer_ids(plan, dict(leads.dtypes).get("lead_id"))
    return leads, events


def _jdbc_inputs(spark, plan, screened: Screened):
    """The selection over JDBC, kept to the leads the screening passed (neither a refused lead
    nor one that entered the selection after the screening is scored)."""
    low, high = _id_bounds(plan)
    parts = _buckets(spark, plan)
    good = spark.createDataFrame(pd.DataFrame({"lead_id": np.concatenate(screened.good_ids)}))
    leads = _jdbc_frame(spark, plan.url, plan.leads_sql, low, high, parts)
    leads = leads.join(good, "lead_id", "left_semi")
    if plan.events_sql is None:
        return leads, spark.createDataFrame([], EMPTY_EVENTS)
    events = _jdbc_frame(spark, plan.url, plan.events_sql, low, high, parts)
    events = events.select(*[c for c in EVENT_COLUMNS if c in events.columns])
    return leads, events.join(good, "lead_id", "left_semi")


def _jdbc_frame(spark, url: str, sql: str, low: int, high: int, partitions: int):
    """A parallel JDBC read of a SELECT, split on lead_id ranges."""
    return (
        spark.read.format("jdbc")
        .options(**jdbc_options(url))
        .option("dbtable", f"({sql}) AS leadml_q")
        .option("fetchsize", "10000")
        .option("preferTimestampNTZ", "true")
        .option("partitionColumn", "lead_id")
        .option("lowerBound", str(low))
        .option("upperBound", str(high + 1))
        .option("numPartitions", str(max(1, partitions)))
        .load()
    )


def jdbc_options(url: str) -> dict[str, str]:
    """Spark JDBC options (url, driver, user, password) from a SQLAlchemy PostgreSQL URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    jdbc = f"jdbc:postgresql://{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database}"
    schema = _search_path(str(parsed.query.get("options", "")))
    options = {
        "url": jdbc + (f"?currentSchema={schema}" if schema else ""),
        "driver": "org.postgresql.Driver",
    }
    if parsed.username:
        options["user"] = parsed.username
    if parsed.password:
        options["password"] = parsed.password
    return options


def _search_path(options: str) -> str | None:
    """The schema of a libpq `options=-csearch_path=...` setting, if any."""
    for part in options.split():
        if part.startswith("-csearch_path="):
            return part.split("=", 1)[1].split(",")[0]
    return None


def _id_bounds(plan) -> tuple[int, int]:
    low, high = id_bounds(plan.url, plan.leads_sql)
    if low is None:
        return 0, 0
    if not isinstance(low, int):
        raise _not_integer_ids(plan)
    return int(low), int(high)


def _parquet_inputs(spark, staging: Path):
    """The good leads and their events as the screening staged them."""
    leads_dir, events_dir = staging / "leads", staging / "events"
    leads = spark.read.parquet(str(leads_dir))
    if not events_dir.exists():
        return leads, spark.createDataFrame([], EMPTY_EVENTS)
    return leads, spark.read.parquet(str(events_dir))


def _write_part(frame: pd.DataFrame, path: Path, schemas: dict, name: str) -> None:
    """One Parquet part; later parts are cast to the first part's schema (all-null columns as text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if name not in schemas:
        fields = [
            pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema
        ]
        schemas[name] = pa.schema(fields)
    table = table.select(schemas[name].names).cast(schemas[name])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


# ---------------------------------------------------------------- scoring


def _buckets(spark, plan) -> int:
    """Groups of about chunk_size leads, at least one per core."""
    wanted = math.ceil(plan.total / max(plan.chunk_size, 1))
    return int(min(MAX_BUCKETS, max(wanted, spark.sparkContext.defaultParallelism, 1)))


def _score_frames(spark, leads, events, plan):
    """Cogroup each bucket of leads with its events and score it inside the task."""
    from pyspark.sql import functions as F

    buckets = _buckets(spark, plan)
    spark.conf.set("spark.sql.shuffle.partitions", str(buckets))
    bucket = (F.col("lead_id") % F.lit(buckets)).alias("_bucket")
    model = spark.sparkContext.broadcast(plan.model)
    score = _bucket_scorer(model, plan.tables.data, plan.as_of, plan.scored_at)
    grouped = leads.select("*", bucket).groupBy("_bucket")
    return grouped.cogroup(events.select("*", bucket).groupBy("_bucket")).applyInPandas(
        score, SCORE_SCHEMA
    )


def _bucket_scorer(model_broadcast, data: DataConfig, as_of: pd.Timestamp, scored_at: pd.Timestamp):
    def score(leads: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        return score_partition(model_broadcast.value, leads, events, as_of, scored_at, data)

    return score


def score_partition(
    model,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    as_of: pd.Timestamp,
    scored_at: pd.Timestamp,
    data: DataConfig | None = None,
) -> pd.DataFrame:
    """One bucket of leads with their events, scored by THE inference path on one thread, with
    what the change ledger re-scores each scoring from (`attributes`, as the local engine).

    The leads are mapped and validated by `frames.canonical_leads` exactly as the local reader does
    (JDBC rows carry canonical column names but the user's target column and ignored columns).
    """
    warnings.filterwarnings("ignore", message=PANDAS3_WARNING, category=FutureWarning)
    if leads.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in TASK_COLUMNS})
    model.set_threads(1)
    leads = canonical_leads(leads.drop(columns="_bucket", errors="ignore"), data or DataConfig())
    if events is not None:
        events = events.drop(columns="_bucket", errors="ignore")
        events = events if len(events) else None
    out = score_leads(
        model, leads, events, as_of, scored_at=scored_at, chunk_size=max(len(leads), 1)
    )
    return out[SCORE_COLUMNS].assign(attributes=ledger_inputs(leads, model))


def _in_order(scored) -> Iterator[tuple]:
    """Score rows back on the driver sorted by lead_id, one partition at a time."""
    from pyspark import StorageLevel

    scored = scored.persist(
        StorageLevel.MEMORY_AND_DISK
    )  # the sort's sampling must not score twice
    try:
        for row in scored.orderBy("lead_id").toLocalIterator(prefetchPartitions=True):
            yield tuple(row)
    finally:
        scored.unpersist()


def _by_page(
    rows: Iterator[tuple], screened: Screened, as_of: pd.Timestamp, scored_at: pd.Timestamp
) -> Iterator[pd.DataFrame]:
    """The score rows cut where the screened pages end: each chunk with its page's rejects and
    last lead_id, so the writer commits a page's scores, rejects and progress marker together
    (a resumed run writes none twice), exactly as the local engine's pages."""
    pending = next(rows, None)
    for last, rejects in screened.pages:
        chunk = []
        while pending is not None and last is not None and pending[0] <= last:
            chunk.append(pending)
            pending = next(rows, None)
        frame = _frame(chunk, as_of, scored_at) if chunk else pd.DataFrame()
        frame.attrs.update(rejects=rejects, last_lead_id=last)
        yield frame
    if pending is not None:
        raise ScoringError(f"lead_id {pending[0]}: scored by Spark past the screened selection")


def _frame(rows: list[tuple], as_of: pd.Timestamp, scored_at: pd.Timestamp) -> pd.DataFrame:
    """A chunk's score rows with the run's as_of and scored_at set here, on the driver: Spark
    hands timestamps back to Python in the driver's local time zone, so neither makes the trip."""
    frame = pd.DataFrame.from_records(rows, columns=TASK_COLUMNS)
    return frame.assign(scored_at=scored_at, as_of=as_of)
