"""Moved to the core (qscore/middleware/loading.py): QSCORE_MIDDLEWARE, read by both runtimes
(QSCORE_WORKER_MIDDLEWARE still works); kept so imports of the old path keep working."""

from qscore.middleware.loading import VARIABLE, check_reference, load_middleware

__all__ = ["VARIABLE", "check_reference", "load_middleware"]
