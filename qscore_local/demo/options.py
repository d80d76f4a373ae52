"""What `qscore demo` runs: one typed, keyword-only options object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    requests: int = 2000
    workers: int = 2
    model: str = "digits"
    version: str | None = None  # None: the registry's production version (newest when untagged)
    rows_per_request: int = 1
    binary_tensors: bool = False
    # Outstanding requests at most: keeps end-to-end latency about queueing, not about a
    # 20 000-deep backlog enqueued at t=0 (Little's law: latency ~ in-flight / throughput).
    max_in_flight: int = 1000
    reply_timeout_s: float = 120.0
    max_batch_size: int | None = None  # passed to workers as QSCORE_MAX_BATCH_SIZE when set
    max_batch_delay_ms: float | None = None
    run_dir: Path | None = None  # logs and data of the bus/Triton/workers; default under .qscore/
    json_out: Path | None = None
    plot: Path | None = None
    start_timeout_s: float = 180.0
    # Image model (digit_images): the side in pixels of the PNGs sent (64 px ~ 4 KB, 2450 px ~ 4 MB).
    image_side: int = 64
    # Bodies over this many bytes go by claim-check through Azurite (started for the demo);
    # None: 192 KiB for the image model, off otherwise.
    claim_check_threshold: int | None = None
    # Workers write the interaction log to Azurite (Blob, Azure ML layout) instead of nowhere.
    blob_log: bool = False

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError("--requests must be at least 1")
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if self.rows_per_request < 1:
            raise ValueError("--rows-per-request must be at least 1")
        if self.max_in_flight < 1:
            raise ValueError("--max-in-flight must be at least 1")
        if self.reply_timeout_s <= 0:
            raise ValueError("--timeout must be > 0")
        if self.image_side < 8:
            raise ValueError("--image-side must be at least 8")
        if self.claim_check_threshold is not None and self.claim_check_threshold < 1:
            raise ValueError("--claim-check-threshold must be at least 1 byte")

    @property
    def image_model(self) -> bool:
        return self.model == "digit_images"

    @property
    def threshold(self) -> int | None:
        """The claim-check threshold in force (None: claim-check off)."""
        if self.claim_check_threshold is not None:
            return self.claim_check_threshold
        return 192 * 1024 if self.image_model else None

    @property
    def uses_azurite(self) -> bool:
        return self.threshold is not None or self.blob_log
