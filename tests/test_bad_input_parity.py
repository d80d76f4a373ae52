"""One list of bad requests through both runtimes: the worker and the Functions app must give each
the same outcome (dead-lettered / failure record, or error reply) with the same reason code and
description, and that outcome must be the one the bad-input table (`BAD_INPUT`) promises.

The list is the shared corpus (tests/fixtures/bad_requests.py) plus a request whose deadline has
passed, sent between valid requests. Every bad request with a usable reply address gets exactly
one error reply with its code, every valid one exactly one ok reply; only those that cannot be
answered (no message id, no reply address or session, a queue not allowed) are dead-lettered.
Both run for real: the worker in-process on the local bus with Triton, the Functions app through
the in-process driver (trigger -> orchestration -> activities) on the same bus and Triton.

Both runtimes also run the same middleware, unchanged: the audit example (qscore/middleware/
audit.py) writes the same records for the same requests in each."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from azure.servicebus.aio import ServiceBusClient

from functions.runtime import ScoringRuntime
from qscore.contracts import BAD_INPUT, REQUEST_BATCH_CONTENT_TYPE, ErrorCode, ReplyStatus, ScoreReply
from qscore.middleware import MiddlewareStack
from qscore.middleware.audit import AuditMiddleware
from qscore.operations import DeadLetter, DeadLetterQueues, Source
from qscore.scoring import RequestPreparer
from qscore_local.functions_host.driver import InProcessDriver
from tests.fixtures.bad_requests import (
    MAX_MESSAGE_BYTES,
    NO_MESSAGE_ID,
    UNREACHABLE,
    bad_requests,
    binary_request,
    case_key,
)
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    digits_request,
    running_worker,
    send_requests,
)

Outcome = tuple[str, str, str]  # (dead_lettered | error_reply, code, description)
AUDIT = "qscore.middleware.audit:AuditMiddleware"
FUNCTIONS_STAND_IN = "no-message-id:"  # how the Functions app tracks a message without an id


def cases(session_id: str) -> list[tuple[OutgoingRequest, ErrorCode]]:
    expired = digits_request(np.zeros((1, 64), np.float32), deadline="2020-01-01T00:00:00Z")
    return [
        *bad_requests(session_id),
        (OutgoingRequest("expired", expired, session_id=session_id), ErrorCode.EXPIRED),
        (
            binary_request(
                np.zeros((1, 64), np.float32),
                "binary-expired",
                session_id,
                deadline=datetime(2020, 1, 1, tzinfo=UTC),
            ),
            ErrorCode.EXPIRED,
        ),
    ]


def interleaved(session_id: str) -> tuple[list[OutgoingRequest], list[str]]:
    """The bad requests with a valid one before each and after the last; (all, valid ids)."""
    sent: list[OutgoingRequest] = []
    valid: list[str] = []
    for index, (request, _) in enumerate(cases(session_id)):
        good_id = f"valid-{index}"
        sent += [
            OutgoingRequest(good_id, digits_request(np.full((1, 64), index % 16)), session_id=session_id),
            request,
        ]
        valid.append(good_id)
    sent.append(OutgoingRequest("valid-last", digits_request(np.ones((2, 64))), session_id=session_id))
    return sent, [*valid, "valid-last"]


def answered_count() -> int:
    return sum(case_key(request) not in UNREACHABLE for request, _ in cases("s"))


def assert_each_answered_once(replies: dict[str, list[ScoreReply]], valid: list[str]) -> None:
    """Exactly one reply per reachable request: ok for the valid ones, an error for the bad ones."""
    promised = {case_key(request): code for request, code in cases("s")}
    for request_id in valid:
        (reply,) = replies[request_id]
        assert reply.status == ReplyStatus.OK and reply.outputs is not None, reply
    for key, code in promised.items():
        if key in UNREACHABLE:
            assert key not in replies, key
            continue
        (reply,) = replies[key]
        assert reply.status == ReplyStatus.ERROR and reply.error is not None, reply
        assert reply.error.code == code and reply.error.message, (key, reply.error)
    assert set(replies) == {*valid, *(key for key in promised if key not in UNREACHABLE)}


def _untimed(description: str) -> str:
    """`expired` says how long ago the deadline passed: the same words, another moment."""
    return re.sub(r"\d+ ms ago", "N ms ago", description)


def outcomes_of(
    records: list[DeadLetter], replies: dict[str, list[ScoreReply]], keys: set[str]
) -> dict[str, Outcome]:
    found: dict[str, Outcome] = {}
    for record in records:
        key = NO_MESSAGE_ID if record.message_id.startswith(FUNCTIONS_STAND_IN) else record.message_id
        if key in keys:
            found[key] = ("dead_lettered", record.reason, record.description)
    for request_id, received in replies.items():
        error = received[0].error
        if request_id in keys and error is not None:
            found[request_id] = ("error_reply", str(error.code), _untimed(error.message))
    return found


async def wait_for(count: int, read: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await read()
        if len(result) >= count or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.3)


async def through_worker(bus: Any, worker_settings: WorkerSettingsFactory, queue: str) -> dict[str, Outcome]:
    replies = ReplyCollector(bus.connection_string)
    sent, valid = interleaved(replies.session_id)
    await send_requests(bus.connection_string, queue, sent)
    settings = worker_settings(
        request_queue=queue, max_message_bytes=MAX_MESSAGE_BYTES, worker_middleware=(AUDIT,)
    )
    async with (
        ServiceBusClient.from_connection_string(bus.connection_string) as client,
        running_worker(settings),
    ):
        dlq = DeadLetterQueues(client, request_queue=queue, failures_queue=None)
        records = await wait_for(len(UNREACHABLE), lambda: dlq.entries(source=Source.DEAD_LETTER))
        await replies.collect(len(valid) + answered_count(), timeout_s=30, settle_s=0.5)
    await replies.close()
    assert_each_answered_once(replies.replies, valid)
    return outcomes_of(records, replies.replies, {case_key(request) for request, _ in cases("s")})


async def through_functions(
    app: Any, runtime: ScoringRuntime, connection: str, queue: str
) -> dict[str, Outcome]:
    from qscore.inference import ModelNotFound

    runtime.preparer = RequestPreparer(
        specs=runtime.triton,
        registry=runtime.registry,  # type: ignore[arg-type]
        unknown_model_errors=(ModelNotFound,),
        max_message_bytes=MAX_MESSAGE_BYTES,
    )
    runtime.settings = replace(runtime.settings, request_queue=queue)
    runtime.middleware = MiddlewareStack([AuditMiddleware()])  # as QSCORE_MIDDLEWARE=AUDIT loads it
    replies = ReplyCollector(connection)
    sent, valid = interleaved(replies.session_id)
    await send_requests(connection, queue, sent)
    async with (
        InProcessDriver(app, runtime, max_batch=64, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver(queue) as receiver,
    ):
        stats = await driver.run_until_idle(connection_receiver=receiver)
    assert all(record.status == "Completed" for record in stats.instances), [r.error for r in stats.instances]
    failures = DeadLetterQueues(runtime.servicebus, request_queue=queue, failures_queue="scoring-failures")
    records = await failures.entries(source=Source.FAILURES)
    await replies.collect(len(valid) + answered_count(), timeout_s=30, settle_s=0.5)
    await replies.close()
    assert_each_answered_once(replies.replies, valid)
    return outcomes_of(records, replies.replies, {case_key(request) for request, _ in cases("s")})


async def test_the_same_bad_requests_get_the_same_outcome_in_both_runtimes(
    bus: Any,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    functions_app: Any,
    functions_runtime: ScoringRuntime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="qscore.audit")
    promised = {case_key(request): (BAD_INPUT[code].outcome, str(code)) for request, code in cases("s")}
    worker = await through_worker(bus, worker_settings, fresh_queue)
    worker_audit = audit_records(caplog.records)
    caplog.clear()
    # The worker has settled everything on the queue and stopped: the Functions app reads it next.
    functions = await through_functions(functions_app, functions_runtime, bus.connection_string, fresh_queue)
    functions_audit = audit_records(caplog.records)
    assert {key: outcome[:2] for key, outcome in functions.items()} == promised
    assert {key: outcome[:2] for key, outcome in worker.items()} == promised
    assert functions == worker  # same outcome, code and description for every bad request
    # The audit middleware, unchanged in both: one line per outcome, the same lines.
    assert sum(worker_audit.values()) == len(interleaved("s")[0])
    assert functions_audit == worker_audit


def audit_records(records: list[logging.LogRecord]) -> Counter[str]:
    """The audit middleware's lines (in any order: the runtimes batch differently)."""
    return Counter(record.getMessage() for record in records if record.name == "qscore.audit")


def _item(request_id: str, body: str, **fields: Any) -> dict[str, Any]:
    return {**json.loads(body), "request_id": request_id, **fields}


def batch_messages(session_id: str) -> tuple[list[OutgoingRequest], dict[str, tuple[str, str]]]:
    """Request-batch messages with bad items among good ones, and one whose body is
    unreadable; (the messages, {item or message id: promised (outcome, code)})."""
    pixels = np.zeros((1, 64), np.float32)
    bad_shape = _item("item-bad-shape", digits_request(pixels))
    bad_shape["inputs"]["pixels"]["shape"] = [1, 63]
    items = [
        _item("item-good-0", digits_request(np.full((2, 64), 3.0))),
        _item("item-unknown-model", digits_request(pixels, model="nope")),
        bad_shape,
        {"request_id": "item-schema", "model": "digits"},  # no inputs
        _item("item-expired", digits_request(pixels, deadline="2020-01-01T00:00:00Z")),
        _item("item-good-1", digits_request(np.ones((1, 64)))),
    ]

    def message(message_id: str, members: list[Any]) -> OutgoingRequest:
        body = json.dumps({"schema_version": "1", "items": members})
        return OutgoingRequest(
            message_id, body, session_id=session_id, content_type=REQUEST_BATCH_CONTENT_TYPE
        )

    promised = {
        "item-good-0": ("ok", ""),
        "item-good-1": ("ok", ""),
        "item-unknown-model": ("error_reply", str(ErrorCode.UNKNOWN_MODEL)),
        "item-bad-shape": ("error_reply", str(ErrorCode.BAD_SHAPE)),
        "item-schema": ("error_reply", str(ErrorCode.SCHEMA_VIOLATION)),
        "item-expired": ("error_reply", str(ErrorCode.EXPIRED)),
        "broken-batch": ("dead_lettered", str(ErrorCode.SCHEMA_VIOLATION)),
    }
    broken = message("broken-batch", [{"model": "digits"}])  # an item without a request_id
    return [message("batch-1", items), broken], promised


def batch_outcomes(records: list[DeadLetter], replies: dict[str, list[ScoreReply]]) -> dict[str, Outcome]:
    assert all(len(each) == 1 for each in replies.values()), replies  # one reply per item
    found = {
        key: ("error_reply", str(got[0].error.code), _untimed(got[0].error.message))
        if got[0].error is not None
        else ("ok", "", "")
        for key, got in replies.items()
    }
    found.update({r.message_id: ("dead_lettered", r.reason, r.description) for r in records})
    return found


async def test_request_batch_items_get_the_same_outcome_in_both_runtimes(
    bus: Any,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    functions_app: Any,
    functions_runtime: ScoringRuntime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each item of a request-batch message is answered on its own in both runtimes: a bad item
    gets its own error reply and never touches its batch-mates; an unreadable body puts the
    whole message on the dead-letter queue (the worker) or the failures queue (the app)."""
    caplog.set_level(logging.INFO, logger="qscore.audit")
    outcomes: list[dict[str, Outcome]] = []
    audits: list[Counter[str]] = []
    for runtime in ("worker", "functions"):
        replies = ReplyCollector(bus.connection_string)
        sent, promised = batch_messages(replies.session_id)
        answered = sum(kind != "dead_lettered" for kind, _ in promised.values())
        await send_requests(bus.connection_string, fresh_queue, sent)
        caplog.clear()
        if runtime == "worker":
            settings = worker_settings(request_queue=fresh_queue, worker_middleware=(AUDIT,))
            async with (
                ServiceBusClient.from_connection_string(bus.connection_string) as client,
                running_worker(settings),
            ):
                dlq = DeadLetterQueues(client, request_queue=fresh_queue, failures_queue=None)
                records = await wait_for(1, lambda dlq=dlq: dlq.entries(source=Source.DEAD_LETTER))
                await replies.collect(answered, timeout_s=30, settle_s=0.5)
        else:
            functions_runtime.settings = replace(functions_runtime.settings, request_queue=fresh_queue)
            functions_runtime.middleware = MiddlewareStack([AuditMiddleware()])
            async with (
                InProcessDriver(functions_app, functions_runtime, max_batch=64, max_wait_s=2) as driver,
                functions_runtime.servicebus.get_queue_receiver(fresh_queue) as receiver,
            ):
                stats = await driver.run_until_idle(connection_receiver=receiver)
            assert all(r.status == "Completed" for r in stats.instances), [r.error for r in stats.instances]
            failures = DeadLetterQueues(
                functions_runtime.servicebus, request_queue=fresh_queue, failures_queue="scoring-failures"
            )
            records = [r for r in await failures.entries(source=Source.FAILURES) if r.message_id in promised]
            await replies.collect(answered, timeout_s=30, settle_s=0.5)
        await replies.close()
        assert all(count == 1 for *_, count in replies.messages), runtime  # no opt-in: one reply each
        found = batch_outcomes(records, replies.replies)
        assert {key: outcome[:2] for key, outcome in found.items()} == promised, runtime
        outcomes.append(found)
        audits.append(audit_records(caplog.records))
    assert outcomes[0] == outcomes[1]  # same outcome, code and description for every item
    assert audits[0] == audits[1] and sum(audits[0].values()) == len(promised)
