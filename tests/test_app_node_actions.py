"""Actions on the selected partition (the `m` menu), against real servers: the entries come
from each kind's `actions_for` (both versions); split chosen from the tree, a boundary typed in,
previewed, confirmed and applied on a tiny table; refused input said under the form, the field
it is about marked; a node no plan applies to (PostgreSQL 18: what they test is the console's;
the kinds' checks and moves run on both versions in tests/plans). The partition's name holds a
quote, a space and a non-ASCII letter."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import pytest
from textual.widgets import Input, OptionList

from tui.app.app import CONSOLE_COMMANDS, PgpartsApp, known_binding_ids
from tui.app.confirm import ConfirmModal, TypeNameModal
from tui.app.main_screen import MainScreen
from tui.app.node_actions import ActionsMenu, NodeActionCommands, node_actions
from tui.app.plan_progress import PlanProgressScreen
from tui.app.plan_screen import PlanScreen
from tui.core.catalog import load_forest
from tui.core.config import Config, PlansConfig
from tui.core.connection import Target
from tui.core.plans import registry
from tui.core.plans.kind import Option, PlanKind, PlanKindError
from tui.core.plans.registry import kind_named

from .test_app import wait_loads, wait_until, widget_text
from .test_app_consolidate import content_text

SIZE = (120, 36)
JAN = 'Jän "1"'  # the partition split: a quote, a space, a non-ASCII letter
JAN_SQL = '"Jän ""1"""'

LAYOUT = """
CREATE TABLE public.days (d date NOT NULL, v int, PRIMARY KEY (d, v)) PARTITION BY RANGE (d);
CREATE TABLE public.""" + JAN_SQL + """ PARTITION OF public.days
  FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE public.days_feb PARTITION OF public.days
  FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE public.days_mar PARTITION OF public.days
  FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
CREATE TABLE public.days_default PARTITION OF public.days DEFAULT;
INSERT INTO public.days SELECT date '2024-01-01' + (i % 90), i FROM generate_series(1, 180) i;
CREATE TABLE public.other (d date NOT NULL) PARTITION BY RANGE (d);
CREATE TABLE public.other_p PARTITION OF public.other
  FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
CREATE TABLE public.tags (t text NOT NULL) PARTITION BY LIST (t);
CREATE TABLE public.tags_a PARTITION OF public.tags FOR VALUES IN ('a');
CREATE TABLE public.tags_b PARTITION OF public.tags FOR VALUES IN ('b');
CREATE TABLE public.buckets (i int NOT NULL) PARTITION BY HASH (i);
CREATE TABLE public.buckets_0 PARTITION OF public.buckets
  FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.buckets_1 PARTITION OF public.buckets
  FOR VALUES WITH (MODULUS 2, REMAINDER 1);
ANALYZE;
"""


class Pairs(PlanKind):
    """A kind acting on two partitions (`NAME TABLE P1 P2`), as merge and re-bound are."""

    name = "pairs"
    title = "Act on two partitions"
    noun = "pair"
    options: ClassVar = (Option("first", positional=True), Option("second", positional=True))

    def applies_to(self, forest, node) -> bool:
        return node.parent_strategy in ("range", "list") and node.relkind == "r"

    def build(self, conn, forest, status, request, config):
        raise PlanKindError(f"SECOND: {request.get('second')} is only a test")


def make_app(db) -> PgpartsApp:
    config = Config(plans=PlansConfig(lock_timeout_seconds=1.0, lock_retries=2))
    return PgpartsApp(Target(db.dsn, label="test"), config, read_only=False)


async def open_menu(pilot, app: PgpartsApp, name: str) -> ActionsMenu:
    node = app.forest.find(name) if name != JAN else app.forest.find(f"public.{JAN_SQL}")
    await app.screen.query_one("#tree").reveal(node.oid)
    await wait_until(pilot, lambda: app.selected_node is not None
                     and app.selected_node.oid == node.oid)
    await pilot.press("m")
    await wait_until(pilot, lambda: isinstance(app.screen, ActionsMenu))
    return app.screen


async def planned(pilot, screen: PlanScreen, before: int) -> None:
    await wait_until(pilot, lambda: screen.loads > before and not screen.planning, timeout=30)


def test_default_actions_come_from_the_declaration(db):
    db.execute(LAYOUT)
    with db.connect() as conn:
        forest = load_forest(conn)
    jan, feb = forest.find(f"public.{JAN_SQL}"), forest.find("days_feb")
    days = forest.find("days")
    # one positional PARTITION: the node, on its parent's plan
    (split,) = kind_named("split").actions_for(forest, jan)
    assert (split.table.oid, split.values) == (days.oid, {"partition": jan.qualified})
    # no positional option: the parent table the kind applies to
    (drain,) = kind_named("drain_default").actions_for(forest, feb)
    assert (drain.table.oid, drain.values) == (days.oid, {})
    # two positionals: one entry per range neighbour, in bound order
    entries = Pairs().actions_for(forest, feb)
    assert [(a.label, a.values) for a in entries] == [
        ("pair with the next partition", {"first": "days_feb", "second": "days_mar"}),
        ("pair with the previous partition", {"first": jan.qualified, "second": "days_feb"})]
    assert [a.label for a in Pairs().actions_for(forest, jan)] == [
        "pair with the next partition"]
    # list partitions have no range neighbours: only the node is filled in
    (tag,) = Pairs().actions_for(forest, forest.find("tags_a"))
    assert tag.values == {"first": "tags_a"}
    # the menu: the partition's kinds first, then the table's; a hash leaf of a table nothing
    # applies to has none; a list partition offers the list kinds
    kinds = [a.kind for a in node_actions(forest, jan)]
    assert kinds[0] == "split" and "drain_default" in kinds and "consolidate" not in kinds
    assert node_actions(forest, forest.find("buckets_1")) == []
    assert {a.kind for a in node_actions(forest, forest.find("tags_b"))} == {"merge",
                                                                             "move_values"}
    assert not any(a.kind == "split" for a in node_actions(forest, forest.find("days_default")))
    # on the DEFAULT partition, draining it is its own action: before the table's entries
    on_default = node_actions(forest, forest.find("days_default"))
    assert on_default[0].kind == "drain_default" and on_default[0].on_node, on_default
    assert "create_ahead" in [a.kind for a in on_default[1:]]
    ahead = next(a for a in node_actions(forest, feb) if a.kind == "create_ahead")
    assert ActionsMenu._entry(ahead).plain == "Create partitions ahead of days"


async def test_split_from_the_tree_menu_preview_confirm_apply(db18):
    db = db18  # the console's flow; the move itself is tested on both versions (contracts)
    db.execute(LAYOUT)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        menu = await open_menu(pilot, app, JAN)
        shown = widget_text(menu.query_one(OptionList))
        assert "Split a range partition" in shown and "Drain the DEFAULT partition" in shown
        assert menu.actions[0].kind == "split"
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning, timeout=30)
        assert screen.kind.name == "split" and screen.table_name == "days"
        # the partition under the cursor, quoted as the kind reads it
        assert screen.query_one("#plan-option-partition", Input).value == JAN_SQL
        # no boundary yet: said under the form, apply refused
        assert "at: give at least one value" in content_text(screen, "#plan-form-error")
        assert screen.query_one("#plan-option-at", Input).has_class("refused")
        assert "apply is disabled" in content_text(screen, "#plan-reason")
        before = screen.loads
        screen.query_one("#plan-option-at", Input).focus()
        await pilot.press(*"2024-01-16", "enter")  # enter leaves the field
        await planned(pilot, screen, before)
        assert not isinstance(app.focused, Input)
        assert screen.error == "", screen.error
        assert content_text(screen, "#plan-form-error").strip() == ""
        text = content_text(screen, "#plan-preview")
        assert "split" in text and "days_2" not in text and f"{JAN}_2" in text, text
        await pilot.press("A")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        # the new partitions are items of 'split ... into:', not changes of their own
        body = content_text(app.screen, "#confirm-body")
        assert "into:\n  ◦ " in body and "•   " not in body, body
        await pilot.click("#confirm-yes")
        # the original is dropped after verification: type the table's name
        await wait_until(pilot, lambda: isinstance(app.screen, TypeNameModal))
        await pilot.press(*"days", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanProgressScreen))
        progress = app.screen
        await wait_until(pilot, lambda: progress.result is not None, timeout=60)
        assert progress.result.ok, progress.result.error
        # every row of the partition counted once; the swap's hold said once
        assert "rows copied 62 of ~62" in content_text(progress, "#progress-head")
        outcome = content_text(progress, "#progress-outcome")
        assert outcome.count("ACCESS EXCLUSIVE") == 1, outcome
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        # the form is as it was opened: the boundary applied is not offered again
        assert screen.query_one("#plan-option-at", Input).value == ""
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
    rows = db.query("SELECT c.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid),"
                    " (SELECT count(*) FROM public.days WHERE tableoid = c.oid)"
                    " FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c"
                    " ON c.oid = i.inhrelid WHERE i.inhparent = 'public.days'::regclass"
                    " AND c.relname LIKE 'Jän%' ORDER BY 1")
    assert rows == [
        (JAN, "FOR VALUES FROM ('2024-01-01') TO ('2024-01-16')", 30),
        (f"{JAN}_2", "FOR VALUES FROM ('2024-01-16') TO ('2024-02-01')", 32)]
    assert db.query("SELECT count(*) FROM public.days")[0][0] == 180


async def test_refused_input_is_said_under_the_form_and_no_action_is_said(db18):
    db = db18  # the console's flow; split's checks are tested on both versions
    db.execute(LAYOUT)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        # a leaf no plan applies to: said, no menu
        await app.screen.query_one("#tree").reveal(app.forest.find("buckets_1").oid)
        await wait_until(pilot, lambda: app.selected_node is not None
                         and app.selected_node.name == "buckets_1")
        await pilot.press("m")
        await pilot.pause(0.2)
        assert isinstance(app.screen, MainScreen)
        assert any("no plan applies to buckets_1" in n.message for n in app._notifications)
        # the same entries are in the command palette
        await app.screen.query_one("#tree").reveal(app.forest.find("days_feb").oid)
        await wait_until(pilot, lambda: app.selected_node.name == "days_feb")
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"days_feb")
        await wait_until(pilot, lambda: "Split a range partition: days_feb" in "\n".join(
            widget_text(w) for w in app.screen.query("CommandList")), timeout=10)
        # a table's entry goes on with its sentence ('of days', not ': of days'), and every
        # entry starts with a capital, as the kinds' titles do
        titles = [NodeActionCommands._title(a)
                  for a in node_actions(app.forest, app.forest.find("days_feb"))]
        assert "Drain the DEFAULT partition of days" in titles, titles
        assert "Merge with the next partition: days_feb + days_mar" in titles, titles
        assert not any(": of " in t or t[0].islower() for t in titles), titles
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning, timeout=30)
        assert screen.query_one("#plan-option-partition", Input).value == "days_feb"
        refusals = [
            ("at", "2024-03-05", "at: 2024-03-05 is not inside the partition's bound"),
            # said about the field (it named the command line's --at VALUE, and no field)
            ("at", "", "at: give at least one value to split at"),
            ("at", "2024-02-20, 2024-02-10", "at: split values must increase strictly"),
            ("at", "2024-02-31", "at: '2024-02-31' is not a valid date"),
            ("name", "days_mar", "name: days_mar exists already"),
            ("partition", "other_p", "partition: other_p is a partition of other, not of days"),
        ]
        fields = {"at": "2024-02-10", "name": ""}
        for field, value, said in refusals:
            before = screen.loads
            for name, default in fields.items():
                screen.query_one(f"#plan-option-{name}", Input).value = \
                    value if name == field else default
            if field == "partition":
                screen.query_one("#plan-option-partition", Input).value = value
            await planned(pilot, screen, before)
            line = content_text(screen, "#plan-form-error")
            assert said in line, (said, line)
            assert "\n" not in line.strip()
            marked = [i.id for i in screen.query(Input) if i.has_class("refused")]
            assert marked == [f"plan-option-{field}"], marked
            assert "apply is disabled" in content_text(screen, "#plan-reason")
            assert not app._notifications or all(said not in n.message
                                                  for n in app._notifications)
        # corrected: the line and the mark go
        before = screen.loads
        screen.query_one("#plan-option-partition", Input).value = "days_feb"
        await planned(pilot, screen, before)
        assert content_text(screen, "#plan-form-error").strip() == ""
        assert not [i for i in screen.query(Input) if i.has_class("refused")]
    # nothing ran: the layout is unchanged
    assert db.query("SELECT count(*) FROM pg_catalog.pg_inherits"
                    " WHERE inhparent = 'public.days'::regclass")[0][0] == 4


async def test_a_kind_on_two_partitions_gets_the_neighbour_filled_in(db18, monkeypatch):
    """Nothing in the console knows a kind: one registered here (two positionals, as merge
    and re-bound have) is offered with the next and with the previous partition."""
    db18.execute(LAYOUT)
    monkeypatch.setattr(registry, "PLAN_KINDS", (*registry.PLAN_KINDS, Pairs()))
    app = make_app(db18)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loads(pilot, app)
        menu = await open_menu(pilot, app, "days_feb")
        shown = widget_text(menu.query_one(OptionList))
        assert "Pair with the next partition  days_feb + days_mar" in shown, shown
        assert f"Pair with the previous partition  {JAN_SQL} + days_feb" in shown, shown
        options = menu.query_one(OptionList)
        entries = [str(options.get_option_at_index(i).prompt)
                   for i in range(options.option_count)]
        options.highlighted = next(i for i, e in enumerate(entries)
                                   if e.startswith("Pair with the next partition"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        await wait_until(pilot, lambda: screen.loads >= 1 and not screen.planning, timeout=30)
        assert screen.kind.name == "pairs" and screen.table_name == "days"
        assert "Pair with the next partition" in content_text(screen, "#plan-head")
        assert screen.query_one("#plan-option-first", Input).value == "days_feb"
        assert screen.query_one("#plan-option-second", Input).value == "days_mar"
        # the kind's refusal, about its second option, is said under that field
        assert "second: days_mar is only a test" in content_text(screen, "#plan-form-error")
        assert screen.query_one("#plan-option-second", Input).has_class("refused")


ROOT = Path(__file__).resolve().parent.parent


def test_every_keymap_id_is_listed_and_every_tree_key_is_in_the_readme():
    """config.example.toml lists every id [console.keymap] takes; README's key table of the
    tree has every key of the console's commands."""
    example = (ROOT / "config.example.toml").read_text()
    block = example[example.index("# Rebind the console"):example.index("[console.keymap]")]
    listed = set(re.findall(r"[a-z_][a-z0-9_-]*", block.split("The ids:")[1]))
    assert known_binding_ids() <= listed, sorted(known_binding_ids() - listed)
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| key | what it does |"):]
    table = table[:table.index("\n\n")]
    names = {"slash": "/", "question_mark": "?"}
    for cmd in CONSOLE_COMMANDS:
        if cmd.key:
            assert f"`{names.get(cmd.key, cmd.key)}`" in table, cmd.id


def test_fix_says_every_remedy_and_its_grammar():
    from tui.app.fixes import also_line
    from tui.core.plans.remedies import remedy_kinds

    (fix,) = [c for c in CONSOLE_COMMANDS if c.id == "fix"]
    assert {"drain_default", "fill_gaps", "create_ahead"} <= set(remedy_kinds())
    for kind in remedy_kinds():
        assert kind.replace("_", " ") in fix.description, fix.description
    assert also_line(["create_ahead"], "control.payment") == (
        "fix: create_ahead also applies to control.payment; press f again after this plan "
        "has run")
    assert "fill_gaps, create_ahead also apply to" in also_line(["fill_gaps", "create_ahead"],
                                                               "t")


@pytest.mark.parametrize(("size", "entry", "field", "value"), [
    ((80, 24), "Split a range partition", "partition", "payments_2023"),
    ((160, 45), "Merge with the previous partition", "partitions",
     "archive.payments_2022, payments_2023")])
async def test_prefilled_partitions_fit_their_fields(db18, size, entry, field, value):
    """A partition of a table in another schema was prefilled as schema.name: at 80 columns
    split's field showed 'ctl.pay_2023' cut short, and merge's (28 columns at any width)
    hid the first of its two names. The name alone is prefilled where it names the
    partition; one in another schema keeps its schema."""
    db18.execute("""
        CREATE SCHEMA ctl; CREATE SCHEMA archive;
        CREATE TABLE ctl.payments (ts date PRIMARY KEY) PARTITION BY RANGE (ts);
        CREATE TABLE archive.payments_2022 PARTITION OF ctl.payments
          FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
        CREATE TABLE ctl.payments_2023 PARTITION OF ctl.payments
          FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
        CREATE TABLE ctl.payments_2024 PARTITION OF ctl.payments
          FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    """)
    app = make_app(db18)
    async with app.run_test(size=size) as pilot:
        await wait_loads(pilot, app)
        menu = await open_menu(pilot, app, "ctl.payments_2023")
        options = menu.query_one(OptionList)
        entries = [str(options.get_option_at_index(i).prompt)
                   for i in range(options.option_count)]
        options.highlighted = next(i for i, e in enumerate(entries) if e.startswith(entry))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        await planned(pilot, screen, 0)
        box = screen.query_one(f"#plan-option-{field}", Input)
        assert box.value == value
        assert box.content_size.width > len(value), (box.content_size, value)
        assert "has no partition" not in content_text(screen, "#plan-form-error")


async def test_moves_of_a_table_without_a_key_are_disabled_with_the_reason(db):
    """A list table without a primary key nor unique index (the demo's
    activity_events_holding): 'Move list values' and merge would be refused when planned (the
    change log replays by a key), so the menu shows them disabled with the reason, at 80x24,
    and enter on them opens nothing; the keyed table's moves stay available."""
    db.execute(LAYOUT)
    with db.connect() as conn:
        forest = load_forest(conn)
    tags = node_actions(forest, forest.find("tags_b"))
    assert {a.kind for a in tags} == {"merge", "move_values"}
    assert all(a.unavailable == "tags_b has no primary key nor unique index: a move "
               "replays the changes made meanwhile by one" for a in tags), tags
    assert not any(a.unavailable for a in node_actions(forest, forest.find("days_feb")))
    # on the keyed table's DEFAULT the drain reads the DEFAULT's own indexes
    assert not node_actions(forest, forest.find("days_default"))[0].unavailable
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loads(pilot, app)
        await wait_until(pilot, lambda: app.forest.indexes_loaded, timeout=15)
        menu = await open_menu(pilot, app, "tags_b")
        options = menu.query_one(OptionList)
        assert all(options.get_option_at_index(i).disabled for i in range(len(tags)))
        shown = widget_text(options)
        assert "Move list values" in shown and "cannot: tags_b has no primary key" \
            in shown, shown
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.screen is menu  # nothing to open
