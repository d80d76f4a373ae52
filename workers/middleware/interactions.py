"""Moved to the core (qscore/middleware/interactions.py), which the Functions app runs too; kept
so imports of the old path keep working."""

from qscore.middleware.interactions import InteractionsMiddleware

__all__ = ["InteractionsMiddleware"]
