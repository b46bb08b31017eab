"""SVG snapshots of the console on fixed data (regenerate with --snapshot-update, then look).

Async tests cannot use pytest-textual-snapshot's snap_compare (it starts its own event loop), so
the SVG comes from App.export_screenshot() and syrupy's SVG extension compares it. The data is
fixed (dates in 2024, deterministic rows, ANALYZE only, never vacuumed) and the status line hides
the load time, so the picture does not depend on when the test runs.
"""

from __future__ import annotations

import re

import pytest
from syrupy.extensions.image import SVGImageSnapshotExtension

from tui.app.app import PgpartsApp
from tui.core.config import Config
from tui.core.connection import Target

from .conftest import SCENARIO_NOW
from .test_app import move_to, wait_loads, wait_until, widget_text

LAYOUT = """
CREATE TABLE measurements (ts date NOT NULL, station int NOT NULL, v numeric)
  PARTITION BY RANGE (ts);
CREATE TABLE measurements_2024_01 PARTITION OF measurements
  FOR VALUES FROM ('2024-01-01') TO ('2024-02-01') PARTITION BY HASH (station);
CREATE TABLE measurements_2024_01_h0 PARTITION OF measurements_2024_01
  FOR VALUES WITH (modulus 4, remainder 0);
CREATE TABLE measurements_2024_01_h1 PARTITION OF measurements_2024_01
  FOR VALUES WITH (modulus 4, remainder 1);
CREATE TABLE measurements_2024_01_h2 PARTITION OF measurements_2024_01
  FOR VALUES WITH (modulus 4, remainder 2);
CREATE TABLE measurements_2024_01_h3 PARTITION OF measurements_2024_01
  FOR VALUES WITH (modulus 4, remainder 3);
CREATE TABLE measurements_2024_02 PARTITION OF measurements
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE measurements_default PARTITION OF measurements DEFAULT;
CREATE INDEX ON measurements (station);
CREATE TABLE regions (region text NOT NULL, n int) PARTITION BY LIST (region);
CREATE TABLE regions_eu PARTITION OF regions FOR VALUES IN ('de', 'fr', 'nl');
CREATE TABLE regions_us PARTITION OF regions FOR VALUES IN ('us');
INSERT INTO measurements
  SELECT date '2024-01-01' + (i % 60), i % 97, i FROM generate_series(1, 20000) i;
INSERT INTO regions SELECT 'de', i FROM generate_series(1, 500) i;
ANALYZE;
"""


@pytest.fixture
def fixed(db18):
    db18.execute(LAYOUT)
    return db18


async def test_tree_and_details_snapshot(fixed, snapshot):
    app = PgpartsApp(Target(fixed.dsn, label="snapshot"), Config(), read_only=False)
    app.show_load_time = False
    async with app.run_test(size=(140, 36)) as pilot:
        await wait_loads(pilot, app)
        forest = app.forest
        tree = app.screen.query_one("#tree")
        root = forest.find("measurements")
        month = forest.find("measurements_2024_01")
        await move_to(pilot, app, root.oid)
        await pilot.press("enter")
        await wait_until(pilot, lambda: tree.node_for(month.oid) is not None)
        await move_to(pilot, app, month.oid)
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(tree.node_for(month.oid).children) == 4)
        svg = app.export_screenshot(title="pgparts")
    assert svg == snapshot(extension_class=SVGImageSnapshotExtension)


# -- the demo scenarios at 80x24 and 160x45 -----------------------------------------------------
# The seeded scenarios (tui.core.seed, laid out around SCENARIO_NOW) with the console's clock
# fixed at that date: findings, ages and the default selection do not move with the calendar.
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 45), id="160x45")]


def scenario_app(db) -> PgpartsApp:
    if db.server.label != "pg18":
        pytest.skip("pictures are taken on PostgreSQL 18 (sizes differ between versions)")
    app = PgpartsApp(Target(db.dsn, label="snapshot"), Config(), read_only=False)
    app.show_load_time = False
    app.fixed_now = SCENARIO_NOW
    return app


async def show_balances(pilot, app: PgpartsApp) -> None:
    """The tree with account_balances open and the cursor on one of its hash-partitioned weeks."""
    await wait_loads(pilot, app)
    tree = app.screen.query_one("#tree")
    balances = app.forest.find("account_balances")
    weeks = sorted(balances.children, key=lambda n: n.name)
    week = next(w for w in weeks if w.is_partitioned)
    await tree.reveal(week.oid)
    await wait_until(pilot, lambda: tree.cursor_oid() == week.oid)


@pytest.mark.parametrize("size", SIZES)
async def test_tree_snapshot(scenario_db, snapshot, size):
    app = scenario_app(scenario_db)
    async with app.run_test(size=size) as pilot:
        await show_balances(pilot, app)
        svg = await steady_screenshot(pilot, app)
    assert svg == snapshot(extension_class=SVGImageSnapshotExtension)


@pytest.mark.parametrize("size", SIZES)
async def test_consolidation_snapshot(scenario_db, snapshot, size):
    from tui.app.plan_screen import PlanScreen

    app = scenario_app(scenario_db)
    async with app.run_test(size=size) as pilot:
        await show_balances(pilot, app)
        await move_to(pilot, app, app.forest.find("account_balances").oid)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning, timeout=30)
        svg = await steady_screenshot(pilot, app)
    assert svg == snapshot(extension_class=SVGImageSnapshotExtension)


@pytest.mark.parametrize("size", SIZES)
async def test_explain_snapshot(scenario_db, snapshot, size):
    from tui.app.explain_screen import ExplainScreen

    app = scenario_app(scenario_db)
    async with app.run_test(size=size) as pilot:
        await show_balances(pilot, app)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExplainScreen))
        screen = app.screen
        for field in screen.query("TextArea, Input"):
            field.cursor_blink = False  # the focused one blinked: two pictures otherwise
        await pilot.press("f5")
        await wait_until(pilot, lambda: screen.runs >= 1, timeout=30)
        svg = await steady_screenshot(pilot, app)
    assert svg == snapshot(extension_class=SVGImageSnapshotExtension)


@pytest.fixture
def scenario_db18(pg18):
    """scenario_db on PostgreSQL 18 alone: pictures are taken there, and a test asking for
    scenario_db would copy the scenarios on every version before skipping the others."""
    from .conftest import Database, _scenario_copy, drop_database

    name = _scenario_copy(pg18)
    yield Database(pg18, name)
    drop_database(pg18, name)


async def open_actions_on_payment_2023(pilot, app: PgpartsApp):
    """The tree with the cursor on control.payment_2023 (scenario 2), then its actions menu."""
    from tui.app.node_actions import ActionsMenu

    await wait_loads(pilot, app)
    node = app.forest.find("control.payment_2023")
    await app.screen.query_one("#tree").reveal(node.oid)
    await wait_until(pilot, lambda: app.selected_node is not None
                     and app.selected_node.oid == node.oid)
    await pilot.press("m")
    await wait_until(pilot, lambda: isinstance(app.screen, ActionsMenu))


@pytest.mark.parametrize("size", SIZES)
async def test_partition_actions_snapshot(scenario_db18, snapshot, size):
    app = scenario_app(scenario_db18)
    async with app.run_test(size=size) as pilot:
        await open_actions_on_payment_2023(pilot, app)
        svg = await steady_screenshot(pilot, app)
    assert svg == snapshot(extension_class=SVGImageSnapshotExtension)


@pytest.mark.parametrize("size", SIZES)
async def test_split_refused_boundary_snapshot(scenario_db18, snapshot, size):
    """split opened from the menu with a boundary outside the partition: the form says why."""
    from tui.app.plan_screen import PlanScreen

    app = scenario_app(scenario_db18)
    async with app.run_test(size=size) as pilot:
        await open_actions_on_payment_2023(pilot, app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning, timeout=30)
        before = screen.loads
        field = screen.query_one("#plan-option-at")
        field.cursor_blink = False  # it has the focus: a blinking cursor made two pictures
        field.value = "2023-07-01, 2024-07-01"
        await wait_until(pilot, lambda: screen.loads > before and not screen.planning,
                         timeout=30)
        svg = await steady_screenshot(pilot, app)
    assert svg == snapshot(extension_class=SVGImageSnapshotExtension)


# -- the lifecycle sections of the details pane --------------------------------------------------
LIFECYCLE_POLICY = """
[policy."public.account_balances"]
premake = 4
retention = "52 weeks"
retention_schema = "archive"
consolidate_older_than = "3 months"
consolidate_batch = 5
oversized = "5GB"
"""


@pytest.mark.parametrize("size", SIZES)
async def test_details_policy_and_growth_snapshot(scenario_db, snapshot, size, tmp_path):
    """account_balances' details scrolled to the growth chart: its [policy] above it,
    the rate and the runway (the pane is below the tree at 80x24, beside it at 160x45)."""
    from tui.core.config import load_config

    app = scenario_app(scenario_db)
    path = tmp_path / "pgparts.toml"
    path.write_text(LIFECYCLE_POLICY)
    app.config = load_config(path)
    async with app.run_test(size=size) as pilot:
        await wait_loads(pilot, app)
        balances = app.forest.find("account_balances")
        await move_to(pilot, app, balances.oid)
        screen = app.screen
        await wait_until(pilot, lambda: balances.oid in screen.growth_by_oid
                         and screen.partman_state is not None)
        await pilot.pause(0.1)
        # the growth section at the top of the pane (at 80x24 the pane shows 7 lines)
        lines = widget_text(screen.query_one("#details")).splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("growth"))
        screen.query_one("#details-pane").scroll_to(y=start, animate=False)
        svg = await steady_screenshot(pilot, app)
    assert svg == snapshot(extension_class=SVGImageSnapshotExtension)


# -- the migration wizard on the small legacy table ---------------------------------------------
async def steady_screenshot(pilot, app: PgpartsApp) -> str:
    """The screen once no worker runs and three pictures in a row agree (the footer's keys
    and the tables are drawn after the data arrives; a loaded machine takes longer)."""
    last, same = "", 0
    for _ in range(60):
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        svg = app.export_screenshot(title="pgparts")
        same = same + 1 if svg == last else 0
        if same >= 2:
            return svg
        last = svg
    return last


def _scrub(svg: str, oid: int) -> str:
    """The table's oid (it shows in stage 1's SQL) depends on what the server made before;
    the SVG's ids are a hash of its content."""
    svg = svg.replace(f">{oid}<", ">OID<")
    return re.sub(r"terminal-\d+", "terminal", svg)


@pytest.mark.parametrize("size", SIZES)
async def test_migrate_wizard_snapshots(db18, snapshot, size):
    from .migrate_support import PLAIN
    from .test_app_migrate import form_of, open_picker, pick, wizard_loaded
    from .test_migrate_stages import _build

    _build(db18, PLAIN)
    # the picker shows row estimates and stage 1 sizes: vacuumed and analyzed now, so
    # autovacuum cannot change them later (its first VACUUM of this table, over 1,000 rows
    # inserted, adds the free space and visibility maps that pg_table_size counts: the
    # picture differed when it ran first)
    db18.execute("VACUUM ANALYZE")
    oid = db18.query("SELECT 'legacy.payment'::regclass::oid")[0][0]
    app = scenario_app(db18)
    async with app.run_test(size=size) as pilot:
        picker = await open_picker(pilot, app)
        # the picker: plain tables with their sizes and row estimates
        assert await steady_screenshot(pilot, app) == snapshot(
            extension_class=SVGImageSnapshotExtension)
        await pick(pilot, picker, "legacy.payment")
        await form_of(pilot, app)
        await pilot.press("ctrl+n")
        await wizard_loaded(pilot, app)
        # stage 1's preview: what it found, then its plan, whose SQL (in view at the large
        # size) holds the table's oid: _scrub replaces its text, but the characters after it
        # on that line sit one cell further with a six-digit oid (a server that made many
        # objects before, as in a whole run): pictured with a five-digit one
        if size != (80, 24) and len(str(oid)) != 5:
            pytest.skip("stage 1's SQL holds a six-digit oid: its line is laid out one cell "
                        "wider than in the picture")
        assert _scrub(await steady_screenshot(pilot, app), oid) == snapshot(
            extension_class=SVGImageSnapshotExtension)
