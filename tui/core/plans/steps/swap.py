"""The swap and what follows it: DETACH + ATTACH with a CHECK validated beforehand (so ATTACH
needs no scan), the DEFAULT partition's helper CHECK (so ATTACH does not scan the DEFAULT under
the parent's lock), and dropping the detached original after verifying that every one of its
rows is in its replacement."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from ...bounds import BoundValue
from ...catalog import PartNode
from ...names import display_name
from ..engine.model import Estimate, Lock, Statement, Step, VerificationFailed
from . import markers
from .moves import ForeignKey, name_holders
from .shadow import COUNT_TRIGGER, TRIGGER_NAME, changes_since_copy, counter_idents, evidence_sql
from .verify import compare_sql, raise_unless_attached, raise_unless_contained, subset_check

CHECK_NAME = "pgparts_bound_check"
DEFAULT_CHECK_PREFIX = "pgparts_excl_"
# Rough throughput for time estimates (measured by bench/consolidate.py on a 2-core machine:
# copy + index builds + analyze + verification of the account_balances shape).
EST_BYTES_PER_SECOND = 60 * 1024**2


def no_longer_partition_of(parent_oid: int, oid: int) -> Any:
    """A step's done(): `oid` is not (or no longer) a partition of `parent_oid` (detached,
    dropped, or finalized), read from pg_inherits."""
    def done(conn: psycopg.Connection) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_inherits"
            " WHERE inhparent = %s AND inhrelid = %s)", (parent_oid, oid)).fetchone()
        return not (row and row[0])
    return done


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


def _rel_oid(conn: psycopg.Connection, schema: str, name: str) -> int | None:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
    return int(row[0]) if row else None


def swap_step(conn: psycopg.Connection, *, parent: PartNode, node: PartNode, new_name: str,
              for_values: sql.Composable, mirror_fn: sql.Identifier, seq: sql.Identifier,
              count_fn: sql.Identifier, keep: bool, default: PartNode | None,
              default_checked: bool, fkeys: Sequence[ForeignKey],
              validate_after: Sequence[ForeignKey], lock_timeout_seconds: float,
              done: Any, unit: str, seconds: float) -> Step:
    """DETACH `node`, ATTACH `new_name` with the same bound in one short transaction (no scan:
    a validated CHECK implies the bound, and with `default_checked` the DEFAULT's helper CHECK
    excludes it), then drop the bound CHECK and the mirror trigger; with `keep`, also the
    change counter (a later drop compares in full). Retried as a whole on a lock timeout.

    `fkeys`, the foreign keys referencing the parent: DETACH refuses a partition whose rows
    are referenced ("removing partition ... violates foreign key constraint"), even though the
    new table holds the same rows. As in the move kinds' swap (moves.py), the keys are dropped
    before the DETACH and re-created NOT VALID after the ATTACH, in the same transaction, so
    no write ever sees the table without them; validate_key_steps() checks the referencing
    rows after the swap, writers carrying on. The referencing tables are locked before the
    parent (the order their writers lock), and the step gives way to writers that lock the
    other way round (runner.py, "give-way"). `validate_after`, those of them validated
    before (a key the user left NOT VALID stays so), are recorded in the registry entry of the
    week, so that a run stopped before their validation still finishes it."""
    parent_disp = parent.qualified
    old_disp = node.qualified
    old = node.ident
    new = sql.Identifier(node.schema, new_name)
    new_disp = display_name(node.schema, new_name)
    fn = mirror_fn
    swap_locks = [
        Lock("ACCESS EXCLUSIVE", parent_disp,
             "every read and write of the table waits: from DETACH to COMMIT, milliseconds"),
        Lock("ACCESS EXCLUSIVE", old_disp, "detached"),
        Lock("ACCESS EXCLUSIVE", new_disp, "attached"),
    ]
    if default is not None:
        swap_locks.append(Lock(
            "ACCESS EXCLUSIVE", default.qualified,
            "the DEFAULT partition; not scanned: its validated CHECK excludes this range"
            if default_checked else "the DEFAULT partition; ATTACH scans it (partitioned DEFAULT)"))
    refs = list(dict.fromkeys((fk.table_disp, fk.table.as_string(conn)) for fk in fkeys))
    swap_locks += [Lock("ACCESS EXCLUSIVE", disp, "its readers and writers, for the swap (its "
                        "key on the table is dropped and re-created NOT VALID)")
                   for disp, _q in refs]
    held = name_holders(fkeys)
    swap_stmts = [
        Statement(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(q)), "lock",
                  note=f"{disp}: its key on the table is dropped and re-created below")
        for disp, q in refs]
    if refs:
        swap_stmts.append(Statement(
            sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(parent.ident), "lock",
            note="then the parent, in the order writers lock; held to COMMIT"))
        swap_stmts.append(Statement(sql.SQL("SET CONSTRAINTS ALL IMMEDIATE"),
                                    note="no deferred key check left pending for the ALTERs"))
    swap_stmts += [
        Statement(fk.drop_sql(i in held),
                  note=f"{fk.table_disp}: its key would stop the DETACH (re-created NOT VALID "
                       f"below)" + ("; a placeholder CHECK holds its name meanwhile"
                                    if i in held else ""))
        for i, fk in enumerate(fkeys)]
    swap_stmts += [
        Statement(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent.ident, old),
                  "lock", note="ACCESS EXCLUSIVE on the parent from here to COMMIT"),
        Statement(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
            parent.ident, new, for_values), "lock",
            note="no validation scan: the CHECK implies the bound; the indexes are adopted"
                 + ("; the DEFAULT's CHECK excludes the bound" if default_checked else "")),
        Statement(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            new, sql.Identifier(CHECK_NAME)), note="the partition bound now enforces it"),
        *[Statement(fk.add_sql(parent.ident, i in held),
                    note=f"{fk.table_disp}: enforced for every new write from the commit on; "
                         f"validated after the swap" + ("; in place of its placeholder"
                                                         if i in held else ""))
          for i, fk in enumerate(fkeys)],
        Statement(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(TRIGGER_NAME), old)),
        Statement(sql.SQL("DROP FUNCTION {}()").format(fn)),
    ]
    if keep:
        # the drop comes later, if ever: no trigger stays on the live partition meanwhile, and
        # that drop compares the tables in full
        swap_stmts += [
            Statement(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(COUNT_TRIGGER), t), note="the change counter")
            for t in (new, old)]
        swap_stmts += [Statement(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(count_fn)),
                       Statement(sql.SQL("DROP SEQUENCE IF EXISTS {}").format(seq)),
                       Statement(sql.SQL(
                           "DELETE FROM {} WHERE role IN ({}, {}) AND source_oid = {}").format(
                           markers.REGISTRY, sql.Literal(markers.COUNTER_FUNCTION_ROLE),
                           sql.Literal(markers.COUNTER_SEQUENCE_ROLE), sql.Literal(node.oid)))]
    if validate_after:
        swap_stmts.append(Statement(sql.SQL(
            "UPDATE {} SET note = {} WHERE role = {} AND objid = {}").format(
            markers.REGISTRY, sql.Literal(json.dumps([fk.to_json() for fk in validate_after])),
            sql.Literal(markers.ORIGINAL_ROLE), sql.Literal(node.oid)),
            note="the keys to validate after the swap (a stopped run finishes it)"))
    swap_stmts.append(
        Statement(sql.SQL("COMMENT ON TABLE {} IS {}").format(old, sql.Literal(
            f"pgparts: detached original, replaced by {new_disp} (a note for people; pgparts "
            f"trusts only its registry)"))))

    def check_attached(c: psycopg.Connection) -> str:
        oid = _rel_oid(c, node.schema, new_name)
        row = c.execute(
            "SELECT pg_get_expr(n.relpartbound, 0),"
            " EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = %s),"
            " EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = n.oid AND i.inhparent = %s)"
            " FROM pg_class n WHERE n.oid = %s",
            (node.oid, parent.oid, oid)).fetchone()
        if not row or row[0] != node.bound_text or row[1] or not row[2]:
            raise VerificationFailed(f"{new_disp} is not attached with {node.bound_text}")
        return f"{new_disp} attached {node.bound_text}; {old_disp} detached"

    swap = Step(
        title=f"Swap {old_disp} for {new_disp}",
        explanation=(
            f"In one short transaction: detach {old_disp}, attach {new_disp} with the same "
            f"bound, drop the helper CHECK and the mirror trigger. The parent is locked from "
            f"DETACH to COMMIT only. On a lock timeout the whole transaction is rolled back "
            f"and retried after a pause, so no lock is held while waiting."
            + (" The tables whose foreign keys reference the parent are locked first; their "
               "keys are dropped before the DETACH and re-created NOT VALID after the ATTACH "
               "(validated after the swap, writers carrying on). Each lock wait ends at "
               "lock_timeout or a fifth of deadlock_timeout, so their writers are never "
               "aborted." if refs else "")),
        statements=swap_stmts, locks=swap_locks, retry="give-way" if refs else "step",
        statement_timeout_seconds=max(10.0, lock_timeout_seconds * 3),
        estimate=Estimate(0, 0, seconds), done=done, verify=check_attached,
        verify_note=f"the new table is attached with the {unit}'s bound",
        hold_from=len(refs) + 1 if refs else 1,
        group=old_disp,
        script_verify=raise_unless_attached(conn, parent.oid, node.oid, node.schema, new_name,
                                             node.bound_text or "", new_disp))
    return swap
