"""A viewer host's sessions, driven with a fake clock and a fake helper."""

from __future__ import annotations

import heapq
import itertools

from testbed.core.content import CatalogueConfig, build_catalogue, build_manifest, segment_bytes
from testbed.core.node import viewer as V
from testbed.core.node.effects import Record, SetTimer, Timer
from testbed.core.player import SessionPlan

SEED = 3
CAT = build_catalogue(CatalogueConfig(videos=2, live_channels=0, duration_s=10.0))
VOD = "vod-0000"
HELPER = "http://10.0.1.1:8080"


def seg(index: int, version: int = 1, video: str = VOD) -> bytes:
    return segment_bytes(SEED, CAT[video], index, version)


class Loop:
    """Fake clock and helper: a segment answers after ``latency`` s; ``fail`` says how
    many times each index fails first; ``version`` what the helper serves."""

    def __init__(self, chains, latency=0.05, fail=None, manifest_fails=0, version=1,
                 patience=None):
        self.logic = V.ViewerHostLogic(V.ViewerSettings(CAT, 0.0, 2.0, 6.0), chains)
        self.latency = latency
        self.fail = dict(fail or {})
        self.manifest_fails = manifest_fails
        self.version = version
        self.now = 0.0
        self.queue: list = []
        self.seq = itertools.count()
        self.records: list[Record] = []
        self.gets: list[V.GetSegment] = []
        self.manifest_gets = 0
        self.manifest_askers: list[str] = []
        self.telemetry: list[dict] = []
        self.timers: dict[str, int] = {}
        self.apply(self.logic.start(0.0))

    def at(self, t, ev, name=None):
        seq = next(self.seq)
        if name is not None:
            self.timers[name] = seq      # a newer timer of the same name replaces it
        heapq.heappush(self.queue, (t, seq, name, ev))

    def apply(self, effects):
        for e in effects:
            if isinstance(e, Record):
                self.records.append(e)
            elif isinstance(e, SetTimer):
                self.at(e.at, Timer(e.name, e.token), e.name)
            elif isinstance(e, V.GetManifest):
                self.manifest_gets += 1
                self.manifest_askers.append(e.viewer)
                if self.manifest_fails > 0:
                    self.manifest_fails -= 1
                    self.at(self.now + self.latency, V.ManifestResult(e.ref, error="HTTP 504"))
                else:
                    m = build_manifest(SEED, CAT[e.video], self.version)
                    token = f"token-{e.viewer}-{e.video}" if e.viewer else ""
                    self.at(self.now + self.latency, V.ManifestResult(e.ref, m, token=token))
            elif isinstance(e, V.GetSegment):
                self.gets.append(e)
                if self.fail.get(e.index, 0) > 0:
                    self.fail[e.index] -= 1
                    ev = V.SegmentResult(e.ref, 504, error="HTTP 504")
                else:
                    ev = V.SegmentResult(e.ref, 200, seg(e.index, self.version, e.video),
                                         self.version, "cache_prefetch")
                self.at(self.now + self.latency, ev)
            elif isinstance(e, V.PostTelemetry):
                self.telemetry.append(e.batch)

    def run(self, until):
        while self.queue and self.queue[0][0] <= until:
            t, seq, name, ev = heapq.heappop(self.queue)
            if name is not None and self.timers.get(name) != seq:
                continue
            self.now = t
            self.apply(self.logic.handle(ev, t))
        self.now = until

    def kinds(self, kind):
        return [r.fields for r in self.records if r.kind == kind]


def session(start=1.0, viewer="p1", video=VOD, patience=None, actions=()):
    return V.PlannedSession(viewer, HELPER, SessionPlan(video, start, 0, tuple(actions)),
                            patience)


def test_a_session_plays_to_the_end_checking_every_segment():
    loop = Loop([[session()]])
    loop.run(30.0)
    (qoe,) = loop.kinds("qoe")
    assert qoe["completed"] and qoe["ended"] and qoe["digest_failures"] == 0
    n = CAT[VOD].n_segments
    assert sorted(g.index for g in loop.gets) == list(range(n))   # each segment once
    assert qoe["requests"] == qoe["answered"] == n
    assert qoe["bytes_by_source"] == {"cache_prefetch": sum(len(seg(i)) for i in range(n))}
    assert all(r["digest_ok"] for r in loop.kinds("request"))
    assert loop.manifest_gets == 1 and loop.manifest_askers == ["p1"]
    # the session's telemetry goes under the token its manifest came with
    assert {(b["viewer"], b["video"], b["token"]) for b in loop.telemetry} == {
        ("p1", VOD, f"token-p1-{VOD}")}
    kinds = [e["kind"] for b in loop.telemetry for e in b["events"]]
    assert kinds[0] == "start" and kinds[-1] == "complete"
    assert qoe["startup_s"] is not None and qoe["startup_s"] < 0.5


def test_at_most_two_requests_in_flight():
    loop = Loop([[session()]], latency=0.5)
    loop.run(1.8)                   # the manifest came at 1.5, no segment yet
    assert len(loop.gets) == 2


def test_a_failing_request_is_retried_then_given_up():
    loop = Loop([[session()]], fail={0: 2, 1: V.RETRIES})
    loop.run(40.0)
    retries = loop.kinds("request_retry")
    assert [r["attempt"] for r in retries if r["index"] == 0] == [0, 1]
    assert [r["attempt"] for r in retries if r["index"] == 1] == [0, 1, 2, 3]
    assert [r["index"] for r in loop.kinds("request_failed")] == [1]
    assert [r["index"] for r in loop.kinds("request")].count(0) == 1
    # the player asks for the segment it lost again, and gets it
    assert [r["index"] for r in loop.kinds("request")].count(1) == 1
    assert loop.kinds("qoe")[0]["completed"]


def test_no_manifest_is_recorded_as_a_session_that_never_started():
    loop = Loop([[session()]], manifest_fails=10)
    loop.run(20.0)
    assert loop.manifest_gets == V.RETRIES
    (qoe,) = loop.kinds("qoe")
    assert qoe["error"] == "no manifest" and qoe["abandoned_at_start"]
    assert len(loop.kinds("manifest_error")) == V.RETRIES
    assert loop.gets == []


def test_a_bad_digest_is_counted_and_played_as_a_failure():
    loop = Loop([[session()]])
    real = loop.apply

    def corrupt(effects):
        for e in effects:
            if isinstance(e, V.GetSegment) and e.index == 2 and not any(
                    g.index == 2 for g in loop.gets):
                loop.gets.append(e)
                loop.at(loop.now + 0.05, V.SegmentResult(e.ref, 200, b"x" * 100, 1, "tree"))
            else:
                real([e])

    loop.apply = corrupt
    loop.run(30.0)
    (qoe,) = loop.kinds("qoe")
    assert qoe["digest_failures"] == 1
    # the player asked for it again and played on
    assert [r["digest_ok"] for r in loop.kinds("request") if r["index"] == 2] == [False, True]
    assert qoe["completed"]


def test_a_newer_version_is_checked_against_its_own_manifest():
    loop = Loop([[session()]])
    loop.run(1.12)                  # two segments of version 1 are in
    loop.version = 2                # the master republished
    loop.run(30.0)
    assert loop.manifest_gets == 2
    assert all(r["digest_ok"] for r in loop.kinds("request"))
    assert {r["version"] for r in loop.kinds("request")} == {1, 2}


def test_patience_runs_out_when_the_first_frame_never_comes():
    loop = Loop([[session(patience=3.0)]], fail={0: 1000})
    loop.run(10.0)
    (qoe,) = loop.kinds("qoe")
    assert qoe["abandoned_at_start"] and not qoe["completed"]


def test_a_players_sessions_play_one_after_the_other():
    loop = Loop([[session(start=1.0), session(start=2.0, video="vod-0001")]])
    loop.run(60.0)
    q1, q2 = loop.kinds("qoe")
    assert q1["video"] == VOD and q2["video"] == "vod-0001"
    assert q2["asked_at"] >= 1.0 + CAT[VOD].duration_s   # after the first one ended


def test_every_session_asks_for_its_manifest_and_falls_back_to_a_known_one():
    loop = Loop([[session(start=1.0)], [session(start=2.0, viewer="p2")]])
    loop.run(3.0)
    assert loop.manifest_askers == ["p1", "p2"]      # the host knew it: asked anyway
    assert {b["token"] for b in loop.telemetry} == {f"token-p1-{VOD}", f"token-p2-{VOD}"}
    # a later session whose helper cannot answer plays from the manifest the host knows
    late = Loop([[session(start=1.0)], [session(start=40.0, viewer="p3")]])
    late.run(30.0)
    late.manifest_fails = 10
    late.run(120.0)
    q1, q3 = late.kinds("qoe")
    assert q3["viewer"] == "p3" and q3["completed"] and q3["digest_failures"] == 0
    assert late.manifest_askers.count("p3") == V.RETRIES
    assert all(b["token"] == "" for b in late.telemetry if b["viewer"] == "p3")


def test_stop_records_the_sessions_still_playing():
    loop = Loop([[session()]], latency=0.5)
    loop.run(1.8)
    loop.records += [r for r in loop.logic.stop(3.0)]
    (qoe,) = loop.kinds("qoe")
    assert not qoe["ended"] and qoe["cut_at_stop"] >= 1


# -- failover -----------------------------------------------------------------------------------
NEAR, MASTER = "http://10.0.1.2:8080", "http://10.0.0.1:8080"


class DeadLoop(Loop):
    """A fake network where the servers in ``dead`` refuse every connection."""

    def __init__(self, chains, dead, **kw):
        self.dead = set(dead)
        self.asked: list[str] = []
        self.telemetry_to: list[str] = []
        super().__init__(chains, **kw)

    def apply(self, effects):
        live = []
        for e in effects:
            url = getattr(e, "helper", None)
            if isinstance(e, (V.GetSegment, V.GetManifest)):
                self.asked.append(url)
                if url in self.dead:
                    cls = V.SegmentResult if isinstance(e, V.GetSegment) else V.ManifestResult
                    self.at(self.now + 0.01, cls(e.ref, error="Connection refused"))
                    continue
            if isinstance(e, V.PostTelemetry):
                self.telemetry_to.append(e.helper)
            live.append(e)
        super().apply(live)


def failing_over(start=1.0, viewer="p1"):
    return V.PlannedSession(viewer, HELPER, SessionPlan(VOD, start, 0, ()), None,
                            fallbacks=(NEAR, MASTER), master=MASTER)


def test_a_session_whose_helper_is_dead_fails_over_to_the_nearest_live_one():
    loop = DeadLoop([[failing_over()]], dead={HELPER})
    loop.run(30.0)
    (qoe,) = loop.kinds("qoe")
    assert qoe["completed"] and qoe["failovers"] == 1 and not loop.kinds("request_failed")
    (moved,) = loop.kinds("failover")
    assert (moved["from"], moved["to"]) == (HELPER, NEAR)
    assert loop.asked.count(HELPER) == 1          # asked once, never again
    assert {r["server"] for r in loop.kinds("request")} == {1}
    # the session's telemetry follows it to the helper that serves it
    assert loop.telemetry and all(b["token"] for b in loop.telemetry)


def test_with_every_helper_dead_the_master_serves_and_takes_no_telemetry():
    loop = DeadLoop([[failing_over()]], dead={HELPER, NEAR})
    loop.run(30.0)
    (qoe,) = loop.kinds("qoe")
    assert qoe["completed"] and qoe["failovers"] == 2
    assert {r["server"] for r in loop.kinds("request")} == {2}
    assert [(m["from"], m["to"]) for m in loop.kinds("failover")] == [(HELPER, NEAR),
                                                                     (NEAR, MASTER)]
    assert loop.telemetry and MASTER not in loop.telemetry_to


def test_a_server_that_failed_is_skipped_by_the_host_s_next_sessions():
    loop = DeadLoop([[failing_over(1.0, "p1")], [failing_over(3.0, "p2")]], dead={HELPER})
    loop.run(30.0)
    # p1 found the helper dead; p2, starting 2 s later, went to the next one at once
    assert loop.asked.count(HELPER) == 1
    assert [m["player"] for m in loop.kinds("failover")] == ["p1", "p2"]
    assert all(q["completed"] for q in loop.kinds("qoe"))


def test_a_session_without_fallbacks_does_not_move():
    loop = DeadLoop([[session()]], dead={HELPER})
    loop.run(30.0)
    assert not loop.kinds("failover") and set(loop.asked) == {HELPER}


def test_a_helper_that_answers_an_error_is_left_but_not_marked_down():
    # a 504: the helper is up, its way up the tree is not; the session asks elsewhere,
    # the host's next session still starts at that helper
    loop = Loop([[failing_over(1.0, "p1")], [failing_over(3.0, "p2")]], fail={0: 1})
    loop.run(30.0)
    (moved,) = loop.kinds("failover")
    assert moved["player"] == "p1" and moved["to"] == NEAR and not loop.logic.down
    assert all(q["completed"] for q in loop.kinds("qoe"))


# -- hedge --------------------------------------------------------------------------------------
class SlowLoop(Loop):
    """Servers answer after ``lat[url]`` s (``latency`` for the others); one in ``silent``
    gives no answer until the read timeout, ``timeout`` s, and then an error."""

    def __init__(self, chains, lat=None, silent=(), timeout=3.0, refuse=(), **kw):
        self.lat = dict(lat or {})
        self.silent = set(silent)
        self.refuse = set(refuse)
        self.timeout = timeout
        self.asked: list[tuple[float, str, int]] = []
        super().__init__(chains, **kw)

    def apply(self, effects):
        for e in effects:
            if isinstance(e, V.GetSegment):
                self.asked.append((self.now, e.helper, e.index))
                if e.helper in self.silent:
                    self.at(self.now + self.timeout, V.SegmentResult(e.ref, error="Timeout"))
                    continue
                if e.helper in self.refuse:
                    self.at(self.now + 0.01, V.SegmentResult(e.ref, error="Connection refused"))
                    continue
                saved, self.latency = self.latency, self.lat.get(e.helper, self.latency)
                super().apply([e])
                self.latency = saved
            else:
                super().apply([e])


def test_a_segment_playback_waits_on_is_asked_of_the_next_server_after_a_second():
    loop = SlowLoop([[failing_over()]], lat={HELPER: 2.5})
    loop.run(40.0)
    (qoe,) = loop.kinds("qoe")
    assert qoe["completed"] and qoe["failovers"] == 0 and not loop.kinds("failover")
    hedges = loop.kinds("viewer_hedge")
    assert hedges and {h["to"] for h in hedges} == {NEAR}
    assert {h["outcome"] for h in hedges} == {"asked"}
    # asked of the helper first, of the next server one second later (not before)
    first = {}
    for t, url, i in loop.asked:
        first.setdefault((url, i), t)
    for h in hedges:
        i = h["index"]
        assert first[(NEAR, i)] - first[(HELPER, i)] >= V.HEDGE_S - 1e-9
    # the hedge's answer was played, the helper's late one dropped (each segment once)
    won = [r for r in loop.kinds("request") if r["hedge"]]
    assert won and {r["server"] for r in won} == {1}
    assert sorted(r["index"] for r in loop.kinds("request")) == list(range(CAT[VOD].n_segments))
    assert qoe["requests"] == qoe["answered"] == CAT[VOD].n_segments


def test_a_hedge_shortens_the_stall_behind_a_slow_helper():
    def stalled(loop):
        return sum(q["stall_s"] for q in loop.kinds("qoe"))

    plain = SlowLoop([[session()]], lat={HELPER: 5.0})
    plain.run(60.0)
    hedged = SlowLoop([[failing_over()]], lat={HELPER: 5.0})
    hedged.run(60.0)
    assert stalled(hedged) < stalled(plain)
    assert hedged.kinds("qoe")[0]["startup_s"] < plain.kinds("qoe")[0]["startup_s"] - 0.5


def test_no_hedge_while_the_buffer_holds():
    # 1.5 s answers: only start-up waits on them; once playing, two in flight keep the
    # buffer above the mark and nothing more is asked twice
    loop = SlowLoop([[failing_over()]], lat={HELPER: 1.5})
    loop.run(40.0)
    hedged = [h["index"] for h in loop.kinds("viewer_hedge")]
    assert hedged and max(hedged) <= 1
    assert len(loop.asked) == CAT[VOD].n_segments + len(hedged)


def test_a_hedge_that_fails_leaves_the_session_and_the_next_server_is_tried():
    loop = SlowLoop([[failing_over()]], lat={HELPER: 1.8}, refuse={NEAR})
    loop.run(40.0)
    (qoe,) = loop.kinds("qoe")
    assert qoe["completed"] and qoe["failovers"] == 0
    assert set(loop.logic.down) == {NEAR}        # the server it could not reach is skipped
    hedges = loop.kinds("viewer_hedge")
    assert hedges[:2] == [{"player": "p1", "video": VOD, "index": 0, "to": NEAR,
                           "outcome": "asked"},
                          {"player": "p1", "video": VOD, "index": 0, "to": NEAR,
                           "outcome": "failed"}]
    # the helper answers at 1.8 s, before a second hedge was due (1 s after the first)
    assert {h["to"] for h in hedges} == {NEAR}
    assert {r["server"] for r in loop.kinds("request")} == {0}


def test_each_other_server_is_hedged_once_a_second_until_one_answers():
    loop = SlowLoop([[failing_over()]], lat={HELPER: 3.5}, refuse={NEAR})
    loop.run(40.0)
    (qoe,) = loop.kinds("qoe")
    assert qoe["completed"] and qoe["failovers"] == 0
    first = [(h["to"], h["outcome"]) for h in loop.kinds("viewer_hedge") if h["index"] == 0]
    assert first == [(NEAR, "asked"), (NEAR, "failed"), (MASTER, "asked")]
    asks = {(url, i): t for t, url, i in reversed(loop.asked)}
    assert asks[(MASTER, 0)] - asks[(NEAR, 0)] >= V.HEDGE_S - 1e-9
    (seg0,) = [r for r in loop.kinds("request") if r["index"] == 0]
    assert seg0["hedge"] and seg0["server"] == 2
    # later segments: NEAR is known down, so their hedges go straight to the master
    assert all(h["to"] == MASTER for h in loop.kinds("viewer_hedge") if h["index"] > 0)


def test_a_silent_helper_is_hedged_at_once_and_left_when_its_request_times_out():
    loop = SlowLoop([[failing_over()]], silent={HELPER})
    loop.run(40.0)
    (qoe,) = loop.kinds("qoe")
    assert qoe["completed"] and qoe["startup_s"] < V.HEDGE_S + 0.5
    (moved,) = loop.kinds("failover")
    assert (moved["from"], moved["to"]) == (HELPER, NEAR) and HELPER in loop.logic.down
