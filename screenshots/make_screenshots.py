"""Regenerate the README screenshots from the demo database.

    python screenshots/make_screenshots.py

Starts (or joins) the demo server with its data laid out around a fixed date, drives the console
headless at 140x40 and saves tree.svg and details.svg next to this script, then tree-80x24.svg:
the same tree on an 80x24 terminal. The load time is hidden
so that two runs on the same data give the same pictures.
"""

from __future__ import annotations

import sys

from demo_shots import HERE, console, run, settle

from tui.app.tree_view import PartitionTree  # noqa: E402


async def _goto(pilot, tree: PartitionTree, oid: int) -> None:
    await tree.reveal(oid)
    await pilot.pause()


async def shoot(dsn: str) -> None:
    async with console(dsn) as (app, pilot):
        forest = app.forest
        tree = app.screen.query_one(PartitionTree)
        balances = forest.find("account_balances")
        weeks = sorted(balances.children, key=lambda n: n.name)
        # a recent, still hash-partitioned week: open it to show its four hash partitions
        week = next((w for w in reversed(weeks) if w.is_partitioned and w.children), weeks[-1])
        await _goto(pilot, tree, week.oid)
        node = tree.node_for(week.oid)
        if node is not None and not node.is_expanded:
            node.expand()
        await settle(pilot, lambda: tree.node_for(week.oid) is not None
                      and len(tree.node_for(week.oid).children) == len(week.children))
        await _goto(pilot, tree, week.children[0].oid)
        await pilot.pause(0.2)
        app.save_screenshot("tree.svg", path=str(HERE))

        # details of a table with findings: control.payment if present, else the worst one
        payment = next((n for n in forest.roots if n.name == "payment"), None)
        target = payment if payment is not None and app.findings_by_oid.get(payment.oid) else None
        if target is None and app.findings:
            target = forest.nodes.get(app.findings[0].table_oid)
        if target is not None:
            opened = tree.node_for(balances.oid)
            if opened is not None and target.oid != balances.oid:
                opened.collapse()  # room for the table of interest and its partitions
            await pilot.pause()
            await _goto(pilot, tree, target.oid)
            node = tree.node_for(target.oid)
            if node is not None and not node.is_expanded:
                node.expand()
            await pilot.pause(0.2)
        app.save_screenshot("details.svg", path=str(HERE))

    async with console(dsn, size=(80, 24)) as (app, pilot):
        tree = app.screen.query_one(PartitionTree)
        balances = app.forest.find("account_balances")
        weeks = sorted(balances.children, key=lambda n: n.name)
        week = next((w for w in reversed(weeks) if w.is_partitioned and w.children), weeks[-1])
        await _goto(pilot, tree, week.oid)
        await pilot.pause(0.2)
        app.save_screenshot("tree-80x24.svg", path=str(HERE))


if __name__ == "__main__":
    sys.exit(run(shoot, ("tree.svg", "details.svg", "tree-80x24.svg")))
