"""Where requests that cannot be answered go, with their reason.

The trigger completes its messages once the orchestration has started (autoCompleteMessages), so
the orchestration cannot dead-letter them on the queue any more; requests with no reply address
are written here instead (JSON lines, one per request; an append-only blob in Azure).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

from functions.payloads import Rejection


class DeadLetterStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def store(self, instance_id: str, rejected: Sequence[Rejection]) -> int:
        lines = [
            json.dumps({"at": time.time(), "instance_id": instance_id, **item.model_dump()})
            for item in rejected
        ]
        if lines:
            await asyncio.to_thread(self._append, lines)
        return len(lines)

    def _append(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write("".join(line + "\n" for line in lines))

    async def read(self) -> list[dict[str, object]]:
        def load() -> list[dict[str, object]]:
            if not self.path.exists():
                return []
            return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]

        return await asyncio.to_thread(load)
