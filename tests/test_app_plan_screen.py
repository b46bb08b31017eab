"""The generic plan screen with kinds other than consolidation, against real servers (both
versions): index_fix opened by `f` from a table's findings, analyze opened from the command
palette's entry and by a key given in [console.keymap]; both previewed, confirmed, run to the
end, and checked in the database. The scenario's names are hostile (quotes, semicolons,
non-ASCII letters)."""

from __future__ import annotations

import re

import pytest
from psycopg import sql
from textual.widgets import Static

from tui.app.app import PgpartsApp
from tui.app.confirm import ConfirmModal, TypeNameModal
from tui.app.help_screen import HelpScreen
from tui.app.main_screen import MainScreen
from tui.app.plan_progress import PlanProgressScreen
from tui.app.plan_screen import PlanScreen
from tui.core.config import Config, ConsoleConfig, PlansConfig
from tui.core.connection import Target

from .plans import scenarios
from .test_app import move_to, wait_loads, wait_until, widget_text
from .test_app_consolidate import content_text
from .test_app_consolidate import make_app as make_balances_app
from .test_plan_support import build_balances

SIZE = (140, 40)


def make_app(db, keymap: dict[str, str] | None = None) -> PgpartsApp:
    config = Config(console=ConsoleConfig(keymap=keymap or {}),
                    plans=PlansConfig(lock_timeout_seconds=1.0, lock_retries=2))
    return PgpartsApp(Target(db.dsn, label="test"), config, read_only=False)


async def select_scenario_table(pilot, app: PgpartsApp) -> None:
    await wait_loads(pilot, app)
    await move_to(pilot, app, app.forest.find(scenarios.spec()).oid)


async def open_and_plan(pilot, app: PgpartsApp, *keys: str) -> PlanScreen:
    await pilot.press(*keys)
    await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
    screen = app.screen
    await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning, timeout=30)
    return screen


async def apply_and_finish(pilot, app: PgpartsApp, apply_key: str = "A") -> PlanProgressScreen:
    await pilot.press(apply_key)
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
    await pilot.click("#confirm-yes")
    # nothing is dropped: no type-the-name dialog, straight to progress
    await wait_until(pilot, lambda: isinstance(app.screen, PlanProgressScreen))
    progress = app.screen
    await wait_until(pilot, lambda: progress.result is not None, timeout=60)
    return progress


async def test_f_previews_and_applies_the_index_fix_of_the_selected_findings(db):
    with db.connect() as conn:
        scenarios.index_problems(conn, db.dsn)
        assert {"index_missing", "index_invalid"} <= scenarios.codes(conn)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await select_scenario_table(pilot, app)
        # the details pane shows each finding with its remedy and the key that previews it
        await wait_until(pilot, lambda: "index_missing" in content_text(app.screen,
                                                                          "#details"))
        details = content_text(app.screen, "#details")
        assert "fix: pgparts fix" in details and "f: preview it" in details
        screen = await open_and_plan(pilot, app, "f")
        assert screen.kind.name == "index_fix"
        # the title names the kind as the command line does, not by its id
        assert screen.sub_title.startswith("index-fix · "), screen.sub_title
        assert "index_fix" not in screen.sub_title
        assert not screen.query("#plan-status")  # index_fix has no status table
        text = content_text(screen, "#plan-preview")
        assert "CREATE INDEX CONCURRENTLY" in text and "REINDEX INDEX CONCURRENTLY" in text
        assert "ATTACH PARTITION" in text
        assert "SHARE UPDATE EXCLUSIVE on" in text  # the locks, from the description
        head = content_text(screen, "#plan-head")
        assert "Fix index_invalid, index_missing" in head and "only: all (i)" in head
        # the choice option is a key: i cycles missing -> invalid -> all, replanning each time
        before = screen.loads
        await pilot.press("i")
        await wait_until(pilot, lambda: screen.loads > before and not screen.planning)
        assert "only: missing" in content_text(screen, "#plan-head")
        assert "REINDEX INDEX CONCURRENTLY" not in content_text(screen, "#plan-preview")
        before = screen.loads
        await pilot.press("i", "i")
        await wait_until(pilot, lambda: screen.loads > before and not screen.planning
                         and screen.values.get("only") is None)
        assert not screen.preview.destroys
        progress = await apply_and_finish(pilot, app)
        assert progress.result.ok, progress.result.error
        assert "Applied." in content_text(progress, "#progress-outcome")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
    with db.connect() as conn:
        assert not {"index_missing", "index_invalid"} & scenarios.codes(conn)


async def test_analyze_from_the_palette_entry_and_a_keymap_key(db):
    with db.connect() as conn:
        scenarios.never_analyzed(conn, db.dsn)
        assert "never_analyzed" in scenarios.codes(conn)
    # analyze has no key of its own; the keymap gives it one, and moves apply to F10
    app = make_app(db, keymap={"analyze": "z", "plan-apply": "f10"})
    async with app.run_test(size=SIZE) as pilot:
        await select_scenario_table(pilot, app)
        # the palette lists every registered kind, saying whether it applies here
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"analyze")
        await wait_until(pilot, lambda: "Analyze never-analyzed partitions" in "\n".join(
            widget_text(w) for w in app.screen.query("CommandList")), timeout=10)
        shown = "\n".join(widget_text(w) for w in app.screen.query("CommandList"))
        assert "key z" in shown and f"on {scenarios.spec()}" in shown
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        # the help shows the rebound keys
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_text = "\n".join(widget_text(w) for w in app.screen.query(Static))
        assert re.search(r"^\s*z\s+Analyze never-analyzed partitions", help_text, re.M), \
            help_text
        await pilot.press("escape")
        screen = await open_and_plan(pilot, app, "z")
        assert screen.kind.name == "analyze"
        text = content_text(screen, "#plan-preview")
        assert text.count("ANALYZE ") >= len(scenarios.LEAVES)
        assert "SHARE UPDATE EXCLUSIVE" in text
        # the screen's own help shows apply under its new key
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_text = "\n".join(widget_text(w) for w in app.screen.query(Static))
        assert re.search(r"^\s*f10\s+apply the plan", help_text, re.M), help_text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        # A is not apply any more; f10 is
        await pilot.press("A")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmModal | TypeNameModal)
        progress = await apply_and_finish(pilot, app, "f10")
        assert progress.result.ok, progress.result.error
    with db.connect() as conn:
        assert "never_analyzed" not in scenarios.codes(conn)


async def test_an_unknown_keymap_id_is_reported_and_the_rest_applies(db):
    with db.connect() as conn:
        scenarios.never_analyzed(conn, db.dsn)
    app = make_app(db, keymap={"no-such-action": "z", "journal": "J"})
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        assert any("no-such-action" in n.message for n in app._notifications)
        await pilot.press("J")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "JournalScreen")


@pytest.fixture
def balances(db):
    with db.connect() as conn:
        b = build_balances(conn, rows_per_week=120)
    return db, b


async def test_option_fields_replan_and_say_what_is_wrong(balances):
    """consolidate's int option `batch` is a field: a value replans with the default selection
    it gives; a value its parser refuses is said under the field's name, apply is refused."""
    db, b = balances
    app = make_balances_app(db, batch=5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        await move_to(pilot, app, app.forest.find("account_balances").oid)
        screen = await open_and_plan(pilot, app, "c")
        assert screen.selection == b.weeks
        field = screen.query_one("#plan-option-batch")
        assert field.placeholder == "5"  # the [plans] default
        before = screen.loads
        field.focus()
        await pilot.press("1")
        await wait_until(pilot, lambda: screen.loads > before and not screen.planning)
        assert screen.selection == b.weeks[:1]
        before = screen.loads
        await pilot.press("x")
        await wait_until(pilot, lambda: screen.loads > before and not screen.planning)
        # said under the fields, the field marked
        assert "batch: expected a whole number, got '1x'" in content_text(screen,
                                                                        "#plan-form-error")
        assert field.has_class("refused")
        assert "apply is disabled" in content_text(screen, "#plan-reason")


async def test_split_takes_the_partition_under_the_cursor_and_comma_separated_boundaries(db):
    """split's positional PARTITION is the tree node the screen was opened on (the plan is its
    parent's); --at, a repeat option, is one field taking several values separated by commas
    (a value may hold spaces)."""
    from tui.app.plan_screen import open_plan

    db.execute("""
        CREATE TABLE public.days (d timestamp PRIMARY KEY, v int) PARTITION BY RANGE (d);
        CREATE TABLE public.days_jan PARTITION OF public.days
          FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
    """)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        await move_to(pilot, app, app.forest.find("days").oid)
        # on the table: split acts on one of its partitions, and says so (it said "does not
        # apply to days", in the palette too)
        assert open_plan(app, "split") is None
        await pilot.pause()
        assert any(n.message == "split: split a range partition: select a partition of days"
                   for n in app._notifications), [n.message for n in app._notifications]
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"split a range")
        await wait_until(pilot, lambda: "from the palette · select a partition of days" in
                         "\n".join(widget_text(w) for w in app.screen.query("CommandList")),
                         timeout=10)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.screen.query("CommandList"))
        await pilot.press("enter")
        await move_to(pilot, app, app.forest.find("days_jan").oid)
        screen = open_plan(app, "split")
        assert screen is not None
        app.push_screen(screen)
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning, timeout=30)
        assert screen.table_name == "days"
        assert screen.query_one("#plan-option-partition").value == "days_jan"
        # no boundary yet: said, and apply is refused
        assert "at: give at least one value" in content_text(screen, "#plan-form-error")
        assert "apply is disabled" in content_text(screen, "#plan-reason")
        # the cursor waits in the empty field the request needs, not on the prefilled one
        assert screen.focused is screen.query_one("#plan-option-at")
        before = screen.loads
        screen.query_one("#plan-option-at").value = "2024-01-11 12:00, 2024-01-21"
        await wait_until(pilot, lambda: screen.loads > before and not screen.planning,
                         timeout=30)
        text = content_text(screen, "#plan-preview")
        assert "split days_jan" in text, text
        assert "days_jan_2" in text and "days_jan_3" in text, text
        assert "2024-01-11 12:00:00" in text, text
        assert "apply is disabled" not in content_text(screen, "#plan-reason")


async def test_progress_at_80_columns_shortens_qualified_names_too(db18):
    """At 80 columns the step column has about 20 cells: 'Primary key of legacy.payment_2019'
    read 'Primary key of lega' on every row of a migration's stage 7. The table's own name
    gives way with its schema as without it."""
    from textual.widgets import DataTable

    from tui.core.plans import Plan, Statement, Step

    steps = [Step(f"Primary key of legacy.payment_{year}", "the test's step",
                  [Statement(sql.SQL("SELECT 1"))]) for year in (2019, 2020)]
    plan = Plan(kind="migrate", title="stage 7", target="legacy.payment", target_oid=0,
                steps=steps)
    app = make_app(db18)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loads(pilot, app)
        progress = PlanProgressScreen(plan)
        app.push_screen(progress)
        await wait_until(pilot, lambda: progress.result is not None, timeout=30)
        assert progress.result.ok, progress.result.error
        table = progress.query_one("#progress-steps", DataTable)
        assert [str(table.get_cell(str(i), "title")) for i in (1, 2)] == [
            "Primary key of …_2019", "Primary key of …_2020"]
        await pilot.resize_terminal(160, 45)
        await pilot.pause()
        assert str(table.get_cell("1", "title")) == "Primary key of legacy.payment_2019"


def test_a_one_step_plan_says_one_step(db18):
    """The preview's figures read '1 steps' for a one-step plan (a migration's preflight)."""
    import io

    from rich.console import Console

    from tui.app.plan_preview import PlanPreview, render_plan
    from tui.core.plans import Plan, Statement, Step

    plan = Plan(kind="migrate", title="stage 1", target="t", target_oid=0,
                steps=[Step("check", "the test's step", [Statement(sql.SQL("SELECT 1"))])])
    with db18.connect() as conn:
        preview = PlanPreview.build(plan, conn)
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(render_plan(preview))
    text = console.export_text()
    assert "  1 step · ~0 rows" in text and "1 steps" not in text, text


async def test_progress_shows_the_step_that_failed(db18):
    """At 80x24 the steps table shows about five rows once the outcome is under it: a
    failure at step 12 was out of view (rows 1-5 shown, 'failed' below them)."""
    from textual.widgets import DataTable

    from tui.core.plans import Plan, Statement, Step

    steps = [Step(f"step {i}", "the test's step", [Statement(sql.SQL("SELECT 1"))])
             for i in range(1, 12)]
    steps.append(Step("step 12", "fails", [Statement(sql.SQL("SELECT 1 / 0"))]))
    plan = Plan(kind="migrate", title="twelve steps", target="t", target_oid=0, steps=steps)
    app = make_app(db18)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loads(pilot, app)
        progress = PlanProgressScreen(plan)
        app.push_screen(progress)
        await wait_until(pilot, lambda: progress.result is not None, timeout=30)
        assert not progress.result.ok
        table = progress.query_one("#progress-steps", DataTable)
        await wait_until(pilot, lambda: table.scroll_y > 0)
        await pilot.pause(0.2)
        shown = widget_text(table)
        assert "failed" in shown and "step 12" in shown, shown


def test_the_preview_indents_what_wraps(db18):
    """At 80 columns a note, a step's title and an item of 'split X into:' wrapped back to
    the pane's left edge (or under a second bullet), where the next one seemed to begin."""
    import io

    from rich.console import Console

    from tui.app.plan_preview import PlanPreview, render_plan
    from tui.core.plans import Plan, Statement, Step
    from tui.core.plans.engine.model import PlanFacts

    long = "a table with a long name " * 4
    plan = Plan(kind="split", title="split t", target="t", target_oid=0,
                steps=[Step(f"Build {long}", "why", [Statement(sql.SQL("SELECT 1"))])],
                facts=PlanFacts(changes=["split t into:", f"  {long}"],
                                notes=[f"a note about {long}"]))
    with db18.connect() as conn:
        preview = PlanPreview.build(plan, conn)
    console = Console(width=60, record=True, file=io.StringIO())
    console.print(render_plan(preview))
    lines = console.export_text().splitlines()
    note = next(i for i, ln in enumerate(lines) if "a note about" in ln)
    assert lines[note].startswith("  a note") and lines[note + 1].startswith("  "), lines
    title = next(i for i, ln in enumerate(lines) if ln.startswith(" 1. Build"))
    assert lines[title + 1].startswith("    "), lines
    item = next(i for i, ln in enumerate(lines) if "◦ a table" in ln)
    assert "•" not in lines[item], lines


async def test_progress_counts_steps_found_done_as_done_earlier(db):
    """Resumed, a plan whose first copy was done before: the header said 'rows copied 0 of
    ~1,010 0%' (or a rate from rows rolled back); now it counts the step found done as done
    earlier, and the rate is that of the rows this run copied."""
    from tui.core.plans import Plan, Statement, Step

    db.execute("CREATE TABLE public.t (i int)")
    copy = sql.SQL("INSERT INTO {} SELECT pg_catalog.generate_series(1, 10)").format(
        sql.Identifier("public", "t"))
    steps = [Step("copy the first part", "done by an earlier run",
                  [Statement(copy, "copy", est_rows=1000, est_bytes=40_000)],
                  done=lambda _c: True),
             Step("copy the second part", "the test's copy",
                  [Statement(copy, "copy", est_rows=10, est_bytes=400)])]
    plan = Plan(kind="migrate", title="stage 6", target="public.t", target_oid=0, steps=steps)
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loads(pilot, app)
        progress = PlanProgressScreen(plan)
        app.push_screen(progress)
        await wait_until(pilot, lambda: progress.result is not None, timeout=30)
        assert progress.result.ok, progress.result.error
        await pilot.pause()
        head = content_text(progress, "#progress-head")
        assert "rows copied 10 of ~1,010 (+~1,000 done earlier)" in head, head
        assert "100%" in head and "(39.5 KiB of ~39.5 KiB)" in head, head
        assert re.search(r"rate [\d,]+ rows/s", head), head
    assert db.query("SELECT count(*) FROM public.t") == [(10,)]
