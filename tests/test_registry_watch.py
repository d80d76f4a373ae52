"""The worker follows its routing table: a changed file is reloaded, a damaged one is ignored.

The end-to-end reload by a running worker (real Triton, local bus) is in tests/test_lifecycle.py;
these check the watcher itself on a real file, fast.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from qscore.registry import ModelRegistry
from workers.registry_watch import watch_registry


def write_table(path: Path, production: str) -> None:
    entry = {"production": production, "labels": {}, "flight": None, "history": []}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"models": {"digits": entry}}))
    os.replace(temporary, path)  # how `qscore release package` and ConfigMap updates replace it


async def wait_for(condition: object, timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


async def test_reloads_on_change_and_keeps_last_good_routes(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    write_table(path, "2")
    registry = ModelRegistry(path)
    watcher = asyncio.create_task(watch_registry(registry, every_s=0.02))
    try:
        await asyncio.sleep(0.1)  # the watcher notes the file it starts with
        write_table(path, "1")
        assert await wait_for(lambda: registry.entry("digits").production == "1")
        path.write_text("{half written")
        await asyncio.sleep(0.2)
        assert registry.entry("digits").production == "1"  # damaged: last good table stays
        write_table(path, "2")
        assert await wait_for(lambda: registry.entry("digits").production == "2")
        route = registry.resolve("digits", None, available=["1", "2"], routing_key="r")
        assert route.version == "2"
    finally:
        watcher.cancel()
