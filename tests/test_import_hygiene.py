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
