"""Who owns the tables a plan builds in place of others.

A table belongs to the role that creates it. Operators often apply plans as a superuser, so a
partition rebuilt by a move (or a week's consolidated copy) would end up owned by that
superuser: the application role that owned the partition it replaces could no longer ALTER,
DROP or VACUUM FULL it, and default privileges would no longer match. So a plan gives every
table it builds the owner of the one it replaces, in the step that creates it
(`ALTER TABLE ... OWNER TO`), and says at planning time, in one line, when the applying role
cannot give that owner (ALTER ... OWNER TO needs a superuser or a member of the new owner who
may SET ROLE to it, PostgreSQL 16 on; a member before) instead of failing half-way.
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


def cannot_give(conn: psycopg.Connection, owners: set[str]) -> str | None:
    """The first of `owners` the current role may not make a table's owner (and then work on
    that table as its owner: build its indexes, attach it), or None."""
    me = current_role(conn)
    wanted = sorted(o for o in owners if o != me)
    if not wanted:
        return None
    can_set = "SET" if int(conn.info.server_version) >= 160000 else "MEMBER"
    rows = conn.execute(
        "SELECT r.rolname::pg_catalog.text, (SELECT s.rolsuper FROM pg_catalog.pg_roles s"
        "  WHERE s.rolname = CURRENT_USER)"
        " OR (pg_catalog.pg_has_role(r.oid, 'USAGE') AND pg_catalog.pg_has_role(r.oid, %s))"
        " FROM pg_catalog.pg_roles r WHERE r.rolname = ANY(%s) ORDER BY 1",
        (can_set, wanted)).fetchall()
    able = {name: bool(ok) for name, ok in rows}
    return next((o for o in wanted if not able.get(o, False)), None)


def refusal(conn: psycopg.Connection, owner: str, what: str, like: str) -> str:
    """The one line saying why the plan cannot give `what` the owner `owner`, that of `like`."""
    me, who = quote_ident(current_role(conn)), quote_ident(owner)
    return (f"{what} would be owned by {who}, as {like}, but {me} cannot give a table to "
            f"{who} (neither a superuser nor a member of {who}): apply as {who} or as a "
            f"superuser")


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
    refused = cannot_give(conn, wanted)
    if refused is not None:
        raise MoveError(refusal(conn, refused, "the new partitions",
                                "the partitions they replace are"))


def owner_lines(move: Move) -> list[str]:
    """The preview's line per owner given to new partitions other than the applying role."""
    by_owner: dict[str, list[str]] = {}
    for t in move.targets:
        for name, own in [(t.name, t.owner), *((sp.name, sp.owner) for sp in t.subparts)]:
            if own is not None:
                by_owner.setdefault(own, []).append(name)
    return [f"  owned by {quote_ident(own)} like the partitions they replace: "
            f"{', '.join(quote_ident(n) for n in names)}" for own, names in by_owner.items()]
