"""The last steps of an orchestration: send every reply, store what cannot be answered."""

from __future__ import annotations

import json

from functions.payload_store import unpack
from functions.payloads import GroupOutcome, InboundMessage, Rejection, SendSummary
from functions.runtime import ScoringRuntime
from functions.steps import finish_timings
from functions.telemetry import (
    finish_reply_spans,
    record_dead_letters,
    record_replies,
    reply_traceparent,
    start_reply_spans,
)
from qscore.contracts import ContractViolation, ErrorCode, ReplyStatus, ScoreReply
from qscore.scoring import error_reply
from qscore.telemetry import batch_span
from qscore.transport import ReplyAddress


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


async def send_replies(
    batch: list[InboundMessage],
    outcomes: list[GroupOutcome],
    rejected: list[Rejection],
    runtime: ScoringRuntime,
) -> SendSummary:
    """Queue requests get their reply on their reply queue and session (one batched send per
    queue); HTTP requests get theirs in the orchestration output."""
    by_id = {message.message_id: message for message in batch}
    replies: list[ScoreReply] = []
    for outcome in outcomes:
        replies.extend(await _outcome_replies(outcome, runtime))
    replies.extend(
        _rejection_reply(r, by_id[r.request_id], runtime) for r in rejected if r.request_id in by_id
    )
    summary = SendSummary()
    to_queue: list[tuple[ReplyAddress, ScoreReply]] = []
    replied = [by_id[reply.request_id] for reply in replies if reply.request_id in by_id]
    spans = start_reply_spans(replied, queue_of={m.message_id: m.reply_to or "" for m in replied})
    for reply in replies:
        message = by_id.get(reply.request_id)
        if message is None:
            continue
        reply = finish_timings(reply, message)
        summary.ok += reply.status == ReplyStatus.OK
        summary.errors += reply.status == ReplyStatus.ERROR
        if message.origin == "http" or not message.reply_to:
            summary.http_replies[reply.request_id] = reply.model_dump(mode="json", exclude_none=True)
        else:
            address = ReplyAddress(
                message.reply_to, message.reply_to_session_id, reply_traceparent(spans, message)
            )
            to_queue.append((address, reply))
    try:
        if to_queue:
            with batch_span("qscore.functions.send_replies", list(spans.values())):
                await runtime.replies.send(to_queue)
    except BaseException:
        finish_reply_spans(spans, outcome="reply_send_failed")
        raise
    finish_reply_spans(spans, outcome="replied")
    summary.sent = len(to_queue)
    record_replies(replies)
    return summary


async def store_dead_letters(instance_id: str, rejected: list[Rejection], runtime: ScoringRuntime) -> int:
    stored = await runtime.dead_letters.store(instance_id, rejected)
    record_dead_letters([r.code for r in rejected])
    return stored
