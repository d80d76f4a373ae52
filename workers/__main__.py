"""`python -m workers`: run one worker with settings from `QSCORE_*` variables."""

from __future__ import annotations

import asyncio
import logging

from workers.app import run_worker
from workers.settings import WorkerSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    settings = WorkerSettings.from_env()
    from qscore.telemetry import configure

    configure("qscore-worker", prometheus=settings.health_port is not None)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
