"""Prefetch policies: what the master pushes to which helper, within a byte budget.

Two kinds of policy, both chosen by spec string through :data:`POLICIES`, e.g.
``make_policy("next-segments,lookahead=4")`` or ``make_policy("predictive,min_expected=0.2")``.

* Playhead policies (:class:`PrefetchPolicy`): the master calls ``policy.plan(...)`` every
  prefetch interval with one :class:`HelperView` per helper (the playheads of the viewers it
  serves, what it caches and what is already on its way) and a byte budget; the policy
  returns :class:`Push` decisions, which the master routes through the mesh.
  :class:`NextSegments` is the honest baseline (players read ahead, so the segments just
  after a playhead are the likeliest next requests) and :class:`NoPrefetch` switches
  prefetching off.
* Demand policies (:class:`DemandPolicy`): they have no ``plan``; the master calls
  ``policy.plan_demand(...)`` instead, with :class:`Demand` rows (expected requests per
  helper and segment over the coming horizon), the helpers' inventories, their free cache
  bytes and the mesh routes.  All three run the same planner, :func:`plan_pushes`, and
  differ in where the master takes the demand from: :class:`DemandPlanner`
  (``"predictive"``) from the prediction engine, :class:`OraclePlanner` (``"oracle"``) from
  the known future, :class:`PopularityPlanner` (``"popularity"``) from the engine's
  popularity baseline (recent request rates).

The planner is greedy by expected hits per byte.  A push travels the mesh route
``[master, ..., dest]``; a helper on the way that expects requests for the segment itself
(at least ``keep_min``), lacks it and has room keeps a copy, so the push's value is the
expected requests at the destination plus those at the helpers keeping a copy.  Candidates
are taken in decreasing value per byte; a value is re-checked when its candidate comes up
(an earlier push may have filled a keeper or given it the segment) and the candidate goes
back in line if it fell.  Each push costs its size once against the budget, the master's
uplink, whatever its route length.

Pure: inputs in, decisions out; ties are broken by route length, then names in natural order
(``h2`` before ``h10``), so the same input always gives the same plan.
"""

from __future__ import annotations

import bisect
import heapq
import inspect
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, Protocol, Union

from testbed.core.headroom import LinkRoom
from testbed.core.mesh import NearestCopy
from testbed.core.spec import natural_key

Key = tuple[str, int]
#: Push a segment only when the demand behind it expects at least this many requests (a
#: higher bar pushes less that goes unused; measured on the default scenario: 0.1 wasted
#: 31-40 % of pushed bytes, 0.3 about 21 %).
MIN_EXPECTED = 0.3


class PrefetchError(ValueError):
    """An unknown policy, a bad policy parameter or a bad planning input."""


@dataclass(frozen=True)
class Push:
    """Send segment ``(video, index)`` of ``size`` bytes to helper ``dest``.

    ``expected_hits``: how many requests the policy expects it to answer there (and, with
    ``keep``, at the helpers keeping a copy on the way).  ``route``: the mesh route
    ``(master, ..., dest)`` the plan assumed (empty: the master chooses).  ``keep``: the
    helpers on the route that keep a copy, in route order.
    """

    video: str
    index: int
    dest: str
    size: int
    expected_hits: float = 1.0
    keep: tuple[str, ...] = ()
    route: tuple[str, ...] = ()


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


# --------------------------------------------------------------------------- demand planner


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and not math.isnan(value)


def _check_positive(what: str, value: object) -> float:
    """``value`` as a float; PrefetchError unless it is a number > 0 (``inf`` allowed)."""
    if not _is_number(value) or value <= 0:
        raise PrefetchError(f"{what} must be a number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Demand:
    """``expected`` requests for segment ``(video, index)`` at ``helper`` over the coming
    horizon (a prediction, a popularity estimate or, for the oracle, the known future)."""

    helper: str
    video: str
    index: int
    expected: float

    def __post_init__(self) -> None:
        e = self.expected
        if (type(self.helper) is str and self.helper and type(self.video) is str
                and self.video and type(self.index) is int and self.index >= 0
                and type(e) is float and 0.0 <= e < math.inf):
            return  # the usual row, checked at once; anything else as below
        if not isinstance(self.helper, str) or not self.helper:
            raise PrefetchError(f"demand helper must be a non-empty name, got {self.helper!r}")
        if not isinstance(self.video, str) or not self.video:
            raise PrefetchError(f"demand video must be a non-empty name, got {self.video!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise PrefetchError(f"demand index must be an int >= 0, got {self.index!r}")
        e = self.expected
        if not _is_number(e) or not math.isfinite(e) or e < 0:
            raise PrefetchError(f"demand {self.helper} {self.video}/{self.index}: expected "
                                f"must be a finite number >= 0, got {e!r}")


_NOTHING: frozenset = frozenset()


def _route_of(dest: str, routes: Mapping[str, Sequence[str]], master: str) -> tuple[str, ...]:
    route = routes.get(dest)
    if route is None:
        return (master, dest)
    r = tuple(route)
    if (len(r) < 2 or r[-1] != dest or not all(isinstance(n, str) for n in r)
            or len(set(r)) != len(r)):
        raise PrefetchError(f"route to {dest!r} must be [source, ..., {dest!r}] without "
                            f"repeats, got {route!r}")
    return r


def _ranks(names: Iterable[str]) -> dict[str, int]:
    return {n: r for r, n in enumerate(sorted(set(names), key=lambda n: (natural_key(n), n)))}


def plan_pushes(demand: Iterable[Demand], *, size_of: Callable[[str, int], int],
                budget_bytes: int, master: str,
                cached: Optional[Mapping[str, Collection[Key]]] = None,
                in_flight: Optional[Mapping[str, Collection[Key]]] = None,
                blocked: Collection[Key] = frozenset(),
                cache_free: Optional[Mapping[str, int]] = None,
                routes: Optional[Mapping[str, Sequence[str]]] = None,
                min_expected: float = MIN_EXPECTED, keep_min: float = 0.1,
                newest: Optional[Mapping[str, int]] = None,
                nearest: Optional[NearestCopy] = None,
                holders: Optional[Mapping[Key, Collection[str]]] = None,
                link_room: Optional[LinkRoom] = None) -> list[Push]:
    """The pushes to make now, greedy by expected hits per byte, in the order chosen.

    ``demand``: :class:`Demand` rows; rows for the same helper and segment add up.
    ``cached`` / ``in_flight``: helper -> segments it holds / that are on their way to it.
    ``blocked``: segments never to push (e.g. superseded versions).  ``cache_free``: helper
    -> bytes it can still take without evicting (missing helper: unlimited); both the
    destination and every helper keeping a copy need room.  ``budget_bytes``: the master's
    uplink allowance; each push costs its size once.  ``routes``: helper -> mesh route
    ``[master, ..., helper]`` (missing helper: ``[master, helper]``).  A destination gets a
    push only when it expects at least ``min_expected`` requests; a helper on the route keeps
    a copy when it expects at least ``keep_min`` itself, lacks the segment and has room.

    ``newest``: live video -> its newest segment; rows past it are dropped (a segment that
    does not exist yet cannot be pushed).  ``nearest`` and ``holders`` (segment -> helpers
    holding a copy): the push starts at the copy nearest the destination, the master sending
    it only when no holder is nearer (:class:`~testbed.core.mesh.NearestCopy`); without
    them every push starts at the master.  ``link_room``: bytes each physical link can still take
    this round (:class:`~testbed.core.headroom.LinkRoom`); a push whose route lacks room
    waits for a later round.

    A push's ``expected_hits`` is the expected requests at its destination plus those at the
    helpers keeping a copy.  Ties in value per byte go to the shorter route, then helper,
    video and index in natural order.  The sizes sum to at most ``budget_bytes`` whatever
    node sends them; no push goes to, and no copy is kept at, a helper that has the
    segment, has it in flight or got it earlier in this plan.
    """
    _check_budget(budget_bytes)
    min_expected = _check_positive("min_expected", min_expected)
    keep_min = _check_positive("keep_min", keep_min)
    if not isinstance(master, str) or not master:
        raise PrefetchError(f"master must be a non-empty name, got {master!r}")
    cached = cached or {}
    in_flight = in_flight or {}
    routes = routes or {}
    free: dict[str, int] = {}
    for helper, room in (cache_free or {}).items():
        if isinstance(room, bool) or not isinstance(room, int) or room < 0:
            raise PrefetchError(f"cache_free of {helper!r} must be an int >= 0, got {room!r}")
        free[helper] = room

    # segment -> helper -> expected requests; repeated rows are summed with fsum (exact, so
    # the total does not depend on the order of the rows)
    by_seg: dict[Key, dict[str, float]] = {}
    repeats: dict[tuple[Key, str], list[float]] = {}
    newest = newest or {}
    for d in demand:
        if not isinstance(d, Demand):
            raise PrefetchError(f"demand rows must be Demand, got {d!r}")
        edge = newest.get(d.video)
        if edge is not None and d.index > edge:
            continue                                    # not produced yet
        seg = (d.video, d.index)
        at = by_seg.get(seg)
        if at is None:
            by_seg[seg] = {d.helper: d.expected}
        elif d.helper in at:
            repeats.setdefault((seg, d.helper), [at[d.helper]]).append(d.expected)
        else:
            at[d.helper] = d.expected
    for (seg, helper), values in repeats.items():
        by_seg[seg][helper] = math.fsum(values)

    def fits(helper: str, size: int) -> bool:
        room = free.get(helper)
        return room is None or size <= room

    paths: dict[str, tuple[tuple[str, ...], frozenset[str], dict[str, int]]] = {}
    helper_rank = _ranks(h for at in by_seg.values() for h in at)
    video_rank = _ranks(v for v, _ in by_seg)
    sizes: dict[Key, int] = {}
    keepers: dict[Key, frozenset[str]] = {}  # helpers that would keep a copy on the way
    cands = []
    for seg, at in by_seg.items():
        if seg in blocked:
            continue
        lacking = [(h, e) for h, e in at.items()
                   if seg not in cached.get(h, _NOTHING) and seg not in in_flight.get(h, _NOTHING)]
        if not any(e >= min_expected for _, e in lacking):
            continue
        video, index = seg
        size = size_of(video, index)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise PrefetchError(f"size_of({video!r}, {index}) must be an int >= 1, "
                                f"got {size!r}")
        if size > budget_bytes:
            continue
        sizes[seg] = size
        takers = [(h, e) for h, e in lacking if free.get(h, size) >= size]
        could_keep = keepers[seg] = frozenset(h for h, e in takers if e >= keep_min)
        for dest, value in takers:
            if value < min_expected:
                continue
            path = paths.get(dest)
            if path is None:
                route = _route_of(dest, routes, master)
                if nearest is not None and dest not in routes:
                    route = nearest.origin_route(dest) or route
                path = paths[dest] = (route, frozenset(route[1:-1]),
                                      {h: i for i, h in enumerate(route)})
            route, interior, position = path
            keep: tuple[str, ...] = ()
            if not interior.isdisjoint(could_keep):
                keep = tuple(sorted(interior & could_keep, key=position.__getitem__))
                value = math.fsum([value, *(at[h] for h in keep)])
            cands.append((-value / size, len(route), helper_rank[dest], video_rank[video],
                          index, dest, video, value, keep, route, nearest is None))
    heapq.heapify(cands)

    # Greedy: the best candidate left comes off the heap.  A value can only fall as the plan
    # grows (a keeper runs out of room or gets the segment), so a candidate whose value fell
    # goes back with its new value; one whose value held is the best left.  With nearest
    # copies a candidate's route is settled when it first comes off: from the copy nearest
    # its destination, valued again on that route (it goes back if that is worth less).
    covered: dict[Key, set[str]] = {}
    smallest = min(sizes.values(), default=0)
    pushes: list[Push] = []
    left = budget_bytes
    holders = holders or {}
    while cands and left >= smallest:
        cand = heapq.heappop(cands)
        _, hops, d_rank, v_rank, index, dest, video, value, keep, route, resolved = cand
        seg = (video, index)
        size = sizes[seg]
        got = covered.get(seg, _NOTHING)
        if size > left or dest in got or not fits(dest, size):
            continue                                    # none of these comes back
        if not resolved:  # the nearest copy may move the route: value it again on it
            have = [h for h in holders.get(seg, ()) if h != dest]
            near = nearest.route(dest, have) if have else None
            if near is not None and near != route:
                route = near
                position = {h: i for i, h in enumerate(route)}
                keep = tuple(sorted(keepers[seg].intersection(route[1:-1]).difference(have),
                                    key=position.__getitem__))
            lower = math.fsum([by_seg[seg][dest], *(by_seg[seg][h] for h in keep)])
            if lower < value:
                heapq.heappush(cands, (-lower / size, len(route), d_rank, v_rank, index, dest,
                                       video, lower, keep, route, True))
                continue
            value = lower
        if keep:
            still = tuple(h for h in keep if h not in got and fits(h, size))
            if still != keep:
                at = by_seg[seg]
                lower = math.fsum([at[dest], *(at[h] for h in still)])
                heapq.heappush(cands, (-lower / size, hops, d_rank, v_rank, index, dest,
                                       video, lower, still, route, True))
                continue
        if link_room is not None:
            if not link_room.fits(route, size):
                continue                                # waits for a round with room
            link_room.take(route, size)
        pushes.append(Push(video, index, dest, size, value, keep, route))
        left -= size
        covered.setdefault(seg, set()).update((dest, *keep))
        for helper in (dest, *keep):
            if helper in free:
                free[helper] -= size
    return pushes


class DemandPolicy(Protocol):
    """A policy planning from :class:`Demand`; the master calls ``plan_demand`` for it.

    ``predictor`` names what the master feeds it: the engine's ``model``, its ``playhead``
    or ``popularity`` baseline, or None for the known future (the oracle); ``horizon_s``
    is how far ahead that demand reaches (None: the engine's own horizon).
    """

    name: str
    predictor: Optional[str]
    horizon_s: Optional[float]

    def plan_demand(self, now: float, demand: Iterable[Demand],
                    cached: Mapping[str, Collection[Key]],
                    in_flight: Mapping[str, Collection[Key]],
                    size_of: Callable[[str, int], int], budget_bytes: int, *, master: str,
                    **network: object) -> list[Push]:
        """Pushes to make now, at most ``budget_bytes`` in total."""
        ...


class DemandPlanner:
    """Predictive prefetching: :func:`plan_pushes` over the prediction engine's demand.

    It has no ``plan``: the master calls :meth:`plan_demand` for it, with the engine's
    predictions as :class:`Demand` rows.  ``min_expected`` and ``keep_min`` are the
    planner's thresholds (see :func:`plan_pushes`).  Every demand policy is this class
    with another source of demand, so all of them plan with the same planner, budget and
    thresholds.
    """

    name = "predictive"
    predictor: Optional[str] = "model"

    def __init__(self, min_expected: float = MIN_EXPECTED, keep_min: float = 0.1) -> None:
        self.min_expected = _check_positive(f"{self.name} min_expected", min_expected)
        self.keep_min = _check_positive(f"{self.name} keep_min", keep_min)
        self.horizon_s: Optional[float] = None

    def plan_demand(self, now: float, demand: Iterable[Demand],
                    cached: Mapping[str, Collection[Key]],
                    in_flight: Mapping[str, Collection[Key]],
                    size_of: Callable[[str, int], int], budget_bytes: int, *, master: str,
                    **network: object) -> list[Push]:
        """:func:`plan_pushes` with this policy's thresholds (``now`` is not used);
        ``network``: its keyword arguments from ``blocked`` on (caches' room, routes, live
        edges, nearest copies, link room)."""
        return plan_pushes(demand, size_of=size_of, budget_bytes=budget_bytes, master=master,
                           cached=cached, in_flight=in_flight, min_expected=self.min_expected,
                           keep_min=self.keep_min, **network)  # type: ignore[arg-type]


class OraclePlanner(DemandPlanner):
    """The same planner fed the known future: the master passes the requests that will
    actually come as :class:`Demand` (an upper reference for the predictive policy)."""

    name = "oracle"
    predictor = None


class PlayheadPlanner(DemandPlanner):
    """The same planner fed playhead extrapolation: every running session keeps playing,
    so the segments it is due to ask for within the horizon are its demand (what the model
    must beat to be worth having)."""

    name = "playhead"
    predictor = "playhead"


class PopularityPlanner(DemandPlanner):
    """The same planner fed popularity, as a CDN pre-positions content: the first segments
    of the videos most started near each helper (prefix caching) and popular on-demand
    segments still ahead of its sessions, never a live segment (the engine's
    ``popularity`` predictor).  ``horizon_s``: how far ahead its expected requests reach
    (None: the engine's horizon, as the model's)."""

    name = "popularity"
    predictor = "popularity"

    def __init__(self, min_expected: float = MIN_EXPECTED, keep_min: float = 0.1,
                 horizon_s: Optional[float] = None) -> None:
        super().__init__(min_expected, keep_min)
        if horizon_s is not None:
            if not _is_number(horizon_s) or not 1 <= horizon_s <= 600:
                raise PrefetchError(f"{self.name} horizon_s must be a number of seconds "
                                    f"within 1..600, got {horizon_s!r}")
            self.horizon_s = float(horizon_s)


POLICIES: dict[str, type] = {"none": NoPrefetch, "next-segments": NextSegments,
                             "predictive": DemandPlanner, "playhead": PlayheadPlanner,
                             "popularity": PopularityPlanner, "oracle": OraclePlanner}


class FutureDemand:
    """The oracle's demand: requests known in advance, ``(at, helper, video, index)``.

    :meth:`between` counts those in ``(now, now + horizon_s]`` per helper and segment.
    """

    def __init__(self, requests: Iterable[tuple[float, str, str, int]]) -> None:
        rows = sorted(requests, key=lambda r: r[0])
        self._at = [float(r[0]) for r in rows]
        self._keys = [(str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def __len__(self) -> int:
        return len(self._at)

    def between(self, now: float, horizon_s: float) -> list[Demand]:
        lo = bisect.bisect_right(self._at, now)
        hi = bisect.bisect_right(self._at, now + horizon_s)
        counts = Counter(self._keys[lo:hi])
        return [Demand(h, v, i, float(n)) for (h, v, i), n in sorted(counts.items())]


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


def make_policy(spec: str) -> Union[PrefetchPolicy, DemandPolicy]:
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
