"""A table's shape as SQL for another table: its indexes (from the catalog, never from
pg_get_indexdef text pasted whole) and its grants. Used by consolidation to build a copy
beside a week, and by index_fix to build a parent's index on a partition."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..engine.model import Statement


@dataclass
class IndexShape:
    """One index of a table, as parts that compose into CREATE INDEX for another table."""

    oid: int
    name: str
    contype: str | None  # 'p', 'u', 'x' for a constraint's index, else None
    unique: bool
    nulls_not_distinct: bool
    amname: str
    key_parts: list[sql.Composable]
    include: list[sql.Composable]
    plain_cols: list[str]  # the key columns that are plain columns, in order
    predicate: str | None  # deparsed by the server
    key_opclasses: list[int] = field(default_factory=list)  # pg_opclass oid per key column

    def create_sql(self, table: sql.Composable, *, name: sql.Composable | None = None,
                   concurrently: bool = False, only: bool = False) -> sql.Composed:
        inc = sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(self.include)) \
            if self.include else sql.SQL("")
        where = sql.SQL(" WHERE {}").format(sql.SQL(self.predicate)) if self.predicate \
            else sql.SQL("")
        head = sql.SQL("CREATE {unique}INDEX {conc}{name}ON {only}{t}").format(
            unique=sql.SQL("UNIQUE " if self.unique else ""),
            conc=sql.SQL("CONCURRENTLY " if concurrently else ""),
            name=sql.SQL("{} ").format(name) if name is not None else sql.SQL(""),
            only=sql.SQL("ONLY " if only else ""), t=table)
        return sql.SQL("{head} USING {am} ({keys}){inc}{nnd}{where}").format(
            head=head, am=sql.Identifier(self.amname), keys=sql.SQL(", ").join(self.key_parts),
            inc=inc, nnd=sql.SQL(" NULLS NOT DISTINCT" if self.nulls_not_distinct else ""),
            where=where)

    def constraint_sql(self, table: sql.Composable, name: sql.Composable | None = None
                       ) -> sql.Composed:
        """ALTER TABLE ... ADD [CONSTRAINT name] PRIMARY KEY / UNIQUE (...) for a constraint's
        index."""
        inc = sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(self.include)) \
            if self.include else sql.SQL("")
        kind = sql.SQL("PRIMARY KEY" if self.contype == "p" else
                       ("UNIQUE NULLS NOT DISTINCT" if self.nulls_not_distinct else "UNIQUE"))
        named = sql.SQL("CONSTRAINT {} ").format(name) if name is not None else sql.SQL("")
        return sql.SQL("ALTER TABLE {} ADD {}{} ({}){}").format(
            table, named, kind, sql.SQL(", ").join(sql.Identifier(c) for c in self.plain_cols),
            inc)


def index_shapes(conn: psycopg.Connection, table_oid: int,
                 index_oids: list[int] | None = None) -> list[IndexShape]:
    """The indexes of `table_oid` (or only `index_oids`), in oid order."""
    version = int(conn.info.server_version)
    cur = conn.cursor(row_factory=dict_row)
    by_num = {c["attnum"]: c for c in cur.execute(
        "SELECT attnum, attname, attcollation FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", (table_oid,)).fetchall()}
    nnd = sql.SQL("x.indnullsnotdistinct" if version >= 150000 else "false")
    only = sql.SQL(" AND x.indexrelid = ANY({})").format(sql.Literal(index_oids)) \
        if index_oids is not None else sql.SQL("")
    idx_rows = cur.execute(sql.SQL(
        "SELECT x.indexrelid, ic.relname, am.amname, x.indisunique, x.indnkeyatts, x.indnatts,"
        " x.indkey::int2[] AS keys, x.indclass::oid[] AS classes,"
        " x.indcollation::oid[] AS colls, x.indoption::int2[] AS opts,"
        " pg_get_expr(x.indpred, x.indrelid) AS pred, con.contype, {nnd} AS nnd,"
        " ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, false)"
        "       FROM generate_series(1, x.indnatts) k ORDER BY k) AS coldefs"
        " FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid"
        " JOIN pg_am am ON am.oid = ic.relam"
        " LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid"
        "   AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u', 'x')"
        " WHERE x.indrelid = %s{only} ORDER BY x.indexrelid").format(nnd=nnd, only=only),
        (table_oid,)).fetchall()
    opclasses = {r["oid"]: r for r in cur.execute(
        "SELECT o.oid, n.nspname, o.opcname, o.opcdefault FROM pg_opclass o"
        " JOIN pg_namespace n ON n.oid = o.opcnamespace"
        " WHERE o.oid = ANY(%s)",
        ([c for r in idx_rows for c in r["classes"]],)).fetchall()}
    collations = {r["oid"]: r for r in cur.execute(
        "SELECT c.oid, n.nspname, c.collname FROM pg_collation c"
        " JOIN pg_namespace n ON n.oid = c.collnamespace WHERE c.oid = ANY(%s)",
        ([c for r in idx_rows for c in r["colls"] if c],)).fetchall()}
    out: list[IndexShape] = []
    for r in idx_rows:
        key_parts: list[sql.Composable] = []
        include: list[sql.Composable] = []
        plain_cols: list[str] = []
        for k in range(r["indnatts"]):
            attnum = r["keys"][k]
            if k >= r["indnkeyatts"]:
                include.append(sql.Identifier(by_num[attnum]["attname"]))
                continue
            if attnum:
                col = by_num[attnum]
                plain_cols.append(col["attname"])
                part: sql.Composable = sql.Identifier(col["attname"])
            else:
                # an expression, as PostgreSQL's own deparser prints it
                part = sql.SQL("({})").format(sql.SQL(r["coldefs"][k]))
            extras: list[sql.Composable] = [part]
            coll = r["colls"][k]
            if coll and (not attnum or coll != by_num[attnum]["attcollation"]):
                c = collations[coll]
                extras.append(sql.SQL("COLLATE {}").format(sql.Identifier(c["nspname"],
                                                                           c["collname"])))
            opc = opclasses.get(r["classes"][k])
            if opc is not None and not opc["opcdefault"]:
                extras.append(sql.Identifier(opc["nspname"], opc["opcname"]))
            opt = r["opts"][k]
            if opt & 1:
                extras.append(sql.SQL("DESC" if opt & 2 else "DESC NULLS LAST"))
            elif opt & 2:
                extras.append(sql.SQL("NULLS FIRST"))
            key_parts.append(sql.SQL(" ").join(extras))
        out.append(IndexShape(int(r["indexrelid"]), r["relname"], r["contype"],
                              bool(r["indisunique"]), bool(r["nnd"]), r["amname"], key_parts,
                              include, plain_cols, r["pred"],
                              [int(c) for c in r["classes"][:r["indnkeyatts"]]]))
    return out


TABLE_PRIVILEGES = frozenset(
    ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"))


def grant_statements(conn: psycopg.Connection, oids: list[int], new: sql.Identifier
                     ) -> list[Statement]:
    """GRANTs giving the new table the privileges granted on the tables `oids`.

    The mirror trigger writes to the new table with the writer's own privileges, and after the
    swap it is the week's partition: whoever may write the week (through the parent or directly)
    must be able to write its copy, or their writes would fail until the swap.
    """
    rows = conn.execute(
        "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN NULL"
        " ELSE pg_get_userbyid(a.grantee)::text END AS grantee, a.privilege_type"
        " FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = ANY(%s)"
        " ORDER BY 1 NULLS FIRST, 2", (oids,)).fetchall()
    by_role: dict[str | None, list[str]] = {}
    for grantee, privilege in rows:
        if privilege in TABLE_PRIVILEGES:  # only known keywords become SQL
            by_role.setdefault(grantee, []).append(privilege)
    return [
        Statement(sql.SQL("GRANT {privs} ON TABLE {new} TO {role}").format(
            privs=sql.SQL(", ").join(sql.SQL(p) for p in privs), new=new,
            role=sql.SQL("PUBLIC") if role is None else sql.Identifier(role)),
            note="the privileges granted on the parent and the partition")
        for role, privs in by_role.items()
    ]
