"""Pausing Python's cyclic garbage collector while many short-lived objects are built.

Loading a 10,000-partition forest, or explaining a plan over it, makes some 100,000 new objects
(rows, JSON dicts, plan and partition nodes). Each allocation burst makes the collector run, and
every full collection walks everything alive, including the console's own objects: measured at
10,000 partitions, collections took a third to half of the Python time. Nothing built here forms
reference cycles that need collecting sooner, so the collector is paused for these short
stretches (never around an EXPLAIN ANALYZE itself, which may run for minutes) and resumed after.

The switch is process-wide: a counter keeps it off until the last of concurrent pauses ends
(the console loads and explains in worker threads), and it is only turned back on if it was on.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
