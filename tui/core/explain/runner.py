"""Running EXPLAIN safely: one statement, as PostgreSQL reads it, inside a transaction that is
rolled back, under a statement timeout, cancellable from another thread.

- One statement: the user's text goes to the server with the extended query protocol (one Parse
  message), and the server itself refuses a text that holds several statements ("cannot insert
  multiple commands into a prepared statement"), whatever a client-side parser made of it.
  psycopg uses the simple protocol, which runs every statement of a string, for a query without
  parameters unless it is asked for binary results: `_send_extended` asks for them.
- Rolled back, and READ ONLY unless the statement is analyzed in a session that may write:
  plain EXPLAIN never needs to write (planning a function that lies about its volatility could),
  and in a read-only session PostgreSQL refuses to ANALYZE a write, nextval() or setval().
- What a rollback does not undo: EXPLAIN ANALYZE executes the statement, and a function it
  calls can advance a sequence, take a session-level advisory lock, reach another server
  (dblink) or signal other backends. Advisory locks and prepared statements are released after
  every EXPLAIN (`_reset_session`); the rest the documentation and the console's ANALYZE dialog
  spell out.
- Search path: only the user's statement runs under the user's own search_path (SET LOCAL: set
  back before anything else runs in that transaction, and gone with its rollback); pgparts' own
  reads run under pg_catalog, pg_temp.

Queries with $n parameters are explained as a generic plan: EXPLAIN (GENERIC_PLAN) on 16+, and on
older servers PREPARE + plan_cache_mode = force_generic_plan + EXPLAIN EXECUTE with NULL
arguments. With NULL arguments start-up pruning removes everything, so on those servers the
partitions of the generic plan are read from the locks it took (a generic plan locks every
partition that survived plan-time pruning). EXPLAIN (GENERIC_PLAN) cannot be bound through the
extended protocol (its $n would become the EXPLAIN's own parameters, and bound values are folded
into a custom plan): the server's grammar first confirms that the text is one statement (a Parse
message that nothing executes, `_check_one_statement`), then the EXPLAIN goes as a simple query.
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
from ..errors import first_line
from ..gcpause import paused_gc
from .plan_tree import PlanTree, parse_plan
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
    """The server's answer to one EXPLAIN, before the report is built."""

    statement: Statement
    document: Any
    plan: PlanTree
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
_CHECK_PREFIX = sql.SQL("PREPARE pgparts_check AS ")
# session state that survives the rollback of what the user's statement did (set_config(),
# SET and temporary objects roll back with the transaction; these do not)
_RESET_SESSION = sql.SQL("SELECT pg_catalog.pg_advisory_unlock_all(); DEALLOCATE ALL")


def _send_extended(cur: psycopg.Cursor[Any], query: sql.Composable) -> None:
    """Execute `query` with the extended query protocol: a Parse message holds one statement
    only, so the server refuses a text that holds more (psycopg sends a query without
    parameters as a simple query, which runs them all, unless binary results are asked for)."""
    cur.execute(query, binary=True)


def _check_one_statement(conn: psycopg.Connection, text: str) -> None:
    """Have the server's grammar confirm that `text` is one preparable statement: a Parse
    message (nothing is bound or run) of `PREPARE pgparts_check AS <text>`, which the server
    refuses when the text holds several statements. A utility statement is not analysed at
    Parse, so untyped $n pass as they do in EXPLAIN (GENERIC_PLAN) (a Parse of the EXPLAIN
    itself would insist on their types). A preparable statement holds no ';' token, so the
    EXPLAIN of the same text, sent as a simple query, is one statement too."""
    query = (_CHECK_PREFIX + sql.SQL(text)).as_bytes(conn)  # type: ignore[operator]
    result = conn.pgconn.prepare(b"", query)
    if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise pg_errors.error_from_result(result, encoding=conn.info.encoding)


class ExplainRunner:
    """Runs EXPLAIN on one connection (autocommit), cancellable from another thread.

    `read_only`: the session may not write (pgparts' --read-only); a session whose server-side
    default_transaction_read_only is on counts as read-only as well.
    """

    def __init__(self, conn: psycopg.Connection, *, read_only: bool = False) -> None:
        self.conn = conn
        self.read_only = read_only
        self._lock = threading.Lock()
        self._running = False
        self._cancel_requested = False

    @property
    def server_version(self) -> int:
        return int(self.conn.info.server_version)

    @property
    def session_read_only(self) -> bool:
        # reported by the server on every change (PostgreSQL 14+): no round trip
        reported = self.conn.info.parameter_status("default_transaction_read_only")
        return self.read_only or reported == "on"

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
        if statement.syntax_error is not None:
            # PostgreSQL's own parser said so (statement.py): nothing is sent
            message, offset = statement.syntax_error
            raise ExplainError(message, sqlstate="42601", offset=offset, text=statement.text)
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
            self._reset_session()

    def _reset_session(self) -> None:
        """Release what the statement may have left on the session beyond its transaction: a
        session-level advisory lock (pg_advisory_lock() survives a rollback) and prepared
        statements (ours on PostgreSQL 15, or any a function made with EXECUTE 'PREPARE')."""
        conn = self.conn
        for _attempt in range(2):
            if conn.closed or conn.broken:
                return
            try:
                conn.execute(_RESET_SESSION)  # one round trip for both
                return
            except pg_errors.QueryCanceled:
                continue  # a cancel request that arrived after the EXPLAIN ended: once more
            except psycopg.Error:
                return

    def _run(
        self, statement: Statement, analyze: bool, timeout_seconds: float,
        native_generic: bool, prepared: sql.Identifier | None,
    ) -> RawExplain:
        conn = self.conn
        timeout_ms = max(int(timeout_seconds * 1000), 1)
        # READ ONLY unless a write is analyzed where writing is allowed: PostgreSQL then refuses
        # whatever the statement (or a function it calls) would write
        setup = [sql.SQL("SET TRANSACTION READ ONLY")] \
            if self.session_read_only or not analyze else []
        setup.append(sql.SQL("SET LOCAL statement_timeout = {}").format(
            sql.Literal(f"{timeout_ms}ms")))
        # the server then reads backslashes in '...' the way the check's parser did
        setup.append(sql.SQL("SET LOCAL standard_conforming_strings = on"))
        if prepared is not None:
            setup.append(sql.SQL("SET LOCAL plan_cache_mode = force_generic_plan"))
        # the user's query is planned the way their application's would be; nothing of
        # pgparts' own runs under that search_path (it is set back before anything else runs
        # in this transaction, and the rollback ends it)
        path = user_search_path(conn)
        if path is not None:
            setup.append(_SET_PATH.format(sql.Literal(path)))
        prefix: sql.Composable | None = None
        locked: frozenset[int] | None = None
        try:
            # force_rollback: even EXPLAIN ANALYZE of an UPDATE/DELETE leaves nothing behind
            with conn.transaction(force_rollback=True), conn.cursor() as cur:
                cur.execute(sql.SQL("; ").join(setup))  # our own text: one round trip
                if prepared is not None:
                    prefix = sql.SQL("PREPARE {} AS ").format(prepared)
                    _send_extended(cur, prefix + sql.SQL(statement.text))  # type: ignore[operator]
                    args = sql.SQL(", ").join([sql.NULL] * statement.param_count)
                    prefix = None  # positions in errors from here on are not the user's
                started = time.perf_counter()
                if prepared is not None:
                    _send_extended(cur, sql.SQL("EXPLAIN ({}) EXECUTE {}({})").format(
                        self._options(analyze, False), prepared, args))
                elif native_generic:
                    prefix = _CHECK_PREFIX  # for the positions of its errors
                    _check_one_statement(conn, statement.text)
                    prefix = sql.SQL("EXPLAIN ({}) ").format(self._options(analyze, True))
                    # a simple query: $n stay the generic plan's own
                    cur.execute(prefix + sql.SQL(statement.text))  # type: ignore[operator]
                else:
                    prefix = sql.SQL("EXPLAIN ({}) ").format(self._options(analyze, False))
                    _send_extended(cur, prefix + sql.SQL(statement.text))  # type: ignore[operator]
                with paused_gc():
                    # psycopg decodes the json column itself; a str only if a loader says so
                    row = cur.fetchone()
                    document = row[0] if row else None
                    if isinstance(document, str):
                        document = json.loads(document)
                elapsed = time.perf_counter() - started
                if prepared is not None or _needs_locks(document):
                    if path is None:
                        cur.execute(_LOCKS_SQL)
                    else:  # the safe path back, then the locks read under it: one round trip
                        cur.execute(sql.SQL("; ").join(
                            [_SET_PATH.format(sql.Literal(SAFE_SEARCH_PATH)), _LOCKS_SQL]))
                        cur.nextset()
                    locked = frozenset(r[0] for r in cur.fetchall())
        except pg_errors.QueryCanceled as exc:
            msg = _message(exc)
            if self._cancel_requested:
                # the console prefixes "cancelled: " itself
                raise ExplainCancelled("the server stopped the query",
                                       sqlstate=exc.sqlstate) from None
            raise ExplainTimeout(
                f"{msg} (the EXPLAIN statement timeout is {timeout_seconds:g} s;"
                " set [explain] statement_timeout in the config to change it)",
                sqlstate=exc.sqlstate) from None
        except psycopg.Error as exc:
            raise self._error(exc, prefix, statement, prepared is not None) from None
        with paused_gc():
            plan = parse_plan(document)
        return RawExplain(statement, document, plan, analyze, prepared is not None
                          or native_generic, elapsed, locked)

    def _error(
        self, exc: psycopg.Error, prefix: sql.Composable | None, statement: Statement,
        prepared: bool,
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
        if exc.sqlstate == "42P18" and prepared:  # PREPARE could not type a $n
            msg += (
                "; this server (before PostgreSQL 16) must PREPARE a parameterized query to"
                " show its generic plan: add a cast such as $1::timestamptz, or use"
                " PostgreSQL 16+ (EXPLAIN GENERIC_PLAN)"
            )
        return ExplainError(msg, sqlstate=exc.sqlstate, offset=offset, text=statement.text)


def _message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    return str(primary or first_line(exc))
