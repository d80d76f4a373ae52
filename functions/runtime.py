"""The per-process objects the activities share: Triton client, request preparer, reply sender,
failures queue, payload store, and the interaction log (production and shadow results).

The Functions host runs every activity of a worker process on one event loop, so one runtime per
process (built on first use from the app settings) keeps one gRPC channel and one AMQP connection
open across invocations instead of one per activity. Tests and the in-process driver install
their own with `install_runtime`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from functions.middleware import app_middleware
from functions.payload_store import PayloadStore, payload_store_for
from functions.settings import FunctionsSettings
from functions.telemetry import InferSpans, ReplySpans
from qscore.middleware import Middleware, MiddlewareStack
from qscore.middleware.interactions import InteractionsMiddleware
from qscore.middleware.metrics import MetricsMiddleware
from qscore.middleware.shadow import ShadowMiddleware
from qscore.registry import ModelRegistry
from qscore.scoring import InteractionSink, RequestPreparer
from qscore.telemetry.recorder import ScoringRecorder

log = logging.getLogger("qscore.functions")

if TYPE_CHECKING:
    from qscore.inference import TritonClient
    from qscore.transport import ReplySender
    from qscore.transport.failures import FailureQueue


@dataclass
class ScoringRuntime:
    settings: FunctionsSettings
    triton: TritonClient
    preparer: RequestPreparer
    replies: ReplySender
    payloads: PayloadStore
    failures: FailureQueue  # requests that end without a reply (the request queue's DLQ twin)
    servicebus: Any = None  # the ServiceBusClient behind `replies`, closed with the runtime
    interactions: InteractionSink | None = None  # QSCORE_INTERACTION_LOG; None: not logged
    registry: ModelRegistry | None = None  # the preparer's, followed by `follow_registry`
    # The deployment's own middleware (QSCORE_MIDDLEWARE), hooked as in the worker (functions/middleware.py).
    middleware: MiddlewareStack = field(default_factory=MiddlewareStack)
    _registry_mtime: float | None = field(default=None, repr=False)
    _middleware_started: bool = field(default=False, repr=False)
    _stack: tuple[Any, Any, MiddlewareStack] | None = field(default=None, repr=False)

    def stack(self) -> MiddlewareStack:
        """The stack the activities call: the Triton call's and the replies' spans (`InferSpans`,
        `ReplySpans`, first so they wrap the others' hooks, as in the worker), the scoring
        metrics', the interaction log's (when there is a log) and shadow scoring's middleware
        (the worker's), then the deployment's. Made again when either is replaced."""
        made = self._stack
        if made is None or made[0] is not self.interactions or made[1] is not self.middleware:
            scored_by = self.settings.scored_by
            built_in: list[Middleware] = [InferSpans(), ReplySpans(), MetricsMiddleware(ScoringRecorder())]
            if self.interactions is not None:
                built_in.append(
                    InteractionsMiddleware(self.interactions, scored_by=scored_by, owns_sink=False)
                )
            built_in.append(ShadowMiddleware(self.triton, self.interactions, scored_by=scored_by))
            stack = MiddlewareStack([*built_in, *self.middleware.middleware])
            made = self._stack = (self.interactions, self.middleware, stack)
        return made[2]

    def interaction_log(self) -> InteractionsMiddleware | None:
        """The interaction log's middleware in the stack (None without a log), which the
        inference activity hands the scored requests (the scores are that activity's)."""
        found = (each for each in self.stack().middleware if isinstance(each, InteractionsMiddleware))
        return next(found, None)

    def shadow(self) -> ShadowMiddleware:
        """Shadow scoring's middleware in the stack, which the shadow activity hands its requests."""
        return next(each for each in self.stack().middleware if isinstance(each, ShadowMiddleware))

    async def start_middleware(self) -> None:
        """The middleware's `startup`, once per process, before its first validation."""
        if not self._middleware_started:
            self._middleware_started = True
            await self.stack().startup()

    async def follow_registry(self) -> None:
        """Reload the registry file if it changed since the last look, so promotions, rollbacks
        and flights apply without restarting the app (the worker polls; activities look here)."""
        registry = self.registry
        if registry is None:
            return
        mtime = await asyncio.to_thread(_mtime, registry)
        if mtime == self._registry_mtime:
            return
        self._registry_mtime = mtime
        try:
            await asyncio.to_thread(registry.reload)
        except Exception as exc:  # a half-edited file: keep the last good routes
            log.warning("could not reload the model registry %s: %r", registry.path, exc)

    async def close(self) -> None:
        await self.replies.close()
        if self._middleware_started:
            await self.stack().shutdown()
        if self.interactions is not None:
            await self.interactions.close()
        if self.servicebus is not None:
            await self.servicebus.close()
        await self.triton.close()


def _mtime(registry: ModelRegistry) -> float | None:
    try:
        return registry.path.stat().st_mtime
    except OSError:
        return None


_current: ScoringRuntime | None = None


def build_runtime(settings: FunctionsSettings) -> ScoringRuntime:
    """Everything from settings; no connection is opened until first use."""
    from qscore.claimcheck import ClaimCheckSettings
    from qscore.claimcheck.replies import ReplyClaims
    from qscore.inference import ModelNotFound, TritonClient
    from qscore.monitoring import InteractionLog
    from qscore.transport import ReplySender, servicebus_client
    from qscore.transport.failures import FailureQueue

    triton = TritonClient(settings.triton_url)
    if settings.connection:
        client = servicebus_client(connection=settings.connection)
    else:
        client = servicebus_client(namespace=settings.namespace)
    registry = ModelRegistry()
    preparer = RequestPreparer(specs=triton, registry=registry, unknown_model_errors=(ModelNotFound,))
    # Replies over the claim-check threshold go by reference, as the worker sends them.
    claim_settings = ClaimCheckSettings.from_env()
    return ScoringRuntime(
        settings=settings,
        triton=triton,
        preparer=preparer,
        replies=ReplySender(client, claims=ReplyClaims(claim_settings) if claim_settings else None),
        payloads=payload_store_for(settings.payload_dir),
        failures=FailureQueue(client, settings.failures_queue),
        servicebus=client,
        interactions=InteractionLog.from_env(),
        registry=registry,
        middleware=app_middleware(),
    )


def current_runtime() -> ScoringRuntime:
    global _current
    if _current is None:
        _current = build_runtime(FunctionsSettings.from_env())
    return _current


def install_runtime(runtime: ScoringRuntime | None) -> ScoringRuntime | None:
    """Use `runtime` from now on (None: build from settings on next use); returns the previous one."""
    global _current
    previous, _current = _current, runtime
    return previous


def current_settings() -> FunctionsSettings:
    """The installed runtime's settings, else the app settings (without building a runtime)."""
    return _current.settings if _current is not None else FunctionsSettings.from_env()


def payload_store() -> PayloadStore:
    """The payload store alone (the trigger needs it, not Triton or the bus)."""
    if _current is not None:
        return _current.payloads
    return payload_store_for(FunctionsSettings.from_env().payload_dir)
