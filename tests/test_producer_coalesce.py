"""Producer-side coalescing (issue 16): unit tests of the grouping, then one real-bus run
through the real worker and Triton."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from qscore.contracts import ErrorCode, decode_batch
from qscore.producer import OutgoingRequest, ProducerSettings, ScoringError, ScoringProducer
from qscore.producer.coalesce import Coalescer, PendingCall, batch_body, batch_item
from tests.fixtures.worker import WorkerSettingsFactory, running_worker


def _request(model: str = "digits", rows: int = 1, version: str | None = None) -> OutgoingRequest:
    return OutgoingRequest.build(model, {"pixels": np.ones((rows, 64), np.float32)}, version=version)


class _Flushes:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.groups: list[tuple[str, list[PendingCall]]] = []
        self.fail = fail

    async def __call__(self, lane: str, calls: list[PendingCall]) -> None:
        self.groups.append((lane, calls))
        if self.fail is not None:
            raise self.fail


async def test_calls_within_the_linger_form_one_group_per_model_version_and_lane() -> None:
    flushes = _Flushes()
    coalescer = Coalescer(flush=flushes, linger_s=0.05, max_rows=100, max_bytes=1_000_000)
    for request in [_request(), _request(), _request(version="2"), _request("other")]:
        coalescer.submit(request, lane="low", timeout_s=1)
    coalescer.submit(_request(), lane="high", timeout_s=1)
    assert flushes.groups == []  # still lingering
    await asyncio.sleep(0.1)
    sizes = sorted((lane, len(calls)) for lane, calls in flushes.groups)
    assert sizes == [("high", 1), ("low", 1), ("low", 1), ("low", 2)]


async def test_a_group_is_sent_when_full_by_rows_or_bytes() -> None:
    flushes = _Flushes()
    by_rows = Coalescer(flush=flushes, linger_s=10, max_rows=4, max_bytes=1_000_000)
    for _ in range(2):
        by_rows.submit(_request(rows=2), lane="q", timeout_s=1)
    await asyncio.sleep(0)
    assert [len(calls) for _, calls in flushes.groups] == [2]  # 4 rows: sent without lingering
    item_size = len(batch_item(_request()))
    by_bytes = Coalescer(flush=flushes, linger_s=10, max_rows=100, max_bytes=int(item_size * 2.5))
    for _ in range(3):  # the third does not fit: the first two go
        by_bytes.submit(_request(), lane="q", timeout_s=1)
    await asyncio.sleep(0)
    assert [len(calls) for _, calls in flushes.groups] == [2, 2]
    await by_bytes.close()  # sends the one still lingering
    assert [len(calls) for _, calls in flushes.groups] == [2, 2, 1]


async def test_a_group_lingering_out_while_its_lane_sends_gathers_until_that_send_ends() -> None:
    release = asyncio.Event()
    groups: list[tuple[str, int]] = []

    async def flush(lane: str, calls: list[PendingCall]) -> None:
        groups.append((lane, len(calls)))
        if len(groups) == 1:
            await release.wait()  # the first send stays in flight

    coalescer = Coalescer(flush=flush, linger_s=0.01, max_rows=100, max_bytes=1_000_000)
    coalescer.submit(_request(), lane="q", timeout_s=1)
    await asyncio.sleep(0.05)  # lingered out and sent: in flight
    for _ in range(2):
        coalescer.submit(_request(), lane="q", timeout_s=1)
    coalescer.submit(_request(), lane="other", timeout_s=1)  # another lane is not held
    await asyncio.sleep(0.05)  # their linger is over: "q"'s group is held, "other"'s goes
    coalescer.submit(_request(), lane="q", timeout_s=1)  # joins the held group
    assert groups == [("q", 1), ("other", 1)]
    release.set()
    await asyncio.sleep(0.01)
    assert groups == [("q", 1), ("other", 1), ("q", 3)]
    await coalescer.close()


async def test_a_failed_send_reaches_every_caller_of_its_group_only() -> None:
    flushes = _Flushes(fail=ConnectionError("broker gone"))
    coalescer = Coalescer(flush=flushes, linger_s=0.01, max_rows=100, max_bytes=1_000_000)
    outcomes = [coalescer.submit(_request(), lane="q", timeout_s=1) for _ in range(3)]
    for outcome in outcomes:
        with pytest.raises(ConnectionError):
            await outcome


def test_the_batch_body_is_a_valid_request_batch() -> None:
    requests = [_request(), _request(rows=3)]

    decoded = decode_batch(batch_body([batch_item(request) for request in requests]))
    assert [item.request_id for item in decoded] == [request.request_id for request in requests]
    assert all(item.violation is None for item in decoded)
    assert json.loads(batch_body([batch_item(requests[0])]))["schema_version"] == "1"


def test_the_switch_and_its_bounds_come_from_the_environment() -> None:
    settings = ProducerSettings.from_env(
        {"QSCORE_PRODUCER_COALESCE": "false", "QSCORE_PRODUCER_COALESCE_LINGER_MS": "5"}
    )
    assert settings.coalesce is False and settings.coalesce_linger_ms == 5
    assert ProducerSettings().coalesce is True
    assert (
        ProducerSettings().lane(9) == "scoring-requests-high"
        and ProducerSettings().lane(0) == "scoring-requests"
    )


async def test_concurrent_score_calls_share_messages_and_each_gets_its_own_outcome(
    bus: Any, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    settings = ProducerSettings(
        connection=bus.connection_string, request_queue=fresh_queue, reply_timeout_s=30, coalesce_linger_ms=50
    )
    rng = np.random.default_rng(7)
    pixels = [rng.uniform(0, 16, (1, 64)).astype(np.float32) for _ in range(24)]
    worker = running_worker(worker_settings(request_queue=fresh_queue))
    async with worker as state, ScoringProducer(settings=settings) as producer:
        calls = [producer.score("digits", {"pixels": each}) for each in pixels]
        bad = producer.score("digits", {"pixels": np.ones((1, 63), np.float32)}, raise_on_error=False)
        short = producer.score("digits", {"pixels": pixels[0]}, timeout_s=0.001, raise_on_error=False)
        raising = producer.score("digits", {"pixels": np.ones((1, 63), np.float32)})
        *outcomes, bad_outcome, short_outcome, raised = await asyncio.gather(
            *calls, bad, short, raising, return_exceptions=True
        )
    assert all(outcome.ok for outcome in outcomes)
    assert len({outcome.request_id for outcome in outcomes}) == len(pixels)
    assert all(outcome.reply and outcome.reply.request_id == outcome.request_id for outcome in outcomes)
    assert bad_outcome.reply is not None and bad_outcome.reply.error is not None
    assert bad_outcome.reply.error.code == ErrorCode.BAD_SHAPE
    assert not short_outcome.ok and short_outcome.reply is None  # its own timeout, not its group's
    # By default score() raises the error reply's code at once (issue 24), not a timeout.
    assert isinstance(raised, ScoringError) and raised.code == ErrorCode.BAD_SHAPE, raised
    assert state.counters.get("received", 0) < len(pixels)  # the calls shared messages
    # ... and their replies shared reply-batch messages (the producer asks for them).
    assert producer.stats.reply_messages < producer.stats.replied, producer.stats
