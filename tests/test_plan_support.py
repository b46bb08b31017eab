"""Shared builders for the plan and consolidation tests (an account_balances-shaped table), and
tests of the plan model's exports on their own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from tui.core.config import PlansConfig
from tui.core.plans import Estimate, Lock, Plan, PlanRunner, Statement, Step
from tui.core.plans.consolidate import build_consolidation_plan

OLD_WEEKS = [date(2024, 1, 7), date(2024, 1, 14), date(2024, 1, 21)]
# short lock timeouts and few retries: the tests' plans never wait long
FAST_PLANS = PlansConfig(lock_timeout_seconds=0.5, lock_retries=2)


def run_plan(db, plan: Plan, **kw):
    """Run `plan` on `db` with FAST_PLANS and a short backoff (either may be overridden)."""
    kw.setdefault("config", FAST_PLANS)
    kw.setdefault("backoff_base", 0.05)
    return PlanRunner(db.target, plan, **kw).run()


def consolidation_plan(db, **kw) -> Plan:
    """The consolidation plan of account_balances, with FAST_PLANS."""
    with db.connect() as conn:
        return build_consolidation_plan(conn, "account_balances", config=FAST_PLANS, **kw)


def helper_objects(conn: psycopg.Connection) -> list[str]:
    """pgparts' helper objects still in the database: functions, sequences, triggers."""
    return [r[0] for r in conn.execute(
        "SELECT proname::text FROM pg_proc WHERE proname LIKE 'pgparts%'"
        " UNION ALL SELECT relname::text FROM pg_class WHERE relname LIKE 'pgparts%'"
        " UNION ALL SELECT tgname::text FROM pg_trigger WHERE tgname LIKE 'pgparts%'").fetchall()]


def current_week_start(today: date | None = None) -> date:
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=(today.weekday() + 1) % 7)  # weeks run Sunday to Sunday


@dataclass
class Balances:
    """Names of a built fixture."""

    schema: str
    parent: str
    weeks: list[str]  # old weeks, oldest first
    current: str  # the week holding now()

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.parent)

    def week_ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    @property
    def spec(self) -> str:
        """How a user types the parent's name."""
        return '"' + self.schema.replace('"', '""') + '"."' + self.parent.replace('"', '""') + '"'


def build_balances(
    conn: psycopg.Connection,
    *,
    schema: str = "public",
    parent: str = "account_balances",
    rows_per_week: int = 240,
    sub: str = "hash",
    weeks: list[date] | None = None,
    default_partition: bool = False,
) -> Balances:
    """account_balances as in scenario 1: weekly RANGE partitions, each HASH x4 (or LIST by
    activity), PK (account_address, timestamp, activity_id) and the scenario's indexes."""
    weeks = weeks or OLD_WEEKS
    s, p = sql.Identifier(schema), sql.Identifier(schema, parent)
    if schema != "public":
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
    conn.execute(sql.SQL(
        "CREATE TABLE {p} (\"timestamp\" timestamptz NOT NULL,"
        " account_address varchar(255) NOT NULL, usd_value decimal(18,2) NOT NULL,"
        " activity_id text NOT NULL, data jsonb NOT NULL DEFAULT '{{}}',"
        " PRIMARY KEY (account_address, \"timestamp\", activity_id))"
        " PARTITION BY RANGE (\"timestamp\")").format(p=p))
    for cols in (["timestamp"], ["activity_id"], ["account_address"],
                 ["account_address", "timestamp"], ["activity_id", "account_address"]):
        conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(
            p, sql.SQL(", ").join(sql.Identifier(c) for c in cols)))
    names = []
    current = current_week_start()
    for start in [*weeks, current]:
        name = f"{parent}_{start:%Y_%m_%d}"
        w = sql.Identifier(schema, name)
        by = sql.SQL("HASH (account_address)") if sub == "hash" else sql.SQL("LIST (activity_id)")
        conn.execute(sql.SQL(
            "CREATE TABLE {w} PARTITION OF {p} FOR VALUES FROM ({lo}) TO ({hi})"
            " PARTITION BY {by}").format(
            w=w, p=p, lo=sql.Literal(start.isoformat()),
            hi=sql.Literal((start + timedelta(days=7)).isoformat()), by=by))
        if sub == "hash":
            for r in range(4):
                conn.execute(sql.SQL(
                    "CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (modulus 4, remainder {})"
                ).format(sql.Identifier(schema, f"{name}_hash_{r}"), w, sql.Literal(r)))
        else:
            conn.execute(sql.SQL(
                "CREATE TABLE {} PARTITION OF {} FOR VALUES IN ('xrd_holding', 'lsu_holding')"
            ).format(sql.Identifier(schema, f"{name}_holding"), w))
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                sql.Identifier(schema, f"{name}_trading"), w))
        if start != current:
            names.append(name)
    if default_partition:
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
            sql.Identifier(schema, f"{parent}_default"), p))
    for start in weeks:
        insert_rows(conn, Balances(schema, parent, names, ""), start, rows_per_week)
    conn.execute(sql.SQL("ANALYZE {}").format(p))
    return Balances(schema, parent, names, f"{parent}_{current:%Y_%m_%d}")


def insert_rows(conn: psycopg.Connection, b: Balances, start: date, n: int,
                offset: int = 0) -> None:
    conn.execute(sql.SQL(
        "INSERT INTO {p} SELECT {start}::timestamptz + ((i % 168) * interval '1 hour'),"
        " 'rdx1q' || md5(i::text), (i % 1000) / 7.0,"
        " (ARRAY['xrd_holding','lsu_holding','dex_swap','lending'])[1 + i % 4],"
        " jsonb_build_object('i', i, 'note', 'O''Brien')"
        " FROM generate_series({a}, {b}) i").format(
        p=b.ident, start=sql.Literal(start.isoformat()), a=sql.Literal(offset + 1),
        b=sql.Literal(offset + n)))


def week_checksums(conn: psycopg.Connection, b: Balances,
                   bounds: list[date]) -> dict[date, tuple[int, str]]:
    """Count and order-independent checksum of every row per week, read through the parent."""
    out = {}
    for start in bounds:
        row = conn.execute(sql.SQL(
            "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text"
            " FROM {} t WHERE \"timestamp\" >= {} AND \"timestamp\" < {}").format(
            b.ident, sql.Literal(start.isoformat()),
            sql.Literal((start + timedelta(days=7)).isoformat()))).fetchone()
        out[start] = (row[0], row[1])
    return out


def user_tables(conn: psycopg.Connection, schema: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", (schema,)).fetchall()}


# -- the model's exports -----------------------------------------------------------------------
def _toy_plan() -> Plan:
    t = sql.Identifier("Odd Schema", 'we"ird')
    return Plan(
        kind="toy", title="toy plan", target='"Odd Schema"."we""ird"', target_oid=1,
        summary=["one line"],
        steps=[
            Step("Create", "Create a table; nothing else.",
                 [Statement(sql.SQL("CREATE TABLE {} (a int)").format(t), note="make it")],
                 locks=[Lock("ACCESS EXCLUSIVE", '"Odd Schema"."we""ird"', "new table")],
                 estimate=Estimate(10, 8192, 0.5)),
            Step("Analyze", "Statistics.", [Statement(sql.SQL("ANALYZE {}").format(t),
                                                      "maintenance")],
                 transactional=False),
        ],
    )


def test_sql_export_has_boundaries_locks_and_estimates(db):
    with db.connect() as conn:
        text = _toy_plan().to_sql(conn)
    assert "-- Step 1/2: Create" in text
    assert "--   lock: ACCESS EXCLUSIVE on \"Odd Schema\".\"we\"\"ird\" (new table)" in text
    assert "--   estimate: 10 rows, 8.0 KiB, ~0.5 s" in text
    body = [ln for ln in text.splitlines() if ln and not ln.startswith("--")]
    assert body == [
        "SET search_path = pg_catalog, pg_temp;", "SET lock_timeout = '2000ms';",
        "BEGIN;", 'CREATE TABLE "Odd Schema"."we""ird" (a int);', "COMMIT;",
        'ANALYZE "Odd Schema"."we""ird";',
    ]
    # the script runs as printed
    db.execute('CREATE SCHEMA "Odd Schema"')
    db.execute(text)
    assert db.query('SELECT count(*) FROM "Odd Schema"."we""ird"') == [(0,)]


def test_json_export(db):
    with db.connect() as conn:
        data = _toy_plan().to_json(conn)
    assert data["estimate"] == {"rows": 10, "bytes": 8192, "seconds": 0.5}
    first, second = data["steps"]
    assert first["locks"] == [{"mode": "ACCESS EXCLUSIVE", "relation": '"Odd Schema"."we""ird"',
                               "blocks": "new table"}]
    assert first["sql"] == ['CREATE TABLE "Odd Schema"."we""ird" (a int)']
    assert (first["transactional"], second["transactional"]) == (True, False)
