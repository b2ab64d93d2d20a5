"""Proactive L2 rules, judged by behaviour in the fake network over many graph families."""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from collections.abc import Callable

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.fakenet import AmbiguousMatch, FakeNet, ForwardingLoop, Packet, topology_dict
from testbed.core.l2 import (
    COOKIE,
    PRIORITY_MISS,
    NetView,
    TopologyError,
    flood_tree,
    l2_rules,
    next_hops,
    rules_for_dpid,
)
from testbed.core.rules import GROUP_BIT, Match, Output, Rule

BROADCAST = "ff:ff:ff:ff:ff:ff"
GROUP_MACS = (BROADCAST, "01:00:5e:01:01:01", "33:33:ff:00:00:01")  # ARP, IPv4 mc, IPv6 ND
UNKNOWN_MAC = "00:00:00:ab:cd:ef"


def view_of(g: nx.Graph, hosts: object = 1, **kwargs: int) -> NetView:
    return NetView.from_dict(topology_dict(g, hosts, **kwargs))


def check_forwarding(view: NetView) -> None:
    """Every unicast reaches exactly its host once; group frames reach all others once."""
    rules = l2_rules(view)
    net = FakeNet(view, rules)
    reach = {h: {x for x in view.hosts if _connected(view, h, x)} for h in view.hosts}
    for src in view.hosts:
        for dst, host in view.hosts.items():
            want = Counter({dst: 1}) if dst != src and dst in reach[src] else Counter()
            assert net.send(src, host.mac) == want, f"{src} -> {dst}"
        others = Counter({h: 1 for h in reach[src] if h != src})
        for mac in GROUP_MACS:
            assert net.send(src, mac) == others, f"{src} -> {mac}"
        assert net.send(src, UNKNOWN_MAC) == Counter()
        assert net.send(src, "02:00:00:00:00:01", eth_type=0x0800) == Counter()


def _connected(view: NetView, a: str, b: str) -> bool:
    return nx.has_path(view.graph(), view.hosts[a].switch, view.hosts[b].switch)


FAMILIES = {
    "single": nx.empty_graph(1),
    "path2": nx.path_graph(2),
    "path6": nx.path_graph(6),
    "star": nx.star_graph(5),
    "tree": nx.balanced_tree(2, 3),
    "cycle3": nx.cycle_graph(3),
    "cycle6": nx.cycle_graph(6),
    "grid": nx.grid_2d_graph(4, 4),
    "complete": nx.complete_graph(5),
    "ladder": nx.ladder_graph(4),
    "petersen": nx.petersen_graph(),
    "barbell": nx.barbell_graph(3, 2),
    "gnm": next(g for s in range(100)
                if nx.is_connected(g := nx.gnm_random_graph(9, 16, seed=s))),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("hosts", [1, 2])
def test_families_deliver_exactly_once(name: str, hosts: int) -> None:
    check_forwarding(view_of(FAMILIES[name], hosts))


@pytest.mark.parametrize("name", ["cycle6", "grid", "complete", "petersen"])
def test_families_with_delays_deliver_exactly_once(name: str) -> None:
    g = FAMILIES[name].copy()
    for i, (u, v) in enumerate(sorted(g.edges)):
        g.edges[u, v]["delay_ms"] = float((i * 7) % 5)  # many ties, some zero
    check_forwarding(view_of(g, 1, port_base=7))


@st.composite
def random_networks(draw: st.DrawFn) -> NetView:
    n = draw(st.integers(1, 8))
    order = draw(st.permutations(range(n)))
    g = nx.Graph()
    g.add_nodes_from(order)  # node order decides dpids
    for i in range(1, n):
        g.add_edge(i, draw(st.integers(0, i - 1)))
    for u, v in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                              max_size=2 * n)):
        if u != v:
            g.add_edge(u, v)
    for u, v in g.edges:
        g.edges[u, v]["delay_ms"] = draw(st.sampled_from([0.0, 0.5, 1.0, 10.0]))
    hosts = {node: draw(st.integers(0, 2)) for node in g.nodes}
    return view_of(g, hosts, port_base=draw(st.integers(1, 30)),
                   dpid_base=draw(st.integers(1, 2**40)))


@settings(max_examples=60, deadline=None)
@given(random_networks())
def test_random_connected_networks_deliver_exactly_once(view: NetView) -> None:
    check_forwarding(view)


@settings(max_examples=40, deadline=None)
@given(random_networks())
def test_unicast_follows_a_delay_shortest_path(view: NetView) -> None:
    g = view.graph()
    hops = next_hops(view, g)
    for dst in g.nodes:
        lengths = nx.single_source_dijkstra_path_length(g, dst, weight="delay_ms")
        for src in g.nodes:
            delay, at, seen = 0.0, src, {src}
            while at != dst:
                nxt = hops[dst][at]
                delay += g.edges[at, nxt]["delay_ms"]
                assert nxt not in seen
                seen.add(nxt)
                at = nxt
            assert math.isclose(delay, lengths[src], abs_tol=1e-6)


def test_low_delay_detour_beats_a_slow_direct_link() -> None:
    g = nx.Graph()
    g.add_edge("a", "b", delay_ms=100.0)
    g.add_edge("a", "c", delay_ms=1.0)
    g.add_edge("c", "b", delay_ms=1.0)
    view = view_of(g, 1)
    hops = next_hops(view)
    assert hops["s2"]["s1"] == "s3"  # s1=a, s2=b, s3=c
    assert sorted(flood_tree(view).edges) == [("s1", "s3"), ("s2", "s3")]
    check_forwarding(view)


def test_partitioned_switches_keep_each_part_working() -> None:
    g = nx.disjoint_union(nx.path_graph(3), nx.cycle_graph(3))
    view = view_of(g, 1)
    net = FakeNet(view, l2_rules(view))
    assert net.send("h1", view.hosts["h5"].mac) == Counter()
    assert net.send("h1", BROADCAST) == Counter({"h2": 1, "h3": 1})
    check_forwarding(view)


# ----------------------------------------------------------------- the rule set itself


def test_every_switch_has_one_drop_table_miss_and_all_rules_carry_the_cookie() -> None:
    view = view_of(FAMILIES["petersen"], 2)
    rules = l2_rules(view)
    for switch in view.switches.values():
        misses = [r for r in rules if r.dpid == switch.dpid and r.match == Match()]
        assert misses == [Rule(switch.dpid, 0, PRIORITY_MISS, Match(), (), COOKIE)]
    assert {r.cookie for r in rules} == {COOKIE}


def test_one_flood_rule_per_in_port_never_back_out() -> None:
    view = view_of(nx.star_graph(3), 2)  # hub s1 with 2 hosts and 3 tree links
    hub = [r for r in rules_for_dpid(view, 1) if r.match.eth_dst_mask == GROUP_BIT]
    assert sorted(r.match.in_port for r in hub) == [1, 2, 3, 4, 5]
    for r in hub:
        assert sorted(a.port for a in r.actions) == sorted({1, 2, 3, 4, 5} - {r.match.in_port})


def test_rules_are_deterministic_whatever_the_input_order() -> None:
    g = FAMILIES["grid"]
    data = topology_dict(g, 2)
    shuffled = copy.deepcopy(data)
    shuffled["switches"] = dict(reversed(list(shuffled["switches"].items())))
    shuffled["hosts"] = dict(reversed(list(shuffled["hosts"].items())))
    shuffled["links"] = [{k: link[k] for k in reversed(list(link))}
                         for link in reversed(shuffled["links"])]
    first = l2_rules(NetView.from_dict(data))
    assert first == l2_rules(NetView.from_dict(shuffled))
    assert first == l2_rules(NetView.from_json(json.dumps(data)))


def test_rules_for_unknown_dpid_are_empty() -> None:
    view = view_of(nx.path_graph(2))
    assert rules_for_dpid(view, 99) == []
    assert view.switch_by_dpid(99) is None and view.switch_by_dpid(2).name == "s2"


def test_to_dict_round_trips() -> None:
    view = view_of(FAMILIES["tree"], 2)
    assert NetView.from_dict(view.to_dict()) == view
    assert NetView.from_dict(json.loads(json.dumps(view.to_dict()))) == view


# ----------------------------------------------------------------- the fake net can fail


def test_fakenet_reports_a_missing_rule() -> None:
    view = view_of(nx.path_graph(3))
    rules = [r for r in l2_rules(view)
             if not (r.dpid == 2 and r.match.eth_dst == view.hosts["h3"].mac)]
    net = FakeNet(view, rules)
    outcome = net.trace("h1", Packet(view.hosts["h3"].mac))
    assert outcome.received == Counter() and outcome.dropped == [("s2", 2)]


def test_fakenet_detects_a_flooding_loop() -> None:
    view = view_of(nx.cycle_graph(3))
    rules = []
    for s in view.switches.values():  # flood on every link: what the spanning tree prevents
        ports = set(s.ports.values())
        for p in ports:
            outs = tuple(Output(q) for q in sorted(ports - {p}))
            rules.append(Rule(s.dpid, 0, 1, Match(in_port=p), outs, 0))
    with pytest.raises(ForwardingLoop):
        FakeNet(view, rules).send("h1", BROADCAST)


def test_fakenet_counts_duplicates_dead_ends_and_rejects_ambiguity() -> None:
    view = view_of(nx.path_graph(1), 2)
    dup = Rule(1, 0, 5, Match(), (Output(2), Output(2), Output(9)), 0)
    outcome = FakeNet(view, [dup]).trace("h1", Packet(BROADCAST))
    assert outcome.received == Counter({"h2": 2}) and outcome.dead_ends == [("s1", 9)]
    both = [Rule(1, 0, 5, Match(), (Output(2),), 0), Rule(1, 0, 5, Match(in_port=1), (), 0)]
    with pytest.raises(AmbiguousMatch):
        FakeNet(view, both).send("h1", BROADCAST)
    with pytest.raises(ValueError, match="not in the topology"):
        FakeNet(view, [Rule(7, 0, 0, Match(), (), 0)])


# ----------------------------------------------------------------- validation


def _base() -> dict:
    return {
        "switches": {"s1": {"dpid": 1, "ports": {"s1-eth1": 1, "s1-eth2": 2, "s1-eth3": 3}},
                     "s2": {"dpid": 2, "ports": {"s2-eth1": 1, "s2-eth2": 2}},
                     "s3": {"dpid": 3, "ports": {"s3-eth1": 1}}},
        "hosts": {"h1": {"ip": "10.0.0.1", "mac": "00:00:00:00:00:01", "switch": "s1",
                         "port": 1, "role": "helper"},
                  "h2": {"ip": "10.0.0.2", "mac": "00:00:00:00:00:02", "switch": "s2",
                         "port": 1, "role": "viewer"}},
        "links": [{"a": "s1", "a_port": 2, "b": "s2", "b_port": 2, "delay_ms": 10.0,
                   "bw_mbit": 10.0}],
    }


def _set(path: str, value: object) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        if value is _DELETE:
            del d[last]
        elif isinstance(d, list):
            d[int(last)] = value
        else:
            d[last] = value
    return change


_DELETE = object()
_LINK2 = {"a": "s1", "a_port": 3, "b": "s3", "b_port": 1, "delay_ms": 1.0}

INVALID = [
    (lambda d: d.clear() or d.update(nodes=[]), "topology: missing key 'switches'"),
    (_set("extra", 1), "topology: unknown key 'extra'"),
    (_set("switches", []), "switches: must be an object"),
    (_set("switches.s1.dpid", True), "switches.s1.dpid: True"),
    (_set("switches.s1.dpid", 0), "switches.s1.dpid: 0"),
    (_set("switches.s2.dpid", 1), "switches.s2.dpid: 1 is also the dpid of s1"),
    (_set("switches.s1.ports.s1-eth3", 1), "port 1 is also s1-eth1"),
    (_set("switches.s1.ports.s1-eth3", "3"), "switches.s1.ports.s1-eth3: '3'"),
    (_set("switches.s1.color", "red"), "switches.s1: unknown key 'color'"),
    (_set("hosts.h1.ip", "10.0.0.300"), "hosts.h1.ip: '10.0.0.300'"),
    (_set("hosts.h1.ip", 167772161), "hosts.h1.ip: 167772161"),
    (_set("hosts.h2.ip", "10.0.0.1"), "hosts.h2.ip: 10.0.0.1 is also the ip of h1"),
    (_set("hosts.h1.mac", "00:00:00:00:01"), "hosts.h1.mac: '00:00:00:00:01'"),
    (_set("hosts.h1.mac", "01:00:5e:00:00:01"), "is not a unicast address"),
    (_set("hosts.h2.mac", "00:00:00:00:00:01"), "is also the mac of h1"),
    (_set("hosts.h1.role", "boss"), "hosts.h1.role: 'boss'"),
    (_set("hosts.h1.switch", "s9"), "hosts.h1: unknown switch 's9'"),
    (_set("hosts.h1.port", 7), "hosts.h1: s1 has no port 7"),
    (_set("hosts.h2.port", 2), "s2 port 2 is already used by hosts.h2"),
    (_set("hosts.h1.mac", _DELETE), "hosts.h1: missing key 'mac'"),
    (_set("links", {}), "links: must be a list"),
    (_set("links.0.a", "s9"), "links[0].a: unknown switch 's9'"),
    (_set("links.0.a_port", 1), "links[0].a: s1 port 1 is already used by hosts.h1"),
    (_set("links.0.b", "s1"), "links[0].b: s1 port 2 is already used by links[0].a"),
    (_set("links.0.delay_ms", -1), "links[0].delay_ms: -1"),
    (_set("links.0.delay_ms", float("nan")), "links[0].delay_ms: nan"),
    (_set("links.0.delay_ms", _DELETE), "links[0]: missing key 'delay_ms'"),
    (_set("links.0.bw_mbit", 0), "links[0].bw_mbit: 0"),
    (_set("links.0.jitter", 0), "links[0]: unknown key 'jitter'"),
    (lambda d: d["links"].append(dict(_LINK2, a_port=3, b="s2", b_port=1)),
     "links[1].b: s2 port 1 is already used by hosts.h2"),
]


def test_valid_base_and_optional_bandwidth() -> None:
    data = _base()
    data["links"].append(dict(_LINK2))  # no bw_mbit: optional
    view = NetView.from_dict(data)
    assert view.links[1].bw_mbit is None and list(view.switches) == ["s1", "s2", "s3"]


def test_parallel_links_are_rejected() -> None:
    data = _base()
    data["switches"]["s2"]["ports"]["s2-eth3"] = 3
    data["links"].append({"a": "s2", "a_port": 3, "b": "s1", "b_port": 3, "delay_ms": 1.0})
    with pytest.raises(TopologyError, match=r"links\[1\]: second link between s2 and s1"):
        NetView.from_dict(data)


@pytest.mark.parametrize("change, message", INVALID, ids=[m for _, m in INVALID])
def test_invalid_topology_gives_one_clear_line(change: Callable, message: str) -> None:
    data = _base()
    change(data)
    with pytest.raises(TopologyError) as info:
        NetView.from_dict(data)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_invalid_json_text() -> None:
    with pytest.raises(TopologyError, match="topology: not valid JSON"):
        NetView.from_json("{")
    with pytest.raises(TopologyError, match="topology: must be an object"):
        NetView.from_json("[]")
