"""Moved to the core (qscore/middleware/audit.py), where both runtimes import it; kept so
QSCORE_WORKER_MIDDLEWARE=workers.middleware.audit:AuditMiddleware keeps working."""

from qscore.middleware.audit import AuditMiddleware

__all__ = ["AuditMiddleware"]
