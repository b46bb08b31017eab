"""The core must stay usable without Textual: cron jobs and monitoring import only it."""

import subprocess
import sys


def test_core_and_cli_commands_import_without_textual():
    code = (
        "import sys, pkgutil, importlib, tui.core, tui.commands, tui.cli\n"
        "for pkg in (tui.core, tui.commands):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imported Textual modules: {out.stdout.strip()}"
