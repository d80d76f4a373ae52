"""Reply time-to-live: derived from the request's deadline (floor, margin, ceiling; a default
without one), carried on the reply as the real SDK receives it from the local bus, and honoured
by the broker (an expired reply is never delivered)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qscore.contracts import ReplyStatus, ScoreReply
from qscore.settings import SettingsError
from qscore.transport import ReplyAddress, ReplyLifetime, ReplySender, with_deadline
from qscore.transport.reply_ttl import REPLY_TTL_ENV


def _reply(request_id: str) -> ScoreReply:
    return ScoreReply(request_id=request_id, status=ReplyStatus.OK, model="m")


def test_lifetime_follows_the_deadline_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    lifetime = ReplyLifetime(default_s=3600, margin_s=300, floor_s=60, ceiling_s=86_400)
    assert lifetime.seconds(None, now=1000.0) == 3600  # no deadline: the default
    assert lifetime.seconds(1000.0 + 120, now=1000.0) == 420  # time left + margin
    assert lifetime.seconds(1000.0 - 10_000, now=1000.0) == 60  # long past: the floor
    assert lifetime.seconds(1000.0 + 10**7, now=1000.0) == 86_400  # far away: the ceiling
    monkeypatch.setenv(REPLY_TTL_ENV, "90")
    assert ReplyLifetime.from_env().seconds(1000.0 + 120, now=1000.0) == 90  # one TTL for all
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv(REPLY_TTL_ENV, bad)
        with pytest.raises(SettingsError, match="QSCORE_REPLY_TTL_S must be a positive number"):
            ReplyLifetime.from_env()


def test_with_deadline_reads_naive_times_as_utc() -> None:
    moment = datetime(2026, 12, 7, 12, 0, 0)
    address = with_deadline(ReplyAddress("q"), moment)
    assert address.deadline == moment.replace(tzinfo=UTC).timestamp()
    assert with_deadline(ReplyAddress("q"), None).deadline is None


async def _receive(client: Any, queue: str, wanted: set[str], max_wait_s: float) -> dict[str, Any]:
    from azure.servicebus import ServiceBusReceiveMode

    received: dict[str, Any] = {}
    receiver = client.get_queue_receiver(queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
    async with receiver:
        while len(received) < len(wanted) and (
            batch := await receiver.receive_messages(10, max_wait_time=max_wait_s)
        ):
            received.update({str(m.correlation_id): m for m in batch if str(m.correlation_id) in wanted})
    return received


async def test_replies_carry_their_ttl_and_expire_on_the_bus(bus: Any, fresh_queue: str) -> None:
    from azure.servicebus.aio import ServiceBusClient

    lifetime = ReplyLifetime(default_s=3600, margin_s=300, floor_s=60, ceiling_s=86_400)
    deadline = datetime.now(UTC) + timedelta(seconds=600)
    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        sender = ReplySender(client, lifetime=lifetime)
        short = ReplySender(client, lifetime=ReplyLifetime(fixed_s=0.2))
        try:
            failures = await sender.deliver(
                [
                    (with_deadline(ReplyAddress(fresh_queue), deadline), _reply("timed")),
                    (ReplyAddress(fresh_queue), _reply("untimed")),
                ]
            )
            failures += await short.deliver([(ReplyAddress(fresh_queue), _reply("short"))])
        finally:
            await sender.close()
            await short.close()
        assert failures == [None, None, None]
        await asyncio.sleep(1.0)  # well past the short reply's 0.2 s: the broker expires it
        received = await _receive(client, fresh_queue, {"timed", "untimed", "short"}, max_wait_s=2)
    assert set(received) == {"timed", "untimed"}
    timed = received["timed"].time_to_live.total_seconds()
    assert 600 + 300 - 60 <= timed <= 600 + 300  # the deadline's time left + the margin
    assert received["untimed"].time_to_live == timedelta(seconds=3600)
