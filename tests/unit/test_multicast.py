"""Multicast trees, their groups and flows, judged by behaviour in the fake network."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from typing import Optional

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.fakenet import FakeNet, ForwardingLoop, Packet, link_ports, topology_dict
from testbed.core.l2 import NetView, l2_rules
from testbed.core.multicast import (
    ALLOW_NEW_SOURCES,
    BLOCK_OLD_SOURCES,
    CHANGE_TO_EXCLUDE,
    CHANGE_TO_INCLUDE,
    COOKIE,
    FF_SLOTS,
    MODE_IS_EXCLUDE,
    MODE_IS_INCLUDE,
    PRIORITY_GUARD,
    PRIORITY_TREE,
    MembershipTable,
    MulticastError,
    all_group_id,
    backup_paths,
    ff_group_id,
    graft,
    group_address,
    group_rules,
    multicast_mac,
    multicast_state,
    multicast_tree,
    prune,
    report_effect,
    tree_diff,
    tree_members,
    tree_switches,
)
from testbed.core.rules import (
    GROUP_FF,
    Bucket,
    Group,
    GroupAction,
    Match,
    Output,
    Rule,
    RuleError,
    check_group_refs,
    check_unique,
    check_unique_groups,
)

G1 = "239.1.1.1"
G2 = "239.2.2.2"


def view_of(g: nx.Graph, hosts: object = 1, **kwargs: int) -> NetView:
    return NetView.from_dict(topology_dict(g, hosts, **kwargs))


def send_to_group(net: FakeNet, host: str, group: str) -> Counter:
    """Hosts that receive one packet ``host`` sends to ``group``."""
    packet = Packet(multicast_mac(group), eth_src=net.view.hosts[host].mac, eth_type=0x0800,
                    ipv4_dst=group)
    return net.trace(host, packet).received


def reachable(view: NetView, root: str, members: Iterable[str],
              g: Optional[nx.Graph] = None) -> set[str]:
    g = view.graph() if g is None else g
    start = view.hosts[root].switch
    return {m for m in members if m != root and nx.has_path(g, start, view.hosts[m].switch)}


def check_tree(view: NetView, tree: nx.DiGraph, root: str, members: Iterable[str]) -> None:
    """An arborescence from the master's switch over real links, spanning exactly the
    reachable members' switches and what connects them."""
    want = reachable(view, root, members)
    assert tree.graph["root"] == view.hosts[root].switch
    assert nx.is_arborescence(tree)
    assert [n for n in tree if tree.in_degree(n) == 0] == [tree.graph["root"]]
    assert set(tree_members(tree)) == want
    assert set(tree.graph["unreachable"]) == set(members) - want - {root}
    member_switches = {view.hosts[m].switch for m in want}
    g = view.graph()
    for parent, child, data in tree.edges(data=True):
        if tree.nodes[child]["kind"] == "host":
            assert view.hosts[child].switch == parent and data["port"] == view.hosts[child].port
        else:
            ports = g.edges[parent, child]["ports"]
            assert (data["port"], data["in_port"]) == (ports[parent], ports[child])
    for switch in tree_switches(tree):
        if switch != tree.graph["root"]:
            assert tree.out_degree(switch) > 0, f"{switch} leads to no member"
        has_switch_child = any(tree.nodes[c]["kind"] == "switch" for c in tree[switch])
        if not has_switch_child and switch != tree.graph["root"]:
            assert switch in member_switches


def check_delivery(view: NetView, root: str, members: Iterable[str],
                   state: tuple[list[Rule], list[Group]], group: str = G1) -> None:
    """The master's packet reaches every member once and no one else; anybody else's
    packet to the group reaches no one; l2 unicast is unaffected."""
    rules, groups = state
    check_unique(rules)
    check_unique_groups(groups)
    net = FakeNet(view, [*l2_rules(view), *rules], groups=groups)
    want = Counter(dict.fromkeys(reachable(view, root, members), 1))
    assert send_to_group(net, root, group) == want
    for other in view.hosts:
        if other != root:
            assert send_to_group(net, other, group) == Counter(), other
    for dst in reachable(view, root, view.hosts):
        assert net.send(root, view.hosts[dst].mac) == Counter({dst: 1})


def state_of(view: NetView, tree: nx.DiGraph, ff: bool = False, group: str = G1
             ) -> tuple[list[Rule], list[Group]]:
    return group_rules(view, group, tree, backups=backup_paths(view, tree) if ff else None)


FAMILIES = {
    "single": nx.empty_graph(1),
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


def member_sets(view: NetView, root: str) -> list[list[str]]:
    others = [h for h in view.hosts if h != root]
    return [[], others, others[::3], others[-1:], [root, *others[1::2]]]


# ----------------------------------------------------------------- trees over families


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("hosts", [1, 2])
@pytest.mark.parametrize("tiered", [False, True])
def test_families_reach_exactly_the_members(name: str, hosts: int, tiered: bool) -> None:
    view = view_of(FAMILIES[name], hosts)
    for root in ("h1", list(view.hosts)[-1]):
        for members in member_sets(view, root):
            tiers = {h: i % 3 + 1 for i, h in enumerate(view.hosts)} if tiered else None
            tree = multicast_tree(view, root, members, tiers)
            check_tree(view, tree, root, members)
            check_delivery(view, root, members, state_of(view, tree))
            check_delivery(view, root, members, state_of(view, tree, ff=True))


@pytest.mark.parametrize("name", ["cycle6", "grid", "complete", "petersen"])
def test_families_with_delays(name: str) -> None:
    g = FAMILIES[name].copy()
    for i, (u, v) in enumerate(sorted(g.edges)):
        g.edges[u, v]["delay_ms"] = float((i * 7) % 5)  # many ties, some zero
    view = view_of(g, 1, port_base=7)
    members = list(view.hosts)[1::2]
    for tiers in (None, {h: 1 + int(h[1:]) % 2 for h in view.hosts}):
        tree = multicast_tree(view, "h1", members, tiers)
        check_tree(view, tree, "h1", members)
        check_delivery(view, "h1", members, state_of(view, tree, ff=True))


@st.composite
def networks(draw: st.DrawFn) -> tuple[NetView, str, list[str], Optional[dict[str, int]]]:
    """A random network (sometimes partitioned), a master, members and maybe tiers."""
    n = draw(st.integers(1, 9))
    g = nx.Graph()
    g.add_nodes_from(draw(st.permutations(range(n))))
    partitioned = draw(st.booleans()) and n > 2
    for i in range(1, n):
        if not (partitioned and i == n - 1):
            g.add_edge(i, draw(st.integers(0, i - 1)))
    for u, v in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                              max_size=2 * n)):
        if u != v and not (partitioned and n - 1 in (u, v)):
            g.add_edge(u, v)
    for u, v in g.edges:
        g.edges[u, v]["delay_ms"] = draw(st.sampled_from([0.0, 0.5, 1.0, 10.0]))
    hosts = {node: draw(st.integers(0, 2)) for node in g.nodes}
    hosts[draw(st.sampled_from(sorted(g.nodes)))] += 1  # at least one host
    view = view_of(g, hosts, port_base=draw(st.integers(1, 30)),
                   dpid_base=draw(st.integers(1, 2**40)))
    names = list(view.hosts)
    root = draw(st.sampled_from(names))
    members = draw(st.lists(st.sampled_from(names), unique=True))
    tiers = None
    if draw(st.booleans()):
        tiers = {h: draw(st.integers(1, 3)) for h in names if draw(st.booleans())}
    return view, root, members, tiers


@settings(max_examples=80, deadline=None)
@given(networks(), st.booleans())
def test_random_networks_reach_exactly_the_members(case: tuple, ff: bool) -> None:
    view, root, members, tiers = case
    tree = multicast_tree(view, root, members, tiers)
    check_tree(view, tree, root, members)
    check_delivery(view, root, members, state_of(view, tree, ff))


@settings(max_examples=60, deadline=None)
@given(networks())
def test_without_tiers_every_member_is_on_a_delay_shortest_path(case: tuple) -> None:
    view, root, members, _ = case
    tree = multicast_tree(view, root, members)
    g = view.graph()
    lengths = nx.single_source_dijkstra_path_length(g, tree.graph["root"], weight="delay_ms")
    for member in tree_members(tree):
        path = nx.shortest_path(tree, tree.graph["root"], view.hosts[member].switch)
        delay = sum(g.edges[a, b]["delay_ms"] for a, b in zip(path, path[1:]))
        assert math.isclose(delay, lengths[view.hosts[member].switch], abs_tol=1e-6)


def test_trees_are_deterministic_whatever_the_member_order() -> None:
    view = view_of(FAMILIES["petersen"], 2)
    members = list(view.hosts)[2::3]
    for tiers in (None, {h: 2 - int(h[1:]) % 2 for h in view.hosts}):
        first = multicast_tree(view, "h1", members, tiers)
        again = multicast_tree(view, "h1", reversed(members), tiers)
        assert nx.utils.graphs_equal(first, again)
        assert state_of(view, first, ff=True) == state_of(view, again, ff=True)


def test_members_on_the_masters_switch_and_the_master_itself() -> None:
    view = view_of(nx.path_graph(2), 3)  # s1: h1 h2 h3, s2: h4 h5 h6
    tree = multicast_tree(view, "h1", ["h1", "h2", "h3"])
    assert sorted(tree.edges) == [("s1", "h2"), ("s1", "h3")]
    rules, groups = state_of(view, tree)
    assert [g.buckets for g in groups] == [(Bucket((Output(2),)), Bucket((Output(3),)))]
    tree_rules = [r for r in rules if r.priority == PRIORITY_TREE]
    assert [(r.dpid, r.match.in_port, r.actions) for r in tree_rules] == [
        (1, 1, (GroupAction(all_group_id(G1)),))]


def test_no_members_means_only_the_guard() -> None:
    view = view_of(nx.cycle_graph(4), 1)
    tree = multicast_tree(view, "h1", [])
    assert list(tree.nodes) == ["s1"]
    rules, groups = state_of(view, tree)
    assert groups == [] and {r.priority for r in rules} == {PRIORITY_GUARD}
    assert len(rules) == len(view.switches) and {r.cookie for r in rules} == {COOKIE}
    assert all(r.actions == () and r.match == Match(eth_type=0x0800, ipv4_dst=G1)
               for r in rules)
    check_delivery(view, "h1", [], (rules, groups))


def test_partitioned_members_are_listed_unreachable() -> None:
    view = view_of(nx.disjoint_union(nx.path_graph(2), nx.path_graph(2)), 1)
    tree = multicast_tree(view, "h1", ["h2", "h3", "h4"])
    assert tree_members(tree) == ["h2"] and tree.graph["unreachable"] == ("h3", "h4")
    assert prune(tree, "h3").graph["unreachable"] == ("h4",)
    check_delivery(view, "h1", ["h2", "h3", "h4"], state_of(view, tree))


def test_hop_count_tree_ignores_delay() -> None:
    g = nx.Graph()
    g.add_edge("a", "b", delay_ms=100.0)
    g.add_edge("a", "c", delay_ms=1.0)
    g.add_edge("c", "b", delay_ms=1.0)
    view = view_of(g)  # s1=a, s2=b, s3=c
    assert ("s3", "s2") in multicast_tree(view, "h1", ["h2"]).edges
    assert ("s1", "s2") in multicast_tree(view, "h1", ["h2"], weight=None).edges


# ----------------------------------------------------------------- tiers


def _triangle() -> NetView:
    """s1 (master) - s2 1 ms, s2 - s3 1 ms, s1 - s3 1.5 ms: s3 is nearer s1 directly."""
    g = nx.Graph()
    g.add_nodes_from([1, 2, 3])
    g.add_edge(1, 2, delay_ms=1.0)
    g.add_edge(2, 3, delay_ms=1.0)
    g.add_edge(1, 3, delay_ms=1.5)
    return view_of(g)


def test_outer_tiers_hang_off_inner_branches() -> None:
    view = _triangle()
    spt = multicast_tree(view, "h1", ["h2", "h3"])
    assert sorted(spt.edges) == [("s1", "s2"), ("s1", "s3"), ("s2", "h2"), ("s3", "h3")]
    tiered = multicast_tree(view, "h1", ["h2", "h3"], tiers={"h2": 1, "h3": 2})
    assert sorted(tiered.edges) == [("s1", "s2"), ("s2", "h2"), ("s2", "s3"), ("s3", "h3")]
    assert tiered.graph["order"] == ("h2", "h3") and tiered.graph["mode"] == "tiered"
    # the other way round, s3 (tier 1) is grafted first and s2 hangs off s1 or s3 by cost
    flipped = multicast_tree(view, "h1", ["h2", "h3"], tiers={"h2": 2, "h3": 1})
    assert flipped.graph["order"] == ("h3", "h2") and ("s1", "s3") in flipped.edges
    check_delivery(view, "h1", ["h2", "h3"], state_of(view, tiered))


@settings(max_examples=60, deadline=None)
@given(networks())
def test_tiers_are_attached_in_order(case: tuple) -> None:
    view, root, members, tiers = case
    tiers = tiers or {}
    tree = multicast_tree(view, root, members, tiers)
    order = [tiers.get(h, math.inf) for h in tree.graph["order"]]
    assert order == sorted(order)
    assert set(tree.graph["order"]) == set(tree_members(tree))


def test_tier_graft_starts_at_the_nearest_tree_switch() -> None:
    # a line s1 - s2 - ... - s6, a shortcut s1 - s6 of 4.5 ms; members at s5 (tier 1), s6
    g = nx.path_graph(6)
    nx.set_edge_attributes(g, 1.0, "delay_ms")
    g.add_edge(0, 5, delay_ms=4.5)
    view = view_of(g)
    tree = multicast_tree(view, "h1", ["h5", "h6"], tiers={"h5": 1, "h6": 2})
    assert ("s5", "s6") in tree.edges  # 1 ms from the tree, not 4.5 from the root
    assert ("s1", "s6") in multicast_tree(view, "h1", ["h5", "h6"]).edges


# ----------------------------------------------------------------- join and leave


def _branch(old: nx.DiGraph, new: nx.DiGraph, view: NetView) -> set[int]:
    """dpids of the switches a join (old -> new) or leave (new -> old) may touch: the
    new switches and the switch they hang from (or the member's own switch)."""
    added = set(tree_switches(new)) - set(tree_switches(old))
    touched = set(added)
    for switch in added:
        (parent,) = new.predecessors(switch)
        if parent not in added:
            touched.add(parent)
    for host in set(tree_members(new)) - set(tree_members(old)):
        touched.add(view.hosts[host].switch)
    return {view.switches[s].dpid for s in touched}


@settings(max_examples=80, deadline=None)
@given(networks(), st.data())
def test_join_and_leave_change_only_the_branch(case: tuple, data: st.DataObject) -> None:
    view, root, members, tiers = case
    host = data.draw(st.sampled_from(sorted(view.hosts)))
    base = [m for m in members if m != host]
    old = multicast_tree(view, root, base, tiers)
    new = graft(view, old, host)
    check_tree(view, new, root, [*base, host])
    if tiers is None:  # shortest-path trees do not depend on history
        assert nx.utils.graphs_equal(
            nx.DiGraph(new.edges), nx.DiGraph(multicast_tree(view, root, [*base, host]).edges))
    assert sorted(prune(new, host).edges(data=True)) == sorted(old.edges(data=True))
    old_state, new_state = state_of(view, old), state_of(view, new)
    join, leave = tree_diff(old_state, new_state), tree_diff(new_state, old_state)
    assert join.dpids() <= _branch(old, new, view)
    assert leave.dpids() <= _branch(old, new, view)
    assert bool(join) == (host in tree_members(new) and host not in tree_members(old))
    assert join.apply(*old_state) == new_state and leave.apply(*new_state) == old_state
    check_delivery(view, root, [*base, host], new_state)


def test_a_leaf_join_changes_one_group_and_adds_one_branch() -> None:
    view = view_of(nx.path_graph(5))  # h_i on s_i
    old = multicast_tree(view, "h1", ["h3"])
    new = graft(view, old, "h5")
    diff = tree_diff(state_of(view, old), state_of(view, new))
    assert diff.dpids() == {3, 4, 5}
    assert [g.dpid for g in diff.groups_modify] == [3]
    assert [g.dpid for g in diff.groups_add] == [4, 5]
    assert [r.dpid for r in diff.rules_add] == [4, 5] and diff.rules_delete == ()
    assert graft(view, new, "h5").edges == new.edges  # joining twice changes nothing
    assert not tree_diff(state_of(view, new), state_of(view, graft(view, new, "h1")))


def _apply_step(rules: dict, groups: dict, kind: str, command: str, value: object) -> None:
    """One step as a switch takes it: a flow add replaces, a group add must be new."""
    table = rules if kind == "flow" else groups
    if command == "delete":
        del table[value.key()]
    else:
        if kind == "group":
            assert (value.key() in table) == (command == "modify")
        table[value.key()] = value


@settings(max_examples=60, deadline=None)
@given(networks(), st.data())
def test_diff_steps_never_refer_to_a_missing_group(case: tuple, data: st.DataObject) -> None:
    view, root, members, tiers = case
    others = data.draw(st.lists(st.sampled_from(sorted(view.hosts)), unique=True))
    ff_old, ff_new = data.draw(st.booleans()), data.draw(st.booleans())
    old = state_of(view, multicast_tree(view, root, members, tiers), ff_old)
    new = state_of(view, multicast_tree(view, root, others, tiers), ff_new)
    diff = tree_diff(old, new)
    assert diff.apply(*old) == new
    rules = {r.key(): r for r in old[0]}
    groups = {g.key(): g for g in old[1]}
    for step in diff.steps():
        _apply_step(rules, groups, *step)
        check_group_refs(rules.values(), groups.values())
    assert sorted(rules.values(), key=Rule.sort_key) == new[0]
    assert sorted(groups.values(), key=Group.sort_key) == new[1]


# ----------------------------------------------------------------- failures


def _subtree_members(tree: nx.DiGraph, switch: str) -> set[str]:
    return {n for n in nx.descendants(tree, switch) if tree.nodes[n]["kind"] == "host"}


def check_single_failures(view: NetView, root: str, members: Iterable[str]) -> int:
    """Fail each link in turn: protected tree links lose nobody, unprotected ones lose
    exactly the subtree below them, other links nothing.  Returns links protected."""
    tree = multicast_tree(view, root, members)
    backups = backup_paths(view, tree)
    rules, groups = group_rules(view, G1, tree, backups=backups)
    net = FakeNet(view, rules, groups=groups)
    everyone = Counter(dict.fromkeys(tree_members(tree), 1))
    for link in view.links:
        net.down_ports = link_ports(view, link.a, link.b)
        edge = next(((p, c) for p, c in ((link.a, link.b), (link.b, link.a))
                     if tree.has_edge(p, c)), None)
        want = everyone.copy()
        if edge is not None and edge not in backups:
            for lost in _subtree_members(tree, edge[1]):
                del want[lost]
        assert send_to_group(net, root, G1) == want, (link, edge, backups.get(edge))
    return len(backups)


@pytest.mark.parametrize("name", ["cycle6", "grid", "complete", "ladder", "petersen", "gnm",
                                  "barbell"])
def test_fast_failover_covers_single_link_failures(name: str) -> None:
    view = view_of(FAMILIES[name], 1)
    others = list(view.hosts)[1:]
    for members in (others, others[::2], others[-2:]):
        check_single_failures(view, "h1", members)


def test_fast_failover_on_a_grid_protects_links_with_a_way_around() -> None:
    view = view_of(FAMILIES["grid"], 1)
    members = ["h6", "h8", "h13", "h16"]
    assert check_single_failures(view, "h1", members) == 4
    tree = multicast_tree(view, "h1", members)
    backups = backup_paths(view, tree)
    assert backups[("s5", "s9")] == ("s5", "s6", "s10", "s9")
    _, groups = group_rules(view, G1, tree, backups=backups)
    ff = [g for g in groups if g.dpid == 5 and g.type == GROUP_FF]
    assert ff == [Group(5, ff_group_id(G1, 1), GROUP_FF, (
        Bucket((Output(3),), watch_port=3), Bucket((Output(4),), watch_port=4)))]


@settings(max_examples=60, deadline=None)
@given(networks())
def test_random_single_failures(case: tuple) -> None:
    view, root, members, _ = case
    check_single_failures(view, root, members)


@settings(max_examples=40, deadline=None)
@given(networks())
def test_any_two_failures_never_loop_or_duplicate(case: tuple) -> None:
    view, root, members, _ = case
    tree = multicast_tree(view, root, members)
    rules, groups = group_rules(view, G1, tree, backups=backup_paths(view, tree))
    net = FakeNet(view, rules, groups=groups)
    for one, two in itertools.combinations(view.links, 2):
        net.down_ports = link_ports(view, one.a, one.b) | link_ports(view, two.a, two.b)
        received = send_to_group(net, root, G1)  # raises ForwardingLoop on a loop
        assert set(received.values()) <= {1} and set(received) <= set(tree_members(tree))


def test_re_route_around_a_failed_link() -> None:
    view = view_of(FAMILIES["cycle6"], 1)
    members = ["h2", "h3", "h5"]
    tree = multicast_tree(view, "h1", members)
    assert ("s1", "s2") in tree.edges and backup_paths(view, tree).get(("s1", "s2")) is None
    down = link_ports(view, "s1", "s2")
    rules, groups = state_of(view, tree)
    net = FakeNet(view, rules, groups=groups, down_ports=down)
    assert send_to_group(net, "h1", G1) == Counter({"h5": 1})
    g = view.graph()
    g.remove_edge("s1", "s2")
    rerouted = multicast_tree(view, "h1", members, g=g)
    assert not rerouted.has_edge("s1", "s2")
    state = state_of(view, rerouted)
    net = FakeNet(view, state[0], groups=state[1], down_ports=down)
    assert send_to_group(net, "h1", G1) == Counter({"h2": 1, "h3": 1, "h5": 1})
    assert tree_diff(state_of(view, tree), state).apply(*state_of(view, tree)) == state


def test_at_most_fourteen_protected_children_per_switch() -> None:
    g = nx.star_graph(16)  # hub 0 with 16 leaves, each leaf also linked to a spare switch
    for leaf in range(1, 17):
        g.add_edge(leaf, 17)
    view = view_of(g, {n: 1 for n in range(17)})
    members = [h for h in view.hosts if h != "h1"]
    tree = multicast_tree(view, "h1", members)
    backups = backup_paths(view, tree)
    assert len([e for e in backups if e[0] == "s1"]) <= FF_SLOTS
    check_delivery(view, "h1", members, group_rules(view, G1, tree, backups=backups))


# ----------------------------------------------------------------- several groups


def test_groups_are_independent() -> None:
    view = view_of(FAMILIES["grid"], 1)
    memberships = {G1: ["h4", "h16"], G2: ["h13", "h16", "h7"]}
    rules, groups = multicast_state(view, "h1", memberships, fast_failover=True)
    check_unique(rules)
    assert {g.group_id & 0x0FFFFFFF for g in groups} == {all_group_id(G1), all_group_id(G2)}
    net = FakeNet(view, [*l2_rules(view), *rules], groups=groups)
    assert send_to_group(net, "h1", G1) == Counter({"h4": 1, "h16": 1})
    assert send_to_group(net, "h1", G2) == Counter({"h7": 1, "h13": 1, "h16": 1})


def test_fast_failover_example_from_the_state() -> None:
    view = view_of(FAMILIES["ladder"], 1)
    rules, groups = multicast_state(view, "h1", {G1: ["h4", "h8"]}, fast_failover=True)
    assert any(g.type == GROUP_FF for g in groups)
    net = FakeNet(view, rules, groups=groups)
    for link in view.links:
        net.down_ports = link_ports(view, link.a, link.b)
        assert set(send_to_group(net, "h1", G1).values()) <= {1}


def test_a_tree_for_a_thousand_switches_reaches_every_member() -> None:
    g = nx.random_regular_graph(3, 1000, seed=7)
    for i, (u, v) in enumerate(g.edges):
        g.edges[u, v]["delay_ms"] = float(1 + i % 9)
    view = view_of(g, {n: 1 for n in range(0, 1000, 15)})
    members = list(view.hosts)[1:]
    tiers = {h: 1 + i % 3 for i, h in enumerate(members)}
    for mode in (None, tiers):
        tree = multicast_tree(view, "h1", members, mode)
        rules, groups = group_rules(view, G1, tree)
        assert len(tree_members(tree)) == len(members) and groups


# ----------------------------------------------------------------- membership


def test_membership_join_refresh_leave() -> None:
    table = MembershipTable()
    assert table.join(G1, "h2", 10.0) is True
    assert table.join(G1, "h2", 20.0) is False and table.last_report(G1, "h2") == 20.0
    assert table.join(G1, "h2", 15.0) is False and table.last_report(G1, "h2") == 20.0
    assert table.join(G2, "h2", 5) and table.join(G1, "h3", 21)
    assert table.members(G1) == {"h2", "h3"} and table.groups() == [G1, G2]
    assert table.leave(G1, "h3", 22) is True and table.leave(G1, "h3", 23) is False
    assert table.snapshot() == {G1: frozenset({"h2"}), G2: frozenset({"h2"})}
    assert table.drop_host("h2") == [G1, G2] and table.groups() == []
    assert table.members("239.9.9.9") == frozenset() and table.last_report(G1, "h2") is None


def test_membership_expires_when_reports_stop() -> None:
    table = MembershipTable()
    table.join(G1, "h2", 0.0)
    table.join(G1, "h3", 0.0)
    table.join(G2, "h3", 5.0)
    table.join(G1, "h3", 8.0)  # refreshed
    assert table.expire(9.9, timeout=10) == []
    assert table.expire(10.0, timeout=10) == [(G1, "h2")]
    assert table.members(G1) == {"h3"}
    assert table.expire(15.0, timeout=10) == [(G2, "h3")]
    assert table.expire(18.0, timeout=10) == [(G1, "h3")] and table.groups() == []
    table.join(G1, "h4", 0)
    assert table.expire(259.0) == [] and table.expire(260.0) == [(G1, "h4")]


@pytest.mark.parametrize(
    "value, message",
    [
        ("10.0.0.1", "must be in 224.0.0.0/4"),
        ("224.0.0.22", "224.0.0.0/24 is link-local"),
        ("224.0.0.1", "link-local"),
        ("239.1.1", "must be an IPv4 address"),
        ("240.0.0.1", "must be in 224.0.0.0/4"),
        (3925934337, "must be an IPv4 address"),
        (None, "must be an IPv4 address"),
    ],
)
def test_bad_group_addresses_are_one_line_errors(value: object, message: str) -> None:
    for call in (lambda: group_address(value), lambda: MembershipTable().join(value, "h1", 0),
                 lambda: group_rules(view_of(nx.path_graph(1)), value,
                                     multicast_tree(view_of(nx.path_graph(1)), "h1", []))):
        with pytest.raises(MulticastError) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value)


def test_addresses_ids_and_macs() -> None:
    assert group_address("239.255.255.250") == "239.255.255.250"
    assert group_address("224.0.1.5") == "224.0.1.5"
    assert all_group_id("224.0.1.5") == 0x105 and all_group_id("239.1.1.1") == 0xF010101
    assert ff_group_id("224.0.1.5", 1) == 0x10000105
    assert ff_group_id("239.255.255.255", FF_SLOTS) == 0xEFFFFFFF
    assert multicast_mac("239.129.1.1") == "01:00:5e:01:01:01"
    assert multicast_mac("224.0.1.5") == "01:00:5e:00:01:05"
    with pytest.raises(MulticastError, match="slot"):
        ff_group_id(G1, FF_SLOTS + 1)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: t.join(G1, "", 0), "host ''"),
        (lambda t: t.join(G1, "h1", float("nan")), "now: nan"),
        (lambda t: t.join(G1, "h1", True), "now: True"),
        (lambda t: t.leave(G1, "h1", "soon"), "now: 'soon'"),
        (lambda t: t.expire(10, timeout=0), "timeout: 0.0"),
        (lambda t: t.expire(10, timeout=None), "timeout: None"),
    ],
)
def test_bad_membership_calls(call, message: str) -> None:
    with pytest.raises(MulticastError) as info:
        call(MembershipTable())
    assert message in str(info.value) and "\n" not in str(info.value)


def test_igmpv3_records() -> None:
    assert report_effect(CHANGE_TO_EXCLUDE, 0) == "join"  # what a socket join sends
    assert report_effect(MODE_IS_EXCLUDE, 0) == "join"  # answer to a query
    assert report_effect(CHANGE_TO_INCLUDE, 0) == "leave"  # what the last leave sends
    assert report_effect(MODE_IS_INCLUDE, 0) == "leave"
    assert report_effect(MODE_IS_INCLUDE, 2) == "join"
    assert report_effect(ALLOW_NEW_SOURCES, 1) == "join"
    assert report_effect(ALLOW_NEW_SOURCES, 0) is None
    assert report_effect(BLOCK_OLD_SOURCES, 1) is None
    with pytest.raises(MulticastError, match="record type 9"):
        report_effect(9, 0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda v: multicast_tree(v, "h9", []), "root host 'h9'"),
        (lambda v: multicast_tree(v, ["h1"], []), "root host ['h1']"),
        (lambda v: multicast_tree(v, "h1", ["h2", "x"]), "member 'x'"),
        (lambda v: multicast_tree(v, "h1", ["h2"], tiers={"h2": "1"}), "tier of h2: '1'"),
        (lambda v: multicast_tree(v, "h1", ["h2"], weight="bw_mbit"), "bw_mbit: None"),
        (lambda v: graft(v, multicast_tree(v, "h1", []), "x"), "member 'x'"),
        (lambda v: group_rules(v, G1, multicast_tree(v, "h1", ["h3"]),
                               backups={("s1", "s3"): ("s1", "s3")}), "not a switch link"),
        (lambda v: group_rules(v, G1, multicast_tree(v, "h1", ["h3"]),
                               backups={("s1", "s2"): ("s1", "s2")}), "around the link"),
        (lambda v: group_rules(v, G1, multicast_tree(v, "h1", ["h3"]),
                               backups={("s1", "s2"): ("s1", "s9", "s2")}), "no link s1-s9"),
    ],
)
def test_bad_tree_inputs_are_one_line_errors(call, message: str) -> None:
    view = view_of(nx.path_graph(3))
    with pytest.raises(MulticastError) as info:
        call(view)
    assert message in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------- the fake net's groups


def test_fakenet_follows_group_chains_and_fast_failover() -> None:
    view = view_of(nx.path_graph(1), 4)  # s1 ports 1..4, hosts h1..h4
    groups = [
        Group(1, 1, "all", (Bucket((Output(2),)), Bucket((GroupAction(2),)))),
        Group(1, 2, "ff", (Bucket((Output(3),), watch_port=3),
                           Bucket((Output(4),), watch_port=4))),
    ]
    rules = [Rule(1, 0, 5, Match(), (GroupAction(1),), 0)]
    net = FakeNet(view, rules, groups=groups)
    assert net.send("h1", "ff:ff:ff:ff:ff:ff") == Counter({"h2": 1, "h3": 1})
    net.down_ports = {("s1", 3)}
    assert net.send("h1", "ff:ff:ff:ff:ff:ff") == Counter({"h2": 1, "h4": 1})
    net.down_ports = {("s1", 3), ("s1", 4), ("s1", 2)}
    outcome = net.trace("h1", Packet("ff:ff:ff:ff:ff:ff"))
    assert outcome.received == Counter() and outcome.lost == [("s1", 2)]
    only_ff = FakeNet(view, [Rule(1, 0, 5, Match(), (GroupAction(2),), 0)], groups=groups,
                      down_ports={("s1", 3), ("s1", 4)})
    assert only_ff.trace("h1", Packet("ff:ff:ff:ff:ff:ff")).dropped == [("s1", 1)]


def test_fakenet_rejects_missing_and_looping_groups() -> None:
    view = view_of(nx.path_graph(1), 2)
    with pytest.raises(RuleError, match="refers to group 7"):
        FakeNet(view, [Rule(1, 0, 5, Match(), (GroupAction(7),), 0)])
    with pytest.raises(ValueError, match="group for a switch not in the topology"):
        FakeNet(view, [], groups=[Group(9, 1, "all", ())])
    loop = [Group(1, 1, "all", (Bucket((GroupAction(2),)),)),
            Group(1, 2, "all", (Bucket((GroupAction(1),)),))]
    net = FakeNet(view, [Rule(1, 0, 5, Match(), (GroupAction(1),), 0)], groups=loop)
    with pytest.raises(ForwardingLoop, match="refer back"):
        net.send("h1", "ff:ff:ff:ff:ff:ff")
    with pytest.raises(ValueError, match="no link between"):
        link_ports(view, "s1", "s2")



def test_relay_groups_are_rooted_at_their_sender():
    """A helper relaying on its own group 239.77.N.C: the tree starts at its switch, so
    what it sends reaches the members; other groups stay rooted at the master."""
    from testbed.core.multicast import group_root, relay_group
    view = view_of(nx.path_graph(4), 1)
    hosts = sorted(view.hosts, key=lambda h: int(h[1:]))
    master, sender, *members = hosts
    grp = relay_group(view.hosts[sender].ip, 3)
    assert grp.startswith("239.77.") and grp.endswith(".3")
    assert group_root(view, grp, master) == sender
    assert group_root(view, G1, master) == master
    rules, groups = multicast_state(view, master, {grp: members})
    net = FakeNet(view, [*l2_rules(view), *rules], groups=groups)
    assert set(send_to_group(net, sender, grp)) == set(members)
