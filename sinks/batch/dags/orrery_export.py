"""Orrery batch export: staged events -> warehouse, incrementally and exactly once.

The batch sink stages events in Postgres (sinks/batch/stage.ts: table ``batch_events``,
partitioned by UTC day, unique on (source_id, message_id, received_day)). Every 15
minutes this DAG copies the rows staged since its last run into ``warehouse_events``.

Watermark
    ``export_watermarks`` in the *warehouse* holds, per pipeline, the (staged_xid,
    stage_seq) of the last row exported. Each batch is one warehouse transaction:
    lock the watermark table, read the watermark, load the next rows, insert the ones
    not there yet, advance the watermark, commit. Data and watermark commit together, so
    a crash or a retry at any point either redoes the whole batch or finds it done: no
    duplicates, no gaps. The ``not exists`` guard on (source_id, message_id,
    received_day) is a second line of defence (a watermark reset, a restored backup).

    Rows are read in (staged_xid, stage_seq) order and only when their staging
    transaction is older than every transaction still running on the staging database
    (``staged_xid < pg_snapshot_xmin(pg_current_snapshot())``). A plain ``stage_seq >
    watermark`` would skip rows: sequence numbers are taken at insert time, not commit
    time, so a transaction holding seq 100 may commit after seq 101 was exported.
    Transactions below the snapshot's xmin are all finished, and every later one gets a
    larger xid, so nothing can ever appear behind the watermark. A long transaction on
    the staging cluster delays the export; it cannot make it lose rows.

Warehouse SQL is kept Redshift-compatible: no ON CONFLICT (Redshift has none; it does
not enforce primary keys either), no Postgres-only functions, ``LOCK table`` without a
mode (Redshift only has the exclusive one), ``create temp table``, multi-row
``insert ... values``, ``insert ... select ... where not exists``. Types and the JSON
parse function come from the dialect (``postgres``: jsonb and text; ``redshift``: SUPER
via JSON_PARSE and VARCHAR, whose byte limits reject longer values). The staging side
is always Postgres and uses Postgres freely.

Configuration
    Connections ``orrery_stage`` and ``orrery_warehouse`` (for example from the env:
    ``AIRFLOW_CONN_ORRERY_STAGE=postgres://user:pass@host:5432/orrery``; a
    ``?options=-csearch_path%3Dmy_schema`` query sets the schema). Then, each from the run's
    params or else the env: ``stage_table`` / ORRERY_EXPORT_STAGE_TABLE (default
    ``batch_events``, may be ``schema.table``), ``warehouse_schema`` /
    ORRERY_EXPORT_WAREHOUSE_SCHEMA (default: the connection's search_path), ``dialect`` /
    ORRERY_EXPORT_DIALECT (``postgres`` or ``redshift``), ``batch_size`` /
    ORRERY_EXPORT_BATCH_SIZE (rows per transaction, default 10000), ``max_batches``
    (per run, default 100: a long backlog drains over several runs), ``pipeline``
    (the watermark's name, default ``orrery_export``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re

try:  # Airflow 3
    from airflow.sdk import dag, get_current_context, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task
    from airflow.operators.python import get_current_context

log = logging.getLogger(__name__)

STAGE_CONN_ID = "orrery_stage"
WAREHOUSE_CONN_ID = "orrery_warehouse"

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_QUALIFIED = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")

# What differs between warehouses: column types and turning JSON text into the JSON type.
DIALECTS = {
    "postgres": {
        "string": "text",
        "json": "jsonb",
        "json_text": "text",
        "parse_json": "cast({} as jsonb)",
        "table_suffix": "",
    },
    "redshift": {
        # VARCHAR lengths are bytes; 65535 is Redshift's maximum. Longer values fail the batch.
        "string": "varchar(1024)",
        "json": "super",
        "json_text": "varchar(65535)",
        "parse_json": "json_parse({})",
        # The sort key keeps the not-exists probe on the dedup key a range-restricted scan.
        "table_suffix": " diststyle even compound sortkey (received_day, source_id, message_id)",
    },
}

# Warehouse columns, in the order the stage query returns them (JSON ones last).
COLUMNS = [
    "source_id",
    "message_id",
    "received_day",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "received_at",
    "event_timestamp",
    "staged_at",
    "stage_seq",
    "staged_xid",
    "properties",
    "context",
    "payload",
]
JSON_COLUMNS = {"properties", "context", "payload"}
# Rows per multi-row INSERT into the warehouse's temp table: well under the 65535 bind
# parameters of the protocol, and under Redshift's 16 MB statement limit for most events.
INSERT_CHUNK = 200


def _setting(params: dict, name: str, env: str, default: str) -> str:
    value = params.get(name)
    if value in (None, ""):
        value = os.environ.get(env) or default
    return str(value)


def _settings(params: dict) -> dict:
    stage_table = _setting(params, "stage_table", "ORRERY_EXPORT_STAGE_TABLE", "batch_events")
    schema = _setting(params, "warehouse_schema", "ORRERY_EXPORT_WAREHOUSE_SCHEMA", "")
    dialect = _setting(params, "dialect", "ORRERY_EXPORT_DIALECT", "postgres")
    pipeline = _setting(params, "pipeline", "ORRERY_EXPORT_PIPELINE", "orrery_export")
    # Names are spliced into SQL (identifiers cannot be bound): only plain lowercase ones.
    if not _QUALIFIED.match(stage_table):
        raise ValueError(f"invalid stage_table {stage_table!r}")
    if schema and not _IDENT.match(schema):
        raise ValueError(f"invalid warehouse_schema {schema!r}")
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}: one of {', '.join(DIALECTS)}")
    prefix = f"{schema}." if schema else ""
    return {
        "stage_table": stage_table,
        "events": f"{prefix}warehouse_events",
        "watermarks": f"{prefix}export_watermarks",
        "dialect": DIALECTS[dialect],
        "pipeline": pipeline[:256],
        "batch_size": max(1, int(_setting(params, "batch_size", "ORRERY_EXPORT_BATCH_SIZE", "10000"))),
        "max_batches": max(1, int(_setting(params, "max_batches", "ORRERY_EXPORT_MAX_BATCHES", "100"))),
    }


def _connect(conn_id: str):
    """A DB-API connection through the postgres provider's hook.

    The hook reads the Airflow connection (env, secrets backend or metadata DB) and its
    extras, including Redshift IAM. It hands out psycopg 3 or psycopg2 depending on the
    installed SQLAlchemy, so the code below sticks to what both drivers share.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id).get_conn()


def _ensure_warehouse_tables(wh, cfg: dict) -> None:
    d = cfg["dialect"]
    s, j = d["string"], d["json"]
    cur = wh.cursor()
    cur.execute(
        f"""create table if not exists {cfg['events']} (
              source_id {s} not null,
              message_id {s} not null,
              received_day date not null,
              type {s} not null,
              event {s},
              user_id {s},
              anonymous_id {s},
              received_at timestamptz not null,
              event_timestamp timestamptz,
              staged_at timestamptz not null,
              stage_seq bigint not null,
              staged_xid bigint not null,
              properties {j},
              context {j},
              payload {j} not null,
              exported_at timestamptz not null,
              primary key (source_id, message_id, received_day)
            ){d['table_suffix']}"""
    )
    cur.execute(
        f"""create table if not exists {cfg['watermarks']} (
              pipeline {s} not null primary key,
              last_xid bigint not null,
              last_seq bigint not null,
              rows_exported bigint not null,
              updated_at timestamptz not null
            )"""
    )
    wh.commit()


def _read_stage(st, cfg: dict, last_xid: int, last_seq: int) -> list[tuple]:
    """The next rows after the watermark, among those no running transaction can still add to.

    One statement, so the horizon and the rows come from the same snapshot. The staging
    database is Postgres: its functions are fair game here.
    """
    cols = ", ".join(f"{c}::text" if c in JSON_COLUMNS else c for c in COLUMNS)
    cur = st.cursor()
    cur.execute(
        f"""select {cols}
              from {cfg['stage_table']}
             where staged_xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
               and (staged_xid, stage_seq) > (%s, %s)
             order by staged_xid, stage_seq
             limit %s""",
        (last_xid, last_seq, cfg["batch_size"]),
    )
    rows = cur.fetchall()
    cur.close()
    return rows


def _export_batch(st, wh, cfg: dict, exported_at: dt.datetime) -> tuple[int, int, tuple[int, int]]:
    """One batch in one warehouse transaction. Returns (rows read, rows inserted, watermark)."""
    d = cfg["dialect"]
    wm = cfg["watermarks"]
    cur = wh.cursor()
    try:
        # Serialises exporters (a manual run beside the scheduled one): the second waits,
        # then reads the watermark the first one committed.
        cur.execute(f"lock table {wm}")
        cur.execute(f"select last_xid, last_seq from {wm} where pipeline = %s", (cfg["pipeline"],))
        found = cur.fetchone()
        if found is None:
            cur.execute(
                f"insert into {wm} (pipeline, last_xid, last_seq, rows_exported, updated_at) values (%s, 0, 0, 0, %s)",
                (cfg["pipeline"], exported_at),
            )
            last_xid, last_seq = 0, 0
        else:
            last_xid, last_seq = int(found[0]), int(found[1])

        rows = _read_stage(st, cfg, last_xid, last_seq)
        if not rows:
            wh.rollback()
            return 0, 0, (last_xid, last_seq)

        # The temp table holds JSON as text: Redshift's SUPER takes JSON only via JSON_PARSE.
        tmp = "orrery_export_in"
        types = {
            "received_day": "date",
            "received_at": "timestamptz",
            "event_timestamp": "timestamptz",
            "staged_at": "timestamptz",
            "stage_seq": "bigint",
            "staged_xid": "bigint",
        }
        col_defs = ", ".join(f"{c} {d['json_text'] if c in JSON_COLUMNS else types.get(c, d['string'])}" for c in COLUMNS)
        # Dropped before commit, and a rollback undoes its creation: never left over. (No
        # "drop if exists" first: without a temp table it would hit a real one of that name.)
        cur.execute(f"create temp table {tmp} ({col_defs})")
        row_sql = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
        for i in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[i : i + INSERT_CHUNK]
            cur.execute(
                f"insert into {tmp} ({', '.join(COLUMNS)}) values {', '.join([row_sql] * len(chunk))}",
                [v for r in chunk for v in r],
            )

        select_cols = ", ".join(d["parse_json"].format(f"t.{c}") if c in JSON_COLUMNS else f"t.{c}" for c in COLUMNS)
        ev = cfg["events"]
        cur.execute(
            f"""insert into {ev} ({', '.join(COLUMNS)}, exported_at)
                select {select_cols}, %s
                  from {tmp} t
                 where not exists (
                         select 1 from {ev} w
                          where w.source_id = t.source_id
                            and w.message_id = t.message_id
                            and w.received_day = t.received_day)""",
            (exported_at,),
        )
        inserted = cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else 0
        last = rows[-1]
        new_mark = (int(last[COLUMNS.index("staged_xid")]), int(last[COLUMNS.index("stage_seq")]))
        cur.execute(
            f"""update {wm}
                   set last_xid = %s, last_seq = %s, rows_exported = rows_exported + %s, updated_at = %s
                 where pipeline = %s""",
            (new_mark[0], new_mark[1], inserted, exported_at, cfg["pipeline"]),
        )
        cur.execute(f"drop table {tmp}")
        wh.commit()
        return len(rows), inserted, new_mark
    except BaseException:
        try:
            wh.rollback()
        except Exception:  # a dead connection: the error that matters is the one raised below
            log.warning("rollback failed", exc_info=True)
        raise
    finally:
        cur.close()


def run_export(params: dict) -> dict:
    """Drains up to max_batches batches; each one commits on its own. Safe to re-run."""
    cfg = _settings(params)
    st = _connect(STAGE_CONN_ID)
    wh = _connect(WAREHOUSE_CONN_ID)
    try:
        # Each read a fresh statement snapshot: an open transaction would pin an old one.
        st.autocommit = True
        cur = st.cursor()
        cur.execute("select to_regclass(%s) is not null", (cfg["stage_table"],))
        (exists,) = cur.fetchone()
        cur.close()
        if not exists:
            log.info("staging table %s does not exist yet: nothing to export", cfg["stage_table"])
            return {"batches": 0, "rows_read": 0, "rows_inserted": 0}

        _ensure_warehouse_tables(wh, cfg)
        exported_at = dt.datetime.now(dt.timezone.utc)
        totals = {"batches": 0, "rows_read": 0, "rows_inserted": 0}
        for _ in range(cfg["max_batches"]):
            read, inserted, mark = _export_batch(st, wh, cfg, exported_at)
            if read == 0:
                break
            totals["batches"] += 1
            totals["rows_read"] += read
            totals["rows_inserted"] += inserted
            totals["watermark"] = list(mark)
            log.info("exported batch: %d rows read, %d inserted, watermark now %s", read, inserted, mark)
            if read < cfg["batch_size"]:
                break
        log.info("orrery export done: %s", totals)
        return totals
    finally:
        st.close()
        wh.close()


@dag(
    dag_id="orrery_export",
    description="Export Orrery's staged events to the warehouse, incrementally",
    schedule=dt.timedelta(minutes=15),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    params={
        "stage_table": "",
        "warehouse_schema": "",
        "dialect": "",
        "batch_size": "",
        "max_batches": "",
        "pipeline": "",
    },
    default_args={"retries": 3, "retry_delay": dt.timedelta(minutes=1)},
    tags=["orrery", "export"],
    doc_md=__doc__,
)
def orrery_export():
    # Retries are safe: every batch is all or nothing, and the watermark says where to resume.
    @task(max_active_tis_per_dag=1)
    def export() -> dict:
        return run_export(dict(get_current_context()["params"]))

    export()


orrery_export()
