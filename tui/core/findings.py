"""Health checks over a loaded Forest: what an operator of big partitioned tables must know.

Every check is pure Python over the catalog snapshot (no queries) and linear in the number of
relations. Findings are aggregated per parent table, or per tree for checks that can concern
thousands of leaves, so a tree of 10,000 partitions yields a handful of lines, not 10,000. Sizes
and row counts are the loader's estimates unless the forest was loaded with exact sizes.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import humanize

from .bounds import Bound, BoundValue, parse_timestamp
from .catalog import Forest, IndexInfo, PartNode, UnvalidatedKey
from .config import FindingsConfig, TablePolicy
from .growth import Growth, fill_text, growth_of, rate_text
from .humanfmt import count, plural, size
from .names import display_name, quote_ident
from .policy import resolve_policies, thresholds_by_oid

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES = (CRITICAL, WARNING, INFO)
_RANK = {CRITICAL: 0, WARNING: 1, INFO: 2}

CODES = (
    "range_gap",
    "default_has_rows",
    "no_future_partition",
    "oversized_partition",
    "skewed_siblings",
    "never_analyzed",
    "index_missing",
    "index_invalid",
    "detach_pending",
    "foreign_key_not_valid",
)

# Below both of these the largest sibling of a group is too small for skew to matter.
SKEW_MIN_BYTES = 1024**2
SKEW_MIN_ROWS = 10_000
# How many of the newest range partitions give the typical interval.
_INTERVAL_SAMPLE = 5
# How many names a message lists before it says "and N more".
_LIST_MAX = 5
# More findings than this with one code in one tree are folded into one.
COLLAPSE_OVER = 3


@dataclass(frozen=True)
class Finding:
    severity: str  # "critical" | "warning" | "info"
    code: str  # one of CODES
    message: str  # one line, plain language, names the objects and numbers
    table: str  # qualified display name of the partitioned table it is about
    objects: tuple[str, ...]  # qualified display names of the relations concerned
    table_oid: int
    object_oids: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "table": self.table,
            "objects": list(self.objects),
            "table_oid": self.table_oid,
            "object_oids": list(self.object_oids),
        }


def check_forest(
    forest: Forest, config: FindingsConfig, now: datetime | None = None,
    policies: Mapping[str, TablePolicy] | None = None,
) -> list[Finding]:
    """Every finding for the forest, most severe first, then in tree order.

    `now` defaults to the server's clock at load time, so the future-partition check agrees with
    what the server would do with a row inserted now. `policies` (the config's [policy] sections)
    override the thresholds of `config` for their tables and what lies below them.
    """
    if not forest.indexes_loaded:
        # without them the index checks would pass on nothing: refuse rather than say all is well
        raise ValueError("the forest's indexes were not read: load_indexes() first")
    if now is None:
        now = forest.loaded_at
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    found: list[Finding] = []
    attached = _attached_index_tables(forest)
    per_table: dict[int, FindingsConfig] = {}
    if policies:
        per_table = thresholds_by_oid(forest, config, resolve_policies(forest, policies).by_oid)
    for root in forest.roots:
        in_tree: list[Finding] = []
        # the same forecast feeds no_future_partition and oversized_partition
        growths: dict[int, Growth] = {}
        for node in root.walk():
            if node.is_partitioned:
                limit = per_table.get(node.oid, config).oversized_bytes
                growth = growth_of(forest, node, limit_bytes=limit, now=now)
                if growth is not None:
                    growths[node.oid] = growth
        for node in root.walk():
            if not node.is_partitioned:
                continue
            here = per_table.get(node.oid, config)
            in_tree.extend(_range_gaps(node))
            in_tree.extend(_default_has_rows(node))
            in_tree.extend(_no_future_partition(forest, node, now, here, growths.get(node.oid)))
            in_tree.extend(_skewed(forest, node, here))
            if node.is_root:  # per tree: these can concern thousands of leaves
                in_tree.extend(_oversized(node, here, per_table, list(growths.values())))
                in_tree.extend(_never_analyzed(node))
            in_tree.extend(_index_missing(node, attached))
            in_tree.extend(_index_invalid(node))
            in_tree.extend(_detach_pending(node))
        in_tree.extend(_foreign_key_not_valid(forest, root))
        found.extend(_collapse(root, in_tree))
    order = {oid: i for i, oid in enumerate(n.oid for n in forest.walk())}
    found.sort(key=lambda f: (_RANK[f.severity], order.get(f.table_oid, 0)))
    return found


def _collapse(root: PartNode, findings: list[Finding]) -> list[Finding]:
    """Fold the same problem repeated under many tables of one tree into one finding.

    A weekly tree whose every week has skewed hash partitions, or lacks the same index, should
    read as one line naming the first case and counting the others, not as one line per week.
    Pending detaches stay separate: each needs its own FINALIZE statement.
    """
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        groups[(f.code, f.severity)].append(f)
    out: list[Finding] = []
    for (code, severity), group in groups.items():
        if len(group) <= COLLAPSE_OVER or code == "detach_pending":
            out.extend(group)
            continue
        first, rest = group[0], group[1:]
        message = (
            f"{first.message}; the same in {len(rest)} more tables under {root.qualified}: "
            f"{_names([f.table for f in rest])}"
        )
        objects: dict[int, str] = {}
        for f in group:
            objects.setdefault(f.table_oid, f.table)
            for oid, name in zip(f.object_oids, f.objects, strict=True):
                objects.setdefault(oid, name)
        out.append(Finding(
            severity, code, message, root.qualified, tuple(objects.values()), root.oid,
            tuple(objects),
        ))
    return out


def findings_by_oid(findings: Iterable[Finding]) -> dict[int, list[Finding]]:
    """Findings keyed by every relation they concern (the table and each object), for badges."""
    out: dict[int, list[Finding]] = defaultdict(list)
    for f in findings:
        for oid in dict.fromkeys((f.table_oid, *f.object_oids)):
            out[oid].append(f)
    return dict(out)


def worst_severity(findings: Iterable[Finding]) -> str | None:
    worst: str | None = None
    for f in findings:
        if worst is None or _RANK[f.severity] < _RANK[worst]:
            worst = f.severity
    return worst



@dataclass(frozen=True)
class FindingCounts:
    """How many findings concern a relation or anything below it, per severity."""

    critical: int = 0
    warning: int = 0
    info: int = 0

    @property
    def total(self) -> int:
        return self.critical + self.warning + self.info

    @property
    def worst(self) -> str | None:
        return next((sev for sev, n in self.by_severity() if n), None)

    def by_severity(self) -> list[tuple[str, int]]:
        """(severity, count) for the severities present, most severe first."""
        return [(sev, n) for sev in SEVERITIES if (n := getattr(self, sev))]

    def describe(self) -> str:
        """'1 critical, 2 warnings, 1 info' ('info' has no plural)."""
        words = {CRITICAL: ("critical", "critical"), WARNING: ("warning", "warnings"),
                 INFO: ("info", "info")}
        return ", ".join(plural(n, *words[sev]) for sev, n in self.by_severity())


def subtree_counts(forest: Forest, findings: Iterable[Finding]) -> dict[int, FindingCounts]:
    """Per relation: the findings that concern it or any relation below it, counted once each,
    so a collapsed parent can show the most severe problem in its subtree."""
    tally: dict[int, dict[str, int]] = {}
    nodes = forest.nodes
    for f in findings:
        touched: set[int] = set()
        for oid in (f.table_oid, *f.object_oids):
            node = nodes.get(oid)
            while node is not None and node.oid not in touched:
                touched.add(node.oid)
                node = nodes.get(node.parent_oid) if node.parent_oid else None
        for oid in touched:
            per = tally.setdefault(oid, {})
            per[f.severity] = per.get(f.severity, 0) + 1
    return {oid: FindingCounts(**per) for oid, per in tally.items()}

# -- helpers -------------------------------------------------------------------------------------
def _finding(
    severity: str, code: str, message: str, table: PartNode, objects: Iterable[PartNode]
) -> Finding:
    objs = list(objects)
    return Finding(
        severity, code, message, table.qualified,
        tuple(o.qualified for o in objs), table.oid, tuple(o.oid for o in objs),
    )


def _unique(nodes: Iterable[PartNode]) -> list[PartNode]:
    """Nodes in first-seen order without repeats (PartNode is not hashable)."""
    return list({n.oid: n for n in nodes}.values())


def _names(items: list[str]) -> str:
    if len(items) <= _LIST_MAX:
        return ", ".join(items)
    return ", ".join(items[:_LIST_MAX]) + f" and {len(items) - _LIST_MAX} more"


_size = size
_rows = count
_plural = plural


# -- typed comparison of range bounds ------------------------------------------------------------
_TIME_TYPES = ("timestamp", "date")
_NUMBER_TYPES = (
    "smallint", "integer", "bigint", "numeric", "real", "double precision", "decimal",
)
_INF = datetime.max.replace(tzinfo=timezone.utc)
_NEG_INF = datetime.min.replace(tzinfo=timezone.utc)


@lru_cache(maxsize=65536)  # neighbouring bounds repeat each other's text
def _as_time(text: str) -> datetime | None:
    low = text.strip().lower()
    if low == "infinity":
        return _INF
    if low == "-infinity":
        return _NEG_INF
    return parse_timestamp(text)


def _as_number(text: str) -> Decimal | None:
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    return None if d.is_nan() else d  # NaN does not order


def _kind_of_type(type_name: str) -> str:
    t = type_name.lower()
    if t.startswith(_TIME_TYPES):
        return "time"
    if t.startswith(_NUMBER_TYPES):
        return "number"
    return "text"


_CONVERT: dict[str, Callable[[str], Any]] = {
    "time": _as_time, "number": _as_number, "text": lambda s: s,
}


def _column_kinds(parent: PartNode, bounds: list[Bound]) -> list[str]:
    """How to compare each key column: 'time', 'number' or 'text'.

    The declared type decides when the key is plain columns; an expression key has no type in the
    catalog row, so the values decide. Either way a column whose values do not all convert falls
    back to text, which still compares equal values equal.
    """
    width = max((len(b.lower) for b in bounds), default=0)
    kinds: list[str] = []
    for j in range(width):
        literals = [
            str(v.text) for b in bounds for v in (b.lower[j:j + 1] + b.upper[j:j + 1])
            if v.is_literal and v.text is not None
        ]
        if parent.key_expressions is None and j < len(parent.key_types):
            candidates = [_kind_of_type(parent.key_types[j])]
        else:
            candidates = ["time", "number"]
        kind = "text"
        for cand in candidates:
            if cand == "text" or all(_CONVERT[cand](t) is not None for t in literals):
                kind = cand
                break
        kinds.append(kind)
    return kinds


def _bound_key(values: tuple[BoundValue, ...], kinds: list[str]) -> tuple:
    """A sortable key: MINVALUE < any literal < MAXVALUE, literals compared by type."""
    out = []
    for j, v in enumerate(values):
        if v.special == "MINVALUE":
            out.append((0, 0))
        elif v.special == "MAXVALUE":
            out.append((2, 0))
        else:
            kind = kinds[j] if j < len(kinds) else "text"
            out.append((1, _CONVERT[kind](str(v.text))))
    return tuple(out)


def _ranged_children(node: PartNode) -> list[PartNode]:
    return [c for c in node.children if c.bound is not None and c.bound.kind == "range"]


def _default_child(node: PartNode) -> PartNode | None:
    for c in node.children:
        if c.is_default:
            return c
    return None


# -- range_gap -----------------------------------------------------------------------------------
def _range_gaps(node: PartNode) -> list[Finding]:
    if node.strategy != "range":
        return []
    parts = _ranged_children(node)
    if len(parts) < 2:
        return []
    kinds = _column_kinds(node, [p.bound for p in parts if p.bound])
    lower = {p.oid: _bound_key(p.bound.lower, kinds) for p in parts if p.bound}
    starts = set(lower.values())
    parts.sort(key=lambda p: lower[p.oid])
    gaps: list[tuple[PartNode, PartNode]] = []
    for before, after in zip(parts, parts[1:], strict=False):
        assert before.bound is not None
        # PostgreSQL refuses overlaps, so the only question is whether something starts where
        # this partition ends.
        if _bound_key(before.bound.upper, kinds) not in starts:
            gaps.append((before, after))
    if not gaps:
        return []
    default = _default_child(node)
    spans = [
        Bound("range", "", lower=b.bound.upper, upper=a.bound.lower).short()  # type: ignore[union-attr]
        for b, a in gaps
    ]
    where = _names([f"{s} (after {b.qualified})" for s, (b, _a) in zip(spans, gaps, strict=True)])
    if default is not None:
        severity = WARNING
        consequence = f"rows there go to the DEFAULT partition {default.qualified}"
    else:
        severity = CRITICAL
        consequence = "inserting a row there fails: no partition accepts it"
    message = (
        f"{_plural(len(gaps), 'gap')} between range partitions of {node.qualified}: {where}; "
        f"{consequence}"
    )
    objects = _unique(p for pair in gaps for p in pair)
    return [_finding(severity, "range_gap", message, node, objects)]


# -- default_has_rows ----------------------------------------------------------------------------
def _rows_seen(node: PartNode) -> int:
    """Rows by whichever source says more: reltuples can be stale (analyzed while empty)."""
    return sum(max(leaf.reltuples, leaf.n_live_tup, 0) for leaf in node.leaves())


def _default_has_rows(node: PartNode) -> list[Finding]:
    default = _default_child(node)
    if default is None:
        return []
    rows = _rows_seen(default)
    if rows <= 0:
        return []
    message = (
        f"DEFAULT partition {default.qualified} of {node.qualified} holds about "
        f"{_plural(rows, 'row')} ({_size(default.total_bytes)}); give them a partition of "
        f"their own: every new partition must scan the DEFAULT under an ACCESS EXCLUSIVE lock"
    )
    return [_finding(WARNING, "default_has_rows", message, node, [default])]


# -- no_future_partition -------------------------------------------------------------------------
def _time_keyed(node: PartNode, parts: list[PartNode]) -> bool:
    if node.key_expressions is None:
        return bool(node.key_types) and _kind_of_type(node.key_types[0]) == "time"
    # an expression key (e.g. a date cast): decide by the values
    firsts = [p.bound.upper[0] for p in parts if p.bound and p.bound.upper]
    literals = [str(v.text) for v in firsts if v.is_literal]
    return bool(literals) and all(_as_time(t) is not None for t in literals)


def _first_time(values: tuple[BoundValue, ...]) -> datetime | None:
    if not values or not values[0].is_literal:
        return None
    return _as_time(str(values[0].text))


def _forecast(growth: Growth | None) -> str:
    """'; at about 1.2M rows (1.1 GiB) per week, partition X will pass 1 GiB in about 9 days',
    or as much of it as the history supports ('' without a meaningful rate)."""
    if growth is None or not growth.meaningful:
        return ""
    rate = rate_text(growth)
    fill = fill_text(growth)
    return f"; at {rate}, {fill}" if fill else f"; rows arrive at {rate}"


def _no_future_partition(
    forest: Forest, node: PartNode, now: datetime, config: FindingsConfig,
    growth: Growth | None = None,
) -> list[Finding]:
    if node.strategy != "range":
        return []
    parts = _ranged_children(node)
    if not _time_keyed(node, parts):
        return []
    if any(p.bound and p.bound.upper and p.bound.upper[0].special == "MAXVALUE" for p in parts):
        return []  # open-ended: the future is covered
    # A sub-partitioned slice (e.g. one year split into months) only has to reach its own end.
    limit: datetime | None = None
    parent = forest.parent(node)
    if (
        parent is not None and node.bound is not None and node.bound.kind == "range"
        and parent.key_columns[:1] == node.key_columns[:1] and node.key_columns
    ):
        if node.bound.upper and node.bound.upper[0].special == "MAXVALUE":
            limit = None
        else:
            limit = _first_time(node.bound.upper)
            if limit is not None and limit <= now:
                return []  # a slice of the past; nothing new belongs here
    dated: list[tuple[datetime | None, datetime, PartNode]] = []
    for p in parts:
        hi = _first_time(p.bound.upper) if p.bound else None
        if hi is not None and p.bound is not None:
            dated.append((_first_time(p.bound.lower), hi, p))
    default = _default_child(node)
    if not dated:
        if parts:
            return []
        where = (f"new rows go to the DEFAULT partition {default.qualified}" if default
                 else "every insert fails: no partition accepts a row")
        message = (
            f"{node.qualified} is range partitioned by time but has no range partitions; {where}"
        )
        return [_finding(CRITICAL, "no_future_partition", message, node,
                         [default] if default else [])]
    dated.sort(key=lambda t: t[1])
    newest_hi, newest = dated[-1][1], dated[-1][2]
    widths = [hi - lo for lo, hi, _p in dated[-_INTERVAL_SAMPLE:]
              if lo is not None and lo > _NEG_INF and hi < _INF]
    typical = statistics.median(widths) if widths else timedelta(0)
    wanted = typical * config.runway_intervals
    horizon = now + wanted
    if limit is not None:
        horizon = min(horizon, limit)
    if newest_hi >= horizon and newest_hi > now:
        return []
    end = newest_hi.strftime("%Y-%m-%d %H:%M").removesuffix(" 00:00")
    objects = [newest]
    if newest_hi <= now:
        if default is not None:
            where = f"rows for later times go to the DEFAULT partition {default.qualified}"
            objects.append(default)
        else:
            where = "inserting a row for a later time fails: no partition accepts it"
        message = (
            f"no partition of {node.qualified} covers the present: the newest, "
            f"{newest.qualified}, ends at {end}; {where}{_forecast(growth)}"
        )
        return [_finding(CRITICAL, "no_future_partition", message, node, objects)]
    ahead = humanize.naturaldelta(newest_hi - now)
    message = (
        f"{node.qualified} is covered only until {end} ({ahead} ahead, by {newest.qualified}); "
        f"wanted: {config.runway_intervals:g} × the typical interval of "
        f"{humanize.naturaldelta(typical)}; create the next partition{_forecast(growth)}"
    )
    return [_finding(WARNING, "no_future_partition", message, node, objects)]


# -- oversized_partition -------------------------------------------------------------------------
def _leaf_limits(
    root: PartNode, config: FindingsConfig, per_table: Mapping[int, FindingsConfig]
) -> dict[int, int]:
    """Each leaf's size limit: the threshold of the table it is a partition of."""
    limits: dict[int, int] = {}
    for node in root.walk():
        if node.is_partitioned:
            limit = per_table.get(node.oid, config).oversized_bytes
            for child in node.children:
                if child.is_leaf:
                    limits[child.oid] = limit
    return limits


def _oversized(
    root: PartNode, config: FindingsConfig, per_table: Mapping[int, FindingsConfig],
    growths: list[Growth],
) -> list[Finding]:
    limits = _leaf_limits(root, config, per_table)
    big = [c for c in root.leaves()
           if c is not root and c.total_bytes > limits.get(c.oid, config.oversized_bytes)]
    # the partitions filling now that will pass their limit before their interval ends
    coming = [(g, text) for g in growths if (text := fill_text(g))]
    if not big:
        if not coming:
            return []
        growth, text = coming[0]
        current = growth.current
        assert current is not None  # fill_text() says nothing without one
        more = f" (and {len(coming) - 1} more tables in this tree)" if len(coming) > 1 else ""
        message = (
            f"{text}{more}: {growth.table.qualified} grows by {rate_text(growth)}; "
            f"consider a finer interval for the partitions to come"
        )
        return [_finding(INFO, "oversized_partition", message, growth.table, [current.node])]
    big.sort(key=lambda c: c.total_bytes, reverse=True)
    used = {limits[c.oid] for c in big}
    if len(used) == 1:
        listed = _names([f"{c.qualified} ({_size(c.total_bytes)})" for c in big])
        over = f"over {_size(used.pop())}"
    else:  # policies set different limits in this tree: say each one
        listed = _names([f"{c.qualified} ({_size(c.total_bytes)}, limit "
                         f"{_size(limits[c.oid])})" for c in big])
        over = "over their limit"
    soon = "".join(f"; at {rate_text(g)}, {text}" for g, text in coming[:1])
    message = (
        f"{_plural(len(big), 'partition')} of {root.qualified} {over}: {listed}; "
        f"consider splitting or a finer interval{soon}"
    )
    return [_finding(WARNING, "oversized_partition", message, root, big)]


# -- skewed_siblings -----------------------------------------------------------------------------
def _sizes_trusted(forest: Forest, node: PartNode) -> bool:
    # relpages is only set by VACUUM/ANALYZE: a never-analyzed leaf reads 0 bytes
    return forest.exact_sizes or all(leaf.reltuples >= 0 for leaf in node.leaves())


def _skewed(forest: Forest, node: PartNode, config: FindingsConfig) -> list[Finding]:
    if node.strategy not in ("hash", "list"):
        return []
    sibs = [c for c in node.children if not c.is_default]
    if len(sibs) < 2:
        return []
    biggest_bytes = max(c.total_bytes for c in sibs)
    if biggest_bytes < SKEW_MIN_BYTES and max(c.rows for c in sibs) < SKEW_MIN_ROWS:
        return []
    measures: list[tuple[str, Callable[[PartNode], int], Callable[[int], str]]] = []
    if all(c.rows_known for c in sibs):
        measures.append(("rows", lambda c: c.rows, lambda n: f"{_rows(n)} rows"))
    if all(_sizes_trusted(forest, c) for c in sibs):
        measures.append(("size", lambda c: c.total_bytes, _size))
    for label, value, fmt in measures:
        hi = max(sibs, key=value)
        lo = min(sibs, key=value)
        top, bottom = value(hi), value(lo)
        if top <= 0:
            continue
        ratio = top / bottom if bottom > 0 else float("inf")
        if ratio <= config.skew_factor:
            continue
        times = "∞" if ratio == float("inf") else f"{ratio:.1f}"
        message = (
            f"{node.strategy} partitions of {node.qualified} are skewed by {label}: "
            f"{hi.qualified} has {fmt(top)}, {lo.qualified} has {fmt(bottom)} "
            f"({times}×, limit {config.skew_factor:g}×)"
        )
        return [_finding(WARNING, "skewed_siblings", message, node, [hi, lo])]
    return []


# -- never_analyzed ------------------------------------------------------------------------------
def _never_analyzed(root: PartNode) -> list[Finding]:
    # new, still empty partitions are never analyzed in every tree: one line per tree is enough
    never = [
        c for c in root.leaves()
        if c.relkind == "r" and c.reltuples < 0
        and c.last_analyze is None and c.last_autoanalyze is None
    ]
    if not never:
        return []
    message = (
        f"{_plural(len(never), 'partition')} of {root.qualified} never analyzed, so the planner "
        f"guesses their row counts: {_names([c.qualified for c in never])}; run ANALYZE on them"
    )
    return [_finding(INFO, "never_analyzed", message, root, never)]


# -- index_missing / index_invalid ---------------------------------------------------------------
def _attached_index_tables(forest: Forest) -> dict[int, set[int]]:
    """Partitioned index oid -> the tables that have an index attached to it."""
    out: dict[int, set[int]] = defaultdict(set)
    for info in forest.indexes.values():
        if info.parent_index:
            out[info.parent_index].add(info.table_oid)
    return out


def _index_name(table: PartNode, info: IndexInfo) -> str:
    return display_name(table.schema, info.name)  # an index lives in its table's schema


def _index_missing(node: PartNode, attached: dict[int, set[int]]) -> list[Finding]:
    # foreign-table partitions cannot hold indexes; PostgreSQL skips them
    parts = [c for c in node.children if c.relkind != "f"]
    if not parts:
        return []
    lines: list[str] = []
    missing_on: dict[int, PartNode] = {}
    for info in node.indexes:
        if info.relkind != "I":
            continue
        have = attached.get(info.oid, set())
        missing = [c for c in parts if c.oid not in have]
        if not missing:
            continue
        lines.append(
            f"{_index_name(node, info)} on {len(missing)} of {len(parts)} "
            f"({_names([c.qualified for c in missing])})"
        )
        for c in missing:
            missing_on[c.oid] = c
    if not lines:
        return []
    message = (
        f"partitions of {node.qualified} lack an attached index: {'; '.join(lines)}; "
        f"create it on each (CONCURRENTLY) and ALTER INDEX … ATTACH PARTITION"
    )
    return [_finding(WARNING, "index_missing", message, node, list(missing_on.values()))]


def _index_invalid(node: PartNode) -> list[Finding]:
    out: list[Finding] = []
    bad_parent = [i for i in node.indexes if i.relkind == "I" and not i.valid]
    if bad_parent:
        names = _names([_index_name(node, i) for i in bad_parent])
        one = len(bad_parent) == 1
        message = (
            f"partitioned {'index' if one else 'indexes'} {names} of {node.qualified} "
            f"{'is' if one else 'are'} not valid: a partitioned index becomes valid once every "
            f"partition has a valid index attached to it"
        )
        out.append(_finding(WARNING, "index_invalid", message, node, [node]))
    bad_leaf = [
        (c, i) for c in node.children if c.is_leaf for i in c.indexes if not i.valid
    ]
    if bad_leaf:
        names = _names([f"{_index_name(c, i)} on {c.qualified}" for c, i in bad_leaf])
        message = (
            f"{_plural(len(bad_leaf), 'invalid index', 'invalid indexes')} on partitions of "
            f"{node.qualified}: {names}; the planner ignores "
            f"{'it' if len(bad_leaf) == 1 else 'them'}: REINDEX INDEX CONCURRENTLY or drop and "
            f"create again"
        )
        objs = _unique(c for c, _i in bad_leaf)
        out.append(_finding(WARNING, "index_invalid", message, node, objs))
    return out


# -- detach_pending ------------------------------------------------------------------------------
def _detach_pending(node: PartNode) -> list[Finding]:
    out = []
    for c in node.children:
        if c.detach_pending:
            message = (
                f"partition {c.qualified} of {node.qualified} is half detached (an interrupted "
                f"DETACH … CONCURRENTLY); its rows are invisible through the parent and inserts "
                f"for its range fail; run ALTER TABLE {node.qualified} DETACH PARTITION "
                f"{c.qualified} FINALIZE"
            )
            out.append(_finding(CRITICAL, "detach_pending", message, node, [c]))
    return out


# -- foreign_key_not_valid -----------------------------------------------------------------------
def _foreign_key_not_valid(forest: Forest, root: PartNode) -> list[Finding]:
    """Keys on or pointing at a table of the tree whose rows were not all checked. The loader
    leaves out the entries PostgreSQL keeps per partition of a referenced table, which
    PostgreSQL 15 leaves marked not validated after a VALIDATE that checked every row."""
    if not forest.unvalidated_keys:
        return []
    tree = {n.oid: n for n in root.walk()}
    out = []
    for key in forest.unvalidated_keys:
        # a key between two trees is reported once, with the referencing table
        here = (tree.get(key.table_oid) if key.table_oid in forest.nodes
                else tree.get(key.ref_oid))
        if here is None:
            continue
        message = _key_message(key)
        out.append(_finding(WARNING, "foreign_key_not_valid", message, here, [here]))
    return out


def _key_message(key: UnvalidatedKey) -> str:
    name = quote_ident(key.name)
    return (
        f"foreign key {name} of {key.table} to {key.ref} is NOT VALID: rows written before it "
        f"was added were never checked (new writes are); ALTER TABLE {key.table} VALIDATE "
        f"CONSTRAINT {name} checks them (SHARE UPDATE EXCLUSIVE: reads and writes go on)"
    )
