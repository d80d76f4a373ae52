"""The scoring core both runtimes share: group validated requests, call Triton once per
group, split the outputs back per request, and build replies.

The worker (workers/) and the Functions activities (functions/) differ only in how
messages arrive and are settled; what happens to a request is decided here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from qscore.contracts import (
    ContractViolation,
    ErrorCode,
    ModelSpec,
    ReplyError,
    ReplyStatus,
    ScoreReply,
    ScoreRequest,
    Tensor,
    Timings,
    check_deadline,
)
from qscore.contracts.messages import SCHEMA_VERSION, assembled
from qscore.contracts.model_spec import TRITON_TO_NUMPY

# How a request's version was chosen, as the interaction log records it.
InteractionRoute = Literal["production", "canary", "shadow", "pinned"]


class InferenceBackend(Protocol):
    """What the core needs from an inference client (qscore.inference.TritonClient provides it)."""

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> InferResultLike: ...


@runtime_checkable
class ReadinessProbe(Protocol):
    """A backend that can say whether its server is ready (TritonClient can); the worker waits
    for it before receiving. Checked with isinstance: a backend without it counts as ready."""

    async def is_ready(self) -> bool: ...


@runtime_checkable
class SpecCache(Protocol):
    """A backend that caches model specs and can drop them (TritonClient does); the worker
    drops them when the server comes back, which may then serve other versions."""

    def forget_spec(self, model: str | None = None) -> None: ...


class InferResultLike(Protocol):
    @property
    def outputs(self) -> dict[str, np.ndarray]: ...

    @property
    def model_version(self) -> str: ...


@dataclass(frozen=True)
class ScoringItem:
    """One validated request, ready to be batched. Times are epoch seconds (time.time())."""

    request_id: str
    request: ScoreRequest
    arrays: dict[str, np.ndarray]
    received_at: float
    enqueued_at: float | None = None

    @property
    def rows(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def seconds_left(self, now: float) -> float | None:
        """Seconds until the request's deadline (negative once passed); None without a deadline."""
        deadline = self.request.deadline
        if deadline is None:
            return None
        moment = deadline if deadline.tzinfo else deadline.replace(tzinfo=UTC)
        return moment.timestamp() - now


@dataclass(frozen=True)
class ScoredItem:
    item: ScoringItem
    outputs: dict[str, np.ndarray]
    model_version: str
    batch_started_at: float
    inference_ms: float
    batch_rows: int = field(default=0)


def split_expired(
    items: Sequence[ScoringItem], *, now: float | None = None
) -> tuple[list[ScoringItem], list[tuple[ScoringItem, ContractViolation]]]:
    """(items still in time, expired items with their `expired` violation): the deadline is
    checked again right before the Triton call, not only when the request arrived."""
    current = time.time() if now is None else now
    live: list[ScoringItem] = []
    late: list[tuple[ScoringItem, ContractViolation]] = []
    for item in items:
        try:
            check_deadline(item.request, now=datetime.fromtimestamp(current, tz=UTC))
        except ContractViolation as violation:
            late.append((item, violation))
            continue
        live.append(item)
    return live, late


def time_left_s(items: Sequence[ScoringItem], *, now: float | None = None) -> float | None:
    """The tightest deadline of `items` as seconds from now (the Triton call's timeout); None
    when none has a deadline."""
    current = time.time() if now is None else now
    left = [s for s in (item.seconds_left(current) for item in items) if s is not None]
    return max(0.001, min(left)) if left else None


def group_key(model: str, version: str) -> tuple[str, str]:
    """Requests are batched together only for the same model and resolved version."""
    return (model, version)


class ModelOutputMismatch(ContractViolation):
    """Triton's result does not fit the batch sent: splitting it would misalign answers, so
    every request of the batch fails with `model_output_mismatch` (an error reply). Not retried
    request by request: the model, not one request, is at fault, and a retry of a model that
    miscounts rows would only multiply Triton calls (docs/contract.md)."""

    def __init__(self, description: str) -> None:
        super().__init__(ErrorCode.MODEL_OUTPUT_MISMATCH, description)


def check_outputs(spec: ModelSpec, version: str, outputs: dict[str, np.ndarray], rows: int) -> None:
    """Raise ModelOutputMismatch unless each declared output is there with `rows` rows, the
    declared per-row dims (-1: any) and datatype, so that splitting by rows is exact."""
    where = f"model {spec.name!r} version {version or '(default)'} answered a batch of {rows} rows with"
    declared = {tensor.name: tensor for tensor in spec.outputs}
    missing = sorted(set(declared) - set(outputs))
    if missing:
        raise ModelOutputMismatch(f"{where} no output {', '.join(missing)}")
    for name, array in outputs.items():
        tensor = declared.get(name)
        if array.ndim == 0 or array.shape[0] != rows:
            got = array.shape[0] if array.ndim else "a scalar"
            raise ModelOutputMismatch(f"{where} {got} rows in output {name!r}")
        if tensor is None:
            continue  # an output the config does not list is passed on as Triton sent it
        dims = list(array.shape[1:])
        declared_dims = tensor.dims if spec.max_batch_size > 0 else tensor.dims[1:]  # no batch dim
        if len(dims) != len(declared_dims) or any(
            d >= 0 and d != n for d, n in zip(declared_dims, dims, strict=True)
        ):
            raise ModelOutputMismatch(
                f"{where} output {name!r} of shape {list(array.shape)}; its config declares [{rows}, "
                f"{', '.join(str(d) for d in tensor.dims)}]"
            )
        expected = TRITON_TO_NUMPY.get(tensor.datatype)
        if (
            expected is not None
            and array.dtype != expected
            and not (expected == np.dtype(object) and array.dtype.kind in "OSU")
        ):
            raise ModelOutputMismatch(
                f"{where} output {name!r} of datatype {array.dtype}; its config declares {tensor.datatype}"
            )


async def score_group(
    backend: InferenceBackend,
    spec: ModelSpec,
    version: str,
    items: Sequence[ScoringItem],
    *,
    timeout_s: float | None = None,
) -> list[ScoredItem]:
    """Score items of one (model, version) in a single Triton call; outputs split back by rows.

    `timeout_s` (e.g. `time_left_s(items)`) bounds the call; the backend's own timeout applies too.
    Raises ModelOutputMismatch when the result does not fit the batch (`check_outputs`)."""
    if not items:
        return []
    names = [tensor.name for tensor in spec.inputs]
    batch = {name: np.concatenate([item.arrays[name] for item in items], axis=0) for name in names}
    started = time.time()
    if timeout_s is None:
        result = await backend.infer(spec.name, batch, version=version)
    else:
        result = await backend.infer(spec.name, batch, version=version, timeout_s=timeout_s)
    inference_ms = (time.time() - started) * 1000
    total_rows = int(sum(item.rows for item in items))
    check_outputs(spec, version, result.outputs, total_rows)
    bounds = np.cumsum([item.rows for item in items])[:-1]
    per_output = {name: np.split(array, bounds, axis=0) for name, array in result.outputs.items()}
    return [
        ScoredItem(
            item=item,
            outputs={name: parts[index] for name, parts in per_output.items()},
            model_version=result.model_version or version,
            batch_started_at=started,
            inference_ms=inference_ms,
            batch_rows=total_rows,
        )
        for index, item in enumerate(items)
    ]


def ok_reply(scored: ScoredItem, *, scored_by: str | None = None, binary: bool = False) -> ScoreReply:
    """The reply for a scored request; `total_ms` runs to now, so build it just before sending."""
    item = scored.item
    now = time.time()
    origin = item.enqueued_at if item.enqueued_at is not None else item.received_at
    outputs = {name: Tensor.from_numpy(array, binary=binary) for name, array in scored.outputs.items()}
    # assembled, not validated: every field is typed by construction here, once per reply.
    timings = assembled(
        Timings,
        {
            "queue_wait_ms": max(0.0, (item.received_at - origin) * 1000),
            "batch_wait_ms": max(0.0, (scored.batch_started_at - item.received_at) * 1000),
            "inference_ms": float(scored.inference_ms),
            "total_ms": max(0.0, (now - origin) * 1000),
        },
    )
    return assembled(
        ScoreReply,
        {
            "schema_version": SCHEMA_VERSION,
            "request_id": item.request_id,
            "status": ReplyStatus.OK,
            "model": item.request.model,
            "model_version": scored.model_version,
            "outputs": outputs,
            "timings": timings,
            "error": None,
            "scored_by": scored_by,
        },
    )


def error_reply(
    request_id: str,
    model: str,
    violation: ContractViolation,
    *,
    received_at: float | None = None,
    enqueued_at: float | None = None,
    scored_by: str | None = None,
) -> ScoreReply:
    """The reply that tells a producer why its request was not scored."""
    now = time.time()
    received = received_at if received_at is not None else now
    origin = enqueued_at if enqueued_at is not None else received
    return ScoreReply(
        request_id=request_id,
        status=ReplyStatus.ERROR,
        model=model,
        error=ReplyError(code=violation.code, message=violation.description),
        timings=Timings(
            queue_wait_ms=max(0.0, (received - origin) * 1000), total_ms=max(0.0, (now - origin) * 1000)
        ),
        scored_by=scored_by,
    )
