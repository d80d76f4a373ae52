"""The scoring metrics middleware is the core's (qscore/middleware/metrics.py), run by the
Functions app too; the worker gives it its `WorkerTelemetry` (a `ScoringRecorder`). Always in
the stack; with `WorkerTelemetry(enabled=False)` every call returns at once."""

from qscore.middleware.metrics import MetricsMiddleware

__all__ = ["MetricsMiddleware"]
