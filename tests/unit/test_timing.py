"""Pingback: timing index, tiers, routing tables (a centre-to-edge tree), and when to rebuild."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.timing import (
    Pingback,
    RoutingTable,
    TimingError,
    TimingIndex,
    assign_tiers,
    build_routing_tables,
    significant_change,
    tiers_as_lists,
)

# --------------------------------------------------------------------------- timing index


def test_latency_is_the_minimum_of_the_window() -> None:
    idx = TimingIndex(window=3)
    for v in (10.0, 500.0, 12.0):      # a probe delayed by a queue does not move the helper
        idx.add_sample("h1", v, 0.0)
    assert idx.latency("h1") == 10.0
    idx.add_sample("h1", 14.0, 1.0)    # 10 falls out of the window: min of 500, 12, 14
    assert idx.latency("h1") == 12.0
    assert idx.samples("h1") == 3
    assert idx.latency("nobody") is None


def test_a_busy_path_keeps_its_tier_while_a_longer_path_moves_within_a_window() -> None:
    idx = TimingIndex(window=9)
    for i in range(9):  # a near helper behind a full queue: most probes wait 20-300 ms
        idx.add_sample("near", 7.0 if i % 4 == 0 else 7.0 + 20.0 * i, float(i))
    assert idx.latency("near") == 7.0
    for i in range(9):
        idx.add_sample("moved", 5.0, float(i))
    for i in range(9):  # its link got 40 ms longer: once every sample is new, it shows
        idx.add_sample("moved", 85.0 + i, 10.0 + i)
    assert idx.latency("moved") == 85.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "5"])
def test_bad_samples_are_rejected(bad: object) -> None:
    idx = TimingIndex()
    with pytest.raises(ValueError, match="h1"):
        idx.add_sample("h1", bad, 0.0)  # type: ignore[arg-type]
    assert idx.latency("h1") is None


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"stale_after_s": 0},
                                    {"stale_after_s": math.inf}, {"max_timeouts": 0}])
def test_bad_index_settings(kwargs: dict) -> None:
    with pytest.raises(TimingError, match=next(iter(kwargs))):
        TimingIndex(**kwargs)


def test_index_is_nearest_first_and_forgets_stale_helpers() -> None:
    idx = TimingIndex(stale_after_s=10.0)
    idx.add_sample("h10", 5.0, 0.0)
    idx.add_sample("h2", 5.0, 0.0)
    idx.add_sample("h3", 1.0, 5.0)
    idx.add_sample("h4", 30.0, 0.0)
    assert list(idx.index(10.0)) == ["h3", "h2", "h10", "h4"]   # tie 5 ms: h2 before h10
    assert idx.reachable(10.0) == ["h3", "h2", "h10", "h4"]
    assert idx.index(12.0) == {"h3": 1.0}                        # the others went stale
    idx.add_sample("h4", 30.0, 12.0)
    assert idx.reachable(12.0) == ["h3", "h4"]


def test_timeouts_in_a_row_take_a_helper_out_until_it_answers() -> None:
    idx = TimingIndex(max_timeouts=3)
    idx.add_sample("h1", 4.0, 0.0)
    idx.add_timeout("h1", 1.0)
    idx.add_timeout("h1", 2.0)
    assert idx.reachable(2.0) == ["h1"]
    idx.add_timeout("h1", 3.0)
    assert idx.reachable(3.0) == []
    assert idx.latency("h1") == 4.0            # kept, just not fresh
    idx.add_sample("h1", 4.0, 4.0)
    assert idx.reachable(4.0) == ["h1"] and idx.timeouts("h1") == 0
    idx.add_timeout("h9", 0.0)                 # never answered: known, not in the index
    assert idx.helpers() == ["h1", "h9"] and "h9" not in idx.index(4.0)


# --------------------------------------------------------------------------- tiers


LAT = {"a": 2.0, "b": 5.0, "c": 20.0, "d": 40.0}


def test_natural_breaks_from_the_issue() -> None:
    assert assign_tiers(LAT, tier_count=2) == {"a": 1, "b": 1, "c": 2, "d": 2}
    assert assign_tiers(LAT, tier_count=3) == {"a": 1, "b": 2, "c": 3, "d": 3}
    assert assign_tiers(LAT, tier_count=4) == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert assign_tiers(LAT, tier_count=1) == dict.fromkeys(LAT, 1)


def test_more_tiers_than_distinct_latencies_leaves_no_tier_empty() -> None:
    lat = {"a": 3.0, "b": 3.0, "c": 50.0}
    assert assign_tiers(lat, tier_count=5) == {"a": 1, "b": 1, "c": 2}
    assert assign_tiers({}, tier_count=3) == {}


def test_bands() -> None:
    lat = {"a": 2.0, "b": 10.0, "c": 10.5, "d": 80.0, "e": 500.0}
    # upper bounds are inclusive; above the last band is one more tier
    assert assign_tiers(lat, bands_ms=[10, 50, 100]) == {"a": 1, "b": 1, "c": 2, "d": 3,
                                                         "e": 4}
    # an empty band keeps its number
    assert assign_tiers({"a": 60.0}, bands_ms=[10, 50]) == {"a": 3}


@pytest.mark.parametrize("kwargs, what", [
    ({}, "exactly one"),
    ({"tier_count": 2, "bands_ms": [10]}, "exactly one"),
    ({"tier_count": 0}, "tier_count"),
    ({"tier_count": 2.0}, "tier_count"),
    ({"bands_ms": []}, "bands_ms"),
    ({"bands_ms": [10, 10]}, "increasing"),
    ({"bands_ms": [50, 10]}, "increasing"),
])
def test_bad_tiering_arguments(kwargs: dict, what: str) -> None:
    with pytest.raises(TimingError, match=what):
        assign_tiers(LAT, **kwargs)


def test_bad_latency_is_named() -> None:
    with pytest.raises(TimingError, match="helper b"):
        assign_tiers({"a": 1.0, "b": -3.0}, tier_count=2)


latencies = st.dictionaries(st.sampled_from([f"h{i}" for i in range(40)]),
                            st.floats(0, 300, allow_nan=False), min_size=0, max_size=40)


@settings(max_examples=200, deadline=None)
@given(latencies, st.integers(1, 6))
def test_natural_breaks_are_monotone_and_contiguous(lat: dict, k: int) -> None:
    tiers = assign_tiers(lat, tier_count=k)
    assert tiers.keys() == lat.keys()
    if not lat:
        return
    used = sorted(set(tiers.values()))
    assert used == list(range(1, min(k, len(set(lat.values()))) + 1))
    for a in lat:
        for b in lat:
            if lat[a] < lat[b]:
                assert tiers[a] <= tiers[b]
            if lat[a] == lat[b]:
                assert tiers[a] == tiers[b]


def test_tiers_as_lists() -> None:
    assert tiers_as_lists({"h10": 1, "h2": 1, "h3": 3}) == [["h2", "h10"], [], ["h3"]]
    assert tiers_as_lists({}) == []
    with pytest.raises(TimingError, match="h1"):
        tiers_as_lists({"h1": 0})


def test_significant_change() -> None:
    old = {"a": 10.0, "b": 1.0}
    assert not significant_change(old, dict(old))
    assert not significant_change(old, {"a": 12.5, "b": 2.9})      # 25 % of 10; 2 ms floor
    assert significant_change(old, {"a": 12.6, "b": 1.0})
    assert significant_change(old, {"a": 10.0, "b": 3.1})
    assert significant_change(old, {"a": 10.0})                    # disappeared
    assert significant_change(old, {**old, "c": 5.0})              # appeared
    assert not significant_change(old, {"a": 11.0, "b": 1.0}, rel=0.2)
    assert significant_change(old, {"a": 11.0, "b": 1.0}, rel=0.05, abs_ms=0.5)


# --------------------------------------------------------------------------- routing tables


def check_tree(master: str, tables: dict[str, RoutingTable], tiers: dict[str, int],
               version: int, fanout: int | None) -> None:
    """The tables form one tree rooted at the master, going centre to edge."""
    assert set(tables) == set(tiers) | {master}
    root = tables[master]
    assert (root.tier, root.parent, root.ancestors) == (0, "", ())
    for node, t in tables.items():
        assert t.node == node and t.version == version
        for c in t.children:
            assert tables[c].parent == node
        if node == master:
            continue
        assert t.tier == tiers[node]
        assert t.parent in tables and node in tables[t.parent].children
        assert tables[t.parent].tier < t.tier                  # centre to edge
        assert t.ancestors == (t.parent, *tables[t.parent].ancestors)
        assert t.ancestors[-1] == master and len(set(t.ancestors)) == len(t.ancestors)
        if fanout is not None:
            assert len(t.children) <= fanout
    # every child is listed exactly once
    listed = [c for t in tables.values() for c in t.children]
    assert sorted(listed) == sorted(tiers)


def test_tier_one_hangs_from_the_master_and_parents_are_nearest() -> None:
    lat = {"a": 2.0, "b": 5.0, "c": 20.0, "d": 40.0, "e": 4.0}
    tiers = assign_tiers(lat, tier_count=2)
    tables = build_routing_tables("m", lat, tiers, 7)
    check_tree("m", tables, tiers, 7, None)
    assert tables["m"].children == ("a", "e", "b")            # nearest first
    assert tables["c"].parent == "b" and tables["d"].parent == "b"
    assert tables["d"].ancestors == ("b", "m")
    assert tables["b"].children == ("c", "d")


def test_ties_go_to_the_name_that_sorts_first() -> None:
    lat = {"h10": 4.0, "h2": 6.0, "x": 5.0}
    tables = build_routing_tables("m", lat, {"h10": 1, "h2": 1, "x": 2}, 1)
    assert tables["x"].parent == "h2"                          # both 1 ms away


def test_pair_latency_overrides_the_latency_difference() -> None:
    lat = {"a": 2.0, "b": 5.0, "c": 6.0, "d": 7.0}
    tiers = {"a": 1, "b": 1, "c": 2, "d": 2}
    tables = build_routing_tables("m", lat, tiers, 1, pair_latency={("c", "a"): 3.0})
    assert tables["c"].parent == "a"                            # measured pair wins
    assert tables["d"].parent == "b"                            # no pair known: by difference
    # a pair given both ways counts at the worse value
    tables = build_routing_tables("m", lat, tiers, 1,
                                  pair_latency={("c", "a"): 3.0, ("a", "c"): 9.0,
                                                ("b", "c"): 4.0})
    assert tables["c"].parent == "b"


def test_fanout_spreads_children_and_spills_towards_the_centre() -> None:
    lat = {"p": 10.0, "q": 12.0, "c1": 30.0, "c2": 31.0, "c3": 32.0, "c4": 33.0, "c5": 34.0}
    tiers = {"p": 1, "q": 1, "c1": 2, "c2": 2, "c3": 2, "c4": 2, "c5": 2}
    tables = build_routing_tables("m", lat, tiers, 1, fanout=2)
    check_tree("m", tables, tiers, 1, 2)
    assert tables["q"].children == ("c1", "c2")                 # nearest parent first
    assert tables["p"].children == ("c3", "c4")
    assert tables["c5"].parent == "m"                           # tier 1 full: the master
    assert tables["m"].children == ("p", "q", "c5")


def test_fanout_with_pair_latency_skips_full_parents() -> None:
    lat = {"p": 10.0, "q": 12.0, "c1": 30.0, "c2": 31.0}
    tiers = {"p": 1, "q": 1, "c1": 2, "c2": 2}
    pairs = {("c1", "p"): 1.0, ("c2", "p"): 1.0, ("c2", "q"): 50.0}
    tables = build_routing_tables("m", lat, tiers, 1, fanout=1, pair_latency=pairs)
    assert tables["c1"].parent == "p" and tables["c2"].parent == "q"


def test_empty_bands_are_skipped() -> None:
    lat = {"a": 60.0, "b": 150.0}
    tiers = assign_tiers(lat, bands_ms=[10, 50, 100])           # a: 3, b: 4; 1 and 2 empty
    tables = build_routing_tables("m", lat, tiers, 1)
    check_tree("m", tables, tiers, 1, None)
    assert tables["a"].parent == "m" and tables["b"].parent == "a"


@pytest.mark.parametrize("args, what", [
    (("m", {"a": 1.0}, {"a": 0}, 1), "tier"),
    (("m", {}, {"a": 1}, 1), "no latency"),
    (("m", {"m": 1.0}, {"m": 1}, 1), "master"),
    (("m", {"a": 1.0}, {"a": 1}, 1, 0), "fanout"),
    (("m", {"a": math.nan}, {"a": 1}, 1), "helper a"),
    (("m", {"a": 1.0}, {"a": 1}, "1"), "version"),
])
def test_bad_table_input(args: tuple, what: str) -> None:
    with pytest.raises(TimingError, match=what):
        build_routing_tables(*args)


@st.composite
def tree_inputs(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(0, 30))
    names = [f"h{i}" for i in range(n)]
    lat = {h: draw(st.floats(0, 200, allow_nan=False)) for h in names}
    if draw(st.booleans()):
        tiers = assign_tiers(lat, tier_count=draw(st.integers(1, 5)))
    else:
        tiers = {h: draw(st.integers(1, 5)) for h in names}    # any tiers, gaps included
    fanout = draw(st.none() | st.integers(1, 4))
    pairs = None
    if n >= 2 and draw(st.booleans()):
        pairs = {(draw(st.sampled_from(names)), draw(st.sampled_from(names))):
                 draw(st.floats(0, 100)) for _ in range(draw(st.integers(0, 3 * n)))}
    return lat, tiers, fanout, pairs


@settings(max_examples=300, deadline=None)
@given(tree_inputs())
def test_tables_always_form_a_centre_to_edge_tree(inputs: tuple) -> None:
    lat, tiers, fanout, pairs = inputs
    tables = build_routing_tables("master", lat, tiers, 3, fanout, pairs)
    check_tree("master", tables, tiers, 3, fanout)
    lowest = min(tiers.values(), default=None)
    for h, t in tiers.items():
        if t == lowest:
            assert tables[h].parent == "master"
    for t in tables.values():                                  # children nearest first
        keys = [lat[c] for c in t.children]
        assert keys == sorted(keys)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([f"h{i}" for i in range(12)]),
                       st.floats(0, 100, allow_nan=False), min_size=1), st.integers(1, 4))
def test_without_fanout_the_parent_is_the_nearest_of_the_tier_below(lat: dict, k: int) -> None:
    tiers = assign_tiers(lat, tier_count=k)
    tables = build_routing_tables("m", lat, tiers, 1)
    for h, t in tiers.items():
        if t == 1:
            continue
        below = [p for p in tiers if tiers[p] == t - 1]
        best = min(abs(lat[p] - lat[h]) for p in below)
        assert abs(lat[tables[h].parent] - lat[h]) == best


def test_ten_thousand_helpers_get_tiers_and_bounded_fanout() -> None:
    # how long it takes is measured by benchmarks/delivery_core.py, not asserted here
    rng = random.Random(4)
    lat = {f"h{i}": rng.lognormvariate(3, 1) for i in range(10_000)}
    tiers = assign_tiers(lat, tier_count=4)
    tables = build_routing_tables("m", lat, tiers, 1, fanout=4)
    assert len(tables) == 10_001
    assert all(len(t.children) <= 4 for n, t in tables.items() if n != "m")


# --------------------------------------------------------------------------- pingback


def feed(pb: Pingback, lat: dict[str, float], now: float, rounds: int = 3,
         noise: float = 0.0, rng: random.Random | None = None) -> None:
    rng = rng or random.Random(0)
    for r in range(rounds):
        for h, v in lat.items():
            pb.record(h, v * (1 + rng.uniform(-noise, noise)), now + r * 0.1)


def test_pingback_waits_for_a_full_index_then_builds_version_one() -> None:
    pb = Pingback("m", tier_count=2, min_samples=3)
    assert pb.recompute(0.0) is None and pb.version == 0 and pb.tables == {}
    feed(pb, LAT, 0.0, rounds=2)
    pb.record("late", 3.0, 0.3)
    assert pb.recompute(0.5) is None                  # nobody has 3 samples yet
    feed(pb, LAT, 1.0, rounds=1)
    assert pb.recompute(1.5) is None                  # "late" is still warming up
    pb.record("late", 3.0, 1.6)
    pb.record("late", 3.0, 1.7)
    tables = pb.recompute(2.0)
    assert tables is not None and pb.version == 1
    assert set(tables) == {"m", *LAT, "late"}
    assert all(t.version == 1 for t in tables.values())
    assert pb.tiers == {"a": 1, "b": 1, "late": 1, "c": 2, "d": 2}


def test_pingback_ignores_noise_and_rebuilds_on_real_changes() -> None:
    pb = Pingback("m", tier_count=2, stale_after_s=30.0, max_timeouts=3)
    rng = random.Random(7)
    feed(pb, LAT, 0.0)
    assert pb.recompute(1.0) is not None
    for step in range(1, 30):                          # +-10 % noise: no new tables
        feed(pb, LAT, step, rounds=1, noise=0.1, rng=rng)
        assert pb.recompute(step + 0.5) is None
    moved = {**LAT, "b": 30.0}
    feed(pb, moved, 40.0, rounds=9)
    assert pb.recompute(41.0) is None and pb.recompute(41.1) is None  # b: not yet believed
    assert pb.pending_moves == {"b": 2} and pb.tiers["b"] == 1
    assert pb.recompute(41.2) is not None and pb.version == 2
    assert pb.tiers["b"] == 2 and pb.basis["b"] == 30.0
    for r in range(3):                                 # d stops answering
        feed(pb, {h: v for h, v in moved.items() if h != "d"}, 42.0 + r, rounds=1)
        pb.record("d", None, 42.0 + r)
    tables = pb.recompute(45.0)
    assert tables is not None and "d" not in tables and pb.version == 3
    assert pb.recompute(45.0) is None
    assert pb.recompute(45.0, force=True) is not None and pb.version == 4


# The default scenario's helpers: h1-h4 near (about 6 ms), h5-h8 far (about 50 ms).
DEFAULT = {"h1": 6.2, "h2": 6.5, "h3": 6.1, "h4": 6.7,
           "h5": 49.0, "h6": 51.0, "h7": 50.2, "h8": 52.5}
TIERS = {**dict.fromkeys(["h1", "h2", "h3", "h4"], 1), **dict.fromkeys(["h5", "h6", "h7", "h8"], 2)}


def probe_round(pb: Pingback, lat: dict[str, float], now: float, rng: random.Random,
                stall_p: float = 0.0, extra: dict[str, float] | None = None) -> None:
    """One pingback round (3 probes per helper, 30 ms apart); each probe is stalled by
    20-200 ms with probability ``stall_p``; ``extra`` adds a fixed delay to every probe of
    a helper (a starved path)."""
    for k in range(3):
        for h, v in lat.items():
            rtt = v * (1 + rng.uniform(0, 0.1)) + (extra or {}).get(h, 0.0)
            if rng.random() < stall_p:
                rtt += rng.uniform(20, 200)
            pb.record(h, rtt, now + 0.03 * k)


@pytest.mark.parametrize("seed", range(20))
def test_stalled_single_probes_keep_every_helper_in_its_tier(seed: int) -> None:
    rng = random.Random(seed)
    pb = Pingback("m", tier_count=2)
    seen = []
    for r in range(120):  # ten minutes of 5 s rounds, one probe in five stalled
        probe_round(pb, DEFAULT, 5.0 * r, rng, stall_p=0.2)
        if pb.recompute(5.0 * r + 0.6) is not None:
            seen.append(pb.tiers)
    assert seen and all(t == TIERS for t in seen), seen


def test_a_near_helper_moves_out_only_on_sustained_evidence_and_back_at_once() -> None:
    rng = random.Random(3)
    pb = Pingback("m", tier_count=2, confirm_rounds=3)
    for r in range(4):
        probe_round(pb, DEFAULT, 5.0 * r, rng)
        pb.recompute(5.0 * r + 0.6)
    assert pb.tiers == TIERS and pb.version == 1
    # h3's path starved for a while: +40 ms on every probe.  The window's minimum holds
    # for 3 rounds; then the move outwards must come out of 3 rounds in a row.
    moved_at = None
    for r in range(4, 12):
        probe_round(pb, DEFAULT, 5.0 * r, rng, extra={"h3": 40.0})
        if pb.recompute(5.0 * r + 0.6) is not None and pb.tiers["h3"] == 2:
            moved_at = moved_at or r
    assert moved_at == 4 + 2 + 2, moved_at   # 3 rounds to fill the window, then 3 to believe
    # a short starvation (4 rounds) never moves it
    pb2 = Pingback("m", tier_count=2)
    for r in range(20):
        extra = {"h3": 40.0} if 4 <= r < 8 else None
        probe_round(pb2, DEFAULT, 5.0 * r, rng, extra=extra)
        pb2.recompute(5.0 * r + 0.6)
        assert pb2.tiers.get("h3", 1) == 1, r
    # once h3 measures near again it is near: back in tier 1 in the same round
    probe_round(pb, DEFAULT, 100.0, rng)
    assert pb.recompute(100.6) is not None and pb.tiers == TIERS


def test_a_pending_move_outwards_does_not_hold_back_other_changes() -> None:
    rng = random.Random(5)
    pb = Pingback("m", bands_ms=[20.0], window=3, confirm_rounds=3)
    lat = {**DEFAULT, "h5": 15.0}              # h5 starts near
    probe_round(pb, lat, 0.0, rng)
    assert pb.recompute(0.6) is not None and pb.tiers["h5"] == 1
    lat = {**DEFAULT, "h2": 60.0, "h5": 15.0}  # h2 looks far
    probe_round(pb, lat, 5.0, rng)
    assert pb.recompute(5.6) is None and pb.pending_moves == {"h2": 2}
    lat = {**DEFAULT, "h2": 60.0, "h5": 4.0}   # h5 got much nearer meanwhile
    probe_round(pb, lat, 10.0, rng)
    tables = pb.recompute(10.6)
    assert tables is not None and pb.tiers["h2"] == 1 and pb.basis["h5"] < 5.0
    assert pb.basis["h2"] < 10.0               # the unbelieved latency is not the basis
    probe_round(pb, lat, 15.0, rng)
    assert pb.recompute(15.6) is not None and pb.tiers["h2"] == 2  # third round in a row


def test_far_helpers_queueing_do_not_pull_other_far_helpers_into_tier_one() -> None:
    # Seen on a constrained run: the link to h5 and h6 full for ten seconds (about 240 ms
    # of queueing in every probe), the natural breaks then split 47 | 290 ms and put h7
    # and h8 in tier 1 for a round.  Their own latency did not change: not believed.
    rng = random.Random(11)
    pb = Pingback("m", tier_count=2, window=3)
    probe_round(pb, DEFAULT, 0.0, rng)
    pb.recompute(0.6)
    queued = {"h5": 400.0, "h6": 400.0}
    for r in range(1, 3):
        probe_round(pb, DEFAULT, 5.0 * r, rng, extra=queued)
        pb.recompute(5.0 * r + 0.6)
        assert pb.tiers == TIERS, (r, pb.tiers)
    assert pb.pending_moves == {"h7": 1, "h8": 1}
    probe_round(pb, DEFAULT, 15.0, rng)        # the queue drained
    pb.recompute(15.6)
    assert pb.tiers == TIERS and pb.pending_moves == {}
    for r in range(4, 7):                      # a lasting change is believed on round 3
        probe_round(pb, DEFAULT, 5.0 * r, rng, extra=queued)
        pb.recompute(5.0 * r + 0.6)
    assert pb.tiers["h7"] == pb.tiers["h8"] == 1 and pb.tiers["h5"] == 2


def test_pingback_uses_neighbour_reports_and_fanout() -> None:
    lat = {"p": 2.0, "q": 3.0, "c": 20.0, "d": 21.0}
    pb = Pingback("m", bands_ms=[10], fanout=1)
    pb.report_neighbours("c", {"q": 1.0})
    feed(pb, lat, 0.0)
    tables = pb.recompute(1.0)
    assert tables is not None
    assert tables["c"].parent == "q" and tables["d"].parent == "p"


def test_pingback_rejects_bad_settings() -> None:
    with pytest.raises(TimingError, match="at most one"):
        Pingback("m", tier_count=2, bands_ms=[5])
    with pytest.raises(TimingError, match="min_samples"):
        Pingback("m", min_samples=0)
    with pytest.raises(TimingError, match="bands_ms"):
        Pingback("m", bands_ms=[5, 1])
    with pytest.raises(TimingError, match="fanout"):
        Pingback("m", fanout=0)
    with pytest.raises(TimingError, match="rel"):
        Pingback("m", rel=-0.1)
    with pytest.raises(TimingError, match="confirm_rounds"):
        Pingback("m", confirm_rounds=0)


def test_place_ignores_the_version_only():
    lat = {"h1": 2.0, "h2": 5.0, "h3": 20.0}
    tiers = assign_tiers(lat, tier_count=2)
    a = build_routing_tables("m1", lat, tiers, version=1)
    b = build_routing_tables("m1", {**lat, "h3": 21.0}, tiers, version=2)
    assert all(a[n].place == b[n].place for n in a) and a["h3"].version != b["h3"].version
    c = build_routing_tables("m1", lat, assign_tiers(lat, tier_count=3), version=3)
    assert c["h2"].place != a["h2"].place
