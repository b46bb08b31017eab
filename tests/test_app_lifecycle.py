"""The console's lifecycle parts against real servers (both versions): a table's [policy] and
growth in the details pane, the maintain screen (what `pgparts maintain` would do now, applied
with confirmation; a table whose lock is held is skipped, not a crash), and pg_partman's
part_config of a managed table (PostgreSQL 15 with pg_partman installed)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from textual.widgets import DataTable

from tui.app.app import PgpartsApp
from tui.app.confirm import ConfirmModal
from tui.app.maintain_screen import MaintainScreen
from tui.app.plan_screen import PlanScreen
from tui.core.config import Config, PlansConfig, TablePolicy
from tui.core.connection import Target

from .test_app import move_to, wait_loads, wait_until
from .test_app_consolidate import content_text
from .test_partman import partman_db  # noqa: F401  (the fixture)
from .test_plan_support import build_balances, current_week_start

SIZE = (140, 40)


def flat(text: str) -> str:
    return " ".join(text.split())


def policy(key: str, **values) -> TablePolicy:
    schema, _, name = key.rpartition(".")
    return TablePolicy(key, schema or None, name, **values)


def make_app(db, *policies: TablePolicy, read_only: bool = False) -> PgpartsApp:
    config = Config(plans=PlansConfig(lock_timeout_seconds=0.3, lock_retries=1),
                    policies={p.key: p for p in policies})
    return PgpartsApp(Target(db.dsn, label="test"), config, read_only=read_only)


def recent_weeks(n: int) -> list:
    start = current_week_start()
    return [start - timedelta(weeks=i) for i in range(n, 0, -1)]


def build_weekly(db):
    """Two weekly tables (4 hash partitions a week): four finished weeks and the current one,
    and one finished week and the current one."""
    with db.connect() as conn:
        build_balances(conn, rows_per_week=8, weeks=recent_weeks(4))
        build_balances(conn, schema="other", rows_per_week=4, weeks=recent_weeks(1))
    return db


@pytest.fixture
def weekly(db):
    return build_weekly(db)


@pytest.fixture
def weekly18(db18):
    """The console's own behaviour (the maintain run's is tested on both versions in
    test_maintain.py and above): PostgreSQL 18 only, to keep the suite short."""
    return build_weekly(db18)


async def open_maintain(pilot, app: PgpartsApp) -> MaintainScreen:
    await pilot.press("M")
    await wait_until(pilot, lambda: isinstance(app.screen, MaintainScreen))
    screen = app.screen
    await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning, timeout=30)
    return screen


async def apply_maintain(pilot, app: PgpartsApp, screen: MaintainScreen) -> None:
    await pilot.press("A")
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
    await pilot.click("#confirm-yes")
    await wait_until(pilot, lambda: app.screen is screen)
    await wait_until(pilot, lambda: screen.ran and not screen.running, timeout=60)


async def test_policy_growth_and_maintain_preview_then_apply(weekly):
    app = make_app(weekly, policy("public.account_balances", premake=2,
                                  retention=timedelta(weeks=100), retention_action="detach",
                                  oversized_bytes=5 * 1024**3))
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        table = app.forest.find("public.account_balances")
        await move_to(pilot, app, table.oid)
        await wait_until(pilot, lambda: table.oid in app.screen.growth_by_oid)
        details = flat(content_text(app.screen, "#details"))
        assert "policy [policy] 'public.account_balances'" in details, details
        assert "premake 2 partitions ahead" in details, details
        assert "retention detach older than 100 weeks" in details, details
        assert "oversized 5.0 GiB (default 1.0 GiB)" in details, details
        assert "skew" not in details  # a threshold the policy leaves alone is not shown
        assert "M: what maintain would do now" in details
        # the growth: a chart of size and rows per week, the rate, the runway
        assert "growth by week, 5 time partitions" in details, details
        size_line = next(ln for ln in content_text(app.screen, "#details").splitlines()
                         if ln.startswith("size ") and "max" in ln)
        assert "max" in size_line and any(c in size_line for c in "▁▂▃▄▅▆▇█"), size_line
        assert "rate: about 8 rows" in details and "per week" in details, details
        assert "runway: partitions until" in details and "0 partitions ahead" in details

        screen = await open_maintain(pilot, app)
        assert screen.table is not None and screen.table.oid == table.oid
        assert [(r.action, r.status) for r in screen.rows] == [
            ("create_ahead", "planned"), ("retention", "nothing")]
        # the table column names the table: what is done says it once (at 80 columns the
        # repeat left 'would create 2 partitions of account' in view)
        actions = screen.query_one("#maintain-actions", DataTable)
        what = str(actions.get_cell("0", "what"))
        assert what.startswith("would create 2 partitions ahead"), what
        assert "of account_balances" in screen.rows[0].message
        preview = content_text(screen, "#maintain-preview")
        assert "CREATE TABLE" in preview and "PARTITION OF" in preview, preview
        # enter opens the action's own plan screen with the policy's options
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        assert app.screen.kind.name == "create_ahead" and str(app.screen.values["count"]) == "2"
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        await apply_maintain(pilot, app, screen)
        assert screen.status == 0
        assert [(r.action, r.status) for r in screen.rows] == [
            ("create_ahead", "ok"), ("retention", "nothing"), ("analyze", "ok")], screen.rows
        # the refresh after the run: the details now count two partitions ahead
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.forest.find("public.account_balances")
                         is not table and app.screen.growth_by_oid)
        await wait_until(pilot, lambda: "2 partitions ahead)" in content_text(app.screen,
                                                                               "#details"))
        # a week below it (hash partitioned): no policy of its own, the thresholds above
        tree = app.screen.query_one("#tree")
        week = next(c for c in app.forest.find("public.account_balances").children
                    if c.is_partitioned)
        await tree.reveal(week.oid)
        await wait_until(pilot, lambda: tree.cursor_oid() == week.oid)
        await wait_until(pilot, lambda: "policy none no [policy] in the config names this table "
                         "the findings use the thresholds of the policy above it"
                         in flat(content_text(app.screen, "#details")))
        other = app.forest.find("other.account_balances")
        await move_to(pilot, app, other.oid)
        await wait_until(pilot, lambda: "policy none" in flat(content_text(app.screen, "#details")))
    with weekly.connect() as conn:
        ahead = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c"
            " ON c.oid = i.inhrelid WHERE i.inhparent = 'public.account_balances'::regclass"
            " AND c.relname > %s", (f"account_balances_{current_week_start():%Y_%m_%d}",)
        ).fetchone()[0]
    assert ahead == 2


async def test_a_locked_table_is_skipped_and_shown(weekly18):
    weekly = weekly18
    app = make_app(weekly, policy("public.account_balances", premake=1),
                   policy("other.account_balances", premake=1))
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        # the cursor on a table with a policy: its actions; t: every table with a policy
        screen = await open_maintain(pilot, app)
        assert screen.table is not None and screen.table.schema == "other"
        assert {r.table for r in screen.rows} == {"other.account_balances"}
        await pilot.press("t")
        await wait_until(pilot, lambda: screen.loads >= 2 and not screen.planning, timeout=30)
        assert screen.scope == "every table with a [policy]"
        assert {(r.table, r.status) for r in screen.rows} == {
            ("account_balances", "planned"), ("other.account_balances", "planned")}
        with psycopg.connect(weekly.dsn) as holder:
            holder.execute("LOCK TABLE public.account_balances IN ACCESS EXCLUSIVE MODE")
            await apply_maintain(pilot, app, screen)
            holder.rollback()
        assert screen.status == 1
        rows = {(r.table, r.action): r for r in screen.rows}
        locked = rows[("account_balances", "create_ahead")]
        assert locked.status == "skipped" and "conflicting lock" in locked.message
        assert rows[("other.account_balances", "create_ahead")].status == "ok"
        assert "one or more skipped" in content_text(screen, "#maintain-reason")
        # r plans again: the skipped table still has its week to create, the other none
        await pilot.press("r")
        await wait_until(pilot, lambda: screen.loads >= 3 and not screen.planning, timeout=30)
        assert {(r.table, r.status) for r in screen.rows} == {
            ("account_balances", "planned"), ("other.account_balances", "nothing")}


async def test_read_only_shows_the_plan_but_refuses_apply(db18):
    db = db18
    with db.connect() as conn:
        build_balances(conn, rows_per_week=4, weeks=recent_weeks(1))
    app = make_app(db, policy("public.account_balances", premake=1), read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        await move_to(pilot, app, app.forest.find("public.account_balances").oid)
        screen = await open_maintain(pilot, app)
        assert screen.rows[0].status == "planned"
        assert "read-only" in content_text(screen, "#maintain-reason")
        await pilot.press("A")
        await pilot.pause(0.2)
        assert app.screen is screen and not screen.ran


async def test_partman_part_config_in_the_details(partman_db):  # noqa: F811
    app = make_app(partman_db, TablePolicy('"Odd".events', "Odd", "events", premake=5))
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        events = app.forest.find('"Odd".events')
        await move_to(pilot, app, events.oid)
        await wait_until(pilot, lambda: "pg_partman 4.7" in content_text(app.screen,
                                                                          "#details"))
        details = content_text(app.screen, "#details")
        assert "manages this table (part_config, read-only)" in details, details
        assert "parent_table" in details and "Odd.events" in details
        assert "premake" in details and "30 days" in details
        assert "policy  [policy] '\"Odd\".events'" in details, details
        screen = await open_maintain(pilot, app)
        assert [(r.action, r.status) for r in screen.rows] == [("create_ahead", "nothing")]
        assert "pg_partman manages it" in screen.rows[0].message


async def test_cancel_stops_the_waiting_action_and_starts_no_other(weekly18):
    app = make_app(weekly18, policy("public.account_balances", premake=1),
                   policy("other.account_balances", premake=1))
    # a long lock timeout: the action waits on the held lock until c cancels it
    app.config = Config(plans=PlansConfig(lock_timeout_seconds=30, lock_retries=1),
                        policies=app.config.policies)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        await move_to(pilot, app, app.forest.find("other.account_balances").oid)
        screen = await open_maintain(pilot, app)
        await pilot.press("t")
        await wait_until(pilot, lambda: screen.loads >= 2 and not screen.planning, timeout=30)
        with psycopg.connect(weekly18.dsn) as holder:
            # account_balances (public) runs first, by name: its lock is held
            holder.execute("LOCK TABLE public.account_balances IN ACCESS EXCLUSIVE MODE")
            await pilot.press("A")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
            await pilot.click("#confirm-yes")
            await wait_until(pilot, lambda: any(r.status == "running" for r in screen.rows))
            await pilot.press("q")  # refused while it runs
            assert app.is_running
            await pilot.press("c")
            await wait_until(pilot, lambda: screen.ran and not screen.running, timeout=20)
            holder.rollback()
        rows = {(r.table, r.action): r for r in screen.rows}
        assert screen.status == 1
        assert rows[("account_balances", "create_ahead")].status == "skipped"
        assert "cancelled" in rows[("account_balances", "create_ahead")].message
        assert rows[("other.account_balances", "create_ahead")].status == "skipped"
        assert rows[("other.account_balances", "create_ahead")].message == \
            "cancelled before it ran"
