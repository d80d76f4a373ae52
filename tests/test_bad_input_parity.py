"""One list of bad requests through both runtimes: the worker and the Functions app must give each
the same outcome (dead-lettered / failure record, or error reply) with the same reason code and
description, and that outcome must be the one the bad-input table (`BAD_INPUT`) promises.

Both run for real: the worker in-process on the local bus with Triton, the Functions app through
the in-process driver (trigger -> orchestration -> activities) on the same bus and Triton."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageProperties

from functions.runtime import ScoringRuntime
from qscore.contracts import BAD_INPUT, REQUEST_CONTENT_TYPE, ErrorCode, ScoreReply
from qscore.operations import DeadLetterQueues, Source
from qscore_local.functions_host.driver import InProcessDriver
from tests.fixtures.worker import ReplyCollector, WorkerSettingsFactory, running_worker

Outcome = tuple[str, str, str]  # (dead_lettered | error_reply, code, description)


def _tensor(**fields: Any) -> dict[str, Any]:
    return {"datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64, **fields}


def _request(**fields: Any) -> str:
    return json.dumps({"model": "digits", "inputs": {"pixels": _tensor()}, **fields})


@dataclass(frozen=True)
class BadCase:
    name: str
    code: ErrorCode
    body: str
    message_id: bool = True
    reply_to: str | None = "scoring-replies"
    session: bool = True
    content_type: str | None = REQUEST_CONTENT_TYPE


CASES = [
    BadCase("no-id", ErrorCode.NO_MESSAGE_ID, _request(), message_id=False),
    BadCase("content-type", ErrorCode.UNSUPPORTED_CONTENT_TYPE, _request(), content_type="text/csv"),
    BadCase("no-reply", ErrorCode.NO_REPLY_ADDRESS, _request(), reply_to=None, session=False),
    BadCase("no-session", ErrorCode.NO_REPLY_SESSION, _request(), session=False),
    BadCase("foreign-reply", ErrorCode.REPLY_TO_NOT_ALLOWED, _request(), reply_to="test-fresh-other"),
    BadCase("not-json", ErrorCode.INVALID_ENCODING, "{not json"),
    BadCase("schema", ErrorCode.SCHEMA_VIOLATION, json.dumps({"model": "digits"})),
    BadCase("int-deadline", ErrorCode.SCHEMA_VIOLATION, _request(deadline=1700000000)),
    BadCase("model", ErrorCode.UNKNOWN_MODEL, _request(model="no-such-model")),
    BadCase("version", ErrorCode.UNKNOWN_VERSION, _request(version="99")),
    BadCase(
        "input-name",
        ErrorCode.BAD_INPUT_NAME,
        json.dumps({"model": "digits", "inputs": {"pixelz": _tensor()}}),
    ),
    BadCase(
        "dtype",
        ErrorCode.BAD_DTYPE,
        json.dumps({"model": "digits", "inputs": {"pixels": _tensor(datatype="INT64", data=[1] * 64)}}),
    ),
    BadCase(
        "b64",
        ErrorCode.BAD_TENSOR_ENCODING,
        json.dumps({"model": "digits", "inputs": {"pixels": _tensor(data=None, b64="!!not base64!!")}}),
    ),
    BadCase(
        "shape",
        ErrorCode.BAD_SHAPE,
        json.dumps({"model": "digits", "inputs": {"pixels": _tensor(shape=[1, 63], data=[0.5] * 63)}}),
    ),
    BadCase("expired", ErrorCode.EXPIRED, _request(deadline="2020-01-01T00:00:00Z")),
]


async def send_cases(connection: str, queue: str, tag: str, session: str) -> dict[str, BadCase]:
    """Send every case; {message id or body marker: case}."""
    sent: dict[str, BadCase] = {}
    messages: list[ServiceBusMessage | AmqpAnnotatedMessage] = []
    for case in CASES:
        reply_session = session if case.session else None
        if not case.message_id:  # the SDK gives every ServiceBusMessage an id; AMQP need not
            sent[case.body] = case
            properties = AmqpMessageProperties(
                reply_to=case.reply_to, reply_to_group_id=reply_session, content_type=case.content_type
            )
            messages.append(AmqpAnnotatedMessage(data_body=case.body.encode(), properties=properties))
            continue
        message_id = f"{case.name}-{tag}"
        sent[message_id] = case
        messages.append(
            ServiceBusMessage(
                case.body,
                message_id=message_id,
                reply_to=case.reply_to,
                reply_to_session_id=reply_session,
                content_type=case.content_type,
            )
        )
    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_sender(queue) as sender,
    ):
        await sender.send_messages(messages)  # type: ignore[arg-type]
    return sent


def _untimed(description: str) -> str:
    """`expired` says how long ago the deadline passed: the same words, another moment."""
    return re.sub(r"\d+ ms ago", "N ms ago", description)


def outcomes_of(
    sent: dict[str, BadCase], records: list[Any], replies: dict[str, ScoreReply]
) -> dict[str, Outcome]:
    """The outcome of each case, by case name, from dead-letter records and replies."""
    found: dict[str, Outcome] = {}
    for record in records:
        case = sent.get(record.message_id) or sent.get(record.body.decode("utf-8", "replace"))
        if case is not None and (case.message_id or record.message_id not in sent):
            found[case.name] = ("dead_lettered", record.reason, record.description)
    for request_id, reply in replies.items():
        case = sent.get(request_id)
        if case is not None and reply.error is not None:
            found[case.name] = ("error_reply", str(reply.error.code), _untimed(reply.error.message))
    return found


async def wait_for(count: int, read: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await read()
        if len(result) >= count or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.3)


async def through_worker(bus: Any, worker_settings: WorkerSettingsFactory, queue: str) -> dict[str, Outcome]:
    tag = uuid.uuid4().hex[:8]
    replies = ReplyCollector(bus.connection_string)
    sent = await send_cases(bus.connection_string, queue, tag, replies.session_id)
    async with (
        ServiceBusClient.from_connection_string(bus.connection_string) as client,
        running_worker(worker_settings(request_queue=queue)),
    ):
        dlq = DeadLetterQueues(client, request_queue=queue, failures_queue=None)
        records = await wait_for(len(CASES) - 1, lambda: dlq.entries(source=Source.DEAD_LETTER))
        await replies.collect(1, timeout_s=10)
    await replies.close()
    return outcomes_of(sent, records, {k: v[0] for k, v in replies.replies.items()})


async def through_functions(
    app: Any, runtime: ScoringRuntime, connection: str, queue: str
) -> dict[str, Outcome]:
    tag = uuid.uuid4().hex[:8]
    replies = ReplyCollector(connection)
    sent = await send_cases(connection, queue, tag, replies.session_id)
    async with (
        InProcessDriver(app, runtime, max_batch=64, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver(queue) as receiver,
    ):
        stats = await driver.run_until_idle(connection_receiver=receiver)
    assert all(record.status == "Completed" for record in stats.instances), [r.error for r in stats.instances]
    failures = DeadLetterQueues(runtime.servicebus, request_queue=queue, failures_queue="scoring-failures")
    records = await failures.entries(source=Source.FAILURES)
    await replies.collect(1, timeout_s=10)
    await replies.close()
    return outcomes_of(sent, records, {k: v[0] for k, v in replies.replies.items()})


async def test_the_same_bad_requests_get_the_same_outcome_in_both_runtimes(
    bus: Any,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    functions_app: Any,
    functions_runtime: ScoringRuntime,
) -> None:
    worker = await through_worker(bus, worker_settings, fresh_queue)
    # The worker has settled everything on the queue and stopped: the Functions app reads it next.
    functions_runtime.settings = replace(functions_runtime.settings, request_queue=fresh_queue)
    functions = await through_functions(functions_app, functions_runtime, bus.connection_string, fresh_queue)
    promised = {case.name: (BAD_INPUT[case.code].outcome, str(case.code)) for case in CASES}
    assert {name: outcome[:2] for name, outcome in functions.items()} == promised
    assert {name: outcome[:2] for name, outcome in worker.items()} == promised
    assert functions == worker  # same outcome, code and description for every bad request
