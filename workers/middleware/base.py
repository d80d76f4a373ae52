"""Moved to the core (qscore/middleware/base.py), shared with the Functions app; kept so imports
of the old path keep working."""

from qscore.middleware.base import Middleware, Replied, ScoreBatch, ScoreResult, Settled, SettleOutcome

__all__ = ["Middleware", "Replied", "ScoreBatch", "ScoreResult", "SettleOutcome", "Settled"]
