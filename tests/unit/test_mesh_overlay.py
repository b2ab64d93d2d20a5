"""Helper mesh: link costs, neighbour choice with hysteresis, the mesh graph, push routes."""

from __future__ import annotations

import math
import random

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.mesh import (
    MeshError,
    NeighbourSelector,
    PeerMetric,
    link_cost,
    mesh_graph,
    push_route,
    push_routes,
)

M = PeerMetric

# --------------------------------------------------------------------------- link cost


def test_link_cost_is_latency_plus_transfer_time() -> None:
    assert link_cost(M(5.0, 10.0)) == 5.0
    # 125 000 bytes = 1 Mbit; at 10 Mbit/s that is 100 ms
    assert link_cost(M(5.0, 10.0), 125_000) == pytest.approx(105.0)
    assert link_cost(M(5.0, 0.0), 1) == math.inf
    assert link_cost(M(5.0, 0.0), 0) == 5.0


@pytest.mark.parametrize("lat, bw, what", [(-1, 1, "latency_ms"), (math.nan, 1, "latency_ms"),
                                           (math.inf, 1, "latency_ms"), (1, -1, "bw_mbit"),
                                           (1, math.nan, "bw_mbit"), ("1", 1, "latency_ms")])
def test_bad_metrics_are_rejected(lat: object, bw: object, what: str) -> None:
    with pytest.raises(MeshError, match=what):
        PeerMetric(lat, bw)  # type: ignore[arg-type]


def test_bad_size_is_rejected() -> None:
    with pytest.raises(MeshError, match="size_bytes"):
        link_cost(M(1, 1), -1)


# --------------------------------------------------------------------------- neighbours


def peers(n: int, rng: random.Random) -> dict[str, PeerMetric]:
    return {f"h{i}": M(rng.uniform(1, 80), rng.uniform(1, 100)) for i in range(n)}


def noisy(metrics: dict[str, PeerMetric], rng: random.Random,
          frac: float = 0.1) -> dict[str, PeerMetric]:
    return {p: M(m.latency_ms * (1 + rng.uniform(-frac, frac)),
                 m.bw_mbit * (1 + rng.uniform(-frac, frac))) for p, m in metrics.items()}


def best_k(sel: NeighbourSelector, metrics: dict[str, PeerMetric], k: int) -> set[str]:
    return set(sorted(metrics, key=lambda p: sel.cost(metrics[p]))[:k])


def test_first_update_fills_the_slots_with_the_best_peers() -> None:
    sel = NeighbourSelector(2)
    metrics = {"a": M(5, 100), "b": M(1, 100), "c": M(50, 100), "d": M(2, 1)}
    change = sel.update(metrics, 0.0)
    # d is near but slow: 100 kB at 1 Mbit/s is 800 ms
    assert change.neighbours == ("a", "b") == sel.neighbours
    assert change.added == ("a", "b") and change.dropped == ()
    assert change.reasons == {"a": "free_slot", "b": "free_slot"}
    assert sel.update(metrics, 1.0).changed is False


def test_fewer_peers_than_slots_and_zero_slots() -> None:
    assert NeighbourSelector(5).update({"a": M(1, 1)}, 0).neighbours == ("a",)
    assert NeighbourSelector(0).update({"a": M(1, 1)}, 0).neighbours == ()
    # a peer nothing gets through to is never chosen
    assert NeighbourSelector(2).update({"a": M(1, 0), "b": M(9, 9)}, 0).neighbours == ("b",)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 6), st.integers(0, 20))
def test_no_flapping_under_ten_percent_noise(seed: int, k: int, n: int) -> None:
    rng = random.Random(seed)
    base = peers(n, rng)
    sel = NeighbourSelector(k)
    first = sel.update(noisy(base, rng), 0.0)
    assert len(first.neighbours) == min(k, n)
    for step in range(1, 30):
        change = sel.update(noisy(base, rng), float(step))
        assert not change.changed, change
        assert change.neighbours == first.neighbours


def test_latency_rise_replaces_a_neighbour() -> None:
    sel = NeighbourSelector(2)
    metrics = {"a": M(5, 100), "b": M(6, 100), "c": M(8, 100)}
    sel.update(metrics, 0.0)
    assert sel.neighbours == ("a", "b")
    change = sel.update({**metrics, "a": M(9.0, 100)}, 1.0)     # 1.8x: degraded, now worst
    assert change.dropped == ("a",) and change.added == ("c",)
    assert change.reasons == {"a": "latency", "c": "free_slot"}
    assert sel.neighbours == ("b", "c")


def test_degraded_neighbour_that_is_still_best_stays_with_a_new_baseline() -> None:
    sel = NeighbourSelector(1)
    sel.update({"a": M(2, 100), "b": M(40, 100)}, 0.0)
    change = sel.update({"a": M(10, 100), "b": M(40, 100)}, 1.0)
    assert not change.changed and sel.neighbours == ("a",)
    assert sel.baseline("a") == M(10, 100)


def test_bandwidth_drop_and_vanishing() -> None:
    sel = NeighbourSelector(2)
    metrics = {"a": M(5, 100), "b": M(5, 90), "c": M(5, 60)}
    sel.update(metrics, 0.0)
    assert sel.neighbours == ("a", "b")
    change = sel.update({**metrics, "b": M(5, 40)}, 1.0)        # below half of 90
    assert change.reasons == {"b": "bandwidth", "c": "free_slot"}
    change = sel.update({"b": M(5, 40), "c": M(5, 60)}, 2.0)    # a vanished
    assert change.reasons == {"a": "vanished", "b": "free_slot"}
    assert sel.neighbours == ("b", "c")


def test_a_clearly_better_peer_replaces_the_worst_neighbour() -> None:
    sel = NeighbourSelector(2)
    metrics = {"a": M(5, 100), "b": M(10, 100)}        # costs 13 and 18 ms
    sel.update(metrics, 0.0)
    slightly = sel.update({**metrics, "c": M(6, 100)}, 1.0)     # 14 ms: not 30 % better
    assert not slightly.changed
    change = sel.update({**metrics, "c": M(1, 100)}, 2.0)       # 9 ms < 0.7 * 18
    assert change.reasons == {"b": "replaced", "c": "better"}
    assert sel.neighbours == ("a", "c")


def test_hold_down_delays_better_swaps() -> None:
    sel = NeighbourSelector(1, hold_down_s=10.0)
    sel.update({"a": M(50, 100)}, 0.0)
    assert sel.update({"a": M(50, 100), "b": M(1, 100)}, 1.0).reasons == {"a": "replaced",
                                                                         "b": "better"}
    metrics = {"a": M(50, 100), "b": M(1, 100), "c": M(0, 1000)}   # c: 0.8 ms vs 9 ms
    assert not sel.update(metrics, 5.0).changed
    assert sel.update(metrics, 11.0).added == ("c",)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 5))
def test_never_more_than_k_and_fills_free_slots(seed: int, k: int) -> None:
    rng = random.Random(seed)
    sel = NeighbourSelector(k)
    held: tuple[str, ...] = ()
    for step in range(15):
        metrics = {p: m for p, m in peers(12, rng).items() if rng.random() < 0.7}
        change = sel.update(metrics, float(step))
        assert len(change.neighbours) == min(k, len(metrics))
        assert set(change.neighbours) <= set(metrics)
        assert set(change.neighbours) == (set(held) - set(change.dropped)) | set(change.added)
        assert not set(change.added) & set(change.dropped)
        assert set(change.reasons) == set(change.added) | set(change.dropped)
        held = change.neighbours


def test_bad_selector_settings() -> None:
    for kwargs, what in (({"k": -1}, "k"), ({"k": 1, "latency_rise": 1.0}, "latency_rise"),
                         ({"k": 1, "bw_drop": 1.0}, "bw_drop"),
                         ({"k": 1, "better_by": -0.1}, "better_by")):
        with pytest.raises(MeshError, match=what):
            NeighbourSelector(**kwargs)
    with pytest.raises(MeshError, match="h1"):
        NeighbourSelector(1).update({"h1": (1, 2)}, 0.0)  # type: ignore[dict-item]


# --------------------------------------------------------------------------- graph and routes


def test_mesh_graph_takes_the_worse_of_both_reports() -> None:
    reports = {"a": {"b": M(5, 50)}, "b": {"a": M(7, 80), "c": M(3, 10)}, "d": {}}
    g = mesh_graph(reports, master="m", master_links={"a": M(1, 100)})
    assert set(g.nodes) == {"a", "b", "c", "d", "m"}
    assert g.edges["a", "b"] == {"latency_ms": 7, "bw_mbit": 50}
    assert g.edges["b", "c"] == {"latency_ms": 3, "bw_mbit": 10}
    assert g.edges["m", "a"]["latency_ms"] == 1
    assert g.degree["d"] == 0
    with pytest.raises(MeshError, match="master"):
        mesh_graph(reports, master_links={"a": M(1, 1)})
    with pytest.raises(MeshError, match="a-a"):
        mesh_graph({"a": {"a": M(1, 1)}})


def test_push_route_picks_the_nearest_copy() -> None:
    g = mesh_graph({"a": {"b": M(10, 100)}, "b": {"c": M(10, 100)}, "c": {"d": M(1, 100)}})
    assert push_route(g, ["a"], "d", 0) == ["a", "b", "c", "d"]
    assert push_route(g, ["a", "c"], "d", 0) == ["c", "d"]
    assert push_route(g, ["a", "c"], "c", 0) == ["c"]
    assert push_route(g, ["zz"], "d", 0) is None
    assert push_route(g, ["a"], "zz", 0) is None
    g.add_node("e")
    assert push_route(g, ["a"], "e", 0) is None


def test_push_route_weighs_size_against_latency() -> None:
    # a -> d direct: 5 ms but 1 Mbit/s; via b: 2 x 10 ms at 100 Mbit/s
    g = mesh_graph({"a": {"d": M(5, 1), "b": M(10, 100)}, "b": {"d": M(10, 100)}})
    assert push_route(g, ["a"], "d", 100) == ["a", "d"]             # tiny: latency wins
    assert push_route(g, ["a"], "d", 100_000) == ["a", "b", "d"]    # 800 ms vs ~36 ms
    g.edges["a", "b"]["bw_mbit"] = 0.0                              # unusable for data
    assert push_route(g, ["a"], "d", 100_000) == ["a", "d"]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 25), st.integers(0, 200_000))
def test_push_route_is_the_cheapest_from_any_source(seed: int, n: int, size: int) -> None:
    rng = random.Random(seed)
    names = [f"h{i}" for i in range(n)]
    reports = {h: {p: M(rng.uniform(0, 50), rng.uniform(0.5, 100))
                   for p in rng.sample(names, min(n, 3)) if p != h} for h in names}
    g = mesh_graph(reports)
    sources = rng.sample(names, rng.randint(1, min(3, n)))
    routes = push_routes(g, sources, names, size)
    for dest in names:
        route = push_route(g, sources, dest, size)
        assert route == routes.get(dest)
        costs = [nx.dijkstra_path_length(g, s, dest, weight=lambda u, v, d: link_cost(
            M(d["latency_ms"], d["bw_mbit"]), size)) for s in sources
                 if nx.has_path(g, s, dest)]
        if route is None:
            assert not costs
            continue
        assert route[0] in sources and route[-1] == dest
        cost = sum(link_cost(M(**g.edges[a, b]), size) for a, b in zip(route, route[1:]))
        assert cost == pytest.approx(min(costs))
