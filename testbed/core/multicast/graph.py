"""The switch graph the trees are computed on: integer link costs, the port of every
arc, and a deterministic Dijkstra (among equal paths the lowest dpid wins, as in l2)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Container, Iterable, Mapping
from typing import Optional

import networkx as nx

from testbed.core.igmp import MulticastError
from testbed.core.l2 import NetView, path_cost

_INF = math.inf


class _SwitchGraph:
    """The switch graph as integer-cost adjacency lists plus the port of every arc."""

    def __init__(self, view: NetView, g: Optional[nx.Graph], weight: Optional[str]):
        g = view.graph() if g is None else g
        self.dpid = {n: view.switches[n].dpid for n in g.nodes}
        self.adj: dict[str, list[tuple[str, int]]] = {n: [] for n in g.nodes}
        self.port: dict[tuple[str, str], int] = {}
        for u, v, data in g.edges(data=True):
            cost = _edge_cost(data, weight, u, v)
            self.adj[u].append((v, cost))
            self.adj[v].append((u, cost))
            self.port[u, v] = data["ports"][u]
            self.port[v, u] = data["ports"][v]
        for nbrs in self.adj.values():
            nbrs.sort(key=lambda vc: self.dpid[vc[0]])

    def dijkstra(
        self,
        sources: Iterable[str],
        dist: dict[str, float],
        pred: dict[str, str],
        target: Optional[str] = None,
        banned: Container[tuple[str, str]] = frozenset(),
        extra: Container[tuple[str, str]] = frozenset(),
    ) -> None:
        """Shortest distances from ``sources`` (set to 0), updating ``dist``/``pred`` in
        place where they improve; among equal predecessors the lowest dpid wins.  Arcs
        ``(u, v)`` in ``banned`` or ``extra`` are not used.  Stops once ``target`` is final.
        """
        heap = []
        for s in sources:
            dist[s] = 0
            pred.pop(s, None)
            heap.append((0, self.dpid[s], s))
        heapq.heapify(heap)
        while heap:
            d, _, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            if u == target:
                return
            for v, cost in self.adj[u]:
                if (u, v) in banned or (u, v) in extra:
                    continue
                nd = d + cost
                old = dist.get(v, _INF)
                if nd < old:
                    dist[v] = nd
                    pred[v] = u
                    heapq.heappush(heap, (nd, self.dpid[v], v))
                elif nd == old and v in pred and self.dpid[u] < self.dpid[pred[v]]:
                    pred[v] = u


def _edge_cost(data: Mapping, weight: Optional[str], u: str, v: str) -> int:
    if weight is None:
        return 1
    value = data.get(weight)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise MulticastError(f"link {u}-{v} {weight}: {value!r} (must be a number >= 0)")
    return path_cost(value)


def _walk(pred: Mapping[str, str], start: str, stop: Container[str]) -> list[str]:
    """The path from the first node in ``stop`` down to ``start``, following ``pred``."""
    path = [start]
    while path[-1] not in stop:
        path.append(pred[path[-1]])
    path.reverse()
    return path
