"""The demo's requests: the held-out digits set (as rows, or drawn as PNGs), repeated to the count."""

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
                self.model, self._inputs(rows, index), version=self.version, binary=self.binary
            )
            self.labels_by_request[outgoing.request_id] = self.test_set.labels[rows]
            yield outgoing

    def _inputs(self, rows: np.ndarray, index: int) -> dict[str, np.ndarray]:
        return {INPUT_NAME: self.test_set.pixels[rows]}


@dataclass
class ImageWorkload(DigitsWorkload):
    """The same digits drawn as noisy PNGs of `side` pixels, for the image model (BYTES input)."""

    side: int = 64
    _pngs: dict[int, bytes] = field(default_factory=dict)  # one drawing per test-set row

    def _inputs(self, rows: np.ndarray, index: int) -> dict[str, np.ndarray]:
        from qscore.inference.images import IMAGE_INPUT, digit_png, image_batch

        for row in rows:
            if int(row) not in self._pngs:
                self._pngs[int(row)] = digit_png(self.test_set.pixels[row], side=self.side, seed=int(row))
        return {IMAGE_INPUT: image_batch([self._pngs[int(row)] for row in rows])}
