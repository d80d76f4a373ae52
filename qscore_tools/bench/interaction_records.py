"""CPU per interaction record on the log's writer thread: one record at a time (`record_from_scored`
and its `model_dump_json`, the way before record_lines.py) against a batch built together
(`scored_lines`), on single-row digits requests, in one process and interleaved, so both see the
same machine load. Checks the two give the same bytes.

    python -m qscore_tools.bench.interaction_records [--requests 4096] [--batch 128] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from qscore.contracts import ScoreRequest, Timings
from qscore.contracts.messages import ReplyStatus, ScoreReply
from qscore.monitoring.interaction_log import _line_of_entry
from qscore.monitoring.record_lines import ScoredEntry, scored_lines
from qscore.scoring import ScoredItem, ScoringItem


def _entries(count: int) -> list[ScoredEntry]:
    rng = np.random.default_rng(0)
    entries = []
    for index in range(count):
        pixels = rng.random((1, 64), dtype=np.float32)
        exp = np.exp(rng.random((1, 10)))
        probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        request = ScoreRequest.model_construct(model="digits", inputs={}, version=None)
        item = ScoringItem(f"r{index}", request, {"pixels": pixels}, received_at=1.7e9)
        outputs = {"probabilities": probabilities, "label": probabilities.argmax(1).reshape(1, 1)}
        scored = ScoredItem(item, outputs, "2", batch_started_at=1.7e9 + index, inference_ms=1.25)
        timings = Timings(queue_wait_ms=1.5, batch_wait_ms=0.25, inference_ms=1.25, total_ms=4.0)
        reply = ScoreReply(request_id=f"r{index}", status=ReplyStatus.OK, model="digits", timings=timings)
        entries.append(ScoredEntry(scored, reply, "production", "worker-1", None))
    return entries


def _one_at_a_time(entries: list[ScoredEntry], batch: int) -> str:
    return "".join(_line_of_entry(entry).line for entry in entries)


def _batched(entries: list[ScoredEntry], batch: int) -> str:
    lines = []
    for start in range(0, len(entries), batch):
        lines += [built.line for built in scored_lines(entries[start : start + batch], _line_of_entry)]  # type: ignore[union-attr]
    return "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=128, help="records the writer builds together")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    entries = _entries(args.requests)
    ways: dict[str, Callable[[list[ScoredEntry], int], str]] = {
        "one_at_a_time": _one_at_a_time,
        "batched": _batched,
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(args.repeats):  # interleaved: a load spike costs both
        for name, way in ways.items():
            started = time.process_time()
            way(entries, args.batch)
            best[name] = min(best[name], time.process_time() - started)
    same = _one_at_a_time(entries, args.batch) == _batched(entries, args.batch)
    per_record = {name: round(seconds / args.requests * 1e6, 2) for name, seconds in best.items()}
    ratio = round(best["one_at_a_time"] / best["batched"], 2)
    print(
        json.dumps({"us_per_record": per_record, "speedup": ratio, "same_bytes": same, "batch": args.batch})
    )


if __name__ == "__main__":
    main()
