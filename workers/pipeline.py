"""One batch through Triton: score, send the replies, THEN complete the requests.

The order gives at-least-once delivery: a crash after the send and before the completion
makes the broker redeliver the request, and it is scored and replied again. Replies carry
the request id as correlation id, so a producer drops the duplicate.

Each request is settled by what became of its own reply (workers/replying.py), and the deadline
is checked again right before the Triton call, whose timeout is the tightest time left. Spans,
metrics, the interaction log and shadow scoring are middleware around these steps
(workers/middleware/): `before_score`/`after_score` around each Triton call, `after_reply` and
`after_settle` from the reply and settle steps.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qscore.contracts import ContractViolation
from qscore.inference.errors import InferenceError, InferenceUnavailable, ModelNotFound
from qscore.scoring import (
    Disposition,
    InferenceBackend,
    ModelOutputMismatch,
    ReplyPolicy,
    ScoredItem,
    error_reply,
    inference_violation,
    ok_reply,
    rejection_disposition,
    score_group,
    split_expired,
    time_left_s,
)
from qscore.settings import DEFAULT_REPLY_QUEUE
from qscore.transport import ReplySender, with_deadline
from workers.batch_items import MessageItem
from workers.held import HeldRequest
from workers.middleware import MiddlewareStack, ScoreBatch, ScoreResult
from workers.replying import OutgoingReply, SettlesMessages, reply_and_settle

_calls = itertools.count(1)  # ScoreBatch.call: tells one worker's Triton calls apart


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    worker_id: str
    binary_replies: bool = False
    # What `rejection_disposition` reads: whether answered rejections are also kept.
    reply_policy: ReplyPolicy = dataclasses.field(default_factory=lambda: ReplyPolicy(DEFAULT_REPLY_QUEUE))


class BatchScorer:
    """The micro-batcher's handler: `await scorer.handle((model, version), held_requests)`."""

    def __init__(
        self,
        *,
        backend: InferenceBackend,
        settler: SettlesMessages,
        replies: ReplySender,
        middleware: MiddlewareStack,
        options: PipelineOptions,
        on_unavailable: Callable[[str], None],
        on_success: Callable[[], None],
    ) -> None:
        self._backend = backend
        self._settler = settler
        self._replies = replies
        self._middleware = middleware
        self._options = options
        self._on_unavailable = on_unavailable
        self._on_success = on_success

    async def handle(self, key: tuple[str, str], held: list[HeldRequest]) -> None:
        await self._handle(key, held, retry=False)

    async def _handle(self, key: tuple[str, str], held: list[HeldRequest], *, retry: bool) -> None:
        model, version = key
        held = await self._reply_expired(held)
        if not held:
            return
        batch = ScoreBatch(model, version, tuple(held), call=next(_calls), retry=retry)
        batch = await self._middleware.before_score(batch)
        held = list(batch.requests)
        scored = await self._score(batch)
        if scored is None:
            return
        self._on_success()
        outgoing = [
            OutgoingReply(
                request.message,
                with_deadline(request.address, item.item.request.deadline),
                ok_reply(
                    item,
                    scored_by=self._options.worker_id,
                    binary=self._options.binary_replies or request.address.binary_reply,
                ),
                request=request,
                scored=item,
            )
            for request, item in zip(held, scored, strict=True)
        ]
        await reply_and_settle(outgoing, self._replies, self._settler, self._middleware)

    async def _reply_expired(self, held: list[HeldRequest]) -> list[HeldRequest]:
        """Answer `expired` to the requests whose deadline passed while they waited; the rest."""
        live, late = split_expired([request.prepared.item for request in held])
        if not late:
            return held
        by_item = {id(request.prepared.item): request for request in held}
        await self._refuse([(by_item[id(item)], violation) for item, violation in late])
        return [by_item[id(item)] for item in live]

    async def _refuse(self, refused: Sequence[tuple[HeldRequest, ContractViolation]]) -> None:
        """Requests that will not be scored: as `rejection_disposition` says, an error reply
        (kept on the dead-letter queue too when the operator asks), else the dead-letter queue."""
        outgoing = []
        for request, violation in refused:
            disposition = rejection_disposition(
                violation,
                request.address,
                self._options.reply_policy,
                batch_item=isinstance(request.message, MessageItem),
            )
            if disposition == Disposition.DEAD_LETTER:
                await self._settler.dead_letter(request.message, violation)
                continue
            item = request.prepared.item
            reply = error_reply(
                item.request_id,
                item.request.model,
                violation,
                received_at=item.received_at,
                enqueued_at=item.enqueued_at,
                scored_by=self._options.worker_id,
            )
            keep = violation if disposition == Disposition.REPLY_AND_KEEP else None
            address = with_deadline(request.address, item.request.deadline)
            outgoing.append(OutgoingReply(request.message, address, reply, keep=keep))
        if outgoing:
            await reply_and_settle(outgoing, self._replies, self._settler, self._middleware)

    async def _score(self, batch: ScoreBatch) -> list[ScoredItem] | None:
        """Scored items, or None when the batch was settled another way (abandoned/dead-lettered)."""
        held = list(batch.requests)
        items = [request.prepared.item for request in held]
        timeout_s = time_left_s(items)
        started = time.perf_counter()
        try:
            spec = held[0].prepared.spec
            scored = await score_group(self._backend, spec, batch.version, items, timeout_s=timeout_s)
        except BaseException as exc:
            await self._middleware.after_score(ScoreResult(batch, None, exc, time.perf_counter() - started))
            if isinstance(exc, ModelOutputMismatch):  # the model's fault: the batch fails, not retried
                await self._refuse([(request, exc) for request in held])
                return None
            if not isinstance(exc, InferenceError):
                raise
            await self._failed(batch, exc, timed_out=timeout_s is not None and bool(split_expired(items)[1]))
            return None
        await self._middleware.after_score(
            ScoreResult(batch, tuple(scored), None, time.perf_counter() - started)
        )
        return scored

    async def _failed(self, batch: ScoreBatch, error: InferenceError, *, timed_out: bool) -> None:
        """Triton did not score the batch: retry, abandon, dead-letter or isolate, by the error."""
        key, held = (batch.model, batch.version), list(batch.requests)
        if isinstance(error, InferenceUnavailable):
            if timed_out:
                # The deadline ran out during the call: `expired` for those, the rest again.
                await self._handle(key, held, retry=True)
                return
            self._on_unavailable(f"inference: {error}")
            await self._settler.abandon([r.message for r in held], reason="inference_unavailable")
        elif isinstance(error, ModelNotFound):
            violation = inference_violation(*key, error, not_served=True)
            await self._refuse([(request, violation) for request in held])
        else:
            await self._isolate(key=key, held=held, error=error)

    async def _isolate(self, *, key: tuple[str, str], held: list[HeldRequest], error: InferenceError) -> None:
        """Triton refused the batch: score each request alone so one bad request fails alone."""
        if len(held) == 1:
            await self._refuse([(held[0], inference_violation(*key, error, not_served=False))])
            return
        for request in held:
            await self._handle(key, [request], retry=True)
