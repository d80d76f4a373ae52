"""Replies and requests encoded once, through the SDK's private batch fields and pyamqp encoder.

The private attributes used here are declared with the rest in `qscore.transport.sdk_hooks.HOOKS`
(batch.message, batch.size, batch.count, batch.amqp_transport, pyamqp.encode_payload,
pyamqp.message), checked at start there, and counted there when they fall back.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from qscore.transport.sdk_hooks import all_available, fallback

# Replies (qscore.transport.replies) and the producer's requests (qscore.producer) encoded once:
# ServiceBusMessageBatch.add_message converts an AmqpAnnotatedMessage (or a ServiceBusMessage),
# encodes it to measure it and encodes it again to add it (~60 us a reply).
# `encode_message` builds the same AMQP message the SDK's to_outgoing_amqp_message would and
# encodes it once; `add_encoded` puts those bytes into the batch under the same size rule as
# ServiceBusMessageBatch._add, so a batch never exceeds the link's max message size.
_ENCODED_HOOKS: tuple[str, ...] = ("batch.message", "batch.size", "batch.count", "batch.amqp_transport")
_ENCODED_HOOKS += ("pyamqp.encode_payload", "pyamqp.message")
_BATCH_OVERHEAD = (5, 8)  # bytes a message adds to the batch: under 256 bytes encoded, else
_MAX_DURATION_MS = 922337203685477  # the SDK's MAX_DURATION_VALUE: a time-to-live that never ends
_MAX_EXPIRY_MS = 253402243199000  # the SDK's MAX_ABSOLUTE_EXPIRY_TIME


@cache
def _encoding() -> tuple[Any, ...] | None:
    """(encode_payload, Message, Header, Properties), or None when a hook is missing."""
    if not all_available(*_ENCODED_HOOKS):
        return None
    from azure.servicebus._pyamqp._encode import encode_payload
    from azure.servicebus._pyamqp.message import Header, Message, Properties

    return encode_payload, Message, Header, Properties


def creation_time_ms() -> int:
    """A message's creation time as the SDK sets it when it has a time-to-live (whole seconds)."""
    return int(time.mktime(datetime.now(UTC).timetuple()) * 1000)


def encode_message(
    body: bytes,
    *,
    message_id: str,
    correlation_id: str | None,
    session_id: str | None,
    content_type: str,
    application_properties: Mapping[str, str | int] | None,
    time_to_live_ms: int | None,
    now_ms: int,
    reply_to: str | None = None,
    reply_to_session_id: str | None = None,
) -> bytes | None:
    """The AMQP bytes of one message, as the SDK would encode it from an AmqpAnnotatedMessage
    (or a ServiceBusMessage) with these fields (`now_ms`: `creation_time_ms()`): a reply, or a
    request (`reply_to`, `reply_to_session_id`); None when a hook is missing (counted)."""
    encoding = _encoding()
    if encoding is None:
        fallback("pyamqp.message")
        return None
    encode_payload, message_type, header_type, properties_type = encoding
    header = None if time_to_live_ms is None else header_type(ttl=time_to_live_ms)
    created = expires = None
    if time_to_live_ms and time_to_live_ms != _MAX_DURATION_MS:
        created, expires = now_ms, min(_MAX_EXPIRY_MS, now_ms + time_to_live_ms)
    properties = properties_type(
        message_id=message_id,
        reply_to=reply_to,
        correlation_id=correlation_id,
        content_type=content_type,
        creation_time=created,
        absolute_expiry_time=expires,
        group_id=session_id,
        reply_to_group_id=reply_to_session_id,
    )
    message = message_type(
        header=header, properties=properties, application_properties=application_properties, data=[body]
    )
    return bytes(encode_payload(bytearray(), message))


def add_encoded(batch: Any, encoded: bytes, *, message_id: str, session_id: str | None) -> bool:
    """Add an `encode_message` result to a ServiceBusMessageBatch: False when it does not fit
    (the SDK's size rule: the batch's size + the message + its overhead <= max_size_in_bytes)."""
    size = len(encoded)
    size_after = batch._size + size + _BATCH_OVERHEAD[size >= 256]
    if size_after > batch.max_size_in_bytes:
        return False
    batch._message[5].append(encoded)  # a pyamqp BatchMessage as a list: 5 is its data sections
    batch._size = size_after
    batch._count += 1
    if batch._count == 1:  # the envelope takes its ids from the first message, as the SDK's
        batch._amqp_transport.set_batch_envelope_properties(batch._message, message_id, session_id, None)
    return True


def encoded_adds(batch: Any) -> bool:
    """Whether `add_encoded` works on `batch`: a pyamqp ServiceBusMessageBatch with every hook,
    and no azure-core tracing (the SDK's add would put its trace context on each message).
    A real batch without a hook is counted as a fallback; any other object (a test's) is not."""
    from azure.core.settings import settings
    from azure.servicebus import ServiceBusMessageBatch

    if not isinstance(batch, ServiceBusMessageBatch) or settings.tracing_implementation() is not None:
        return False
    if _encoding() is None or not isinstance(getattr(batch, "_message", None), list):
        fallback("batch.message")
        return False
    return True
