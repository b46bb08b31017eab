"""Messages posted by the console's thread workers (post_message is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from ..core.catalog import Forest


@dataclass
class CatalogLoaded(Message):
    """The tree is read; the health checks follow in FindingsReady (the tree shows first)."""

    forest: Forest
    seconds: float = 0.0


@dataclass
class FindingsReady(Message):
    forest: Forest  # the forest they were computed on: stale ones are dropped
    findings: list[Any] = field(default_factory=list)
    error: str | None = None


@dataclass
class CatalogFailed(Message):
    """The catalog could not be read. `lost` means the connection is gone (reconnect needed)."""

    error: str
    lost: bool = True


@dataclass
class RowCountDone(Message):
    oid: int
    count: int | None
    error: str | None = None
    seconds: float = 0.0
