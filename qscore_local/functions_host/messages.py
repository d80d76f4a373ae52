"""Hand received Service Bus messages to a trigger as the Python worker does for cardinality
`many`: a collection_bytes datum of bodies plus `...Array` trigger metadata, decoded by
`azure.functions.servicebus.ServiceBusMessageInConverter`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessageInConverter

from qscore.transport import application_properties, message_body


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _metadata(messages: Sequence[Any]) -> dict[str, meta.Datum]:
    def array(values: list[Any]) -> meta.Datum:
        return meta.Datum(json.dumps(values), "json")

    return {
        "MessageIdArray": array([m.message_id for m in messages]),
        "ContentTypeArray": array([m.content_type for m in messages]),
        "CorrelationIdArray": array([m.correlation_id for m in messages]),
        "ReplyToArray": array([m.reply_to for m in messages]),
        "ReplyToSessionIdArray": array([m.reply_to_session_id for m in messages]),
        "SessionIdArray": array([m.session_id for m in messages]),
        "DeliveryCountArray": array([m.delivery_count for m in messages]),
        "SequenceNumberArray": array([m.sequence_number for m in messages]),
        "EnqueuedTimeUtcArray": array([_when(m.enqueued_time_utc) for m in messages]),
        "LockTokenArray": array([str(m.lock_token) for m in messages]),
        "SubjectArray": array([m.subject for m in messages]),
        "ApplicationPropertiesArray": array([application_properties(m) for m in messages]),
        "UserPropertiesArray": array([application_properties(m) for m in messages]),
    }


def to_function_messages(messages: Sequence[Any]) -> list[func.ServiceBusMessage]:
    """`azure.servicebus` received messages -> what a `list[func.ServiceBusMessage]` trigger gets."""
    bodies = meta.Datum(SimpleNamespace(bytes=[message_body(m) for m in messages]), "collection_bytes")
    decoded = ServiceBusMessageInConverter.decode(bodies, trigger_metadata=_metadata(messages))
    return list(decoded) if isinstance(decoded, list) else [decoded]
