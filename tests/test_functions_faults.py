"""Fault injection on the Functions path (real Triton, real local bus, in-process driver): a reply
sink that fails and recovers, one that never recovers, a reply queue that does not exist, and a
failures queue that is down too. Every request ends as exactly one reply or one failure record."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from azure.servicebus.exceptions import ServiceBusConnectionError

from functions.runtime import ScoringRuntime
from qscore.contracts import ScoreReply
from qscore.transport import ReplyAddress, ReplySender
from qscore.transport.failures import FailureQueue, FailureRecord
from qscore.transport.replies import SendFailure, classify_send_error
from qscore_local.functions_host.driver import InProcessDriver
from qscore_local.functions_host.engine import InstanceRecord
from tests.fixtures.durable import collect_every_reply, digits_request, failure_records, send_requests


class FlakyReplies(ReplySender):
    """The real sender, except that the first `failures` sends fail as a lost connection does
    (None: every send), classified by the real classifier."""

    def __init__(self, real: ReplySender, failures: int | None) -> None:
        self._real = real
        self.failures = failures
        self.attempts = 0

    async def deliver(self, replies: Sequence[tuple[ReplyAddress, ScoreReply]]) -> list[SendFailure | None]:
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            failure = classify_send_error(ServiceBusConnectionError(message="injected: reply link is down"))
            assert not failure.permanent
            return [failure] * len(replies)
        return await self._real.deliver(replies)

    async def close(self) -> None:
        await self._real.close()


class DownFailureQueue(FailureQueue):
    def __init__(self) -> None:
        self.queue = "scoring-failures"
        self.attempts = 0

    async def record(self, records: Sequence[FailureRecord]) -> int:
        self.attempts += 1
        raise ServiceBusConnectionError(message="injected: failures queue is down")


async def run_one_batch(app: Any, runtime: ScoringRuntime) -> InstanceRecord:
    async with (
        InProcessDriver(app, runtime, max_batch=16, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver("scoring-requests") as receiver,
    ):
        record = await driver.run_batch(receiver)
    assert record is not None
    return record


@pytest.fixture
def requests() -> tuple[str, dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    return f"producer-{tag}", {f"fault-{tag}-{i}": digits_request(i + 1) for i in range(3)}


async def test_reply_sink_that_recovers_gives_exactly_one_reply(
    functions_app: Any, functions_runtime: ScoringRuntime, requests: tuple[str, dict[str, str]]
) -> None:
    session, bodies = requests
    attempts = functions_runtime.settings.retry.max_attempts
    flaky = FlakyReplies(functions_runtime.replies, failures=attempts - 1)
    functions_runtime.replies = flaky
    await send_requests(functions_runtime.servicebus, bodies, session, reply_to="scoring-replies")
    record = await run_one_batch(functions_app, functions_runtime)
    assert record.status == "Completed" and record.output["dead_lettered"] == 0
    assert flaky.attempts == attempts
    replies = await collect_every_reply(functions_runtime.servicebus, session, len(bodies))
    assert sorted(reply.request_id for reply in replies) == sorted(bodies)  # one each, no duplicate
    assert not await failure_records(functions_runtime.servicebus, set(bodies))


async def test_reply_sink_that_never_recovers_ends_on_the_failures_queue(
    functions_app: Any, functions_runtime: ScoringRuntime, requests: tuple[str, dict[str, str]]
) -> None:
    session, bodies = requests
    functions_runtime.replies = FlakyReplies(functions_runtime.replies, failures=None)
    await send_requests(functions_runtime.servicebus, bodies, session, reply_to="scoring-replies")
    record = await run_one_batch(functions_app, functions_runtime)
    assert record.status == "Completed" and record.output["dead_lettered"] == len(bodies)
    assert not await collect_every_reply(functions_runtime.servicebus, session, 0, tail_s=0.5)
    # Nothing is lost: each request is on the failures queue, as sent, with its reply address.
    failed = await failure_records(functions_runtime.servicebus, set(bodies))
    assert set(failed) == set(bodies)
    for message_id, item in failed.items():
        assert item.entity == "scoring-failures" and item.reason == "reply_undeliverable"
        assert "injected: reply link is down" in item.description
        assert item.body == bodies[message_id].encode()
        assert (item.reply_to, item.reply_to_session_id) == ("scoring-replies", session)


async def test_a_missing_reply_queue_costs_only_its_requests(
    functions_app: Any, functions_runtime: ScoringRuntime, requests: tuple[str, dict[str, str]]
) -> None:
    session, bodies = requests
    lost = {f"lost-{uuid.uuid4().hex[:8]}": digits_request(2)}
    # Allowed (else it is refused at intake, reply_to_not_allowed), but it does not exist.
    allowed = "scoring-replies,no-such-queue"
    functions_runtime.settings = replace(functions_runtime.settings, allowed_reply_queues=allowed)
    await send_requests(functions_runtime.servicebus, bodies, session, reply_to="scoring-replies")
    await send_requests(functions_runtime.servicebus, lost, session, reply_to="no-such-queue")
    record = await run_one_batch(functions_app, functions_runtime)
    assert record.status == "Completed"
    replies = await collect_every_reply(functions_runtime.servicebus, session, len(bodies))
    assert sorted(reply.request_id for reply in replies) == sorted(bodies)
    (failed,) = (await failure_records(functions_runtime.servicebus, set(lost))).values()
    assert failed.reason == "reply_undeliverable" and "no-such-queue" in failed.description


async def test_failures_queue_down_too_fails_the_orchestration_with_the_batch_kept(
    functions_app: Any, functions_runtime: ScoringRuntime, requests: tuple[str, dict[str, str]]
) -> None:
    session, bodies = requests
    functions_runtime.replies = FlakyReplies(functions_runtime.replies, failures=None)
    down = DownFailureQueue()
    functions_runtime.failures = down
    await send_requests(functions_runtime.servicebus, bodies, session, reply_to="scoring-replies")
    record = await run_one_batch(functions_app, functions_runtime)
    # The last resort: a Failed instance in the task hub, whose history holds the batch.
    assert record.status == "Failed" and down.attempts == functions_runtime.settings.retry.max_attempts
    assert all(message_id in (record.input_json or "") for message_id in bodies)
