"""Mesh path recomputation on 100 and 1,000 switches (no root needed).

Writes benchmarks/out/routing.json.  Each graph is a seeded random connected graph with
about 3 links per switch (a random spanning tree plus random extra links), link latency
uniform in 1-50 ms and available bandwidth uniform in 0-100 Mbit/s; 100 random switch
pairs.  Timed (median of repeats, one core):

* ``first_s``: a fresh PathKeeper placing all pairs;
* ``steady_s``: a later update after every metric moved by +-10 % (every pair
  re-evaluated, nothing moves: the common case);
* ``constrained_s``: the same with a 10 Mbit/s bandwidth requirement (two searches);
* ``networkx_s``: ``networkx.dijkstra_path`` for each pair, the reference, run side by side.

Target: all pairs on 1,000 switches well under a second.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import networkx as nx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402
from testbed.core.routing import PathKeeper, PathPolicy, shortest_path  # noqa: E402

SIZES = (100, 1000)
PAIRS = 100
REPEATS = 7
TARGET_S = 1.0


def make_graph(n: int, seed: int) -> nx.Graph:
    """Connected, ~1.5 n links (3 per switch), random latency and headroom."""
    rng = random.Random(seed)
    names = [f"s{i + 1}" for i in range(n)]
    g = nx.Graph()
    g.add_nodes_from(names)
    for i in range(1, n):
        g.add_edge(names[i], names[rng.randrange(i)])
    while g.number_of_edges() < 3 * n // 2:
        a, b = rng.sample(names, 2)
        g.add_edge(a, b)
    for u, v in g.edges:
        g.edges[u, v].update(delay_ms=rng.uniform(1, 50), avail_mbit=rng.uniform(0, 100),
                             up=True)
    return g


def make_pairs(g: nx.Graph, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    nodes = sorted(g.nodes)
    pairs: set[frozenset] = set()
    while len(pairs) < PAIRS:
        pairs.add(frozenset(rng.sample(nodes, 2)))
    return sorted(tuple(sorted(p)) for p in pairs)


def timed(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median wall time of ``fn`` in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def jitter(g: nx.Graph, seed: int) -> nx.Graph:
    rng = random.Random(seed)
    h = g.copy()
    for _, _, d in h.edges(data=True):
        d["delay_ms"] *= rng.uniform(0.9, 1.1)
        d["avail_mbit"] *= rng.uniform(0.9, 1.1)
    return h


def run(n: int) -> dict:
    g = make_graph(n, seed=n)
    pairs = make_pairs(g, seed=n + 1)
    noisy = jitter(g, seed=n + 2)

    first = timed(lambda: PathKeeper(pairs).update(0.0, g))
    keeper = PathKeeper(pairs)
    keeper.update(0.0, g)
    steady = timed(lambda: keeper.update(1.0, noisy))
    moved = len(keeper.update(1.0, noisy))

    policy = PathPolicy(min_avail_mbit=10.0)
    constrained = timed(lambda: PathKeeper(pairs, policy).update(0.0, g))

    reference = timed(lambda: [nx.dijkstra_path(g, a, b, weight="delay_ms") for a, b in pairs])
    ours = [shortest_path(g, a, b) for a, b in pairs]
    same_cost = all(
        abs(nx.path_weight(g, list(p), "delay_ms")
            - nx.dijkstra_path_length(g, a, b, weight="delay_ms")) < 1e-3 * len(p)
        for (a, b), p in zip(pairs, ours))
    return {
        "switches": n, "links": g.number_of_edges(), "pairs": len(pairs),
        "first_s": round(first, 4), "steady_s": round(steady, 4),
        "constrained_s": round(constrained, 4), "networkx_s": round(reference, 4),
        "steady_ratio_to_networkx": round(steady / reference, 2),
        "moves_under_10pct_noise": moved, "optimal_vs_networkx": same_cost,
    }


def main() -> None:
    rows = []
    for n in SIZES:
        rows.append(run(n))
        print(rows[-1], flush=True)
    big = rows[-1]
    worst = max(big["first_s"], big["steady_s"], big["constrained_s"])
    write("routing", {
        "rows": rows,
        "cost_ratio_1000_to_100": round(rows[-1]["steady_s"] / rows[0]["steady_s"], 2),
        "target_1000_switches_s": TARGET_S, "met": worst < TARGET_S,
    })


if __name__ == "__main__":
    main()
