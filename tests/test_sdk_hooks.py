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
from qscore.transport import sdk_hooks
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
