"""The interaction log keeps every outcome, in both runtimes: ok replies, error replies with their
code, dead-letter (failure) records with their reason, one record per request; then
`qscore model compare` shows the real error ratio. Real worker / Functions app (in-process
driver), real local bus and Triton, the shared corpus of bad requests (tests/fixtures)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from functions.runtime import ScoringRuntime
from qscore.contracts import BAD_INPUT, ErrorCode
from qscore.contracts.errors import DEAD_LETTERED
from qscore.monitoring import InteractionLog, InteractionRecord, iter_records
from qscore.monitoring.compare import compare_versions
from qscore.monitoring.records import record_from_outcome
from qscore.scoring import RequestPreparer, outcome_of_dead_letter
from qscore_cli import app
from qscore_local.functions_host.driver import InProcessDriver
from tests.fixtures.bad_requests import MAX_MESSAGE_BYTES, NO_MESSAGE_ID, bad_requests, case_key
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    digits_request,
    running_worker,
    send_requests,
)
from workers.hooks import WorkerCallbacks

GOOD = 4


def _cases(session_id: str) -> tuple[list[OutgoingRequest], dict[str, tuple[str, str]]]:
    """Requests to send, and per request key the (outcome, status) its log record must have."""
    good = digits_request(np.zeros((1, 64), np.float32))
    expired = digits_request(np.zeros((1, 64), np.float32), deadline="2020-01-01T00:00:00Z")
    sent = [OutgoingRequest(f"good-{index}", good, session_id=session_id) for index in range(GOOD)]
    expected = {request.message_id or "": ("ok", "ok") for request in sent}
    late = OutgoingRequest("expired", expired, session_id=session_id)
    for request, code in [*bad_requests(session_id), (late, ErrorCode.EXPIRED)]:
        sent.append(request)
        kind = "dead_lettered" if BAD_INPUT[code].outcome == DEAD_LETTERED else "error"
        expected[case_key(request)] = (kind, str(code))
    return sent, expected


def _logged(path: Path) -> dict[str, list[InteractionRecord]]:
    found: dict[str, list[InteractionRecord]] = {}
    for record in iter_records(path):
        # A message without an id: the worker logs "", the Functions app its stand-in id.
        key = record.request_id if record.request_id and ":" not in record.request_id else NO_MESSAGE_ID
        found.setdefault(key, []).append(record)
    return found


def _assert_every_outcome_logged_once(path: Path, expected: dict[str, tuple[str, str]]) -> None:
    logged = _logged(path)
    assert {key: len(logged.get(key, [])) for key in expected} == dict.fromkeys(expected, 1)
    assert {key: (logged[key][0].outcome, logged[key][0].status) for key in expected} == expected
    good = [logged[f"good-{index}"][0] for index in range(GOOD)]
    assert all(record.version and record.route == "production" for record in good)
    assert logged["unknown-model"][0].model == "no-such-model"
    assert logged["expired"][0].model == "digits"


def _assert_compare_shows_errors(path: Path) -> None:
    records = list(iter_records(path))
    production = next(r.version for r in records if r.outcome == "ok")
    comparison = compare_versions(records, model="digits", production=production)
    summary = comparison.summary(production)
    assert summary is not None and summary.error_ratio > 0
    assert summary.requests > GOOD and summary.errors.get("expired") == 1
    result = CliRunner().invoke(
        app, ["model", "compare", "digits", "--log", str(path), "--production", production]
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith(f"| v{production} |"))
    error_ratio = row.split("|")[5].strip()  # | version | routes | requests | errors | error ratio | ...
    assert error_ratio != "0.00%" and "expired 1" in row, row


async def _wait_for(records: int, path: Path, log: InteractionLog, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert await log.flush()
        if sum(1 for _ in iter_records(path)) >= records:
            return
        await asyncio.sleep(0.3)


def test_a_dead_letter_record_reads_model_and_version_from_the_body() -> None:
    body = digits_request(np.zeros((1, 64), np.float32), version="2").encode()
    record = record_from_outcome(outcome_of_dead_letter("r1", "bad_shape", body=body))
    assert (record.model, record.version, record.route, record.status) == (
        "digits",
        "2",
        "pinned",
        "bad_shape",
    )
    unnamed = record_from_outcome(outcome_of_dead_letter("r2", "invalid_encoding", body=b"\x00 not json"))
    assert (unnamed.model, unnamed.version, unnamed.outcome) == ("unknown", "", "dead_lettered")


async def test_the_worker_logs_every_outcome(
    bus: Any, fresh_queue: str, worker_settings: WorkerSettingsFactory, tmp_path: Path
) -> None:
    replies = ReplyCollector(bus.connection_string)
    sent, expected = _cases(replies.session_id)
    path = tmp_path / "interactions.jsonl"
    log = InteractionLog(path)
    await send_requests(bus.connection_string, fresh_queue, sent)
    settings = worker_settings(request_queue=fresh_queue, max_message_bytes=MAX_MESSAGE_BYTES)
    async with running_worker(settings, hooks=WorkerCallbacks(interactions=log)):
        await _wait_for(len(expected), path, log)
    await replies.close()
    _assert_every_outcome_logged_once(path, expected)
    _assert_compare_shows_errors(path)


async def test_the_functions_app_logs_every_outcome(
    bus: Any, fresh_queue: str, functions_app: Any, functions_runtime: ScoringRuntime, tmp_path: Path
) -> None:
    from qscore.inference import ModelNotFound

    runtime = functions_runtime
    runtime.preparer = RequestPreparer(
        specs=runtime.triton,
        registry=runtime.registry,  # type: ignore[arg-type]
        unknown_model_errors=(ModelNotFound,),
        max_message_bytes=MAX_MESSAGE_BYTES,
    )
    runtime.settings = replace(runtime.settings, request_queue=fresh_queue)
    path = tmp_path / "interactions.jsonl"
    runtime.interactions = InteractionLog(path)
    replies = ReplyCollector(bus.connection_string)
    sent, expected = _cases(replies.session_id)
    await send_requests(bus.connection_string, fresh_queue, sent)
    async with (
        InProcessDriver(functions_app, runtime, max_batch=64, max_wait_s=2) as driver,
        runtime.servicebus.get_queue_receiver(fresh_queue) as receiver,
    ):
        await driver.run_until_idle(connection_receiver=receiver)
    assert await runtime.interactions.flush()
    await replies.close()
    _assert_every_outcome_logged_once(path, expected)
    _assert_compare_shows_errors(path)


def test_compare_counts_each_request_once_and_unresolved_rejections_against_production() -> None:
    def record(request_id: str, version: str, status: str = "ok", at: float = 0.0) -> InteractionRecord:
        outcome = "ok" if status == "ok" else "dead_lettered"
        return InteractionRecord(
            at=at, request_id=request_id, model="m", version=version, status=status, outcome=outcome
        )

    records = [
        *(record(f"r{index}", "2") for index in range(8)),
        record("r0", "2", "reply_undeliverable", at=1.0),  # scored, then its reply was refused
        record("bad", "", "bad_shape"),  # named no version: headed for production
        record("v1", "1"),
    ]
    comparison = compare_versions(records, model="m", production="2")
    production = comparison.summary("2")
    assert production is not None and production.requests == 9
    assert production.errors == {"bad_shape": 1, "reply_undeliverable": 1}
    assert [summary.version for summary in comparison.versions] == ["1", "2"]
