"""Statements of a SQL file, as PostgreSQL's grammar splits them (for `explain -f` in CI).

A file may hold several statements separated by `;`. They are split by the server's parser
(pglast's split, on the statements' own locations), never on the character `;`, which may sit in
a string, a quoted name, a comment or a dollar-quoted body. A file the parser rejects is split
by the server's lexer instead (so that each statement gets its own syntax error, at its own
line), which still knows strings, comments and dollar quotes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast.parser import ParseError, scan

from .pgparse import split_slices

_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_SEMICOLON = "ASCII_59"


@dataclass(frozen=True)
class SourceStatement:
    """One statement of a file, and where it starts."""

    text: str
    line: int  # 1-based line of the statement's first token in the file
    column: int  # 1-based column of that token


def split_statements(text: str) -> list[SourceStatement]:
    """The statements of `text` in order; [] when it holds only comments and semicolons. A
    text the lexer itself rejects (an unterminated quote) is one statement: the EXPLAIN check
    reports the error with its position."""
    try:
        slices = split_slices(text)
    except ParseError:
        try:
            slices = _lexer_split(text)
        except ParseError:
            return [_at(text, 0, len(text))] if text.strip() else []
    return [_at(text, s.start, s.stop) for s in slices if _has_token(text[s.start:s.stop])]


def _lexer_split(text: str) -> list[slice]:
    """Split at the `;` tokens of PostgreSQL's lexer (pglast's own lexer split drops the
    statements that do not start with a keyword: a text that does not parse may hold any)."""
    out: list[slice] = []
    start = 0
    for token in scan(text):
        if token.name == _SEMICOLON:
            out.append(slice(start, token.start))
            start = token.end + 1
    out.append(slice(start, len(text)))
    return out


def _has_token(body: str) -> bool:
    try:
        return any(t.name not in _COMMENTS for t in scan(body))
    except ParseError:
        return bool(body.strip())


def _at(text: str, start: int, stop: int) -> SourceStatement:
    body = text[start:stop]
    # the lexer's split keeps a statement's leading comments: point at its first token
    try:
        first = next((t.start for t in scan(body) if t.name not in _COMMENTS), 0)
    except ParseError:
        first = len(body) - len(body.lstrip())
    offset = start + first
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return SourceStatement(text[offset:stop], line, column)
