"""Look at, resubmit and purge requests that ended without a reply.

Two places hold them, with the same reason codes (docs/contract.md):

- the request queue's dead-letter sub-queue (the worker dead-letters there; reason and
  description are the broker's dead-letter fields);
- the Functions app's failures queue (its trigger has completed the request already; the
  reason and description ride in application properties, see qscore.transport.failures).

Listing peeks (no lock, nothing changes). Resubmit and purge receive under peek-lock and
settle only what they were asked for: a resubmitted request is completed in its dead-letter
place only after the broker accepted the fixed copy on the request queue, so a failed send
leaves it where it was. Everything goes through the public azure-servicebus API, so it works
the same against the local bus and Azure.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from qscore.transport.failures import failure_fields
from qscore.transport.received import application_properties, message_body
from qscore.wire_text import wire_text

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
    from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

PEEK_PAGE = 100
FIRST_RECEIVE_WAIT_S = 1.0  # the first receive also waits for the link's credit to reach the broker
NEXT_RECEIVE_WAIT_S = 0.3
# The AMQP reader's wait per turn: only small frames flow here, and closing a link waits for
# several turns (with the SDK's default 0.2 s a close took over a second on loopback).
SOCKET_TIMEOUT_S = 0.05
# Properties of the dead-lettered copy that describe its failure, not the request: not resent.
_FAILURE_PROPERTY_PREFIXES = ("qscore.failure.", "DeadLetter")


class Source(StrEnum):
    DEAD_LETTER = "dead-letter"
    FAILURES = "failures"


@dataclass(frozen=True)
class DeadLetter:
    """One request that ended without a reply, as an operator sees it."""

    source: Source
    entity: str
    message_id: str
    sequence_number: int
    reason: str
    description: str
    enqueued_at: datetime | None
    delivery_count: int
    reply_to: str | None
    reply_to_session_id: str | None
    content_type: str | None
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)

    def age_s(self, now: datetime | None = None) -> float | None:
        if self.enqueued_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.enqueued_at).total_seconds()


@dataclass(frozen=True)
class Fix:
    """What to change in the copy that is sent back: message fields, and a JSON merge patch
    (RFC 7386) for the body."""

    fields: Mapping[str, str] = field(default_factory=dict)
    body_patch: Any = None

    FIELDS = ("reply_to", "reply_to_session_id", "content_type", "subject")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.fields) - set(self.FIELDS))
        if unknown:
            raise ValueError(f"cannot set {', '.join(unknown)}; settable: {', '.join(self.FIELDS)}")


@dataclass(frozen=True)
class ResubmitResult:
    message_id: str
    resubmitted: bool
    detail: str = ""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def to_dead_letter(message: ServiceBusReceivedMessage, source: Source, entity: str) -> DeadLetter:
    properties = application_properties(message)
    if source is Source.FAILURES:
        fields = failure_fields(message.application_properties)
        reason, description = fields.get("reason", ""), fields.get("description", "")
        reply_to, session = fields.get("reply_to"), fields.get("reply_to_session_id")
    else:
        reason = wire_text(message.dead_letter_reason)
        description = wire_text(message.dead_letter_error_description)
        reply_to, session = message.reply_to, message.reply_to_session_id
    return DeadLetter(
        source=source,
        entity=entity,
        message_id=str(message.message_id),
        sequence_number=int(message.sequence_number or 0),
        reason=reason,
        description=description,
        enqueued_at=message.enqueued_time_utc,
        delivery_count=int(message.delivery_count or 0),
        reply_to=reply_to,
        reply_to_session_id=session,
        content_type=message.content_type,
        body=message_body(message),
        properties=properties,
    )


def fixed_copy(item: DeadLetter, fix: Fix) -> ServiceBusMessage:
    """The request as sent originally (same message id, so replies still correlate), with `fix`."""
    from azure.servicebus import ServiceBusMessage

    body: bytes | str = item.body
    if fix.body_patch is not None:
        try:
            document = json.loads(item.body)
        except ValueError as exc:
            raise ValueError(f"{item.message_id}: the body is not JSON, so it cannot be patched") from exc
        body = json.dumps(merge_patch(document, fix.body_patch))
    kept = {k: v for k, v in item.properties.items() if not k.startswith(_FAILURE_PROPERTY_PREFIXES)}
    values: dict[str, str | None] = {
        "reply_to": item.reply_to,
        "reply_to_session_id": item.reply_to_session_id,
        "content_type": item.content_type,
        "subject": None,
        **fix.fields,
    }
    return ServiceBusMessage(
        body,
        message_id=item.message_id,
        application_properties=kept or None,  # type: ignore[arg-type]
        reply_to=values["reply_to"] or None,
        reply_to_session_id=values["reply_to_session_id"] or None,
        content_type=values["content_type"] or None,
        subject=values["subject"] or None,
    )


class DeadLetterQueues:
    """The request queue's dead-letter sub-queue and (optionally) the failures queue."""

    def __init__(self, client: ServiceBusClient, *, request_queue: str, failures_queue: str | None) -> None:
        self._client = client
        self.request_queue = request_queue
        self.failures_queue = failures_queue

    def sources(self, only: Source | None = None) -> list[Source]:
        available = [Source.DEAD_LETTER] + ([Source.FAILURES] if self.failures_queue else [])
        return [source for source in available if only is None or source is only]

    def entity(self, source: Source) -> str:
        if source is Source.FAILURES:
            assert self.failures_queue is not None
            return self.failures_queue
        return f"{self.request_queue}/$deadletterqueue"

    def _receiver(self, source: Source, **options: Any) -> ServiceBusReceiver:
        from azure.servicebus import ServiceBusSubQueue

        options.setdefault("socket_timeout", SOCKET_TIMEOUT_S)
        if source is Source.FAILURES:
            assert self.failures_queue is not None
            return self._client.get_queue_receiver(self.failures_queue, **options)
        return self._client.get_queue_receiver(
            self.request_queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, **options
        )

    async def entries(self, *, source: Source | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Everything in each place, oldest first, without locking or changing anything."""
        found: list[DeadLetter] = []
        for each in self.sources(source):
            async with self._receiver(each) as receiver:
                async for message in _peek_all(receiver, limit - len(found)):
                    found.append(to_dead_letter(message, each, self.entity(each)))
        return found

    async def show(self, message_id: str, *, source: Source | None = None) -> list[DeadLetter]:
        return [item for item in await self.entries(source=source) if item.message_id == message_id]

    async def resubmit(
        self, message_ids: list[str], fix: Fix, *, source: Source | None = None
    ) -> list[ResubmitResult]:
        """Send a fixed copy of each to the request queue; only then remove the dead-lettered one."""
        wanted = set(message_ids)
        results: dict[str, ResubmitResult] = {}
        async with self._client.get_queue_sender(self.request_queue) as sender:

            async def resend(receiver: ServiceBusReceiver, message: Any, each: Source) -> bool:
                item = to_dead_letter(message, each, self.entity(each))
                try:
                    await sender.send_messages(fixed_copy(item, fix))
                except Exception as exc:
                    results[item.message_id] = ResubmitResult(item.message_id, False, f"not sent: {exc}")
                    return False
                await receiver.complete_message(message)
                results[item.message_id] = ResubmitResult(
                    item.message_id, True, f"sent to {self.request_queue}"
                )
                return True

            for each in self.sources(source):
                await self._settle_matching(each, lambda m: str(m.message_id) in wanted, resend)
        missing = [ResubmitResult(i, False, "not found") for i in message_ids if i not in results]
        return [results[i] for i in message_ids if i in results] + missing

    async def purge(self, *, source: Source | None = None, reason: str | None = None) -> int:
        """Remove everything (or only what has `reason`); returns how many were removed."""

        async def remove(receiver: ServiceBusReceiver, message: Any, each: Source) -> bool:
            await receiver.complete_message(message)
            return True

        removed = 0
        for each in self.sources(source):

            def matches(message: Any, place: Source = each) -> bool:
                return reason is None or to_dead_letter(message, place, "").reason == reason

            removed += await self._settle_matching(each, matches, remove)
        return removed

    async def _settle_matching(
        self,
        source: Source,
        matches: Callable[[Any], bool],
        act: Callable[[ServiceBusReceiver, Any, Source], Awaitable[bool]],
    ) -> int:
        """Receive everything once under peek-lock; `act` on what matches, give the rest back."""
        acted = 0
        others: list[Any] = []
        async with self._receiver(source, prefetch_count=0) as receiver:
            wait_s = FIRST_RECEIVE_WAIT_S
            while True:
                batch = await receiver.receive_messages(max_message_count=PEEK_PAGE, max_wait_time=wait_s)
                if not batch:
                    break
                wait_s = NEXT_RECEIVE_WAIT_S
                for message in batch:
                    if matches(message) and await act(receiver, message, source):
                        acted += 1
                    else:
                        others.append(message)
            for message in others:  # held until the end, so none is received twice
                await receiver.abandon_message(message)
        return acted


async def _peek_all(receiver: ServiceBusReceiver, limit: int) -> AsyncIterator[Any]:
    next_sequence = 0
    seen = 0
    while seen < limit:
        page = await receiver.peek_messages(
            max_message_count=min(PEEK_PAGE, limit - seen), sequence_number=next_sequence
        )
        if not page:
            return
        for message in page:
            yield message
            seen += 1
        next_sequence = int(page[-1].sequence_number or 0) + 1
