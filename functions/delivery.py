"""The last steps of an orchestration: send every reply, record what cannot be answered.

Replies go out one reply queue at a time, so a queue that refuses them (not found, not
authorized, a message too large, a session queue without a session id) costs only the requests
that named it: they are recorded on the failures queue as `reply_undeliverable` with the
broker's words, and every other request still gets its reply. A transient failure is retried
here, per queue, with the app's retry policy; what still fails is recorded the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from functions.payload_store import unpack
from functions.payloads import GroupOutcome, InboundMessage, Rejection, SendSummary
from functions.retry import policy_delay_s
from functions.runtime import ScoringRuntime
from functions.steps import finish_timings, reply_queue_of
from functions.telemetry import (
    finish_reply_spans,
    record_dead_letters,
    record_replies,
    reply_traceparent,
    start_reply_spans,
)
from qscore.contracts import ContractViolation, ErrorCode, ReplyStatus, ScoreReply
from qscore.scoring import error_reply, undeliverable
from qscore.telemetry import batch_span
from qscore.transport import ReplyAddress
from qscore.transport.failures import FailureRecord

REPLY_UNDELIVERABLE = ErrorCode.REPLY_UNDELIVERABLE.value
INFERENCE_FAILED = ErrorCode.INFERENCE_FAILED.value
Addressed = tuple[ReplyAddress, ScoreReply]


async def _outcome_replies(outcome: GroupOutcome, runtime: ScoringRuntime) -> list[ScoreReply]:
    if outcome.replies is not None:
        document = await unpack(outcome.replies, runtime.payloads)
        return [ScoreReply.model_validate(each) for each in _json_list(document)]
    violation = ContractViolation(
        ErrorCode.INFERENCE_FAILED, f"inference failed after retries: {outcome.failure or 'unknown error'}"
    )
    return [
        error_reply(request_id, outcome.group.model, violation, scored_by=runtime.settings.scored_by)
        for request_id in outcome.group.request_ids
    ]


def _json_list(document: str) -> list[object]:
    value = json.loads(document)
    return value if isinstance(value, list) else []


def _rejection_reply(rejection: Rejection, message: InboundMessage, runtime: ScoringRuntime) -> ScoreReply:
    code = ErrorCode(rejection.code) if rejection.code in ErrorCode._value2member_map_ else None
    violation = ContractViolation(code or ErrorCode.SCHEMA_VIOLATION, rejection.description)
    return error_reply(
        rejection.request_id,
        rejection.model,
        violation,
        received_at=message.received_at,
        enqueued_at=message.enqueued_at,
        scored_by=runtime.settings.scored_by,
    )


async def send_to_queues(replies: list[Addressed], runtime: ScoringRuntime) -> dict[str, str]:
    """Send the replies; retry the ones that failed for a transient reason with the retry policy.
    {request id: why} for the ones not sent: refused for good, or still failing after the retries."""
    policy = runtime.settings.retry
    pending, failed = list(replies), {}
    for attempt in range(1, policy.max_attempts + 1):
        failures = await runtime.replies.deliver(pending)
        retry: list[Addressed] = []
        for (address, reply), failure in zip(pending, failures, strict=True):
            if failure is None:
                continue
            if failure.permanent:
                failed[reply.request_id] = undeliverable(address, failure.detail).description
            elif attempt == policy.max_attempts:
                words = f"not accepted after {attempt} attempts: {failure.detail}"
                failed[reply.request_id] = undeliverable(address, words).description
            else:
                retry.append((address, reply))
        if not retry:
            break
        pending = retry
        await asyncio.sleep(policy_delay_s(policy, attempt))
    return failed


def _group_unanswered(
    outcomes: list[GroupOutcome], by_id: dict[str, InboundMessage]
) -> tuple[list[Rejection], set[str]]:
    """Failure records the groups asked for, and queue requests of groups whose inference failed
    after its retries (recorded `inference_failed`, as the worker's would be dead-lettered)."""
    unanswered: list[Rejection] = []
    for outcome in outcomes:
        unanswered.extend(outcome.dead_letters)
        if outcome.replies is None:
            why = f"inference failed after its retries: {outcome.failure or 'unknown error'}"
            unanswered.extend(
                Rejection(request_id=i, model=outcome.group.model, code=INFERENCE_FAILED, description=why)
                for i in outcome.group.request_ids
                if i in by_id and by_id[i].origin == "queue"
            )
    return unanswered, {rejection.request_id for rejection in unanswered}


async def send_replies(
    batch: list[InboundMessage],
    outcomes: list[GroupOutcome],
    rejected: list[Rejection],
    runtime: ScoringRuntime,
) -> SendSummary:
    """Queue requests get their reply on their reply queue and session (batched sends);
    HTTP requests get theirs in the orchestration output."""
    by_id = {message.message_id: message for message in batch}
    unanswered, recorded = _group_unanswered(outcomes, by_id)
    replies: list[ScoreReply] = []
    for outcome in outcomes:
        replies.extend(await _outcome_replies(outcome, runtime))
    replies.extend(
        _rejection_reply(r, by_id[r.request_id], runtime) for r in rejected if r.request_id in by_id
    )
    replies = [reply for reply in replies if reply.request_id in by_id and reply.request_id not in recorded]
    summary = SendSummary()
    queued: list[tuple[InboundMessage, str, ScoreReply]] = []
    for reply in replies:
        message = by_id[reply.request_id]
        reply = finish_timings(reply, message)
        queue = reply_queue_of(message, runtime.settings.reply_queue)
        if queue is None:
            summary.http_replies[reply.request_id] = reply.model_dump(mode="json", exclude_none=True)
        else:
            queued.append((message, queue, reply))
    spans = start_reply_spans(
        [message for message, _, _ in queued], queue_of={m.message_id: q for m, q, _ in queued}
    )
    to_queue: list[Addressed] = [
        (ReplyAddress(queue, message.reply_to_session_id, reply_traceparent(spans, message)), reply)
        for message, queue, reply in queued
    ]
    with batch_span("qscore.functions.send_replies", list(spans.values())):
        failed = await send_to_queues(to_queue, runtime) if to_queue else {}
    finish_reply_spans({k: v for k, v in spans.items() if k not in failed}, outcome="replied")
    finish_reply_spans({k: v for k, v in spans.items() if k in failed}, outcome=REPLY_UNDELIVERABLE)
    sent = [reply for reply in replies if reply.request_id not in failed]
    summary.sent = len(to_queue) - len(failed)
    summary.ok = sum(reply.status == ReplyStatus.OK for reply in sent)
    summary.errors = sum(reply.status == ReplyStatus.ERROR for reply in sent)
    summary.unanswered = unanswered + [
        Rejection(request_id=i, model=by_id_model(replies, i), code=REPLY_UNDELIVERABLE, description=why)
        for i, why in failed.items()
    ]
    record_replies(sent)
    return summary


def by_id_model(replies: Sequence[ScoreReply], request_id: str) -> str:
    return next((reply.model for reply in replies if reply.request_id == request_id), "")


def failure_records(
    instance_id: str, batch: Sequence[InboundMessage], rejected: Sequence[Rejection]
) -> list[FailureRecord]:
    """Each rejected request as a failure record: its original body, reason and reply address."""
    by_id = {message.message_id: message for message in batch}
    records = []
    for rejection in rejected:
        message = by_id.get(rejection.request_id)
        records.append(
            FailureRecord(
                request_id=rejection.request_id,
                body=message.body_bytes() if message is not None else b"",
                reason=rejection.code,
                description=rejection.description,
                reply_to=message.reply_to if message is not None else None,
                reply_to_session_id=message.reply_to_session_id if message is not None else None,
                source=f"functions:{instance_id}",
                content_type=message.content_type if message is not None else None,
            )
        )
    return records


async def record_failures(
    instance_id: str, batch: Sequence[InboundMessage], rejected: list[Rejection], runtime: ScoringRuntime
) -> int:
    recorded = await runtime.failures.record(failure_records(instance_id, batch, rejected))
    record_dead_letters([r.code for r in rejected])
    return recorded


def unanswered_after_failed_send(
    batch: Sequence[InboundMessage], recorded: Sequence[Rejection], failure: str
) -> list[Rejection]:
    """The reply activity failed for good: every queue request not recorded otherwise."""
    already = {rejection.request_id for rejection in recorded}
    description = f"the reply activity failed after its retries, so no reply was confirmed: {failure}"
    return [
        Rejection(request_id=m.message_id, model="", code=REPLY_UNDELIVERABLE, description=description)
        for m in dict((m.message_id, m) for m in batch).values()
        if m.origin == "queue" and m.message_id not in already
    ]
