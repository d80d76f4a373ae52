"""The demo's requests: the held-out digits set, repeated to the requested count."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from qscore.inference.testset import DigitsTestSet
from qscore.producer import OutgoingRequest

# The digits models' tensor names, as qscore_tools.training writes them (a test checks they
# agree); the local stack keeps no import of the tools.
INPUT_NAME = "pixels"
LABEL_NAME = "label"


@dataclass
class DigitsWorkload:
    """Yields requests and remembers each one's true labels to score accuracy later."""

    test_set: DigitsTestSet
    requests: int
    model: str = "digits"
    version: str | None = None
    rows_per_request: int = 1
    binary: bool = False
    labels_by_request: dict[str, np.ndarray] = field(default_factory=dict)

    def __iter__(self) -> Iterator[OutgoingRequest]:
        size = len(self.test_set)
        for index in range(self.requests):
            start = (index * self.rows_per_request) % size
            rows = np.arange(start, start + self.rows_per_request) % size
            outgoing = OutgoingRequest.build(
                self.model,
                {INPUT_NAME: self.test_set.pixels[rows]},
                version=self.version,
                binary=self.binary,
            )
            self.labels_by_request[outgoing.request_id] = self.test_set.labels[rows]
            yield outgoing
