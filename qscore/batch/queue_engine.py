"""Queue engine: each chunk becomes one multi-row request on the request queue.

The KEDA-scaled workers score it (routing versions as they do for any request) and reply to
this job's session; the producer library matches replies and drops at-least-once duplicates.
A chunk without a reply is sent again under a new id; replies for the old id are then late
or stray and ignored, so every chunk is written once (the manifest makes it once per run).
Requests are sent inline: digits chunks (256 rows, ~88 KB in base64) fit the queue; the
claim-check through Blob for larger requests is issue 13's and not used here yet.
"""

from __future__ import annotations

import logging

import numpy as np

from qscore.batch.engines import ChunkRejected, Scored, ScoringFailed
from qscore.batch.rows import PreparedChunk
from qscore.producer import OutgoingRequest, ScoringProducer

log = logging.getLogger(__name__)


class QueueEngine:
    name = "queue"

    def __init__(
        self,
        producer: ScoringProducer,
        *,
        model: str,
        requested_version: str | None,
        outputs: list[str] | None = None,
        attempts: int = 3,
        timeout_s: float = 120.0,
    ) -> None:
        self.producer = producer
        self.model = model
        self.requested_version = requested_version
        self.outputs = outputs
        self.attempts = attempts
        self.timeout_s = timeout_s

    async def score(self, chunk: PreparedChunk) -> Scored:
        for attempt in range(1, self.attempts + 1):
            request = OutgoingRequest.build(
                self.model, chunk.inputs, version=self.requested_version, binary=True
            )
            (outcome,) = await self.producer.score_many([request], timeout_s=self.timeout_s)
            reply = outcome.reply
            if reply is None:
                log.warning("chunk %d: no reply within %.0f s (try %d)", chunk.index, self.timeout_s, attempt)
                continue
            if not outcome.ok:
                code = reply.error.code if reply.error else "error"
                message = reply.error.message if reply.error else ""
                raise ChunkRejected(f"{code}: {message}".strip())
            outputs = reply.output_arrays()
            if self.outputs:
                outputs = {name: outputs[name] for name in self.outputs}
            versions = np.full(chunk.rows, reply.model_version or "")
            return Scored(outputs, versions)
        raise ScoringFailed(
            f"chunk {chunk.index}: no reply after {self.attempts} tries of {self.timeout_s:.0f} s "
            "(are workers running? a dead-lettered request is in the request queue's dead-letter queue)"
        )

    async def close(self) -> None:
        await self.producer.close()
