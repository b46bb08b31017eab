"""What a front end shows around the stages' plans: the proposals for a new migration (partition
column, key, tie-break) and, per stage, what it found (counts, a table of periods or
partitions, and what stops it). Reads only; a stage with nothing to report gets an empty report,
so a front end treats every stage alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..humanfmt import count, plural, size
from ..infinity import is_infinite
from ..names import display_name
from . import MigrateError
from .collisions import MAX_PER_MINUTE, find_collisions
from .dependencies import covered_by_key, covered_note
from .duplicates import find_duplicates
from .keys import KeyProposal, Tiebreak, propose_keys, propose_tiebreak, surrogate_key
from .layout import DEFAULT_TARGET_ROWS
from .migration import Prepared
from .periods import PERIODS
from .preflight import Dependents, Preflight, dependents, preflight, sessions_using
from .source import KINDS, PartitionColumn, SourceTable, load_table, partition_column
from .spec import MigrationSpec
from .table_code import refuse_table_code, table_code

INTERVALS = PERIODS
__all__ = ["DEFAULT_TARGET_ROWS", "INTERVALS", "Proposals", "StageReport",
           "blocking_before_start", "dependents_lines", "proposals", "stage_report",
           "unfixable_lines"]


# -- the form's proposals -------------------------------------------------------------------------
@dataclass
class Proposals:
    table: SourceTable
    columns: list[tuple[str, str]]  # (name, type) of the columns a table can be partitioned by
    column: str  # the proposed (or chosen) partition column
    keys: list[KeyProposal]  # best first
    tiebreaks: list[Tiebreak]  # for the first key, best first
    surrogate: str | None

    @property
    def key(self) -> tuple[str, ...]:
        natural = [k for k in self.keys if not k.holds_surrogate]
        return (natural or self.keys)[0].columns if self.keys else (self.column,)

    @property
    def tiebreak(self) -> str | None:
        return self.tiebreaks[0].column if self.tiebreaks else None


def _best_column(table: SourceTable) -> str:
    eligible = [c for c in table.columns if c.type_name in KINDS]
    if not eligible:
        raise MigrateError(f"{display_name(table.schema, table.name)} has no timestamp, date "
                           "or integer column to partition by")
    # a NOT NULL time column first: what a table is usually partitioned by
    rank = {"timestamptz": 0, "timestamp": 0, "date": 1}
    return min(eligible, key=lambda c: (not c.not_null, rank.get(c.type_name, 2),
                                        c.attnum)).name


def proposals(conn: psycopg.Connection, schema: str, name: str, column: str | None = None,
              *, probe_timeout: str = "5s") -> Proposals:
    """The columns to choose from and the proposals for `column` (or the best column): keys
    from the unique indexes and the data (each probed under `probe_timeout`), tie-breaks from
    the statistics."""
    table = load_table(conn, schema, name)
    column = column or _best_column(table)
    pc = partition_column(table, column)
    deps = dependents(conn, table)
    # the uniqueness probes read the table: not when that would run its code (table_code.py)
    probe = not table_code(conn, table.oid, [c.name for c in table.columns])
    keys = propose_keys(conn, table, pc, deps, probe=probe, timeout=probe_timeout)
    out = Proposals(table, [(c.name, c.type) for c in table.columns if c.type_name in KINDS],
                    column, keys, [], surrogate_key(table, deps))
    out.tiebreaks = propose_tiebreak(conn, table, out.key, deps)
    return out


# -- what a stage found ------------------------------------------------------------------------
@dataclass
class StageReport:
    lines: list[str] = field(default_factory=list)  # counts found, one line each
    table_title: str = ""
    table: list[tuple[str, str, str]] = field(default_factory=list)  # (name, range, rows)
    blocking: list[str] = field(default_factory=list)  # the stage cannot run; nothing changed
    writers: int = 0  # sessions writing to the table: the front end offers to wait for them


def dependents_lines(deps: Dependents, own_fks: str = "foreign keys",
                     referencing_fks: str = "referenced by") -> list[str]:
    """What depends on the table, one line per kind that has any (the foreign keys' labels
    are the caller's: the CLI's summary words them as sentences)."""
    kinds: list[tuple[str, list[str]]] = [
        ("indexes", [i.name for i in deps.indexes]),
        ("constraints", [c.name for c in deps.constraints if c.type != "n"]),
        (own_fks, [f.name for f in deps.own_fks]),
        (referencing_fks,
         [f"{display_name(f.schema, f.table)}.{f.name}" for f in deps.referencing_fks]),
        ("views", [display_name(v.schema, v.name) for v in deps.views]),
        ("triggers", [t[0] for t in deps.triggers]),
        ("rules", [r[0] for r in deps.rules]),
        ("sequences", [f"{display_name(s[0], s[1])} ({s[3]} of {s[2]})"
                       for s in deps.sequences]),
        ("grants", [f"{g.privilege} to {g.grantee}" for g in deps.grants]),
        ("policies", [p.name for p in deps.policies]),
        ("publications", [p[0] for p in deps.publications]),
        ("comments", [f"{c[0]} {c[1] or ''}".strip() for c in deps.comments]),
    ]
    return [f"{label}: {', '.join(items)}" for label, items in kinds if items]


def group_text(spec: MigrationSpec, g: Any) -> str:
    """A collision group (collisions.CollisionGroup) named by its key columns and minute:
    'pdm_id = 7, minute 2019-07-20 00:00 UTC'."""
    prefix = [c for c in spec.key if c != spec.column]
    named = [f"{c} = {v}" for c, v in zip(prefix, g.prefix, strict=False)]
    minute = g.minute.strftime("%Y-%m-%d %H:%M") + (" UTC" if g.minute.tzinfo else "")
    return ", ".join([*named, f"minute {minute}"])


def unfixable_lines(spec: MigrationSpec, groups: list[Any]) -> list[str]:
    """The collision groups pgparts cannot fix (collisions.CollisionGroup), one line each."""
    return [f"{group_text(spec, g)}: {g.size} rows"
            + (" share an infinite timestamp (seconds cannot tell them apart)"
               if is_infinite(g.minute) else "") for g in groups]


def blocking_before_start(prepared: Prepared) -> list[str]:
    """Why a new migration cannot start, as the command line refuses it: collision groups
    stage 3 cannot fix (the groups listed); empty when it can."""
    if not prepared.unfixable:
        return []
    return [f"{plural(len(prepared.unfixable), 'collision group')} of more than "
            f"{MAX_PER_MINUTE} rows in one minute (or at an infinite timestamp): stage 3 "
            "cannot fix them; resolve them first "
            "(nothing was changed)", *unfixable_lines(prepared.spec, prepared.unfixable)]


def _span(lo: Any, hi: Any) -> str:
    def text(v: Any) -> str:
        # midnight UTC, the bounds of calendar periods, is shown as the date alone
        t = str(v)
        for midnight in (" 00:00:00+00:00", " 00:00:00"):
            t = t.removesuffix(midnight)
        return t
    return f"{text(lo)} → {text(hi)}"


def _original(conn: psycopg.Connection, spec: MigrationSpec) -> SourceTable:
    from .stages import original

    return original(conn, spec)


def _preflight_report(conn: psycopg.Connection, spec: MigrationSpec,
                      pf: Preflight | None) -> StageReport:
    if pf is None:
        table = _original(conn, spec)
        # statistics only: an exact count per period is the first run's, not a resume's
        pf = preflight(conn, table.schema, table.name, spec.column, "year")
    rows = pf.rows
    sessions = sessions_using(conn, pf.table)  # now, not when the counts were made
    writers = [s for s in sessions if s.writes]
    out = StageReport(writers=len(writers))
    out.lines.append(f"rows: {count(rows.total_rows)} ({'counted' if rows.exact else 'estimated'})"
                     f", {size(pf.disk.table_bytes)} table + {size(pf.disk.index_bytes)} "
                     "indexes")
    out.lines.append(f"disk needed: {size(pf.disk.needed_bytes)} for the copy and its "
                     "indexes (PostgreSQL does not tell the free space: check the file system)")
    out.lines.append(f"sessions: {len(sessions)} using the table, {len(writers)} writing"
                     + (" (pids " + ", ".join(str(s.pid) for s in writers) + ")"
                        if writers else ""))
    if writers:
        out.lines.append("writers must be stopped first: the stage refuses while they write")
    out.lines += dependents_lines(pf.dependents)
    out.lines += [covered_note(name) for name in covered_by_key(
        conn, pf.table.schema, (pf.table.name,), spec.key, pf.dependents)]
    out.lines += [f"warning: {w}" for w in pf.warnings if "session(s) are writing" not in w]
    out.table_title = f"rows per {rows.period}"
    out.table = [(str(i + 1), _span(p.start, p.end), count(p.rows))
                 for i, p in enumerate(rows.periods)]
    return out


def _duplicates_report(conn: psycopg.Connection, spec: MigrationSpec) -> StageReport:
    out = StageReport()
    columns = spec.key + ((spec.tiebreak,) if spec.tiebreak else ())
    if not spec.surrogate or spec.surrogate in columns:
        out.lines.append("no surrogate id outside the key: nothing is deleted")
        return out
    table = _original(conn, spec)
    refuse_table_code(conn, table.oid, spec.display, columns)
    deps = dependents(conn, table)
    dup = find_duplicates(conn, table, spec.key, spec.tiebreak, spec.surrogate,
                          deps.referencing_fks, sample_groups=3)
    out.lines.append(f"duplicates on ({', '.join(columns)}): {plural(dup.groups, 'group')}, "
                     f"{plural(dup.rows_to_delete, 'row')} to delete (the lowest "
                     f"{spec.surrogate} of each group is kept)")
    for r in (r for r in dup.repoint if r.rows):
        out.lines.append(f"re-pointed first: {count(r.rows)} row(s) of "
                         f"{display_name(r.fk.schema, r.fk.table)} ({r.fk.name})")
    for g in dup.sample:
        ids = [str(row.get(spec.surrogate)) for row in g.rows]
        out.lines.append(f"sample: {', '.join(map(str, g.values))}: {spec.surrogate} "
                         f"{', '.join(ids)}")
    if dup.blocking:
        out.blocking.append("foreign key(s) " + ", ".join(f.name for f in dup.blocking)
                            + f" do not reference {spec.surrogate}: re-point them first")
    return out


def _collisions_report(conn: psycopg.Connection, spec: MigrationSpec) -> StageReport:
    out = StageReport()
    if not spec.tiebreak or spec.column_kind not in ("timestamptz", "timestamp"):
        out.lines.append("no tie-break, or not a timestamp column: nothing is rewritten")
        return out
    table = _original(conn, spec)
    refuse_table_code(conn, table.oid, spec.display, [spec.column, *spec.key, spec.tiebreak])
    pc: PartitionColumn = partition_column(table, spec.column)
    col = find_collisions(conn, table, pc, spec.key, spec.tiebreak, sample_groups=3)
    out.lines.append(f"collisions on ({', '.join(spec.key)}) within a minute: "
                     f"{plural(col.groups, 'group')}, {plural(col.rows_rewritten, 'row')} "
                     f"rewritten (seconds = rank by {spec.tiebreak})")
    for g, rewrites in col.sample:
        moved = ", ".join(f"{r.old:%S} → {r.new:%S}" for r in rewrites[:4])
        more = ", …" if len(rewrites) > 4 else ""
        out.lines.append(f"sample: {group_text(spec, g)}: seconds {moved}{more}")
    if col.unfixable:
        out.blocking.append(f"{plural(len(col.unfixable), 'group')} of more than "
                            f"{MAX_PER_MINUTE} rows in one minute (or at an infinite "
                            "timestamp): resolve them first (nothing was changed)")
        out.blocking += unfixable_lines(spec, col.unfixable)
    return out


def _layout_report(_conn: psycopg.Connection, spec: MigrationSpec) -> StageReport:
    out = StageReport()
    out.lines.append(f"{plural(len(spec.partitions), 'partition')} by {spec.column}, rows as "
                     "counted or estimated when the layout was made")
    out.table_title = "partitions"
    out.table = [(p.name, "DEFAULT" if p.default else _span(p.lo, p.hi),
                  "" if p.rows is None else count(p.rows)) for p in spec.partitions]
    return out


def _build_report(_conn: psycopg.Connection, spec: MigrationSpec) -> StageReport:
    return StageReport([f"{spec.display} becomes {spec.old_display}; the partitioned "
                        f"{spec.display} takes its place with "
                        f"{plural(len(spec.partitions), 'partition')}"])


def _copy_report(_conn: psycopg.Connection, spec: MigrationSpec) -> StageReport:
    known = [p.rows for p in spec.partitions if p.rows is not None]
    return StageReport([f"rows to copy: about {count(sum(known))} into "
                        f"{plural(len(spec.partitions), 'partition')}, each verified by count "
                        "and checksum"])


_REPORTS: dict[str, Callable[[psycopg.Connection, MigrationSpec], StageReport]] = {
    "duplicates": _duplicates_report,
    "collisions": _collisions_report,
    "layout": _layout_report,
    "build": _build_report,
    "copy": _copy_report,
}


def stage_report(conn: psycopg.Connection, spec: MigrationSpec, stage: str,
                 prepared: Prepared | None = None) -> StageReport:
    """What `stage` finds now (reads the table for the data stages). `prepared`: a new
    migration's preflight, reused for stage 1. MigrateError when it cannot be read."""
    if stage == "preflight":
        return _preflight_report(conn, spec, prepared.preflight if prepared else None)
    report = _REPORTS.get(stage)
    return report(conn, spec) if report else StageReport()
