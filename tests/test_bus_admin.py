"""The endpoint features issue 12 added, through the real SDK: administration API, WebSockets,
deferral, duplicate detection, per-queue sequence numbers, scheduled state. (The SDK's own tests
cover them in depth: tests/test_bus_sdk_conformance.py.)"""

from __future__ import annotations

import datetime
import uuid
import warnings
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusMessageState, TransportType
from azure.servicebus.management import ServiceBusAdministrationClient

from qscore_local.bus.launcher import BusEndpoint


@pytest.fixture
def admin(bus: BusEndpoint) -> Iterator[ServiceBusAdministrationClient]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # InsecureRequestWarning: the endpoint's self-signed certificate
        with ServiceBusAdministrationClient.from_connection_string(
            bus.connection_string, connection_verify=False
        ) as client:
            yield client


def _new_queue(admin: ServiceBusAdministrationClient, **properties: object) -> str:
    name = f"admin-{uuid.uuid4().hex[:8]}"
    admin.create_queue(name, **properties)  # type: ignore[arg-type]
    return name


def test_create_get_list_delete_and_runtime_counts(
    bus: BusEndpoint, admin: ServiceBusAdministrationClient
) -> None:
    name = _new_queue(admin, lock_duration="PT7S", requires_session=False, max_delivery_count=3)
    queue = admin.get_queue(name)
    assert (queue.lock_duration, queue.max_delivery_count) == (datetime.timedelta(seconds=7), 3)
    assert name in {q.name for q in admin.list_queues()}
    with pytest.raises(ResourceExistsError):
        admin.create_queue(name)
    with (
        ServiceBusClient.from_connection_string(bus.connection_string) as client,
        client.get_queue_sender(name) as sender,
    ):
        sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
        sender.schedule_messages(
            ServiceBusMessage("later"), datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        )
    runtime = admin.get_queue_runtime_properties(name)
    assert (runtime.active_message_count, runtime.scheduled_message_count, runtime.total_message_count) == (
        2,
        1,
        3,
    )
    assert {p.name: p.active_message_count for p in admin.list_queues_runtime_properties()}[name] == 2
    with pytest.raises(HttpResponseError):
        admin.create_topic(f"topic-{name}")  # out of scope: refused like an unsupported operation
    admin.delete_queue(name)
    with pytest.raises(ResourceNotFoundError):
        admin.get_queue(name)


def test_websockets_dedup_deferral_sequence_numbers_and_scheduled_state(
    bus: BusEndpoint, admin: ServiceBusAdministrationClient
) -> None:
    name = _new_queue(
        admin, requires_duplicate_detection=True, duplicate_detection_history_time_window="PT1M"
    )
    options = {
        "transport_type": TransportType.AmqpOverWebsocket,
        "custom_endpoint_address": f"sb://127.0.0.1:{bus.port}",
    }
    with ServiceBusClient.from_connection_string(bus.connection_string, **options) as client:  # type: ignore[arg-type]
        with client.get_queue_sender(name) as sender:
            sender.send_messages(ServiceBusMessage("one", message_id="m1"))
            sender.send_messages(ServiceBusMessage("one again", message_id="m1"))  # a retried send
            sender.send_messages(ServiceBusMessage("two", message_id="m2"))
            later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
            (scheduled,) = sender.schedule_messages(ServiceBusMessage("later", message_id="m3"), later)
        with client.get_queue_receiver(name, max_wait_time=2) as receiver:
            received = receiver.receive_messages(max_message_count=5, max_wait_time=2)
            assert [(str(m), m.sequence_number) for m in received] == [("one", 1), ("two", 2)]
            receiver.defer_message(received[0])
            receiver.complete_message(received[1])
            peeked = {m.sequence_number: m.state for m in receiver.peek_messages(5, sequence_number=1)}
            assert peeked == {1: ServiceBusMessageState.DEFERRED, scheduled: ServiceBusMessageState.SCHEDULED}
            (deferred,) = receiver.receive_deferred_messages([1])
            assert str(deferred) == "one"
            receiver.complete_message(deferred)
    admin.delete_queue(name)
