"""The Spark engine of `leadml score --engine spark`: the same scoring, on partitions of leads.

Imported only when asked for (pyspark and its JVM are heavy). Leads and their events are read
over JDBC from PostgreSQL (Debian's libpostgresql-jdbc-java driver) or, from any other source,
staged page by page as Parquet by the batch scorer's own reader; they are grouped by lead-id
bucket (cogroup + applyInPandas) and scored inside the tasks by `predict.score_leads`, with
LightGBM on one thread per task so tasks do not fight over cores, with the change ledger's
inputs (`ledger.ledger_inputs`). The scores come back to the driver in lead_id order, a partition at a time, and are written by the batch scorer's
transactional writer, so locking, resume and exactly-once are the local engine's.

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
from pathlib import Path

import pandas as pd

from leadml.config import DataConfig
from leadml.data.io import canonical_leads
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
        if plan.total == 0:
            return
        spark, owned = spark_session(master, conf=conf, jdbc=is_postgres(plan.url))
        staging = Path(tempfile.mkdtemp(prefix="leadml-spark-"))
        try:
            leads, events = _inputs(spark, plan, staging)
            scored = _score_frames(spark, leads, events, plan)
            yield from _in_order(scored, plan.chunk_size, plan.as_of)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if owned:
                spark.stop()

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


# ---------------------------------------------------------------- inputs


def _inputs(spark, plan, staging: Path):
    """(leads, events) Spark frames: over JDBC from PostgreSQL, else staged Parquet pages."""
    if is_postgres(plan.url):
        leads, events = _jdbc_inputs(spark, plan)
    else:
        leads, events = _parquet_inputs(spark, plan, staging)
    if dict(leads.dtypes).get("lead_id") not in ("bigint", "int", "smallint"):
        raise ScoringError(
            f"table '{plan.leads_table}', column 'lead_id': the Spark engine needs integer ids "
            f"(got {dict(leads.dtypes).get('lead_id')}); use --engine local"
        )
    return leads, events


def _jdbc_inputs(spark, plan):
    low, high = _id_bounds(plan)
    parts = _buckets(spark, plan)
    leads = _jdbc_frame(spark, plan.url, plan.leads_sql, low, high, parts)
    if plan.events_sql is None:
        return leads, spark.createDataFrame([], EMPTY_EVENTS)
    events = _jdbc_frame(spark, plan.url, plan.events_sql, low, high, parts)
    return leads, events.select(*[c for c in EVENT_COLUMNS if c in events.columns])


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
        raise ScoringError(
            f"table '{plan.leads_table}', column 'lead_id': the Spark engine needs integer ids"
        )
    return int(low), int(high)


def _parquet_inputs(spark, plan, staging: Path):
    """Stage the plan's pages (the batch scorer's reader) as Parquet; memory stays one page."""
    leads_dir, events_dir = staging / "leads", staging / "events"
    schemas: dict[str, object] = {}
    for i, (leads, events) in enumerate(plan.pages()):
        _write_part(leads, leads_dir / f"part-{i:05d}.parquet", schemas, "leads")
        if events is not None and len(events):
            events = events[[c for c in EVENT_COLUMNS if c in events.columns]]
            _write_part(events, events_dir / f"part-{i:05d}.parquet", schemas, "events")
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

    The leads are mapped and validated by `io.canonical_leads` exactly as the local reader does
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


def _in_order(scored, chunk_size: int, as_of: pd.Timestamp) -> Iterator[pd.DataFrame]:
    """Scores back on the driver sorted by lead_id, one partition at a time, in writer chunks."""
    from pyspark import StorageLevel

    scored = scored.persist(
        StorageLevel.MEMORY_AND_DISK
    )  # the sort's sampling must not score twice
    try:
        rows: list[tuple] = []
        for row in scored.orderBy("lead_id").toLocalIterator(prefetchPartitions=True):
            rows.append(tuple(row))
            if len(rows) >= chunk_size:
                yield _frame(rows, as_of)
                rows = []
        if rows:
            yield _frame(rows, as_of)
    finally:
        scored.unpersist()


def _frame(rows: list[tuple], as_of: pd.Timestamp) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=TASK_COLUMNS)
    frame["scored_at"] = pd.to_datetime(frame["scored_at"])
    return frame.assign(as_of=as_of)
