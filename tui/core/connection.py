"""Opening connections the way PostgreSQL users expect, with the session settings pgparts needs.

Every connection: application_name=pgparts (visible in pg_stat_activity), TimeZone=UTC and
DateStyle=ISO (partition bounds are printed in the session time zone), jit=off (JIT costs more than
the catalog query itself on PG 15), a lock_timeout so a read never queues behind DDL for long, and
autocommit, so the console never sits on locks that DDL such as DETACH CONCURRENTLY would wait for.
Infinite dates and timestamps load as `infinity.INFINITY` / `NEG_INFINITY` (infinity.py).

Every session also runs with `search_path = pg_catalog, pg_temp` (CVE-2018-1058): a database or
role whose own search_path puts a schema before pg_catalog would otherwise let whoever can create
objects there shadow `pg_get_expr`, `=` or `count` and run code with the operator's rights on
pgparts' every catalog read. The EXPLAIN session needs the user's own search_path for the user's
query: `connect(..., user_search_path=True)` reads it (SHOW, which resolves nothing) before
switching to the safe one, and `user_search_path(conn)` returns it for a `SET LOCAL` around that
one statement.

Every session but EXPLAIN's also runs with `row_security = off`: a query that a row-level
security policy would filter fails instead of silently seeing a subset (a plan's copy and its
verification would agree on that subset, and the hidden rows would be dropped with the old
partition). Superusers, roles with BYPASSRLS and owners of tables without FORCE are not
filtered in any case.
"""

from __future__ import annotations

import contextlib
import os
import re
import weakref
from dataclasses import dataclass
from urllib.parse import unquote

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from . import infinity
from .errors import first_line

APPLICATION_NAME = "pgparts"
# pg_temp named last: otherwise it is searched first for relations (never for functions or
# operators); listed explicitly the way PostgreSQL's documentation advises for definer code
SAFE_SEARCH_PATH = "pg_catalog, pg_temp"
_user_paths: weakref.WeakKeyDictionary[psycopg.Connection, str] = weakref.WeakKeyDictionary()


class ConnectError(Exception):
    """A connection could not be made; the message is one line, fit for stderr."""


@dataclass(frozen=True)
class Target:
    """Where to connect: a libpq DSN (URI or key=value; empty means the libpq environment)."""

    dsn: str = ""
    read_only: bool = False
    label: str = ""

    def describe(self) -> str:
        if self.label:
            return self.label
        try:
            params = pg_conninfo.conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError:
            return "?"
        host = params.get("host") or params.get("service") or "local"
        # a password holding an unencoded '@' ends at its first one for libpq: the rest would
        # show as part of the host name
        host = ",".join(h.rsplit("@", 1)[-1] for h in str(host).split(","))
        db = params.get("dbname") or params.get("user") or ""
        return f"{db}@{host}" if db else str(host)


def session_options(
    *,
    read_only: bool = False,
    lock_timeout: str = "2s",
    statement_timeout: str = "60s",
    extra: str = "",
    safe_search_path: bool = True,
) -> str:
    opts = [
        "-c jit=off",
        "-c TimeZone=UTC",
        "-c DateStyle=ISO",
        f"-c lock_timeout={lock_timeout}",
        f"-c statement_timeout={statement_timeout}",
    ]
    if safe_search_path:
        opts.append("-c search_path=" + SAFE_SEARCH_PATH.replace(" ", ""))
        # a row-level security policy must never filter what a plan copies, verifies or
        # counts (the rows it hid would go with the old partition): a query a policy would
        # filter fails instead. Not for EXPLAIN's session: the user's plan is planned with
        # the policies, as the application's is.
        opts.append("-c row_security=off")
    if read_only:
        opts.append("-c default_transaction_read_only=on")
    if extra:
        opts.append(extra)
    return " ".join(opts)


# -- keeping passwords out of messages ------------------------------------------------------------
REDACTED = "***"
# `password = value` as a key=value option (value quoted, maybe unterminated, or bare) or a URI
# query parameter. `sslpassword` (it unlocks a client key) has a pattern of its own: the
# lookbehind keeps the first from matching inside it.
_PASSWORD_VALUE = re.compile(
    r"(?<![\w])(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&'\"]+)", re.IGNORECASE)
_SSLPASSWORD_VALUE = re.compile(
    r"(sslpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&'\"]+)", re.IGNORECASE)
# scheme://user:password@ (any scheme: a misspelt one is still somebody's URI)
_URI_USERINFO = re.compile(r"([A-Za-z][\w+.-]*://[^\s/@:\"]*:)([^\s@\"]*)@")
_SHORT_SECRET = 4  # shorter secrets are redacted only where a message quotes them whole


def _libpq_keywords() -> frozenset[str]:
    return frozenset(
        o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults() if o.keyword)


def _secret_candidates(dsn: str) -> tuple[set[str], set[str]]:
    """What in `dsn` may be a password, however malformed `dsn` is.

    Returns (secrets, words): secrets are password values and the URI's user-info password,
    redacted wherever they appear; words are what libpq may quote back from a string it cannot
    parse (a bare word such as `host=x S3cret`, or the second word of an unquoted
    `password=two words`; a malformed URI whole), redacted where a message quotes them.
    """
    secrets: set[str] = set()
    for pattern in (_PASSWORD_VALUE, _SSLPASSWORD_VALUE):
        for m in pattern.finditer(dsn):
            secrets.update((m.group(2), m.group(2).strip("'")))
    for m in _URI_USERINFO.finditer(dsn):
        secrets.add(m.group(2))
    secrets |= {unquote(c) for c in secrets}
    if "://" in dsn:
        # `postgresql://u:pa@ss@host`: libpq takes `pa` for the password and `ss@host` for the
        # host, so the password's rest is in every message naming the host
        with contextlib.suppress(psycopg.ProgrammingError):
            hosts = pg_conninfo.conninfo_to_dict(dsn).get("host") or ""
            for h in str(hosts).split(","):
                if "@" in h:
                    secrets.update((h, h.rsplit("@", 1)[0]))
    words: set[str] = {dsn.strip()}
    if "://" not in dsn:
        unquoted = re.sub(r"'(?:[^'\\]|\\.)*'?", " ", dsn)
        keywords = _libpq_keywords()
        words.update(w for w in unquoted.split() if "=" not in w and w not in keywords)
    return {c for c in secrets if c}, {w for w in words if w}


def redact(text: str, dsn: str = "") -> str:
    """`text` (a message, maybe quoting a connection string or libpq's words about one) with
    every password in it replaced by ***. With `dsn`, also whatever in it may be a password."""
    text = _PASSWORD_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SSLPASSWORD_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _URI_USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    if dsn:
        secrets, words = _secret_candidates(dsn)
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= _SHORT_SECRET or "@" in secret:
                text = text.replace(secret, REDACTED)
            else:
                text = text.replace(f'"{secret}"', f'"{REDACTED}"')
        for word in sorted(words, key=len, reverse=True):
            text = text.replace(f'"{word}"', f'"{REDACTED}"')
    return text


def validate_dsn(dsn: str) -> None:
    try:
        pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConnectError(
            redact(f"malformed connection string: {_libpq_reason(exc)}", dsn)) from None


def _libpq_reason(exc: BaseException) -> str:
    """first_line(), but where libpq names the address tried first, the reason comes last."""
    reason = first_line(exc)
    for ln in str(exc).splitlines():
        if "FATAL" in ln or "failed:" in ln:
            reason = ln.strip()
    return reason.replace("FATAL:  ", "").replace("FATAL: ", "")


def connect(
    target: Target,
    *,
    autocommit: bool = True,
    lock_timeout: str = "2s",
    statement_timeout: str = "60s",
    purpose: str = "",
    connect_timeout: int = 10,
    user_search_path: bool = False,
) -> psycopg.Connection:
    """Open a connection to `target` with pgparts' session settings.

    The caller's own `options` (in the DSN, else PGOPTIONS, which libpq would ignore once we
    pass options of our own) are kept and ours are appended, so ours win. `user_search_path`:
    remember the search_path the user's settings give (see `user_search_path()`).
    """
    validate_dsn(target.dsn)
    params = pg_conninfo.conninfo_to_dict(target.dsn)
    ours = session_options(
        read_only=target.read_only, lock_timeout=lock_timeout, statement_timeout=statement_timeout,
        safe_search_path=not user_search_path,
    )
    theirs = params.get("options") or os.environ.get("PGOPTIONS", "").strip()
    params["options"] = f"{theirs} {ours}" if theirs else ours
    params["application_name"] = (
        f"{APPLICATION_NAME} {purpose}".strip() if purpose else APPLICATION_NAME
    )
    params.setdefault("connect_timeout", str(connect_timeout))
    # pgparts reads and prints text: PGCLIENTENCODING=SQL_ASCII (or LATIN1) would hand it bytes
    # or refuse the database's names
    params["client_encoding"] = "UTF8"
    try:
        conn = psycopg.connect(pg_conninfo.make_conninfo(**params), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise ConnectError(redact(
            f"cannot connect to {target.describe()}: {_libpq_reason(exc)}", target.dsn)) from None
    except psycopg.ProgrammingError as exc:
        raise ConnectError(
            redact(f"malformed connection string: {_libpq_reason(exc)}", target.dsn)) from None
    except UnicodeError as exc:
        # the resolver's IDNA encoding refuses an empty label or one over 63 characters
        reason = first_line(exc.__cause__ or exc)
        raise ConnectError(redact(
            f"cannot connect to {target.describe()}: not a valid host name ({reason})",
            target.dsn)) from None
    # a date or timestamp column holding 'infinity' would fail every read that returns it
    infinity.adapt(conn)
    try:
        _enforce_time_settings(conn)
        if user_search_path:
            _user_paths[conn] = _switch_to_safe_search_path(conn)
    except psycopg.Error as exc:
        conn.close()
        raise ConnectError(
            redact(f"cannot set up the session: {_libpq_reason(exc)}", target.dsn)) from None
    return conn


def _enforce_time_settings(conn: psycopg.Connection) -> None:
    """libpq sends PGTZ and PGDATESTYLE from the environment after our `-c` options, so they
    win: bounds would then be printed (and new ones computed) in another zone or style. The
    server reports both at connect, so this costs a round trip only when one was overridden."""
    changes: list[sql.Composable] = []
    if conn.info.parameter_status("TimeZone") != "UTC":
        changes.append(sql.SQL("SET TimeZone = 'UTC'"))
    if not (conn.info.parameter_status("DateStyle") or "").startswith("ISO"):
        changes.append(sql.SQL("SET DateStyle = ISO"))
    if changes:
        with conn.transaction():
            for statement in changes:
                conn.execute(statement)


def _switch_to_safe_search_path(conn: psycopg.Connection) -> str:
    """Read the user's search_path (SHOW runs no user code), then make the session safe.

    Both in one simple query: one round trip, and the server runs the two statements in order,
    as one transaction (an error in either leaves the session as it was, and connect() fails).
    """
    cur = conn.execute(sql.SQL(
        "SHOW search_path; SELECT pg_catalog.set_config('search_path', {}, false)").format(
            sql.Literal(SAFE_SEARCH_PATH)))
    row = cur.fetchone()  # the first result: SHOW's
    if not conn.autocommit:
        conn.commit()  # psycopg opened a transaction, whose rollback would undo set_config
    return str(row[0]) if row else ""


def user_search_path(conn: psycopg.Connection) -> str | None:
    """The search_path the user's own settings gave `conn` (None unless it was connected with
    user_search_path=True). For the user's own statements only, under SET LOCAL."""
    return _user_paths.get(conn)


def server_version_num(conn: psycopg.Connection) -> int:
    return int(conn.info.server_version)
