"""Topology generators: validity, determinism, shape, and use from ``mn --custom``."""

from __future__ import annotations

import itertools
import math
import runpy
import sys
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from testbed.core.spec import (
    HELPER,
    MASTER,
    SWITCH,
    VIEWER,
    SpecError,
    hosts,
    link_params,
    switches,
    validate,
)
from topologies import ParamError, generate, parse_spec_string
from topologies.isp import find_city, great_circle_km, load_backbone, networks
from topologies.mn import tclink_opts

TOPO_DIR = Path(topologies.__file__).parent
MODULE_FILES = ["tiered", "geometric", "isp", "chain", "line"]
SEEDED = ["tiered", "geometric"]


def snapshot(g: nx.Graph) -> tuple:
    """Everything about a spec that a run depends on, comparable with ==."""
    nodes = sorted((n, sorted(d.items())) for n, d in g.nodes(data=True))
    edges = sorted((tuple(sorted((u, v))), sorted(d.items())) for u, v, d in g.edges(data=True))
    return nodes, edges


def path_delay(g: nx.Graph, a: str, b: str) -> float:
    return nx.shortest_path_length(g, a, b, weight="delay_ms")


def roles(g: nx.Graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, role in g.nodes(data="role"):
        counts[role] = counts.get(role, 0) + 1
    return counts


# ------------------------------------------------------------ every generator


@pytest.mark.parametrize("name", sorted(topologies.GENERATORS))
def test_every_generator_validates_with_defaults(name: str) -> None:
    g = generate(name)
    validate(g)
    assert roles(g)[MASTER] == 1
    assert roles(g).get(HELPER, 0) >= 1
    for u, v in g.edges:
        assert link_params(g, u, v).delay_ms >= 0


@pytest.mark.parametrize("name", sorted(topologies.GENERATORS))
def test_generators_are_deterministic(name: str) -> None:
    assert snapshot(generate(name)) == snapshot(generate(name))


@pytest.mark.parametrize("name", SEEDED)
def test_seed_changes_random_generators(name: str) -> None:
    assert snapshot(generate(name, seed=1)) == snapshot(generate(name, seed=1))
    assert snapshot(generate(name, seed=1)) != snapshot(generate(name, seed=2))


def test_registry_lists_each_module() -> None:
    assert sorted(topologies.GENERATORS) == ["chain", "geometric", "isp", "line", "tiered"]
    assert "seed" in topologies.parameters("tiered")
    assert topologies.parameters("chain")["delays_ms"] == (5.0, 10.0, 20.0)


# ------------------------------------------------------------ generate() errors


def test_unknown_generator_is_one_clear_line() -> None:
    with pytest.raises(SpecError) as err:
        generate("tree")
    assert str(err.value) == (
        "unknown topology generator 'tree' (expected one of chain, geometric, isp, line, tiered)")


def test_unknown_parameter_names_it_and_the_known_ones() -> None:
    with pytest.raises(ParamError) as err:
        generate("tiered", regionz=4)
    msg = str(err.value)
    assert msg.startswith("tiered: regionz: unknown parameter (expected one of regions, tiers,")
    assert err.value.param == "regionz"
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"regions": "four"}, "regions='four' (expected an integer)"),
        ({"regions": 2.5}, "regions=2.5 (expected an integer)"),
        ({"regions": True}, "regions=True (expected an integer)"),
        ({"spread_pct": "wide"}, "spread_pct='wide' (expected a finite number)"),
        ({"spread_pct": float("nan")}, "spread_pct=nan (expected a finite number)"),
        ({"tier_delays_ms": "3:x"}, "tier_delays_ms='3:x' (expected numbers, written like 3:25)"),
        ({"regions": 0}, "regions=0 (must be >= 1)"),
        ({"regions": 1, "tiers": 2}, "tiers=2 (must be <= regions (1))"),
        ({"tiers": 3, "tier_delays_ms": "3:25"}, "must give one delay per tier (3)"),
        ({"core_bw_mbit": 0}, "core_bw_mbit=0.0 (must be > 0)"),
    ],
)
def test_bad_parameters_say_which_and_why(params: dict, fragment: str) -> None:
    with pytest.raises(ParamError) as err:
        generate("tiered", **params)
    assert str(err.value).startswith("tiered: ")
    assert fragment in str(err.value)


def test_parameters_are_coerced_like_mininet_args() -> None:
    as_text = generate("tiered", tier_delays_ms="3:25", spread_pct=0)
    as_list = generate("tiered", tier_delays_ms=[3, 25], spread_pct=0.0)
    assert snapshot(as_text) == snapshot(as_list)
    off = generate("chain", bw_mbit="none")
    assert all(link_params(off, u, v).bw_mbit is None for u, v in off.edges)


# ------------------------------------------------------------ spec strings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tiered", ("tiered", {})),
        ("tiered,regions=4,helpers_per_region=2",
         ("tiered", {"regions": 4, "helpers_per_region": 2})),
        (" chain , delays_ms=5:10:20 , bw_mbit=0.5 ",
         ("chain", {"delays_ms": "5:10:20", "bw_mbit": 0.5})),
        ("x,a=true,b=False,c=yes,d=off,e=-3,f=1e3,g=abc,h=",
         ("x", {"a": True, "b": False, "c": True, "d": False, "e": -3, "f": 1000.0, "g": "abc",
                "h": ""})),
        ("isp,master_city=new york", ("isp", {"master_city": "new york"})),
    ],
)
def test_parse_spec_string(text: str, expected: tuple) -> None:
    assert parse_spec_string(text) == expected
    name, params = parse_spec_string(text)
    assert all(type(v) is type(expected[1][k]) for k, v in params.items())


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "missing generator name"),
        (",regions=4", "missing generator name"),
        ("tiered,4", "'4' is not key=value (write lists with ':'"),
        ("tiered,tier_delays_ms=3,25", "'25' is not key=value"),
        ("tiered,=4", "'=4' is not key=value"),
        ("tiered,seed=1,seed=2", "'seed' given twice"),
    ],
)
def test_parse_spec_string_errors(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec_string(text)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_spec_string_round_trip_through_generate() -> None:
    name, params = parse_spec_string("tiered,regions=3,tiers=3,tier_delays_ms=2:20:60,seed=5")
    g = generate(name, **params)
    assert sorted({t for _, t in g.nodes(data="tier")}) == [0, 1, 2, 3]


# ------------------------------------------------------------ tiered


def test_tiered_default_shape() -> None:
    g = generate("tiered")
    assert roles(g) == {SWITCH: 5, MASTER: 1, HELPER: 8, VIEWER: 4}
    assert hosts(g, [HELPER]) == [f"h{i}" for i in range(1, 9)]
    assert switches(g) == ["s1", "s2", "s3", "s4", "s5"]
    assert list(g.neighbors("m1")) == ["s1"]
    for h in hosts(g, [HELPER, VIEWER]):
        (sw,) = g.neighbors(h)
        assert g.nodes[sw]["region"] == g.nodes[h]["region"]
        assert g.nodes[sw]["tier"] == g.nodes[h]["tier"]
        assert link_params(g, h, sw).delay_ms == 1.0
        assert link_params(g, h, sw).bw_mbit == 20.0
    assert all(bw <= 50 for _, _, bw in g.edges(data="bw_mbit"))


def test_tiered_tiers_are_visible_from_the_master() -> None:
    g = generate("tiered", regions=4, helpers_per_region=2, tier_delays_ms="2:20", seed=3)
    by_tier: dict[int, list[float]] = {1: [], 2: []}
    for h in hosts(g, [HELPER]):
        by_tier[g.nodes[h]["tier"]].append(path_delay(g, "m1", h))
    assert len(by_tier[1]) == len(by_tier[2]) == 4
    assert min(by_tier[2]) > 3 * max(by_tier[1])
    assert [g.nodes[f"s{r + 1}"]["tier"] for r in range(1, 5)] == [1, 1, 2, 2]


def test_tiered_spread_is_small_and_not_uniform() -> None:
    g = generate("tiered", regions=6, tiers=2, tier_delays_ms="10:40", spread_pct=10, seed=9)
    core = {sw: link_params(g, "s1", sw).delay_ms for sw in switches(g) if sw != "s1"}
    tier1 = [d for sw, d in core.items() if g.nodes[sw]["tier"] == 1]
    tier2 = [d for sw, d in core.items() if g.nodes[sw]["tier"] == 2]
    assert all(9 <= d <= 11 for d in tier1) and all(36 <= d <= 44 for d in tier2)
    assert len(set(tier1)) > 1 and len(set(tier2)) > 1
    flat = generate("tiered", regions=6, tier_delays_ms="10:40", spread_pct=0)
    assert {link_params(flat, "s1", "s2").delay_ms, link_params(flat, "s1", "s7").delay_ms} == {
        10.0, 40.0}


def test_tiered_three_tiers_from_delay_list() -> None:
    g = generate("tiered", regions=3, tier_delays_ms=[1, 10, 100], spread_pct=0)
    assert [link_params(g, "s1", f"s{i}").delay_ms for i in (2, 3, 4)] == [1.0, 10.0, 100.0]


# ------------------------------------------------------------ geometric


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=40),
    radius=st.floats(min_value=0.0, max_value=0.6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_geometric_is_connected_and_valid_for_any_seed(n: int, radius: float, seed: int) -> None:
    g = generate("geometric", switches=n, radius=radius, helpers=5, viewers=3, seed=seed)
    validate(g)
    sw = switches(g)
    assert len(sw) == n
    assert nx.is_connected(g.subgraph(sw))
    for u, v in g.subgraph(sw).edges:
        assert link_params(g, u, v).delay_ms == pytest.approx(
            math.dist(g.nodes[u]["pos"], g.nodes[v]["pos"]) * 20.0, abs=1e-3)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=2, max_value=25), seed=st.integers(min_value=0, max_value=10**6))
def test_geometric_bridges_are_the_shortest_possible(n: int, seed: int) -> None:
    # With radius 0 nothing is in range, so the bridging alone must give a
    # minimum spanning tree of the points.
    g = generate("geometric", switches=n, radius=0.0, helpers=0, viewers=0, seed=seed)
    sw = g.subgraph(switches(g))
    pos = nx.get_node_attributes(sw, "pos")
    full = nx.Graph()
    for u, v in itertools.combinations(pos, 2):
        full.add_edge(u, v, weight=math.dist(pos[u], pos[v]))
    best = nx.minimum_spanning_tree(full).size(weight="weight")
    assert sw.number_of_edges() == n - 1
    assert sum(math.dist(pos[u], pos[v]) for u, v in sw.edges) == pytest.approx(best)


def test_geometric_master_on_most_central_switch() -> None:
    g = generate("geometric", switches=15, radius=0.35, seed=4)
    sw = g.subgraph(switches(g))
    closeness = nx.closeness_centrality(sw, distance="delay_ms")
    (home,) = g.neighbors("m1")
    assert closeness[home] == pytest.approx(max(closeness.values()))
    used = {next(iter(g.neighbors(h))) for h in hosts(g, [HELPER])}
    assert home not in used and len(used) == 8  # 8 helpers over 14 other switches
    assert all(len(g.nodes[n]["pos"]) == 2 for n in g.nodes)


# ------------------------------------------------------------ isp


def test_isp_data_file_loads() -> None:
    assert "abilene" in networks()
    bb = load_backbone("abilene")
    assert bb.number_of_nodes() == 11 and bb.number_of_edges() == 14
    assert nx.is_connected(bb)
    for _, d in bb.nodes(data=True):
        assert 24 < d["latitude"] < 50 and -125 < d["longitude"] < -66  # contiguous US
    assert find_city(bb, "New York") == "newyork"
    assert find_city(bb, "kansas city") == "kansascity"


def test_isp_delays_are_plausible() -> None:
    g = generate("isp")
    city = {d["city"]: n for n, d in g.nodes(data=True) if d["role"] == SWITCH}
    ny, la, dc = city["newyork"], city["losangeles"], city["washington"]
    assert great_circle_km(40.71, -74.01, 34.05, -118.24) == pytest.approx(3940, abs=30)
    assert 19.5 < path_delay(g, ny, la) < 30  # about 20 ms one way, a little more on the routes
    assert link_params(g, ny, dc).delay_ms == pytest.approx(1.64, abs=0.05)  # ~330 km
    seattle, sunnyvale = city["seattle"], city["sunnyvale"]
    assert link_params(g, seattle, sunnyvale).delay_ms == pytest.approx(5.7, abs=0.2)
    slow = generate("isp", km_per_ms=100)
    assert path_delay(slow, ny, la) == pytest.approx(2 * path_delay(g, ny, la), abs=0.01)


def test_isp_places_hosts() -> None:
    g = generate("isp", master_city="Washington", helpers=12, viewers=2)
    (home,) = g.neighbors("m1")
    assert g.nodes[home]["city"] == "washington"
    helper_cities = [g.nodes[h]["city"] for h in hosts(g, [HELPER])]
    assert "washington" not in helper_cities
    assert len(set(helper_cities)) == 10  # 12 helpers round-robin over the 10 other cities
    assert helper_cities[0] == helper_cities[10] == "seattle"
    assert [g.nodes[v]["city"] for v in hosts(g, [VIEWER])] == helper_cities[:2]


@pytest.mark.parametrize("name", ["geometric", "isp"])
def test_helpers_links_can_be_wider_than_viewers(name: str) -> None:
    def access(g: nx.Graph, role: str) -> set[float]:
        return {link_params(g, h, next(iter(g.neighbors(h)))).bw_mbit for h in hosts(g, [role])}

    g = generate(name, helpers=6, viewers=3, access_bw_mbit=50, helper_bw_mbit=1000)
    assert access(g, HELPER) == {1000} and access(g, VIEWER) == {50}
    same = generate(name, helpers=6, viewers=3, access_bw_mbit=50)
    assert access(same, HELPER) == access(same, VIEWER) == {50}
    with pytest.raises(ParamError, match="helper_bw_mbit=0.0 .must be > 0"):
        generate(name, helper_bw_mbit=0)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"master_city": "boston"}, "isp: master_city='boston' (unknown city (expected one of"),
        ({"network": "../etc"}, "isp: network='../etc' (expected one of abilene"),
        ({"km_per_ms": 0}, "isp: km_per_ms=0.0 (must be > 0)"),
    ],
)
def test_isp_errors(params: dict, fragment: str) -> None:
    with pytest.raises(ParamError) as err:
        generate("isp", **params)
    assert fragment in str(err.value)


# ------------------------------------------------------------ chain


def test_chain_is_a_path_with_delays_in_order() -> None:
    g = generate("chain", delays_ms="5:10:20", bw_mbit=10, bottleneck=2)
    assert nx.shortest_path(g, "h1", "h2") == ["h1", "s1", "s2", "h2"]
    assert g.number_of_edges() == 3
    assert [link_params(g, a, b).delay_ms for a, b in [("h1", "s1"), ("s1", "s2"), ("s2", "h2")]] \
        == [5.0, 10.0, 20.0]
    assert path_delay(g, "h1", "h2") == 35.0
    assert [g.edges[e].get("bw_mbit") for e in [("h1", "s1"), ("s1", "s2"), ("s2", "h2")]] == [
        None, 10.0, None]
    assert g.nodes["h1"]["role"] == MASTER and g.nodes["h2"]["role"] == HELPER


def test_chain_bottleneck_zero_shapes_every_link() -> None:
    g = generate("chain", delays_ms=[1, 2, 3, 4], bw_mbit=5, loss_pct=1, jitter_ms=0.5,
                 queue_pkts=50)
    assert len(switches(g)) == 3
    for u, v in g.edges:
        p = link_params(g, u, v)
        assert (p.bw_mbit, p.loss_pct, p.jitter_ms, p.queue_pkts) == (5.0, 1.0, 0.5, 50)
    plain = generate("chain", delays_ms="5:5")
    assert all("loss_pct" not in d and "jitter_ms" not in d for _, _, d in plain.edges(data=True))


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"delays_ms": "5"}, "needs at least 2 links"),
        ({"delays_ms": "5:-1"}, "must be >= 0"),
        ({"bottleneck": 4}, "bottleneck=4 (must be 0 (all) or 1..3)"),
        ({"loss_pct": 101}, "must be in [0, 100]"),
    ],
)
def test_chain_errors(params: dict, fragment: str) -> None:
    with pytest.raises(ParamError) as err:
        generate("chain", **params)
    assert fragment in str(err.value)


# ------------------------------------------------------------ mn --custom


def test_tclink_opts() -> None:
    assert tclink_opts({"delay_ms": 5.0, "bw_mbit": 10.0}) == {"delay": "5ms", "bw": 10.0}
    assert tclink_opts({"delay_ms": 0.25, "jitter_ms": 1, "loss_pct": 2.0, "queue_pkts": 30}) == {
        "delay": "0.25ms", "jitter": "1ms", "loss": 2.0, "max_queue_size": 30}
    assert tclink_opts({}) == {}


@pytest.fixture
def keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


MN_CASES = {
    "tiered": {"regions": 2, "helpers_per_region": 1, "viewers_per_region": 1},
    "geometric": {"switches": 6, "helpers": 3, "viewers": 2, "seed": 5},
    "isp": {"helpers": 4, "viewers": 0},
    "chain": {"delays_ms": "5:10:20", "bw_mbit": 10, "bottleneck": 2},
    "line": {"switches": 3, "hosts_per_switch": 2},
}


@pytest.mark.usefixtures("keep_sys_path")
@pytest.mark.parametrize("module", MODULE_FILES)
def test_module_file_builds_a_mininet_topo(module: str) -> None:
    import mininet.topo  # noqa: F401 -- set-up installs Mininet; the converter needs it
    ns = runpy.run_path(str(TOPO_DIR / f"{module}.py"))
    topo = ns["topos"][module](**MN_CASES[module])
    spec = generate(module, **MN_CASES[module])
    assert sorted(topo.hosts()) == sorted(hosts(spec))
    assert sorted(topo.switches()) == sorted(switches(spec))
    assert len(topo.links()) == spec.number_of_edges()
    for u, v, info in topo.links(withInfo=True):
        want = link_params(spec, u, v)
        assert info["delay"] == tclink_opts(spec.edges[u, v])["delay"]
        assert info["delay"].endswith("ms")
        assert float(info["delay"][:-2]) == pytest.approx(want.delay_ms, abs=1e-3)
        assert info.get("bw") == want.bw_mbit


@pytest.mark.usefixtures("keep_sys_path")
def test_module_file_runs_the_way_mn_runs_it() -> None:
    # mn execs the file in a bare namespace (no __file__, no __package__) and
    # calls topos[name](*args, **kwargs) from its own splitArgs.
    import mininet.util as util
    path = TOPO_DIR / "tiered.py"
    customs: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), customs, customs)  # noqa: S102
    topo = util.buildTopo(customs["topos"], "tiered,regions=3,tier_delays_ms=2:30,spread_pct=0")
    assert sorted(topo.switches()) == ["s1", "s2", "s3", "s4"]
    assert topo.linkInfo("s1", "s4")["delay"] == "30ms"
    assert topo.nodeInfo("s4")["dpid"] == f"{4:016x}"
    with pytest.raises(SpecError, match="positional argument 30"):
        util.buildTopo(customs["topos"], "tiered,tier_delays_ms=2,30")
