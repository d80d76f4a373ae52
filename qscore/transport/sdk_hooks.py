"""Every private azure-servicebus attribute qscore relies on, in one list, checked once at start.

The fast paths of the worker (batch settlement and renewal through the management link, the
management-credit top-up, reading the prefetch buffer, the further-pull wait, prefetch
re-sizing) use SDK internals. Each use is guarded and falls back to the public API, but a
silent fallback after an SDK upgrade can cost a lot: without the credit top-up a worker stalls
after ~10,000 batches, without prefetch re-sizing throughput drops for good. So:

- `HOOKS` names each one: what it speeds up, and what happens without it;
- `check_hooks()` looks for each in the installed SDK's classes (no connection needed); the
  worker logs the result at start and shows it in /readyz;
- each guarded site calls `fallback(name)` when it takes the slow path: counted per hook in
  `fallback_counts()` and as the OpenTelemetry counter `qscore.sdk_hook.fallbacks`;
- tests/test_sdk_hooks.py fails when the installed SDK lacks one, and pyproject.toml pins
  azure-servicebus to the minor range these were checked against.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from qscore.telemetry.setup import counter

log = logging.getLogger(__name__)

FALLBACKS_METRIC = "qscore.sdk_hook.fallbacks"
_RECEIVER = "azure.servicebus.aio:ServiceBusReceiver"
_CLIENT = "azure.servicebus._pyamqp.aio._client_async:ReceiveClientAsync"
_MESSAGE = "azure.servicebus:ServiceBusReceivedMessage"
_BATCH = "azure.servicebus:ServiceBusMessageBatch"
_PYAMQP = "azure.servicebus._pyamqp"
_AS_BATCH = "as for batch.message"


@dataclass(frozen=True)
class SdkHook:
    """One private attribute: `owner` is "module:Class", `attribute` a field or method of it."""

    name: str
    owner: str
    attribute: str
    speeds_up: str
    fallback: str


HOOKS: tuple[SdkHook, ...] = (
    SdkHook(
        "receiver.handler",
        _RECEIVER,
        "_handler",
        "every hook below that reads the AMQP client",
        "those hooks report unavailable and take their fallbacks",
    ),
    SdkHook(
        "sender.max_message_size",
        "azure.servicebus.aio:ServiceBusSender",
        "_max_message_size_on_link",
        "size reply-batch messages to the entity's max message size (the link's, on attach)",
        "reply-batch bodies sized to the batch limit (max_size_in_bytes): on an entity with a "
        "smaller limit a body over it is refused, and its replies dead-lettered reply_undeliverable",
    ),
    SdkHook(
        "receiver.settle_via_mgmt_link",
        _RECEIVER,
        "_settle_message_via_mgmt_link",
        "complete/abandon a whole batch in one management request",
        "one public complete/abandon call per message (~0.5 ms each)",
    ),
    SdkHook(
        "receiver.renew_locks",
        _RECEIVER,
        "_renew_locks",
        "renew many locks in one management request",
        "one renew_message_lock call per message",
    ),
    SdkHook(
        "client.mgmt_links",
        _CLIENT,
        "_mgmt_links",
        "find the management links to top up their credit",
        "no top-up: management requests stop after 10,000 (the worker stalls)",
    ),
    SdkHook(
        "mgmt_operation.mgmt_link",
        "azure.servicebus._pyamqp.aio._management_operation_async:ManagementOperation",
        "_mgmt_link",
        "reach the management link's response link",
        "no top-up (as above)",
    ),
    SdkHook(
        "mgmt_link.response_link",
        "azure.servicebus._pyamqp.aio._management_link_async:ManagementLink",
        "_response_link",
        "grant the response link credit again",
        "no top-up (as above)",
    ),
    SdkHook(
        "client.received_messages",
        _CLIENT,
        "_received_messages",
        "see how many messages are already buffered and take them without waiting",
        "every receive may wait the further-pull time for one more message",
    ),
    SdkHook(
        "receiver.further_pull_timeout",
        "azure.servicebus._common.receiver_mixins:ReceiverMixin",
        "_further_pull_receive_timeout",
        "stop a receive shortly after its first message",
        "the SDK's 0.2 s further pull: ~200 ms queue wait per batch",
    ),
    SdkHook(
        "receiver.amqp_transport",
        _RECEIVER,
        "_amqp_transport",
        "the further-pull time's unit (pyamqp seconds, uamqp milliseconds)",
        "assume seconds",
    ),
    SdkHook(
        "client.connection",
        _CLIENT,
        "_connection",
        "see unread bytes on the receiving connection",
        "no follow-up receives: a batch is what one receive call returned",
    ),
    SdkHook(
        "connection.transport",
        "azure.servicebus._pyamqp.aio._connection_async:Connection",
        "_transport",
        "see unread bytes (as above)",
        "as above",
    ),
    SdkHook(
        "transport.reader",
        "azure.servicebus._pyamqp.aio._transport_async:AsyncTransport",
        "reader",
        "see unread bytes (asyncio.StreamReader._buffer)",
        "as above",
    ),
    SdkHook(
        "receiver.prefetch_count",
        "azure.servicebus._common.receiver_mixins:ReceiverMixin",
        "_prefetch_count",
        "re-size the prefetch window to the measured rate",
        "the first window stays: throughput bound by the start-up window",
    ),
    SdkHook(
        "client.link_credit", _CLIENT, "_link_credit", "re-size the link credit with the window", "as above"
    ),
    SdkHook(
        "client.link",
        _CLIENT,
        "_link",
        "forget delivery tags of batch-settled messages",
        "the receiving link keeps every delivery tag (memory grows with messages)",
    ),
    SdkHook(
        "receiver_link.received_delivery_tags",
        "azure.servicebus._pyamqp.aio._receiver_async:ReceiverLink",
        "_received_delivery_tags",
        "as above",
        "as above",
    ),
    SdkHook(
        "message.settled",
        _MESSAGE,
        "_settled",
        "mark batch-settled messages settled",
        "the SDK would let a batch-settled message be settled again (broker error)",
    ),
    SdkHook(
        "message.delivery_tag", _MESSAGE, "_delivery_tag", "forget its delivery tag", "as for client.link"
    ),
    SdkHook(
        "message.expiry",
        _MESSAGE,
        "_expiry",
        "move locked_until_utc after a batch renewal",
        "the SDK thinks the lock lapsed and refuses to settle the message",
    ),
    SdkHook(
        "link.current_link_credit",
        "azure.servicebus._pyamqp.aio._link_async:Link",
        "current_link_credit",
        "read how much credit a link has left (management response links; the receiving link's top-up)",
        "no top-up (as for client.mgmt_links); receive credit only once all of it is used",
    ),
    SdkHook(
        "stream_reader.buffer",
        "asyncio.streams:StreamReader",
        "_buffer",
        "see unread bytes (as for client.connection)",
        "as for client.connection",
    ),
    SdkHook(
        "batch.message",
        _BATCH,
        "_message",
        "encode each reply once: its bytes go straight into the batch (`add_encoded`)",
        "ServiceBusMessageBatch.add_message, which encodes each reply twice (~60 us more)",
    ),
    SdkHook("batch.size", _BATCH, "_size", "keep the batch's size (as above)", _AS_BATCH),
    SdkHook("batch.count", _BATCH, "_count", "keep the batch's message count", _AS_BATCH),
    SdkHook("batch.amqp_transport", _BATCH, "_amqp_transport", "set the batch envelope's ids", _AS_BATCH),
    SdkHook("pyamqp.encode_payload", f"{_PYAMQP}:_encode", "encode_payload", "encode a reply", _AS_BATCH),
    SdkHook("pyamqp.message", f"{_PYAMQP}:message", "Message", "build a reply's AMQP message", _AS_BATCH),
    SdkHook(
        "error.condition",
        "azure.servicebus.exceptions:ServiceBusError",
        "_condition",
        "tell a refused reply (not-found, not-allowed, size) from a transient failure",
        "read the condition from the error text",
    ),
)

BY_NAME = {hook.name: hook for hook in HOOKS}


@dataclass(frozen=True)
class HookStatus:
    hook: SdkHook
    available: bool
    detail: str = ""


def _assigns(owner: type, attribute: str) -> bool:
    """The class (or a base) defines `attribute`, or its code assigns `self.<attribute>`."""
    pattern = re.compile(rf"self\.{re.escape(attribute)}\s*[:=]")
    for klass in owner.__mro__:
        if attribute in vars(klass):
            return True
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if pattern.search(source):
            return True
    return False


def probe(hook: SdkHook) -> HookStatus:
    module_name, _, class_name = hook.owner.partition(":")
    try:
        owner = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        return HookStatus(hook, False, f"{hook.owner} not found: {exc}")
    if not isinstance(owner, type):  # a module: the attribute is one of its names
        found = hasattr(owner, hook.attribute)
        return HookStatus(hook, found, "" if found else f"{hook.owner} has no {hook.attribute}")
    if _assigns(owner, hook.attribute):
        return HookStatus(hook, True)
    return HookStatus(hook, False, f"{hook.owner} has no {hook.attribute}")


@cache
def check_hooks() -> tuple[HookStatus, ...]:
    """Each hook against the installed SDK (once per process)."""
    return tuple(probe(hook) for hook in HOOKS)


def log_hooks() -> tuple[HookStatus, ...]:
    """Check and log the list: one line each, a warning for each one missing."""
    from importlib.metadata import version

    statuses = check_hooks()
    missing = [status for status in statuses if not status.available]
    log.info(
        "azure-servicebus %s: %d of %d SDK fast-path hooks available",
        version("azure-servicebus"),
        len(statuses) - len(missing),
        len(statuses),
    )
    for status in statuses:
        if status.available:
            log.info("sdk hook %s: available (%s)", status.hook.name, status.hook.speeds_up)
        else:
            log.warning(
                "sdk hook %s MISSING: %s; fallback: %s", status.hook.name, status.detail, status.hook.fallback
            )
    return statuses


_fallbacks: Counter[str] = Counter()


def fallback(name: str) -> None:
    """A guarded site took its slow path because hook `name` was not usable."""
    if name not in BY_NAME:
        raise KeyError(f"undeclared SDK hook {name!r}: declare it in qscore.transport.sdk_hooks.HOOKS")
    _fallbacks[name] += 1
    instrument = counter(
        FALLBACKS_METRIC, unit="{fallback}", description="Slow paths taken because an SDK hook was missing"
    )
    instrument.add(1, {"hook": name})


def fallback_counts() -> dict[str, int]:
    return dict(_fallbacks)


def readiness_report() -> dict[str, object]:
    """For /readyz: which hooks are available, and fallbacks taken so far."""
    statuses = check_hooks()
    return {
        "available": sum(status.available for status in statuses),
        "missing": [status.hook.name for status in statuses if not status.available],
        "fallbacks": fallback_counts(),
    }


# Replies encoded once (qscore.transport.replies): ServiceBusMessageBatch.add_message converts an
# AmqpAnnotatedMessage, encodes it to measure it and encodes it again to add it (~60 us a reply).
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
    available = {status.hook.name for status in check_hooks() if status.available}
    if not set(_ENCODED_HOOKS) <= available:
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
    correlation_id: str,
    session_id: str | None,
    content_type: str,
    application_properties: Mapping[str, str | int] | None,
    time_to_live_ms: int | None,
    now_ms: int,
) -> bytes | None:
    """The AMQP bytes of one message, as the SDK would encode it from an AmqpAnnotatedMessage
    with these fields (`now_ms`: `creation_time_ms()`); None when a hook is missing (counted)."""
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
        correlation_id=correlation_id,
        content_type=content_type,
        creation_time=created,
        absolute_expiry_time=expires,
        group_id=session_id,
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
