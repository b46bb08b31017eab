"""pgparts' registry of what its plans created and detached, and the trust it gets.

Earlier versions marked their tables with a JSON comment (`pgparts:{"role":"original",...}`).
Anyone who can create a table (or a view) can write such a comment, so a comment proves nothing:
a forged "detached original" was read by a dry run (running the forger's code as the operator)
and dropped by the next apply. Plans now record their objects in a table that only the role
applying them can write:

    pgparts.plan_objects (objid, role, schema_name, name, parent_oid, source_oid, source_name,
                          owner, bound, digest, replacement, state, note, plan_id, created_at)

`role` is 'consolidated' (a copy built for a week, objid its pg_class oid), 'original' (a week
detached by a swap, state 'detached', or 'refused' when the drop found rows missing from its
replacement), 'counter_function' (pg_proc oid) or 'counter_sequence' (pg_class oid), or
'index_build': an index a plan is about to build, recorded before the build starts (objid is
a key of the plan's choosing, not an oid, since the index does not exist yet; schema_name/name
name the index, parent_oid its table, source_oid the parent index it will be attached to, or
0 for a REINDEX; state 'create' or 'reindex'); 'move_target' (a table a row move builds
beside the live ones, recorded in the transaction that creates it: objid its oid, source_oid
the partition it takes rows from, bound its bound text, replacement the name it takes at the
swap) or 'move_source' (the partition a move detached, state 'detached', dropped only after
its rows are verified in the targets); 'migration' (a table being turned into a partitioned
one: objid the original's oid, note the migration's choices as JSON, state the last stage
completed; migrate/spec.py); 'new_partition' (a table create-ahead or fill-gaps creates
standalone before attaching it, recorded in the transaction that creates it and gives it its
owner: objid its oid, parent_oid the table it will be attached to, bound its range; deleted
in the ATTACH's transaction; a run interrupted in between takes up only a table so recorded,
whoever owns it). A build interrupted by a killed connection leaves
an invalid index; only one the registry announced is dropped by a later run. Registries made by
earlier versions get the wider role CHECK on their next apply.

The schema is created by the first apply, owned by the applying role, with no grants. It is
trusted only when the schema and the table are owned by the current user or by a superuser and
nobody else may create in the schema or write to the table (ACLs, column ACLs, triggers, rules):
a role with CREATE on the database could create a schema `pgparts` first. An untrusted registry
is never read; plans refuse to write to it. Even a trusted entry is only a claim: consolidate.py
cross-checks every one against the catalog (same oid, name, kind, owner, attachment) before it
reads from or drops a relation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from . import owners

SCHEMA = "pgparts"
TABLE = "plan_objects"
REGISTRY = sql.Identifier(SCHEMA, TABLE)

CONSOLIDATED_ROLE = "consolidated"
ORIGINAL_ROLE = "original"
COUNTER_FUNCTION_ROLE = "counter_function"
COUNTER_SEQUENCE_ROLE = "counter_sequence"
INDEX_BUILD_ROLE = "index_build"
MOVE_TARGET_ROLE = "move_target"
MOVE_SOURCE_ROLE = "move_source"
MIGRATION_ROLE = "migration"
NEW_PARTITION_ROLE = "new_partition"
# the newest role last: _WIDEN_CHECK tests for it
ROLES = (CONSOLIDATED_ROLE, ORIGINAL_ROLE, COUNTER_FUNCTION_ROLE, COUNTER_SEQUENCE_ROLE,
         INDEX_BUILD_ROLE, MOVE_TARGET_ROLE, MOVE_SOURCE_ROLE, MIGRATION_ROLE,
         NEW_PARTITION_ROLE)

DETACHED = "detached"
REFUSED = "refused"

# Why the registry may not be used, or '' (also when it does not exist yet). Catalog reads only.
TRUST_SQL = sql.SQL(
    "SELECT CASE"
    " WHEN s.oid IS NULL THEN ''"
    " WHEN NOT (s.nspowner = (SELECT r.oid FROM pg_catalog.pg_roles r"
    "           WHERE r.rolname = CURRENT_USER)"
    "      OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = s.nspowner))"
    " THEN 'schema pgparts is owned by ' || pg_catalog.pg_get_userbyid(s.nspowner)"
    "      || ', neither you nor a superuser'"
    " WHEN EXISTS (SELECT FROM pg_catalog.aclexplode(s.nspacl) a"
    "      WHERE a.grantee <> s.nspowner AND a.privilege_type = 'CREATE')"
    " THEN 'other roles may create objects in schema pgparts'"
    " WHEN t.oid IS NULL THEN ''"
    " WHEN t.relkind <> 'r' THEN 'pgparts.plan_objects is not a plain table'"
    " WHEN NOT (t.relowner = (SELECT r.oid FROM pg_catalog.pg_roles r"
    "           WHERE r.rolname = CURRENT_USER)"
    "      OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = t.relowner))"
    " THEN 'pgparts.plan_objects is owned by ' || pg_catalog.pg_get_userbyid(t.relowner)"
    "      || ', neither you nor a superuser'"
    " WHEN EXISTS (SELECT FROM pg_catalog.aclexplode(t.relacl) a WHERE a.grantee <> t.relowner"
    "      AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER'))"
    "   OR EXISTS (SELECT FROM pg_catalog.pg_attribute c, pg_catalog.aclexplode(c.attacl) a"
    "      WHERE c.attrelid = t.oid AND a.grantee <> t.relowner"
    "      AND a.privilege_type IN ('INSERT', 'UPDATE'))"
    " THEN 'other roles may write to pgparts.plan_objects'"
    " WHEN EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid = t.oid)"
    "   OR t.relhasrules"
    " THEN 'pgparts.plan_objects has triggers or rules'"
    " ELSE '' END"
    " FROM (SELECT 1) one"
    " LEFT JOIN pg_catalog.pg_namespace s ON s.nspname = {schema}"
    " LEFT JOIN pg_catalog.pg_class t ON t.relnamespace = s.oid AND t.relname = {table}"
).format(schema=sql.Literal(SCHEMA), table=sql.Literal(TABLE))

_ROLE_CHECK = sql.SQL("CHECK (role IN ({}))").format(
    sql.SQL(", ").join(sql.Literal(r) for r in ROLES))
_CREATE_TABLE = sql.SQL(
    "CREATE TABLE {t} ("
    "objid pg_catalog.oid NOT NULL,"
    " role pg_catalog.text NOT NULL CONSTRAINT plan_objects_role_check {check},"
    " schema_name pg_catalog.text NOT NULL, name pg_catalog.text NOT NULL,"
    " parent_oid pg_catalog.oid NOT NULL, source_oid pg_catalog.oid NOT NULL,"
    " source_name pg_catalog.text, owner pg_catalog.oid NOT NULL, bound pg_catalog.text,"
    " digest pg_catalog.text, replacement pg_catalog.text, state pg_catalog.text,"
    " note pg_catalog.text, plan_id pg_catalog.text,"
    " created_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),"
    " PRIMARY KEY (role, objid))").format(t=REGISTRY, check=_ROLE_CHECK)
# a registry made before the newest role existed gets the wider CHECK
_WIDEN_CHECK = sql.SQL(
    "IF NOT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE conrelid = {q}::pg_catalog.regclass"
    " AND conname = 'plan_objects_role_check'"
    " AND pg_catalog.strpos(pg_catalog.pg_get_constraintdef(oid), {role}) > 0) THEN\n"
    "    ALTER TABLE {t} DROP CONSTRAINT IF EXISTS plan_objects_role_check,"
    " ADD CONSTRAINT plan_objects_role_check {check};\n  END IF;\n").format(
    q=sql.Literal(REGISTRY.as_string()), role=sql.Literal(ROLES[-1]), t=REGISTRY,
    check=_ROLE_CHECK)


@dataclass
class Entry:
    objid: int
    role: str
    schema: str
    name: str
    parent_oid: int
    source_oid: int
    source_name: str
    owner: int
    bound: str | None
    digest: str | None
    replacement: str
    state: str
    note: str
    plan_id: str
    created_at: datetime | None


@dataclass
class Registry:
    exists: bool
    problem: str = ""  # why it is not trusted; '' when trusted (or absent)
    entries: list[Entry] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        return self.exists and not self.problem

    def of(self, role: str, parent_oid: int | None = None) -> list[Entry]:
        return [e for e in self.entries if e.role == role
                and (parent_oid is None or e.parent_oid == parent_oid)]

    def get(self, role: str, objid: int) -> Entry | None:
        return next((e for e in self.entries if e.role == role and e.objid == objid), None)


def trust_problem(conn: psycopg.Connection) -> str:
    row = conn.execute(TRUST_SQL).fetchone()
    return str(row[0]) if row and row[0] else ""


def read_registry(conn: psycopg.Connection) -> Registry:
    """The registry's entries, or none when it is absent or not trusted (never read then), or
    not readable by the current role (another role's, a superuser's say: it grants nobody)."""
    row = conn.execute(
        "SELECT NOT pg_catalog.has_schema_privilege(n.oid, 'USAGE') OR (t.oid IS NOT NULL"
        " AND NOT pg_catalog.has_table_privilege(t.oid, 'SELECT'))"
        " FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_class t"
        " ON t.relnamespace = n.oid AND t.relname = %s WHERE n.nspname = %s",
        (TABLE, SCHEMA)).fetchone()
    if row and row[0]:
        return Registry(True, f"{REGISTRY.as_string(conn)} is not readable by you")
    row = conn.execute(sql.SQL(
        "SELECT pg_catalog.to_regclass({}) IS NOT NULL").format(
        sql.Literal(REGISTRY.as_string(conn)))).fetchone()
    exists = bool(row and row[0])
    problem = trust_problem(conn)
    if problem:
        return Registry(True, problem)
    if not exists:
        return Registry(False)
    rows = conn.execute(sql.SQL(
        "SELECT objid, role, schema_name, name, parent_oid, source_oid,"
        " coalesce(source_name, ''), owner, bound, digest,"
        " coalesce(replacement, ''), coalesce(state, ''),"
        " coalesce(note, ''), coalesce(plan_id, ''), created_at"
        " FROM {} ORDER BY created_at, role, objid").format(REGISTRY)).fetchall()
    return Registry(True, "", [Entry(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5]), r[6],
                                     int(r[7]), r[8], r[9], r[10], r[11], r[12], r[13], r[14])
                               for r in rows])


def guard_sql(conn: psycopg.Connection, *, create: bool) -> sql.Composed:
    """A DO block that stops the transaction when the registry is not trusted, and (create)
    creates it, owned by the current role with no grants, when it does not exist yet."""
    check = sql.SQL(
        "  problem := ({trust});\n"
        "  IF problem <> '' THEN\n"
        "    RAISE EXCEPTION 'pgparts refuses to use its registry: %', problem\n"
        "      USING HINT = 'drop or fix the schema pgparts (see README, Security)';\n"
        "  END IF;\n").format(trust=TRUST_SQL)
    body = sql.SQL("DECLARE\n  problem pg_catalog.text;\nBEGIN\n") + check
    if create:
        # the applying role's default privileges would grant others CREATE on the schema or
        # writes to the table, and the registry would refuse itself: taken back as created
        si = sql.Identifier(SCHEMA)
        undo_schema = sql.SQL("").join(
            sql.SQL("    {};\n").format(s) for _v, s in owners.default_privilege_sql(
                conn, SCHEMA, si, objtype="n"))
        undo_table = sql.SQL("").join(
            sql.SQL("    {};\n").format(s) for _v, s in owners.default_privilege_sql(
                conn, SCHEMA, REGISTRY))
        body += sql.SQL(
            "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = {s}) THEN\n"
            "    CREATE SCHEMA {si};\n{undo_schema}  END IF;\n"
            "  IF pg_catalog.to_regclass({q}) IS NULL THEN\n    {create};\n{undo_table}"
            "  ELSE\n  {widen}"
            "  END IF;\n"
        ).format(s=sql.Literal(SCHEMA), si=si, undo_schema=undo_schema,
                 q=sql.Literal(REGISTRY.as_string(conn)), create=_CREATE_TABLE,
                 undo_table=undo_table, widen=_WIDEN_CHECK)
        # Again: each statement here reads the catalog anew (READ COMMITTED), so a schema
        # another role committed after the first check would otherwise be used as found
        body += check
    body += sql.SQL("END")
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


def register_relation_sql(*, role: str, schema: str, name: str, parent_oid: int,
                          source_oid: int, source_name: str, bound: str | None,
                          plan_id: str, relkinds: str = "r", replacement: str = "",
                          state: str = "") -> sql.Composed:
    """Record the relation schema.name as it is in the catalog now (oid and owner read here, in
    the transaction that created or detached it)."""
    return sql.SQL(
        "INSERT INTO {reg} (objid, role, schema_name, name, parent_oid, source_oid, source_name,"
        " owner, bound, replacement, state, plan_id)"
        " SELECT c.oid, {role}, n.nspname, c.relname, {parent}, {source}, {source_name},"
        " c.relowner, {bound}, {replacement}, {state}, {plan}"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {schema} AND c.relname = {name} AND c.relkind IN ({kinds})"
        " ON CONFLICT (role, objid) DO UPDATE SET schema_name = EXCLUDED.schema_name,"
        " name = EXCLUDED.name, parent_oid = EXCLUDED.parent_oid,"
        " source_oid = EXCLUDED.source_oid, source_name = EXCLUDED.source_name,"
        " owner = EXCLUDED.owner, bound = EXCLUDED.bound, digest = NULL,"
        " replacement = EXCLUDED.replacement, state = EXCLUDED.state, note = NULL,"
        " plan_id = EXCLUDED.plan_id, created_at = pg_catalog.now()").format(
        reg=REGISTRY, role=sql.Literal(role), parent=sql.Literal(parent_oid),
        source=sql.Literal(source_oid), source_name=sql.Literal(source_name),
        bound=sql.Literal(bound), replacement=sql.Literal(replacement),
        state=sql.Literal(state or None), plan=sql.Literal(plan_id), schema=sql.Literal(schema),
        name=sql.Literal(name), kinds=sql.SQL(", ").join(sql.Literal(k) for k in relkinds))


def register_function_sql(*, schema: str, name: str, parent_oid: int, source_oid: int,
                          plan_id: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {reg} (objid, role, schema_name, name, parent_oid, source_oid, owner,"
        " plan_id)"
        " SELECT p.oid, {role}, n.nspname, p.proname, {parent}, {source}, p.proowner, {plan}"
        " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = {schema} AND p.proname = {name} AND p.pronargs = 0"
        " ON CONFLICT (role, objid) DO UPDATE SET schema_name = EXCLUDED.schema_name,"
        " name = EXCLUDED.name, parent_oid = EXCLUDED.parent_oid,"
        " source_oid = EXCLUDED.source_oid, owner = EXCLUDED.owner,"
        " plan_id = EXCLUDED.plan_id, created_at = pg_catalog.now()").format(
        reg=REGISTRY, role=sql.Literal(COUNTER_FUNCTION_ROLE), parent=sql.Literal(parent_oid),
        source=sql.Literal(source_oid), plan=sql.Literal(plan_id), schema=sql.Literal(schema),
        name=sql.Literal(name))


def register_index_build_sql(*, key: int, schema: str, name: str, table_oid: int,
                            parent_index: sql.Composable, state: str, plan_id: str
                            ) -> sql.Composed:
    """Announce an index build (see the module docstring); `key` identifies the entry,
    `parent_index` is an SQL expression for the parent index's oid (0 for a REINDEX)."""
    return sql.SQL(
        "INSERT INTO {reg} (objid, role, schema_name, name, parent_oid, source_oid, owner,"
        " state, plan_id)"
        " SELECT {key}, {role}, {schema}, {name}, {table}, {source}, r.oid, {state}, {plan}"
        " FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER"
        " ON CONFLICT (role, objid) DO UPDATE SET schema_name = EXCLUDED.schema_name,"
        " name = EXCLUDED.name, parent_oid = EXCLUDED.parent_oid,"
        " source_oid = EXCLUDED.source_oid, state = EXCLUDED.state,"
        " plan_id = EXCLUDED.plan_id, created_at = pg_catalog.now()").format(
        reg=REGISTRY, key=sql.Literal(key), role=sql.Literal(INDEX_BUILD_ROLE),
        schema=sql.Literal(schema), name=sql.Literal(name), table=sql.Literal(table_oid),
        source=parent_index, state=sql.Literal(state),
        plan=sql.Literal(plan_id))


def forget_index_build_sql(key: int) -> sql.Composed:
    return sql.SQL("DELETE FROM {reg} WHERE role = {role} AND objid = {key}").format(
        reg=REGISTRY, role=sql.Literal(INDEX_BUILD_ROLE), key=sql.Literal(key))


def relation_facts(conn: psycopg.Connection, oids: list[int]) -> dict[int, dict[str, Any]]:
    """Catalog facts for cross-checking registry entries (and comment markers)."""
    if not oids:
        return {}
    rows = conn.execute(
        "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relowner,"
        " pg_catalog.pg_get_userbyid(c.relowner), c.relhasrules,"
        " (SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1),"
        " pg_catalog.pg_get_expr(c.relpartbound, c.oid)"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = ANY(%s)", (oids,)).fetchall()
    return {int(r[0]): {"schema": r[1], "name": r[2], "relkind": r[3], "owner": int(r[4]),
                        "owner_name": r[5], "rules": bool(r[6]),
                        "attached_to": int(r[7]) if r[7] is not None else None,
                        "bound": r[8]} for r in rows}


def mismatch(entry: Entry, facts: dict[str, Any] | None) -> str:
    """Why the relation `entry` names is not the one pgparts recorded, or ''."""
    if facts is None:
        return "gone"
    if facts["relkind"] not in ("r", "p"):
        kind = {"v": "a view", "m": "a materialized view", "f": "a foreign table"}.get(
            facts["relkind"], f"relkind {facts['relkind']}")
        return f"{kind}, not a table"
    if (facts["schema"], facts["name"]) != (entry.schema, entry.name):
        return "renamed since pgparts recorded it"
    if facts["owner"] != entry.owner:
        return f"owner {facts['owner_name']}, not the owner pgparts recorded"
    if facts["rules"]:
        return "it has rules"
    return ""
