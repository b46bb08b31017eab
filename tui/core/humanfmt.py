"""Sizes and counts for people: one style for the command line and the console.

Sizes are binary (1 KiB = 1024 bytes, as pg_size_pretty counts) and carry IEC units so nobody
has to guess which kind of megabyte is meant: '512 B', '9.6 MiB', '968 KiB', '1.2 GiB'. One
decimal below 100 of a unit, none from 100 up: never more than 8 cells, which the console's size
column relies on. Counts have thousands separators; `plural` agrees the noun with the number.
"""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")

SIZE_CELLS = 8  # the widest size(): '99.9 MiB', '1023 KiB'


def size(n: int | float) -> str:
    """Bytes as '0 B', '512 B', '9.6 MiB', '968 KiB', '1.2 GiB'; negative sizes keep their sign."""
    if n < 0:
        return "-" + size(-n)
    n = int(round(n))
    if n < 1024:
        return f"{n} B"
    value = float(n)
    unit = _UNITS[-1]
    for candidate in _UNITS:
        value /= 1024
        # 1023.97 KiB would print as '1024 KiB': go up a unit instead
        if round(value) < 1024:
            unit = candidate
            break
    return f"{value:.1f} {unit}" if round(value, 1) < 100 else f"{value:.0f} {unit}"


def signed_size(n: int | float) -> str:
    """A change in size: '-8.7 MiB', '+1.2 MiB', '0 B'."""
    return f"+{size(n)}" if n > 0 else size(n)


def count(n: int) -> str:
    """'950', '12,345', '-9,109'."""
    return f"{n:,}"


def plural(n: int, word: str, plural_word: str | None = None) -> str:
    """'1 partition', '2 partitions', '1,000 entries' (with plural_word='entries')."""
    return f"{count(n)} {word if n == 1 else (plural_word or word + 's')}"


def short_count(n: int) -> str:
    """A count in at most 4 cells for narrow columns: '950', '12k', '4.2M', '3.1G'."""
    if n < 0:
        return "-" + short_count(-n)
    if n < 1000:
        return str(n)
    value = float(n)
    unit = "T"
    for candidate in ("k", "M", "G", "T"):
        value /= 1000
        if round(value) < 1000:
            unit = candidate
            break
    return f"{value:.1f}{unit}" if round(value, 1) < 10 else f"{value:.0f}{unit}"


def seconds(s: float) -> str:
    """'0.4 s', '12.0 s', '3 min 05 s', '2 h 04 min'."""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"
