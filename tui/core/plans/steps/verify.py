"""Verification: row counts and order-independent checksums of two tables compared, in the
runner (a check that raises VerificationFailed) and in the exported script (DO blocks that raise,
so `psql -v ON_ERROR_STOP=1` stops before anything destructive); containment of one table's rows
in another by a multiset difference of row hashes. Every catalog object is qualified."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..engine.model import VerificationFailed
from ..hashing import checksum_sql, row_hash


def compare_sql(old: sql.Composable, new: sql.Composable, cols: list[str],
                 fast: bool) -> sql.Composed:
    """(rows, checksum) of both tables, in one row."""
    return sql.SQL("SELECT o.n, o.h, c.n, c.h FROM ({}) o(n, h), ({}) c(n, h)").format(
        checksum_sql(old, cols, fast), checksum_sql(new, cols, fast))


def raise_unless_equal(conn: psycopg.Connection, compare: sql.Composed, old_disp: str,
                        new_disp: str) -> sql.Composed:
    """The exported script's check: a DO block that raises unless both tables hold as many rows
    with the same checksum (psql -v ON_ERROR_STOP=1 then stops)."""
    body = sql.SQL(
        "DECLARE\n  r record;\nBEGIN\n"
        "  SELECT * INTO r FROM ({q}) x(n_old, h_old, n_new, h_new);\n"
        "  IF r.n_old IS DISTINCT FROM r.n_new OR r.h_old IS DISTINCT FROM r.h_new THEN\n"
        "    RAISE EXCEPTION 'pgparts: % has % rows (checksum %) but % has % (checksum %)',\n"
        "      {old}, r.n_old, r.h_old, {new}, r.n_new, r.h_new;\n"
        "  END IF;\nEND").format(q=compare, old=sql.Literal(old_disp),
                                  new=sql.Literal(new_disp))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


def missing_sql(old: sql.Composable, new: sql.Composable, cols: list[str],
                fast: bool) -> sql.Composed:
    """How many rows of `old` are not in `new`: a multiset difference of row hashes, so a row
    stored twice in `old` must be in `new` twice."""
    return sql.SQL("SELECT pg_catalog.count(*) FROM (SELECT {h} FROM {old} EXCEPT ALL"
                   " SELECT {h} FROM {new}) d").format(h=row_hash(cols, fast), old=old, new=new)


def raise_unless_contained(conn: psycopg.Connection, old: sql.Composable, new: sql.Composable,
                            cols: list[str], fast: bool, old_disp: str,
                            new_disp: str) -> sql.Composed:
    """The exported script's drop check: every row of the original is in the new partition (a
    multiset difference of row hashes), else raise before the DROP."""
    body = sql.SQL(
        "DECLARE\n  missing pg_catalog.int8;\nBEGIN\n"
        "  missing := ({missing});\n"
        "  IF missing > 0 THEN\n"
        "    RAISE EXCEPTION 'pgparts: % rows of % are not in %; % is kept', missing, {o}, {n},"
        " {o};\n"
        "  END IF;\nEND").format(missing=missing_sql(old, new, cols, fast),
                                  o=sql.Literal(old_disp), n=sql.Literal(new_disp))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


def raise_unless_attached(conn: psycopg.Connection, parent_oid: int, old_oid: int,
                           schema: str, new_name: str, bound: str,
                           new_disp: str) -> sql.Composed:
    body = sql.SQL(
        "BEGIN\n"
        "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = {parent}"
        " WHERE n.nspname = {schema} AND c.relname = {new}"
        " AND pg_catalog.pg_get_expr(c.relpartbound, 0) = {bound})"
        " OR EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = {old}) THEN\n"
        "    RAISE EXCEPTION 'pgparts: % is not attached with %', {disp}, {bound};\n"
        "  END IF;\nEND").format(
        parent=sql.Literal(parent_oid), schema=sql.Literal(schema), new=sql.Literal(new_name),
        bound=sql.Literal(bound), old=sql.Literal(old_oid), disp=sql.Literal(new_disp))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


def subset_check(old: sql.Composable, new: sql.Composable, cols: list[str], fast: bool,
                  old_disp: str, new_disp: str, old_oid: int,
                  refusals: dict[int, tuple[str, str, str]]) -> Any:
    def check(row: Any, conn: psycopg.Connection) -> str:
        n_old, h_old, n_new, h_new = row
        if (n_old, h_old) == (n_new, h_new):
            return f"{old_disp} and {new_disp} hold the same {n_new:,} rows (checksum {h_new})"
        # the new partition changed since the swap (it is live): every row of the original
        # must still be in it; a multiset difference of row hashes finds any that is not
        missing = conn.execute(missing_sql(old, new, cols, fast)).fetchone()[0]
        if missing:
            why = (f"{missing:,} of the {n_old:,} rows of {old_disp} are not in {new_disp} "
                   f"(changed since the swap?)")
            refusals[old_oid] = (why, old_disp, new_disp)
            raise VerificationFailed(f"{why}; {old_disp} is kept")
        return f"all {n_old:,} rows of {old_disp} are in {new_disp}"
    return check
