"""The replies of a request-batch message's items in reply-batch messages (issue 23, item 4).

First the contract's rule (`reply_messages`: which replies share a message, split by size) and
its form, then both runtimes for real (the worker on the local bus with Triton, the Functions
app in-process): a request-batch message whose `accept` asks for reply-batch messages gets its
items' replies, good and bad, in a few reply messages instead of one each, every item answered
once with its own outcome; without the opt-in, one reply message per item as before.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from functions.runtime import ScoringRuntime
from qscore.contracts import (
    ACCEPT_PROPERTY,
    BINARY_REPLY_CONTENT_TYPE,
    REPLY_BATCH_CONTENT_TYPE,
    REPLY_CONTENT_TYPE,
    REQUEST_BATCH_CONTENT_TYPE,
    ErrorCode,
    ReplyStatus,
    ScoreReply,
    accepts_reply_batch,
    decode_reply_batch,
)
from qscore.contracts.reply_batch import REPLY_BATCH_FRAME_BYTES, encode_reply_batch, reply_messages
from qscore.scoring import reply_batch_of
from qscore.transport import ReplyAddress
from qscore.transport.reply_batches import PROPERTY_ROOM_BYTES, plan_reply_messages
from qscore_local.functions_host.driver import InProcessDriver
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    digits_request,
    running_worker,
    send_requests,
)


def _reply(request_id: str) -> ScoreReply:
    return ScoreReply(request_id=request_id, model="digits", status=ReplyStatus.OK)


def test_replies_of_one_key_share_messages_in_order_and_others_go_alone() -> None:
    keys = ["a", None, "a", "b", "a", "c"]  # "b" and "c" have one reply each: they go alone
    entries = {index: f'{{"i":{index}}}'.encode() for index in range(len(keys))}
    plans = reply_messages(keys, entry_of=entries.__getitem__, max_body_bytes=10_000)
    assert [plan.indexes for plan in plans] == [[0, 2, 4], [1], [3], [5]]
    assert plans[0].body == encode_reply_batch([entries[0], entries[2], entries[4]])
    assert all(plan.body is None for plan in plans[1:])


def test_a_reply_batch_is_split_where_the_body_would_pass_the_limit() -> None:
    entry = b"x" * 100
    # Room for exactly three entries (and two commas) in one body.
    limit = REPLY_BATCH_FRAME_BYTES + 3 * len(entry) + 2
    plans = reply_messages(["k"] * 7, entry_of=lambda _: entry, max_body_bytes=limit)
    assert [plan.indexes for plan in plans] == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(plan.body is not None and len(plan.body) <= limit for plan in plans[:2])
    assert plans[2].body is None  # the last one alone: the single-reply form
    # A reply too large to share anything goes alone (by reference, or refused as too large).
    sizes = [10, 500, 10]
    plans = reply_messages(["k"] * 3, entry_of=lambda i: b"x" * sizes[i], max_body_bytes=200)
    assert [plan.indexes for plan in plans] == [[0, 2], [1]]


def test_addresses_decide_the_key_and_the_limit_leaves_room_for_properties() -> None:
    batch = ReplyAddress("replies", "s1", reply_batch="msg-1")
    replies = [
        (batch, _reply("r0")),
        (replace(batch, session_id="s2"), _reply("r1")),  # another session: another message
        (batch, _reply("r2")),
        (ReplyAddress("replies", "s1"), _reply("r3")),  # did not ask
        (replace(batch, session_id="s2"), _reply("r4")),
    ]
    plans = plan_reply_messages(replies, link_max_bytes={"replies": PROPERTY_ROOM_BYTES + 10_000})
    assert [plan.indexes for plan in plans] == [[0, 2], [1, 4], [3]]
    assert [reply.request_id for reply in decode_reply_batch(plans[0].body or b"")] == ["r0", "r2"]
    # Under a claim-check threshold the bodies stay under it (so they always go inline).
    small = plan_reply_messages(replies, link_max_bytes={}, claim_threshold_bytes=10)
    assert all(plan.body is None for plan in small)


def test_the_opt_in_is_the_accept_property_of_a_request_batch_message() -> None:
    both = f"{REPLY_BATCH_CONTENT_TYPE}, {BINARY_REPLY_CONTENT_TYPE}"
    assert accepts_reply_batch(both) and not accepts_reply_batch(BINARY_REPLY_CONTENT_TYPE)
    assert reply_batch_of("msg-1", both) == "msg-1"
    assert reply_batch_of("msg-1", None) is None and reply_batch_of("msg-1", REPLY_CONTENT_TYPE) is None
    assert reply_batch_of(None, both) is None  # a single request: always its own reply message


def test_a_reply_batch_body_is_read_leniently_and_refused_when_it_is_not_one() -> None:
    body = (
        b'{"schema_version":"1","later":1,"replies":[{"request_id":"a","model":"m","status":"ok","new":2}]}'
    )
    assert [reply.request_id for reply in decode_reply_batch(body)] == ["a"]
    for bad in (b"[]", b'{"replies": []}', b'{"replies": [1]}', b"not json"):
        with pytest.raises(ValueError):
            decode_reply_batch(bad)


GOOD = [f"rb-good-{index}" for index in range(5)]
BAD = {
    "rb-unknown-model": ErrorCode.UNKNOWN_MODEL,
    "rb-schema": ErrorCode.SCHEMA_VIOLATION,
    "rb-expired": ErrorCode.EXPIRED,
}


def _batch(message_id: str, session_id: str, *, opt_in: bool) -> OutgoingRequest:
    """Its items' request ids are GOOD and BAD's with the message id in front (unique: the two
    messages of a run may share one orchestration)."""
    pixels = np.zeros((1, 64), np.float32)
    items: list[dict[str, Any]] = [
        {**json.loads(digits_request(np.full((1, 64), float(index)))), "request_id": f"{message_id}/{name}"}
        for index, name in enumerate(GOOD)
    ]
    unknown = json.loads(digits_request(pixels, model="nope"))
    items.insert(1, {**unknown, "request_id": f"{message_id}/rb-unknown-model"})
    items.insert(3, {"request_id": f"{message_id}/rb-schema", "model": "digits"})  # no inputs
    expired = json.loads(digits_request(pixels, deadline="2020-01-01T00:00:00Z"))
    items.append({**expired, "request_id": f"{message_id}/rb-expired"})
    body = json.dumps({"schema_version": "1", "items": items})
    message = OutgoingRequest(
        message_id, body, session_id=session_id, content_type=REQUEST_BATCH_CONTENT_TYPE
    )
    if opt_in:  # as the producer asks: reply-batch messages, and a reply alone in binary
        accept = f"{REPLY_BATCH_CONTENT_TYPE}, {BINARY_REPLY_CONTENT_TYPE}"
        message = replace(message, properties={ACCEPT_PROPERTY: accept})
    return message


def _check_outcomes(replies: ReplyCollector, message_id: str) -> dict[str, tuple[str, str]]:
    """Each item answered once with its own outcome; {item name: (status, code)}."""
    assert all(len(each) == 1 for each in replies.replies.values()), replies.replies  # once each
    assert set(replies.replies) == {f"{message_id}/{name}" for name in [*GOOD, *BAD]}
    for name in GOOD:
        reply = replies.first(f"{message_id}/{name}")
        assert reply.status == ReplyStatus.OK and reply.output_arrays()["label"].shape == (1, 1)
    for name, code in BAD.items():
        error = replies.first(f"{message_id}/{name}").error
        assert error is not None and error.code == code, (name, error)
    return {
        request_id.split("/", 1)[1]: (str(got[0].status), str(got[0].error.code) if got[0].error else "")
        for request_id, got in replies.replies.items()
    }


def _labels(replies: ReplyCollector, message_id: str) -> dict[str, list[int]]:
    """Each good item's label: aligned, it is the label of its own pixels."""
    return {
        name: replies.first(f"{message_id}/{name}").output_arrays()["label"].ravel().tolist() for name in GOOD
    }


async def test_items_replies_share_reply_batch_messages_in_both_runtimes(
    bus: Any,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    functions_app: Any,
    functions_runtime: ScoringRuntime,
) -> None:
    items = len(GOOD) + len(BAD)
    found: dict[str, dict[str, tuple[str, str]]] = {}
    labels: dict[str, dict[str, list[int]]] = {}
    for runtime in ("worker", "functions"):
        opted, plain = ReplyCollector(bus.connection_string), ReplyCollector(bus.connection_string)
        sent = [
            _batch(f"rb-{runtime}-on", opted.session_id, opt_in=True),
            _batch(f"rb-{runtime}-off", plain.session_id, opt_in=False),
        ]
        await send_requests(bus.connection_string, fresh_queue, sent)
        if runtime == "worker":
            async with running_worker(worker_settings(request_queue=fresh_queue, max_batch_delay_ms=100)):
                await opted.collect(items, timeout_s=30, settle_s=0.5)  # a redelivery would show
                await plain.collect(items, timeout_s=30, settle_s=0.2)
        else:
            functions_runtime.settings = replace(functions_runtime.settings, request_queue=fresh_queue)
            async with (
                InProcessDriver(functions_app, functions_runtime, max_batch=64, max_wait_s=2) as driver,
                functions_runtime.servicebus.get_queue_receiver(fresh_queue) as receiver,
            ):
                stats = await driver.run_until_idle(connection_receiver=receiver)
            assert all(r.status == "Completed" for r in stats.instances), [r.error for r in stats.instances]
            await opted.collect(items, timeout_s=30, settle_s=0.5)
            await plain.collect(items, timeout_s=30, settle_s=0.2)
        await opted.close()
        await plain.close()
        found[runtime] = _check_outcomes(opted, f"rb-{runtime}-on")
        assert _check_outcomes(plain, f"rb-{runtime}-off") == found[runtime], runtime
        labels[runtime] = _labels(opted, f"rb-{runtime}-on")
        assert labels[runtime] == _labels(plain, f"rb-{runtime}-off"), runtime
        # Opted in: the items' replies share reply-batch messages correlated with the message.
        batches = [m for m in opted.messages if m[0] == REPLY_BATCH_CONTENT_TYPE]
        assert all(correlation == f"rb-{runtime}-on" for _, correlation, _ in batches), opted.messages
        assert sum(count for *_, count in opted.messages) == items
        if runtime == "functions":  # one reply step for the whole orchestration: one message
            assert opted.messages == [(REPLY_BATCH_CONTENT_TYPE, "rb-functions-on", items)]
        else:  # the bad items answered at intake share one; the scored ones as the micro-batches go
            assert (REPLY_BATCH_CONTENT_TYPE, "rb-worker-on", len(BAD)) in opted.messages, opted.messages
            assert len(opted.messages) < items, opted.messages
        # Not opted in: one reply message per item, as before.
        assert len(plain.messages) == items and all(count == 1 for *_, count in plain.messages)
        assert REPLY_BATCH_CONTENT_TYPE not in plain.content_types
    assert found["worker"] == found["functions"] and labels["worker"] == labels["functions"]


async def test_the_sender_splits_by_the_links_max_size_and_fails_a_shared_message_for_all(bus: Any) -> None:
    """On the local bus: a queue of 4 KiB messages gets several reply-batch messages, each within
    it, carrying every reply once; a queue that does not exist refuses every reply of one."""
    from azure.servicebus import ServiceBusReceiveMode
    from azure.servicebus.aio import ServiceBusClient

    from qscore.contracts import ReplyError
    from qscore.transport import ReplySender

    small_queue, batch_id = "test-small", f"rb-split-{uuid.uuid4().hex[:8]}"  # 4 KiB messages

    def reply(index: int) -> ScoreReply:
        error = ReplyError(code=ErrorCode.BAD_SHAPE, message="x" * 700)
        return ScoreReply(
            request_id=f"{batch_id}/{index}", model="digits", status=ReplyStatus.ERROR, error=error
        )

    address = ReplyAddress(small_queue, reply_batch=batch_id)
    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        sender = ReplySender(client)
        try:
            failures = await sender.deliver([(address, reply(index)) for index in range(10)])
            gone = replace(address, queue="no-such-queue")
            refused = await sender.deliver([(gone, reply(index)) for index in range(3)])
        finally:
            await sender.close()
        received: list[tuple[int, list[str]]] = []
        receiver = client.get_queue_receiver(
            small_queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
        )
        async with receiver:  # the queue is shared with other tests: count only this test's
            while sum(len(ids) for _, ids in received) < 10 and (
                batch := await receiver.receive_messages(20, max_wait_time=3)
            ):
                for message in batch:
                    body = b"".join(message.body)
                    if message.correlation_id == batch_id:
                        ids = [each.request_id for each in decode_reply_batch(body)]
                        received.append((len(body), ids))
                    elif str(message.correlation_id).startswith(f"{batch_id}/"):  # one left alone
                        received.append((len(body), [ScoreReply.model_validate_json(body).request_id]))
    assert failures == [None] * 10
    assert sorted(i for _, ids in received for i in ids) == sorted(f"{batch_id}/{i}" for i in range(10))
    assert len(received) > 1 and all(size <= 4096 for size, _ in received), received
    assert all(failure is not None and failure.permanent for failure in refused)
    assert len({failure.detail for failure in refused if failure}) == 1  # one message: one refusal
