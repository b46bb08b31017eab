"""Stage 6, Copy: the original's rows into the new partitions, one partition per transaction,
each verified before it commits: the partition holds as many rows as the original has in its
range, with the same order-independent checksum (the sum of a 64-bit hash of every row,
plans/hashing.py).

The partitions are copied by SESSIONS sessions at once (the plan runner's parallel steps), each
partition in its own transaction as before: progress adds up the rows committed by both, and a
partition killed in one session rolls back alone.

A partition that holds the rows the original has in its range (count and checksum) is done; an
empty one the original has no row for is done too. That is what resume reads (from the data,
no name or comment): a killed copy rolls its partition back and the next run copies it again;
a row written to the table after Build makes its partition differ, and the copy stops there.

The DEFAULT partition takes the rows outside every other partition's range: when those ranges
follow each other end to end, that is "below the first or from the last bound on, or NULL",
which an index on the column finds at once (the done check, the copy and its checksum each
read the whole original otherwise, to find no row in the usual case).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..plans.engine.model import Estimate, Lock, Statement, Step, VerificationFailed
from ..plans.hashing import checksum_sql, extended_hash_supported
from ..plans.steps import markers
from .build import bound, cast_type
from .spec import MigrationSpec, SpecPartition, state_sql

# Sessions copying at once, one partition each: PostgreSQL runs an INSERT ... SELECT on one
# core; a second session copying another partition uses a second one.
SESSIONS = 2

_COLUMNS = """
SELECT a.attname, a.atttypid, a.attidentity <> '' FROM pg_catalog.pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum
"""


def _end(value: str | None, unbounded: str) -> str:
    return unbounded if value is None or value.upper() == unbounded else value


def _span(spec: MigrationSpec) -> tuple[str, str] | None:
    """The ranges of the partitions other than DEFAULT as one [from, to) when they follow each
    other end to end (each one's upper bound the same text as the next one's lower bound); None
    when they leave a gap or cannot be chained."""
    ranges = [(_end(q.lo, "MINVALUE"), _end(q.hi, "MAXVALUE"))
              for q in spec.partitions if not q.default]
    upper = dict(ranges)
    if not ranges or len(upper) != len(ranges):
        return None
    starts = [lo for lo, _ in ranges if lo not in {hi for _, hi in ranges}]
    if len(starts) != 1:
        return None
    end, links = starts[0], 0
    while end in upper and links < len(ranges):
        end, links = upper[end], links + 1
    return (starts[0], end) if links == len(ranges) else None


def range_condition(spec: MigrationSpec, p: SpecPartition) -> sql.Composable:
    """Rows of the original that belong in `p` (NULL partition keys go to DEFAULT)."""
    col, cast = spec.column_ident, cast_type(spec.column_kind)
    if not p.default:
        parts = []
        if p.lo is not None and p.lo.upper() != "MINVALUE":
            parts.append(sql.SQL("{c} >= {b}").format(c=col, b=bound(spec, p.lo, cast)))
        if p.hi is not None and p.hi.upper() != "MAXVALUE":
            parts.append(sql.SQL("{c} < {b}").format(c=col, b=bound(spec, p.hi, cast)))
        return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")
    others = [q for q in spec.partitions if not q.default]
    if not others:
        return sql.SQL("true")
    span = _span(spec)
    if span is not None:
        # outside one contiguous span: comparisons an index on the column serves (the general
        # form below, NOT of the ranges' OR, reads the whole original, three times per copy)
        outside = [sql.SQL("{c} IS NULL").format(c=col)]
        if span[0] != "MINVALUE":
            outside.append(sql.SQL("{c} < {b}").format(c=col, b=bound(spec, span[0], cast)))
        if span[1] != "MAXVALUE":
            outside.append(sql.SQL("{c} >= {b}").format(c=col, b=bound(spec, span[1], cast)))
        return sql.SQL(" OR ").join(outside)
    inside = sql.SQL(" OR ").join(sql.SQL("({})").format(range_condition(spec, q))
                                  for q in others)
    return sql.SQL("{c} IS NULL OR NOT ({inside})").format(c=col, inside=inside)


def _source(spec: MigrationSpec, cols: list[str], p: SpecPartition) -> sql.Composed:
    return sql.SQL("(SELECT {cols} FROM {old} WHERE {cond}) AS s").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols), old=spec.old_table,
        cond=range_condition(spec, p))


def _compare_check(display: str) -> Any:
    def check(row: Any, _conn: psycopg.Connection) -> str:
        n_old, h_old, n_new, h_new = row
        if (n_old, h_old) != (n_new, h_new):
            raise VerificationFailed(
                f"{display}: the original has {n_old:,} rows (checksum {h_old}) for it, the "
                f"partition {n_new:,} (checksum {h_new})")
        return f"{display}: {n_new:,} rows, checksum {h_new}, as in the original"
    return check


def _verify_script(conn: psycopg.Connection, compare: sql.Composed,
                   display: str) -> sql.Composed:
    body = sql.SQL(
        "DECLARE\n  r record;\nBEGIN\n"
        "  SELECT * INTO r FROM ({q}) x(n_old, h_old, n_new, h_new);\n"
        "  IF r.n_old IS DISTINCT FROM r.n_new OR r.h_old IS DISTINCT FROM r.h_new THEN\n"
        "    RAISE EXCEPTION 'pgparts: % differs from the original', {d};\n"
        "  END IF;\nEND").format(q=compare, d=sql.Literal(display))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))


def copy_steps(conn: psycopg.Connection, spec: MigrationSpec) -> list[Step]:
    """One step per partition, then one that records the stage. `conn` reads the original's
    columns (by its oid: the plan may be made before Build renames it)."""
    rows = conn.execute(_COLUMNS, (spec.oid,)).fetchall()
    cols = [r[0] for r in rows]
    fast = extended_hash_supported(conn, [int(r[1]) for r in rows])
    identity = any(r[2] for r in rows)
    width = conn.execute("SELECT CASE WHEN c.reltuples > 0 THEN"
                         " pg_catalog.pg_table_size(c.oid) / c.reltuples ELSE 0 END"
                         " FROM pg_catalog.pg_class c WHERE c.oid = %s",
                         (spec.oid,)).fetchone()[0] or 0
    col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    steps = []
    for p in spec.partitions:
        part = spec.partition_ident(p)
        display = p.name
        est = p.rows or 0
        compare = sql.SQL("SELECT o.n, o.h, c.n, c.h FROM ({a}) o(n, h), ({b}) c(n, h)").format(
            a=checksum_sql(_source(spec, cols, p), cols, fast),
            b=checksum_sql(part, cols, fast))
        statements = [
            Statement(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(spec.old_table), "lock",
                      "no writes to the original during the copy"),
            Statement(sql.SQL(
                "INSERT INTO {part} ({cols}){over} SELECT {cols} FROM {old} WHERE {cond}").format(
                part=part, cols=col_list,
                over=sql.SQL(" OVERRIDING SYSTEM VALUE") if identity else sql.SQL(""),
                old=spec.old_table, cond=range_condition(spec, p)),
                "copy", f"copy into {display}", est_rows=est, est_bytes=int(est * width)),
            Statement(compare, "verify", f"verify {display}", check=_compare_check(display),
                      script=_verify_script(conn, compare, display)),
        ]
        steps.append(Step(
            title=f"copy {display}",
            explanation=(f"Copy the rows of {spec.old_display} that belong in {display}, then "
                         "compare count and checksum before committing."),
            statements=statements,
            locks=[Lock("SHARE", spec.old_display, "writes to the original"),
                   Lock("ROW EXCLUSIVE", display)],
            estimate=Estimate(rows=est, bytes=int(est * width)),
            done=_partition_done(spec, p, compare),
            verify_note="count and checksum against the original",
            group="copy", parallel="copy",
        ))
    steps.append(Step(
        title="record the copy",
        explanation="Every partition holds its rows: the copy stage is complete.",
        statements=[Statement(markers.guard_sql(conn, create=False), note="registry trusted"),
                    Statement(state_sql(spec, "copy"), note="record the stage")],
        done=lambda c: _state_at_least(c, spec, "copy"),
    ))
    return steps


def _partition_done(spec: MigrationSpec, p: SpecPartition, compare: sql.Composed) -> Any:
    """Copied: the partition holds what the original has in its range. An empty partition is
    done only when the original has no row there; one that holds rows is compared in full,
    since rows written to the table's name after Build land in it without being a copy."""
    def done(conn: psycopg.Connection) -> bool:
        if _state_at_least(conn, spec, "copy"):
            return True
        row = conn.execute(sql.SQL(
            "SELECT EXISTS (SELECT FROM {part}), NOT EXISTS (SELECT FROM {old} WHERE {cond})"
        ).format(part=spec.partition_ident(p), old=spec.old_table,
                 cond=range_condition(spec, p))).fetchone()
        if not row[0]:
            return bool(row[1])
        n_old, h_old, n_new, h_new = conn.execute(compare).fetchone()
        return (n_old, h_old) == (n_new, h_new)
    return done


def _state_at_least(conn: psycopg.Connection, spec: MigrationSpec, stage: str) -> bool:
    from .stages import state_at_least

    return state_at_least(conn, spec, stage)
