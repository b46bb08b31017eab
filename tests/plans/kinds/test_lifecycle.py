"""create_ahead and retention on the scenario's account_balances shape (weekly RANGE, each week
HASH x4), against real servers: bounds whatever the time zones, the DEFAULT refusal at apply
time, exactly the expired weeks, foreign keys pointing into a week."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from tui.cli import main
from tui.core.catalog import load_forest
from tui.core.config import Config, FindingsConfig
from tui.core.findings import check_forest
from tui.core.plans import Outcome
from tui.core.plans.kind import Request
from tui.core.plans.registry import kind_named
from tui.core.plans.remedies import remedy_text

from ...test_plan_support import FAST_PLANS, build_balances, current_week_start, run_plan
from ..contract.test_contract import _killer
from ..scenarios import SCHEMA, TABLE, WEEK, leftovers
from ..scenarios import ident as scen_ident
from ..scenarios import spec as scen_spec


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def plan_for(db, kind_name: str, table: str = "account_balances", config: Config | None = None,
             **values):
    kind = kind_named(kind_name)
    with db.connect() as conn:
        forest = load_forest(conn)
        return kind.build(conn, forest, None, kind.request(values, table),
                          config or Config(plans=FAST_PLANS))


def weeks(db, parent: str = "account_balances") -> list[tuple[str, datetime, datetime, int]]:
    """(name, lower, upper, sub-partitions) of the attached weeks, read in UTC."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        rows = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid),"
            " (SELECT count(*) FROM pg_inherits s WHERE s.inhparent = c.oid)"
            " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass ORDER BY 2", (f"public.{parent}",)).fetchall()
    out = []
    for name, bound, subs in rows:
        if "FROM" not in bound:
            continue
        lo, hi = (datetime.fromisoformat(p.split("'")[1]) for p in bound.split(" TO "))
        out.append((name, lo, hi, subs))
    return sorted(out, key=lambda w: w[1])


def test_create_ahead_makes_sunday_weeks_in_utc_whatever_the_time_zones(db, capsys,
                                                                        monkeypatch):
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=20)
        conn.execute(sql.SQL("GRANT SELECT ON {} TO PUBLIC").format(b.ident))
    monkeypatch.setenv("PGTZ", "Pacific/Chatham")  # the client's session default, +13:45
    dbname = db.query("SELECT current_database()")[0][0]
    db.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = 'America/New_York'").format(
        sql.Identifier(dbname)))
    status, out, err = cli(capsys, "create_ahead", "account_balances", "--count", "3",
                           "--dry-run", "-d", db.dsn)
    assert status == 0, err
    assert "checks that the DEFAULT" not in out  # no DEFAULT partition here
    status, out, err = cli(capsys, "create_ahead", "account_balances", "--count", "3",
                           "--apply", "--yes", "-d", db.dsn)
    assert status == 0, err
    current = current_week_start()
    got = weeks(db)
    future = [w for w in got if w[1].date() > current]
    assert [w[1].date() for w in future] == [current + timedelta(days=7 * k) for k in (1, 2, 3)]
    for name, lo, hi, subs in future:
        assert lo.tzinfo is not None and lo.utcoffset() == timedelta(0)
        assert lo.weekday() == 6 and (lo.hour, lo.minute) == (0, 0)  # Sunday 00:00 UTC
        assert hi - lo == timedelta(days=7)
        assert name == f"account_balances_{lo:%Y_%m_%d}"
        assert subs == 4
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        new = future[0][0]
        # the parent's indexes and grants, and the hash leaves named like the newest week's
        idx = conn.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass",
                           (f"public.{new}",)).fetchone()[0]
        parent_idx = conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'public.account_balances'::regclass"
        ).fetchone()[0]
        assert idx == parent_idx
        assert conn.execute("SELECT has_table_privilege('public', %s, 'SELECT')",
                            (f"public.{new}",)).fetchone()[0]
        leaves = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass ORDER BY 1", (f"public.{new}",)).fetchall()]
        assert leaves == [f"{new}_hash_{r}" for r in range(4)]
        # rows for next week now go to next week's partition
        conn.execute("INSERT INTO public.account_balances VALUES (%s, 'a', 1, 'x', '{}')",
                     (future[0][1] + timedelta(hours=1),))
    # idempotent: the same command again has nothing to do
    status, out, err = cli(capsys, "create_ahead", "account_balances", "--count", "3",
                           "--apply", "--yes", "-d", db.dsn)
    assert status == 0 and "nothing to do" in err, (out, err)


def test_create_ahead_refuses_a_week_the_default_got_rows_of_since_planning(db, capsys):
    """A row of next week lands in the DEFAULT after the plan was made (planning moves the
    rows it finds: test_default_subpartitioned.py): the run refuses that week at its check,
    never at ATTACH, and the exported script does the same."""
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=20, default_partition=True)
    status, out, err = cli(capsys, "create_ahead", "account_balances", "--dry-run",
                           "-d", db.dsn)
    assert status == 0 and "checks that the DEFAULT partition" in out, out
    plan = plan_for(db, "create_ahead")
    with db.connect() as conn:
        script = plan.to_sql(conn)
        nxt = current_week_start() + timedelta(days=7)
        conn.execute(sql.SQL("INSERT INTO {} VALUES ({}, 'late', 1, 'x', '{{}}')").format(
            b.ident, sql.Literal(datetime(nxt.year, nxt.month, nxt.day, 3, tzinfo=UTC))))
        before = conn.execute("SELECT count(*) FROM public.account_balances").fetchone()[0]
    # the exported script refuses (a DO block that raises)
    with (psycopg.connect(db.dsn, autocommit=True) as conn,
          pytest.raises(psycopg.errors.RaiseException, match="pgparts: refused")):
        conn.execute(script)
    result = run_plan(db, plan)
    assert result.outcome == Outcome.FAILED
    assert "refused account_balances_" in result.error, result.error
    assert "holds rows of its range" in result.error, result.error
    assert "ATTACH" not in result.error.upper().split("REFUSED")[0]  # at the check, not ATTACH
    with db.connect() as conn:
        after = conn.execute("SELECT count(*) FROM public.account_balances").fetchone()[0]
        in_default = conn.execute(
            "SELECT count(*) FROM public.account_balances_default").fetchone()[0]
        helper = conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid ="
                              " 'public.account_balances_default'::regclass"
                              " AND conname LIKE 'pgparts%'").fetchone()[0]
    assert after == before and in_default == 1 and helper == 0
    assert not [w for w in weeks(db) if w[1].date() >= nxt]


def test_create_ahead_with_a_default_partition_attaches_without_scanning(db):
    with db.connect() as conn:
        build_balances(conn, rows_per_week=20, default_partition=True)
    plan = plan_for(db, "create_ahead", count=2)
    assert len(plan.facts.changes) == 2
    result = run_plan(db, plan)
    assert result.ok, result.error
    with db.connect() as conn:
        helper = conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid ="
                              " 'public.account_balances_default'::regclass"
                              " AND conname LIKE 'pgparts%'").fetchone()[0]
    assert helper == 0  # the helper CHECKs are gone again
    assert len([w for w in weeks(db) if w[1].date() > current_week_start()]) == 2


def _plain_weeks_with_default_rows(conn: psycopg.Connection) -> tuple[date, int, str]:
    """Hostile names: plain weekly partitions (no sub-partitioning) up to this week, a DEFAULT
    holding rows of next week and of the week after it, and rows from before the first week
    (which stay); a table referencing the parent. (next week's start, rows, digest)"""
    sch = sql.Identifier(SCHEMA)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sch))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sch))
    t = scen_ident(TABLE)
    conn.execute(sql.SQL("CREATE TABLE {} (id int NOT NULL, ts timestamptz NOT NULL, v text,"
                         " PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)").format(t))
    current = current_week_start()
    for n in (2, 1, 0):
        start = current - timedelta(weeks=n)
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})")
                     .format(scen_ident(f"{WEEK}{start:%Y_%m_%d}"), t,
                             sql.Literal(f"{start} 00:00+00"),
                             sql.Literal(f"{start + timedelta(days=7)} 00:00+00")))
    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
        scen_ident('dé f"ault'), t))
    nxt = current + timedelta(days=7)
    base = datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC)
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(t), [
            (g, base + timedelta(hours=g * 3) - timedelta(weeks=5 if g % 5 == 0 else 0),
             f"v{g}") for g in range(100)])
    conn.execute(sql.SQL("CREATE TABLE {} (id int, ts timestamptz, FOREIGN KEY (id, ts)"
                         " REFERENCES {} ON DELETE CASCADE)").format(scen_ident("ré f"), t))
    conn.execute(sql.SQL("INSERT INTO {} SELECT id, ts FROM {} WHERE id % 3 = 0").format(
        scen_ident("ré f"), t))
    n, digest = conn.execute(sql.SQL(
        "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) FROM {} t"
    ).format(t)).fetchone()
    return nxt, int(n), digest


def test_create_ahead_moves_the_default_rows_of_next_week(db, capsys):
    """Issue 12: the DEFAULT already holds rows of next week. The plan moves them into the new
    week online (drain-default's steps) instead of refusing: no failed ATTACH, no row lost."""
    with db.connect() as conn:
        nxt, n, digest = _plain_weeks_with_default_rows(conn)
    status, out, err = cli(capsys, "create-ahead", scen_spec(), "--count", "3", "--dry-run",
                           "-d", db.dsn)
    assert status == 0, err
    assert "they are moved into them online" in out and "one EXISTS each" in out, out
    status, out, err = cli(capsys, "create-ahead", scen_spec(), "--count", "3", "--apply",
                           "--yes", "-d", db.dsn)
    assert status == 0, err
    assert "(the swap)" in out + err
    with db.connect() as conn:
        t = scen_ident(TABLE)
        assert conn.execute(sql.SQL(
            "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) FROM {} t"
        ).format(t)).fetchone() == (n, digest)
        # only the rows from before the first week stay in the new, empty-but-for-them DEFAULT
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            scen_ident('dé f"ault'))).fetchone()[0] == 20
        root = load_forest(conn).find(scen_spec())
        bounds = {c.name: c.bound_text for c in root.children}
        for k in (1, 2, 3):
            start = current_week_start() + timedelta(weeks=k)
            assert f"{WEEK}{start:%Y_%m_%d}" in bounds, bounds
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(scen_ident(
            f"{WEEK}{nxt:%Y_%m_%d}"))).fetchone()[0] > 0
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            scen_ident("ré f"))).fetchone()[0] == 34  # no reference cascaded away
        assert leftovers(conn) == []
    status, out, err = cli(capsys, "create-ahead", scen_spec(), "--count", "3", "--apply",
                           "--yes", "-d", db.dsn)
    assert status == 0 and "nothing to do" in err, (out, err)


def test_create_ahead_killed_before_dropping_the_helper_check_drops_it_next_run(db):
    with db.connect() as conn:
        build_balances(conn, rows_per_week=10, default_partition=True)
    plan = plan_for(db, "create_ahead", count=1)
    remove = next(i for i, s in enumerate(plan.steps, 1)
                  if s.title.startswith("Remove the helper CHECK"))
    hook, fired = _killer(db, ("statement", remove, 1))
    assert run_plan(db, plan, hook=hook).outcome == Outcome.FAILED and fired

    def helpers() -> int:
        with db.connect() as conn:
            return conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid ="
                                " 'public.account_balances_default'::regclass"
                                " AND conname LIKE 'pgparts%'").fetchone()[0]

    assert helpers() == 1
    again = plan_for(db, "create_ahead", count=1)
    assert [s.title for s in again.steps] == [
        "Remove leftover helper CHECKs from account_balances_default"]
    assert run_plan(db, again).ok
    assert helpers() == 0


def test_retention_detaches_exactly_the_expired_weeks(db, capsys):
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=10)
        conn.execute("CREATE SCHEMA archive")
    current = current_week_start()
    # OLD_WEEKS are years old; keep the newest one by asking for a cutoff just after it
    cutoff_days = (current - b_old_newest(b)).days - 3
    plan = plan_for(db, "retention", older_than=f"{cutoff_days} days",
                    archive_schema="archive")
    names = [c.split(" ")[0] for c in plan.facts.changes]
    assert names == b.weeks[:-1]
    assert not plan.facts.destroys
    result = run_plan(db, plan)
    assert result.ok, result.error
    attached = [w[0] for w in weeks(db)]
    assert attached == [b.weeks[-1], b.current]
    with db.connect() as conn:
        moved = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'archive' AND c.relkind = 'p' ORDER BY 1").fetchall()]
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier("archive", b.weeks[0]))).fetchone()[0]
    assert moved == b.weeks[:-1] and rows == 10


def b_old_newest(b) -> datetime.date:
    return datetime.strptime(b.weeks[-1][-10:], "%Y_%m_%d").date()


def test_retention_names_the_partition_from_minvalue_it_never_removes(db):
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=2)
        conn.execute("CREATE TABLE public.account_balances_before PARTITION OF"
                     " public.account_balances FOR VALUES FROM (MINVALUE) TO ('2024-01-07')")
    # a cutoff inside the first week: only the MINVALUE partition ends before it
    days = (datetime.now(UTC).date() - date(2024, 1, 10)).days
    plan = plan_for(db, "retention", older_than=f"{days} days", action="drop")
    assert not plan.steps and not plan.facts.destroys
    assert plan.summary[0].startswith("no partition of account_balances that retention may "
                                      "remove ends before "), plan.summary
    assert plan.summary[1].startswith("account_balances_before ends before "), plan.summary
    assert "starts at MINVALUE: never removed by retention" in plan.summary[1]
    # with expired weeks too, the plan still names it
    plan = plan_for(db, "retention", older_than="30 days", action="drop")
    assert [d.name for d in plan.facts.destroys] == b.weeks
    assert any("account_balances_before ends before" in line for line in plan.summary)


def test_retention_drop_needs_the_typed_name_and_drops_the_expired_weeks(db, capsys):
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=10, default_partition=True)
    plan = plan_for(db, "retention", older_than="30 days", action="drop")
    assert plan.facts.needs_typed_confirmation
    assert [d.name for d in plan.facts.destroys] == b.weeks
    assert run_plan(db, plan).ok
    assert [w[0] for w in weeks(db)] == [b.current]
    with db.connect() as conn:
        left = conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE"
                            " 'account_balances_2024%'").fetchone()[0]
    assert left == 0


def test_retention_refuses_a_week_another_table_references(db, capsys):
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=10)
        conn.execute(
            'CREATE TABLE public."Refs ""x"" é" (id int PRIMARY KEY, addr varchar(255),'
            ' ts timestamptz, act text, CONSTRAINT "fk ""é" FOREIGN KEY (addr, ts, act)'
            ' REFERENCES public.account_balances (account_address, "timestamp", activity_id))')
        conn.execute(sql.SQL(
            'INSERT INTO public."Refs ""x"" é" SELECT 1, account_address, "timestamp",'
            ' activity_id FROM {} LIMIT 1').format(sql.Identifier("public", b.weeks[1])))
    status, out, err = cli(capsys, "retention", "account_balances", "--older-than", "30days",
                           "--dry-run", "-d", db.dsn)
    assert status == 0 and 'foreign key fk "é of "Refs ""x"" é"' in out, out
    status, out, err = cli(capsys, "retention", "account_balances", "--older-than", "30days",
                           "--apply", "--yes", "-d", db.dsn)
    assert status == 1
    assert (f'refused {b.weeks[1]}: rows of "Refs ""x"" é" reference it '
            f'(foreign key fk "é)') in err, err
    # the week before it went; the referenced one and those after it stay
    assert [w[0] for w in weeks(db)] == [b.weeks[1], b.weeks[2], b.current]


def test_policy_gives_the_defaults(db, tmp_path):
    with db.connect() as conn:
        build_balances(conn, rows_per_week=5)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[policy."public.account_balances"]\npremake = 2\nretention = "30 days"\n'
                   'retention_action = "drop"\n')
    from tui.core.config import load_config

    config = load_config(str(cfg))
    ahead = plan_for(db, "create_ahead", config=config)
    assert len(ahead.facts.changes) == 2
    kind = kind_named("retention")
    with db.connect() as conn:
        forest = load_forest(conn)
        plan = kind.build(conn, forest, None, Request({}, "account_balances"), config)
    assert len(plan.facts.destroys) == 3


def test_fix_plans_create_ahead_for_no_future_partition(db, capsys):
    from ..scenarios import SCENARIOS, codes, spec

    with db.connect() as conn:
        SCENARIOS["create_ahead"].build(conn, db.dsn)
        assert "no_future_partition" in codes(conn)
    with db.connect() as conn:
        found = [f for f in check_forest(load_forest(conn), FindingsConfig())
                 if f.code == "no_future_partition"]
    assert remedy_text(found[0]).startswith("fix: pgparts fix ")
    assert "pgparts create-ahead " in remedy_text(found[0])
    status, out, err = cli(capsys, "fix", spec(), "--only", "no_future_partition", "--apply",
                           "--yes", "-d", db.dsn)
    assert status == 0, err
    with db.connect() as conn:
        assert "no_future_partition" not in codes(conn)


def test_create_ahead_copies_list_groups(db):
    with db.connect() as conn:
        build_balances(conn, rows_per_week=10, sub="list")
    assert run_plan(db, plan_for(db, "create_ahead", count=1)).ok
    nxt = current_week_start() + timedelta(days=7)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass"
            " ORDER BY 1", (f"public.account_balances_{nxt:%Y_%m_%d}",)).fetchall()
    assert rows == [
        (f"account_balances_{nxt:%Y_%m_%d}_holding",
         "FOR VALUES IN ('xrd_holding', 'lsu_holding')"),
        (f"account_balances_{nxt:%Y_%m_%d}_trading", "DEFAULT")]


def _pending_detach(db, table: str, partition: str) -> None:
    """`partition`'s DETACH ... CONCURRENTLY cancelled while it waited for an older snapshot."""
    holder = psycopg.connect(db.dsn)
    holder.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)))
    box: dict[str, BaseException] = {}

    def detach() -> None:
        with psycopg.connect(db.dsn, autocommit=True) as c:
            c.execute("SET application_name = 'pgparts-test-detach'")
            try:
                c.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                    sql.Identifier("public", table), sql.Identifier("public", partition)))
            except psycopg.Error as exc:
                box["e"] = exc

    th = threading.Thread(target=detach)
    th.start()
    try:
        with psycopg.connect(db.dsn, autocommit=True) as watch:
            for _ in range(200):
                row = watch.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name ="
                    " 'pgparts-test-detach' AND wait_event_type IS NOT NULL"
                    " AND state = 'active'").fetchone()
                if row:
                    watch.execute("SELECT pg_cancel_backend(%s)", (row[0],))
                    break
                time.sleep(0.05)
        th.join(10)
    finally:
        holder.close()
    assert isinstance(box.get("e"), psycopg.errors.QueryCanceled), box


def test_retention_concurrently_finalizes_an_interrupted_detach(db):
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=10)
    _pending_detach(db, "account_balances", b.weeks[1])
    plan = plan_for(db, "retention", older_than="30 days")
    assert [s.title.split(" ")[0] for s in plan.steps] == ["Finish", "Detach", "Detach"]
    assert not any(s.transactional for s in plan.steps)  # CONCURRENTLY, FINALIZE
    assert run_plan(db, plan).ok
    assert [w[0] for w in weeks(db)] == [b.current]
    with db.connect() as conn:
        pending = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhdetachpending"
                               ).fetchone()[0]
    assert pending == 0


def test_retention_with_a_default_partition_detaches_plainly(db):
    with db.connect() as conn:
        build_balances(conn, rows_per_week=10, default_partition=True)
    plan = plan_for(db, "retention", older_than="30 days")
    assert len(plan.steps) == 3 and all(s.transactional for s in plan.steps)
    assert all(s.locks[0].mode == "ACCESS EXCLUSIVE" for s in plan.steps)
    assert run_plan(db, plan).ok


def test_create_ahead_leaves_an_open_ended_table_alone(db):
    db.execute("CREATE TABLE public.ev (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);"
               " CREATE TABLE public.ev_2026_01 PARTITION OF public.ev"
               "  FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2026-02-01 00:00+00');"
               " CREATE TABLE public.ev_rest PARTITION OF public.ev"
               "  FOR VALUES FROM ('2026-02-01 00:00+00') TO (MAXVALUE)")
    plan = plan_for(db, "create_ahead", table="ev")
    assert not plan.steps and "already has partitions" in plan.summary[0]
