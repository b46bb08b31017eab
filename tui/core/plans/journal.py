"""The journal of applied plans: one JSON object per line in the user state dir.

An append-only text file survives crashes of the console (each entry is one write of one line),
can be read with `jq`, and is what the console's history view shows.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from ..config import state_dir

FILE_NAME = "journal.jsonl"


def journal_path() -> Path:
    return state_dir() / FILE_NAME


def append(entry: dict[str, Any], path: Path | None = None) -> Path:
    path = path or journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
    # O_APPEND: concurrent consoles never interleave within a line of this size
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
    return path


def read(path: Path | None = None, *, limit: int | None = None,
         target: str | None = None) -> list[dict[str, Any]]:
    """Entries newest first; damaged lines (a crash mid-write) are skipped."""
    path = path or journal_path()
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict) and (target is None or entry.get("target") == target):
                    entries.append(entry)
    entries.reverse()
    return entries[:limit] if limit is not None else entries
