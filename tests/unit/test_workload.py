"""The viewer workload: calibration, arrivals, popularity, traces and replay."""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from testbed.core.player import Player, SessionPlan
from testbed.core.workload import (
    TRACE_COLUMNS,
    TRACE_KINDS,
    FlashCrowd,
    PopularityShift,
    Session,
    Workload,
    WorkloadConfig,
    WorkloadError,
    abandonment_by_delay,
    check_trace,
    early_stop_share,
    generate,
    sessions_from_trace,
    synthetic_catalogue,
    trace_frame,
)
from testbed.traces import read_trace, write_trace

SEG = 2.0
SHORT = tuple((f"vod-{i:04d}", 30.0) for i in range(20))
CALM = {"pause_rate_per_min": 0.0, "seek_rate_per_min": 0.0}


def helpers(n):
    return tuple(f"h{i:02d}" for i in range(n))


def zipf(n, s):
    w = np.array([1.0 / r ** s for r in range(1, n + 1)])
    return w / w.sum()


@pytest.fixture(scope="module")
def base() -> Workload:
    cfg = WorkloadConfig(helpers(8), synthetic_catalogue(60, 3), arrival_rate=0.05, seed=4,
                         live=(("live-00", 7200.0),), live_share=0.1,
                         shifts=(PopularityShift(1800.0, "vod-0030", 0.1),))
    return generate(cfg)


@pytest.fixture(scope="module")
def trace(base) -> pd.DataFrame:
    return base.trace()


@pytest.fixture(scope="module")
def groups(trace) -> dict:
    return {v: g for v, g in trace.groupby("viewer", sort=False)}


def durations(cfg):
    return dict(cfg.videos + cfg.live)


def player_for(s: Session, cfg: WorkloadConfig) -> Player:
    dur = durations(cfg)[s.video]
    n = math.ceil(dur / cfg.segment_s - 1e-9)
    edge = (lambda now: math.floor(now / cfg.segment_s) - 1) if s.live else None
    return Player(s.id, s.plan, n, cfg.segment_s, max_buffer_s=cfg.max_buffer_s,
                  live_edge=edge, last_segment_s=dur - (n - 1) * cfg.segment_s)


def drive(player, dl=0.05, until=1e6):
    """Run ``player`` with every download taking ``dl`` seconds; its events."""
    downloads: list = []
    events = []
    now = player.plan.start_at
    while now <= until:
        fetches, ev = player.poll(now)
        events += ev
        for f in fetches:
            heapq.heappush(downloads, (now + dl, f.index))
        if player.done:
            break
        wake = player.next_wakeup(now)
        if downloads and downloads[0][0] <= wake:
            now, index = heapq.heappop(downloads)
            events += player.on_segment(index, now, True)
        elif math.isinf(wake):
            break
        else:
            now = wake
    return events


# ---------------------------------------------------------------------- calibration


def test_finamore_share_of_early_stops_follows_the_target():
    cat = synthetic_catalogue(200, 1)
    w = generate(WorkloadConfig(helpers(20), cat, arrival_rate=0.1))
    started = [s for s in w.sessions if not s.abandoned_at_startup and not s.live]
    assert len(started) >= 5000
    assert early_stop_share(w.sessions) == pytest.approx(0.60, abs=0.03)
    complete = np.mean([s.watch_fraction == 1.0 for s in started])
    assert complete == pytest.approx(0.2, abs=0.03)
    assert all(0.0 <= s.watch_fraction <= 1.0 for s in started)
    other = generate(WorkloadConfig(helpers(20), cat, arrival_rate=0.1, early_stop_share=0.5,
                                    seed=9))
    assert early_stop_share(other.sessions) == pytest.approx(0.50, abs=0.03)
    tenth = generate(WorkloadConfig(helpers(20), cat, arrival_rate=0.1, early_stop_share=0.3,
                                    early_stop_fraction=0.1))
    assert early_stop_share(tenth.sessions, 0.1) == pytest.approx(0.30, abs=0.03)


def test_unreachable_early_stop_target_is_refused():
    with pytest.raises(WorkloadError, match="early_stop_share 0.85 is unreachable"):
        WorkloadConfig(("h",), SHORT, early_stop_share=0.85, complete_share=0.2)


def test_krishnan_abandonment_grows_58_per_mille_per_second_after_2_s():
    cfg = WorkloadConfig(helpers(8), SHORT, arrival_rate=0.75, startup_median_s=4.0,
                         startup_sigma=0.8, **CALM)
    sessions = generate(cfg).sessions
    assert len(sessions) > 18_000
    table = abandonment_by_delay(sessions, [0.0, 1.0, 2.0, *range(3, 13)])
    assert list(table.columns) == ["delay_lo", "delay_hi", "sessions", "abandoned", "rate"]
    early = table[table.delay_hi <= 2.0]
    assert early.abandoned.sum() / early.sessions.sum() <= 0.01
    late = table[table.delay_lo >= 2.0]
    assert late.sessions.min() > 300
    slope, _ = np.polyfit((late.delay_lo + late.delay_hi) / 2, late.rate, 1)
    assert slope == pytest.approx(0.058, abs=0.01)
    assert table.sessions.sum() == sum(0 < s.startup_s <= 12 for s in sessions)


# ---------------------------------------------------------------------- arrivals, popularity


def test_arrivals_per_region_follow_the_rate():
    cfg = WorkloadConfig(helpers(5), SHORT, arrival_rate=0.5, **CALM)
    counts = Counter(s.helper for s in generate(cfg).sessions)
    mean = 0.5 * 3600
    for h in cfg.helpers:
        assert abs(counts[h] - mean) < 4 * math.sqrt(mean)
    arrivals = [s.arrive_at for s in generate(cfg).sessions]
    assert arrivals == sorted(arrivals) and arrivals[0] >= 0 and arrivals[-1] < 3600


def test_daily_rhythm_puts_more_arrivals_at_the_peak_hour():
    cfg = WorkloadConfig(helpers(3), SHORT, arrival_rate=0.1, duration_s=86_400.0,
                         daily_amplitude=0.5, peak_hour=20.0, **CALM)
    hours = np.array([s.arrive_at / 3600 for s in generate(cfg).sessions])
    peak = np.sum((hours >= 19) & (hours < 21))
    trough = np.sum((hours >= 7) & (hours < 9))
    m = 12 / math.pi * math.sin(math.pi / 12)  # mean of cos over +-1 h
    assert peak / trough == pytest.approx((1 + 0.5 * m) / (1 - 0.5 * m), rel=0.15)
    assert len(hours) == pytest.approx(3 * 0.1 * 86_400, rel=0.03)


def video_counts(sessions, helper=None):
    return Counter(s.video for s in sessions if helper is None or s.helper == helper)


def test_top_video_share_follows_zipf():
    cfg = WorkloadConfig(helpers(4), SHORT, arrival_rate=1.5, regional_skew=0.0, **CALM)
    sessions = generate(cfg).sessions
    p = zipf(20, 0.8)
    counts = video_counts(sessions)
    n = len(sessions)
    for i in (0, 1, 19):
        assert counts[SHORT[i][0]] / n == pytest.approx(p[i], abs=4 * math.sqrt(p[i] / n))


def rank_agreement(sessions, cfg):
    ids = [v for v, _ in cfg.videos]
    table = pd.DataFrame({h: [video_counts(sessions, h)[v] for v in ids] for h in cfg.helpers})
    corr = table.rank().corr().to_numpy()
    return corr[np.triu_indices(len(cfg.helpers), 1)].mean()


def test_regional_skew_reorders_the_regions_rankings():
    common = {"arrival_rate": 1.4, **CALM}
    same = WorkloadConfig(helpers(6), SHORT, regional_skew=0.0, **common)
    skewed = WorkloadConfig(helpers(6), SHORT, regional_skew=1.0, **common)
    apart = generate(skewed).sessions
    assert rank_agreement(generate(same).sessions, same) > 0.85
    assert rank_agreement(apart, skewed) < 0.4
    tops = {video_counts(apart, h).most_common(1)[0][0] for h in skewed.helpers}
    assert len(tops) >= 3


def test_popularity_shift_makes_a_hot_video():
    cfg = WorkloadConfig(helpers(4), SHORT, arrival_rate=1.5, regional_skew=0.0,
                         shifts=(PopularityShift(1800.0, "vod-0015", 0.3),), **CALM)
    sessions = generate(cfg).sessions
    p = zipf(20, 0.8)[15]
    before = [s.video == "vod-0015" for s in sessions if s.arrive_at < 1800]
    after = [s.video == "vod-0015" for s in sessions if s.arrive_at >= 1800]
    assert np.mean(before) == pytest.approx(p, abs=0.01)
    assert np.mean(after) == pytest.approx(0.3 + 0.7 * p, abs=0.02)


# ---------------------------------------------------------------------- trace


def test_trace_columns_types_and_order(base, trace):
    assert tuple(trace.columns) == TRACE_COLUMNS
    assert [str(t) for t in trace.dtypes] == ["float64", "object", "object", "object",
                                              "object", "float64", "int64"]
    assert set(trace.kind) <= set(TRACE_KINDS)
    keys = list(zip(trace["at"], trace.viewer))
    assert keys == sorted(keys)
    assert set(trace.viewer) == {s.id for s in base.sessions}
    assert all(v.startswith("s") and "." not in v and ":" not in v for v in set(trace.viewer))
    req = trace.kind == "request"
    assert (trace["index"][~req] == -1).all() and (trace["index"][req] >= 0).all()
    assert np.allclose(trace.playhead_s[req], trace["index"][req] * SEG)
    assert {"start", "stop", "complete", "pause", "seek", "abandon", "request"} <= set(trace.kind)


def test_requests_pace_one_per_segment_in_steady_play():
    cfg = WorkloadConfig(helpers(2), (("vod-0000", 300.0),), arrival_rate=0.005,
                         complete_share=0.9, early_stop_share=0.05, **CALM)
    w = generate(cfg)
    df = w.trace()
    checked = 0
    for s in w.sessions:
        if s.abandoned_at_startup or s.plan.actions:
            continue
        rows = df[df.viewer == s.id]
        start = rows[rows.kind == "start"]["at"].iloc[0]
        req = rows[rows.kind == "request"]
        burst = req[req["at"] < start]
        steady = req[req["at"] >= start]
        assert list(burst["index"]) == list(range(6))        # 12 s ahead of the playhead
        assert list(steady["index"]) == list(range(6, 150))  # ... and nothing past the end
        assert np.allclose(np.diff(steady["at"]), SEG)
        assert steady["at"].iloc[0] == pytest.approx(start)
        assert rows.kind.iloc[-1] == "complete"
        assert rows["at"].iloc[-1] == pytest.approx(start + 300.0)
        checked += 1
    assert checked >= 10


def test_no_requests_while_paused_or_after_the_end(base, groups):
    kinds = Counter()
    for s in base.sessions:
        if s.live:
            continue
        rows = groups[s.id]
        events = rows[rows.kind != "request"]
        req_at = rows["at"][rows.kind == "request"].to_numpy()
        end = events.iloc[-1]
        kinds[end.kind] += 1
        assert end.kind in ("stop", "complete", "abandon")
        assert (req_at < end["at"]).all()
        pauses = events[events.kind == "pause"]["at"].to_numpy()
        resumes = events[events.kind == "resume"]["at"].to_numpy()
        assert len(pauses) == len(resumes)
        for a, b in zip(pauses, resumes):
            assert not ((req_at > a) & (req_at < b)).any()
        if s.abandoned_at_startup:
            assert "start" not in set(events.kind)
            assert list(events.kind) == ["abandon"]
            assert end["at"] == pytest.approx(s.arrive_at + s.patience_s, abs=1e-6)
            assert s.startup_s > s.patience_s
        else:
            assert events.kind.iloc[0] == "start"
            assert events["at"].iloc[0] == pytest.approx(s.arrive_at + s.startup_s, abs=1e-6)
        if len(kinds) == 3 and sum(kinds.values()) > 400:
            break
    assert kinds["abandon"] > 0 and kinds["stop"] > 0 and kinds["complete"] > 0


def test_live_sessions_join_at_the_edge_and_follow_it():
    cfg = WorkloadConfig(helpers(2), SHORT, live=(("live-00", 7200.0),), live_share=1.0,
                         arrival_rate=0.01, mean_live_watch_s=90.0)
    w = generate(cfg)
    df = w.trace()
    assert w.sessions and all(s.live and s.video == "live-00" for s in w.sessions)
    for s in w.sessions:
        assert s.plan.start_index == max(0, math.floor(s.arrive_at / SEG) - 1)
        rows = df[df.viewer == s.id]
        req = rows[rows.kind == "request"]
        assert req["index"].iloc[0] == s.plan.start_index
        assert (req["at"] >= (req["index"] + 1) * SEG - 1e-6).all()   # never before it is out
        assert (np.diff(req["index"]) == 1).all()
        if s.abandoned_at_startup:
            continue
        start = rows["at"][rows.kind == "start"].iloc[0]
        gaps = np.diff(req["at"][req["at"] > start])
        assert (gaps >= SEG - 1e-6).all()
        if "pause" not in set(rows.kind):
            assert np.allclose(gaps, SEG)             # one per segment as it comes out
        events = drive(player_for(s, cfg))
        assert events[-1].kind == rows.kind.iloc[-1]
        assert events[-1].fields["playhead_s"] == pytest.approx(rows.playhead_s.iloc[-1])


def test_player_reproduces_the_plans(base, groups):
    cfg = base.config
    checked = Counter()
    for s in base.sessions:
        if s.abandoned_at_startup or (not s.plan.actions and checked["plain"] > 5):
            continue
        checked["plain" if not s.plan.actions else "acted"] += 1
        rows = groups[s.id]
        p = player_for(s, cfg)
        events = drive(p)
        assert p.done and p.qoe()["stalls"] == 0
        assert events[-1].kind == rows.kind.iloc[-1]
        assert events[-1].fields["playhead_s"] == pytest.approx(rows.playhead_s.iloc[-1],
                                                                abs=1e-6)
        assert p.pauses == (rows.kind == "pause").sum()
        assert p.seeks == (rows.kind == "seek").sum()
        seeks = [e.fields["to_s"] for e in events if e.kind == "seek"]
        assert seeks == pytest.approx(list(rows.playhead_s[rows.kind == "resume_play"]))
        dur = durations(cfg)[s.video]
        if events[-1].kind == "stop":
            assert p.played_s == pytest.approx(s.watch_fraction * dur, abs=1e-6)
        if checked["acted"] >= 120:
            break
    assert checked["acted"] >= 120


def test_csv_and_parquet_round_trip(tmp_path, trace):
    for name in ("t.csv", "t.parquet"):
        write_trace(trace, tmp_path / name)
        back = read_trace(tmp_path / name)
        pd.testing.assert_frame_equal(back, trace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.parquet"]
    extra = trace.head(50).assign(note="x")
    write_trace(extra, tmp_path / "e.csv")
    assert "note" not in (tmp_path / "e.csv").read_text().splitlines()[0]
    pd.read_csv(tmp_path / "t.csv").assign(note=1).to_csv(tmp_path / "n.csv", index=False)
    pd.testing.assert_frame_equal(read_trace(tmp_path / "n.csv"), trace)


def test_check_trace_types_a_frame_of_text_without_files(trace):
    raw = trace.astype(str).assign(note="x")
    pd.testing.assert_frame_equal(check_trace(raw, "mine"), trace)
    with pytest.raises(WorkloadError, match=r"^mine: missing column\(s\) kind$"):
        check_trace(trace.drop(columns="kind"), "mine")


def test_read_trace_sorts_by_time(tmp_path, trace):
    head = trace.head(200)
    head.iloc[::-1].to_csv(tmp_path / "r.csv", index=False)
    back = read_trace(tmp_path / "r.csv")
    assert list(back["at"]) == sorted(head["at"])


@pytest.mark.parametrize("mangle, message", [
    (lambda df: df.drop(columns=["kind", "index"]), r"missing column\(s\) kind, index"),
    (lambda df: df.assign(kind=["rewind" if i == 2 else k for i, k in enumerate(df.kind)]),
     r"column 'kind' row 3: 'rewind' is not one of"),
    (lambda df: df.assign(at=[("abc" if i == 4 else a) for i, a in enumerate(df["at"])]),
     r"column 'at' row 5: 'abc' is not a number"),
    (lambda df: df.assign(at=[(-1.0 if i == 6 else a) for i, a in enumerate(df["at"])]),
     r"column 'at' row 7: '-1.0' is not a finite number >= 0"),
    (lambda df: df.assign(index=[("2.5" if i == 0 else j) for i, j in enumerate(df["index"])]),
     r"column 'index' row 1: '2.5' is not an integer"),
    (lambda df: df.assign(viewer=[("" if i == 1 else v) for i, v in enumerate(df.viewer)]),
     r"column 'viewer' row 2: empty"),
])
def test_read_trace_errors_are_one_line_naming_the_problem(tmp_path, trace, mangle, message):
    path = tmp_path / "bad.csv"
    mangle(trace.head(20).astype({"at": object})).to_csv(path, index=False)
    with pytest.raises(WorkloadError, match=message) as err:
        read_trace(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_trace_files_need_a_known_suffix(tmp_path, trace):
    with pytest.raises(WorkloadError, match=r"suffix '\.json'") as err:
        read_trace(tmp_path / "t.json")
    assert "\n" not in str(err.value)
    with pytest.raises(WorkloadError, match=r"suffix '\.txt'"):
        write_trace(trace, tmp_path / "t.txt")
    with pytest.raises(WorkloadError, match="cannot read") as err:
        read_trace(tmp_path / "absent.csv")
    assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- determinism


def test_same_config_same_workload_byte_for_byte(tmp_path):
    cfg = WorkloadConfig(helpers(3), synthetic_catalogue(30, 2), arrival_rate=0.03, seed=5)
    a, b = generate(cfg), generate(cfg)
    assert a == b and a.sessions
    write_trace(a.trace(), tmp_path / "a.csv")
    write_trace(b.trace(), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    other = generate(WorkloadConfig(helpers(3), cfg.videos, arrival_rate=0.03, seed=6))
    assert [s.arrive_at for s in other.sessions] != [s.arrive_at for s in a.sessions]
    assert synthetic_catalogue(30, 2) == cfg.videos != synthetic_catalogue(30, 3)


def test_adding_a_region_leaves_the_others_alone():
    small = WorkloadConfig(helpers(3), SHORT, arrival_rate=0.05, regional_skew=0.5)
    big = WorkloadConfig(helpers(4), SHORT, arrival_rate=0.05, regional_skew=0.5)
    kept = [s for s in generate(big).sessions if s.helper != "h03"]
    assert kept == list(generate(small).sessions)


def test_trace_is_built_once(base):
    a = base.trace()
    a.loc[0, "at"] = -5.0
    assert base.trace()["at"].iloc[0] >= 0


# ---------------------------------------------------------------------- replay


def final_playhead(s, cfg):
    p = player_for(s, cfg)
    events = drive(p)
    return events[-1].kind, events[-1].fields["playhead_s"]


def test_sessions_from_a_full_trace_give_back_the_sessions(base, trace):
    cfg = base.config
    rebuilt = sessions_from_trace(trace, cfg.segment_s, durations(cfg), live_ids=["live-00"])
    assert [s.id for s in rebuilt] == [s.id for s in base.sessions]
    for old, new in zip(base.sessions, rebuilt):
        assert (new.video, new.helper, new.live) == (old.video, old.helper, old.live)
        assert new.arrive_at == pytest.approx(old.arrive_at, abs=1e-6)
        assert new.abandoned_at_startup == old.abandoned_at_startup
        if old.abandoned_at_startup:
            assert new.patience_s == pytest.approx(old.patience_s, abs=2e-6)
            continue
        assert new.startup_s == pytest.approx(old.startup_s, abs=2e-6)
        assert new.plan.start_index == old.plan.start_index
        assert len(new.plan.actions) == len(old.plan.actions)
        for a, b in zip(new.plan.actions, old.plan.actions):
            assert a[1] == b[1] and a[0] == pytest.approx(b[0], abs=1e-5)
            assert a[2] == pytest.approx(b[2], abs=1e-5)
        assert new.watch_fraction == pytest.approx(old.watch_fraction, abs=1e-6)
    again = trace_frame(rebuilt, cfg)
    started = {s.id for s in base.sessions if not s.abandoned_at_startup}
    mine = trace[trace.viewer.isin(started)].reset_index(drop=True)
    theirs = again[again.viewer.isin(started)].reset_index(drop=True)
    assert list(mine.kind) == list(theirs.kind)
    assert np.allclose(mine.playhead_s, theirs.playhead_s)


def test_sessions_from_requests_alone(base, trace):
    cfg = base.config
    only = trace[trace.kind == "request"]
    rebuilt = {s.id: s for s in sessions_from_trace(only, SEG, durations(cfg),
                                                    lookahead_s=cfg.max_buffer_s)}
    first = only.groupby("viewer")["at"].min()
    checked = 0
    for s in base.sessions:
        if s.abandoned_at_startup or s.live:
            continue
        new = rebuilt[s.id]
        assert new.video == s.video and new.arrive_at == first[s.id]
        assert new.arrive_at == pytest.approx(s.arrive_at, abs=1e-6)
        kind, true_end = final_playhead(s, cfg)
        new_kind, new_end = final_playhead(new, cfg)
        dur = durations(cfg)[s.video]
        if new_kind == "complete":
            assert true_end >= dur - cfg.max_buffer_s - SEG
        else:
            assert true_end - 1e-6 <= new_end < true_end + SEG
        checked += 1
        if checked >= 250:
            break
    assert checked >= 250
    jumps = sessions_from_trace(pd.DataFrame({
        "at": [0.0, 0.5, 1.0, 5.0, 5.5, 9.0], "helper": "h", "viewer": "s1", "video": "vod-x",
        "kind": "request", "playhead_s": 0.0, "index": [0, 1, 2, 30, 31, 32]}),
        SEG, {"vod-x": 100.0})
    assert jumps[0].plan.actions == ((5.0, "seek", 60.0), (66.0, "stop", 0.0))
    whole = sessions_from_trace(pd.DataFrame({
        "at": [0.0, 1.0, 2.0], "helper": "h", "viewer": "s1", "video": "vod-x",
        "kind": "request", "playhead_s": 0.0, "index": [0, 1, 2]}), SEG, {"vod-x": 6.0})
    assert whole[0].plan.actions == () and whole[0].watch_fraction == 1.0


def test_sessions_from_trace_needs_every_duration(trace):
    with pytest.raises(WorkloadError, match="no duration for video"):
        sessions_from_trace(trace.head(30), SEG, {})


def test_no_arrivals_give_an_empty_trace():
    w = generate(WorkloadConfig(("h",), SHORT, arrival_rate=0.0))
    df = w.trace()
    assert w.sessions == () and df.empty and tuple(df.columns) == TRACE_COLUMNS
    assert str(df["index"].dtype) == "int64" and str(df["at"].dtype) == "float64"
    assert sessions_from_trace(df, SEG, {}) == []


# ---------------------------------------------------------------------- config


def test_config_from_plain_values():
    cfg = WorkloadConfig.from_mapping({
        "helpers": ["a", "b"], "videos": [["vod-0000", 60], ["vod-0001", 90.5]],
        "shifts": [{"at_s": 10, "video": "vod-0001", "share": 0.2}, [20, "vod-0000", 0.1]],
        "live": [["live-00", 600]], "live_share": 0.5, "seed": 3})
    assert cfg.helpers == ("a", "b")
    assert cfg.videos == (("vod-0000", 60.0), ("vod-0001", 90.5))
    assert cfg.shifts == (PopularityShift(10, "vod-0001", 0.2), PopularityShift(20, "vod-0000",
                                                                                 0.1))
    assert cfg == WorkloadConfig(("a", "b"), cfg.videos, shifts=cfg.shifts,
                                 live=(("live-00", 600.0),), live_share=0.5, seed=3)
    hash(cfg)


@pytest.mark.parametrize("change, message", [
    ({"zipf": 1.0}, "unknown key 'zipf'"),
    ({"helpers": []}, "helpers must not be empty"),
    ({"helpers": ["a", "a"]}, "'a' appears twice"),
    ({"videos": [["vod-0000", 0]]}, "duration of 'vod-0000' must be > 0"),
    ({"segment_s": 0}, "segment_s must be > 0"),
    ({"arrival_rate": -1}, "arrival_rate must be >= 0"),
    ({"regional_skew": 1.5}, "regional_skew must be <= 1"),
    ({"peak_hour": 24}, "peak_hour must be < 24"),
    ({"early_stop_share": 1.0}, "early_stop_share must be < 1"),
    ({"complete_share": True}, "complete_share must be a finite number"),
    ({"seed": -1}, "seed must be an int >= 0"),
    ({"live_share": 0.2}, "live is empty"),
    ({"shifts": [[0, "vod-9999", 0.5]]}, "shift video 'vod-9999' is not in videos"),
    ({"shifts": [[0, "vod-0000", 0.7], [0, "vod-0000", 0.6]]}, "shares add up to"),
    ({"shifts": [{"at": 0}]}, "unknown key 'at'"),
    ({"live": [["vod-0000", 60]]}, "'vod-0000' is also in videos"),
])
def test_bad_config_is_refused_naming_the_field(change, message):
    d = {"helpers": ["a"], "videos": [["vod-0000", 60.0]], **change}
    with pytest.raises(WorkloadError, match=message) as err:
        WorkloadConfig.from_mapping(d)
    assert "\n" not in str(err.value)
    with pytest.raises(WorkloadError, match="missing key 'videos'"):
        WorkloadConfig.from_mapping({"helpers": ["a"]})


def test_synthetic_catalogue_ids_and_bounds():
    cat = synthetic_catalogue(500, 7, min_s=40.0, max_s=900.0)
    assert [v for v, _ in cat[:3]] == ["vod-0000", "vod-0001", "vod-0002"]
    durs = np.array([d for _, d in cat])
    assert durs.min() >= 40.0 and durs.max() <= 900.0
    assert np.median(durs) == pytest.approx(240.0, rel=0.15)


def test_measurements_ignore_what_they_should():
    plan = SessionPlan("vod-0000", 0.0)

    def mk(f, live=False, gone=False, d=1.0):
        return Session("s1", "h", "vod-0000", 0.0, d, 3.0, f, gone, plan, live)

    sessions = [mk(0.1), mk(0.5), mk(0.05, live=True), mk(0.05, gone=True, d=5.0)]
    assert early_stop_share(sessions) == 0.5
    assert math.isnan(early_stop_share([]))
    table = abandonment_by_delay(sessions, [0, 2, 10])
    assert list(table.sessions) == [3, 1] and list(table.abandoned) == [0, 1]
    with pytest.raises(WorkloadError, match="increasing"):
        abandonment_by_delay(sessions, [2, 1])


def test_fifty_helpers_two_hundred_videos_one_hour():
    cfg = WorkloadConfig(helpers(50), synthetic_catalogue(200, 0))
    w = generate(cfg)
    assert len(w.sessions) == pytest.approx(50 * 0.02 * 3600, rel=0.1)
    assert len(w.trace()) > 20 * len(w.sessions)


# ---------------------------------------------------------------------- flash crowds

LIVE = (("live-00", 7200.0),)


def crowd_config(*crowds, **kw):
    args = {"arrival_rate": 0.02, "duration_s": 600.0, "live": LIVE, "live_share": 0.1, **kw}
    return WorkloadConfig(helpers(4), SHORT, flash_crowds=crowds, **args)


def crowd_part(cfg):
    """The sessions ``cfg`` draws beyond those it draws without its flash crowds."""
    steady = {s.id for s in generate(dataclasses.replace(cfg, flash_crowds=())).sessions}
    return [s for s in generate(cfg).sessions if s.id not in steady]


def test_crowd_arrivals_fall_in_their_window_and_watch_the_video():
    cfg = crowd_config(FlashCrowd(200.0, 60.0, 0.5, "vod-0019"))
    extra = crowd_part(cfg)
    assert len(extra) > 50
    assert all(200.0 <= s.arrive_at < 260.0 for s in extra)
    assert {s.video for s in extra} == {"vod-0019"} and not any(s.live for s in extra)
    assert {s.helper for s in extra} == set(cfg.helpers)
    assert all(s.plan.start_index == 0 and 0.0 <= s.watch_fraction <= 1.0 for s in extra)
    assert any(s.plan.actions for s in extra)                 # usual pauses and seeks
    assert any(s.abandoned_at_startup for s in crowd_part(crowd_config(
        FlashCrowd(0.0, 600.0, 0.5, "vod-0000"), startup_median_s=4.0)))   # and patience
    ids = [s.id for s in generate(cfg).sessions]
    assert len(set(ids)) == len(ids)


def test_crowd_size_follows_rate_times_duration_times_regions():
    expected = 0.5 * 100.0 * 4                 # 200 arrivals per seed, sd about 14
    counts = []
    for seed in range(10):
        extra = crowd_part(crowd_config(FlashCrowd(100.0, 100.0, 0.5, "vod-0003"), seed=seed,
                                        arrival_rate=0.0))
        counts.append(len(extra))
        assert abs(len(extra) - expected) < 4 * math.sqrt(expected)
    total = 10 * expected
    assert abs(sum(counts) - total) < 3 * math.sqrt(total)
    assert len(set(counts)) > 1                 # a draw per seed, not a constant


def test_ramp_builds_the_crowd_up():
    ramp = FlashCrowd(0.0, 200.0, 2.0, "vod-0005", ramp_s=100.0)
    at = np.array([s.arrive_at for s in crowd_part(crowd_config(ramp, arrival_rate=0.0))])
    first, second = np.sum(at < 50.0), np.sum((at >= 50.0) & (at < 100.0))
    plateau = np.sum(at >= 100.0)
    assert first < second                       # expected 100 and 300 over four regions
    assert first / second == pytest.approx(1 / 3, abs=0.12)
    assert plateau == pytest.approx(2.0 * 100.0 * 4, rel=0.15)
    assert len(at) == pytest.approx(2.0 * (200.0 - 100.0 / 2) * 4, rel=0.1)


def test_adding_a_crowd_leaves_the_steady_sessions_and_other_crowds_alone():
    one = FlashCrowd(100.0, 60.0, 0.3, "vod-0001")
    two = FlashCrowd(150.0, 60.0, 0.3, "live-00")
    plain = generate(crowd_config()).sessions
    first = generate(crowd_config(one)).sessions
    both = generate(crowd_config(one, two)).sessions
    assert [s for s in first if s.id in {p.id for p in plain}] == list(plain)
    assert [s for s in both if s.id in {f.id for f in first}] == list(first)
    assert len(both) > len(first) > len(plain)
    assert generate(crowd_config(one, two)) == generate(crowd_config(one, two))


def test_crowd_regions_limit_where_it_arrives():
    everywhere = crowd_part(crowd_config(FlashCrowd(50.0, 100.0, 0.4, "vod-0002")))
    some = crowd_part(crowd_config(FlashCrowd(50.0, 100.0, 0.4, "vod-0002",
                                              regions=("h01", "h03"))))
    assert some and {s.helper for s in some} == {"h01", "h03"}
    assert some == [s for s in everywhere if s.helper in ("h01", "h03")]


def test_live_crowd_joins_at_the_live_edge():
    cfg = crowd_config(FlashCrowd(300.0, 100.0, 0.3, "live-00", ramp_s=20.0))
    extra = crowd_part(cfg)
    assert extra and all(s.live and s.video == "live-00" for s in extra)
    df = trace_frame(extra, cfg)
    for s in extra:
        assert s.plan.start_index == math.floor(s.arrive_at / SEG) - 1
        assert all(kind != "seek" for _, kind, _ in s.plan.actions)
        req = df[(df.viewer == s.id) & (df.kind == "request")]
        assert req["index"].iloc[0] == s.plan.start_index
        assert (req["at"] >= (req["index"] + 1) * SEG - 1e-6).all()


def test_crowd_stops_at_the_end_of_the_trace():
    extra = crowd_part(crowd_config(FlashCrowd(550.0, 100.0, 0.5, "vod-0004")))
    assert extra and all(550.0 <= s.arrive_at < 600.0 for s in extra)
    assert crowd_part(crowd_config(FlashCrowd(700.0, 100.0, 0.5, "vod-0004"))) == []


def test_crowd_sessions_go_through_traces(tmp_path):
    cfg = crowd_config(FlashCrowd(100.0, 50.0, 0.3, "vod-0007"),
                       FlashCrowd(120.0, 50.0, 0.3, "live-00"), arrival_rate=0.005)
    w = generate(cfg)
    df = w.trace()
    write_trace(df, tmp_path / "t.csv")
    back = read_trace(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(back, df)
    extra = {s.id for s in crowd_part(cfg)}
    assert extra <= set(back.viewer)
    rebuilt = {s.id: s for s in sessions_from_trace(back, SEG, durations(cfg),
                                                    live_ids=["live-00"])}
    for s in w.sessions:
        if s.id not in extra:
            continue
        new = rebuilt[s.id]
        assert (new.video, new.helper, new.live, new.plan.start_index) == (
            s.video, s.helper, s.live, s.plan.start_index)
        assert new.arrive_at == pytest.approx(s.arrive_at, abs=1e-6)


def test_rebased_crowd_moves_and_cuts_what_falls_before_zero():
    c = FlashCrowd(40.0, 30.0, 0.15, "vod-0039", regions=("h1",), ramp_s=10.0)
    assert c.rebased(6.0) == FlashCrowd(34.0, 30.0, 0.15, "vod-0039", ("h1",), 10.0)
    early = FlashCrowd(2.0, 30.0, 0.1, "live-00", ramp_s=10.0)
    assert early.rebased(6.0) == FlashCrowd(0.0, 26.0, 0.1, "live-00", None, 6.0)
    assert FlashCrowd(2.0, 3.0, 0.1, "live-00", ramp_s=3.0).rebased(6.0) is None
    assert FlashCrowd(0.0, 6.0, 0.1, "live-00").rebased(6.0) is None


def test_crowds_from_plain_values():
    cfg = WorkloadConfig.from_mapping({
        "helpers": ["a", "b"], "videos": [["vod-0000", 60]], "live": [["live-00", 600]],
        "flash_crowds": [{"at_s": 10, "duration_s": 20, "rate": 0.5, "video": "live-00",
                          "regions": ["b"], "ramp_s": 5},
                         FlashCrowd(0, 5, 1, "vod-0000")]})
    assert cfg.flash_crowds == (FlashCrowd(10, 20, 0.5, "live-00", ("b",), 5),
                                FlashCrowd(0, 5, 1, "vod-0000"))
    hash(cfg)


@pytest.mark.parametrize("crowd, message", [
    ({"at_s": 0, "duration_s": 10, "rate": 1, "video": "vod-9999"},
     r"flash_crowds\[0\] video 'vod-9999' is not in videos or live"),
    ({"at_s": 0, "duration_s": 10, "rate": 1, "video": "vod-0000", "regions": ["z"]},
     r"flash_crowds\[0\] region 'z' is not in helpers"),
    ({"at_s": 0, "duration_s": 10, "rate": 1, "video": "vod-0000", "regions": []},
     "flash crowd regions must not be empty"),
    ({"at_s": 0, "duration_s": 10, "rate": 1, "video": "vod-0000", "regions": ["a", "a"]},
     "flash crowd regions: 'a' appears twice"),
    ({"at_s": 0, "duration_s": 10, "rate": 1, "video": "vod-0000", "regions": "a"},
     "flash crowd regions must be a list, got 'a'"),
    ({"at_s": -1, "duration_s": 10, "rate": 1, "video": "vod-0000"},
     "flash crowd at_s must be >= 0.0, got -1"),
    ({"at_s": 0, "duration_s": 0, "rate": 1, "video": "vod-0000"},
     "flash crowd duration_s must be > 0.0, got 0"),
    ({"at_s": 0, "duration_s": 10, "rate": -0.1, "video": "vod-0000"},
     "flash crowd rate must be >= 0.0, got -0.1"),
    ({"at_s": 0, "duration_s": 10, "rate": "lots", "video": "vod-0000"},
     "flash crowd rate must be a finite number, got 'lots'"),
    ({"at_s": 0, "duration_s": 10, "rate": 1, "video": "vod-0000", "ramp_s": 11},
     "flash crowd ramp_s must be <= duration_s 10.0, got 11"),
    ({"at_s": 0, "duration_s": 10, "rate": 1, "video": ""},
     "flash crowd video must be non-empty text"),
    ({"at_s": 0, "duration_s": 10, "rate": 1, "video": "vod-0000", "peak": 2},
     "flash crowd: unknown key 'peak'"),
    ({"at_s": 0, "duration_s": 10, "video": "vod-0000"}, "flash crowd: missing key 'rate'"),
    ([0, 10, 1, "vod-0000"], "flash crowd must be a mapping"),
])
def test_bad_crowd_is_refused_naming_the_field(crowd, message):
    d = {"helpers": ["a"], "videos": [["vod-0000", 60.0]], "flash_crowds": [crowd]}
    with pytest.raises(WorkloadError, match=message) as err:
        WorkloadConfig.from_mapping(d)
    assert "\n" not in str(err.value)
    with pytest.raises(WorkloadError, match=r"flash_crowds\[0\] must be a FlashCrowd"):
        WorkloadConfig(("a",), SHORT, flash_crowds=({"at_s": 0},))


def test_the_same_seed_draws_the_very_same_sessions_and_trace():
    """Pinned digests of one config touching every part of the draw (live channels, a
    shift, flash crowds with and without regions and a ramp, pauses and seeks, a daily
    cycle): a faster generator or trace must not change a single value."""
    import hashlib

    cfg = WorkloadConfig(
        helpers=tuple(f"h{i}" for i in range(1, 7)), videos=synthetic_catalogue(40, 5),
        duration_s=900.0, seed=11, arrival_rate=0.04, daily_amplitude=0.5, start_hour=19.0,
        live=(("live-0", 3600.0), ("live-1", 1800.0)), live_share=0.2,
        shifts=(PopularityShift(300.0, "vod-0007", 0.3),),
        flash_crowds=(FlashCrowd(200.0, 300.0, 0.05, "vod-0003", ("h2", "h5"), 60.0),
                      FlashCrowd(100.0, 200.0, 0.03, "live-1")),
        pause_rate_per_min=2.0, seek_rate_per_min=1.5)
    w = generate(cfg)
    kinds = Counter(a[1] for s in w.sessions for a in s.plan.actions)
    assert len(w.sessions) == 398 and sum(s.live for s in w.sessions) == 92
    assert sum("f" in s.id for s in w.sessions) == 58 and min(kinds.values()) > 300
    digest = hashlib.sha256("\n".join(map(repr, w.sessions)).encode()).hexdigest()
    assert digest == "dc5b8acfdfd2afba2d148cd375f342a75caf2c2ea34422a85eaf6b97fa1558ca"
    trace = w.trace()
    assert len(trace) == 22089
    digest = hashlib.sha256(trace.to_csv(index=False).encode()).hexdigest()
    assert digest == "032d04c543240a53bc28d124bad521e32e99d1e09032b79f9f711bb8050afe65"
    assert list(trace.dtypes.astype(str)) == ["float64", "object", "object", "object",
                                              "object", "float64", "int64"]
