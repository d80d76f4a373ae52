"""Micro-batching: gather items per key (model, version) and hand them on as one batch when the
batch is full or its oldest item has waited long enough, with a bounded number of batches in flight."""

from qscore.batching.batcher import MicroBatcher
from qscore.batching.in_flight import InFlightBatches
from qscore.batching.pending import PendingBatch
from qscore.batching.policy import BatchPolicy, effective_batch_size

__all__ = ["BatchPolicy", "InFlightBatches", "MicroBatcher", "PendingBatch", "effective_batch_size"]
