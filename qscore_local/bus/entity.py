"""In-memory state of one queue or dead-letter sub-queue: ready, locked, scheduled messages, sessions."""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass, field

from qscore_local.bus.config import DEAD_LETTER_SUFFIX, QueueConfig
from qscore_local.bus.errors import SESSION_CANNOT_BE_LOCKED, SESSION_LOCK_LOST, BrokerError
from qscore_local.bus.store import StoredRow


@dataclass(slots=True, eq=False)
class StoredMessage:
    """A message the broker holds, with its delivery bookkeeping.

    `uid` keys it across the endpoint (store rows, timers); `seq` is its sequence number in its
    queue (a dead-lettered message keeps the number it had)."""

    uid: int
    entity: str
    payload: bytes
    enqueued_ms: int
    expires_ms: int | None
    visible_ms: int | None
    session_id: str | None
    delivery_count: int
    seq: int
    deferred: bool = False
    lock_token: uuid.UUID | None = None
    locked_until_ms: int = 0

    def row(self) -> StoredRow:
        return StoredRow(
            self.uid,
            self.entity,
            self.payload,
            self.enqueued_ms,
            self.expires_ms,
            self.visible_ms,
            self.session_id,
            self.delivery_count,
            self.seq,
            self.deferred,
        )


class Backlog:
    """Messages ready for delivery, handed out in sequence-number order."""

    __slots__ = ("_heap", "_items")

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._items: dict[int, StoredMessage] = {}

    def __len__(self) -> int:
        return len(self._items)

    def push(self, stored: StoredMessage) -> None:
        self._items[stored.seq] = stored
        heapq.heappush(self._heap, stored.seq)

    def pop(self) -> StoredMessage | None:
        # Lazy deletion: seqs removed out of order stay in the heap until they surface.
        while self._heap:
            stored = self._items.pop(heapq.heappop(self._heap), None)
            if stored is not None:
                return stored
        return None

    def remove(self, seq: int) -> StoredMessage | None:
        return self._items.pop(seq, None)

    def __contains__(self, seq: int) -> bool:
        return seq in self._items


@dataclass(slots=True)
class SessionLock:
    """Which receiver holds a session, and until when."""

    session_id: str
    owner: object
    locked_until_ms: int


@dataclass(eq=False)
class Entity:
    """One addressable queue: `name` or `name/$deadletterqueue`."""

    name: str
    config: QueueConfig
    is_dead_letter: bool = False
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    backlog: Backlog = field(default_factory=Backlog)
    session_backlogs: dict[str, Backlog] = field(default_factory=dict)
    session_locks: dict[str, SessionLock] = field(default_factory=dict)
    session_states: dict[str, bytes] = field(default_factory=dict)
    scheduled: dict[int, StoredMessage] = field(default_factory=dict)
    locked: dict[uuid.UUID, StoredMessage] = field(default_factory=dict)
    deferred: dict[int, StoredMessage] = field(default_factory=dict)
    next_seq: int = 1
    # Message ids seen within the duplicate detection window: id -> when it leaves the window.
    recent_ids: dict[str, int] = field(default_factory=dict)

    @property
    def requires_session(self) -> bool:
        # Dead-letter sub-queues are read without sessions, as on Service Bus.
        return self.config.requires_session and not self.is_dead_letter

    @property
    def dead_letter_name(self) -> str:
        return self.name if self.is_dead_letter else self.name + DEAD_LETTER_SUFFIX

    def _backlog_for(self, stored: StoredMessage) -> Backlog:
        if not self.requires_session:
            return self.backlog
        session_id = stored.session_id or ""
        backlog = self.session_backlogs.get(session_id)
        if backlog is None:
            backlog = self.session_backlogs[session_id] = Backlog()
        return backlog

    def add(self, stored: StoredMessage, now_ms: int) -> None:
        """Hold a new (or moved-in) message: ready now, or scheduled for later."""
        self.messages[stored.seq] = stored
        if stored.deferred:
            self.deferred[stored.seq] = stored
        elif stored.visible_ms is not None and stored.visible_ms > now_ms:
            self.scheduled[stored.seq] = stored
        else:
            self._backlog_for(stored).push(stored)

    def make_ready(self, stored: StoredMessage) -> None:
        """A scheduled message whose time came, or a locked one given back."""
        self.scheduled.pop(stored.seq, None)
        self._backlog_for(stored).push(stored)

    def take(self, session_id: str | None) -> StoredMessage | None:
        """Next ready message (of the session, on session queues), removed from the backlog."""
        if not self.requires_session:
            return self.backlog.pop()
        backlog = self.session_backlogs.get(session_id or "")
        return backlog.pop() if backlog is not None else None

    def drop(self, stored: StoredMessage) -> None:
        """Forget a message entirely (completed, expired, moved to the dead-letter queue)."""
        self.messages.pop(stored.seq, None)
        self.scheduled.pop(stored.seq, None)
        self.deferred.pop(stored.seq, None)
        if stored.lock_token is not None:
            self.locked.pop(stored.lock_token, None)
        self._backlog_for(stored).remove(stored.seq)
        if self.requires_session:
            backlog = self.session_backlogs.get(stored.session_id or "")
            if backlog is not None and not len(backlog) and stored.session_id not in self.session_locks:
                self.session_backlogs.pop(stored.session_id or "", None)

    def is_ready(self, stored: StoredMessage) -> bool:
        return stored.seq in self._backlog_for(stored)

    def free_session(self, now_ms: int) -> str | None:
        """A session with ready messages that no receiver holds (or whose lock lapsed)."""
        for session_id, backlog in self.session_backlogs.items():
            if not len(backlog):
                continue
            held = self.session_locks.get(session_id)
            if held is None or held.locked_until_ms <= now_ms:
                return session_id
        return None

    def lock_session(self, session_id: str | None, owner: object, now_ms: int) -> str | None:
        """Give `owner` the named session (or the next free one); None if none is free now."""
        if session_id is None:
            session_id = self.free_session(now_ms)
            if session_id is None:
                return None
        held = self.session_locks.get(session_id)
        if held is not None and held.owner is not owner and held.locked_until_ms > now_ms:
            raise BrokerError(
                SESSION_CANNOT_BE_LOCKED,
                f"The requested session '{session_id}' cannot be accepted: another receiver holds it.",
            )
        until = now_ms + int(self.config.lock_duration_s * 1000)
        self.session_locks[session_id] = SessionLock(session_id, owner, until)
        return session_id

    def session_lock(self, session_id: str, owner: object | None, now_ms: int) -> SessionLock:
        """The session's live lock (held by `owner`, if given), else `session-lock-lost`."""
        held = self.session_locks.get(session_id)
        if held is None or held.locked_until_ms <= now_ms or (owner is not None and held.owner is not owner):
            raise BrokerError(SESSION_LOCK_LOST, f"The session lock for '{session_id}' has expired.")
        return held

    def is_duplicate(self, message_id: str | None, now_ms: int) -> bool:
        """Duplicate detection: was `message_id` accepted within the window (and remember it)."""
        if not self.config.requires_duplicate_detection or message_id is None:
            return False
        recent = self.recent_ids
        while recent:  # insertion order is expiry order: drop ids that left the window
            oldest, until = next(iter(recent.items()))
            if until > now_ms:
                break
            del recent[oldest]
        if message_id in recent:
            return True
        recent[message_id] = now_ms + int(self.config.duplicate_detection_window_s * 1000)
        return False

    def ready_count(self) -> int:
        if not self.requires_session:
            return len(self.backlog)
        return sum(len(backlog) for backlog in self.session_backlogs.values())


def dead_letter_entity(parent: Entity) -> Entity:
    """The `$deadletterqueue` sub-queue of a queue: no sessions, no TTL, no delivery limit."""
    config = parent.config.model_copy(
        update={"max_delivery_count": 2**31 - 1, "default_ttl_s": None, "dead_lettering_on_expiration": False}
    )
    return Entity(name=parent.name + DEAD_LETTER_SUFFIX, config=config, is_dead_letter=True)
