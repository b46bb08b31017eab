"""The retention kind: detach (default) or drop the partitions whose upper bound is older than
the retention period; detached ones can move to an archive schema.

- Foreign keys of other tables pointing into the table are named at plan time; at apply time
  each one gets an EXISTS (a referencing row whose key is in the partition) before the detach
  or drop, and a partition with referencing rows is refused, naming the referencing table and
  the constraint. (DETACH and DROP would fail on them anyway, with a less useful message.)
- Detach uses `DETACH PARTITION ... CONCURRENTLY` when the server allows it (PostgreSQL 14 on,
  no DEFAULT partition): SHARE UPDATE EXCLUSIVE on the parent, readers and writers go on; it
  cannot run in a transaction, so its step is a statement of its own. A concurrent detach that
  was interrupted leaves the partition "detach pending"; the next plan finishes it with
  `DETACH ... FINALIZE`. Otherwise a plain DETACH, ACCESS EXCLUSIVE on the parent for an
  instant, in a short transaction retried under the lock timeout.
- Drop: `DROP TABLE` of the attached partition (and its sub-partitions): ACCESS EXCLUSIVE on
  the parent for an instant. Its rows are kept nowhere else: the terminal asks for the table's
  name.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from ...catalog import Forest, PartNode
from ...config import Config
from ...humanfmt import plural
from ...names import check_identifier_length, display_name, parse_qualified_name
from ...units import parse_age
from ..engine.model import (
    Destroyed,
    Estimate,
    Lock,
    Plan,
    PlanFacts,
    Statement,
    Step,
    VerificationFailed,
)
from ..kind import Option, PlanKind, PlanKindError, Request, find_table
from ..steps.swap import no_longer_partition_of
from .lifecycle import key_of, now_utc, policy_of, ranged_children, refuse_script, show


def _in_schema(oid: int, schema: str) -> Any:
    def done(conn: psycopg.Connection) -> bool:
        row = conn.execute(
            "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.oid = %s", (oid,)).fetchone()
        return row is None or row[0] == schema
    return done


def _from_minvalue_ending_by(node: PartNode, cutoff: datetime) -> bool:
    b = node.bound
    if b is None or b.kind != "range" or not b.lower or not b.upper:
        return False
    upper = b.upper[0].as_datetime()
    return b.lower[0].special == "MINVALUE" and upper is not None and upper <= cutoff


def _gone(oid: int) -> Any:
    def done(conn: psycopg.Connection) -> bool:
        return conn.execute("SELECT FROM pg_catalog.pg_class WHERE oid = %s",
                            (oid,)).fetchone() is None
    return done


def referencing_fks(conn: psycopg.Connection, root: PartNode) -> list[dict[str, Any]]:
    """Foreign keys of tables outside the tree that reference the partitioned table (the
    top-level constraint only, not its clones on each partition)."""
    rows = conn.execute(
        "SELECT con.conname::text, n.nspname::text, c.relname::text,"
        " (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey)"
        "   WITH ORDINALITY k(attnum, ord) JOIN pg_catalog.pg_attribute a"
        "   ON a.attrelid = con.conrelid AND a.attnum = k.attnum),"
        " (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey)"
        "   WITH ORDINALITY k(attnum, ord) JOIN pg_catalog.pg_attribute a"
        "   ON a.attrelid = con.confrelid AND a.attnum = k.attnum)"
        " FROM pg_catalog.pg_constraint con"
        " JOIN pg_catalog.pg_class c ON c.oid = con.conrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE con.contype = 'f' AND con.confrelid = %s AND con.conparentid = 0"
        " ORDER BY 2, 3, 1", (root.oid,)).fetchall()
    return [{"name": r[0], "schema": r[1], "table": r[2], "columns": list(r[3]),
             "ref_columns": list(r[4])} for r in rows]


def _fk_statements(conn: psycopg.Connection, fks: list[dict[str, Any]], part: PartNode
                   ) -> list[Statement]:
    out = []
    for fk in fks:
        table = display_name(fk['schema'], fk['table'])
        refusal = (f"refused {part.qualified}: rows of {table} reference it (foreign key "
                   f"{fk['name']}); delete or re-point them first")

        def check(row: Any, _c: psycopg.Connection, refusal: str = refusal) -> str:
            if row and row[0]:
                raise VerificationFailed(refusal)
            return "no referencing row"

        match = sql.SQL(" AND ").join(
            sql.SQL("r.{} = p.{}").format(sql.Identifier(a), sql.Identifier(b))
            for a, b in zip(fk["columns"], fk["ref_columns"], strict=True))
        exists = sql.SQL("SELECT EXISTS (SELECT FROM {} r JOIN {} p ON {})").format(
            sql.Identifier(fk["schema"], fk["table"]), part.ident, match)
        out.append(Statement(
            exists, "verify",
            note=f"refuse if rows of {table} reference {part.qualified} ({fk['name']})",
            check=check, script=refuse_script(conn, exists, refusal)))
    return out


def _schema_name(text: str) -> str:
    """As typed in SQL (and as [policy] retention_schema reads it): unquoted folds to lower
    case, quoted keeps its case."""
    schema, name = parse_qualified_name(text)
    if schema is not None:
        raise ValueError(f"expected a schema name, got {text!r}")
    check_identifier_length(name)
    return name


class Retention(PlanKind):
    name = "retention"
    title = "Detach or drop expired partitions"
    summary = "detach or drop the partitions older than the retention period"
    noun = "retention"
    table_help = "the table RANGE partitioned by time ('name' or 'schema.name')"
    options = (
        Option("older_than", "str", metavar="AGE", parse=parse_age,
               help="partitions whose upper bound is older than AGE, e.g. 12weeks (default: "
                    "the table's [policy] retention)"),
        Option("action", "choice", choices=("detach", "drop"),
               help="detach (default: the policy's retention_action, else detach) or drop"),
        Option("archive_schema", "str", metavar="SCHEMA", parse=_schema_name,
               help="move detached partitions to this schema (default: the policy's "
                    "retention_schema)"),
    )

    def applies_to(self, forest: Forest, node: PartNode) -> bool:
        try:
            key_of(node, self.name)
        except PlanKindError:
            return False
        return bool(ranged_children(node))

    def build(self, conn: psycopg.Connection, forest: Forest, status: Any, request: Request,
              config: Config, now: datetime | None = None) -> Plan:
        root = find_table(forest, request.target)
        key_of(root, self.name)
        policy = policy_of(forest, root, config)
        older = request.get("older_than") or (policy.retention if policy else None)
        if older is None:
            raise PlanKindError(f"say how old: --older-than AGE (or retention in "
                                f"[policy.\"{root.qualified}\"])")
        action = request.get("action") or (policy.retention_action if policy and
                                           policy.retention else None) or "detach"
        archive = request.get("archive_schema")
        if archive is None and policy is not None and request.get("action") in (None, "detach"):
            archive = policy.retention_schema
        if archive is not None and action == "drop":
            raise PlanKindError("--archive-schema moves detached partitions; --action is drop")
        if archive is not None and conn.execute(
                "SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s",
                (archive,)).fetchone() is None:
            raise PlanKindError(f"the archive schema {archive} does not exist; create it first")
        now = now or now_utc()
        cutoff = now - older
        # an interrupted concurrent detach first: another one waits for it to be finalized
        expired = sorted((r for r in ranged_children(root) if r.upper <= cutoff),
                         key=lambda r: (not r.node.detach_pending, r.lower))
        fks = referencing_fks(conn, root)
        concurrent = (root.default_partition_oid is None
                      and conn.info.server_version >= 140000)
        steps: list[Step] = []
        changes: list[str] = []
        destroys: list[Destroyed] = []
        for r in expired:
            p = r.node
            group = p.qualified
            range_text = f"[{show(r.lower)}, {show(r.upper)})"
            checks = _fk_statements(conn, fks, p)
            if action == "drop":
                steps.append(Step(
                    title=f"Drop {p.qualified}",
                    explanation=f"DROP TABLE {p.qualified} ({range_text}) with its rows"
                                + (" after checking the foreign keys that point into it"
                                   if checks else ""),
                    statements=[*checks, Statement(sql.SQL("DROP TABLE {}").format(p.ident),
                                                   note=f"drop {p.qualified}")],
                    locks=[Lock("ACCESS EXCLUSIVE", root.qualified,
                                "an instant: readers and writers of the table wait for it"),
                           Lock("ACCESS EXCLUSIVE", p.qualified, "")],
                    retry="step", statement_timeout_seconds=30.0,
                    estimate=Estimate(0, 0, 0.05), done=_gone(p.oid), group=group))
                changes.append(f"{p.qualified} dropped ({range_text})")
                destroys.append(Destroyed("table", p.qualified))
                continue
            if p.detach_pending:
                statements = [Statement(sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE")
                                        .format(root.ident, p.ident),
                                        note="finish the interrupted concurrent detach")]
                steps.append(Step(
                    title=f"Finish detaching {p.qualified}",
                    explanation="an earlier DETACH ... CONCURRENTLY was interrupted; FINALIZE "
                                "completes it",
                    statements=statements,
                    locks=[Lock("SHARE UPDATE EXCLUSIVE", root.qualified,
                                "other DDL on it waits; reads and writes go on"),
                           Lock("ACCESS EXCLUSIVE", p.qualified, "")],
                    transactional=False, done=no_longer_partition_of(root.oid, p.oid), group=group))
            elif concurrent:
                steps.append(Step(
                    title=f"Detach {p.qualified}",
                    explanation=f"DETACH PARTITION {p.qualified} CONCURRENTLY ({range_text}): "
                                f"readers and writers of {root.qualified} go on; it waits for "
                                f"the transactions that saw the partition",
                    statements=[*checks, Statement(sql.SQL(
                        "ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                        root.ident, p.ident), note=f"detach {p.qualified}")],
                    locks=[Lock("SHARE UPDATE EXCLUSIVE", root.qualified,
                                "other DDL on it waits; reads and writes go on"),
                           Lock("ACCESS EXCLUSIVE", p.qualified, "at the end")],
                    transactional=False, done=no_longer_partition_of(root.oid, p.oid),
                    group=group))
            else:
                steps.append(Step(
                    title=f"Detach {p.qualified}",
                    explanation=f"DETACH PARTITION {p.qualified} ({range_text}); not "
                                f"CONCURRENTLY: "
                                + ("the table has a DEFAULT partition"
                                   if root.default_partition_oid else
                                   "the server is older than PostgreSQL 14"),
                    statements=[*checks, Statement(sql.SQL(
                        "ALTER TABLE {} DETACH PARTITION {}").format(root.ident, p.ident),
                        note=f"detach {p.qualified}")],
                    locks=[Lock("ACCESS EXCLUSIVE", root.qualified,
                                "an instant: readers and writers of the table wait for it"),
                           Lock("ACCESS EXCLUSIVE", p.qualified, "")],
                    retry="step", statement_timeout_seconds=30.0,
                    estimate=Estimate(0, 0, 0.05),
                    done=no_longer_partition_of(root.oid, p.oid), group=group))
            changes.append(f"{p.qualified} detached ({range_text})"
                           + (f", moved to schema {archive}" if archive else ""))
            if archive is not None and archive != p.schema:
                moved = [n for n in p.walk() if n.schema != archive]
                for n in moved:
                    if conn.execute(
                            "SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
                            " ON n.oid = c.relnamespace WHERE n.nspname = %s"
                            " AND c.relname = %s", (archive, n.name)).fetchone() is not None:
                        raise PlanKindError(f"{archive} already has a relation named {n.name}; "
                                            f"cannot move {n.qualified} there")
                steps.append(Step(
                    title=f"Move {p.qualified} to {archive}",
                    explanation=f"ALTER TABLE ... SET SCHEMA {archive} for the detached table"
                                + (f" and its {plural(len(moved) - 1, 'sub-partition')}"
                                   if len(moved) > 1 else ""),
                    statements=[Statement(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                        n.ident, sql.Identifier(archive)), note=f"archive {n.qualified}")
                        for n in moved],
                    locks=[Lock("ACCESS EXCLUSIVE", p.qualified, "it is detached: nobody "
                                                                 "reaches it through the parent")],
                    retry="step", statement_timeout_seconds=10.0,
                    done=_in_schema(p.oid, archive), group=group))
        verb = "drop" if action == "drop" else "detach"
        age = show(cutoff)
        # a partition from MINVALUE holds whatever came before the table's first period: it is
        # never expired by age, but the summary must not claim no partition ends before
        open_ended = [c for c in root.children if _from_minvalue_ending_by(c, cutoff)]
        summary = ([f"{verb} {plural(len(expired), 'partition')} of {root.qualified} ending "
                    f"before {age}"] if expired else
                   [f"no partition of {root.qualified} that retention may remove ends before "
                    f"{age}" if open_ended else
                    f"no partition of {root.qualified} ends before {age}"])
        if open_ended:
            summary.append(
                f"{', '.join(c.qualified for c in open_ended)} "
                f"{'ends' if len(open_ended) == 1 else 'end'} before {age} but "
                f"{'starts' if len(open_ended) == 1 else 'start'} at MINVALUE: never removed "
                f"by retention (it may hold rows of any age)")
        notes = [f"before each {verb}, the run checks foreign key {fk['name']} of "
                 f"{display_name(fk['schema'], fk['table'])} for rows pointing into the partition"
                 for fk in fks]
        if expired and action == "detach":
            notes.append("DETACH ... CONCURRENTLY" if concurrent else
                         "plain DETACH (ACCESS EXCLUSIVE on the parent for an instant)")
        return Plan(kind=self.name, title=f"{verb} {plural(len(expired), 'partition')} of "
                                          f"{root.qualified}",
                    target=root.qualified, target_oid=root.oid, steps=steps,
                    summary=summary,
                    facts=PlanFacts(changes=changes, destroys=destroys, notes=notes,
                                    extra={"cutoff": cutoff.isoformat(), "action": action,
                                           "archive_schema": archive,
                                           "referencing_fks": fks}),
                    details={"plan_id": uuid.uuid4().hex},
                    lock_timeout_seconds=config.plans.lock_timeout_seconds)
