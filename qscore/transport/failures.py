"""The failures queue: where the Functions app puts a request it could not answer.

The Functions trigger completes its messages once their orchestration has started
(`autoCompleteMessages`), so a request that later turns out to be bad, or whose reply cannot be
delivered, can no longer be dead-lettered on the request queue. It is sent instead, as a copy
of the original request, to a durable queue on the same namespace (`scoring-failures` by
default), with the same reason codes and descriptions the worker writes on a dead-letter:

- the body is the request body, unchanged, so `qscore dead-letters resubmit` can send it back;
- `message_id` is the request's, so duplicate detection (where on) drops a repeated record;
- application properties carry the reason, description and the request's reply address.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qscore.transport.windowing import LinkPool

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

DEFAULT_FAILURES_QUEUE = "scoring-failures"
MAX_DESCRIPTION_CHARS = 1024  # as for dead-letter descriptions: readable, under the property cap

# Application property names of a failure record (the dead-letter reason/description's twins).
REASON = "qscore.failure.reason"
DESCRIPTION = "qscore.failure.description"
REPLY_TO = "qscore.failure.reply_to"
REPLY_TO_SESSION_ID = "qscore.failure.reply_to_session_id"
SOURCE = "qscore.failure.source"
FAILED_AT = "qscore.failure.failed_at"
MAX_FAILURE_LINKS = 4  # sender links to the failures queue at once (records are the rare path)


@dataclass(frozen=True)
class FailureRecord:
    """One request that ended without a reply, with the reason a person can act on."""

    request_id: str
    body: bytes
    reason: str
    description: str
    reply_to: str | None = None
    reply_to_session_id: str | None = None
    source: str = ""
    content_type: str | None = None

    def to_message(self, *, now: float | None = None) -> ServiceBusMessage:
        from azure.servicebus import ServiceBusMessage

        properties: dict[str, str | float] = {
            REASON: self.reason,
            DESCRIPTION: self.description[:MAX_DESCRIPTION_CHARS],
            SOURCE: self.source,
            FAILED_AT: time.time() if now is None else now,
        }
        if self.reply_to:
            properties[REPLY_TO] = self.reply_to
        if self.reply_to_session_id:
            properties[REPLY_TO_SESSION_ID] = self.reply_to_session_id
        return ServiceBusMessage(
            self.body,
            message_id=self.request_id,
            subject=self.reason,
            content_type=self.content_type,
            application_properties=properties,  # type: ignore[arg-type]
        )


def failure_fields(properties: Mapping[Any, Any] | None) -> dict[str, str]:
    """The failure record's fields (reason, description, ...) from received application properties."""
    wanted = {REASON: "reason", DESCRIPTION: "description", REPLY_TO: "reply_to"}
    wanted |= {REPLY_TO_SESSION_ID: "reply_to_session_id", SOURCE: "source", FAILED_AT: "failed_at"}
    fields: dict[str, str] = {}
    for key, value in (properties or {}).items():
        name = key.decode() if isinstance(key, bytes | bytearray) else str(key)
        if name in wanted:
            fields[wanted[name]] = value.decode() if isinstance(value, bytes | bytearray) else str(value)
    return fields


class FailureQueue:
    """Sends failure records to the failures queue over a shared ServiceBusClient."""

    def __init__(
        self, client: ServiceBusClient, queue: str = DEFAULT_FAILURES_QUEUE, *, send_timeout_s: float = 30.0
    ) -> None:
        self._client = client
        self.queue = queue
        self._send_timeout_s = send_timeout_s
        # Sender links kept open (opening one costs several round trips: connection, token,
        # attach), one send at a time on each, as many at once as the measured rate x round trip
        # asks for; closed with the client.
        self._senders: LinkPool[ServiceBusSender] = LinkPool(
            lambda: client.get_queue_sender(queue), ceiling=MAX_FAILURE_LINKS
        )

    async def record(self, records: Sequence[FailureRecord]) -> int:
        """Send every record (raises when the broker did not accept them all); returns the count."""
        if not records:
            return 0
        messages = [record.to_message() for record in records]
        async with self._senders.use() as sender:
            await sender.send_messages(messages, timeout=self._send_timeout_s)
        return len(records)

    async def close(self) -> None:
        await self._senders.close()
