"""Assemble a worker from its settings and run it: `await run_worker(settings)`.

Startup: the middleware's `startup` (workers/middleware/), Triton client, Service Bus client, then
the receive loop, and beside it (not before it: a starting worker's first reply waits for none of
them) the check of the SDK hooks and the health server; then the start-up heap is frozen out of
the garbage collector's walks (`qscore.heap`). Shutdown (after the receive loop has
drained and the middleware's `after_drain`): the same in reverse, the middleware's `shutdown` last.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from azure.servicebus.aio import ServiceBusClient

from qscore.claimcheck import ClaimCheckSettings
from qscore.claimcheck.replies import ReplyClaims
from qscore.heap import freeze_start_up_heap
from qscore.inference.errors import ModelNotFound
from qscore.middleware import Middleware, MiddlewareStack
from qscore.middleware.loading import load_middleware
from qscore.registry import ModelRegistry
from qscore.scoring import InferenceBackend, RequestPreparer, SpecSource
from qscore.transport import ReplySender, sdk_hooks, servicebus_client
from workers.claims import WorkerClaims
from workers.health import HealthServer, WorkerState
from workers.hooks import WorkerCallbacks
from workers.job import JobLimits
from workers.loop import ReceiveLoop
from workers.middleware.assembly import worker_middleware
from workers.registry_watch import watch_registry
from workers.settings import WorkerSettings
from workers.signals import StopRequest, install_signal_handlers
from workers.telemetry import WorkerTelemetry

if TYPE_CHECKING:
    from qscore.inference import TritonClient

log = logging.getLogger(__name__)
# The longest the SDK hook check and the health server wait for the first session to open.
ASIDE_WAIT_S = 2.0


def _interaction_sink(settings: WorkerSettings) -> Any:
    from qscore.monitoring.interaction_log import InteractionLog

    if settings.interaction_log is None:  # QSCORE_INTERACTION_LOG_URL: the Blob log, if set
        return InteractionLog.from_env()
    return InteractionLog(settings.interaction_log)


def _preparer(
    settings: WorkerSettings, backend: Any, registry: ModelRegistry, stack: contextlib.AsyncExitStack
) -> RequestPreparer:
    """The shared request preparer, with a registry that follows changes to its file."""
    watcher = asyncio.create_task(watch_registry(registry))
    stack.callback(watcher.cancel)
    return RequestPreparer(
        specs=backend,
        registry=registry,
        unknown_model_errors=(ModelNotFound,),
        max_message_bytes=settings.max_message_bytes,
    )


async def warm_up(
    settings: WorkerSettings, backend: Any, registry: ModelRegistry, replies: ReplySender
) -> None:
    """At start, beside the first receive: connect the Triton channel and look up the model
    specs, and attach the default reply queue's sender link. Cold, these cost a new worker
    ~1.1 s and ~0.6 s on its first request (measured on a loaded 2-core machine); in the
    background they overlap the receive link's attach and the first message's wait."""

    async def specs() -> None:
        models = list(registry.document.models)
        served = getattr(backend, "served_models", None)
        if not models and served is not None:
            models = await served()
        await asyncio.gather(*(backend.model_spec(model) for model in models), return_exceptions=True)

    results = await asyncio.gather(specs(), replies.open_link(settings.reply_queue), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):  # the first real use reports (and handles) it
            log.info("warm-up step failed (first use will retry): %r", result)


class WorkerBackend(InferenceBackend, SpecSource, Protocol):
    """What the worker needs from its Triton client: inference and model specs (TritonClient)."""


async def run_worker(
    settings: WorkerSettings,
    *,
    stop: StopRequest | None = None,
    hooks: WorkerCallbacks | None = None,
    telemetry: WorkerTelemetry | None = None,
    backend: WorkerBackend | None = None,
    client: ServiceBusClient | None = None,
    state: WorkerState | None = None,
    handle_signals: bool = True,
    middleware: Sequence[Middleware] = (),
) -> None:
    """Run until SIGTERM/SIGINT (or `stop.request()`); injected parts are not closed here.

    `middleware` runs after the built-in middleware, before QSCORE_MIDDLEWARE's
    (`settings.worker_middleware`; a bad reference raises SettingsError before anything starts)."""
    extra = [*middleware, *load_middleware(settings.worker_middleware)]
    stop = stop or StopRequest()
    hooks = hooks or WorkerCallbacks(interactions=_interaction_sink(settings))
    telemetry = telemetry or WorkerTelemetry(queue=settings.request_queue)
    state = state or WorkerState()
    restore_signals = install_signal_handlers(stop) if handle_signals else (lambda: None)
    triton: TritonClient | None = None
    if backend is None:  # made here (it connects on first use), closed with the other clients
        from qscore.inference import TritonClient

        backend = triton = TritonClient(settings.triton_url, timeout_s=settings.triton_timeout_s)
    job = JobLimits(
        exit_after_messages=settings.exit_after_messages, exit_when_idle_s=settings.exit_when_idle_s
    )
    steps = worker_middleware(
        hooks=hooks, telemetry=telemetry, backend=backend, job=job, stop=stop, extra=extra
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(restore_signals)
        stack.push_async_callback(steps.shutdown)
        await steps.startup()
        if triton is not None:
            stack.push_async_callback(triton.close)
        if client is None:
            client = servicebus_client(
                connection=settings.servicebus_connection, namespace=settings.servicebus_namespace
            )
            stack.push_async_callback(client.close)
        loop = await _receive_loop(settings, client, backend, stack, telemetry, steps, job, state, stop)
        log.info("worker %s consuming %s", settings.worker_id, ", ".join(settings.lanes()))
        running = asyncio.ensure_future(loop.run())
        try:
            await _start_aside(settings, state, stack, loop.started, running)
        except BaseException as exc:  # e.g. the health port is taken: drain what was taken, then raise
            if isinstance(exc, asyncio.CancelledError):
                running.cancel()
            else:
                stop.request(f"start-up failed: {exc!r}")
            await asyncio.wait({running})
            raise
        # Started: what is alive now (libraries, clients, links) lives as long as the worker.
        stack.callback(freeze_start_up_heap())
        await running
    log.info("worker %s stopped", settings.worker_id)


async def _start_aside(
    settings: WorkerSettings,
    state: WorkerState,
    stack: contextlib.AsyncExitStack,
    loop_started: asyncio.Event,
    running: asyncio.Future[Any],
) -> None:
    """The start-up steps the first request does not wait for: the check of the SDK internals
    the fast paths use (it reads the SDK's source, ~0.2 s of CPU) and the health server
    (importing aiohttp, ~0.15 s), each in a thread where it would block the event loop.

    They start once the first session's links are open and Triton answered its first probe
    (ready or not), or the loop ends, or after ASIDE_WAIT_S at most (so a worker whose bus is
    down still serves /healthz and /readyz): run at once, their threads took the GIL from what
    the first receive waits for (tritonclient's gRPC import in that probe, the handshakes)."""
    started: asyncio.Future[Any] = asyncio.ensure_future(loop_started.wait())
    try:
        await asyncio.wait({started, running}, timeout=ASIDE_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()
    steps: list[Awaitable[Any]] = [asyncio.to_thread(sdk_hooks.log_hooks)]
    if settings.health_port is not None:
        steps.append(asyncio.to_thread(importlib.import_module, "aiohttp.web"))
    await asyncio.gather(*steps)
    await _start_health(settings, state, stack)  # after the check: /readyz reports its result


async def _start_health(
    settings: WorkerSettings, state: WorkerState, stack: contextlib.AsyncExitStack
) -> None:
    if settings.health_port is None:
        return
    health = HealthServer(state, host=settings.health_host, port=settings.health_port)
    await health.start()
    stack.push_async_callback(health.stop)
    log.info("health server on %s:%d", settings.health_host, health.port)


async def _receive_loop(
    settings: WorkerSettings,
    client: ServiceBusClient,
    backend: WorkerBackend,
    stack: contextlib.AsyncExitStack,
    telemetry: WorkerTelemetry,
    steps: MiddlewareStack,
    job: JobLimits,
    state: WorkerState,
    stop: StopRequest,
) -> ReceiveLoop:
    """The reply sender, registry, preparer, warm-up and claim-check step, and the loop on them."""
    claim_settings = ClaimCheckSettings.from_env()
    replies = ReplySender(client, claims=ReplyClaims(claim_settings) if claim_settings else None)
    stack.push_async_callback(replies.close)
    registry = ModelRegistry(settings.registry_path)
    preparer = _preparer(settings, backend, registry, stack)
    warming = asyncio.create_task(warm_up(settings, backend, registry, replies))
    stack.callback(warming.cancel)
    claims = WorkerClaims(claim_settings, backend)
    stack.push_async_callback(claims.close)
    return ReceiveLoop(
        settings=settings,
        client=client,
        backend=backend,
        preparer=preparer,
        replies=replies,
        telemetry=telemetry,
        middleware=steps,
        job=job,
        state=state,
        stop=stop,
        claims=claims,
    )
