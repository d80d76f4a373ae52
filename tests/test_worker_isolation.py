"""One request's failure stays that request's (issue 10), against the real local bus and Triton.

The mixed batch: three valid requests, one whose reply cannot be delivered, three more valid
ones, sent in ONE send_messages call and scored as one micro-batch. Every valid request gets
exactly one ok reply; the bad one is dead-lettered on its first delivery with a contract reason:
at intake when the address is judged bad there (`reply_to_not_allowed`, `no_reply_session`), or
from the reply send when only the broker can tell (`reply_undeliverable`, the broker's words).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from qscore.contracts import ErrorCode, ReplyStatus
from qscore.inference import TritonClient
from qscore.transport import ReplySender, SendFailure
from qscore_local.bus.stats import queue_counts
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    SlowBackend,
    WorkerSettingsFactory,
    dead_letters,
    digits_request,
    running_worker,
    send_requests,
)

MISSING_QUEUE = "no-such-reply-queue"
SESSION_QUEUE = "test-sessions"  # a second session-enabled queue on the session bus


def _mixed_batch(session_id: str, bad: OutgoingRequest, prefix: str) -> list[OutgoingRequest]:
    rng = np.random.default_rng(3)

    def valid(name: str) -> OutgoingRequest:
        return OutgoingRequest(name, digits_request(rng.uniform(0, 16, (1, 64))), session_id=session_id)

    return [*(valid(f"{prefix}-a{i}") for i in range(3)), bad, *(valid(f"{prefix}-b{i}") for i in range(3))]


def _valid_names(prefix: str) -> set[str]:
    return {f"{prefix}-{side}{i}" for side in "ab" for i in range(3)}


def _replied_once(collector: ReplyCollector, names: set[str]) -> bool:
    found = {name: collector.replies.get(name, []) for name in names}
    return all(len(each) == 1 and each[0].status == ReplyStatus.OK for each in found.values())


@dataclass
class CountingWorker:
    """A worker on `queue` whose Triton calls are counted (to see that a batch stayed one batch)."""

    bus: Any
    queue: str
    backend: SlowBackend

    async def mixed_batch(self, replies: ReplyCollector, bad: OutgoingRequest, prefix: str) -> int:
        """Send the mixed batch in one send_messages call; wait for its six replies; Triton calls."""
        calls = self.backend.calls
        await send_requests(
            self.bus.connection_string, self.queue, _mixed_batch(replies.session_id, bad, prefix)
        )
        await replies.collect(len(replies.replies) + 6, timeout_s=30, settle_s=0.5)  # a redelivery would show
        return self.backend.calls - calls


@contextlib.asynccontextmanager
async def _counting_worker(bus: Any, triton: Any, settings: Any) -> AsyncIterator[CountingWorker]:
    client = TritonClient(triton.grpc_url)
    backend = SlowBackend(client, delay_s=0.0)
    try:
        async with running_worker(settings, backend=backend):
            yield CountingWorker(bus, settings.request_queue, backend)
    finally:
        await client.close()
    counts = (await queue_counts(bus.connection_string))[settings.request_queue]
    assert counts.active == 0 and counts.locked == 0


def _batched(**overrides: Any) -> dict[str, Any]:
    # prefetch 0: one receive takes the whole batch; the delay gathers it into one Triton call.
    return {"prefetch": 0, "max_batch_delay_ms": 300, **overrides}


# A mixed batch's 7 rows close its batch when all are in (size, not a timer), so it is one Triton
# call however slowly a loaded machine hands the worker its messages; a batch of fewer rows
# (its bad request refused at intake) closes on the 2 s timer.
WHOLE_MIXED_BATCH = {"max_batch_size": 7, "max_batch_delay_ms": 2000}


async def test_mixed_batches_answer_every_valid_request_once(
    bus: Any, triton: Any, replies: ReplyCollector, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    """Three mixed batches through one worker: a reply queue that does not exist (allowed by the
    operator, so only the broker can tell), the session reply queue without a session, and a
    queue outside the allow-list."""
    missing = OutgoingRequest(
        "missing", digits_request(np.zeros((1, 64))), reply_to=MISSING_QUEUE, session_id="s"
    )
    no_session = OutgoingRequest("no-session", digits_request(np.zeros((1, 64))), reply_to="scoring-replies")
    unlisted = OutgoingRequest(
        "unlisted", digits_request(np.zeros((1, 64))), reply_to="elsewhere", session_id="s"
    )
    settings = worker_settings(
        request_queue=fresh_queue,
        allowed_reply_queues=f"scoring-replies,{MISSING_QUEUE}",
        **_batched(**WHOLE_MIXED_BATCH),
    )
    async with _counting_worker(bus, triton, settings) as worker:
        assert await worker.mixed_batch(replies, missing, "m") == 1  # the bad one shared the Triton call
        await worker.mixed_batch(replies, no_session, "s")
        await worker.mixed_batch(replies, unlisted, "u")
        dead = await dead_letters(bus.connection_string, fresh_queue, wait_s=0.5, expect=3)
    assert set(replies.replies) == _valid_names("m") | _valid_names("s") | _valid_names("u")
    assert _replied_once(replies, set(replies.replies))
    assert {name: letter.reason for name, letter in dead.items()} == {
        "missing": ErrorCode.REPLY_UNDELIVERABLE,
        "no-session": ErrorCode.NO_REPLY_SESSION,
        "unlisted": ErrorCode.REPLY_TO_NOT_ALLOWED,
    }
    assert all((letter.delivery_count or 0) <= 1 for letter in dead.values())  # first delivery
    missing_words = dead["missing"].description or ""
    assert MISSING_QUEUE in missing_words and "could not be found" in missing_words  # the broker's words
    assert "reply_to_session_id" in (dead["no-session"].description or "")
    assert "QSCORE_ALLOWED_REPLY_QUEUES" in (dead["unlisted"].description or "")


async def test_broker_refusals_and_transient_failures_hit_only_their_requests(
    bus: Any,
    triton: Any,
    replies: ReplyCollector,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker told its reply queues are plain: the broker refuses the session-less reply of the
    mixed batch. Then a transient failure on one reply queue: only its requests come back."""
    other = ReplyCollector(bus.connection_string, queue=SESSION_QUEUE)
    deliver_to = ReplySender._deliver_to
    failed_once: list[int] = []

    async def flaky(self: ReplySender, queue: str, indexed: Any) -> dict[int, SendFailure]:
        if queue == SESSION_QUEUE and not failed_once:  # like a dropped connection to that queue
            failed_once.append(len(indexed))
            return {index: SendFailure(permanent=False, detail="connection lost") for index, _ in indexed}
        return await deliver_to(self, queue, indexed)

    monkeypatch.setattr(ReplySender, "_deliver_to", flaky)
    rng = np.random.default_rng(4)
    mixed_queues = [
        OutgoingRequest(
            f"{queue}-{i}",
            digits_request(rng.uniform(0, 16, (1, 64))),
            reply_to=queue,
            session_id=collector.session_id,
        )
        for queue, collector in (("scoring-replies", replies), (SESSION_QUEUE, other))
        for i in range(3)
    ]
    bad = OutgoingRequest("bad", digits_request(np.zeros((1, 64))), reply_to="scoring-replies")
    settings = worker_settings(
        request_queue=fresh_queue,
        reply_sessions_required=False,
        allowed_reply_queues=f"scoring-replies,{SESSION_QUEUE}",
        **_batched(**WHOLE_MIXED_BATCH),
    )
    try:
        async with _counting_worker(bus, triton, settings) as worker:
            assert await worker.mixed_batch(replies, bad, "r") == 1
            await send_requests(bus.connection_string, fresh_queue, mixed_queues)
            await other.collect(3, timeout_s=30, settle_s=0.5)
            await replies.collect(9, timeout_s=10, settle_s=0.5)
            dead = await dead_letters(bus.connection_string, fresh_queue, wait_s=0.5)
    finally:
        await other.close()
    assert set(dead) == {"bad"} and dead["bad"].reason == ErrorCode.REPLY_UNDELIVERABLE
    assert "requires sessions" in (dead["bad"].description or "")
    assert failed_once == [3]  # the three replies to the other queue failed once, and came back
    assert set(replies.replies) == _valid_names("r") | {f"scoring-replies-{i}" for i in range(3)}
    assert set(other.replies) == {f"{SESSION_QUEUE}-{i}" for i in range(3)}
    assert _replied_once(replies, set(replies.replies)) and _replied_once(other, set(other.replies))


async def test_the_deadline_is_checked_again_before_triton_and_bounds_its_timeout(
    bus: Any,
    triton: Any,
    replies: ReplyCollector,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No race with the machine's speed: the check before the Triton call reads a clock moved
    SKEW_S ahead (as if the batch had waited that long), so `soon`, valid by 30 s at intake,
    has expired there, and `later` has not; the recheck itself records whom it caught."""
    from datetime import UTC, datetime, timedelta

    import workers.pipeline
    from qscore.scoring import split_expired

    skew_s = 60.0
    caught_late: list[str] = []

    def recheck_later(items: Any, *, now: float | None = None) -> Any:
        live, late = split_expired(items, now=(time.time() if now is None else now) + skew_s)
        caught_late.extend(item.request_id for item, _ in late)
        return live, late

    monkeypatch.setattr(workers.pipeline, "split_expired", recheck_later)
    client = TritonClient(triton.grpc_url)
    backend = SlowBackend(client, delay_s=0.0)  # records each call's timeout
    # A fixed delay (not adaptive batching, which would send at once): the timeout is the time
    # left less at least these 1.5 s of waiting.
    settings = worker_settings(
        request_queue=fresh_queue, prefetch=0, max_batch_delay_ms=1500, adaptive_batching=False
    )
    try:
        async with running_worker(settings, backend=backend) as state:
            while not state.connected:  # noqa: ASYNC110 (the worker's state has no event)
                await asyncio.sleep(0.05)
            soon = datetime.now(UTC) + timedelta(seconds=skew_s / 2)
            later = datetime.now(UTC) + timedelta(seconds=2 * skew_s)
            requests = [
                OutgoingRequest(
                    "soon", digits_request(np.zeros((1, 64)), deadline=soon), session_id=replies.session_id
                ),
                OutgoingRequest(
                    "later", digits_request(np.zeros((1, 64)), deadline=later), session_id=replies.session_id
                ),
            ]
            await send_requests(bus.connection_string, fresh_queue, requests)
            await replies.collect(2, timeout_s=30, settle_s=0.5)
    finally:
        await client.close()
    soon_reply = replies.first("soon")
    assert soon_reply.status == ReplyStatus.ERROR and soon_reply.error is not None
    assert soon_reply.error.code == ErrorCode.EXPIRED
    # Accepted at intake (its deadline was 30 s away): the check right before the Triton call caught it.
    assert caught_late == ["soon"]
    assert replies.first("later").status == ReplyStatus.OK
    assert {name: len(found) for name, found in replies.replies.items()} == {"soon": 1, "later": 1}
    # One Triton call, for `later` alone, bounded by the time it had left (120 s less the waits).
    assert len(backend.timeouts) == 1
    assert backend.timeouts[0] is not None and 90 < backend.timeouts[0] < 2 * skew_s - 1
