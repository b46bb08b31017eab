"""The pruning report: what the plan scanned, reconciled with why (advice.py).

The plan is the truth. Advice about a key level is given only when that level was not pruned
in the plan; a level the plan pruned gets at most an explanation of *when* it was pruned
(start-up, execution, generic plan). When the text looks prunable and the plan is not, the
report says it cannot tell why instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..catalog import Forest, PartNode
from .advice import (
    EXECUTION,
    PLAN,
    STARTUP,
    Advice,
    Finding,
    LevelAnalysis,
    QueryAnalysis,
    ReferenceAnalysis,
)
from .plan_tree import PlanTree
from .pruning import TableReference, build_references, count_detach_pending
from .runner import RawExplain
from .statement import Statement

_MESSAGES = {
    "no_key_predicate": "no condition on the partition key {key}: every partition at this "
                        "level is scanned.",
    "key_wrapped": "the key column {col} is wrapped in a function, cast or expression "
                   "({cond}), which does not match the partition key {key}: this level cannot "
                   "be pruned.",
    "not_equal": "<> or a negation on the key ({cond}) cannot prune {strategy} partitions "
                 "(only a LIST partition holding nothing but the excluded value could go).",
    "not_in": "NOT IN on the key ({cond}) cannot prune {strategy} partitions (only LIST "
              "partitions holding nothing but excluded values could go).",
    "not_null": "IS NOT NULL on the key ({cond}) prunes nothing but a NULL-only partition.",
    "like_on_key": "LIKE / pattern matching on the key ({cond}) is never used for pruning.",
    "hash_non_equality": "{key}: a HASH level prunes only with = or IN on every key column; "
                         "a range or inequality ({cond}) cannot.",
    "or_across_columns": "OR across different columns ({cond}): one arm does not constrain "
                         "{col}, so no partition can be ruled out.",
    "same_row": "the key {col} is compared with a value of the same row ({cond}): pruning "
                "needs a value known before the scan (a constant, a parameter, a function of "
                "them).",
    "always_true": "the condition on {col} ({cond}) holds for every value of the key (at most "
                   "NULL aside), so no partition can be ruled out.",
    "unsupported_operator": "the comparison {cond} is not one PostgreSQL prunes with: {key} "
                            "prunes only with =, <, <=, >, >=, BETWEEN, IN / = ANY, IS NULL "
                            "and (on a boolean key) IS TRUE / IS FALSE.",
    "join_key": "the key {col} is compared with another table's column ({cond}): PostgreSQL can "
                "prune only at run time, in a parameterized nested loop, if at all.",
}


def _advice_for_blocker(f: Finding, level: LevelAnalysis) -> Advice:
    msg = _MESSAGES.get(f.code, "{cond} blocks pruning on {key}.").format(
        key=level.key, col=f.column, cond=f.condition, strategy=level.strategy.upper())
    suggestion = f.suggestion
    if f.code == "join_key" and not suggestion:
        suggestion = f"add a condition comparing {f.column} with constants as well"
    if f.code == "or_across_columns" and not suggestion:
        suggestion = (f"split the query with UNION ALL so that each arm constrains "
                      f"{f.column} on its own, or add a condition on {f.column} outside the OR")
    if f.code in ("not_equal", "not_in") and not suggestion:
        suggestion = f"list the wanted values instead: {f.column} IN (...)"
    if f.code == "like_on_key" and not suggestion:
        suggestion = f"use = / IN, or a range ({f.column} >= 'abc' AND {f.column} < 'abd')"
    if f.code == "unsupported_operator" and not suggestion:
        suggestion = f"compare {f.column} with =, IN or a range"
    if f.code == "same_row" and not suggestion:
        suggestion = f"compare {f.column} with constants (or a range of them)"
    if f.code == "always_true" and not suggestion:
        suggestion = f"drop the condition, or keep only the values of {f.column} wanted"
    if f.code == "hash_non_equality" and not suggestion:
        suggestion = f"use {f.column} = ... or {f.column} IN (...)"
    return Advice(f.code, _cap(msg), suggestion, level.key)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass
class ExplainReport:
    statement: Statement
    raw: RawExplain
    analysis: QueryAnalysis
    references: list[TableReference]
    general: list[Advice] = field(default_factory=list)
    server_version: int = 0
    forest: Forest | None = None
    catalog_seconds: float = 0.0
    report_seconds: float = 0.0

    @property
    def plan(self) -> PlanTree:
        return self.raw.plan

    def full_scans(self) -> list[TableReference]:
        return [r for r in self.references if r.status == "full"]

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.statement.text,
            "analyze": self.raw.analyze,
            "generic_plan": self.raw.generic,
            "server_version": self.server_version,
            "planning_ms": self.plan.planning_ms,
            "execution_ms": self.plan.execution_ms,
            "tables": [reference_json(r) for r in self.references],
            "advice": [a.text() for a in self.general],
            "advice_codes": [a.code for a in self.general],
        }


def reference_json(r: TableReference) -> dict[str, Any]:
    return {
        "table": r.table.qualified,
        "reference": r.label,
        "partitions_total": r.partitions_total,
        "detach_pending": r.detach_pending,
        "partitions_scanned": r.partitions_scanned,
        "pruned_at_plan": r.pruned_at_plan,
        "pruned_at_startup": r.pruned_at_startup,
        "never_executed": r.never_executed,
        "scanned": [p.node.qualified for p in r.partitions],
        "scanned_bounds": [{"partition": p.node.qualified, "bounds": p.bounds,
                            "executed": p.executed} for p in r.partitions],
        "status": r.status,
        "verdict": r.verdict,
        "advice": [a.text() for a in r.advice],
        "advice_codes": [a.code for a in r.advice],
    }


# -- reconciliation ----------------------------------------------------------------------------
def _alive(ref: TableReference, forest: Forest) -> set[int]:
    alive: set[int] = set()
    for p in ref.partitions:
        alive.update(p.node.path)
    return alive


def _executed_alive(ref: TableReference) -> set[int]:
    alive: set[int] = set()
    for p in ref.partitions:
        if p.executed is not False:
            alive.update(p.node.path)
    return alive


def _level_state(level: LevelAnalysis, alive: set[int]) -> tuple[bool, bool]:
    """(relevant, pruned): whether this key level matters and whether the plan pruned at it."""
    relevant = pruned = False
    for node in level.nodes:
        if node.oid not in alive:
            continue
        populated = [c for c in node.children
                     if (c.leaf_count > 0 or c.is_leaf) and not c.detach_pending]
        if len(populated) > 1:
            relevant = True
        if any(c.oid not in alive for c in populated):
            pruned = True
    return relevant, pruned


def _pick(ref: TableReference, analysis: QueryAnalysis) -> list[ReferenceAnalysis]:
    mine = [a for a in analysis.references if a.table.oid == ref.table.oid]
    if len(mine) <= 1:
        return mine
    same = [a for a in mine if a.alias == ref.label]
    return same if len(same) == 1 else mine


def _merge_levels(refs: list[ReferenceAnalysis]) -> list[LevelAnalysis]:
    if len(refs) == 1:
        return refs[0].levels
    merged: dict[str, LevelAnalysis] = {}
    blocked: dict[str, list[Finding]] = {}
    for ra in refs:
        for lv in ra.levels:
            if lv.key not in merged:
                merged[lv.key] = LevelAnalysis(lv.strategy, lv.key, lv.nodes, lv.elements, [])
            merged[lv.key].findings.extend(lv.findings)
            if lv.usable() is None:
                blocked.setdefault(lv.key, []).extend(lv.findings)
    # one reference that cannot prune a level keeps it whole: its conditions explain why,
    # not another reference's constants
    for key, findings in blocked.items():
        merged[key].findings = [f for f in findings if f.code != "ok"]
    return list(merged.values())


def advise(ref: TableReference, analysis: QueryAnalysis, forest: Forest) -> list[Advice]:
    if ref.partitions_total == 0:
        return []
    out: list[Advice] = []
    matched = _pick(ref, analysis)
    if not matched:
        if analysis.parsed is None:
            out.append(Advice("unparsed", f"{_cap(analysis.error or 'query not read')}: "
                              "the counts come from the plan; no advice on why."))
        elif ref.table.oid not in analysis.mentioned_oids and analysis.views:
            views = ", ".join(analysis.views)
            out.append(Advice("via_view", f"Reached through view {views}: pgparts does not read "
                              "view definitions, so it cannot say which conditions apply; the "
                              "counts come from the plan."))
        else:
            out.append(Advice("not_explained", "pgparts could not match this scan to a table in "
                              "the query text; the counts come from the plan."))
        return out
    if len(matched) > 1:
        out.append(Advice("combined", f"{ref.table.qualified} is referenced "
                          f"{len(matched)} times; the advice below combines the conditions of "
                          "every reference."))
    alive = _alive(ref, forest)
    if not alive and ref.pruned_at_startup and not ref.generic:
        for level in _merge_levels(matched):
            if level.usable() == STARTUP and any(f.note == "stable" for f in level.findings):
                out.append(Advice(
                    "stable_expression",
                    f"Every partition was pruned at executor start-up, not at plan time: the "
                    f"value compared with {level.key} (now(), current_date, ...) is only known "
                    "when the query starts.", None, level.key))
                break
        return out
    exec_alive = _executed_alive(ref) if ref.analyzed else alive
    for level in _merge_levels(matched):
        relevant, pruned = _level_state(level, alive)
        if not relevant:
            continue
        usable = level.usable()
        oks = [f for f in level.findings if f.code == "ok"]
        notes = {f.note or "" for f in oks}
        stage_notes = {f.note for f in oks if f.when == usable}
        if ref.generic and "param" in notes:
            kept = ref.partitions_scanned
            out.append(Advice(
                "generic_plan",
                f"With parameters, conditions on {level.key} prune only at executor start-up, "
                f"once values are bound: the generic plan keeps {kept} of "
                f"{ref.partitions_total} partitions and locks all of them on every execution "
                "(plan_cache_mode).",
                "literals (or plan_cache_mode = force_custom_plan) let the planner prune at "
                "plan time", level.key))
            if not pruned:
                continue
        if pruned:
            if usable == STARTUP and "stable" in stage_notes and ref.pruned_at_startup:
                out.append(Advice(
                    "stable_expression",
                    f"{level.key} was pruned at executor start-up, not at plan time: the "
                    "comparison value (now(), current_date, ...) is only known when the query "
                    "starts.", None, level.key))
            continue
        # the plan did not prune at this level
        _, exec_pruned = _level_state(level, exec_alive)
        if usable == EXECUTION or (ref.analyzed and exec_pruned and usable is not None):
            late = next((f for f in oks if f.when == EXECUTION), None)
            code = "join_key" if late is None or late.note == "join" else "stable_expression"
            if ref.analyzed and exec_pruned:
                out.append(Advice(code, f"{level.key} was pruned only during execution: "
                                  f"{ref.never_executed} partitions were never executed "
                                  f"({late.condition if late else 'run-time values'}).",
                                  None, level.key))
            else:
                what = late.condition if late else "the condition"
                out.append(Advice(
                    code, f"{what} can prune {level.key} only during execution (a "
                    "parameterized nested loop or a subquery's value); EXPLAIN without ANALYZE "
                    "cannot show it. Run EXPLAIN ANALYZE to see partitions never executed.",
                    "compare the key with constants to prune at plan time", level.key))
            continue
        if usable == STARTUP:
            if "stable" in stage_notes:
                out.append(Advice(
                    "stable_expression",
                    f"The condition on {level.key} uses a value known only at executor "
                    "start-up (now(), current_date, ...); here start-up pruning removed no "
                    "partition at this level (the range covers all of them).", None, level.key))
            continue
        if usable == PLAN:
            if level.strategy == "list" and any(f.list_range for f in oks):
                out.append(Advice(
                    "list_range", f"A range on the LIST key {level.key} prunes only partitions "
                    "whose values all fall outside it; here every partition kept some value in "
                    "range.", None, level.key))
            else:
                out.append(Advice(
                    "not_explained",
                    f"The query constrains {level.key} with constants, yet the plan kept every "
                    "partition at this level: the values may span all partitions, or a type or "
                    "collation mismatch may make the comparison unusable. pgparts cannot tell "
                    "which from the text.", None, level.key))
            continue
        blockers = [f for f in level.findings if f.code != "ok"]
        if blockers:
            seen: set[tuple[str, str]] = set()
            for f in blockers:
                if (f.code, f.condition) in seen:
                    continue
                seen.add((f.code, f.condition))
                out.append(_advice_for_blocker(f, level))
        if not blockers:
            missing = _missing(level, oks)
            out.append(Advice("no_key_predicate", _cap(_MESSAGES["no_key_predicate"].format(
                key=level.key)) + missing, _key_condition_hint(level, oks), level.key))
    return out


def _key_condition_hint(level: LevelAnalysis, oks: list[Finding]) -> str:
    """What to add so that this level can prune: HASH needs = or IN on every key column (a
    range never prunes it), LIST prunes best on its values, RANGE on its first column."""
    labels = [e.label for e in level.elements]
    if level.strategy == "hash":
        have = {f.column for f in oks if f.equality}
        need = [c for c in labels if c not in have] or labels or ["the key"]
        return f"add an equality (or IN list) on {', '.join(need)}"
    first = labels[0] if labels else "the key"
    if level.strategy == "list":
        return f"add a condition on {first} (e.g. = or IN with constants)"
    return f"add a condition on {first} (e.g. a range of constants)"


def _missing(level: LevelAnalysis, oks: list[Finding]) -> str:
    if not oks:
        return ""
    have = {f.column for f in oks}
    if level.strategy == "hash":
        need = [e.label for e in level.elements if e.label not in have]
        return f" (HASH needs = or IN on every key column; missing: {', '.join(need)})"
    return f" (a range key prunes only with a condition on its first column, " \
           f"{level.elements[0].label})"


def zero_scan_references(
    plan: PlanTree, forest: Forest, analysis: QueryAnalysis, refs: list[TableReference]
) -> list[TableReference]:
    """Partitioned tables the query reads but the plan never scans (e.g. a contradiction)."""
    # covered: the reported tables, their ancestors and (through the path) their descendants;
    # checked per candidate instead of walking every reported tree (10,000 nodes)
    reported: set[int] = set()
    above: set[int] = set()

    def covered(node: PartNode) -> bool:
        return node.oid in above or any(o in reported for o in node.path)

    for r in refs:
        reported.add(r.table.oid)
        above.update(r.table.path)
    out = []
    for oid in sorted(analysis.read_oids):
        node: PartNode | None = forest.nodes.get(oid)
        if node is None or not node.is_partitioned or covered(node):
            continue
        if any(a in analysis.read_oids for a in node.path[:-1]):
            continue  # reported against the ancestor the query also names
        out.append(TableReference(
            table=node, label=node.name, partitions_total=node.leaf_count, partitions=[],
            pruned_at_startup=0, analyzed=plan.analyzed, generic=False))
        reported.add(node.oid)
        above.update(node.path)
    return out


def build_report(
    raw: RawExplain, forest: Forest, analysis: QueryAnalysis, server_version: int,
    by_name: dict[tuple[str, str], PartNode] | None = None,
) -> ExplainReport:
    refs = build_references(raw.plan, forest, mentioned=analysis.mentioned_oids,
                            locked=raw.locked_oids, generic=raw.generic, by_name=by_name)
    refs += zero_scan_references(raw.plan, forest, analysis, refs)
    count_detach_pending(forest, refs)
    for ref in refs:
        ref.generic = raw.generic
        ref.advice = advise(ref, analysis, forest)
    general: list[Advice] = []
    if analysis.parsed is None and analysis.error:
        general.append(Advice("unparsed", f"{_cap(analysis.error)}; pruning counts come "
                              "from the plan only."))
    return ExplainReport(raw.statement, raw, analysis, refs, general, server_version, forest)
