"""Seeded random geometric graph of switches, for irregular mesh experiments.

``switches`` points are drawn uniformly in the unit square; two switches are
linked when closer than ``radius``, and the graph is made connected by adding
the shortest edges that join separate components (as Kruskal's algorithm
would), so every seed gives a usable network.  Link delay is Euclidean
distance times ``ms_per_unit`` (20 ms per unit puts opposite corners about
28 ms apart).  The master sits on the most central switch (closeness by
delay); helpers, then viewers, go round-robin over the other switches in a
seeded order, so viewer ``vK`` shares a switch with helper ``hK``.  Helpers' links
have ``helper_bw_mbit`` (default: ``access_bw_mbit``, as viewers' links have).

Also a ``mn --custom`` file: ``mn --custom topologies/geometric.py --link tc
--topo geometric,switches=10,seed=3``.
"""

# ruff: noqa: E402 -- the path bootstrap must run before the package imports
from __future__ import annotations

import sys

if not globals().get("__package__"):  # run by path (mn --custom): make the package importable
    import os

    _root = os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename)))
    if _root not in sys.path:
        sys.path.insert(0, _root)

import itertools
import math
import random

import networkx as nx

from testbed.core.spec import HELPER, MASTER, SWITCH, VIEWER, natural_key
from topologies._build import attach, check_bandwidths
from topologies._params import require
from topologies.mn import topo_factory

NAME = "geometric"


def _bridge_components(g: nx.Graph, pos: dict[str, tuple[float, float]]) -> list[tuple[str, str]]:
    """Shortest switch pairs that join g's components into one (deterministic on ties)."""
    component = {n: i for i, comp in enumerate(nx.connected_components(g)) for n in comp}
    parent = list(range(max(component.values(), default=-1) + 1))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = sorted(
        (math.dist(pos[u], pos[v]), natural_key(u), natural_key(v), u, v)
        for u, v in itertools.combinations(sorted(g.nodes, key=natural_key), 2)
        if component[u] != component[v]
    )
    added = []
    for _, _, _, u, v in pairs:
        a, b = find(component[u]), find(component[v])
        if a != b:
            parent[a] = b
            added.append((u, v))
    return added


def make_geometric(
    *,
    switches: int = 12,
    radius: float = 0.4,
    helpers: int = 8,
    viewers: int = 4,
    ms_per_unit: float = 20.0,
    access_delay_ms: float = 0.5,
    core_bw_mbit: float = 50.0,
    access_bw_mbit: float = 20.0,
    master_bw_mbit: float = 50.0,
    helper_bw_mbit: float | None = None,
    seed: int = 1,
) -> nx.Graph:
    """Build the geometric spec; switch nodes carry ``pos`` (x, y) in the unit square."""
    require(1 <= switches <= 500, NAME, "switches", switches, "must be in 1..500")
    require(radius >= 0, NAME, "radius", radius, "must be >= 0")
    require(helpers >= 0, NAME, "helpers", helpers, "must be >= 0")
    require(viewers >= 0, NAME, "viewers", viewers, "must be >= 0")
    require(ms_per_unit >= 0, NAME, "ms_per_unit", ms_per_unit, "must be >= 0")
    require(access_delay_ms >= 0, NAME, "access_delay_ms", access_delay_ms, "must be >= 0")
    helper_bw_mbit = access_bw_mbit if helper_bw_mbit is None else helper_bw_mbit
    check_bandwidths(NAME, core_bw_mbit=core_bw_mbit, access_bw_mbit=access_bw_mbit,
                     master_bw_mbit=master_bw_mbit, helper_bw_mbit=helper_bw_mbit)

    rng = random.Random(seed)
    names = [f"s{i}" for i in range(1, switches + 1)]
    pos = {n: (round(rng.random(), 4), round(rng.random(), 4)) for n in names}
    g = nx.Graph(generator=NAME)
    for n in names:
        g.add_node(n, role=SWITCH, pos=pos[n])
    g.add_edges_from((u, v) for u, v in itertools.combinations(names, 2)
                     if math.dist(pos[u], pos[v]) <= radius)
    g.add_edges_from(_bridge_components(g, pos))
    for u, v in g.edges:
        g.edges[u, v].update(delay_ms=round(math.dist(pos[u], pos[v]) * ms_per_unit, 3),
                             bw_mbit=core_bw_mbit)

    closeness = nx.closeness_centrality(g, distance="delay_ms")
    centre = min(names, key=lambda n: (-round(closeness[n], 9), natural_key(n)))
    others = [n for n in names if n != centre] or [centre]
    rng.shuffle(others)
    attach(g, "m1", MASTER, centre, delay_ms=access_delay_ms, bw_mbit=master_bw_mbit)
    for i in range(helpers):
        switch = others[i % len(others)]
        attach(g, f"h{i + 1}", HELPER, switch, delay_ms=access_delay_ms, bw_mbit=helper_bw_mbit)
    for i in range(viewers):
        switch = others[i % len(others)]
        attach(g, f"v{i + 1}", VIEWER, switch, delay_ms=access_delay_ms, bw_mbit=access_bw_mbit)
    return g


topos = {NAME: topo_factory(NAME)}
