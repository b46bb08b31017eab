"""The journal of applied plans: JSON lines in the user state dir, one run folded from several.

A run appends a `start` record before it touches the database (outcome "running", every step
pending), one `step` record each time a step starts, commits, is found already done or fails, and
an `end` record with the outcome. Records are keyed by the run's id and folded on read into one
entry per run. Append-only lines survive whatever happens to the process: a run killed by
SIGKILL or a power cut leaves its start and the steps that committed, and reads back as
"interrupted at step N" instead of leaving no trace. Each record is one write of one line
(O_APPEND), so concurrent consoles never interleave within a line; `jq` reads the file as is.

Entries written before runs had ids (one line per finished run) read back unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from ...config import state_dir

FILE_NAME = "journal.jsonl"

# Record kinds
START, STEP, END = "start", "step", "end"

INTERRUPTED_STATE = "interrupted at step {step} (state unknown: re-run to resume)"


class JournalError(OSError):
    """The journal cannot be written: a plan must not start without its record."""


def journal_path() -> Path:
    return state_dir() / FILE_NAME


def _write(record: dict[str, Any], path: Path) -> None:
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def check_writable(path: Path | None = None) -> Path:
    """Create the journal's directory and file if needed and make sure lines can be appended.

    Raises JournalError with a one-line reason; writes nothing to the file.
    """
    path = path or journal_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
    except OSError as exc:
        raise JournalError(f"cannot write the journal {path}: {exc.strerror or exc}") from None
    return path


class RunRecord:
    """The journal records of one run: start() once, step() as steps move, end() once."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or journal_path()
        self.run_id = uuid.uuid4().hex
        self.error = ""  # the first failed write after the start, for the report

    def start(self, entry: dict[str, Any]) -> None:
        """Raises JournalError: the plan must not start unrecorded."""
        check_writable(self.path)
        record = {"run": self.run_id, "record": START, **entry,
                  "pid": os.getpid(), "host": socket.gethostname()}
        try:
            _write(record, self.path)
        except OSError as exc:
            raise JournalError(
                f"cannot write the journal {self.path}: {exc.strerror or exc}") from None

    def _later(self, record: dict[str, Any]) -> None:
        # once started, a journal that fails (disk full) must not stop a plan half-way: the
        # database is the truth and a re-run resumes; the report says the journal is incomplete
        try:
            _write({"run": self.run_id, **record}, self.path)
        except OSError as exc:
            if not self.error:
                self.error = f"cannot write the journal {self.path}: {exc.strerror or exc}"

    def step(self, step: dict[str, Any]) -> None:
        self._later({"record": STEP, "step": step})

    def end(self, fields: dict[str, Any]) -> None:
        self._later({"record": END, **fields})


def _alive(entry: dict[str, Any]) -> bool:
    """Whether the process that started a run still runs (on this machine)."""
    pid = entry.get("pid")
    if not isinstance(pid, int) or entry.get("host") != socket.gethostname():
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process with that pid
        return True
    return True


def _fold(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One entry from a run's records, in the order they were written."""
    entry: dict[str, Any] | None = None
    for rec in records:
        kind = rec.get("record")
        if kind == START:
            entry = {k: v for k, v in rec.items() if k != "record"}
            entry["steps"] = [dict(s) for s in entry.get("steps") or [] if isinstance(s, dict)]
        elif entry is None:
            continue  # the start line was damaged: nothing to hang the rest on
        elif kind == STEP and isinstance(rec.get("step"), dict):
            step = rec["step"]
            index = step.get("index")
            steps = entry["steps"]
            if isinstance(index, int) and 1 <= index <= len(steps):
                steps[index - 1] = {**steps[index - 1], **step}
            else:
                steps.append(dict(step))
        elif kind == END:
            ended = {k: v for k, v in rec.items() if k not in ("record", "run")}
            steps = ended.pop("steps", None)
            entry.update(ended)
            if isinstance(steps, list):
                entry["steps"] = steps
    if entry is None:
        return None
    steps = entry["steps"]
    # only committed steps count: a rolled-back copy moved no rows
    entry["rows_copied"] = sum(int(s.get("rows") or 0) for s in steps
                               if s.get("status") == "done")
    if entry.get("outcome") == "running" and not _alive(entry):
        running = [s for s in steps if s.get("status") == "running"]
        at = running[-1] if running else next(
            (s for s in steps if s.get("status") not in ("done", "skipped")), None)
        number = at.get("index", "?") if at is not None else len(steps)
        entry["outcome"] = "interrupted"
        entry["state"] = INTERRUPTED_STATE.format(step=number)
        if at is not None and at.get("status") == "running":
            at["status"] = "interrupted"
    return entry


def read(path: Path | None = None, *, limit: int | None = None,
         target: str | None = None) -> list[dict[str, Any]]:
    """Entries newest first (by start), one per run; damaged lines (a crash mid-write) are
    skipped. A run whose process is gone without an end record reads as 'interrupted'."""
    path = path or journal_path()
    if not path.exists():
        return []
    runs: dict[str, list[dict[str, Any]]] = {}
    order: list[str | dict[str, Any]] = []  # a run id, or a whole entry of the older format
    with path.open(encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            with contextlib.suppress(ValueError):
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    continue
                run = rec.get("run")
                if not isinstance(run, str):
                    order.append(rec)
                    continue
                if run not in runs:
                    runs[run] = []
                    order.append(run)
                runs[run].append(rec)
    entries: list[dict[str, Any]] = []
    for item in reversed(order):
        entry = _fold(runs[item]) if isinstance(item, str) else item
        if entry is not None and (target is None or entry.get("target") == target):
            entries.append(entry)
            if limit is not None and len(entries) >= limit:
                break
    return entries
