"""The details pane's lifecycle sections of a partitioned table: its `[policy]`, its growth
(a chart of size and rows per partition over time, the rate and the runway, the same forecast
as `pgparts tree TABLE --growth`) and pg_partman's part_config when pg_partman manages it.

The policy is matched to the forest on the event loop (a dictionary walk per load, cached); the
growth forecast and pg_partman's configuration come from thread workers (`DetailsExtras`, mixed
into the main screen), once per table and catalog load, and the pane is redrawn when they
arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.message import Message

from ..core.catalog import Forest, PartNode
from ..core.config import Config, FindingsConfig, TablePolicy
from ..core.connection import ConnectError, connect
from ..core.errors import first_line
from ..core.growth import Growth, growth_of, interval_name, is_time_partitioned, summary_lines
from ..core.humanfmt import plural, short_count, size
from ..core.partman import PartmanState, read_partman
from ..core.policy import PolicyResolution, resolve_policies, thresholds_by_oid

_BLOCKS = "▁▂▃▄▅▆▇█"


def period(delta: timedelta) -> str:
    """A policy's age as written in a config: '12 weeks', '3 months', '10 days'."""
    days = delta.days
    if delta.seconds or not days:
        return f"{delta.total_seconds() / 3600:g} hours"
    if days % 365 == 0:
        return plural(days // 365, "year")
    if days % 30 == 0:
        return plural(days // 30, "month")
    if days % 7 == 0:
        return plural(days // 7, "week")
    return plural(days, "day")


# -- policy ---------------------------------------------------------------------------------------
def policy_lines(policy: TablePolicy, base: FindingsConfig) -> list[tuple[str, str]]:
    """(label, value) per part the policy sets; thresholds only where they differ from
    [findings]."""
    out: list[tuple[str, str]] = []
    if policy.premake is not None:
        out.append(("premake", f"{plural(policy.premake, 'partition')} ahead"))
    if policy.retention is not None:
        action = policy.retention_action or "detach"
        where = f" to schema {policy.retention_schema}" if policy.retention_schema else ""
        out.append(("retention", f"{action} older than {period(policy.retention)}{where}"))
    if policy.consolidate_older_than is not None:
        batch = (f", {policy.consolidate_batch} per run" if policy.consolidate_batch is not None
                 else "")
        out.append(("consolidate", f"older than {period(policy.consolidate_older_than)}{batch}"))
    if policy.oversized_bytes is not None and policy.oversized_bytes != base.oversized_bytes:
        out.append(("oversized", f"{size(policy.oversized_bytes)} "
                                 f"(default {size(base.oversized_bytes)})"))
    if policy.skew_factor is not None and policy.skew_factor != base.skew_factor:
        out.append(("skew factor", f"{policy.skew_factor:g} (default {base.skew_factor:g})"))
    if policy.runway_intervals is not None and policy.runway_intervals != base.runway_intervals:
        out.append(("runway", f"{policy.runway_intervals:g} intervals "
                              f"(default {base.runway_intervals:g})"))
    return out


def policy_section(policy: TablePolicy | None, base: FindingsConfig,
                   maintain_key: str, inherited: FindingsConfig | None = None
                   ) -> list[RenderableType]:
    """`inherited`: the thresholds a policy above this table gives it (it has none of its
    own)."""
    head = Text("policy", style="bold")
    if policy is None:
        head.append("  none", style="dim")
        absent: list[RenderableType] = [head, Padding(
            Text("no [policy] in the config names this table", style="dim"), (0, 0, 0, 2))]
        if inherited is not None:
            absent.append(Padding(Text("the findings use the thresholds of the policy above it",
                                       style="dim"), (0, 0, 0, 2)))
        return absent
    head.append(f"  [policy] {policy.key!r}", style="dim")
    out: list[RenderableType] = [head]
    lines = policy_lines(policy, base)
    if lines:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for label, value in lines:
            grid.add_row(label, Text(value) if isinstance(value, str) else value)
        out.append(Padding(grid, (0, 0, 0, 2)))
    else:
        out.append(Padding(Text("sets nothing that differs from the defaults", style="dim"),
                           (0, 0, 0, 2)))
    if any(v is not None for v in (policy.premake, policy.retention,
                                   policy.consolidate_older_than)):
        out.append(Padding(Text(f"{maintain_key}: what maintain would do now",
                                style="bold green"), (0, 0, 0, 2)))
    return out


# -- growth ---------------------------------------------------------------------------------------
class Spark:
    """One series as a line of eighth blocks, as wide as the pane allows (the newest
    partitions when there are more): the current partition bold, the ones ahead as dots,
    never-analyzed ones as '?'."""

    def __init__(self, growth: Growth, label: str, values: list[float], unit: str) -> None:
        self.growth = growth
        self.label = label
        self.values = values
        self.unit = unit  # "bytes" or "rows", for the maximum shown after the line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        points = list(self.growth.points)
        top_value = max((v for p, v in zip(points, self.values, strict=True) if p.analyzed),
                        default=0.0)
        top = size(top_value) if self.unit == "bytes" else short_count(round(top_value))
        tail = f" max {top}"
        room = max(options.max_width - len(self.label) - 1 - len(tail), 4)
        shown = list(zip(points, self.values, strict=True))[-room:]
        text = Text(self.label + " ", style="dim")
        for p, v in shown:
            if p.state == "future":
                text.append("·", style="dim")
            elif not p.analyzed:
                text.append("?", style="yellow")
            else:
                level = 0 if top_value <= 0 else min(int(v / top_value * 7.999), 7)
                style = "bold cyan" if p.state == "current" else "cyan"
                text.append(_BLOCKS[level] if v > 0 else " ", style=style)
        text.append(tail, style="dim")
        text.no_wrap = True
        yield text


def growth_section(growth: Growth | None, computing: bool) -> list[RenderableType]:
    if computing:
        return [Text.assemble(("growth", "bold"), ("  computing…", "italic"))]
    if growth is None:
        return []
    unit = interval_name(growth.interval) if growth.interval.total_seconds() > 0 else "interval"
    head = Text("growth", style="bold")
    head.append(f"  by {unit}, {plural(len(growth.points), 'time partition')}", style="dim")
    out: list[RenderableType] = [head]
    if growth.points:
        first, last = growth.points[0].lower, growth.points[-1].upper
        head.append(f", {first:%Y-%m-%d} → {last:%Y-%m-%d}", style="dim")
        out.append(Spark(growth, "size", growth.bytes_series(), "bytes"))
        out.append(Spark(growth, "rows", growth.rows_series(), "rows"))
        legend = [what for mark, what in (("future", "· ahead"), ("never", "? never analyzed"))
                  if any((p.state == "future") if mark == "future"
                         else p.state != "future" and not p.analyzed for p in growth.points)]
        if legend:
            out.append(Text(f"     {', '.join(legend)}", style="dim", no_wrap=True,
                            overflow="ellipsis"))
    for line in summary_lines(growth, unit):
        label, _, rest = line.partition(": ")
        out.append(Text.assemble((f"{label}:", "dim"), " ", rest))
    return out


# -- pg_partman -----------------------------------------------------------------------------------
def partman_section(state: PartmanState | None, node: PartNode) -> list[RenderableType]:
    if state is None or not state.installed:
        return []
    config = state.configs.get(node.oid)
    version = f" {state.version}" if state.version else ""
    if config is None:
        if state.problem is not None and node.is_root:
            return [Text.assemble((f"pg_partman{version}", "bold"),
                                  (f"  installed, but {state.problem}", "yellow"))]
        return []
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in config.as_dict().items():
        if value is not None:
            grid.add_row(name, Text(str(value)))
    return [Text.assemble((f"pg_partman{version}", "bold"),
                          ("  manages this table (part_config, read-only)", "dim")),
            Padding(grid, (0, 0, 0, 2))]


# -- the workers ----------------------------------------------------------------------------------
@dataclass
class GrowthReady(Message):
    forest: Forest
    oid: int
    growth: Growth | None
    error: str = ""


@dataclass
class PartmanReady(Message):
    forest: Forest
    state: PartmanState


class DetailsExtras:
    """Mixed into the main screen: the lifecycle sections of the node under the cursor.
    `lifecycle_sections()` returns what is known now and starts the workers for the rest."""

    _extras_forest: Forest | None = None
    _resolution: PolicyResolution | None = None
    _thresholds: dict[int, FindingsConfig] | None = None
    growth_by_oid: dict[int, Growth | None] = {}  # replaced per forest (_extras_for)
    partman_state: PartmanState | None = None
    _partman_reading = False
    _partman_forest: Forest | None = None

    def _extras_for(self, forest: Forest, config: Config) -> None:
        if forest is not self._extras_forest:
            self._extras_forest = forest
            self._resolution = resolve_policies(forest, config.policies)
            self._thresholds = thresholds_by_oid(forest, config.findings,
                                                 self._resolution.by_oid)
            self.growth_by_oid = {}
            self.growth_errors: dict[int, str] = {}
            self._growth_wanted: set[int] = set()
            self._partman_reading = False

    def policy_of(self, forest: Forest, config: Config, oid: int) -> TablePolicy | None:
        self._extras_for(forest, config)
        assert self._resolution is not None
        return self._resolution.by_oid.get(oid)

    def lifecycle_sections(self, node: PartNode, forest: Forest, config: Config,
                           maintain_key: str) -> list[RenderableType]:
        if not node.is_partitioned:
            return []
        self._extras_for(forest, config)
        out: list[RenderableType] = []
        assert self._thresholds is not None
        out += policy_section(self.policy_of(forest, config, node.oid), config.findings,
                              maintain_key, self._thresholds.get(node.oid))
        if is_time_partitioned(node):
            if node.oid not in self.growth_by_oid and node.oid not in self._growth_wanted:
                self._growth_wanted.add(node.oid)
                limit = self._thresholds.get(node.oid, config.findings).oversized_bytes
                self.run_worker(  # type: ignore[attr-defined]
                    lambda: self._compute_growth(forest, node, limit), thread=True,
                    group="details-growth", exit_on_error=False,
                    description="growth forecast")
            out.append(Text(""))
            if node.oid in self.growth_errors:
                out.append(Text(self.growth_errors[node.oid], style="red"))
            out += growth_section(self.growth_by_oid.get(node.oid),
                                  node.oid not in self.growth_by_oid)
        if self.partman_state is None or self._partman_forest is not forest:
            if not self._partman_reading:
                self._partman_reading = True
                target = self.app.target  # type: ignore[attr-defined]
                self.run_worker(  # type: ignore[attr-defined]
                    lambda: self._read_partman(forest, target), thread=True,
                    group="details-partman", exit_on_error=False,
                    description="reading pg_partman's part_config")
        elif section := partman_section(self.partman_state, node):
            out.append(Text(""))
            out += section
        return out

    def _compute_growth(self, forest: Forest, node: PartNode, limit: int) -> None:
        try:
            growth, error = growth_of(forest, node, limit_bytes=limit), ""
        except Exception as exc:  # a faulty forecast must not leave 'computing…' forever
            growth, error = None, f"growth forecast failed: {first_line(exc)}"
        self.post_message(GrowthReady(forest, node.oid, growth, error))  # type: ignore[attr-defined]

    def _read_partman(self, forest: Forest, target) -> None:
        try:
            with connect(target, purpose="console") as conn:
                state = read_partman(conn)
        except (ConnectError, psycopg.Error) as exc:
            state = PartmanState(problem=first_line(exc))
        self.post_message(PartmanReady(forest, state))  # type: ignore[attr-defined]

    def on_growth_ready(self, message: GrowthReady) -> None:
        if message.forest is self._extras_forest:
            self.growth_by_oid[message.oid] = message.growth
            if message.error:
                self.growth_errors[message.oid] = message.error
            self.update_details()  # type: ignore[attr-defined]

    def on_partman_ready(self, message: PartmanReady) -> None:
        if message.forest is self._extras_forest:
            self.partman_state = message.state
            self._partman_forest = message.forest
            self.update_details()  # type: ignore[attr-defined]
