"""Room for pushes on the links: capacity less what is not the master's own pushes."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from testbed.core.headroom import (
    HeadroomError,
    PhysicalPaths,
    PushLoad,
    link_room,
    parse_load,
)


def spec():
    g = nx.Graph()
    g.add_edge("m1", "s0", delay_ms=0.0, bw_mbit=50)
    g.add_edge("s0", "s1", delay_ms=3.0, bw_mbit=10)
    g.add_edge("s0", "s2", delay_ms=25.0, bw_mbit=None)
    g.add_edge("s1", "h1", delay_ms=0.0, bw_mbit=20)
    g.add_edge("s2", "h2", delay_ms=0.0, bw_mbit=20)
    return g


def test_room_is_capacity_less_reserve_less_the_others_load():
    caps = PhysicalPaths(spec()).capacities()
    assert caps[("s0", "s1")] == caps[("s1", "s0")] == 10.0
    assert ("s0", "s2") not in caps                  # no rate: not constrained
    room = link_room(caps, {("s0", "s1"): 6.0, ("s1", "s0"): 1.0},
                     {("s0", "s1"): 2.0}, interval_s=1.0, reserve=0.2)
    # s0->s1: 10 * 0.8 - (6 - 2) = 4 Mbit/s for one second = 500 kB
    assert room[("s0", "s1")] == pytest.approx(500_000)
    assert room[("s1", "s0")] == pytest.approx(7 * 125_000)
    # never measured: the capacity alone bounds it
    assert room[("m1", "s0")] == pytest.approx(40 * 125_000)


def test_a_full_link_has_no_room_and_the_room_scales_with_the_interval():
    caps = {("a", "b"): 10.0}
    assert link_room(caps, {("a", "b"): 9.5}, {}, 1.0, 0.2)[("a", "b")] == 0.0
    assert link_room(caps, {}, {}, 2.0, 0.0)[("a", "b")] == pytest.approx(2 * 10 * 125_000)
    with pytest.raises(HeadroomError, match="reserve"):
        link_room(caps, {}, {}, 1.0, 1.0)
    with pytest.raises(HeadroomError, match="interval_s"):
        link_room(caps, {}, {}, 0.0)


def test_hops_follow_the_shortest_configured_delay_and_unknown_hosts_cost_nothing():
    paths = PhysicalPaths(spec())
    assert paths.hop_links("h1", "h2") == (("h1", "s1"), ("s1", "s0"), ("s0", "s2"),
                                           ("s2", "h2"))
    assert paths.hop_links("h1", "h9") == ()


def test_push_load_is_the_recent_rate_of_the_masters_own_pushes():
    load = PushLoad(window_s=2.0)
    load.add(10.0, [("a", "b"), ("b", "c")], 250_000)
    load.add(11.0, [("a", "b")], 250_000)
    got = load.mbit(11.5)
    assert got[("a", "b")] == pytest.approx(2.0)     # 500 kB in 2 s = 2 Mbit/s
    assert got[("b", "c")] == pytest.approx(1.0)
    assert load.mbit(12.5) == {("a", "b"): pytest.approx(1.0)}   # the first fell out
    with pytest.raises(HeadroomError):
        PushLoad(0)


def test_parse_load_reads_fresh_relayed_rates_and_refuses_the_rest():
    doc = {"at": 10.0, "links": [{"a": "s0", "b": "s1", "ab_mbit": 3.5, "ba_mbit": None}]}
    assert parse_load(doc, 11.0) == {("s0", "s1"): 3.5}
    assert parse_load(doc, 30.0) is None                       # stale
    assert parse_load({"at": 1.0, "links": [{"a": "s0"}]}, 1.0) is None
    assert parse_load("junk", 1.0) is None
    assert parse_load({"at": True, "links": []}, 1.0) is None
    assert parse_load({"at": 1.0, "links": [{"a": "x", "b": "y", "ab_mbit": math.nan}]},
                      1.0) == {}
