"""Starting the console: a connection error is reported before the console takes the terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bad_connection_is_one_line_and_exit_2(tmp_path):
    # a port nothing listens on; the console runs on a terminal (a pty), so the connection is
    # what fails, before anything is drawn
    main_fd, term_fd = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tui.cli", "postgresql://nobody@127.0.0.1:1/x"],
            stdin=term_fd, stdout=term_fd, stderr=subprocess.PIPE, text=True, timeout=60,
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "xterm",
                 "XDG_CONFIG_HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path),
                 "XDG_CACHE_HOME": str(tmp_path)},
        )
        os.set_blocking(main_fd, False)
        try:
            drawn = os.read(main_fd, 65536)
        except BlockingIOError:
            drawn = b""
    finally:
        os.close(main_fd)
        os.close(term_fd)
    assert proc.returncode == 2, proc.stderr
    assert b"\x1b" not in drawn  # no escape codes: the console never took the terminal
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pgparts: "), lines[0]
    assert "127.0.0.1" in lines[0] and "connect" in lines[0], lines[0]
    assert "\x1b" not in proc.stderr


def test_no_terminal_is_refused_before_connecting(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", "postgresql://nobody@127.0.0.1:1/x"],
        capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
             "XDG_STATE_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "pgparts: the console needs a terminal (stdin and stdout); for scripts use "
        "'pgparts tree', 'check', 'explain' or 'consolidate'"]
