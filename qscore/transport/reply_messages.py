"""A reply as the Service Bus message that carries it, and reply batches packed with each reply
encoded once.

A reply carries `correlation_id` = request id and `session_id` = the request's
`reply_to_session_id`, in the body form its request asked for (JSON, or binary with its header
length in an application property), and the `traceparent` of its address. `PreparedReply`
holds those fields once; a batch takes it encoded once (through qscore.transport.sdk_batch_encoding,
byte for byte the SDK's encoding), a send of one reply alone takes it as the SDK's
AmqpAnnotatedMessage.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qscore.claimcheck.reference import CLAIM_CHECK_CONTENT_TYPE
from qscore.contracts import (
    BINARY_REPLY_CONTENT_TYPE,
    HEADER_LENGTH_PROPERTY,
    REPLY_CONTENT_TYPE,
    ScoreReply,
    encode_binary_reply,
)

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.amqp import AmqpAnnotatedMessage

    from qscore.transport.replies import ReplyAddress


def reply_message(
    address: ReplyAddress, reply: ScoreReply, *, time_to_live_s: float | None = None
) -> ServiceBusMessage:
    """The Service Bus message for one reply."""
    from datetime import timedelta

    from azure.servicebus import ServiceBusMessage

    body, content_type, properties = _reply_body(address, reply)
    return ServiceBusMessage(
        body,
        session_id=address.session_id,
        correlation_id=reply.request_id,
        content_type=content_type,
        application_properties=properties,  # type: ignore[arg-type]
        time_to_live=None if time_to_live_s is None else timedelta(seconds=time_to_live_s),
    )


def _trace_properties(address: ReplyAddress) -> dict[str, str | int] | None:
    return {"traceparent": address.traceparent} if address.traceparent else None


def _reply_body(address: ReplyAddress, reply: ScoreReply) -> tuple[bytes, str, dict[str, str | int] | None]:
    """The reply's body, content type and application properties, in the form its request asked for."""
    if not address.binary_reply:
        return (
            reply.model_dump_json(exclude_none=True).encode(),
            REPLY_CONTENT_TYPE,
            _trace_properties(address),
        )
    encoded = encode_binary_reply(reply)
    properties: dict[str, str | int] = {HEADER_LENGTH_PROPERTY: encoded.header_length}
    properties.update(_trace_properties(address) or {})
    return encoded.body, BINARY_REPLY_CONTENT_TYPE, properties


@dataclass
class PreparedReply:
    """One reply ready to send: its body and AMQP fields, made once. A batch takes it encoded
    once (`encoded`, through qscore.transport.sdk_batch_encoding); a send of it alone, or a batch the
    hooks cannot fill, takes it as the AmqpAnnotatedMessage the SDK sends (`amqp`)."""

    correlation_id: str
    session_id: str | None
    body: bytes
    content_type: str
    application_properties: dict[str, str | int] | None
    time_to_live_s: float | None
    message_id: str  # a fresh one per reply, as the SDK would give

    @property
    def time_to_live_ms(self) -> int | None:
        return None if self.time_to_live_s is None else int(self.time_to_live_s * 1000)

    def amqp(self) -> AmqpAnnotatedMessage:
        from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageHeader, AmqpMessageProperties

        properties = AmqpMessageProperties(
            message_id=self.message_id,
            group_id=self.session_id,  # the AMQP name of a Service Bus session id
            correlation_id=self.correlation_id,
            content_type=self.content_type,
        )
        ttl_ms = self.time_to_live_ms
        header = None if ttl_ms is None else AmqpMessageHeader(time_to_live=ttl_ms)
        return AmqpAnnotatedMessage(
            data_body=self.body,
            properties=properties,
            header=header,
            application_properties=self.application_properties,
        )

    def encoded(self, now_ms: int) -> bytes | None:
        """The AMQP bytes the SDK would send for `amqp()`: encoded directly when that encoder
        makes the SDK's bytes (qscore.transport.amqp_encoding, checked once), else by the SDK's
        encoder; None when its hooks are missing."""
        from qscore.transport import amqp_encoding

        return amqp_encoding.encoder()(
            self.body,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            session_id=self.session_id,
            content_type=self.content_type,
            application_properties=self.application_properties,
            time_to_live_ms=self.time_to_live_ms,
            now_ms=now_ms,
        )


def outgoing_reply(
    address: ReplyAddress,
    reply: ScoreReply,
    *,
    reference: bytes | None = None,
    time_to_live_s: float | None = None,
    message_id: str | None = None,
) -> PreparedReply:
    """The reply's body and fields in the form its request asked for. With a claim-check
    `reference`, that reference instead of the body (qscore.claimcheck.replies; a reply by
    reference is JSON whatever form its request asked for). `time_to_live_s`: the broker
    expires the reply after it (qscore.transport.reply_ttl)."""
    if reference is None:
        body, content_type, application = _reply_body(address, reply)
    else:
        body, content_type, application = reference, CLAIM_CHECK_CONTENT_TYPE, _trace_properties(address)
    return PreparedReply(
        correlation_id=reply.request_id,
        session_id=address.session_id,
        body=body,
        content_type=content_type,
        application_properties=application,
        time_to_live_s=time_to_live_s,
        message_id=message_id or str(uuid.uuid4()),
    )


def reply_amqp_message(
    address: ReplyAddress,
    reply: ScoreReply,
    *,
    reference: bytes | None = None,
    time_to_live_s: float | None = None,
    message_id: str | None = None,
) -> AmqpAnnotatedMessage:
    """The same message as `reply_message`, built as the AMQP message the SDK sends: about 15 us
    cheaper per reply (ServiceBusMessage's property setters re-list its fields many times), and
    the sender packs it into a batch just the same (`outgoing_reply` for the arguments)."""
    return outgoing_reply(
        address, reply, reference=reference, time_to_live_s=time_to_live_s, message_id=message_id
    ).amqp()


class BatchPacker:
    """Adds replies to a sender's batches: each encoded once when the SDK hooks allow it
    (qscore.transport.sdk_batch_encoding.add_encoded: the same size rule as the SDK's), else
    through the batch's own `add_message`."""

    def __init__(self, batch: Any) -> None:
        from qscore.transport import sdk_batch_encoding

        self._encoded = sdk_batch_encoding.encoded_adds(batch)
        self._now_ms = sdk_batch_encoding.creation_time_ms() if self._encoded else 0

    def add(self, batch: Any, message: PreparedReply) -> bool:
        if self._encoded:
            from qscore.transport.sdk_batch_encoding import add_encoded

            encoded = message.encoded(self._now_ms)
            if encoded is not None:
                return add_encoded(
                    batch, encoded, message_id=message.message_id, session_id=message.session_id
                )
        try:
            batch.add_message(message.amqp())
        except ValueError:  # MessageSizeExceededError: this batch is full
            return False
        return True
