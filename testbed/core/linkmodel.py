"""What one direction of an emulated link does to a packet: delay, jitter, loss.

Pure: the caller gives the arrival time (ns) and gets back the departure time or
``None`` for a lost packet.  The userspace link emulator and the simulator both
use it, so a link behaves the same in both.

Semantics follow ``tc netem delay D J loss L`` with one difference that matters
for TCP: jitter never reorders packets (a packet never leaves before the one
that arrived ahead of it), as netem does when a rate is also set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from testbed.core.spec import LinkParams

NS_PER_MS = 1_000_000


@dataclass
class DirectionStats:
    """Counters for one direction; ``lost`` are random losses, not queue drops."""

    packets_in: int = 0
    bytes_in: int = 0
    lost: int = 0


@dataclass
class Direction:
    """One direction of a link: maps arrival times to departure times."""

    params: LinkParams
    rng: random.Random
    stats: DirectionStats = field(default_factory=DirectionStats)
    _last_departure: int = 0

    @classmethod
    def make(cls, params: LinkParams, seed: int) -> Direction:
        return cls(params=params, rng=random.Random(seed))

    def schedule(self, arrival_ns: int, size: int) -> int | None:
        """Departure time in ns for a packet of ``size`` bytes, or None if lost."""
        self.stats.packets_in += 1
        self.stats.bytes_in += size
        p = self.params
        if p.loss_pct and self.rng.random() * 100.0 < p.loss_pct:
            self.stats.lost += 1
            return None
        delay_ms = p.delay_ms
        if p.jitter_ms:
            delay_ms = max(0.0, delay_ms + self.rng.uniform(-p.jitter_ms, p.jitter_ms))
        departure = arrival_ns + int(delay_ms * NS_PER_MS)
        if departure < self._last_departure:
            departure = self._last_departure
        self._last_departure = departure
        return departure
