"""The player state machine and the behaviour model that plans sessions."""

from __future__ import annotations

import heapq
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.player import (
    BehaviourModel,
    Fetch,
    Player,
    PlayerError,
    SessionPlan,
)

SEG = 2.0


def kinds(events):
    return [e.kind for e in events]


def drive(player, dl=lambda i, t: 0.5, fail=lambda i, n: False, until=2000.0, extra_polls=(),
          watch=None):
    """Discrete-event run: a fetch of ``i`` issued at ``t`` ends ``dl(i, t)`` s later.

    Polls at :meth:`Player.next_wakeup` (and at ``extra_polls``); ``watch(player)`` is
    called after every call into the player.
    """
    downloads: list = []
    polls = sorted(extra_polls)
    seq = 0
    tries: Counter = Counter()
    events = []
    now = 0.0
    while now <= until:
        fetches, ev = player.poll(now)
        events += ev
        if watch:
            watch(player)
        for f in fetches:
            tries[f.index] += 1
            seq += 1
            heapq.heappush(downloads, (now + dl(f.index, now), seq, f.index,
                                       not fail(f.index, tries[f.index])))
        if player.done:
            break
        wake = player.next_wakeup(now)
        while polls and polls[0] < now:
            polls.pop(0)
        nxt = min(wake, polls[0] if polls else math.inf)
        if downloads and downloads[0][0] <= nxt:
            now, _, index, ok = heapq.heappop(downloads)
            events += player.on_segment(index, now, ok)
            if watch:
                watch(player)
        elif math.isinf(nxt):
            break
        else:
            if polls and polls[0] == nxt:
                polls.pop(0)
            now = nxt
    return events


# ---------------------------------------------------------------------- start-up


def test_startup_delay_is_time_to_fill_the_startup_buffer():
    p = Player("v", SessionPlan("vod-0000", 1.0), 10, SEG, startup_buffer_s=4.0)
    events = drive(p, dl=lambda i, t: 0.5)
    start = events[0]
    assert start.kind == "start"
    assert start.at == pytest.approx(2.0)  # two 2 s segments at 0.5 s each
    q = p.qoe()
    assert q["joined_at"] == 1.0
    assert q["startup_s"] == pytest.approx(1.0)
    assert q["completed"] and not q["abandoned"]
    assert q["played_s"] == pytest.approx(20.0)
    assert q["stalls"] == 0 and q["rebuffer_ratio"] == 0.0
    assert kinds(events) == ["start", "complete"]
    assert events[-1].at == pytest.approx(22.0)


def test_nothing_happens_before_start_at():
    p = Player("v", SessionPlan("vod-0000", 5.0), 10, SEG)
    assert p.poll(1.0) == ([], [])
    assert p.next_wakeup(1.0) == 5.0
    assert p.qoe()["joined_at"] is None and p.qoe()["startup_s"] is None


def test_session_starts_at_the_first_poll_after_start_at():
    p = Player("v", SessionPlan("vod-0000", 5.0), 10, SEG)
    fetches, _ = p.poll(7.5)  # the previous session overran
    assert fetches == [Fetch(0)]
    p.on_segment(0, 8.0, True)
    p.poll(8.0)
    events = p.on_segment(1, 8.5, True)
    assert kinds(events) == ["start"]
    assert p.qoe()["joined_at"] == 7.5
    assert p.qoe()["startup_s"] == pytest.approx(1.0)


def test_short_video_starts_with_less_than_the_startup_buffer():
    p = Player("v", SessionPlan("vod-0000", 0.0), 1, SEG, startup_buffer_s=4.0,
               last_segment_s=1.5)
    events = drive(p, dl=lambda i, t: 0.25)
    assert kinds(events) == ["start", "complete"]
    assert events[1].at == pytest.approx(0.25 + 1.5)


# ---------------------------------------------------------------------- stalls


def test_stall_counts_from_empty_buffer_until_startup_buffer_refilled():
    p = Player("v", SessionPlan("vod-0000", 0.0), 10, SEG, startup_buffer_s=4.0)
    assert p.poll(0.0)[0] == [Fetch(0)]
    assert p.on_segment(0, 1.0, True) == []
    assert p.poll(1.0)[0] == [Fetch(1)]
    assert kinds(p.on_segment(1, 2.0, True)) == ["start"]
    assert p.poll(2.0)[0] == [Fetch(2)]           # segment 2 is slow
    assert p.next_wakeup(2.0) == pytest.approx(6.0)  # buffer runs dry then
    _, events = p.poll(6.5)
    assert kinds(events) == ["stall"] and events[0].at == pytest.approx(6.0)
    assert p.state == "stalled"
    assert p.on_segment(2, 7.0, True) == []        # 2 s buffered < 4 s needed
    assert p.poll(7.0)[0] == [Fetch(3)]
    events = p.on_segment(3, 9.0, True)
    assert kinds(events) == ["resume_play"]
    assert events[0].fields["cause"] == "stall"
    assert events[0].fields["wait_s"] == pytest.approx(3.0)
    q = p.qoe()
    assert q["stalls"] == 1
    assert q["stall_s"] == pytest.approx(3.0)
    assert q["played_s"] == pytest.approx(4.0)
    assert q["rebuffer_ratio"] == pytest.approx(3.0 / 7.0)
    assert q["startup_s"] == pytest.approx(2.0)    # start-up is not a stall


def test_stall_near_the_end_resumes_with_the_remaining_media():
    p = Player("v", SessionPlan("vod-0000", 0.0), 3, SEG, startup_buffer_s=4.0)
    p.poll(0.0)
    p.on_segment(0, 0.1, True)
    p.poll(0.1)
    p.on_segment(1, 0.2, True)
    p.poll(0.2)                                    # fetch 2, held back
    _, events = p.poll(5.0)
    assert kinds(events) == ["stall"] and events[0].at == pytest.approx(4.2)
    events = p.on_segment(2, 6.0, True)            # only 2 s remain: enough to go on
    assert kinds(events) == ["resume_play"]
    _, events = p.poll(9.0)
    assert kinds(events) == ["complete"] and events[0].at == pytest.approx(8.0)
    q = p.qoe()
    assert q["stall_s"] == pytest.approx(1.8) and q["played_s"] == pytest.approx(6.0)


def test_failed_download_is_fetched_again():
    p = Player("v", SessionPlan("vod-0000", 0.0), 4, SEG)
    assert p.poll(0.0)[0] == [Fetch(0)]
    p.on_segment(0, 0.5, False)
    assert p.next_wakeup(0.5) == 0.5
    assert p.poll(0.5)[0] == [Fetch(0)]
    assert p.qoe()["fetch_failures"] == 1
    p = Player("v", SessionPlan("vod-0000", 0.0), 4, SEG)
    events = drive(p, fail=lambda i, n: i == 2 and n < 3)
    assert kinds(events)[-1] == "complete"
    assert p.qoe()["fetch_failures"] == 2 and p.qoe()["segments"] == 4


# ---------------------------------------------------------------------- pause, seek, stop


def test_pause_stops_playback_but_fetching_continues_to_max_buffer():
    plan = SessionPlan("vod-0000", 0.0, 0, ((2.0, "pause", 30.0),))
    p = Player("v", plan, 30, SEG, startup_buffer_s=4.0, max_buffer_s=12.0)
    seen = []

    def watch(pl):
        seen.append((pl.state, pl.buffer_s))

    events = drive(p, dl=lambda i, t: 1.5, watch=watch)  # a little faster than real time
    assert kinds(events) == ["start", "pause", "resume", "complete"]
    start, pause, resume, done = events
    assert pause.at == pytest.approx(start.at + 2.0)
    assert pause.fields["playhead_s"] == pytest.approx(2.0)
    assert resume.at == pytest.approx(pause.at + 30.0)
    paused_levels = [b for s, b in seen if s == "paused"]
    assert min(paused_levels) < 6.0
    assert max(paused_levels) == pytest.approx(12.0)      # filled up while paused
    # A segment is asked for while the buffer (with what is in flight) is below 12 s.
    assert max(b for _, b in seen) < 12.0 + SEG
    q = p.qoe()
    assert q["pause_s"] == pytest.approx(30.0) and q["pauses"] == 1
    assert q["played_s"] == pytest.approx(60.0) and q["stalls"] == 0
    assert done.at == pytest.approx(start.at + 60.0 + 30.0)


def test_seek_flushes_buffer_and_late_arrivals_and_is_not_a_stall():
    plan = SessionPlan("vod-0000", 0.0, 0, ((2.0, "seek", 41.0),))
    p = Player("v", plan, 30, SEG)
    p.poll(0.0)
    p.on_segment(0, 0.5, True)
    p.poll(0.5)
    assert kinds(p.on_segment(1, 1.0, True)) == ["start"]
    assert p.poll(1.0)[0] == [Fetch(2)]                   # in flight when the seek comes
    fetches, events = p.poll(3.0)
    assert kinds(events) == ["seek"]
    assert events[0].at == pytest.approx(3.0)
    assert events[0].fields["from_s"] == pytest.approx(2.0)
    assert events[0].fields["to_s"] == pytest.approx(41.0)
    assert fetches == [Fetch(20)]                         # segment holding 41 s
    assert p.buffer_s == 0.0
    assert p.on_segment(2, 3.2, True) == []               # flushed: ignored
    assert p.buffer_s == 0.0 and p.qoe()["late_arrivals"] == 1
    assert p.on_segment(20, 3.5, True) == []              # 1 s of media after 41 s
    assert p.poll(3.5)[0] == [Fetch(21)]
    p.on_segment(21, 4.0, True)
    assert p.poll(4.0)[0] == [Fetch(22)]
    events = p.on_segment(22, 4.5, True)                  # 5 s >= 4 s: play
    assert kinds(events) == ["resume_play"] and events[0].fields["cause"] == "seek"
    q = p.qoe()
    assert q["stalls"] == 0 and q["stall_s"] == 0.0
    assert q["seeks"] == 1 and q["seek_wait_s"] == pytest.approx(1.5)
    assert p.playhead_s == pytest.approx(41.0)


def test_stop_abandons_and_ends_the_session():
    plan = SessionPlan("vod-0000", 0.0, 0, ((7.0, "stop", 0.0),))
    p = Player("v", plan, 30, SEG)
    events = drive(p)
    assert kinds(events) == ["start", "stop"]
    assert events[1].fields["playhead_s"] == pytest.approx(7.0)
    assert p.done and p.qoe()["abandoned"] and not p.qoe()["completed"]
    assert p.poll(100.0) == ([], [])
    assert p.next_wakeup(100.0) == math.inf
    assert p.on_segment(5, 100.0, True) == []
    assert p.qoe()["played_s"] == pytest.approx(7.0)


def test_abandon_from_outside():
    p = Player("v", SessionPlan("vod-0000", 0.0), 30, SEG)
    p.poll(0.0)
    events = p.abandon(10.0)                              # never got a segment
    assert kinds(events) == ["abandon"] and events[0].at == 10.0
    q = p.qoe()
    assert q["abandoned"] and q["startup_s"] is None and q["played_s"] == 0.0
    idle = Player("v", SessionPlan("vod-0000", 50.0), 30, SEG)
    assert kinds(idle.abandon(10.0)) == ["abandon"] and idle.qoe()["joined_at"] is None


def test_actions_apply_in_order_relative_to_the_start_position():
    plan = SessionPlan("vod-0000", 0.0, 0,
                       ((4.0, "seek", 20.0), (22.0, "pause", 1.0), (24.0, "stop", 0.0)))
    p = Player("v", plan, 30, SEG)
    events = drive(p)
    assert kinds(events) == ["start", "seek", "resume_play", "pause", "resume", "stop"]
    heads = [e.fields["playhead_s"] for e in events]
    assert heads[1] == pytest.approx(4.0)
    assert heads[3] == pytest.approx(22.0) and heads[5] == pytest.approx(24.0)


# ---------------------------------------------------------------------- live


def test_live_joins_at_the_edge_and_never_fetches_past_it():
    def edge(now):
        return math.floor(now / SEG) - 1   # segment i published at 2(i+1) s

    plan = SessionPlan("live-00", 100.0, 0, ((10.0, "stop", 0.0),))
    p = Player("v", plan, 300, SEG, live_edge=edge, max_inflight=3, live_poll_s=0.25)
    asked = []

    def watch(pl):
        asked.append(max(pl._inflight, default=-1) <= edge(pl._t))

    events = drive(p, dl=lambda i, t: 0.1, watch=watch)
    assert all(asked)
    assert p.qoe()["start_index"] == 49
    assert events[0].kind == "start"
    assert events[0].at == pytest.approx(102.1, abs=0.26)   # waits for segment 50
    assert events[-1].kind == "stop"
    assert events[-1].fields["playhead_s"] == pytest.approx(49 * SEG + 10.0)


def test_live_next_wakeup_polls_while_the_next_segment_is_unpublished():
    p = Player("v", SessionPlan("live-00", 0.0, 3), 300, SEG, live_edge=lambda now: 3,
               live_poll_s=0.5)
    assert p.poll(0.0)[0] == [Fetch(3)]
    p.on_segment(3, 0.1, True)
    assert p.poll(0.1)[0] == []
    assert p.next_wakeup(0.1) == pytest.approx(0.6)


# ---------------------------------------------------------------------- properties


def test_qoe_keys_do_not_clash_with_the_viewer_log_record():
    p = Player("v", SessionPlan("vod-0000", 0.0), 3, SEG)
    events = drive(p)
    envelope = {"kind", "node", "at", "viewer", "video", "helper", "requests", "answered",
                "digest_failures", "bytes_by_source", "latency_p50_ms", "ended"}
    assert not envelope & set(p.qoe())
    for e in events:
        assert not {"kind", "node", "at", "player", "video", "event", "t"} & set(e.fields)
        assert {"playhead_s", "index"} <= set(e.fields)


actions = st.lists(
    st.tuples(st.floats(0, 70), st.sampled_from(["pause", "seek", "stop"]), st.floats(0, 70)),
    max_size=4)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 30), acts=actions, delays=st.lists(st.floats(0.01, 5.0), min_size=1,
       max_size=20), fails=st.sets(st.integers(0, 29), max_size=5),
       inflight=st.integers(1, 3), start=st.floats(0, 10), startup=st.floats(0.5, 6),
       extra=st.floats(0, 8))
def test_random_sessions_keep_the_books(n, acts, delays, fails, inflight, start, startup, extra):
    """Every second after joining is in exactly one state; limits always hold."""
    plan = SessionPlan("vod-0000", start, 0, tuple(acts))
    max_buf = startup + extra
    p = Player("v", plan, n, SEG, startup_buffer_s=startup, max_buffer_s=max_buf,
               max_inflight=inflight)
    checks = []

    def watch(pl):
        checks.append(len(pl._inflight) <= inflight)
        checks.append(pl.buffer_s < max_buf + SEG + 1e-9)
        checks.append(0 <= pl.playhead_s <= pl.media_end + 1e-9)

    events = drive(p, dl=lambda i, t: delays[i % len(delays)],
                   fail=lambda i, k: i in fails and k == 1, until=10_000, watch=watch)
    assert all(checks)
    assert p.done
    q = p.qoe()
    assert q["completed"] != q["abandoned"]
    spent = q["ended_at"] - q["joined_at"]
    waited = q["startup_s"] if q["startup_s"] is not None else spent
    accounted = waited + q["played_s"] + q["stall_s"] + q["pause_s"] + q["seek_wait_s"]
    assert accounted == pytest.approx(spent, abs=1e-5)  # qoe rounds to 1 us
    assert 0.0 <= q["rebuffer_ratio"] < 1.0
    assert Counter(kinds(events))["stall"] == q["stalls"]
    assert [e.at for e in events] == sorted(e.at for e in events)
    if q["completed"] and not any(a[1] == "seek" for a in acts):
        assert q["played_s"] == pytest.approx(n * SEG)


@settings(max_examples=150, deadline=None)
@given(acts=actions, polls=st.lists(st.floats(0, 120), max_size=30),
       delays=st.lists(st.floats(0.01, 4.0), min_size=1, max_size=10))
def test_extra_polls_change_nothing(acts, polls, delays):
    """next_wakeup is never late: polling more often gives the same session."""
    def run(extra):
        p = Player("v", SessionPlan("vod-0000", 1.0, 0, tuple(acts)), 20, SEG, max_inflight=2)
        events = drive(p, dl=lambda i, t: delays[i % len(delays)], extra_polls=extra)
        q = {k: round(v, 6) if isinstance(v, float) else v for k, v in p.qoe().items()}
        return [(e.kind, round(e.at, 6)) for e in events], q

    assert run(()) == run(polls)


def test_bad_parameters_are_refused():
    plan = SessionPlan("vod-0000", 0.0)
    with pytest.raises(PlayerError, match="max_buffer_s"):
        Player("v", plan, 10, SEG, startup_buffer_s=8.0, max_buffer_s=4.0)
    with pytest.raises(PlayerError, match="n_segments"):
        Player("v", plan, 0, SEG)
    with pytest.raises(PlayerError, match="segment_s"):
        Player("v", plan, 10, 0.0)
    with pytest.raises(PlayerError, match="max_inflight"):
        Player("v", plan, 10, SEG, max_inflight=0)
    with pytest.raises(PlayerError, match="start_index"):
        Player("v", SessionPlan("vod-0000", 0.0, 10), 10, SEG)
    with pytest.raises(PlayerError, match="kind"):
        SessionPlan("vod-0000", 0.0, 0, ((1.0, "rewind", 0.0),))
    with pytest.raises(PlayerError, match="start_at"):
        SessionPlan("vod-0000", math.nan)


# ---------------------------------------------------------------------- behaviour model

VODS = [f"vod-{i:04d}" for i in range(20)]
DUR = {**{v: 120.0 for v in VODS}, "live-00": 600.0}


def test_behaviour_is_deterministic_per_seed_and_viewer():
    m = BehaviourModel(7)
    a = m.sessions("v1-0", VODS, DUR, ["live-00"], 300.0)
    assert a == BehaviourModel(7).sessions("v1-0", VODS, DUR, ["live-00"], 300.0)
    assert a != m.sessions("v1-1", VODS, DUR, ["live-00"], 300.0)
    assert a != BehaviourModel(8).sessions("v1-0", VODS, DUR, ["live-00"], 300.0)


def test_sessions_are_back_to_back_within_the_run():
    m = BehaviourModel(1, mean_gap_s=5.0)
    for viewer in (f"v{i}" for i in range(30)):
        plans = m.sessions(viewer, VODS, DUR, ["live-00"], 200.0)
        assert plans
        starts = [p.start_at for p in plans]
        assert starts == sorted(starts) and all(0 <= s < 200.0 for s in starts)
        for plan in plans:
            heads = [a[0] for a in plan.actions]
            assert all(0 <= h <= DUR[plan.video_id] for h in heads)
            assert sum(a[1] == "stop" for a in plan.actions) <= 1
            if plan.actions and plan.actions[-1][1] != "stop":
                assert all(a[1] != "stop" for a in plan.actions)


def test_zipf_popularity_favours_the_first_ids():
    m = BehaviourModel(3, zipf_s=1.0, live_share=0.0)
    counts = Counter(p.video_id for v in range(300)
                     for p in m.sessions(f"v{v}", VODS, DUR, [], 400.0))
    assert counts[VODS[0]] > 3 * counts[VODS[-1]]
    assert counts[VODS[0]] > counts[VODS[5]] > counts[VODS[19]]
    flat = BehaviourModel(3, zipf_s=0.0, live_share=0.0)
    counts = Counter(p.video_id for v in range(300)
                     for p in flat.sessions(f"v{v}", VODS, DUR, [], 400.0))
    assert max(counts.values()) < 2 * min(counts.values())


def test_probabilities_shape_the_plans():
    calm = BehaviourModel(5, pause_prob=0.0, seek_prob=0.0, abandon_prob=0.0, live_share=0.0)
    for p in calm.sessions("a", VODS, DUR, ["live-00"], 500.0):
        assert p.actions == () and p.video_id in VODS
    restless = BehaviourModel(5, pause_prob=1.0, seek_prob=1.0, abandon_prob=1.0,
                              live_share=0.0)
    for p in restless.sessions("a", VODS, DUR, ["live-00"], 500.0):
        assert Counter(a[1] for a in p.actions)["pause"] == 1
        assert Counter(a[1] for a in p.actions)["seek"] == 1
    live = BehaviourModel(5, live_share=1.0, seek_prob=1.0)
    plans = live.sessions("a", VODS, DUR, ["live-00"], 500.0)
    for p in plans:
        assert p.video_id == "live-00" and p.actions[-1][1] == "stop"
        assert all(a[1] != "seek" for a in p.actions)


def test_planned_sessions_play_through_the_player():
    m = BehaviourModel(11, pause_prob=0.5, seek_prob=0.5)
    for plan in m.sessions("v9", VODS, DUR, [], 600.0):
        p = Player("v9", plan, 60, SEG)
        events = drive(p, dl=lambda i, t: 0.3, until=5000.0)
        assert p.done and p.qoe()["stalls"] == 0
        assert kinds(events)[-1] in ("complete", "stop")


def test_behaviour_model_rejects_bad_input():
    with pytest.raises(PlayerError, match="pause_prob"):
        BehaviourModel(1, pause_prob=1.5)
    with pytest.raises(PlayerError, match="zipf_s"):
        BehaviourModel(1, zipf_s=-1)
    with pytest.raises(PlayerError, match="no duration"):
        BehaviourModel(1).sessions("v", ["vod-x"], {}, [], 100.0)
    with pytest.raises(PlayerError, match="no videos"):
        BehaviourModel(1).sessions("v", [], {}, [], 100.0)
