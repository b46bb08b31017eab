"""The console against a real server: tree, details, keys, filter, refresh, connection loss."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from textual.pilot import Pilot

from tui.app.app import PgpartsApp
from tui.app.format import human_bytes, human_rows, postgres_version, thousands
from tui.app.help_screen import HelpScreen
from tui.app.main_screen import MainScreen
from tui.app.registry import ConsoleCommand
from tui.app.tree_view import PartitionTree, compact_short_bound, short_bound
from tui.core.catalog import load_forest, load_indexes
from tui.core.config import Config, ConsoleConfig
from tui.core.connection import Target

from .layouts import build_awkward

SIZE = (140, 40)


@pytest.fixture
def awkward(db):
    build_awkward(db, payments=3000)
    return db


@pytest.fixture
def balances_db(db):
    from .test_plan_support import build_balances

    with db.connect() as conn:
        build_balances(conn, rows_per_week=40)
    return db


def make_app(db, **config) -> PgpartsApp:
    cfg = Config(console=ConsoleConfig(**config)) if config else Config()
    return PgpartsApp(Target(db.dsn, label="test"), cfg, read_only=False)


async def wait_until(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the console")
        await pilot.pause(0.02)
    await pilot.pause()


async def wait_loads(pilot: Pilot, app: PgpartsApp, count: int = 1) -> None:
    """Wait until `count` catalog loads have finished, the tree shows the result and the
    findings computed on it have arrived."""
    await wait_until(pilot, lambda: app.catalog_loads >= count and not app.catalog_loading
                     and (app.forest is None or app.findings_loaded))


def tree_of(app: PgpartsApp) -> PartitionTree:
    return app.screen.query_one(PartitionTree)


def widget_text(widget) -> str:
    """What a widget shows, as plain text lines."""
    return "\n".join(strip.text for strip in widget.render_lines(widget.region.reset_offset))


def details_text(app: PgpartsApp) -> str:
    return widget_text(app.screen.query_one("#details"))


def status_text(app: PgpartsApp) -> str:
    return widget_text(app.screen.query_one("#status"))


async def move_to(pilot: Pilot, app: PgpartsApp, oid: int) -> None:
    """Walk the cursor with the keyboard until it is on `oid` (it must be on screen)."""
    tree = tree_of(app)
    for _ in range(200):
        if tree.cursor_oid() == oid:
            await pilot.pause()
            return
        target = tree.node_for(oid)
        _ = tree.last_line  # lay out the lines so line numbers are current
        assert target is not None and target.line >= 0, "node not shown in the tree"
        await pilot.press("down" if tree.cursor_line < target.line else "up")
    raise AssertionError("could not reach the node")


async def test_opens_with_roots_lazily_and_details(awkward):
    with awkward.connect() as conn:
        forest = load_forest(conn)
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        tree = tree_of(app)
        shown = [n.data for n in tree.root.children]
        assert set(shown) == {r.oid for r in forest.roots}
        # children are added only when a node is expanded
        assert all(len(n.children) == 0 for n in tree.root.children)
        assert isinstance(app.screen, MainScreen)
        events = forest.find("events")
        await move_to(pilot, app, events.oid)
        text = details_text(app)
        assert "events" in text and 'RANGE (ts)' in text
        assert human_bytes(events.total_bytes) in text
        assert thousands(events.rows) in text
        label = str(tree.node_for(events.oid).label)
        assert human_bytes(events.total_bytes) in label and human_rows(events.rows) in label
        assert "3 direct · 5 leaves · has DEFAULT" in text
        # read after the tree was shown, in time for the health checks
        assert app.forest.indexes_loaded
        [index] = events.indexes
        assert "indexes (1)" in text and index.name in text
        assert "test" in app.sub_title and "READ-ONLY" not in app.sub_title


def test_rows_and_version_formats():
    assert [human_rows(0), human_rows(950), human_rows(12_345), human_rows(4_200_000)] == \
        ["0", "950", "12k", "4.2M"]
    # some partitions never analyzed: what the others hold is a lower bound
    assert human_rows(400_000, known=False) == "≥400k"
    assert human_rows(0, known=False) == "?"
    assert postgres_version(180006) == "18.6" and postgres_version(150013) == "15.13"


# a size then a row count: where the size column ends on a tree line
SIZE_COLUMN = re.compile(
    r"\d+(?:\.\d)? (?:B|KiB|MiB|GiB|TiB)(?= +(?:≥?[\d.]+[kMGT]?|\?)(?: |$)| *$)")


def assert_columns_align(tree: PartitionTree) -> None:
    """Bound and size columns start and end at one x on every line, whatever the depth, and no
    line is wider than the pane."""
    forest = tree.forest
    size_ends, bound_starts = set(), set()
    for y in range(tree.last_line + 1):
        line = tree.render_line(y).text
        node = forest.nodes[tree.get_node_at_line(y).data]
        match = SIZE_COLUMN.search(line)
        assert match is not None and match.group() == human_bytes(node.total_bytes), line
        size_ends.add(match.end())
        bound = compact_short_bound(node) if tree._columns.compact else short_bound(node)
        if bound and len(bound) < tree._columns.bound_width:
            bound_starts.add(line.index(bound))
    shown = "\n".join(tree.render_line(y).text for y in range(tree.last_line + 1))
    assert len(size_ends) == 1 and len(bound_starts) == 1, shown
    assert tree.virtual_size.width <= tree.scrollable_content_region.width


async def test_columns_align_at_every_depth_and_rows_show_lower_bounds(awkward):
    awkward.execute(
        "CREATE TABLE partial (k int) PARTITION BY LIST (k);"
        "CREATE TABLE partial_1 PARTITION OF partial FOR VALUES IN (1);"
        "INSERT INTO partial_1 SELECT 1 FROM generate_series(1, 1500);"
        "ANALYZE partial_1;"
        "CREATE TABLE partial_2 PARTITION OF partial FOR VALUES IN (2);"
        "CREATE TABLE partial_3 PARTITION OF partial FOR VALUES IN (3);"
        "CREATE TABLE blank (k int) PARTITION BY LIST (k);"
        "CREATE TABLE blank_1 PARTITION OF blank FOR VALUES IN (1);"
    )
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        forest, tree = app.forest, tree_of(app)
        # three levels under events, a partition in another schema, the odd names
        for name in ("events_2024_trade_h1", "archive.payment_2000_2019",
                     '"Odd Schema"."Trading ""Active"" Ω"', "partial_1"):
            await tree.reveal(forest.find(name).oid)
        await pilot.pause()
        assert tree.node_for(forest.find("events_2024_trade_h1").oid) is not None
        assert_columns_align(tree)

        partial, blank = forest.find("partial"), forest.find("blank")
        assert " ≥1.5k " in str(tree.node_for(partial.oid).label)
        assert " ? " in str(tree.node_for(blank.oid).label)
        await move_to(pilot, app, partial.oid)
        text = details_text(app)
        assert "at least 1,500" in text and "2 of 3 partitions never analyzed" in text
        await move_to(pilot, app, blank.oid)
        assert "no partition analyzed yet" in details_text(app)

        # collapsing and a narrower terminal move the columns; they still line up and fit
        tree.node_for(forest.find("events_2024").oid).collapse()
        await pilot.resize_terminal(100, 40)
        await pilot.pause()
        assert_columns_align(tree)


async def test_expand_navigate_and_leaf_details(awkward):
    with awkward.connect() as conn:
        forest = load_forest(conn)
    payment = forest.find("control.payment")
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        tree = tree_of(app)
        await move_to(pilot, app, payment.oid)
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(tree.node_for(payment.oid).children) == 4)
        # bound order: MINVALUE first, DEFAULT last, whatever the creation order
        order = [forest.nodes[c.data].name for c in tree.node_for(payment.oid).children]
        assert order == ["payment_2000_2019", "payment_2020_2021", "payment_2022",
                         "payment_default"]
        await pilot.press("down")
        old = forest.find("archive.payment_2000_2019")
        assert tree.cursor_oid() == old.oid
        label = str(tree.cursor_node.label)
        # the full bound, or its narrow form when the pane is short of room
        bound = "-∞→2020-01-01" if tree._columns.compact else "-∞ → 2020-01-01"
        assert label.startswith("archive.payment_") and bound in label
        assert "archive.payment_2000_2019" in details_text(app)
        text = details_text(app)
        assert "partition of control.payment" in text
        bound = "FOR VALUES FROM (MINVALUE) TO ('2020-01-01 00:00:00+00')"
        assert bound.replace(" ", "") in "".join(text.split())  # the pane may wrap it
        assert thousands(old.rows) in text and "estimate" in text
        assert human_bytes(old.total_bytes) in text
        assert "last autovacuum" in text
        # the primary key's partition index, valid
        assert "✓ payment_2000_2019_pkey" in text and "primary key, attached" in text
        await pilot.press("down", "down")
        assert "unlogged" in details_text(app)
        await pilot.press("shift+left")
        assert tree.cursor_oid() == payment.oid


async def test_filter_narrows_to_matches_and_their_ancestors(awkward):
    with awkward.connect() as conn:
        forest = load_forest(conn)
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        tree = tree_of(app)
        await pilot.press("slash")
        assert app.focused is app.screen.query_one("#filter")
        await pilot.press(*"trade")
        await pilot.pause()
        assert [n.data for n in tree.root.children] == [forest.find("events").oid]
        y2024 = tree.node_for(forest.find("events_2024").oid)
        assert y2024 is not None and y2024.is_expanded
        assert [c.data for c in y2024.children] == [forest.find("events_2024_trade").oid]
        assert "filter: 'trade'" in status_text(app)
        await pilot.press("enter")  # keep the filter, back to the tree
        await pilot.pause()
        assert app.focused is tree
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert {n.data for n in tree.root.children} == {r.oid for r in forest.roots}


async def test_escape_clears_a_kept_filter_and_no_match_says_so(awkward):
    with awkward.connect() as conn:
        forest = load_forest(conn)
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        tree = tree_of(app)
        await pilot.press("slash", *"trade", "enter")  # keep the filter, back to the tree
        await pilot.pause()
        assert app.focused is tree and [n.data for n in tree.root.children] == \
            [forest.find("events").oid]
        await pilot.press("escape")  # from the tree: the README says escape clears it
        await pilot.pause()
        assert {n.data for n in tree.root.children} == {r.oid for r in forest.roots}
        assert "filter:" not in status_text(app)
        assert not app.screen.query_one("#filter").display
        # a filter that matches nothing says so instead of two empty panes
        await pilot.press("slash", *"no-such-name", "enter")
        await pilot.pause()
        assert not tree.root.children
        assert "No table or partition name contains 'no-such-name'" in details_text(app)
        assert "escape clears the filter" in details_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert {n.data for n in tree.root.children} == {r.oid for r in forest.roots}


async def test_sort_cycles_bound_size_name(awkward):
    with awkward.connect() as conn:
        forest = load_forest(conn)
    payment = forest.find("control.payment")
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        tree = tree_of(app)
        await move_to(pilot, app, payment.oid)
        await pilot.press("enter")
        await pilot.pause()

        def order() -> list[int]:
            return [c.data for c in tree.node_for(payment.oid).children]

        await pilot.press("s")
        by_size = sorted(payment.children, key=lambda n: (-n.total_bytes, n.name))
        assert order() == [n.oid for n in by_size]
        await pilot.press("s")
        assert order() == [n.oid for n in sorted(payment.children, key=lambda n: n.name)]
        assert tree.cursor_oid() == payment.oid  # the cursor stays where it was
        assert "sort: name" in status_text(app)


async def test_refresh_keeps_expansion_and_cursor_and_shows_new_partition(awkward):
    with awkward.connect() as conn:
        forest = load_forest(conn)
    payment = forest.find("control.payment")
    p2022 = forest.find("control.payment_2022")
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        tree = tree_of(app)
        await move_to(pilot, app, payment.oid)
        await pilot.press("enter")
        await pilot.pause()
        await move_to(pilot, app, p2022.oid)
        awkward.execute("CREATE TABLE control.payment_2023 PARTITION OF control.payment"
                        " FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')")
        await pilot.press("r")
        await wait_loads(pilot, app, 2)
        names = [app.forest.nodes[c.data].name for c in tree.node_for(payment.oid).children]
        assert names == ["payment_2000_2019", "payment_2020_2021", "payment_2022",
                         "payment_2023", "payment_default"]
        assert tree.node_for(payment.oid).is_expanded
        assert tree.cursor_oid() == p2022.oid
        # unchanged groups are relabelled in place: the same TreeNode objects
        events_node = tree.node_for(forest.find("events").oid)
        await pilot.press("r")
        await wait_loads(pilot, app, 3)
        assert tree.node_for(forest.find("events").oid) is events_node


async def test_exact_row_count_from_the_palette_and_key(awkward):
    with awkward.connect() as conn:
        forest = load_forest(conn)
    events = forest.find("events")
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        await move_to(pilot, app, events.oid)
        await pilot.press("x")
        await wait_until(pilot, lambda: events.oid in app.exact_rows)
        assert app.exact_rows[events.oid][0] == 4000
        assert "4,000 exact" in details_text(app)
        # the tree row shows the count too (the estimate may differ: here it is cleared first)
        app.forest.nodes[events.oid].rows = 1
        tree_of(app).relabel_node(events.oid)
        assert " 4.0k " in str(tree_of(app).node_for(events.oid).label)
        # the same command through the palette, on another table
        payment = forest.find("control.payment")
        await move_to(pilot, app, payment.oid)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"count the rows")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: payment.oid in app.exact_rows)
        assert app.exact_rows[payment.oid][0] == awkward.query(
            "SELECT count(*) FROM control.payment")[0][0]


async def test_connection_drop_then_reconnect(awkward):
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        killed = awkward.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'pgparts console' AND datname = current_database()")
        assert killed == [(True,)]
        await pilot.press("r")
        await wait_loads(pilot, app, 2)
        assert app.connection_error and "connection lost" in app.connection_error
        assert "connection lost" in status_text(app) and "ctrl+r" in status_text(app)
        assert app.forest is not None  # the last good tree stays on screen
        awkward.execute("CREATE TABLE after_drop (a int) PARTITION BY LIST (a)")
        await pilot.press("ctrl+r")
        await wait_loads(pilot, app, 3)
        assert app.connection_error is None
        assert any(r.name == "after_drop" for r in app.forest.roots)
        assert "connection lost" not in status_text(app)


async def test_connection_lost_between_tree_and_indexes(awkward, monkeypatch):
    """The tree is on screen when the server ends the session before the indexes are read:
    the tree stays, the status says the checks failed, the details say the indexes were not
    read, and the next refresh reads everything on a new connection."""
    kills = []

    def killed_first(conn, forest):
        if not kills:  # the real server ends the session, once
            kills.append(awkward.query("SELECT pg_terminate_backend(%s)",
                                       (conn.info.backend_pid,)))
        return load_indexes(conn, forest)

    monkeypatch.setattr("tui.app.app.load_indexes", killed_first)
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        assert kills == [[(True,)]]
        assert app.forest is not None and not app.forest.indexes_loaded
        assert "reading the indexes failed" in status_text(app)
        events = app.forest.find("events")
        await move_to(pilot, app, events.oid)
        assert "indexes (not read)" in details_text(app)
        await pilot.press("r")
        await wait_loads(pilot, app, 2)
        assert app.forest.indexes_loaded and app.findings_error is None
        assert "indexes (1)" in details_text(app)
        assert "failed" not in status_text(app)


async def test_startup_failure_is_shown_and_quit_works(tmp_path):
    target = Target(f"host={tmp_path} port=5999 dbname=nowhere", label="nowhere")
    app = PgpartsApp(target, Config(), read_only=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        assert app.connection_error and "cannot connect" in app.connection_error
        assert "Cannot read the catalog" in details_text(app)
        await pilot.press("ctrl+r")  # retry: fails the same way, without a crash
        await wait_loads(pilot, app, 2)
        assert app.forest is None and app.connection_error
        await pilot.press("q")
        await pilot.pause()
    assert not app.ever_connected


async def test_help_lists_every_command_and_read_only_marks_writes(awkward):
    app = PgpartsApp(Target(awkward.dsn, read_only=True, label="ro"), Config(), read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        assert app.sub_title.endswith("READ-ONLY")
        assert "READ-ONLY" in status_text(app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        shown = "\n".join(widget_text(w) for w in app.screen.query("Static"))
        for cmd in app.console_commands:
            assert cmd.description.split("(")[0].strip() in shown, cmd.id
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        # a command that writes is refused in read-only mode, wherever it is triggered from
        write = ConsoleCommand("drop-it", "D", "drop", "Drop something", action="refresh",
                               writes=True)
        assert not app.command_enabled(write)
        assert app.command_enabled(replace(write, writes=False))


async def test_help_shows_the_keys_of_the_screen_it_was_opened_from(balances_db):
    from tui.app.explain_screen import ExplainScreen
    from tui.app.plan_screen import PlanScreen

    app = make_app(balances_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        shown = "\n".join(widget_text(w) for w in app.screen.query("Static"))
        # the tree's keys, read from its bindings
        assert re.search(r"^\s*shift\+←\s+to the parent", shown, re.M), shown
        assert re.search(r"^\s*enter\s+expand or collapse", shown, re.M), shown
        assert "clear the name filter" in shown
        await pilot.press("escape")
        await move_to(pilot, app, app.forest.find("account_balances").oid)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        shown = "\n".join(widget_text(w) for w in app.screen.query("Static"))
        for key, what in (("A", "apply the plan"), ("S", "copy the plan"),
                          ("W", "write the plan's .sql script"), ("k", "keep the original"),
                          ("o", "select the weeks older than [plans] older_than")):
            assert re.search(rf"^\s*{key}\s+{re.escape(what)}", shown, re.M), (key, shown)
        assert "Filter the tree" not in shown  # a tree command: not from this screen
        await pilot.press("escape", "escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExplainScreen))
        app.action_help()
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        shown = "\n".join(widget_text(w) for w in app.screen.query("Static"))
        assert re.search(r"^\s*f5\s+EXPLAIN the query", shown, re.M), shown
        assert re.search(r"^\s*f6\s+EXPLAIN ANALYZE", shown, re.M), shown


async def test_narrow_terminal_details_below_and_columns_by_priority(balances_db):
    app = make_app(balances_db)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_loads(pilot, app)
        tree = tree_of(app)
        parent = app.forest.find("account_balances")
        week = sorted(parent.children, key=lambda n: n.name)[0]
        await tree.reveal(week.oid)
        await pilot.pause()
        screen = app.screen
        assert screen.has_class("narrow")
        left, details = screen.query_one("#left"), screen.query_one("#details-pane")
        assert details.region.y >= left.region.bottom and details.region.width >= 76
        line = str(tree.node_for(week.oid).label)
        # the tree has the full width: name, bound, size, rows and bar all fit
        assert line.startswith("…_2024_01_07") and "2024-01-07 → 2024-01-14" in line
        assert human_bytes(week.total_bytes) in line and "█" in line
        assert tree.virtual_size.width <= tree.scrollable_content_region.width
        # narrower still: the bound takes its short form and the bar goes, the name stays whole
        await pilot.resize_terminal(60, 24)
        await pilot.pause()
        line = str(tree.node_for(week.oid).label)
        assert line.startswith("…_2024_01_07 ") and "2024-01-07 +1w" in line, line
        assert human_bytes(week.total_bytes) in line and "█" not in line
        assert tree.virtual_size.width <= tree.scrollable_content_region.width
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        status = status_text(app)
        assert "partitions" in status and not status.rstrip().endswith("…")
        footer = {f"{k.key_display} {k.description}" for k in screen.query("FooterKey")
                  if k.region.right <= 80}
        for key in ("? help", "q quit", "c consolidate", "e explain", "/ filter"):
            assert key in footer, footer
        # a notice does not cover the status line ('as of') or the footer
        app.notify("a notice")
        await pilot.pause(0.3)
        from textual.widgets._toast import ToastRack

        rack = screen.get_child_by_type(ToastRack)
        toasts = [w for w in rack.walk_children() if type(w).__name__ == "Toast"]
        assert toasts and all(t.region.bottom <= screen.query_one("#status").region.y
                              for t in toasts), [t.region for t in toasts]
        await pilot.press("d")  # details hidden: the tree has the height
        await pilot.pause()
        assert not details.display or details.region.height == 0
        await pilot.resize_terminal(160, 45)
        await pilot.pause()
        assert not screen.has_class("narrow")
        assert "→" in str(tree.node_for(week.oid).label)


async def test_auto_refresh_reloads_without_overlap(awkward):
    app = make_app(awkward, auto_refresh_seconds=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app, 3)
        assert "auto-refresh 0.2s" in status_text(app)
        await pilot.press("a")  # off
        seen = app.catalog_loads
        await pilot.pause(0.6)
        assert app.catalog_loads <= seen + 1  # at most the load already in flight


def test_console_entry_point_refuses_before_taking_the_terminal(tmp_path):
    """run_console connects before the app starts: no server is a CliError (exit 2), not a
    full-screen app saying it cannot read the catalog."""
    from tui.app import run as run_module
    from tui.context import CliError, Context

    ctx = Context(Config(), Target(f"host={tmp_path} port=5999"), False)
    with pytest.raises(CliError) as raised:
        run_module.run_console(ctx)
    assert raised.value.status == 2 and "cannot connect" in str(raised.value)


def test_compact_bound_forms():
    from datetime import datetime, timezone

    from tui.app.compact import compact_bound, span_text
    from tui.core.bounds import parse_bound

    def short(text: str) -> str:
        bound = parse_bound(text)
        return compact_bound(bound, bound.short())

    utc = timezone.utc
    assert short("FOR VALUES FROM ('2026-08-02 00:00:00+00') TO ('2026-08-09 00:00:00+00')") \
        == "2026-08-02 +1w"
    assert short("FOR VALUES FROM ('2026-08-01') TO ('2026-09-01')") == "2026-08-01 +1mo"
    assert short("FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')") == "2024-01-01 +1y"
    assert short("FOR VALUES FROM ('2026-08-02 06:00:00+00') TO ('2026-08-02 12:00:00+00')") \
        == "2026-08-02 06:00 +6h"
    # no whole span, or not a date: the full form without the spaces around the arrow
    assert short("FOR VALUES FROM (MINVALUE) TO ('2020-01-01 00:00:00+00')") == "-∞→2020-01-01"
    assert short("FOR VALUES FROM (0) TO (1000)") == "0→1000"
    assert short("FOR VALUES IN ('de', 'fr')") == "IN (de, fr)"
    assert span_text(datetime(2026, 1, 1, tzinfo=utc), datetime(2026, 1, 4, tzinfo=utc)) == "+3d"
    assert span_text(datetime(2026, 1, 1, tzinfo=utc), datetime(2026, 1, 1, tzinfo=utc)) is None


async def test_quitting_does_not_wait_for_a_count(awkward, monkeypatch):
    from tui.app import app as app_module

    def slow_count(conn, node, timeout_seconds):
        conn.execute("SELECT pg_sleep(30)")  # count(*) of a very big table
        return 0

    monkeypatch.setattr(app_module, "exact_row_count", slow_count)
    counting = ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND application_name = 'pgparts count' AND query LIKE '%pg_sleep%'")
    app = make_app(awkward)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        await pilot.press("x")
        await wait_until(pilot, lambda: awkward.query(counting) == [(1,)], timeout=10)
        started = time.monotonic()
        await pilot.press("q")
    assert time.monotonic() - started < 5
    # The cancel goes out from a thread of its own (quitting waits for nothing), so the server
    # may still show the count for a moment; a count that was not cancelled stays for 30 s.
    deadline = time.monotonic() + 5
    while awkward.query(counting) != [(0,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert awkward.query(counting) == [(0,)]


async def test_narrow_status_and_footer_fit_with_a_filter_sort_and_auto_refresh(balances_db):
    """At 80 columns a kept filter, a changed sort and auto-refresh still leave the load time
    on the status line and help and quit in the footer."""
    app = make_app(balances_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loads(pilot, app)
        screen = app.screen

        def footer() -> set[str]:
            return {f"{k.key_display} {k.description}" for k in screen.query("FooterKey")
                    if k.region.right <= 80 and k.region.width}

        assert "r refresh" in footer() and "/ filter" in footer()
        await pilot.press("slash", *"account", "enter")
        await wait_until(pilot, lambda: "filter: 'account'" in status_text(app))
        status = status_text(app).rstrip()
        assert status.startswith(" 1 table · ") and status.endswith(" UTC"), status
        shown = footer()
        for key in ("esc clear filter", "c consolidate", "e explain", "? help", "q quit"):
            assert key in shown, shown
        await pilot.press("s", "a")
        await wait_until(pilot, lambda: "by size" in status_text(app))
        status = status_text(app).rstrip()
        assert "auto" in status and status.endswith(" UTC"), status
        await pilot.press("escape")  # the filter goes, and so does the key that clears it
        await wait_until(pilot, lambda: "filter" not in status_text(app))
        shown = footer()
        assert "r refresh" in shown and "/ filter" in shown and "esc clear filter" not in shown
