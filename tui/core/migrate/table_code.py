"""The migration's previews refuse a table whose reading runs its code (tui/core/table_code.py
finds that code in the catalog; `--apply` reads the table anyway)."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from ..table_code import refusal, table_code
from . import MigrateError

__all__ = ["refuse_table_code", "table_code"]


def refuse_table_code(conn: psycopg.Connection, table_oid: int, display: str,
                      columns: Iterable[str]) -> None:
    """MigrateError, in one line, when a preview's read of the table would run its code."""
    found = table_code(conn, table_oid, columns)
    if found:
        raise MigrateError(refusal(display, found, "`pgparts migrate ... --apply` runs it"))
