"""Read what the contract puts on a received request message (see docs/contract.md).

The SDK hands application property keys (and sometimes values) back as bytes, and a body
as bytes, a str or an iterable of data sections; these helpers hide that once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from qscore.contracts import ACCEPT_PROPERTY, HEADER_LENGTH_PROPERTY
from qscore.telemetry.propagation import trace_carrier
from qscore.wire_text import wire_text

TRACEPARENT = "traceparent"


class ReceivedMessage(Protocol):
    """The parts of `azure.servicebus.ServiceBusReceivedMessage` read here."""

    @property
    def body(self) -> Any: ...

    @property
    def application_properties(self) -> Mapping[Any, Any] | None: ...

    @property
    def reply_to(self) -> str | None: ...

    @property
    def reply_to_session_id(self) -> str | None: ...

    @property
    def enqueued_time_utc(self) -> Any: ...


# The SDK's message_id, content_type, reply_to and reply_to_session_id each test the whole AMQP
# properties section for emptiness (a list of all its field names) before reading their field:
# ~4 us an access, and the worker read them eight times a message. `message_property` reads the
# field from the public `raw_amqp_message`, decoded as the SDK's property decodes it.
_AMQP_FIELDS = {
    "message_id": "message_id",
    "content_type": "content_type",
    "reply_to": "reply_to",
    "reply_to_session_id": "reply_to_group_id",
}


def message_property(message: Any, name: str) -> Any:
    """`message.<name>` for message_id, content_type, reply_to or reply_to_session_id, as the SDK
    returns it (its value, UTF-8 decoded when it can be; None when absent); an object without
    `raw_amqp_message` (an item of a request-batch message, a test's stand-in) is asked directly."""
    raw = getattr(message, "raw_amqp_message", None)
    if raw is None:
        return getattr(message, name, None)
    properties = raw.properties
    if properties is None:
        return None
    value: Any = getattr(properties, _AMQP_FIELDS[name], None)
    try:
        return value.decode("UTF-8")
    except (AttributeError, UnicodeDecodeError):
        return value


def message_body(message: ReceivedMessage) -> bytes:
    """The body as one bytes object (data sections joined; a str body UTF-8 encoded)."""
    body = message.body
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    try:
        return b"".join(bytes(section) for section in body)
    except TypeError:
        # An AMQP value body of another type is not a qscore request; an empty body fails decoding.
        return b""


def application_properties(message: ReceivedMessage) -> dict[str, str]:
    """Application properties with str keys and values."""
    return {wire_text(key): wire_text(value) for key, value in (message.application_properties or {}).items()}


def traceparent(message: ReceivedMessage) -> str | None:
    """The producer's W3C traceparent, if it sent one, read as the Functions app reads it
    (`trace_carrier`: any case of the name, Azure's `Diagnostic-Id` when there is none)."""
    return trace_carrier(message.application_properties).get(TRACEPARENT)


def application_property(message: ReceivedMessage, name: str) -> Any:
    """One application property's value as the SDK gives it (None when absent)."""
    for key, value in (message.application_properties or {}).items():
        if key in (name, name.encode()):
            return value
    return None


def header_length(message: ReceivedMessage) -> Any:
    """The binary form's header length property (`inference-header-content-length`), as sent."""
    return application_property(message, HEADER_LENGTH_PROPERTY)


def accept(message: ReceivedMessage) -> str | None:
    """The reply form the producer asked for (`accept`), if it did."""
    value = application_property(message, ACCEPT_PROPERTY)
    return None if value is None else wire_text(value)


_ENQUEUED_TIME = b"x-opt-enqueued-time"  # milliseconds since the epoch, set by the broker


def enqueued_at(message: ReceivedMessage) -> float | None:
    """When the broker accepted the message, as epoch seconds: the broker's annotation read from
    the public `raw_amqp_message` (the SDK's `enqueued_time_utc` makes a datetime of it on every
    access); the same float as `enqueued_time_utc.timestamp()` (whole milliseconds / 1000)."""
    raw = getattr(message, "raw_amqp_message", None)
    if raw is not None:
        annotations = raw.annotations
        milliseconds = annotations.get(_ENQUEUED_TIME) if annotations else None
        return milliseconds / 1000 if milliseconds else None
    enqueued = message.enqueued_time_utc
    return enqueued.timestamp() if enqueued is not None else None
