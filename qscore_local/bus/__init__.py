"""The local Service Bus endpoint (`qscore bus serve`): an AMQP 1.0 broker on python-qpid-proton
that the unmodified azure-servicebus SDK talks to. See docs/local-bus.md."""

from qscore_local.bus.config import QueueConfig, load_queue_config
from qscore_local.bus.launcher import BusEndpoint, LocalBus
from qscore_local.bus.stats import QueueCounts, queue_counts

__all__ = ["BusEndpoint", "LocalBus", "QueueConfig", "QueueCounts", "load_queue_config", "queue_counts"]
