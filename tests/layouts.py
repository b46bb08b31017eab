"""Awkward but legal partition layouts, shared by the catalog, findings and EXPLAIN tests."""

import threading
import time

import psycopg
from psycopg import sql

AWKWARD_SQL = r"""
CREATE SCHEMA control;
CREATE SCHEMA archive;
CREATE SCHEMA "Odd Schema";

-- three levels: range -> list -> hash, with defaults at two levels
CREATE TABLE events (ts timestamptz NOT NULL, kind text, acct int NOT NULL, v int)
  PARTITION BY RANGE (ts);
CREATE TABLE events_2024 PARTITION OF events
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (kind);
CREATE TABLE events_2024_trade PARTITION OF events_2024
  FOR VALUES IN ('dex_swap', 'lending', NULL) PARTITION BY HASH (acct);
CREATE TABLE events_2024_trade_h0 PARTITION OF events_2024_trade FOR VALUES WITH (modulus 2, remainder 0);
CREATE TABLE events_2024_trade_h1 PARTITION OF events_2024_trade FOR VALUES WITH (modulus 2, remainder 1);
CREATE TABLE events_2024_other PARTITION OF events_2024 DEFAULT;
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX ON events (acct);

-- MINVALUE bound, a partition in another schema, a default partition, an unlogged partition
CREATE TABLE control.payment (pay_ts timestamptz NOT NULL, pdm_id int NOT NULL, amount numeric,
  PRIMARY KEY (pay_ts, pdm_id)) PARTITION BY RANGE (pay_ts);
CREATE TABLE archive.payment_2000_2019 PARTITION OF control.payment
  FOR VALUES FROM (MINVALUE) TO ('2020-01-01');
CREATE TABLE control.payment_2020_2021 PARTITION OF control.payment
  FOR VALUES FROM ('2020-01-01') TO ('2022-01-01');
CREATE UNLOGGED TABLE control.payment_2022 PARTITION OF control.payment
  FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
CREATE TABLE control.payment_default PARTITION OF control.payment DEFAULT;

-- odd names: quotes, spaces, capitals, non-ASCII, semicolons, a 63-byte name
CREATE TABLE "Odd Schema"."Activity ""Events""; Ω" (activity_id text, n int) PARTITION BY LIST (activity_id);
CREATE TABLE "Odd Schema"."Trading ""Active"" Ω" PARTITION OF "Odd Schema"."Activity ""Events""; Ω"
  FOR VALUES IN ('dex_swap', 'O''Brien');
CREATE TABLE "Odd Schema"."aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  PARTITION OF "Odd Schema"."Activity ""Events""; Ω" FOR VALUES IN ('holding');

-- multi-column and expression keys
CREATE TABLE expr_keyed (created timestamptz NOT NULL, region text NOT NULL, v int)
  PARTITION BY RANGE (((created AT TIME ZONE 'UTC')::date), region);
CREATE TABLE expr_keyed_a PARTITION OF expr_keyed
  FOR VALUES FROM ('2024-01-01', MINVALUE) TO ('2024-02-01', MAXVALUE);
CREATE TABLE multi_col (a int NOT NULL, b int NOT NULL) PARTITION BY RANGE (a, b);
CREATE TABLE multi_col_1 PARTITION OF multi_col FOR VALUES FROM (0, 0) TO (10, 0);

-- a partitioned table with no partitions
CREATE TABLE lonely (id int) PARTITION BY HASH (id);
"""


def build_awkward(database, *, events: int = 4000, payments: int = 0) -> None:
    """AWKWARD_SQL with `events` rows spread over its sub-partitioned years and `payments` rows
    in control.payment, analyzed (so that row estimates are known)."""
    database.execute(AWKWARD_SQL)
    with psycopg.connect(database.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events SELECT '2024-03-01'::timestamptz + i * interval '1 minute',"
            " (ARRAY['dex_swap','lending',NULL,'xrd_holding'])[1 + i %% 4], i, i"
            " FROM generate_series(1, %s) i", (events,))
        conn.execute(
            "INSERT INTO control.payment SELECT '2019-06-01'::timestamptz + i * interval '1 hour',"
            " i, 1 FROM generate_series(1, %s) i", (payments,))
        conn.execute("ANALYZE")


def leave_detach_pending(dsn: str, parent: str, partition: str) -> None:
    """Interrupt a DETACH ... CONCURRENTLY while it waits for an older transaction that read the
    parent: the partition stays marked detach-pending (pg_inherits.inhdetachpending)."""
    blocker = psycopg.connect(dsn)
    blocker.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(parent)))
    detacher = psycopg.connect(dsn, autocommit=True)
    pid = detacher.info.backend_pid
    errors: list[Exception] = []

    def detach() -> None:
        try:
            detacher.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                sql.Identifier(parent), sql.Identifier(partition)))
        except psycopg.Error as exc:
            errors.append(exc)

    t = threading.Thread(target=detach)
    t.start()
    with psycopg.connect(dsn, autocommit=True) as c:
        for _ in range(200):
            row = c.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row and row[0] == "Lock":
                break
            time.sleep(0.025)
        c.execute("SELECT pg_cancel_backend(%s)", (pid,))
    t.join(10)
    blocker.rollback()
    blocker.close()
    detacher.close()
    assert errors, "the detach should have been cancelled"
