"""What the validation activity does, and the helpers the other activities share.

Validation and scoring are the shared core's (`qscore.scoring`); replies go through the shared
`qscore.transport.ReplySender`. This module only adapts them to the orchestration's documents:
validation decodes and checks each request once and stores each group's prepared requests as
one document (functions/documents.py); the later activities load only the documents they need.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from functions.claims import claim_body_limit, raise_if_rejected
from functions.documents import PreparedMember, decode_prepared, encode_prepared, encode_replies
from functions.middleware import ValidatedMessage
from functions.payload_store import PayloadMissing, PayloadStore, unpack
from functions.payloads import (
    Carried,
    Envelope,
    Group,
    InboundMessage,
    Rejection,
    TriggeredMessages,
    ValidationResult,
)
from functions.runtime import ScoringRuntime
from qscore.contracts import ContractViolation, DecodedItem, ScoreReply, decode_batch, is_batch_content_type
from qscore.scoring import (
    Disposition,
    PreparedRequest,
    ReplyPolicy,
    RequestEnvelope,
    check_content_type,
    error_reply,
    group_key,
    model_named_in,
    rejection_disposition,
    reply_address_of,
    shadow_groups,
    unreadable_properties,
)
from qscore.transport import ReplyAddress

Addressed = tuple[Envelope, ScoreReply]


async def load_messages(carried: Carried, store: PayloadStore) -> list[InboundMessage]:
    return TriggeredMessages.model_validate_json(await unpack(carried, store)).messages


def _model_named_in(message: InboundMessage) -> str:
    """The model a request names, best effort (for the error reply of a request that failed to parse)."""
    return model_named_in(
        message.body_bytes(), content_type=message.content_type, header_length=message.header_length
    )


def _rejection(message: InboundMessage, violation: ContractViolation) -> Rejection:
    return Rejection(
        request_id=message.message_id,
        model=_model_named_in(message),
        code=violation.code.value,
        description=violation.description,
    )


def reply_queue_of(message: Envelope) -> str | None:
    """Where a queue request's reply goes: the queue validation set from the core's
    `reply_address_of`. None for HTTP requests (answered in the response)."""
    return message.reply_to if message.origin == "queue" else None


def address_of(message: Envelope) -> ReplyAddress | None:
    """A validated queue request's reply address (None for HTTP requests)."""
    queue = reply_queue_of(message)
    return None if queue is None else ReplyAddress(queue, message.reply_to_session_id)


def with_reply_address(message: InboundMessage, policy: ReplyPolicy) -> tuple[InboundMessage, ReplyAddress]:
    """The message with its reply queue as the core decides it (`reply_address_of`: a reply
    session with no reply queue means the configured one), and that address."""
    envelope = RequestEnvelope(
        message_id=message.message_id if message.has_message_id else None,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        # A request-batch message's content type said "batch": the rest is judged as for one request.
        content_type=None if is_batch_content_type(message.content_type) else message.content_type,
        accept=message.accept,
    )
    address = reply_address_of(envelope, policy)
    return message.model_copy(update={"reply_to": address.queue}), address


async def validate(carried: Carried, runtime: ScoringRuntime) -> ValidationResult:
    """Judge each request once, as the worker does: `rejection_disposition` decides error reply
    or dead-letter (here: the failures queue), or both. Group the valid ones by (model,
    resolved version), and the ones in a shadow flight again by (model, shadow version); store
    each group's prepared requests and the rejected requests' error replies."""
    members: dict[tuple[str, str], list[PreparedMember]] = defaultdict(list)
    accepted: list[PreparedRequest] = []
    rejected: list[Addressed] = []
    result = ValidationResult(groups=[])
    await runtime.follow_registry()  # routing (version, shadow version) is decided here only
    seen: set[str] = set()
    policy = runtime.settings.reply_policy()
    messages = await load_messages(carried, runtime.payloads)
    await runtime.start_middleware()
    await runtime.stack().after_receive(runtime.settings.request_queue, messages)
    for message in messages:
        if message.message_id in seen:  # a producer's duplicate send: one reply is enough
            continue
        seen.add(message.message_id)
        address: ReplyAddress | None = None
        try:
            if message.unreadable is not None:
                raise unreadable_properties(message.unreadable)
            if message.origin == "queue":
                message, address = with_reply_address(message, policy)
                if is_batch_content_type(message.content_type):
                    item_address, address = address, None  # no one reply reaches the items' ids
                    decoded = decode_batch(message.body_bytes(), max_message_bytes=_body_limit(runtime))
                    for member, answer in await _batch_items(message, item_address, decoded, runtime):
                        if member is not None:
                            accepted.append(member.request)
                            key = group_key(member.request.spec.name, member.request.version)
                            members[key].append(member)
                        if answer is not None:
                            result.rejected_with_reply.append(answer[0])
                            rejected.append(answer[1])
                    continue
                check_content_type(RequestEnvelope(message.message_id, content_type=message.content_type))
            prepared = await _prepare(message, runtime)
        except ContractViolation as violation:
            rejection = _rejection(message, violation)
            # An HTTP caller is answered in the response; a queue request as the worker would be.
            disposition = Disposition.REPLY
            if message.origin == "queue":
                disposition = rejection_disposition(violation, address, policy)
            if disposition != Disposition.REPLY:
                answered = disposition == Disposition.REPLY_AND_KEEP
                result.dead_letters.append(rejection.model_copy(update={"answered": answered}))
            if disposition != Disposition.DEAD_LETTER:
                result.rejected_with_reply.append(rejection)
                rejected.append((message.envelope(), error_for(message, rejection.model, violation, runtime)))
            continue
        accepted.append(prepared)
        await runtime.stack().after_validate(ValidatedMessage(message.envelope(), prepared))
        members[group_key(prepared.spec.name, prepared.version)].append(
            PreparedMember(envelope=message.envelope(), request=prepared)
        )
    await asyncio.gather(
        _store_documents(result, members, rejected, runtime.payloads),
        _keep_originals(carried, messages, result, runtime.payloads),
    )
    result.shadow_groups = _shadow_groups(result.groups, accepted)
    return result


async def _store_documents(
    result: ValidationResult,
    members: dict[tuple[str, str], list[PreparedMember]],
    rejected: list[Addressed],
    store: PayloadStore,
) -> None:
    """One prepared-group document per group, and one replies document for the rejected."""
    keys = sorted(members)
    documents = [encode_prepared(members[key]) for key in keys]
    if rejected:
        documents.append(encode_replies(rejected))
    refs = list(await asyncio.gather(*(store.put(document) for document in documents)))
    result.stored.extend(refs)
    result.groups = [
        Group(
            model=model,
            version=version,
            request_ids=[member.envelope.message_id for member in members[(model, version)]],
            documents=[ref],
        )
        for (model, version), ref in zip(keys, refs[: len(keys)], strict=True)
    ]
    if rejected:
        result.rejected_replies = refs[-1]


def _shadow_groups(groups: list[Group], accepted: list[PreparedRequest]) -> list[Group]:
    """The shadow groups, reading their requests from the production groups' documents."""
    document_of = {i: group.documents[0] for group in groups for i in group.request_ids}
    return [
        Group(
            model=shadow.spec.name,
            version=shadow.version,
            request_ids=shadow.request_ids,
            documents=list(dict.fromkeys(document_of[i] for i in shadow.request_ids)),
        )
        for shadow in shadow_groups(accepted)
    ]


async def _keep_originals(
    carried: Carried, messages: list[InboundMessage], result: ValidationResult, store: PayloadStore
) -> None:
    """The messages as a reference for the failure records, which read the queue requests' bodies
    from it (the history should not carry them again): the trigger's, or the inline messages
    stored here. HTTP requests have no failure record."""
    if not any(message.origin == "queue" for message in messages):
        return
    if carried.ref is not None or carried.inline is None:
        result.originals = carried
        return
    ref = await store.put(carried.inline.encode("utf-8"))
    result.stored.append(ref)
    result.originals = Carried(ref=ref, size_bytes=carried.size_bytes)


def _body_limit(runtime: ScoringRuntime) -> int:
    return claim_body_limit() or runtime.preparer.max_message_bytes


ItemOutcome = tuple[PreparedMember | None, tuple[Rejection, Addressed] | None]


async def _batch_items(
    message: InboundMessage, address: ReplyAddress, decoded: list[DecodedItem], runtime: ScoringRuntime
) -> list[ItemOutcome]:
    """A request-batch message's items, each on its own as the worker takes them
    (workers/intake.py): a valid item joins its group, a bad one gets its own error reply (never
    a failure record: its batch-mates are answered), so one item never touches another."""
    outcomes: list[ItemOutcome] = []
    for each in decoded:
        envelope = message.envelope().model_copy(
            update={
                "message_id": each.request_id,
                "has_message_id": True,
                "reply_to": address.queue,
                "reply_to_session_id": each.reply_to_session_id or address.session_id,
                "content_type": None,
                "header_length": None,
                "item_of": message.message_id,
            }
        )
        violation = each.violation
        if each.request is not None:
            try:
                prepared = await runtime.preparer.prepare_request(
                    request_id=each.request_id,
                    request=each.request,
                    received_at=message.received_at,
                    enqueued_at=message.enqueued_at,
                )
            except ContractViolation as refused:
                violation = refused
            else:
                await runtime.stack().after_validate(ValidatedMessage(envelope, prepared))
                outcomes.append((PreparedMember(envelope=envelope, request=prepared), None))
                continue
        assert violation is not None
        disposition = rejection_disposition(
            violation, address, runtime.settings.reply_policy(), batch_item=True
        )
        assert disposition == Disposition.REPLY  # the core's rule for items: each answered alone
        rejection = Rejection(
            request_id=each.request_id,
            model=each.model,
            code=violation.code.value,
            description=violation.description,
        )
        outcomes.append((None, (rejection, (envelope, error_for(envelope, each.model, violation, runtime)))))
    return outcomes


async def _prepare(message: InboundMessage, runtime: ScoringRuntime) -> PreparedRequest:
    body = message.body_bytes()
    raise_if_rejected(body)  # a bad claim-check reference, judged in the trigger
    return await runtime.preparer.prepare(
        request_id=message.message_id,
        body=body,
        received_at=message.received_at,
        enqueued_at=message.enqueued_at,
        max_message_bytes=claim_body_limit(),
        content_type=message.content_type,
        header_length=message.header_length,
    )


async def load_members(group: Group, store: PayloadStore) -> list[PreparedMember]:
    """The group's prepared requests, from the documents validation stored (nothing decoded).

    Raises PayloadMissing when a request is in none of them: the activity then fails, and the
    orchestrator records the requests instead of answering none of them in silence."""
    wanted = set(group.request_ids)
    documents = await asyncio.gather(*(store.get(ref) for ref in group.documents))
    found = [m for data in documents for m in decode_prepared(data) if m.envelope.message_id in wanted]
    missing = wanted - {member.envelope.message_id for member in found}
    if missing:
        raise PayloadMissing(f"{len(missing)} requests of the group are in none of its documents")
    return found


def error_for(
    message: Envelope, model: str, violation: ContractViolation, runtime: ScoringRuntime
) -> ScoreReply:
    return error_reply(
        message.message_id,
        model,
        violation,
        received_at=message.received_at,
        enqueued_at=message.enqueued_at,
        scored_by=runtime.settings.scored_by,
    )


def finish_timings(reply: ScoreReply, message: Envelope) -> ScoreReply:
    """total_ms runs to the send, which happens one activity after the reply was built."""
    origin = message.enqueued_at if message.enqueued_at is not None else message.received_at
    timings = reply.timings.model_copy(update={"total_ms": max(0.0, (time.time() - origin) * 1000)})
    return reply.model_copy(update={"timings": timings})
