"""Building a table beside a live one: the change counter (a sequence bumped by row triggers on
both tables) and the digest of what bypasses row triggers, recorded with the copy, which prove
later that nothing changed either table since the copy was verified; and their removal.
Every catalog object is qualified: the exported script may run under any search_path."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..engine.model import Estimate, Lock, Statement, Step
from . import markers

COUNT_TRIGGER = "pgparts_changes"
TRIGGER_NAME = "pgparts_mirror"


# -- the change counter: proof that nothing changed since the copy was verified ----------------
def counter_name(week_oid: int) -> str:
    return f"pgparts_changes_{week_oid}"


def counter_idents(schema: str, week_oid: int) -> tuple[sql.Identifier, sql.Identifier]:
    """The counter sequence and its trigger function, named after the original week's oid
    (kept by the detached original, so a re-run finds them)."""
    return (sql.Identifier(schema, counter_name(week_oid)),
            sql.Identifier(schema, f"pgparts_count_{week_oid}"))


def rels_sql(old_oid: int, schema: str, new_name: str) -> sql.Composed:
    """The original week, its partitions (recursively) and the copy, as a recursive CTE."""
    return sql.SQL(
        "WITH RECURSIVE rels(oid) AS ("
        "SELECT {old}::pg_catalog.oid"
        " UNION ALL SELECT c.oid FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {new}"
        " UNION ALL SELECT i.inhrelid FROM pg_catalog.pg_inherits i"
        " JOIN rels r ON i.inhparent = r.oid)").format(
        old=sql.Literal(old_oid), schema=sql.Literal(schema), new=sql.Literal(new_name))


def digest_sql(old_oid: int, schema: str, new_name: str) -> sql.Composed:
    """A digest of what can change rows without firing a row trigger, over the original week,
    its partitions and the copy: each relation's file node (TRUNCATE, a rewrite by ALTER ...
    TYPE, VACUUM FULL), the set of relations (a partition attached or detached), the columns,
    and the counter triggers' catalog rows (DISABLE / ENABLE TRIGGER updates the row, so its
    xmin changes). Our own swap (DETACH / ATTACH) and ANALYZE leave it unchanged."""
    return sql.SQL(
        "{rels} SELECT pg_catalog.md5(coalesce("
        "pg_catalog.string_agg(x, ',' ORDER BY x COLLATE \"C\"), '')) FROM ("
        " SELECT pg_catalog.concat_ws(':', 'r', c.oid, c.relkind, c.relfilenode)"
        " FROM pg_catalog.pg_class c JOIN rels r ON r.oid = c.oid"
        " UNION ALL SELECT pg_catalog.concat_ws(':', 'a', a.attrelid, a.attnum, a.attname,"
        " a.atttypid, a.atttypmod, a.attcollation, a.attisdropped)"
        " FROM pg_catalog.pg_attribute a JOIN rels r ON r.oid = a.attrelid WHERE a.attnum > 0"
        " UNION ALL SELECT pg_catalog.concat_ws(':', 't', t.tgrelid, t.tgname, t.tgenabled,"
        " t.xmin) FROM pg_catalog.pg_trigger t JOIN rels r ON r.oid = t.tgrelid"
        " WHERE t.tgname = {trg}) d(x)").format(
        rels=rels_sql(old_oid, schema, new_name), trg=sql.Literal(COUNT_TRIGGER))


def registered_sql(role: str, source_oid: int) -> sql.Composed:
    """The oid pgparts recorded for a role of the week's consolidation (NULL when none)."""
    return sql.SQL(
        "(SELECT r.objid FROM {reg} r WHERE r.role = {role} AND r.source_oid = {src}"
        " ORDER BY r.created_at DESC LIMIT 1)").format(
        reg=markers.REGISTRY, role=sql.Literal(role), src=sql.Literal(source_oid))


def evidence_sql(old_oid: int, schema: str, new_name: str) -> sql.Composed:
    """(digest now, the digest recorded by the build, whether the counter pgparts recorded
    exists): read by changes_since_copy. Only the registry is believed, never a comment."""
    new_oid = sql.SQL(
        "(SELECT c.oid FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {new})").format(
        schema=sql.Literal(schema), new=sql.Literal(new_name))
    return sql.SQL(
        "SELECT ({digest}),"
        " (SELECT r.digest FROM {reg} r WHERE r.role = {role} AND r.source_oid = {old}"
        "  AND r.objid = {new_oid}),"
        " EXISTS (SELECT FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {seq} AND c.relkind = 'S'"
        " AND c.oid = {seq_oid})").format(
        digest=digest_sql(old_oid, schema, new_name), reg=markers.REGISTRY,
        role=sql.Literal(markers.CONSOLIDATED_ROLE), old=sql.Literal(old_oid), new_oid=new_oid,
        schema=sql.Literal(schema), seq=sql.Literal(counter_name(old_oid)),
        seq_oid=registered_sql(markers.COUNTER_SEQUENCE_ROLE, old_oid))


def changes_since_copy(row: Any, conn: psycopg.Connection, seq: sql.Identifier) -> str:
    """'' when nothing can have changed the week or the copy since the build verified them
    equal, else why the tables must be compared again.

    The build verified the copy against the week under a lock that kept every writer out, and
    in the same transaction installed ALWAYS triggers (they fire under session_replication_role
    = replica too) that bump the counter before any row of the week or the copy is inserted,
    updated or deleted. The counter is a sequence: nextval is never rolled back, so a write that
    aborted still counts (we compare again, needlessly but safely). What bypasses row triggers
    shows in the digest, recorded in pgparts' registry by the build. A write in flight when this
    is read either already bumped the counter (BEFORE triggers), or is not committed, which a
    snapshot-based comparison would not see either."""
    digest, recorded, has_counter = row
    if not has_counter:
        return "no change counter"
    called, last = conn.execute(sql.SQL("SELECT is_called, last_value FROM {}").format(seq)
                                ).fetchone()
    if called:
        return f"{last:,} row write(s) counted since the copy"
    if not recorded or recorded != digest:
        return "files, partitions, columns or counter triggers changed since the copy"
    return ""


def counter_cleanup_sql(conn: psycopg.Connection, schema: str, new_name: str,
                         week_oid: int) -> sql.Composed:
    """Remove the change counter pgparts recorded for the week: its trigger from the copy (only
    if it is there: DROP TRIGGER takes ACCESS EXCLUSIVE on the table even with IF EXISTS) and
    from a kept original, its function and its sequence, each only when it is the object the
    registry names (same oid), then the registry's rows. A look-alike is never touched."""
    seq, count_fn = counter_idents(schema, week_oid)
    body = sql.SQL(
        "DECLARE\n  fn pg_catalog.oid := {fn_oid};\n  sq pg_catalog.oid := {seq_oid};\n"
        "BEGIN\n"
        "  IF EXISTS (SELECT FROM pg_catalog.pg_trigger t"
        " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {new_name} AND t.tgname = {trg_name}"
        " AND t.tgfoid = fn) THEN\n"
        "    DROP TRIGGER {trg} ON {new};\n"
        "  END IF;\n"
        "  IF EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = {week}"
        " AND t.tgname = {trg_name} AND t.tgfoid = fn AND t.tgparentid = 0) THEN\n"
        "    EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', {trg_name},"
        " {week}::pg_catalog.regclass);\n"
        "  END IF;\n"
        "  IF EXISTS (SELECT FROM pg_catalog.pg_proc p"
        " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE p.oid = fn AND n.nspname = {schema} AND p.proname = {fn_name}) THEN\n"
        "    DROP FUNCTION {fn}();\n"
        "  END IF;\n"
        "  IF EXISTS (SELECT FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = sq AND n.nspname = {schema} AND c.relname = {seq_name}"
        " AND c.relkind = 'S') THEN\n"
        "    DROP SEQUENCE {seq};\n"
        "  END IF;\n"
        "  DELETE FROM {reg} WHERE role IN ({fn_role}, {seq_role}) AND source_oid = {week};\n"
        "END").format(
        fn_oid=registered_sql(markers.COUNTER_FUNCTION_ROLE, week_oid),
        seq_oid=registered_sql(markers.COUNTER_SEQUENCE_ROLE, week_oid),
        schema=sql.Literal(schema), new_name=sql.Literal(new_name),
        trg_name=sql.Literal(COUNT_TRIGGER), trg=sql.Identifier(COUNT_TRIGGER),
        new=sql.Identifier(schema, new_name), week=sql.Literal(week_oid),
        fn_name=sql.Literal(f"pgparts_count_{week_oid}"), fn=count_fn,
        seq_name=sql.Literal(counter_name(week_oid)), seq=seq, reg=markers.REGISTRY,
        fn_role=sql.Literal(markers.COUNTER_FUNCTION_ROLE),
        seq_role=sql.Literal(markers.COUNTER_SEQUENCE_ROLE))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


_OPERATOR_CHARS = frozenset("+-*/<>=~!@#%^&|`?")


def equality_operators(conn: psycopg.Connection, opclasses: list[int]
                       ) -> list[tuple[str, str]] | None:
    """(schema, name) of the btree equality operator (strategy 3) of each operator class, in
    order, or None when one has no usable operator. Operator classes are made by superusers
    only, so these operators are trusted code."""
    rows = {int(r[0]): (str(r[1]), str(r[2])) for r in conn.execute(
        "SELECT oc.oid, n.nspname, o.oprname FROM pg_catalog.pg_opclass oc"
        " JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily"
        "  AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype"
        "  AND ao.amopstrategy = 3 AND ao.amopmethod = oc.opcmethod"
        " JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr"
        " JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace"
        " WHERE oc.oid = ANY(%s)", (list(opclasses),)).fetchall()}
    out = []
    for opc in opclasses:
        found = rows.get(int(opc))
        if found is None or not set(found[1]) <= _OPERATOR_CHARS:
            return None
        out.append(found)
    return out


def mirror_function_body(conn: psycopg.Connection, new: sql.Identifier, columns: list[str],
                         insertable: list[str], pk: list[str],
                         pk_equality: list[tuple[str, str]]) -> str:
    """The mirror trigger function's body: applies every insert, update and delete of the live
    table to `new` in the writer's own transaction, so the two stay equal at every snapshot
    (rows matched by the primary key, with each key column's own equality operator named in
    full (`pk_equality`, from equality_operators), or by the whole row without one)."""

    def col_list(prefix: str, cols: list[str]) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.SQL(prefix), sql.Identifier(c)) for c in cols)

    if pk:
        match = sql.SQL(" AND ").join(
            sql.SQL("{c} OPERATOR({ns}.{op}) OLD.{c}").format(
                c=sql.Identifier(c), ns=sql.Identifier(ns),
                op=sql.SQL(op))  # operator characters only (equality_operators)
            for c, (ns, op) in zip(pk, pk_equality, strict=True))
        delete = sql.SQL("DELETE FROM {new} WHERE {match};").format(new=new, match=match)
    else:
        match = sql.SQL("ROW({}) ::text IS NOT DISTINCT FROM ROW({})::text").format(
            col_list("s", columns), col_list("OLD", columns))
        delete = sql.SQL(
            "DELETE FROM {new} WHERE ctid = (SELECT s.ctid FROM {new} s WHERE {match} LIMIT 1);"
        ).format(new=new, match=match)
    body = sql.SQL(
        "BEGIN\n"
        "  IF TG_OP IN ('DELETE', 'UPDATE') THEN\n    {delete}\n  END IF;\n"
        "  IF TG_OP IN ('INSERT', 'UPDATE') THEN\n"
        "    INSERT INTO {new} ({cols}) VALUES ({vals});\n  END IF;\n"
        "  RETURN NULL;\nEND"
    ).format(delete=delete, new=new,
             cols=sql.SQL(", ").join(sql.Identifier(c) for c in insertable),
             vals=col_list("NEW", insertable))
    return body.as_string(conn)


def counter_function_body(conn: psycopg.Connection, seq: sql.Identifier) -> str:
    """The change counter's trigger function: bumps `seq` before every row write."""
    return sql.SQL(
        "BEGIN\n  PERFORM pg_catalog.nextval({seq}::pg_catalog.regclass);\n"
        "  IF TG_OP = 'DELETE' THEN\n    RETURN OLD;\n  END IF;\n  RETURN NEW;\nEND"
    ).format(seq=sql.Literal(seq.as_string(conn))).as_string(conn)


def shadow_statements(*, old: sql.Identifier, new: sql.Identifier, mirror_fn: sql.Identifier,
                      mirror_body: str, seq: sql.Identifier, count_fn: sql.Identifier,
                      count_body: str, unit: str) -> list[Statement]:
    """The mirror trigger on the live table and the change counter on both, committed with the
    copy: from then until the swap, writes reach both tables and are counted."""
    fn = mirror_fn
    body_text = mirror_body
    return [
        Statement(sql.SQL(
            "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql"
            " SET search_path = pg_catalog, pg_temp AS {body}").format(
            fn=fn, body=sql.Literal(body_text)),
            note=f"mirror function: applies writes to the {unit} to the new table; it runs in "
                 f"the writers' sessions, never under their search_path"),
        Statement(sql.SQL(
            "CREATE TRIGGER {trg} AFTER INSERT OR UPDATE OR DELETE ON {old}"
            " FOR EACH ROW EXECUTE FUNCTION {fn}()").format(
            trg=sql.Identifier(TRIGGER_NAME), old=old, fn=fn),
            note=f"from this commit until the swap, writes to the {unit} reach both tables"),
        Statement(sql.SQL("CREATE SEQUENCE {}").format(seq),
                  note=f"change counter: row writes to the {unit} or the copy after this "
                       f"commit"),
        Statement(sql.SQL(
            "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
            " SET search_path = pg_catalog, pg_temp AS {body}").format(
            fn=count_fn, body=sql.Literal(count_body)),
            note="counts a write before it happens; runs as its owner, so writers need no "
                 "privilege on the counter"),
        Statement(sql.SQL(
            "CREATE TRIGGER {trg} BEFORE INSERT OR UPDATE OR DELETE ON {old}"
            " FOR EACH ROW EXECUTE FUNCTION {fn}()").format(
            trg=sql.Identifier(COUNT_TRIGGER), old=old, fn=count_fn)),
        Statement(sql.SQL(
            "CREATE TRIGGER {trg} BEFORE INSERT OR UPDATE OR DELETE ON {new}"
            " FOR EACH ROW EXECUTE FUNCTION {fn}()").format(
            trg=sql.Identifier(COUNT_TRIGGER), new=new, fn=count_fn)),
        Statement(sql.SQL(
            "ALTER TABLE {old} ENABLE ALWAYS TRIGGER {mirror}, ENABLE ALWAYS TRIGGER {count}"
        ).format(old=old, mirror=sql.Identifier(TRIGGER_NAME),
                 count=sql.Identifier(COUNT_TRIGGER)),
            note="fire under session_replication_role = replica too (logical replication)"),
        Statement(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(
            new, sql.Identifier(COUNT_TRIGGER))),
    ]


def counter_removal_step(conn: psycopg.Connection, schema: str, new_name: str, new_disp: str,
                          week_oid: int, group: str) -> Step:
    """Its own short transaction after the drop's: the drop's COMMIT unlinks the original's
    files (a fraction of a second for a large week), and the live partition must not stay
    locked meanwhile."""

    def removed(c: psycopg.Connection) -> bool:
        if markers.trust_problem(c):
            return False  # the step's guard says why
        row = c.execute(sql.SQL(
            "SELECT pg_catalog.to_regclass({q}) IS NULL OR NOT EXISTS (SELECT FROM {reg}"
            " WHERE role IN ({f}, {s}) AND source_oid = {w})").format(
            q=sql.Literal(markers.REGISTRY.as_string(c)), reg=markers.REGISTRY,
            f=sql.Literal(markers.COUNTER_FUNCTION_ROLE),
            s=sql.Literal(markers.COUNTER_SEQUENCE_ROLE), w=sql.Literal(week_oid))).fetchone()
        return bool(row and row[0])

    return Step(
        title=f"Remove the change counter from {new_disp}",
        explanation=(
            f"Drop the counter's trigger from {new_disp}, its function and its sequence, each "
            f"only if it is the object pgparts' registry recorded. "
            f"Dropping a trigger takes ACCESS EXCLUSIVE on the table: reads and writes of this "
            f"partition wait from then to COMMIT, milliseconds (a lock timeout retries the "
            f"transaction after a pause)."),
        statements=[Statement(markers.guard_sql(conn, create=False),
                              note="pgparts' registry is still only yours"),
                    Statement(counter_cleanup_sql(conn, schema, new_name, week_oid),
                              "lock", note="trigger (if there), function and sequence")],
        locks=[Lock("ACCESS EXCLUSIVE", new_disp,
                    "reads and writes of this partition wait, milliseconds")],
        retry="step", statement_timeout_seconds=10.0, estimate=Estimate(0, 0, 0.01),
        done=removed, group=group)
