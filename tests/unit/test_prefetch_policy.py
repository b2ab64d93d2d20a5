"""Prefetch policies: the baseline pushes what players will ask for next, within budget."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.prefetch import (
    POLICIES,
    HelperView,
    NextSegments,
    NoPrefetch,
    PrefetchError,
    Push,
    make_policy,
)

SIZE = 100


def size_of(video, index):
    return SIZE


def n_segments(video):
    return {"vod-0000": 10, "vod-0001": 60, "live-00": 6}.get(video, 60)


def keys(pushes):
    return [(p.dest, p.video, p.index) for p in pushes]


def test_no_prefetch_never_pushes():
    view = HelperView("h1", (("vod-0000", 0),))
    assert NoPrefetch().plan(0.0, [view], size_of, n_segments, 10**9) == []
    assert make_policy("none").name == "none"


def test_next_segments_after_the_playhead_minus_cached_and_in_flight():
    view = HelperView("h1", (("vod-0001", 4),), cached=frozenset({("vod-0001", 5)}),
                      in_flight=frozenset({("vod-0001", 7)}))
    pushes = NextSegments(lookahead=4).plan(0.0, [view], size_of, n_segments, 10_000)
    assert keys(pushes) == [("h1", "vod-0001", 6), ("h1", "vod-0001", 8)]
    assert all(p.size == SIZE and p.expected_hits == 1.0 for p in pushes)


def test_never_past_the_last_segment():
    view = HelperView("h1", (("vod-0000", 8),))
    pushes = NextSegments(lookahead=3).plan(0.0, [view], size_of, n_segments, 10_000)
    assert keys(pushes) == [("h1", "vod-0000", 9)]


def test_shared_segments_are_pushed_once_with_their_expected_hits():
    view = HelperView("h1", (("vod-0001", 4), ("vod-0001", 5), ("vod-0001", 5)))
    pushes = NextSegments(lookahead=2).plan(0.0, [view], size_of, n_segments, 10_000)
    assert keys(pushes) == [("h1", "vod-0001", 5), ("h1", "vod-0001", 6),
                            ("h1", "vod-0001", 7)]
    assert [p.expected_hits for p in pushes] == [1.0, 3.0, 2.0]


def test_round_robin_nearest_first_within_the_budget():
    views = [HelperView("h1", (("vod-0001", 0),)), HelperView("h2", (("vod-0001", 10),)),
             HelperView("h3", ())]
    pushes = NextSegments(lookahead=3).plan(0.0, views, size_of, n_segments, 3 * SIZE)
    # Each helper's nearest segment first, then the second nearest, until the budget ends.
    assert keys(pushes) == [("h1", "vod-0001", 1), ("h2", "vod-0001", 11),
                            ("h1", "vod-0001", 2)]
    assert NextSegments().plan(0.0, views, size_of, n_segments, 0) == []


def test_a_push_too_big_for_what_is_left_is_skipped():
    def sizes(video, index):
        return 250 if index == 1 else SIZE

    view = HelperView("h1", (("vod-0001", 0),))
    pushes = NextSegments(lookahead=3).plan(0.0, [view], sizes, n_segments, 220)
    assert keys(pushes) == [("h1", "vod-0001", 2), ("h1", "vod-0001", 3)]


def test_same_segment_for_two_helpers_is_two_pushes():
    views = [HelperView("h1", (("live-00", 2),)), HelperView("h2", (("live-00", 2),))]
    pushes = NextSegments(lookahead=1).plan(0.0, views, size_of, n_segments, 10_000)
    assert keys(pushes) == [("h1", "live-00", 3), ("h2", "live-00", 3)]


def test_make_policy_parses_spec_strings():
    policy = make_policy("next-segments,lookahead=5")
    assert isinstance(policy, NextSegments) and policy.lookahead == 5
    assert make_policy(" next-segments ").lookahead == 3
    assert set(POLICIES) == {"none", "next-segments", "predictive", "popularity", "oracle",
                             "playhead"}
    with pytest.raises(PrefetchError, match="unknown prefetch policy 'psychic'"):
        make_policy("psychic")
    with pytest.raises(PrefetchError, match="unknown parameter 'depth'"):
        make_policy("next-segments,depth=2")
    with pytest.raises(PrefetchError, match="not key=value"):
        make_policy("next-segments,lookahead")
    with pytest.raises(PrefetchError, match="lookahead"):
        make_policy("next-segments,lookahead=0")
    with pytest.raises(PrefetchError, match="missing policy name"):
        make_policy("")
    with pytest.raises(PrefetchError, match="budget"):
        NextSegments().plan(0.0, [], size_of, n_segments, -1)


views_st = st.lists(
    st.builds(
        HelperView,
        st.sampled_from(["h1", "h2", "h3", "h4"]),
        st.lists(st.tuples(st.sampled_from(["vod-0000", "vod-0001", "live-00"]),
                           st.integers(-1, 70)), max_size=6).map(tuple),
        st.frozensets(st.tuples(st.just("vod-0001"), st.integers(0, 60)), max_size=10),
        st.frozensets(st.tuples(st.just("vod-0000"), st.integers(0, 10)), max_size=5),
    ),
    max_size=5)


@settings(max_examples=500, deadline=None)
@given(views=views_st, budget=st.integers(0, 3000), lookahead=st.integers(1, 6),
       sizes=st.lists(st.integers(1, 400), min_size=1, max_size=7))
def test_plans_respect_budget_inventory_and_bounds(views, budget, lookahead, sizes):
    def size(video, index):
        return sizes[index % len(sizes)]

    pushes = NextSegments(lookahead).plan(0.0, views, size, n_segments, budget)
    assert sum(p.size for p in pushes) <= budget
    assert len(set(keys(pushes))) == len(pushes)
    for p in pushes:
        assert isinstance(p, Push) and p.size == size(p.video, p.index)
        assert 0 <= p.index < n_segments(p.video)
        mine = [v for v in views if v.helper == p.dest]
        assert all((p.video, p.index) not in v.cached | v.in_flight for v in mine)
        heads = [h for v in mine for vid, h in v.playheads if vid == p.video]
        assert any(1 <= p.index - h <= lookahead for h in heads)
