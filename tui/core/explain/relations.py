"""The relations a statement names, read with PostgreSQL's own grammar (pglast).

The pruning counts depend on which partitioned tables (and which partitions, named directly)
the query mentions; that must not depend on whether the advice's parser (sqlglot) understood the
text: a MERGE whose USING holds a JOIN is plain SQL to PostgreSQL and "unparsed" to sqlglot.
Every RangeVar of the parse tree is kept with the name EXPLAIN gives its scans (the alias, else
the relation's name), so that a scan can be told apart: `t_p2` named directly is its own
reference, a partition of `t` reached through `t` is `t`'s.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from pglast import ast
from pglast.parser import ParseError

from .pgparse import parse


@dataclass(frozen=True)
class NamedRelation:
    """A relation the query names, as PostgreSQL's grammar reads it."""

    schema: str | None
    name: str
    refname: str  # the alias, else the name: what EXPLAIN calls its scans (plus _N suffixes)
    inserted: bool  # the target of an INSERT (tuple routing, no scan)


def _walk(tree: object) -> tuple[list[tuple[ast.RangeVar, bool]], set[str]]:
    """Every RangeVar (and whether it is an INSERT's target) and every CTE name of a parse
    tree. A plain walk over the nodes' slots: pglast's Visitor would import its SQL printers
    (some 25 ms at every start of the command)."""
    found: list[tuple[ast.RangeVar, bool]] = []
    ctes: set[str] = set()
    targets: set[int] = set()
    stack: list[object] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list | tuple):
            stack.extend(reversed(node))
            continue
        if not isinstance(node, ast.Node):
            continue
        if isinstance(node, ast.RangeVar):
            found.append((node, id(node) in targets))
        elif isinstance(node, ast.InsertStmt) and node.relation is not None:
            targets.add(id(node.relation))
        elif isinstance(node, ast.CommonTableExpr) and node.ctename:
            ctes.add(node.ctename)
        stack.extend(reversed([getattr(node, name) for name in node.__slots__]))
    return found, ctes


def named_relations(text: str) -> list[NamedRelation]:
    """Every table reference of `text` (one per mention, in text order); [] when the text does
    not parse (the runner reports the syntax error). An unqualified name that is also a CTE's
    is taken as the CTE (a rare clash is at worst a name too many: it is only used when a plan
    scans the relation)."""
    try:
        tree = parse(text)
    except ParseError:
        return []
    found, ctes = _walk(tree)
    out: list[NamedRelation] = []
    for node, inserted in found:
        if not node.relname or (node.schemaname is None and node.relname in ctes):
            continue
        alias = node.alias.aliasname if node.alias is not None else None
        out.append(NamedRelation(node.schemaname, node.relname, alias or node.relname, inserted))
    return out


@dataclass
class Mentions:
    """The partition-tree relations a query names, resolved by the server: for each oid the
    names EXPLAIN gives its scans, and which of them are read (not only INSERT targets)."""

    refnames: dict[int, frozenset[str]]
    read: set[int]


def mentions(named: list[NamedRelation], oids: dict[tuple[str | None, str], int],
             in_forest: Container[int]) -> Mentions:
    """`oids`: what each (schema, name) resolved to under the user's search_path."""
    refnames: dict[int, set[str]] = {}
    read: set[int] = set()
    for rel in named:
        oid = oids.get((rel.schema, rel.name))
        if oid is None or oid not in in_forest:
            continue
        refnames.setdefault(oid, set()).add(rel.refname)
        if not rel.inserted:
            read.add(oid)
    return Mentions({k: frozenset(v) for k, v in refnames.items()}, read)
