"""AMQP 1.0 message bytes as the Service Bus SDK sends them, and as the endpoint delivers them.

The endpoint stores each message as the exact bytes the client encoded and only decodes it
(through proton's C codec) when it must read or add fields: on send to learn the session id,
TTL and schedule, on delivery to add the broker annotations Service Bus clients read.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from cproton import pn_message_decode
from proton import Message, symbol, timestamp

# Section descriptors (AMQP 1.0 part 3.2), as small ulongs.
HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES = 0x70, 0x71, 0x72, 0x73
APPLICATION_PROPERTIES, DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x74, 0x75, 0x76, 0x77, 0x78
BODY_SECTIONS = frozenset({DATA, AMQP_SEQUENCE, AMQP_VALUE})

SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
ENQUEUED_TIME = symbol("x-opt-enqueued-time")
LOCKED_UNTIL = symbol("x-opt-locked-until")
SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")
DEAD_LETTER_SOURCE = symbol("x-opt-deadletter-source")
DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"

# Width of the fixed-size AMQP encodings by the constructor's high nibble (0x40..0x9f).
_FIXED_WIDTH = {0x4: 0, 0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8, 0x9: 16}


class MessageFormatError(ValueError):
    """The transfer payload is not a well-formed AMQP message."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _skip_value(buf: bytes, pos: int) -> int:
    """Index just past the encoded value starting at `pos` (no decoding, no copies)."""
    code = buf[pos]
    pos += 1
    if code == 0x00:  # described: descriptor then value
        return _skip_value(buf, _skip_value(buf, pos))
    high = code >> 4
    if high in _FIXED_WIDTH:
        return pos + _FIXED_WIDTH[high]
    if high in (0xA, 0xC, 0xE):
        return pos + 1 + buf[pos]
    if high in (0xB, 0xD, 0xF):
        return pos + 4 + int.from_bytes(buf[pos : pos + 4], "big")
    raise MessageFormatError(f"unknown AMQP constructor 0x{code:02x}")


def split_sections(buf: bytes) -> list[tuple[int, int, int]]:
    """(descriptor, start, end) of each top-level message section."""
    sections: list[tuple[int, int, int]] = []
    pos, size = 0, len(buf)
    try:
        while pos < size:
            if buf[pos] != 0x00:
                raise MessageFormatError("message section is not a described type")
            if buf[pos + 1] == 0x53:
                descriptor = buf[pos + 2]
            elif buf[pos + 1] == 0x80:
                descriptor = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            else:
                raise MessageFormatError("message section descriptor is not a ulong")
            end = _skip_value(buf, pos)
            if end > size:
                raise MessageFormatError("message section runs past the end of the payload")
            sections.append((descriptor, pos, end))
            pos = end
    except IndexError:
        raise MessageFormatError("message payload is truncated") from None
    return sections


def _data_section_bytes(buf: bytes, start: int, end: int) -> bytes:
    # A data section is 0x00 0x53 0x75 then vbin8 (0xa0, 1-byte length) or vbin32 (0xb0).
    width = 1 if buf[start + 3] == 0xA0 else 4
    return buf[start + 4 + width : end]


def _is_message(buf: bytes) -> bool:
    try:
        sections = split_sections(buf)
    except MessageFormatError:
        return False
    descriptors = [descriptor for descriptor, _, _ in sections]
    return (
        bool(descriptors)
        and all(HEADER <= d <= FOOTER for d in descriptors)
        and bool(BODY_SECTIONS.intersection(descriptors))
    )


def unpack_transfer(payload: bytes) -> list[bytes]:
    """The messages a transfer carries: the inner messages of an SDK batch, or the message itself.

    proton does not expose the transfer's message-format (0x80013700 marks a batch), so a batch
    is recognised by its shape: only data sections, each holding a complete AMQP message.
    """
    sections = split_sections(payload)
    if not sections:
        raise MessageFormatError("the transfer holds no message sections")
    # A message without a body section is valid AMQP and Service Bus accepts it.
    data = [(start, end) for descriptor, start, end in sections if descriptor == DATA]
    if not data or any(descriptor in (AMQP_VALUE, AMQP_SEQUENCE) for descriptor, _, _ in sections):
        return [payload]
    inner = [_data_section_bytes(payload, start, end) for start, end in data]
    if all(_is_message(candidate) for candidate in inner):
        return inner
    return [payload]


@dataclass(frozen=True, slots=True)
class IncomingFacts:
    """What the broker needs to know about a message it accepts."""

    message_id: str | None
    session_id: str | None
    ttl_s: float | None
    scheduled_ms: int | None


def _to_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, timestamp | int):
        return int(value)
    if hasattr(value, "timestamp"):  # datetime
        return int(value.timestamp() * 1000)
    return None


_SCHEDULED_KEY_BYTES = b"x-opt-scheduled-enqueue-time"


def read_facts(raw: bytes) -> IncomingFacts:
    """Decode one message far enough to route and expire it.

    proton's C decoder validates the whole message and gives the properties and header fields
    cheaply; only turning annotations into Python objects is slow (most of `Message.decode`),
    so that is done only when the message may carry a scheduled enqueue time.
    """
    if _SCHEDULED_KEY_BYTES in raw:
        return _read_facts_fully(raw)
    message = Message()
    try:
        message._check(pn_message_decode(message._msg, raw))
    except Exception as exc:  # proton raises its own MessageException / DataException
        raise MessageFormatError(f"cannot decode message: {exc}") from None
    message_id = message.id
    return IncomingFacts(
        message_id=None if message_id is None else str(message_id),
        session_id=message.group_id,
        ttl_s=float(message.ttl) if message.ttl else None,
        scheduled_ms=None,
    )


def _read_facts_fully(raw: bytes) -> IncomingFacts:
    message = Message()
    try:
        message.decode(raw)
    except Exception as exc:  # proton raises its own MessageException / DataException
        raise MessageFormatError(f"cannot decode message: {exc}") from None
    annotations: dict[Any, Any] = dict(message.annotations or {})
    ttl = float(message.ttl) if message.ttl else None
    return IncomingFacts(
        message_id=None if message.id is None else str(message.id),
        session_id=message.group_id,
        ttl_s=ttl,
        scheduled_ms=_to_ms(annotations.get(SCHEDULED_ENQUEUE_TIME)),
    )


def _read_header(buf: bytes, start: int, end: int) -> list[object]:
    """The five header fields (durable, priority, ttl, first-acquirer, delivery-count) or Nones."""
    fields: list[object] = [None] * 5
    pos = start + 3  # past 0x00 0x53 0x70
    code = buf[pos]
    if code == 0x45:  # empty list
        return fields
    if code == 0xC0:  # list8: size byte, count byte
        count, pos = buf[pos + 2], pos + 3
    else:  # list32: size and count as 4-byte integers
        count, pos = int.from_bytes(buf[pos + 5 : pos + 9], "big"), pos + 9
    for index in range(min(count, 5)):
        code = buf[pos]
        if code == 0x40:
            value: object = None
        elif code in (0x41, 0x42):
            value = code == 0x41
        elif code == 0x56:
            value = buf[pos + 1] != 0
        elif code == 0x43:
            value = 0
        elif code in (0x50, 0x52):
            value = buf[pos + 1]
        elif code == 0x70:
            value = int.from_bytes(buf[pos + 1 : pos + 5], "big")
        else:
            raise MessageFormatError(f"unexpected header field encoding 0x{code:02x}")
        fields[index] = value
        pos = _skip_value(buf, pos)
        if pos > end:
            raise MessageFormatError("header runs past its section")
    return fields


def _encode_header(fields: list[object], delivery_count: int) -> bytes:
    durable, priority, ttl, first_acquirer = fields[0], fields[1], fields[2], fields[3]
    body = bytearray()
    body += b"\x41" if durable else b"\x42"
    body += b"\x40" if priority is None else bytes((0x50, int(priority)))  # type: ignore[call-overload]
    body += b"\x40" if ttl is None else b"\x70" + int(ttl).to_bytes(4, "big")  # type: ignore[call-overload]
    body += b"\x41" if first_acquirer else b"\x42"
    body += b"\x70" + delivery_count.to_bytes(4, "big")
    return b"\x00\x53\x70\xc0" + bytes((len(body) + 1, 5)) + bytes(body)


def _symbol(name: bytes) -> bytes:
    return b"\xa3" + bytes((len(name),)) + name


def _map_entries(buf: bytes, start: int) -> tuple[bytes, int]:
    """Encoded key/value pairs of the map at `start` and how many items (keys + values) it holds."""
    code = buf[start]
    if code == 0xC1:
        size, count = buf[start + 1], buf[start + 2]
        return buf[start + 3 : start + 2 + size], count
    if code == 0xD1:
        size = int.from_bytes(buf[start + 1 : start + 5], "big")
        count = int.from_bytes(buf[start + 5 : start + 9], "big")
        return buf[start + 9 : start + 5 + size], count
    raise MessageFormatError("message annotations are not a map")


_SEQUENCE_KEY = _symbol(b"x-opt-sequence-number")
_ENQUEUED_KEY = _symbol(b"x-opt-enqueued-time")
_LOCKED_KEY = _symbol(b"x-opt-locked-until")
_LOCK_TOKEN_KEY = _symbol(b"x-opt-lock-token")
_STATE_KEY = _symbol(b"x-opt-message-state")
# x-opt-message-state values (ServiceBusMessageState).
STATE_ACTIVE, STATE_DEFERRED, STATE_SCHEDULED = 0, 1, 2


def encode_delivery(
    raw: bytes,
    *,
    sequence_number: int,
    enqueued_ms: int,
    delivery_count: int,
    locked_until_ms: int | None,
    lock_token: uuid.UUID | None = None,
    state: int | None = None,
) -> bytes:
    """The message as a receiver gets it: the client's sections, a header with the delivery count,
    delivery annotations with the lock token (`x-opt-lock-token`, as Service Bus sends it) and
    message annotations with the broker's fields added (`x-opt-message-state` for peeks). Pure
    byte splicing, no decode: this runs once per delivery."""
    header: list[object] = [None] * 5
    entries, count = b"", 0
    delivery_entries, delivery_count_items = b"", 0
    rest: list[bytes] = []
    for descriptor, start, end in split_sections(raw):
        if descriptor == HEADER:
            header = _read_header(raw, start, end)
        elif descriptor == MESSAGE_ANNOTATIONS:
            entries, count = _map_entries(raw, start + 3)
        elif descriptor == DELIVERY_ANNOTATIONS:
            delivery_entries, delivery_count_items = _map_entries(raw, start + 3)
        else:
            rest.append(raw[start:end])
    added = _SEQUENCE_KEY + b"\x81" + sequence_number.to_bytes(8, "big", signed=True)
    added += _ENQUEUED_KEY + b"\x83" + enqueued_ms.to_bytes(8, "big", signed=True)
    count += 4
    if locked_until_ms is not None:
        added += _LOCKED_KEY + b"\x83" + locked_until_ms.to_bytes(8, "big", signed=True)
        count += 2
    if state is not None:
        added += _STATE_KEY + b"\x81" + state.to_bytes(8, "big", signed=True)
        count += 2
    sections = [_encode_header(header, delivery_count)]
    if lock_token is not None:
        delivery_entries += _LOCK_TOKEN_KEY + b"\x98" + lock_token.bytes
        delivery_count_items += 2
    if delivery_count_items:
        sections.append(_encode_map(DELIVERY_ANNOTATIONS, delivery_entries, delivery_count_items))
    sections.append(_encode_map(MESSAGE_ANNOTATIONS, entries + added, count))
    return b"".join([*sections, *rest])


def _encode_map(descriptor: int, content: bytes, count: int) -> bytes:
    size = (len(content) + 4).to_bytes(4, "big")
    return b"\x00\x53" + bytes((descriptor,)) + b"\xd1" + size + count.to_bytes(4, "big") + content


def mark_dead_lettered(raw: bytes, *, reason: str, description: str, source: str) -> bytes:
    """Client bytes with the dead-letter reason/description Service Bus adds as app properties."""
    message = Message()
    message.decode(raw)
    properties: dict[Any, Any] = dict(message.properties or {})
    properties[DEAD_LETTER_REASON] = reason
    properties[DEAD_LETTER_DESCRIPTION] = description
    message.properties = properties  # type: ignore[assignment]
    annotations: dict[Any, Any] = dict(message.annotations or {})
    annotations[DEAD_LETTER_SOURCE] = source
    message.annotations = annotations
    if isinstance(message.body, memoryview):
        message.body = message.body.tobytes()
    return bytes(message.encode())


def lock_token_tag(token: uuid.UUID) -> bytes:
    """Delivery tag carrying a lock token the way the SDK reads it: UUID(bytes_le=tag)."""
    return token.bytes_le


# .NET DateTime ticks (100 ns since 0001-01-01) at the Unix epoch; session lock times use them.
DOTNET_EPOCH_TICKS = 621_355_968_000_000_000


def ms_to_dotnet_ticks(epoch_ms: int) -> int:
    return DOTNET_EPOCH_TICKS + epoch_ms * 10_000
