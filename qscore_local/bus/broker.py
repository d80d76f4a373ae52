"""Service Bus queue semantics over the in-memory entities, with every change recorded in the store."""

from __future__ import annotations

import heapq
import uuid

from qscore_local.bus import codec
from qscore_local.bus.config import DEAD_LETTER_SUFFIX, QueueConfig
from qscore_local.bus.entity import Entity, StoredMessage, dead_letter_entity
from qscore_local.bus.errors import (
    DECODE_ERROR,
    LOCK_LOST,
    MAX_DELIVERY_COUNT_EXCEEDED,
    MESSAGE_NOT_FOUND,
    NOT_ALLOWED,
    NOT_FOUND,
    SESSION_LOCK_LOST,
    SIZE_EXCEEDED,
    TTL_EXPIRED,
    BrokerError,
    QueueCountsRow,
)
from qscore_local.bus.store import MessageStore


class Broker:
    """All queues of the endpoint; the reactor thread is its only caller."""

    def __init__(self, queues: list[QueueConfig], store: MessageStore) -> None:
        self.store = store
        self.entities: dict[str, Entity] = {}
        self._by_lower_name: dict[str, Entity] = {}
        for config in queues:
            self.add_queue(config)
        self.locks: dict[uuid.UUID, StoredMessage] = {}
        self.by_uid: dict[int, StoredMessage] = {}
        self._lock_expiry: list[tuple[int, int, uuid.UUID]] = []
        self._ttl_expiry: list[tuple[int, int]] = []
        self._schedule: list[tuple[int, int]] = []
        self._next_uid = 1
        # Entities that gained ready messages since the server last pumped its consumers.
        self.wakeups: set[str] = set()

    def add_queue(self, config: QueueConfig) -> Entity:
        """A new queue (and its dead-letter sub-queue); the administration client's create."""
        entity = Entity(name=config.name, config=config)
        for each in (entity, dead_letter_entity(entity)):
            self.entities[each.name] = each
            self._by_lower_name[each.name.lower()] = each
        return entity

    def remove_queue(self, name: str) -> None:
        """Delete a queue with its messages (a later queue of that name starts at sequence 1)."""
        entity = self.entities[name]
        for each in (entity, self.entities[entity.dead_letter_name]):
            for stored in list(each.messages.values()):
                self._unlock(each, stored)
                each.drop(stored)
                self.by_uid.pop(stored.uid, None)
                self.store.delete(stored.uid)
            for session_id in list(each.session_states):
                self.store.put_session_state(each.name, session_id, None)
            del self.entities[each.name]
            self._by_lower_name.pop(each.name.lower(), None)

    def size_in_bytes(self, name: str) -> int:
        entity = self.entities[name]
        dead = self.entities[entity.dead_letter_name]
        return sum(len(stored.payload) for each in (entity, dead) for stored in each.messages.values())

    # ---- lookup and recovery -------------------------------------------------------------
    def entity(self, address: str) -> Entity:
        path = address.strip("/")
        # Service Bus entity paths are case-insensitive (the SDK asks for `$DeadLetterQueue`).
        entity = self.entities.get(path) or self._by_lower_name.get(path.lower())
        if entity is None:
            raise BrokerError(NOT_FOUND, f"The messaging entity '{address}' could not be found.")
        return entity

    def recover(self, now_ms: int) -> int:
        """Load what the store holds; locks did not survive, so every message is ready again."""
        rows = self.store.load_messages()
        for row in rows:
            entity = self.entities.get(row.entity)
            if entity is None:  # queue removed from the config: keep the row, hold nothing
                continue
            stored = StoredMessage(
                row.uid,
                row.entity,
                row.payload,
                row.enqueued_ms,
                row.expires_ms,
                row.visible_ms,
                row.session_id,
                row.delivery_count,
                row.number,
                row.deferred,
            )
            self._hold(entity, stored, now_ms)
            owner = self.entities[entity.name.removesuffix(DEAD_LETTER_SUFFIX)]
            owner.next_seq = max(owner.next_seq, stored.seq + 1)
        for (entity_name, session_id), state in self.store.load_session_states().items():
            if entity_name in self.entities:
                self.entities[entity_name].session_states[session_id] = state
        self._next_uid = max(self.store.max_seq(), 0) + 1
        return len(rows)

    def _hold(self, entity: Entity, stored: StoredMessage, now_ms: int) -> None:
        entity.add(stored, now_ms)
        self.by_uid[stored.uid] = stored
        if stored.expires_ms is not None:
            heapq.heappush(self._ttl_expiry, (stored.expires_ms, stored.uid))
        if stored.visible_ms is not None and stored.visible_ms > now_ms:
            heapq.heappush(self._schedule, (stored.visible_ms, stored.uid))
        elif not stored.deferred:
            self.wakeups.add(entity.name)

    # ---- send ----------------------------------------------------------------------------
    def check(self, entity: Entity, raw: bytes) -> codec.IncomingFacts:
        """Validate one message for `entity` without accepting it."""
        if entity.is_dead_letter:
            raise BrokerError(NOT_ALLOWED, "Cannot send to a dead-letter sub-queue.")
        limit = entity.config.max_message_size_bytes
        if len(raw) > limit:
            raise BrokerError(SIZE_EXCEEDED, f"The message size {len(raw)} exceeds the limit {limit} bytes.")
        try:
            facts = codec.read_facts(raw)
        except codec.MessageFormatError as exc:
            raise BrokerError(DECODE_ERROR, str(exc)) from None
        if entity.requires_session and facts.session_id is None:
            raise BrokerError(
                NOT_ALLOWED, f"The queue '{entity.name}' requires sessions: the message has no session id."
            )
        return facts

    def enqueue_all(self, entity: Entity, raws: list[bytes], now_ms: int) -> list[StoredMessage]:
        """Accept a transfer's messages, all or none; the caller commits before acknowledging.

        On a queue with duplicate detection a message whose id was accepted within the window is
        acknowledged and dropped, as Service Bus does (what makes a retried send idempotent)."""
        checked = [(raw, self.check(entity, raw)) for raw in raws]
        accepted: list[StoredMessage] = []
        for raw, facts in checked:
            if entity.is_duplicate(facts.message_id, now_ms):
                continue
            accepted.append(self._enqueue(entity, raw, facts, now_ms))
        return accepted

    def _enqueue(self, entity: Entity, raw: bytes, facts: codec.IncomingFacts, now_ms: int) -> StoredMessage:
        ttl_s = facts.ttl_s
        if entity.config.default_ttl_s is not None:
            ttl_s = min(ttl_s or entity.config.default_ttl_s, entity.config.default_ttl_s)
        # A scheduled message is enqueued when its time comes: that is its enqueued time.
        enqueued_ms = max(now_ms, facts.scheduled_ms or 0)
        stored = StoredMessage(
            uid=self._next_uid,
            entity=entity.name,
            payload=raw,
            enqueued_ms=enqueued_ms,
            expires_ms=None if ttl_s is None else enqueued_ms + int(ttl_s * 1000),
            visible_ms=facts.scheduled_ms,
            session_id=facts.session_id,
            delivery_count=0,
            seq=entity.next_seq,
        )
        self._next_uid += 1
        entity.next_seq += 1
        self._hold(entity, stored, now_ms)
        self.store.put(stored.row())
        return stored

    # ---- receive -------------------------------------------------------------------------
    def acquire(
        self, entity: Entity, session_id: str | None, *, delete: bool, now_ms: int
    ) -> StoredMessage | None:
        """Next deliverable message, peek-locked (or removed, for receive-and-delete)."""
        while True:
            stored = entity.take(session_id)
            if stored is None:
                return None
            if stored.expires_ms is not None and stored.expires_ms <= now_ms:
                self._expire(entity, stored, now_ms)
                continue
            if delete:
                self.forget(entity, stored)
                return stored
            self._lock(entity, stored, now_ms)
            return stored

    def forget(self, entity: Entity, stored: StoredMessage) -> None:
        entity.drop(stored)
        self.by_uid.pop(stored.uid, None)
        self.store.delete(stored.uid)

    def _locked(self, token: uuid.UUID, now_ms: int) -> tuple[Entity, StoredMessage]:
        stored = self.locks.get(token)
        entity = None if stored is None else self.entities.get(stored.entity)
        if stored is not None and entity is not None and entity.requires_session:
            # A session's messages are locked by the session lock, not one of their own.
            held = entity.session_locks.get(stored.session_id or "")
            if held is None or held.locked_until_ms <= now_ms:
                raise BrokerError(
                    SESSION_LOCK_LOST, f"The session lock for '{stored.session_id}' has expired."
                )
            return entity, stored
        if stored is None or stored.locked_until_ms <= now_ms:
            raise BrokerError(
                LOCK_LOST,
                "The lock supplied is invalid. Either the lock expired, or the message has already "
                "been removed from the queue.",
            )
        return self.entities[stored.entity], stored

    def _unlock(self, entity: Entity, stored: StoredMessage) -> None:
        if stored.lock_token is not None:
            self.locks.pop(stored.lock_token, None)
            entity.locked.pop(stored.lock_token, None)
        stored.lock_token = None
        stored.locked_until_ms = 0

    def complete(self, token: uuid.UUID, now_ms: int) -> None:
        entity, stored = self._locked(token, now_ms)
        self._unlock(entity, stored)
        self.forget(entity, stored)

    def abandon(self, token: uuid.UUID, now_ms: int, *, count_delivery: bool = True) -> None:
        """Give the message back: delivery count + 1 (not for `released`), DLQ past the limit."""
        entity, stored = self._locked(token, now_ms)
        self._give_back(entity, stored, now_ms, count_delivery=count_delivery)

    def _give_back(self, entity: Entity, stored: StoredMessage, now_ms: int, *, count_delivery: bool) -> None:
        self._unlock(entity, stored)
        if count_delivery:
            stored.delivery_count += 1
            if stored.delivery_count >= entity.config.max_delivery_count:
                limit = entity.config.max_delivery_count
                description = f"Message could not be consumed after {limit} delivery attempts."
                self._move_to_dead_letter(entity, stored, MAX_DELIVERY_COUNT_EXCEEDED, description, now_ms)
                return
            self.store.put(stored.row())
        if stored.deferred:  # a deferred message given back stays deferred
            return
        entity.make_ready(stored)
        self.wakeups.add(entity.name)

    def defer(self, token: uuid.UUID, now_ms: int) -> None:
        """Set the message aside: only `receive_deferred` (by sequence number) returns it."""
        entity, stored = self._locked(token, now_ms)
        self._unlock(entity, stored)
        stored.deferred = True
        entity.deferred[stored.seq] = stored
        self.store.put(stored.row())

    def receive_deferred(
        self, entity: Entity, numbers: list[int], *, session_id: str | None, delete: bool, now_ms: int
    ) -> list[StoredMessage]:
        found = [entity.deferred.get(number) for number in numbers]
        missing = [number for number, stored in zip(numbers, found, strict=True) if stored is None]
        if missing or any(e is not None and e.lock_token is not None for e in found):
            raise BrokerError(
                MESSAGE_NOT_FOUND, f"Failed to retrieve deferred messages with sequence numbers {missing}."
            )
        chosen = [stored for stored in found if stored is not None]
        if session_id is not None and any(stored.session_id != session_id for stored in chosen):
            raise BrokerError(MESSAGE_NOT_FOUND, "The deferred messages belong to another session.")
        for stored in chosen:
            if delete:
                self.forget(entity, stored)
            else:
                self._lock(entity, stored, now_ms)
        return chosen

    def _lock(self, entity: Entity, stored: StoredMessage, now_ms: int) -> None:
        token = uuid.uuid4()
        stored.lock_token = token
        entity.locked[token] = stored
        self.locks[token] = stored
        held = entity.session_locks.get(stored.session_id or "") if entity.requires_session else None
        if held is not None:  # held until the session lock goes (release_session gives it back)
            stored.locked_until_ms = held.locked_until_ms
            return
        stored.locked_until_ms = now_ms + int(entity.config.lock_duration_s * 1000)
        heapq.heappush(self._lock_expiry, (stored.locked_until_ms, stored.uid, token))

    def dead_letter(self, token: uuid.UUID, reason: str, description: str, now_ms: int) -> None:
        entity, stored = self._locked(token, now_ms)
        self._unlock(entity, stored)
        self._move_to_dead_letter(entity, stored, reason, description, now_ms)

    def _move_to_dead_letter(
        self, entity: Entity, stored: StoredMessage, reason: str, description: str, now_ms: int
    ) -> None:
        entity.drop(stored)
        # A dead-lettered message dead-lettered again stays where it is.
        target = entity if entity.is_dead_letter else self.entities[entity.dead_letter_name]
        stored.payload = codec.mark_dead_lettered(
            stored.payload, reason=reason, description=description, source=entity.name
        )
        stored.entity = target.name
        stored.expires_ms = None
        stored.visible_ms = None
        stored.deferred = False
        target.add(stored, now_ms)
        self.store.put(stored.row())
        self.wakeups.add(target.name)

    def renew(self, token: uuid.UUID, now_ms: int) -> int:
        entity, stored = self._locked(token, now_ms)
        if entity.requires_session:  # a session's messages are held by the session lock
            stored.locked_until_ms = entity.session_locks[stored.session_id or ""].locked_until_ms
            return stored.locked_until_ms
        stored.locked_until_ms = now_ms + int(entity.config.lock_duration_s * 1000)
        heapq.heappush(self._lock_expiry, (stored.locked_until_ms, stored.uid, token))
        return stored.locked_until_ms

    # ---- time ----------------------------------------------------------------------------
    def _expire(self, entity: Entity, stored: StoredMessage, now_ms: int) -> None:
        if entity.config.dead_lettering_on_expiration and not entity.is_dead_letter:
            description = "The message expired and was dead lettered."
            self._move_to_dead_letter(entity, stored, TTL_EXPIRED, description, now_ms)
        else:
            self.forget(entity, stored)

    def advance_time(self, now_ms: int) -> None:
        """Lapse locks, promote scheduled messages and expire TTLs that are due."""
        while self._lock_expiry and self._lock_expiry[0][0] <= now_ms:
            until, _, token = heapq.heappop(self._lock_expiry)
            stored = self.locks.get(token)
            if stored is not None and stored.locked_until_ms == until and stored.entity in self.entities:
                self._give_back(self.entities[stored.entity], stored, now_ms, count_delivery=True)
        while self._schedule and self._schedule[0][0] <= now_ms:
            _, uid = heapq.heappop(self._schedule)
            stored = self.by_uid.get(uid)
            entity = None if stored is None else self.entities.get(stored.entity)
            if stored is not None and entity is not None and stored.seq in entity.scheduled:
                entity.make_ready(stored)
                self.wakeups.add(entity.name)
        while self._ttl_expiry and self._ttl_expiry[0][0] <= now_ms:
            _, uid = heapq.heappop(self._ttl_expiry)
            stored = self.by_uid.get(uid)
            entity = None if stored is None else self.entities.get(stored.entity)
            # Locked messages expire when they come back; the receiver may still complete them.
            if entity is not None and stored is not None and stored.lock_token is None and stored.expires_ms:
                self._expire(entity, stored, now_ms)

    # ---- sessions ------------------------------------------------------------------------
    def release_session(self, entity: Entity, session_id: str, owner: object) -> None:
        held = entity.session_locks.get(session_id)
        if held is not None and held.owner is owner:
            del entity.session_locks[session_id]
            self.wakeups.add(entity.name)
            # Unsettled messages of the session become available again, as abandoned.
            now_ms = codec.now_ms()
            for stored in [e for e in entity.locked.values() if e.session_id == session_id]:
                self._give_back(entity, stored, now_ms, count_delivery=True)

    def set_session_state(self, entity: Entity, session_id: str, state: bytes | None) -> None:
        if state is None:
            entity.session_states.pop(session_id, None)
        else:
            entity.session_states[session_id] = state
        self.store.put_session_state(entity.name, session_id, state)

    # ---- monitoring ----------------------------------------------------------------------
    def counts(self) -> dict[str, QueueCountsRow]:
        result: dict[str, QueueCountsRow] = {}
        for entity in self.entities.values():
            if entity.is_dead_letter:
                continue
            dead = self.entities[entity.dead_letter_name]
            result[entity.name] = QueueCountsRow(
                active=entity.ready_count(),
                locked=len(entity.locked),
                dead_letter=len(dead.messages),
                scheduled=len(entity.scheduled),
            )
        return result

    def queue_names(self) -> list[str]:
        return [name for name in self.entities if not name.endswith(DEAD_LETTER_SUFFIX)]
