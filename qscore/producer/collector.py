"""Match replies to pending requests by correlation id, drop duplicates, expire the overdue.

Pure bookkeeping (no I/O) so it can be tested without a broker; the producer feeds it the
replies it receives and asks it which requests have timed out.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import OrderedDict
from dataclasses import dataclass

from qscore.contracts import ScoreReply
from qscore.producer.outcomes import OutcomeKind, ProducerStats, ReplyOutcome

# How many finished request ids to remember to tell a duplicate reply from a stray one.
FINISHED_MEMORY = 200_000


@dataclass
class _Pending:
    sent_at: float
    expires_at: float
    waiter: asyncio.Future[ReplyOutcome] | None  # None: the outcome goes to the stream


class ReplyCollector:
    """Pending requests keyed by request id; each finishes exactly once (reply or timeout)."""

    def __init__(self, *, finished_memory: int = FINISHED_MEMORY) -> None:
        self.stats = ProducerStats()
        self._pending: dict[str, _Pending] = {}
        self._expiry_heap: list[tuple[float, str]] = []
        self._finished: OrderedDict[str, OutcomeKind] = OrderedDict()
        self._finished_memory = finished_memory
        self._stream: asyncio.Queue[ReplyOutcome] = asyncio.Queue()
        self._streamed_pending = 0
        self._changed = asyncio.Event()
        self._closed = False

    def track(
        self,
        request_id: str,
        *,
        sent_at: float,
        timeout_s: float,
        waiter: asyncio.Future[ReplyOutcome] | None = None,
    ) -> None:
        """Start waiting for a reply (before the send, so a fast reply cannot be missed)."""
        if request_id in self._pending or request_id in self._finished:
            raise ValueError(f"request id {request_id!r} was already sent by this producer")
        expires_at = sent_at + timeout_s
        self._pending[request_id] = _Pending(sent_at, expires_at, waiter)
        heapq.heappush(self._expiry_heap, (expires_at, request_id))
        self.stats.sent += 1
        if waiter is None:
            self._streamed_pending += 1
        self._changed.set()

    def untrack(self, request_id: str) -> None:
        """Forget a request whose send failed (it never reached the queue)."""
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return
        self.stats.sent -= 1
        if pending.waiter is None:
            self._streamed_pending -= 1
        else:
            pending.waiter.cancel()
        self._changed.set()

    def on_reply(self, correlation_id: str | None, reply: ScoreReply, *, received_at: float) -> None:
        request_id = correlation_id or reply.request_id
        pending = self._pending.pop(request_id, None)
        if pending is None:
            self._count_unmatched(request_id)
            return
        if received_at >= pending.expires_at:
            # Past its own timeout, before the expiry tick came round (a reply-batch message can
            # carry it beside batch-mates that are in time): timed out, and this reply is late.
            self.stats.timed_out += 1
            self._finish(request_id, pending, OutcomeKind.TIMED_OUT, pending.expires_at, None)
            self._count_unmatched(request_id)
            return
        self.stats.replied += 1
        self._finish(request_id, pending, OutcomeKind.REPLIED, received_at, reply)

    def on_malformed(self) -> None:
        self.stats.malformed += 1

    def expire(self, now: float) -> int:
        """Time out every pending request past its expiry; returns how many."""
        expired = 0
        while self._expiry_heap and self._expiry_heap[0][0] <= now:
            _, request_id = heapq.heappop(self._expiry_heap)
            pending = self._pending.pop(request_id, None)
            if pending is None:
                continue  # already answered
            self.stats.timed_out += 1
            self._finish(request_id, pending, OutcomeKind.TIMED_OUT, now, None)
            expired += 1
        return expired

    def next_expiry(self) -> float | None:
        while self._expiry_heap and self._expiry_heap[0][1] not in self._pending:
            heapq.heappop(self._expiry_heap)
        return self._expiry_heap[0][0] if self._expiry_heap else None

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def stream_idle(self) -> bool:
        """No streamed request is pending and every streamed outcome was taken."""
        return self._streamed_pending == 0 and self._stream.empty()

    def close(self) -> None:
        """Wake every consumer waiting for outcomes: none will come any more."""
        self._closed = True
        self._changed.set()

    async def next_streamed(self, *, wait_when_idle: bool = False) -> ReplyOutcome | None:
        """The next streamed outcome; None once the stream is idle (or closed).

        `wait_when_idle` keeps waiting while nothing is pending, for a consumer that runs
        alongside a sender and stops by its own count.
        """
        while True:
            if not self._stream.empty():
                return self._stream.get_nowait()
            if self._closed or (self._streamed_pending == 0 and not wait_when_idle):
                return None
            self._changed.clear()
            await self._changed.wait()

    def _finish(
        self, request_id: str, pending: _Pending, kind: OutcomeKind, at: float, reply: ScoreReply | None
    ) -> None:
        outcome = ReplyOutcome(request_id, kind, pending.sent_at, at, reply)
        self._remember(request_id, kind)
        if pending.waiter is not None:
            if not pending.waiter.done():
                pending.waiter.set_result(outcome)
        else:
            self._streamed_pending -= 1
            self._stream.put_nowait(outcome)
        self._changed.set()

    def _count_unmatched(self, request_id: str) -> None:
        kind = self._finished.get(request_id)
        if kind is OutcomeKind.REPLIED:
            self.stats.duplicates += 1
        elif kind is OutcomeKind.TIMED_OUT:
            self.stats.late += 1
            # A second late reply is a duplicate, not another late answer.
            self._finished[request_id] = OutcomeKind.REPLIED
        else:
            self.stats.stray += 1

    def _remember(self, request_id: str, kind: OutcomeKind) -> None:
        self._finished[request_id] = kind
        if len(self._finished) > self._finished_memory:
            self._finished.popitem(last=False)
