"""How a session plan plays when segments are always there: what it watches."""

from __future__ import annotations

import math
from collections.abc import Iterator

from testbed.core.player import SessionPlan
from testbed.core.workload.checks import _EPS


def _n_segments(duration: float, segment_s: float) -> int:
    """``ceil(duration / segment_s)``, forgiving float noise, at least 1."""
    return max(1, math.ceil(duration / segment_s - 1e-9))


def _walk(plan: SessionPlan, duration: float, segment_s: float
          ) -> Iterator[tuple[str, float, float]]:
    """The plan as :class:`~testbed.core.player.Player` plays it when segments are always
    there: ``("play", from, to)``, ``("pause", at, length)``, ``("seek", from, to)``, then
    ``("stop", at, 0)`` or ``("complete", end, 0)``.  Positions are media seconds."""
    n = _n_segments(duration, segment_s)
    last_start = (n - 1) * segment_s
    base = plan.start_index * segment_s
    pos = base
    for at, kind, arg in plan.actions:
        target = base + at
        if target > duration + _EPS:
            break
        if target > pos:
            yield ("play", pos, min(target, duration))
            pos = min(target, duration)
        if kind == "pause":
            yield ("pause", pos, arg)
        elif kind == "seek":
            to = min(max(base + arg, 0.0), last_start)
            yield ("seek", pos, to)
            pos = to
        else:
            yield ("stop", pos, 0.0)
            return
    if duration > pos:
        yield ("play", pos, duration)
    yield ("complete", duration, 0.0)


def _watched(plan: SessionPlan, duration: float, segment_s: float) -> float:
    """``watch_fraction`` of a plan: media played / duration, 1.0 when it plays to the end.

    What :func:`_walk` plays, summed the same way, without its steps."""
    n = _n_segments(duration, segment_s)
    last_start = (n - 1) * segment_s
    base = plan.start_index * segment_s
    pos = base
    played = 0.0
    for at, kind, arg in plan.actions:
        target = base + at
        if target > duration + _EPS:
            break
        if target > pos:
            end = min(target, duration)
            played += end - pos
            pos = end
        if kind == "seek":
            pos = min(max(base + arg, 0.0), last_start)
        elif kind != "pause":
            return played / duration
    return 1.0
