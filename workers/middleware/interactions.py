"""The interaction log: each scored request with the reply that was sent for it (route
production/canary/pinned), for the monitoring reports. A failing sink is logged and never
costs a reply (qscore.scoring.log_interactions). The sink is closed at shutdown."""

from __future__ import annotations

from qscore.scoring import InteractionSink, log_interactions
from workers.middleware.base import Middleware, Replied


class InteractionsMiddleware(Middleware):
    def __init__(self, sink: InteractionSink) -> None:
        self.sink = sink

    async def after_reply(self, replied: Replied) -> None:
        scored = [each for each in replied.sent if each.scored is not None and each.request is not None]
        if not scored:
            return
        await log_interactions(
            self.sink,
            [each.scored for each in scored if each.scored is not None],
            [each.reply for each in scored],
            route=[each.request.prepared.route for each in scored if each.request is not None],
        )

    async def shutdown(self) -> None:
        await self.sink.close()
