"""The worker's claim-check step: resolve a reference before judging, delete its blob once answered.

Off (a pass-through) unless a Blob account is configured (qscore.claimcheck.settings). The
model's size limit is its config's `qscore.max_request_bytes`, looked up through the same
cached Triton client the preparer uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qscore.claimcheck import ClaimCheckSettings, ClaimResolver, ClaimStore, ResolvedBody
from qscore.transport.received import message_property
from workers.job import COMPLETED


class WorkerClaims:
    """What the intake calls (`resolve`) and the settler tells (`after_settled`)."""

    def __init__(self, settings: ClaimCheckSettings | None, specs: Any) -> None:
        self.resolver: ClaimResolver | None = None
        if settings is not None:
            self._specs = specs
            self.resolver = ClaimResolver(ClaimStore(settings), model_limit=self._model_limit)

    async def _model_limit(self, model: str) -> int | None:
        try:
            spec = await self._specs.model_spec(model)
        except Exception:  # unknown model or Triton down: the preparer reports it after the download
            return None
        limit = getattr(spec, "max_request_bytes", None)
        return int(limit) if limit else None

    async def resolve(self, message: Any, body: bytes) -> ResolvedBody:
        content_type = message_property(message, "content_type")
        if self.resolver is None:
            return ResolvedBody(body, content_type)
        key = str(message_property(message, "message_id"))
        return await self.resolver.resolve(content_type, body, key=key)

    async def after_settled(self, messages: Sequence[Any], outcome: str) -> None:
        """Completed (answered): delete the request's blob. Otherwise keep it: an abandoned
        message comes back for it; a dead-lettered one's blob stays for inspection until the
        container's lifecycle rule removes it."""
        if self.resolver is None:
            return
        keys = [str(message.message_id) for message in messages]
        if outcome == COMPLETED:
            await self.resolver.release(keys)
        else:
            self.resolver.forget(keys)

    async def close(self) -> None:
        if self.resolver is not None:
            await self.resolver.store.close()
