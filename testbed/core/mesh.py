"""The helper mesh: neighbour choice on each helper, push routes on the master.

* A helper measures its peers (:class:`PeerMetric`) and keeps ``k`` neighbours with
  :class:`NeighbourSelector`.  Peers are ranked by :func:`link_cost` of a reference
  transfer (latency plus the time to send one typical segment), so both latency and
  bandwidth count in one unit, milliseconds.  A neighbour is kept until it degrades
  against what it was when chosen, or until a peer beats the worst neighbour by a clear
  margin: with ±10 % measurement noise nothing flaps.
* The master joins the helpers' reports into one undirected graph (:func:`mesh_graph`,
  each link at the worse of its two measurements) and routes a push from whichever copy
  is cheapest to reach the destination (:func:`push_route`, multi-source Dijkstra).

Pure: metrics and ``now`` in, decisions out.  Ties go to the name that sorts first
naturally (``h2`` before ``h10``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Optional

import networkx as nx

from testbed.core.spec import natural_key

#: Size of the reference transfer neighbours are ranked by: one 2 s segment at 400 kbit/s.
REF_BYTES = 100_000
#: Latencies below this count as this much when judging a relative rise, so sub-ms noise on
#: a LAN link is not a "50 % rise".
LATENCY_FLOOR_MS = 0.5


class MeshError(ValueError):
    """Bad input to neighbour selection or push routing."""


def _number(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise MeshError(f"{what}: {value!r} is not a number")
    return float(value)


@dataclass(frozen=True)
class PeerMetric:
    """A measured link to a peer: round-trip latency (ms) and available bandwidth (Mbit/s).

    A bandwidth of 0 means nothing gets through (infinite transfer time).
    """

    latency_ms: float
    bw_mbit: float

    def __post_init__(self) -> None:
        lat = _number("latency_ms", self.latency_ms)
        bw = _number("bw_mbit", self.bw_mbit)
        if not math.isfinite(lat) or lat < 0:
            raise MeshError(f"latency_ms: {self.latency_ms!r} (must be finite and >= 0)")
        if bw < 0:
            raise MeshError(f"bw_mbit: {self.bw_mbit!r} (must be >= 0)")


def _cost(latency_ms: float, bw_mbit: float, size_bytes: int) -> float:
    if size_bytes == 0:
        return latency_ms
    if bw_mbit <= 0:
        return math.inf
    return latency_ms + size_bytes * 8 / (bw_mbit * 1000.0)   # bits / (bits per ms)


def link_cost(m: PeerMetric, size_bytes: int = 0) -> float:
    """Milliseconds to move ``size_bytes`` over the link: latency + transfer time.

    ``inf`` when the link has no bandwidth and there is something to send.
    """
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
        raise MeshError(f"size_bytes: {size_bytes!r} (must be an int >= 0)")
    return _cost(m.latency_ms, m.bw_mbit, size_bytes)


# --------------------------------------------------------------------------- neighbours


@dataclass(frozen=True)
class NeighbourChange:
    """What one :meth:`NeighbourSelector.update` did.

    ``reasons`` names why each added or dropped peer moved: dropped ``"vanished"``,
    ``"latency"``, ``"bandwidth"`` (degraded since chosen) or ``"replaced"`` (a peer beat
    it); added ``"free_slot"`` or ``"better"``.  A degraded neighbour that is still among
    the best is kept (its baseline is re-taken) and appears in neither tuple.
    """

    added: tuple[str, ...]
    dropped: tuple[str, ...]
    neighbours: tuple[str, ...]
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.dropped)


class NeighbourSelector:
    """Keeps up to ``k`` mesh neighbours, with hysteresis.

    latency_rise, bw_drop: a neighbour whose latency rose above ``latency_rise`` times, or
    whose bandwidth fell below ``bw_drop`` times, its value when chosen loses its slot,
    which is then refilled from all peers (it may win it back).  better_by: a peer replaces
    the worst neighbour only if its cost is below ``(1 - better_by)`` times the worst's.
    ref_bytes: the transfer size peers are ranked by (:func:`link_cost`).  hold_down_s:
    least time between two "better" swaps (degradation acts at once).
    """

    def __init__(self, k: int, latency_rise: float = 1.5, bw_drop: float = 0.5,
                 better_by: float = 0.3, *, ref_bytes: int = REF_BYTES,
                 hold_down_s: float = 0.0) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise MeshError(f"k: {k!r} (must be an int >= 0)")
        if not _number("latency_rise", latency_rise) > 1:
            raise MeshError(f"latency_rise: {latency_rise!r} (must be > 1)")
        if not 0 <= _number("bw_drop", bw_drop) < 1:
            raise MeshError(f"bw_drop: {bw_drop!r} (must be in [0, 1))")
        if not 0 <= _number("better_by", better_by) < 1:
            raise MeshError(f"better_by: {better_by!r} (must be in [0, 1))")
        if _number("hold_down_s", hold_down_s) < 0:
            raise MeshError(f"hold_down_s: {hold_down_s!r} (must be >= 0)")
        link_cost(PeerMetric(0.0, 1.0), ref_bytes)   # validates ref_bytes
        self.k = k
        self.latency_rise = float(latency_rise)
        self.bw_drop = float(bw_drop)
        self.better_by = float(better_by)
        self.ref_bytes = ref_bytes
        self.hold_down_s = float(hold_down_s)
        self._chosen: dict[str, PeerMetric] = {}   # neighbour -> metric when chosen
        self._swapped_at = -math.inf

    @property
    def neighbours(self) -> tuple[str, ...]:
        """Current neighbours in natural name order."""
        return tuple(sorted(self._chosen, key=natural_key))

    def baseline(self, peer: str) -> Optional[PeerMetric]:
        """The metric ``peer`` had when it became (or was last confirmed) a neighbour."""
        return self._chosen.get(peer)

    def cost(self, m: PeerMetric) -> float:
        """The ranking cost of a peer: :func:`link_cost` of ``ref_bytes``."""
        return _cost(m.latency_ms, m.bw_mbit, self.ref_bytes)

    def _degraded(self, peer: str, m: Optional[PeerMetric]) -> Optional[str]:
        if m is None:
            return "vanished"
        base = self._chosen[peer]
        if m.latency_ms > self.latency_rise * max(base.latency_ms, LATENCY_FLOOR_MS):
            return "latency"
        if m.bw_mbit < self.bw_drop * base.bw_mbit:
            return "bandwidth"
        return None

    def update(self, metrics: Mapping[str, PeerMetric], now: float) -> NeighbourChange:
        """Re-choose neighbours from the latest peer measurements."""
        for peer, m in metrics.items():
            if not isinstance(m, PeerMetric):
                raise MeshError(f"peer {peer}: {m!r} is not a PeerMetric")
        before = dict(self._chosen)
        why_out: dict[str, str] = {}
        why_in: dict[str, str] = {}
        keep: dict[str, PeerMetric] = {}
        for peer, base in before.items():
            reason = self._degraded(peer, metrics.get(peer))
            if reason is None:
                keep[peer] = base
            else:
                why_out[peer] = reason
        key = {p: (self.cost(m), natural_key(p), p) for p, m in metrics.items()}
        ranked = sorted(key[p] for p in metrics
                        if p not in keep and math.isfinite(key[p][0]))
        ranked_iter = iter(ranked)
        # fill free slots with the best peers (a degraded neighbour may win its slot back)
        while len(keep) < self.k:
            nxt = next(ranked_iter, None)
            if nxt is None:
                break
            peer = nxt[2]
            keep[peer] = metrics[peer]
            if peer in before:
                why_out.pop(peer, None)        # kept, baseline re-taken
            else:
                why_in[peer] = "free_slot"
        # swap the worst neighbour for a clearly better peer, if the hold-down allows
        if now - self._swapped_at >= self.hold_down_s:
            swapped = False
            for cand in ranked_iter:
                if not keep:
                    break
                worst = max(keep, key=lambda p: key[p])
                if not cand[0] < (1 - self.better_by) * key[worst][0]:
                    break
                del keep[worst]
                if worst in why_in:
                    del why_in[worst]
                else:
                    why_out[worst] = "replaced"
                peer = cand[2]
                keep[peer] = metrics[peer]
                if peer in before:
                    why_out.pop(peer, None)    # a degraded neighbour back: baseline re-taken
                else:
                    why_in[peer] = "better"
                swapped = True
            if swapped:
                self._swapped_at = now
        self._chosen = keep
        added = tuple(sorted(why_in, key=natural_key))
        dropped = tuple(sorted(why_out, key=natural_key))
        return NeighbourChange(added, dropped, self.neighbours, {**why_out, **why_in})


# --------------------------------------------------------------------------- push routes


def mesh_graph(reports: Mapping[str, Mapping[str, PeerMetric]], master: Optional[str] = None,
               master_links: Optional[Mapping[str, PeerMetric]] = None) -> nx.Graph:
    """The measured mesh as an undirected graph with ``latency_ms`` and ``bw_mbit`` per edge.

    ``reports`` is helper -> peer -> metric as each helper measured it; a link reported by
    both ends takes the worse of the two (higher latency, lower bandwidth).  Every
    reporting helper is a node, even with no links.  ``master_links`` (helper -> metric)
    adds the master's links and needs ``master``.  Nodes and edges are added in natural
    name order, so equal-cost routes resolve the same way every time.
    """
    if master_links and master is None:
        raise MeshError("mesh_graph: master_links given without master")
    links: dict[tuple[str, str], tuple[float, float]] = {}

    def add(a: str, b: str, m: PeerMetric) -> None:
        if not isinstance(m, PeerMetric):
            raise MeshError(f"link {a}-{b}: {m!r} is not a PeerMetric")
        if a == b:
            raise MeshError(f"link {a}-{b}: a node cannot be its own peer")
        k = (a, b) if natural_key(a) <= natural_key(b) else (b, a)
        old = links.get(k)
        if old is None:
            links[k] = (m.latency_ms, m.bw_mbit)
        else:
            links[k] = (max(old[0], m.latency_ms), min(old[1], m.bw_mbit))

    nodes = set(reports)
    for helper, row in reports.items():
        for peer, m in row.items():
            add(helper, peer, m)
            nodes.add(peer)
    if master is not None:
        nodes.add(master)
        for helper, m in (master_links or {}).items():
            add(master, helper, m)
            nodes.add(helper)
    g = nx.Graph()
    g.add_nodes_from(sorted(nodes, key=natural_key))
    for (a, b), (lat, bw) in sorted(links.items(),
                                    key=lambda e: (natural_key(e[0][0]), natural_key(e[0][1]))):
        g.add_edge(a, b, latency_ms=lat, bw_mbit=bw)
    if master is not None:
        g.graph["master"] = master
    return g


def _weight(size_bytes: int):
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
        raise MeshError(f"size_bytes: {size_bytes!r} (must be an int >= 0)")

    def weight(u: str, v: str, d: Mapping) -> Optional[float]:
        c = _cost(d["latency_ms"], d["bw_mbit"], size_bytes)
        return c if math.isfinite(c) else None        # None hides the edge

    return weight


def push_route(graph: nx.Graph, sources: Iterable[str], dest: str,
               size_bytes: int) -> Optional[list[str]]:
    """The cheapest route (by :func:`link_cost` of ``size_bytes``) from any of ``sources``
    to ``dest``: ``[source, ..., dest]``, or None if no source reaches it.

    Sources not in the graph are ignored; a destination that is a source gets ``[dest]``.
    Links without bandwidth are unusable for a non-empty push.
    """
    weight = _weight(size_bytes)
    srcs = {s for s in sources if s in graph}
    if dest not in graph or not srcs:
        return None
    if dest in srcs:
        return [dest]
    try:
        _, path = nx.multi_source_dijkstra(graph, srcs, target=dest, weight=weight)
    except nx.NetworkXNoPath:
        return None
    return list(path)


def push_routes(graph: nx.Graph, sources: Iterable[str], dests: Iterable[str],
                size_bytes: int) -> dict[str, list[str]]:
    """:func:`push_route` for many destinations with one Dijkstra; destinations no source
    reaches are left out."""
    weight = _weight(size_bytes)
    srcs = {s for s in sources if s in graph}
    if not srcs:
        return {}
    _, paths = nx.multi_source_dijkstra(graph, srcs, weight=weight)
    return {d: list(paths[d]) for d in dests if d in paths}


class NearestCopy:
    """Routes from the nearest copy of a segment, for one planning round.

    The master pushes a segment from whichever node that holds it is cheapest to reach the
    destination (by :func:`link_cost` of ``size_bytes`` over the undirected mesh), and
    sends it itself (``origin``) only when no helper's copy is nearer.  One Dijkstra from
    each destination (C speed, scipy) serves every segment pushed to it this round, so the
    cost grows with the destinations actually pushed to, not with every candidate.
    Ties in distance go to a helper's copy before the origin, then to the name that sorts
    first naturally.
    """

    def __init__(self, graph: nx.Graph, origin: str, size_bytes: int) -> None:
        from scipy.sparse import csr_matrix  # lazily: routing alone needs only networkx

        weight = _weight(size_bytes)
        self.origin = origin
        self.nodes = sorted(graph.nodes, key=natural_key)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        rows, cols, costs = [], [], []
        for u, v, data in graph.edges(data=True):
            c = weight(u, v, data)
            if c is None:
                continue
            rows.append(self.index[u])
            cols.append(self.index[v])
            costs.append(max(c, 1e-9))   # 0 means "no edge" to a sparse matrix
        n = len(self.nodes)
        self._matrix = csr_matrix((costs, (rows, cols)), shape=(n, n))
        self._trees: dict[tuple[str, float], tuple] = {}

    def _tree(self, root: str, limit: float = math.inf) -> tuple:
        """Distances and predecessors of a Dijkstra from ``root``, no farther than
        ``limit`` (nodes beyond it are left at ``inf``)."""
        tree = self._trees.get((root, limit))
        if tree is None:
            from scipy.sparse.csgraph import dijkstra

            dist, pred = dijkstra(self._matrix, directed=False, indices=self.index[root],
                                  return_predecessors=True, limit=limit)
            tree = self._trees[(root, limit)] = (dist, pred)
        return tree

    def forget(self, keep: Optional[str] = None) -> None:
        """Drop the searches kept so far, but the one from ``keep`` (a new round: what it
        keeps then stays bounded by what it asks)."""
        self._trees = {k: v for k, v in self._trees.items() if k[0] == keep}

    def distance(self, source: str, dest: str) -> float:
        """The cost from ``source`` to ``dest`` (``inf`` when unreachable or unknown)."""
        if source not in self.index or dest not in self.index:
            return math.inf
        return float(self._tree(source)[0][self.index[dest]])

    def origin_route(self, dest: str) -> Optional[tuple[str, ...]]:
        """``(origin, ..., dest)``: the origin's own route (one Dijkstra from the origin
        serves every destination); None when it does not reach ``dest``."""
        if dest not in self.index or self.origin not in self.index or dest == self.origin:
            return None
        dist, pred = self._tree(self.origin)
        i = self.index[dest]
        if not math.isfinite(dist[i]):
            return None
        path, end = [], self.index[self.origin]
        while i != end:
            path.append(self.nodes[i])
            i = int(pred[i])
        path.append(self.origin)
        return tuple(reversed(path))

    def route(self, dest: str, holders: Iterable[str] = ()) -> Optional[tuple[str, ...]]:
        """``(source, ..., dest)`` from the nearest of ``holders`` and the origin; None when
        none of them reaches ``dest``.  Only copies nearer than the origin matter, so the
        search from ``dest`` stops at the origin's distance."""
        if dest not in self.index:
            return None
        from_origin = self.origin_route(dest)
        reach = self.distance(self.origin, dest) if from_origin else math.inf
        holders = [h for h in holders if h in self.index and h not in (dest, self.origin)]
        if not holders:
            return from_origin
        dist, pred = self._tree(dest, limit=reach * (1 + 1e-9) + 1e-9)
        best: Optional[tuple] = None
        for name in holders:
            i = self.index[name]
            if not math.isfinite(dist[i]) or dist[i] > reach:
                continue
            rank = (float(dist[i]), natural_key(name), name)
            if best is None or rank < best[0]:
                best = (rank, i)
        if best is None:
            return from_origin
        path, i, end = [], best[1], self.index[dest]
        while i != end:
            path.append(self.nodes[i])
            i = int(pred[i])
        path.append(dest)
        return tuple(path)
