"""What `maintain` does for the tables of `[policy."schema.table"]`: the decision and the run,
shared by `pgparts maintain` (tui/commands/maintain.py) and the console's maintain screen.

Per table, in this order, each part only when its policy key is set: create_ahead (premake),
consolidate (consolidate_older_than, consolidate_batch), retention (retention,
retention_action, retention_schema), then ANALYZE of the partitions this run created. Each is
the registered plan kind's plan, built from a fresh read of the catalog and run by the plan
engine (lock timeout, retries, journal), so a second run finds nothing to do.

Statuses: 0 ok; 1 something was skipped (a lock not granted within the lock timeout after the
retries, another plan running on the table, a partition refused; that table's remaining
actions are skipped, the other tables still run) or another maintain holds the database; 2
something failed.

Two runs on one database exclude each other with an advisory lock (pg_try_advisory_lock: the
second one says so and returns 1). On a standby (pg_is_in_recovery()) nothing is done. Tables
that pg_partman manages are left alone unless `include_partman`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..catalog import Forest, PartNode, load_forest
from ..config import Config, TablePolicy
from ..connection import Target
from ..errors import first_line
from ..humanfmt import plural
from ..names import quote_ident
from ..partman import load_partman_config
from ..policy import resolve_policies
from . import Outcome, Plan, PlanRunner
from .engine.runner import Hook, ProgressCallback
from .kind import PlanKindError
from .kinds.lifecycle import now_utc
from .registry import kind_named

# pg_try_advisory_lock(int4, int4): 'pgps' and 'mnt\0' (the plan runner uses the one-bigint
# form, a separate key space)
MAINTAIN_LOCK = (0x70677073, 0x6D6E7400)

OK, SKIPPED, FAILED, NOTHING, PLANNED = "ok", "skipped", "failed", "nothing", "planned"


class MaintainError(ValueError):
    """Something the operator asked that cannot be done (a table without a policy)."""


@dataclass
class Action:
    table: str
    action: str  # create_ahead, consolidate, retention, analyze, "table" or "maintain"
    status: str  # ok, skipped, failed, nothing (nothing to do), planned (dry run)
    message: str

    def line(self) -> str:
        return f"{self.table}: {self.action}: {self.status}: {self.message}"


@dataclass
class Planned:
    """One action of a table's policy as it would run now: its plan, or why there is none."""

    node: PartNode
    kind: str  # the plan kind's name
    values: dict[str, Any]  # the options the policy gives it
    plan: Plan | None = None
    error: str = ""  # the kind refused to plan (PlanKindError)
    left_alone: str = ""  # pg_partman manages the table

    @property
    def status(self) -> str:
        if self.left_alone:
            return NOTHING
        if self.error:
            return FAILED
        return PLANNED if self.plan is not None and self.plan.steps else NOTHING

    @property
    def message(self) -> str:
        if self.left_alone:
            return self.left_alone
        if self.error:
            return self.error
        plan = self.plan
        assert plan is not None
        if not plan.steps:
            return plan.summary[0] if plan.summary else "nothing to do"
        what = "; ".join(plan.facts.changes) or (plan.summary[0] if plan.summary else "")
        return f"would {plan.title}: {what}"


@dataclass
class Targets:
    """The tables maintain acts on, with their policies, and the policies that match none."""

    tables: list[tuple[PartNode, TablePolicy]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


PARTMAN_LEFT_ALONE = ("left alone: pg_partman manages it "
                      "(--include-partman to maintain it anyway)")


def policy_requests(policy: TablePolicy) -> list[tuple[str, dict[str, Any]]]:
    """The plan kinds a policy asks for, in maintain's order, with their options."""
    out: list[tuple[str, dict[str, Any]]] = []
    if policy.premake is not None:
        out.append(("create_ahead", {"count": policy.premake}))
    if policy.consolidate_older_than is not None:
        out.append(("consolidate", {"older_than": policy.consolidate_older_than,
                                    "batch": policy.consolidate_batch}))
    if policy.retention is not None:
        out.append(("retention", {"older_than": policy.retention,
                                  "action": policy.retention_action,
                                  "archive_schema": policy.retention_schema}))
    return out


def targets(forest: Forest, config: Config, table: str | None = None) -> Targets:
    """The tables with a policy (sorted by name), or only `table` (MaintainError when it names
    no table or one without a policy)."""
    resolution = resolve_policies(forest, config.policies)
    out = Targets(problems=list(resolution.problems))
    out.tables = sorted(((forest.nodes[oid], p) for oid, p in resolution.by_oid.items()),
                        key=lambda t: t[0].qualified)
    if table is not None:
        try:
            wanted = forest.find(table)
        except (LookupError, ValueError) as exc:
            raise MaintainError(str(exc)) from None
        out.tables = [t for t in out.tables if t[0].oid == wanted.oid]
        if not out.tables:
            raise MaintainError(f"{wanted.qualified} has no [policy] in the config")
    return out


def spec_of(node: PartNode) -> str:
    """The table as the kinds read it, never ambiguous."""
    return f"{quote_ident(node.schema)}.{quote_ident(node.name)}"


def build(conn: psycopg.Connection, forest: Forest, node: PartNode, kind_name: str,
          values: dict[str, Any], config: Config, policy: TablePolicy | None = None,
          applying: bool = False) -> Plan:
    """The plan of one action on one table; PlanKindError when the kind refuses. A preview
    unless `applying` (a run: kind.Request.applying)."""
    kind = kind_named(kind_name)
    spec = spec_of(node)
    request = kind.default_request(forest, spec, config)
    request.applying = applying
    request.values.update({k: v for k, v in values.items() if v is not None})
    if kind_name == "consolidate" and policy is not None and policy.retention is not None:
        # retention runs right after and removes these weeks: copying them first is waste
        request.values["expiring"] = now_utc() - policy.retention
    return kind.build(conn, forest, kind.status(conn, forest, spec), request, config)


def plan_table(conn: psycopg.Connection, forest: Forest, node: PartNode, policy: TablePolicy,
               config: Config, *, managed: bool = False) -> list[Planned]:
    """What maintain would do for one table now, planned on `forest` (read-only): one entry per
    part of its policy (the ANALYZE of what create_ahead makes follows a run, never planned)."""
    out: list[Planned] = []
    for kind_name, values in policy_requests(policy):
        item = Planned(node, kind_name, values)
        if managed:
            item.left_alone = PARTMAN_LEFT_ALONE
        else:
            try:
                item.plan = build(conn, forest, node, kind_name, values, config, policy)
            except PlanKindError as exc:
                item.error = str(exc)
            except psycopg.Error as exc:
                if conn.broken:
                    raise
                item.error = planning_error(exc)
        out.append(item)
    return out


def preview(conn: psycopg.Connection, forest: Forest, config: Config,
            table: str | None = None) -> tuple[list[Planned], list[str]]:
    """What a maintain run would do now on every table with a policy (or `table`): the planned
    actions and the policies that match no table."""
    found = targets(forest, config, table)
    managed = load_partman_config(conn)
    planned: list[Planned] = []
    for node, policy in found.tables:
        planned += plan_table(conn, forest, node, policy, config, managed=node.oid in managed)
    return planned, found.problems


Emit = Callable[[Action], None]


@dataclass
class Maintain:
    """One maintain run: `run(conn)` returns its status; every action goes to `emit`.
    `progress` and `hook` go to each action's PlanRunner (the console shows the steps)."""

    target: Target
    config: Config
    emit: Emit
    dry_run: bool = False
    table: str | None = None
    include_partman: bool = False
    progress: ProgressCallback | None = None
    hook: Hook | None = None
    # each policy that matches no table, ambiguous, or overridden: said once, before the actions
    warn: Callable[[str], None] | None = None
    problems: list[str] = field(default_factory=list)
    runner: PlanRunner | None = None  # the running action's (the console cancels it)
    stopped: bool = False  # stop(): no further action starts

    def stop(self) -> None:
        """Cancel the running action (its step rolls back) and start no other; blocks until
        the server answered the cancel request, so never call it on an event loop."""
        self.stopped = True
        runner = self.runner
        if runner is not None:
            runner.cancel()

    def run(self, conn: psycopg.Connection) -> int:
        row = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
        if row and row[0]:
            self.emit(Action("-", "maintain", NOTHING,
                             "the server is a standby (in recovery): nothing to do here; "
                             "run maintain on the primary"))
            return 0
        if not self.dry_run:
            got = conn.execute("SELECT pg_catalog.pg_try_advisory_lock(%s, %s)",
                               MAINTAIN_LOCK).fetchone()
            if not (got and got[0]):
                self.emit(Action("-", "maintain", SKIPPED,
                                 "another pgparts maintain is running on this database; "
                                 "nothing done"))
                return 1
        try:
            return self._tables(conn)
        finally:
            if not self.dry_run and not conn.closed and not conn.broken:
                # a connection may outlive the run (the console's): the next run needs the lock
                try:
                    conn.execute("SELECT pg_catalog.pg_advisory_unlock(%s, %s)",
                                 MAINTAIN_LOCK)
                except psycopg.Error:
                    pass  # the session ends soon and releases it

    def _tables(self, conn: psycopg.Connection) -> int:
        forest = load_forest(conn)
        # said even when --table names a table without a policy (targets() raises then)
        self.problems = resolve_policies(forest, self.config.policies).problems
        for problem in self.problems:
            if self.warn is not None:
                self.warn(problem)
        found = targets(forest, self.config, self.table)
        if not self.config.policies:
            self.emit(Action("-", "maintain", NOTHING,
                             "no [policy] in the config: nothing to maintain"))
            return 0
        managed = load_partman_config(conn)
        worst = 0
        for node, policy in found.tables:
            if self.stopped:
                self.emit(Action(node.qualified, "table", SKIPPED, "cancelled before it ran"))
                worst = max(worst, 1)
                continue
            if node.oid in managed and not self.include_partman:
                self.emit(Action(node.qualified, "table", NOTHING, PARTMAN_LEFT_ALONE))
                continue
            worst = max(worst, self._table(conn, node, policy))
        return worst

    def _table(self, conn: psycopg.Connection, node: PartNode, policy: TablePolicy) -> int:
        """Every action of one table's policy; the worst status among them."""
        worst = 0
        created: list[str] = []
        for kind_name, values in policy_requests(policy):
            if self.stopped:
                break
            status, made = self._one(conn, node, kind_name, values, policy)
            created += made
            worst = max(worst, status)
            if status:  # skipped or failed: the table's later actions wait for the next run
                break
        if created and not self.dry_run and worst == 0:
            status, _ = self._one(conn, node, "analyze", {"partitions": created})
            worst = max(worst, status)
        return worst

    def _one(self, conn: psycopg.Connection, node: PartNode, kind_name: str,
             values: dict[str, Any],
             policy: TablePolicy | None = None) -> tuple[int, list[str]]:
        """Plan and (unless a dry run) run one kind on one table: (status, leaves created)."""
        table = node.qualified
        forest = load_forest(conn)  # what the previous action changed
        current = forest.nodes.get(node.oid, node)
        if kind_name == "analyze":
            values = {"partitions": _never_analyzed_leaves(forest, values["partitions"])}
            if not values["partitions"]:
                return 0, []
        try:
            plan = build(conn, forest, current, kind_name, values, self.config, policy,
                         applying=not self.dry_run)
        except PlanKindError as exc:
            self.emit(Action(table, kind_name, FAILED, str(exc)))
            return 2, []
        except psycopg.Error as exc:
            # planning reads the catalog (and, for some kinds, the DEFAULT partition) under the
            # session's timeouts: a lock or a timeout there is this table's problem only
            if conn.broken:
                raise
            if _waited(exc):
                self.emit(Action(table, kind_name, SKIPPED,
                                 f"{planning_error(exc)}; the table's remaining actions wait "
                                 f"for the next run"))
                return 1, []
            self.emit(Action(table, kind_name, FAILED, planning_error(exc)))
            return 2, []
        what = "; ".join(plan.facts.changes) or (plan.summary[0] if plan.summary else "")
        if not plan.steps:
            self.emit(Action(table, kind_name, NOTHING,
                             plan.summary[0] if plan.summary else "nothing to do"))
            return 0, []
        if self.dry_run:
            # what the preview could not check (create_ahead: a DEFAULT whose reading runs
            # the table's code) is said on its line: the run reads it
            caveat = plan.details.get("not_checked")
            self.emit(Action(table, kind_name, PLANNED, f"would {plan.title}: {what}"
                             + (f" ({caveat})" if caveat else "")))
            return 0, []
        if self.stopped:
            self.emit(Action(table, kind_name, SKIPPED, "cancelled before it ran"))
            return 1, []
        self.runner = PlanRunner(self.target, plan, config=self.config.plans,
                                 progress=self.progress, hook=self.hook)
        try:
            result = self.runner.run()
        finally:
            self.runner = None
        if result.ok:
            self.emit(Action(table, kind_name, OK,
                             f"{plan.title} ({plural(len(result.done_steps), 'step')}, "
                             f"{result.seconds:.1f} s)"))
            return 0, _created_leaves(plan)
        if result.outcome == Outcome.CANCELLED and self.stopped:
            self.emit(Action(table, kind_name, SKIPPED,
                             f"cancelled: {result.error}" if result.error else "cancelled"))
            return 1, []
        if result.outcome == Outcome.BUSY or skipped(result.error):
            self.emit(Action(table, kind_name, SKIPPED,
                             f"{result.error}; the table's remaining actions wait for the "
                             f"next run"))
            return 1, []
        self.emit(Action(table, kind_name, FAILED,
                         f"{result.error}" + (f" ({result.state})" if result.state else "")))
        return 2, []


def _waited(exc: psycopg.Error) -> bool:
    """A lock not granted or a statement cancelled by its timeout: nothing broke."""
    return exc.sqlstate in ("55P03", "57014")


def planning_error(exc: psycopg.Error) -> str:
    return f"planning failed: {first_line(exc)}"


def skipped(error: str) -> bool:
    """A lock not granted after the retries, or a partition refused: nothing broke."""
    return "another session holds a conflicting lock" in error or "refused " in error


def _created_leaves(plan: Plan) -> list[str]:
    return list(plan.details.get("created", [])) if plan.kind == "create_ahead" else []


def _never_analyzed_leaves(forest: Forest, created: list[str]) -> list[str]:
    """The never-analyzed leaves under the partitions create_ahead made."""
    out: list[str] = []
    for spec in created:
        try:
            node = forest.find(spec)
        except (LookupError, ValueError):
            continue
        out += [spec_of(leaf) for leaf in node.leaves() if leaf.relkind == "r"
                and leaf.reltuples < 0 and leaf.last_analyze is None
                and leaf.last_autoanalyze is None]
    return out
