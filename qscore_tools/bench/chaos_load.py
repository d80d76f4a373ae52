"""The chaos run's load and its books: a producer that keeps sending through broker outages, a
reply reader that keeps reading through them, and the ledger that counts what became of each
accepted request (replied, dead-lettered, lost), wrong answers and duplicates.

A request counts as accepted once a send that carried it returned (the broker committed it).
A send that failed is sent again with the same message id, so a send that in fact went through
shows up as a duplicate reply at worst, never as a lost request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qscore.contracts import REQUEST_CONTENT_TYPE, ReplyStatus, ScoreReply, ScoreRequest, Tensor

log = logging.getLogger(__name__)

SEND_TICK_S = 0.05


@dataclass
class ChaosReport:
    """What the chaos run counted. `lost` must be 0 and `wrong` must be 0; `duplicates` is
    reported (at-least-once delivery: a kill between reply and completion answers twice)."""

    accepted: int
    replied: int
    ok: int
    wrong: int
    error_replies: dict[str, int]
    duplicates: int
    dead_lettered: dict[str, int]
    lost: int
    lost_ids: list[str]
    faults: list[str]
    elapsed_s: float
    send_failures: int

    def summary(self) -> str:
        return (
            f"accepted {self.accepted}, replied {self.replied} (ok {self.ok}), wrong answers {self.wrong}, "
            f"duplicates {self.duplicates}, error replies {self.error_replies or 0}, "
            f"dead-lettered {self.dead_lettered or 0}, LOST {self.lost}; "
            f"faults: {', '.join(self.faults) or 'none'}; send retries {self.send_failures}; "
            f"{self.elapsed_s:.1f} s"
        )


@dataclass
class Ledger:
    """Every accepted request and every reply seen, by request id."""

    expected: dict[str, int] = field(default_factory=dict)  # request id -> the right label
    accepted: set[str] = field(default_factory=set)
    labels: dict[str, list[int | None]] = field(default_factory=dict)  # None: an error reply
    error_codes: Counter[str] = field(default_factory=Counter)
    reply_messages: set[str] = field(default_factory=set)  # redeliveries of one reply count once
    send_failures: int = 0

    def record_reply(self, reply_message_id: str | None, reply: ScoreReply) -> None:
        if reply_message_id is not None:
            if reply_message_id in self.reply_messages:
                return
            self.reply_messages.add(reply_message_id)
        label: int | None = None
        if reply.status == ReplyStatus.OK:
            label = int(reply.output_arrays()["label"].ravel()[0])
        elif reply.error is not None:
            self.error_codes[str(reply.error.code)] += 1
        self.labels.setdefault(reply.request_id, []).append(label)

    @property
    def unanswered(self) -> set[str]:
        return self.accepted - set(self.labels)

    def report(self, dead: dict[str, str], faults: list[str], elapsed_s: float) -> ChaosReport:
        answered = {rid: labels for rid, labels in self.labels.items() if rid in self.accepted}
        ok = sum(labels[0] is not None for labels in answered.values())
        wrong = sum(
            1
            for rid, labels in answered.items()
            for label in labels
            if label is not None and label != self.expected[rid]
        )
        lost_ids = sorted(self.unanswered - set(dead))
        return ChaosReport(
            accepted=len(self.accepted),
            replied=len(answered),
            ok=ok,
            wrong=wrong,
            error_replies=dict(self.error_codes),
            duplicates=sum(len(labels) - 1 for labels in answered.values()),
            dead_lettered=dict(Counter(dead[rid] for rid in dead if rid in self.accepted)),
            lost=len(lost_ids),
            lost_ids=lost_ids[:20],
            faults=faults,
            elapsed_s=elapsed_s,
            send_failures=self.send_failures,
        )


def request_body(pixels: np.ndarray) -> str:
    tensor = Tensor.from_numpy(np.asarray(pixels, dtype=np.float32).reshape(1, 64))
    return ScoreRequest(model="digits", inputs={"pixels": tensor}).model_dump_json(exclude_none=True)


@dataclass
class Producer:
    """Sends `rate` requests/s for `duration_s`, retrying failed sends; ids `chaos-<n>`."""

    connection: str
    queue: str
    reply_queue: str
    session_id: str
    samples: np.ndarray
    labels: np.ndarray  # the right label per sample (Triton's own answer, asked directly)
    ledger: Ledger
    rate: float
    duration_s: float

    async def run(self) -> None:
        from azure.servicebus.aio import ServiceBusClient

        total = int(self.duration_s * self.rate)
        pending: list[str] = []
        sent = 0
        started = time.monotonic()
        client: Any = None
        while sent < total or pending:
            due = min(total, int((time.monotonic() - started) * self.rate) + 1)
            for index in range(sent, due):
                request_id = f"chaos-{index}"
                self.ledger.expected[request_id] = int(self.labels[index % len(self.labels)])
                pending.append(request_id)
            sent = max(sent, due)
            if pending:
                client = client or ServiceBusClient.from_connection_string(self.connection, retry_total=0)
                if not await self._send(client, pending):
                    with contextlib.suppress(Exception):
                        await client.close()
                    client = None
                    await asyncio.sleep(0.5)
                    continue
                pending = []
            await asyncio.sleep(SEND_TICK_S)
        if client is not None:
            await client.close()

    async def _send(self, client: Any, request_ids: list[str]) -> bool:
        from azure.servicebus import ServiceBusMessage

        messages = [
            ServiceBusMessage(
                request_body(self.samples[int(rid.rsplit("-", 1)[1]) % len(self.samples)]),
                message_id=rid,
                reply_to=self.reply_queue,
                reply_to_session_id=self.session_id,
                content_type=REQUEST_CONTENT_TYPE,
            )
            for rid in request_ids
        ]
        try:
            async with client.get_queue_sender(self.queue) as sender:
                await asyncio.wait_for(sender.send_messages(messages), timeout=10)
        except Exception as exc:  # the bus is down or restarting: send them again
            self.ledger.send_failures += 1
            log.info("send of %d failed (%r); retrying", len(messages), exc)
            return False
        self.ledger.accepted.update(request_ids)
        return True


@dataclass
class ReplyReader:
    """Reads the producer's reply session (peek-lock, complete after recording) until `stop`."""

    connection: str
    reply_queue: str
    session_id: str
    ledger: Ledger
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                await self._read()
            except Exception as exc:  # the bus went away: read again once it is back
                log.info("reply reader: %r; reconnecting", exc)
                await asyncio.sleep(0.5)

    async def _read(self) -> None:
        from azure.servicebus.aio import ServiceBusClient

        async with ServiceBusClient.from_connection_string(self.connection, retry_total=1) as client:
            receiver = client.get_queue_receiver(
                self.reply_queue, session_id=self.session_id, prefetch_count=200
            )
            async with receiver:
                while not self.stop.is_set():
                    messages = await receiver.receive_messages(max_message_count=200, max_wait_time=0.5)
                    for message in messages:
                        reply = ScoreReply.model_validate_json(b"".join(message.body))
                        self.ledger.record_reply(message.message_id, reply)
                    await asyncio.gather(*(receiver.complete_message(m) for m in messages))
