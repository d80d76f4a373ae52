"""An audit trail, one log line per request outcome: the example middleware of docs/worker.md.
It runs unchanged in the worker and in the Functions app.

Enable it without code: QSCORE_MIDDLEWARE=qscore.middleware.audit:AuditMiddleware
"""

from __future__ import annotations

import logging

from qscore.middleware import Middleware, Replied, Settled

audit = logging.getLogger("qscore.audit")


class AuditMiddleware(Middleware):
    """`request=<id> model=<model> outcome=<outcome>` for each reply sent (`ok`, or `error:<code>`)
    and each message dead-lettered or abandoned (`dead_lettered:<reason>`, `abandoned:<reason>`).
    A completion follows its reply, whose line already says how the request ended."""

    async def after_reply(self, replied: Replied) -> None:
        for each in replied.sent:
            reply = each.reply
            outcome = "ok" if reply.error is None else f"error:{reply.error.code}"
            audit.info("request=%s model=%s outcome=%s", reply.request_id, reply.model, outcome)

    async def after_settle(self, settled: Settled) -> None:
        if settled.outcome == "completed":
            return
        for message in settled.messages:
            request_id = getattr(message, "message_id", None)
            audit.info("request=%s model=- outcome=%s:%s", request_id, settled.outcome, settled.reason)
