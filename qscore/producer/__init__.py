"""Producers' side of qscore: build requests from arrays, send them in batches, collect replies."""

from qscore.producer.collector import ReplyCollector
from qscore.producer.outcomes import OutcomeKind, ProducerStats, ReplyOutcome, ReplyTimedOut, ScoringError
from qscore.producer.producer import ProducerClosed, ScoringProducer
from qscore.producer.requests import OutgoingRequest, request_message, split_rows
from qscore.producer.settings import ProducerSettings

__all__ = [
    "OutcomeKind",
    "OutgoingRequest",
    "ProducerClosed",
    "ProducerSettings",
    "ProducerStats",
    "ReplyCollector",
    "ReplyOutcome",
    "ReplyTimedOut",
    "ScoringError",
    "ScoringProducer",
    "request_message",
    "split_rows",
]
