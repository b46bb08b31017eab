"""A small copy of scenario 3's legacy payment table, under plain or hostile names, with known
duplicates by error, collisions by design, one machine-minute over 60, and referencing tables
(one pointing at copies the dedupe removes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

LO = datetime(2019, 1, 1, tzinfo=UTC)
OVER_60_PDM = 7
OVER_60_COUNT = 65
OVER_60_MINUTE = datetime(2019, 7, 20, tzinfo=UTC)  # LO + 200 days


@dataclass(frozen=True)
class Names:
    schema: str = "legacy"
    table: str = "payment"
    id: str = "pay_id"
    ts: str = "pay_ts"
    pdm: str = "pdm_id"
    tracer: str = "tracer"
    amount: str = "amount"
    pdm_table: str = "pdm"
    bonus: str = "payment_bonus"
    ext: str = "payment_ext"
    view: str = "payment_daily"

    def ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)


PLAIN = Names()
HOSTILE = Names(schema='Lé "Schéma"; x', table='Pay ment;"Ω', id="Pay ID", ts='Pay "TS"',
                pdm="pdm;id", tracer="Trâcer", amount="Amount €", pdm_table='PDM "m"',
                bonus="bonus Ω", ext="Ext;ension", view="Daily \"v\"")


def _x(conn: psycopg.Connection, text: str, n: Names, **extra: sql.Composable) -> None:
    conn.execute(sql.SQL(text).format(
        s=sql.Identifier(n.schema), t=n.ident(n.table), id=sql.Identifier(n.id),
        ts=sql.Identifier(n.ts), pdm=sql.Identifier(n.pdm), tr=sql.Identifier(n.tracer),
        amount=sql.Identifier(n.amount), pdmt=n.ident(n.pdm_table), bonus=n.ident(n.bonus),
        ext=n.ident(n.ext), view=n.ident(n.view), **extra))


def build_legacy(conn: psycopg.Connection, n: Names = PLAIN, rows: int = 1500,
                 analyze: bool = True) -> Names:
    """The table, as scenario 3 describes it: rows spread over 2019-2020."""
    step = int((datetime(2021, 1, 1, tzinfo=UTC) - LO).total_seconds()) // rows
    _x(conn, "CREATE SCHEMA {s}", n)
    _x(conn, "CREATE TABLE {pdmt} (id int PRIMARY KEY, model int NOT NULL)", n)
    _x(conn, "INSERT INTO {pdmt} SELECT i, CASE WHEN i % 5 = 2 THEN 5 ELSE 3 END"
             " FROM generate_series(1, 25) i", n)
    _x(conn, """
        CREATE TABLE {t} (
            {id} bigserial PRIMARY KEY,
            {ts} timestamp(0) with time zone NOT NULL,
            {pdm} int NOT NULL REFERENCES {pdmt} (id) ON DELETE RESTRICT,
            {tr} text NOT NULL,
            {amount} numeric(10,2) NOT NULL DEFAULT 0
        )""", n)
    _x(conn, """
        CREATE TEMP TABLE gen ON COMMIT DROP AS
        SELECT i, p.pdm, CASE WHEN p.pdm % 5 = 2 THEN date_trunc('minute', t, 'UTC') ELSE t END
                         AS ts, 0 AS copy_no, 'T' || lpad(i::text, 6, '0') AS tracer
        FROM generate_series(0, {rows} - 1) i
        CROSS JOIN LATERAL (SELECT (1 + (i::bigint * 7919) % 25)::int AS pdm) p
        CROSS JOIN LATERAL (SELECT {lo}::timestamptz + make_interval(
            secs => i::bigint * {step} + (i::bigint * 7919) % {step}) AS t) tt;
        -- collisions by design: same machine and timestamp, another tracer
        INSERT INTO gen SELECT g.i, g.pdm, g.ts, k, g.tracer || '-R' || k
        FROM gen g, generate_series(1, 1 + g.i % 3) k WHERE g.pdm % 5 = 2 AND g.i % 7 = 0;
        -- more than 60 in one minute on one machine
        INSERT INTO gen SELECT -1, {o60}, {o60m}::timestamptz, k, 'REPLAY-' || lpad(k::text, 3, '0')
        FROM generate_series(1, {o60n}) k;
        -- duplicates by error: the same row stored twice or three times
        INSERT INTO gen SELECT g.i, g.pdm, g.ts, 100 + k, g.tracer
        FROM gen g, generate_series(1, 1 + (g.i / 53) % 2) k WHERE g.copy_no = 0 AND g.i % 53 = 5;
        INSERT INTO {t} ({ts}, {pdm}, {tr}, {amount})
        SELECT ts, pdm, tracer, (abs(i) % 50) + 0.5 FROM gen ORDER BY ts, pdm, copy_no, tracer;
        """, n, rows=sql.Literal(rows), lo=sql.Literal(LO), step=sql.Literal(step),
       o60=sql.Literal(OVER_60_PDM), o60m=sql.Literal(OVER_60_MINUTE),
       o60n=sql.Literal(OVER_60_COUNT))
    _x(conn, "CREATE INDEX ON {t} ({ts})", n)
    _x(conn, "CREATE INDEX ON {t} ({pdm}, {ts})", n)
    # one bonus per 10th payment, pointing at the last copy: the dedupe must re-point those
    _x(conn, """
        CREATE TABLE {bonus} (bonus_id bigserial PRIMARY KEY,
                              {id} bigint NOT NULL REFERENCES {t} ({id}) ON DELETE CASCADE,
                              points int NOT NULL);
        INSERT INTO {bonus} ({id}, points)
        SELECT max({id}), 1 FROM {t} GROUP BY {pdm}, {ts}, {tr} HAVING min({id}) % 10 = 0
            OR count(*) > 1""", n)
    _x(conn, """
        CREATE TABLE {ext} (ext_id bigserial PRIMARY KEY,
                            {id} bigint NOT NULL REFERENCES {t} ({id}),
                            orig bigint REFERENCES {t} ({id}) ON DELETE SET NULL);
        INSERT INTO {ext} ({id}, orig)
        SELECT max({id}), min({id}) FROM {t} GROUP BY {pdm}, {ts}, {tr} HAVING count(*) > 1""", n)
    _x(conn, "CREATE VIEW {view} AS SELECT {ts}::date AS day, count(*) FROM {t} GROUP BY 1", n)
    if analyze:
        _x(conn, "ANALYZE {t}", n)
    return n
