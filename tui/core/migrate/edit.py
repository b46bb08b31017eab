"""Editing a migration's layout as text, for front ends: the partitions in the layout file's TOML
form, and that text read back, validated by the server and counted, as the migration's new
layout. Allowed until Build; stage 4 then records it again (its done check compares the
recorded partitions), as `pgparts migrate --resume --layout FILE` does."""

from __future__ import annotations

from dataclasses import replace

import psycopg

from . import MigrateError
from .layout import Partition, layout_toml, parse_layout, validate_layout
from .preflight import rows_per_period
from .source import partition_column
from .spec import MigrationSpec
from .table_code import refuse_table_code

SOURCE = "the layout"  # how messages name the edited text


def layout_editable(conn: psycopg.Connection, spec: MigrationSpec) -> bool:
    """Whether the layout can still change (the partitioned table is not built yet)."""
    from .stages import state_at_least

    return not state_at_least(conn, spec, "build")


def layout_text(conn: psycopg.Connection, spec: MigrationSpec) -> str:
    """The spec's partitions as a layout file (TOML), with the rows they were planned with."""
    from .stages import original

    pc = partition_column(original(conn, spec), spec.column)
    parts = [Partition(p.name, rows=p.rows, default=True) if p.default
             else Partition(p.name, p.lo, p.hi, p.rows) for p in spec.partitions]
    return layout_toml(parts, pc)


def with_layout_text(conn: psycopg.Connection, spec: MigrationSpec,
                     text: str) -> tuple[MigrationSpec, list[str]]:
    """The spec with the partitions of `text` (rows counted per month, or per range for an
    integer column), and the layout's warnings. MigrateError, in one line, when the text is
    not a usable layout or the table is built already."""
    from .stages import original, spec_partitions

    if not layout_editable(conn, spec):
        raise MigrateError("the layout cannot change once the partitioned table is built")
    column, parts = parse_layout(text, SOURCE)
    if column is not None and column != spec.column:
        raise MigrateError(f"{SOURCE} is for column {column!r}, not {spec.column!r}")
    table = original(conn, spec)
    refuse_table_code(conn, table.oid, spec.display, [spec.column])
    pc = partition_column(table, spec.column)
    counts = rows_per_period(conn, table, pc, "month", exact=True)
    check = validate_layout(conn, parts, pc, counts=counts)
    if check.problems:
        raise MigrateError(f"{SOURCE}: " + "; ".join(check.problems))
    if not any(p.default for p in check.partitions):
        raise MigrateError(f"{SOURCE} needs a DEFAULT partition (default = true)")
    return replace(spec, partitions=spec_partitions(check.partitions, pc.kind)), \
        list(check.warnings)
