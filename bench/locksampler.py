"""The lock sampler the online benches share (move.py, consolidate.py)."""

from __future__ import annotations

import threading
import time

import psycopg


class LockSampler(threading.Thread):
    """Longest run of consecutive samples showing ACCESS EXCLUSIVE granted on `table` (a
    regclass text: 'control.payment', or a name the search_path finds)."""

    def __init__(self, dsn: str, table: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.table = table
        self.stop = threading.Event()
        self.longest = 0.0
        self.samples = 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            oid = conn.execute("SELECT %s::regclass::oid", (self.table,)).fetchone()[0]
            start: float | None = None
            while not self.stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = %s AND granted"
                    " AND mode = 'AccessExclusiveLock'", (oid,), prepare=True).fetchone()
                now = time.monotonic()
                self.samples += 1
                if row[0]:
                    start = now if start is None else start
                    self.longest = max(self.longest, now - start)
                else:
                    start = None
                time.sleep(0.002)
