"""Starting the console: a connection error is reported before the console takes the terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bad_connection_is_one_line_and_exit_2(tmp_path):
    # a port nothing listens on; stdin/stdout are pipes, as in a script or CI
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", "postgresql://nobody@127.0.0.1:1/x"],
        capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
             "XDG_STATE_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # no escape codes: the console never took the terminal
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pgparts: "), lines[0]
    assert "127.0.0.1" in lines[0] or "connect" in lines[0], lines[0]
    assert "\x1b" not in proc.stderr
