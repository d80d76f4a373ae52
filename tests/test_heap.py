"""qscore.heap: the worker freezes its start-up heap and raises the young threshold, and undoes both."""

from __future__ import annotations

import gc

from qscore.heap import YOUNG_THRESHOLD, freeze_start_up_heap


def test_freeze_start_up_heap_and_undo() -> None:
    before_thresholds = gc.get_threshold()
    before_frozen = gc.get_freeze_count()
    kept = [object(), {"alive": "at start"}]
    restore = freeze_start_up_heap()
    try:
        assert gc.get_freeze_count() > before_frozen  # what was alive is out of the walks
        assert gc.get_threshold()[0] == max(before_thresholds[0], YOUNG_THRESHOLD)
        assert gc.get_threshold()[1:] == before_thresholds[1:]
    finally:
        restore()
    assert gc.get_threshold() == before_thresholds
    assert gc.get_freeze_count() == 0
    assert kept
