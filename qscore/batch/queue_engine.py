"""Queue engine: each chunk becomes one multi-row request on the request queue.

The KEDA-scaled workers score it (routing versions as they do for any request) and reply to
this job's session; the producer library matches replies and drops at-least-once duplicates.
A chunk without a reply is sent again under a new id; replies for the old id are then late
or stray and ignored, so every chunk is written once (the manifest makes it once per run).
A chunk whose request body is over the claim-check threshold goes by reference: the producer
uploads it to Blob and the message carries the reference (qscore.claimcheck; configured by
QSCORE_BLOB_CONNECTION or QSCORE_BLOB_ACCOUNT_URL). Without a Blob account such a chunk
would be refused by the queue, so the job stops with one line before sending it.
"""

from __future__ import annotations

import logging

import numpy as np

from qscore.batch.engines import ChunkRejected, Scored, ScoringFailed
from qscore.batch.rows import PreparedChunk
from qscore.claimcheck.settings import BLOB_ACCOUNT_URL_ENV, BLOB_CONNECTION_ENV, DEFAULT_THRESHOLD_BYTES
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
            if attempt == 1:
                self._check_inline_size(chunk.index, request)
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

    def _check_inline_size(self, index: int, request: OutgoingRequest) -> None:
        """Without claim-check storage, a body over the inline limit cannot be sent at all."""
        if self.producer.claims.store is not None:
            return
        size = len(request.body())
        if size > DEFAULT_THRESHOLD_BYTES:
            raise ScoringFailed(
                f"chunk {index}: its request is {size:,} bytes, over the queue's inline limit "
                f"({DEFAULT_THRESHOLD_BYTES:,}); set {BLOB_CONNECTION_ENV} or {BLOB_ACCOUNT_URL_ENV} "
                "to send it by reference, or use a smaller --chunk-rows"
            )

    async def close(self) -> None:
        await self.producer.close()
