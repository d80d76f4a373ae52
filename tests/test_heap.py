"""qscore.heap: start-up's objects left out of later garbage collections (issue 23's p99)."""

from __future__ import annotations

import gc

from qscore.heap import freeze_startup_objects


def _tracked(thing: object) -> bool:
    return any(each is thing for each in gc.get_objects())


def test_objects_alive_at_the_freeze_are_left_out_of_collections_and_later_ones_are_not() -> None:
    before: list[object] = []  # a container: tracked by the collector
    try:
        frozen = freeze_startup_objects()
        after: list[object] = []
        assert frozen == gc.get_freeze_count() > 0
        assert not _tracked(before)  # in the permanent generation: no collection walks it
        assert _tracked(after)
        assert freeze_startup_objects() >= frozen  # a second call adds what was made since
        assert not _tracked(after)
    finally:
        gc.unfreeze()  # this test process's objects go back to the collector
    assert _tracked(before)
