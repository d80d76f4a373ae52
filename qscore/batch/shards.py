"""Shards: one input split across processes or machines, `--shard I/N` (0-based I).

The unit of work is the chunk, and chunk k always holds input rows [k*chunk_rows,
(k+1)*chunk_rows) whatever N is, so every chunk is scored and written the same way in any
shard of any N. Shard I of N takes the contiguous chunks [I*C//N, (I+1)*C//N) of the C
chunks, writes them to its own output (`scores.shard-0001-of-0004.parquet`) and keeps its
own manifest beside it, so each shard is resumable on its own; the shard outputs in shard
order hold exactly the rows of the unsharded output, in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Kubernetes sets it in each pod of an Indexed Job; QSCORE_BATCH_SHARDS says how many.
INDEX_ENV = "JOB_COMPLETION_INDEX"
SHARDS_ENV = "QSCORE_BATCH_SHARDS"


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: want I/N with N >= 1 and 0 <= I < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.strip().partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"shard {text!r}: write it as I/N, e.g. 0/4 (I counts from 0)")
        return cls(int(index), int(count))

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def chunk_range(self, chunks: int) -> range:
        """This shard's chunks of `chunks` in all: a contiguous run, the sizes differing by at most one."""
        return range(self.index * chunks // self.count, (self.index + 1) * chunks // self.count)

    def output(self, output: str) -> str:
        """`scores.parquet` -> `scores.shard-0001-of-0004.parquet` (a path or a Blob URL)."""
        return shard_output(output, self.index, self.count)


def shard_output(output: str, index: int, count: int) -> str:
    tag = f".shard-{index:04d}-of-{count:04d}"
    name_start = output.rfind("/") + 1
    dot = output.rfind(".")
    if dot <= name_start:  # no suffix
        return output + tag
    return output[:dot] + tag + output[dot:]


def shard_from_env(environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard a Kubernetes Indexed Job pod runs: JOB_COMPLETION_INDEX of QSCORE_BATCH_SHARDS;
    None unless both are set."""
    env = os.environ if environ is None else environ
    index, count = env.get(INDEX_ENV, "").strip(), env.get(SHARDS_ENV, "").strip()
    if not index or not count:
        return None
    return Shard.parse(f"{index}/{count}")
