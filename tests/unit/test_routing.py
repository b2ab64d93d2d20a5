"""Mesh routing: Dijkstra against networkx, hysteresis under noise, rules in a fake network."""

from __future__ import annotations

import math
import random
from collections import Counter

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.fakenet import FakeNet, Packet, topology_dict
from testbed.core.l2 import PRIORITY_UNICAST, NetView, l2_rules, path_cost
from testbed.core.linkmetrics import LatencyEstimator, LinkMonitor, MetricGraph
from testbed.core.routing import (
    COOKIE,
    PRIORITY_MESH,
    PathChange,
    PathKeeper,
    PathPolicy,
    adjacency,
    dijkstra,
    is_broken,
    mesh_rules,
    normal_pair,
    path_avail,
    path_delay,
    shortest_path,
)
from testbed.core.rules import ETH_TYPE_ARP, ETH_TYPE_IPV4, Rule

# --------------------------------------------------------------------------- Dijkstra


def usable(g: nx.Graph, min_avail: float) -> nx.Graph:
    """The subgraph a constrained search may use, built independently of the code."""
    sub = nx.Graph()
    sub.add_nodes_from(g)
    sub.add_edges_from((u, v, d) for u, v, d in g.edges(data=True)
                       if d.get("up", True) and d.get("avail_mbit", math.inf) >= min_avail)
    return sub


def check_optimal(g: nx.Graph, src: object, dst: object, min_avail: float) -> None:
    path = shortest_path(g, src, dst, min_avail_mbit=min_avail)
    sub = usable(g, min_avail)
    if not nx.has_path(sub, src, dst):
        assert path is None
        return
    assert path is not None and path[0] == src and path[-1] == dst
    assert len(set(path)) == len(path)
    assert all(sub.has_edge(a, b) for a, b in zip(path, path[1:]))
    best = nx.shortest_path_length(sub, src, dst, weight="delay_ms")
    assert path_delay(g, path) == pytest.approx(best, abs=1e-9)
    # among the latency-shortest paths, one with the fewest hops
    cost = nx.shortest_path_length(sub, src, dst,
                                   weight=lambda u, v, d: path_cost(d["delay_ms"]))
    assert sum(path_cost(g.edges[a, b]["delay_ms"]) for a, b in zip(path, path[1:])) == cost


@st.composite
def metric_graphs(draw: st.DrawFn) -> nx.Graph:
    n = draw(st.integers(1, 9))
    g = nx.Graph()
    g.add_nodes_from(f"s{i + 1}" for i in range(n))
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))
    for u, v in draw(st.lists(pairs, max_size=3 * n)):
        if u != v:
            g.add_edge(f"s{u + 1}", f"s{v + 1}",
                       delay_ms=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 10.0])),
                       avail_mbit=draw(st.sampled_from([1.0, 5.0, 10.0, math.inf])),
                       up=draw(st.booleans()) or draw(st.booleans()))
    return g


@settings(max_examples=150, deadline=None)
@given(metric_graphs(), st.sampled_from([0.0, 5.0]), st.data())
def test_dijkstra_is_optimal_against_networkx(g: nx.Graph, min_avail: float,
                                              data: st.DataObject) -> None:
    nodes = sorted(g.nodes)
    src = data.draw(st.sampled_from(nodes))
    dst = data.draw(st.sampled_from(nodes))
    check_optimal(g, src, dst, min_avail)


FAMILIES = {
    "path": nx.path_graph(8),
    "cycle": nx.cycle_graph(9),
    "grid": nx.grid_2d_graph(5, 5),
    "ladder": nx.ladder_graph(6),
    "complete": nx.complete_graph(7),
    "petersen": nx.petersen_graph(),
    "barbell": nx.barbell_graph(4, 3),
    "regular": nx.random_regular_graph(3, 20, seed=4),
    "waxman": nx.waxman_graph(25, seed=3),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_dijkstra_is_optimal_on_graph_families(name: str) -> None:
    rng = random.Random(name)
    g = nx.convert_node_labels_to_integers(FAMILIES[name])
    for u, v in g.edges:
        g.edges[u, v].update(delay_ms=rng.choice([1.0, 2.0, 3.0, 7.5]),
                             avail_mbit=rng.choice([2.0, 20.0]), up=rng.random() > 0.1)
    for src in list(g)[:6]:
        for dst in g:
            check_optimal(g, src, dst, rng.choice([0.0, 10.0]))


@settings(max_examples=60, deadline=None)
@given(metric_graphs(), st.randoms(use_true_random=False))
def test_paths_do_not_depend_on_insertion_order(g: nx.Graph, rnd: random.Random) -> None:
    edges = list(g.edges(data=True))
    nodes = list(g.nodes)
    rnd.shuffle(edges)
    rnd.shuffle(nodes)
    h = nx.Graph()
    h.add_nodes_from(nodes)
    h.add_edges_from((v, u, d) if rnd.random() < 0.5 else (u, v, d) for u, v, d in edges)
    for src in g:
        for dst in g:
            assert shortest_path(g, src, dst) == shortest_path(h, src, dst)


def test_ties_go_to_fewer_hops_then_lower_names() -> None:
    g = nx.Graph()
    g.add_edge("a", "s10", delay_ms=1.0)
    g.add_edge("s10", "z", delay_ms=1.0)
    g.add_edge("a", "s9", delay_ms=1.0)
    g.add_edge("s9", "z", delay_ms=1.0)
    g.add_edge("a", "x", delay_ms=0.0)
    g.add_edge("x", "y", delay_ms=1.0)
    g.add_edge("y", "z", delay_ms=1.0)
    assert shortest_path(g, "a", "z") == ("a", "s9", "z")  # s9 sorts before s10
    assert shortest_path(g, "a", "a") == ("a",)
    assert shortest_path(g, "a", "nowhere") is None


def test_bad_weights_are_rejected() -> None:
    g = nx.Graph()
    g.add_edge("a", "b", delay_ms=math.nan)
    with pytest.raises(ValueError, match="delay_ms nan"):
        shortest_path(g, "a", "b")


def test_dijkstra_with_targets_returns_only_final_predecessors() -> None:
    g = nx.path_graph(6)
    nx.set_edge_attributes(g, 1.0, "delay_ms")
    pred = dijkstra(adjacency(g), 0, [2])
    assert set(pred) <= {1, 2, 3} and pred[2] == 1
    assert set(dijkstra(adjacency(g), 0)) == {1, 2, 3, 4, 5}


# --------------------------------------------------------------------------- hysteresis


def two_paths(short_ms: float = 5.0, long_ms: float = 40.0) -> nx.Graph:
    """Pair a-b: a-x-b with ``short_ms`` and a-y-b with ``long_ms`` (split evenly)."""
    g = nx.Graph()
    for mid, total in (("x", short_ms), ("y", long_ms)):
        g.add_edge("a", mid, delay_ms=total / 2, avail_mbit=100.0, up=True)
        g.add_edge(mid, "b", delay_ms=total / 2, avail_mbit=100.0, up=True)
    return g


SHORT, LONG = ("a", "x", "b"), ("a", "y", "b")


def noisy(g: nx.Graph, base: nx.Graph, rng: random.Random, spread: float = 0.1) -> None:
    """Every metric of ``g`` set to its value in ``base`` +- ``spread``."""
    for u, v, d in base.edges(data=True):
        g.edges[u, v]["delay_ms"] = d["delay_ms"] * rng.uniform(1 - spread, 1 + spread)
        g.edges[u, v]["avail_mbit"] = d["avail_mbit"] * rng.uniform(1 - spread, 1 + spread)


def test_the_short_path_is_taken_and_a_rise_moves_it_at_the_next_update() -> None:
    g = two_paths()
    keeper = PathKeeper([("b", "a")])
    assert keeper.pairs == [("a", "b")]
    assert keeper.update(0.0, g) == [PathChange(("a", "b"), None, SHORT, "new", 5.0)]
    assert keeper.update(1.0, g) == []
    g.edges["x", "b"]["delay_ms"] = 77.5  # the 5 ms path is now 80 ms
    assert keeper.update(2.0, g) == [PathChange(("a", "b"), SHORT, LONG, "better", 40.0)]
    assert keeper.paths == {("a", "b"): LONG}


@pytest.mark.parametrize("seed", range(3))
def test_noise_of_ten_percent_never_flips_the_path(seed: int) -> None:
    rng = random.Random(seed)
    for base, want in ((two_paths(5, 40), SHORT), (two_paths(80, 40), LONG),
                       (two_paths(10, 10), SHORT), (two_paths(10, 11), SHORT)):
        g = base.copy()
        keeper = PathKeeper([("a", "b")])
        keeper.update(0.0, g)
        assert keeper.paths[("a", "b")] == want
        for step in range(1, 1500):
            noisy(g, base, rng)
            assert keeper.update(float(step), g) == []


def test_without_hysteresis_the_same_noise_does_flip() -> None:
    """The control for the test above: the noise is large enough to matter."""
    rng = random.Random(1)
    base = two_paths(10, 10)
    g = base.copy()
    keeper = PathKeeper([("a", "b")], PathPolicy(rel_margin=0.0, abs_margin_ms=0.0))
    moves = 0
    for t in range(300):
        noisy(g, base, rng)
        moves += len(keeper.update(float(t), g))
    assert moves > 50


def test_a_raise_under_noise_moves_once_and_stays() -> None:
    rng = random.Random(7)
    base = two_paths(5, 40)
    g = base.copy()
    keeper = PathKeeper([("a", "b")], PathPolicy(hold_down_s=2.0))
    moves = []
    for t in range(400):
        if t == 200:
            base.edges["x", "b"]["delay_ms"] = 77.5
        noisy(g, base, rng)
        moves += [(t, c.new) for c in keeper.update(float(t), g)]
    assert moves == [(0, SHORT), (200, LONG)]


def test_a_broken_link_moves_the_path_at_once_even_in_hold_down() -> None:
    g = two_paths()
    keeper = PathKeeper([("a", "b")], PathPolicy(hold_down_s=60.0))
    keeper.update(0.0, g)
    g.edges["a", "x"]["up"] = False
    assert is_broken(g, SHORT)
    assert keeper.update(0.5, g) == [PathChange(("a", "b"), SHORT, LONG, "broken", 40.0)]
    g.edges["a", "x"]["up"] = True  # back, and better, but within the hold-down
    assert keeper.update(1.0, g) == []
    assert keeper.update(60.5, g) == [PathChange(("a", "b"), LONG, SHORT, "better", 5.0)]
    g.remove_node("y")
    g.edges["x", "b"]["up"] = False
    assert keeper.update(61.0, g) == [PathChange(("a", "b"), SHORT, None, "broken")]
    assert keeper.paths == {}
    g.edges["x", "b"]["up"] = True
    assert keeper.update(61.5, g) == [PathChange(("a", "b"), None, SHORT, "new", 5.0)]


def test_small_gains_are_ignored_by_both_margins() -> None:
    keeper = PathKeeper([("a", "b")], PathPolicy(rel_margin=0.2, abs_margin_ms=1.0))
    g = two_paths(10, 12)
    keeper.update(0.0, g)
    for short, moved in ((13.0, False), (14.9, False), (15.5, True)):
        g.edges["x", "b"]["delay_ms"] = short - 5.0
        assert bool(keeper.update(1.0, g)) is moved, short
    # 0.9 ms beats 1.8 ms by 50 % but by less than the 1 ms absolute margin
    g = two_paths(1.8, 5.0)
    keeper = PathKeeper([("a", "b")], PathPolicy(rel_margin=0.2, abs_margin_ms=1.0))
    keeper.update(0.0, g)
    g.edges["a", "y"]["delay_ms"] = g.edges["y", "b"]["delay_ms"] = 0.45
    assert keeper.update(1.0, g) == []
    g.edges["a", "y"]["delay_ms"] = g.edges["y", "b"]["delay_ms"] = 0.35
    assert keeper.update(2.0, g)[0].new == LONG


def test_bandwidth_is_a_constraint_with_its_own_hysteresis_band() -> None:
    g = two_paths(5, 40)
    keeper = PathKeeper([("a", "b")], PathPolicy(min_avail_mbit=10.0, rel_margin=0.2))
    g.edges["x", "b"]["avail_mbit"] = 5.0
    assert keeper.update(0.0, g)[0].new == LONG  # the short path cannot carry the stream
    assert path_avail(g, SHORT) == 5.0
    g.edges["x", "b"]["avail_mbit"] = 12.0
    assert keeper.update(1.0, g)[0].new == SHORT  # it can again, and it is much faster
    for avail in (9.0, 8.5, 8.1):  # short of 10, but within the 20 % band: stay
        g.edges["x", "b"]["avail_mbit"] = avail
        assert keeper.update(2.0, g) == []
    g.edges["x", "b"]["avail_mbit"] = 7.0
    assert keeper.update(3.0, g) == [PathChange(("a", "b"), SHORT, LONG, "bandwidth", 40.0)]


def test_without_a_feasible_path_the_fastest_is_used_or_none() -> None:
    g = two_paths(5, 40)
    nx.set_edge_attributes(g, 1.0, "avail_mbit")
    assert PathKeeper([("a", "b")], PathPolicy(min_avail_mbit=10.0)).update(0.0, g)[0].new \
        == SHORT
    strict = PathKeeper([("a", "b")], PathPolicy(min_avail_mbit=10.0, fallback=False))
    assert strict.update(0.0, g) == [] and strict.paths == {}


def test_pairs_come_and_go() -> None:
    g = two_paths()
    g.add_edge("b", "c", delay_ms=1.0)
    keeper = PathKeeper([("a", "b")])
    keeper.update(0.0, g)
    assert keeper.set_pairs([("c", "b"), ("b", "a")]) == []
    assert [c.new for c in keeper.update(1.0, g)] == [("b", "c")]
    assert keeper.set_pairs([("b", "c")]) == [PathChange(("a", "b"), SHORT, None, "removed")]
    assert keeper.update(2.0, g) == []
    keeper.set_pairs([("a", "zz")])  # a host not (yet) in the graph: no path, no error
    assert keeper.update(3.0, g) == [] and keeper.paths == {}
    with pytest.raises(ValueError, match="own neighbour"):
        normal_pair("a", "a")
    with pytest.raises(ValueError, match="rel_margin"):
        PathPolicy(rel_margin=1.0)
    with pytest.raises(ValueError, match="hold_down_s"):
        PathPolicy(hold_down_s=-1)


# --------------------------------------------------------------------------- rules


def route_of(view: NetView, rules: list[Rule], src: str, dst: str,
             **fields: object) -> list[str]:
    """The switches an IPv4 packet from host ``src`` to host ``dst`` passes, in order,
    checked to reach ``dst`` exactly once."""
    h, d = view.hosts[src], view.hosts[dst]
    packet = Packet(eth_dst=d.mac, eth_src=h.mac, eth_type=ETH_TYPE_IPV4, ipv4_src=h.ip,
                    ipv4_dst=d.ip, **fields)
    net = FakeNet(view, rules)
    assert net.trace(src, packet).received == Counter({dst: 1})
    wire = {(k.a, k.a_port): (k.b, k.b_port) for k in view.links}
    wire.update({(k.b, k.b_port): (k.a, k.a_port) for k in view.links})
    switch, in_port, route = h.switch, h.port, []
    while True:
        route.append(switch)
        rule = net.lookup(switch, packet, in_port)
        assert rule is not None and len(rule.actions) == 1
        out = rule.actions[0].port
        if (switch, out) not in wire:
            return route
        switch, in_port = wire[switch, out]


def square() -> NetView:
    """h1 on s1, h4 on s4; s1-s2-s4 is 5 ms, s1-s3-s4 is 40 ms; one host per switch."""
    g = nx.Graph()
    g.add_nodes_from(range(4))
    g.add_edge(0, 1, delay_ms=2.0, bw_mbit=100.0)
    g.add_edge(1, 3, delay_ms=3.0, bw_mbit=100.0)
    g.add_edge(0, 2, delay_ms=20.0, bw_mbit=100.0)
    g.add_edge(2, 3, delay_ms=20.0, bw_mbit=100.0)
    return NetView.from_dict(topology_dict(g, 1))


def test_mesh_traffic_follows_its_path_and_other_traffic_keeps_l2() -> None:
    view = square()
    l2 = l2_rules(view)
    forced = {("h1", "h4"): ("h1", "s1", "s3", "s4", "h4")}  # not L2's choice (s2)
    mesh = mesh_rules(view, [("h4", "h1")], forced)
    assert {r.priority for r in mesh} == {PRIORITY_MESH} and PRIORITY_MESH > PRIORITY_UNICAST
    assert {r.cookie for r in mesh} == {COOKIE} and len(mesh) == 6
    rules = l2 + mesh
    assert route_of(view, rules, "h1", "h4") == ["s1", "s3", "s4"]
    assert route_of(view, rules, "h4", "h1") == ["s4", "s3", "s1"]
    assert route_of(view, rules, "h2", "h4") == ["s2", "s4"]  # not a mesh pair: L2
    assert route_of(view, l2, "h1", "h4") == ["s1", "s2", "s4"]
    net = FakeNet(view, rules)
    arp = net.send("h1", view.hosts["h4"].mac, eth_type=ETH_TYPE_ARP)
    assert arp == Counter({"h4": 1})
    assert net.send("h1", "ff:ff:ff:ff:ff:ff") == Counter({"h2": 1, "h3": 1, "h4": 1})
    # paths may name switches only, and be given for either order of the pair
    assert mesh_rules(view, [("h1", "h4")], {("h4", "h1"): ("s4", "s3", "s1")}) == mesh


def test_a_latency_rise_moves_mesh_traffic_end_to_end() -> None:
    """Probes -> estimates -> graph -> kept path -> rules -> where packets go.

    LLDP every second with +-10 % noise on every link; the 5 ms path rises to 80 ms at
    t = 60 s: traffic must move within 5 s, and never move otherwise.
    """
    view = square()
    rng = random.Random(3)
    mon = LinkMonitor.from_view(view, latency=LatencyEstimator(window=5))
    keeper = PathKeeper([("h1", "h4")], PathPolicy(hold_down_s=2.0))
    truth = {(k.a, k.b): k.delay_ms for k in view.links}
    echo = {s: rng.uniform(1.0, 4.0) for s in view.switches}
    moves = []
    for t in range(150):
        if t == 60:
            truth["s2", "s4"] = 78.0
        for s, rtt in echo.items():
            mon.echo(s, t, t + rtt * rng.uniform(0.9, 1.1) / 1000)
        for (a, b), ms in truth.items():
            ports = mon.graph.graph.edges[a, b]["ports"]
            for x, y in ((a, b), (b, a)):
                lag = (echo[x] / 2 + ms * rng.uniform(0.9, 1.1) + echo[y] / 2) / 1000
                mon.lldp(x, ports[x], y, ports[y], t + 0.1, t + 0.1 + lag)
        moves += [(t, c.new) for c in keeper.update(t + 0.5, mon.graph.graph)]
    assert [m[1] for m in moves] == [("h1", "s1", "s2", "s4", "h4"),
                                    ("h1", "s1", "s3", "s4", "h4")]
    assert moves[0][0] == 0 and 60 <= moves[1][0] < 65
    rules = l2_rules(view) + mesh_rules(view, keeper.pairs, keeper.paths)
    assert route_of(view, rules, "h1", "h4") == ["s1", "s3", "s4"]
    assert route_of(view, rules, "h4", "h1") == ["s4", "s3", "s1"]


def test_hosts_on_one_switch_and_pairs_without_paths() -> None:
    g = nx.path_graph(2)
    view = NetView.from_dict(topology_dict(g, 2))  # h1, h2 on s1; h3, h4 on s2
    mesh = mesh_rules(view, [("h1", "h2"), ("h1", "h3")], {("h1", "h2"): ("h1", "s1", "h2")})
    assert len(mesh) == 2
    rules = l2_rules(view) + mesh
    assert route_of(view, rules, "h1", "h2") == ["s1"]
    assert route_of(view, rules, "h1", "h3") == ["s1", "s2"]  # no path: L2 carries it


@pytest.mark.parametrize("path, message", [
    (("s2", "s1"), "must run from s1 to s2"),
    (("s1",), "must run from s1 to s2"),
    (("s1", "s2", "s1", "s2"), "visits a switch twice"),
])
def test_bad_paths_are_rejected(path: tuple, message: str) -> None:
    view = NetView.from_dict(topology_dict(nx.path_graph(2), 1))
    with pytest.raises(ValueError, match=message):
        mesh_rules(view, [("h1", "h2")], {("h1", "h2"): path})


def test_paths_over_missing_links_and_unknown_hosts_are_rejected() -> None:
    view = NetView.from_dict(topology_dict(nx.path_graph(3), 1))
    with pytest.raises(ValueError, match="s1-s3, which is not a link"):
        mesh_rules(view, [("h1", "h3")], {("h1", "h3"): ("s1", "s3")})
    with pytest.raises(ValueError, match="h9 is not a host"):
        mesh_rules(view, [("h1", "h9")], {})


@st.composite
def meshes(draw: st.DrawFn) -> tuple[NetView, list[tuple[str, str]]]:
    n = draw(st.integers(1, 7))
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for i in range(1, n):
        g.add_edge(i, draw(st.integers(0, i - 1)))
    for u, v in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                              max_size=2 * n)):
        if u != v:
            g.add_edge(u, v)
    for u, v in g.edges:
        g.edges[u, v]["delay_ms"] = draw(st.sampled_from([0.5, 1.0, 5.0, 20.0]))
    view = NetView.from_dict(topology_dict(g, {node: draw(st.integers(0, 2)) for node in g}))
    hosts = sorted(view.hosts)
    pairs = []
    if len(hosts) >= 2:
        pairs = draw(st.lists(st.tuples(st.sampled_from(hosts), st.sampled_from(hosts))
                              .filter(lambda p: p[0] != p[1]), max_size=6))
    return view, pairs


@settings(max_examples=60, deadline=None)
@given(meshes(), st.randoms(use_true_random=False))
def test_measured_paths_deliver_exactly_once_along_the_kept_path(
        case: tuple[NetView, list], rnd: random.Random) -> None:
    view, pairs = case
    mg = MetricGraph.from_view(view)
    for a, b in mg.switch_links():  # measured latencies differ from the configuration
        mg.update_delay(a, b, rnd.choice([0.5, 2.0, 9.0, 30.0]))
    keeper = PathKeeper(pairs)
    keeper.update(0.0, mg.graph)
    rules = l2_rules(view) + mesh_rules(view, pairs, keeper.paths)
    for (a, b), path in keeper.paths.items():
        best = nx.shortest_path_length(mg.graph, a, b, weight="delay_ms")
        assert path_delay(mg.graph, path) == pytest.approx(best)
        switches = [n for n in path if n in view.switches]
        assert route_of(view, rules, a, b) == switches
        assert route_of(view, rules, b, a) == switches[::-1]
    net = FakeNet(view, rules)
    for src in view.hosts:  # everything else still works as L2 made it
        others = Counter({h: 1 for h in view.hosts if h != src})
        assert net.send(src, "ff:ff:ff:ff:ff:ff") == others
        for dst, host in view.hosts.items():
            if dst != src:
                assert net.send(src, host.mac) == Counter({dst: 1})
