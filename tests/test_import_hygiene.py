"""The layering holds: the import contracts in pyproject.toml, and what they cannot see.

The contracts (run here through import-linter's API, or `lint-imports` by hand) read every
import statement, including those inside functions. They cannot see modules imported by name at
run time, which the CLI does for its subcommands; the fresh interpreter below checks what a
script that imports the core and the CLI really loads.
"""

import subprocess
import sys
import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold(capsys, monkeypatch):
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]
    monkeypatch.chdir(ROOT)  # lint-imports reads ./pyproject.toml
    status = lint_imports(no_cache=True, no_logo=True)  # a cache would land in the work tree
    report = capsys.readouterr().out
    assert status == 0, report
    assert f"Contracts: {len(contracts)} kept, 0 broken." in report, report


def test_core_and_cli_commands_load_neither_textual_nor_the_demo():
    code = (
        "import sys, pkgutil, importlib, tui.core, tui.commands, tui.cli\n"
        "for pkg in (tui.core, tui.commands):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'textual'\n"
        "             or m == 'tui.demo' or m.startswith('tui.demo.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"loaded by core or the CLI: {out.stdout.strip()}"


# What a `pgparts explain` of a query pruned at plan time must not import: its start is mostly
# imports (bench/explain_startup.py), and it runs once per CI job. The plan kinds, the moves
# engine, the console and the demo belong to other commands; sqlglot (the advice's parser) and
# the advice modules only to a query whose pruning needs explaining; tomllib to a config file.
_NOT_FOR_A_PRUNED_EXPLAIN = (
    "textual", "rich", "sqlglot", "humanize", "tomllib", "tui.app", "tui.demo",
    "tui.core.plans", "tui.core.moves", "tui.core.explain.advice",
    "tui.core.explain.reconcile", "tui.core.explain.sources",
)


def test_pgparts_explain_imports_only_what_its_run_needs(db18):
    db18.execute(
        "CREATE TABLE public.t (k int) PARTITION BY RANGE (k);"
        " CREATE TABLE public.t_1 PARTITION OF public.t FOR VALUES FROM (0) TO (10);"
        " CREATE TABLE public.t_2 PARTITION OF public.t FOR VALUES FROM (10) TO (20)")
    # what the installed console script does (`from tui.launch import entry; entry()`), with
    # the modules listed at exit
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('gc:', gc.isenabled(), gc.get_freeze_count() > 0))\n"
        "atexit.register(lambda: print('modules:', *sorted(sys.modules)))\n"
        "from tui.launch import entry\n"
        "entry()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "explain", "-d", db18.dsn, "SELECT * FROM t WHERE k = 5"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scans 1 of 2 partitions" in done.stdout, done.stdout
    *_, modules, collector = done.stdout.strip().splitlines()
    loaded = set(modules.split()[1:])
    # tui.launch froze what the imports built, and the collector is on for the command's run
    assert collector == "gc: True True", collector
    bad = sorted(m for m in loaded
                 if any(m == p or m.startswith(p + ".") for p in _NOT_FOR_A_PRUNED_EXPLAIN))
    assert bad == [], f"pgparts explain imported {bad}"
    # and what it does need was indeed imported: the check is not vacuous
    assert {"psycopg", "pglast", "tui.core.explain.session"} <= loaded
