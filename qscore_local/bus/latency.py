"""Network latency emulation for the endpoint: each connection's bytes delayed by a one-way time.

Azure is never at loopback distance: a namespace in the same region is a few milliseconds away
each way, and every wait on the broker (a send's acknowledgement, a settlement's outcome, a
management reply, the credit that lets the next message come) costs at least one round trip.
`qscore bus serve --latency-ms D` makes the local endpoint that far away, so that code which
waits on the broker one step at a time shows it here as it would on Azure.

What is emulated: every chunk of bytes the endpoint reads from a connection reaches the AMQP
engine D later, and every chunk the engine writes reaches the socket D later, so each frame
takes D in each direction and a request-reply takes 2·D. The delay is a line, not a gate:
each chunk carries its own due time (read or written at t, due at t + D), so a thousand
frames in flight all arrive about D after they left, in the order they left. Optional jitter
adds up to J more to a chunk, but never lets a chunk overtake the one before it (a TCP
stream does not reorder either).

What is not emulated: bandwidth (bytes move as fast as loopback takes them), loss and
retransmission, and the administration API's HTTP requests (only AMQP connections, plain or
over WebSockets, pass through a delay line).
"""

from __future__ import annotations

import os
import random
from collections import deque
from dataclasses import dataclass

LATENCY_ENV = "QSCORE_BUS_LATENCY_MS"
JITTER_ENV = "QSCORE_BUS_JITTER_MS"


@dataclass(frozen=True)
class NetworkLatency:
    """One-way delay added to every connection, each direction, in seconds."""

    one_way_s: float = 0.0
    jitter_s: float = 0.0

    def __post_init__(self) -> None:
        if self.one_way_s < 0 or self.jitter_s < 0:
            raise ValueError("latency and jitter must be zero or more milliseconds")
        if self.jitter_s and not self.one_way_s:
            raise ValueError("jitter needs a latency to vary around (give --latency-ms too)")

    @classmethod
    def from_ms(cls, latency_ms: float, jitter_ms: float = 0.0) -> NetworkLatency:
        return cls(latency_ms / 1000, jitter_ms / 1000)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> NetworkLatency:
        """`QSCORE_BUS_LATENCY_MS` / `QSCORE_BUS_JITTER_MS` (unset: none)."""
        values = os.environ if env is None else env
        try:
            return cls.from_ms(float(values.get(LATENCY_ENV) or 0), float(values.get(JITTER_ENV) or 0))
        except ValueError as exc:
            raise ValueError(f"{LATENCY_ENV}/{JITTER_ENV}: {exc}") from None

    @classmethod
    def resolve(
        cls, latency_ms: float | None, jitter_ms: float | None, env: dict[str, str] | None = None
    ) -> NetworkLatency:
        """What a command line asked for, each value not given taken from the environment."""
        from_env = cls.from_env(env)
        return cls.from_ms(
            latency_ms if latency_ms is not None else from_env.one_way_s * 1000,
            jitter_ms if jitter_ms is not None else from_env.jitter_s * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.one_way_s > 0


class DelayLine:
    """Chunks of one direction of one connection, each released at its own due time, in order.

    `put` stamps a chunk with now + delay (+ jitter, never earlier than the chunk before it);
    `take_due` hands back, joined, every chunk whose time has come. A chunk the socket did not
    take whole goes back to the front with `return_unsent`. `None` in the line is the end of the
    stream (the peer closed), delivered after every chunk before it.
    """

    __slots__ = ("_chunks", "_last_due", "_latency", "_random")

    def __init__(self, latency: NetworkLatency, rng: random.Random | None = None) -> None:
        self._latency = latency
        self._chunks: deque[tuple[float, bytes | None]] = deque()
        self._last_due = 0.0
        self._random = rng or random.Random()

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def put(self, data: bytes | None, now: float) -> None:
        due = now + self._latency.one_way_s
        if self._latency.jitter_s:
            due += self._random.uniform(0, self._latency.jitter_s)
        due = max(due, self._last_due)  # jitter may slow a chunk, never let the next one pass it
        self._last_due = due
        self._chunks.append((due, data))

    def next_due(self) -> float | None:
        return self._chunks[0][0] if self._chunks else None

    def take_due(self, now: float) -> tuple[bytes, bool]:
        """(every due chunk joined, whether the end of the stream came due)."""
        chunks = self._chunks
        parts: list[bytes] = []
        while chunks and chunks[0][0] <= now:
            _, data = chunks.popleft()
            if data is None:
                chunks.clear()
                return b"".join(parts), True
            parts.append(data)
        return b"".join(parts), False

    def clear(self) -> None:
        self._chunks.clear()

    def return_unsent(self, data: bytes) -> None:
        """Bytes taken but not written: first out next time, already due."""
        if data:
            self._chunks.appendleft((0.0, data))


@dataclass(eq=False)
class DelayedConnection:
    """One connection's two delay lines (socket -> engine, engine -> socket) and the loop's view."""

    inbound: DelayLine
    outbound: DelayLine
    read_ended: bool = False  # the peer's end of stream is in the inbound line: stop reading
    write_blocked: bool = False  # the socket took less than was due: wait for it, not the clock
