"""Starting, continuing and inspecting a migration, headless: what the command line (and the
console's wizard) call. The stages themselves are in stages.py."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg

from ..config import PlansConfig
from ..connection import Target
from ..names import display_name
from ..plans.engine.model import Plan
from ..plans.engine.runner import Hook, PlanRunner, ProgressCallback, RunResult
from ..plans.steps import owners
from . import MigrateError
from .analysis import analyse
from .dependencies import covered_by_key
from .keys import surrogate_key
from .layout import propose_layout, read_layout, validate_layout
from .preflight import Preflight, RowsPerPeriod, preflight, rows_per_period, wait_for_writers
from .source import PartitionColumn, load_table, partition_column
from .spec import MigrationSpec, SpecPartition
from .stages import STAGES, Stage, make_spec, spec_partitions, standing
from .table_code import refuse_table_code


@dataclass
class Choices:
    """What the operator asked for (the command line's options)."""

    schema: str
    name: str
    column: str
    key: tuple[str, ...]
    tiebreak: str | None = None
    interval: str | None = None
    target_rows: int | None = None
    layout_file: Path | None = None
    insert_trigger: bool = False  # stage 8, offered: run only when chosen


@dataclass
class Prepared:
    spec: MigrationSpec
    preflight: Preflight
    layout_warnings: list[str] = field(default_factory=list)
    duplicate_groups: int = 0
    duplicate_rows: int = 0
    collision_groups: int = 0
    collision_rows: int = 0
    unfixable: list = field(default_factory=list)  # collisions.CollisionGroup over the limit
    covered_indexes: list[str] = field(default_factory=list)  # served by the new key's index


def _layout(conn: psycopg.Connection, counts: RowsPerPeriod, pc: PartitionColumn, name: str,
            c: Choices) -> tuple[tuple[SpecPartition, ...], list[str]]:
    """The partitions asked for (proposed, or read from the layout file), validated by the
    server; MigrateError with the problems when they cannot be used."""
    if c.layout_file is not None:
        column, parts = read_layout(c.layout_file)
        if column is not None and column != pc.name:
            raise MigrateError(f"{c.layout_file} is a layout for column {column!r}, "
                               f"not {pc.name!r}")
    else:
        parts = propose_layout(counts, name, interval=c.interval, target_rows=c.target_rows)
    check = validate_layout(conn, parts, pc, counts=counts)
    if check.problems:
        raise MigrateError("layout: " + "; ".join(check.problems))
    return spec_partitions(check.partitions, pc.kind), list(check.warnings)


def _period(c: Choices) -> str:
    # quarters are counted by month (a quarter is three of them)
    return c.interval if c.interval and c.interval != "quarter" else "month"


def relayout(conn: psycopg.Connection, spec: MigrationSpec, c: Choices, *,
             table_code_ok: bool = False) -> tuple[MigrationSpec, list[str]]:
    """The recorded migration with another layout, before Build (stage 4 records it). It
    counts rows: refused, unless `table_code_ok` (an apply), when that runs the table's code
    (table_code.py)."""
    from .stages import original, state_at_least

    if state_at_least(conn, spec, "build"):
        raise MigrateError("the layout cannot change once the partitioned table is built; "
                           "--abort to start over")
    table = original(conn, spec)
    if not table_code_ok:
        refuse_table_code(conn, table.oid, spec.display, [spec.column])
    pc = partition_column(table, spec.column)
    counts = rows_per_period(conn, table, pc, _period(c), exact=True)
    parts, warnings = _layout(conn, counts, pc, spec.name, c)
    return replace(spec, partitions=parts), warnings


def prepare(conn: psycopg.Connection, c: Choices, *, exact: bool = True,
            table_code_ok: bool = False) -> Prepared:
    """Preflight, the layout (proposed or read from the file, validated by the server), and the
    counts of duplicates and collisions: everything stages 1-4 show. Reads only; refused,
    unless `table_code_ok` (an apply), when reading the table runs its code (table_code.py)."""
    if not table_code_ok:
        table = load_table(conn, c.schema, c.name)
        refuse_table_code(conn, table.oid, display_name(c.schema, c.name),
                          [c.column, *c.key, c.tiebreak or ""])
    pf = preflight(conn, c.schema, c.name, c.column, _period(c), exact=exact)
    # Build gives the new table and its partitions the original's owner: say so now rather
    # than after the data stages changed rows
    problem = owners.owner_problem(conn, {pf.dependents.owner}, c.schema,
                                   "the partitioned table", "the original is")
    if problem:
        raise MigrateError(problem)
    pc = pf.column
    parts, warnings = _layout(conn, pf.rows, pc, c.name, c)
    surrogate = surrogate_key(pf.table, pf.dependents)
    spec = make_spec(pf.table, c.column, c.key, c.tiebreak, surrogate, parts,
                     insert_trigger=c.insert_trigger)
    out = Prepared(spec, pf, warnings, covered_indexes=covered_by_key(
        conn, pf.table.schema, (pf.table.name,), spec.key, pf.dependents))
    # one read of the table for both analyses (analysis.py)
    dup, col = analyse(conn, pf.table, pc, c.key, c.tiebreak, surrogate,
                       pf.dependents.referencing_fks, sample_groups=3)
    if dup is not None:
        out.duplicate_groups, out.duplicate_rows = dup.groups, dup.rows_to_delete
        if dup.blocking:
            raise MigrateError("foreign key(s) " + ", ".join(f.name for f in dup.blocking)
                               + " do not reference the surrogate id: re-point them first")
    if col is not None:
        out.collision_groups, out.collision_rows = col.groups, col.rows_rewritten
        out.unfixable = list(col.unfixable)
    return out


def wait_writers(conn: psycopg.Connection, spec: MigrationSpec, seconds: float) -> int:
    """Wait up to `seconds` for the sessions writing to the table; the writers left."""
    from .stages import original

    return len(wait_for_writers(conn, original(conn, spec), seconds))


def next_stages(conn: psycopg.Connection, spec: MigrationSpec) -> list[Stage]:
    """The stages still to run, in order (stage 1 always: it only reads)."""
    st = standing(conn, spec.schema, spec.name)
    if st.problems:
        raise MigrateError("; ".join(st.problems))
    return [s for s in STAGES
            if s.chosen(spec) and (s.name == "preflight" or not s.done(conn, spec))]


def run_plan(target: Target, plan: Plan, *, config: PlansConfig | None = None,
             progress: ProgressCallback | None = None, hook: Hook | None = None,
             write_journal: bool = True) -> RunResult:
    runner = PlanRunner(target, plan, config=config, progress=progress, hook=hook,
                        write_journal=write_journal)
    return runner.run()
