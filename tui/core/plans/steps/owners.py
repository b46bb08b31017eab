"""Who owns the tables a plan builds in place of others.

A table belongs to the role that creates it. Operators often apply plans as a superuser, so a
partition rebuilt by a move (or a week's consolidated copy) would end up owned by that
superuser: the application role that owned the partition it replaces could no longer ALTER,
DROP or VACUUM FULL it, and default privileges would no longer match. So a plan gives every
table it builds the owner of the one it replaces, in the step that creates it
(`ALTER TABLE ... OWNER TO`), and says at planning time, in one line, when the applying role
cannot give that owner (ALTER ... OWNER TO needs a superuser, or a member of the new owner who
may SET ROLE to it, PostgreSQL 16 on, a member before, and an owner with CREATE on the schema)
instead of failing half-way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from ...moves.changelog import MoveError
from ...names import quote_ident
from ..engine.model import Statement

if TYPE_CHECKING:
    from .moves import Move


def owners_of(conn: psycopg.Connection, oids: list[int]) -> dict[int, str]:
    """The owner's name of each relation in `oids`."""
    return {int(oid): name for oid, name in conn.execute(
        "SELECT oid, pg_catalog.pg_get_userbyid(relowner)::pg_catalog.text"
        " FROM pg_catalog.pg_class WHERE oid = ANY(%s)", (oids,)).fetchall()}


def current_role(conn: psycopg.Connection) -> str:
    return str(conn.execute("SELECT CURRENT_USER::pg_catalog.text").fetchone()[0])


def owner_problem(conn: psycopg.Connection, owners: set[str], schema: str, what: str,
                  like: str) -> str | None:
    """Why the current role cannot give `what` (tables it builds in `schema`) the owners
    `owners`, those of `like`, and then work on them as their owner (build their indexes,
    attach them), in one line; None when it can. A superuser can; anyone else must be a member
    of each owner inheriting its privileges (and, from PostgreSQL 16, allowed to SET ROLE to
    it), and each owner must be allowed to create in `schema` (ALTER ... OWNER TO checks both
    for non-superusers)."""
    me = current_role(conn)
    wanted = sorted(o for o in owners if o != me)
    if not wanted:
        return None
    can_set = "SET" if int(conn.info.server_version) >= 160000 else "MEMBER"
    rows = conn.execute(
        "SELECT r.rolname::pg_catalog.text, (SELECT s.rolsuper FROM pg_catalog.pg_roles s"
        "  WHERE s.rolname = CURRENT_USER),"
        " pg_catalog.pg_has_role(r.oid, 'USAGE') AND pg_catalog.pg_has_role(r.oid, %s),"
        " pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')"
        " FROM pg_catalog.pg_roles r, pg_catalog.pg_namespace n"
        " WHERE r.rolname = ANY(%s) AND n.nspname = %s ORDER BY 1",
        (can_set, wanted, schema)).fetchall()
    facts = {name: (bool(su), bool(member), bool(create)) for name, su, member, create in rows}
    who_me = quote_ident(me)
    for owner in wanted:
        su, member, create = facts.get(owner, (False, False, False))
        if su:
            return None
        who = quote_ident(owner)
        if not member:
            return (f"{what} would be owned by {who}, as {like}, but {who_me} cannot give a "
                    f"table to {who} (neither a superuser nor a member of {who}): apply as "
                    f"{who} or as a superuser")
        if not create:
            return (f"{what} would be owned by {who}, as {like}, but {who} may not create in "
                    f"schema {quote_ident(schema)}, which giving it a table there requires "
                    f"unless a superuser applies: grant it CREATE on the schema or apply as a "
                    f"superuser")
    return None


def owner_statement(table: sql.Composable, owner: str, why: str) -> Statement:
    return Statement(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(owner)),
                     note=why)


def assign_move_owners(conn: psycopg.Connection, move: Move) -> None:
    """Each new partition of `move` gets the owner of the one it replaces: the source of its
    name (rebound, move-values and split keep names), else the sources' owner when they share
    one, else (a move out of the DEFAULT, sources of several owners) the parent's. A
    sub-partition shaped like a source's sub-partition gets that one's owner, else its
    partition's. None where that owner is the applying role (no statement needed). MoveError,
    at planning time, when the applying role cannot give an owner."""
    subs = [sp.model_oid for t in move.targets for sp in t.subparts if sp.model_oid]
    owner = owners_of(conn, [move.parent.oid, *(s.oid for s in move.sources), *subs])
    by_name = {s.name: owner[s.oid] for s in move.sources}
    shared = {owner[s.oid] for s in move.sources}
    out_of_default = all(s.is_default for s in move.sources)
    me = current_role(conn)
    wanted: set[str] = set()
    source_oids = {s.oid for s in move.sources}
    for t in move.targets:
        own = by_name.get(t.name) or (
            owner[move.parent.oid] if out_of_default or len(shared) > 1 else next(iter(shared)))
        from_source = t.shaped_like(move).oid in source_oids
        t.owner = own if own != me else None
        wanted.add(own)
        for sp in t.subparts:
            sub = owner.get(sp.model_oid, own) if from_source else own
            sp.owner = sub if sub != me else None
            wanted.add(sub)
    problem = owner_problem(conn, wanted, move.schema, "the new partitions",
                            "the partitions they replace are")
    if problem:
        raise MoveError(problem)


def owner_lines(move: Move) -> list[str]:
    """The preview's line per owner given to new partitions other than the applying role."""
    by_owner: dict[str, list[str]] = {}
    for t in move.targets:
        for name, own in [(t.name, t.owner), *((sp.name, sp.owner) for sp in t.subparts)]:
            if own is not None:
                by_owner.setdefault(own, []).append(name)
    return [f"  owned by {quote_ident(own)} like the partitions they replace: "
            f"{', '.join(quote_ident(n) for n in names)}" for own, names in by_owner.items()]


def default_privilege_statements(conn: psycopg.Connection, schema: str,
                                 table: sql.Composable, objtype: str = "r"
                                 ) -> list[Statement]:
    """Statements undoing what the applying role's default privileges give `table`, just
    created in `schema` (default_privilege_sql)."""
    notes = {"REVOKE": "take back what your default privileges granted: a table gets the "
                       "grants of the partitions it is made like, nothing more",
             "GRANT": "the owner's own privileges, which your database-wide default "
                      "privileges replace"}
    return [Statement(s, note=notes[verb])
            for verb, s in default_privilege_sql(conn, schema, table, objtype)]


def default_privilege_sql(conn: psycopg.Connection, schema: str, table: sql.Composable,
                          objtype: str = "r") -> list[tuple[str, sql.Composed]]:
    """Undo what the applying role's ALTER DEFAULT PRIVILEGES give `table`, just created by it
    in `schema` (`objtype` 'S': a sequence; 'n': the schema `table` itself), as (verb,
    statement): REVOKE ALL from each role they grant to, and (when a database-wide entry
    replaces the built-in default, possibly taking privileges from the owner) GRANT ALL to the
    creator, who is the owner at that point. Empty when the role has no default privileges
    for tables there (the usual case).

    Why the new table ends with no more than the grants a plan copies onto it (those of the
    partition it replaces, or of the parent and the partition it is shaped like) and not with
    what a partition created by the table's owner would get: the copied grants are the table's
    actual grant policy, including whatever the owner's default privileges gave the partitions
    before it and any REVOKE made on them since; the applying role's default privileges are an
    accident of who ran the plan (often a superuser's, meant for its own tables), and they would
    survive ALTER ... OWNER TO, leaving grants on one partition that none of its neighbours has.
    Computed when the plan is made: a script applied later by another role would get that role's
    default privileges instead."""
    rows = conn.execute(
        "SELECT d.defaclnamespace = 0, ARRAY(SELECT DISTINCT a.grantee"
        "  FROM pg_catalog.aclexplode(d.defaclacl) a WHERE a.grantee <> d.defaclrole)"
        " FROM pg_catalog.pg_default_acl d WHERE d.defaclobjtype = %s"
        " AND d.defaclrole = (SELECT r.oid FROM pg_catalog.pg_roles r"
        "  WHERE r.rolname = CURRENT_USER)"
        " AND (d.defaclnamespace = 0 OR d.defaclnamespace = (SELECT n.oid"
        "  FROM pg_catalog.pg_namespace n WHERE n.nspname = %s))", (objtype, schema)).fetchall()
    grantees = sorted({int(g) for _g, oids in rows for g in oids})
    what = sql.SQL({"r": "TABLE", "S": "SEQUENCE", "n": "SCHEMA"}[objtype])
    out: list[tuple[str, sql.Composed]] = []
    if grantees:
        names = dict(conn.execute(
            "SELECT oid, rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE oid = ANY(%s)",
            (grantees,)).fetchall())
        who = [sql.SQL("PUBLIC") if g == 0 else sql.Identifier(names[g]) for g in grantees
               if g == 0 or g in names]
        out.append(("REVOKE", sql.SQL("REVOKE ALL ON {} {} FROM {}").format(
            what, table, sql.SQL(", ").join(who))))
    if any(is_global for is_global, _o in rows):
        # CURRENT_USER, resolved when applied: an exported script may be run by another role
        out.append(("GRANT", sql.SQL("GRANT ALL ON {} {} TO CURRENT_USER").format(
            what, table)))
    return out
