"""Names that look like markup (`r[/y]`: a closing tag that matches nothing) are shown as
text everywhere the console puts a name: the plan preview, the progress table, the journal,
the command palette, notifications and the details pane. Textual and Rich read a plain `str`
as markup there, and such a name stopped the console with a MarkupError. PostgreSQL 18: what
this tests is the console's rendering, not the server."""

from __future__ import annotations

from textual.command import CommandPalette
from textual.widgets import DataTable, Input, OptionList
from textual.widgets._toast import Toast

from tui.app.app import PgpartsApp
from tui.app.confirm import ConfirmModal
from tui.app.journal_screen import JournalScreen
from tui.app.main_screen import MainScreen
from tui.app.node_actions import ActionsMenu
from tui.app.plan_progress import PlanProgressScreen
from tui.app.plan_screen import PlanScreen
from tui.core.config import Config, PlansConfig
from tui.core.connection import Target

from .test_app import details_text, wait_loads, wait_until, widget_text
from .test_app_consolidate import content_text

SIZE = (120, 36)

# "r[/y]" is never analyzed (f plans analyze on it); "h[/z]" is, so nothing applies to its leaf
LAYOUT = """
CREATE TABLE public."r[/y]" (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE public."r[/y]_1" PARTITION OF public."r[/y]" FOR VALUES FROM (0) TO (100);
CREATE TABLE public."r[/y]_2" PARTITION OF public."r[/y]" FOR VALUES FROM (100) TO (200);
CREATE TABLE public."h[/z]" (id int NOT NULL) PARTITION BY HASH (id);
CREATE TABLE public."h[/z]_0" PARTITION OF public."h[/z]"
  FOR VALUES WITH (MODULUS 1, REMAINDER 0);
INSERT INTO public."r[/y]" SELECT g FROM generate_series(0, 9) g;
ANALYZE public."h[/z]", public."h[/z]_0";
"""


def make_app(db) -> PgpartsApp:
    config = Config(plans=PlansConfig(lock_timeout_seconds=1.0, lock_retries=2))
    return PgpartsApp(Target(db.dsn, label="test"), config, read_only=False)


async def select(pilot, app: PgpartsApp, name: str) -> None:
    node = app.forest.find(name)
    await app.screen.query_one("#tree").reveal(node.oid)
    await wait_until(pilot, lambda: app.selected_node is not None
                     and app.selected_node.oid == node.oid)


async def test_names_that_look_like_markup_are_shown_as_text(db18):
    db18.execute(LAYOUT)
    app = make_app(db18)
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # toasts drawn
        await wait_loads(pilot, app)
        # a notification naming the partition: nothing applies to an analyzed hash leaf
        await select(pilot, app, 'public."h[/z]_0"')
        assert '"h[/z]_0"' in details_text(app)
        await pilot.press("m")
        await wait_until(pilot, lambda: len(app.screen.query(Toast)) > 0)
        shown = " ".join(widget_text(t) for t in app.screen.query(Toast))  # drawn
        assert 'no plan applies to "h[/z]_0"' in shown, shown
        # merge with the next partition: both filled in; emptied, the field does not
        # promise them back (its placeholder was the opening value's repr, "['a', 'b']")
        await select(pilot, app, 'public."r[/y]_1"')
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionsMenu))
        menu = app.screen
        options = menu.query_one(OptionList)
        options.highlighted = next(i for i, a in enumerate(menu.actions) if a.kind == "merge")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        field = app.screen.query_one("#plan-option-partitions", Input)
        assert field.value == '"r[/y]_1", "r[/y]_2"', field.value
        assert field.placeholder == "a, b, …", field.placeholder
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        # the palette: the actions on the selected node and every kind, with the name
        await select(pilot, app, 'public."r[/y]"')
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"analyze")
        await pilot.pause(0.5)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        # f: the analyze plan, its preview naming the partition, applied
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning, timeout=30)
        assert screen.kind.name == "analyze", screen.error
        assert '"r[/y]_1"' in content_text(screen, "#plan-preview")
        await pilot.press("A")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.click("#confirm-yes")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanProgressScreen))
        progress = app.screen
        await wait_until(pilot, lambda: progress.result is not None, timeout=60)
        assert progress.result.ok, progress.result.error
        assert "r[/y]_1" in widget_text(progress.query_one("#progress-steps", DataTable))
        # the journal lists the run on that table
        await pilot.press("j")
        await wait_until(pilot, lambda: isinstance(app.screen, JournalScreen))
        journal = app.screen
        await wait_until(pilot, lambda: journal.query_one(DataTable).row_count > 0)
        assert "r[/y]" in widget_text(journal.query_one(DataTable))
    assert db18.query('SELECT relname, last_analyze IS NOT NULL FROM'
                      ' pg_catalog.pg_stat_user_tables WHERE relname LIKE \'r[/y]__\''
                      ' ORDER BY 1') == [("r[/y]_1", True), ("r[/y]_2", True)]
