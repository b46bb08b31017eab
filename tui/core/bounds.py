"""Partition bounds as printed by pg_get_expr(relpartbound, 0), parsed into values.

Bound text is SQL: `FOR VALUES FROM ('2024-01-07 00:00:00+00') TO (MAXVALUE)`,
`FOR VALUES IN ('a', NULL)`, `FOR VALUES WITH (modulus 4, remainder 0)`, `DEFAULT`. Values are kept
as the literal's text (unquoted) so plans can re-emit them with sql.Literal, never by pasting text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone

_TOKEN = re.compile(r"\s*(?:'((?:[^']|'')*)'|([(),])|([^\s(),']+))")


@dataclass(frozen=True)
class BoundValue:
    """One datum of a bound: a literal (as the server printed it), NULL, MINVALUE or MAXVALUE."""

    text: str | None
    special: str | None = None  # "MINVALUE", "MAXVALUE", "NULL" or None for a literal

    @property
    def is_literal(self) -> bool:
        return self.special is None

    def display(self) -> str:
        if self.special:
            return self.special
        return str(self.text)

    def as_datetime(self) -> datetime | None:
        """The literal as an aware datetime (UTC when no offset), if it reads as a date/time."""
        if not self.is_literal or self.text is None:
            return None
        return parse_timestamp(self.text)


@dataclass(frozen=True)
class Bound:
    """A partition bound as pg_get_expr(relpartbound, 0) prints it, parsed into values."""

    kind: str  # "range", "list", "hash", "default"
    text: str
    lower: tuple[BoundValue, ...] = ()
    upper: tuple[BoundValue, ...] = ()
    values: tuple[BoundValue, ...] = ()
    modulus: int = 0
    remainder: int = 0

    @property
    def is_default(self) -> bool:
        return self.kind == "default"

    def short(self) -> str:
        """A compact label for a tree row."""
        if self.kind == "default":
            return "DEFAULT"
        if self.kind == "hash":
            return f"hash {self.remainder}/{self.modulus}"
        if self.kind == "list":
            inner = ", ".join(_short_value(v) for v in self.values)
            return f"IN ({inner})" if len(inner) <= 40 else f"IN ({inner[:37]}...)"
        lo = ", ".join(_short_value(v) for v in self.lower)
        hi = ", ".join(_short_value(v) for v in self.upper)
        return f"{lo} → {hi}"



def _value_key(v: BoundValue) -> tuple:
    if v.special == "MINVALUE":
        return (0,)
    if v.special == "MAXVALUE":
        return (3,)
    if v.special == "NULL":
        return (2,)
    text = str(v.text)
    ts = v.as_datetime()
    if ts is not None:
        return (1, 0, ts.timestamp(), text)
    try:
        return (1, 1, float(text), text)
    except ValueError:
        return (1, 2, 0.0, text)


def bound_sort_key(bound: Bound | None) -> tuple:
    """Orders sibling partitions as PostgreSQL orders their bounds: MINVALUE first, by value,
    hash partitions by remainder, the DEFAULT partition and unknown bounds last. The values are
    compared as the times or numbers they read as (one key column type per parent)."""
    if bound is None:
        return (9,)
    if bound.kind == "default":
        return (8,)
    if bound.kind == "hash":
        return (0, bound.remainder)
    if bound.kind == "list":
        return (0, tuple(sorted(_value_key(v) for v in bound.values)))
    return (0, tuple(_value_key(v) for v in bound.lower))

def _short_value(v: BoundValue) -> str:
    if v.special == "MINVALUE":
        return "-∞"
    if v.special == "MAXVALUE":
        return "+∞"
    if v.special == "NULL":
        return "NULL"
    text = str(v.text)
    ts = parse_timestamp(text)
    if ts is not None:
        if (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
            return ts.strftime("%Y-%m-%d")
        return ts.strftime("%Y-%m-%d %H:%M")
    return text


_TS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"(?:([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?)?$"
)


def parse_timestamp(text: str) -> datetime | None:
    """ISO date/timestamp text (DateStyle=ISO output) -> aware datetime; None if not one."""
    m = _TS.match(text.strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, sign, oh, om, osec = m.groups()
    try:
        base = datetime(
            int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0),
            int((frac or "0").ljust(6, "0")),
        )
    except ValueError:
        return None
    if sign:
        from datetime import timedelta

        offset = timedelta(hours=int(oh), minutes=int(om or 0), seconds=int(osec or 0))
        tz = timezone(offset if sign == "+" else -offset)
        return base.replace(tzinfo=tz).astimezone(timezone.utc)
    return base.replace(tzinfo=timezone.utc)


def parse_date(text: str) -> date | None:
    ts = parse_timestamp(text)
    return ts.date() if ts else None


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"cannot parse partition bound near {text[pos:pos + 20]!r}")
        quoted, punct, word = m.groups()
        if quoted is not None:
            out.append(("lit", quoted.replace("''", "'")))
        elif punct is not None:
            out.append(("punct", punct))
        elif word is not None:
            out.append(("word", word))
        pos = m.end()
    return out


def _value_list(toks: list[tuple[str, str]], i: int) -> tuple[list[BoundValue], int]:
    """Parse `( v, v, ... )` starting at toks[i] == '('; returns values and the index after ')'."""
    if toks[i] != ("punct", "("):
        raise ValueError("expected '('")
    i += 1
    values: list[BoundValue] = []
    current: list[tuple[str, str]] = []
    depth = 0
    while i < len(toks):
        kind, val = toks[i]
        if kind == "punct" and val == "(":
            depth += 1
        elif kind == "punct" and val == ")" and depth:
            depth -= 1
        elif kind == "punct" and val in ",)" and depth == 0:
            if current:
                values.append(_to_value(current))
            current = []
            if val == ")":
                return values, i + 1
            i += 1
            continue
        current.append((kind, val))
        i += 1
    raise ValueError("unbalanced parentheses in partition bound")


def _to_value(parts: list[tuple[str, str]]) -> BoundValue:
    # a literal may carry a cast suffix (e.g. 'x'::text): keep the literal itself
    kind, val = parts[0]
    if kind == "lit":
        return BoundValue(val)
    upper = val.upper()
    if upper in ("MINVALUE", "MAXVALUE", "NULL"):
        return BoundValue(None, upper)
    return BoundValue("".join(p[1] for p in parts).split("::", 1)[0])


# The two shapes that make up nearly every bound of a big tree (weekly ranges, hash leaves).
_FAST_RANGE = re.compile(r"^FOR VALUES FROM \('((?:[^']|'')*)'\) TO \('((?:[^']|'')*)'\)$")
_FAST_HASH = re.compile(r"^FOR VALUES WITH \(modulus (\d+), remainder (\d+)\)$")


def parse_bound(text: str | None) -> Bound | None:
    """Parse one bound; results are cached (bounds are immutable, and hash siblings of every
    week share the same text), and the common shapes skip the tokenizer."""
    if text is None:
        return None
    return _parse_bound_cached(text)


@functools.lru_cache(maxsize=65536)
def _parse_bound_cached(text: str) -> Bound:
    m = _FAST_RANGE.match(text)
    if m:
        lo, hi = (g.replace("''", "'") for g in m.groups())
        return Bound("range", text, lower=(BoundValue(lo),), upper=(BoundValue(hi),))
    m = _FAST_HASH.match(text)
    if m:
        return Bound("hash", text, modulus=int(m.group(1)), remainder=int(m.group(2)))
    return _parse_bound_slow(text)


def _parse_bound_slow(text: str) -> Bound:
    stripped = text.strip()
    if stripped.upper() == "DEFAULT":
        return Bound("default", stripped)
    toks = _tokens(stripped)
    words = [v.upper() for k, v in toks[:3] if k == "word"]
    if words[:2] != ["FOR", "VALUES"]:
        raise ValueError(f"unexpected partition bound {text!r}")
    head = toks[2][1].upper()
    if head == "FROM":
        lower, i = _value_list(toks, 3)
        if toks[i][1].upper() != "TO":
            raise ValueError(f"unexpected partition bound {text!r}")
        upper, _ = _value_list(toks, i + 1)
        return Bound("range", stripped, lower=tuple(lower), upper=tuple(upper))
    if head == "IN":
        values, _ = _value_list(toks, 3)
        return Bound("list", stripped, values=tuple(values))
    if head == "WITH":
        inner, _ = _value_list(toks, 3)
        # "modulus 4" arrives as two word tokens joined without the space ("modulus4")
        mod = rem = 0
        for v in inner:
            m = re.match(r"(modulus|remainder)\s*(\d+)", str(v.text), re.I)
            if m and m.group(1).lower() == "modulus":
                mod = int(m.group(2))
            elif m:
                rem = int(m.group(2))
        return Bound("hash", stripped, modulus=mod, remainder=rem)
    raise ValueError(f"unexpected partition bound {text!r}")
