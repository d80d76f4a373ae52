"""Hooks around a request's steps (receive, validate, score, reply, settle), run by both runtimes:
see base.py. The stack (stack.py) orders them and isolates failures; loading.py reads
QSCORE_MIDDLEWARE; audit.py is the documented example."""

from qscore.middleware.base import (
    Middleware,
    Placement,
    Replied,
    ReplyToSend,
    ScoreBatch,
    ScoreResult,
    SentReply,
    Settled,
    SettleOutcome,
    ValidatedRequest,
)
from qscore.middleware.stack import MiddlewareStack, placed

__all__ = [
    "Middleware",
    "MiddlewareStack",
    "Placement",
    "Replied",
    "ReplyToSend",
    "ScoreBatch",
    "ScoreResult",
    "SentReply",
    "SettleOutcome",
    "Settled",
    "ValidatedRequest",
    "placed",
]
