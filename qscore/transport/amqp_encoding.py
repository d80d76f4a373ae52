"""A reply's (or a request's) AMQP 1.0 message encoded directly (header, properties, application
properties, one data section), the bytes the SDK's pyamqp encoder makes for the same message,
several times faster: pyamqp describes every field as a dict and dispatches on it (about 30 us a
message).

The SDK's encoding is the reference: `matches_sdk()` encodes sample replies and requests both
ways (sizes on both sides of each short/long form, with and without time-to-live, session and
reply address, text and integer properties) and `encoder()` (the worker's replies, the
producer's requests) is this encoder only when every one is byte-identical, else
`qscore.transport.sdk_batch_encoding.encode_message` (checked once per process).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping
from functools import cache

log = logging.getLogger(__name__)

_NULL = b"\x40"
_MAX_DURATION_MS = 922337203685477  # the SDK's MAX_DURATION_VALUE: a time-to-live that never ends
_MAX_EXPIRY_MS = 253402243199000  # the SDK's MAX_ABSOLUTE_EXPIRY_TIME
_HEADER, _PROPERTIES, _APPLICATION, _DATA = b"\x00\x53\x70", b"\x00\x53\x73", b"\x00\x53\x74", b"\x00\x53\x75"


def _variable(small: bytes, large: bytes, raw: bytes) -> bytes:
    """A string, symbol or binary: its short form (1-byte length) up to 255 bytes, else long."""
    if len(raw) <= 255:
        return small + struct.pack(">B", len(raw)) + raw
    return large + struct.pack(">L", len(raw)) + raw


def _string(value: str) -> bytes:
    return _variable(b"\xa1", b"\xb1", value.encode("utf-8"))


def _optional_string(value: str | None) -> bytes:
    return _NULL if value is None else _string(value)


def _uint(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    return b"\x52" + struct.pack(">B", value) if value <= 255 else b"\x70" + struct.pack(">I", value)


def _timestamp(value: int | None) -> bytes:
    return _NULL if value is None else b"\x83" + struct.pack(">q", value)


def _compound(small: bytes, large: bytes, count: int, body: bytes) -> bytes:
    """A list (or map: `count` keys and values) of encoded items: the short form when it fits."""
    if count <= 255 and len(body) < 255:
        return small + struct.pack(">BB", len(body) + 1, count) + body
    return large + struct.pack(">LL", len(body) + 4, count) + body


def _property_value(value: str | int) -> bytes:
    if isinstance(value, bool):
        raise TypeError("a boolean application property is not encoded here")
    if isinstance(value, str):
        return _string(value)
    if -128 <= value <= 127:  # pyamqp encodes a Python int as an AMQP int
        return b"\x54" + struct.pack(">b", value)
    return b"\x71" + struct.pack(">i", value)


def encode_reply_message(
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
) -> bytes:
    """The AMQP bytes of one reply or request (`sdk_batch_encoding.encode_message`'s arguments
    and result)."""
    parts = []
    created = expires = None
    if time_to_live_ms is not None:
        header = _NULL + _NULL + _uint(time_to_live_ms) + _NULL + _NULL
        parts.append(_HEADER + _compound(b"\xc0", b"\xd0", 5, header))
        if time_to_live_ms and time_to_live_ms != _MAX_DURATION_MS:
            created, expires = now_ms, min(_MAX_EXPIRY_MS, now_ms + time_to_live_ms)
    properties = b"".join(
        (
            _string(message_id),
            _NULL * 3,  # user id, to, subject
            _optional_string(reply_to),
            _optional_string(correlation_id),
            _variable(b"\xa3", b"\xb3", content_type.encode("ascii")),  # a symbol
            _NULL,  # content encoding
            _timestamp(expires),
            _timestamp(created),
            _optional_string(session_id),
            _NULL,  # group sequence
            _optional_string(reply_to_session_id),
        )
    )
    parts.append(_PROPERTIES + _compound(b"\xc0", b"\xd0", 13, properties))
    if application_properties:
        entries = b"".join(
            _string(key) + _property_value(value) for key, value in application_properties.items()
        )
        parts.append(_APPLICATION + _compound(b"\xc1", b"\xd1", 2 * len(application_properties), entries))
    parts.append(_DATA + _variable(b"\xa0", b"\xb0", body))
    return b"".join(parts)


def _samples() -> list[dict[str, object]]:
    long_text = "x" * 300
    requests: list[dict[str, object]] = [  # requests (qscore.producer): a reply address, no correlation id
        {
            "body": body,
            "message_id": "5f0c3a1e-0000-4000-8000-000000000002",
            "correlation_id": None,
            "session_id": None,
            "content_type": "application/vnd.qscore.request.v1+binary",
            "application_properties": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "h": 145},
            "time_to_live_ms": None,
            "now_ms": 1796670178000,
            "reply_to": "replies",
            "reply_to_session_id": session,
        }
        for body in (b"{}", b"b" * 256)
        for session in ("s-1", long_text)
    ]
    return requests + [
        {
            "body": body,
            "message_id": message_id,
            "correlation_id": "r-1",
            "session_id": session,
            "content_type": "application/vnd.qscore.reply.v1+json",
            "application_properties": properties,
            "time_to_live_ms": ttl,
            "now_ms": 1796670178000,
        }
        for body in (b"{}", b"b" * 255, b"b" * 256, b"b" * 70_000)
        for message_id, session in (("5f0c3a1e-0000-4000-8000-000000000001", "s-1"), (long_text, None))
        for properties in (
            None,
            {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
            {"h": 7, "l": 70_000},
        )
        for ttl in (None, 0, 200, 300_000)
    ]


@cache
def matches_sdk() -> bool:
    """Whether this encoder makes the SDK's bytes for every sample (once per process); False
    (logged) when they differ or the SDK's encoder is unavailable."""
    from qscore.transport import sdk_batch_encoding

    for sample in _samples():
        theirs = sdk_batch_encoding.encode_message(**sample)  # type: ignore[arg-type]
        if theirs is None:
            return False
        if encode_reply_message(**sample) != theirs:  # type: ignore[arg-type]
            log.warning("the direct AMQP reply encoder differs from the SDK's: replies use the SDK's")
            return False
    return True


def encoder() -> Callable[..., bytes | None]:
    """The encoder of a message's AMQP bytes (`encode_reply_message`'s arguments): this module's
    when it makes the SDK's bytes, else the SDK's (None when its hooks are missing, counted)."""
    from qscore.transport import sdk_batch_encoding

    return encode_reply_message if matches_sdk() else sdk_batch_encoding.encode_message
