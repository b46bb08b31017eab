"""Queries that a worker runs on its own connection, cancelled when nobody wants them any more.

Textual's thread workers cannot be stopped, and the console does not exit until they return: a
plan being built or a count(*) running when the user quits (or leaves the screen) would keep
the terminal waiting for the query to end. A worker registers its connection while it uses it;
`cancel_all()` asks the server to cancel each running statement (a libpq cancel request, sent
from a daemon thread because it waits for the server), so the worker gets an error at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


class InFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: set[psycopg.Connection] = set()
        self.cancelled = False  # set by cancel_all(): a worker's error is then expected

    @contextmanager
    def track(self, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
        with self._lock:
            self._conns.add(conn)
        try:
            yield conn
        finally:
            with self._lock:
                self._conns.discard(conn)

    def cancel_all(self) -> None:
        with self._lock:
            self.cancelled = True
            conns = list(self._conns)
        for conn in conns:
            threading.Thread(target=_cancel, args=(conn,), name="pgparts-cancel",
                             daemon=True).start()


def _cancel(conn: psycopg.Connection) -> None:
    try:
        conn.cancel_safe(timeout=5.0)
    except Exception:  # closed meanwhile, or the server is gone: nothing left to cancel
        pass
