"""Read an AMQP frame that has already arrived without asyncio.wait_for's task and timer.

pyamqp's `AsyncTransportMixin.receive_frame(timeout)` reads each frame through
`asyncio.wait_for(self.read(), timeout)` with the link's socket timeout. On Python 3.11 that
wraps the read in a new Task, with a timer and a waiter future, and takes at least two turns of
the event loop: about 20 us a frame against 1.5 us for the read itself, and a worker reads at
least one frame (a transfer) per message, more for dispositions and management responses.
When the whole next frame is already in the connection's read buffer the read cannot wait, so
no timeout is needed: `fast_frames(receiver)` wraps the receiving connection's transport so
that such a read passes `timeout=None` (wait_for then awaits the read directly); any other read
(a frame not here yet or only partly, a read already in progress, bytes left over from an
interrupted read) goes through the SDK's own call unchanged.

It reads private pyamqp fields, declared in `qscore.transport.sdk_hooks` (receiver.handler,
client.connection, connection.transport, transport.reader, stream_reader.buffer,
transport.read_buffer, transport.socket_lock, transport.receive_frame); a transport without one
(e.g. AMQP over WebSocket) keeps the SDK's reads, counted once per connection.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

_WRAPPED = "_qscore_fast_frames"  # set on a transport whose reads this module wraps
_HEADER = 8  # an AMQP frame header: 4 bytes of size (header included), then offset, type, channel
# A buffered read never yields to the event loop, and a receive takes every frame on the wire:
# without a turn now and then one lane's receiver could read a whole large receive while the
# other lanes' receivers, lock renewal and batch tasks waited (the SDK's own reads yield on
# every frame). The reader gives the loop a turn every this many buffered reads.
YIELD_EVERY = 8
# Frame reads through wrapped transports: "buffered" (no timeout) or "waited" (the SDK's own).
reads: Counter[str] = Counter()


def fast_frames(receiver: Any) -> bool:
    """Make the receiving connection's transport read whole buffered frames without a timeout
    (once per transport: a reconnect makes a new one). False where the SDK hides what this needs."""
    from qscore.transport import sdk_hooks

    handler = getattr(receiver, "_handler", None)
    connection = getattr(handler, "_connection", None)
    transport = getattr(connection, "_transport", None)
    if transport is None:
        return False  # not open yet: the next receive tries again
    wrapped = getattr(transport, _WRAPPED, None)
    if wrapped is not None:  # this transport was seen: wrapped, or counted as lacking a hook
        return bool(wrapped)
    missing = _missing(transport)
    if missing is not None:
        sdk_hooks.fallback(missing)
        setattr(transport, _WRAPPED, False)  # counted once for this connection
        return False
    transport.receive_frame = _wrapped(transport, transport.receive_frame)
    setattr(transport, _WRAPPED, True)
    return True


def _missing(transport: Any) -> str | None:
    """The hook this transport lacks, if any."""
    if not callable(getattr(transport, "receive_frame", None)):
        return "transport.receive_frame"
    reader = getattr(transport, "reader", None)
    if reader is None:
        return "transport.reader"
    if not isinstance(getattr(reader, "_buffer", None), bytearray):
        return "stream_reader.buffer"
    if not callable(getattr(getattr(transport, "_read_buffer", None), "tell", None)):
        return "transport.read_buffer"
    if not callable(getattr(getattr(transport, "socket_lock", None), "locked", None)):
        return "transport.socket_lock"
    return None


def frame_waiting(transport: Any) -> bool:
    """Whether a whole frame is in the transport's read buffer and a read would take it at once:
    no read in progress, nothing left over from an interrupted one."""
    reader = transport.reader
    buffer = getattr(reader, "_buffer", None)  # None once the connection closed
    if buffer is None or len(buffer) < _HEADER or transport.socket_lock.locked():
        return False
    if len(buffer) < int.from_bytes(buffer[:4], "big"):
        return False  # the frame's end has not arrived (or it is the protocol header "AMQP...")
    leftover = transport._read_buffer
    position = leftover.tell()
    if leftover.seek(0, 2) != position:  # an interrupted read's bytes come first
        leftover.seek(position)
        return False
    return True


def _wrapped(transport: Any, receive_frame: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    streak = 0  # buffered reads since this connection's reader last gave the event loop a turn

    async def receive_buffered_frame(timeout: float | None = None, **kwargs: Any) -> Any:  # noqa: ASYNC109 (the SDK's signature)
        nonlocal streak
        if timeout is not None and frame_waiting(transport):
            streak += 1
            if streak >= YIELD_EVERY:
                streak = 0
                await asyncio.sleep(0)
        if timeout is not None and frame_waiting(transport):  # again: the turn may have read it
            timeout = None  # the read cannot wait: no timer, no task
            reads["buffered"] += 1
        else:
            streak = 0  # the SDK's read gives the loop its turns
            reads["waited"] += 1
        return await receive_frame(timeout=timeout, **kwargs)

    return receive_buffered_frame
