"""Room for pushes on the emulated links: what viewers' own traffic leaves free.

The master plans pushes through the mesh, but a mesh hop between two helpers crosses
physical links that viewers' fetches also need.  Pushes must never take that headroom.
This module gives the planner, per planning round, the bytes each directed physical link
can still take:

* :class:`PhysicalPaths` maps a hop between two hosts onto the directed links it crosses
  (the shortest path by configured delay in the topology spec, as the switches forward it),
  and gives the least delay and narrowest rate the spec allows between two hosts (what the
  master can verify of a helper's measurements);
* :func:`link_room`: ``capacity * (1 - reserve)`` less the load that is not the master's own
  pushes (the measured rate from the switches' port counters, minus the push rate the
  master itself put on the link), times the planning interval; a link never measured is
  bounded by its capacity alone;
* :class:`LinkRoom` is that budget for one round: a push is planned only when every link
  on its route has room for it, and takes its bytes from each (what does not fit waits
  for a round when the link has room).

Pure: spec, rates and ``now`` in, bytes out.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

import networkx as nx

Link = tuple[str, str]  # a directed link (from, to), named by the spec's nodes
#: Share of every link's capacity pushes leave to everything else by default.
DEFAULT_RESERVE = 0.2


class HeadroomError(ValueError):
    """Bad input to the headroom computation."""


class PhysicalPaths:
    """Directed links of the path between two hosts in the topology spec (cached)."""

    def __init__(self, spec: nx.Graph) -> None:
        self.spec = spec
        self._paths: dict[Link, tuple[Link, ...]] = {}
        self._floors: dict[Link, float] = {}

    def hop_links(self, a: str, b: str) -> tuple[Link, ...]:
        """The directed links from ``a`` to ``b``; empty when either is unknown or
        unreachable (such a hop is not constrained)."""
        key = (a, b)
        got = self._paths.get(key)
        if got is None:
            try:
                nodes = nx.shortest_path(self.spec, a, b, weight=_delay)
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                nodes = []
            got = self._paths[key] = tuple(zip(nodes, nodes[1:]))
        return got

    def floors_from(self, source: str) -> dict[str, float]:
        """Every node's least configured one-way delay (ms) from ``source``, over any path:
        what no measurement can beat.  One pass; empty when ``source`` is unknown."""
        if source not in self.spec:
            return {}
        return nx.single_source_dijkstra_path_length(self.spec, source, weight=_bare_delay)

    def floor_ms(self, a: str, b: str) -> float:
        """The least configured one-way delay (ms) between ``a`` and ``b`` over any path;
        0 when either is unknown or unreachable (nothing is known of it)."""
        key = (a, b) if a <= b else (b, a)
        got = self._floors.get(key)
        if got is None:
            try:
                got = nx.bidirectional_dijkstra(self.spec, a, b, weight=_bare_delay)[0]
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                got = 0.0
            self._floors[key] = got = float(got)
        return got

    def ceiling_mbit(self, a: str, b: str) -> Optional[float]:
        """The narrowest configured rate (Mbit/s) on the path from ``a`` to ``b``; None when
        no link on it has one (or the path is unknown)."""
        rates = [self.spec.edges[link].get("bw_mbit") for link in self.hop_links(a, b)]
        rates = [float(r) for r in rates if r]
        return min(rates) if rates else None

    def route_links(self, route: Sequence[str]) -> list[Link]:
        """Every directed link a route ``[source, ..., dest]`` crosses, hop by hop (a link
        crossed twice is listed twice)."""
        return [link for a, b in zip(route, route[1:]) for link in self.hop_links(a, b)]

    def capacities(self) -> dict[Link, float]:
        """Directed link -> configured rate in Mbit/s, for the links that have one."""
        out: dict[Link, float] = {}
        for a, b, data in self.spec.edges(data=True):
            bw = data.get("bw_mbit")
            if bw:
                out[(a, b)] = out[(b, a)] = float(bw)
        return out


def _delay(u: str, v: str, data: Mapping) -> float:
    return float(data.get("delay_ms") or 0.0) + 1e-3  # + a hop: fewer hops win ties


def _bare_delay(u: str, v: str, data: Mapping) -> float:
    return float(data.get("delay_ms") or 0.0)


def links_graph(links: Iterable[tuple[str, str, Optional[float], Optional[float]]]) -> nx.Graph:
    """The topology spec as a plan names its links: ``(a, b, delay_ms, bw_mbit)``."""
    spec = nx.Graph()
    for a, b, delay_ms, bw_mbit in links:
        spec.add_edge(a, b, delay_ms=delay_ms, bw_mbit=bw_mbit)
    return spec


def link_room(capacity_mbit: Mapping[Link, float], measured_mbit: Mapping[Link, float],
              own_push_mbit: Mapping[Link, float], interval_s: float,
              reserve: float = DEFAULT_RESERVE) -> dict[Link, float]:
    """Bytes each directed link can take in pushes over the next ``interval_s``.

    ``measured_mbit``: the link's current rate (all traffic, pushes included) where it was
    measured; ``own_push_mbit``: the rate of the pushes the planner itself put on it
    lately (they are in the measured rate and are not what pushes must yield to).
    """
    if not 0.0 <= reserve < 1.0:
        raise HeadroomError(f"reserve must be within 0..1 (excluded), got {reserve!r}")
    if not interval_s > 0:
        raise HeadroomError(f"interval_s must be > 0, got {interval_s!r}")
    room = {}
    for link, cap in capacity_mbit.items():
        others = max(0.0, measured_mbit.get(link, 0.0) - own_push_mbit.get(link, 0.0))
        free = max(0.0, cap * (1.0 - reserve) - others)
        room[link] = free * 1e6 / 8 * interval_s
    return room


class LinkRoom:
    """The bytes pushes may still put on each directed link in this round."""

    def __init__(self, room: Mapping[Link, float], paths: PhysicalPaths) -> None:
        self.room = dict(room)
        self.paths = paths

    def fits(self, route: Sequence[str], size: int) -> bool:
        """Whether every link on ``route`` has room for ``size`` more bytes."""
        need: dict[Link, int] = {}
        for link in self.paths.route_links(route):
            need[link] = need.get(link, 0) + size
        return all(self.room.get(link, math.inf) >= n for link, n in need.items())

    def take(self, route: Sequence[str], size: int) -> None:
        for link in self.paths.route_links(route):
            if link in self.room:
                self.room[link] -= size


class PushLoad:
    """The push rate the master itself put on each directed link over the last
    ``window_s`` (what the measured rates contain of its own pushes)."""

    def __init__(self, window_s: float = 2.0) -> None:
        if not window_s > 0:
            raise HeadroomError(f"window_s must be > 0, got {window_s!r}")
        self.window_s = window_s
        self._sent: deque[tuple[float, tuple[Link, ...], int]] = deque()

    def add(self, now: float, links: Iterable[Link], size: int) -> None:
        self._sent.append((now, tuple(links), size))

    def mbit(self, now: float) -> dict[Link, float]:
        while self._sent and self._sent[0][0] < now - self.window_s:
            self._sent.popleft()
        out: dict[Link, float] = {}
        for _, links, size in self._sent:
            for link in links:
                out[link] = out.get(link, 0.0) + size * 8 / 1e6 / self.window_s
        return out


def parse_load(doc: object, now: float, max_age_s: float = 5.0
               ) -> Optional[dict[Link, float]]:
    """``{"at": t, "links": [{"a", "b", "ab_mbit", "ba_mbit"}, ...]}`` (the link load the
    harness relays from the controller) -> directed link -> Mbit/s; None when missing,
    malformed or older than ``max_age_s``."""
    if not isinstance(doc, Mapping):
        return None
    at = doc.get("at")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or now - at > max_age_s:
        return None
    out: dict[Link, float] = {}
    for row in doc.get("links") or ():
        try:
            a, b = str(row["a"]), str(row["b"])
            ab, ba = row.get("ab_mbit"), row.get("ba_mbit")
        except (KeyError, TypeError):
            return None
        for link, v in (((a, b), ab), ((b, a), ba)):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[link] = max(0.0, float(v))
    return out
