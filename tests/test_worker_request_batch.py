"""Many requests in one message (issue 16), against the real local bus and Triton.

One request-batch message whose items include bad ones among good ones: every good item gets
exactly one ok reply, every bad item one error reply with its contract code, and the message is
completed once (not redelivered, not dead-lettered). An unreadable body dead-letters the
whole message.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np

from qscore.contracts import (
    ACCEPT_PROPERTY,
    BINARY_REPLY_CONTENT_TYPE,
    REQUEST_BATCH_CONTENT_TYPE,
    ErrorCode,
    ReplyStatus,
)
from qscore_local.bus.stats import queue_counts
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    dead_letters,
    digits_request,
    running_worker,
    send_requests,
)


def _item(request_id: str, body: str | dict[str, Any], **fields: Any) -> dict[str, Any]:
    item = json.loads(body) if isinstance(body, str) else dict(body)
    return {**item, "request_id": request_id, **fields}


def _good(request_id: str, seed: int) -> dict[str, Any]:
    pixels = np.random.default_rng(seed).uniform(0, 16, (2, 64))
    return _item(request_id, digits_request(pixels))


def _batch_message(message_id: str, session_id: str, items: list[Any]) -> OutgoingRequest:
    body = json.dumps({"schema_version": "1", "items": items})
    return OutgoingRequest(message_id, body, session_id=session_id, content_type=REQUEST_BATCH_CONTENT_TYPE)


async def test_bad_items_get_their_own_error_and_batch_mates_are_scored(
    bus: Any, replies: ReplyCollector, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    bad_shape = _item("bad-shape", digits_request(np.zeros((1, 64))))
    bad_shape["inputs"]["pixels"]["shape"] = [1, 63]
    items = [
        _good("good-0", 0),
        _item("unknown-model", digits_request(np.zeros((1, 64)), model="nope")),
        _good("good-1", 1),
        bad_shape,
        {"request_id": "schema", "model": "digits"},  # no inputs
        _item("expired", digits_request(np.zeros((1, 64)), deadline="2000-01-01T00:00:00Z")),
        _good("good-2", 2),
    ]
    broken = _batch_message("broken", replies.session_id, [{"model": "digits"}])  # an item without an id
    settings = worker_settings(request_queue=fresh_queue, max_batch_delay_ms=20)
    async with running_worker(settings):
        await send_requests(
            bus.connection_string, fresh_queue, [_batch_message("batch-1", replies.session_id, items), broken]
        )
        await replies.collect(len(items), timeout_s=30, settle_s=0.5)  # a redelivery would show
        dead = await dead_letters(bus.connection_string, fresh_queue, wait_s=0.5)
    assert all(len(each) == 1 for each in replies.replies.values()), replies.replies
    assert set(replies.replies) == {item["request_id"] for item in items}
    assert len(replies.messages) == len(items)  # not asked for reply-batch messages: one reply each
    for name in ("good-0", "good-1", "good-2"):
        reply = replies.first(name)
        assert reply.status == ReplyStatus.OK
        assert reply.output_arrays()["label"].shape == (2, 1)
    codes = {name: replies.first(name).error for name in ("unknown-model", "bad-shape", "schema", "expired")}
    assert {name: error.code if error else None for name, error in codes.items()} == {
        "unknown-model": ErrorCode.UNKNOWN_MODEL,
        "bad-shape": ErrorCode.BAD_SHAPE,
        "schema": ErrorCode.SCHEMA_VIOLATION,
        "expired": ErrorCode.EXPIRED,
    }
    assert set(dead) == {"broken"} and dead["broken"].reason == ErrorCode.SCHEMA_VIOLATION
    assert "request_id" in (dead["broken"].description or "")
    counts = (await queue_counts(bus.connection_string))[fresh_queue]
    assert counts.active == 0 and counts.locked == 0


async def test_items_of_a_batch_that_accepts_binary_get_binary_replies(
    bus: Any, replies: ReplyCollector, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    """The message's `accept` holds for each item's reply, error replies included."""
    items = [_good("binary-0", 3), _item("binary-bad", digits_request(np.zeros((1, 64)), model="nope"))]
    message = _batch_message("batch-binary", replies.session_id, items)
    message = replace(message, properties={ACCEPT_PROPERTY: BINARY_REPLY_CONTENT_TYPE})
    async with running_worker(worker_settings(request_queue=fresh_queue, max_batch_delay_ms=20)):
        await send_requests(bus.connection_string, fresh_queue, [message])
        await replies.collect(len(items), timeout_s=30)
    assert replies.content_types == {BINARY_REPLY_CONTENT_TYPE}
    assert replies.first("binary-0").output_arrays()["label"].shape == (2, 1)
    error = replies.first("binary-bad").error
    assert error is not None and error.code == ErrorCode.UNKNOWN_MODEL
