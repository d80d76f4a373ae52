"""The core's answers, with fakes (the real-part tests: test_bad_input_parity.py for the
rejections, test_output_mismatch_real.py for a model that miscounts rows):

- `rejection_disposition`: a reachable caller is answered (and kept too when asked); only the
  unreachable ones are dead-lettered;
- `reply_address_of` reads the properties only; `model_named_in` never raises;
- `score_group` checks Triton's result against its batch before splitting it, and the worker's
  pipeline answers every request of such a batch `model_output_mismatch` (nothing misaligned).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from qscore.contracts import BAD_INPUT, ContractViolation, ErrorCode, ReplyStatus, ScoreRequest, Tensor
from qscore.contracts.errors import DEAD_LETTERED
from qscore.producer import ReplyOutcome, ScoringError
from qscore.producer.outcomes import OutcomeKind
from qscore.scoring import (
    Disposition,
    ModelOutputMismatch,
    ReplyPolicy,
    RequestEnvelope,
    ScoringItem,
    error_reply,
    model_named_in,
    rejection_disposition,
    reply_address_of,
    score_group,
    unreadable_properties,
)
from qscore.transport import ReplyAddress
from tests.test_worker_pipeline_unit import SPEC, Result, _held, scorer_on_fakes
from workers.middleware import MiddlewareStack

POLICY = ReplyPolicy.create("scoring-replies")
ADDRESS = ReplyAddress("scoring-replies", "s")
UNREACHABLE = {
    ErrorCode.NO_MESSAGE_ID,
    ErrorCode.NO_REPLY_ADDRESS,
    ErrorCode.NO_REPLY_SESSION,
    ErrorCode.REPLY_TO_NOT_ALLOWED,
    ErrorCode.UNREADABLE_PROPERTIES,
    ErrorCode.REPLY_UNDELIVERABLE,
}


def test_every_code_is_answered_when_the_caller_can_be_reached_except_the_unreachable_ones() -> None:
    assert {code for code, row in BAD_INPUT.items() if row.outcome == DEAD_LETTERED} == UNREACHABLE
    assert set(BAD_INPUT) == set(ErrorCode)  # every code has its row (and so its outcome)
    keep = ReplyPolicy.create("scoring-replies", keep_answered_rejections=True)
    for code in ErrorCode:
        violation = ContractViolation(code, "why")
        if code in UNREACHABLE:
            assert rejection_disposition(violation, ADDRESS, POLICY) == Disposition.DEAD_LETTER
            continue
        assert rejection_disposition(violation, ADDRESS, POLICY) == Disposition.REPLY
        assert rejection_disposition(violation, ADDRESS, keep) == Disposition.REPLY_AND_KEEP
        assert rejection_disposition(violation, None, keep) == Disposition.DEAD_LETTER  # no address


def test_an_item_of_a_request_batch_message_is_always_answered_alone() -> None:
    """Dead-lettering or keeping an item would settle the message its batch-mates travel in."""
    keep = ReplyPolicy.create("scoring-replies", keep_answered_rejections=True)
    for code in ErrorCode:
        violation = ContractViolation(code, "why")
        for policy in (POLICY, keep):
            assert rejection_disposition(violation, ADDRESS, policy, batch_item=True) == Disposition.REPLY
        assert rejection_disposition(violation, None, POLICY, batch_item=True) == Disposition.DEAD_LETTER


def test_the_reply_address_comes_from_the_properties_whatever_the_content_type() -> None:
    envelope = RequestEnvelope("r", None, "s", content_type="text/plain")
    assert reply_address_of(envelope, POLICY) == ADDRESS  # a foreign content type is answered
    with pytest.raises(ContractViolation) as no_id:
        reply_address_of(RequestEnvelope(None, "scoring-replies", "s"), POLICY)
    assert no_id.value.code == ErrorCode.NO_MESSAGE_ID


@pytest.mark.parametrize(
    ("body", "model"),
    [(b'{"model": "digits"}', "digits"), (b"\x00 not json", ""), (b"[1, 2]", ""), (b'{"model": 3}', "")],
)
def test_the_model_of_a_bad_request_is_read_best_effort(body: bytes, model: str) -> None:
    assert model_named_in(body) == model


def test_an_error_reply_raises_a_typed_error_with_its_code_and_description() -> None:
    reply = error_reply("r", "digits", ContractViolation(ErrorCode.BAD_SHAPE, "send [1, 64]"))
    outcome = ReplyOutcome("r", OutcomeKind.REPLIED, 0.0, 1.0, reply)
    with pytest.raises(ScoringError) as raised:
        outcome.raise_for_error()
    assert raised.value.code == ErrorCode.BAD_SHAPE and raised.value.description == "send [1, 64]"


@dataclass
class ShortBackend:
    """A model that returns one row too few (or what `outputs` makes of the batch)."""

    calls: list[int] = field(default_factory=list)
    short_by: int = 1

    async def infer(
        self, model: str, inputs: Any, *, version: str = "", outputs: Any = None, timeout_s: Any = None
    ) -> Result:
        rows = len(inputs["pixels"])
        self.calls.append(rows)
        labels = np.arange(rows - self.short_by, dtype=np.int64).reshape(-1, 1)
        return Result({"label": labels})


def _items(rows: list[int]) -> list[ScoringItem]:
    items = []
    for index, count in enumerate(rows):
        pixels = np.zeros((count, 64), np.float32)
        request = ScoreRequest(model="digits", inputs={"pixels": Tensor.from_numpy(pixels)})
        items.append(ScoringItem(f"r{index}", request, {"pixels": pixels}, received_at=0.0))
    return items


def _far() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=5)


async def test_a_result_one_row_short_is_refused_before_it_is_split() -> None:
    with pytest.raises(ModelOutputMismatch) as raised:
        await score_group(ShortBackend(), SPEC, "2", _items([2, 1, 3]))
    assert raised.value.code == ErrorCode.MODEL_OUTPUT_MISMATCH
    assert (
        "batch of 6 rows" in raised.value.description
        and "5 rows in output 'label'" in raised.value.description
    )
    scored = await score_group(ShortBackend(short_by=0), SPEC, "2", _items([2, 1, 3]))
    assert [each.outputs["label"].ravel().tolist() for each in scored] == [[0, 1], [2], [3, 4, 5]]


@pytest.mark.parametrize(
    ("outputs", "words"),
    [
        ({}, "no output label"),
        ({"label": np.zeros((3, 2), np.int64)}, "shape [3, 2]"),
        ({"label": np.zeros((3, 1), np.float32)}, "datatype float32"),
        ({"label": np.zeros((), np.int64)}, "a scalar"),
    ],
)
async def test_shapes_and_datatypes_are_checked_as_the_config_declares(
    outputs: dict[str, Any], words: str
) -> None:
    @dataclass
    class Fixed:
        async def infer(self, model: str, inputs: Any, **kwargs: Any) -> Result:
            return Result(outputs)

    with pytest.raises(ModelOutputMismatch) as raised:
        await score_group(Fixed(), SPEC, "2", _items([1, 2]))
    assert words in raised.value.description


async def test_the_worker_answers_every_request_of_a_mismatched_batch_and_does_not_retry() -> None:
    backend = ShortBackend()
    scorer, messages, replies = scorer_on_fakes(backend, MiddlewareStack())
    held = [_held(f"m{i}", _far()) for i in range(3)]
    await scorer.handle(("digits", "2"), held)
    assert backend.calls == [3]  # one call: not retried request by request
    assert sorted(reply.request_id for reply in replies.sent) == ["m0", "m1", "m2"]
    for reply in replies.sent:
        assert reply.status == ReplyStatus.ERROR and reply.outputs is None and reply.error is not None
        assert reply.error.code == ErrorCode.MODEL_OUTPUT_MISMATCH
    assert sorted(messages.completed) == ["m0", "m1", "m2"] and not messages.abandoned


async def test_the_functions_app_answers_every_request_of_a_mismatched_group_and_does_not_retry() -> None:
    from types import SimpleNamespace

    from functions.documents import PreparedMember
    from functions.inference import GroupReplies, _score
    from functions.payloads import Envelope, Group
    from functions.settings import FunctionsSettings

    backend = ShortBackend()
    held = [_held(f"f{i}", _far()) for i in range(3)]
    members = [
        PreparedMember(
            envelope=Envelope(
                message_id=each.message, reply_to="scoring-replies", reply_to_session_id="s", received_at=0
            ),
            request=each.prepared,
        )
        for each in held
    ]
    group = Group(model="digits", version="2", request_ids=[each.message for each in held])
    result = GroupReplies(group=group)
    runtime = SimpleNamespace(
        triton=backend, settings=FunctionsSettings(), interactions=None, stack=MiddlewareStack
    )
    await _score(result, members, runtime)  # type: ignore[arg-type]
    assert backend.calls == [3] and not result.dead_letters
    assert [
        (envelope.message_id, reply.error.code if reply.error else None) for envelope, reply in result.replies
    ] == [(f"f{i}", ErrorCode.MODEL_OUTPUT_MISMATCH) for i in range(3)]


class UnreadableMessage:
    """A received message whose properties the SDK cannot read."""

    message_id = "u1"
    sequence_number = 7
    application_properties: dict[str, str] = {}
    enqueued_time_utc = None

    @property
    def reply_to(self) -> str:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    def get_body(self) -> bytes:
        return b"{}"


def test_unreadable_properties_are_dead_lettered_with_the_same_words_in_both_runtimes() -> None:
    from functions.trigger import inbound_message
    from workers.intake import request_envelope

    with pytest.raises(ContractViolation) as worker:
        request_envelope(UnreadableMessage())
    assert worker.value.code == ErrorCode.UNREADABLE_PROPERTIES
    assert rejection_disposition(worker.value, ADDRESS, POLICY) == Disposition.DEAD_LETTER
    kept = inbound_message(UnreadableMessage(), received_at=0.0)  # type: ignore[arg-type]
    assert kept.unreadable is not None and not kept.has_message_id and kept.body_bytes() == b"{}"
    assert unreadable_properties(kept.unreadable).description == worker.value.description
