"""SQLite (WAL) persistence for the endpoint: one transaction per reactor tick, never per message.

The reactor mutates in-memory state and records the row changes here; `commit()` writes them all
in one transaction. The server acknowledges a send only after the commit that holds its row, so
a SIGKILL loses no acknowledged message (WAL with synchronous=NORMAL survives process death;
only a power cut can lose the last transactions).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    entity TEXT NOT NULL,
    payload BLOB NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    visible_ms INTEGER,
    session_id TEXT,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    number INTEGER,
    deferred INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS session_state (
    entity TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state BLOB,
    PRIMARY KEY (entity, session_id)
);
"""

_UPSERT = (
    "INSERT OR REPLACE INTO messages "
    "(seq, entity, payload, enqueued_ms, expires_ms, visible_ms, session_id, delivery_count, number, "
    "deferred) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(slots=True)
class StoredRow:
    """A message row as written to and read back from SQLite.

    `uid` (the `seq` column) is the row's key across the endpoint; `number` is the message's
    sequence number within its queue, as clients see it."""

    uid: int
    entity: str
    payload: bytes
    enqueued_ms: int
    expires_ms: int | None
    visible_ms: int | None
    session_id: str | None
    delivery_count: int
    number: int
    deferred: bool = False

    def as_tuple(self) -> tuple[object, ...]:
        return (
            self.uid,
            self.entity,
            self.payload,
            self.enqueued_ms,
            self.expires_ms,
            self.visible_ms,
            self.session_id,
            self.delivery_count,
            self.number,
            int(self.deferred),
        )


class MessageStore:
    """Write-behind row store; rows change in memory first and reach disk on `commit()`."""

    def __init__(self, path: Path | None) -> None:
        # None keeps everything in memory (fast, non-durable endpoints for unit use).
        self._db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        for column, declaration in (("number", "INTEGER"), ("deferred", "INTEGER NOT NULL DEFAULT 0")):
            if column not in columns:  # a store written before per-queue numbers and deferral
                self._db.execute(f"ALTER TABLE messages ADD COLUMN {column} {declaration}")
        self._upserts: dict[int, StoredRow] = {}
        self._deletes: set[int] = set()
        self._states: dict[tuple[str, str], bytes | None] = {}

    @property
    def dirty(self) -> bool:
        return bool(self._upserts or self._deletes or self._states)

    def put(self, row: StoredRow) -> None:
        self._deletes.discard(row.uid)
        self._upserts[row.uid] = row

    def delete(self, uid: int) -> None:
        # The row may also have reached disk in an earlier tick, so always delete it there too.
        self._upserts.pop(uid, None)
        self._deletes.add(uid)

    def put_session_state(self, entity: str, session_id: str, state: bytes | None) -> None:
        self._states[(entity, session_id)] = state

    def commit(self) -> int:
        """Write every pending change in one transaction; returns how many rows changed."""
        if not self.dirty:
            return 0
        upserts, deletes, states = self._upserts, self._deletes, self._states
        # Forgotten only once written: if the write fails the changes stay pending, and the
        # sends waiting on them stay unacknowledged, until a later commit succeeds.
        self._write(upserts, deletes, states)
        self._upserts, self._deletes, self._states = {}, set(), {}
        return len(upserts) + len(deletes) + len(states)

    def _write(
        self, upserts: dict[int, StoredRow], deletes: set[int], states: dict[tuple[str, str], bytes | None]
    ) -> None:
        with self._db:  # BEGIN ... COMMIT (ROLLBACK on error)
            self._db.execute("BEGIN")
            if deletes:
                self._db.executemany("DELETE FROM messages WHERE seq = ?", [(seq,) for seq in deletes])
            if upserts:
                self._db.executemany(_UPSERT, [row.as_tuple() for row in upserts.values()])
            if states:
                self._db.executemany(
                    "INSERT OR REPLACE INTO session_state (entity, session_id, state) VALUES (?, ?, ?)",
                    [(entity, sid, state) for (entity, sid), state in states.items()],
                )

    def load_messages(self) -> list[StoredRow]:
        cursor = self._db.execute(
            "SELECT seq, entity, payload, enqueued_ms, expires_ms, visible_ms, session_id, delivery_count, "
            "COALESCE(number, seq), deferred FROM messages ORDER BY seq"
        )
        return [StoredRow(*row[:9], deferred=bool(row[9])) for row in cursor]  # type: ignore[misc]

    def load_session_states(self) -> dict[tuple[str, str], bytes]:
        cursor = self._db.execute("SELECT entity, session_id, state FROM session_state")
        return {(entity, sid): state for entity, sid, state in cursor if state is not None}

    def max_seq(self) -> int:
        (value,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()
        return int(value)

    def close(self) -> None:
        self.commit()
        self._db.close()
