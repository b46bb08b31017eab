"""The plan-kind protocol: what every layout change declares, so that each front end (the
command line, the console's plan screen) is generated from the declaration.

A kind is a class with class-level declarations and three methods; it is registered in
registry.py and reached only through it:

    name, title, summary     'analyze', 'analyze never-analyzed partitions', one line for --help
    noun                     how reports name a run ('consolidation', 'analyze')
    options                  Option declarations: each one is a command-line flag and a key or
                             field of the plan screen, parsed and validated by the same code
    has_status               whether `pgparts KIND TABLE status` exists (status_text/status_json)
    applies_to(forest, node) whether the kind can act on that tree node
    actions_for(forest, node)  the console's menu entries for a tree node: the table a plan
                             acts on and the option values prefilled (default: from the
                             positional options, see below)
    status(conn, forest, target)            what the kind sees on the target (catalog reads)
    default_request(forest, target, config) the options' values when nobody chose any
    build(conn, forest, status, request)    the Plan, from the already loaded forest

Modelled on Harlequin's adapters (class variables declare options and capabilities; the app
never imports a concrete one) and its AbstractOption (one declaration, two front ends).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import psycopg

from ..catalog import Forest, PartNode
from ..config import Config
from .engine.model import LOCK_MODES, Plan
from .engine.runner import RunResult


class PlanKindError(ValueError):
    """A request the kind cannot plan (unknown table, wrong layout, bad option): one line.
    A message about one option starts with its flag (`--at: ...`, `PARTITION: ...`), as
    Option.convert's do: the plan screen then shows it under that option's field."""


@dataclass(frozen=True)
class Option:
    """One option of a kind, declared once.

    `type`: "str", "int", "flag" (true when given), "list" (one or more values after the flag),
    "repeat" (the flag given once per value, `--at A --at B`: a list), or "choice" (one of
    `choices`). `positional`: an argument after TABLE instead of a flag (`pgparts split TABLE
    PARTITION`), required, in declaration order; a positional "list" takes one or more
    (`pgparts merge TABLE P1 P2`). `parse` turns the text into the value (e.g.
    an age) and raises ValueError with a message for people; `validate` checks the parsed
    value the same way. `default` None means "the kind's default_request decides" (often
    from the config).
    """

    name: str  # the request key; the flag is --name with '_' as '-'
    type: str = "str"
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    validate: Callable[[Any], None] | None = None
    positional: bool = False
    # the console's key for a "flag" (toggles it) or a "choice" (cycles through the choices);
    # other options are fields of the plan screen, and the kind's `selection` list option is
    # the status table's selection
    key: str = ""
    label: str = ""  # the console's name for it (default: the name with spaces)
    states: tuple[str, ...] = ()  # a flag's (off, on) wording in the console

    @property
    def shown_label(self) -> str:
        return self.label or self.name.replace("_", " ")

    @property
    def flag(self) -> str:
        return self.name.upper() if self.positional else "--" + self.name.replace("_", "-")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """The command-line form."""
        if self.positional:
            # a positional "list" takes one or more values (`pgparts merge TABLE P1 P2 ...`)
            more = {"nargs": "+"} if self.type == "list" else {}
            parser.add_argument(self.name, help=self.help, metavar=self.metavar, **more)
            return
        if self.type == "flag":
            parser.add_argument(self.flag, dest=self.name, action="store_true", default=None,
                                help=self.help)
            return
        kwargs: dict[str, Any] = {"dest": self.name, "default": None, "help": self.help,
                                  "metavar": self.metavar}
        if self.type == "list":
            kwargs["nargs"] = "+"
        if self.type == "repeat":
            kwargs["action"] = "append"
        if self.type == "choice":
            kwargs["choices"] = list(self.choices)
            kwargs.pop("metavar")
        parser.add_argument(self.flag, **kwargs)

    def convert(self, raw: Any) -> Any:
        """The value from what a front end read (text, list of texts, bool, or None)."""
        if raw is None:
            return None
        try:
            if self.type == "int":
                try:
                    value: Any = int(raw)
                except ValueError:
                    raise ValueError(f"expected a whole number, got {raw!r}") from None
            elif self.type in ("list", "repeat"):
                value = [str(v) for v in (raw if isinstance(raw, list | tuple) else [raw])]
                if self.parse is not None:
                    value = [self.parse(v) for v in value]
            elif self.type == "flag":
                value = bool(raw)
            else:
                value = self.parse(raw) if self.parse is not None else raw
                if self.type == "choice" and value not in self.choices:
                    raise ValueError(f"one of {', '.join(self.choices)}")
            if self.validate is not None:
                self.validate(value)
        except ValueError as exc:
            raise PlanKindError(f"{self.flag}: {exc}") from None
        return value


@dataclass(frozen=True)
class Cell:
    """One cell of a kind's status table, as data: the console formats `value` by `format`
    ("text", "count", "rows", "bytes", or "bound" with value (lower, upper, text)); `short` is
    the text at 80 columns; `tone` is "", "good", "warn" or "dim"."""

    value: Any = ""
    format: str = "text"
    tone: str = ""
    short: str | None = None


@dataclass(frozen=True)
class StatusColumn:
    key: str
    title: str
    right: bool = False  # right-aligned (numbers)
    wide_only: bool = False  # left out at 80 columns


@dataclass
class StatusRow:
    key: str  # the value the selection option takes for this row
    cells: dict[str, Cell]
    selectable: bool = True
    refusal: str = ""  # why it cannot be selected, for people


@dataclass
class StatusTable:
    """What a kind's status looks like as a table: one row per thing it can act on."""

    columns: list[StatusColumn]
    rows: list[StatusRow]
    headline: list[tuple[str, str]] = field(default_factory=list)  # (text, tone) pieces
    empty: str = ""  # what to say when nothing is selected
    # why there is nothing to select at all (said instead of asking for a selection)
    nothing: str = ""


@dataclass(frozen=True)
class NodeAction:
    """One entry of the console's menu of actions on a tree node: a plan of kind `kind` on the
    partitioned table `table`, with option `values` prefilled (raw, as a front end reads them:
    text, or lists of texts) and `preselect` rows of the status table."""

    kind: str
    label: str  # what the menu says, e.g. 'Split a range partition', 'merge with the next'
    table: PartNode
    values: dict[str, Any] = field(default_factory=dict)
    preselect: tuple[str, ...] = ()
    detail: str = ""  # the partition(s) or table it is about, said beside the label
    # about the node itself although no value names it (drain-default on the DEFAULT): the
    # menu lists it with the partition's own actions, first
    on_node: bool = False
    # why the plan cannot be made for this node, said before it is opened (the menu shows the
    # entry disabled, with this reason)
    unavailable: str = ""


def range_neighbours(forest: Forest, node: PartNode) -> tuple[PartNode | None, PartNode | None]:
    """The siblings of a range partition whose bound ends where `node`'s starts (previous)
    and starts where it ends (next). The server prints a key's values one way, so equal text
    is an equal value."""
    parent = forest.nodes.get(node.parent_oid) if node.parent_oid else None
    bound = node.bound
    if parent is None or bound is None or bound.kind != "range":
        return None, None
    previous = following = None
    for sibling in parent.children:
        other = sibling.bound
        if sibling.oid == node.oid or other is None or other.kind != "range":
            continue
        if other.upper == bound.lower:
            previous = sibling
        if other.lower == bound.upper:
            following = sibling
    return previous, following


@dataclass
class Request:
    """What the operator asked for: the target table and option values by name (None: not
    chosen), and whether the plan is built to be applied right away.

    A preview (`--dry-run`, `--sql`, the console's plan screen, `maintain --dry-run`) never runs
    code of a table's own (tui/core/table_code.py): a kind whose planning reads rows refuses,
    or skips the read, when reading them would run such code. `applying` (`--apply`, a
    maintain run) reads them anyway, as the applying role, like every apply runs the table's
    code. False unless a front end says so: a forgotten flag costs a refusal, never code run
    during a preview."""

    values: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    applying: bool = False

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value


class PlanKind:
    """Base class of every plan kind; see the module docstring."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    noun: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    has_status: ClassVar[bool] = False
    table_help: ClassVar[str] = "the partitioned table ('name' or 'schema.name')"
    # the findings (tui.core.findings codes) a plan of this kind removes
    fixes: ClassVar[tuple[str, ...]] = ()
    # the "list" option whose values are rows of the status table (the console's selection)
    selection: ClassVar[str | None] = None
    # the option the console keeps when the selection goes back to the default ('o')
    reset_with_selection: ClassVar[tuple[str, ...]] = ()
    # what the default selection is, for the console's help ('o')
    default_selection_help: ClassVar[str] = "go back to the default selection"

    # the kind moves rows through a change log (moves/changelog.py), which replays changes by a
    # primary key or a unique index: the menu's entries for partitions without one say so
    moves_rows: ClassVar[bool] = False

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        return node.relkind == "p"

    def moved_from(self, forest: Forest, node: PartNode, action: NodeAction) -> list[PartNode]:
        """The partitions whose rows `action` (one of `actions_for(forest, node)`) moves: the
        node itself when the entry is about it (a value names it, or `on_node`)."""
        return [node] if action.values or action.on_node else []

    def menu_actions(self, forest: Forest, node: PartNode) -> list[NodeAction]:
        """`actions_for`, each entry marked `unavailable` when a partition it moves rows from
        has no primary key nor unique index (read from the forest's indexes, when loaded): the
        plan would be refused for it. An index that exists but cannot serve (a nullable column,
        an expression) is still refused when the plan is made, in its own words."""
        actions = self.actions_for(forest, node)
        if not self.moves_rows or not forest.indexes_loaded:
            return actions
        out = []
        for a in actions:
            keyless = [p for p in self.moved_from(forest, node, a) if not any(
                i.valid and (i.is_unique or i.is_primary) for i in p.indexes)]
            out.append(replace(a, unavailable=(
                f"{keyless[0].qualified} has no primary key nor unique index: a move replays "
                "the changes made meanwhile by one") if keyless else ""))
        return out

    def status(self, conn: psycopg.Connection, forest: Forest, target: str) -> Any:
        """What the kind sees on `target` (catalog reads only); None when it has no status."""
        return None

    def status_text(self, status: Any) -> str:
        raise NotImplementedError

    def status_json(self, status: Any) -> Any:
        raise NotImplementedError

    def status_table(self, status: Any) -> StatusTable | None:
        """The status as a table for the console; None when the kind has none."""
        return None

    def target_for(self, forest: Forest, node: PartNode) -> tuple[PartNode, list[str]] | None:
        """The table a plan for tree node `node` acts on, and the rows to preselect: the nearest
        table at or above `node` this kind applies to."""
        current: PartNode | None = node
        while current is not None:
            if self.applies_to(forest, current):
                return current, []
            current = forest.nodes.get(current.parent_oid) if current.parent_oid else None
        return None

    def actions_for(self, forest: Forest, node: PartNode) -> list[NodeAction]:
        """What this kind can do with tree node `node`, as the console's menu entries (empty:
        nothing). By default, from the declaration:

        - a kind with positional options (`split TABLE PARTITION`) acts on a partition (its
          `applies_to` accepts partitions, not their table): when it applies to the node, its
          plan is the parent's with the node as the first positional value. With a second
          positional (`merge TABLE P1 P2`, `rebound TABLE P1 P2`) or a positional list, a
          range partition gives one entry per neighbour, 'with the next' (node, next) and
          'with the previous' (previous, node); a partition without range neighbours gets
          only its own name filled in;
        - any other kind acts on a table: the one `target_for` gives, when it is the node or
          its parent (with the rows it preselects).

        Override it for anything else the kind can prefill for a node."""
        parent = forest.nodes.get(node.parent_oid) if node.parent_oid else None
        positional = [o for o in self.options if o.positional]
        if not positional:
            found = self.target_for(forest, node)
            if found is None or found[0].oid not in (node.oid, node.parent_oid) \
                    or not self.applies_to(forest, found[0]):
                return []
            table = found[0]
            return [NodeAction(self.name, self.title, table, {}, tuple(found[1]),
                               detail=f"of {table.qualified}")]
        if parent is None or not self.applies_to(forest, node):
            return []
        first = positional[0]
        pair = len(positional) > 1 or first.type in ("list", "repeat")
        previous, following = range_neighbours(forest, node) if pair else (None, None)
        if not (previous or following):
            value: Any = [node.qualified] if first.type in ("list", "repeat") \
                else node.qualified
            return [NodeAction(self.name, self.title, parent, {first.name: value},
                               detail=node.qualified)]
        verb = (self.noun or self.name).replace("_", " ")
        out = []
        for a, b, side in ((node, following, "next"), (previous, node, "previous")):
            if a is None or b is None:
                continue
            if len(positional) > 1:
                values: dict[str, Any] = {positional[0].name: a.qualified,
                                          positional[1].name: b.qualified}
            else:
                values = {first.name: [a.qualified, b.qualified]}
            out.append(NodeAction(self.name, f"{verb} with the {side} partition", parent,
                                  values, detail=f"{a.qualified} + {b.qualified}"))
        return out

    def selected(self, plan: Plan) -> list[str]:
        """The selection's values a plan acts on (the status rows it covers), in plan order."""
        seen: list[str] = []
        for step in plan.steps:
            if step.group and step.group not in seen:
                seen.append(step.group)
        return seen

    def consequences(self, plan: Plan) -> list[str]:
        """What the application notices while the plan runs, in plain words (confirmation)."""
        taken = {lk.mode for s in plan.steps for lk in s.locks}
        locks = [m for m in LOCK_MODES if m in taken]  # weakest first
        if not locks:
            return []
        return [f"Locks taken, one step at a time, each under the lock timeout: "
                f"{', '.join(locks)}."]

    def default_request(self, forest: Forest, target: str, config: Config) -> Request:
        return Request({o.name: o.default for o in self.options}, target)

    def request(self, values: dict[str, Any], target: str = "") -> Request:
        """A request from raw front-end values, every option parsed and validated."""
        return Request({o.name: o.convert(values.get(o.name)) for o in self.options}, target)

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config) -> Plan:
        raise NotImplementedError

    def report(self, result: RunResult, plan: Plan) -> list[str]:
        """The lines printed after a successful run (the steps it did are said by default)."""
        done = len(result.done_steps)
        skipped = len(result.already_done_steps)
        lines = [f"{self.noun or self.name}: {plan.title} done in {result.seconds:.1f} s"]
        lines += [f"  {c}" for c in plan.facts.changes]
        lines.append(f"  {done} step(s) done by this run"
                     + (f", {skipped} already done" if skipped else ""))
        return lines


def find_table(forest: Forest, table: str) -> PartNode:
    """The partitioned table `table` ('name' or 'schema.name', as in the other commands)."""
    try:
        node = forest.find(table)
    except (LookupError, ValueError) as exc:
        raise PlanKindError(str(exc)) from None
    if not node.is_partitioned:
        raise PlanKindError(f"{node.qualified} is not a partitioned table")
    return node
