"""Service Bus batch trigger: one Durable orchestration per batch of request messages.

The trigger does no scoring itself; it records what each message needs (body, reply address,
timestamps, trace context), stores the batch by reference when it is too large for the Durable
history, and starts the orchestration under an instance id derived from the message ids. A
redelivered batch (same messages) finds its instance already running or done and is skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import azure.durable_functions as df
import azure.functions as func

from functions import names
from functions.claims import FunctionClaims
from functions.payload_store import PayloadStore, carry
from functions.payloads import InboundMessage, OrchestrationInput, TriggeredMessages
from functions.runtime import current_settings, payload_store
from functions.settings import FunctionsSettings
from qscore.claimcheck import ClaimCheckSettings
from qscore.contracts import ACCEPT_PROPERTY, HEADER_LENGTH_PROPERTY
from qscore.telemetry import trace_carrier

log = logging.getLogger("qscore.functions")

bp = df.Blueprint()

# Instances in these states already own the batch; Failed/Terminated ones are started again.
ACTIVE_OR_DONE = {
    df.OrchestrationRuntimeStatus.Pending,
    df.OrchestrationRuntimeStatus.Running,
    df.OrchestrationRuntimeStatus.Completed,
    df.OrchestrationRuntimeStatus.ContinuedAsNew,
}


def tracking_id(message: func.ServiceBusMessage) -> str:
    """The request id; a message without one is still tracked (and recorded as no_message_id)
    under a stand-in that a redelivery of it keeps (its sequence number)."""
    return message.message_id or f"no-message-id:{message.sequence_number}"


def inbound_message(message: func.ServiceBusMessage, received_at: float) -> InboundMessage:
    """The message as the orchestration carries it; one whose properties cannot be read is kept
    without them (`unreadable`), so it is recorded alone instead of failing its whole batch."""
    try:
        return _read_properties(message, received_at)
    except Exception as exc:  # a malformed AMQP property section
        return InboundMessage.from_body(
            message.get_body(),
            message_id=f"no-message-id:{message.sequence_number}",
            has_message_id=False,
            received_at=received_at,
            unreadable=repr(exc),
        )


def _read_properties(message: func.ServiceBusMessage, received_at: float) -> InboundMessage:
    # The producer's trace context rides along in the orchestration input, so the activities'
    # spans join the producer's trace (Diagnostic-Id from older SDKs counts as a traceparent).
    carrier = trace_carrier(message.application_properties)
    properties = message.application_properties or {}
    accept = properties.get(ACCEPT_PROPERTY)
    enqueued = message.enqueued_time_utc
    return InboundMessage.from_body(
        message.get_body(),
        message_id=tracking_id(message),
        has_message_id=bool(message.message_id),
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        enqueued_at=enqueued.timestamp() if enqueued is not None else None,
        received_at=received_at,
        traceparent=carrier.get("traceparent"),
        tracestate=carrier.get("tracestate"),
        content_type=message.content_type,
        header_length=properties.get(HEADER_LENGTH_PROPERTY),
        accept=None if accept is None else str(accept),
    )


async def orchestration_input(
    messages: Sequence[InboundMessage], store: PayloadStore, settings: FunctionsSettings
) -> OrchestrationInput:
    document = TriggeredMessages(messages=list(messages)).model_dump_json(exclude_none=True)
    carried = await carry(document, store, inline_limit_bytes=settings.inline_limit_bytes)
    return OrchestrationInput(batch=carried, message_count=len(messages), retry=settings.retry)


async def start_once(
    client: df.DurableOrchestrationClient, instance_id: str, started: OrchestrationInput
) -> bool:
    """Start the orchestration unless this instance id already runs or ran; True if started."""
    status = await client.get_status(instance_id)
    if status.runtime_status in ACTIVE_OR_DONE:
        log.info("batch %s already %s; not scored again", instance_id, status.runtime_status.value)
        return False
    await client.start_new(names.ORCHESTRATOR, instance_id, started.model_dump(mode="json"))
    return True


@bp.function_name(names.TRIGGER)
@bp.service_bus_queue_trigger(
    arg_name="messages",
    queue_name="%QSCORE_REQUEST_QUEUE%",
    connection="ServiceBusConnection",
    cardinality=func.Cardinality.MANY,
)
@bp.durable_client_input(client_name="client")
async def score_requests_trigger(
    messages: list[func.ServiceBusMessage], client: df.DurableOrchestrationClient
) -> None:
    """Raising here abandons the whole batch, so Service Bus redelivers it (same instance id)."""
    received_at = time.time()
    inbound = [inbound_message(message, received_at) for message in messages]
    if not inbound:
        return
    instance_id = names.messages_instance_id(m.message_id for m in inbound)
    claims = FunctionClaims(ClaimCheckSettings.from_env())
    try:
        inbound = await claims.resolve(inbound)  # bodies by reference, fetched and checked
        started = await orchestration_input(inbound, payload_store(), current_settings())
        if await start_once(client, instance_id, started):
            log.info("batch of %d started as %s", len(inbound), instance_id)
        await claims.release(inbound)  # the payload store holds the bodies from here on
    finally:
        await claims.close()
