"""The receive loop (arq-style): receive in batches, hand to intake, repeat until told to stop.

One receiver "session" runs until a stop request or a Triton outage. Either way the session
drains: pending batches are flushed, in-flight ones finish and settle, what is still held
after the grace period is abandoned, and closing the receiver releases the SDK's prefetch
buffer, so nothing stays locked. After an outage the loop waits (exponential backoff) until
Triton answers again before opening the next session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from qscore.batching import BatchPolicy, MicroBatcher
from qscore.scoring import InferenceBackend, ReadinessProbe, RequestPreparer, SpecCache
from qscore.transport import ReplySender
from qscore.transport.link_open import fast_open
from qscore.transport.receiving import buffered_count, receive_ready, set_further_pull, top_up_link_credit
from qscore.transport.settlement import MessageSettler
from workers.backoff import Backoff
from workers.claims import WorkerClaims
from workers.health import WorkerState
from workers.held import HeldRequest
from workers.intake import Intake, IntakeOptions
from workers.job import ABANDONED, JobLimits
from workers.lanes import WeightedTurns
from workers.locks import HeldMessages, renew_locks_forever
from workers.middleware import MiddlewareStack
from workers.pipeline import BatchScorer, PipelineOptions
from workers.prefetch import PrefetchWindow, apply_link_credit
from workers.settings import WorkerSettings
from workers.settle import Settler
from workers.signals import StopRequest
from workers.telemetry import WorkerTelemetry
from workers.windows import BatchSlots

log = logging.getLogger(__name__)

CLOSE_MARGIN_S = 1.0  # of the grace period, kept for abandoning leftovers and closing links
# A receive returns this long after its first message arrived, then takes only what is already
# on the wire (the SDK's own 0.2 s made every message wait up to 200 ms; qscore.transport.receiving).
FURTHER_PULL_S = 0.0
# The receiving link's reader blocks this long for a frame that does not come, which bounds
# how late a further pull can end. It only writes small frames (flow, release), so short is safe.
RECEIVE_SOCKET_TIMEOUT_S = 0.02
# With priority lanes, received messages enter intake this many at a time (see _take_in).
INTAKE_CHUNK = 32


def _rows(request: HeldRequest) -> int:
    return request.rows


async def open_together(links: contextlib.AsyncExitStack, *receivers: ServiceBusReceiver) -> None:
    """Open the receivers at once, each closed with `links`: each open is a connection, its
    authentication and a link attach (several round trips), so one after another they cost a
    starting worker their sum (about 0.5 s each on a loaded 2-core machine). If any fails, the
    others still finish opening (and are closed with `links`) before the first error is raised."""

    async def open_one(receiver: ServiceBusReceiver) -> None:
        await links.enter_async_context(receiver)

    results = await asyncio.gather(*(open_one(r) for r in receivers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


@dataclass
class _HeldByLane:
    """The held sets of every lane together, for the in-flight gauges (workers/telemetry.py)."""

    lanes: dict[str, HeldMessages] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(held.count for held in self.lanes.values())

    @property
    def limit(self) -> int:
        return sum(held.limit for held in self.lanes.values())


@dataclass(frozen=True, slots=True)
class _Lane:
    """One lane's receive session: its queue, receiver, held set and intake."""

    queue: str
    receiver: ServiceBusReceiver
    held: HeldMessages
    intake: Intake
    settler: MessageSettler
    batcher: MicroBatcher[tuple[str, str], HeldRequest]
    slots: BatchSlots
    over: asyncio.Event  # set when any lane's session ends: the others end too


class ReceiveLoop:
    """Runs receiver sessions on `client` until `stop`; the backend is the Triton client.

    The steps call `middleware` (workers/middleware/); `job` is the job mode's account, which
    the job middleware keeps and the loop reads to size receives and to know when to stop."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        client: ServiceBusClient,
        backend: InferenceBackend,
        preparer: RequestPreparer,
        replies: ReplySender,
        telemetry: WorkerTelemetry,
        middleware: MiddlewareStack,
        job: JobLimits,
        state: WorkerState,
        stop: StopRequest,
        claims: WorkerClaims | None = None,
    ) -> None:
        self.settings = settings
        self.claims = claims or WorkerClaims(None, None)
        self._client = client
        self._backend = backend
        self._preparer = preparer
        self._replies = replies
        self._telemetry = telemetry
        self._middleware = middleware
        self.state = state
        self._stop = stop
        self.backoff = Backoff(initial_s=settings.backoff_initial_s, max_s=settings.backoff_max_s)
        # Broker faults (connection lost, receiver shut down by the SDK) end the session; the
        # next one opens after this backoff.
        self.broker_backoff = Backoff(initial_s=settings.backoff_initial_s, max_s=settings.backoff_max_s)
        self.window = PrefetchWindow(ceiling=settings.prefetch)
        self.turns = WeightedTurns(settings.lanes())
        self._waited_before = False
        self._first_probe: asyncio.Future[bool] | None = None
        # Set once a session's links are open and Triton answered its probe (ready or not): the
        # start-up work the first reply does not need waits for it (workers.app._start_aside).
        self.started = asyncio.Event()
        self._held_by_lane = _HeldByLane()
        self.job = job

    def _on_settled(self, outcome: str, count: int) -> None:
        if outcome != ABANDONED:
            self.window.finished(count)

    async def run(self) -> None:
        # The first session opens its links beside one readiness probe of Triton: each costs a
        # starting worker round trips and the SDK's polling (~0.5 s), so not one after the other.
        # Triton not ready then: the session closes its links before its first receive, which
        # releases what the link's credit had fetched, and the loop waits as after an outage.
        self._first_probe = asyncio.ensure_future(self._probe_triton())
        while not self._stop.is_set:
            await self._session()
            if not self._stop.is_set:
                await self._sleep_unless_stopped(self.broker_backoff.remaining_s())
                await self._wait_for_triton()
        await self._middleware.after_drain()

    def _triton_unavailable(self, reason: str) -> None:
        pause = self.backoff.failure(reason)
        if self.state.triton_ok:
            log.warning("Triton unavailable (%s); pausing receive for %.1fs", reason, pause)
        self.state.triton_ok = False
        self.state.detail = f"triton unavailable: {reason}"

    def _triton_ok(self) -> None:
        if self.backoff.failing:
            self.backoff.success()
        self.state.triton_ok = True

    async def _wait_for_triton(self) -> None:
        """Until Triton answers (or a stop): probe, and back off between failed probes."""
        while not self._stop.is_set:
            await self._sleep_unless_stopped(self.backoff.remaining_s())
            if self._stop.is_set:
                return
            if await self._probe_triton():
                return

    async def _probe_triton(self) -> bool:
        """Ask Triton once whether it is ready; not ready: mark the outage (and its backoff)."""
        backend = self._backend
        if not isinstance(backend, ReadinessProbe) or await backend.is_ready():
            if self._waited_before and isinstance(backend, SpecCache):
                backend.forget_spec()  # a restarted server may serve other versions
            # (not the first time: the specs the start-up warm-up fetched are this server's)
            self._waited_before = True
            self.state.triton_ok = True
            self.state.detail = "receiving"
            return True
        self._triton_unavailable("not ready")
        return False

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.stopping.wait(), seconds)

    async def _session(self) -> None:
        """One receive session per lane (workers/lanes.py); when one ends, they all end."""
        lanes = self.settings.lanes()
        self.turns = WeightedTurns(lanes)
        over = asyncio.Event()
        try:
            await asyncio.gather(*(self._lane_session(queue, over) for queue in lanes))
        finally:
            self._first_probe = None  # later sessions open after _wait_for_triton

    async def _lane_session(self, queue: str, over: asyncio.Event) -> None:
        settings = self.settings
        # The SDK's prefetch starts at the window's size; _receive re-sizes it as throughput is measured.
        receiver = self._client.get_queue_receiver(
            queue, prefetch_count=self.window.size, socket_timeout=RECEIVE_SOCKET_TIMEOUT_S
        )
        set_further_pull(receiver, FURTHER_PULL_S)
        fast_open(receiver)  # its handshake read frame by frame, not every 50 ms (link_open.py)

        # Idle receivers (own connections, no prefetch) carry batch settlement and lock renewal,
        # so they never wait behind the receive loop; several at once, as many as the measured
        # rate x round trip asks for (qscore.transport.settlement).
        def open_control() -> ServiceBusReceiver:
            control = self._client.get_queue_receiver(queue, prefetch_count=0)
            fast_open(control)
            return control

        control = open_control()
        message_settler = MessageSettler(receiver, control=control, open_control=open_control)
        async with contextlib.AsyncExitStack() as links:
            await open_together(links, receiver, control)
            message_settler.start()  # the first control's management link opens in the background
            held = HeldMessages(limit=settings.max_held_messages)
            self._held_by_lane.lanes[queue] = held
            self._telemetry.watch_held(self._held_by_lane)
            settler = Settler(
                message_settler,
                held,
                self._middleware,
                on_settled=self._on_settled,
                after_settled=self.claims.after_settled,
            )
            batcher = self._batcher(settler)
            intake = Intake(
                preparer=self._preparer,
                batcher=batcher,
                settler=settler,
                replies=self._replies,
                middleware=self._middleware,
                options=IntakeOptions(
                    reply_policy=settings.reply_policy(),
                    worker_id=settings.worker_id,
                    max_message_bytes=settings.max_message_bytes,
                    claims=self.claims,
                ),
                on_unavailable=self._triton_unavailable,
            )
            slots = BatchSlots(settings.max_in_flight_batches)
            renewer = asyncio.create_task(renew_locks_forever(settler.messages, held))
            self.state.connected = True
            try:
                lane = _Lane(queue, receiver, held, intake, message_settler, batcher, slots, over)
                ready = self._first_probe is None or await self._first_probe
                self.started.set()
                if ready:
                    await self._receive(lane)
            finally:
                over.set()
                self.state.connected = False
                try:
                    await self._drain(batcher, settler)
                finally:
                    renewer.cancel()
                    await message_settler.close()

    def _batcher(self, settler: Settler) -> MicroBatcher[tuple[str, str], HeldRequest]:
        settings = self.settings
        scorer = BatchScorer(
            backend=self._backend,
            settler=settler,
            replies=self._replies,
            middleware=self._middleware,
            options=PipelineOptions(
                worker_id=settings.worker_id,
                binary_replies=settings.binary_replies,
                reply_policy=settings.reply_policy(),
            ),
            on_unavailable=self._triton_unavailable,
            on_success=self._triton_ok,
        )
        policy = BatchPolicy(
            max_batch_size=settings.max_batch_size,
            max_delay_s=settings.max_batch_delay_ms / 1000,
            max_in_flight=settings.max_in_flight_batches,
            adaptive=settings.adaptive_batching,
        )
        return MicroBatcher(handler=scorer.handle, policy=policy, rows_of=_rows)

    def _receive_size(self, lane: _Lane) -> int:
        """Messages to ask for now: room in the held set, the prefetch window, the job budget."""
        held, receiver = lane.held, lane.receiver
        # What a batch spends on the broker: its replies' delivery and its settlement, each with
        # any wait for a link (or for the request it joined), not the round trips alone.
        broker_wait_s = (lane.settler.call_s or 0.0) + (self._replies.call_s or 0.0)
        batcher = lane.batcher  # batches holding a slot: those counted in flight, less any queued
        running = min(batcher.in_flight_batches, batcher.max_in_flight)
        limit = lane.slots.tick(batcher.started, broker_wait_s, running)
        if limit != lane.batcher.max_in_flight:
            lane.batcher.resize_in_flight(limit)
        size = held.room
        if self.settings.prefetch > 0:
            window = self.window.tick(held=held.count, round_trip_s=lane.settler.round_trip_s)
            if window != getattr(receiver, "_prefetch_count", window):
                apply_link_credit(receiver, window)
            size = min(size, window)
        # With no prefetch the SDK asks the broker for exactly this many, and they are held
        # (renewed) as soon as they arrive, so only the held set and the job budget bound it.
        job_room = self.job.room
        return size if job_room is None else min(size, job_room)

    async def _receive(self, lane: _Lane) -> None:
        receiver, held = lane.receiver, lane.held
        wait_s = self.settings.receive_wait_s
        while not self._stop.is_set and not self.backoff.paused and not lane.over.is_set():
            self.state.tick()
            if held.count:
                self.job.busy()
            elif (reason := self.job.exit_reason()) is not None:
                self._stop.request(reason)
                break
            batch_size = self._receive_size(lane)
            if batch_size == 0 and held.room == 0:
                await held.wait_for_room(wait_s)
                continue
            if batch_size == 0:  # job mode: its messages are all taken; wait for them to settle
                await self._sleep_unless_stopped(0.05)
                continue
            try:
                if self.settings.prefetch > 0:  # the next window on its way while this one is taken
                    await top_up_link_credit(receiver, self.window.size)
                messages = await receive_ready(receiver, max_count=batch_size, wait_s=wait_s)
            except Exception as exc:  # connection lost, or the SDK shut the receiver down
                pause = self.broker_backoff.failure(f"receive: {exc!r}")
                log.warning("receive failed (%r); reconnecting in %.1fs", exc, pause)
                return
            self.broker_backoff.success()
            if messages:
                held.add(messages)
                if self.settings.prefetch > 0:
                    self.window.received(len(messages), buffered=buffered_count(receiver), room=held.room)
                await self._middleware.after_receive(lane.queue, messages)
                self.window.observe_lock(messages)
                self.state.count("received", len(messages))
                await self._take_in(lane, messages)
            # Yield every turn so lock renewal and batch tasks run even under a full queue (#31427).
            await asyncio.sleep(0)

    async def _take_in(self, lane: _Lane, messages: list[ServiceBusReceivedMessage]) -> None:
        """Hand received messages to intake, the higher lane first (weighted turns). With several
        lanes a large receive goes in chunks, yielding between them: intake does not wait on I/O
        per message, so one big low-lane batch would otherwise hold the event loop, and the
        high lane's receive with it, until all of it was judged."""
        chunk = len(messages) if len(self.turns.lanes) == 1 else INTAKE_CHUNK
        for start in range(0, len(messages), chunk):
            async with self.turns.turn(lane.queue):
                await lane.intake.accept(messages[start : start + chunk])
            if start + chunk < len(messages):
                await asyncio.sleep(0)

    async def _drain(self, batcher: MicroBatcher[tuple[str, str], HeldRequest], settler: Settler) -> None:
        if self._stop.is_set:
            self.state.draining = True
            self.state.detail = "draining"
            requested_at = self._stop.requested_at or time.monotonic()
            budget = self.settings.drain_grace_s - CLOSE_MARGIN_S - (time.monotonic() - requested_at)
        else:  # an outage: in-flight batches fail fast or time out on their own
            budget = self.settings.triton_timeout_s + 5.0
        drained = asyncio.ensure_future(batcher.drain())
        hurry = asyncio.ensure_future(self._stop.hurry.wait())
        await asyncio.wait({drained, hurry}, timeout=max(0.0, budget), return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        if not drained.done():
            drained.cancel()
            await batcher.cancel()
        abandoned = await settler.abandon_all_held(reason="shutdown" if self._stop.is_set else "outage")
        if abandoned:
            log.warning("abandoned %d held messages for redelivery", abandoned)
