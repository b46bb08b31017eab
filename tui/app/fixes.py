"""The `f` key: preview the plan that fixes the selected table's findings, in the plan screen.

The remedies come from tui.core.plans.remedies (finding code -> plan kind and its options); the
kind is reached through the registry, by name. Findings of a table under the cursor (or of the
partitioned table above a selected partition) are considered; when several remedy kinds apply,
the first is opened and the others are named, to fix after it (`pgparts fix TABLE` plans them
all on the command line).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

from ..core.plans.registry import kind_named
from ..core.plans.remedies import LATER, remedy_for
from .plan_screen import plan_screen_class

if TYPE_CHECKING:
    from .app import PgpartsApp


def also_line(others: list[str], table: str) -> str:
    """The other remedies of the table's findings, for after this one."""
    verb = "applies" if len(others) == 1 else "apply"
    return f"fix: {', '.join(others)} also {verb} to {table}; press f again after this plan " \
           f"has run"


def open_fix(app: PgpartsApp) -> Screen | None:
    node = app.selected_node
    forest = app.forest
    if node is None or forest is None:
        app.notify("fix: select a table with findings in the tree", severity="warning")
        return None
    # the findings are about partitioned tables: the selected one, or the nearest above it
    table = node
    while not app.findings_by_oid.get(table.oid) and table.parent_oid is not None \
            and table.parent_oid in forest.nodes:
        table = forest.nodes[table.parent_oid]
    findings = app.findings_by_oid.get(table.oid, [])
    remedies: dict[str, dict] = {}
    codes: dict[str, list[str]] = {}
    for f in findings:
        remedy = remedy_for(f)
        if remedy is None:
            continue
        values = remedies.setdefault(remedy.kind, dict(remedy.values))
        if values != remedy.values:
            values.clear()  # both index_missing and index_invalid: fix both
        codes.setdefault(remedy.kind, []).append(f.code)
    if not remedies:
        later = [f"{f.code}: {LATER[f.code]}" for f in findings if f.code in LATER]
        app.notify(f"fix: pgparts has no fix for the findings of {table.qualified} yet"
                   + (" (" + "; ".join(later) + ")" if later else "")
                   if findings else f"fix: {table.qualified} has no findings",
                   severity="warning", timeout=6)
        return None
    name, values = next(iter(remedies.items()))
    kind = kind_named(name)
    found = kind.target_for(forest, table)
    if found is None:
        app.notify(f"fix: {kind.title.lower()} does not apply to {table.qualified}",
                   severity="warning")
        return None
    others = [k for k in remedies if k != name]
    if others:
        app.notify(also_line(others, table.qualified), timeout=8)
    title = f"Fix {', '.join(sorted(set(codes[name])))}"
    return plan_screen_class(kind)(kind, found[0], found[1], values, title)
