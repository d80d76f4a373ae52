"""WorkerSettings from environment and flags; backoff; held-message bookkeeping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from workers.backoff import Backoff
from workers.locks import HeldMessages
from workers.settings import WorkerSettings


def test_settings_from_env_and_overrides() -> None:
    env = {
        "QSCORE_SERVICEBUS_CONNECTION": "Endpoint=sb://127.0.0.1:1;SharedAccessKey=k",
        "QSCORE_PREFETCH": "64",
        "QSCORE_MAX_BATCH_DELAY_MS": "1.5",
        "QSCORE_HEALTH_PORT": "off",
        "QSCORE_INTERACTION_LOG": "/tmp/log.jsonl",
        "QSCORE_BINARY_REPLIES": "true",
    }
    settings = WorkerSettings.from_env(env, prefetch=None, drain_grace_s=5)
    assert settings.prefetch == 64 and settings.max_batch_delay_ms == 1.5
    assert settings.health_port is None and settings.binary_replies
    assert settings.interaction_log == Path("/tmp/log.jsonl") and settings.drain_grace_s == 5
    assert "k" not in str(settings.redacted()["servicebus_connection"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.prefetch = 1  # type: ignore[misc]


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="QSCORE_PREFETCH"):
        WorkerSettings.from_env({"QSCORE_PREFETCH": "many"})
    with pytest.raises(ValueError, match="prefetch"):
        WorkerSettings(prefetch=-1)
    with pytest.raises(TypeError):
        WorkerSettings("positional")  # type: ignore[call-arg]


def test_backoff_grows_once_per_outage_and_resets() -> None:
    backoff = Backoff(initial_s=10, max_s=40, jitter=0)
    assert backoff.failure("down") == 10
    assert backoff.failure("down again") <= 10  # during the pause: no escalation
    assert backoff.paused and backoff.failing
    backoff.resume_at = 0  # the pause is over
    assert backoff.failure("still down") == 20
    backoff.success()
    assert not backoff.paused and not backoff.failing


async def test_held_messages_bound_and_release() -> None:
    held = HeldMessages(limit=2)
    first, second = object(), object()
    held.add([first, second])
    assert held.room == 0 and held.count == 2
    await held.wait_for_room(0.01)  # times out quietly
    held.release([first])
    assert held.room == 1 and held.messages() == [second]
    assert held.due_for_renewal() == []  # half of the default 30 s lock has not passed
