"""Stage 7's re-creation of what is not a key, index or foreign key: views (depth 1; the views
reading them follow), triggers and rules from their own definitions, deparsed by the server
while the original bears the table's name for an instant (ddl.as_named_sql), so they name the
new table; policies and row security; grants and comments Build did not copy; publication
membership.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from ..names import display_name
from ..plans.engine.model import Lock, Statement, Step
from .ddl import (
    StageSpec,
    as_named_sql,
    new_disp,
    new_ident,
    new_oid,
    old_disp,
    one,
    original_name,
    rel_oid,
    swap_name,
    view_prefix,
)
from .preflight import Dependents

GROUP = "dependencies"


def _depends_on_new(spec: StageSpec, schema: str, view: str) -> Callable:
    def done(conn: psycopg.Connection) -> bool:
        return one(conn, "SELECT EXISTS (SELECT FROM pg_catalog.pg_rewrite r"
                          " JOIN pg_catalog.pg_depend d ON d.objid = r.oid"
                          " AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
                          " WHERE r.ev_class = %s AND d.refobjid = %s)",
                    (rel_oid(conn, schema, view) or 0, new_oid(conn, spec) or 0))
    return done


def _reads_new_sql(spec: StageSpec, conn: psycopg.Connection, fetch: sql.Composable,
                   prefix: sql.Composable) -> sql.Composed:
    return as_named_sql(conn, spec.schema, spec.old_name, spec.name, swap_name(spec), fetch,
                        prefix)


_SWAP_LOCKS = "ACCESS EXCLUSIVE on {new} and {old} for an instant (renamed back and forth)"


def view_steps(conn: psycopg.Connection, spec: StageSpec, deps: Dependents) -> list[Step]:
    steps = []
    for v in deps.views:
        if v.depth != 1 or v.materialized:
            continue
        disp = display_name(v.schema, v.name)
        view_oid = rel_oid(conn, v.schema, v.name)
        steps.append(Step(
            title=f"View {disp}",
            explanation=(f"Re-created from its own definition (pg_get_viewdef) deparsed while "
                         f"the original bears the name {spec.name!r} for an instant: it then "
                         f"names {new_disp(spec)}, the new table. Views reading it follow."),
            statements=[Statement(_reads_new_sql(
                spec, conn, sql.SQL("SELECT pg_catalog.pg_get_viewdef({}::pg_catalog.oid)").format(
                    sql.Literal(view_oid)),
                view_prefix(conn, v.schema, v.name)), note=f"view {disp}")],
            locks=[Lock("ACCESS EXCLUSIVE", disp, "an instant"),
                   Lock("ACCESS EXCLUSIVE", new_disp(spec), "an instant (renamed and back)"),
                   Lock("ACCESS EXCLUSIVE", old_disp(spec), "an instant (renamed and back)")],
            retry="step", done=_depends_on_new(spec, v.schema, v.name), group=GROUP))
    return steps


_ENABLE = {"D": "DISABLE TRIGGER", "R": "ENABLE REPLICA TRIGGER", "A": "ENABLE ALWAYS TRIGGER"}


def _object_on_new(spec: StageSpec, catalog: str, relcol: str, namecol: str, name: str
                   ) -> Callable:
    query = sql.SQL("SELECT EXISTS (SELECT FROM {cat} WHERE {rel} = %s AND {col} = %s)").format(
        cat=sql.SQL(catalog), rel=sql.SQL(relcol), col=sql.SQL(namecol))  # constants

    def done(conn: psycopg.Connection) -> bool:
        return one(conn, query, (new_oid(conn, spec) or 0, name))
    return done


def trigger_rule_steps(conn: psycopg.Connection, spec: StageSpec,
                        deps: Dependents) -> list[Step]:
    steps = []
    new = new_disp(spec)
    renames = [Lock("ACCESS EXCLUSIVE", new, "an instant (renamed and back)"),
               Lock("ACCESS EXCLUSIVE", old_disp(spec), "an instant (renamed and back)")]
    for name, _definition, enabled in deps.triggers:
        fetch = sql.SQL("SELECT pg_catalog.pg_get_triggerdef(oid) FROM pg_catalog.pg_trigger"
                        " WHERE tgrelid = {} AND tgname = {}").format(
            sql.Literal(spec.oid), sql.Literal(name))
        stmts = [Statement(_reads_new_sql(spec, conn, fetch, sql.SQL("")),
                           note=f"trigger {name}")]
        if enabled in _ENABLE:
            stmts.append(Statement(sql.SQL("ALTER TABLE {} {} {}").format(
                new_ident(spec), sql.SQL(_ENABLE[enabled]), sql.Identifier(name))))
        steps.append(Step(
            title=f"Trigger {name} on {new}",
            explanation=("Re-created from the original's own definition (pg_get_triggerdef), "
                         f"deparsed while the original bears the name {spec.name!r} for an "
                         "instant; enabled or disabled as it was."),
            statements=stmts,
            locks=[Lock("SHARE ROW EXCLUSIVE", f"{new}'s partitions", "an instant"),
                   *renames],
            retry="step",
            done=_object_on_new(spec, "pg_catalog.pg_trigger", "tgrelid", "tgname", name),
            group=GROUP))
    for name, _definition in deps.rules:
        fetch = sql.SQL("SELECT pg_catalog.pg_get_ruledef(oid) FROM pg_catalog.pg_rewrite"
                        " WHERE ev_class = {} AND rulename = {}").format(
            sql.Literal(spec.oid), sql.Literal(name))
        steps.append(Step(
            title=f"Rule {name} on {new}",
            explanation=("Re-created from the original's own definition (pg_get_ruledef), "
                         f"deparsed while the original bears the name {spec.name!r}."),
            statements=[Statement(_reads_new_sql(spec, conn, fetch, sql.SQL("")),
                                  note=f"rule {name}")],
            locks=renames, retry="step",
            done=_object_on_new(spec, "pg_catalog.pg_rewrite", "ev_class", "rulename", name),
            group=GROUP))
    return steps


def _role(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


def policy_steps(spec: StageSpec, deps: Dependents) -> list[Step]:
    if not deps.policies and not deps.row_security:
        return []
    new = new_ident(spec)
    stmts = []
    for p in deps.policies:
        parts = [sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
            sql.Identifier(p.name), new,
            sql.SQL("PERMISSIVE" if p.permissive else "RESTRICTIVE"),
            sql.SQL(p.command),  # one of five keywords (preflight's CASE)
            sql.SQL(", ").join(_role(r) for r in p.roles) if p.roles else sql.SQL("PUBLIC"))]
        if p.using:
            parts.append(sql.SQL(" USING ({})").format(sql.SQL(p.using)))  # pg_get_expr text
        if p.with_check:
            parts.append(sql.SQL(" WITH CHECK ({})").format(sql.SQL(p.with_check)))
        stmts.append(Statement(sql.Composed(parts), note=f"policy {p.name}"))
    if deps.row_security:
        stmts.append(Statement(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(new)))
    if deps.force_row_security:
        stmts.append(Statement(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(new)))
    names = [p.name for p in deps.policies]

    def done(conn: psycopg.Connection) -> bool:
        oid = new_oid(conn, spec) or 0
        row = conn.execute(
            "SELECT c.relrowsecurity, (SELECT pg_catalog.count(*) FROM pg_catalog.pg_policy"
            " WHERE polrelid = c.oid AND polname = ANY(%s)) FROM pg_catalog.pg_class c"
            " WHERE c.oid = %s", (names, oid)).fetchone()
        return bool(row) and row[0] == deps.row_security and row[1] == len(names)

    return [Step(
        title=f"Row security on {new_disp(spec)}",
        explanation="The original's policies and row-security switches.",
        statements=stmts, locks=[Lock("ACCESS EXCLUSIVE", new_disp(spec), "an instant")],
        retry="step", done=done, group=GROUP)]


def missing_grants(conn: psycopg.Connection, deps: Dependents, oid: int) -> list:
    """The grants of `deps` that the relation `oid` lacks."""
    have = {(r[0], r[1], r[2], r[3]) for r in conn.execute(
        "SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(g.grantee)"
        " END, g.privilege_type, g.is_grantable, NULL::text"
        " FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) g WHERE c.oid = %s"
        " UNION ALL SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC'"
        " ELSE pg_catalog.pg_get_userbyid(g.grantee) END, g.privilege_type, g.is_grantable,"
        " a.attname::text FROM pg_catalog.pg_attribute a, pg_catalog.aclexplode(a.attacl) g"
        " WHERE a.attrelid = %s AND a.attacl IS NOT NULL", (oid, oid)).fetchall()}
    return [g for g in deps.grants
            if (g.grantee, g.privilege, g.grantable, g.column) not in have
            and not (g.grantee == deps.owner and g.column is None)]


def grant_statements(table: sql.Identifier, grants: list) -> list[Statement]:
    out = []
    for g in grants:
        what = sql.SQL(g.privilege)  # a privilege keyword from aclexplode
        if g.column is not None:
            what = sql.SQL("{} ({})").format(what, sql.Identifier(g.column))
        out.append(Statement(sql.SQL("GRANT {} ON TABLE {} TO {}{}").format(
            what, table, _role(g.grantee),
            sql.SQL(" WITH GRANT OPTION") if g.grantable else sql.SQL(""))))
    return out


def grant_step(conn: psycopg.Connection, spec: StageSpec, deps: Dependents,
                oid: int) -> list[Step]:
    todo = missing_grants(conn, deps, oid)
    if not todo:
        return []
    return [Step(
        title=f"Grants on {new_disp(spec)}",
        explanation="The original's privileges (table and columns) that the new table lacks.",
        statements=grant_statements(new_ident(spec), todo),
        locks=[Lock("ACCESS SHARE", new_disp(spec), "PostgreSQL 18; none on 15")],
        retry="step",
        done=lambda c: not missing_grants(c, deps, new_oid(c, spec) or 0), group=GROUP)]


def _comment_target(spec: StageSpec, kind: str, name: str | None) -> sql.Composable | None:
    new = new_ident(spec)
    if kind == "table":
        return sql.SQL("TABLE {}").format(new)
    if kind == "column" and name:
        return sql.SQL("COLUMN {}.{}").format(new, sql.Identifier(name))
    if kind == "index" and name:
        return sql.SQL("INDEX {}").format(sql.Identifier(spec.schema, name))
    if kind == "constraint" and name:
        return sql.SQL("CONSTRAINT {} ON {}").format(sql.Identifier(name), new)
    if kind == "trigger" and name:
        return sql.SQL("TRIGGER {} ON {}").format(sql.Identifier(name), new)
    return None


_DESCRIPTION = {
    "table": "SELECT pg_catalog.obj_description(%(t)s, 'pg_class')",
    "column": "SELECT pg_catalog.col_description(%(t)s, (SELECT attnum FROM"
              " pg_catalog.pg_attribute WHERE attrelid = %(t)s AND attname = %(n)s))",
    "index": "SELECT pg_catalog.obj_description(x.indexrelid, 'pg_class') FROM"
             " pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid"
             " WHERE x.indrelid = %(t)s AND i.relname = %(n)s",
    "constraint": "SELECT pg_catalog.obj_description(oid, 'pg_constraint') FROM"
                  " pg_catalog.pg_constraint WHERE conrelid = %(t)s AND conname = %(n)s",
    "trigger": "SELECT pg_catalog.obj_description(oid, 'pg_trigger') FROM"
               " pg_catalog.pg_trigger WHERE tgrelid = %(t)s AND tgname = %(n)s",
}


def _comment_name(spec: StageSpec, kind: str, name: str | None) -> str | None:
    if name is None or kind not in ("index", "constraint"):
        return name
    back = original_name(spec, "constraint", name)
    return original_name(spec, "index", name) if back == name else back


def comment_step(spec: StageSpec, deps: Dependents) -> list[Step]:
    todo = [(k, _comment_name(spec, k, n), text) for k, n, text in deps.comments]
    todo = [(k, n, text) for k, n, text in todo if _comment_target(spec, k, n)]
    if not todo:
        return []

    def done(conn: psycopg.Connection) -> bool:
        oid = new_oid(conn, spec) or 0
        for kind, name, text in todo:
            row = conn.execute(_DESCRIPTION[kind], {"t": oid, "n": name}).fetchone()
            if row is None or row[0] != text:
                return False
        return True

    return [Step(
        title=f"Comments on {new_disp(spec)}",
        explanation="The original's comments on the table, its columns, indexes, constraints "
                    "and triggers.",
        statements=[Statement(sql.SQL("COMMENT ON {} IS {}").format(
            _comment_target(spec, k, n), sql.Literal(text))) for k, n, text in todo],
        locks=[Lock("SHARE UPDATE EXCLUSIVE", new_disp(spec), "an instant")],
        retry="step", done=done, group=GROUP)]


def publication_step(spec: StageSpec, deps: Dependents) -> list[Step]:
    pubs = [name for name, how, _via in deps.publications if how == "table"]
    if not pubs:
        return []

    def done(conn: psycopg.Connection) -> bool:
        return one(conn, "SELECT pg_catalog.count(*) = %s FROM pg_catalog.pg_publication_rel r"
                          " JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid"
                          " WHERE r.prrelid = %s AND p.pubname = ANY(%s)",
                    (len(pubs), new_oid(conn, spec) or 0, pubs))

    return [Step(
        title=f"Publications of {new_disp(spec)}",
        explanation="The new table joins the publications the original was in.",
        statements=[Statement(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
            sql.Identifier(p), new_ident(spec))) for p in pubs],
        locks=[Lock("SHARE UPDATE EXCLUSIVE", new_disp(spec), "blocks DDL only")],
        retry="step", done=done, group=GROUP)]

