"""The manifest: an append-only, fsync'd JSON Lines log of which chunks of a job are done.

Line 1 is the job's header (input, model, chunk size, mapping, output format); every later
line records one finished chunk, written only after its part was published. A rerun with a
different header is refused (its chunks would not line up). A kill can leave a torn last
line: it is ignored and that chunk is simply scored again, into the same part name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from qscore.batch.store import MANIFEST, Store


class ManifestMismatch(ValueError):
    """The output already has a manifest from a different job (one line for a person)."""


@dataclass
class ManifestState:
    header: dict[str, Any] | None = None
    chunks: dict[int, dict[str, Any]] = field(default_factory=dict)
    complete: dict[str, Any] | None = None


class Manifest:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.state = ManifestState()

    async def load(self) -> ManifestState:
        text = await self.store.read_text(MANIFEST) or ""
        state = ManifestState()
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a kill: that chunk is redone
            kind = record.get("kind")
            if kind == "header":
                state.header = record
            elif kind == "chunk":
                state.chunks[int(record["index"])] = record
            elif kind == "complete":
                state.complete = record
        self.state = state
        return state

    async def begin(self, header: dict[str, Any]) -> ManifestState:
        """Start or resume: a new manifest gets `header`; an existing one must match it."""
        state = await self.load()
        header = {"kind": "header", **header}
        if state.header is None:
            await self._append(header)
            state.header = header
        elif _comparable(state.header) != _comparable(header):
            changed = sorted(k for k in _comparable(header) if state.header.get(k) != header.get(k))
            raise ManifestMismatch(
                f"{self.store.description} holds a run with a different {', '.join(changed)}: "
                "rerun the same command, or remove it (or pick another --output) to start afresh"
            )
        return state

    async def chunk_done(self, record: dict[str, Any]) -> None:
        record = {"kind": "chunk", **record}
        await self._append(record)
        self.state.chunks[int(record["index"])] = record

    async def finish(self, summary: dict[str, Any]) -> None:
        record = {"kind": "complete", **summary}
        await self._append(record)
        self.state.complete = record

    async def _append(self, record: dict[str, Any]) -> None:
        await self.store.append_line(MANIFEST, json.dumps(record, sort_keys=True, separators=(",", ":")))


def _comparable(header: dict[str, Any]) -> dict[str, Any]:
    # The engine may change between runs (a job can resume on the other engine): same output.
    return {k: v for k, v in header.items() if k not in {"engine", "started_at"}}
