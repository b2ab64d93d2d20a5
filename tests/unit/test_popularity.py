"""The popularity prefetch baseline: popular segments ahead of sessions, prefixes of likely
videos, never a live segment, over exactly the horizon asked; and what playhead names."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from testbed.core import demand as D
from testbed.core.engine import DemandEngine, EngineConfig, EngineError
from testbed.core.telemetry import telemetry_record
from testbed.core.workload import TRACE_COLUMNS

SEG = 2.0
CFG = D.DemandConfig()          # H 5 s, window 60 s, session timeout 30 s
SALT = b"popularity-test-salt"


def events(rows) -> pd.DataFrame:
    """A trace from ``(at, helper, viewer, video, kind, index)`` tuples, sorted by time."""
    df = pd.DataFrame([{"at": float(at), "helper": h, "viewer": v, "video": vid, "kind": k,
                        "playhead_s": max(i, 0) * SEG, "index": i}
                       for at, h, v, vid, k, i in rows], columns=list(TRACE_COLUMNS))
    return df.sort_values("at", kind="stable").reset_index(drop=True)


def watch(helper, viewer, video, first, last, end_at, start=True, step=SEG):
    """A session asking for ``first..last`` one per ``step`` so that ``last`` comes at
    ``end_at``; with its ``start`` event after the first request."""
    n = last - first
    rows = [(end_at - (n - k) * step, helper, viewer, video, "request", first + k)
            for k in range(n + 1)]
    if start:
        rows.append((rows[0][0] + 0.1, helper, viewer, video, "start", -1))
    return rows


def stopped(helper, viewer, video, first, last, end_at):
    return watch(helper, viewer, video, first, last, end_at) + [
        (end_at + 0.5, helper, viewer, video, "stop", -1)]


def popularity(trace, now, horizon_s=5.0, prefix=0, **kw):
    return D.popularity_demand(events(trace), now, CFG, horizon_s=horizon_s, prefix=prefix,
                               prefix_window_s=300.0, **kw)


def keyed(rows) -> dict:
    return {(h, v, int(i)): x for h, v, i, x in rows.itertuples(index=False)}


# ---------------------------------------------------------------------- live

NOW = 200.0
EDGE = 50                                   # the newest live segment anyone asked for
# h1: two viewers at the live edge; h2: one a few segments behind it; starts everywhere
LIVE = (watch("h1", "l1", "live-00", 30, EDGE, NOW - 1.0)
        + watch("h1", "l2", "live-00", 40, EDGE, NOW - 0.8)
        + watch("h2", "l3", "live-00", 35, EDGE - 5, NOW - 0.5)
        + stopped("h2", "l4", "live-00", 20, EDGE, NOW - 2.0))


def test_popularity_never_names_a_live_segment():
    # without knowing the channel is live, h2's session behind the edge has popular
    # segments ahead of it, and the channel's starts give prefix rows: the test bites
    # (h1's viewers at the edge have passed everything; h3 has no viewer yet)
    helpers = ["h1", "h2", "h3"]
    blind = keyed(popularity(LIVE, NOW, horizon_s=60.0, prefix=6, helpers=helpers))
    assert {i for h, _, i in blind if h == "h2"} == set(range(EDGE - 4, EDGE + 1))
    assert {i for h, _, i in blind if h == "h3"} == set(range(6))
    assert not [k for k in blind if k[0] == "h1"]
    for horizon in (5.0, 60.0, 600.0):
        got = popularity(LIVE, NOW, horizon_s=horizon, prefix=6, live={"live-00"},
                         helpers=helpers)
        assert got.empty and list(got.columns) == D.ARRIVAL_COLUMNS


def test_popularity_names_on_demand_segments_next_to_a_live_channel():
    vod = watch("h2", "o1", "vod-a", 0, 20, NOW - 3.0) + watch("h2", "o2", "vod-a", 0, 8,
                                                                NOW - 1.5)
    got = keyed(popularity(LIVE + vod, NOW, horizon_s=60.0, prefix=6, live={"live-00"}))
    assert got and {v for _, v, _ in got} == {"vod-a"}
    assert all(i > 8 for _, _, i in got if _ == "h2")     # o2 passed 0..8
    assert {i for h, _, i in got if h == "h2"} == set(range(9, 21))
    assert {i for h, _, i in got if h == "h1"} == set(range(6))   # prefix: nobody watches


# ---------------------------------------------------------------------- behind sessions


# h1: viewers a and b watch v at indices 10 and 20; c watched v up to 5 and stopped;
# elsewhere v was watched up to 30; h1 also started w once (its viewer has gone)
BEHIND = (watch("h1", "a", "v", 0, 10, NOW - 1.0) + watch("h1", "b", "v", 0, 20, NOW - 0.5)
          + stopped("h1", "c", "v", 0, 5, NOW - 4.0)
          + watch("h2", "d", "v", 0, 30, NOW - 0.2)
          + stopped("h1", "e", "w", 0, 2, NOW - 50.0))


@pytest.mark.parametrize("prefix", [0, 6, 12])
def test_popularity_never_names_a_segment_every_local_session_has_passed(prefix):
    got = keyed(popularity(BEHIND, NOW, horizon_s=60.0, prefix=prefix, helpers=["h1"]))
    v = sorted(i for h, vid, i in got if vid == "v")
    # ahead of a (10): what was asked for recently, 11..30, and nothing at or below 10,
    # whether popular (asked for by b, c, d) or a prefix segment of v (they passed them)
    assert v == list(range(11, 31))
    # nobody at h1 watches w now: its prefix is expected, from h1's start of it
    assert sorted(i for _, vid, i in got if vid == "w") == list(range(prefix))
    assert {h for h, _, _ in got} == {"h1"}


def test_a_segment_asked_for_by_a_session_ahead_is_still_a_candidate_for_one_behind():
    got = keyed(popularity(BEHIND, NOW, helpers=["h1"]))
    # v/15: b asked for it once at h1, d once at h2; two helpers served requests
    assert got[("h1", "v", 15)] == pytest.approx((0.5 * 1 + 0.5 * 2 / 2) / 60 * 5)
    # v/25: d alone, at h2
    assert got[("h1", "v", 25)] == pytest.approx((0.5 * 0 + 0.5 * 1 / 2) / 60 * 5)


def test_ended_and_timed_out_sessions_hold_nothing_back():
    # only c (stopped) and e (gone for 50 s) at h1: no session there, nothing ahead
    trace = [r for r in BEHIND if r[2] not in ("a", "b")]
    got = keyed(popularity(trace, NOW, horizon_s=60.0, prefix=6, helpers=["h1"]))
    assert {i for _, v, i in got if v == "v"} == set(range(6))    # prefixes of v and w
    assert {i for _, v, i in got if v == "w"} == set(range(6))


def test_segments_past_the_end_of_a_video_are_not_prefixes():
    got = keyed(popularity(BEHIND, NOW, horizon_s=60.0, prefix=6, helpers=["h1"],
                           n_segments={"w": 3, "v": 25}))
    assert sorted(i for _, vid, i in got if vid == "w") == [0, 1, 2]
    assert max(i for _, vid, i in got if vid == "v") == 24


# ---------------------------------------------------------------------- prefixes


# h1 started only A, 4 times in the last 100 s (the telemetry's span), all stopped since
STARTS = [(0.0, "h9", "x", "B", "request", 0)] + [
    r for k in range(4) for r in stopped("h1", f"s{k}", "A", 0, 2, 20.0 + 20 * k)]


@pytest.mark.parametrize("horizon", [5.0, 10.0, 60.0])
def test_prefix_rows_are_the_likely_video_s_first_segments_over_the_horizon(horizon):
    got = keyed(popularity(STARTS, 100.0, horizon_s=horizon, prefix=6, helpers=["h1"]))
    assert set(got) == {("h1", "A", i) for i in range(6)}
    # one helper: its rate is its own, 4 starts / 100 s, and it starts A every time
    for x in got.values():
        assert x == pytest.approx(4 / 100 * horizon)


def test_double_the_horizon_doubles_every_expectation():
    trace = BEHIND + STARTS
    one = keyed(popularity(trace, NOW, horizon_s=7.0, prefix=6))
    two = keyed(popularity(trace, NOW, horizon_s=14.0, prefix=6))
    assert one and set(one) == set(two)
    assert all(two[k] == pytest.approx(2 * one[k]) for k in one)


# ---------------------------------------------------------------------- no hidden scaling


def steady(helpers, rate_per_s=0.1, segment=10, now=NOW):
    """At each helper: v/``segment`` asked for at ``rate_per_s`` over the last minute by
    viewers passing through (each stops right after), and one viewer at v/2."""
    rows = []
    for h in helpers:
        n = int(round(60 * rate_per_s))
        for k in range(n):
            at = now - 60 + (k + 0.5) / rate_per_s
            rows += [(at, h, f"{h}-p{k}", "v", "request", segment),
                     (at + 0.1, h, f"{h}-p{k}", "v", "stop", -1)]
        rows += watch(h, f"{h}-w", "v", 0, 2, now - 1.0, start=False)
    return rows


@pytest.mark.parametrize("helpers", [["h1"], ["h1", "h2", "h3"]])
@pytest.mark.parametrize("horizon", [1.0, 5.0, 60.0])
def test_a_steady_segment_expects_its_rate_times_the_horizon(helpers, horizon):
    got = keyed(popularity(steady(helpers), NOW, horizon_s=horizon))
    for h in helpers:
        assert got[(h, "v", 10)] == pytest.approx(0.1 * horizon)


def test_the_engine_answers_rate_times_its_horizon_unless_asked_for_another():
    e = DemandEngine(EngineConfig(popularity_prefix=0))
    recs = [telemetry_record(k, viewer, SALT, video, max(i, 0) * SEG, at, h,
                             **({"index": i} if k == "request" else {}))
            for at, h, viewer, video, k, i in steady(["h1"])]
    rows, errors = e.ingest(recs, "h1", now=NOW)
    assert errors == [] and len(rows) == len(recs)
    own = e.predict(NOW, ["h1"], 5, predictor="popularity")
    assert own["horizon_s"] == 5.0 and own["version"] == 0
    assert own["predictions"] == {"h1": [["v", 10, 0.5]]}
    long = e.predict(NOW, ["h1"], 5, predictor="popularity", horizon_s=60)
    assert long["horizon_s"] == 60.0 and long["predictions"] == {"h1": [["v", 10, 6.0]]}
    assert long["playheads"] == {"h1": [["v", 2]]}


# ---------------------------------------------------------------------- the engine


def engine_with(trace, cfg: EngineConfig | None = None, live=()) -> DemandEngine:
    e = DemandEngine(cfg or EngineConfig(), {"A": 100, "v": 100, "w": 100}, live=live)
    recs = {}
    for at, h, viewer, video, k, i in trace:
        extra = {"index": i} if k == "request" else {}
        recs.setdefault(h, []).append(telemetry_record(k, viewer, SALT, video,
                                                       max(i, 0) * SEG, at, h, **extra))
    for h, batch in recs.items():
        rows, errors = e.ingest(batch, h, now=NOW)
        assert errors == [] and len(rows) == len(batch)
    return e


def test_the_engine_s_popularity_answer_has_no_live_row_and_nothing_passed():
    e = engine_with(LIVE + BEHIND, live={"live-00"})
    out = e.predict(NOW, ["h1", "h2", "h3"], 100, predictor="popularity", horizon_s=60.0)
    assert set(out["predictions"]) == {"h1", "h2", "h3"}
    rows = [(h, v, i) for h, got in out["predictions"].items() for v, i, _ in got]
    assert rows and not [r for r in rows if r[1] == "live-00"]
    assert not [r for r in rows if r[:2] == ("h1", "v") and r[2] <= 10]
    assert "arrivals" not in out        # the prefixes are in the predictions themselves
    # the quiet h3 still expects the prefixes of what everyone starts
    assert {v for v, _, _ in out["predictions"]["h3"]} <= {"v", "w"}
    assert {i for _, i, _ in out["predictions"]["h3"]} == set(range(6))


def test_the_default_prefix_is_what_a_new_session_asks_for_at_once():
    assert EngineConfig().popularity_prefix == math.ceil(12.0 / 2.0)
    for bad in (-1, 1.5, True):
        with pytest.raises(EngineError, match="popularity_prefix"):
            EngineConfig(popularity_prefix=bad)


@pytest.mark.parametrize("horizon", [0, 0.5, 600.5, -5, True, "60", math.nan, math.inf,
                                     [60]])
def test_a_bad_horizon_is_refused_in_one_line(horizon):
    e = engine_with(BEHIND)
    with pytest.raises(EngineError, match="horizon_s") as err:
        e.predict(NOW, ["h1"], 5, predictor="popularity", horizon_s=horizon)
    assert "\n" not in str(err.value)


def test_the_horizon_bounds_are_accepted_and_other_predictors_keep_their_own():
    e = engine_with(BEHIND)
    for horizon in (1, 600.0):
        assert e.predict(NOW, ["h1"], 5, predictor="popularity",
                         horizon_s=horizon)["horizon_s"] == float(horizon)
    for predictor in ("model", "playhead"):
        assert e.predict(NOW, ["h1"], 5, predictor=predictor, horizon_s=5.0)["horizon_s"] \
            == 5.0
        with pytest.raises(EngineError, match="popularity only"):
            e.predict(NOW, ["h1"], 5, predictor=predictor, horizon_s=60.0)
    with pytest.raises(EngineError, match="predictor must be one of"):
        e.predict(NOW, ["h1"], 5, predictor="crystal-ball", horizon_s=60.0)


# ---------------------------------------------------------------------- playhead


def test_playhead_names_only_the_next_segments_of_running_sessions():
    # VoD: a at v/10 playing, b at v/20 playing, c stopped at v/5; live: l1, l2 at the
    # edge (the newest segment made), l3 five behind it
    e = engine_with(LIVE + BEHIND, live={"live-00"})
    out = e.predict(NOW, ["h1", "h2"], 100, predictor="playhead")
    assert out["horizon_s"] == 5.0 and out["version"] == 0
    heads = {h: {tuple(x) for x in got} for h, got in out["playheads"].items()}
    assert heads == {"h1": {("v", 10), ("v", 20), ("live-00", EDGE)},
                     "h2": {("v", 30), ("live-00", EDGE - 5)}}
    look = e.cfg.demand.lookahead
    for h, got in out["predictions"].items():
        for video, i, x in got:
            # the segment is just ahead of a session going at that helper on that video
            assert any(v == video and head < i <= head + look for v, head in heads[h])
            assert x >= 1
    rows = {h: {(v, i) for v, i, _ in got} for h, got in out["predictions"].items()}
    # a asked for v/10 1 s ago, b for v/20 0.5 s ago: one segment every 2 s within H
    assert {i for v, i in rows["h1"] if v == "v"} == {11, 12, 13, 21, 22}
    assert {i for v, i in rows["h2"] if v == "v"} == {31, 32}
    # live: the segments after each session's last, due within H; at the edge that means
    # segments not made yet (EDGE + 1.. are produced over the next seconds): the engine
    # does not know the edge, the master drops rows past it
    assert {i for v, i in rows["h1"] if v == "live-00"} == {EDGE + 1, EDGE + 2, EDGE + 3}
    assert {i for v, i in rows["h2"] if v == "live-00"} == {EDGE - 4, EDGE - 3}
