"""The partitions the migrated table will have: proposed from the rows per period, written to and
read back from a layout file, and validated.

Two ways to propose: one partition per `interval` (year, quarter, month, week, day), or a
`target_rows` per partition, which merges consecutive quiet periods of the past into bigger
partitions (scenario 2: `payment_2000_2019`, then `payment_2020_2021`, then one per year). The
current period and the ones after it are never merged: they are still growing. Every proposal
ends with at least one partition entirely in the future (new rows never fall into the default
unnoticed) and a DEFAULT partition. Integer columns: ranges of the counted step, one empty
range above the data as the "future".

Names follow `<prefix>_<period>` (`payment_2023`, `payment_2023_q1`, `payment_2023_01`,
`payment_2023_01_02` for weeks and days, `<first>_<last>` merged), prefix the table's name.

The layout file is TOML (or JSON when the name ends in .json)::

    column = "pay_ts"
    [[partitions]]
    name = "payment_2019"
    from = "2019-01-01 00:00:00+00:00"
    to = "2020-01-01 00:00:00+00:00"
    [[partitions]]
    name = "payment_default"
    default = true

Bounds are text as PostgreSQL reads them (in UTC: pgparts' sessions run with TimeZone=UTC), or
MINVALUE / MAXVALUE; integer bounds may be TOML integers. Validation casts every bound on the
server to the column's type and reports bad bounds, overlaps, gaps, duplicate or over-long
names, and more than one default.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ..errors import first_line
from ..infinity import INFINITY, NEG_INFINITY
from ..names import check_identifier_length
from . import MigrateError
from .periods import PERIODS, advance, as_utc, int_label, label, truncate
from .preflight import RowsPerPeriod
from .source import PartitionColumn

DEFAULT_TARGET_ROWS = 30_000_000
SPECIAL = ("MINVALUE", "MAXVALUE")

Value = datetime | date | int | str  # str: MINVALUE / MAXVALUE, or bound text not yet parsed


@dataclass(frozen=True)
class Partition:
    name: str
    lo: Value | None = None  # None: the DEFAULT partition
    hi: Value | None = None
    rows: int | None = None  # estimated or counted, when proposed
    default: bool = False


# -- proposing ------------------------------------------------------------------------------------
def _summable(grain: str, to: str) -> bool:
    """Whether counts per `grain` add up to counts per `to` (weeks fit in no month or year)."""
    if grain == "day":
        return True
    if "week" in (grain, to):
        return grain == to
    return PERIODS.index(to) <= PERIODS.index(grain)


def _regroup(counts: RowsPerPeriod, period: str) -> dict[datetime, int]:
    out: dict[datetime, int] = {}
    for p in counts.periods:
        assert isinstance(p.start, datetime)
        key = truncate(p.start, period)
        out[key] = out.get(key, 0) + p.rows
    return out


def _merge(periods: list[tuple[Any, Any, int, str]], target: int | None,
           mergeable: int) -> list[tuple[Any, Any, int, str]]:
    """Consecutive (lo, hi, rows, label) periods; the first `mergeable` ones merged greedily
    while a group's rows stay within `target`. Returns (lo, hi, rows, name suffix)."""
    groups: list[list[Any]] = []  # [lo, hi, rows, first label, last label, mergeable]
    for i, (lo, hi, rows, lab) in enumerate(periods):
        joinable = i < mergeable
        if (target is not None and joinable and groups and groups[-1][5]
                and groups[-1][2] + rows <= target):
            groups[-1][1] = hi
            groups[-1][2] += rows
            groups[-1][4] = lab
        else:
            groups.append([lo, hi, rows, lab, lab, joinable])
    return [(lo, hi, rows, first if first == last else f"{first}_{last}")
            for lo, hi, rows, first, last, _ in groups]


def propose_layout(counts: RowsPerPeriod, prefix: str, *, interval: str | None = None,
                   target_rows: int | None = None, now: datetime | None = None,
                   future: int = 1) -> list[Partition]:
    """Partitions covering every counted row, `future` empty ones ahead, and a DEFAULT."""
    if (interval is None) == (target_rows is None):
        raise MigrateError("choose either an interval or a target row count per partition")
    if target_rows is not None and target_rows < 1:
        raise MigrateError("the target row count must be positive")
    if future < 1:
        raise MigrateError("at least one future partition is needed")
    if not counts.periods:
        raise MigrateError("no rows per period to plan from: " + (counts.note or "empty table"))
    if counts.step is not None:
        parts = _propose_ranges(counts, prefix, interval, target_rows, future)
    else:
        parts = _propose_periods(counts, prefix, interval, target_rows,
                                 now or datetime.now(UTC), future)
    parts.append(Partition(f"{prefix}_default", default=True, rows=counts.null_rows
                           + counts.infinite_rows + counts.neg_infinite_rows))
    for p in parts:
        try:
            check_identifier_length(p.name)
        except ValueError as exc:
            raise MigrateError(f"{exc}: choose a shorter prefix") from None
    return parts


def _propose_periods(counts: RowsPerPeriod, prefix: str, interval: str | None,
                     target: int | None, now: datetime, future: int) -> list[Partition]:
    grain = counts.period
    if interval is not None:
        if interval not in PERIODS:
            raise MigrateError(f"unknown interval {interval!r}; one of {', '.join(PERIODS)}")
        if not _summable(grain, interval):
            raise MigrateError(f"rows were counted per {grain}: count them per {interval} "
                               "(or per day) to plan partitions by " + interval)
        base = interval
    else:
        assert target is not None
        # the coarsest period no single one of which exceeds the target
        choices = [p for p in PERIODS if _summable(grain, p)]
        base = next((p for p in choices if max(_regroup(counts, p).values()) <= target),
                    choices[-1])
    rows = _regroup(counts, base)
    current = truncate(now, base)
    start = min(rows)
    last = max(max(rows), advance(current, base, future))
    periods = []
    while start <= last:
        periods.append((start, advance(start, base), rows.get(start, 0), label(start, base)))
        start = advance(start, base)
    mergeable = sum(1 for p in periods if p[0] < current)
    return [Partition(f"{prefix}_{suffix}", lo, hi, n)
            for lo, hi, n, suffix in _merge(periods, target, mergeable)]


def _propose_ranges(counts: RowsPerPeriod, prefix: str, interval: str | None,
                    target: int | None, future: int) -> list[Partition]:
    if interval is not None:
        raise MigrateError("an integer column is planned by ranges: give a target row count "
                           "(the ranges' width is the counting step)")
    step = counts.step
    assert step is not None
    periods = [(p.start, p.end, p.rows, int_label(int(p.start))) for p in counts.periods]
    hi = int(counts.periods[-1].end)
    for k in range(future):
        lo = hi + k * step
        periods.append((lo, lo + step, 0, int_label(lo)))
    return [Partition(f"{prefix}_{suffix}", lo, hi_, n)
            for lo, hi_, n, suffix in _merge(periods, target, len(counts.periods))]


# -- the layout file ------------------------------------------------------------------------------
def bound_text(value: Value | None, kind: str = "timestamptz") -> str | int | None:
    """A bound as the layout file holds it, written for a column of `kind` (source.KINDS)."""
    if value is None or isinstance(value, int | str):
        return value
    if isinstance(value, datetime):
        if kind == "date" and value.time() == datetime.min.time():
            return value.date().isoformat()
        if kind == "timestamp" or value.tzinfo is None:
            return value.replace(tzinfo=None).isoformat(sep=" ")
        return as_utc(value).isoformat(sep=" ")
    return value.isoformat()


def _toml_string(text: str) -> str:
    # JSON's escapes are valid TOML basic-string escapes (json.dumps never writes \/)
    return json.dumps(text, ensure_ascii=False)


def _toml_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _toml_string(value)


def layout_document(partitions: list[Partition], pc: PartitionColumn) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for p in partitions:
        item: dict[str, Any] = {"name": p.name}
        if p.default:
            item["default"] = True
        else:
            item["from"] = bound_text(p.lo, pc.kind)
            item["to"] = bound_text(p.hi, pc.kind)
        if p.rows is not None:
            item["rows"] = p.rows
        items.append(item)
    return {"column": pc.name, "partitions": items}


def layout_toml(partitions: list[Partition], pc: PartitionColumn) -> str:
    """The layout file's TOML text (what `write_layout` writes to a .toml file)."""
    doc = layout_document(partitions, pc)
    lines = ["# pgparts partition layout: bounds in UTC, `to` excluded",
             f"column = {_toml_string(pc.name)}"]
    for item in doc["partitions"]:
        lines.append("")
        lines.append("[[partitions]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
    return "\n".join(lines) + "\n"


def write_layout(path: Path, partitions: list[Partition], pc: PartitionColumn) -> None:
    if path.suffix.lower() == ".json":
        doc = layout_document(partitions, pc)
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    path.write_text(layout_toml(partitions, pc), encoding="utf-8")


def _bound_from_file(value: Any, where: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MigrateError(f"{where}: a bound must be text or an integer")
    if isinstance(value, str) and value.strip().upper() in SPECIAL:
        return value.strip().upper()
    return value


def read_layout(path: Path) -> tuple[str | None, list[Partition]]:
    """(column, partitions) from a layout file; bounds stay text until validate_layout()."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MigrateError(f"cannot read {path}: {exc.strerror}") from None
    return parse_layout(text, str(path), json_format=path.suffix.lower() == ".json")


def parse_layout(text: str, source: str, *, json_format: bool = False,
                 ) -> tuple[str | None, list[Partition]]:
    """`read_layout` of a text (TOML, or JSON); `source` names it in the messages."""
    try:
        doc = json.loads(text) if json_format else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise MigrateError(f"{source}: not a valid layout file: {first_line(exc)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("partitions"), list):
        raise MigrateError(f"{source}: a layout file needs a list of partitions")
    column = doc.get("column")
    if column is not None and not isinstance(column, str):
        raise MigrateError(f"{source}: column must be text")
    out = []
    for i, item in enumerate(doc["partitions"], 1):
        where = f"{source}: partition {i}"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise MigrateError(f"{where}: needs a name")
        unknown = set(item) - {"name", "from", "to", "default", "rows"}
        if unknown:
            raise MigrateError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        rows = item.get("rows")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int)):
            raise MigrateError(f"{where}: rows must be an integer")
        if item.get("default") is True:
            if "from" in item or "to" in item:
                raise MigrateError(f"{where}: a DEFAULT partition has no bounds")
            out.append(Partition(item["name"], rows=rows, default=True))
            continue
        if "from" not in item or "to" not in item:
            raise MigrateError(f"{where}: needs from and to (or default = true)")
        out.append(Partition(item["name"], _bound_from_file(item["from"], where),
                             _bound_from_file(item["to"], where), rows))
    return column, out


# -- validating -----------------------------------------------------------------------------------
@dataclass
class LayoutCheck:
    partitions: list[Partition]  # bounds parsed by the server; sorted, DEFAULT last
    problems: list[str] = field(default_factory=list)  # the layout cannot be used
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _cast_all(conn: psycopg.Connection, texts: list[str], pc: PartitionColumn,
              ) -> tuple[dict[str, Any], dict[str, str]]:
    """Each bound text cast by the server: (parsed values, error per text that failed)."""
    if not texts:
        return {}, {}
    batch = sql.SQL("SELECT u.b::{t} FROM unnest({a}::text[]) WITH ORDINALITY AS u(b, i)"
                    " ORDER BY u.i").format(t=pc.cast_type, a=sql.Literal(texts))
    try:
        return dict(zip(texts, (r[0] for r in conn.execute(batch)), strict=True)), {}
    except psycopg.Error:
        pass  # one of them is bad: find which, one by one
    values, errors = {}, {}
    for text in texts:
        try:
            values[text] = conn.execute(sql.SQL("SELECT {b}::{t}").format(
                b=sql.Literal(text), t=pc.cast_type)).fetchone()[0]
        except psycopg.Error as exc:
            errors[text] = first_line(exc)
    return values, errors


def _sort_key(value: Any) -> tuple[int, Any]:
    if value == "MINVALUE":
        return (0, 0)
    if value == "MAXVALUE":
        return (2, 0)
    return (1, value)


def _comparable(value: Any) -> Any:
    return as_utc(value) if isinstance(value, datetime | date) else value


def _contains(p: Partition, value: Any) -> bool:
    v = _comparable(value)
    return ((p.lo == "MINVALUE" or _comparable(p.lo) <= v)
            and (p.hi == "MAXVALUE" or v < _comparable(p.hi)))


def assign_rows(partitions: list[Partition], counts: RowsPerPeriod,
                ) -> tuple[list[Partition], int]:
    """The partitions (bounds parsed) with the rows of the counted periods they hold, and the
    rows no range holds (the DEFAULT partition's). A period is given to the partition holding
    its start: counts per finer periods give closer figures."""
    ranged = [p for p in partitions if not p.default]
    rows = [0] * len(ranged)
    outside = counts.null_rows
    # the infinities sort after and before every value: only a range from MINVALUE or
    # '-infinity', or up to MAXVALUE, holds one
    for n, value in ((counts.neg_infinite_rows, NEG_INFINITY), (counts.infinite_rows, INFINITY)):
        i = next((i for i, p in enumerate(ranged) if _contains(p, value)), None)
        if i is None:
            outside += n
        else:
            rows[i] += n
    for period in counts.periods:
        i = next((i for i, p in enumerate(ranged) if _contains(p, period.start)), None)
        if i is None:
            outside += period.rows
        else:
            rows[i] += period.rows
    out = [Partition(p.name, p.lo, p.hi, n) for p, n in zip(ranged, rows, strict=True)]
    return out + [Partition(p.name, rows=outside, default=True) for p in partitions
                  if p.default], outside


def validate_layout(conn: psycopg.Connection, partitions: list[Partition],
                    pc: PartitionColumn, *, now: datetime | None = None,
                    counts: RowsPerPeriod | None = None) -> LayoutCheck:
    """Names, bounds (cast to the column's type by the server), overlaps and gaps. With
    `counts`, each partition gets its rows, and rows no range holds are reported."""
    problems: list[str] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for p in partitions:
        if not p.name:
            problems.append("a partition has an empty name")
        elif p.name in seen:
            problems.append(f"partition name {p.name!r} is used twice")
        seen.add(p.name)
        try:
            check_identifier_length(p.name)
        except ValueError as exc:
            problems.append(str(exc))
    defaults = [p for p in partitions if p.default]
    if len(defaults) > 1:
        problems.append("more than one DEFAULT partition: "
                        + ", ".join(p.name for p in defaults))
    ranged = [p for p in partitions if not p.default]
    texts = sorted({str(b) for p in ranged for b in (p.lo, p.hi)
                    if b is not None and b not in SPECIAL})
    values, errors = _cast_all(conn, texts, pc)
    for text, error in errors.items():
        problems.append(f"bound {text!r} is not a {pc.column.type}: {error}")

    def parsed(b: Value | None) -> Any:
        return b if b in SPECIAL else values.get(str(b))

    out = []
    for p in ranged:
        lo, hi = parsed(p.lo), parsed(p.hi)
        if lo is None or hi is None:
            continue
        if _sort_key(lo) >= _sort_key(hi):
            problems.append(f"{p.name}: from {bound_text(lo, pc.kind)} is not before to "
                            f"{bound_text(hi, pc.kind)}")
            continue
        out.append(Partition(p.name, lo, hi, p.rows))
    out.sort(key=lambda p: _sort_key(p.lo))
    for a, b in zip(out, out[1:], strict=False):
        if _sort_key(b.lo) < _sort_key(a.hi):
            problems.append(f"{a.name} and {b.name} overlap")
        elif _sort_key(b.lo) > _sort_key(a.hi):
            problems.append(f"gap between {a.name} and {b.name}: rows from "
                            f"{bound_text(a.hi, pc.kind)} to {bound_text(b.lo, pc.kind)} would "
                            "go to the default partition")
    if not defaults:
        warnings.append("no DEFAULT partition: a row outside every range would be refused")
    if pc.is_time and out and not problems:
        moment = as_utc(now) if now is not None else datetime.now(UTC)
        if not any(p.lo == "MAXVALUE" or (p.lo != "MINVALUE" and _comparable(p.lo) > moment)
                   for p in out):
            warnings.append("no partition lies entirely in the future: new rows would go to "
                            "the default partition")
    parts = out + defaults[:1]
    if counts is not None and not problems:
        parts, outside = assign_rows(parts, counts)
        if outside and defaults:
            warnings.append(f"about {outside} row(s) fall outside every range: they would go "
                            "to the default partition")
        elif outside:
            problems.append(f"about {outside} row(s) fall outside every range and there is no "
                            "DEFAULT partition: the copy would fail")
    return LayoutCheck(parts, problems, warnings)
