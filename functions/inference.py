"""What the inference activity does: score one group's prepared requests in one Triton call and
store the replies (functions/documents.py), so the history holds only a summary of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from functions.documents import PreparedMember, encode_replies
from functions.middleware import ValidatedMessage, around_score
from functions.payloads import Envelope, Group, GroupOutcome, Rejection
from functions.runtime import ScoringRuntime
from functions.steps import Addressed, address_of, error_for, load_members
from qscore.contracts import ContractViolation, ReplyStatus, accepts_binary_reply
from qscore.scoring import (
    Disposition,
    ModelOutputMismatch,
    ScoredItem,
    inference_violation,
    ok_reply,
    rejection_disposition,
    score_group,
    split_expired,
    time_left_s,
)
from qscore.transport.reply_ttl import deadline_epoch


@dataclass
class GroupReplies:
    """What became of a group's requests so far: replies, and failure records (queue requests)."""

    group: Group
    replies: list[Addressed] = field(default_factory=list)
    dead_letters: list[Rejection] = field(default_factory=list)

    def refuse(self, member: PreparedMember, violation: ContractViolation, runtime: ScoringRuntime) -> None:
        """As the core decides (`rejection_disposition`): an error reply, a failure record (queue
        requests that cannot be answered, or answered ones the operator keeps), or both."""
        envelope = member.envelope
        disposition = Disposition.REPLY  # an HTTP caller is answered in the response
        if envelope.origin == "queue":
            disposition = rejection_disposition(
                violation,
                address_of(envelope),
                runtime.settings.reply_policy(),
                batch_item=envelope.item_of is not None,
            )
        if disposition != Disposition.REPLY:
            self.dead_letters.append(
                Rejection(
                    request_id=envelope.message_id,
                    model=self.group.model,
                    code=violation.code.value,
                    description=violation.description,
                    answered=disposition == Disposition.REPLY_AND_KEEP,
                )
            )
        if disposition != Disposition.DEAD_LETTER:
            envelope = _with_deadline(member)
            self.replies.append((envelope, error_for(envelope, self.group.model, violation, runtime)))


async def infer(group: Group, runtime: ScoringRuntime) -> GroupOutcome:
    """One Triton call for the group. Transient Triton failures raise (the orchestrator retries);
    a refusal is retried request by request, so only the refused request fails (as in the worker).
    A request whose deadline passed while it waited gets its `expired` error reply."""
    members = await load_members(group, runtime.payloads)
    live_items, late = split_expired([member.request.item for member in members])
    by_id = {member.envelope.message_id: member for member in members}
    result = GroupReplies(group=group)
    for item, violation in late:
        result.refuse(by_id[item.request_id], violation, runtime)
    await _score(result, [by_id[item.request_id] for item in live_items], runtime)
    ref = await runtime.payloads.put(encode_replies(result.replies))
    errors = {
        reply.request_id: reply.error.code.value
        for _, reply in result.replies
        if reply.status == ReplyStatus.ERROR and reply.error is not None
    }
    return GroupOutcome(
        group=group,
        replies=ref,
        ok=len(result.replies) - len(errors),
        errors=errors,
        dead_letters=result.dead_letters,
    )


async def _score(
    result: GroupReplies, members: list[PreparedMember], runtime: ScoringRuntime, *, retry: bool = False
) -> None:
    from qscore.inference import InferenceRejected, ModelNotFound

    if not members:
        return
    group = result.group
    items = [member.request.item for member in members]
    routes = [member.request.route for member in members]
    try:
        # The span around the call is the tracing middleware's (functions/telemetry.py InferSpans).
        timeout_s = time_left_s(items)  # the tightest deadline bounds the Triton call
        spec = members[0].request.spec

        async def call(requests: Sequence[ValidatedMessage]) -> list[ScoredItem]:
            chosen = [request.prepared.item for request in requests]  # as before_score left them
            return await score_group(runtime.triton, spec, group.version, chosen, timeout_s=timeout_s)

        validated = [ValidatedMessage(member.envelope, member.request) for member in members]
        scored = await around_score(runtime.stack(), group.model, group.version, validated, call, retry=retry)
    except ModelOutputMismatch as mismatch:  # the model's fault: the group fails, not retried
        # (counted by the metrics middleware's after_score, as in the worker)
        for member in members:
            result.refuse(member, mismatch, runtime)
        return
    except (ModelNotFound, InferenceRejected) as exc:
        if len(members) > 1 and isinstance(exc, InferenceRejected):
            for member in members:  # find the one Triton refuses; the others are scored
                await _score(result, [member], runtime, retry=True)
            return
        not_served = isinstance(exc, ModelNotFound)
        violation = inference_violation(group.model, group.version, exc, not_served=not_served)
        for member in members:
            result.refuse(member, violation, runtime)
        return
    ok = [
        ok_reply(
            each, scored_by=runtime.settings.scored_by, binary=accepts_binary_reply(member.envelope.accept)
        )
        for member, each in zip(members, scored, strict=True)
    ]
    # Logged by the interaction log's middleware, as in the worker (here: the scores are this
    # activity's; the delivery activity's after_reply holds the replies only).
    interaction_log = runtime.interaction_log()
    if interaction_log is not None:
        await interaction_log.log_scored(scored, ok, routes)
    result.replies.extend((_with_deadline(member), reply) for member, reply in zip(members, ok, strict=True))


def _with_deadline(member: PreparedMember) -> Envelope:
    """The member's envelope with its request's deadline, which sets its reply's time-to-live."""
    deadline = deadline_epoch(member.request.item.request.deadline)
    return member.envelope if deadline is None else member.envelope.model_copy(update={"deadline": deadline})
