"""Reading 'infinity' and '-infinity' from date and timestamp columns.

Python's dates and datetimes have no infinity, and psycopg refuses to load one ("timestamp too
large (after year 10K)"): any read of user data that returns such a value (a column's min or max,
its statistics, a sample of rows, a partition bound) would fail. Operators do store them (a
sentinel for "never expires"), so every pgparts session loads them as `INFINITY` and
`NEG_INFINITY` instead (`adapt()`, called by connection.connect): two values that sort after
and before every date and datetime, print as PostgreSQL does, and are passed back to the server
as the same text. Not datetime.max: a real '9999-12-31' would become indistinguishable from
'infinity', and a period or a partition bound computed from it would be wrong; arithmetic on
`Infinite` fails instead, so code that places values in periods has to leave them out
(`is_infinite`), which it must anyway (they belong to no period).
"""

from __future__ import annotations

import struct
from functools import total_ordering
from typing import Any

import psycopg
from psycopg import adapters as global_adapters
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format

_TEXT = {b"infinity": 1, b"-infinity": -1}
# the binary forms: int64 microseconds (timestamps) and int32 days (dates) at their limits
_BINARY = {struct.pack("!q", 2**63 - 1): 1, struct.pack("!q", -(2**63)): -1,
           struct.pack("!i", 2**31 - 1): 1, struct.pack("!i", -(2**31)): -1}
_TYPES = ("date", "timestamp", "timestamptz")


@total_ordering
class Infinite:
    """'infinity' (sign 1) or '-infinity' (sign -1) of a date or timestamp column."""

    __slots__ = ("sign",)

    def __init__(self, sign: int) -> None:
        self.sign = sign

    def __str__(self) -> str:
        return "infinity" if self.sign > 0 else "-infinity"

    def __repr__(self) -> str:
        return "INFINITY" if self.sign > 0 else "NEG_INFINITY"

    # what display code asks of a date or datetime: the text, whatever the format
    tzinfo = None

    def isoformat(self, *_: Any, **__: Any) -> str:
        return str(self)

    def strftime(self, _format: str) -> str:
        return str(self)

    def __format__(self, _spec: str) -> str:
        return str(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Infinite) and other.sign == self.sign

    def __hash__(self) -> int:
        return hash(("pgparts-infinite", self.sign))

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Infinite):
            return self.sign < other.sign
        return self.sign < 0


INFINITY = Infinite(1)
NEG_INFINITY = Infinite(-1)


def is_infinite(value: object) -> bool:
    return isinstance(value, Infinite)


def _sign(data: Buffer, forms: dict[bytes, int]) -> int:
    # the length test first: it rules out nearly every value without copying it
    if len(data) in (4, 8, 9) and (sign := forms.get(bytes(data))):
        return sign
    return 0


class _InfiniteLoader(Loader):
    """The default loader of the type, except for the two infinities."""

    forms: dict[bytes, int] = _TEXT

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        base = global_adapters.get_loader(oid, self.format)
        assert base is not None
        self._base = base(oid, context)

    def load(self, data: Buffer) -> Any:
        sign = _sign(data, self.forms)
        if sign:
            return INFINITY if sign > 0 else NEG_INFINITY
        return self._base.load(data)


class _InfiniteBinaryLoader(_InfiniteLoader):
    format = Format.BINARY
    forms = _BINARY


class _InfiniteDumper(Dumper):
    """As text of no declared type: the server reads it as the type the context asks for."""

    def dump(self, obj: Any) -> bytes:
        return str(obj).encode()


def adapt(conn: psycopg.Connection) -> None:
    """Load infinite dates and timestamps on `conn` as `Infinite` (and dump them back)."""
    for name in _TYPES:
        info = global_adapters.types[name]
        conn.adapters.register_loader(info.oid, _InfiniteLoader)
        conn.adapters.register_loader(info.oid, _InfiniteBinaryLoader)
    conn.adapters.register_dumper(Infinite, _InfiniteDumper)
