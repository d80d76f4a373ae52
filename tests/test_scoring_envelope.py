"""The shared judge of a request's envelope (both runtimes call it), the deadline re-check, and
how a refused reply send is classified."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from qscore.contracts import REQUEST_CONTENT_TYPE, ContractViolation, ErrorCode, ScoreRequest, Tensor
from qscore.scoring import (
    ReplyPolicy,
    RequestEnvelope,
    ScoringItem,
    check_envelope,
    split_expired,
    time_left_s,
    undeliverable,
)
from qscore.transport import ReplyAddress, classify_send_error

POLICY = ReplyPolicy.create("scoring-replies")


@pytest.mark.parametrize(
    ("envelope", "code"),
    [
        (RequestEnvelope(None, "scoring-replies", "s"), ErrorCode.NO_MESSAGE_ID),
        (RequestEnvelope("", "scoring-replies", "s"), ErrorCode.NO_MESSAGE_ID),
        (RequestEnvelope("r", "scoring-replies", "s", "text/plain"), ErrorCode.UNSUPPORTED_CONTENT_TYPE),
        (RequestEnvelope("r", None, None), ErrorCode.NO_REPLY_ADDRESS),
        (RequestEnvelope("r", "scoring-replies", None), ErrorCode.NO_REPLY_SESSION),
        (RequestEnvelope("r", "elsewhere", "s"), ErrorCode.REPLY_TO_NOT_ALLOWED),
    ],
)
def test_bad_envelopes_get_their_code(envelope: RequestEnvelope, code: ErrorCode) -> None:
    with pytest.raises(ContractViolation) as caught:
        check_envelope(envelope, POLICY)
    assert caught.value.code == code and caught.value.description


def test_good_envelopes_give_the_reply_address() -> None:
    content_type = REQUEST_CONTENT_TYPE.upper() + "; charset=utf-8"
    assert check_envelope(RequestEnvelope("r", "scoring-replies", "s", content_type), POLICY) == ReplyAddress(
        "scoring-replies", "s"
    )
    # A session without reply_to: the configured reply queue.
    assert check_envelope(RequestEnvelope("r", None, "s"), POLICY) == ReplyAddress("scoring-replies", "s")
    plain = ReplyPolicy.create("scoring-replies", ["plain", " other "], sessions_required=False)
    assert check_envelope(RequestEnvelope("r", "other", None), plain) == ReplyAddress("other", None)
    with pytest.raises(ContractViolation):  # naming an allow-list replaces the default
        check_envelope(RequestEnvelope("r", "scoring-replies", None), plain)


def _item(deadline: datetime | None) -> ScoringItem:
    tensor = Tensor.from_numpy(np.zeros((1, 64), np.float32))
    request = ScoreRequest(model="digits", inputs={"pixels": tensor}, deadline=deadline)
    return ScoringItem("r", request, {"pixels": np.zeros((1, 64), np.float32)}, received_at=time.time())


def test_the_deadline_is_checked_again_and_bounds_the_call() -> None:
    now = datetime.now(UTC)
    late, soon, later, none = (
        _item(now - timedelta(seconds=1)),
        _item(now + timedelta(seconds=2)),
        _item(now + timedelta(seconds=60)),
        _item(None),
    )
    live, expired = split_expired([late, soon, later, none], now=now.timestamp())
    assert live == [soon, later, none]
    assert [(item, violation.code) for item, violation in expired] == [(late, ErrorCode.EXPIRED)]
    assert time_left_s(live, now=now.timestamp()) == pytest.approx(2.0)
    assert time_left_s([none], now=now.timestamp()) is None


def test_refused_sends_are_classified() -> None:
    from azure.servicebus.exceptions import (
        MessageSizeExceededError,
        MessagingEntityNotFoundError,
        ServiceBusConnectionError,
        ServiceBusError,
    )

    missing = classify_send_error(MessagingEntityNotFoundError(message="no queue 'x'"))
    assert missing.permanent and missing.queue_wide and "no queue" in missing.detail
    too_big = classify_send_error(MessageSizeExceededError(message="too big"))
    assert too_big.permanent and not too_big.queue_wide
    session = classify_send_error(ServiceBusError("requires sessions", condition="amqp:not-allowed"))
    assert session.permanent and not session.queue_wide
    assert not classify_send_error(ServiceBusConnectionError(message="lost")).permanent
    assert not classify_send_error(TimeoutError()).permanent
    violation = undeliverable(ReplyAddress("q", "s"), missing.detail)
    assert violation.code == ErrorCode.REPLY_UNDELIVERABLE and "no queue" in violation.description
