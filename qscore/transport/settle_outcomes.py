"""How a received message was settled: the one enumeration the settlers, the middleware
(`qscore.middleware.Settled.outcome`), job accounting and the Functions app's reports use.
(Not to be confused with the bad-input table's outcome of a code, `qscore.contracts.errors`,
or the interaction log's outcome of a request, `qscore.monitoring.records`.)"""

from __future__ import annotations

from typing import Final, Literal

SettleOutcome = Literal["completed", "abandoned", "dead_lettered"]

COMPLETED: Final = "completed"
ABANDONED: Final = "abandoned"
DEAD_LETTERED: Final = "dead_lettered"
