"""What each activity does, as plain async functions over a ScoringRuntime.

Validation and scoring are the shared core's (`qscore.scoring`); replies go through the shared
`qscore.transport.ReplySender`. This module only adapts them to the orchestration's documents.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict

from functions.payload_store import PayloadStore, carry, unpack
from functions.payloads import (
    Carried,
    Group,
    GroupOutcome,
    InboundMessage,
    MessageBatch,
    Rejection,
    ValidationResult,
)
from functions.runtime import ScoringRuntime
from functions.telemetry import record_batch
from qscore.contracts import ContractViolation, ErrorCode, ScoreReply
from qscore.scoring import ScoringItem, error_reply, group_key, ok_reply, score_group

NO_REPLY_ADDRESS = "no_reply_address"


async def load_batch(carried: Carried, store: PayloadStore) -> list[InboundMessage]:
    return MessageBatch.model_validate_json(await unpack(carried, store)).messages


def _model_named_in(message: InboundMessage) -> str:
    """The model a request names, best effort (for the error reply of a request that failed to parse)."""
    try:
        document = json.loads(message.body_bytes())
    except (ValueError, UnicodeDecodeError):
        return ""
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, str) else ""


async def validate(carried: Carried, runtime: ScoringRuntime) -> ValidationResult:
    """Judge each request once; group the valid ones by (model, resolved version)."""
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    result = ValidationResult(groups=[])
    seen: set[str] = set()
    for message in await load_batch(carried, runtime.payloads):
        if message.message_id in seen:  # a producer's duplicate send: one reply is enough
            continue
        seen.add(message.message_id)
        if message.origin == "queue" and not message.reply_to:
            result.dead_letters.append(
                Rejection(
                    request_id=message.message_id,
                    model=_model_named_in(message),
                    code=NO_REPLY_ADDRESS,
                    description="the request names no reply_to queue, so no reply can be sent",
                )
            )
            continue
        try:
            prepared = await runtime.preparer.prepare(
                request_id=message.message_id,
                body=message.body_bytes(),
                received_at=message.received_at,
                enqueued_at=message.enqueued_at,
            )
        except ContractViolation as violation:
            result.rejected_with_reply.append(
                Rejection(
                    request_id=message.message_id,
                    model=_model_named_in(message),
                    code=violation.code.value,
                    description=violation.description,
                )
            )
            continue
        members[group_key(prepared.spec.name, prepared.version)].append(message.message_id)
    result.groups = [
        Group(model=model, version=version, request_ids=ids)
        for (model, version), ids in sorted(members.items())
    ]
    return result


async def infer(carried: Carried, group: Group, runtime: ScoringRuntime) -> GroupOutcome:
    """One Triton call for the group. Transient Triton failures raise (the orchestrator retries);
    permanent ones become error replies."""
    from qscore.inference import InferenceRejected, ModelNotFound

    wanted = set(group.request_ids)
    messages = [m for m in await load_batch(carried, runtime.payloads) if m.message_id in wanted]
    items: list[ScoringItem] = []
    replies: list[ScoreReply] = []
    spec = None
    for message in messages:
        try:
            prepared = await runtime.preparer.prepare(
                request_id=message.message_id,
                body=message.body_bytes(),
                received_at=message.received_at,
                enqueued_at=message.enqueued_at,
            )
        except ContractViolation as violation:  # e.g. its deadline passed while it waited
            replies.append(_error(message, group.model, violation, runtime))
            continue
        items.append(prepared.item)
        spec = prepared.spec
    if items and spec is not None:
        try:
            scored = await score_group(runtime.triton, spec, group.version, items)
            record_batch(group.model, group.version, len(items))
            replies.extend(ok_reply(each, scored_by=runtime.settings.scored_by) for each in scored)
        except (ModelNotFound, InferenceRejected) as exc:
            failure = ContractViolation(ErrorCode.INFERENCE_FAILED, str(exc))
            by_id = {m.message_id: m for m in messages}
            replies.extend(_error(by_id[i.request_id], group.model, failure, runtime) for i in items)
    document = json.dumps([reply.model_dump(mode="json", exclude_none=True) for reply in replies])
    carried_replies = await carry(
        document, runtime.payloads, inline_limit_bytes=runtime.settings.inline_limit_bytes
    )
    return GroupOutcome(group=group, replies=carried_replies)


def _error(
    message: InboundMessage, model: str, violation: ContractViolation, runtime: ScoringRuntime
) -> ScoreReply:
    return error_reply(
        message.message_id,
        model,
        violation,
        received_at=message.received_at,
        enqueued_at=message.enqueued_at,
        scored_by=runtime.settings.scored_by,
    )


def finish_timings(reply: ScoreReply, message: InboundMessage) -> ScoreReply:
    """total_ms runs to the send, which happens one activity after the reply was built."""
    origin = message.enqueued_at if message.enqueued_at is not None else message.received_at
    timings = reply.timings.model_copy(update={"total_ms": max(0.0, (time.time() - origin) * 1000)})
    return reply.model_copy(update={"timings": timings})
