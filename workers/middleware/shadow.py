"""Moved to the core (qscore/middleware/shadow.py), which the Functions app runs too; kept so
imports of the old path (and its old name) keep working."""

from qscore.middleware.shadow import DRAIN_WAIT_S, ShadowMiddleware

ShadowScorer = ShadowMiddleware

__all__ = ["DRAIN_WAIT_S", "ShadowMiddleware", "ShadowScorer"]
