"""qscore: near-real-time, queue-driven model scoring (Service Bus -> Triton -> replies)."""

__version__ = "0.1.0"
