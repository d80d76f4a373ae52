"""The direct engine's Triton requests: `ModelInfer` messages built straight from the arrays.

At the digits model's 256 rows a request, the client's Python per request is a large part of
the engine's CPU. `TritonClient.infer` (the worker's client) wraps every input in an
`InferInput`, copies it with `tobytes`, builds the message from those objects, and reads every
output back through `InferResult`. Here the message is built directly (binary
`raw_input_contents`: one copy of the rows into the message, as tritonclient makes too) and the
outputs are read as views of the response's bytes, on one gRPC channel of the engine's own.

Each request is a unary `ModelInfer` call. `stream=True` sends them instead as messages of
bidirectional `ModelStreamInfer` streams: Triton spent about 13% less CPU a row on them (a unary
call is a new HTTP/2 stream, with its headers and call state, on both sides), but Triton 2.51
(pytriton 0.7.0's) crashed with a segfault in its stream front end
(`ModelStreamInferHandler::StreamInferResponseComplete`) twice in 24 streamed
1,000,000-row runs, so it is off: see docs/batch.md, "Direct engine pace". On a stream,
responses are matched to their requests by the request's `id`, which Triton echoes; a request
the stream answers with an error is sent again as a unary call, so that a failure is the same
`InferenceError` subclass, through the same `classify`, as `TritonClient.infer` gives (the
stream carries the message, not the gRPC status); a broken stream fails the requests in flight
on it (`InferenceUnavailable` for a server gone) and the next request opens another.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from qscore.contracts.model_spec import BYTES, NUMPY_TO_TRITON, numpy_dtype
from qscore.inference.client import InferResult, infer_in_parts
from qscore.inference.errors import InferenceUnavailable, classify

MAX_MESSAGE_BYTES = 2**31 - 1  # as tritonclient's channel: the model's limits apply, not gRPC's
# Streams per channel, requests spread over them in turn. An HTTP/2 stream moves at most its
# flow-control window (64 KiB until gRPC's estimator grows it) per round trip, and a 256-row
# digits request is 64 KiB: on one stream the requests wait on each other's window updates
# (measured: 190,000-340,000 rows/s at 4-8 in flight, where unary calls, each on a stream of
# its own, made 340,000-440,000). Several streams give the window a request needs each.
STREAMS = 16
DEADLINE_EXCEEDED = "StatusCode.DEADLINE_EXCEEDED"


def has_raw_form(inputs: dict[str, np.ndarray]) -> bool:
    """Numeric inputs only: BYTES (object) inputs go through `TritonClient.infer`, which
    serializes them."""
    return all(array.dtype.kind in "biuf" and array.dtype in NUMPY_TO_TRITON for array in inputs.values())


class RawRequests:
    """`ModelInfer` requests on one channel, created on the running loop at the first call: unary
    calls, or with `stream=True` messages of `streams` streams in turn."""

    def __init__(self, url: str, *, timeout_s: float, stream: bool = False, streams: int = STREAMS) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.use_stream = stream
        self._channel: Any = None
        self._stub: Any = None
        self._streams: list[_InferStream | None] = [None] * max(1, streams)
        self._turn = itertools.cycle(range(len(self._streams)))

    def _service(self) -> Any:
        if self._stub is None:
            import grpc
            from tritonclient.grpc import service_pb2_grpc

            options = [
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ]
            self._channel = grpc.aio.insecure_channel(self.url, options=options)
            self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        return self._stub

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
        response = await (self._streamed(request) if self.use_stream else self._unary(request))
        tensors = {
            tensor.name: _decode(tensor.datatype, tensor.shape, raw)
            for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
        }
        return InferResult(outputs=tensors, model_version=str(response.model_version))

    async def _streamed(self, request: Any) -> Any:
        turn = next(self._turn)
        stream = self._streams[turn]
        if stream is None or stream.broken:
            stream = self._streams[turn] = _InferStream(self._service().ModelStreamInfer(), self.url)
        reply = await stream.infer(request, self.timeout_s)
        if reply.error_message:
            # The stream says what failed, not its gRPC status: the same request as a unary
            # call raises the error `TritonClient.infer` would (or answers, if it has cleared).
            request.ClearField("id")
            return await self._unary(request)
        return reply.infer_response

    async def _unary(self, request: Any) -> Any:
        import grpc

        try:
            return await self._service().ModelInfer(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise classify(str(exc.code()), exc.details() or str(exc)) from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise InferenceUnavailable(f"Triton at {self.url}: {exc!r}") from None

    async def close(self) -> None:
        streams, self._streams = self._streams, [None] * len(self._streams)
        await asyncio.gather(*(stream.close() for stream in streams if stream is not None))
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()


class _InferStream:
    """One `ModelStreamInfer` call: requests written one at a time (gRPC allows one write in
    progress), responses read by one task and handed to the request with the same `id`."""

    def __init__(self, call: Any, url: str) -> None:
        self.call = call
        self.url = url
        self.broken = False
        self._ids = itertools.count()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._write_lock = asyncio.Lock()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def infer(self, request: Any, timeout_s: float) -> Any:
        """The stream's response to `request` (`error_message` set when Triton refused it)."""
        import grpc

        request_id = request.id = str(next(self._ids))
        reply = self._pending[request_id] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    async with self._write_lock:
                        await self.call.write(request)
                except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
                    self.broken = True
                    if isinstance(exc, grpc.aio.AioRpcError):
                        raise classify(str(exc.code()), exc.details() or str(exc)) from None
                    raise InferenceUnavailable(f"Triton at {self.url}: stream closed ({exc!r})") from None
                return await reply
        except TimeoutError:
            message = f"no reply from Triton at {self.url} in {timeout_s} s"
            raise classify(DEADLINE_EXCEEDED, message) from None
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        import grpc

        failure: Exception
        try:
            while True:
                response = await self.call.read()
                if response is grpc.aio.EOF:
                    failure = InferenceUnavailable(f"Triton at {self.url} closed the stream")
                    break
                reply = self._pending.pop(response.infer_response.id, None)
                if reply is not None and not reply.done():
                    reply.set_result(response)
        except grpc.aio.AioRpcError as exc:
            failure = classify(str(exc.code()), exc.details() or str(exc))
        except asyncio.CancelledError:
            failure = InferenceUnavailable(f"the stream to Triton at {self.url} was closed")
            self._fail(failure)
            raise
        self._fail(failure)

    def _fail(self, failure: Exception) -> None:
        self.broken = True
        pending, self._pending = self._pending, {}
        for reply in pending.values():
            if not reply.done():
                reply.set_exception(failure)

    async def close(self) -> None:
        self.broken = True
        self.call.cancel()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


def _decode(datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    if datatype == BYTES:
        from tritonclient.utils import deserialize_bytes_tensor

        return np.asarray(deserialize_bytes_tensor(raw)).reshape(tuple(shape))
    return np.frombuffer(raw, dtype=numpy_dtype(datatype)).reshape(tuple(shape))
