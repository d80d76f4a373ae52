"""qscore.transport.received.message_property reads what the SDK's ServiceBusReceivedMessage
properties return (message_id, content_type, reply_to, reply_to_session_id), from the same
message; objects without `raw_amqp_message` are asked directly."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus._pyamqp.message import Message, Properties

from qscore.transport.received import enqueued_at, message_property

NAMES = ("message_id", "content_type", "reply_to", "reply_to_session_id")


def _received(properties: Any, annotations: Any = None) -> ServiceBusReceivedMessage:
    message = Message(
        data=[b"{}"],
        properties=properties,
        application_properties={b"a": b"b"},
        message_annotations=annotations,
    )
    return ServiceBusReceivedMessage(message, receiver=None)


@pytest.mark.parametrize(
    "properties",
    [
        Properties(
            message_id=b"id-1", content_type=b"application/json", reply_to=b"replies", reply_to_group_id=b"s1"
        ),
        Properties(message_id="id-2", content_type="text/plain", reply_to="q", reply_to_group_id=None),
        Properties(message_id=uuid.UUID(int=7), content_type=None, reply_to=None),
        Properties(message_id=42, content_type=b"\xff\xfe", reply_to=b"\xc3\xa9t\xc3\xa9"),
        Properties(),
        None,
    ],
)
def test_message_property_reads_what_the_sdk_returns(properties: Any) -> None:
    message = _received(properties)
    for name in NAMES:
        assert message_property(message, name) == getattr(message, name), name


def test_objects_without_the_raw_message_are_asked_directly() -> None:
    item = SimpleNamespace(message_id="item-1", content_type="application/json")
    assert message_property(item, "message_id") == "item-1"
    assert message_property(item, "content_type") == "application/json"
    assert message_property(item, "reply_to") is None


@pytest.mark.parametrize(
    "annotations",
    [
        {b"x-opt-enqueued-time": 1_765_155_600_123},
        {b"x-opt-enqueued-time": 1_700_000_000_001, b"x-opt-sequence-number": 9},
        {b"x-opt-enqueued-time": 999},
        {b"x-opt-enqueued-time": -62_135_596_800_000},  # the broker's "not set" (year 1)
        {b"x-opt-enqueued-time": 0},
        {b"x-opt-sequence-number": 9},
        None,
    ],
)
def test_enqueued_at_is_the_sdks_enqueued_time(annotations: Any) -> None:
    message = _received(Properties(message_id=b"m"), annotations)
    expected = message.enqueued_time_utc
    assert enqueued_at(message) == (None if expected is None else expected.timestamp())
