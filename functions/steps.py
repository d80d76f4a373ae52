"""What each activity does, as plain async functions over a ScoringRuntime.

Validation and scoring are the shared core's (`qscore.scoring`); replies go through the shared
`qscore.transport.ReplySender`. This module only adapts them to the orchestration's documents.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

from functions.claims import claim_body_limit, raise_if_rejected
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
from functions.telemetry import record_batch, scoring_span
from qscore.contracts import ContractViolation, ErrorCode, ScoreReply
from qscore.scoring import (
    PreparedRequest,
    error_reply,
    group_key,
    log_interactions,
    ok_reply,
    score_group,
    shadow_groups,
)

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
    """Judge each request once; group the valid ones by (model, resolved version), and the ones
    in a shadow flight again by (model, shadow version)."""
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    accepted: list[PreparedRequest] = []
    result = ValidationResult(groups=[])
    await runtime.follow_registry()  # routing (version, shadow version) is decided here only
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
            prepared = await _prepare(message, runtime)
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
        accepted.append(prepared)
        members[group_key(prepared.spec.name, prepared.version)].append(message.message_id)
    result.groups = [
        Group(model=model, version=version, request_ids=ids)
        for (model, version), ids in sorted(members.items())
    ]
    result.shadow_groups = [
        Group(model=shadow.spec.name, version=shadow.version, request_ids=shadow.request_ids)
        for shadow in shadow_groups(accepted)
    ]
    return result


async def _prepare(message: InboundMessage, runtime: ScoringRuntime) -> PreparedRequest:
    body = message.body_bytes()
    raise_if_rejected(body)  # a bad claim-check reference, judged in the trigger
    return await runtime.preparer.prepare(
        request_id=message.message_id,
        body=body,
        received_at=message.received_at,
        enqueued_at=message.enqueued_at,
        max_message_bytes=claim_body_limit(),
    )


@dataclass
class PreparedGroup:
    """A group's requests prepared again inside an activity (activities share no memory), and
    error replies for those that stopped being valid since validation (a passed deadline)."""

    messages: list[InboundMessage]
    prepared: list[PreparedRequest] = field(default_factory=list)
    rejected: list[ScoreReply] = field(default_factory=list)

    @property
    def scored_messages(self) -> list[InboundMessage]:
        wanted = {request.item.request_id for request in self.prepared}
        return [message for message in self.messages if message.message_id in wanted]


async def prepare_group(carried: Carried, group: Group, runtime: ScoringRuntime) -> PreparedGroup:
    wanted = set(group.request_ids)
    messages = [m for m in await load_batch(carried, runtime.payloads) if m.message_id in wanted]
    result = PreparedGroup(messages=messages)
    for message in messages:
        try:
            result.prepared.append(await _prepare(message, runtime))
        except ContractViolation as violation:  # e.g. its deadline passed while it waited
            result.rejected.append(_error(message, group.model, violation, runtime))
    return result


async def infer(carried: Carried, group: Group, runtime: ScoringRuntime) -> GroupOutcome:
    """One Triton call for the group. Transient Triton failures raise (the orchestrator retries);
    permanent ones become error replies."""
    from qscore.inference import InferenceRejected, ModelNotFound

    members = await prepare_group(carried, group, runtime)
    replies = list(members.rejected)
    if members.prepared:
        items = [request.item for request in members.prepared]
        try:
            with scoring_span(
                "qscore.functions.infer",
                members.scored_messages,
                model=group.model,
                version=group.version,
                route="production",
            ):
                scored = await score_group(runtime.triton, members.prepared[0].spec, group.version, items)
            record_batch(group.model, group.version, len(items))
            ok = [ok_reply(each, scored_by=runtime.settings.scored_by) for each in scored]
            replies.extend(ok)
            await log_interactions(
                runtime.interactions, scored, ok, route="production", scored_by=runtime.settings.scored_by
            )
        except (ModelNotFound, InferenceRejected) as exc:
            failure = ContractViolation(ErrorCode.INFERENCE_FAILED, str(exc))
            replies.extend(_error(m, group.model, failure, runtime) for m in members.scored_messages)
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
