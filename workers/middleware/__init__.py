"""Hooks around the worker's steps (receive, validate, score, reply, settle): see base.py.

The built-in middleware lives one concern per module (tracing, metrics, interactions, shadow,
jobs); `assembly.worker_middleware` puts the worker's stack together.
"""

from workers.middleware.base import Middleware, Replied, ScoreBatch, ScoreResult, Settled, SettleOutcome
from workers.middleware.stack import MiddlewareStack

__all__ = [
    "Middleware",
    "MiddlewareStack",
    "Replied",
    "ScoreBatch",
    "ScoreResult",
    "SettleOutcome",
    "Settled",
]
