"""The swap and what follows it: DETACH + ATTACH with a CHECK validated beforehand (so ATTACH
needs no scan), the DEFAULT partition's helper CHECK (so ATTACH does not scan the DEFAULT under
the parent's lock), and dropping the detached original after verifying that every one of its
rows is in its replacement."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ...bounds import BoundValue
from ...catalog import PartNode
from ..engine.model import Estimate, Lock, Statement, Step
from . import markers
from .shadow import changes_since_copy, counter_idents, evidence_sql
from .verify import compare_sql, raise_unless_contained, subset_check

CHECK_NAME = "pgparts_bound_check"
DEFAULT_CHECK_PREFIX = "pgparts_excl_"
# Rough throughput for time estimates (measured by bench/consolidate.py on a 2-core machine:
# copy + index builds + analyze + verification of the account_balances shape).
EST_BYTES_PER_SECOND = 60 * 1024**2


def bound_sql(v: BoundValue) -> sql.Composable:
    if v.special in ("MINVALUE", "MAXVALUE"):
        return sql.SQL(v.special)
    # bound text is what the server printed; re-emit it as a literal, never pasted
    return sql.Literal(v.text)


def default_helper_steps(conn: psycopg.Connection, parent: PartNode, default: PartNode | None,
                    node: PartNode, key: str, bound: Any, old_disp: str,
                    swapped: Any) -> list[Step]:
    """Steps that spare the swap's ATTACH a scan of the DEFAULT partition under the parent's
    ACCESS EXCLUSIVE lock (with 1 million rows in it: 58-93 ms measured, 2-9 ms with these
    steps). ATTACH skips the scan when the DEFAULT's constraints imply it holds no row of the
    new bound: a CHECK stating exactly that, added NOT VALID (ACCESS EXCLUSIVE on the DEFAULT
    for an instant), then validated (SHARE UPDATE EXCLUSIVE: writers carry on while it scans),
    each in its own transaction before the swap; removed after the swap in a short transaction
    of its own. A partitioned DEFAULT is left alone (the CHECK would have to be proven on each
    of its partitions)."""
    if default is None or default.relkind != "r":
        return []
    name = f"{DEFAULT_CHECK_PREFIX}{node.oid}"
    ident = sql.Identifier(name)
    col = sql.Identifier(key)
    # the negation of the new partition's constraint, in the form PostgreSQL derives when it
    # checks the DEFAULT (so the implication is proven by plain matching)
    arms: list[sql.Composable] = [sql.SQL("{} IS NULL").format(col)]
    if bound.lower and bound.lower[0].special != "MINVALUE":
        arms.append(sql.SQL("{} < {}").format(col, bound_sql(bound.lower[0])))
    if bound.upper and bound.upper[0].special != "MAXVALUE":
        arms.append(sql.SQL("{} >= {}").format(col, bound_sql(bound.upper[0])))
    expr = sql.SQL(" OR ").join(arms)
    disp = default.qualified
    oid = default.oid

    def state(c: psycopg.Connection) -> bool | None:
        row = c.execute("SELECT convalidated FROM pg_catalog.pg_constraint"
                        " WHERE conrelid = %s AND conname = %s AND contype = 'c'",
                        (oid, name)).fetchone()
        return None if row is None else bool(row[0])

    add = Step(
        title=f"Exclude {old_disp}'s range from {disp}",
        explanation=(
            f"Add a CHECK to the DEFAULT partition saying it holds no row of this bound, NOT "
            f"VALID: no scan, an instant of ACCESS EXCLUSIVE on {disp} (under lock_timeout, "
            f"retried). With it validated, the swap's ATTACH does not scan {disp} under the "
            f"parent's lock."),
        statements=[Statement(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID")
                              .format(default.ident, ident, expr), "lock")],
        locks=[Lock("ACCESS EXCLUSIVE", disp, "an instant: no scan")],
        retry="step", statement_timeout_seconds=10.0, estimate=Estimate(0, 0, 0.01),
        done=lambda c: state(c) is not None or swapped(c), group=old_disp)
    validate = Step(
        title=f"Validate the CHECK on {disp}",
        explanation=(
            f"Scan {disp} once to validate the CHECK, under SHARE UPDATE EXCLUSIVE: reads and "
            f"writes of the DEFAULT continue (its rows of this range would be routed to the "
            f"{old_disp} partition anyway, so this cannot fail)."),
        statements=[Statement(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
            default.ident, ident), "maintenance")],
        locks=[Lock("SHARE UPDATE EXCLUSIVE", disp, "blocks no reader or writer")],
        estimate=Estimate(0, 0, default.total_bytes / EST_BYTES_PER_SECOND),
        done=lambda c: bool(state(c)) or swapped(c), group=old_disp)
    remove = Step(
        title=f"Remove the helper CHECK from {disp}",
        explanation=(
            f"The partition bound now keeps these rows out of {disp}. Dropping the CHECK takes "
            f"ACCESS EXCLUSIVE on {disp} for an instant (a lock timeout retries it)."),
        statements=[Statement(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
            default.ident, ident), "lock")],
        locks=[Lock("ACCESS EXCLUSIVE", disp, "an instant")],
        retry="step", statement_timeout_seconds=10.0, estimate=Estimate(0, 0, 0.01),
        done=lambda c: state(c) is None and swapped(c), group=old_disp)
    return [add, validate, remove]


def drop_detached_step(conn: psycopg.Connection, old: sql.Identifier, old_disp: str, schema: str,
               new_name: str, new_disp: str, cols: list[str], nbytes: int, done: Any,
               old_oid: int, fast: bool, refusals: dict[int, tuple[str, str, str]]) -> Step:
    new = sql.Identifier(schema, new_name)
    seq, count_fn = counter_idents(schema, old_oid)
    full_sql = compare_sql(old, new, cols, fast)
    subset = subset_check(old, new, cols, fast, old_disp, new_disp, old_oid, refusals)

    def check(row: Any, c: psycopg.Connection) -> str:
        why = changes_since_copy(row, c, seq)
        if not why:
            return (f"{old_disp} and {new_disp} unchanged since the build verified them equal "
                    f"(no row write counted; same files, columns and counter triggers): every "
                    f"row of {old_disp} is in {new_disp}")
        return f"{subset(c.execute(full_sql).fetchone(), c)} ({why})"

    return Step(
        title=f"Drop the detached {old_disp}",
        explanation=(
            f"Check that every row of the detached original is in {new_disp}: nothing written "
            f"to either table since the build verified them equal (the change counter and the "
            f"digest of files, columns and triggers), or else equal count and checksum, or if "
            f"the live partition changed since the swap, a multiset difference of row hashes. "
            f"Then drop it. The parent is not locked: the table is no longer a partition. If "
            f"rows are missing, it is kept and reported (once) with what to do."),
        statements=[
            Statement(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(old), "lock",
                      note="the detached original; the application no longer uses it"),
            Statement(evidence_sql(old_oid, schema, new_name), "verify",
                      note="every row of the original must be in the consolidated partition: "
                           "nothing changed since the verified copy, or equal checksums, or "
                           "no row missing from a multiset difference (the script always "
                           "computes the difference)",
                      check=check,
                      script=raise_unless_contained(conn, old, new, cols, fast, old_disp,
                                                     new_disp)),
            Statement(markers.guard_sql(conn, create=False),
                      note="pgparts' registry is still only yours"),
            Statement(sql.SQL("DROP TABLE {}").format(old)),
            Statement(sql.SQL("DELETE FROM {} WHERE role = {} AND objid = {}").format(
                markers.REGISTRY, sql.Literal(markers.ORIGINAL_ROLE), sql.Literal(old_oid))),
        ],
        locks=[Lock("ACCESS EXCLUSIVE", old_disp, "detached: blocks nothing of the parent"),
               Lock("ACCESS SHARE", new_disp, "blocks nothing")],
        estimate=Estimate(0, -nbytes if nbytes else 0, nbytes / EST_BYTES_PER_SECOND * 0.1),
        done=done, verify_note="no row of the original is missing from the new partition",
        group=old_disp)
