"""What can go wrong talking to Triton, split by what the caller should do about it.

`InferenceUnavailable` is transient (retry later: the message goes back on the queue);
`ModelNotFound` and `InferenceRejected` are permanent for that request (dead-letter it).
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base class for every inference failure."""


class InferenceUnavailable(InferenceError):
    """The server is down, timed out, overloaded or briefly unhealthy: transient, retry later."""


class ModelNotFound(InferenceError):
    """The model, or the requested version of it, is not served: permanent."""


class InferenceRejected(InferenceError):
    """The server refused the inputs (name, shape, dtype, batch size): permanent."""


# gRPC status codes (as tritonclient reports them: "StatusCode.X") -> our error class.
_BY_STATUS: dict[str, type[InferenceError]] = {
    "StatusCode.NOT_FOUND": ModelNotFound,
    "StatusCode.INVALID_ARGUMENT": InferenceRejected,
    "StatusCode.OUT_OF_RANGE": InferenceRejected,
    "StatusCode.UNAVAILABLE": InferenceUnavailable,
    "StatusCode.DEADLINE_EXCEEDED": InferenceUnavailable,
    "StatusCode.RESOURCE_EXHAUSTED": InferenceUnavailable,
    "StatusCode.CANCELLED": InferenceUnavailable,
    "StatusCode.ABORTED": InferenceUnavailable,
    # Triton reports a crashed or restarting backend stub as INTERNAL; it recovers on its own.
    "StatusCode.INTERNAL": InferenceUnavailable,
}


def classify(status: str | None, message: str) -> InferenceError:
    """Turn a Triton/gRPC status and message into the matching InferenceError subclass."""
    error_class = _BY_STATUS.get(status or "", InferenceError)
    return error_class(f"{message} ({status or 'no status'})")
