"""The spans both runtimes make for a request, with the same names of attributes: the span
around one Triton call for many requests (`scoring_call_span`, linked to each request) and the
end of a request's span with its outcome (`end_request_span`). The worker's tracing middleware
(workers/telemetry.py) and the Functions app's (functions/telemetry.py) name their spans and
choose their parents; what goes on a span is decided here once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from qscore.telemetry.spans import batch_span

OUTCOME = "qscore.outcome"
MODEL = "qscore.model"
MODEL_VERSION = "qscore.model_version"
ROUTE = "qscore.route"


@contextmanager
def scoring_call_span(
    name: str, parents: Sequence[Span | Context], *, model: str, version: str, route: str | None = None
) -> Iterator[Span]:
    """One Triton call for many requests: a new root linked to each request's span (or producer
    context), with the model, its version and (when the runtime knows it) the route."""
    attributes: dict[str, AttributeValue] = {MODEL: model, MODEL_VERSION: version}
    if route is not None:
        attributes[ROUTE] = route
    with batch_span(name, parents, attributes=attributes) as span:
        yield span


def end_request_span(span: Any, outcome: str) -> None:
    """End a request's span (or its reply's) with what became of it (`replied`,
    `dead_lettered:<code>`, `reply_undeliverable`, ...)."""
    span.set_attribute(OUTCOME, outcome)
    span.end()
