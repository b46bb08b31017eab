"""The plan-kind declarations and what is generated from them, without a server: options
parsed once for every front end, the registry, the command line, the terminal confirmation."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from psycopg import sql

from tui.cli import _command_parser, all_commands
from tui.commands.apply import confirm
from tui.core.findings import CODES
from tui.core.plans import Plan, Statement, Step
from tui.core.plans.engine.model import Destroyed, PlanFacts
from tui.core.plans.kind import Option, PlanKindError
from tui.core.plans.registry import PLAN_KINDS, kind_named
from tui.core.plans.remedies import LATER, REMEDIES
from tui.core.units import parse_age


def test_every_kind_is_a_command_with_its_options():
    names = [k.name for k in PLAN_KINDS]
    assert len(names) == len(set(names))
    for kind in PLAN_KINDS:
        command = kind.name.replace("_", "-")  # create_ahead is `pgparts create-ahead`
        assert command in all_commands() and kind.title and kind.summary
        parser, _module = _command_parser(command)
        flags = {a.dest for a in parser._actions}
        assert {o.name for o in kind.options} <= flags
        assert {"dry_run", "sql", "apply", "yes", "json", "table"} <= flags
        assert ("status_action" in flags) == kind.has_status


def test_options_parse_and_validate_once_for_every_front_end():
    age = Option("older_than", "str", parse=parse_age)
    assert age.convert("3months") == parse_age("3months")
    assert isinstance(age.convert("2 weeks"), timedelta)
    with pytest.raises(PlanKindError, match="^--older-than: "):
        age.convert("soon")
    batch = kind_named("consolidate").request({"batch": "2"})
    assert batch.get("batch") == 2 and batch.get("weeks") is None
    with pytest.raises(PlanKindError, match="--batch: must be at least 1"):
        kind_named("consolidate").request({"batch": "0"})
    only = kind_named("index_fix").options[0]
    with pytest.raises(PlanKindError, match="--only: one of missing, invalid"):
        only.convert("both")


def test_every_remedy_names_a_registered_kind_and_real_options():
    for code, remedy in REMEDIES.items():
        kind = kind_named(remedy.kind)
        assert code in kind.fixes
        assert set(remedy.values) <= {o.name for o in kind.options}
        kind.request(dict(remedy.values))  # valid values
    assert set(REMEDIES) | set(LATER) <= set(CODES)
    assert not set(REMEDIES) & set(LATER)
    for text in LATER.values():
        assert "not available yet" in text  # never a claim of a fix that does not exist


def _plan(destroys: list[Destroyed]) -> Plan:
    step = Step("Drop", "drop it", [Statement(sql.SQL("SELECT 1"))])
    return Plan("test", "a test plan", "s.t", 1, [step], ["drop s.x"],
                facts=PlanFacts(destroys=destroys))


def test_confirmation_types_the_name_whenever_something_is_dropped(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    assert confirm(_plan([]))
    verified = _plan([Destroyed("table", "s.x", verified=True)])
    assert verified.facts.needs_typed_confirmation and not verified.facts.loses_data
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    assert not confirm(verified)
    monkeypatch.setattr("sys.stdin", io.StringIO("s.t\n"))
    assert confirm(verified)
    lost = _plan([Destroyed("table", "s.x")])
    assert lost.facts.loses_data
    assert lost.facts.needs_typed_confirmation
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    assert not confirm(lost)
    monkeypatch.setattr("sys.stdin", io.StringIO("s.t\n"))
    assert confirm(lost)
    err = capsys.readouterr().err
    assert "drops table s.x: its data is kept nowhere else" in err


def test_the_engine_imports_no_kind_and_commands_reach_kinds_through_the_registry():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "tui"

    def imports(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        out: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                out.add("." * node.level + (node.module or ""))
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
        return out

    for path in (root / "core" / "plans" / "engine").glob("*.py"):
        bad = {m for m in imports(path) if "kind" in m or "consolidat" in m
               or "registry" in m or "steps" in m}
        assert not bad, (path.name, bad)
    for name in ("plan.py", "apply.py", "fix.py"):
        bad = {m for m in imports(root / "commands" / name) if ".kinds" in m}
        assert not bad, (name, bad)
