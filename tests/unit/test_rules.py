"""The rule model: validation, canonical forms, deterministic order, and diff."""

from __future__ import annotations

import random

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.fakenet import FakeNet, topology_dict
from testbed.core.l2 import NetView, l2_rules
from testbed.core.rules import (
    ETH_TYPE_IPV4,
    GROUP_BIT,
    MAX_GROUP_ID,
    Bucket,
    Group,
    GroupAction,
    Match,
    Output,
    Rule,
    RuleError,
    app_cookie,
    apply_diff,
    apply_group_diff,
    chain_order,
    check_group_refs,
    check_unique,
    check_unique_groups,
    diff,
    diff_groups,
    is_group_mac,
    sort_groups,
    sort_rules,
)

COOKIE = app_cookie("test")


def rule(priority: int = 10, dpid: int = 1, actions: tuple = (Output(1),), **match) -> Rule:
    return Rule(dpid, 0, priority, Match(**match), actions, COOKIE)


# ----------------------------------------------------------------- values


def test_match_canonical_forms() -> None:
    assert Match(eth_dst="AA:BB:CC:DD:EE:FF").eth_dst == "aa:bb:cc:dd:ee:ff"
    masked = Match(eth_dst="ff:00:00:00:00:01", eth_dst_mask=GROUP_BIT)
    assert (masked.eth_dst, masked.eth_dst_mask) == ("01:00:00:00:00:00", GROUP_BIT)
    full = Match(eth_dst="00:00:00:00:00:01", eth_dst_mask="ff:ff:ff:ff:ff:ff")
    assert full == Match(eth_dst="00:00:00:00:00:01")
    group = Match(eth_type=ETH_TYPE_IPV4, ipv4_dst="239.1.1.1")
    assert len({group, Match(eth_type=0x0800, ipv4_dst="239.1.1.1")}) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"in_port": 0}, "in_port"),
        ({"in_port": True}, "in_port"),
        ({"eth_dst": "00:00:00:00:00"}, "MAC address"),
        ({"eth_dst_mask": GROUP_BIT}, "eth_dst_mask without eth_dst"),
        ({"eth_dst": GROUP_BIT, "eth_dst_mask": "00:00:00:00:00:00"}, "omit eth_dst"),
        ({"ipv4_dst": "239.1.1.1"}, "needs eth_type 0x0800"),
        ({"eth_type": ETH_TYPE_IPV4, "ipv4_dst": "239.1.1"}, "IPv4 address"),
        ({"ip_proto": 17}, "ip_proto needs eth_type"),
        ({"eth_type": ETH_TYPE_IPV4, "ip_proto": 6, "udp_dst": 5000}, "udp_dst needs ip_proto 17"),
    ],
)
def test_match_rejects_impossible_fields(kwargs: dict, message: str) -> None:
    with pytest.raises(RuleError, match=message) as info:
        Match(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"priority": 70000}, "priority"),
        ({"table": 255}, "table"),
        ({"cookie": -1}, "cookie"),
        ({"actions": ("output:1",)}, "unknown kind"),
        ({"match": {"in_port": 1}}, "must be a Match"),
    ],
)
def test_rule_rejects_bad_values(kwargs: dict, message: str) -> None:
    fields = {"dpid": 1, "table": 0, "priority": 1, "match": Match(), "actions": (),
              "cookie": 0, **kwargs}
    with pytest.raises(RuleError, match=message):
        Rule(**fields)


def test_output_port_range_and_list_actions_become_tuples() -> None:
    with pytest.raises(RuleError):
        Output(0)
    r = Rule(1, 0, 1, Match(), [Output(2)], 0)
    assert r.actions == (Output(2),) and hash(r) == hash(Rule(1, 0, 1, Match(), (Output(2),), 0))


def test_app_cookie_spells_the_tag() -> None:
    assert app_cookie("mc-l2") == 0x6D632D6C32000000
    assert app_cookie("abcdefgh") == int.from_bytes(b"abcdefgh", "big")
    with pytest.raises(RuleError):
        app_cookie("much-too-long")
    with pytest.raises(RuleError):
        app_cookie("")


def test_group_bit() -> None:
    assert is_group_mac("ff:ff:ff:ff:ff:ff") and is_group_mac("01:00:5e:00:00:01")
    assert is_group_mac("33:33:ff:00:00:01")
    assert not is_group_mac("00:00:00:00:00:01") and not is_group_mac("02:00:00:00:00:01")


def test_str_is_readable() -> None:
    r = rule(100, in_port=3, eth_dst=GROUP_BIT, eth_dst_mask=GROUP_BIT,
             actions=(Output(1), Output(2)))
    assert str(r) == ("dpid=0x1 table=0 priority=100 cookie=0x7465737400000000 "
                      "in_port=3,eth_dst=01:00:00:00:00:00/01:00:00:00:00:00 "
                      "actions=output:1,output:2")
    assert "actions=drop" in str(rule(0, actions=()))


# ----------------------------------------------------------------- order and uniqueness


def test_sort_is_by_switch_then_descending_priority_and_ignores_input_order() -> None:
    rules = [rule(p, dpid=d, eth_dst=f"00:00:00:00:00:0{i}")
             for d in (2, 1) for p in (0, 100, 200) for i in (1, 2)]
    rules += [rule(5, in_port=1), rule(5)]
    expected = sort_rules(rules)
    assert [(r.dpid, r.priority) for r in expected] == sorted(
        ((r.dpid, r.priority) for r in rules), key=lambda t: (t[0], -t[1]))
    for seed in range(5):
        shuffled = rules[:]
        random.Random(seed).shuffle(shuffled)
        assert sort_rules(shuffled) == expected


def test_check_unique_finds_two_rules_a_switch_cannot_both_hold() -> None:
    check_unique([rule(eth_dst="00:00:00:00:00:01"), rule(eth_dst="00:00:00:00:00:01")])
    with pytest.raises(RuleError, match="same switch, table, priority, match"):
        check_unique([rule(eth_dst="00:00:00:00:00:01"),
                      rule(eth_dst="00:00:00:00:00:01", actions=(Output(2),))])


def test_l2_rules_are_unique_per_key() -> None:
    view = NetView.from_dict(topology_dict(nx.grid_2d_graph(3, 3), 2))
    check_unique(l2_rules(view))


# ----------------------------------------------------------------- diff

_UNIVERSE = [
    rule(p, dpid=d, eth_dst=mac, actions=acts)
    for d in (1, 2)
    for p in (0, 100)
    for mac in ("00:00:00:00:00:01", "00:00:00:00:00:02")
    for acts in ((), (Output(1),), (Output(1), Output(2)))
]


@settings(max_examples=200, deadline=None)
@given(st.sets(st.sampled_from(_UNIVERSE)), st.sets(st.sampled_from(_UNIVERSE)))
def test_diff_applied_to_old_gives_new(old: set[Rule], new: set[Rule]) -> None:
    to_add, to_delete = diff(old, new)
    assert apply_diff(old, to_add, to_delete) == sort_rules(new)
    assert not set(to_add) & old and set(to_delete) <= old
    assert to_add == sort_rules(to_add) and to_delete == sort_rules(to_delete)
    assert diff(list(old)[::-1], list(new)[::-1]) == (to_add, to_delete)


def test_diff_of_identical_sets_is_empty_and_changed_rule_is_in_both_lists() -> None:
    old = [rule(100, eth_dst="00:00:00:00:00:01")]
    assert diff(old, list(old)) == ([], [])
    new = [rule(100, eth_dst="00:00:00:00:00:01", actions=(Output(2),))]
    assert diff(old, new) == (new, old)


def test_diff_between_topologies_turns_old_behaviour_into_new() -> None:
    """A changed delay re-routes traffic; old rules plus the diff behave like new rules."""
    g = nx.cycle_graph(4)
    nx.set_edge_attributes(g, 1.0, "delay_ms")
    before = NetView.from_dict(topology_dict(g, 1))
    g.edges[0, 1]["delay_ms"] = 50.0
    after = NetView.from_dict(topology_dict(g, 1))
    old, new = l2_rules(before), l2_rules(after)
    to_add, to_delete = diff(old, new)
    assert to_add and to_delete, "a re-route must change some rules"
    patched = apply_diff(old, to_add, to_delete)
    assert patched == new
    net = FakeNet(after, patched)
    for src in after.hosts:
        for dst, host in after.hosts.items():
            want = {} if src == dst else {dst: 1}
            assert net.send(src, host.mac) == want


# ----------------------------------------------------------------- groups


def test_group_actions_in_rules_and_buckets() -> None:
    r = rule(300, actions=(GroupAction(5), Output(2)), eth_type=ETH_TYPE_IPV4,
             ipv4_dst="239.1.1.1")
    assert str(r).endswith("eth_type=0x0800,ipv4_dst=239.1.1.1 actions=group:5,output:2")
    assert sort_rules([r, rule(300, actions=(Output(1),))])  # mixed kinds still sort
    ff = Group(1, 7, "ff", [Bucket([Output(2)], watch_port=2), Bucket((GroupAction(5),), 3)])
    assert ff.buckets[0] == Bucket((Output(2),), 2) and ff.refs() == {5}
    assert str(ff) == ("dpid=0x1 group_id=7,type=ff,bucket=watch_port:2,actions=output:2,"
                       "bucket=watch_port:3,actions=group:5")
    drop = Group(1, 8, "all", (Bucket(()),))
    assert str(drop) == "dpid=0x1 group_id=8,type=all,bucket=actions=drop"
    assert str(Group(1, 9, "all", ())) == "dpid=0x1 group_id=9,type=all"
    assert GroupAction(0).group_id == 0 and GroupAction(MAX_GROUP_ID).group_id == MAX_GROUP_ID


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: GroupAction(-1), "group_id: -1"),
        (lambda: GroupAction(MAX_GROUP_ID + 1), "group_id: 4294967041"),
        (lambda: GroupAction(True), "group_id: True"),
        (lambda: Bucket(("output:1",)), "bucket action 'output:1' (unknown kind)"),
        (lambda: Bucket((Output(1),), watch_port=0), "watch_port: 0"),
        (lambda: Group(1, 1, "select", ()), "group 1 type: 'select'"),
        (lambda: Group(1, 1, "all", (Output(1),)), "must be a Bucket"),
        (lambda: Group(1, 1, "ff", (Bucket((Output(1),)),)), "needs watch_port"),
        (lambda: Group(1, 1, "all", (Bucket((Output(1),), 1),)), "watch_port 1 in a group"),
        (lambda: Group(1, 1, "all", (Bucket((GroupAction(1),)),)), "hands packets to itself"),
        (lambda: Group(-1, 1, "all", ()), "dpid: -1"),
    ],
)
def test_group_model_rejects_impossible_values(make, message: str) -> None:
    with pytest.raises(RuleError) as info:
        make()
    assert message in str(info.value) and "\n" not in str(info.value)


def _group(dpid: int, gid: int, *ports: int, ff: bool = False) -> Group:
    if ff:
        return Group(dpid, gid, "ff", tuple(Bucket((Output(p),), p) for p in ports))
    return Group(dpid, gid, "all", tuple(Bucket((Output(p),)) for p in ports))


_GROUPS = [_group(d, gid, *ports, ff=ff) for d in (1, 2) for gid in (1, 2)
           for ports in ((1,), (1, 2), (2, 1)) for ff in (False, True)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_GROUPS)), st.lists(st.sampled_from(_GROUPS)))
def test_group_diff_applied_to_old_gives_new(old: list, new: list) -> None:
    old = list({g.key(): g for g in old}.values())  # a switch holds one group per id
    new = list({g.key(): g for g in new}.values())
    to_add, to_modify, to_delete = diff_groups(old, new)
    assert apply_group_diff(old, to_add, to_modify, to_delete) == sort_groups(new)
    assert {g.key() for g in to_modify} <= {g.key() for g in old}
    assert not {g.key() for g in to_add} & {g.key() for g in old}
    assert diff_groups(old[::-1], new[::-1]) == (to_add, to_modify, to_delete)


def test_group_diff_modifies_in_place_and_apply_refuses_what_a_switch_refuses() -> None:
    old = [_group(1, 1, 2, 3)]
    new = [_group(1, 1, 3, 2)]  # bucket order is part of the group
    assert diff_groups(old, new) == ([], new, [])
    assert diff_groups(old, old) == ([], [], [])
    with pytest.raises(RuleError, match="add of a group that exists"):
        apply_group_diff(old, new, [], [])
    with pytest.raises(RuleError, match="modify of a group that does not exist"):
        apply_group_diff([], [], new, [])
    with pytest.raises(RuleError, match="delete of a group that does not exist"):
        apply_group_diff([], [], [], old)


def test_group_uniqueness_references_and_install_order() -> None:
    check_unique_groups([_group(1, 1, 2), _group(1, 1, 2), _group(2, 1, 3)])
    with pytest.raises(RuleError, match="same switch and group id"):
        check_unique_groups([_group(1, 1, 2), _group(1, 1, 3)])
    top = Group(1, 1, "all", (Bucket((GroupAction(9),)), Bucket((GroupAction(5),))))
    mid = Group(1, 9, "all", (Bucket((GroupAction(5),)),))
    leaf = _group(1, 5, 2, 3, ff=True)
    other = Group(2, 0, "all", (Bucket((GroupAction(9),)),))  # refers to an installed group
    assert chain_order([top, other, mid, leaf]) == [leaf, other, mid, top]
    check_group_refs([rule(actions=(GroupAction(1),))], [top, mid, leaf])
    with pytest.raises(RuleError, match="rule refers to group 1, not on dpid 0x2"):
        check_group_refs([rule(dpid=2, actions=(GroupAction(1),))], [top, mid, leaf])
    with pytest.raises(RuleError, match="group refers to group 5"):
        check_group_refs([], [top, mid])
    loop = [Group(1, 1, "all", (Bucket((GroupAction(2),)),)),
            Group(1, 2, "all", (Bucket((GroupAction(1),)),))]
    with pytest.raises(RuleError, match="cycle"):
        chain_order(loop)
