"""Full garbage collections off a serving process's event loop: freeze what start-up made.

Python's cyclic collector walks every object it tracks in a full (generation 2) collection, and
a serving process holds ~50,000-100,000 of them from start-up alone (azure-servicebus, grpc and
tritonclient, numpy, pydantic, the links and clients made once) that live as long as it does.
Under load the messages and futures it makes trigger a full collection every few seconds, and
the event loop stops for each: on the 2-core bench machine at 600 requests/s, a worker's full
collections took 30-140 ms and the load client's 35-80 ms (up to ~450 ms when the machine was
contended), and nothing is received, scored or replied meanwhile. With the machine 85-90% busy
(the bench's half-peak point) the backlog of such a pause takes several times the pause to
clear, so each one made a burst of the slowest replies: the queue path's p99 (issue 23).

`gc.freeze()` moves the objects alive now to a permanent generation that collections skip: a
full collection then walks only what was made since, and start-up's objects are never walked
again. It is O(1) (no collection runs, so it can be called where a request may be waiting).
Call it once start-up is done (the worker's entry points do, once it serves; a producer's own
process may, after `ScoringProducer.start()`). Cost: an object frozen while it was, or later
became, cyclic garbage is never collected (reference counting still frees the rest); start-up's
objects are the libraries and the long-lived clients and links, so that is little, and once.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Leave every object alive now out of all later collections; returns how many are frozen in
    all. A later call adds what was made since the last."""
    gc.freeze()
    return gc.get_freeze_count()
