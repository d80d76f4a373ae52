"""Async Triton inference client (gRPC) and Triton metrics helpers."""

from qscore.inference.client import (
    InferenceError,
    InferenceRejected,
    InferenceUnavailable,
    InferResult,
    ModelNotFound,
    TritonClient,
)

__all__ = [
    "InferResult",
    "InferenceError",
    "InferenceRejected",
    "InferenceUnavailable",
    "ModelNotFound",
    "TritonClient",
]
