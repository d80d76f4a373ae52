"""One batch through Triton: score, send the replies, THEN complete the requests.

The order gives at-least-once delivery: a crash after the send and before the completion
makes the broker redeliver the request, and it is scored and replied again. Replies carry
the request id as correlation id, so a producer drops the duplicate.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from qscore.contracts import ContractViolation, ErrorCode
from qscore.inference.errors import InferenceError, InferenceUnavailable, ModelNotFound
from qscore.scoring import InferenceBackend, ScoredItem, ok_reply, score_group
from qscore.transport import ReplyAddress, ReplySender
from workers.held import HeldRequest
from workers.hooks import WorkerHooks
from workers.settle import Settler
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
        settler: Settler,
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
        scored = await self._score(model, version, held)
        if scored is None:
            return
        self._on_success()
        self._telemetry.batch(model, version, len(held))
        replies = [
            ok_reply(item, scored_by=self._options.worker_id, binary=self._options.binary_replies)
            for item in scored
        ]
        messages = [request.message for request in held]
        addressed = [(self._traced(request), reply) for request, reply in zip(held, replies, strict=True)]
        try:
            await self._replies.send(addressed)
        except Exception as exc:
            log.warning("could not send %d replies, abandoning for redelivery: %r", len(held), exc)
            await self._settler.abandon(messages, reason="reply_send_failed")
            self._finish_spans(held, "reply_send_failed")
            return
        await self._settler.complete(messages)
        self._telemetry.replied(replies)
        self._finish_spans(held, "replied")
        await self._hooks.log_interactions(scored, replies, route="production")
        self._shadow.submit(held)

    async def _score(self, model: str, version: str, held: list[HeldRequest]) -> list[ScoredItem] | None:
        """Scored items, or None when the batch was settled another way (abandoned/dead-lettered)."""
        spec = held[0].prepared.spec
        try:
            with self._telemetry.batch_span(model, version, [r.span for r in held]):
                return await score_group(self._backend, spec, version, [r.prepared.item for r in held])
        except InferenceUnavailable as exc:
            self._on_unavailable(f"inference: {exc}")
            await self._settler.abandon([r.message for r in held], reason="inference_unavailable")
            self._finish_spans(held, "abandoned")
        except ModelNotFound as exc:
            violation = ContractViolation(
                ErrorCode.UNKNOWN_VERSION, f"model {model!r} version {version} is not served: {exc}"
            )
            await self._dead_letter_all(held, violation)
        except InferenceError as exc:
            await self._isolate(key=(model, version), held=held, error=exc)
        return None

    async def _isolate(self, *, key: tuple[str, str], held: list[HeldRequest], error: InferenceError) -> None:
        """Triton refused the batch: score each request alone so one bad request fails alone."""
        if len(held) == 1:
            violation = ContractViolation(ErrorCode.INFERENCE_FAILED, f"Triton refused the request: {error}")
            await self._dead_letter_all(held, violation)
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
