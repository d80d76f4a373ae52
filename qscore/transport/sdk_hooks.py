"""Every private azure-servicebus attribute qscore relies on, in one list, checked once at start.

The fast paths of the worker (batch settlement and renewal through the management link, the
management-credit top-up, reading the prefetch buffer, the further-pull wait, prefetch
re-sizing, opening links without the SDK's 50 ms polling) use SDK internals. Each use is
guarded and falls back to the public API, but a silent fallback after an SDK upgrade can cost
a lot: without the credit top-up a worker stalls after ~10,000 batches, without prefetch
re-sizing throughput drops for good. So:

- `HOOKS` names each one: what it speeds up, and what happens without it;
- `check_hooks()` looks for each in the installed SDK's classes (no connection needed); the
  worker logs the result at start and shows it in /readyz;
- each guarded site calls `fallback(name)` when it takes the slow path: counted per hook in
  `fallback_counts()` and as the OpenTelemetry counter `qscore.sdk_hook.fallbacks`;
- tests/test_sdk_hooks.py fails when the installed SDK lacks one, and pyproject.toml pins
  azure-servicebus to the minor range these were checked against.

The code that uses them lives with its concern (receiving.py, frame_reads.py, settlement.py,
replies.py, link_open.py, workers/prefetch.py; the reply and request encoding in sdk_batch_encoding.py), and
only ever names hooks declared here. The `otel.*` hooks are OpenTelemetry SDK internals
(qscore.telemetry.histogram_values), declared here too so one check, one log and one /readyz
entry cover every private attribute the runtimes rely on.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache

from qscore.telemetry.setup import counter

log = logging.getLogger(__name__)

FALLBACKS_METRIC = "qscore.sdk_hook.fallbacks"
_RECEIVER = "azure.servicebus.aio:ServiceBusReceiver"
_CLIENT = "azure.servicebus._pyamqp.aio._client_async:ReceiveClientAsync"
_MESSAGE = "azure.servicebus:ServiceBusReceivedMessage"
_BATCH = "azure.servicebus:ServiceBusMessageBatch"
_PYAMQP = "azure.servicebus._pyamqp"
_AS_BATCH = "as for batch.message"
_SENDER = "azure.servicebus.aio:ServiceBusSender"
_AS_OPEN = "as for receiver.create_handler"
_TRANSPORT = f"{_PYAMQP}.aio._transport_async:AsyncTransport"
_AS_FRAMES = "as for transport.receive_frame"
# OpenTelemetry's SDK (qscore.telemetry.histogram_values): a metric reader's aggregation of one
# attribute set, found once for many histogram values.
_OTEL = "opentelemetry.sdk.metrics._internal"
_OTEL_CONSUMER = f"{_OTEL}.measurement_consumer:SynchronousMeasurementConsumer"
_OTEL_MATCH = f"{_OTEL}._view_instrument_match:_ViewInstrumentMatch"
_OTEL_STORAGE = f"{_OTEL}.metric_reader_storage:MetricReaderStorage"
_OTEL_SPEEDS_UP = (
    "record a reply batch's stage durations with each histogram series' attributes cleaned and "
    "hashed once, not once a value and reader (qscore.telemetry.histogram_values)"
)
_AS_OTEL = "as for otel.measurement_consumer"
_OTEL_FALLBACK = (
    "Histogram.record per value (~10 us each with two readers); also taken when the once-per-process "
    "check against record() disagrees (counted as otel.measurement_consumer)"
)


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
        _SENDER,
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
        "transport.receive_frame",
        f"{_PYAMQP}.aio._transport_async:AsyncTransportMixin",
        "receive_frame",
        "read a frame already in the read buffer without asyncio.wait_for's task and timer "
        "(qscore.transport.frame_reads, ~20 us a frame on Python 3.11)",
        "every frame read through wait_for with the socket timeout",
    ),
    SdkHook(
        "transport.read_buffer", _TRANSPORT, "_read_buffer", "see an interrupted read's bytes", _AS_FRAMES
    ),
    SdkHook("transport.socket_lock", _TRANSPORT, "socket_lock", "see a frame read in progress", _AS_FRAMES),
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
        "encode each reply and producer request once: its bytes go straight into the batch "
        "(`sdk_batch_encoding.add_encoded`)",
        "ServiceBusMessageBatch.add_message, which encodes each message twice "
        "(~60 us more a reply, ~150 us a request)",
    ),
    SdkHook("batch.size", _BATCH, "_size", "keep the batch's size (as above)", _AS_BATCH),
    SdkHook("batch.count", _BATCH, "_count", "keep the batch's message count", _AS_BATCH),
    SdkHook("batch.amqp_transport", _BATCH, "_amqp_transport", "set the batch envelope's ids", _AS_BATCH),
    SdkHook("pyamqp.encode_payload", f"{_PYAMQP}:_encode", "encode_payload", "encode a reply", _AS_BATCH),
    SdkHook("pyamqp.message", f"{_PYAMQP}:message", "Message", "build a reply's AMQP message", _AS_BATCH),
    SdkHook(
        "receiver.create_handler",
        _RECEIVER,
        "_create_handler",
        "open a receiving link reading its handshake frame by frame (qscore.transport.link_open)",
        "the SDK's open: 50 ms asleep after each handshake frame (~0.5 s a link at start)",
    ),
    SdkHook(
        "sender.create_handler",
        _SENDER,
        "_create_handler",
        "open a reply link reading its handshake frame by frame (as above)",
        "as for receiver.create_handler",
    ),
    SdkHook("sender.handler", _SENDER, "_handler", "reach the reply link's AMQP client (as above)", _AS_OPEN),
    SdkHook(
        "client.client_ready",
        "azure.servicebus._pyamqp.aio._client_async:AMQPClientAsync",
        "client_ready_async",
        "step the link's handshake one frame at a time (as above)",
        _AS_OPEN,
    ),
    *(
        SdkHook(name, owner, attribute, _OTEL_SPEEDS_UP if index == 0 else _AS_OTEL, _OTEL_FALLBACK)
        for index, (name, owner, attribute) in enumerate(
            (
                ("otel.measurement_consumer", f"{_OTEL}.instrument:_Synchronous", "_measurement_consumer"),
                ("otel.instrument_enabled", f"{_OTEL}.instrument:_Synchronous", "_is_enabled"),
                ("otel.reader_storages", _OTEL_CONSUMER, "_reader_storages"),
                ("otel.sdk_config", _OTEL_CONSUMER, "_sdk_config"),
                ("otel.view_matches", _OTEL_STORAGE, "_get_or_init_view_instrument_match"),
                ("otel.match_view", _OTEL_MATCH, "_view"),
                ("otel.view_attribute_keys", f"{_OTEL}.view:View", "_attribute_keys"),
                ("otel.match_aggregations", _OTEL_MATCH, "_attributes_aggregation"),
                ("otel.match_lock", _OTEL_MATCH, "_lock"),
                ("otel.match_reset_on_collect", _OTEL_MATCH, "_reset_on_collect"),
                ("otel.match_get_or_create", _OTEL_MATCH, "_get_or_create_aggregation"),
                ("otel.hash_attributes", f"{_OTEL}:_view_instrument_match", "_hash_attributes"),
                ("otel.measurement", f"{_OTEL}:measurement", "Measurement"),
            )
        )
    ),
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


@cache
def _class_source(klass: type) -> str | None:
    """A class's source, read once: many hooks share a class, and each read parses the class's
    whole module (~30 ms), so unshared the check took ~1 s of CPU at every worker start."""
    try:
        return inspect.getsource(klass)
    except (OSError, TypeError):
        return None


def _assigns(owner: type, attribute: str) -> bool:
    """The class (or a base) defines `attribute`, or its code assigns `self.<attribute>`."""
    pattern = re.compile(rf"self\.{re.escape(attribute)}\s*[:=]")
    for klass in owner.__mro__:
        if attribute in vars(klass):
            return True
        source = _class_source(klass)
        if source is not None and pattern.search(source):
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


_probe_once = cache(probe)


@cache
def check_hooks() -> tuple[HookStatus, ...]:
    """Each hook against the installed SDK (once per process)."""
    return tuple(_probe_once(hook) for hook in HOOKS)


def all_available(*names: str) -> bool:
    """Whether the installed SDK has each of these hooks: probes only those (once per process),
    so a fast path's first use does not wait for the whole check (`log_hooks`, at start)."""
    return all(_probe_once(BY_NAME[name]).available for name in names)


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
