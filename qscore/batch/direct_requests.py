"""The direct engine's Triton requests: `ModelInfer` messages built straight from the arrays.

At the digits model's 256 rows a request, the client's Python per request is a large part of
the engine's CPU. `TritonClient.infer` (the worker's client) wraps every input in an
`InferInput`, copies it with `tobytes`, builds the message from those objects, and reads every
output back through `InferResult`. Here the message is built directly (binary
`raw_input_contents`: one copy of the rows into the message, as tritonclient makes too) and the
outputs are read as views of the response's bytes, on one gRPC channel of the engine's own:
the same request the ceiling's load generator sends (same model, rows a request, binary
contents), with less Python around it. Failures are the same `InferenceError` subclasses,
through the same `classify`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qscore.contracts.model_spec import BYTES, NUMPY_TO_TRITON, numpy_dtype
from qscore.inference.client import InferResult, infer_in_parts
from qscore.inference.errors import InferenceUnavailable, classify

MAX_MESSAGE_BYTES = 2**31 - 1  # as tritonclient's channel: the model's limits apply, not gRPC's


def has_raw_form(inputs: dict[str, np.ndarray]) -> bool:
    """Numeric inputs only: BYTES (object) inputs go through `TritonClient.infer`, which
    serializes them."""
    return all(array.dtype.kind in "biuf" and array.dtype in NUMPY_TO_TRITON for array in inputs.values())


class RawRequests:
    """`ModelInfer` calls on one channel, created on the running loop at the first call."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._channel: Any = None
        self._infer: Any = None

    def _method(self) -> Any:
        if self._infer is None:
            import grpc
            from tritonclient.grpc import service_pb2_grpc

            options = [
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ]
            self._channel = grpc.aio.insecure_channel(self.url, options=options)
            self._infer = service_pb2_grpc.GRPCInferenceServiceStub(self._channel).ModelInfer
        return self._infer

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        version: str,
        outputs: Sequence[str] | None,
        max_batch_size: int,
    ) -> InferResult:
        """As `TritonClient.infer`: rows above `max_batch_size` go as concurrent requests of
        `max_batch_size` rows, their outputs joined in order."""
        return await infer_in_parts(
            inputs, max_batch_size, lambda part: self._once(model, part, version, outputs)
        )

    async def _once(
        self, model: str, inputs: dict[str, np.ndarray], version: str, outputs: Sequence[str] | None
    ) -> InferResult:
        from tritonclient.grpc import service_pb2

        request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
        for name, array in inputs.items():
            tensor = request.inputs.add()
            tensor.name = name
            tensor.datatype = NUMPY_TO_TRITON[array.dtype]
            tensor.shape.extend(array.shape)
            request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
        for name in outputs or ():
            request.outputs.add().name = name
        response = await self._call(request)
        tensors = {
            tensor.name: _decode(tensor.datatype, tensor.shape, raw)
            for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
        }
        return InferResult(outputs=tensors, model_version=str(response.model_version))

    async def _call(self, request: Any) -> Any:
        import grpc

        try:
            return await self._method()(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise classify(str(exc.code()), exc.details() or str(exc)) from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise InferenceUnavailable(f"Triton at {self.url}: {exc!r}") from None

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._infer = self._channel, None, None
            await channel.close()


def _decode(datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    if datatype == BYTES:
        from tritonclient.utils import deserialize_bytes_tensor

        return np.asarray(deserialize_bytes_tensor(raw)).reshape(tuple(shape))
    return np.frombuffer(raw, dtype=numpy_dtype(datatype)).reshape(tuple(shape))
