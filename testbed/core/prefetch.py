"""Prefetch policies: what the master pushes to which helper, within a byte budget.

The master calls ``policy.plan(...)`` every prefetch interval with one
:class:`HelperView` per helper (the playheads of the viewers it serves, what it caches and
what is already on its way) and a byte budget; the policy returns :class:`Push` decisions,
which the master routes through the mesh.  Issue 6's predictive planner implements the same
:class:`PrefetchPolicy` protocol; :class:`NextSegments` is the honest baseline (players
read ahead, so the segments just after a playhead are the likeliest next requests) and
:class:`NoPrefetch` switches prefetching off.

Policies are chosen by spec string through :data:`POLICIES`, e.g.
``make_policy("next-segments,lookahead=4")``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Key = tuple[str, int]


class PrefetchError(ValueError):
    """An unknown policy, a bad policy parameter or a bad planning input."""


@dataclass(frozen=True)
class Push:
    """Send segment ``(video, index)`` of ``size`` bytes to helper ``dest``.

    ``expected_hits``: how many requests the policy expects it to answer there.
    """

    video: str
    index: int
    dest: str
    size: int
    expected_hits: float = 1.0


@dataclass(frozen=True)
class HelperView:
    """What the master knows about one helper when planning.

    ``playheads``: ``(video, current segment index)`` per active viewer of the helper.
    """

    helper: str
    playheads: tuple[tuple[str, int], ...] = ()
    cached: frozenset[Key] = frozenset()
    in_flight: frozenset[Key] = frozenset()


class PrefetchPolicy(Protocol):
    """Anything with a name and a ``plan`` method; the master needs nothing else."""

    name: str

    def plan(self, now: float, views: Sequence[HelperView], size_of: Callable[[str, int], int],
             n_segments: Callable[[str], int], budget_bytes: int) -> list[Push]:
        """Pushes to make now, at most ``budget_bytes`` in total."""
        ...


def _check_budget(budget_bytes: int) -> None:
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 0:
        raise PrefetchError(f"budget_bytes must be an int >= 0, got {budget_bytes!r}")


class NoPrefetch:
    """Prefetching off: never pushes."""

    name = "none"

    def plan(self, now: float, views: Sequence[HelperView], size_of: Callable[[str, int], int],
             n_segments: Callable[[str], int], budget_bytes: int) -> list[Push]:
        _check_budget(budget_bytes)
        return []


class NextSegments:
    """Push the ``lookahead`` segments after each viewer's playhead that the helper lacks.

    Per helper, candidates are ordered nearest the playhead first (then video, index) and
    deduplicated (``expected_hits`` = how many of its viewers want the segment).  Helpers
    then take turns, one push each per round, in the order of ``views``, so one busy
    helper cannot use the whole budget; a push that would overrun the budget is skipped.
    """

    name = "next-segments"

    def __init__(self, lookahead: int = 3) -> None:
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 1:
            raise PrefetchError(f"next-segments lookahead must be an int >= 1, got {lookahead!r}")
        self.lookahead = lookahead

    def wanted(self, view: HelperView, n_segments: Callable[[str], int]) -> list[tuple[Key, int]]:
        """``((video, index), viewers wanting it)`` for one helper, nearest first."""
        best: dict[Key, int] = {}
        hits: dict[Key, int] = {}
        counts: dict[str, int] = {}
        for video, playhead in view.playheads:
            if video not in counts:
                counts[video] = n_segments(video)
            for d in range(1, self.lookahead + 1):
                index = playhead + d
                if index < 0 or index >= counts[video]:
                    continue
                key = (video, index)
                if key in view.cached or key in view.in_flight:
                    continue
                best[key] = min(best.get(key, d), d)
                hits[key] = hits.get(key, 0) + 1
        order = sorted(best, key=lambda k: (best[k], k))
        return [(k, hits[k]) for k in order]

    def plan(self, now: float, views: Sequence[HelperView], size_of: Callable[[str, int], int],
             n_segments: Callable[[str], int], budget_bytes: int) -> list[Push]:
        _check_budget(budget_bytes)
        merged: dict[str, HelperView] = {}
        for v in views:  # the same helper twice: merge its views
            old = merged.get(v.helper)
            merged[v.helper] = v if old is None else HelperView(
                v.helper, old.playheads + v.playheads, old.cached | v.cached,
                old.in_flight | v.in_flight)
        queues = [self.wanted(v, n_segments) for v in merged.values()]
        dests = list(merged)
        pushes: list[Push] = []
        left = budget_bytes
        for rnd in range(max((len(q) for q in queues), default=0)):
            if left <= 0:
                break
            for dest, queue in zip(dests, queues):
                if rnd >= len(queue):
                    continue
                (video, index), hits = queue[rnd]
                size = int(size_of(video, index))
                if size <= left:
                    pushes.append(Push(video, index, dest, size, float(hits)))
                    left -= size
        return pushes


POLICIES: dict[str, type] = {"none": NoPrefetch, "next-segments": NextSegments}


def _value(text: str) -> object:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_policy_spec(spec: str) -> tuple[str, dict[str, object]]:
    """``"next-segments,lookahead=4"`` -> ``("next-segments", {"lookahead": 4})``."""
    if not isinstance(spec, str):
        raise PrefetchError(f"prefetch policy spec must be text, got {spec!r}")
    name, *parts = (p.strip() for p in spec.split(","))
    if not name:
        raise PrefetchError(f"prefetch policy spec {spec!r}: missing policy name")
    params: dict[str, object] = {}
    for part in parts:
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or not key or not value:
            raise PrefetchError(f"prefetch policy spec {spec!r}: {part!r} is not key=value")
        if key in params:
            raise PrefetchError(f"prefetch policy spec {spec!r}: {key!r} given twice")
        params[key] = _value(value)
    return name, params


def make_policy(spec: str) -> PrefetchPolicy:
    """The policy a spec string names, with its parameters (PrefetchError when wrong)."""
    name, params = parse_policy_spec(spec)
    cls = POLICIES.get(name)
    if cls is None:
        raise PrefetchError(f"unknown prefetch policy {name!r} (known: {', '.join(POLICIES)})")
    known = [p for p in inspect.signature(cls).parameters if p != "self"]
    for key in params:
        if key not in known:
            raise PrefetchError(f"prefetch policy {name!r}: unknown parameter {key!r} "
                                f"(known: {', '.join(known) or 'none'})")
    return cls(**params)
