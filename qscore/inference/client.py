"""Async Triton client over `tritonclient.grpc.aio`: one per process, one reused gRPC channel.

Every failure surfaces as an `InferenceError` subclass (see qscore/inference/errors.py) so
callers decide retry-vs-dead-letter from the type alone.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from qscore.contracts.model_spec import NUMPY_TO_TRITON, ModelSpec
from qscore.inference.errors import (
    InferenceError,
    InferenceRejected,
    InferenceUnavailable,
    ModelNotFound,
    classify,
)

__all__ = [
    "InferResult",
    "InferenceError",
    "InferenceRejected",
    "InferenceUnavailable",
    "ModelNotFound",
    "TritonClient",
]

T = TypeVar("T")
READY_POLL_S = 0.1


@dataclass(frozen=True)
class InferResult:
    """Output tensors by name (batch along axis 0) and the version that actually served the request."""

    outputs: dict[str, np.ndarray]
    model_version: str


async def infer_in_parts(
    inputs: dict[str, np.ndarray],
    max_batch_size: int,
    infer_once: Callable[[dict[str, np.ndarray]], Awaitable[InferResult]],
) -> InferResult:
    """Rows above `max_batch_size` go as concurrent requests of `max_batch_size` rows (Triton
    refuses more), their outputs joined in order; inputs that disagree on rows are refused."""
    rows = {len(array) for array in inputs.values()}
    if len(rows) != 1:
        raise InferenceRejected(f"inputs disagree on batch size: {sorted(rows)}")
    batch = rows.pop()
    if max_batch_size <= 0 or batch <= max_batch_size:
        return await infer_once(inputs)
    parts = await asyncio.gather(
        *(
            infer_once({k: v[start : start + max_batch_size] for k, v in inputs.items()})
            for start in range(0, batch, max_batch_size)
        )
    )
    joined = {name: np.concatenate([p.outputs[name] for p in parts]) for name in parts[0].outputs}
    return InferResult(outputs=joined, model_version=parts[0].model_version)


class TritonClient:
    """Async client for one Triton server. Create one per process and share it."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._grpc: Any = None  # created lazily so the channel binds to the running event loop
        self._specs: dict[tuple[str, str], asyncio.Future[ModelSpec]] = {}

    def _client(self) -> Any:
        if self._grpc is None:
            from tritonclient.grpc.aio import InferenceServerClient

            self._grpc = InferenceServerClient(self.url)
        return self._grpc

    async def _call(self, make_call: Callable[[], Awaitable[T]]) -> T:
        """Run one RPC, translating tritonclient/gRPC failures into InferenceError subclasses."""
        if self._grpc is None:  # the first call imports gRPC's client (~0.3 s): beside the event loop
            await asyncio.to_thread(importlib.import_module, "tritonclient.grpc.aio")
        from tritonclient.utils import InferenceServerException

        try:
            return await make_call()
        except InferenceServerException as exc:
            raise classify(exc.status(), exc.message() or str(exc)) from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise InferenceUnavailable(f"Triton at {self.url}: {exc!r}") from None

    async def is_ready(self) -> bool:
        """True when the server answers and says it is ready; never raises for a down server."""
        try:
            return bool(await self._call(lambda: self._client().is_server_ready(client_timeout=2.0)))
        except InferenceError:
            return False

    async def wait_ready(self, timeout: float = 60) -> None:  # noqa: ASYNC109 (agreed public signature)
        """Wait until the server is ready; InferenceUnavailable if it is not within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not await self.is_ready():
            if time.monotonic() >= deadline:
                raise InferenceUnavailable(f"Triton at {self.url} not ready after {timeout:.0f}s")
            await asyncio.sleep(READY_POLL_S)

    async def model_spec(self, model: str, version: str = "") -> ModelSpec:
        """The model's serving contract (cached). ModelNotFound if the model or version is not served."""
        key = (model, version)
        future = self._specs.get(key)
        if future is None:
            # Concurrent first calls share one lookup instead of each sending two RPCs.
            future = self._specs[key] = asyncio.ensure_future(self._fetch_spec(model, version))
        try:
            return await asyncio.shield(future)
        except BaseException:
            if future.done() and self._specs.get(key) is future:
                del self._specs[key]  # failures are not cached: the model may appear later
            raise

    async def _fetch_spec(self, model: str, version: str) -> ModelSpec:
        config = await self._call(
            lambda: self._client().get_model_config(
                model, version, as_json=True, client_timeout=self.timeout_s
            )
        )
        index = await self._call(
            lambda: self._client().get_model_repository_index(as_json=True, client_timeout=self.timeout_s)
        )
        versions = sorted(
            (
                m["version"]
                for m in index.get("models", [])
                if m["name"] == model and m.get("state") == "READY"
            ),
            key=int,
        )
        return ModelSpec.from_triton_config(config["config"], versions)

    async def served_models(self) -> list[str]:
        """The names of the models the server has READY (its repository index)."""
        index = await self._call(
            lambda: self._client().get_model_repository_index(as_json=True, client_timeout=self.timeout_s)
        )
        return sorted({m["name"] for m in index.get("models", []) if m.get("state") == "READY"})

    def forget_spec(self, model: str | None = None) -> None:
        """Drop cached specs (all, or one model's) after the server's repository changed."""
        self._specs = {k: v for k, v in self._specs.items() if model is not None and k[0] != model}

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> InferResult:
        """Score a batch (axis 0 is the batch). Batches above max_batch_size are split and rejoined.

        `timeout_s` shortens the client's timeout for this call (a request's remaining deadline)."""
        timeout = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        limit = (await self.model_spec(model)).max_batch_size
        return await infer_in_parts(
            inputs, limit, lambda part: self._infer_once(model, part, version, outputs, timeout)
        )

    async def _infer_once(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        version: str,
        outputs: Sequence[str] | None,
        timeout_s: float,
    ) -> InferResult:
        from tritonclient.grpc import InferInput, InferRequestedOutput

        infer_inputs = []
        for name, array in inputs.items():
            datatype = NUMPY_TO_TRITON.get(array.dtype)
            if datatype is None:
                raise InferenceRejected(f"input {name!r} has unsupported dtype {array.dtype}")
            infer_input = InferInput(name, list(array.shape), datatype)
            infer_input.set_data_from_numpy(np.ascontiguousarray(array))
            infer_inputs.append(infer_input)
        requested = [InferRequestedOutput(name) for name in outputs] if outputs else None
        result = await self._call(
            lambda: self._client().infer(
                model, infer_inputs, model_version=version, outputs=requested, client_timeout=timeout_s
            )
        )
        response = result.get_response()
        tensors = {tensor.name: result.as_numpy(tensor.name) for tensor in response.outputs}
        return InferResult(outputs=tensors, model_version=str(response.model_version))

    async def statistics(self, model: str = "") -> dict[str, Any]:
        """Triton's inference statistics (JSON form); all models when `model` is empty."""
        stats = await self._call(
            lambda: self._client().get_inference_statistics(
                model, as_json=True, client_timeout=self.timeout_s
            )
        )
        return dict(stats)

    async def close(self) -> None:
        if self._grpc is not None:
            grpc_client, self._grpc = self._grpc, None
            await grpc_client.close()

    async def __aenter__(self) -> TritonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
