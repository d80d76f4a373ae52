"""From received messages to batched requests: validate each once, route the failures.

- no usable reply address (no message id, no reply queue or session, a queue not allowed)
  -> dead-letter with the reason (`qscore.contracts.BAD_INPUT`);
- anything else the request got wrong (content type, body, model, deadline passed) -> an error
  reply with the code, then complete (or dead-letter too, with `keep_answered_rejections`):
  `qscore.scoring.rejection_disposition` decides, as in the Functions app;
- Triton unreachable while looking up the model -> abandon and back off;
- otherwise -> into the micro-batcher under (model, version).

The codes come from the shared judge (`qscore.scoring.reply_address_of`, `check_content_type`,
`RequestPreparer`), the same one the Functions app uses.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qscore.batching import MicroBatcher
from qscore.claimcheck import ClaimStoreUnavailable
from qscore.contracts import ContractViolation, decode_batch, is_batch_content_type
from qscore.inference.errors import InferenceError
from qscore.scoring import (
    Disposition,
    ReplyPolicy,
    RequestEnvelope,
    RequestPreparer,
    check_content_type,
    error_reply,
    group_key,
    model_named_in,
    rejection_disposition,
    reply_address_of,
    reply_batch_of,
    unreadable_properties,
)
from qscore.transport import (
    ReplyAddress,
    ReplySender,
    accept,
    enqueued_at,
    header_length,
    message_body,
    traceparent,
)
from qscore.transport.received import message_property
from workers.batch_items import BatchedMessage, MessageItem
from workers.claims import WorkerClaims
from workers.held import HeldRequest
from workers.middleware import MiddlewareStack
from workers.replying import OutgoingReply, reply_and_settle
from workers.settle import Settler

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IntakeOptions:
    reply_policy: ReplyPolicy
    worker_id: str
    max_message_bytes: int
    # Claim-check: resolves references to bodies kept in Blob Storage (a pass-through when off).
    claims: WorkerClaims = dataclasses.field(default_factory=lambda: WorkerClaims(None, None))


def request_envelope(message: Any) -> RequestEnvelope:
    """What the contract reads off a received message besides its body; ContractViolation
    `unreadable_properties` (dead-lettered: no reply address can be trusted) when the SDK
    cannot read them."""
    try:
        message_id = message_property(message, "message_id")
        return RequestEnvelope(
            message_id=None if message_id is None else str(message_id),
            reply_to=message_property(message, "reply_to"),
            reply_to_session_id=message_property(message, "reply_to_session_id"),
            content_type=message_property(message, "content_type"),
            traceparent=traceparent(message),
            accept=accept(message),
        )
    except Exception as exc:  # a malformed AMQP property section
        raise unreadable_properties(repr(exc)) from exc


@dataclass(frozen=True, slots=True)
class _Refused:
    """A request answered with an error reply (and kept on the dead-letter queue when `keep`)."""

    message: Any
    address: ReplyAddress
    violation: ContractViolation
    body: bytes
    content_type: str | None
    keep: bool


class Intake:
    """Judges each received message once and sends it on its way."""

    def __init__(
        self,
        *,
        preparer: RequestPreparer,
        batcher: MicroBatcher[tuple[str, str], HeldRequest],
        settler: Settler,
        replies: ReplySender,
        middleware: MiddlewareStack,
        options: IntakeOptions,
        on_unavailable: Callable[[str], None],
    ) -> None:
        self._preparer = preparer
        self._batcher = batcher
        self._settler = settler
        self._replies = replies
        self._middleware = middleware
        self._options = options
        self._on_unavailable = on_unavailable

    async def accept(self, messages: Sequence[Any]) -> None:
        """Handle one received batch; every message ends up batched, replied, dead-lettered or abandoned."""
        received_at = time.time()
        refused: list[_Refused] = []
        retry: list[Any] = []
        policy = self._options.reply_policy
        for message in messages:
            if is_batch_content_type(message_property(message, "content_type")):
                await self._accept_batch(message, received_at)
                continue
            address: ReplyAddress | None = None
            body, content_type = b"", None
            try:
                envelope = request_envelope(message)
                address = reply_address_of(envelope, policy)  # the properties only: any body is answered
                body, content_type = message_body(message), envelope.content_type
                resolved = await self._options.claims.resolve(message, body)
                body, content_type = resolved.body, resolved.content_type
                if resolved.content_type != envelope.content_type:  # a claim-checked body's own
                    envelope = dataclasses.replace(envelope, content_type=resolved.content_type)
                check_content_type(envelope)
                prepared = await self._preparer.prepare(
                    request_id=str(message_property(message, "message_id")),
                    body=resolved.body,
                    received_at=received_at,
                    enqueued_at=enqueued_at(message),
                    max_message_bytes=resolved.max_bytes,
                    content_type=resolved.content_type,
                    header_length=header_length(message),
                )
            except ContractViolation as violation:
                disposition = rejection_disposition(violation, address, policy)
                if address is None or disposition == Disposition.DEAD_LETTER:
                    await self._settler.dead_letter(message, violation)
                else:
                    keep = disposition == Disposition.REPLY_AND_KEEP
                    refused.append(_Refused(message, address, violation, body, content_type, keep))
                continue
            except ClaimStoreUnavailable as exc:  # transient, like Triton down: retry later
                retry.append(message)
                self._on_unavailable(f"claim-check storage: {exc}")
                continue
            except InferenceError as exc:  # the model spec lookup could not reach Triton
                retry.append(message)
                self._on_unavailable(f"model lookup: {exc}")
                continue
            held = HeldRequest(message=message, prepared=prepared, address=address)
            await self._middleware.after_validate(held)
            key = group_key(prepared.spec.name, prepared.version)
            self._batcher.add(key, held, model_max_batch_size=prepared.spec.max_batch_size)
        if retry:
            await self._settler.abandon(retry, reason="inference_unavailable")
        if refused:
            await self._reply_refused(refused, received_at)

    async def _accept_batch(self, message: Any, received_at: float) -> None:
        """A request-batch message: the envelope judged once, then each item on its own."""
        try:
            # The content type said "batch"; the rest of the envelope is judged as for one request.
            envelope = dataclasses.replace(request_envelope(message), content_type=None)
            address = reply_address_of(envelope, self._options.reply_policy)
            decoded = decode_batch(message_body(message), max_message_bytes=self._options.max_message_bytes)
        except ContractViolation as violation:
            # A body that cannot be taken apart names no item request id a reply could carry:
            # no usable reply address, so the table's answer is the dead-letter queue.
            disposition = rejection_disposition(violation, None, self._options.reply_policy)
            assert disposition == Disposition.DEAD_LETTER
            await self._settler.dead_letter(message, violation)
            return
        parent = BatchedMessage(message, pending=len(decoded))
        # The core's rule: whether the items' replies to one session share reply-batch messages.
        reply_batch = reply_batch_of(str(message.message_id), envelope.accept)
        failed: list[tuple[MessageItem, ContractViolation]] = []
        unavailable: list[MessageItem] = []
        for each in decoded:
            item_address = ReplyAddress(
                address.queue,
                each.reply_to_session_id or address.session_id,
                binary_reply=address.binary_reply,
                reply_batch=reply_batch,
            )
            item = MessageItem(parent, each.request_id, item_address, each.model)
            if each.request is None:
                assert each.violation is not None
                failed.append((item, each.violation))
                continue
            try:
                prepared = await self._preparer.prepare_request(
                    request_id=each.request_id,
                    request=each.request,
                    received_at=received_at,
                    enqueued_at=enqueued_at(message),
                )
            except ContractViolation as violation:
                failed.append((item, violation))
                continue
            except InferenceError as exc:
                unavailable.append(item)
                self._on_unavailable(f"model lookup: {exc}")
                continue
            held = HeldRequest(message=item, prepared=prepared, address=item_address)
            await self._middleware.after_validate(held)
            key = group_key(prepared.spec.name, prepared.version)
            self._batcher.add(key, held, model_max_batch_size=prepared.spec.max_batch_size)
        if unavailable:
            await self._settler.abandon(unavailable, reason="inference_unavailable")
        if failed:
            # The core's decision for an item (`rejection_disposition(batch_item=True)`): an error
            # reply of its own, whatever the code, so its batch-mates' message is settled once.
            for item, refusal in failed:
                disposition = rejection_disposition(
                    refusal, item.address, self._options.reply_policy, batch_item=True
                )
                assert disposition == Disposition.REPLY
            await self._reply_item_errors(failed)

    async def _reply_item_errors(self, failed: Sequence[tuple[MessageItem, ContractViolation]]) -> None:
        """Answer items that can never be scored with an error reply each (then settle them)."""
        now = time.time()
        outgoing = [
            OutgoingReply(
                item,
                item.address,
                error_reply(
                    item.request_id,
                    item.model,
                    violation,
                    received_at=now,
                    enqueued_at=enqueued_at(item.parent.message),
                    scored_by=self._options.worker_id,
                ),
            )
            for item, violation in failed
        ]
        await reply_and_settle(outgoing, self._replies, self._settler, self._middleware)

    async def _reply_refused(self, refused: list[_Refused], received_at: float) -> None:
        outgoing = []
        for each in refused:
            reply = error_reply(
                str(each.message.message_id),
                model_named_in(
                    each.body, content_type=each.content_type, header_length=header_length(each.message)
                ),
                each.violation,
                received_at=received_at,
                enqueued_at=enqueued_at(each.message),
                scored_by=self._options.worker_id,
            )
            keep = each.violation if each.keep else None
            outgoing.append(OutgoingReply(each.message, each.address, reply, keep=keep))
        await reply_and_settle(outgoing, self._replies, self._settler, self._middleware)
