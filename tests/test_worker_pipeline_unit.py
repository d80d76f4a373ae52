"""BatchScorer's deadline paths with fakes (the real-part tests are in test_worker_isolation.py):
a Triton call cut short by a request's deadline answers `expired` to that request and scores the
rest again, without treating Triton as down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from qscore.contracts import ErrorCode, ModelSpec, ReplyStatus, ScoreReply, ScoreRequest, Tensor, TensorSpec
from qscore.inference.errors import InferenceUnavailable
from qscore.scoring import PreparedRequest, ScoringItem
from qscore.transport import ReplyAddress, SendFailure
from workers.held import HeldRequest
from workers.locks import HeldMessages
from workers.middleware import MiddlewareStack
from workers.pipeline import BatchScorer, PipelineOptions
from workers.settle import Settler

SPEC = ModelSpec(
    name="digits",
    versions=["2"],
    max_batch_size=8,
    inputs=[TensorSpec(name="pixels", datatype="FP32", dims=[64])],
    outputs=[TensorSpec(name="label", datatype="INT64", dims=[1])],
)


@dataclass
class Result:
    outputs: dict[str, np.ndarray]
    model_version: str = "2"


@dataclass
class DeadlineBackend:
    """Like Triton with a client timeout: a call given less time than it takes times out."""

    takes_s: float
    timeouts: list[float | None] = field(default_factory=list)

    async def infer(
        self, model: str, inputs: Any, *, version: str = "", outputs: Any = None, timeout_s: Any = None
    ) -> Result:
        self.timeouts.append(timeout_s)
        if timeout_s is not None and timeout_s < self.takes_s:
            await asyncio.sleep(timeout_s)
            raise InferenceUnavailable("DEADLINE_EXCEEDED")
        rows = len(inputs["pixels"])
        return Result({"label": np.zeros((rows, 1), np.int64)})


@dataclass
class FakeMessages:
    completed: list[Any] = field(default_factory=list)
    abandoned: list[Any] = field(default_factory=list)
    receiver: Any = None

    async def complete(self, messages: Any) -> list[Any]:
        self.completed += messages
        return []

    async def abandon(self, messages: Any) -> list[Any]:
        self.abandoned += messages
        return []


@dataclass
class FakeReplies:
    sent: list[ScoreReply] = field(default_factory=list)

    async def deliver(self, replies: Any) -> list[SendFailure | None]:
        self.sent += [reply for _, reply in replies]
        return [None] * len(replies)


def _held(name: str, deadline: datetime) -> HeldRequest:
    pixels = np.zeros((1, 64), np.float32)
    request = ScoreRequest(model="digits", inputs={"pixels": Tensor.from_numpy(pixels)}, deadline=deadline)
    item = ScoringItem(name, request, {"pixels": pixels}, received_at=time.time())
    return HeldRequest(
        message=name, prepared=PreparedRequest(item, SPEC, "2"), address=ReplyAddress("q", "s")
    )


def scorer_on_fakes(
    backend: Any, middleware: MiddlewareStack, on_unavailable: Callable[[str], None] = lambda reason: None
) -> tuple[BatchScorer, FakeMessages, FakeReplies]:
    """A BatchScorer whose broker and reply sender are the fakes above (the unit tests' pipeline)."""
    messages, replies = FakeMessages(), FakeReplies()
    scorer = BatchScorer(
        backend=backend,
        settler=Settler(messages, HeldMessages(limit=10), middleware),  # type: ignore[arg-type]
        replies=replies,  # type: ignore[arg-type]
        middleware=middleware,
        options=PipelineOptions(worker_id="w"),
        on_unavailable=on_unavailable,
        on_success=lambda: None,
    )
    return scorer, messages, replies


async def test_a_call_cut_short_by_a_deadline_expires_that_request_and_scores_the_rest() -> None:
    outages: list[str] = []
    backend = DeadlineBackend(takes_s=0.5)
    scorer, messages, replies = scorer_on_fakes(backend, MiddlewareStack(), outages.append)
    now = datetime.now(UTC)
    held = [_held("tight", now + timedelta(seconds=0.2)), _held("loose", now + timedelta(seconds=30))]
    await scorer.handle(("digits", "2"), held)
    by_id = {reply.request_id: reply for reply in replies.sent}
    assert by_id["tight"].status == ReplyStatus.ERROR and by_id["tight"].error is not None
    assert by_id["tight"].error.code == ErrorCode.EXPIRED
    assert by_id["loose"].status == ReplyStatus.OK
    assert len(replies.sent) == 2 and sorted(messages.completed) == ["loose", "tight"]
    assert not messages.abandoned and not outages  # a deadline is not an outage
    first, second = backend.timeouts
    assert first is not None and first < 0.25  # the tight deadline bounded the first call
    assert second is not None and second > 25  # then the loose one alone
