"""Request/response nodes: `$cbs` put-token and the Service Bus `$management` operations.

Requests and responses are AMQP messages with an AmqpValue map body; the response's
correlation-id is the request's message-id, its status is in the `statusCode` application
property (`status-code` for `$cbs`). Besides the Service Bus operations the SDK uses, the node
answers `qscore:get-queue-counts` with per-queue counts (see docs/local-bus.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proton import Array, Data, Message, symbol, timestamp

from qscore_local.bus import codec
from qscore_local.bus.broker import Broker
from qscore_local.bus.config import DEAD_LETTER_SUFFIX
from qscore_local.bus.entity import Entity, StoredMessage
from qscore_local.bus.errors import ARGUMENT_ERROR, NOT_FOUND, BrokerError

VENDOR = "com.microsoft:"
QUEUE_COUNTS_OPERATION = "qscore:get-queue-counts"
MANAGEMENT_NODE = "$management"
CBS_NODE = "$cbs"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    description: str
    body: Any = None
    condition: str | None = None


def cbs_response(request: Message, broker: Broker) -> Message:
    """Accept any token for the namespace or an entity that exists; as on Service Bus, a token for
    an entity that does not exist is refused at authorization (404), which the SDK raises as
    `ServiceBusAuthenticationError` before it attaches any link."""
    properties: dict[Any, Any] = dict(request.properties or {})
    audience = str(properties.get("name") or "")
    path = audience.split("://", 1)[1].partition("/")[2] if "://" in audience else audience
    path = path.strip("/").removesuffix(MANAGEMENT_NODE).strip("/")
    status, description = 200, "OK"
    if path:
        try:
            broker.entity(path)
        except BrokerError as exc:
            status, description = 404, exc.description
    return Message(
        correlation_id=request.id,
        properties={"status-code": status, "status-description": description},
        address=request.reply_to,
    )


def management_response(outcome: Outcome, request: Message) -> Message:
    properties: dict[str, Any] = {"statusCode": outcome.status, "statusDescription": outcome.description}
    if outcome.condition:
        properties["errorCondition"] = symbol(outcome.condition)
    return Message(
        correlation_id=request.id, properties=properties, body=outcome.body, address=request.reply_to
    )


def _tokens(body: dict[str, Any]) -> list[uuid.UUID]:
    raw = body.get("lock-tokens")
    values = raw.elements if isinstance(raw, Array) else raw
    if not values:
        raise BrokerError(ARGUMENT_ERROR, "The request has no lock-tokens.")
    return [value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)) for value in values]


def _timestamps(values: list[int]) -> Array:
    return Array(Data.NULL, Data.TIMESTAMP, *[timestamp(value) for value in values])


class ManagementNode:
    """Runs `$management` operations against the broker; `on_settled(token, completed)` tells the
    server a lock token was settled out of band so it can settle the matching link delivery."""

    def __init__(self, broker: Broker, on_settled: Callable[[uuid.UUID, bool], None]) -> None:
        self._broker = broker
        self._on_settled = on_settled
        self._operations: dict[str, Callable[[str, dict[str, Any], int], Outcome]] = {
            VENDOR + "renew-lock": self._renew_lock,
            VENDOR + "update-disposition": self._update_disposition,
            VENDOR + "peek-message": self._peek,
            VENDOR + "renew-session-lock": self._renew_session_lock,
            VENDOR + "get-session-state": self._get_session_state,
            VENDOR + "set-session-state": self._set_session_state,
            VENDOR + "schedule-message": self._schedule,
            VENDOR + "cancel-scheduled-message": self._cancel_scheduled,
            VENDOR + "receive-by-sequence-number": self._receive_deferred,
            QUEUE_COUNTS_OPERATION: self._queue_counts,
        }

    def handle(self, node: str, request: Message, now_ms: int) -> Message:
        request_properties: dict[Any, Any] = dict(request.properties or {})
        operation = str(request_properties.get("operation", ""))
        handler = self._operations.get(operation)
        if handler is None:
            outcome = Outcome(
                501, f"The operation '{operation}' is not supported.", None, "amqp:not-implemented"
            )
        else:
            body = request.body if isinstance(request.body, dict) else {}
            entity_name = node[: -len(MANAGEMENT_NODE)].rstrip("/")
            try:
                outcome = handler(entity_name, body, now_ms)
            except BrokerError as exc:
                outcome = Outcome(_status_for(exc.condition), exc.description, None, exc.condition)
            except (KeyError, TypeError, ValueError) as exc:
                outcome = Outcome(400, f"Malformed request: {exc!r}", None, ARGUMENT_ERROR)
        return management_response(outcome, request)

    def _renew_lock(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        expirations = [self._broker.renew(token, now_ms) for token in _tokens(body)]
        return Outcome(200, "OK", {"expirations": _timestamps(expirations)})

    def _update_disposition(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        status = str(body.get("disposition-status", ""))
        for token in _tokens(body):
            if status == "completed":
                self._broker.complete(token, now_ms)
            elif status == "abandoned":
                self._broker.abandon(token, now_ms)
            elif status == "defered":  # sic: the SDK's spelling of "deferred"
                self._broker.defer(token, now_ms)
            elif status == "suspended":
                reason = str(body.get("deadletter-reason") or "")
                description = str(body.get("deadletter-description") or "")
                self._broker.dead_letter(token, reason, description, now_ms)
            else:
                raise BrokerError(ARGUMENT_ERROR, f"Unsupported disposition-status '{status}'.")
            self._on_settled(token, status == "completed")
        return Outcome(200, "OK", {})

    def _peek(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        entity = self._broker.entity(entity_name)
        start = int(body.get("from-sequence-number", 0))
        limit = int(body.get("message-count", 1))
        session_id = body.get("session-id")
        chosen = [
            stored
            for seq, stored in sorted(entity.messages.items())
            if seq >= start and (session_id is None or stored.session_id == session_id)
        ][:limit]
        if not chosen:
            return Outcome(204, "No Content", None)
        messages = [{"message": self._encoded(entity, stored, locked=False)} for stored in chosen]
        return Outcome(200, "OK", {"messages": messages})

    @staticmethod
    def _encoded(entity: Entity, stored: StoredMessage, *, locked: bool) -> bytes:
        if stored.deferred:
            state = codec.STATE_DEFERRED
        elif stored.seq in entity.scheduled:
            state = codec.STATE_SCHEDULED
        else:
            state = codec.STATE_ACTIVE
        return codec.encode_delivery(
            stored.payload,
            sequence_number=stored.seq,
            enqueued_ms=stored.enqueued_ms,
            delivery_count=stored.delivery_count,
            locked_until_ms=stored.locked_until_ms if locked else None,
            lock_token=stored.lock_token if locked else None,
            state=state,
        )

    def _receive_deferred(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        entity = self._broker.entity(entity_name)
        raw = body.get("sequence-numbers")
        numbers = [int(number) for number in (raw.elements if isinstance(raw, Array) else raw or [])]
        # receiver-settle-mode 0 (first) is receive-and-delete, 1 (second) is peek-lock.
        delete = int(body.get("receiver-settle-mode", 1)) == 0
        session_id = body.get("session-id")
        chosen = self._broker.receive_deferred(
            entity,
            numbers,
            session_id=None if session_id is None else str(session_id),
            delete=delete,
            now_ms=now_ms,
        )
        messages = []
        for stored in chosen:
            item: dict[str, Any] = {"message": self._encoded(entity, stored, locked=not delete)}
            if not delete and stored.lock_token is not None:
                item["lock-token"] = stored.lock_token
            messages.append(item)
        return Outcome(200, "OK", {"messages": messages})

    def _renew_session_lock(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        entity = self._broker.entity(entity_name)
        held = entity.session_lock(str(body["session-id"]), None, now_ms)
        held.locked_until_ms = now_ms + int(entity.config.lock_duration_s * 1000)
        return Outcome(200, "OK", {"expiration": timestamp(held.locked_until_ms)})

    def _get_session_state(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        entity = self._broker.entity(entity_name)
        session_id = str(body["session-id"])
        entity.session_lock(session_id, None, now_ms)
        return Outcome(200, "OK", {"session-state": entity.session_states.get(session_id)})

    def _set_session_state(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        entity = self._broker.entity(entity_name)
        session_id = str(body["session-id"])
        entity.session_lock(session_id, None, now_ms)
        state = body.get("session-state")
        self._broker.set_session_state(entity, session_id, None if state is None else bytes(state))
        return Outcome(200, "OK", {})

    def _schedule(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        entity = self._broker.entity(entity_name)
        raws = [bytes(item["message"]) for item in body["messages"]]
        sequence_numbers = [stored.seq for stored in self._broker.enqueue_all(entity, raws, now_ms)]
        return Outcome(200, "OK", {"sequence-numbers": Array(Data.NULL, Data.LONG, *sequence_numbers)})

    def _cancel_scheduled(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        entity = self._broker.entity(entity_name)
        raw = body.get("sequence-numbers")
        for seq in raw.elements if isinstance(raw, Array) else raw or []:
            stored = entity.scheduled.get(int(seq))
            if stored is None:
                raise BrokerError(VENDOR + "message-not-found", f"No scheduled message {seq}.")
            self._broker.forget(entity, stored)
        return Outcome(200, "OK", {})

    def _queue_counts(self, entity_name: str, body: dict[str, Any], now_ms: int) -> Outcome:
        counts = self._broker.counts()
        if entity_name and entity_name.removesuffix(DEAD_LETTER_SUFFIX) not in counts:
            raise BrokerError(NOT_FOUND, f"The messaging entity '{entity_name}' could not be found.")
        queues = {
            name: {
                "active": row.active,
                "locked": row.locked,
                "dead-letter": row.dead_letter,
                "scheduled": row.scheduled,
                "total": row.total,
            }
            for name, row in counts.items()
        }
        return Outcome(200, "OK", {"queues": queues})


def _status_for(condition: str) -> int:
    if condition in ("amqp:not-found", VENDOR + "message-not-found"):
        return 404
    if condition in (VENDOR + "message-lock-lost", VENDOR + "session-lock-lost"):
        return 410
    if condition == VENDOR + "session-cannot-be-locked":
        return 409
    return 400
