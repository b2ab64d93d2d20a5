"""Pingback: round-trip samples -> broadcast timing index -> tiers -> routing tables.

The master probes every helper; :class:`TimingIndex` keeps a robust latency per helper (the
smallest of the last few samples: queueing on a busy path only ever adds to a round trip,
so neither one delayed probe nor a link kept full by viewers' traffic moves a helper to
another tier; the minimum is the path's own latency, as LEDBAT's base delay or BBR's
minimum RTT) and forgets helpers that stop answering.  :func:`assign_tiers` groups the
helpers into tiers, centre (near the master) to edge; :func:`build_routing_tables` hangs
every tier under the one nearer the master, giving each helper a parent, its children and
its chain of ancestors.
:class:`Pingback` is the master's decision logic: it rebuilds the tables only when the
index changed enough to matter (:func:`significant_change`), so measurement noise never
makes the tree flap, and it believes changes of tier differently: a helper that measured
nearer is nearer (a round trip cannot be shorter than its path), so it moves towards the
centre at once; any other move (outwards, or inwards only because others measured farther
and the natural breaks shifted) happens only when the same move comes out of
``confirm_rounds`` rounds in a row (hysteresis), so a stalled probe, a few seconds of a
starved link emulator or a burst of queueing on a full far link never re-tier a helper.

Everything is pure: time comes in as ``now`` (seconds), latencies in milliseconds.  Names
sort naturally (``h2`` before ``h10``) wherever a tie has to be broken, so results depend
only on the inputs, never on dict order.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from testbed.core.spec import natural_key

#: Offset added to latencies before the natural-breaks split compares them as ratios: a
#: gap between 0.1 and 0.3 ms on a LAN is noise, a gap between 5 and 20 ms is a tier.
GAP_OFFSET_MS = 1.0


class TimingError(ValueError):
    """Bad input to the timing index, tiering or routing-table construction."""


def _check_latency(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TimingError(f"{what}: latency {value!r} is not a number")
    if not math.isfinite(value) or value < 0:
        raise TimingError(f"{what}: latency {value!r} (must be finite and >= 0)")
    return float(value)


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise TimingError(f"{what}: {name!r} is not a node name")
    return name


# --------------------------------------------------------------------------- timing index


class TimingIndex:
    """Per-helper round-trip latency from probe samples, with staleness and timeouts.

    window: samples kept per helper (the latency is their minimum: a change of the path
    itself shows once the older samples have left the window).  stale_after_s: a
    helper whose last answered probe is older than this leaves the index.  max_timeouts:
    that many timeouts in a row (no answer in between) also take it out, at once, so a
    dead helper is noticed within a probe round rather than after ``stale_after_s``.
    """

    def __init__(self, window: int = 9, stale_after_s: float = 60.0, *,
                 max_timeouts: int = 3) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise TimingError(f"window: {window!r} (must be an int >= 1)")
        if not (isinstance(stale_after_s, (int, float)) and stale_after_s > 0
                and math.isfinite(stale_after_s)):
            raise TimingError(f"stale_after_s: {stale_after_s!r} (must be finite and > 0)")
        if isinstance(max_timeouts, bool) or not isinstance(max_timeouts, int) \
                or max_timeouts < 1:
            raise TimingError(f"max_timeouts: {max_timeouts!r} (must be an int >= 1)")
        self.window = window
        self.stale_after_s = float(stale_after_s)
        self.max_timeouts = max_timeouts
        self._samples: dict[str, deque[float]] = {}
        self._last_ok: dict[str, float] = {}
        self._timeouts: dict[str, int] = {}
        self._latency: dict[str, float] = {}   # cached minimum

    def add_sample(self, helper: str, rtt_ms: float, now: float) -> None:
        """One answered probe: ``rtt_ms`` measured at ``now``."""
        _check_name("helper", helper)
        if isinstance(rtt_ms, bool) or not isinstance(rtt_ms, (int, float)) \
                or not math.isfinite(rtt_ms) or rtt_ms < 0:
            raise TimingError(f"helper {helper}: rtt {rtt_ms!r} ms (must be finite and >= 0)")
        samples = self._samples.get(helper)
        if samples is None:
            samples = self._samples[helper] = deque(maxlen=self.window)
        samples.append(float(rtt_ms))
        self._latency[helper] = min(samples)
        self._last_ok[helper] = now
        self._timeouts[helper] = 0

    def add_timeout(self, helper: str, now: float) -> None:
        """One unanswered probe (``now`` is accepted for symmetry and future use)."""
        _check_name("helper", helper)
        self._timeouts[helper] = self._timeouts.get(helper, 0) + 1

    def forget(self, helper: str) -> None:
        """Drop everything known about ``helper`` (it left the testbed)."""
        for table in (self._samples, self._last_ok, self._timeouts, self._latency):
            table.pop(helper, None)

    def latency(self, helper: str) -> Optional[float]:
        """Minimum of the last ``window`` samples (None if never answered), fresh or not."""
        return self._latency.get(helper)

    def samples(self, helper: str) -> int:
        """How many samples are held for ``helper`` (at most ``window``)."""
        s = self._samples.get(helper)
        return 0 if s is None else len(s)

    def timeouts(self, helper: str) -> int:
        """Timeouts in a row since ``helper`` last answered."""
        return self._timeouts.get(helper, 0)

    def helpers(self) -> list[str]:
        """Every helper heard of (answered or timed out), by name."""
        return sorted(self._timeouts, key=natural_key)

    def is_fresh(self, helper: str, now: float) -> bool:
        """Has a latency, answered within ``stale_after_s`` and not timed out too often."""
        last = self._last_ok.get(helper)
        return (last is not None and now - last <= self.stale_after_s
                and self._timeouts.get(helper, 0) < self.max_timeouts)

    def index(self, now: float) -> dict[str, float]:
        """Helpers with a fresh latency -> latency (ms), nearest first, ties by name."""
        fresh = [(lat, natural_key(h), h) for h, lat in self._latency.items()
                 if self.is_fresh(h, now)]
        fresh.sort()
        return {h: lat for lat, _, h in fresh}

    def reachable(self, now: float) -> list[str]:
        """The helpers of :meth:`index`, in its order (nearest first)."""
        return list(self.index(now))


# --------------------------------------------------------------------------- tiers


def _check_latencies(latency_ms: Mapping[str, float]) -> dict[str, float]:
    return {_check_name("helper", h): _check_latency(f"helper {h}", v)
            for h, v in latency_ms.items()}


def assign_tiers(latency_ms: Mapping[str, float], *, tier_count: Optional[int] = None,
                 bands_ms: Optional[Sequence[float]] = None) -> dict[str, int]:
    """Helper -> tier (1 = nearest the master), by latency from the master.

    Exactly one of:

    * ``bands_ms``: increasing upper bounds (inclusive); a helper at or below
      ``bands_ms[i]`` (and above the previous bound) is in tier ``i + 1``, above the last
      one in tier ``len(bands_ms) + 1``.  Tiers keep their band's number, so a band with
      no helper is an empty tier (:func:`build_routing_tables` skips it).
    * ``tier_count``: natural breaks.  The sorted latencies are split at the
      ``tier_count - 1`` largest gaps, a gap measured as the ratio ``(b + c) / (a + c)``
      with ``c`` = :data:`GAP_OFFSET_MS` (latency differences matter relative to their
      size: 5 -> 20 ms is a bigger step than 20 -> 40 ms).  Equal latencies are never
      split, so there are ``min(tier_count, distinct latencies)`` tiers, none empty.
      Equal gaps: the one nearer the master is cut first.
    """
    if (tier_count is None) == (bands_ms is None):
        raise TimingError("assign_tiers: give exactly one of tier_count and bands_ms")
    lat = _check_latencies(latency_ms)
    if bands_ms is not None:
        bands = [_check_latency("bands_ms", b) for b in bands_ms]
        if not bands:
            raise TimingError("bands_ms: empty (give at least one upper bound)")
        if any(b >= c for b, c in zip(bands, bands[1:])):
            raise TimingError(f"bands_ms: {list(bands_ms)!r} (must be strictly increasing)")
        return {h: bisect.bisect_left(bands, v) + 1 for h, v in lat.items()}
    if isinstance(tier_count, bool) or not isinstance(tier_count, int) or tier_count < 1:
        raise TimingError(f"tier_count: {tier_count!r} (must be an int >= 1)")
    values = sorted(set(lat.values()))
    # gap i lies between values[i] and values[i + 1]
    gaps = [((b + GAP_OFFSET_MS) / (a + GAP_OFFSET_MS), -i)
            for i, (a, b) in enumerate(zip(values, values[1:]))]
    cuts = sorted(-i for _, i in heapq.nlargest(tier_count - 1, gaps))
    tier_of_value: dict[float, int] = {}
    tier, c = 1, 0
    for i, v in enumerate(values):
        tier_of_value[v] = tier
        if c < len(cuts) and cuts[c] == i:
            tier += 1
            c += 1
    return {h: tier_of_value[v] for h, v in lat.items()}


def tiers_as_lists(tiers: Mapping[str, int]) -> list[list[str]]:
    """``[[tier-1 names], [tier-2 names], ...]``, names in natural order; a tier with no
    helper (possible with bands) is an empty list, so ``lists[t - 1]`` is tier ``t``."""
    out: list[list[str]] = []
    for h, t in tiers.items():
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise TimingError(f"helper {h}: tier {t!r} (must be an int >= 1)")
        while len(out) < t:
            out.append([])
        out[t - 1].append(h)
    for names in out:
        names.sort(key=natural_key)
    return out


def significant_change(old: Mapping[str, float], new: Mapping[str, float],
                       rel: float = 0.25, abs_ms: float = 2.0) -> bool:
    """True when a helper appeared or disappeared, or one moved by more than
    ``max(rel * old, abs_ms)``: the test for rebuilding tiers and tables."""
    if old.keys() != new.keys():
        return True
    return any(abs(new[h] - v) > max(rel * v, abs_ms) for h, v in old.items())


# --------------------------------------------------------------------------- routing tables


@dataclass(frozen=True)
class RoutingTable:
    """One node's place in the distribution tree.

    ``ancestors`` runs from the parent up to the master (empty for the master itself);
    ``children`` are nearest the master first.  The master has tier 0 and parent ``""``.
    """

    node: str
    tier: int
    parent: str
    children: tuple[str, ...]
    ancestors: tuple[str, ...]
    version: int

    @property
    def depth(self) -> int:
        """Hops from the master (0 for the master)."""
        return len(self.ancestors)

    @property
    def place(self) -> tuple:
        """The table without its version: when latencies move but the place stays, the
        node need not be told again."""
        return (self.tier, self.parent, self.children, self.ancestors)


class _Nearest:
    """The helpers of one tier with spare capacity, searchable by latency from the master.

    Distinct latencies are kept sorted, each with its helpers in natural name order, so the
    nearest by ``|latency difference|`` (ties by name) is a bisection away, and a helper
    that fills up is removed in O(tier size) memmove at worst.
    """

    def __init__(self, names: Iterable[str], lat: Mapping[str, float],
                 key: Mapping[str, tuple]) -> None:
        groups: dict[float, list[str]] = {}
        for n in names:
            groups.setdefault(lat[n], []).append(n)
        self.values = sorted(groups)
        self.groups = [sorted(groups[v], key=key.__getitem__) for v in self.values]
        self.lat = lat
        self.key = key

    def nearest(self, x: float) -> Optional[str]:
        i = bisect.bisect_left(self.values, x)
        best: Optional[tuple] = None
        for j in (i - 1, i):
            if 0 <= j < len(self.values):
                head = self.groups[j][0]
                cand = (abs(self.values[j] - x), self.key[head], head)
                if best is None or cand < best:
                    best = cand
        return None if best is None else best[2]

    def remove(self, name: str) -> None:
        j = bisect.bisect_left(self.values, self.lat[name])
        group = self.groups[j]
        group.remove(name)
        if not group:
            del self.values[j]
            del self.groups[j]


def _pair_index(pair_latency: Optional[Mapping[tuple[str, str], float]],
                members: Mapping[str, int]) -> dict[str, list[tuple[float, str]]]:
    """Node -> [(pair latency, other node)], both directions, among ``members``; a pair
    given both ways with different values counts at the worse of the two."""
    if not pair_latency:
        return {}
    worst: dict[tuple[str, str], float] = {}
    for pair, value in pair_latency.items():
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TimingError(f"pair_latency: key {pair!r} is not a (node, node) pair")
        a, b = pair
        v = _check_latency(f"pair {a}-{b}", value)
        if a == b or a not in members or b not in members:
            continue
        k = (a, b) if a < b else (b, a)
        worst[k] = max(v, worst.get(k, v))
    index: dict[str, list[tuple[float, str]]] = {}
    for (a, b), v in worst.items():
        index.setdefault(a, []).append((v, b))
        index.setdefault(b, []).append((v, a))
    return index


def build_routing_tables(master: str, latency_ms: Mapping[str, float],
                         tiers: Mapping[str, int], version: int,
                         fanout: Optional[int] = None,
                         pair_latency: Optional[Mapping[tuple[str, str], float]] = None,
                         ) -> dict[str, RoutingTable]:
    """Every node's :class:`RoutingTable`: a tree rooted at ``master``, centre to edge.

    The helpers are the keys of ``tiers`` (each needs a latency in ``latency_ms``; extra
    latencies are ignored).  Helpers of the lowest occupied tier (tier 1 normally) hang
    from the master.  A helper of tier ``t`` gets a parent from the nearest occupied tier
    below ``t``: the one nearest by ``pair_latency`` if any pair to an eligible parent is
    known (keys in either order), else the one nearest by ``|latency difference|``; ties by
    name.  ``fanout`` caps the children of every *helper* (the master takes all tier-1
    helpers whatever the fanout): helpers are placed nearest the master first, and when a
    tier is full a helper hangs from the tier below that, down to the master, so the tree
    always keeps parent tier < child tier.  O(n log n) without pair latencies.
    """
    _check_name("master", master)
    if isinstance(version, bool) or not isinstance(version, int):
        raise TimingError(f"version: {version!r} (must be an int)")
    if fanout is not None and (isinstance(fanout, bool) or not isinstance(fanout, int)
                               or fanout < 1):
        raise TimingError(f"fanout: {fanout!r} (must be None or an int >= 1)")
    if master in tiers:
        raise TimingError(f"master {master}: must not be given a tier")
    lat: dict[str, float] = {}
    for h, t in tiers.items():
        _check_name("helper", h)
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise TimingError(f"helper {h}: tier {t!r} (must be an int >= 1)")
        if h not in latency_ms:
            raise TimingError(f"helper {h}: has a tier but no latency")
        lat[h] = _check_latency(f"helper {h}", latency_ms[h])
    key = {h: natural_key(h) for h in tiers}
    order = sorted(tiers, key=lambda h: (tiers[h], lat[h], key[h]))
    by_tier: dict[int, list[str]] = {}
    for h in order:
        by_tier.setdefault(tiers[h], []).append(h)
    occupied = sorted(by_tier)
    search = {t: _Nearest(names, lat, key) for t, names in by_tier.items()}
    pairs = _pair_index(pair_latency, tiers)
    load: dict[str, int] = {}
    parent: dict[str, str] = {}
    children: dict[str, list[str]] = {master: []}

    def open_(p: str) -> bool:
        return fanout is None or load.get(p, 0) < fanout

    for pos, t in enumerate(occupied):
        below = occupied[:pos][::-1]
        for h in by_tier[t]:
            pick = master
            for lower in below:
                known = [(d, key[p], p) for d, p in pairs.get(h, ())
                         if tiers[p] == lower and open_(p)]
                cand = min(known)[2] if known else search[lower].nearest(lat[h])
                if cand is not None:
                    pick = cand
                    break
            parent[h] = pick
            children.setdefault(pick, []).append(h)
            if pick != master:
                load[pick] = load.get(pick, 0) + 1
                if not open_(pick):
                    search[tiers[pick]].remove(pick)

    tables = {master: RoutingTable(master, 0, "", _sorted_children(children[master], lat, key),
                                   (), version)}
    ancestors: dict[str, tuple[str, ...]] = {master: ()}
    for h in order:
        p = parent[h]
        ancestors[h] = (p, *ancestors[p])
        tables[h] = RoutingTable(h, tiers[h], p,
                                 _sorted_children(children.get(h, ()), lat, key),
                                 ancestors[h], version)
    return tables


def _sorted_children(names: Iterable[str], lat: Mapping[str, float],
                     key: Mapping[str, tuple]) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda h: (lat[h], key[h])))


# --------------------------------------------------------------------------- pingback


class Pingback:
    """The master's pingback logic: samples in, routing tables out when they should change.

    Tiering is by ``tier_count`` or ``bands_ms`` (at most one; neither means two tiers).
    A helper joins the tables once it has ``min_samples`` samples and a fresh latency.
    The first tables are built as soon as every fresh helper has that many (the first full
    index); after that, tables are rebuilt (version + 1) only when the index differs
    significantly (:func:`significant_change` with ``rel``/``abs_ms``) from the latencies
    the current tables were built from, so slow drift is caught but noise is not.
    Neighbour reports (:meth:`report_neighbours`) feed ``pair_latency`` at the next build.
    A rebuild that would move a known helper to another tier waits until the same moves
    have come out of ``confirm_rounds`` calls of :meth:`recompute` in a row (one call a
    pingback round), unless the helper moves nearer because its own latency fell
    significantly; helpers joining or leaving rebuild at once.
    """

    def __init__(self, master: str, tier_count: Optional[int] = None,
                 bands_ms: Optional[Sequence[float]] = None, fanout: Optional[int] = None,
                 min_samples: int = 3, *, window: int = 9, stale_after_s: float = 60.0,
                 max_timeouts: int = 3, rel: float = 0.25, abs_ms: float = 2.0,
                 confirm_rounds: int = 3, version: int = 0) -> None:
        _check_name("master", master)
        if tier_count is not None and bands_ms is not None:
            raise TimingError("Pingback: give at most one of tier_count and bands_ms")
        if tier_count is None and bands_ms is None:
            tier_count = 2
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) \
                or min_samples < 1:
            raise TimingError(f"min_samples: {min_samples!r} (must be an int >= 1)")
        if isinstance(confirm_rounds, bool) or not isinstance(confirm_rounds, int) \
                or confirm_rounds < 1:
            raise TimingError(f"confirm_rounds: {confirm_rounds!r} (must be an int >= 1)")
        if min_samples > window:
            raise TimingError(f"min_samples: {min_samples} exceeds window {window}")
        assign_tiers({}, tier_count=tier_count,
                     bands_ms=None if bands_ms is None else tuple(bands_ms))  # validates
        if fanout is not None and (isinstance(fanout, bool) or not isinstance(fanout, int)
                                   or fanout < 1):
            raise TimingError(f"fanout: {fanout!r} (must be None or an int >= 1)")
        for name, value in (("rel", rel), ("abs_ms", abs_ms)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise TimingError(f"{name}: {value!r} (must be finite and >= 0)")
        self.master = master
        self.tier_count = tier_count
        self.bands_ms = None if bands_ms is None else tuple(bands_ms)
        self.fanout = fanout
        self.min_samples = min_samples
        self.rel = rel
        self.abs_ms = abs_ms
        self.confirm_rounds = confirm_rounds
        self._doubtful: Optional[dict[str, int]] = None  # tier moves seen, not yet believed
        self._doubtful_rounds = 0
        self.index = TimingIndex(window, stale_after_s, max_timeouts=max_timeouts)
        self._version = version
        self._tables: dict[str, RoutingTable] = {}
        self._tiers: dict[str, int] = {}
        self._basis: Optional[dict[str, float]] = None
        self._pairs: dict[str, dict[str, float]] = {}

    @property
    def tables(self) -> dict[str, RoutingTable]:
        """The current tables (empty before the first build)."""
        return dict(self._tables)

    @property
    def tiers(self) -> dict[str, int]:
        """Helper -> tier of the current tables."""
        return dict(self._tiers)

    @property
    def version(self) -> int:
        """Version of the current tables (the initial ``version``, 0, before any)."""
        return self._version

    @property
    def pending_moves(self) -> dict[str, int]:
        """Tier moves seen but not yet believed (helper -> new tier)."""
        return dict(self._doubtful or {})

    @property
    def basis(self) -> dict[str, float]:
        """The latencies the current tables were built from."""
        return dict(self._basis or {})

    def record(self, helper: str, rtt_ms: Optional[float], now: float) -> None:
        """One probe result: a round trip in ms, or None for a timeout."""
        if rtt_ms is None:
            self.index.add_timeout(helper, now)
        else:
            self.index.add_sample(helper, rtt_ms, now)

    def report_neighbours(self, helper: str, latency_ms: Mapping[str, float]) -> None:
        """A helper's measured latencies to its peers (replaces its previous report)."""
        _check_name("helper", helper)
        self._pairs[helper] = {_check_name("peer", p): _check_latency(f"pair {helper}-{p}", v)
                               for p, v in latency_ms.items()}

    def pair_latency(self) -> dict[tuple[str, str], float]:
        """All neighbour reports as ``(helper, peer) -> ms``."""
        return {(h, p): v for h, row in self._pairs.items() for p, v in row.items()}

    def ready(self, now: float) -> tuple[dict[str, float], list[str]]:
        """``(latencies of helpers with enough samples, fresh helpers still warming up)``."""
        ready: dict[str, float] = {}
        pending: list[str] = []
        for h, v in self.index.index(now).items():
            if self.index.samples(h) >= self.min_samples:
                ready[h] = v
            else:
                pending.append(h)
        return ready, pending

    def recompute(self, now: float, force: bool = False) -> Optional[dict[str, RoutingTable]]:
        """New tables if they are due (see the class), else None."""
        ready, pending = self.ready(now)
        if self._basis is None:
            if not force and (pending or not ready):
                return None
        elif not force and not self._doubtful \
                and not significant_change(self._basis, ready, self.rel, self.abs_ms):
            return None
        tiers = assign_tiers(ready, tier_count=self.tier_count, bands_ms=self.bands_ms)
        basis = ready
        if not force and self._basis is not None and ready.keys() == self._basis.keys():
            old = self._basis
            # believed at once: a helper moving nearer because it measured nearer
            doubtful = {h: t for h, t in tiers.items() if t != self._tiers[h] and not (
                t < self._tiers[h] and old[h] - ready[h] > max(self.rel * old[h], self.abs_ms))}
            seen = self._doubtful_rounds + 1 if doubtful and doubtful == self._doubtful else 1
            self._doubtful, self._doubtful_rounds = doubtful or None, seen if doubtful else 0
            if doubtful and seen < self.confirm_rounds:
                # not yet believed: these helpers keep their tier and the latency it was
                # built from; anything else that changed goes ahead
                tiers = {**tiers, **{h: self._tiers[h] for h in doubtful}}
                basis = {**ready, **{h: old[h] for h in doubtful}}
                if not significant_change(old, basis, self.rel, self.abs_ms):
                    return None
            elif doubtful:
                self._doubtful, self._doubtful_rounds = None, 0
            elif not significant_change(old, ready, self.rel, self.abs_ms):
                return None  # a pending move came to nothing and nothing else changed
        else:
            self._doubtful, self._doubtful_rounds = None, 0
        self._version += 1
        self._tables = build_routing_tables(self.master, ready, tiers, self._version,
                                            self.fanout, self.pair_latency() or None)
        self._tiers = tiers
        self._basis = basis
        return dict(self._tables)
