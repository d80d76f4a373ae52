"""One batch through Triton: score, send the replies, THEN complete the requests.

The order gives at-least-once delivery: a crash after the send and before the completion
makes the broker redeliver the request, and it is scored and replied again. Replies carry
the request id as correlation id, so a producer drops the duplicate.

Each request is settled by what became of its own reply (workers/replying.py), and the deadline
is checked again right before the Triton call, whose timeout is the tightest time left.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from qscore.contracts import ContractViolation
from qscore.inference.errors import InferenceError, InferenceUnavailable, ModelNotFound
from qscore.scoring import (
    InferenceBackend,
    ScoredItem,
    error_reply,
    inference_violation,
    ok_reply,
    score_group,
    split_expired,
    time_left_s,
)
from qscore.transport import ReplyAddress, ReplySender
from workers.held import HeldRequest
from workers.hooks import WorkerHooks
from workers.replying import OutgoingReply, SettlesMessages, reply_and_settle
from workers.shadow import ShadowScorer
from workers.telemetry import WorkerTelemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    worker_id: str
    binary_replies: bool = False


class BatchScorer:
    """The micro-batcher's handler: `await scorer.handle((model, version), held_requests)`."""

    def __init__(
        self,
        *,
        backend: InferenceBackend,
        settler: SettlesMessages,
        replies: ReplySender,
        telemetry: WorkerTelemetry,
        hooks: WorkerHooks,
        shadow: ShadowScorer,
        options: PipelineOptions,
        on_unavailable: Callable[[str], None],
        on_success: Callable[[], None],
    ) -> None:
        self._backend = backend
        self._settler = settler
        self._replies = replies
        self._telemetry = telemetry
        self._hooks = hooks
        self._shadow = shadow
        self._options = options
        self._on_unavailable = on_unavailable
        self._on_success = on_success

    async def handle(self, key: tuple[str, str], held: list[HeldRequest]) -> None:
        model, version = key
        held = await self._reply_expired(held)
        if not held:
            return
        scored = await self._score(model, version, held)
        if scored is None:
            return
        self._on_success()
        self._telemetry.batch(model, version, len(held))
        outgoing = [
            OutgoingReply(
                request.message,
                self._traced(request),
                ok_reply(item, scored_by=self._options.worker_id, binary=self._options.binary_replies),
                request.span,
            )
            for request, item in zip(held, scored, strict=True)
        ]
        sent = await reply_and_settle(outgoing, self._replies, self._settler, self._telemetry)
        await self._hooks.log_interactions(
            [scored[index] for index in sent],
            [outgoing[index].reply for index in sent],
            route=[held[index].prepared.route for index in sent],
        )
        self._shadow.submit([held[index] for index in sent])

    async def _reply_expired(self, held: list[HeldRequest]) -> list[HeldRequest]:
        """Answer `expired` to the requests whose deadline passed while they waited; the rest."""
        live, late = split_expired([request.prepared.item for request in held])
        if not late:
            return held
        by_item = {id(request.prepared.item): request for request in held}
        outgoing = [
            OutgoingReply(
                by_item[id(item)].message,
                self._traced(by_item[id(item)]),
                error_reply(
                    item.request_id,
                    item.request.model,
                    violation,
                    received_at=item.received_at,
                    enqueued_at=item.enqueued_at,
                    scored_by=self._options.worker_id,
                ),
                by_item[id(item)].span,
            )
            for item, violation in late
        ]
        await reply_and_settle(outgoing, self._replies, self._settler, self._telemetry)
        return [by_item[id(item)] for item in live]

    async def _score(self, model: str, version: str, held: list[HeldRequest]) -> list[ScoredItem] | None:
        """Scored items, or None when the batch was settled another way (abandoned/dead-lettered)."""
        spec = held[0].prepared.spec
        items = [request.prepared.item for request in held]
        timeout_s = time_left_s(items)
        try:
            with self._telemetry.batch_span(model, version, [r.span for r in held]):
                return await score_group(self._backend, spec, version, items, timeout_s=timeout_s)
        except InferenceUnavailable as exc:
            if timeout_s is not None and split_expired(items)[1]:
                # The deadline ran out during the call: `expired` for those, the rest again.
                await self.handle((model, version), held)
                return None
            self._on_unavailable(f"inference: {exc}")
            await self._settler.abandon([r.message for r in held], reason="inference_unavailable")
            self._finish_spans(held, "abandoned")
        except ModelNotFound as exc:
            await self._dead_letter_all(held, inference_violation(model, version, exc, not_served=True))
        except InferenceError as exc:
            await self._isolate(key=(model, version), held=held, error=exc)
        return None

    async def _isolate(self, *, key: tuple[str, str], held: list[HeldRequest], error: InferenceError) -> None:
        """Triton refused the batch: score each request alone so one bad request fails alone."""
        if len(held) == 1:
            await self._dead_letter_all(held, inference_violation(*key, error, not_served=False))
            return
        for request in held:
            await self.handle(key, [request])

    async def _dead_letter_all(self, held: list[HeldRequest], violation: ContractViolation) -> None:
        for request in held:
            await self._settler.dead_letter(request.message, violation)
        self._finish_spans(held, f"dead_lettered:{violation.code}")

    def _traced(self, request: HeldRequest) -> ReplyAddress:
        """The reply's address, carrying the worker span's traceparent when there is a span."""
        if request.span is None:
            return request.address  # already carries the request's own traceparent
        parent = self._telemetry.reply_traceparent(request.message, request.span)
        return dataclasses.replace(request.address, traceparent=parent)

    def _finish_spans(self, held: list[HeldRequest], outcome: str) -> None:
        for request in held:
            self._telemetry.finish_message(request.span, outcome=outcome)
