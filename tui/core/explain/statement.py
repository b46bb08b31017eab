"""Checking what the user wants explained: one DML or query statement, nothing else.

EXPLAIN ANALYZE executes its statement, so only plannable statements get through:
SELECT / INSERT / UPDATE / DELETE / MERGE / WITH / VALUES / TABLE. DDL and utility statements
(CREATE, ALTER, DROP, TRUNCATE, VACUUM, COPY, SET, ...) are refused before anything is sent.
The check runs on sqlglot's tokenizer, which is more forgiving than its parser: a statement that
sqlglot cannot parse still goes to the server, whose syntax error (with position) is the truth.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlglot
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Token, TokenType

DIALECT = "postgres"
_ALLOWED_FIRST = {
    TokenType.SELECT: "SELECT",
    TokenType.INSERT: "INSERT",
    TokenType.UPDATE: "UPDATE",
    TokenType.DELETE: "DELETE",
    TokenType.MERGE: "MERGE",
    TokenType.WITH: "WITH",
    TokenType.VALUES: "VALUES",
    TokenType.TABLE: "TABLE",
}
_PARAM = re.compile(r"\$(\d+)")

# sqlglot warns on stderr when it falls back to a generic Command; we classify those ourselves.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


class StatementRefused(ValueError):
    """The text is not one statement EXPLAIN may run; the message says why, in one line."""


@dataclass(frozen=True)
class Statement:
    """One statement ready for EXPLAIN: the text as sent (trailing semicolons removed)."""

    text: str
    kind: str  # SELECT, INSERT, UPDATE, DELETE, MERGE, WITH, VALUES, TABLE
    param_count: int  # highest $n used; 0 when the query has no parameters

    @property
    def has_params(self) -> bool:
        return self.param_count > 0


def _tokens(text: str) -> list[Token] | None:
    try:
        return list(sqlglot.Dialect.get_or_raise(DIALECT).tokenize(text))
    except (SqlglotError, ValueError):
        return None  # e.g. an unterminated quote: let the server report it with a position


def _split(tokens: list[Token]) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            parts.append([])
        else:
            parts[-1].append(tok)
    return [p for p in parts if p]


def _strip_trailing(text: str) -> str:
    """Drop trailing whitespace and semicolons (and comments after them is left to the server)."""
    return text.rstrip().rstrip(";").rstrip()


def _kind(tokens: list[Token]) -> str:
    i = 0
    while i < len(tokens) and tokens[i].token_type == TokenType.L_PAREN:
        i += 1  # "(SELECT ...) UNION (SELECT ...)"
    first = tokens[i] if i < len(tokens) else tokens[0]
    kind = _ALLOWED_FIRST.get(first.token_type)
    if kind is None or (i > 0 and kind not in ("SELECT", "VALUES", "WITH", "TABLE")):
        word = (first.text or first.token_type.name).split()[0].upper()
        if word == "EXPLAIN":
            raise StatementRefused("paste the query without EXPLAIN; pgparts adds it")
        raise StatementRefused(
            f"{word} cannot be explained: only SELECT, INSERT, UPDATE, DELETE, MERGE, WITH, "
            "VALUES and TABLE statements are accepted (no DDL or utility statements)"
        )
    return kind


def check_statement(text: str) -> Statement:
    """Validate `text` as a single explainable statement, or raise StatementRefused."""
    if not text.strip():
        raise StatementRefused("no query given")
    tokens = _tokens(text)
    if tokens is None:
        body = _strip_trailing(text)
        kind = body.lstrip("( \t\r\n").split(None, 1)[0].upper() if body.strip("( \t\r\n") else ""
        if kind not in _ALLOWED_FIRST.values():
            raise StatementRefused(
                f"{kind or 'this'} cannot be explained: only SELECT, INSERT, UPDATE, DELETE, "
                "MERGE, WITH, VALUES and TABLE statements are accepted"
            )
        return Statement(body, kind, _max_param_text(body))
    parts = _split(tokens)
    if not parts:
        raise StatementRefused("no query given (only comments or semicolons)")
    if len(parts) > 1:
        raise StatementRefused(
            f"one statement at a time: found {len(parts)} statements separated by ';'"
        )
    kind = _kind(parts[0])
    end = parts[0][-1].end + 1  # keep everything up to the last token, drop trailing ';'
    body = text[:end].rstrip()
    count = _max_param_tokens(parts[0])
    return Statement(body, kind, count)


def _max_param_tokens(tokens: list[Token]) -> int:
    """$n as tokenized by sqlglot: a PARAMETER token '$' followed by a NUMBER token."""
    best = 0
    for a, b in zip(tokens, tokens[1:], strict=False):
        if a.token_type == TokenType.PARAMETER and b.token_type == TokenType.NUMBER \
                and a.end + 1 == b.start and b.text.isdigit():
            best = max(best, int(b.text))
    return best


def _max_param_text(text: str) -> int:
    found = [int(m.group(1)) for m in _PARAM.finditer(text)]
    return max(found) if found else 0
