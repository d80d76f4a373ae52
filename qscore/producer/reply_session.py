"""The producer's reply session: one session receiver on the reply queue, kept open for as long
as the producer runs, handing each reply to the collector by correlation id."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError
from pydantic import ValidationError

from qscore.claimcheck import CLAIM_CHECK_CONTENT_TYPE
from qscore.contracts import ScoreReply, decode_reply_batch, is_reply_batch
from qscore.producer.claims import ProducerClaims
from qscore.producer.collector import ReplyCollector
from qscore.producer.outcomes import body_bytes, parse_reply
from qscore.producer.settings import ProducerSettings
from qscore.producer.tracing import reply_received
from qscore.transport.received import header_length
from qscore.transport.receiving import receive_ready, set_further_pull, top_up_link_credit
from qscore.transport.settlement import top_up_management_credit

log = logging.getLogger(__name__)

RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
SESSION_LOCK_RENEWAL_S = 7 * 24 * 3600.0  # renew our session's lock for as long as we run


class ReplySession:
    """`await open()` once, then `run(is_running)` as a task; `close()` releases the session."""

    def __init__(
        self,
        *,
        client: ServiceBusClient,
        settings: ProducerSettings,
        collector: ReplyCollector,
        claims: ProducerClaims,
    ) -> None:
        self._client = client
        self._settings = settings
        self._collector = collector
        self._claims = claims
        self._receiver: ServiceBusReceiver | None = None
        self._renewer: AutoLockRenewer | None = None

    async def open(self) -> None:
        self._receiver = await self._open_receiver()

    async def close(self) -> None:
        receiver, renewer = self._receiver, self._renewer
        self._receiver = self._renewer = None
        await asyncio.gather(
            *(closable.close() for closable in (receiver, renewer) if closable is not None),
            return_exceptions=True,
        )

    async def run(self, is_running: Callable[[], bool]) -> None:
        failures = 0
        while is_running():
            try:
                if self._receiver is None:
                    self._receiver = await self._open_receiver()
                await self._receive_some(self._receiver)
                failures = 0
            except ServiceBusError as exc:
                # Session lock lost or connection dropped: reopen our session and carry on.
                delay = RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)]
                failures += 1
                log.warning("reply receiver failed (%s); reopening in %.1f s", exc, delay)
                await self.close()
                await asyncio.sleep(delay)

    async def _open_receiver(self) -> ServiceBusReceiver:
        settings = self._settings
        mode = (
            ServiceBusReceiveMode.RECEIVE_AND_DELETE
            if settings.reply_receive_mode == "receive_and_delete"
            else ServiceBusReceiveMode.PEEK_LOCK
        )
        self._renewer = AutoLockRenewer(max_lock_renewal_duration=SESSION_LOCK_RENEWAL_S)
        receiver = self._client.get_queue_receiver(
            settings.reply_queue,
            session_id=settings.session_id,
            receive_mode=mode,
            prefetch_count=settings.prefetch,
            auto_lock_renewer=self._renewer,
            socket_timeout=settings.reply_socket_timeout_s,
        )
        set_further_pull(receiver, settings.reply_further_pull_s)
        await receiver.__aenter__()
        return receiver

    async def _receive_some(self, receiver: ServiceBusReceiver) -> None:
        # The next replies on their way while these are read (the SDK grants credit again only
        # once all of it is used: a round trip with nothing coming, per `prefetch` replies).
        await top_up_link_credit(receiver, self._settings.prefetch)
        messages = await receive_ready(
            receiver, max_count=self._settings.receive_batch_size, wait_s=self._settings.receive_wait_s
        )
        received_at = time.time()
        for message in messages:
            # Only a reply by reference needs a round trip (Blob); the rest skip the coroutine.
            inline = message.content_type != CLAIM_CHECK_CONTENT_TYPE
            self._accept(
                message, received_at, body_bytes(message) if inline else await self._reply_body(message)
            )
        if self._settings.reply_receive_mode == "peek_lock":
            for message in messages:
                await receiver.complete_message(message)
        # Session-lock renewals (and peek-lock completes) answer on a management link whose
        # credit the SDK grants once; without a top-up a long-lived producer stalls after
        # 10,000 of them (the same limit the worker's settlement hit).
        await top_up_management_credit(receiver)

    async def _reply_body(self, message: ServiceBusReceivedMessage) -> bytes | None:
        """The reply's body, fetched from Blob when it came by reference (None if that fails)."""
        try:
            return await self._claims.check_out_reply(message.content_type, body_bytes(message))
        except Exception as exc:  # a reply we cannot read is malformed to us; its request times out
            log.warning("reply %s by reference could not be read: %s", message.correlation_id, exc)
            return None

    def _accept(self, message: ServiceBusReceivedMessage, received_at: float, body: bytes | None) -> None:
        self._collector.stats.reply_messages += 1
        try:
            if body is None:
                raise ValueError("no body")
            if is_reply_batch(message.content_type):  # several items' replies: each by its request id
                for reply in decode_reply_batch(body):
                    self._replied(message, reply.request_id, reply, received_at)
                return
            reply = parse_reply(body, content_type=message.content_type, header_length=header_length(message))
        except (ValidationError, ValueError):
            log.warning("dropping a reply that is not a ScoreReply (message id %s)", message.message_id)
            self._collector.on_malformed()
            return
        self._replied(message, message.correlation_id, reply, received_at)

    def _replied(
        self, message: ServiceBusReceivedMessage, correlation: str | None, reply: ScoreReply, at: float
    ) -> None:
        reply_received(
            message.application_properties, queue=self._settings.reply_queue, request_id=reply.request_id
        )
        self._collector.on_reply(correlation, reply, received_at=at)
