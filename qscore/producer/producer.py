"""`ScoringProducer`: send scoring requests in batches and collect their replies from our session.

One producer owns one reply session (`settings.session_id`). Requests are sent with
message_id = request id, reply_to = the reply queue and reply_to_session_id = that session, so
every worker replies into it; a background task receives from the session and matches replies
by correlation id. Delivery is at-least-once: a duplicate reply is counted and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

import numpy as np
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageSizeExceededError

from qscore.claimcheck import ClaimCheckSettings
from qscore.contracts import BINARY_REPLY_CONTENT_TYPE, REPLY_BATCH_CONTENT_TYPE
from qscore.producer.claims import ProducerClaims
from qscore.producer.coalesce import Coalescer, PendingCall
from qscore.producer.collector import ReplyCollector
from qscore.producer.lanes import LaneSenders
from qscore.producer.outcomes import ProducerStats, ReplyOutcome
from qscore.producer.reply_session import ReplySession
from qscore.producer.requests import OutgoingRequest, batch_message, encoded_request, request_message
from qscore.producer.settings import ProducerSettings
from qscore.producer.tracing import request_traceparent
from qscore.transport.sdk_batch_encoding import add_encoded, encoded_adds

log = logging.getLogger(__name__)

EXPIRY_TICK_S = 0.1


class ProducerClosed(RuntimeError):
    """send/score called on a producer that is not started or already closed."""


class ScoringProducer:
    """Async producer of scoring requests; use as `async with ScoringProducer(settings=...) as p:`."""

    def __init__(
        self,
        *,
        settings: ProducerSettings,
        client: ServiceBusClient | None = None,
        claim_check: ClaimCheckSettings | Literal["env"] | None = "env",
    ) -> None:
        """`claim_check`: where bodies over its threshold go by reference; "env" reads
        QSCORE_BLOB_CONNECTION / QSCORE_BLOB_ACCOUNT_URL (none set: off)."""
        self.settings = settings
        self.claims = ProducerClaims(ClaimCheckSettings.from_env() if claim_check == "env" else claim_check)
        self._references: dict[str, bytes] = {}
        self._client = client
        self._owns_client = client is None
        self._collector = ReplyCollector()
        self._senders: LaneSenders | None = None
        self._coalescer: Coalescer | None = None
        self._reply_session: ReplySession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    @property
    def session_id(self) -> str:
        return self.settings.session_id

    @property
    def stats(self) -> ProducerStats:
        return self._collector.stats

    @property
    def pending(self) -> int:
        return self._collector.pending_count

    async def start(self) -> None:
        """Connect, open the sender and our session's receiver, start collecting replies."""
        if self._running:
            return
        if self._client is None:
            from qscore.transport.client import servicebus_client

            self._client = servicebus_client(
                connection=self.settings.connection, namespace=self.settings.namespace
            )
        self._senders = LaneSenders(self._client)
        try:
            # Each link attach is a round trip or two: open both at once.
            self._reply_session = ReplySession(
                client=self._client, settings=self.settings, collector=self._collector, claims=self.claims
            )
            await asyncio.gather(self._senders.open(self.settings.request_queue), self._reply_session.open())
        except BaseException:
            await self.close()
            raise
        self._running = True
        if self.settings.coalesce:
            self._coalescer = Coalescer(
                flush=self._send_calls,
                linger_s=self.settings.coalesce_linger_ms / 1000,
                max_rows=self.settings.coalesce_max_rows,
                max_bytes=self.settings.coalesce_max_bytes,
            )
        self._tasks = [
            asyncio.create_task(self._reply_session.run(lambda: self._running), name="producer-replies"),
            asyncio.create_task(self._expiry_loop(), name="producer-expiry"),
        ]

    async def close(self) -> None:
        """Stop collecting; requests still pending get no outcome. Safe to call twice."""
        coalescer, self._coalescer = self._coalescer, None
        if coalescer is not None:
            await coalescer.close()
        self._running = False
        self._collector.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        # Closing a link waits for the broker's detach: close them side by side.
        await asyncio.gather(self._close_reply_session(), self._close_sender())
        if self._owns_client and self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None
        with contextlib.suppress(Exception):
            await self.claims.close()

    async def __aenter__(self) -> ScoringProducer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def send(self, requests: Iterable[OutgoingRequest], *, timeout_s: float | None = None) -> list[str]:
        """Send requests in as few batches as fit; their outcomes come from `replies()`."""
        return await self._send(list(requests), timeout_s=timeout_s, waiters=None)

    async def replies(self, *, wait_when_idle: bool = False) -> AsyncIterator[ReplyOutcome]:
        """Outcomes (reply or timeout) of `send()` requests as they arrive.

        Ends when none is pending, or with `wait_when_idle=True` only when the producer closes
        (for a consumer running beside a sender that counts outcomes itself).
        """
        while True:
            outcome = await self._collector.next_streamed(wait_when_idle=wait_when_idle)
            if outcome is None:
                return
            yield outcome

    async def score_many(
        self, requests: Sequence[OutgoingRequest], *, timeout_s: float | None = None
    ) -> list[ReplyOutcome]:
        """Send and wait for every outcome; results are in the order of `requests`."""
        loop = asyncio.get_running_loop()
        waiters: dict[str, asyncio.Future[ReplyOutcome]] = {
            request.request_id: loop.create_future() for request in requests
        }
        await self._send(list(requests), timeout_s=timeout_s, waiters=waiters)
        return list(await asyncio.gather(*(waiters[r.request_id] for r in requests)))

    async def score(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: str | None = None,
        deadline: datetime | None = None,
        timeout_s: float | None = None,
        priority: int = 0,
        raise_on_error: bool = True,
    ) -> ReplyOutcome:
        """Score one request and wait for its outcome. With `settings.coalesce`, concurrent calls
        for the same model, version and lane go out as one message (qscore.producer.coalesce);
        this call still gets only its own outcome, after its own timeout.

        An error reply raises `ScoringError` (its stable code and description) as soon as the
        reply arrives, and no reply within the timeout raises `ReplyTimedOut`; with
        `raise_on_error=False` both come back as the outcome instead (the bench counts them)."""
        outcome = await self._score_one(model, inputs, version, deadline, timeout_s, priority)
        return outcome.raise_for_error() if raise_on_error else outcome

    async def _score_one(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        version: str | None,
        deadline: datetime | None,
        timeout_s: float | None,
        priority: int,
    ) -> ReplyOutcome:
        outgoing = OutgoingRequest.build(
            model,
            inputs,
            version=version,
            deadline=deadline,
            priority=priority,
            binary=self.settings.binary_tensors,
            body_format=self.settings.body_format,
        )
        if self._coalescer is None:
            (outcome,) = await self.score_many([outgoing], timeout_s=timeout_s)
            return outcome
        if not self._running:
            raise ProducerClosed("the producer is not started (use `async with ScoringProducer(...)`)")
        timeout = timeout_s if timeout_s is not None else self.settings.reply_timeout_s
        lane = self.settings.lane(priority)
        return await self._coalescer.submit(outgoing, lane=lane, timeout_s=timeout)

    async def score_batch(
        self, requests: Sequence[OutgoingRequest], *, timeout_s: float | None = None, priority: int = 0
    ) -> list[ReplyOutcome]:
        """Send `requests` as the items of request-batch messages (as many as the coalescing
        bounds need) and wait for every outcome, in the order of `requests`."""
        timeout = timeout_s if timeout_s is not None else self.settings.reply_timeout_s
        coalescer = Coalescer(
            flush=self._send_calls,
            linger_s=60.0,
            max_rows=self.settings.coalesce_max_rows,
            max_bytes=self.settings.coalesce_max_bytes,
        )
        futures = [
            coalescer.submit(request, lane=self.settings.lane(priority), timeout_s=timeout)
            for request in requests
        ]
        await coalescer.close()
        return list(await asyncio.gather(*futures))

    async def _send(
        self,
        requests: list[OutgoingRequest],
        *,
        timeout_s: float | None,
        waiters: dict[str, asyncio.Future[ReplyOutcome]] | None,
    ) -> list[str]:
        if not self._running or self._senders is None:
            raise ProducerClosed("the producer is not started (use `async with ScoringProducer(...)`)")
        timeout = timeout_s if timeout_s is not None else self.settings.reply_timeout_s
        # Bodies over the claim-check threshold go to Blob first; their messages carry a reference.
        self._references.update(await self.claims.check_in(requests))
        lanes: dict[str, list[OutgoingRequest]] = {}
        for request in requests:
            lanes.setdefault(self.settings.lane(request.request.priority), []).append(request)
        for lane, lane_requests in lanes.items():
            # One sender link per lane: its batches go out one at a time, in order.
            async with self._senders.use(lane) as sender:
                start = 0
                while start < len(lane_requests):
                    start = await self._send_one_batch(sender, lane_requests, start, timeout, waiters)
        return [request.request_id for request in requests]

    async def _send_calls(self, lane: str, calls: list[PendingCall]) -> None:
        """Send coalesced calls: one plain request alone, else one request-batch message."""
        if self._senders is None:
            raise ProducerClosed("the producer is closed")
        if len(calls) == 1:  # alone (or too large to share a message): claim-checked as usual
            self._references.update(await self.claims.check_in([calls[0].request]))
            message = self._message(calls[0].request)
            self._references.pop(calls[0].request.request_id, None)
        else:
            message = self._batch_message([call.item for call in calls])
        async with self._senders.use(lane) as sender:
            sent_at = time.time()
            for call in calls:
                self._collector.track(
                    call.request.request_id, sent_at=sent_at, timeout_s=call.timeout_s, waiter=call.outcome
                )
            try:
                await sender.send_messages(message)
            except BaseException:
                for call in calls:
                    self._collector.untrack(call.request.request_id)
                raise

    async def _send_one_batch(
        self,
        sender: Any,
        requests: list[OutgoingRequest],
        start: int,
        timeout_s: float,
        waiters: dict[str, asyncio.Future[ReplyOutcome]] | None,
    ) -> int:
        """Fill one ServiceBusMessageBatch from requests[start:], send it; returns the next index."""
        batch = await sender.create_message_batch()
        add = self._add_encoded if encoded_adds(batch) else self._add
        end = start
        while end < len(requests):
            if not add(batch, requests[end]):
                if end == start:
                    raise ValueError(
                        f"request {requests[end].request_id} is larger than the queue's "
                        f"maximum message size ({batch.max_size_in_bytes} bytes)"
                    )
                break
            end += 1
        sent_at = time.time()
        chunk = requests[start:end]
        for request in chunk:
            waiter = waiters.get(request.request_id) if waiters is not None else None
            self._collector.track(request.request_id, sent_at=sent_at, timeout_s=timeout_s, waiter=waiter)
        try:
            await sender.send_messages(batch)
        except BaseException:
            for request in chunk:
                self._collector.untrack(request.request_id)
            raise
        return end

    def _add_encoded(self, batch: Any, request: OutgoingRequest) -> bool:
        """Add a request to the batch encoded once, without a ServiceBusMessage: the SDK's
        add_message builds one, encodes it to size it and again to add it (~11% of the load
        client's CPU); the same bytes and size rule (qscore.transport.sdk_batch_encoding).
        False when it does not fit."""
        encoded = encoded_request(
            request,
            reply_to=self.settings.reply_queue,
            reply_to_session_id=self.settings.session_id,
            traceparent=request_traceparent(queue=self.settings.request_queue, request_id=request.request_id),
            reference=self._references.get(request.request_id),
            accept=self._accept,
        )
        if encoded is None:  # a hook went missing (counted): the SDK's public add
            return self._add(batch, request)
        if not add_encoded(batch, encoded, message_id=request.request_id, session_id=None):
            return False
        self._references.pop(request.request_id, None)
        return True

    def _add(self, batch: Any, request: OutgoingRequest) -> bool:
        """Add a request to the batch through the SDK's add_message; False when it does not fit
        (its claim-check reference is kept for the next batch)."""
        try:
            batch.add_message(self._message(request))
        except MessageSizeExceededError:
            return False
        self._references.pop(request.request_id, None)
        return True

    def _message(self, request: OutgoingRequest) -> ServiceBusMessage:
        traceparent = request_traceparent(queue=self.settings.request_queue, request_id=request.request_id)
        return request_message(
            request,
            reply_to=self.settings.reply_queue,
            reply_to_session_id=self.settings.session_id,
            traceparent=traceparent,
            reference=self._references.get(request.request_id),
            accept=self._accept,
        )

    def _batch_message(self, items: list[bytes]) -> ServiceBusMessage:
        traceparent = request_traceparent(queue=self.settings.request_queue, request_id=uuid.uuid4().hex)
        return batch_message(
            items,
            reply_to=self.settings.reply_queue,
            reply_to_session_id=self.settings.session_id,
            traceparent=traceparent,
            accept=self._batch_accept,
        )

    @property
    def _batch_accept(self) -> str:
        """The `accept` property of our request-batch messages: the items' replies to our session
        in reply-batch messages (fewer messages: the broker's cost is per message), and a reply
        that goes alone in the form `_accept` asks for."""
        single = self._accept
        return REPLY_BATCH_CONTENT_TYPE if single is None else f"{REPLY_BATCH_CONTENT_TYPE}, {single}"

    @property
    def _accept(self) -> str | None:
        """The `accept` property of our requests: binary replies unless settings say json."""
        return BINARY_REPLY_CONTENT_TYPE if self.settings.reply_format == "binary" else None

    async def _close_reply_session(self) -> None:
        session, self._reply_session = self._reply_session, None
        if session is not None:
            await session.close()

    async def _close_sender(self) -> None:
        senders, self._senders = self._senders, None
        if senders is not None:
            await senders.close()

    async def _expiry_loop(self) -> None:
        while self._running:
            self._collector.expire(time.time())
            await asyncio.sleep(EXPIRY_TICK_S)
