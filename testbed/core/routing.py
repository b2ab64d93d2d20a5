"""Mesh paths: Dijkstra over measured link metrics, with hysteresis, and their flow rules.

* :func:`shortest_path` is Dijkstra weighted by latency (``delay_ms``), over links that are
  ``up``.  Available bandwidth is a **constraint**: a link with less than the required
  ``avail_mbit`` is left out.  A penalty (latency plus some cost per missing Mbit/s) would
  add two units that need a conversion factor nobody can justify, make a path's cost
  mean neither delay nor headroom, and keep shifting with every load change, which feeds
  back into the load it measures.  A constraint keeps the cost a pure, additive latency
  (so the result is the latency-shortest path of a known subgraph, checkable against any
  Dijkstra), and turns bandwidth into the yes/no question a mesh link needs answered:
  "can this path carry the stream?".  :class:`PathKeeper` falls back to the
  unconstrained path when no path meets the requirement.
* Costs are integers (whole microseconds, then one per hop, as in :mod:`testbed.core.l2`),
  so equal costs are exactly equal; ties go to fewer hops, then to the predecessor whose
  name sorts first.  The result depends only on the graph, never on insertion order.
* :class:`PathKeeper` holds one path per mesh pair and moves it only when another is
  better by a relative *and* an absolute margin (and not within the hold-down time), or
  at once when the current path is broken.  Noise on the metrics then cannot make it flap.
* :func:`mesh_rules` turns the kept paths into unicast flows for both directions.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import networkx as nx

from testbed.core.l2 import PRIORITY_UNICAST, NetView, path_cost
from testbed.core.rules import ETH_TYPE_IPV4, Match, Output, Rule, app_cookie, sort_rules
from testbed.core.spec import natural_key

Node = Hashable
Path = tuple[Node, ...]
Pair = tuple[Node, Node]

COOKIE = app_cookie("mc-mesh")
TABLE = 0
#: Above L2 unicast (200), so mesh traffic takes the measured path and the rest keeps L2
#: paths; below the multicast tree rules, whose group destinations never match a host's
#: address anyway (distinct priorities keep overlap questions out of the tables).
PRIORITY_MESH = PRIORITY_UNICAST + 50

_Adjacency = dict[Node, list[tuple[Node, int]]]


# --------------------------------------------------------------------------- Dijkstra


def node_key(node: Node) -> tuple:
    """Total order over node names used to break ties (``s2`` before ``s10``)."""
    return natural_key(str(node))


def adjacency(graph: nx.Graph, weight: str = "delay_ms",
              min_avail_mbit: float = 0.0) -> _Adjacency:
    """Usable links with their integer costs: up, and with ``avail_mbit`` >= the minimum.

    Build it once and pass it to :func:`dijkstra` for many sources; links without
    ``up`` count as up, links without ``avail_mbit`` as unconstrained.
    """
    adj: _Adjacency = {n: [] for n in graph}
    for u, nbrs in graph.adjacency():
        row = adj[u]
        for v, data in nbrs.items():
            if not data.get("up", True) or data.get("avail_mbit", math.inf) < min_avail_mbit:
                continue
            value = data.get(weight, 0.0)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"link {u}-{v}: {weight} {value!r} (must be finite, >= 0)")
            row.append((v, path_cost(value)))
    return adj


def dijkstra(adj: _Adjacency, src: Node, targets: Iterable[Node] = ()) -> dict[Node, Node]:
    """Shortest-path predecessors from ``src`` (``src`` itself has none).

    With ``targets``, it stops once all of them are settled and returns only settled
    nodes, so every predecessor it returns is final.

    Among equal-cost predecessors the one with the lowest :func:`node_key` wins: every
    such predecessor is settled before the node (costs are > 0), so the choice is final
    and independent of the order links were added in.
    """
    dist = {src: 0}
    pred: dict[Node, Node] = {}
    done: set[Node] = set()
    left = set(targets) - {src}
    early = bool(left)
    heap = [(0, 0, src)]
    seq = 0
    while heap:
        d, _, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        if early:
            left.discard(u)
            if not left:
                return {v: p for v, p in pred.items() if v in done}
        for v, cost in adj[u]:
            if v in done:
                continue
            nd = d + cost
            old = dist.get(v)
            if old is None or nd < old:
                dist[v] = nd
                pred[v] = u
                seq += 1
                heapq.heappush(heap, (nd, seq, v))
            elif nd == old and node_key(u) < node_key(pred[v]):
                pred[v] = u
    return pred


def _walk(pred: Mapping[Node, Node], src: Node, dst: Node) -> Optional[Path]:
    if src == dst:
        return (src,)
    if dst not in pred:
        return None
    nodes = [dst]
    while nodes[-1] != src:
        nodes.append(pred[nodes[-1]])
    return tuple(reversed(nodes))


def shortest_path(graph: nx.Graph, src: Node, dst: Node, weight: str = "delay_ms",
                  min_avail_mbit: float = 0.0) -> Optional[Path]:
    """The latency-shortest path from ``src`` to ``dst`` over up links that have at
    least ``min_avail_mbit`` available (None if there is none)."""
    if src not in graph or dst not in graph:
        return None
    adj = adjacency(graph, weight, min_avail_mbit)
    return _walk(dijkstra(adj, src, (dst,)), src, dst)


def path_delay(graph: nx.Graph, path: Sequence[Node], weight: str = "delay_ms") -> float:
    """Sum of ``weight`` along ``path`` (which must exist in ``graph``)."""
    return sum(graph.edges[a, b].get(weight, 0.0) for a, b in zip(path, path[1:]))


def path_avail(graph: nx.Graph, path: Sequence[Node]) -> float:
    """The bottleneck ``avail_mbit`` of ``path`` (``inf`` if no link says)."""
    return min((graph.edges[a, b].get("avail_mbit", math.inf) for a, b in zip(path, path[1:])),
               default=math.inf)


def is_broken(graph: nx.Graph, path: Sequence[Node]) -> bool:
    """True if a node or link of ``path`` is gone or a link is down."""
    if any(n not in graph for n in path):
        return True
    return any(not graph.has_edge(a, b) or not graph.edges[a, b].get("up", True)
               for a, b in zip(path, path[1:]))


# --------------------------------------------------------------------------- hysteresis


@dataclass(frozen=True)
class PathPolicy:
    """When a pair's path may move.

    rel_margin, abs_margin_ms: a new path must beat the current one by both (fraction of
    the current latency, and milliseconds).  hold_down_s: least time between two moves of
    one pair, unless its path broke.  min_avail_mbit: bandwidth a new path needs on every
    link; the current path is kept while it still has ``(1 - rel_margin)`` of that, the
    same hysteresis for bandwidth as for latency.  fallback: with no path meeting the
    bandwidth requirement, use the latency-shortest path (else leave the pair to L2).
    """

    rel_margin: float = 0.2
    abs_margin_ms: float = 1.0
    hold_down_s: float = 0.0
    min_avail_mbit: float = 0.0
    fallback: bool = True
    weight: str = "delay_ms"

    def __post_init__(self) -> None:
        if not 0 <= self.rel_margin < 1:
            raise ValueError(f"rel_margin: {self.rel_margin!r} (must be in [0, 1))")
        for name in ("abs_margin_ms", "hold_down_s", "min_avail_mbit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)!r} (must be >= 0)")


@dataclass(frozen=True)
class PathChange:
    """Pair ``pair`` moved from ``old`` to ``new`` (None: no path) because of ``reason``:
    new, broken, better, bandwidth or removed.  ``delay_ms`` is the new path's latency."""

    pair: Pair
    old: Optional[Path]
    new: Optional[Path]
    reason: str
    delay_ms: Optional[float] = None


def normal_pair(a: Node, b: Node) -> Pair:
    """A mesh pair is unordered: its canonical spelling puts the lower name first."""
    if a == b:
        raise ValueError(f"mesh pair {a}-{b}: a node cannot be its own neighbour")
    return (a, b) if node_key(a) <= node_key(b) else (b, a)


class PathKeeper:
    """The current path of every mesh pair, moved only for a clear gain or a failure.

    Call :meth:`update` whenever the metric graph reports changes, and periodically (a
    move held back by the hold-down time happens at the first update after it).
    Paths run from the pair's first node to its second; the reverse direction uses the
    same path backwards, so a pair's traffic is symmetric.
    """

    def __init__(self, pairs: Iterable[Pair] = (), policy: PathPolicy = PathPolicy()):
        self.policy = policy
        self._paths: dict[Pair, Optional[Path]] = {}
        self._changed_at: dict[Pair, float] = {}
        self.set_pairs(pairs)

    @property
    def paths(self) -> dict[Pair, Path]:
        """Pair -> current path, for pairs that have one."""
        return {p: path for p, path in self._paths.items() if path is not None}

    @property
    def pairs(self) -> list[Pair]:
        return sorted(self._paths, key=lambda p: (node_key(p[0]), node_key(p[1])))

    def set_pairs(self, pairs: Iterable[Pair]) -> list[PathChange]:
        """Replace the set of mesh pairs (as the northbound API publishes them).

        Removed pairs are reported (new path None); added ones get a path at the next
        :meth:`update`; kept ones keep their path.
        """
        wanted = {normal_pair(a, b) for a, b in pairs}
        changes = []
        for pair in sorted(set(self._paths) - wanted, key=lambda p: (node_key(p[0]),
                                                                    node_key(p[1]))):
            old = self._paths.pop(pair)
            self._changed_at.pop(pair, None)
            if old is not None:
                changes.append(PathChange(pair, old, None, "removed"))
        for pair in wanted:
            self._paths.setdefault(pair, None)
        return changes

    def update(self, now: float, graph: nx.Graph) -> list[PathChange]:
        """Re-evaluate every pair against ``graph``; returns the moves made."""
        pol = self.policy
        strict = adjacency(graph, pol.weight, pol.min_avail_mbit)
        loose = strict if pol.min_avail_mbit == 0 else adjacency(graph, pol.weight, 0.0)
        preds: dict[tuple[bool, Node], dict[Node, Node]] = {}
        by_src: dict[Node, list[Node]] = {}
        for a, b in self.pairs:
            by_src.setdefault(a, []).append(b)

        def best(src: Node, dst: Node) -> tuple[Optional[Path], bool]:
            if src not in graph or dst not in graph:
                return None, False
            for feasible, adj in ((True, strict), (False, loose)):
                if not feasible and not pol.fallback:
                    break
                key = (feasible, src)
                if key not in preds:
                    preds[key] = dijkstra(adj, src, by_src[src])
                path = _walk(preds[key], src, dst)
                if path is not None:
                    return path, feasible
            return None, False

        changes = []
        for pair in self.pairs:
            change = self._decide(now, graph, pair, *best(*pair))
            if change is not None:
                self._paths[pair] = change.new
                self._changed_at[pair] = now
                changes.append(change)
        return changes

    def _decide(self, now: float, graph: nx.Graph, pair: Pair, cand: Optional[Path],
                feasible: bool) -> Optional[PathChange]:
        pol = self.policy
        cur = self._paths[pair]

        def move(reason: str) -> Optional[PathChange]:
            if cand == cur:
                return None
            delay = None if cand is None else path_delay(graph, cand, pol.weight)
            return PathChange(pair, cur, cand, reason, delay)

        if cur is None:
            return move("new")
        if is_broken(graph, cur):
            return move("broken")
        if cand is None or cand == cur:
            return None
        if now - self._changed_at.get(pair, -math.inf) < pol.hold_down_s:
            return None
        keep_bw = pol.min_avail_mbit * (1 - pol.rel_margin)
        if feasible and path_avail(graph, cur) < keep_bw:
            return move("bandwidth")
        cur_delay = path_delay(graph, cur, pol.weight)
        new_delay = path_delay(graph, cand, pol.weight)
        gain = cur_delay - new_delay
        if gain > pol.abs_margin_ms and gain > pol.rel_margin * cur_delay:
            return move("better")
        return None


# --------------------------------------------------------------------------- flow rules


def mesh_rules(view: NetView, pairs: Iterable[Pair], paths: Mapping[Pair, Sequence[Node]],
               cookie: int = COOKIE) -> list[Rule]:
    """Unicast flows, both directions, for every mesh pair of hosts along its path.

    Matches are ``eth_type=0x0800, ipv4_src, ipv4_dst``: the pair's own IP traffic, and
    nothing else.  ARP, LLDP and multicast keep their L2 and tree rules, and traffic
    from a third host to either end keeps its L2 path; the helpers address each other by
    the IP addresses the northbound API publishes, and a match on IP leaves room to
    narrow it later (protocol, port) without touching L2.  ``paths`` is keyed like
    ``pairs`` (either order), runs between the two hosts (or their switches) and uses
    only links of ``view``; pairs without a path are left to L2.  Priority is
    :data:`PRIORITY_MESH`, above :data:`testbed.core.l2.PRIORITY_UNICAST`.
    """
    g = view.graph()
    rules: dict[tuple, Rule] = {}
    for a, b in pairs:
        pair = normal_pair(a, b)
        unknown = [h for h in pair if h not in view.hosts]
        if unknown:
            raise ValueError(f"mesh pair {a}-{b}: {unknown[0]} is not a host of the topology")
        path = paths.get(pair)
        if path is None:
            path = paths.get((pair[1], pair[0]))
            path = None if path is None else tuple(reversed(path))
        if path is None:
            continue
        switches = _switch_path(view, g, pair, path)
        for src, dst, hops in ((pair[0], pair[1], switches),
                               (pair[1], pair[0], switches[::-1])):
            for rule in _direction(view, g, src, dst, hops, cookie):
                rules[rule.key()] = rule
    return sort_rules(rules.values())


def _switch_path(view: NetView, g: nx.Graph, pair: Pair, path: Sequence[Node]) -> list[str]:
    a, b = (view.hosts[h] for h in pair)
    hops = list(path)
    if hops and hops[0] == a.name:
        hops = hops[1:]
    if hops and hops[-1] == b.name:
        hops = hops[:-1]
    where = f"mesh pair {a.name}-{b.name}: path {list(path)}"
    if not hops or hops[0] != a.switch or hops[-1] != b.switch:
        raise ValueError(f"{where} must run from {a.switch} to {b.switch}")
    if len(set(hops)) != len(hops):
        raise ValueError(f"{where} visits a switch twice")
    for u, v in zip(hops, hops[1:]):
        if not g.has_edge(u, v):
            raise ValueError(f"{where} uses {u}-{v}, which is not a link")
    return hops


def _direction(view: NetView, g: nx.Graph, src: str, dst: str, hops: list[str],
               cookie: int) -> list[Rule]:
    match = Match(eth_type=ETH_TYPE_IPV4, ipv4_src=view.hosts[src].ip,
                  ipv4_dst=view.hosts[dst].ip)
    rules = []
    for i, switch in enumerate(hops):
        if i + 1 < len(hops):
            port = g.edges[switch, hops[i + 1]]["ports"][switch]
        else:
            port = view.hosts[dst].port
        rules.append(Rule(view.switches[switch].dpid, TABLE, PRIORITY_MESH, match,
                          (Output(port),), cookie))
    return rules
