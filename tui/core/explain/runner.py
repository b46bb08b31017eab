"""Running EXPLAIN safely: always inside a transaction that is rolled back, under a statement
timeout, cancellable from another thread, one statement at a time.

EXPLAIN ANALYZE executes the statement; the rollback means an UPDATE or DELETE leaves no trace.
Queries with $n parameters are explained as a generic plan: EXPLAIN (GENERIC_PLAN) on 16+, and on
older servers PREPARE + plan_cache_mode = force_generic_plan + EXPLAIN EXECUTE with NULL
arguments. With NULL arguments start-up pruning removes everything, so on those servers the
partitions of the generic plan are read from the locks it took (a generic plan locks every
partition that survived plan-time pruning).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from ..connection import SAFE_SEARCH_PATH, user_search_path
from ..gcpause import paused_gc
from .plan import Plan, parse_plan
from .statement import Statement

GENERIC_PLAN_VERSION = 160000
_prepared_names = itertools.count(1)


class ExplainError(Exception):
    """EXPLAIN failed: PostgreSQL's message, and where in the query it points (if it does)."""

    def __init__(
        self, message: str, *, sqlstate: str | None = None, offset: int | None = None,
        text: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.offset = offset  # 0-based character offset into the user's query text
        self.line: int | None = None  # 1-based, for messages
        self.column: int | None = None
        if offset is not None:
            before = text[:offset]
            self.line = before.count("\n") + 1
            self.column = offset - (before.rfind("\n") + 1) + 1

    def one_line(self) -> str:
        where = f" (line {self.line}, column {self.column})" if self.line else ""
        return f"{self.message}{where}"


class ExplainCancelled(ExplainError):
    """The user cancelled the statement; the server stopped it."""


class ExplainTimeout(ExplainError):
    """The statement ran longer than the configured EXPLAIN statement timeout."""


@dataclass
class RawExplain:
    statement: Statement
    document: Any
    plan: Plan
    analyze: bool
    generic: bool  # a generic plan of a parameterized query
    server_seconds: float  # wall time of the EXPLAIN round trip
    locked_oids: frozenset[int] | None  # relations the transaction had locked, when read


def _needs_locks(document: Any) -> bool:
    """Whether some Append lost subplans at start-up, so that the plan no longer names them."""
    stack = [document[0]["Plan"]] if isinstance(document, list) else []
    while stack:
        node = stack.pop()
        if node.get("Subplans Removed"):
            return True
        stack.extend(node.get("Plans", ()))
    return False


_LOCKS_SQL = sql.SQL(
    "SELECT relation FROM pg_catalog.pg_locks WHERE locktype = 'relation'"
    " AND pid = pg_catalog.pg_backend_pid() AND relation IS NOT NULL"
)
_SET_PATH = sql.SQL("SELECT pg_catalog.set_config('search_path', {}, true)")


class ExplainRunner:
    """Runs EXPLAIN on one connection (autocommit), cancellable from another thread."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._running = False
        self._cancel_requested = False

    @property
    def server_version(self) -> int:
        return int(self.conn.info.server_version)

    def cancel(self) -> bool:
        """Ask the server to stop the running statement; True when there was one to stop."""
        with self._lock:
            if not self._running:
                return False
            self._cancel_requested = True
        self.conn.cancel_safe(timeout=10.0)
        return True

    def _options(self, analyze: bool, generic_flag: bool) -> sql.Composable:
        opts = ["FORMAT JSON", "VERBOSE", "COSTS", "SUMMARY"]
        if self.server_version >= 120000:
            opts.append("SETTINGS")
        if analyze:
            opts += ["ANALYZE", "TIMING"]
        if generic_flag:
            opts.append("GENERIC_PLAN")
        return sql.SQL(", ").join(sql.SQL(o) for o in opts)

    def explain(
        self, statement: Statement, *, analyze: bool = False, timeout_seconds: float = 30.0
    ) -> RawExplain:
        generic = statement.has_params
        if generic and analyze:
            raise ExplainError(
                f"EXPLAIN ANALYZE runs the query, which needs values for ${statement.param_count}:"
                " replace the parameters with values, or explain without ANALYZE to see the"
                " generic plan"
            )
        native_generic = generic and self.server_version >= GENERIC_PLAN_VERSION
        prepared: sql.Identifier | None = None
        if generic and not native_generic:
            prepared = sql.Identifier(f"pgparts_explain_{next(_prepared_names)}")
        with self._lock:
            self._running, self._cancel_requested = True, False
        try:
            return self._run(statement, analyze, timeout_seconds, native_generic, prepared)
        finally:
            with self._lock:
                self._running = False
            if prepared is not None and not self.conn.closed:
                try:
                    self.conn.execute(sql.SQL("DEALLOCATE {}").format(prepared))
                except psycopg.Error:
                    pass  # the PREPARE itself failed: nothing to deallocate

    def _run(
        self, statement: Statement, analyze: bool, timeout_seconds: float,
        native_generic: bool, prepared: sql.Identifier | None,
    ) -> RawExplain:
        conn = self.conn
        timeout_ms = max(int(timeout_seconds * 1000), 1)
        prefix: sql.Composable | None = None
        locked: frozenset[int] | None = None
        try:
            # force_rollback: even EXPLAIN ANALYZE of an UPDATE/DELETE leaves nothing behind
            with conn.transaction(force_rollback=True), conn.cursor() as cur:
                cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                    sql.Literal(f"{timeout_ms}ms")))
                # the user's query is planned the way their application's would be; nothing
                # of pgparts' own runs under that search_path
                path = user_search_path(conn)
                if path is not None:
                    cur.execute(_SET_PATH.format(sql.Literal(path)))
                if prepared is not None:
                    cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                    prefix = sql.SQL("PREPARE {} AS ").format(prepared)
                    cur.execute(prefix + sql.SQL(statement.text))  # type: ignore[operator]
                    args = sql.SQL(", ").join([sql.NULL] * statement.param_count)
                    query = sql.SQL("EXPLAIN ({}) EXECUTE {}({})").format(
                        self._options(analyze, False), prepared, args)
                else:
                    prefix = sql.SQL("EXPLAIN ({}) ").format(
                        self._options(analyze, native_generic))
                    query = prefix + sql.SQL(statement.text)  # type: ignore[operator]
                started = time.perf_counter()
                cur.execute(query)
                with paused_gc():
                    # psycopg decodes the json column itself; a str only if a loader says so
                    row = cur.fetchone()
                    document = row[0] if row else None
                    if isinstance(document, str):
                        document = json.loads(document)
                elapsed = time.perf_counter() - started
                if path is not None:
                    cur.execute(_SET_PATH.format(sql.Literal(SAFE_SEARCH_PATH)))
                if prepared is not None or _needs_locks(document):
                    locked = frozenset(r[0] for r in cur.execute(_LOCKS_SQL).fetchall())
        except pg_errors.QueryCanceled as exc:
            msg = _message(exc)
            if self._cancel_requested:
                raise ExplainCancelled("cancelled: the server stopped the query",
                                       sqlstate=exc.sqlstate) from None
            raise ExplainTimeout(
                f"{msg} (the EXPLAIN statement timeout is {timeout_seconds:g} s;"
                " set [explain] statement_timeout in the config to change it)",
                sqlstate=exc.sqlstate) from None
        except psycopg.Error as exc:
            raise self._error(exc, prefix, statement) from None
        with paused_gc():
            plan = parse_plan(document)
        return RawExplain(statement, document, plan, analyze, prepared is not None
                          or native_generic, elapsed, locked)

    def _error(
        self, exc: psycopg.Error, prefix: sql.Composable | None, statement: Statement
    ) -> ExplainError:
        msg = _message(exc)
        offset: int | None = None
        diag = getattr(exc, "diag", None)
        pos = getattr(diag, "statement_position", None) if diag else None
        if pos and prefix is not None:
            start = len(prefix.as_string(self.conn))
            candidate = int(pos) - 1 - start
            if 0 <= candidate <= len(statement.text):
                offset = candidate
        if exc.sqlstate == "42P18" and prefix is not None:  # PREPARE could not type a $n
            msg += (
                "; this server (before PostgreSQL 16) must PREPARE a parameterized query to"
                " show its generic plan: add a cast such as $1::timestamptz, or use"
                " PostgreSQL 16+ (EXPLAIN GENERIC_PLAN)"
            )
        return ExplainError(msg, sqlstate=exc.sqlstate, offset=offset, text=statement.text)


def _message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    text = primary or str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return str(text)
