"""Broker waits at one round trip: waiting settlement calls (and reply deliveries) join one
request, control receivers are primed ahead of their first settlement, and windows double per
round trip while requests wait (qscore.transport.joining, settlement, replies, windowing).

Fakes for determinism (a control whose requests end when the test says so, a fake clock); the
last test runs the same path against the local bus, with one control receiver so that calls
must join."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from qscore.transport import settlement
from qscore.transport.joining import JoinedRequests
from qscore.transport.settlement import MessageSettler
from qscore.transport.windowing import InFlightWindow, LinkPool


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeMessage:
    def __init__(self, token: str) -> None:
        self.lock_token = token
        self._settled = False


class FakeReceiver:
    """The receiving receiver: settles one by one (the fallback), remembering what it settled."""

    def __init__(self) -> None:
        self.one_by_one: list[str] = []

    async def complete_message(self, message: FakeMessage) -> None:
        self.one_by_one.append(message.lock_token)

    async def abandon_message(self, message: FakeMessage) -> None:
        self.one_by_one.append(message.lock_token)


class FakeControl:
    """A control receiver whose management requests end when `release` is set (or fail)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.requests: list[tuple[str, list[str]]] = []
        self.release = asyncio.Event()
        self.fail = fail
        self.in_flight = 0
        self.peeks = 0

    async def _settle_message_via_mgmt_link(self, outcome: str, tokens: list[str]) -> None:
        assert self.in_flight == 0, "two management requests on one control at once"
        self.in_flight += 1
        self.requests.append((outcome, list(tokens)))
        try:
            await self.release.wait()
            if self.fail:
                raise RuntimeError("lock lost")
        finally:
            self.in_flight -= 1

    async def peek_messages(self, **kwargs: Any) -> list[Any]:
        self.peeks += 1
        assert kwargs["sequence_number"] == settlement.PAST_THE_LAST_SEQUENCE_NUMBER
        return []

    async def close(self) -> None:
        pass


def _messages(prefix: str, count: int) -> list[FakeMessage]:
    return [FakeMessage(f"{prefix}{n}") for n in range(count)]


async def test_calls_waiting_for_a_control_join_one_request() -> None:
    control = FakeControl()
    settler = MessageSettler(FakeReceiver(), control=control)  # one control: no way to open more
    batches = [_messages(f"b{n}-", 3) for n in range(4)]
    calls = [asyncio.create_task(settler.complete(batches[0]))]
    await asyncio.sleep(0.01)
    assert control.requests == [("completed", ["b0-0", "b0-1", "b0-2"])]  # the first goes alone
    calls += [asyncio.create_task(settler.complete(batch)) for batch in batches[1:]]
    await asyncio.sleep(0.01)
    control.release.set()
    assert await asyncio.gather(*calls) == [[], [], [], []]
    # The three that waited meanwhile went out as one request, in the order they came.
    assert control.requests[1] == ("completed", [m.lock_token for batch in batches[1:] for m in batch])
    assert len(control.requests) == 2 and settler.batch_requests == 2 and settler.fallbacks == 0
    assert settler.call_s is not None  # a call's time on the broker, its wait included (batch slots)
    assert all(message._settled for batch in batches for message in batch)


async def test_outcomes_do_not_join_each_other() -> None:
    control = FakeControl()
    settler = MessageSettler(FakeReceiver(), control=control)
    first = asyncio.create_task(settler.complete(_messages("c", 1)))
    await asyncio.sleep(0.01)
    later = [
        asyncio.create_task(settler.abandon(_messages("a", 2))),
        asyncio.create_task(settler.complete(_messages("d", 2))),
    ]
    await asyncio.sleep(0.01)
    control.release.set()
    await asyncio.gather(first, *later)
    assert sorted(control.requests) == [
        ("abandoned", ["a0", "a1"]),
        ("completed", ["c0"]),
        ("completed", ["d0", "d1"]),
    ]


async def test_a_failed_joint_request_settles_each_call_one_by_one() -> None:
    receiver = FakeReceiver()
    control = FakeControl(fail=True)
    settler = MessageSettler(receiver, control=control)
    batches = [_messages(f"f{n}-", 2) for n in range(3)]
    calls = [asyncio.create_task(settler.complete(batches[0]))]
    await asyncio.sleep(0.01)
    calls += [asyncio.create_task(settler.complete(batch)) for batch in batches[1:]]
    await asyncio.sleep(0.01)
    control.release.set()
    assert await asyncio.gather(*calls) == [[], [], []]
    # Every call fell back for its own messages, each settled once, none lost.
    assert sorted(receiver.one_by_one) == sorted(m.lock_token for batch in batches for m in batch)
    assert settler.fallbacks == 3 and settler.batch_requests == 0


async def test_a_call_cancelled_while_waiting_is_not_sent() -> None:
    control = FakeControl()
    settler = MessageSettler(FakeReceiver(), control=control)
    first = asyncio.create_task(settler.complete(_messages("x", 1)))
    await asyncio.sleep(0.01)
    cancelled = asyncio.create_task(settler.complete(_messages("gone", 2)))
    kept = asyncio.create_task(settler.complete(_messages("kept", 1)))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    control.release.set()
    await asyncio.gather(first, kept)
    assert [tokens for _, tokens in control.requests] == [["x0"], ["kept0"]]


async def test_joined_requests_stay_under_the_token_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settlement, "MAX_JOINED_TOKENS", 4)
    control = FakeControl()
    settler = MessageSettler(FakeReceiver(), control=control)
    first = asyncio.create_task(settler.complete(_messages("p", 1)))
    await asyncio.sleep(0.01)
    waiting = [asyncio.create_task(settler.complete(_messages(f"w{n}-", 3))) for n in range(3)]
    await asyncio.sleep(0.01)
    control.release.set()
    await asyncio.gather(first, *waiting)
    sizes = [len(tokens) for _, tokens in control.requests]
    assert sizes == [1, 3, 3, 3]  # 3 + 3 is over 4: each waiting call went in a request of its own
    assert sorted(t for _, tokens in control.requests for t in tokens) == sorted(
        ["p0"] + [f"w{n}-{k}" for n in range(3) for k in range(3)]
    )


async def test_the_first_control_is_primed_before_its_first_settlement() -> None:
    control = FakeControl()
    control.release.set()
    settler = MessageSettler(FakeReceiver(), control=control)
    settler.start()
    assert await settler.complete(_messages("m", 2)) == []
    assert control.peeks == 1 and control.requests == [("completed", ["m0", "m1"])]
    await settler.close()


async def test_attached_controls_are_primed() -> None:
    class Attachable(FakeControl):
        async def __aenter__(self) -> Attachable:
            return self

    control = Attachable()
    await settlement.attach_control(control)  # the receiver's link, then its management link
    assert control.peeks == 1


def test_a_full_window_doubles_once_per_round_trip() -> None:
    clock = FakeClock()
    window = InFlightWindow(ceiling=8, clock=clock)
    window.waited()
    assert window.size == 1  # nothing measured yet: no round trip to pace the growth by
    window.answered(0.05)
    window.waited()
    assert window.size == 2
    clock.now += 0.02
    window.waited()
    assert window.size == 2  # less than a round trip since it grew
    sizes = []
    for _ in range(4):
        clock.now += 0.06
        window.waited()
        sizes.append(window.size)
    assert sizes == [4, 8, 8, 8]


def test_a_sample_with_waiting_requests_never_shrinks_the_window() -> None:
    clock = FakeClock()
    window = InFlightWindow(ceiling=8, clock=clock)
    window.answered(0.01)
    window.size = 6
    clock.now += 0.3
    window.asked(7)  # one waited; the rate (3 a second) alone would say 2
    assert window.size == 7


async def test_a_request_finding_the_window_full_grows_it_and_takes_a_free_link() -> None:
    clock = FakeClock()
    opened: list[FakeControl] = []

    def open_link() -> FakeControl:
        opened.append(FakeControl())
        return opened[-1]

    first = FakeControl()
    pool: LinkPool[FakeControl] = LinkPool(open_link, ceiling=4, first=first, clock=clock)
    async with pool.use():  # the first link's first request: not measured
        pass
    async with pool.use():
        clock.now += 0.05
    assert pool.window.round_trip_s == pytest.approx(0.05) and pool.window.size == 1
    gate = asyncio.Event()

    async def request() -> None:
        async with pool.use():
            await gate.wait()

    tasks = [asyncio.create_task(request()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert pool.window.size == 2 and pool.in_flight == 2  # grew at once, not at the next sample
    gate.set()
    await asyncio.gather(*tasks)
    await pool.close()


async def test_waiting_calls_join_against_the_bus(bus: Any, fresh_queue: str) -> None:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    from qscore_local.bus.stats import queue_counts

    async with ServiceBusClient.from_connection_string(bus.connection_string) as client:
        async with client.get_queue_sender(fresh_queue) as sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(12)])
        receiver = client.get_queue_receiver(fresh_queue, prefetch_count=12)
        control = client.get_queue_receiver(fresh_queue, prefetch_count=0)
        async with receiver, control:
            received: list[Any] = []
            while len(received) < 12:
                received += await receiver.receive_messages(max_message_count=12, max_wait_time=5)
            settler = MessageSettler(receiver, control=control)  # one control: calls must join
            settler.start()
            batches = [received[n : n + 3] for n in range(0, 12, 3)]
            results = await asyncio.gather(*(settler.complete(batch) for batch in batches))
            assert results == [[], [], [], []] and settler.fallbacks == 0
            assert 1 <= settler.batch_requests < len(batches)  # some calls shared a request
            await settler.close()
    counts = (await queue_counts(bus.connection_string))[fresh_queue]
    assert (counts.active, counts.locked) == (0, 0)  # every message completed, none left locked


async def test_priming_the_first_control_attaches_no_second_one() -> None:
    opened: list[FakeControl] = []

    def open_control() -> FakeControl:
        opened.append(FakeControl())
        return opened[-1]

    control = FakeControl()
    settler = MessageSettler(FakeReceiver(), control=control, open_control=open_control)
    settler.start()
    await asyncio.sleep(0.01)
    assert control.peeks == 1 and opened == []
    await settler.close()


class BlockingBatch:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.max_size_in_bytes = 262_144

    def add_message(self, message: Any) -> None:
        self.messages.append(message)


class BlockingSender:
    """One reply queue's sender link: each send waits for `release`; `refuse` names a
    correlation id the broker refuses for good (the transfer carrying it is refused)."""

    def __init__(self, release: asyncio.Event, refuse: str | None = None) -> None:
        self.release = release
        self.refuse = refuse
        self.sent: list[list[str]] = []
        self.attempts: list[list[str]] = []
        self.sending = 0

    async def create_message_batch(self) -> BlockingBatch:
        return BlockingBatch()

    async def send_messages(self, batch: Any, timeout: float | None = None) -> None:  # noqa: ASYNC109
        from azure.servicebus.exceptions import MessageSizeExceededError

        assert self.sending == 0, "two sends on one sender link at once"
        self.sending += 1
        try:
            await self.release.wait()
            messages = batch.messages if isinstance(batch, BlockingBatch) else [batch]
            ids = [str(message.properties.correlation_id) for message in messages]
            self.attempts.append(ids)
            if self.refuse in ids:
                raise MessageSizeExceededError(message="too large")
            self.sent.append(ids)
        finally:
            self.sending -= 1

    async def close(self) -> None:
        pass


class OneLinkClient:
    def __init__(self, sender: BlockingSender) -> None:
        self.sender = sender

    def get_queue_sender(self, queue: str) -> BlockingSender:
        return self.sender


async def test_reply_deliveries_waiting_for_a_link_join_one_send(monkeypatch: pytest.MonkeyPatch) -> None:
    from qscore.contracts import ReplyStatus, ScoreReply
    from qscore.transport import replies
    from qscore.transport.replies import ReplyAddress, ReplySender

    monkeypatch.setattr(replies, "MAX_REPLY_LINKS", 1)  # one link: deliveries must join
    monkeypatch.setattr(replies, "fast_open_sender", lambda client, queue: client.get_queue_sender(queue))
    release = asyncio.Event()
    link = BlockingSender(release, refuse="r4")
    sender = ReplySender(OneLinkClient(link), lifetime=replies.ReplyLifetime(None))  # type: ignore[arg-type]

    def reply(request_id: str) -> tuple[ReplyAddress, ScoreReply]:
        score = ScoreReply(request_id=request_id, status=ReplyStatus.OK, model="digits", model_version="2")
        return ReplyAddress("replies", "s"), score

    first = asyncio.create_task(sender.deliver([reply("r0")]))
    await asyncio.sleep(0.01)
    later = [
        asyncio.create_task(sender.deliver([reply("r1"), reply("r2")])),
        asyncio.create_task(sender.deliver([reply("r3"), reply("r4")])),
    ]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(first, *later)
    assert results[0] == [None] and results[1] == [None, None]
    assert results[2][0] is None and results[2][1] is not None and results[2][1].permanent
    # r1-r4 went in one transfer; refused for good, it was sent again one by one: only r4 failed,
    # and each of its batch-mates (and the other delivery's replies) was answered once.
    assert link.attempts[:2] == [["r0"], ["r1", "r2", "r3", "r4"]]
    assert link.sent == [["r0"], ["r1"], ["r2"], ["r3"]]
    await sender.close()


async def test_a_request_with_the_wrong_number_of_results_fails_every_call_it_carried() -> None:
    @contextlib.asynccontextmanager
    async def link(key: str) -> AsyncIterator[str]:
        yield "link"

    async def send(key: str, link: str, items: list[int]) -> list[int]:
        return items[:-1]  # one result short

    joined: JoinedRequests[str, int, int, str] = JoinedRequests(link, send)
    outcomes = await asyncio.gather(*(joined.submit("k", i) for i in range(3)), return_exceptions=True)
    # None misaligned, none left waiting:
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
