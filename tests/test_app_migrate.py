"""The console's migration wizard against a real PostgreSQL 18 (the stages themselves run on both
versions in test_migrate_stages.py): open it with its key, pick the small legacy table, accept
the proposals, run stages 1-6 one by one and see where it stands; close the console, open it
again and continue at the next stage; abort (the original back as it was); a collision group
over 60 stops it with nothing changed."""

from __future__ import annotations

import io
import re
import threading

import psycopg
import pytest
from psycopg import sql
from rich.console import Console
from textual.widgets import Checkbox, DataTable, Input, Select, Static, TextArea

from tui.app.app import PgpartsApp
from tui.app.confirm import ConfirmModal, TypeNameModal
from tui.app.migrate.form import MigrateFormScreen
from tui.app.migrate.layout_edit import LayoutEditScreen
from tui.app.migrate.picker import MigratePickerScreen
from tui.app.migrate.wizard import MigrateWizardScreen
from tui.app.plan_preview import PlanPreview
from tui.app.plan_progress import PlanProgressScreen
from tui.core.config import Config, PlansConfig
from tui.core.connection import Target
from tui.core.migrate.migration import prepare
from tui.core.migrate.spec import read_recorded
from tui.core.plans import Plan, RunResult, Statement, Step
from tui.core.plans.engine.model import Destroyed, PlanFacts

from .migrate_support import PLAIN
from .test_app import wait_loads, wait_until, widget_text
from .test_migrate_stages import _build, _choices, _run_to, catalog_dump

n = PLAIN
SIZE = (80, 24)


def make_app(db) -> PgpartsApp:
    config = Config(plans=PlansConfig(lock_timeout_seconds=1.0, lock_retries=2))
    return PgpartsApp(Target(db.dsn, label="test"), config, read_only=False)


def text_of(screen, selector: str) -> str:
    """Everything a Static holds, also what is scrolled out of view."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(screen.query_one(selector, Static).content)
    return console.export_text()


async def open_picker(pilot, app: PgpartsApp) -> MigratePickerScreen:
    await wait_loads(pilot, app)
    await pilot.press("w")
    await wait_until(pilot, lambda: isinstance(app.screen, MigratePickerScreen))
    picker = app.screen
    await wait_until(pilot, lambda: picker.loaded)
    return picker


async def pick(pilot, picker: MigratePickerScreen, name: str) -> None:
    table = picker.query_one("#migrate-tables", DataTable)
    row = next(i for i, t in enumerate(picker.tables) if f"{t.schema}.{t.name}" == name)
    table.move_cursor(row=row)
    await pilot.pause()
    await pilot.press("enter")


async def form_of(pilot, app: PgpartsApp) -> MigrateFormScreen:
    await wait_until(pilot, lambda: isinstance(app.screen, MigrateFormScreen))
    form = app.screen
    await wait_until(pilot, lambda: form.loads >= 1 and not form.busy, timeout=30)
    return form


async def wizard_loaded(pilot, app: PgpartsApp, loads: int = 1) -> MigrateWizardScreen:
    await wait_until(pilot, lambda: isinstance(app.screen, MigrateWizardScreen), timeout=30)
    wizard = app.screen
    await wait_until(pilot, lambda: wizard.loads >= loads and not wizard.planning, timeout=30)
    return wizard


async def run_stage(pilot, app: PgpartsApp, wizard: MigrateWizardScreen, number: int) -> str:
    """Run the stage shown; what its progress screen showed at the end (head and outcome)."""
    assert wizard.state.stage is not None and wizard.state.stage.number == number
    loads = wizard.loads
    await pilot.press("A")
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
    await pilot.click("#confirm-yes")
    await wait_until(pilot, lambda: isinstance(app.screen, PlanProgressScreen))
    progress = app.screen
    await wait_until(pilot, lambda: progress.result is not None, timeout=60)
    assert progress.result.ok, progress.result.error
    await pilot.pause()
    shown = text_of(progress, "#progress-head") + text_of(progress, "#progress-outcome")
    await pilot.press("escape")
    await wizard_loaded(pilot, app, loads + 1)
    return shown


MERGED = """
column = "pay_ts"

[[partitions]]
name = "payment_2019_2020"
from = "2019-01-01 00:00:00+00:00"
to = "2021-01-01 00:00:00+00:00"

[[partitions]]
name = "payment_later"
from = "2021-01-01 00:00:00+00:00"
to = "2027-01-01 00:00:00+00:00"

[[partitions]]
name = "payment_next"
from = "2027-01-01 00:00:00+00:00"
to = "2100-01-01 00:00:00+00:00"

[[partitions]]
name = "payment_default"
default = true
"""


async def edit_layout(pilot, app: PgpartsApp, wizard: MigrateWizardScreen) -> None:
    """L at stage 4: a layout with overlapping partitions is refused in the dialog, in one
    line; two years merged into one partition, the next six years in another, are taken."""
    await pilot.press("L")
    await wait_until(pilot, lambda: isinstance(app.screen, LayoutEditScreen))
    editor = app.screen
    area = editor.query_one("#layout-text", TextArea)
    assert 'name = "payment_2019"' in area.text and 'column = "pay_ts"' in area.text
    area.load_text(MERGED.replace('from = "2021-01-01', 'from = "2020-06-01'))
    await pilot.press("ctrl+n")
    await wait_until(pilot, lambda: editor.checks >= 1)
    error = text_of(editor, "#layout-error").strip()
    assert error == "the layout: payment_2019_2020 and payment_later overlap", error
    area.load_text(MERGED)
    loads = wizard.loads
    await pilot.press("ctrl+n")
    await wizard_loaded(pilot, app, loads + 1)
    body = text_of(wizard, "#wiz-body")
    assert "The layout changed: 4 partitions" in body and "warning" not in body
    assert wizard.state.stage.number == 4
    # counted now: after stage 2 deleted the duplicates (327 - 9)
    assert re.search(r"payment_2019_2020 +2019-01-01 → 2021-01-01 +318", body), body


@pytest.fixture
def legacy(db18):
    _build(db18, n)
    return db18


async def test_wizard_runs_stages_1_to_6_resumes_after_closing_and_aborts(legacy):
    dump = catalog_dump(legacy, n.schema, n.table)
    app = make_app(legacy)
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_picker(pilot, app)
        shown = widget_text(picker.query_one("#migrate-tables"))
        # plain tables only, with sizes and estimates
        assert "legacy.payment " in shown and "legacy.pdm" in shown and "KiB" in shown
        await pick(pilot, picker, "legacy.payment")
        form = await form_of(pilot, app)
        # the proposals: the natural key (partition column first), the tie-break
        assert form.query_one("#form-key", Input).value == "pay_ts, pdm_id"
        assert form.query_one("#form-tiebreak", Input).value == "tracer"
        assert "holds pay_id" in text_of(form, "#form-hint-key")
        # a key without the partition column is refused in the form, in one line
        form.query_one("#form-key", Input).value = "pdm_id"
        await pilot.press("ctrl+n")
        await pilot.pause()
        error = text_of(form, "#form-error-key").strip()
        assert error == "the new key must hold the partition column pay_ts"
        assert isinstance(app.screen, MigrateFormScreen)
        form.query_one("#form-key", Input).value = "pay_ts, pdm_id"
        # a session writing to the table: stage 1 says so and offers to wait for it
        writer = psycopg.connect(legacy.dsn)
        writer.execute("UPDATE legacy.payment SET amount = amount WHERE pay_id < 0")
        await pilot.press("ctrl+n")
        wizard = await wizard_loaded(pilot, app)
        assert "1 writing" in text_of(wizard, "#wiz-body")
        assert "W: wait up to 60 s" in text_of(wizard, "#wiz-actions")
        threading.Timer(0.3, writer.close).start()
        await pilot.press("W")
        await wait_until(pilot, lambda: wizard.loads >= 2 and not wizard.planning
                         and not wizard.busy, timeout=30)
        assert wizard.state.report.writers == 0
        body = text_of(wizard, "#wiz-body")
        assert "Stage 1 of 9: preflight" in body and "What it found" in body
        assert "referenced by" in body and "rows per year" in body
        assert "sessions writing to the table" in body  # the plan's SQL, as previewed
        assert "stages ▶1 2 3" in text_of(wizard, "#wiz-head")
        for number in range(1, 7):
            progress = await run_stage(pilot, app, wizard, number)
            # escape goes back to the wizard, and says so
            assert "escape: back to the wizard" in progress, progress
            if number == 1:  # the checks only read, yet they are done: ticked, not shown again
                assert "stages ✓1 ▶2 3" in text_of(wizard, "#wiz-head")
                # nothing to copy: no "rows copied 0 of ~0"; the lock waits are still said
                assert "rows copied" not in progress and "lock waits so far" in progress
            if number == 2:  # what was verified wraps under itself at 80 columns
                pane = widget_text(wizard.query_one("#wiz-body")).splitlines()
                first = next((i for i, line in enumerate(pane) if "  ✓ " in line), None)
                assert first is not None, pane
                assert pane[first + 1].startswith("    "), pane[first:first + 3]
            if number == 6:
                assert "rows copied 318 of ~318" in progress, progress
            body = text_of(wizard, "#wiz-body")
            assert f"Stage {number} (" in body and "done in" in body
            if number == 1:
                assert "duplicates on (pay_ts, pdm_id, tracer)" in body
            if number == 3:  # the layout stage: the partitions with their rows
                assert "payment_2019" in body and "payment_default" in body
                assert "DEFAULT" in body
                await edit_layout(pilot, app, wizard)
        # stage 7 comes next, offered like every stage
        assert wizard.state.stage is not None and wizard.state.stage.number == 7
        assert "A: run stage 7" in text_of(wizard, "#wiz-actions")
        head = text_of(wizard, "#wiz-head")
        assert "✓1 ✓2 ✓3 ✓4 ✓5 ✓6 ▶7" in head and "last done: copy" in head
        assert "L: edit" not in text_of(wizard, "#wiz-actions")  # built: no more editing
    assert legacy.query("SELECT relkind FROM pg_class WHERE oid = 'legacy.payment'::regclass"
                        ) == [("p",)]
    assert legacy.query("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent ="
                        " 'legacy.payment'::regclass ORDER BY 1") == [
        ("payment_2019_2020", "FOR VALUES FROM ('2019-01-01 00:00:00+00') TO "
                              "('2021-01-01 00:00:00+00')"),
        ("payment_default", "DEFAULT"),
        ("payment_later", "FOR VALUES FROM ('2021-01-01 00:00:00+00') TO "
                          "('2027-01-01 00:00:00+00')"),
        ("payment_next", "FOR VALUES FROM ('2027-01-01 00:00:00+00') TO "
                         "('2100-01-01 00:00:00+00')")]

    # a new console: the picker shows the migration where it stands, the wizard continues
    app = make_app(legacy)
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_picker(pilot, app)
        assert "copy done" in widget_text(picker.query_one("#migrate-tables"))
        assert not any(t.name.endswith("_premigration") for t in picker.tables)
        await pick(pilot, picker, "legacy.payment")
        wizard = await wizard_loaded(pilot, app)
        assert wizard.state.stage.number == 7
        # resumed: stage 1 ran in the earlier console, the record says so
        assert "✓1 ✓2" in text_of(wizard, "#wiz-head")
        await pilot.press("X")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), timeout=30)
        await pilot.click("#confirm-yes")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanProgressScreen))
        progress = app.screen
        await wait_until(pilot, lambda: progress.result is not None, timeout=60)
        assert progress.result.ok, progress.result.error
        await pilot.press("escape")
        wizard = await wizard_loaded(pilot, app, 2)
        assert "Aborted" in text_of(wizard, "#wiz-body")
        assert "No migration of legacy.payment is recorded" in text_of(wizard, "#wiz-body")
        assert wizard.query_one("#wiz-pane").border_title == "stage"  # not "stage 7: …"
    assert catalog_dump(legacy, n.schema, n.table) == dump


async def test_a_group_over_60_stops_the_wizard_with_nothing_changed(db18):
    _build(db18, n, over_60=True)
    dump = catalog_dump(db18, n.schema, n.table)
    app = make_app(db18)
    async with app.run_test(size=SIZE) as pilot:
        # from the palette this time
        await wait_loads(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"migrate a plain")
        await wait_until(pilot, lambda: "key w" in "\n".join(
            widget_text(w) for w in app.screen.query("CommandList")), timeout=10)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MigratePickerScreen))
        picker = app.screen
        await wait_until(pilot, lambda: picker.loaded)
        await pick(pilot, picker, "legacy.payment")
        await form_of(pilot, app)
        await pilot.press("ctrl+n")
        wizard = await wizard_loaded(pilot, app)
        body = text_of(wizard, "#wiz-body")
        assert "Stopped: 1 collision group of more than 60 rows" in body
        assert "pdm_id = 7, minute 2019-07-20 00:00 UTC: 65 rows" in body
        assert "stopped" in text_of(wizard, "#wiz-actions")
        # what stops it is on the first screen at 80x24 (it was below the counts), with what
        # to do about it
        pane = wizard.query_one("#wiz-pane")
        lines = widget_text(wizard.query_one("#wiz-body")).splitlines()
        seen = "\n".join(lines[round(pane.scroll_y):][:pane.scrollable_content_region.height])
        assert "Stopped: 1 collision group" in seen and "pick the table again" in seen, seen
        assert "What it found" not in seen.split("Stopped")[0]
        await pilot.press("A")
        await pilot.pause(0.2)
        assert app.screen is wizard  # refused: no confirmation, nothing runs
    assert catalog_dump(db18, n.schema, n.table) == dump
    assert db18.query("SELECT to_regclass('pgparts.plan_objects')") == [(None,)]


async def test_a_stage_that_drops_asks_for_the_name(db18):
    """Whatever the stage, a plan whose facts say it drops something runs only after the name
    is typed (stage 9's drop of the original, once it is part of the code)."""
    db18.execute("CREATE TABLE public.gone (i int)")
    plan = Plan(kind="migrate", title="drop public.gone", target="public.gone", target_oid=0,
                steps=[Step("drop it", "the test's drop", [Statement(
                    sql.SQL("DROP TABLE {}").format(sql.Identifier("public", "gone")))])],
                facts=PlanFacts(destroys=[Destroyed("table", "public.gone", verified=True)]))
    app = make_app(db18)
    ran: list[RunResult | None] = []
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        wizard = MigrateWizardScreen("public", "gone")
        await app.push_screen(wizard)
        await wizard_loaded(pilot, app)
        assert "No migration of gone is recorded" in text_of(wizard, "#wiz-body")
        with psycopg.connect(db18.dsn) as conn:
            preview = PlanPreview.build(plan, conn)
        wizard._typed_then_run(preview, lambda _plan, result: ran.append(result))
        await wait_until(pilot, lambda: isinstance(app.screen, TypeNameModal))
        modal = app.screen
        await pilot.press(*"public.gon", "enter")
        await pilot.pause()
        assert app.screen is modal  # not the name: nothing runs
        await pilot.press("e", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanProgressScreen))
        progress = app.screen
        await wait_until(pilot, lambda: progress.result is not None, timeout=30)
        await pilot.press("escape")
        await wait_until(pilot, lambda: bool(ran))
    assert ran[0] is not None and ran[0].ok
    assert db18.query("SELECT to_regclass('public.gone')") == [(None,)]


async def test_stage_8_not_chosen_is_left_out_and_finish_runs(legacy):
    """A migration that did not choose the insert trigger went from stage 7 to a stage 8 that
    'cannot run', with no way on to Finish; the wizard now skips it, as `pgparts migrate`
    does. Back in the picker the cursor is still on the table (it went to the first row,
    where enter would pick another table)."""
    with legacy.connect() as conn:
        spec = prepare(conn, _choices(n)).spec
    result = _run_to(legacy, spec, "dependencies")
    assert result is not None and result.ok, result.error
    legacy.execute("CREATE SCHEMA a; CREATE TABLE a.first (i int)")  # listed first
    app = make_app(legacy)
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_picker(pilot, app)
        # the cursor starts on the migration in progress, not on the first table
        first = picker.selected()
        assert first is not None and (first.schema, first.name) == ("legacy", "payment")
        await pick(pilot, picker, "legacy.payment")
        wizard = await wizard_loaded(pilot, app)
        # back in the picker (it reads the tables again) and enter: the same table
        reads = picker.reads
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is picker and picker.reads > reads)
        chosen = picker.selected()
        assert chosen is not None and (chosen.schema, chosen.name) == ("legacy", "payment")
        await pilot.press("enter")
        wizard = await wizard_loaded(pilot, app)
        assert wizard.state.stage is not None and wizard.state.stage.number == 9
        assert "(8) ▶9" in text_of(wizard, "#wiz-head")  # left out, and shown so
        assert "A: run stage 9" in text_of(wizard, "#wiz-actions")
        loads = wizard.loads
        await pilot.press("A")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.click("#confirm-yes")
        # Finish drops the original: its name is typed first
        await wait_until(pilot, lambda: isinstance(app.screen, TypeNameModal))
        await pilot.press(*"payment_premigration", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanProgressScreen))
        progress = app.screen
        await wait_until(pilot, lambda: progress.result is not None, timeout=60)
        assert progress.result.ok, progress.result.error
        await pilot.press("escape")
        await wizard_loaded(pilot, app, loads + 1)
        assert wizard.state.stage is None
        assert wizard.query_one("#wiz-pane").border_title == "every stage done"
    assert legacy.query("SELECT to_regclass('legacy.payment_premigration')") == [(None,)]
    assert legacy.query("SELECT relkind FROM pg_class WHERE oid = 'legacy.payment'::regclass"
                        ) == [("p",)]


async def test_the_form_offers_stage_8_and_records_it(db):
    """Stage 8 is offered in the form (as `--insert-trigger` on the command line): refused in
    one line without a tie-break, then chosen; the wizard counts it among its stages and the
    first stage that changes anything records it with the migration."""
    _build(db, n)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_picker(pilot, app)
        await pick(pilot, picker, "legacy.payment")
        form = await form_of(pilot, app)
        box = form.query_one("#form-trigger", Checkbox)
        assert not box.value  # offered, not imposed
        box.scroll_visible(animate=False)
        await pilot.pause()
        assert box.region.bottom <= SIZE[1] and "stage 8" in str(box.label)
        await pilot.click("#form-trigger")
        assert box.value
        form.query_one("#form-tiebreak", Input).value = ""
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen is form
        assert text_of(form, "#form-error-trigger").startswith(
            "stage 8 needs a timestamp partition column and a tie-break")
        form.query_one("#form-tiebreak", Input).value = n.tracer
        await pilot.press("ctrl+n")
        wizard = await wizard_loaded(pilot, app)
        assert wizard.state.spec is not None and wizard.state.spec.insert_trigger
        assert "(8)" not in text_of(wizard, "#wiz-head")
        await run_stage(pilot, app, wizard, 1)
        await run_stage(pilot, app, wizard, 2)
    with db.connect() as conn:
        recorded = read_recorded(conn, n.schema, n.table)
    assert recorded is not None and recorded.spec.insert_trigger


async def test_the_wizard_on_infinite_timestamps(db18):
    """A partition column holding 'infinity' / '-infinity': the wizard's preflight says where
    they go, its duplicates preview shows them as text, the layout gives them to DEFAULT."""
    from .test_migrate_infinity import _setup

    _setup(db18, "timestamptz")
    app = make_app(db18)
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_picker(pilot, app)
        await pick(pilot, picker, "inf.sub")
        form = await form_of(pilot, app)
        form.query_one("#form-key", Input).value = "v, acct"
        form.query_one("#form-tiebreak", Input).value = "tracer"
        await pilot.press("ctrl+n")
        wizard = await wizard_loaded(pilot, app)
        body = text_of(wizard, "#wiz-body")
        assert "Stage 1 of 9: preflight" in body and "rows per year" in body, body
        assert "about 3 'infinity' and 1 '-infinity' in 'v'" in body, body
        await run_stage(pilot, app, wizard, 1)
        body = text_of(wizard, "#wiz-body")
        assert "sample: infinity, 1, I1: id 51, 54" in body, body


async def test_the_rows_per_partition_field_reads_as_a_number_and_takes_both_forms(db18):
    """The default target showed as `30_000_000` (Python's spelling): it reads 30,000,000, and
    the field takes it with or without commas."""
    _build(db18, n)
    app = make_app(db18)
    async with app.run_test(size=SIZE) as pilot:
        picker = await open_picker(pilot, app)
        await pick(pilot, picker, "legacy.payment")
        form = await form_of(pilot, app)
        rows = form.query_one("#form-rows", Input)
        assert rows.value == "30,000,000"
        form.query_one("#form-layout", Select).value = "rows"
        await pilot.pause()
        assert not rows.disabled
        for text in ("30,000,000", "30000000"):
            rows.value = text
            choices = form.choices()
            assert choices is not None and choices.target_rows == 30_000_000, text
        rows.value = "30 million"
        assert form.choices() is None
        assert text_of(form, "#form-error-rows").strip() == (
            "rows per partition: a whole number, 1 or more")
