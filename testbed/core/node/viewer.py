"""A viewer host's sessions as a state machine: timers and answers in, fetches out.

:class:`ViewerHostLogic` plays every session planned for one viewer host through its
helper: at the session's start it asks for the signed manifest (the driver verifies it),
then drives a :class:`~testbed.core.player.Player` — each segment it wants is fetched, its
bytes checked against the manifest of the version the helper says it is, and the player
told — and sends the player's events to the helper as telemetry.  A failed request is
retried (``retries`` attempts, ``0.2 s x attempt`` apart; a manifest ``0.5 s x attempt``
apart); a session whose first frame takes longer than its patience leaves.  Sessions of one
chain (one emulated player watching back to back) start one after the other.

**Hedge.**  When playback waits on a segment (stalled, starting, or less than
:data:`HEDGE_BUFFER_S` buffered) and its request has had no answer for :data:`HEDGE_S`, the
same segment is asked of the session's next server too; the first good answer is played and
the other dropped.  A hedge that fails leaves the session where it is (a server it could not
reach is skipped for :data:`DOWN_S`), and :data:`HEDGE_S` after the last ask the next server
is tried, each other server once per segment.

**Failover.**  A session also knows where else to ask (its ``fallbacks``: the other helpers,
nearest first, then the master).  When its server cannot be reached or fails (no answer, a
timeout, a 5xx), the session moves to the next server not known to be down and asks there;
the host remembers a server that could not be reached as down for :data:`DOWN_S`, so its
other sessions and the sessions that start meanwhile skip it (one that answered with an
error is not down: its own way up the tree may be).  A session stays where it moved; the next
session of its player starts at its own helper again.  Telemetry goes to the helper the
session is served by (any helper of the run takes the session's token), never the master.

Records: ``player`` (each player event), ``request`` (each segment, with its source, its
server and whether its digest checked), ``request_retry``, ``request_failed``,
``manifest_error``, ``failover``, ``viewer_hedge`` and one ``qoe`` per session that started
(or could not: ``error`` "no manifest").
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from testbed.core.content import Catalogue, Manifest, fingerprint
from testbed.core.node.effects import Record, SetTimer, Timer
from testbed.core.player import Player, SessionPlan

RETRIES = 4
DOWN_S = 10.0  # a server that failed is skipped this long by the host's sessions
MANIFEST_BACKOFF_S = 0.5
SEGMENT_BACKOFF_S = 0.2
HEDGE_S = 1.0         # a segment playback waits on, unanswered this long: ask elsewhere too
HEDGE_BUFFER_S = 2.0  # playback "waits on" a segment with less than this buffered


@dataclass(frozen=True)
class ViewerSettings:
    catalogue: Catalogue
    live_t0: float
    startup_buffer_s: float
    max_buffer_s: float
    max_inflight: int = 2
    retries: int = RETRIES


@dataclass(frozen=True)
class PlannedSession:
    """A session to play: ``viewer`` (the player's id, sent to the helper), ``helper`` (the
    helper's base URL), the plan (run time), and how long it waits for its first frame."""

    viewer: str
    helper: str
    plan: SessionPlan
    patience_s: float | None = None
    fallbacks: tuple[str, ...] = ()  # where else to ask, in order (base URLs)
    master: str = ""                 # which of them is the master (takes no telemetry)

    @property
    def servers(self) -> tuple[str, ...]:
        return (self.helper, *self.fallbacks)


# -- effects ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GetManifest:
    """GET ``helper``/manifest/``video`` (header X-Viewer when ``viewer`` is set), verify the
    master's signature, and hand back :class:`ManifestResult` with ``ref`` and the session
    token the answer carried (header X-Meshcast-Session-Token)."""

    ref: int
    helper: str
    video: str
    viewer: str = ""


@dataclass(frozen=True)
class GetSegment:
    """GET ``helper``/seg/``video``/``index`` (header X-Viewer) and hand back
    :class:`SegmentResult` with ``ref``."""

    ref: int
    helper: str
    video: str
    index: int
    viewer: str


@dataclass(frozen=True)
class PostTelemetry:
    """POST the batch (``{"viewer", "video", "token", "events": [...]}``) to
    ``helper``/telemetry."""

    helper: str
    batch: dict


# -- events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestResult:
    ref: int
    manifest: Manifest | None = None
    error: str = ""
    token: str = ""     # the session's telemetry token, issued with the manifest


@dataclass(frozen=True)
class SegmentResult:
    """A segment answer: ``status`` 200 with the bytes, the version and source headers; or
    ``error`` (any other status, a timeout, a connection refused)."""

    ref: int
    status: int = 0
    data: bytes = b""
    version: int = 0
    source: str = "?"
    error: str = ""


@dataclass
class _Session:
    sid: int
    planned: PlannedSession
    chain: list[PlannedSession]          # what this player watches next
    asked_at: float = 0.0
    manifest_attempt: int = 0
    player: Player | None = None
    requests: int = 0
    answered: int = 0
    digest_failures: int = 0
    bytes_by_source: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    inflight: dict[int, tuple[int, int, float]] = field(default_factory=dict)  # ref -> ...
    telemetry: list[dict] = field(default_factory=list)
    token: str = ""                      # the helper's telemetry token for this session
    done: bool = False
    server: int = 0                      # which of planned.servers it asks
    failovers: int = 0
    # segment -> the servers a hedge asked for it, and when the last one was asked
    hedged: dict[int, tuple[frozenset, float]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.planned.servers[self.server]

    @property
    def video(self) -> str:
        return self.planned.plan.video_id


class ViewerHostLogic:
    def __init__(self, s: ViewerSettings, chains: Sequence[Sequence[PlannedSession]]):
        self.s = s
        self.chains = [list(c) for c in chains if c]
        self.sessions: dict[int, _Session] = {}
        self.manifests: dict[str, Manifest] = {}
        self.versions: dict[tuple[str, int], Manifest] = {}
        self._refs: dict[int, tuple[str, int, object]] = {}   # ref -> (what, sid, detail)
        # answers of a version not known yet, waiting for its manifest
        self._verifying: dict[tuple[str, int], list[tuple]] = {}
        self._next = 0
        self.now = 0.0
        self.down: dict[str, float] = {}  # server -> until when it is skipped

    def _ref(self) -> int:
        self._next += 1
        return self._next

    # -- driving --------------------------------------------------------------------------------
    def start(self, now: float) -> list:
        out = []
        for chain in self.chains:
            out += self._schedule(chain[0], chain[1:], now)
        return out

    def handle(self, event: object, now: float) -> list:
        self.now = now
        if isinstance(event, Timer):
            return self._timer(event, now)
        if isinstance(event, ManifestResult):
            return self._manifest_result(event, now)
        if isinstance(event, SegmentResult):
            return self._segment_result(event, now)
        raise TypeError(f"viewer host: no handler for {event!r}")

    def stop(self, now: float) -> list:
        """The sessions still playing are recorded as they stand (requests in flight cut)."""
        out: list = []
        for sess in self.sessions.values():
            if not sess.done and sess.player is not None:
                sess.done = True
                out.append(self._qoe(sess, cut=len(sess.inflight)))
        return out

    # -- sessions -------------------------------------------------------------------------------
    def _schedule(self, planned: PlannedSession, rest: list, now: float) -> list:
        sid = self._ref()
        self.sessions[sid] = _Session(sid, planned, rest)
        return [SetTimer(f"start:{sid}", max(now, planned.plan.start_at), sid)]

    def _begin(self, sess: _Session, now: float) -> list:
        sess.asked_at = now  # the session's first request: start-up counts from here
        out = []
        if self.down.get(sess.url, 0.0) > now:  # its helper is known down: start elsewhere
            out += self._failover(sess, "known down", now, mark=False)
        return [*out, *self._ask_manifest(sess)]

    def _failover(self, sess: _Session, error: str, now: float, mark: bool = True) -> list:
        """Move ``sess`` to its next server not known to be down (the current one is
        marked down, unless ``mark`` is false); a ``failover`` record.  Nothing when it
        has nowhere else to go."""
        servers = sess.planned.servers
        if len(servers) < 2:
            return []
        if mark:
            self.down[sess.url] = now + DOWN_S
        old, sess.server = sess.url, self._next_server(sess, now)
        sess.failovers += 1
        return [Record("failover", {"player": sess.planned.viewer, "video": sess.video,
                                    "from": old, "to": sess.url, "error": error[:120]})]

    @staticmethod
    def _others(sess: _Session) -> list[int]:
        """The session's other servers, in order from the one after its own."""
        n = len(sess.planned.servers)
        return [(sess.server + k) % n for k in range(1, n)]

    def _next_server(self, sess: _Session, now: float,
                     among: list[int] | None = None) -> int:
        """The first of ``among`` (default: the session's other servers) not known to be
        down, else the first."""
        order = self._others(sess) if among is None else among
        servers = sess.planned.servers
        return next((i for i in order if self.down.get(servers[i], 0.0) <= now), order[0])

    def _ask_manifest(self, sess: _Session) -> list:
        """Every session asks its helper for the manifest, as a DASH player asks for the
        MPD: the answer carries the session's telemetry token."""
        ref = self._ref()
        self._refs[ref] = ("manifest", sess.sid, None)
        return [GetManifest(ref, sess.url, sess.video, sess.planned.viewer)]

    def _keep(self, m: Manifest) -> None:
        self.versions[(m.video_id, m.version)] = m
        cur = self.manifests.get(m.video_id)
        if cur is None or m.version >= cur.version:
            self.manifests[m.video_id] = m

    def _manifest_result(self, ev: ManifestResult, now: float) -> list:
        what, sid, detail = self._refs.pop(ev.ref, (None, 0, None))
        sess = self.sessions.get(sid)
        if ev.manifest is not None:
            self._keep(ev.manifest)
        if (sess is None or sess.done) and what != "verify":
            return []
        if what == "verify":
            out: list = []
            for wsid, index, t0, seg, server, hedge in self._verifying.pop(detail, []):
                w = self.sessions[wsid]
                if not w.done:
                    out += self._checked(w, index, t0, seg, now, server, hedge)
            return out
        if ev.manifest is not None:
            sess.token = ev.token
            return self._play(sess, now)
        out: list = [Record("manifest_error", {"player": sess.planned.viewer,
                                               "error": ev.error[:200]})]
        out += self._failover(sess, ev.error, now, mark=not ev.error.startswith("HTTP"))
        sess.manifest_attempt += 1
        if sess.manifest_attempt < self.s.retries:
            return [*out, SetTimer(f"manifest:{sid}",
                                   now + MANIFEST_BACKOFF_S * sess.manifest_attempt, sid)]
        if sess.video in self.manifests:  # known from an earlier session: play, untokened
            return [*out, *self._play(sess, now)]
        sess.done = True  # never started: recorded, not lost
        out.append(Record("qoe", {
            "viewer": sess.planned.viewer, "video": sess.video, "helper": sess.planned.helper,
            "asked_at": sess.asked_at, "startup_s": None, "abandoned": True,
            "abandoned_at_start": True, "ended": True, "requests": sess.requests,
            "answered": sess.answered, "error": "no manifest"}))
        return [*out, *self._next_in_chain(sess, now)]

    def _play(self, sess: _Session, now: float) -> list:
        video = self.s.catalogue[sess.video]
        live_edge = None
        if video.kind == "live":
            live_edge = functools.partial(video.live_edge, started=self.s.live_t0)
        sess.player = Player(sess.planned.viewer, sess.planned.plan, video.n_segments,
                             video.segment_s, startup_buffer_s=self.s.startup_buffer_s,
                             max_buffer_s=self.s.max_buffer_s,
                             max_inflight=self.s.max_inflight, live_edge=live_edge,
                             asked_at=sess.asked_at)
        return self._poll(sess, now)

    def _poll(self, sess: _Session, now: float) -> list:
        player = sess.player
        out: list = []
        fetches, events = player.poll(now)
        out += self._notes(sess, events)
        for f in fetches:
            out.append(self._get(sess, f.index, 0, now, now))
        hedge_at = None
        if len(sess.planned.servers) > 1:
            hedges, hedge_at = self._hedge(sess, now)
            out += hedges
        patience = sess.planned.patience_s
        if (patience is not None and player.state == "startup"
                and now - sess.planned.plan.start_at > patience):
            out += self._notes(sess, player.abandon(now))  # start-up took longer than it waits
        out += self._flush(sess)
        if player.done:
            sess.done = True
            out.append(self._qoe(sess, cut=len(sess.inflight)))
            return [*out, *self._next_in_chain(sess, now)]
        wake = player.next_wakeup(now) if hedge_at is None else min(player.next_wakeup(now),
                                                                     hedge_at)
        delay = max(0.01, min(1.0, wake - now))
        out.append(SetTimer(f"wake:{sess.sid}", now + delay, sess.sid))
        return out

    def _hedge(self, sess: _Session, now: float) -> tuple[list, float | None]:
        """Ask another server for the segment playback waits on, if its request has been
        unanswered for :data:`HEDGE_S`; else when to look again (None: no need)."""
        player = sess.player
        index = player.needed
        if (index is None or player.state in ("paused", "done")
                or (player.state == "playing" and player.buffer_s >= HEDGE_BUFFER_S)):
            return [], None
        asked: list[tuple[float, bool]] = [self._refs[r][2][1:] for r, (i, _, _)
                                           in sess.inflight.items()
                                           if i == index and r > 0 and r in self._refs]
        if not asked or any(hedge for _, hedge in asked):
            return [], None   # not asked yet, waiting to be asked again, or hedged now
        tried, last = sess.hedged.get(index, (frozenset(), -1.0))
        fresh = [i for i in self._others(sess) if i not in tried]
        if not fresh:
            return [], None   # every other server was asked once already
        due = max(min(t for t, _ in asked), last) + HEDGE_S
        if now < due:
            return [], due
        server = self._next_server(sess, now, fresh)
        sess.hedged[index] = (tried | {server}, now)
        get = self._get(sess, index, 0, now, now, server=server)
        return [get, Record("viewer_hedge", {
            "player": sess.planned.viewer, "video": sess.video, "index": index,
            "to": sess.planned.servers[server], "outcome": "asked"})], None

    def _next_in_chain(self, sess: _Session, now: float) -> list:
        if not sess.chain:
            return []
        return self._schedule(sess.chain[0], sess.chain[1:], now)

    def _get(self, sess: _Session, index: int, attempt: int, t0: float, now: float,
             server: int | None = None) -> GetSegment:
        """Ask the session's server (or ``server``, a hedge) for segment ``index``."""
        ref = self._ref()
        sess.inflight[ref] = (index, attempt, t0)
        hedge = server is not None
        at = sess.server if server is None else server
        self._refs[ref] = ("segment", sess.sid, (at, now, hedge))
        return GetSegment(ref, sess.planned.servers[at], sess.video, index,
                          sess.planned.viewer)

    def _segment_result(self, ev: SegmentResult, now: float) -> list:
        _, sid, asked = self._refs.pop(ev.ref, (None, 0, None))
        sess = self.sessions.get(sid)
        if sess is None or sess.done or ev.ref not in sess.inflight:
            return []
        index, attempt, t0 = sess.inflight.pop(ev.ref)
        server, _, hedge = asked if asked is not None else (sess.server, t0, False)
        if ev.status != 200 and hedge:  # the request it hedged goes on as it would have
            if ev.status == 0:   # unreachable: skipped for a while, by hedges too
                self.down[sess.planned.servers[server]] = now + DOWN_S
            return [Record("viewer_hedge", {
                "player": sess.planned.viewer, "video": sess.video, "index": index,
                "to": sess.planned.servers[server],
                "outcome": "failed"}), *self._poll(sess, now)]
        if ev.status != 200:
            error = ev.error or f"HTTP {ev.status}"
            out: list = [Record("request_retry", {"player": sess.planned.viewer,
                                                  "video": sess.video, "index": index,
                                                  "attempt": attempt, "error": error[:120]})]
            if ev.status == 0 or ev.status >= 500:  # unreachable or failing: ask elsewhere
                # (a server that answered is not down: its way up the tree may be); a
                # request to a server the session has already left moves it no further
                if server == sess.server:
                    out += self._failover(sess, error, now, mark=ev.status == 0)
                elif ev.status == 0:
                    self.down[sess.planned.servers[server]] = now + DOWN_S
            if attempt + 1 < self.s.retries:
                # held in flight while it waits, so the player does not ask for it again
                sess.inflight[-ev.ref] = (index, attempt + 1, t0)
                return [*out, SetTimer(f"retry:{ev.ref}",
                                       now + SEGMENT_BACKOFF_S * (attempt + 1),
                                       (sid, -ev.ref))]
            sess.requests += 1
            out.append(Record("request_failed", {"player": sess.planned.viewer,
                                                 "video": sess.video, "index": index}))
            out += self._notes(sess, sess.player.on_segment(index, now, False))
            return [*out, *self._poll(sess, now)]
        newest = self.manifests.get(sess.video)
        if newest is not None and newest.version >= ev.version:
            return self._checked(sess, index, t0, ev, now, server, hedge)
        # a newer version than this host knows: its manifest first (one fetch for all)
        waiting = self._verifying.setdefault((sess.video, ev.version), [])
        waiting.append((sid, index, t0, ev, server, hedge))
        sess.inflight[-ev.ref] = (index, attempt, t0)
        if len(waiting) > 1:
            return []
        ref = self._ref()
        self._refs[ref] = ("verify", sid, (sess.video, ev.version))
        return [GetManifest(ref, sess.url, sess.video)]

    def _checked(self, sess: _Session, index: int, t0: float, ev: SegmentResult,
                 now: float, server: int, hedge: bool) -> list:
        for ref in [r for r, (i, _, _) in sess.inflight.items() if i == index]:
            del sess.inflight[ref]   # the other answer, if it comes, is dropped
            self._refs.pop(ref, None)
        sess.hedged.pop(index, None)
        m = self.versions.get((sess.video, ev.version))
        ok = m is not None and m.digest_ok(index, ev.data)
        sess.digest_failures += not ok
        sess.requests += 1
        sess.answered += 1
        sess.bytes_by_source[ev.source] += len(ev.data)
        ms = (now - t0) * 1000
        sess.latencies.append(ms)
        out: list = [Record("request", {
            "player": sess.planned.viewer, "video": sess.video, "index": index,
            "version": ev.version, "source": ev.source, "server": server, "hedge": hedge,
            "bytes": len(ev.data),
            "latency_ms": round(ms, 3), "digest_ok": ok,
            "sha256": fingerprint(ev.data)[:16]})]
        out += self._notes(sess, sess.player.on_segment(index, now, ok))
        return [*out, *self._poll(sess, now)]

    # -- records and telemetry ------------------------------------------------------------------
    def _notes(self, sess: _Session, events) -> list:
        out = []
        for e in events:
            fields = dict(e.fields)
            out.append(Record("player", {"player": sess.planned.viewer, "video": sess.video,
                                         "event": e.kind, "t": round(e.at, 3), **fields}))
            sess.telemetry.append({"kind": e.kind, "video": sess.video,
                                   "playhead_s": float(fields.get("playhead_s", 0.0)),
                                   "at": e.at})
        return out

    def _flush(self, sess: _Session) -> list:
        if not sess.telemetry:
            return []
        batch, sess.telemetry = sess.telemetry, []
        to = sess.url if sess.url != sess.planned.master else sess.planned.helper
        return [PostTelemetry(to, {
            "viewer": sess.planned.viewer, "video": sess.video, "token": sess.token,
            "events": batch})]

    def _qoe(self, sess: _Session, cut: int) -> Record:
        lat = sorted(sess.latencies)
        return Record("qoe", {
            "viewer": sess.planned.viewer, "video": sess.video, "helper": sess.planned.helper,
            "requests": sess.requests, "answered": sess.answered, "cut_at_stop": cut,
            "failovers": sess.failovers,
            "digest_failures": sess.digest_failures,
            "bytes_by_source": dict(sess.bytes_by_source),
            "latency_p50_ms": round(lat[len(lat) // 2], 3) if lat else None,
            "ended": sess.player.done, **sess.player.qoe()})

    # -- timers ---------------------------------------------------------------------------------
    def _timer(self, ev: Timer, now: float) -> list:
        kind = ev.name.split(":", 1)[0]
        if kind == "retry":
            sid, held = ev.token
            sess = self.sessions.get(sid)
            if sess is None or sess.done or held not in sess.inflight:
                return []
            index, attempt, t0 = sess.inflight.pop(held)
            return [self._get(sess, index, attempt, t0, now)]
        sess = self.sessions.get(ev.token)
        if sess is None or sess.done:
            return []
        if kind == "start":
            return self._begin(sess, now)
        if kind == "manifest":
            return self._ask_manifest(sess)
        if kind == "wake" and sess.player is not None:
            return self._poll(sess, now)
        return []
