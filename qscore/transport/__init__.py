"""Service Bus plumbing shared by the worker and the Functions app: client factory, reply sender,
helpers that read a received message's body, enqueued time and trace context,
and batch settlement (`MessageSettler`)."""

from qscore.transport.client import TransportConfigError, check_connection_string, servicebus_client
from qscore.transport.received import (
    accept,
    application_properties,
    enqueued_at,
    header_length,
    message_body,
    traceparent,
)
from qscore.transport.replies import (
    ReplyAddress,
    ReplySender,
    ReplySendError,
    SendFailure,
    classify_send_error,
    reply_message,
)
from qscore.transport.reply_ttl import ReplyLifetime, with_deadline
from qscore.transport.settlement import MessageSettler

__all__ = [
    "MessageSettler",
    "ReplyAddress",
    "ReplyLifetime",
    "ReplySendError",
    "ReplySender",
    "SendFailure",
    "TransportConfigError",
    "accept",
    "application_properties",
    "check_connection_string",
    "classify_send_error",
    "enqueued_at",
    "header_length",
    "message_body",
    "reply_message",
    "servicebus_client",
    "traceparent",
    "with_deadline",
]
