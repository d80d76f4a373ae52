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
from qscore.contracts import ContractViolation, ScoreReply
from qscore.contracts.errors import DEAD_LETTERED
from qscore.scoring import (
    InteractionRoute,
    PreparedRequest,
    ReplyPolicy,
    RequestEnvelope,
    ScoredItem,
    check_envelope,
    error_reply,
    group_key,
    inference_violation,
    log_interactions,
    ok_reply,
    score_group,
    shadow_groups,
    time_left_s,
)


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


def _rejection(message: InboundMessage, violation: ContractViolation) -> Rejection:
    return Rejection(
        request_id=message.message_id,
        model=_model_named_in(message),
        code=violation.code.value,
        description=violation.description,
    )


def reply_queue_of(message: InboundMessage, default_reply_queue: str) -> str | None:
    """Where a queue request's reply goes, as the worker reads it: a reply session with no
    reply queue means the configured one. None for HTTP requests (answered in the response)."""
    if message.origin != "queue":
        return None
    if not message.reply_to and message.reply_to_session_id:
        return default_reply_queue
    return message.reply_to


def check_queue_request(message: InboundMessage, policy: ReplyPolicy) -> InboundMessage:
    """The worker's envelope check; the message with its reply address as the worker reads it
    (a reply session with no reply queue means the configured one)."""
    envelope = RequestEnvelope(
        message_id=message.message_id if message.has_message_id else None,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        content_type=message.content_type,
    )
    address = check_envelope(envelope, policy)
    return message.model_copy(update={"reply_to": address.queue})


async def validate(carried: Carried, runtime: ScoringRuntime) -> ValidationResult:
    """Judge each request once, as the worker does: the bad-input table (`BAD_INPUT`) decides
    error reply or dead-letter (here: the failures queue). Group the valid ones by (model,
    resolved version), and the ones in a shadow flight again by (model, shadow version)."""
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    accepted: list[PreparedRequest] = []
    result = ValidationResult(groups=[])
    await runtime.follow_registry()  # routing (version, shadow version) is decided here only
    seen: set[str] = set()
    policy = runtime.settings.reply_policy()
    for message in await load_batch(carried, runtime.payloads):
        if message.message_id in seen:  # a producer's duplicate send: one reply is enough
            continue
        seen.add(message.message_id)
        try:
            if message.origin == "queue":
                message = check_queue_request(message, policy)
            prepared = await _prepare(message, runtime)
        except ContractViolation as violation:
            rejection = _rejection(message, violation)
            # An HTTP caller is answered in the response; a queue request as the worker would be.
            if message.origin == "queue" and violation.outcome == DEAD_LETTERED:
                result.dead_letters.append(rejection)
            else:
                result.rejected_with_reply.append(rejection)
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
    what became of those that stopped being valid since validation (a passed deadline)."""

    messages: list[InboundMessage]
    prepared: list[PreparedRequest] = field(default_factory=list)
    rejected: list[ScoreReply] = field(default_factory=list)
    dead_letters: list[Rejection] = field(default_factory=list)

    @property
    def scored_messages(self) -> list[InboundMessage]:
        wanted = {request.item.request_id for request in self.prepared}
        return [message for message in self.messages if message.message_id in wanted]

    def refuse(
        self, message: InboundMessage, model: str, violation: ContractViolation, runtime: ScoringRuntime
    ) -> list[ScoreReply]:
        """As the bad-input table says: a failure record (queue requests), else an error reply."""
        if message.origin == "queue" and violation.outcome == DEAD_LETTERED:
            self.dead_letters.append(_rejection(message, violation))
            return []
        return [_error(message, model, violation, runtime)]


async def prepare_group(carried: Carried, group: Group, runtime: ScoringRuntime) -> PreparedGroup:
    wanted = set(group.request_ids)
    messages = [m for m in await load_batch(carried, runtime.payloads) if m.message_id in wanted]
    result = PreparedGroup(messages=messages)
    for message in messages:
        try:
            result.prepared.append(await _prepare(message, runtime))
        except ContractViolation as violation:  # e.g. its deadline passed while it waited
            result.rejected.extend(result.refuse(message, group.model, violation, runtime))
    return result


async def infer(carried: Carried, group: Group, runtime: ScoringRuntime) -> GroupOutcome:
    """One Triton call for the group. Transient Triton failures raise (the orchestrator retries);
    a refusal is retried request by request, so only the refused request fails (as in the worker)."""
    members = await prepare_group(carried, group, runtime)
    replies = members.rejected + await _score_members(members, members.prepared, group, runtime)
    document = json.dumps([reply.model_dump(mode="json", exclude_none=True) for reply in replies])
    carried_replies = await carry(
        document, runtime.payloads, inline_limit_bytes=runtime.settings.inline_limit_bytes
    )
    return GroupOutcome(group=group, replies=carried_replies, dead_letters=members.dead_letters)


async def _score_members(
    members: PreparedGroup, prepared: list[PreparedRequest], group: Group, runtime: ScoringRuntime
) -> list[ScoreReply]:
    from qscore.inference import InferenceRejected, ModelNotFound

    if not prepared:
        return []
    items = [request.item for request in prepared]
    wanted = {item.request_id for item in items}
    messages = [message for message in members.messages if message.message_id in wanted]
    routes = [request.route for request in prepared]
    try:
        with scoring_span(
            "qscore.functions.infer",
            messages,
            model=group.model,
            version=group.version,
            route=routes[0] if len(set(routes)) == 1 else "mixed",
        ):
            timeout_s = time_left_s(items)  # the tightest deadline bounds the Triton call
            scored = await score_group(
                runtime.triton, prepared[0].spec, group.version, items, timeout_s=timeout_s
            )
    except (ModelNotFound, InferenceRejected) as exc:
        replies: list[ScoreReply] = []
        if len(prepared) > 1 and isinstance(exc, InferenceRejected):
            for request in prepared:  # find the one Triton refuses; the others are scored
                replies.extend(await _score_members(members, [request], group, runtime))
            return replies
        not_served = isinstance(exc, ModelNotFound)
        violation = inference_violation(group.model, group.version, exc, not_served=not_served)
        for message in messages:
            replies.extend(members.refuse(message, group.model, violation, runtime))
        return replies
    record_batch(group.model, group.version, len(items))
    ok = [ok_reply(each, scored_by=runtime.settings.scored_by) for each in scored]
    await _log_by_route(runtime, scored, ok, routes)
    return ok


async def _log_by_route(
    runtime: ScoringRuntime, scored: list[ScoredItem], ok: list[ScoreReply], routes: list[InteractionRoute]
) -> None:
    for route in dict.fromkeys(routes):
        picked = [index for index, each in enumerate(routes) if each == route]
        await log_interactions(
            runtime.interactions,
            [scored[index] for index in picked],
            [ok[index] for index in picked],
            route=route,
            scored_by=runtime.settings.scored_by,
        )


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
