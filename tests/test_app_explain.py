"""The EXPLAIN screen against a real PostgreSQL 18: type and run, the verdict and its colour, an
Append expanded on demand, history, a syntax error that moves the cursor, refusals, ANALYZE
behind a confirmation (both answers), cancelling a slow ANALYZE on the server, read-only mode."""

from __future__ import annotations

import time

import pytest
from rich.console import Console, Group
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static, TextArea, Tree
from textual.widgets.tree import TreeNode

from tui.app.app import PgpartsApp
from tui.app.confirm import ConfirmModal
from tui.app.explain_render import PARTIAL, PRUNED, pruning_state
from tui.app.explain_screen import ExplainScreen
from tui.app.main_screen import MainScreen
from tui.core.config import Config, ExplainConfig
from tui.core.connection import Target

from .test_app import move_to, wait_loads, wait_until

SIZE = (140, 40)

SMALL_SQL = """
CREATE TABLE m (k int NOT NULL, v int) PARTITION BY RANGE (k);
CREATE TABLE m_0 PARTITION OF m FOR VALUES FROM (0) TO (100);
CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM (100) TO (200);
CREATE TABLE m_2 PARTITION OF m FOR VALUES FROM (200) TO (300);
INSERT INTO m SELECT i, i FROM generate_series(0, 299) i;
CREATE SEQUENCE probe;
ANALYZE m;
"""


@pytest.fixture
def small(db):
    db.execute(SMALL_SQL)
    return db


def make_app(db, read_only: bool = False) -> PgpartsApp:
    return PgpartsApp(Target(db.dsn, read_only=read_only, label="test"), Config(),
                      read_only=read_only)


def plain(renderable, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def report_text(screen: ExplainScreen) -> str:
    return plain(screen.query_one("#explain-report", Static).content)


def status_text(screen: ExplainScreen) -> str:
    return plain(screen.query_one("#explain-status", Static).content)


def verdict_style(screen: ExplainScreen, index: int = 0) -> str:
    """The style the verdict of the index-th table is drawn in."""
    ref = screen.report.references[index]
    content = screen.query_one("#explain-report", Static).content
    assert isinstance(content, Group)
    tables = [r for r in content.renderables if isinstance(r, Group)]
    head = tables[index].renderables[0]
    assert isinstance(head, Text)
    start = head.plain.index(ref.verdict)
    styles = {str(s.style) for s in head.spans if s.start <= start < s.end}
    assert len(styles) == 1, styles
    return styles.pop()


def label_of(node: TreeNode) -> str:
    return node.label.plain


def walk(node: TreeNode):
    for child in node.children:
        yield child
        yield from walk(child)


async def open_explain(pilot: Pilot, app: PgpartsApp) -> ExplainScreen:
    await wait_loads(pilot, app)
    await pilot.press("e")
    await wait_until(pilot, lambda: isinstance(app.screen, ExplainScreen))
    return app.screen  # type: ignore[return-value]


async def run(pilot: Pilot, screen: ExplainScreen, text: str | None = None, key: str = "f5",
              timeout: float = 15, ok: bool = True) -> None:
    """Put `text` in the editor (if given), press `key` and wait for the run to end; with `ok`,
    it must have produced a report."""
    if text is not None:
        screen.query_one("#explain-editor", TextArea).text = text
    before = screen.runs
    await pilot.press(key)
    await wait_until(pilot, lambda: screen.runs > before, timeout=timeout)
    if ok:
        assert screen.report is not None, f"{screen.last.kind}: {screen.last.error}"


async def test_type_run_verdict_expand_append_and_history(scenario_db):
    app = make_app(scenario_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        balances = app.forest.find("account_balances")
        await move_to(pilot, app, balances.oid)
        screen = await open_explain(pilot, app)
        editor = screen.query_one("#explain-editor", TextArea)
        # starts from the selected table, constrained to its newest range partition with rows
        assert editor.text.startswith('SELECT *\nFROM "public"."account_balances"\nWHERE')
        assert '"timestamp" >= ' in editor.text
        assert app.screen.focused is editor

        # a query that prunes the weeks but not their HASH partitions (its end typed: a key
        # press is slow under Pilot)
        first = ("select * from account_balances where timestamp >= '2026-11-08' "
                 "and timestamp < '2026-11-15'")
        editor.text = first[:-12]
        editor.move_cursor(editor.document.end)
        await pilot.press(*first[-12:])
        assert editor.text == first
        await run(pilot, screen)
        ref = screen.report.references[0]
        total = balances.leaf_count
        assert ref.table.oid == balances.oid and total > 40
        assert ref.verdict == f"scans 4 of {total} partitions ({total - 4} pruned at plan time)"
        assert pruning_state(ref) == PARTIAL and verdict_style(screen) == "bold yellow"
        report = report_text(screen)
        assert "nothing pruned at HASH (account_address)" in report
        assert "No condition on the partition key HASH (account_address)" in report
        assert "…_2026_11_08_hash_0  2026-11-08 → 2026-11-15 / hash 0/4" in report
        assert "EXPLAIN · planning" in status_text(screen)

        # the plan: one collapsed line for the Append, expanded on demand
        plan = screen.query_one("#explain-plan", Tree)
        title = f"Append over 4 of {total} partitions of account_balances"
        append = next(n for n in walk(plan.root) if label_of(n).startswith(title))
        assert not append.is_expanded and not append.children
        assert "cost " in label_of(append) and "rows " in label_of(append)
        plan.focus()
        plan.move_cursor(append)
        await pilot.press("space")
        await wait_until(pilot, lambda: append.is_expanded and len(append.children) == 4)
        members = [label_of(c) for c in append.children]
        assert all("on …_2026_11_08_hash_" in m and "cost " in m for m in members), members
        assert not any("actual" in m for m in members)  # EXPLAIN without ANALYZE

        # time range and account: every level pruned, green
        second = ("SELECT * FROM account_balances WHERE timestamp >= '2026-11-08' "
                  "AND timestamp < '2026-11-15' AND account_address = 'rdx1qsp0000000001'")
        await run(pilot, screen, second)
        ref = screen.report.references[0]
        assert ref.verdict == f"scans 1 of {total} partitions ({total - 1} pruned at plan time)"
        assert pruning_state(ref) == PRUNED and verdict_style(screen) == "bold green"
        scan = next(n for n in walk(plan.root) if "…_2026_11_08_hash_" in label_of(n))
        assert f"1 of {total} partitions of account_balances" in label_of(scan)

        # history: ctrl+up walks back past the query shown, ctrl+down returns
        editor.focus()
        await pilot.press("ctrl+up")
        assert editor.text == first
        await pilot.press("ctrl+down")
        assert editor.text == second

        # escape goes back; the text is still there when the screen is opened again
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExplainScreen))
        assert app.screen.query_one("#explain-editor", TextArea).text == second


async def test_syntax_error_moves_the_cursor_and_refusals_send_nothing(small):
    app = make_app(small)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_explain(pilot, app)
        editor = screen.query_one("#explain-editor", TextArea)
        await run(pilot, screen, "SELECT *\nFROM m\nWHERE k = 1 AND AND v = 2", ok=False)
        assert screen.last.kind == "error" and screen.report is None
        assert 'syntax error at or near "AND" (line 3, column 17)' in report_text(screen)
        assert "PostgreSQL said" in status_text(screen)
        assert editor.cursor_location == (2, 16)
        assert app.screen.focused is editor

        # an error that is not a syntax error but has a position: the unknown column
        editor.move_cursor((0, 0))
        await run(pilot, screen, "SELECT nope\nFROM m", ok=False)
        assert 'column "nope" does not exist' in report_text(screen)
        assert editor.cursor_location == (0, 7)

        # refused before anything is sent (no run starts): the table is still there
        runs = screen.runs
        editor.text = "DROP TABLE m"
        await pilot.press("f5")
        await pilot.pause()
        assert screen.runs == runs
        assert screen.last.kind == "refused" and not screen.running
        assert "DROP cannot be explained" in report_text(screen)
        editor.text = "SELECT 1; SELECT 2"
        await pilot.press("f5")
        await pilot.pause()
        assert "one statement at a time" in report_text(screen)
        assert small.query("SELECT count(*) FROM m") == [(300,)]


async def test_analyze_asks_first_no_runs_nothing_yes_runs_and_rolls_back(small):
    def probe() -> tuple:
        return small.query("SELECT last_value, is_called FROM probe")[0]

    app = make_app(small)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_explain(pilot, app)
        editor = screen.query_one("#explain-editor", TextArea)
        editor.text = "SELECT nextval('probe'), v FROM m WHERE k < 150"
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        body = plain(app.screen.query_one("#confirm-body", Static).content)
        assert "EXPLAIN ANALYZE will run the query for real" in body
        assert "always rolled back" in body and "Statement timeout 30 s" in body
        # what a rollback cannot undo is said before anything runs
        assert "sequences advanced by nextval(), setval()" in body
        assert "dblink_exec" in body and "pg_reload_conf()" in body and "TO PROGRAM" in body
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.pause(0.2)
        assert screen.runs == 0 and not screen.running and screen.report is None
        assert probe() == (1, False)  # nextval never ran

        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        before = screen.runs
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.runs > before)
        assert screen.report is not None, screen.last.error
        assert screen.report.raw.analyze
        assert probe() == (150, True)  # it really ran (sequences are not rolled back)
        ref = screen.report.references[0]
        assert ref.verdict == "scans 2 of 3 partitions (1 pruned at plan time)"
        assert "never executed 0" in report_text(screen)
        assert status_text(screen).startswith("EXPLAIN ANALYZE · planning")
        plan = screen.query_one("#explain-plan", Tree)
        append = next(n for n in walk(plan.root)
                      if label_of(n).startswith("Append over 2 of 3 partitions of m"))
        assert "actual " in label_of(append) and "rows 150" in label_of(append)

        # a DELETE under ANALYZE is rolled back
        editor.text = "DELETE FROM m WHERE k < 250"
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        body = plain(app.screen.query_one("#confirm-body", Static).content)
        assert "will run this DELETE for real" in body
        assert "the rows it changes are put back" in body
        before = screen.runs
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.runs > before)
        assert screen.report is not None, screen.last.error
        assert screen.report.raw.analyze
        assert small.query("SELECT count(*) FROM m") == [(300,)]


async def test_cancel_a_slow_analyze_on_the_server(small):
    app = make_app(small)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_explain(pilot, app)
        screen.query_one("#explain-editor", TextArea).text = \
            "SELECT pg_sleep(30), v FROM m WHERE k = 1"
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        active = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                  "'pgparts explain' AND state = 'active' AND query LIKE '%pg_sleep%'")
        deadline = time.monotonic() + 10
        while small.query(active) != [(1,)]:
            assert time.monotonic() < deadline, "the EXPLAIN ANALYZE never started"
            await pilot.pause(0.05)
        assert screen.running and "escape cancels it" in status_text(screen)
        started = time.monotonic()
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.running, timeout=10)
        assert time.monotonic() - started < 5
        assert screen.last.kind == "cancelled"
        # the status line says "cancelled" once (the title), not "cancelled: cancelled: ..."
        assert status_text(screen).count("cancelled") == 1, status_text(screen)
        assert "cancelled" in report_text(screen) and isinstance(app.screen, ExplainScreen)
        # one 'cancelled', whatever the message already says
        assert "cancelled: cancelled" not in status_text(screen).lower()
        assert small.query(active) == [(0,)]
        # the screen (and its connection) is usable again
        await run(pilot, screen, "SELECT * FROM m WHERE k = 1")
        assert screen.report.references[0].verdict.startswith("scans 1 of 3")


async def test_read_only_allows_explain_and_the_server_refuses_writes(small):
    app = make_app(small, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_explain(pilot, app)
        assert "READ-ONLY" in status_text(screen)
        await run(pilot, screen, "SELECT * FROM m WHERE k >= 100")
        assert screen.report.references[0].verdict == \
            "scans 2 of 3 partitions (1 pruned at plan time)"
        screen.query_one("#explain-editor", TextArea).text = "DELETE FROM m WHERE k < 10"
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        body = plain(app.screen.query_one("#confirm-body", Static).content)
        assert "Read-only session: the transaction is READ ONLY" in body
        before = screen.runs
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.runs > before)
        assert "cannot execute DELETE in a read-only transaction" in report_text(screen)
        assert small.query("SELECT count(*) FROM m") == [(300,)]


async def test_analyze_runs_under_the_configured_statement_timeout(small):
    config = Config(explain=ExplainConfig(statement_timeout_seconds=0.5))
    app = PgpartsApp(Target(small.dsn, label="test"), config, read_only=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_explain(pilot, app)
        screen.query_one("#explain-editor", TextArea).text = \
            "SELECT pg_sleep(5), v FROM m WHERE k = 1"
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert "Statement timeout 0.5 s" in plain(app.screen.query_one("#confirm-body", Static)
                                                  .content)
        started = time.monotonic()
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.runs == 1, timeout=10)
        assert time.monotonic() - started < 4
        assert screen.last.kind == "timeout"
        assert "the EXPLAIN statement timeout is 0.5 s" in report_text(screen)
        assert "timed out" in status_text(screen)


async def test_analyze_confirmation_at_80x24_says_there_is_more_and_scrolls_to_it(small):
    """At 80x24 the confirmation's last paragraph (what a rollback cannot undo) is below the
    fold: the box says so and the arrow keys reach it while the focus stays on Cancel."""
    app = make_app(small)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_explain(pilot, app)
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        modal = app.screen
        scroll = modal.query_one(".confirm-scroll")
        box = modal.query_one(".confirm-box")
        await wait_until(pilot, lambda: scroll.max_scroll_y > 0)
        await wait_until(pilot, lambda: "more below" in str(box.border_subtitle))
        await pilot.press("pagedown", "down", "down", "down")
        await wait_until(pilot, lambda: scroll.scroll_y == scroll.max_scroll_y)
        await wait_until(pilot, lambda: not box.border_subtitle)
        assert app.focused is modal.query_one("#confirm-no")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen)
        assert screen.runs == 0


async def test_footer_keeps_f5_before_f6_whatever_has_the_focus(small):
    app = make_app(small)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_explain(pilot, app)

        def order() -> list[str]:
            keys = sorted(screen.query("FooterKey"), key=lambda k: k.region.x)
            return [k.key_display for k in keys if k.key_display in ("f5", "f6")]

        assert app.focused is screen.query_one("#explain-editor", TextArea)
        await pilot.pause()
        assert order() == ["f5", "f6"], order()
        await pilot.press("tab")
        await pilot.pause()
        assert app.focused is not screen.query_one("#explain-editor", TextArea)
        assert order() == ["f5", "f6"], order()
