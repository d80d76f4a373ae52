"""The worker's built-in middleware, one concern per module (tracing, jobs; metrics, interactions
and shadow re-export the core's); `assembly.worker_middleware` puts the worker's stack together.
The `Middleware` base and the stack are the core's (qscore.middleware), shared with the
Functions app."""

from qscore.middleware import (
    Middleware,
    MiddlewareStack,
    Replied,
    ScoreBatch,
    ScoreResult,
    Settled,
    SettleOutcome,
)

__all__ = [
    "Middleware",
    "MiddlewareStack",
    "Replied",
    "ScoreBatch",
    "ScoreResult",
    "SettleOutcome",
    "Settled",
]
