"""A local durable outbox: events accepted while NATS may be unreachable.

A SQLite file in WAL mode; each ``put`` is one short local transaction, so the
caller is never held up by the network. The flusher publishes rows in id order
and deletes them once JetStream has acknowledged them. With
``synchronous=NORMAL`` an accepted event survives the process crashing (the
write is in the OS's page cache), not a power loss of the machine.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import NamedTuple

__all__ = ("Outbox", "OutboxRow")


class OutboxRow(NamedTuple):
    """One pending event of the outbox."""

    rowid: int
    event_id: str
    subject: str
    payload: bytes


class Outbox:
    """The outbox file; one per publisher name (one flusher keeps it in order)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # isolation_level=None: explicit, short transactions; no implicit BEGIN
        # held open between calls.
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " event_id TEXT NOT NULL,"
            " subject TEXT NOT NULL,"
            " payload BLOB NOT NULL,"
            " created_at REAL NOT NULL)"
        )

    def put(self, event_id: str, subject: str, payload: bytes) -> None:
        """Accept one event; returns once it is on local disk."""
        self._db.execute(
            "INSERT INTO outbox (event_id, subject, payload, created_at) VALUES (?, ?, ?, ?)",
            (event_id, subject, payload, time.time()),
        )

    def head(self, limit: int) -> list[OutboxRow]:
        """The oldest ``limit`` pending events, oldest first."""
        cursor = self._db.execute("SELECT id, event_id, subject, payload FROM outbox ORDER BY id LIMIT ?", (limit,))
        return [OutboxRow(*row) for row in cursor.fetchall()]

    def remove_through(self, rowid: int) -> None:
        """Forget every event up to and including ``rowid`` (they were acknowledged)."""
        self._db.execute("DELETE FROM outbox WHERE id <= ?", (rowid,))

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the file; pending events stay in it for the next start."""
        self._db.close()
