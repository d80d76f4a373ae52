"""The private azure-servicebus attributes the fast paths use: all present in the installed SDK
(this test fails on an SDK upgrade that drops one), resolved on a live receiver of the local
bus, and every fallback counted (per hook and as an OpenTelemetry counter) and shown in /readyz."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus.aio import ServiceBusClient

from qscore.telemetry import InMemoryTelemetry
from qscore.transport import link_open, sdk_hooks
from qscore.transport.receiving import buffered_count, set_further_pull, unread_bytes
from qscore.transport.settlement import MessageSettler, top_up_management_credit
from workers.health import WorkerState
from workers.prefetch import apply_link_credit

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_sdk_has_every_hook() -> None:
    missing = [f"{s.hook.name}: {s.detail}" for s in sdk_hooks.check_hooks() if not s.available]
    assert not missing, (
        "azure-servicebus lacks fast-path hooks (see qscore/transport/sdk_hooks.py): " + "; ".join(missing)
    )


def test_a_missing_hook_is_reported_with_its_fallback() -> None:
    gone = sdk_hooks.SdkHook(
        "test.gone", "azure.servicebus.aio:ServiceBusReceiver", "_no_such_field", "x", "y"
    )
    status = sdk_hooks.probe(gone)
    assert not status.available and "_no_such_field" in status.detail
    assert not sdk_hooks.probe(
        sdk_hooks.SdkHook("test.module", "azure.nothing:Here", "_x", "x", "y")
    ).available


def test_every_private_sdk_field_in_the_fast_paths_is_declared() -> None:
    """A new getattr(..., "_private") in the fast-path modules needs its row in HOOKS."""
    declared = {hook.attribute for hook in sdk_hooks.HOOKS}
    files = ["qscore/transport/receiving.py", "qscore/transport/settlement.py", "workers/prefetch.py"]
    files.append("qscore/transport/link_open.py")
    used: set[str] = set()
    for name in files:
        text = (ROOT / name).read_text()
        used |= set(re.findall(r"getattr\([^,]+,\s*\"(_\w+)\"", text))
        used |= set(re.findall(r"hasattr\([^,]+,\s*\"(_\w+)\"", text))
    assert used - declared == set()


def test_fallbacks_are_counted_per_hook_and_as_a_metric(telemetry_capture: InMemoryTelemetry) -> None:
    before = sdk_hooks.fallback_counts()
    assert buffered_count(object()) == 0
    assert set_further_pull(object(), 0.001) is False
    counts = sdk_hooks.fallback_counts()
    for name in ("client.received_messages", "receiver.further_pull_timeout"):
        assert counts[name] == before.get(name, 0) + 1
    points = telemetry_capture.metric_points(sdk_hooks.FALLBACKS_METRIC)
    assert {point.attributes["hook"] for point in points} >= {  # type: ignore[attr-defined]
        "client.received_messages",
        "receiver.further_pull_timeout",
    }
    report = WorkerState().snapshot()["sdk_hooks"]
    assert report["missing"] == [] and report["available"] == len(sdk_hooks.HOOKS)
    assert report["fallbacks"]["client.received_messages"] >= 1
    with pytest.raises(KeyError, match="undeclared"):
        sdk_hooks.fallback("not.declared")


async def test_hooks_resolve_on_a_live_receiver_without_fallbacks(bus: Any, fresh_queue: str) -> None:
    from azure.servicebus import ServiceBusMessage

    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        async with client.get_queue_sender(fresh_queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
        async with (
            client.get_queue_receiver(fresh_queue, prefetch_count=10) as receiver,
            client.get_queue_receiver(fresh_queue, prefetch_count=0) as control,
        ):
            before = sdk_hooks.fallback_counts()
            assert set_further_pull(receiver, 0.001)
            received = await receiver.receive_messages(max_message_count=3, max_wait_time=5)
            buffered_count(receiver)
            unread_bytes(receiver)
            assert apply_link_credit(receiver, 20)
            settler = MessageSettler(receiver, control=control)
            assert await settler.renew_many(received) == []
            assert await settler.complete(received) == []
            await top_up_management_credit(control)
            assert settler.batch_requests == 1 and settler.fallbacks == 0
            assert sdk_hooks.fallback_counts() == before  # every hook worked on the real objects


class _Link:
    """Stands in for a ServiceBusReceiver: `_create_handler` makes `_handler`, as the SDK's does."""

    def __init__(self, handler: object) -> None:
        self._made = handler
        self._handler: object = None

    def _create_handler(self, auth: object) -> None:
        self._handler = self._made


def test_fast_open_falls_back_counted_where_the_sdk_lacks_a_hook() -> None:
    before = sdk_hooks.fallback_counts()
    assert link_open.fast_open(object()) is False  # no _create_handler: the SDK's own open
    link = _Link(object())  # a client without client_ready_async
    assert link_open.fast_open(link)
    link._create_handler(None)
    assert not hasattr(link._handler, "client_ready_async")
    no_handler = _Link(None)
    assert link_open.fast_open(no_handler)
    no_handler._create_handler(None)
    counts = sdk_hooks.fallback_counts()
    for name in ("receiver.create_handler", "client.client_ready", "receiver.handler"):
        assert counts[name] == before.get(name, 0) + 1


async def test_fast_open_steps_the_handshake_then_hands_back_to_the_sdk() -> None:
    """Up to STEPS_PER_POLL client polls per SDK poll; once ready the SDK's own method is back."""

    class Client:
        def __init__(self, ready_after: int) -> None:
            self.polls, self.ready_after = 0, ready_after

        async def client_ready_async(self) -> bool:
            self.polls += 1
            return self.polls >= self.ready_after

    stalled = _Link(Client(ready_after=10**6))
    link_open.fast_open(stalled)
    stalled._create_handler(None)
    client = stalled._handler
    assert isinstance(client, Client)
    assert await client.client_ready_async() is False  # back to the SDK's sleep and deadline
    assert client.polls == link_open.STEPS_PER_POLL

    quick = _Link(Client(ready_after=5))
    link_open.fast_open(quick)
    quick._create_handler(None)
    client = quick._handler
    assert isinstance(client, Client)
    assert await client.client_ready_async() is True and client.polls == 5
    assert "client_ready_async" not in vars(client)  # the wrapper removed itself


async def test_fast_opened_links_carry_messages_on_the_bus(bus: Any, fresh_queue: str) -> None:
    """The worker's links (receiver, control, reply sender) opened through link_open work on the
    real SDK against the bus, with no fallback, and their clients poll the SDK's way once open."""
    from azure.servicebus import ServiceBusMessage

    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        before = sdk_hooks.fallback_counts()
        sender = link_open.fast_open_sender(client, fresh_queue)
        receiver = client.get_queue_receiver(fresh_queue, prefetch_count=10, socket_timeout=0.02)
        assert link_open.fast_open(receiver)
        assert "_create_handler" in vars(sender) and "_create_handler" in vars(receiver)
        async with sender, receiver:
            for link in (sender, receiver):
                assert "client_ready_async" not in vars(link._handler)  # type: ignore[attr-defined]
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
            received: list[Any] = []
            while len(received) < 3:
                received += await receiver.receive_messages(max_message_count=3, max_wait_time=5)
            for message in received:
                await receiver.complete_message(message)
        assert sorted(str(m) for m in received) == ["m0", "m1", "m2"]
        assert sdk_hooks.fallback_counts() == before
