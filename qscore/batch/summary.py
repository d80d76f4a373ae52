"""What a batch run did: rows, errors, throughput, rows per version, time per stage."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

STAGES = ("read", "prepare", "score", "write", "assemble")


@dataclass
class BatchSummary:
    output: str = ""
    rejected_output: str | None = None
    rows_total: int = 0  # rows in the output plus the side file, this run and earlier ones
    rows_scored: int = 0
    rows_rejected: int = 0
    rows_resumed: int = 0  # rows finished by an earlier run of the same command
    chunks: int = 0
    chunks_resumed: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    started: float = field(default_factory=time.perf_counter)
    elapsed_s: float = 0.0
    cpu_started: float = field(default_factory=time.process_time)
    cpu_s: float = 0.0  # this process's CPU (all threads) over elapsed_s: what the engine itself costs
    already_complete: bool = False
    chunks_by_reference: int = 0  # queue engine: chunks sent through the claim-check (Blob)

    @property
    def rows_this_run(self) -> int:
        return self.rows_total - self.rows_resumed

    @property
    def rows_per_s(self) -> float:
        return self.rows_this_run / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def finish(self) -> None:
        self.elapsed_s = time.perf_counter() - self.started
        self.cpu_s = time.process_time() - self.cpu_started

    def add_stage(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds

    def add_chunk(self, record: dict[str, Any], *, resumed: bool) -> None:
        rows, rejected = int(record["rows"]), int(record["rejected"])
        self.chunks += 1
        self.rows_total += rows
        self.rows_rejected += rejected
        self.rows_scored += rows - rejected
        self.versions.update({str(k): int(v) for k, v in record.get("versions", {}).items()})
        if resumed:
            self.chunks_resumed += 1
            self.rows_resumed += rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "rejected_output": self.rejected_output,
            "rows_total": self.rows_total,
            "rows_scored": self.rows_scored,
            "rows_rejected": self.rows_rejected,
            "rows_resumed": self.rows_resumed,
            "chunks": self.chunks,
            "chunks_resumed": self.chunks_resumed,
            "versions": dict(self.versions),
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "elapsed_s": round(self.elapsed_s, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "cpu_s": round(self.cpu_s, 3),
            "chunks_by_reference": self.chunks_by_reference,
        }
