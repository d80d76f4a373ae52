"""`qscore dead-letters` against the real local bus with the real azure-servicebus SDK: list, show,
resubmit (only removed after the copy was accepted), purge (asks first), one-line bad input."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from qscore.operations import DeadLetterQueues, Source
from qscore.transport.failures import FailureQueue, FailureRecord
from qscore_local.bus.config import QueueConfig
from tests.fixtures.bus import StartBus

REQUESTS = "dl-requests"
FAILURES = "dl-failures"


@pytest.fixture
def connection(start_bus: StartBus) -> Iterator[str]:
    queues = [QueueConfig(name=REQUESTS, lock_duration_s=5), QueueConfig(name=FAILURES, lock_duration_s=5)]
    yield start_bus(queues=queues).endpoint.connection_string


def qscore(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = ""
) -> tuple[int, str]:
    """Run `qscore ARGS` in-process as the console script does; (exit code, stdout + stderr)."""
    from qscore_cli import main

    monkeypatch.setattr(sys, "argv", ["qscore", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


async def _seed(connection: str) -> None:
    """Three dead-lettered requests on the request queue, one record on the failures queue."""
    reasons = {"a": ("no_reply_session", "set reply_to_session_id"), "b": ("schema_violation", "fix it")}
    reasons["c"] = ("schema_violation", "fix it too")
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_sender(REQUESTS) as sender:
            await sender.send_messages(
                [
                    ServiceBusMessage(json.dumps({"model": "digits", "id": i}), message_id=i, reply_to="r")
                    for i in reasons
                ]
            )
        async with client.get_queue_receiver(REQUESTS) as receiver:
            received: list[Any] = []
            while len(received) < len(reasons):
                received += await receiver.receive_messages(max_message_count=10, max_wait_time=5)
            for message in received:
                reason, description = reasons[str(message.message_id)]
                await receiver.dead_letter_message(message, reason=reason, error_description=description)
        record = FailureRecord(
            request_id="f",
            body=b'{"model": "digits"}',
            reason="reply_undeliverable",
            description="refused",
            reply_to="gone",
            reply_to_session_id="s9",
            source="functions:test",
        )
        await FailureQueue(client, FAILURES).record([record])


async def _entries(connection: str) -> dict[str, tuple[Source, str]]:
    async with ServiceBusClient.from_connection_string(connection) as client:
        queues = DeadLetterQueues(client, request_queue=REQUESTS, failures_queue=FAILURES)
        return {item.message_id: (item.source, item.reason) for item in await queues.entries()}


async def _receive_all(connection: str, queue: str) -> list[Any]:
    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_receiver(queue) as receiver,
    ):
        messages = await receiver.receive_messages(max_message_count=10, max_wait_time=2)
        for message in messages:
            await receiver.complete_message(message)
        return messages


def test_list_and_resubmit(connection: str, capsys: Any, monkeypatch: Any) -> None:
    """The short form: list both places, resubmit one fixed copy, removed only after the send."""
    asyncio.run(_seed(connection))
    where = ["--connection", connection, "--queue", REQUESTS, "--failures-queue", FAILURES]
    code, out = qscore(capsys, monkeypatch, "dead-letters", "list", *where)
    assert code == 0 and "4 request(s) without a reply" in out and "reply_undeliverable" in out
    code, out = qscore(
        capsys, monkeypatch, "dead-letters", "resubmit", "f", "--set", "reply_to=scoring-replies", *where
    )
    assert code == 0 and "resubmitted f: sent to dl-requests" in out, out
    (resent,) = asyncio.run(_receive_all(connection, REQUESTS))
    assert (resent.message_id, resent.reply_to, resent.reply_to_session_id) == ("f", "scoring-replies", "s9")
    assert "f" not in asyncio.run(_entries(connection))


@pytest.mark.slow
def test_list_show_resubmit_purge(connection: str, capsys: Any, monkeypatch: Any) -> None:
    asyncio.run(_seed(connection))
    where = ["--connection", connection, "--queue", REQUESTS, "--failures-queue", FAILURES]
    code, out = qscore(capsys, monkeypatch, "dead-letters", "list", *where)
    assert code == 0 and "4 request(s) without a reply" in out
    assert all(
        word in out for word in ("no_reply_session", "schema_violation", "reply_undeliverable", "failures")
    )

    # A copy the broker does not take (no such request queue) leaves the record where it was.
    elsewhere = ["--connection", connection, "--queue", "no-such-queue", "--failures-queue", FAILURES]
    code, out = qscore(
        capsys, monkeypatch, "dead-letters", "resubmit", "f", "--source", "failures", *elsewhere
    )
    assert code == 1 and "NOT resubmitted f: not sent" in out

    code, out = qscore(capsys, monkeypatch, "dead-letters", "show", "f", *where)
    (shown,) = json.loads(out)
    assert (shown["reason"], shown["reply_to"], shown["reply_to_session_id"]) == (
        "reply_undeliverable",
        "gone",
        "s9",
    )
    assert shown["entity"] == FAILURES and shown["body"] == '{"model": "digits"}'

    fixes = ["--set", "reply_to=scoring-replies", "--set", "reply_to_session_id=me"]
    code, out = qscore(capsys, monkeypatch, "dead-letters", "resubmit", "a", "f", *fixes, *where)
    assert code == 0 and out.count("resubmitted") == 2, out
    resent = {str(m.message_id): m for m in asyncio.run(_receive_all(connection, REQUESTS))}
    assert set(resent) == {"a", "f"}
    assert {(m.reply_to, m.reply_to_session_id) for m in resent.values()} == {("scoring-replies", "me")}
    assert json.loads(b"".join(resent["a"].body)) == {"model": "digits", "id": "a"}
    assert resent["f"].application_properties is None  # the failure's own properties stay behind
    assert asyncio.run(_entries(connection)) == {
        "b": (Source.DEAD_LETTER, "schema_violation"),
        "c": (Source.DEAD_LETTER, "schema_violation"),
    }

    # The broker is reached before the question: a queue it does not have is the error, unasked.
    code, out = qscore(
        capsys, monkeypatch, "dead-letters", "purge", "--source", "dead-letter", *elsewhere, stdin="y\n"
    )
    assert code == 2 and out.startswith("error: Service Bus") and "Remove" not in out, out
    code, out = qscore(capsys, monkeypatch, "dead-letters", "purge", *where, stdin="n\n")
    assert code == 2 and "error: nothing removed" in out
    assert "Remove 2 dead-lettered request(s) (all of them) for good?" in out
    code, out = qscore(
        capsys, monkeypatch, "dead-letters", "purge", "--reason", "schema_violation", "--yes", *where
    )
    assert code == 0 and "removed 2" in out
    assert asyncio.run(_entries(connection)) == {}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["list", "--source", "elsewhere"], "--source must be"),
        (["resubmit", "a", "--set", "priority=1"], "cannot set priority"),
        (["resubmit", "a", "--set", "reply_to"], "--set takes FIELD=VALUE"),
        (["resubmit", "a", "--patch", "/no/such/patch.json"], "cannot read --patch"),
        (["list", "--connection", "garbage"], "connection string"),
    ],
)
def test_bad_input_is_one_line(args: list[str], words: str, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("QSCORE_SERVICEBUS_CONNECTION", raising=False)
    monkeypatch.delenv("QSCORE_SERVICEBUS_NAMESPACE", raising=False)
    # Nothing listens there: each of these must fail before any connection is tried.
    unused = ["--connection", "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b"]
    code, out = qscore(
        capsys, monkeypatch, "dead-letters", *args, *([] if "--connection" in args else unused)
    )
    assert code == 2 and out.startswith("error: ") and len(out.strip().splitlines()) == 1, out
    assert words in out and "Traceback" not in out
