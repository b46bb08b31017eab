"""Regenerate the README screenshots from the demo database.

    python screenshots/make_screenshots.py

Starts (or joins) the demo server with its data laid out around a fixed date, drives the console
headless at 140x40 and saves tree.svg and details.svg next to this script. The load time is hidden
so that two runs on the same data give the same pictures.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("PGPARTS_DEMO_NOW", "2026-11-21")

from tui.app.app import PgpartsApp  # noqa: E402
from tui.app.tree_view import PartitionTree  # noqa: E402
from tui.core.config import Config  # noqa: E402
from tui.core.connection import Target  # noqa: E402
from tui.core.demo import open_demo  # noqa: E402

SIZE = (140, 40)


async def _settle(pilot, predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("the console did not get there in time")
        await pilot.pause(0.05)
    await pilot.pause()


async def _goto(pilot, tree: PartitionTree, oid: int) -> None:
    await tree.reveal(oid)
    await pilot.pause()


async def shoot(dsn: str) -> None:
    app = PgpartsApp(Target(dsn, label="demo"), Config(), read_only=False)
    app.show_load_time = False
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot, lambda: app.catalog_loads >= 1 and not app.catalog_loading)
        forest = app.forest
        assert forest is not None
        tree = app.screen.query_one(PartitionTree)
        balances = forest.find("account_balances")
        weeks = sorted(balances.children, key=lambda n: n.name)
        # a recent, still hash-partitioned week: open it to show its four hash partitions
        week = next((w for w in reversed(weeks) if w.is_partitioned and w.children), weeks[-1])
        await _goto(pilot, tree, week.oid)
        node = tree.node_for(week.oid)
        if node is not None and not node.is_expanded:
            node.expand()
        await _settle(pilot, lambda: tree.node_for(week.oid) is not None
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


def main() -> int:
    handle = open_demo(progress=lambda msg: print(f"demo: {msg}", file=sys.stderr))
    try:
        asyncio.run(shoot(handle.dsn))
    finally:
        handle.stop()
    for name in ("tree.svg", "details.svg"):
        print(HERE / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
