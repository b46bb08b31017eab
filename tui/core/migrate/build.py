"""Stage 5, Build: the original table goes out of the way, the partitioned table takes its name.

One transaction, under the original's ACCESS EXCLUSIVE lock:
- the original's key, unique, exclusion and foreign key constraints, its other indexes and its
  identity sequences are renamed out of the way, to names recorded in the migration's spec
  (abort renames them back); then the table itself becomes `<name>_premigration`. CHECK and
  NOT NULL constraints keep their names: LIKE copies them to the new table under those names,
  and a constraint name only has to be unique on its own table;
- `CREATE TABLE name (LIKE original INCLUDING DEFAULTS, GENERATED, CONSTRAINTS, COMMENTS,
  STORAGE, COMPRESSION) PARTITION BY RANGE (column)`: same columns, types, collations,
  defaults (a serial's default still calls its sequence), CHECK and NOT NULL constraints,
  column comments; identity columns get an identity with the original sequence's name and
  options; serial sequences become owned by the new column; the table comment, owner and
  grants (table and column) are copied;
- the layout's partitions, DEFAULT included, are created, with the original's storage
  parameters (fillfactor, autovacuum settings) and its tablespace when it has its own;
- the registry records the new table's oid, the names used, and the stage.

Views, triggers, rules, policies, indexes and foreign keys stay on the original until stage 7
(dependencies) re-creates them on the new table.
"""

from __future__ import annotations

from dataclasses import replace

import psycopg
from psycopg import sql

from ..plans.engine.model import Lock, Statement, Step
from . import MigrateError
from .preflight import Dependents
from .spec import MAX_IDENTIFIER_BYTES, MigrationSpec, SpecPartition, new_table_sql, record_sql

SUFFIX = "_premigration"

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER",
              "MAINTAIN")

_CONSTRAINTS = """
SELECT conname FROM pg_catalog.pg_constraint
WHERE conrelid = %s AND contype IN ('p', 'u', 'x', 'f') ORDER BY conname
"""
_PLAIN_INDEXES = """
SELECT c.relname FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
WHERE x.indrelid = %s
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conindid = x.indexrelid
                  AND k.conrelid = x.indrelid)
ORDER BY c.relname
"""
IDENTITY_SQL = """
SELECT a.attname, a.attidentity, sn.nspname, s.relname, q.seqstart, q.seqincrement, q.seqmin,
       q.seqmax, q.seqcache, q.seqcycle, pg_catalog.format_type(q.seqtypid, NULL)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_depend d ON d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
     AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'i'
JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid
WHERE a.attrelid = %s AND a.attidentity <> '' AND NOT a.attisdropped
ORDER BY a.attnum
"""
_SERIAL = """
SELECT sn.nspname, s.relname, a.attname
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refobjid = %s AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND d.deptype = 'a' AND a.attidentity = ''
ORDER BY a.attnum
"""


def _taken(conn: psycopg.Connection, schema: str, oid: int) -> tuple[set[str], set[str]]:
    """Relation names of the schema, constraint names of the table."""
    rels = {r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s", (schema,)).fetchall()}
    cons = {r[0] for r in conn.execute(
        "SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid = %s", (oid,)).fetchall()}
    return rels, cons


def aside_name(name: str, taken: set[str]) -> str:
    """`<name>_premigration` (then `..._premigration2`, ...), cut to 63 bytes, not in `taken`."""
    n = 1
    while True:
        suffix = SUFFIX if n == 1 else f"{SUFFIX}{n}"
        room = MAX_IDENTIFIER_BYTES - len(suffix.encode())
        candidate = name.encode()[:room].decode("utf-8", "ignore") + suffix
        if candidate not in taken:
            taken.add(candidate)
            return candidate
        n += 1


def plan_renames(conn: psycopg.Connection, spec: MigrationSpec) -> MigrationSpec:
    """The spec with the names the original's constraints, indexes and identity sequences take,
    and the serial sequences whose ownership moves (read from the catalog now)."""
    rels, cons = _taken(conn, spec.schema, spec.oid)
    if spec.old_name in rels:
        raise MigrateError(f"a relation {spec.old_display} exists already; rename or drop it")
    renamed: list[tuple[str, str, str]] = []
    for (name,) in conn.execute(_CONSTRAINTS, (spec.oid,)).fetchall():
        # an index-backed constraint's index is renamed with it: its name is a relation name
        renamed.append(("constraint", name, aside_name(name, rels | cons)))
        cons.add(renamed[-1][2])
        rels.add(renamed[-1][2])
    for (name,) in conn.execute(_PLAIN_INDEXES, (spec.oid,)).fetchall():
        renamed.append(("index", name, aside_name(name, rels)))
    for row in conn.execute(IDENTITY_SQL, (spec.oid,)).fetchall():
        if row[2] != spec.schema:
            raise MigrateError(f"the identity sequence of {row[0]!r} is in another schema")
        renamed.append(("sequence", row[3], aside_name(row[3], rels)))
    owned = tuple((r[0], r[1], r[2]) for r in conn.execute(_SERIAL, (spec.oid,)).fetchall())
    return replace(spec, renamed=tuple(renamed), owned_sequences=owned)


def bound(spec: MigrationSpec, value: str, cast: sql.SQL) -> sql.Composable:
    if value.upper() in ("MINVALUE", "MAXVALUE"):
        return sql.SQL(value.upper())
    return sql.SQL("{}::{}").format(sql.Literal(value), cast)


def cast_type(kind: str) -> sql.SQL:
    return sql.SQL({"timestamptz": "pg_catalog.timestamptz", "timestamp": "pg_catalog.timestamp",
                    "date": "pg_catalog.date", "integer": "pg_catalog.int8"}[kind])


def storage_sql(reloptions: tuple[str, ...], tablespace: str | None) -> sql.Composable:
    """` WITH (...) TABLESPACE ...` for a partition: the original's storage parameters (each
    name checked to be a plain word, its value a literal) and tablespace, when it has its own."""
    out: list[sql.Composable] = []
    params = []
    for opt in reloptions:
        key, _, value = opt.partition("=")
        if not key.replace("_", "").replace(".", "").isalnum() or not key.isascii():
            raise MigrateError(f"unexpected storage parameter {opt!r}")
        params.append(sql.SQL("{} = {}").format(sql.SQL(key), sql.Literal(value)))
    if params:
        out.append(sql.SQL(" WITH ({})").format(sql.SQL(", ").join(params)))
    if tablespace:
        out.append(sql.SQL(" TABLESPACE {}").format(sql.Identifier(tablespace)))
    return sql.SQL("").join(out)


def partition_sql(spec: MigrationSpec, p: SpecPartition,
                  storage: sql.Composable | None = None) -> sql.Composed:
    storage = storage if storage is not None else sql.SQL("")
    if p.default:
        return sql.SQL("CREATE TABLE {p} PARTITION OF {t} DEFAULT{s}").format(
            p=spec.partition_ident(p), t=spec.table, s=storage)
    if p.lo is None or p.hi is None:
        raise MigrateError(f"partition {p.name!r} has no bounds")
    cast = cast_type(spec.column_kind)
    return sql.SQL(
        "CREATE TABLE {p} PARTITION OF {t} FOR VALUES FROM ({lo}) TO ({hi}){s}").format(
        p=spec.partition_ident(p), t=spec.table, lo=bound(spec, p.lo, cast),
        hi=bound(spec, p.hi, cast), s=storage)


def _grants(spec: MigrationSpec, deps: Dependents, owner: str) -> list[sql.Composed]:
    out = []
    for g in deps.grants:
        if g.grantee == owner or g.privilege not in PRIVILEGES:
            continue  # the owner's own privileges come with ownership
        who = sql.SQL("PUBLIC") if g.grantee == "PUBLIC" else sql.Identifier(g.grantee)
        cols = (sql.SQL(" ({})").format(sql.Identifier(g.column)) if g.column else sql.SQL(""))
        out.append(sql.SQL("GRANT {p}{c} ON {t} TO {who}{opt}").format(
            p=sql.SQL(g.privilege), c=cols, t=spec.table, who=who,
            opt=sql.SQL(" WITH GRANT OPTION") if g.grantable else sql.SQL("")))
    return out


def rename_sql(spec: MigrationSpec, kind: str, table: sql.Composable, name: str,
               to: str) -> sql.Composed:
    """Rename one of the original's constraints (on `table`), indexes or sequences (`kind` as
    in `spec.renamed`) from `name` to `to`: Build moves them aside, abort puts them back."""
    if kind == "constraint":
        return sql.SQL("ALTER TABLE {t} RENAME CONSTRAINT {a} TO {b}").format(
            t=table, a=sql.Identifier(name), b=sql.Identifier(to))
    what = sql.SQL("INDEX" if kind == "index" else "SEQUENCE")
    return sql.SQL("ALTER {w} {a} RENAME TO {b}").format(
        w=what, a=sql.Identifier(spec.schema, name), b=sql.Identifier(to))


def build_statements(conn: psycopg.Connection, spec: MigrationSpec,
                     deps: Dependents) -> list[Statement]:
    """Build's statements for `spec` as plan_renames() completed it."""
    t, old = spec.table, spec.old_table
    out = [Statement(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(t), "lock",
                     "lock the original table")]
    for kind, name, aside in spec.renamed:
        out.append(Statement(rename_sql(spec, kind, t, name, aside),
                             note=f"{kind} {name} out of the way"))
    out.append(Statement(sql.SQL("ALTER TABLE {t} RENAME TO {b}").format(
        t=t, b=sql.Identifier(spec.old_name)), note="the original out of the way"))
    out.append(Statement(sql.SQL(
        "CREATE TABLE {t} (LIKE {old} INCLUDING DEFAULTS INCLUDING GENERATED"
        " INCLUDING CONSTRAINTS INCLUDING COMMENTS INCLUDING STORAGE INCLUDING COMPRESSION)"
        " PARTITION BY RANGE ({c})").format(t=t, old=old, c=spec.column_ident),
        note="the partitioned table"))
    for row in conn.execute(IDENTITY_SQL, (spec.oid,)).fetchall():
        # the sequence's type is the column's (an identity takes no AS)
        col, how, _schema, seq, start, inc, lo, hi, cache, cycle, _typ = row
        out.append(Statement(sql.SQL(
            "ALTER TABLE {t} ALTER COLUMN {c} ADD GENERATED {how} AS IDENTITY"
            " (SEQUENCE NAME {s} START WITH {start} INCREMENT BY {inc}"
            " MINVALUE {lo} MAXVALUE {hi} CACHE {cache}{cycle})").format(
            t=t, c=sql.Identifier(col),
            how=sql.SQL("ALWAYS" if how == "a" else "BY DEFAULT"),
            s=sql.Identifier(spec.schema, seq),
            start=sql.Literal(start), inc=sql.Literal(inc), lo=sql.Literal(lo),
            hi=sql.Literal(hi), cache=sql.Literal(cache),
            cycle=sql.SQL(" CYCLE" if cycle else " NO CYCLE")),
            note=f"identity of {col}"))
        # the next value continues where the original's sequence stands
        out.append(Statement(sql.SQL(
            "SELECT pg_catalog.setval({new}::pg_catalog.regclass, s.last_value, s.is_called)"
            " FROM {old} s").format(
            new=sql.Literal(sql.Identifier(spec.schema, seq).as_string(conn)),
            old=sql.Identifier(spec.schema, spec.renamed_to("sequence", seq) or seq)),
            note=f"identity of {col}: next value"))
    for s_schema, s_name, col in spec.owned_sequences:
        out.append(Statement(sql.SQL("ALTER SEQUENCE {s} OWNED BY {t}.{c}").format(
            s=sql.Identifier(s_schema, s_name), t=t, c=sql.Identifier(col)),
            note=f"sequence {s_name} owned by the new {col}"))
    comment = conn.execute("SELECT pg_catalog.obj_description(%s, 'pg_class')",
                           (spec.oid,)).fetchone()
    if comment and comment[0] is not None:
        out.append(Statement(sql.SQL("COMMENT ON TABLE {t} IS {c}").format(
            t=t, c=sql.Literal(comment[0])), note="table comment"))
    me = conn.execute("SELECT CURRENT_USER").fetchone()[0]
    if deps.owner != me:
        out.append(Statement(sql.SQL("ALTER TABLE {t} OWNER TO {o}").format(
            t=t, o=sql.Identifier(deps.owner)), note="owner"))
    out += [Statement(g, note="grant") for g in _grants(spec, deps, deps.owner)]
    own_space = conn.execute(
        "SELECT t.spcname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_tablespace t"
        " ON t.oid = c.reltablespace WHERE c.oid = %s", (spec.oid,)).fetchone()
    storage = storage_sql(deps.reloptions, own_space[0] if own_space else None)
    out += [Statement(partition_sql(spec, p, storage), note=f"partition {p.name}")
            for p in spec.partitions]
    if deps.owner != me:
        out += [Statement(sql.SQL("ALTER TABLE {p} OWNER TO {o}").format(
            p=spec.partition_ident(p), o=sql.Identifier(deps.owner))) for p in spec.partitions]
    out.append(Statement(record_sql(spec, "build", "migrate"), note="record the names used"))
    out.append(Statement(new_table_sql(spec), note="record the new table"))
    return out


def build_step(conn: psycopg.Connection, spec: MigrationSpec, deps: Dependents,
               done: object) -> Step:
    statements = build_statements(conn, spec, deps)
    return Step(
        title=f"build the partitioned {spec.display}",
        explanation=(
            f"Rename {spec.display} to {spec.old_name} (its constraints, indexes and identity "
            f"sequences too), then create the partitioned table under the original name with "
            f"the same columns, defaults, identity, comments, owner and grants, and its "
            f"{len(spec.partitions)} partitions."),
        statements=statements,
        locks=[Lock("ACCESS EXCLUSIVE", spec.display, "every read and write of the table")],
        done=done,  # type: ignore[arg-type]
        retry="step",
    )
