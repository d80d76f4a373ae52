"""Settle many peek-locked messages in one broker round trip, off the receiving connection.

The SDK's public `complete_message` settles one message per call and, with the pyamqp
transport, waits for the broker to confirm each one (about half a millisecond per message on
loopback, which alone would cap a worker near 2,000 messages/s). Service Bus also settles
many lock tokens in one request on the management link (`com.microsoft:update-disposition`),
and lock tokens are valid entity-wide: the SDK itself settles through that link when the
receiving link is gone. Two things keep this fast and safe:

- the management requests go through idle receivers (`control`, no prefetch, never asked for
  messages), each on its own connection: sharing the receiving connection makes every
  request wait behind the receive loop's reads (hundreds of ms);
- one request at a time on each control receiver (concurrent management requests on one SDK
  receiver mix up their responses and shut the handler down), but several control receivers
  at once: a pool (`qscore.transport.windowing.LinkPool`) opens more, up to `max_controls`, as
  the measured request rate times the settle round trip asks for. Taking turns on one link
  capped a worker at one settlement per round trip: at 50 ms, about 23 messages per trip and a
  quarter of its loopback throughput. Nothing waits on a lock held across a round trip.

The method used (`_settle_message_via_mgmt_link`) is private to the SDK (declared, with the
other private fields used here, in `qscore.transport.sdk_hooks`), so each use is guarded:
if it is missing or fails, messages are settled one by one through the public API
on the receiver that received them.

Two more things keep a settlement at about one round trip when the bus is far away:

- a control receiver's management link opens with its first management request (two links'
  attaches, ~2.5 extra round trips: 175 ms where a settlement took 56 ms with the bus 25 ms
  away). So a control receiver is primed as it is attached, in the background, by a management
  request that finds nothing (`prime_control`: a peek past the last sequence number), and the
  settler's first control is primed the same way right after it opens (`MessageSettler.start`);
- settlement requests that find every control receiver busy do not queue one behind the other:
  they join one request (per outcome) that goes out on the next free control receiver
  (`qscore.transport.joining`), so the N messages of any number of batches waiting cost one
  more round trip together, not one each, whatever the window's size.

The SDK's (pyamqp) management link grants the broker 10,000 credits for responses when it
attaches and never grants more, so on one receiver the 10,001st management request gets no
response and times out, and so does every one after it. A worker settling a batch per request
reached that after about 10,000 batches (a few minutes at full load) and then all but stopped:
each batch waited for the timeout, its locks lapsed, and the messages came back. So after each
request the settler tops the credit up again (`top_up_management_credit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from qscore.transport import sdk_hooks
from qscore.transport.joining import JoinedRequests
from qscore.transport.link_open import attach_link
from qscore.transport.settle_outcomes import ABANDONED, COMPLETED
from qscore.transport.windowing import LinkPool

log = logging.getLogger(__name__)

# Control receivers (connections) one settler may open: a window of 8 requests of ~50 messages
# each keeps ~20,000 messages/s settling at a 20 ms round trip.
MAX_CONTROLS = 8
# Lock tokens one settlement request may carry when waiting requests join (one batch alone may
# carry more): ~37 kB of tokens, and no more than the worker holds by default.
MAX_JOINED_TOKENS = 1024
# A sequence number past any queue's last: a peek from it finds nothing, and opens the link.
PAST_THE_LAST_SEQUENCE_NUMBER = 2**62
_PUBLIC_METHOD = {COMPLETED: "complete_message", ABANDONED: "abandon_message"}


async def top_up_management_credit(receiver: Any) -> int:
    """Give each management link of `receiver` its full response credit again once half is used.

    Returns how many links were topped up. Private SDK state, guarded: on another SDK version or
    transport (no such fields) it does nothing."""
    handler = getattr(receiver, "_handler", None)
    operations = getattr(handler, "_mgmt_links", None)
    if not isinstance(operations, dict):
        if handler is not None:  # a receiver not opened yet has no client: nothing to top up
            sdk_hooks.fallback("client.mgmt_links")
        return 0
    topped_up = 0
    for operation in list(operations.values()):
        response_link = getattr(getattr(operation, "_mgmt_link", None), "_response_link", None)
        credit = getattr(response_link, "current_link_credit", None)
        full = getattr(response_link, "link_credit", None)
        if response_link is None or not isinstance(credit, int) or not isinstance(full, int):
            sdk_hooks.fallback("mgmt_link.response_link")
            continue
        if credit >= full // 2:
            continue
        try:
            await response_link.flow(link_credit=full)
        except Exception as exc:  # the link is going away: the SDK reopens it on the next request
            log.debug("could not top up management link credit: %r", exc)
            continue
        topped_up += 1
    return topped_up


async def prime_control(control: Any) -> None:
    """Open `control`'s management link now (it opens with the first management request, ~2.5
    round trips) by a request that finds nothing: a peek from past the queue's last message."""
    await control.peek_messages(max_message_count=1, sequence_number=PAST_THE_LAST_SEQUENCE_NUMBER)


async def attach_control(control: Any) -> None:
    """A link pool's `attach` for control receivers: the receiver's link, then its management link."""
    await attach_link(control)
    await prime_control(control)


class MessageSettler:
    """Completes, abandons and renews messages received by `receiver`, many per request.

    Requests go out on `control` and on more control receivers that `open_control` makes as
    the window grows (up to `max_controls`); without `control` each message is settled alone
    on `receiver`."""

    def __init__(
        self,
        receiver: Any,
        *,
        control: Any | None = None,
        open_control: Callable[[], Any] | None = None,
        max_controls: int = MAX_CONTROLS,
    ) -> None:
        self.receiver = receiver
        self.control = control
        self.controls: LinkPool[Any] | None = None
        if control is not None:
            self.controls = LinkPool(open_control, ceiling=max_controls, first=control, attach=attach_control)
        self.batch_requests = 0
        self.fallbacks = 0
        # Settle calls that find every control receiver busy join one request (per outcome).
        self._joined: JoinedRequests[str, list[str], None, Any] = JoinedRequests(
            self._control, self._settle_joined, weight=len, most=lambda outcome: MAX_JOINED_TOKENS
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Prime the first control receiver's management link in the background (it holds that
        receiver meanwhile, so a settlement that comes first waits no longer than it would have)."""
        if self.controls is not None:
            self._spawn(self._prime_first())

    async def _prime_first(self) -> None:
        assert self.controls is not None
        with contextlib.suppress(Exception):  # the first settlement opens the link instead
            async with self.controls.use(ahead=False) as control:  # no second link for it
                await prime_control(control)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def round_trip_s(self) -> float | None:
        """The measured (smoothed) round trip of one settlement request; None until measured."""
        return None if self.controls is None else self.controls.window.round_trip_s

    @property
    def call_s(self) -> float | None:
        """A settle call's measured (smoothed) time: its round trip and any wait for a control
        receiver or for the request it joined; the round trip until calls are measured."""
        return self._joined.call_s if self._joined.call_s is not None else self.round_trip_s

    async def complete(self, messages: Sequence[Any]) -> list[Any]:
        """Returns the messages that could not be settled (lock lost, connection gone)."""
        return await self._settle(messages, COMPLETED)

    async def abandon(self, messages: Sequence[Any]) -> list[Any]:
        return await self._settle(messages, ABANDONED)

    async def _settle(self, messages: Sequence[Any], outcome: str) -> list[Any]:
        if not messages:
            return []
        if await self._settle_in_one_request(messages, outcome):
            return []
        self.fallbacks += 1
        return await _settle_one_by_one(self.receiver, messages, outcome)

    async def _settle_in_one_request(self, messages: Sequence[Any], outcome: str) -> bool:
        if self.controls is None or not hasattr(self.control, "_settle_message_via_mgmt_link"):
            sdk_hooks.fallback("receiver.settle_via_mgmt_link")
            return False
        tokens = [getattr(message, "lock_token", None) for message in messages]
        if any(token is None for token in tokens):
            return False
        try:
            await self._in_a_request(outcome, [str(token) for token in tokens])
        except Exception as exc:
            log.warning("batch %s of %d messages failed, one by one now: %r", outcome, len(messages), exc)
            return False
        for message in messages:
            _mark_settled(self.receiver, message)
        return True

    async def _in_a_request(self, outcome: str, tokens: list[str]) -> None:
        """Settle `tokens` in a request that other calls waiting meanwhile may join; raises what
        the request raised (every call it carried then falls back, each for its own messages)."""
        await self._joined.submit(outcome, tokens)

    def _control(self, outcome: str) -> contextlib.AbstractAsyncContextManager[Any]:
        assert self.controls is not None
        return self.controls.use()

    async def _settle_joined(self, outcome: str, control: Any, joined: list[list[str]]) -> list[None]:
        every = [token for tokens in joined for token in tokens]
        try:
            await control._settle_message_via_mgmt_link(outcome, every)
        finally:
            await top_up_management_credit(control)
        self.batch_requests += 1
        return [None] * len(joined)

    async def renew_many(self, messages: Sequence[Any]) -> list[Any]:
        """Renew many locks in one request; returns the messages whose lock is gone.

        Each renewed message's `locked_until_utc` moves on (as the SDK's own renewal does), so
        the SDK's local "lock expired" check stays right. When the one request fails (one lost
        lock fails it all), each message is renewed alone to find out which.
        """
        if not messages:
            return []
        can_renew_many = hasattr(self.control if self.control is not None else self.receiver, "_renew_locks")
        if not can_renew_many:
            sdk_hooks.fallback("receiver.renew_locks")
        tokens = [getattr(message, "lock_token", None) for message in messages]
        if can_renew_many and all(token is not None for token in tokens):
            try:
                async with self._management() as renewer:
                    try:
                        response = await renewer._renew_locks(*[str(token) for token in tokens], timeout=10)
                    finally:
                        await top_up_management_credit(renewer)
                expirations = list(response[b"expirations"])
                for message, expires_ms in zip(messages, expirations, strict=True):
                    message._expiry = datetime.fromtimestamp(expires_ms / 1000, tz=UTC)
                return []
            except Exception as exc:
                log.debug("renewing %d locks at once failed, one by one now: %r", len(messages), exc)
        lost = []
        for message in messages:
            try:
                await self.renew(message)
            except Exception:  # settled meanwhile, lock already lost, or a broker error
                lost.append(message)
        return lost

    async def renew(self, message: Any) -> datetime | None:
        """Renew one message's lock; returns its new expiry (raises when the lock is gone)."""
        async with self._management() as renewer:
            try:
                result = await renewer.renew_message_lock(message, timeout=10)
            finally:
                await top_up_management_credit(renewer)
        return result if isinstance(result, datetime) else None

    @contextlib.asynccontextmanager
    async def _management(self) -> AsyncIterator[Any]:
        """A control receiver of the pool to itself, or (without controls) the receiver."""
        if self.controls is None:
            yield self.receiver
            return
        async with self.controls.use() as control:
            yield control

    async def close(self) -> None:
        """Close every control receiver (the first one too; closing it twice is harmless). A
        request waiting for a control receiver then fails, and its calls settle one by one."""
        if self.controls is not None:
            log.info("settlement: %s", self.controls.describe())
            await self.controls.close()


def _mark_settled(receiver: Any, message: Any) -> None:
    # What the SDK records after its own settlement: the message refuses a second settlement,
    # and the receiving link forgets the delivery tag (it would otherwise keep every tag).
    message._settled = True
    link = getattr(getattr(receiver, "_handler", None), "_link", None)
    tags = getattr(link, "_received_delivery_tags", None)
    if tags is None:
        sdk_hooks.fallback("receiver_link.received_delivery_tags")
        return
    tags.discard(getattr(message, "_delivery_tag", None))


async def _settle_one_by_one(receiver: Any, messages: Sequence[Any], outcome: str) -> list[Any]:
    settle_one = getattr(receiver, _PUBLIC_METHOD[outcome])
    failed = []
    for message in messages:
        try:
            await settle_one(message)
        except Exception as exc:
            log.warning("could not settle (%s) %s: %r", outcome, getattr(message, "message_id", "?"), exc)
            failed.append(message)
    return failed
