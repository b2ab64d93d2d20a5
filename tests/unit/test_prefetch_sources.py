"""Where pushes come from and when they go: the live edge, the nearest copy, link room."""

from __future__ import annotations

import networkx as nx
import pytest

from testbed.core.headroom import LinkRoom, PhysicalPaths
from testbed.core.mesh import NearestCopy, PeerMetric, mesh_graph
from testbed.core.prefetch import (
    Demand,
    FutureDemand,
    PrefetchError,
    make_policy,
    plan_pushes,
)

M = "m1"
SIZE = 100_000


def flat(video, index):
    return SIZE


def plan(demand, **kw):
    kw.setdefault("size_of", flat)
    kw.setdefault("budget_bytes", 10**9)
    kw.setdefault("master", M)
    return plan_pushes(demand, **kw)


def chain_mesh():
    """m1 - h1 - h2 - h3 - h4, each hop 10 ms at 100 Mbit/s; m1 reaches only h1."""
    reports = {f"h{i}": {f"h{i + 1}": PeerMetric(10.0, 100.0)} for i in range(1, 4)}
    return mesh_graph(reports, M, {"h1": PeerMetric(10.0, 100.0)})


# --------------------------------------------------------------------------- live edge


@pytest.mark.parametrize("spec", ["predictive", "playhead", "popularity", "oracle"])
def test_no_policy_pushes_a_live_segment_that_does_not_exist_yet(spec):
    policy = make_policy(spec)
    demand = [Demand("h1", "live-00", i, 5.0) for i in range(10, 16)] + [
        Demand("h1", "vod-0001", 40, 5.0)]
    pushes = policy.plan_demand(0.0, demand, {}, {}, flat, 10**9, master=M,
                                newest={"live-00": 12})
    live = sorted(p.index for p in pushes if p.video == "live-00")
    assert live == [10, 11, 12]
    assert any(p.video == "vod-0001" for p in pushes)   # on-demand videos have no edge


def test_the_oracle_future_past_the_live_edge_is_held_back_until_it_exists():
    future = FutureDemand([(1.0, "h1", "live-00", 7), (2.0, "h1", "live-00", 8)])
    rows = future.between(0.0, 5.0)
    assert {r.index for r in plan(rows, newest={"live-00": 7})} == {7}
    assert {r.index for r in plan(rows, newest={"live-00": 8})} == {7, 8}


# --------------------------------------------------------------------------- nearest copy


def test_a_push_starts_at_the_copy_nearest_its_destination():
    graph = chain_mesh()
    nearest = NearestCopy(graph, M, SIZE)
    demand = [Demand("h4", "vod-0001", 3, 2.0)]
    got = plan(demand, nearest=nearest, holders={("vod-0001", 3): ["h3"]})
    assert [p.route for p in got] == [("h3", "h4")]
    # without a copy anywhere, the origin sends it along the whole chain
    got = plan(demand, nearest=nearest, holders={})
    assert [p.route for p in got] == [(M, "h1", "h2", "h3", "h4")]
    # a copy farther than the origin is not used
    got = plan([Demand("h1", "vod-0001", 3, 2.0)], nearest=nearest,
               holders={("vod-0001", 3): ["h4"]})
    assert [p.route for p in got] == [(M, "h1")]


def test_equal_distance_goes_to_the_helper_copy_not_the_origin():
    reports = {"h1": {"h2": PeerMetric(10.0, 100.0)}}
    graph = mesh_graph(reports, M, {"h2": PeerMetric(10.0, 100.0)})
    nearest = NearestCopy(graph, M, SIZE)
    assert nearest.route("h2", ["h1"]) == ("h1", "h2")
    assert nearest.route("h2", []) == (M, "h2")
    assert nearest.route("h9", ["h1"]) is None             # not in the mesh


def test_copies_from_helpers_still_count_against_the_one_push_budget():
    graph = chain_mesh()
    nearest = NearestCopy(graph, M, SIZE)
    demand = [Demand("h4", "vod-0001", i, 2.0) for i in range(5)]
    holders = {("vod-0001", i): ["h3"] for i in range(5)}
    got = plan(demand, nearest=nearest, holders=holders, budget_bytes=3 * SIZE)
    assert len(got) == 3 and all(p.route[0] == "h3" for p in got)


def test_keepers_follow_the_route_of_the_nearest_copy():
    graph = chain_mesh()
    nearest = NearestCopy(graph, M, SIZE)
    # h2 wants the segment a little; from the origin the route passes h1, h2 and h3
    demand = [Demand("h4", "vod-0001", 3, 1.0), Demand("h2", "vod-0001", 3, 0.2),
              Demand("h1", "vod-0001", 3, 0.2)]
    got = plan(demand, nearest=nearest, holders={})
    assert [(p.route, p.keep) for p in got] == [((M, "h1", "h2", "h3", "h4"), ("h1", "h2"))]
    # from h3's copy the route no longer passes h1 and h2, so nobody keeps one on the way
    got = plan(demand, nearest=nearest, holders={("vod-0001", 3): ["h3"]})
    assert [(p.route, p.keep) for p in got][0] == (("h3", "h4"), ())
    assert got[0].expected_hits == pytest.approx(1.0)


def test_nearest_copy_plans_are_the_same_every_time():
    graph = chain_mesh()
    demand = [Demand(f"h{h}", "vod-0001", i, 1.0) for h in range(1, 5) for i in range(4)]
    holders = {("vod-0001", i): [f"h{1 + i % 4}"] for i in range(4)}
    plans = {tuple(plan(demand, nearest=NearestCopy(graph, M, SIZE), holders=holders))
             for _ in range(3)}
    assert len(plans) == 1


# --------------------------------------------------------------------------- link room


def star_spec():
    """m1 - s0 - s1 - {h1, h2}; s0 - s2 - h3: the s0-s2 link is the narrow one."""
    g = nx.Graph()
    for a, b, bw in [("m1", "s0", 50), ("s0", "s1", 50), ("s0", "s2", 4), ("s1", "h1", 20),
                     ("s1", "h2", 20), ("s2", "h3", 20)]:
        g.add_edge(a, b, delay_ms=1.0, bw_mbit=bw)
    return g


def test_a_push_waits_when_a_link_on_its_route_has_no_room():
    paths = PhysicalPaths(star_spec())
    room = LinkRoom({("s0", "s2"): 2.5 * SIZE}, paths)
    demand = [Demand("h3", "vod-0001", i, 3.0 - i / 10) for i in range(4)] + [
        Demand("h1", "vod-0001", 9, 1.0)]
    got = plan(demand, link_room=room)
    to_h3 = [p.index for p in got if p.dest == "h3"]
    assert to_h3 == [0, 1]                      # 2 fit the narrow link, the rest wait
    assert any(p.dest == "h1" for p in got)     # other routes are not held back
    assert room.room[("s0", "s2")] == pytest.approx(0.5 * SIZE)


def test_room_counts_every_hop_of_a_mesh_route():
    paths = PhysicalPaths(star_spec())
    route = ("h1", "h3")                         # h1 -> s1 -> s0 -> s2 -> h3
    assert paths.route_links(route) == [("h1", "s1"), ("s1", "s0"), ("s0", "s2"),
                                        ("s2", "h3")]
    room = LinkRoom({("s1", "s0"): 1.5 * SIZE}, paths)
    assert room.fits(route, SIZE)
    room.take(route, SIZE)
    assert not room.fits(route, SIZE)
    assert room.fits(("h3", "h1"), SIZE)        # the other direction is another link


def test_bad_policy_horizon_is_refused():
    with pytest.raises(PrefetchError, match="horizon_s"):
        make_policy("popularity,horizon_s=0.5")
    assert make_policy("popularity,horizon_s=60").horizon_s == 60.0
    assert make_policy("popularity").horizon_s is None
    assert make_policy("playhead").predictor == "playhead"
    assert make_policy("oracle").predictor is None
