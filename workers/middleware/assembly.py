"""The worker's middleware stack: the start-up/shut-down hooks, the built-in concerns, then the
deployment's own (keyword `middleware=` of run_worker, then QSCORE_MIDDLEWARE)."""

from __future__ import annotations

from collections.abc import Sequence

from qscore.middleware import Middleware, MiddlewareStack
from qscore.middleware.interactions import InteractionsMiddleware
from qscore.middleware.shadow import ShadowMiddleware
from qscore.scoring import InferenceBackend
from workers.hooks import WorkerCallbacks
from workers.job import JobLimits
from workers.middleware.jobs import JobsMiddleware
from workers.middleware.metrics import MetricsMiddleware
from workers.middleware.tracing import TracingMiddleware
from workers.signals import StopRequest
from workers.telemetry import WorkerTelemetry


def worker_middleware(
    *,
    hooks: WorkerCallbacks,
    telemetry: WorkerTelemetry,
    backend: InferenceBackend,
    job: JobLimits,
    stop: StopRequest,
    extra: Sequence[Middleware] = (),
) -> MiddlewareStack:
    """In this order: hooks, tracing (when spans are on), metrics, jobs, interaction log (when
    there is one), shadow scoring, then `extra` (each at the end, or where its `place_before`/
    `place_after` puts it). Tracing comes early so its batch span wraps the others' score hooks
    (its `before_score` runs before theirs, its `after_score` after theirs); its `after_validate`
    therefore runs after theirs too: a middleware that reads the request span there is placed
    `place_before = "TracingMiddleware"`."""
    stack: list[Middleware] = [hooks]
    if telemetry.spans:
        stack.append(TracingMiddleware(telemetry))
    stack += [MetricsMiddleware(telemetry), JobsMiddleware(job, stop)]
    if hooks.interactions is not None:
        stack.append(InteractionsMiddleware(hooks.interactions))
    stack.append(ShadowMiddleware(backend, hooks.interactions))
    stack += extra
    return MiddlewareStack(stack)
