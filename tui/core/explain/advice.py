"""Why a query does (not) prune: the predicates on each partition key, read with sqlglot.

The query is parsed (postgres dialect) and every reference to a partitioned table is found
through aliases, joins, CTEs and subqueries. For each level of its tree (the table's own key and
the keys of its partitioned descendants) the conditions on the key columns are classified:
usable at plan time (a constant), only at executor start-up (now(), current_date, $n), only
during execution (a join column, a subquery), or not at all (key wrapped in a function, <>,
NOT IN, LIKE, ranges on a hash key, OR across columns, no condition at all).

This module only reads the text. What PostgreSQL actually pruned comes from the plan; the report
(report.py) reconciles both so that advice never claims pruning the plan does not show.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from ..catalog import PartNode
from ..errors import first_line
from ..names import quote_ident

DIALECT = "postgres"
# sqlglot warns on stderr when it falls back to a generic Command; the advice copes without it
logging.getLogger("sqlglot").setLevel(logging.ERROR)

# plan-time < start-up < execution: how late a condition can prune
PLAN, STARTUP, EXECUTION = "plan", "startup", "execution"
_STABLE_NODES = (exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime, exp.Localtimestamp)
_STABLE_NAMES = {
    "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday", "now",
    "localtime", "random", "nextval", "currval", "current_setting", "txid_current",
}
_VOLATILE_NODES = (exp.Rand,)
_TEXTLIKE = ("text", "character varying", "varchar", "character", "bpchar", "name")


@dataclass(frozen=True)
class Advice:
    code: str
    message: str
    suggestion: str | None = None
    level: str | None = None  # the key it is about, e.g. 'HASH (account_address)'

    def text(self) -> str:
        return f"{self.message} Suggestion: {self.suggestion}" if self.suggestion \
            else self.message


@dataclass(frozen=True)
class RelationInfo:
    """A relation the query names, resolved by the server (search_path applied)."""

    oid: int
    relkind: str
    schema: str
    name: str
    columns: tuple[str, ...]


@dataclass
class Finding:
    code: str  # 'ok' or an advice code
    when: str | None  # for 'ok': PLAN / STARTUP / EXECUTION
    column: str
    condition: str
    equality: bool = False  # '=' / IN / IS NULL (what hash pruning needs)
    suggestion: str | None = None
    note: str | None = None  # for 'ok': what makes the value known (const, param, stable, ...)
    list_range: bool = False  # a range on a LIST key: prunes only partitions wholly outside


@dataclass
class LevelAnalysis:
    """The conditions on one partition key (all partitioned tables sharing strategy and key)."""

    strategy: str
    key: str
    nodes: list[PartNode]
    elements: list[KeyElement]
    findings: list[Finding] = field(default_factory=list)

    def usable(self) -> str | None:
        """The earliest stage at which the conditions can prune this level, or None."""
        oks = [f for f in self.findings if f.code == "ok"]
        if not oks:
            return None
        if self.strategy == "hash":
            cols = [e.label for e in self.elements]
            stages = []
            for col in cols:
                eq = [f for f in oks if f.column == col and f.equality]
                if not eq:
                    return None
                stages.append(min(_ORDER[f.when or PLAN] for f in eq))
            return _STAGES[max(stages)]
        lead = self.elements[0].label if self.elements else None
        lead_ok = [f for f in oks if f.column == lead]
        if not lead_ok:
            return None
        return _STAGES[min(_ORDER[f.when or PLAN] for f in lead_ok)]


_ORDER = {PLAN: 0, STARTUP: 1, EXECUTION: 2}
_STAGES = {v: k for k, v in _ORDER.items()}


@dataclass
class KeyElement:
    label: str  # the column name, or the expression's text
    column: str | None  # a plain column key
    expr_sql: str | None  # normalized SQL of an expression key
    columns: frozenset[str]


@dataclass
class ReferenceAnalysis:
    """One reference to a partitioned table in the query text."""

    alias: str
    table: PartNode
    levels: list[LevelAnalysis]


@dataclass
class QueryAnalysis:
    parsed: exp.Expression | None
    error: str | None
    table_names: list[tuple[str | None, str]]  # every table name the text mentions
    references: list[ReferenceAnalysis] = field(default_factory=list)
    views: list[str] = field(default_factory=list)  # views the query reads (opaque to us)
    mentioned_oids: set[int] = field(default_factory=set)
    # names that are only INSERT targets: tuple routing, not a scan, so nothing to prune
    insert_only: set[tuple[str | None, str]] = field(default_factory=set)
    read_oids: set[int] = field(default_factory=set)  # mentioned and read (not only inserted)


# -- identifiers ---------------------------------------------------------------------------
def _ident(node: exp.Expression | None) -> str | None:
    if node is None:
        return None
    if isinstance(node, exp.Identifier):
        return node.this if node.quoted else node.this.lower()
    if isinstance(node, str):
        return node.lower()
    name = node.name
    return name.lower() if name else None


def _table_name(t: exp.Table) -> tuple[str | None, str]:
    schema = t.args.get("db")
    return (_ident(schema) if schema is not None else None, _ident(t.this) or "")


def _alias(t: exp.Expression) -> str | None:
    alias = t.args.get("alias")
    if isinstance(alias, exp.TableAlias):
        return _ident(alias.this)
    return _ident(alias) if alias is not None else None


# -- parsing -------------------------------------------------------------------------------
def _space_params(text: str) -> str:
    """`in($1,$2)`: sqlglot's tokenizer reads `$2,$` as the start of a dollar-quoted string.
    Spaces around each $n outside literals, quoted names, comments and dollar-quoted strings
    keep the parse (and so the advice) the same as for `in ($1, $2)`."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            j = i + 1
            while j < n:
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(text[i:j])
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(text[i:j])
            i = j
        elif ch == "$" and (m := _PARAM_AT.match(text, i)):
            out.append(f" {m.group(0)} ")
            i = m.end()
        elif ch == "$" and (m := _DOLLAR_TAG.match(text, i)) \
                and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = text.find(m.group(0), m.end())
            j = n if end < 0 else end + len(m.group(0))
            out.append(text[i:j])
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_PARAM_AT = re.compile(r"\$\d+")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$")


def parse_query(text: str) -> QueryAnalysis:
    try:
        parsed = sqlglot.parse_one(_space_params(text), read=DIALECT)
    except (SqlglotError, ValueError, RecursionError) as exc:
        reason = first_line(exc)
        return QueryAnalysis(None, f"could not read the query text ({reason})", [])
    names: list[tuple[str | None, str]] = []
    ctes = {(_alias(c) or "") for c in parsed.find_all(exp.CTE)}
    targets: set[int] = set()
    for ins in parsed.find_all(exp.Insert):
        target = ins.this.this if isinstance(ins.this, exp.Schema) else ins.this
        targets.add(id(target))
    read: set[tuple[str | None, str]] = set()
    for t in parsed.find_all(exp.Table):
        key = _table_name(t)
        if not key[1] or (key[0] is None and key[1] in ctes):
            continue
        if id(t) not in targets:
            read.add(key)
        if key not in names:
            names.append(key)
    return QueryAnalysis(parsed, None, names, insert_only={k for k in names if k not in read})


# -- key elements --------------------------------------------------------------------------
def _normalize(node: exp.Expression) -> str:
    node = node.copy()
    for p in list(node.find_all(exp.Paren)):
        p.replace(p.this)
    for c in list(node.find_all(exp.Cast)):
        if isinstance(c.this, exp.Literal) and c.this.is_string \
                and c.to.this == exp.DataType.Type.TEXT:
            c.replace(c.this)  # 'UTC'::text as the catalog prints it == 'UTC'
    if isinstance(node, exp.Paren):
        node = node.this
    return node.sql(DIALECT).lower()


def _split_top(text: str) -> list[str]:
    parts, depth, cur, quote = [], 0, [], False
    for ch in text:
        if ch == "'":
            quote = not quote
        if not quote:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append("".join(cur).strip())
                cur = []
                continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def key_elements(node: PartNode) -> list[KeyElement]:
    if not node.key_expressions:
        return [KeyElement(c, c, None, frozenset({c})) for c in node.key_columns]
    m = re.match(r"^\s*\w+\s*\((.*)\)\s*$", node.key_expressions, re.S)
    body = m.group(1) if m else node.key_expressions
    out: list[KeyElement] = []
    for part in _split_top(body):
        try:
            parsed = sqlglot.parse_one(part, read=DIALECT)
        except (SqlglotError, ValueError):
            out.append(KeyElement(part, None, part.lower(), frozenset()))
            continue
        inner = parsed.this if isinstance(parsed, exp.Paren) else parsed
        if isinstance(inner, exp.Column):
            col = _ident(inner.this) or part
            out.append(KeyElement(col, col, None, frozenset({col})))
        else:
            cols = frozenset(_ident(c.this) or "" for c in parsed.find_all(exp.Column))
            out.append(KeyElement(part, None, _normalize(parsed), cols))
    return out


def partitioned_nodes(table: PartNode) -> Iterator[PartNode]:
    """The table and its partitioned descendants, in walk() order, without visiting leaves one
    by one (a table with 10,000 leaves has a handful of partitioned levels at most)."""
    if not table.is_partitioned:
        return
    stack = [table]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed([c for c in node.children if c.relkind == "p"]))


def level_groups(table: PartNode) -> list[tuple[str, str, list[PartNode]]]:
    """(strategy, key, nodes) for the table and each partitioned descendant, grouped by key."""
    groups: dict[tuple[str, str], list[PartNode]] = {}
    for node in partitioned_nodes(table):
        if node.strategy:
            groups.setdefault((node.strategy, node.key), []).append(node)
    return [(s, k, nodes) for (s, k), nodes in groups.items()]


# -- scopes --------------------------------------------------------------------------------
@dataclass
class _Source:
    alias: str
    info: RelationInfo | None
    table: PartNode | None
    body: exp.Expression | None = None  # a subquery or inlined CTE the planner pushes into
    column_aliases: list[str] = field(default_factory=list)  # AS s(x, y)


@dataclass
class _Scope:
    node: exp.Expression
    sources: dict[str, _Source]
    conditions: list[exp.Expression]


def _conjuncts(cond: exp.Expression | None) -> list[exp.Expression]:
    if cond is None:
        return []
    if isinstance(cond, exp.Paren):
        return _conjuncts(cond.this)
    if isinstance(cond, exp.And):
        return _conjuncts(cond.this) + _conjuncts(cond.expression)
    return [cond]


def _disjuncts(cond: exp.Expression) -> list[exp.Expression]:
    if isinstance(cond, exp.Paren):
        return _disjuncts(cond.this)
    if isinstance(cond, exp.Or):
        return _disjuncts(cond.this) + _disjuncts(cond.expression)
    return [cond]


def _scope_tables(node: exp.Expression) -> tuple[list[exp.Expression], list[exp.Expression]]:
    """The FROM items of one query level and its join/where conditions."""
    items: list[exp.Expression] = []
    conds: list[exp.Expression] = []
    if isinstance(node, exp.Select):
        frm = node.args.get("from_") or node.args.get("from")
        if frm is not None:
            items.append(frm.this)
            items.extend(frm.expressions or [])
        for j in node.args.get("joins") or []:
            items.append(j.this)
            if j.args.get("on") is not None:
                conds.append(j.args["on"])
            for col in j.args.get("using") or []:
                conds.append(exp.EQ(this=exp.column(_ident(col) or ""),
                                    expression=exp.column(_ident(col) or "")))
    elif isinstance(node, exp.Update | exp.Delete):
        items.append(node.this)
        frm = node.args.get("from_") or node.args.get("from")
        if frm is not None:
            items.append(frm.this)
        items.extend(node.args.get("using") or [])
        for j in (frm.args.get("joins") if frm is not None else None) or []:
            items.append(j.this)
    elif isinstance(node, exp.Merge):
        items.append(node.this)
        if node.args.get("using") is not None:
            items.append(node.args["using"])
        if node.args.get("on") is not None:
            conds.append(node.args["on"])
    where = node.args.get("where")
    if where is not None:
        conds.append(where.this)
    return items, conds


def analyse(
    analysis: QueryAnalysis,
    relations: dict[tuple[str | None, str], RelationInfo],
    forest_nodes: dict[int, PartNode],
) -> None:
    """Fill analysis.references / views / mentioned_oids from the parsed query."""
    if analysis.parsed is None:
        return
    for key in analysis.table_names:
        info = relations.get(key)
        if info is None:
            continue
        if info.oid in forest_nodes:
            analysis.mentioned_oids.add(info.oid)
            if key not in analysis.insert_only:
                analysis.read_oids.add(info.oid)
        if info.relkind in ("v", "m"):
            analysis.views.append(f"{info.schema}.{info.name}")
    cte_nodes = {(_alias(c) or ""): c for c in analysis.parsed.find_all(exp.CTE)}
    inlined = _inlined_ctes(analysis.parsed, cte_nodes)
    scope_types = (exp.Select, exp.Update, exp.Delete, exp.Merge)
    scopes: list[_Scope] = []
    for node in analysis.parsed.find_all(*scope_types):
        items, conds = _scope_tables(node)
        sources: dict[str, _Source] = {}
        for item in items:
            if isinstance(item, exp.Table):
                key = _table_name(item)
                alias = _alias(item) or key[1]
                if key[0] is None and key[1] in cte_nodes:
                    body = cte_nodes[key[1]].this if key[1] in inlined else None
                    sources[alias] = _Source(alias, None, None, body,
                                             _column_aliases(cte_nodes[key[1]]))
                    continue
                info = relations.get(key)
                table = forest_nodes.get(info.oid) if info else None
                if table is not None and not table.is_partitioned:
                    table = None  # a partition named directly: an ordinary table here
                sources[alias] = _Source(alias, info, table)
            elif isinstance(item, exp.Subquery):
                alias = _alias(item) or ""
                sources[alias] = _Source(alias, None, None, item.this, _column_aliases(item))
            elif isinstance(item, exp.Lateral):
                alias = _alias(item) or ""
                sources[alias] = _Source(alias, None, None)
        scopes.append(_Scope(node, sources, [c for cond in conds for c in _conjuncts(cond)]))
    _push_down(scopes)
    for scope in scopes:
        sources = scope.sources
        for src in sources.values():
            if src.table is None:
                continue
            levels = []
            for strategy, key, nodes in level_groups(src.table):
                level = LevelAnalysis(strategy, key, nodes, key_elements(nodes[0]))
                for element in level.elements:
                    level.findings.extend(_findings(scope, src, element, strategy))
                levels.append(level)
            _propagate_equalities(scope, src, levels)
            analysis.references.append(ReferenceAnalysis(src.alias, src.table, levels))


# -- conditions pushed into subqueries ---------------------------------------------------------
def _column_aliases(node: exp.Expression) -> list[str]:
    alias = node.args.get("alias")
    if isinstance(alias, exp.TableAlias):
        return [_ident(c) or "" for c in alias.columns]
    return []


def _inlined_ctes(parsed: exp.Expression, ctes: dict[str, exp.CTE]) -> set[str]:
    """CTEs PostgreSQL (12+) plans as subqueries: not MATERIALIZED, not recursive, a query, and
    read once (or NOT MATERIALIZED). Conditions on them are pushed in like a subquery's."""
    uses: dict[str, int] = {}
    for t in parsed.find_all(exp.Table):
        key = _table_name(t)
        if key[0] is None and key[1] in ctes:
            uses[key[1]] = uses.get(key[1], 0) + 1
    out = set()
    for name, cte in ctes.items():
        with_ = cte.parent
        if isinstance(with_, exp.With) and with_.args.get("recursive"):
            continue
        materialized = cte.args.get("materialized")
        if materialized or not isinstance(cte.this, exp.Query):
            continue
        if materialized is False or uses.get(name, 0) == 1:
            out.add(name)
    return out


def _arms(body: exp.Expression) -> list[exp.Select] | None:
    """The SELECTs a pushed condition reaches (every arm of a UNION), or None when the planner
    would not push (LIMIT / OFFSET, DISTINCT ON, a VALUES list)."""
    while isinstance(body, exp.Subquery | exp.Paren):
        body = body.this
    if isinstance(body, exp.SetOperation):
        if body.args.get("limit") or body.args.get("offset"):
            return None
        left, right = _arms(body.this), _arms(body.expression)
        return None if left is None or right is None else left + right
    if not isinstance(body, exp.Select):
        return None
    distinct = body.args.get("distinct")
    if body.args.get("limit") or body.args.get("offset") or \
            (distinct is not None and distinct.args.get("on") is not None):
        return None
    return [body]


def _output(arm: exp.Select, index: int) -> exp.Expression | None:
    items = arm.expressions
    if index >= len(items) or any(isinstance(i, exp.Star) for i in items[:index + 1]):
        return None
    item = items[index]
    return item.this if isinstance(item, exp.Alias) else item


def _translate(cond: exp.Expression, src: _Source, arms: list[exp.Select]) \
        -> list[tuple[exp.Select, exp.Expression]]:
    first = arms[0]
    names = [i.alias_or_name.lower() if not isinstance(i, exp.Star) else "*"
             for i in first.expressions]
    if src.column_aliases:
        names = src.column_aliases + names[len(src.column_aliases):]
    star = "*" in names or any(isinstance(i, exp.Column) and isinstance(i.this, exp.Star)
                               for i in first.expressions)
    out = []
    for arm in arms:
        mapping: dict[str, exp.Expression] = {}
        for col in _columns(cond):
            name = _ident(col.this) or ""
            index = names.index(name) if name in names else None
            target = _output(arm, index) if index is not None else None
            if target is None:
                if not star:
                    return []  # not an output we can follow (window function, ...)
                target = exp.column(col.this.copy())  # SELECT *: the same name inside
            if target.find(exp.Window, exp.AggFunc) or not _window_safe(arm, target):
                return []
            mapping[name] = target
        out.append((arm, _substitute(cond, mapping)))
    return out


def _window_safe(arm: exp.Select, target: exp.Expression) -> bool:
    """Below a window function the planner pushes a condition only on a column every window
    partitions by (filtering other rows first would change the window's result)."""
    wanted = _normalize(target)
    for window in arm.find_all(exp.Window):
        if _enclosing_select(window) is not arm:
            continue
        if wanted not in {_normalize(p) for p in window.args.get("partition_by") or []}:
            return False
    return True


def _enclosing_select(node: exp.Expression) -> exp.Expression | None:
    parent = node.parent
    while parent is not None and not isinstance(parent, exp.Select):
        parent = parent.parent
    return parent


def _substitute(cond: exp.Expression, mapping: dict[str, exp.Expression]) -> exp.Expression:
    def swap(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Column) and (_ident(n.this) or "") in mapping:
            return mapping[_ident(n.this) or ""].copy()
        return n
    return cond.transform(swap)


def _push_down(scopes: list[_Scope]) -> None:
    """SELECT ... FROM (SELECT ... UNION ALL SELECT ...) u WHERE u.k = $1: PostgreSQL pushes the
    outer condition into every arm, so each arm's scan is analysed with it."""
    by_node = {id(s.node): s for s in scopes}
    seen: set[tuple[int, str]] = set()
    for _ in range(4):  # an inlined CTE's body may be listed before the scope reading it
        changed = False
        for scope in scopes:
            for src in scope.sources.values():
                arms = _arms(src.body) if src.body is not None else None
                if not arms:
                    continue
                for cond in list(scope.conditions):
                    if cond.find(exp.Select, exp.Subquery) or not _columns(cond) or \
                            any(_owner(c, scope) != src.alias for c in _columns(cond)):
                        continue
                    for arm, pushed in _translate(cond, src, arms):
                        inner = by_node.get(id(arm))
                        key = (id(arm), pushed.sql(DIALECT))
                        if inner is None or key in seen:
                            continue
                        seen.add(key)
                        inner.conditions.append(pushed)
                        changed = True
        if not changed:
            break


# -- classification ------------------------------------------------------------------------
def _owner(col: exp.Column, scope: _Scope) -> str | None:
    """The alias of the scope source a column belongs to (None: outer or unknown)."""
    qualifier = _ident(col.args.get("table"))
    name = _ident(col.this) or ""
    if qualifier:
        return qualifier if qualifier in scope.sources else None
    owners = [a for a, s in scope.sources.items() if s.info and name in s.info.columns]
    if len(owners) == 1:
        return owners[0]
    unknown = [a for a, s in scope.sources.items() if s.info is None]
    if not owners and len(unknown) == 1 and len(scope.sources) == 1:
        return unknown[0]
    return owners[0] if len(owners) == 1 else None


def _mentions(node: exp.Expression, scope: _Scope, src: _Source, element: KeyElement) -> bool:
    for col in _columns(node):
        if _owner(col, scope) == src.alias and (_ident(col.this) or "") in element.columns:
            return True
    return False


def _columns(node: exp.Expression) -> list[exp.Column]:
    """Columns of this expression, not those inside subqueries."""
    out = []
    for col in node.find_all(exp.Column):
        if col is node:
            return [col]
        parent = col.parent
        inside = False
        while parent is not None and parent is not node:
            if isinstance(parent, exp.Select | exp.Subquery):
                inside = True
                break
            parent = parent.parent
        if not inside:
            out.append(col)
    return out


def _strip(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _is_bare(side: exp.Expression, scope: _Scope, src: _Source, element: KeyElement,
             key_type: str | None) -> bool:
    side = _strip(side)
    if element.column is None:
        return element.expr_sql is not None and _normalize(side) == element.expr_sql
    if isinstance(side, exp.Cast) and isinstance(_strip(side.this), exp.Column):
        # varchar_key::text = 'x' is binary-coercible: PostgreSQL still prunes
        target = side.to.sql(DIALECT).lower()
        if key_type and key_type.startswith(_TEXTLIKE) and target.startswith(("text", "varchar")):
            side = _strip(side.this)
    return isinstance(side, exp.Column) and _owner(side, scope) == src.alias \
        and (_ident(side.this) or "") == element.column


def _value_stage(value: exp.Expression, scope: _Scope, src: _Source) -> tuple[str, str]:
    """(stage, kind): when a comparison value is known, and what makes it so."""
    if value.find(exp.Select, exp.Subquery):
        return EXECUTION, "subquery"
    if value.find(exp.Parameter, exp.Placeholder):
        return STARTUP, "param"
    for col in _columns(value):
        if _owner(col, scope) != src.alias:
            return EXECUTION, "join"
    if value.find(*_STABLE_NODES, *_VOLATILE_NODES):
        return STARTUP, "stable"
    for fn in value.find_all(exp.Anonymous):
        if str(fn.this).lower() in _STABLE_NAMES:
            return STARTUP, "stable"
    return PLAN, "const"


_RANGE_OPS = (exp.GT, exp.GTE, exp.LT, exp.LTE)
_PATTERN_NODES = (exp.Like, exp.ILike, exp.SimilarTo, exp.RegexpLike, exp.RegexpILike)


def _own_columns(value: exp.Expression, scope: _Scope, src: _Source) -> bool:
    """Whether a comparison value reads a column of the same table (the same row)."""
    return any(_owner(c, scope) == src.alias for c in _columns(value))


def _classify_or(cond: exp.Expression, scope: _Scope, src: _Source, element: KeyElement,
                 strategy: str, key_type: str | None) -> Finding:
    """An OR prunes when every arm does. An arm that does not mention the key makes it an OR
    across columns; an arm that mentions it unusably (a IS NOT TRUE) blocks with its own code,
    and arms that together cover every value (a IS TRUE OR a IS NOT TRUE) are always true."""
    text = _sql_text(cond)
    col = element.label
    arms = _disjuncts(cond)
    results: list[list[Finding]] = []
    for arm in arms:
        results.append([_classify(c, scope, src, element, strategy, key_type)
                        for c in _conjuncts(arm) if _mentions(c, scope, src, element)])
    if any(not r for r in results):
        return Finding("or_across_columns", None, col, text)
    if _complementary(arms):
        return Finding("always_true", None, col, text)
    good = [[f for f in r if f.code == "ok"] for r in results]
    if all(good):
        stage = max((_ORDER[f.when or PLAN] for r in good for f in r), default=0)
        eq = all(any(f.equality for f in r) for r in good)
        f = Finding("ok", _STAGES[stage], col, text, equality=eq)
        f.note = next((x.note for r in good for x in r if _ORDER[x.when or PLAN] == stage),
                      "or")
        f.list_range = any(x.list_range for r in good for x in r)
        return f
    blocked = next(r for r, g in zip(results, good, strict=True) if not g)
    return blocked[0]


def _complementary(arms: list[exp.Expression]) -> bool:
    """Two arms of which one is the negation of the other: X OR NOT X (IS TRUE / IS NOT TRUE,
    IS NULL / IS NOT NULL, = / <>, IN / NOT IN, < / >=). Always true, or true but for NULL."""
    def norm(e: exp.Expression) -> str:
        return _strip(e).sql(DIALECT).lower()

    negations = set()
    for arm in arms:
        arm = _strip(arm)
        if isinstance(arm, exp.Not):
            negations.add(norm(arm.this))
        elif isinstance(arm, exp.Is) and arm.args.get("negate"):
            positive = arm.copy()
            positive.set("negate", None)
            negations.add(norm(positive))
        elif isinstance(arm, exp.NEQ):
            negations.add(norm(exp.EQ(this=arm.this, expression=arm.expression)))
        elif isinstance(arm, (exp.GTE, exp.GT)):
            flip = exp.LT if isinstance(arm, exp.GTE) else exp.LTE
            negations.add(norm(flip(this=arm.this, expression=arm.expression)))
    return any(norm(a) in negations for a in arms)
_FLIP = {exp.GT: exp.LT, exp.LT: exp.GT, exp.GTE: exp.LTE, exp.LTE: exp.GTE}


def _findings(scope: _Scope, src: _Source, element: KeyElement, strategy: str) -> list[Finding]:
    key_type = None
    if element.column and src.table is not None:
        for node in partitioned_nodes(src.table):
            if element.column in node.key_columns:
                key_type = node.key_types[node.key_columns.index(element.column)] \
                    if len(node.key_types) == len(node.key_columns) else None
                break
    out: list[Finding] = []
    for cond in scope.conditions:
        if not _mentions(cond, scope, src, element):
            continue
        out.append(_classify(cond, scope, src, element, strategy, key_type))
    return out


def _classify(cond: exp.Expression, scope: _Scope, src: _Source, element: KeyElement,
              strategy: str, key_type: str | None) -> Finding:
    text = _sql_text(cond)
    col = element.label
    cond = _strip(cond)

    def ok(value: exp.Expression | None, equality: bool) -> Finding:
        stage, kind = _value_stage(value, scope, src) if value is not None else (PLAN, "const")
        f = Finding("ok", stage, col, text, equality=equality)
        f.note = kind
        return f

    if isinstance(cond, exp.Or):
        return _classify_or(cond, scope, src, element, strategy, key_type)
    if isinstance(cond, exp.Not):
        inner = _strip(cond.this)
        if isinstance(inner, exp.In):
            return Finding("not_in", None, col, text)
        if isinstance(inner, _PATTERN_NODES):
            return Finding("like_on_key", None, col, text)  # NOT LIKE, !~, !~ ALL (...)
        if isinstance(inner, exp.Is) and isinstance(_strip(inner.expression), exp.Null):
            return Finding("not_null", None, col, text)
        # IS NOT TRUE / IS NOT FALSE, NOT BETWEEN, NOT (k = v): a negation, like <>
        return Finding("not_equal", None, col, text, suggestion=_boolean_rewrite(inner, col))
    if isinstance(cond, exp.NEQ | exp.NullSafeNEQ):
        return Finding("not_equal", None, col, text)
    if isinstance(cond, _PATTERN_NODES):
        return Finding("like_on_key", None, col, text)
    if isinstance(cond, exp.Is):
        if cond.args.get("negate"):  # IS NOT NULL / IS NOT TRUE as sqlglot may read them
            if isinstance(_strip(cond.expression), exp.Null):
                return Finding("not_null", None, col, text)
            return Finding("not_equal", None, col, text, suggestion=_boolean_rewrite(cond, col))
        if _is_bare(cond.this, scope, src, element, key_type):
            return ok(None, True)
        return Finding("key_wrapped", None, col, text)
    if isinstance(cond, exp.In):
        if not _is_bare(cond.this, scope, src, element, key_type):
            return _wrapped(cond, cond.this, None, element)
        if cond.args.get("query") is not None:
            return Finding("join_key", None, col, text, note="subquery")
        values = cond.expressions
        if any(_own_columns(v, scope, src) for v in values):
            return Finding("same_row", None, col, text)
        stages = [_value_stage(v, scope, src) for v in values]
        worst = max((_ORDER[s] for s, _ in stages), default=0)
        f = Finding("ok", _STAGES[worst], col, text, equality=True)
        f.note = next((k for s, k in stages if _ORDER[s] == worst), "const")
        return _late(f)
    if isinstance(cond, exp.Between):
        if not _is_bare(cond.this, scope, src, element, key_type):
            return _wrapped(cond, cond.this, None, element)
        if any(_own_columns(v, scope, src) for v in (cond.args.get("low"), cond.args.get("high"))
               if v is not None):
            return Finding("same_row", None, col, text)
        if strategy == "hash":
            return Finding("hash_non_equality", None, col, text)
        a = ok(cond.args.get("low"), False)
        b = ok(cond.args.get("high"), False)
        worse = a if _ORDER[a.when or PLAN] >= _ORDER[b.when or PLAN] else b
        worse.condition = text
        return _late(_list_range(worse, strategy))
    if isinstance(cond, exp.EQ | exp.NullSafeEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
        left, right = cond.this, cond.expression
        left_is = _mentions(left, scope, src, element)
        right_is = _mentions(right, scope, src, element)
        if left_is and right_is:
            return Finding("same_row", None, col, text)  # k = f(k): no value before the scan
        op = type(cond)
        keyside, value = (left, right) if left_is else (right, left)
        if not left_is and op in _FLIP:
            op = _FLIP[op]
        if isinstance(_strip(value), exp.Any | exp.All):
            value = _strip(value).this
        if not _is_bare(keyside, scope, src, element, key_type):
            return _wrapped(cond, keyside, value, element, op)
        equality = op in (exp.EQ, exp.NullSafeEQ)
        if _own_columns(value, scope, src):
            return Finding("same_row", None, col, text)
        if op is exp.NullSafeEQ:
            # IS NOT DISTINCT FROM is not an operator of the key's operator class
            return Finding("unsupported_operator", None, col, text, suggestion=(
                f"use {_sql_ident(col)} = <value> (or {_sql_ident(col)} IS NULL)"))
        if strategy == "hash" and not equality:
            return Finding("hash_non_equality", None, col, text)
        stage, kind = _value_stage(value, scope, src)
        f = Finding("ok", stage, col, text, equality=equality)
        f.note = kind
        if not equality:
            f = _list_range(f, strategy)
        return _late(f)
    if isinstance(cond, exp.Operator):
        # OPERATOR(pg_catalog.>=): the ordinary comparison, spelled out
        name = str(cond.args.get("operator") or "").split(".")[-1].strip()
        known = _OPERATORS.get(name)
        if known is not None:
            spelled = known(this=cond.this.copy(), expression=cond.expression.copy())
            found = _classify(spelled, scope, src, element, strategy, key_type)
            found.condition = text
            return found
    if isinstance(cond, exp.Binary):
        # @>, <@, &&, IS DISTINCT FROM, ...: not an operator of a partitioning operator class
        return Finding("unsupported_operator", None, col, text)
    return Finding("key_wrapped", None, col, text)


_OPERATORS: dict[str, type[exp.Expression]] = {
    "=": exp.EQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE, "<>": exp.NEQ,
    "!=": exp.NEQ,
}


def _sql_text(cond: exp.Expression) -> str:
    """The condition as advice quotes it: `f IS NOT TRUE`, not sqlglot's `NOT f IS TRUE`."""
    def spell(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Not) and isinstance(n.this, exp.Is) and not n.this.args.get("negate"):
            test = n.this.copy()
            test.set("negate", True)
            return test
        return n
    return cond.transform(spell).sql(DIALECT)


def _boolean_rewrite(test: exp.Expression, col: str) -> str | None:
    """k IS NOT TRUE keeps false and NULL: IS FALSE OR IS NULL say the same and prune."""
    value = _strip(test.expression) if isinstance(test, exp.Is) else None
    if not isinstance(value, exp.Boolean):
        return None
    other = "FALSE" if value.this else "TRUE"
    ident = _sql_ident(col)
    return f"{ident} IS {other} OR {ident} IS NULL"


def _list_range(f: Finding, strategy: str) -> Finding:
    # a flag, not a suffix of note: the report matches note exactly ('param' of a generic plan)
    if strategy == "list" and f.code == "ok":
        f.list_range = True
    return f


def _late(f: Finding) -> Finding:
    """Record which advice code explains a late (run-time only) prune."""
    return f


# -- rewrites for a wrapped key ----------------------------------------------------------------
def _literal_date(value: exp.Expression | None) -> date | None:
    if value is None:
        return None
    value = _strip(value)
    if isinstance(value, exp.Cast):
        value = _strip(value.this)
    if isinstance(value, exp.Literal) and value.is_string:
        try:
            return date.fromisoformat(value.this.strip()[:10])
        except ValueError:
            return None
    return None


def _add_unit(d: date, unit: str) -> date | None:
    unit = unit.lower()
    if unit == "day":
        return d + timedelta(days=1)
    if unit == "week":
        return d + timedelta(days=7)
    if unit == "month":
        return date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    if unit == "year":
        return date(d.year + 1, 1, 1)
    return None


def _wrapped(cond: exp.Expression, keyside: exp.Expression, value: exp.Expression | None,
             element: KeyElement, op: type | None = None) -> Finding:
    col = element.label
    text = _sql_text(cond)
    f = Finding("key_wrapped", None, col, text)
    if element.column is None:
        f.suggestion = f"compare the key expression exactly as it is declared: {element.label}"
        return f
    ident = _sql_ident(col)
    inner = _strip(keyside)
    unit: str | None = None
    if isinstance(inner, exp.Cast) and inner.to.this == exp.DataType.Type.DATE \
            or isinstance(inner, exp.Date | exp.TsOrDsToDate):
        unit = "day"
    elif isinstance(inner, exp.TimestampTrunc | exp.DateTrunc):
        unit = str(inner.args.get("unit").name if inner.args.get("unit") else "").lower()
    elif isinstance(inner, exp.Extract) and str(inner.this.name).lower() == "year":
        year = _strip(value) if value is not None else None
        if isinstance(year, exp.Literal) and not year.is_string and op is exp.EQ:
            y = int(year.this)
            f.suggestion = f"{ident} >= '{y}-01-01' AND {ident} < '{y + 1}-01-01'"
            return f
    elif isinstance(inner, exp.Lower | exp.Upper):
        f.suggestion = (f"compare the bare column: {ident} = <value as stored> (or {ident} IN "
                        "(...) listing the spellings that occur)")
        return f
    start = _literal_date(value)
    if unit and start is not None:
        end = _add_unit(start, unit)
        if end is not None:
            if op is exp.EQ:
                f.suggestion = f"{ident} >= '{start}' AND {ident} < '{end}'"
            elif op in (exp.GTE,):
                f.suggestion = f"{ident} >= '{start}'"
            elif op is exp.GT:
                f.suggestion = f"{ident} >= '{end}'"
            elif op is exp.LT:
                f.suggestion = f"{ident} < '{start}'"
            elif op is exp.LTE:
                f.suggestion = f"{ident} < '{end}'"
    if f.suggestion is None:
        f.suggestion = f"compare the bare key column {ident} with a constant (or a range of them)"
    return f


# type names that read as typed literals when bare (timestamp '2024-01-07'): always quote them
_TYPE_WORDS = frozenset({"timestamp", "timestamptz", "date", "time", "timetz", "interval"})


def _sql_ident(name: str) -> str:
    ident = quote_ident(name)
    return f'"{name}"' if ident == name and name in _TYPE_WORDS else ident


def _propagate_equalities(scope: _Scope, src: _Source, levels: list[LevelAnalysis]) -> None:
    """a.k = b.x AND b.x = 'v': PostgreSQL derives a.k = 'v' (equivalence classes)."""
    pairs: list[tuple[tuple[str, str], tuple[str, str]]] = []
    consts: dict[tuple[str, str], str] = {}
    for cond in scope.conditions:
        cond = _strip(cond)
        if not isinstance(cond, exp.EQ):
            continue
        sides = [_strip(cond.this), _strip(cond.expression)]
        cols = [s for s in sides if isinstance(s, exp.Column)]
        if len(cols) == 2:
            a, b = ((_owner(c, scope) or "?", _ident(c.this) or "") for c in cols)
            pairs.append((a, b))
        elif len(cols) == 1:
            other = sides[1] if sides[0] is cols[0] else sides[0]
            stage, _ = _value_stage(other, scope, src)
            if stage == PLAN and not _columns(other):
                consts[(_owner(cols[0], scope) or "?", _ident(cols[0].this) or "")] = \
                    cond.sql(DIALECT)
    if not pairs or not consts:
        return
    for level in levels:
        for element in level.elements:
            if element.column is None:
                continue
            me = (src.alias, element.column)
            seen, todo = {me}, [me]
            while todo:
                cur = todo.pop()
                for a, b in pairs:
                    for x, y in ((a, b), (b, a)):
                        if x == cur and y not in seen:
                            seen.add(y)
                            todo.append(y)
            hit = next((consts[c] for c in seen if c != me and c in consts), None)
            if hit:
                f = Finding("ok", PLAN, element.column, hit, equality=True)
                f.note = "equivalence"
                level.findings = [x for x in level.findings
                                  if not (x.code == "join_key" or x.note == "join")] + [f]
