"""The demand planner: greedy by expected hits per byte, within the budget and the caches,
keeping copies on the route where they are wanted; the demand policies built on it."""

from __future__ import annotations

import math
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.prefetch import (
    MIN_EXPECTED,
    POLICIES,
    Demand,
    DemandPlanner,
    NextSegments,
    NoPrefetch,
    OraclePlanner,
    PopularityPlanner,
    PrefetchError,
    Push,
    make_policy,
    plan_pushes,
)

M = "m1"


def D(helper, video, index, expected):
    return Demand(helper, video, index, expected)


def flat(size=100):
    return lambda video, index: size


def keys(pushes):
    return [(p.dest, p.video, p.index) for p in pushes]


def plan(demand, **kw):
    kw.setdefault("size_of", flat())
    kw.setdefault("budget_bytes", 10**9)
    kw.setdefault("master", M)
    return plan_pushes(demand, **kw)


# --------------------------------------------------------------------------- greedy, budget


def test_the_pushes_of_highest_value_per_byte_within_the_budget():
    sizes = {("a", 0): 100, ("b", 0): 300, ("c", 0): 50, ("d", 0): 200}
    demand = [D("h1", "a", 0, 3.0),     # 0.03 per byte
              D("h10", "b", 0, 6.0),    # 0.02
              D("h2", "c", 0, 1.0),     # 0.02
              D("h1", "d", 0, 8.0)]     # 0.04

    def size_of(video, index):
        return sizes[(video, index)]

    got = plan(demand, size_of=size_of, budget_bytes=300)
    assert keys(got) == [("h1", "d", 0), ("h1", "a", 0)]          # exactly the budget
    assert [p.size for p in got] == [200, 100]
    assert [p.expected_hits for p in got] == [8.0, 3.0]
    # 49 bytes left: neither b (300) nor c (50) fits
    assert keys(plan(demand, size_of=size_of, budget_bytes=349)) == keys(got)
    # 50 left: b is skipped, the smaller c after it still fits; b and c tie at 0.02 per
    # byte and the same route length, so h2 (c) comes before h10 (b) anyway
    assert keys(plan(demand, size_of=size_of, budget_bytes=350)) == [
        ("h1", "d", 0), ("h1", "a", 0), ("h2", "c", 0)]
    assert keys(plan(demand, size_of=size_of, budget_bytes=650)) == [
        ("h1", "d", 0), ("h1", "a", 0), ("h2", "c", 0), ("h10", "b", 0)]
    assert plan(demand, size_of=size_of, budget_bytes=49) == []
    assert plan(demand, size_of=size_of, budget_bytes=0) == []


def test_ties_go_to_the_shorter_route_then_helper_video_index():
    demand = [D("h3", "v", 1, 1.0), D("h10", "v", 1, 1.0), D("h2", "w", 0, 1.0),
              D("h2", "v", 2, 1.0), D("h2", "v", 1, 1.0)]
    routes = {"h3": [M, "h9", "h3"]}            # h9 wants nothing: no copy kept there
    got = plan(demand, routes=routes)
    assert keys(got) == [("h2", "v", 1), ("h2", "v", 2), ("h2", "w", 0), ("h10", "v", 1),
                         ("h3", "v", 1)]
    assert got[-1].route == (M, "h9", "h3") and got[-1].keep == ()
    assert got[0].route == (M, "h2")


def test_never_cached_in_flight_blocked_or_below_min_expected():
    demand = [D("h1", "v", 0, 5.0), D("h1", "v", 1, 5.0), D("h1", "v", 2, 5.0),
              D("h1", "v", 3, 0.19), D("h1", "v", 4, 0.2), D("h2", "v", 0, 1.0)]
    got = plan(demand, cached={"h1": frozenset({("v", 0)})},
               in_flight={"h1": frozenset({("v", 1)})}, blocked=frozenset({("v", 2)}),
               min_expected=0.2)
    # h2 lacks v/0 and gets it; exactly min_expected is enough
    assert keys(got) == [("h2", "v", 0), ("h1", "v", 4)]
    blocked = plan(demand, blocked=frozenset({("v", 0), ("v", 4)}), min_expected=0.2)
    assert not {("v", 0), ("v", 4), ("v", 3)} & {(p.video, p.index) for p in blocked}


# --------------------------------------------------------------------------- free cache bytes


def test_free_bytes_at_the_destination():
    demand = [D("h1", "v", i, 1.0 + i) for i in range(3)] + [D("h2", "v", 0, 0.5)]
    got = plan(demand, cache_free={"h1": 250, "h2": 99})
    assert keys(got) == [("h1", "v", 2), ("h1", "v", 1)]           # h1: 2 x 100 <= 250
    assert plan(demand, cache_free={"h1": 0, "h2": 100}) == [Push("v", 0, "h2", 100, 0.5,
                                                                  (), (M, "h2"))]


def test_free_bytes_at_a_keeper():
    routes = {"b": [M, "a", "b"], "c": [M, "a", "c"]}
    demand = [D("a", "x", 0, 1.0), D("b", "x", 0, 1.0), D("a", "y", 0, 1.0),
              D("c", "y", 0, 1.0)]
    # a has room for one copy: the first push keeps it, the second cannot
    got = plan(demand, routes=routes, cache_free={"a": 100})
    assert [(p.dest, p.keep, p.expected_hits) for p in got] == [("b", ("a",), 2.0),
                                                               ("c", (), 1.0)]
    # no room at all at a: nothing kept there, and no push to a either
    got = plan(demand, routes=routes, cache_free={"a": 99})
    assert [(p.dest, p.keep) for p in got] == [("b", ()), ("c", ())]


def test_a_value_that_fell_goes_back_in_line():
    # b/x keeps a copy at a and fills a; c/y scored 1.9 with a keeping, but is worth 1.0 by
    # the time it comes up, so d/z (1.5) goes first
    routes = {"b": [M, "a", "b"], "c": [M, "a", "c"]}
    demand = [D("b", "x", 0, 1.0), D("a", "x", 0, 1.0), D("c", "y", 0, 1.0),
              D("a", "y", 0, 0.9), D("d", "z", 0, 1.5)]
    got = plan(demand, routes=routes, cache_free={"a": 100})
    assert [(p.dest, p.video, p.keep, p.expected_hits) for p in got] == [
        ("b", "x", ("a",), 2.0), ("d", "z", (), 1.5), ("c", "y", (), 1.0)]


# --------------------------------------------------------------------------- keep on the route


def test_a_helper_on_the_route_keeps_a_copy_it_wants():
    routes = {"b": [M, "a", "b"]}
    got = plan([D("b", "v", 3, 1.0), D("a", "v", 3, 2.0)], routes=routes)
    assert got == [Push("v", 3, "b", 100, 3.0, ("a",), (M, "a", "b"))]   # no push to a
    # nothing wanted at a: nothing kept
    assert plan([D("b", "v", 3, 1.0)], routes=routes) == [
        Push("v", 3, "b", 100, 1.0, (), (M, "a", "b"))]
    # a already has it, or it is on its way: not kept again
    for have in ({"cached": {"a": frozenset({("v", 3)})}},
                 {"in_flight": {"a": frozenset({("v", 3)})}}):
        got = plan([D("b", "v", 3, 1.0), D("a", "v", 3, 2.0)], routes=routes, **have)
        assert [(p.dest, p.keep, p.expected_hits) for p in got] == [("b", (), 1.0)]


def test_keep_min_decides_who_keeps_and_keepers_are_in_route_order():
    routes = {"c": [M, "b", "a", "c"]}
    demand = [D("c", "v", 0, 1.0), D("a", "v", 0, 0.5), D("b", "v", 0, 0.3)]
    got = plan(demand, routes=routes, keep_min=0.4, min_expected=0.1)
    # b wants too little to keep a copy; it gets its own push
    assert [(p.dest, p.keep, p.expected_hits) for p in got] == [("c", ("a",), 1.5),
                                                               ("b", (), 0.3)]
    got = plan(demand, routes=routes, keep_min=0.3)
    assert [(p.dest, p.keep, p.expected_hits) for p in got] == [("c", ("b", "a"), 1.8)]


def test_new_push_fields_default_to_empty():
    p = Push("v", 1, "h1", 100)
    assert (p.expected_hits, p.keep, p.route) == (1.0, (), ())


# --------------------------------------------------------------------------- determinism


def random_instance(seed, n_helpers=12, rows=80):
    rng = random.Random(seed)
    helpers = [f"h{i}" for i in range(1, n_helpers + 1)]
    routes = {}
    for h in helpers:
        others = [o for o in helpers if o != h]
        routes[h] = [M, *rng.sample(others, rng.randint(0, 3)), h]
    demand = [D(rng.choice(helpers), rng.choice(["v1", "v2", "v10"]), rng.randrange(8),
                round(rng.uniform(0, 3), 2)) for _ in range(rows)]
    sizes = {(v, i): rng.randint(50, 300) for v in ("v1", "v2", "v10") for i in range(8)}
    kw = {"size_of": lambda v, i: sizes[(v, i)], "budget_bytes": rng.randint(0, 4000),
          "master": M, "routes": routes,
          "cached": {h: frozenset(rng.sample(sorted(sizes), 3)) for h in helpers},
          "cache_free": {h: rng.randint(0, 800) for h in helpers[::2]}}
    return demand, kw


@pytest.mark.parametrize("seed", range(20))
def test_same_input_same_plan_whatever_the_order_of_the_rows(seed):
    demand, kw = random_instance(seed)
    first = plan_pushes(demand, **kw)
    assert first == plan_pushes(list(demand), **kw)
    shuffled = list(demand)
    random.Random(seed + 1000).shuffle(shuffled)
    assert plan_pushes(shuffled, **kw) == first
    # repeated rows add up (halves and quarters: exact), in any order, to the same plan
    split = [D(d.helper, d.video, d.index, part) for d in demand
             for part in (d.expected / 2, d.expected / 4, d.expected / 4)]
    random.Random(seed + 2000).shuffle(split)
    assert plan_pushes(split, **kw) == first


# --------------------------------------------------------------------------- oracle vs noisy


def hits(pushes, actual):
    """Requests the pushed copies answer, and how many pushes answer at least one."""
    answered = [sum(actual.get((h, p.video, p.index), 0) for h in (p.dest, *p.keep))
                for p in pushes]
    return sum(answered), sum(1 for a in answered if a > 0)


def as_demand(counts):
    return [D(h, v, i, float(c)) for (h, v, i), c in sorted(counts.items()) if c > 0]


def test_the_oracle_beats_a_wrong_forecast_by_hand():
    actual = {("h1", "v", 0): 5, ("h2", "v", 7): 2}
    noisy = {("h1", "v", 0): 1, ("h1", "v", 1): 4, ("h2", "v", 7): 2}
    oracle, predictive = make_policy("oracle"), make_policy("predictive")
    a = oracle.plan_demand(0.0, as_demand(actual), {}, {}, flat(), 100, master=M)
    b = predictive.plan_demand(0.0, as_demand(noisy), {}, {}, flat(), 100, master=M)
    assert keys(a) == [("h1", "v", 0)] and keys(b) == [("h1", "v", 1)]
    assert hits(a, actual) == (5, 1) and hits(b, actual) == (0, 0)


@pytest.mark.parametrize("seed", range(30))
def test_the_oracle_never_does_worse_than_noisy_demand(seed):
    rng = random.Random(seed)
    helpers = [f"h{i}" for i in range(1, 7)]
    segs = [(v, i) for v in ("v1", "v2") for i in range(10)]
    actual = {(h, v, i): rng.choice([0, 0, 0, 1, 1, 2, 3, 5])
              for h in helpers for v, i in segs}
    noisy = {k: max(0.0, c * rng.lognormvariate(0, 0.8) + rng.choice([0, 0, 1, 2]))
             for k, c in actual.items()}
    cached = {h: frozenset(rng.sample(segs, 4)) for h in helpers}
    budget = rng.randint(1, 25) * 100
    a = OraclePlanner().plan_demand(0.0, as_demand(actual), cached, {}, flat(), budget,
                                    master=M)
    b = DemandPlanner().plan_demand(0.0, as_demand(noisy), cached, {}, flat(), budget,
                                    master=M)
    assert sum(p.size for p in a) <= budget and sum(p.size for p in b) <= budget
    ha, hb = hits(a, actual), hits(b, actual)
    assert ha[0] >= hb[0] and ha[1] >= hb[1]


# --------------------------------------------------------------------------- invariants

HELPERS = ["h1", "h2", "h3", "h10", "h11"]
SEGS = [(v, i) for v in ("v1", "v2") for i in range(4)]


@st.composite
def instances(draw):
    demand = draw(st.lists(st.builds(
        Demand, st.sampled_from(HELPERS), st.sampled_from(["v1", "v2"]), st.integers(0, 3),
        st.floats(0, 4, allow_nan=False)), max_size=40))
    routes = {}
    for h in HELPERS:
        if draw(st.booleans()):
            mid = draw(st.lists(st.sampled_from([o for o in HELPERS if o != h]), unique=True,
                                max_size=3))
            routes[h] = [M, *mid, h]
    seg_sets = st.frozensets(st.sampled_from(SEGS), max_size=3)
    sizes = draw(st.lists(st.integers(1, 300), min_size=8, max_size=8))
    return demand, {
        "size_of": lambda v, i: sizes[SEGS.index((v, i))],
        "budget_bytes": draw(st.integers(0, 1500)),
        "master": M,
        "routes": routes,
        "cached": draw(st.dictionaries(st.sampled_from(HELPERS), seg_sets)),
        "in_flight": draw(st.dictionaries(st.sampled_from(HELPERS), seg_sets)),
        "blocked": draw(seg_sets),
        "cache_free": draw(st.dictionaries(st.sampled_from(HELPERS), st.integers(0, 600))),
        "min_expected": draw(st.sampled_from([0.1, 0.5, 1.0])),
        "keep_min": draw(st.sampled_from([0.1, 0.5, 2.0])),
    }


@settings(max_examples=400, deadline=None)
@given(instance=instances())
def test_plans_respect_budget_inventory_caches_and_never_stop_early(instance):
    demand, kw = instance
    pushes = plan_pushes(demand, **kw)
    rows: dict = {}
    for d in demand:
        rows.setdefault((d.helper, d.video, d.index), []).append(d.expected)
    want = {k: math.fsum(v) for k, v in rows.items()}
    used = sum(p.size for p in pushes)
    assert used <= kw["budget_bytes"]
    has = set()                          # (helper, video, index) delivered by the plan
    taken = {h: 0 for h in HELPERS}
    for p in pushes:
        seg = (p.video, p.index)
        assert p.size == kw["size_of"](*seg)
        assert seg not in kw["blocked"]
        assert p.route == tuple(kw["routes"].get(p.dest, [M, p.dest]))
        assert want[(p.dest, *seg)] >= kw["min_expected"]
        assert list(p.keep) == [h for h in p.route[1:-1] if h in p.keep]    # route order
        for h in p.keep:
            assert want[(h, *seg)] >= kw["keep_min"]
        assert p.expected_hits == pytest.approx(sum(want[(h, *seg)] for h in (p.dest, *p.keep)))
        for h in (p.dest, *p.keep):
            assert seg not in kw["cached"].get(h, ()) and seg not in kw["in_flight"].get(h, ())
            assert (h, *seg) not in has
            has.add((h, *seg))
            taken[h] += p.size
    for h, room in kw["cache_free"].items():
        assert taken[h] <= room
    # whatever is left out was covered, or did not fit what was left of budget or cache
    for (h, v, i), e in want.items():
        seg = (v, i)
        if (e < kw["min_expected"] or seg in kw["blocked"] or (h, v, i) in has
                or seg in kw["cached"].get(h, ()) or seg in kw["in_flight"].get(h, ())):
            continue
        size = kw["size_of"](v, i)
        room = kw["cache_free"].get(h, math.inf) - taken[h]
        assert size > kw["budget_bytes"] - used or size > room, (h, v, i)


# --------------------------------------------------------------------------- scale


def test_a_thousand_helpers_with_a_hundred_rows_each_plan_quickly():
    rng = random.Random(7)
    helpers = [f"h{i}" for i in range(1, 1001)]
    routes = {}
    for n, h in enumerate(helpers):       # a binary tree under the master: up to 10 hops
        path, j = [h], n
        while j > 0:
            j = (j - 1) // 2
            path.append(helpers[j])
        routes[h] = [M, *reversed(path)]
    videos = [f"vod-{v:04d}" for v in range(50)]
    demand = [D(h, rng.choice(videos), rng.randrange(60), rng.uniform(0, 3))
              for h in helpers for _ in range(100)]
    cached = {h: frozenset((rng.choice(videos), rng.randrange(60)) for _ in range(20))
              for h in helpers}
    free = {h: rng.randrange(0, 2_000_000) for h in helpers}

    def size_of(video, index):
        return 100_000 + 7 * index

    for budget in (250_000, 25_000_000):
        start = time.perf_counter()
        pushes = plan_pushes(demand, size_of=size_of, budget_bytes=budget, master=M,
                             cached=cached, cache_free=free, routes=routes)
        took = time.perf_counter() - start
        print(f"\n{len(helpers)} helpers x 100 rows, budget {budget} B: {len(pushes)} pushes, "
              f"{sum(len(p.keep) for p in pushes)} copies kept, {took:.3f} s")
        assert pushes and sum(p.size for p in pushes) <= budget


# --------------------------------------------------------------------------- popularity


def test_the_popularity_policy_plans_from_the_demand_it_is_given():
    policy = make_policy("popularity,min_expected=1")
    assert isinstance(policy, PopularityPlanner) and policy.name == "popularity"
    demand = [D("h1", "v", 0, 6.0), D("h2", "v", 0, 6.0), D("h2", "v", 1, 1.5),
              D("h1", "v", 1, 0.5)]
    got = policy.plan_demand(0.0, demand, {"h2": frozenset({("v", 0)})}, {}, flat(), 1000,
                             master=M)
    # h2 has v/0; v/1 at h1 expects 0.5 < 1
    assert [(p.dest, p.video, p.index, p.expected_hits) for p in got] == [
        ("h1", "v", 0, 6.0), ("h2", "v", 1, 1.5)]
    with pytest.raises(PrefetchError, match="window_s"):
        make_policy("popularity,window_s=10")


# --------------------------------------------------------------------------- policies, errors


def test_make_policy_builds_the_demand_policies():
    assert {"none", "next-segments", "predictive", "oracle", "popularity",
            "playhead"} == set(POLICIES)
    p = make_policy("predictive")
    assert type(p) is DemandPlanner and p.name == "predictive"
    assert (p.min_expected, p.keep_min) == (MIN_EXPECTED, 0.1)
    p = make_policy("predictive,min_expected=0.2,keep_min=1")
    assert (p.min_expected, p.keep_min) == (0.2, 1.0)
    o = make_policy("oracle,keep_min=0.5")
    assert type(o) is OraclePlanner and o.name == "oracle" and o.keep_min == 0.5
    assert make_policy("popularity").name == "popularity"
    assert isinstance(make_policy("none"), NoPrefetch)
    assert isinstance(make_policy("next-segments"), NextSegments)


def test_a_policy_plans_with_its_own_thresholds():
    demand = [D("h1", "v", 0, 0.15), D("h1", "v", 1, 0.3)]
    assert keys(make_policy("predictive,min_expected=0.1").plan_demand(
        0.0, demand, {}, {}, flat(), 1000, master=M)) == [("h1", "v", 1), ("h1", "v", 0)]
    assert keys(make_policy("predictive,min_expected=0.2").plan_demand(
        0.0, demand, {}, {}, flat(), 1000, master=M)) == [("h1", "v", 1)]


@pytest.mark.parametrize("spec, match", [
    ("predictive,min_expected=0", "min_expected"),
    ("predictive,min_expected=-1", "min_expected"),
    ("predictive,min_expected=nan", "min_expected"),
    ("oracle,keep_min=lots", "keep_min"),
    ("predictive,lookahead=3", "unknown parameter 'lookahead'"),
    ("popularity,window_s=0", "window_s"),
    ("popularity,horizon_s=inf", "horizon_s"),
    ("popularity,top=1.5", "top"),
    ("popularity,top=-1", "top"),
    ("predictor", "unknown prefetch policy 'predictor'"),
])
def test_bad_policy_parameters(spec, match):
    with pytest.raises(PrefetchError, match=match):
        make_policy(spec)


@pytest.mark.parametrize("kw, match", [
    ({"budget_bytes": -1}, "budget_bytes"),
    ({"size_of": flat(0)}, "size_of"),
    ({"size_of": flat(1.5)}, "size_of"),
    ({"cache_free": {"h1": -1}}, "cache_free"),
    ({"routes": {"h1": [M, "h2"]}}, "route to 'h1'"),
    ({"routes": {"h1": [M, "h2", "h2", "h1"]}}, "route to 'h1'"),
    ({"routes": {"h1": ["h1"]}}, "route to 'h1'"),
    ({"master": ""}, "master"),
    ({"min_expected": 0}, "min_expected"),
    ({"keep_min": math.nan}, "keep_min"),
])
def test_bad_planning_input(kw, match):
    with pytest.raises(PrefetchError, match=match):
        plan([D("h1", "v", 0, 1.0)], **kw)


def test_demand_rows_must_be_demand():
    with pytest.raises(PrefetchError, match="Demand"):
        plan([("h1", "v", 0, 1.0)])


@pytest.mark.parametrize("args, match", [
    (("", "v", 0, 1.0), "helper"),
    (("h1", None, 0, 1.0), "video"),
    (("h1", "v", -1, 1.0), "index"),
    (("h1", "v", True, 1.0), "index"),
    (("h1", "v", 0, -0.5), "expected"),
    (("h1", "v", 0, math.inf), "expected"),
    (("h1", "v", 0, math.nan), "expected"),
    (("h1", "v", 0, "2"), "expected"),
])
def test_bad_demand_rows(args, match):
    with pytest.raises(PrefetchError, match=match):
        Demand(*args)


def test_future_demand_counts_the_requests_in_the_horizon():
    from testbed.core.prefetch import FutureDemand

    fut = FutureDemand([(12.0, "h1", "v", 3), (10.5, "h1", "v", 2), (11.0, "h2", "v", 2),
                        (11.5, "h1", "v", 2), (16.0, "h1", "v", 4), (10.0, "h1", "v", 1)])
    assert len(fut) == 6
    got = fut.between(10.0, 5.0)  # (10, 15]: the request at exactly 10 and the one at 16 out
    assert [(d.helper, d.video, d.index, d.expected) for d in got] == [
        ("h1", "v", 2, 2.0), ("h1", "v", 3, 1.0), ("h2", "v", 2, 1.0)]
    assert fut.between(20.0, 5.0) == []
