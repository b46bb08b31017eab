"""PostgreSQL's own parser (pglast), safe for any depth of nesting.

pglast turns PostgreSQL's parse tree into Python objects recursively, with no depth check: a
deep statement (`SELECT 1 + 1 + ...` or `SELECT 1 UNION ALL SELECT 1 ...`, some 25,000 levels)
overflowed the 8 MB C stack and killed the process, which in CI means a query file from a pull
request. PostgreSQL's own depth check, which parse_sql_json() runs, refuses the deepest trees
first ("stack depth limit exceeded", as the server would); the rest (measured: under 100,000
levels) are converted on a thread whose stack holds several times that. Every use of the parser
in pgparts goes through here: the statement check, the relations a query names, and the split
of a file into statements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pglast.parser import ParseError, parse_sql, parse_sql_json, split

T = TypeVar("T")
_STACK_BYTES = 256 * 1024 * 1024


def _deep(text: str, fn: Callable[[], T]) -> T:
    parse_sql_json(text)  # PostgreSQL's stack depth check: a ParseError for the deepest
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except ParseError as exc:
            result["error"] = exc

    previous = threading.stack_size(_STACK_BYTES)
    try:
        worker = threading.Thread(target=run, name="pgparts-parse", daemon=True)
        worker.start()
    finally:
        threading.stack_size(previous)
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def parse(text: str) -> list[Any]:
    """parse_sql(text) as a list of RawStmt; ParseError as pglast raises it."""
    return list(_deep(text, lambda: parse_sql(text)))


def split_slices(text: str) -> list[slice]:
    """The statements of `text` as slices, located by the parser; ParseError if it does not
    parse."""
    return list(_deep(text, lambda: split(text, with_parser=True, only_slices=True)))
