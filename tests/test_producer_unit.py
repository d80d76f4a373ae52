"""Producer bookkeeping and request building, without a broker (the bus tests cover the wire)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from qscore.contracts import REQUEST_CONTENT_TYPE, ReplyStatus, ScoreReply, ScoreRequest
from qscore.producer import (
    OutcomeKind,
    OutgoingRequest,
    ProducerSettings,
    ReplyCollector,
    request_message,
    split_rows,
)


def _reply(request_id: str) -> ScoreReply:
    return ScoreReply(request_id=request_id, status=ReplyStatus.OK, model="digits", model_version="2")


def test_build_request_round_trips_json_and_binary() -> None:
    pixels = np.arange(128, dtype=np.float32).reshape(2, 64)
    for binary in (False, True):
        outgoing = OutgoingRequest.build(
            "digits", {"pixels": pixels}, version="2", binary=binary, body_format="json"
        )
        decoded = ScoreRequest.model_validate_json(outgoing.body())
        assert decoded.version == "2"
        np.testing.assert_array_equal(decoded.inputs["pixels"].to_numpy(), pixels)
        assert (decoded.inputs["pixels"].b64 is not None) is binary


def test_request_message_carries_the_reply_address() -> None:
    outgoing = OutgoingRequest.build("digits", {"pixels": np.zeros((1, 64), np.float32)}, body_format="json")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    message = request_message(
        outgoing, reply_to="scoring-replies", reply_to_session_id="s-1", traceparent=traceparent
    )
    assert message.message_id == outgoing.request_id
    assert message.reply_to == "scoring-replies"
    assert message.reply_to_session_id == "s-1"
    assert message.content_type == REQUEST_CONTENT_TYPE
    assert message.application_properties == {"traceparent": traceparent}


def test_split_rows_makes_one_request_per_chunk() -> None:
    pixels = np.zeros((5, 64), np.float32)
    requests = list(split_rows("digits", "pixels", pixels, rows_per_request=2))
    assert [r.request.inputs["pixels"].shape[0] for r in requests] == [2, 2, 1]
    assert len({r.request_id for r in requests}) == 3
    with pytest.raises(ValueError):
        list(split_rows("digits", "pixels", pixels, rows_per_request=0))


def test_settings_from_env_and_validation() -> None:
    settings = ProducerSettings.from_env(
        {"QSCORE_SERVICEBUS_CONNECTION": "Endpoint=sb://x/", "QSCORE_REPLY_QUEUE": "r"}, reply_timeout_s=5
    )
    assert settings.connection == "Endpoint=sb://x/"
    assert settings.reply_queue == "r"
    assert settings.request_queue == "scoring-requests"
    assert settings.reply_timeout_s == 5
    assert settings.session_id.startswith("producer-")
    assert ProducerSettings().session_id != ProducerSettings().session_id
    with pytest.raises(ValueError):
        ProducerSettings(reply_timeout_s=0)


async def test_collector_matches_dedupes_and_counts_strays() -> None:
    collector = ReplyCollector()
    collector.track("a", sent_at=100.0, timeout_s=10)
    collector.track("b", sent_at=100.0, timeout_s=10)
    with pytest.raises(ValueError):
        collector.track("a", sent_at=100.0, timeout_s=10)
    collector.on_reply("a", _reply("a"), received_at=100.5)
    collector.on_reply("a", _reply("a"), received_at=100.6)  # redelivered: duplicate
    collector.on_reply(None, _reply("b"), received_at=100.7)  # falls back to the body's request id
    collector.on_reply("zzz", _reply("zzz"), received_at=100.8)
    outcomes = [await collector.next_streamed(), await collector.next_streamed()]
    assert await collector.next_streamed() is None
    assert [o.request_id for o in outcomes if o] == ["a", "b"]
    first = outcomes[0]
    assert first is not None and first.ok and first.latency_ms == pytest.approx(500)
    stats = collector.stats
    assert (stats.sent, stats.replied, stats.duplicates, stats.stray, stats.pending) == (2, 2, 1, 1, 0)


async def test_collector_times_out_and_counts_late_replies() -> None:
    collector = ReplyCollector()
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future = loop.create_future()
    collector.track("slow", sent_at=0.0, timeout_s=1.0, waiter=waiter)
    collector.track("fast", sent_at=0.0, timeout_s=5.0)
    assert collector.next_expiry() == 1.0
    assert collector.expire(0.5) == 0
    assert collector.expire(1.0) == 1
    outcome = waiter.result()
    assert outcome.kind is OutcomeKind.TIMED_OUT and not outcome.ok
    collector.on_reply("slow", _reply("slow"), received_at=2.0)
    collector.on_reply("slow", _reply("slow"), received_at=2.1)
    assert (collector.stats.late, collector.stats.duplicates) == (1, 1)
    assert collector.next_expiry() == 5.0
    collector.untrack("fast")
    assert collector.pending_count == 0 and collector.stream_idle


async def test_collector_times_out_a_reply_past_its_deadline_before_the_tick() -> None:
    collector = ReplyCollector()
    waiter: asyncio.Future = asyncio.get_running_loop().create_future()
    collector.track("short", sent_at=0.0, timeout_s=0.001, waiter=waiter)
    collector.on_reply("short", _reply("short"), received_at=0.013)  # no expire() call in between
    outcome = waiter.result()
    assert outcome.kind is OutcomeKind.TIMED_OUT and outcome.reply is None
    assert (collector.stats.timed_out, collector.stats.late, collector.stats.replied) == (1, 1, 0)


async def test_collector_stream_waits_for_pending_outcome() -> None:
    collector = ReplyCollector()
    collector.track("x", sent_at=0.0, timeout_s=60)
    waiting = asyncio.create_task(collector.next_streamed())
    await asyncio.sleep(0)
    assert not waiting.done()
    collector.on_reply("x", _reply("x"), received_at=1.0)
    outcome = await asyncio.wait_for(waiting, 1)
    assert outcome is not None and outcome.request_id == "x"


async def test_collector_stream_can_wait_through_idle_gaps() -> None:
    collector = ReplyCollector()
    waiting = asyncio.create_task(collector.next_streamed(wait_when_idle=True))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing sent yet, but the consumer keeps waiting
    collector.track("later", sent_at=0.0, timeout_s=60)
    collector.on_reply("later", _reply("later"), received_at=1.0)
    outcome = await asyncio.wait_for(waiting, 1)
    assert outcome is not None and outcome.request_id == "later"
    closing = asyncio.create_task(collector.next_streamed(wait_when_idle=True))
    await asyncio.sleep(0)
    collector.close()
    assert await asyncio.wait_for(closing, 1) is None


class _BatchSender:
    """A sender that hands out real ServiceBusMessageBatch objects and keeps what it is sent."""

    def __init__(self, max_size_in_bytes: int) -> None:
        self.max_size_in_bytes = max_size_in_bytes
        self.sent: list[object] = []

    async def create_message_batch(self) -> object:
        from azure.servicebus import ServiceBusMessageBatch
        from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

        return ServiceBusMessageBatch(
            max_size_in_bytes=self.max_size_in_bytes, amqp_transport=PyamqpTransport
        )

    async def send_messages(self, batch: object) -> None:
        self.sent.append(batch)


async def _fill_batches(
    requests: list[OutgoingRequest], max_size_in_bytes: int, *, encoded: bool, monkeypatch: pytest.MonkeyPatch
) -> list[object]:
    """Send the requests (the fourth by claim-check reference) through the producer's batch
    path, encoded once or through add_message; the batches it sent."""
    from qscore.producer import ScoringProducer
    from qscore.producer import producer as producer_module

    if not encoded:
        monkeypatch.setattr(producer_module, "encoded_adds", lambda batch: False)
    settings = ProducerSettings(connection="Endpoint=sb://unused/", session_id="s-1", reply_queue="replies")
    producer = ScoringProducer(settings=settings, claim_check=None)
    producer._references[requests[3].request_id] = b'{"ref":"blob"}'
    sender = _BatchSender(max_size_in_bytes)
    start = 0
    while start < len(requests):
        start = await producer._send_one_batch(sender, requests, start, 60.0, None)
    assert not producer._references  # each reference used once, none left behind
    producer._collector.close()
    return sender.sent


@pytest.mark.parametrize("max_size_in_bytes", [1 << 20, 900])
async def test_requests_encoded_once_are_the_sdks_batches(
    max_size_in_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer adds each request to its batch encoded once (sdk_batch_encoding.add_encoded,
    no ServiceBusMessage): the same bytes, sizes, envelope and split into batches as the SDK's
    add_message of request_message, also when batches fill (900 bytes: one or two requests a batch)."""
    from qscore.transport import sdk_batch_encoding

    requests = [
        OutgoingRequest.build("digits", {"pixels": np.full((1, 64), i, np.float32)}, body_format="binary")
        for i in range(5)
    ]
    ours = await _fill_batches(requests, max_size_in_bytes, encoded=True, monkeypatch=monkeypatch)
    theirs = await _fill_batches(requests, max_size_in_bytes, encoded=False, monkeypatch=monkeypatch)
    assert sdk_batch_encoding.encoded_adds(ours[0])
    assert len(ours) == len(theirs) and (len(ours) == 1) is (max_size_in_bytes > 900)
    for mine, sdk in zip(ours, theirs, strict=True):
        assert mine._message[5] == sdk._message[5]  # type: ignore[attr-defined]  # data sections
        assert (mine.size_in_bytes, len(mine)) == (sdk.size_in_bytes, len(sdk))  # type: ignore[attr-defined]


async def test_requests_take_the_sdks_add_message_when_a_hook_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the encode-once hooks the producer adds through the SDK's public add_message, and
    the fallback is counted (qscore.transport.sdk_hooks)."""
    from qscore.transport import sdk_batch_encoding, sdk_hooks

    requests = [OutgoingRequest.build("digits", {"pixels": np.zeros((1, 64), np.float32)}) for _ in range(5)]
    before = sdk_hooks.fallback_counts().get("batch.message", 0)
    monkeypatch.setattr(sdk_batch_encoding, "_encoding", lambda: None)
    (batch,) = await _fill_batches(requests, 1 << 20, encoded=True, monkeypatch=monkeypatch)
    assert len(batch._messages) == len(requests)  # type: ignore[attr-defined]  # added by add_message
    assert sdk_hooks.fallback_counts()["batch.message"] == before + 1
