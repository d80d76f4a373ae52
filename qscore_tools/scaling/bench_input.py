"""Per-replica worker throughput from a `qscore bench` result file.

Read field: `worker.messages_per_s_per_replica` (messages/s one worker replica completes at
its configured batch size and delay). `qscore bench` writes it into
bench/results/<timestamp>.json; the simulator reads nothing else from the file.
"""

from __future__ import annotations

import json
from pathlib import Path

BENCH_FIELD = ("worker", "messages_per_s_per_replica")


class BenchInputError(ValueError):
    """The bench file is missing, unreadable, or lacks the field."""


def per_replica_rate_from_bench(path: Path) -> float:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchInputError(f"bench result not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchInputError(f"cannot read bench result {path}: {exc}") from None
    value: object = data
    for key in BENCH_FIELD:
        if not isinstance(value, dict) or key not in value:
            raise BenchInputError(f"{path} has no {'.'.join(BENCH_FIELD)} field")
        value = value[key]
    if not isinstance(value, int | float) or value <= 0:
        raise BenchInputError(f"{path}: {'.'.join(BENCH_FIELD)} must be a positive number, got {value!r}")
    return float(value)


def latest_bench_result(results_dir: Path) -> Path | None:
    """The newest queue bench result in `results_dir`, if any.

    bench/results also holds other benchmarks' JSON (`batch-1m.json`, `batch-rss-10m.json`),
    whose names sort after the timestamped ones: a file counts only when it has the queue
    bench's shape (a positive `worker.messages_per_s_per_replica`), and the newest is the one
    with the latest `started_at` (ISO 8601 UTC, as `qscore bench` writes it; the name breaks ties).
    """
    found: list[tuple[str, str, Path]] = []
    for path in results_dir.glob("*.json"):
        try:
            per_replica_rate_from_bench(path)
            started = json.loads(path.read_text()).get("started_at", "")
        except (BenchInputError, AttributeError):
            continue
        found.append((started if isinstance(started, str) else "", path.name, path))
    return max(found)[2] if found else None
