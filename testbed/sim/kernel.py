"""The simulation's clock and event queue.

One heap of ``(time, sequence, callback, argument)``: events at the same time run in the
order they were scheduled, so a seed's run is deterministic.  Time is run seconds (the
same clock the daemons' records use).  Nothing here reads the wall clock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class Kernel:
    """``at(t, fn, arg)`` schedules ``fn(arg)`` at run time ``t``; :meth:`run` plays the
    queue up to a time.  ``now`` is the time of the event being run."""

    __slots__ = ("now", "_queue", "_seq", "events")

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._queue: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = itertools.count()
        self.events = 0  # events run so far

    def at(self, t: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        heapq.heappush(self._queue, (t if t > self.now else self.now, next(self._seq), fn, arg))

    def after(self, delay: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        self.at(self.now + delay, fn, arg)

    def run(self, until: float) -> None:
        """Run every event due at or before ``until``; the clock ends at ``until``."""
        queue, pop = self._queue, heapq.heappop
        n = 0
        while queue and queue[0][0] <= until:
            t, _, fn, arg = pop(queue)
            self.now = t
            fn(arg)
            n += 1
        self.events += n
        self.now = max(self.now, until)

    def pending(self) -> int:
        return len(self._queue)
