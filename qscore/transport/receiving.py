"""Receive what has arrived, without the SDK's extra "further pull" wait.

`ServiceBusReceiver.receive_messages(max_message_count=n, max_wait_time=w)` returns early only
when it has n messages. Otherwise, once the first message arrives it keeps reading for another
`_further_pull_receive_timeout` (0.2 s in azure-servicebus 7.x), and a call that finds a few
messages already in its prefetch buffer waits the whole `w` for one more to arrive. Either
way a message that is already here sits in the buffer for up to 200 ms (measured with
`qscore bench`: 110-220 ms of queue wait at every load), which alone is ten times the
latency budget. Two things fix that and keep the batching:

- when the buffer already holds messages, ask for at most that many: the SDK then hands them
  over at once from the buffer, without touching the network;
- otherwise wait (up to `w`) for the first message and stop `further_pull_s` after it
  arrived; then keep taking messages only while the connection has unread bytes, i.e. while
  more messages are already here (the SDK reads one frame per turn of its loop).

Both read private SDK fields (the buffer's size, the further-pull timeout), declared in
`qscore.transport.sdk_hooks`; each is guarded: on an SDK without them the call falls back
to the plain public `receive_messages`.
The receiving link's AMQP reader also blocks up to the receiver's `socket_timeout` (0.2 s by
default) waiting for the next frame, which bounds how late the further pull can end; pass a
short `socket_timeout` to `get_queue_receiver` (it writes only small frames) to bound it.

The SDK grants its link credit again only when the last of it is used up and the buffer is
empty (pyamqp's `ReceiveClientAsync._client_run_async`), so with the bus D away every
window's worth of messages is followed by 2·D with nothing on the wire: at 5 ms one way a
drain ran at 0.65 of its loopback rate, at 25 ms at 0.36 (`python -m qscore_tools.bench.drain`).
`top_up_link_credit` grants credit as the window is used, the way a TCP window slides, so
the next messages are on their way while the last ones are taken.
"""

from __future__ import annotations

from typing import Any

from qscore.transport import sdk_hooks
from qscore.transport.frame_reads import fast_frames

# A follow-up receive only runs while bytes are waiting, so it finds its frame at once; the
# short budget bounds it when those bytes were not a message (a flow or disposition frame).
FOLLOW_UP_WAIT_S = 0.001


def buffered_count(receiver: Any) -> int:
    """Messages waiting in the receiver's prefetch buffer (0 where the SDK hides it)."""
    handler = getattr(receiver, "_handler", None)
    buffer = getattr(handler, "_received_messages", None)
    qsize = getattr(buffer, "qsize", None)
    if not callable(qsize):
        sdk_hooks.fallback("client.received_messages")
        return 0
    return int(qsize())


async def top_up_link_credit(receiver: Any, window: int) -> bool:
    """Keep about `window` messages coming or buffered: once fewer than half of it are (credit
    not yet used plus messages buffered), grant credit for the rest. Never more than `window`
    are locked ahead of being taken, as with the SDK's own refill; returns whether it granted."""
    handler = getattr(receiver, "_handler", None)
    link = getattr(handler, "_link", None)
    credit = getattr(link, "current_link_credit", None)
    if link is None or not isinstance(credit, int):
        sdk_hooks.fallback("client.link" if link is None else "link.current_link_credit")
        return False
    buffered = buffered_count(receiver)
    if window < 1 or credit + buffered > window // 2 or credit >= window - buffered:
        return False
    await link.flow(link_credit=window - buffered)
    return True


def set_further_pull(receiver: Any, seconds: float) -> bool:
    """Make receive calls stop `seconds` after their first message instead of the SDK's 0.2 s."""
    if not hasattr(receiver, "_further_pull_receive_timeout"):
        sdk_hooks.fallback("receiver.further_pull_timeout")
        return False
    transport = getattr(receiver, "_amqp_transport", None)
    factor = getattr(transport, "TIMEOUT_FACTOR", 1)  # uamqp counts in milliseconds
    receiver._further_pull_receive_timeout = seconds * factor
    return True


async def receive_ready(receiver: Any, *, max_count: int, wait_s: float) -> list[Any]:
    """Up to `max_count` messages: those already buffered at once, else wait up to `wait_s`
    for the first (see `set_further_pull`); then, while the connection has unread bytes (more
    messages already on the wire), take those too with short follow-up receives. Frames already
    in the connection's buffer are read without a timeout (`frame_reads.fast_frames`)."""
    fast_frames(receiver)
    buffered = buffered_count(receiver)
    if buffered:
        max_count = min(max_count, buffered)
    messages: list[Any] = await receiver.receive_messages(max_message_count=max_count, max_wait_time=wait_s)
    while messages and len(messages) < max_count and unread_bytes(receiver):
        more = await receiver.receive_messages(
            max_message_count=max_count - len(messages), max_wait_time=FOLLOW_UP_WAIT_S
        )
        if not more:
            break
        messages.extend(more)
    return messages


def unread_bytes(receiver: Any) -> int:
    """Bytes received on the receiver's connection and not read yet (0 where the SDK hides them)."""
    handler = getattr(receiver, "_handler", None)
    connection = getattr(handler, "_connection", None)
    transport = getattr(connection, "_transport", None)
    buffer = getattr(getattr(transport, "reader", None), "_buffer", None)  # asyncio.StreamReader's
    if not isinstance(buffer, bytes | bytearray):
        sdk_hooks.fallback("transport.reader")
        return 0
    return len(buffer)
