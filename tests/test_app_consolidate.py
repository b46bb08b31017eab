"""The consolidation screens against a real PostgreSQL 18: preview, confirm (both answers), the
type-the-name dialog, progress to the end, cancel during a lock wait, read-only, the journal."""

from __future__ import annotations

import threading
import time

import pytest
from psycopg import sql
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Static

from tui.app.app import PgpartsApp
from tui.app.confirm import ConfirmModal, TypeNameModal
from tui.app.journal_screen import JournalScreen
from tui.app.main_screen import MainScreen
from tui.app.plan_progress import PlanProgressScreen
from tui.app.plan_screen import PlanScreen
from tui.core.config import Config, PlansConfig, state_dir
from tui.core.connection import Target
from tui.core.plans.consolidate import CONSOLIDATED, HASH_PARTITIONED, consolidation_status
from tui.core.plans.engine import journal

from .test_app import move_to, wait_loads, wait_until
from .test_plan_support import OLD_WEEKS, build_balances, user_tables, week_checksums

SIZE = (140, 40)


def make_app(db, read_only: bool = False, **plans) -> PgpartsApp:
    settings = {"lock_timeout_seconds": 0.5, "lock_retries": 2, "batch": 1, **plans}
    return PgpartsApp(Target(db.dsn, label="test"), Config(plans=PlansConfig(**settings)),
                      read_only=read_only)


@pytest.fixture
def balances(db):
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=120)
    return db, b


def plain(renderable, width: int = 250) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def content_text(screen, selector: str) -> str:
    return plain(screen.query_one(selector, Static).content)


async def open_consolidation(pilot: Pilot, app: PgpartsApp) -> PlanScreen:
    await wait_loads(pilot, app)
    parent = app.forest.find("account_balances")
    await move_to(pilot, app, parent.oid)
    await pilot.press("c")
    await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
    screen = app.screen
    await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning)
    return screen


async def press_and_replan(pilot: Pilot, screen: PlanScreen, *keys: str) -> None:
    """Press keys that change the selection, then wait for the rebuilt plan."""
    before = screen.loads
    await pilot.press(*keys)
    await wait_until(pilot, lambda: screen.loads > before and not screen.planning)


def status_rows(screen: PlanScreen) -> list[list[str]]:
    table = screen.query_one("#plan-status", DataTable)
    return [[str(c).strip() for c in table.get_row_at(i)] for i in range(table.row_count)]


def statuses(db) -> dict[str, str]:
    with db.connect() as conn:
        return {w.name: w.status for w in consolidation_status(conn, "account_balances").weeks}


async def run_to_end(pilot: Pilot, app: PgpartsApp, timeout: float = 30) -> PlanProgressScreen:
    await wait_until(pilot, lambda: isinstance(app.screen, PlanProgressScreen))
    progress = app.screen
    await wait_until(pilot, lambda: progress.result is not None, timeout=timeout)
    return progress


async def test_preview_shows_steps_sql_locks_and_selection(balances):
    db, b = balances
    app = make_app(db, batch=2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_consolidation(pilot, app)
        rows = status_rows(screen)
        assert [r[1] for r in rows] == [*b.weeks, b.current]
        assert {r[2] for r in rows} == {HASH_PARTITIONED}
        assert [(r[3], r[4]) for r in rows] == [("4", "120")] * 3 + [("4", "0")]
        assert "2024-01-07" in rows[0][6]
        # default selection: older than the threshold, oldest first, a batch of 2
        assert screen.selected_weeks == b.weeks[:2]
        assert [r[0] for r in rows] == ["✓", "✓", "", ""]
        text = content_text(screen, "#plan-preview")
        for week in b.weeks[:2]:
            assert f"Build {week}_consolidated" in text and f"Swap {week} for" in text
            assert f"Drop the detached {week}" in text
        assert b.weeks[2] not in text
        assert "ACCESS EXCLUSIVE on account_balances:" in text
        assert f"SHARE ROW EXCLUSIVE on {b.weeks[0]}" in text
        week = f'"public"."{b.weeks[0]}"'
        assert f"LOCK TABLE {week} IN SHARE ROW EXCLUSIVE MODE;" in text
        assert f'ALTER TABLE "public"."account_balances" DETACH PARTITION {week};' in text
        assert "INSERT INTO" in text and "estimated space saved" in text
        assert "verified before commit" in text
        head = content_text(screen, "#plan-head")
        assert "2 selected" in head and "dropped after verification" in head
        # S copies the reviewable script, the same one `consolidate --sql` prints
        await pilot.press("S")
        assert app.clipboard == screen.preview.script
        assert app.clipboard.startswith("-- pgparts plan: consolidate 2 partitions")
        # the terminal may drop the clipboard sequence (tmux): W writes it to a file instead
        scripts = state_dir() / "scripts"
        before = set(scripts.glob("*.sql")) if scripts.exists() else set()
        await pilot.press("W")
        await pilot.pause()
        saved = sorted(set(scripts.glob("pgparts-account_balances-*.sql")) - before)
        assert len(saved) == 1 and saved[0].read_text() == screen.preview.script
        assert any(str(saved[0]) in n.message for n in app._notifications)
        # space on the third week adds it; the plan is rebuilt with it
        await press_and_replan(pilot, screen, "down", "down", "space")
        assert screen.selected_weeks == b.weeks
        assert f"Build {b.weeks[2]}_consolidated" in content_text(screen, "#plan-preview")
        # and again removes it
        await press_and_replan(pilot, screen, "space")
        assert screen.selected_weeks == b.weeks[:2]
        # keep the originals: no drop step any more
        await press_and_replan(pilot, screen, "k")
        text = content_text(screen, "#plan-preview")
        assert "Drop the detached" not in text and "kept detached" in text
        assert not screen.preview.drops_originals
        # escape goes back to the tree
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))


async def test_planning_is_shown_while_the_plan_is_rebuilt(balances, monkeypatch):
    from tui.core.plans.registry import kind_named

    db, b = balances
    kind = type(kind_named("consolidate"))
    build = kind.build
    release = threading.Event()
    held = threading.Event()

    def held_build(self, *args, **kwargs):
        if held.is_set():  # the rebuild waits until the screen has been looked at
            release.wait(30)
        return build(self, *args, **kwargs)

    monkeypatch.setattr(kind, "build", held_build)
    app = make_app(db, batch=2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_consolidation(pilot, app)
        before = screen.loads
        table = screen.query_one("#plan-status", DataTable)
        table.move_cursor(row=2, animate=False)
        await pilot.pause()
        held.set()
        await pilot.press("space")  # a third week: the plan is rebuilt
        # until the new plan is there: 'planning…', never 'nothing to apply'
        await wait_until(pilot, lambda: screen.selected_weeks == b.weeks, timeout=10)
        assert screen.planning
        assert "planning…" in content_text(screen, "#plan-preview")
        reason = content_text(screen, "#plan-reason")
        assert "planning…" in reason and "nothing to apply" not in reason
        release.set()
        await wait_until(pilot, lambda: screen.loads > before and not screen.planning,
                         timeout=30)
        assert "planning…" not in content_text(screen, "#plan-preview")
        assert f"Build {b.weeks[2]}_consolidated" in content_text(screen, "#plan-preview")


async def test_leaving_or_quitting_does_not_wait_for_a_plan_being_built(balances, monkeypatch):
    from tui.core.plans.registry import kind_named

    db, b = balances
    kind = type(kind_named("consolidate"))
    build = kind.build

    def slow_build(self, conn, *args, **kwargs):
        conn.execute("SELECT pg_sleep(30)")  # a big catalog, a slow server
        return build(self, conn, *args, **kwargs)

    monkeypatch.setattr(kind, "build", slow_build)
    sleeping = ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND application_name = 'pgparts consolidate-preview' "
                "AND query LIKE '%pg_sleep%'")
    app = make_app(db)
    started = None
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        await move_to(pilot, app, app.forest.find("account_balances").oid)
        await pilot.press("c")
        await wait_until(pilot, lambda: db.query(sleeping) == [(1,)], timeout=10)
        # leaving the screen cancels the build on the server
        await pilot.press("escape")
        await wait_until(pilot, lambda: db.query(sleeping) == [(0,)], timeout=5)
        # and quitting while a build runs does not wait for it
        await pilot.press("c")
        await wait_until(pilot, lambda: db.query(sleeping) == [(1,)], timeout=10)
        started = time.monotonic()
        await pilot.press("q")
    assert time.monotonic() - started < 5
    assert db.query(sleeping) == [(0,)]


async def test_consolidation_at_80_columns_uses_the_short_forms(balances):
    db, b = balances
    app = make_app(db, batch=2)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_consolidation(pilot, app)
        assert screen.narrow
        table = screen.query_one("#plan-status", DataTable)
        rows = status_rows(screen)
        assert rows[0][1:3] == ["…" + b.weeks[0][len("account_balances"):], "hash ×4"]
        assert rows[0][5] == "2024-01-07 +1w"  # no note column: no row has a note
        # every column is on screen: no horizontal scrolling
        assert table.virtual_size.width <= table.scrollable_content_region.width
        keys = {k.description for k in screen.query("FooterKey") if k.region.right <= 80}
        assert {"select", "apply", "back", "help", "quit"} <= keys, keys


async def test_the_selected_week_is_preselected(balances):
    db, b = balances
    app = make_app(db, batch=5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        forest = app.forest
        parent = forest.find("account_balances")
        week = forest.find(b.weeks[1])
        tree = app.screen.query_one("#tree")
        await move_to(pilot, app, parent.oid)
        await pilot.press("enter")
        await wait_until(pilot, lambda: tree.node_for(week.oid) is not None)
        await move_to(pilot, app, week.oid)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning)
        assert screen.table_name == "account_balances"
        assert screen.selected_weeks == [b.weeks[1]]
        # o: back to the default selection (all three old weeks: batch 5)
        await press_and_replan(pilot, screen, "o")
        assert screen.selected_weeks == b.weeks


async def test_confirm_no_changes_nothing_then_yes_applies(balances):
    db, b = balances
    before = statuses(db)
    with db.connect() as conn:
        checksums = week_checksums(conn, b, OLD_WEEKS)
    entries = len(journal.read())
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_consolidation(pilot, app)
        assert screen.selected_weeks == b.weeks[:1]
        await pilot.press("A")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        modal = app.screen
        body = content_text(modal, "#confirm-body")
        assert (f"{b.weeks[0]}: replace 4 partitions holding 120 rows" in body
                and "of week 2024-01-07 with one partition" in body
                and f"{b.weeks[0]}_consolidated" in body)
        assert "dropped once every one of their rows is verified" in body
        assert modal.focused is modal.query_one("#confirm-no")  # the safe answer
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.pause(0.3)
        assert not any(isinstance(s, PlanProgressScreen) for s in app.screen_stack)
        assert statuses(db) == before
        assert len(journal.read()) == entries
        # keep the originals: yes runs it without asking for the name
        await press_and_replan(pilot, screen, "k")
        await pilot.press("A")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert "kept, detached" in content_text(app.screen, "#confirm-body")
        await pilot.press("y")
        progress = await run_to_end(pilot, app)
        assert progress.result.ok, (progress.result.error, progress.result.state)
        # keep_detached: no drop step, so nothing after the swap touches the original
        assert not any("Drop" in step.title for step in progress.plan.steps)
        n = len(progress.plan.steps)
        assert progress.step_status == ["done"] * n
        steps = progress.query_one("#progress-steps", DataTable)
        assert [str(steps.get_cell(str(i), "status")) for i in range(1, n + 1)] == ["done"] * n
        assert str(steps.get_cell("1", "rows")) == "120"
        head = content_text(progress, "#progress-head")
        assert "done after" in head and "rows copied 120 of ~120" in head
        outcome = content_text(progress, "#progress-outcome")
        assert "Applied." in outcome and "Longest ACCESS EXCLUSIVE hold" in outcome
        assert "checksum" in outcome
        # back: the status shows the new partition, the tree too
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen and not screen.planning
                         and not app.catalog_loading
                         and any(r[2] == CONSOLIDATED for r in status_rows(screen)))
        rows = {r[1]: r[2] for r in status_rows(screen)}
        assert rows[f"{b.weeks[0]}_consolidated"] == CONSOLIDATED
        assert rows[b.weeks[0]] == "DETACHED"  # kept, detached
        assert any(n.name == f"{b.weeks[0]}_consolidated" for n in app.forest.nodes.values())
        # the next batch is proposed
        await wait_until(pilot, lambda: screen.selected_weeks == [b.weeks[1]]
                         and not screen.planning)
    after = statuses(db)
    assert after[f"{b.weeks[0]}_consolidated"] == CONSOLIDATED
    assert after[b.weeks[1]] == HASH_PARTITIONED
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS) == checksums
    entry = journal.read(limit=1)[0]
    assert entry["outcome"] == "ok" and entry["target"] == "account_balances"


async def test_dropping_originals_asks_for_the_table_name(balances):
    db, b = balances
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_consolidation(pilot, app)
        assert screen.preview.drops_originals
        await pilot.press("A")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, TypeNameModal))
        modal = app.screen
        yes = modal.query_one("#typename-yes", Button)
        assert yes.disabled
        await pilot.press("enter")  # nothing typed: said in the dialog
        await pilot.pause()
        assert app.screen is modal
        assert "nothing was typed" in content_text(modal, "#typename-error")
        await pilot.press(*"account_bal")
        assert modal.query_one("#typename-input", Input).value == "account_bal"
        assert yes.disabled
        await pilot.press("enter")  # a wrong name does not confirm
        await pilot.pause()
        assert app.screen is modal
        assert "'account_bal' is not the table's name" in content_text(modal, "#typename-error")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.pause(0.2)
        assert statuses(db)[b.weeks[0]] == HASH_PARTITIONED
        # again, with the right name
        await pilot.press("A")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, TypeNameModal))
        modal = app.screen
        await pilot.press(*"account_balances")
        assert not modal.query_one("#typename-yes", Button).disabled
        await pilot.press("enter")
        progress = await run_to_end(pilot, app)
        assert progress.result.ok, (progress.result.error, progress.result.state)
        assert any("Drop" in step.title for step in progress.plan.steps)
        assert progress.step_status == ["done"] * len(progress.plan.steps)
        # finished: no cancel key in the footer, no leftover notice from the name dialog
        await pilot.pause()
        keys = {k.description for k in progress.query("FooterKey")}
        assert "cancel" not in keys and "back" in keys
        assert not any("type account_balances" in n.message for n in app._notifications)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        # the journal view shows the run
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("j")
        await wait_until(pilot, lambda: isinstance(app.screen, JournalScreen)
                         and app.screen.loaded)
        journal_screen = app.screen
        first = journal_screen.entries[0]
        assert first["outcome"] == "ok" and first["target"] == "account_balances"
        table = journal_screen.query_one("#journal-table", DataTable)
        assert str(table.get_row_at(0)[1]) == "ok"
        details = content_text(journal_screen, "#journal-details")
        assert (f"{b.weeks[0]}: replace 4 partitions holding 120 rows" in details
                and f"with one partition {b.weeks[0]}_consolidated" in details)
        assert f"drop table {b.weeks[0]}" in details
        assert "held the parent" in details
    assert b.weeks[0] not in user_tables(db.connect(), "public")


async def test_cancel_while_waiting_for_a_lock_cancels_on_the_server(balances):
    db, b = balances
    with db.connect() as conn:
        checksums = week_checksums(conn, b, OLD_WEEKS)
    # a long lock_timeout: only a cancel on the server ends the wait quickly
    app = make_app(db, lock_timeout_seconds=30, keep_detached=True)
    blocker = db.connect(autocommit=False)
    try:
        # a writer's transaction still open on the week: the build's LOCK must wait for it
        blocker.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(
            b.week_ident(b.weeks[0])))
        async with app.run_test(size=SIZE) as pilot:
            await open_consolidation(pilot, app)
            await pilot.press("A")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
            await pilot.press("y")
            await wait_until(pilot, lambda: isinstance(app.screen, PlanProgressScreen))
            progress = app.screen
            await wait_until(pilot, lambda: progress._waiting_since is not None, timeout=15)
            assert progress.step_status[0] == "waiting for lock"
            await pilot.pause(0.6)
            assert "waiting for a lock for" in content_text(progress, "#progress-head")
            # escape and q do not leave a running plan
            await pilot.press("escape")
            assert app.screen is progress
            cancelled_at = time.monotonic()
            await pilot.press("c")
            await wait_until(pilot, lambda: progress.result is not None, timeout=15)
            assert time.monotonic() - cancelled_at < 10
            assert progress.result.outcome == "cancelled"
            assert progress.step_status[0] == "cancelled"
            outcome = content_text(progress, "#progress-outcome")
            assert "Cancelled:" in outcome and "Database state:" in outcome
            assert f"{b.weeks[0]}: unchanged" in outcome and "What to do next" in outcome
            # said once, and in the console's words (no command to run here)
            assert outcome.count("nothing half-done is committed") == 1, outcome
            assert "command" not in outcome and "apply the same selection again" in outcome
            # nothing of the plan is still waiting on the server
            assert db.query(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%plan%'"
                " AND wait_event_type = 'Lock'") == [(0,)]
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
    finally:
        blocker.rollback()
        blocker.close()
    with db.connect() as conn:
        assert week_checksums(conn, b, OLD_WEEKS) == checksums
        assert not any(t.endswith("_consolidated") for t in user_tables(conn, "public"))
    assert statuses(db)[b.weeks[0]] == HASH_PARTITIONED


async def test_read_only_shows_apply_disabled_with_the_reason(balances):
    db, b = balances
    app = make_app(db, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_consolidation(pilot, app)
        assert screen.preview is not None  # the preview works without writing
        button = screen.query_one("#plan-apply", Button)
        assert button.disabled
        assert "read-only" in content_text(screen, "#plan-reason")
        assert screen.check_action("apply", ()) is None  # shown greyed out in the footer
        await pilot.press("A")
        await pilot.pause(0.2)
        assert app.screen is screen
        await pilot.click("#plan-apply")
        await pilot.pause(0.2)
        assert app.screen is screen
    assert statuses(db)[b.weeks[0]] == HASH_PARTITIONED


async def test_a_rerun_of_done_steps_shows_them_already_done(balances):
    from tui.core.plans import PlanRunner
    from tui.core.plans.consolidate import build_consolidation_plan

    db, _b = balances
    with db.connect() as conn:
        plan = build_consolidation_plan(conn, "account_balances",
                                        config=PlansConfig(batch=1))
    assert PlanRunner(db.target, plan).run().ok
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        app.push_screen(PlanProgressScreen(plan))
        progress = await run_to_end(pilot, app)
        assert progress.result.ok and not progress.result.done_steps
        table = progress.query_one("#progress-steps", DataTable)
        cells = [str(table.get_cell(str(i), "status")) for i in range(1, len(plan.steps) + 1)]
        assert cells == ["already done"] * len(plan.steps)
        assert content_text(progress, "#progress-outcome").startswith(
            "Nothing to do: every step was already done.")


async def test_progress_at_80_columns_names_the_week_of_each_step(balances):
    from tui.core.plans.consolidate import build_consolidation_plan

    db, b = balances
    with db.connect() as conn:
        plan = build_consolidation_plan(conn, "account_balances", config=PlansConfig(batch=1))
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loads(pilot, app)
        app.push_screen(PlanProgressScreen(plan))
        progress = await run_to_end(pilot, app)
        assert progress.result.ok
        table = progress.query_one("#progress-steps", DataTable)
        suffix = b.weeks[0][len("account_balances"):]
        title = str(table.get_cell("1", "title"))
        assert title == f"Build …{suffix}_consolidated", title
        # the rows line keeps its bytes on the same line: a 10-cell bar leaves room for
        # copies of millions of rows (a 20-cell one wrapped at 37 MiB)
        head = plain(progress.query_one("#progress-head", Static).content, width=78)
        rows_line = next(line for line in head.splitlines() if line.startswith("rows copied"))
        assert rows_line.rstrip().endswith("B)"), head
        assert sum(rows_line.count(c) for c in "█▉▊▋▌▍▎▏") <= 10, rows_line
        await pilot.resize_terminal(160, 45)
        await pilot.pause()
        assert str(table.get_cell("1", "title")) == f"Build {b.weeks[0]}_consolidated"


async def test_a_table_without_sub_partitions_says_there_is_nothing_to_consolidate(db):
    db.execute("""
        CREATE TABLE public.plainweeks (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
        CREATE TABLE public.plainweeks_1 PARTITION OF public.plainweeks
          FOR VALUES FROM ('2024-01-07') TO ('2024-01-14');
        CREATE TABLE public.plainweeks_2 PARTITION OF public.plainweeks
          FOR VALUES FROM ('2024-01-14') TO ('2024-01-21');
        CREATE TABLE public.oneweek (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
        CREATE TABLE public.oneweek_1 PARTITION OF public.oneweek
          FOR VALUES FROM ('2024-01-07') TO ('2024-01-14');
    """)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        for name, said in (("plainweeks", "none of the 2 partitions of plainweeks is "
                                          "sub-partitioned"),
                           ("oneweek", "the one partition of oneweek is not sub-partitioned")):
            await move_to(pilot, app, app.forest.find(name).oid)
            await pilot.press("c")
            await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
            screen = app.screen
            await wait_until(pilot, lambda s=screen: s.loads >= 1 and not s.planning)
            text = content_text(screen, "#plan-preview")
            assert text.startswith("Nothing to consolidate: ") and said in text, text
            assert "Select HASH_PARTITIONED" not in text
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))


async def test_consolidated_weeks_at_80_columns_need_no_horizontal_scrolling(balances):
    from tui.core.plans import PlanRunner
    from tui.core.plans.consolidate import build_consolidation_plan

    db, b = balances
    with db.connect() as conn:
        plan = build_consolidation_plan(conn, "account_balances", config=PlansConfig(batch=1))
    assert PlanRunner(db.target, plan).run().ok
    app = make_app(db, batch=2)
    async with app.run_test(size=(80, 12)) as pilot:  # low: the table scrolls vertically
        screen = await open_consolidation(pilot, app)
        table = screen.query_one("#plan-status", DataTable)
        rows = status_rows(screen)
        assert rows[0][1:3] == [f"…{b.weeks[0][len('account_balances'):]}_consolidated",
                                "consolidated"]
        assert table.virtual_size.width <= table.scrollable_content_region.width


async def test_detached_originals_bring_back_the_note_column(balances):
    from tui.core.plans import PlanRunner
    from tui.core.plans.consolidate import build_consolidation_plan

    db, b = balances
    with db.connect() as conn:
        plan = build_consolidation_plan(conn, "account_balances",
                                        config=PlansConfig(batch=1, keep_detached=True))
    assert PlanRunner(db.target, plan).run().ok
    app = make_app(db, batch=1, keep_detached=True)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_consolidation(pilot, app)
        table = screen.query_one("#plan-status", DataTable)
        assert "note" in {c.key.value for c in table.columns.values()}
        detached = [r for r in status_rows(screen) if r[2] == "detached"]
        assert detached and detached[0][-1] == f"original of {b.weeks[0]}_consolidated", \
            status_rows(screen)
