"""From received messages to batched requests: validate each once, route the failures.

- no reply address, or a request that breaks the contract -> dead-letter with the reason;
- deadline passed -> `expired` error reply, then complete (never scored);
- Triton unreachable while looking up the model -> abandon and back off;
- otherwise -> into the micro-batcher under (model, version).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qscore.batching import MicroBatcher
from qscore.contracts import ContractViolation, ErrorCode, decode_request
from qscore.inference.errors import InferenceError
from qscore.scoring import RequestPreparer, error_reply, group_key
from qscore.transport import (
    ReplyAddress,
    ReplySender,
    enqueued_at,
    message_body,
    reply_address,
    traceparent,
)
from workers.dead_letter import NO_REPLY_ADDRESS
from workers.held import HeldRequest
from workers.settle import Settler
from workers.telemetry import WorkerTelemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IntakeOptions:
    default_reply_queue: str
    worker_id: str
    max_message_bytes: int


class Intake:
    """Judges each received message once and sends it on its way."""

    def __init__(
        self,
        *,
        preparer: RequestPreparer,
        batcher: MicroBatcher[tuple[str, str], HeldRequest],
        settler: Settler,
        replies: ReplySender,
        telemetry: WorkerTelemetry,
        options: IntakeOptions,
        on_unavailable: Callable[[str], None],
    ) -> None:
        self._preparer = preparer
        self._batcher = batcher
        self._settler = settler
        self._replies = replies
        self._telemetry = telemetry
        self._options = options
        self._on_unavailable = on_unavailable

    def _address(self, message: Any) -> ReplyAddress | None:
        address = reply_address(message)
        if address is None and getattr(message, "reply_to_session_id", None):
            return ReplyAddress(
                self._options.default_reply_queue, message.reply_to_session_id, traceparent(message)
            )
        return address

    async def accept(self, messages: Sequence[Any]) -> None:
        """Handle one received batch; every message ends up batched, replied, dead-lettered or abandoned."""
        received_at = time.time()
        expired: list[tuple[Any, ReplyAddress, ContractViolation, bytes]] = []
        retry: list[Any] = []
        for message in messages:
            address = self._address(message)
            if address is None:
                await self._settler.dead_letter(message, NO_REPLY_ADDRESS)
                continue
            body = message_body(message)
            try:
                prepared = await self._preparer.prepare(
                    request_id=str(message.message_id),
                    body=body,
                    received_at=received_at,
                    enqueued_at=enqueued_at(message),
                )
            except ContractViolation as violation:
                if violation.code == ErrorCode.EXPIRED:
                    expired.append((message, address, violation, body))
                else:
                    await self._settler.dead_letter(message, violation)
                continue
            except InferenceError as exc:  # the model spec lookup could not reach Triton
                retry.append(message)
                self._on_unavailable(f"model lookup: {exc}")
                continue
            span = self._telemetry.start_message(message)
            held = HeldRequest(message=message, prepared=prepared, address=address, span=span)
            key = group_key(prepared.spec.name, prepared.version)
            self._batcher.add(key, held, model_max_batch_size=prepared.spec.max_batch_size)
        if retry:
            await self._settler.abandon(retry, reason="inference_unavailable")
        if expired:
            await self._reply_expired(expired, received_at)

    async def _reply_expired(
        self, expired: list[tuple[Any, ReplyAddress, ContractViolation, bytes]], received_at: float
    ) -> None:
        replies = []
        for message, address, violation, body in expired:
            reply = error_reply(
                str(message.message_id),
                decode_request(body, max_message_bytes=self._options.max_message_bytes).model,
                violation,
                received_at=received_at,
                enqueued_at=enqueued_at(message),
                scored_by=self._options.worker_id,
            )
            replies.append((address, reply))
        messages = [message for message, *_ in expired]
        try:
            await self._replies.send(replies)
        except Exception as exc:
            log.warning("could not send %d expired replies, abandoning: %r", len(replies), exc)
            await self._settler.abandon(messages, reason="reply_send_failed")
            return
        await self._settler.complete(messages)
        self._telemetry.replied([reply for _, reply in replies])
