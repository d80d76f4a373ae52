"""The two ways a batch job scores a chunk: straight to Triton, or through the request queue.

Both take a `PreparedChunk` and return its outputs (rows in order) with the model version
that scored each row. Versions are chosen as at runtime: the registry's production version
unless the job pins a version or label; a canary flight routes rows by their id.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from qscore.batch.direct_requests import RawRequests, has_raw_form
from qscore.batch.rows import PreparedChunk
from qscore.contracts.model_spec import ModelSpec
from qscore.inference.client import InferResult, TritonClient
from qscore.registry import ModelRegistry


class ScoringFailed(RuntimeError):
    """A chunk could not be scored after its retries; the job stops and a rerun resumes it."""


class ChunkRejected(Exception):
    """The scorer refused the chunk as sent (an error reply): its rows go to the side file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Scored:
    outputs: dict[str, np.ndarray]  # output name -> [rows, *dims]
    versions: np.ndarray  # the version that scored each row (numpy str array)


class Engine(Protocol):
    name: str

    async def score(self, chunk: PreparedChunk) -> Scored: ...

    async def close(self) -> None: ...


class DirectEngine:
    """gRPC to Triton; a chunk above max_batch_size goes as several requests at once, and the
    job keeps several chunks in flight. Numeric inputs go as `ModelInfer` messages built
    directly (qscore.batch.direct_requests: less Python a request than `client.infer`)."""

    name = "direct"

    def __init__(
        self,
        client: TritonClient,
        spec: ModelSpec,
        *,
        requested_version: str | None,
        registry: ModelRegistry,
        outputs: list[str] | None = None,
        requests: RawRequests | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.requested_version = requested_version
        self.registry = registry
        self.outputs = outputs
        # A process that scores many files with one client (Azure ML) shares one `requests`.
        self.raw = requests or RawRequests(client.url, timeout_s=client.timeout_s)

    def routes(self, chunk: PreparedChunk) -> np.ndarray:
        """The version for each row: one lookup unless a canary flight splits rows by id."""
        model, requested = self.spec.name, self.requested_version
        flight = self.registry.entry(model).flight
        if requested not in (None, "production") or flight is None or flight.mode != "canary":
            route = self.registry.resolve(model, requested, available=self.spec.versions, routing_key="")
            return np.full(chunk.rows, route.version)
        return np.array(
            [
                self.registry.resolve(
                    model, None, available=self.spec.versions, routing_key=str(row_id)
                ).version
                for row_id in chunk.ids.to_pylist()
            ],
            dtype=object,
        )

    async def score(self, chunk: PreparedChunk) -> Scored:
        versions = self.routes(chunk).astype(str)
        # The common case, one version for the whole chunk (one comparison, not np.unique's
        # sort on the event loop): the chunk goes as it is, no copies.
        if len(versions) and (versions == versions[0]).all():
            result = await self._infer(chunk.inputs, str(versions[0]))
            return Scored(result.outputs, np.full(chunk.rows, result.model_version))
        distinct = np.unique(versions)
        groups = {str(v): np.flatnonzero(versions == v) for v in distinct}
        results = await asyncio.gather(
            *(
                self._infer({name: array[rows] for name, array in chunk.inputs.items()}, version)
                for version, rows in groups.items()
            )
        )
        outputs: dict[str, np.ndarray] = {}
        scored_versions = np.empty(chunk.rows, dtype=object)
        for (_, rows), result in zip(groups.items(), results, strict=True):
            scored_versions[rows] = result.model_version
            for name, values in result.outputs.items():
                target = outputs.setdefault(name, np.empty((chunk.rows, *values.shape[1:]), values.dtype))
                target[rows] = values
        return Scored(outputs, scored_versions.astype(str))

    async def _infer(self, inputs: dict[str, np.ndarray], version: str) -> InferResult:
        if has_raw_form(inputs):
            return await self.raw.infer(
                self.spec.name,
                inputs,
                version=version,
                outputs=self.outputs,
                max_batch_size=self.spec.max_batch_size,
            )
        return await self.client.infer(self.spec.name, inputs, version=version, outputs=self.outputs)

    async def close(self) -> None:
        await self.raw.close()
        await self.client.close()
