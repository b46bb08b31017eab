"""Checking what the user wants explained: one DML or query statement, nothing else.

EXPLAIN ANALYZE executes its statement, so only plannable statements get through:
SELECT / INSERT / UPDATE / DELETE / MERGE, with their WITH forms, VALUES and TABLE. DDL and
utility statements (CREATE, ALTER, DROP, TRUNCATE, VACUUM, COPY, SET, SELECT INTO, ...) are
refused before anything is sent.

The check runs on PostgreSQL's own grammar (pglast wraps the server's parser, PostgreSQL 18's):
a second, forgiving parser reads some texts differently from the server (sqlglot takes U+00A0 for
a space where PostgreSQL reads it as part of a name, so one statement to it can be five to the
server). What the check cannot vouch for is refused: several statements, an unknown statement
type, a NUL character, a Unicode space inside a name. The runner then sends the statement with
the extended query protocol, so that the server itself refuses a second statement (runner.py).
A syntax error is not sent at all: the parser's message and position are PostgreSQL's own.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from pglast import ast
from pglast.parser import ParseError, Token, scan

from .pgparse import parse

ALLOWED = "SELECT, INSERT, UPDATE, DELETE, MERGE, WITH, VALUES and TABLE"
# the statement's first keyword (after any opening parentheses) that each statement type may have
_KINDS: dict[type, frozenset[str]] = {
    ast.SelectStmt: frozenset({"SELECT", "WITH", "VALUES", "TABLE"}),
    ast.InsertStmt: frozenset({"INSERT", "WITH"}),
    ast.UpdateStmt: frozenset({"UPDATE", "WITH"}),
    ast.DeleteStmt: frozenset({"DELETE", "WITH"}),
    ast.MergeStmt: frozenset({"MERGE", "WITH"}),
}
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_OPEN_PAREN = "ASCII_40"
_SEMICOLON = "ASCII_59"
# Invisible characters that are no space to PostgreSQL: outside quotes they belong to a name
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")
# The stack of the thread that turns a parse tree into Python objects (see _parse): virtual
# memory, touched only as deep as the tree goes (about 0.6 kB per level)


class StatementRefused(ValueError):
    """The text is not one statement EXPLAIN may run; the message says why, in one line."""


@dataclass(frozen=True)
class Statement:
    """One statement ready for EXPLAIN: the text as sent (trailing semicolons removed).

    `syntax_error`: PostgreSQL's parser rejected the text ((message, 0-based offset into
    `text`)); such a statement is never sent, the runner reports the error with its position.
    """

    text: str
    kind: str  # SELECT, INSERT, UPDATE, DELETE, MERGE, WITH, VALUES, TABLE ('' on a syntax error)
    param_count: int  # highest $n used; 0 when the query has no parameters
    syntax_error: tuple[str, int] | None = None

    @property
    def has_params(self) -> bool:
        return self.param_count > 0


def check_statement(text: str) -> Statement:
    """Validate `text` as a single explainable statement, or raise StatementRefused."""
    if not text.strip():
        raise StatementRefused("no query given")
    if "\x00" in text:
        # libpq and the parser both stop at a NUL: what follows would be read by nobody
        raise StatementRefused("the query contains a NUL character")
    try:
        tokens = scan(text)
    except ParseError as exc:
        return _syntax_error(text, exc)
    _refuse_spaces_in_names(text, tokens)
    try:
        stmts = parse(text)
    except ParseError as exc:
        return _syntax_error(text, exc)
    if not stmts:
        raise StatementRefused("no query given (only comments or semicolons)")
    if len(stmts) > 1:
        raise StatementRefused(
            f"one statement at a time: found {len(stmts)} statements separated by ';'")
    raw = stmts[0]
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(text)
    # from the very start (comments included): PostgreSQL's error positions are then positions
    # in what the user typed
    body = text[:end].rstrip()  # the statement's end excludes its ';'
    kind = _kind(text, tokens, raw.stmt, start)
    # what is sent is the text up to the statement's end: after it, only ';' and comments (the
    # lexer reads a prefix that ends between tokens the same way, so the body is this statement)
    if any(t.start < end <= t.end or (t.start >= end and t.name not in _COMMENTS
                                      and t.name != _SEMICOLON) for t in tokens):
        raise StatementRefused("the statement could not be isolated from the text around it")
    params = [int(text[t.start + 1:t.end + 1]) for t in tokens
              if t.name == "PARAM" and start <= t.start < end]
    return Statement(body, kind, max(params, default=0))


def _syntax_error(text: str, exc: ParseError) -> Statement:
    message = str(exc.args[0]) if exc.args else "syntax error"
    location = exc.args[1] if len(exc.args) > 1 else None
    offset = location if isinstance(location, int) and 0 <= location <= len(text) \
        else len(text.rstrip())
    return Statement(text, "", 0, (message, offset))


def _refuse_spaces_in_names(text: str, tokens: list[Token]) -> None:
    """A Unicode space (U+00A0, U+2028, U+3000, ...) outside quotes is part of a name to
    PostgreSQL, and a plain space to most editors and to sqlglot: refuse rather than guess."""
    for tok in tokens:
        if tok.name != "IDENT" or text[tok.start] == '"':
            continue
        for i in range(tok.start, tok.end + 1):
            ch = text[i]
            if ord(ch) > 127 and (ch.isspace() or ch in _INVISIBLE):
                before = text[:i]
                line = before.count("\n") + 1
                column = i - (before.rfind("\n") + 1) + 1
                name = unicodedata.name(ch, "")
                raise StatementRefused(
                    f"U+{ord(ch):04X} {name} (line {line}, column {column}) is part of a name "
                    "for PostgreSQL, not a space: replace it with a plain space")


def _selects_into(stmt: object) -> bool:
    """SELECT ... INTO new_table (also in the first arm of a UNION) is CREATE TABLE AS."""
    while isinstance(stmt, ast.SelectStmt):
        if stmt.intoClause is not None:
            return True
        stmt = stmt.larg
    return False


def _kind(text: str, tokens: list[Token], stmt: object, start: int) -> str:
    first = next((t for t in tokens if t.start >= start and t.name not in _COMMENTS
                  and t.name != _OPEN_PAREN), None)
    word = text[first.start:first.end + 1].upper() if first is not None else ""
    if isinstance(stmt, ast.ExplainStmt):
        raise StatementRefused("paste the query without EXPLAIN; pgparts adds it")
    if _selects_into(stmt):
        raise StatementRefused("SELECT INTO creates a table and cannot be explained: only "
                               f"{ALLOWED} statements are accepted")
    allowed = _KINDS.get(type(stmt))
    if allowed is None:
        raise StatementRefused(
            f"{word or type(stmt).__name__} cannot be explained: only {ALLOWED} statements are "
            "accepted (no DDL or utility statements)")
    if word not in allowed:
        raise StatementRefused(f"{word} does not start a {type(stmt).__name__[:-4].upper()}"
                               " statement as PostgreSQL reads it")
    return word
