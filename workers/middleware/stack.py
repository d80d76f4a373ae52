"""Moved to the core (qscore/middleware/stack.py), shared with the Functions app; kept so imports
of the old path keep working."""

from qscore.middleware.stack import FAILURES_METRIC, HOOKS, MiddlewareStack

__all__ = ["FAILURES_METRIC", "HOOKS", "MiddlewareStack"]
