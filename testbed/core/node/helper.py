"""The helper's decisions as a state machine: requests in, effects out.

:class:`HelperLogic` holds everything a helper knows (its cache, verified manifests, its
place in the tree, mesh neighbours and peer measurements, the fetches in progress, the
live relay's groups, telemetry waiting to go) and answers each event with a list of
effects (:mod:`testbed.core.node.effects` and the helper-specific ones below).  The daemon
(:mod:`testbed.nodes.helper`) turns HTTP, UDP and multicast into these events, verifies
signatures and manifests before they get here, signs what leaves, and measures time on the
wire (probe round trips, bandwidth trains).

The rules it keeps:

* **Fetch order** (requestContent): the cache first (a copy at least as new as the video's
  version floor and its newest manifest); on a miss, one fetch per segment however many
  viewers or children ask; with ``mesh_pull`` the neighbours nearer than the parent are
  asked at once and the tree too after a hedge (twice the slowest neighbour's round trip,
  50-300 ms) or when every neighbour has said no; the tree is asked ancestor by ancestor
  (parent, its parent, ..., the master).  An answer counts only if its version is at least
  the one asked for and its bytes match the digest in the signed manifest of that version.
  An ancestor silent for :data:`TREE_HEDGE_S` (cut off, or its own way up is) gets the
  one above it asked too (a ``tree_hedge`` record); the first good answer wins.
* **Pushes** (receiveMeshData): the driver has checked the master's signature on the push's
  plan (:func:`P.plan_bytes`); a push is accepted only on its route, from the previous hop,
  along a route with no loop and at most :data:`P.MAX_ROUTE` nodes, for a known segment no
  older than the floor, with a matching digest; it is cached at the
  destination and on the hops its ``keep`` list names, and forwarded to the next hop.
* **Invalidations** (the driver has checked the master's signature on each,
  :func:`P.invalidation_bytes`; forwarded with it) raise the video's floor, drop older
  copies, and go on to children and neighbours other than the sender, once per
  invalidation id.
* **Neighbours** are re-chosen each round from the medians of the probe round trips and the
  packet-train bandwidth estimates; the neighbours (and the cache inventory, when it
  changed) are reported to the master.
* **Live**: a helper joins its parent's relay group of a channel while children or its own
  viewers (in the last 30 s) want it, relays each datagram to its own group when it has
  children, and caches each reassembled segment whose digest checks.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from testbed.core import protocol as P
from testbed.core.cache import SegmentCache
from testbed.core.content import Catalogue, Manifest, iso_datetime, render_mpd
from testbed.core.mesh import NeighbourSelector, PeerMetric
from testbed.core.multicast import relay_group
from testbed.core.node.effects import Record, Reply, Response, Send, SetTimer, Timer
from testbed.core.records import (
    ROOT_HEADER,
    SOURCE_HEADER,
    TOKEN_HEADER,
    VERSION_HEADER,
    Root,
    Source,
)
from testbed.core.telemetry import (
    SessionGate,
    TelemetryBuffer,
    TelemetryError,
    session_token,
    telemetry_record,
    token_ok,
)

PEER_SAMPLE = 4           # non-neighbours probed per round (besides the neighbours)
#: peers a helper keeps measurements of: with more peers than this, the neighbours, the
#: parent and the best of the peers sampled lately; the others are forgotten
PEER_STATE_MAX = 64
PROBE_STAGGER_S = 0.003   # between two peer probes: replies do not queue behind each other
PROBE_WAIT_S = 0.3        # after the last probe, the round decides on what came back
BW_PROBE_BYTES = 12 * 1024  # within TCP's first flight (10 segments), so one train
BW_PROBE_EVERY_S = 120.0  # an active bandwidth probe per peer at most this often
#: a peer's bandwidth is the median of its last this many trains; a peer that matters is
#: probed each round until it has them (one train stretched or squeezed by the scheduler of
#: a busy machine is outvoted, not believed for the next two minutes)
BW_SAMPLES = 3
#: a train this many times above or below the estimate has a second train sent the next
#: round, so a real change moves the median within two rounds and a fluke is outvoted
BW_DISAGREE = 2.0
BW_WAIT_S = 3.5           # the longest a round waits for its bandwidth probes
LIVE_WANTED_S = 30.0      # a viewer's request keeps its channel joined this long
MESH_ASK_TIMEOUT_S = 2.0
TREE_ASK_TIMEOUT_S = 8.0
TREE_HEDGE_S = 1.0  # an ancestor silent this long: the one above it is asked too
CONTROL_TIMEOUT_S = 5.0
TELEMETRY_BATCH = 200
MAX_VIEWER_BATCH = 200


# -- settings -----------------------------------------------------------------------------
@dataclass(frozen=True)
class HelperSettings:
    """What a helper is told by the run plan (typed, one place for each default)."""

    name: str
    master: str                       # the master's name
    addresses: dict[str, str]         # node name -> address (helpers, master)
    catalogue: Catalogue
    cache_bytes: int
    eviction: str = "lru"
    mesh_degree: int = 3
    mesh_pull: bool = False
    push_port: int | None = None      # where pushes go (None: the usual HTTP port)
    neighbour_interval_s: float = 5.0
    pseudonym_key: bytes = b""        # the run's key for pseudonyms and session tokens
    live_t0: float = 0.0              # run time of the live channels' first segment
    t0: float = 0.0                   # wall-clock time of run second 0
    engine: str | None = None         # the engine's name; None: no engine in this run
    base_url: str = ""                # this helper's own URL, for MPDs

    @property
    def peers(self) -> list[str]:
        return [n for n in self.addresses if n not in (self.name, self.master)]

    def is_peer(self, name: str) -> bool:
        return name in self.addresses and name != self.name and name != self.master


#: address book -> its names in order and each name's place, shared by every helper given
#: the same book (so 10,000 helpers do not each hold their own list of 10,000 names)
_NAMES: dict[int, tuple[object, tuple[str, ...], dict[str, int]]] = {}


def _names(addresses: dict[str, str]) -> tuple[tuple[str, ...], dict[str, int]]:
    got = _NAMES.get(id(addresses))
    if got is None or got[0] is not addresses or len(got[1]) != len(addresses):
        if len(_NAMES) >= 16:
            _NAMES.pop(next(iter(_NAMES)))
        names = tuple(addresses)
        got = _NAMES[id(addresses)] = (addresses, names, {n: i for i, n in enumerate(names)})
    return got[1], got[2]


# -- helper-specific effects ---------------------------------------------------------------
@dataclass(frozen=True)
class FetchManifest:
    """Get ``video``'s signed manifest from the master, verify it, and hand back
    :class:`ManifestArrived`."""

    video: str


@dataclass(frozen=True)
class MeasureBandwidth:
    """Fetch ``nbytes`` of filler from ``peer`` and hand back :class:`BandwidthSample`
    (the time from its first to its last byte here)."""

    peer: str
    nbytes: int


@dataclass(frozen=True)
class JoinGroup:
    video: str
    group: str
    parent: str


@dataclass(frozen=True)
class LeaveGroup:
    video: str


@dataclass(frozen=True)
class Relay:
    """Send ``dgram`` on to this helper's own relay ``group`` (a simulation relays whole
    segments: ``segment`` is then the :class:`LiveSegment` and ``dgram`` empty)."""

    video: str
    group: str
    dgram: bytes
    segment: LiveSegment | None = None


# -- events ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentRequest:
    ref: int
    video: str
    index: str          # as the viewer wrote it
    viewer: str = ""


@dataclass(frozen=True)
class ManifestRequest:
    ref: int
    video: str
    mpd: bool = False   # the MPEG-DASH MPD rather than the signed manifest
    viewer: str = ""    # who asks (header X-Viewer): the answer carries its session token


@dataclass(frozen=True)
class ViewerTelemetry:
    ref: int
    raw: bytes


@dataclass(frozen=True)
class FetchRequest:
    """A verified ``fetch`` from another helper (``cache_only``: a mesh neighbour's)."""

    ref: int
    sender: str
    body: dict
    cache_only: bool


@dataclass(frozen=True)
class MeshData:
    ref: int
    sender: str
    body: dict
    payload: bytes


@dataclass(frozen=True)
class Control:
    """A verified control message: routing, push_order (from the master) or invalidate."""

    ref: int
    sender: str
    role: str
    msg_type: str
    body: dict


@dataclass(frozen=True)
class ManifestArrived:
    """The outcome of :class:`FetchManifest`: a verified manifest and its signed form, or
    ``error`` (HTTP status, unreachable, a bad signature)."""

    video: str
    manifest: Manifest | None = None
    signed: dict | None = None
    error: str = ""


@dataclass(frozen=True)
class PeerRtt:
    """A peer probe's round trip (kernel-stamped, the peer's holding time taken out)."""

    peer: str
    rtt_ms: float


@dataclass(frozen=True)
class BandwidthSample:
    peer: str
    nbytes: int
    seconds: float


@dataclass(frozen=True)
class LiveDatagram:
    video: str
    dgram: bytes


@dataclass(frozen=True)
class LiveSegment:
    """A whole live segment off a relay group (what a simulation delivers instead of its
    datagrams): relayed and cached as the reassembled datagrams would be."""

    video: str
    index: int
    version: int
    data: bytes


Got = tuple[bytes, int, Source, Root]
Done = Callable[["Got | None", str], list]


@dataclass
class _Fetch:
    """One segment being fetched for everyone who asked for it."""

    key: tuple[str, int]
    version: int
    waiters: list[Done] = field(default_factory=list)
    asks: set[int] = field(default_factory=set)    # refs of mesh asks in flight
    tree_at: int = -1                               # last ancestor asked; -1: not started
    tree_refs: set[int] = field(default_factory=set)  # refs of tree asks in flight
    tree_last: int | None = None                    # ref of the last ancestor's ask
    tree_failed: bool = False                       # every ancestor asked said no
    done: bool = False


class HelperLogic:
    """A helper's state and rules (see the module docstring); drive it with
    :meth:`start`, :meth:`handle` and :meth:`stop`."""

    def __init__(self, s: HelperSettings):
        self.s = s
        self.cache = SegmentCache(s.cache_bytes, s.eviction)
        self.catalogue = s.catalogue
        self.live_ids = s.catalogue.ids("live")
        self.selector = NeighbourSelector(k=s.mesh_degree)
        self.table: dict | None = None
        # Few peers: every one is measured (``peer_rtt`` holds them all, in address-book
        # order).  Many: only the neighbours, the parent and the best PEER_STATE_MAX of
        # those sampled lately, the sample going round the address book by a cursor that
        # starts just after the helper's own place (had every helper started at the top,
        # all of them would measure the same few peers first and choose them: at 10,000
        # helpers every one had h1 and h2 as its neighbours).
        names, place = _names(s.addresses)
        n_peers = len(names) - (s.name in s.addresses) - (s.master in s.addresses
                                                          and s.master != s.name)
        self._few = n_peers <= PEER_STATE_MAX
        self._names = names
        self._cursor = (place.get(s.name, -1) + 1) % max(len(names), 1)
        self.peer_rtt: dict[str, deque] = (
            {p: deque(maxlen=5) for p in s.peers} if self._few else {})
        self.peer_bw: dict[str, float] = {}          # peer -> estimate (Mbit/s)
        self.peer_bw_at: dict[str, float] = {}       # peer -> when its last train came in
        self.peer_bw_samples: dict[str, deque] = {}  # peer -> its last BW_SAMPLES trains
        self._bw_confirm: set[str] = set()           # peers whose last train disagreed
        self.rounds = 0
        self.reported_inventory = b""
        self._reported_changes = -1  # the cache's change count at the last report
        self.live_groups: dict[str, str] = {}          # video -> joined group
        self.live_wanted_until: dict[str, float] = {}
        self.seen_invalidations: set[str] = set()
        self.telemetry = TelemetryBuffer()
        self.telemetry_gate = SessionGate()
        self.reasm = P.Reassembler()
        self.rejected: Counter[str] = Counter()
        # verified manifests: newest per video, every version by (video, version)
        self.manifests: dict[str, Manifest] = {}
        self.signed: dict[str, dict] = {}
        self.versions: dict[tuple[str, int], Manifest] = {}
        self._manifest_waiters: dict[str, list[tuple[int, Callable]]] = {}
        self._fetches: dict[tuple[str, int], _Fetch] = {}
        self._on_response: dict[int, Callable[[Response, float], list]] = {}
        self._next_ref = 0
        self.now = 0.0  # the time of the event being handled
        self._bw_pending: set[str] = set()
        self._round_latency: dict[str, float] | None = None
        self._handlers = {
            SegmentRequest: self._segment_request, ManifestRequest: self._manifest_request,
            ViewerTelemetry: self._viewer_telemetry, FetchRequest: self._fetch_request,
            MeshData: self._mesh_data, Control: self._control,
            ManifestArrived: self._manifest_arrived, Response: self._response,
            PeerRtt: self._peer_rtt, BandwidthSample: self._bandwidth_sample,
            LiveDatagram: self._live_datagram, LiveSegment: self._live_whole,
            Timer: self._timer,
        }

    # -- driving ------------------------------------------------------------------------
    def start(self, now: float) -> list:
        """The periodic timers (neighbours, telemetry, live, housekeeping)."""
        return [SetTimer("neighbours", now + 0.5), SetTimer("telemetry", now + 2.0),
                SetTimer("live", now), SetTimer("housekeeping", now + 5.0)]

    def handle(self, event: object, now: float) -> list:
        self.now = now  # continuations resumed by this event run at this time
        return self._handlers[type(event)](event, now)

    def stop(self, now: float) -> list:
        """Leave the live groups, send what telemetry is left, and the closing records."""
        out: list = [LeaveGroup(v) for v in list(self.live_groups)]
        for v in list(self.live_groups):
            out.append(self._record("live_leave", video=v))
        self.live_groups.clear()
        out += self._send_telemetry(now)
        out.append(self._record("telemetry_buffer", added=self.telemetry.added,
                                dropped=self.telemetry.dropped, queued=len(self.telemetry)))
        out.append(self._record("cache", used_bytes=self.cache.used_bytes,
                                capacity_bytes=self.cache.capacity_bytes, **self.cache.stats))
        return out

    # -- small helpers --------------------------------------------------------------------
    def _ref(self) -> int:
        self._next_ref += 1
        return self._next_ref

    @staticmethod
    def _record(kind: str, **fields) -> Record:
        return Record(kind, fields)

    def _reject(self, reason: str, sender: str, what: str) -> Record:
        self.rejected[reason] += 1
        return self._record("rejected", reason=reason, sender=sender[:64], what=what[:64])

    def _ask(self, to: str, msg_type: str, body: dict, on: Callable[[Response, float], list],
             **kw) -> Send:
        ref = self._ref()
        self._on_response[ref] = on
        return Send(to=to, msg_type=msg_type, body=body, ref=ref, **kw)

    def ancestors(self) -> list[str]:
        """The nodes up the tree: parent, its parent, ..., the master."""
        if not self.table:
            return [self.s.master]
        out = [n for n in self.table["ancestors"] if n in self.s.addresses]
        return out or [self.s.master]

    def children(self) -> list[str]:
        return list(self.table["children"]) if self.table else []

    def live_edge(self, video: str, now: float) -> int:
        return self.catalogue[video].live_edge(now, self.s.live_t0)

    def key_ok(self, video: object, index: object, now: float) -> tuple[str, int] | None:
        if not isinstance(video, str) or video not in self.catalogue:
            return None
        try:
            index = int(index)
        except (TypeError, ValueError):
            return None
        v = self.catalogue[video]
        if not 0 <= index < v.n_segments:
            return None
        if v.kind == "live" and index > self.live_edge(video, now):
            return None
        return video, index

    # -- manifests ------------------------------------------------------------------------
    def _with_manifest(self, video: str, min_version: int, then: Callable[[Manifest | None, str],
                                                                          list]) -> list:
        """``then(manifest, error)`` with a verified manifest of ``video`` at least
        ``min_version`` (and the floor): at once when one is known, else when the master's
        answer arrives (one fetch per video however many wait)."""
        need = max(min_version, self.cache.floor(video))
        m = self.manifests.get(video)
        if m is not None and m.version >= need:
            return then(m, "")
        waiting = self._manifest_waiters.setdefault(video, [])
        waiting.append((need, then))
        return [FetchManifest(video)] if len(waiting) == 1 else []

    def _manifest_arrived(self, ev: ManifestArrived, now: float) -> list:
        out: list = []
        if ev.manifest is not None:
            m = ev.manifest
            self.versions[(m.video_id, m.version)] = m
            cur = self.manifests.get(m.video_id)
            if cur is None or m.version >= cur.version:
                self.manifests[m.video_id] = m
                if ev.signed is not None:
                    self.signed[m.video_id] = ev.signed
        elif ev.error.startswith("rejected:"):
            out.append(self._reject(ev.error.split(":", 1)[1], self.s.master, "manifest"))
        waiting = self._manifest_waiters.pop(ev.video, [])
        m = self.manifests.get(ev.video)
        for need, then in waiting:
            if m is not None and m.version >= need:
                out += then(m, "")
            else:
                out += then(None, ev.error or f"manifest {ev.video}: only version "
                                              f"{m.version if m else 0} < {need}")
        return out

    # -- viewers --------------------------------------------------------------------------
    def _manifest_request(self, ev: ManifestRequest, now: float) -> list:
        if ev.video not in self.catalogue:
            return [Reply(ev.ref, 404, f"unknown video {ev.video[:64]!r}\n".encode())]

        def then(m: Manifest | None, error: str) -> list:
            if m is None:
                return [Reply(ev.ref, 504, f"{error}\n".encode())]
            if ev.mpd:
                start = self.s.t0 + self.s.live_t0 if m.kind == "live" else None
                text = render_mpd(m, self.s.base_url, availability_start=None if start is None
                                  else iso_datetime(start))
                return [Reply(ev.ref, 200, text.encode(), content_type="application/dash+xml")]
            body = json.dumps(self.signed[ev.video]).encode()
            headers = ({TOKEN_HEADER: session_token(self.s.pseudonym_key, ev.viewer[:64],
                                                    ev.video)} if ev.viewer else {})
            return [Reply(ev.ref, 200, body, headers, content_type="application/json",
                          cls="viewer")]

        return self._with_manifest(ev.video, 0, then)

    def _segment_request(self, ev: SegmentRequest, now: float) -> list:
        key = self.key_ok(ev.video, ev.index, now)
        if key is None:
            return [Reply(ev.ref, 404, b"no such segment\n")]
        viewer, asked = ev.viewer[:64], now

        def done(got: Got | None, error: str, at: float) -> list:
            if got is None:
                return [self._record("serve_failed", video=key[0], index=key[1],
                                     error=error[:200]),
                        Reply(ev.ref, 504, f"unavailable: {error}\n".encode())]
            data, version, source, root = got
            anon = telemetry_record("request", viewer, self.s.pseudonym_key, key[0],
                                    key[1] * self.catalogue[key[0]].segment_s, at, self.s.name)
            self.telemetry.add({**anon, "index": key[1]})
            if self.catalogue[key[0]].kind == "live":
                self.live_wanted_until[key[0]] = at + LIVE_WANTED_S
            return [self._record("serve", viewer=anon["viewer"], video=key[0], index=key[1],
                                 version=version, bytes=len(data), source=source.value,
                                 root=root.value,
                                 latency_ms=round((at - asked) * 1000, 3)),
                    Reply(ev.ref, 200, data, {VERSION_HEADER: str(version),
                                              SOURCE_HEADER: source.value},
                          content_type="video/mp4", cls="viewer")]

        return self.obtain(key, now, done)

    def _viewer_telemetry(self, ev: ViewerTelemetry, now: float) -> list:
        """A viewer's batch of one session's player events (``{"viewer", "video", "token",
        "events"}``): taken only under the token this helper's run issued with the session's
        manifest, at most at the session's rate; anonymised before it leaves."""
        def refuse(status: int, reason: str, error: str) -> list:
            body = json.dumps({"error": f"telemetry: {error}"[:200], "reason": reason})
            return [self._reject(reason, "viewer", "telemetry"),
                    Reply(ev.ref, status, body.encode(), content_type="application/json")]

        try:
            batch = json.loads(ev.raw)
            viewer, video, events = batch["viewer"], batch["video"], batch["events"]
            if not isinstance(viewer, str) or not isinstance(video, str) \
                    or not isinstance(events, list) or len(events) > MAX_VIEWER_BATCH:
                raise ValueError(f"viewer and video must be text and events a list of "
                                 f"<= {MAX_VIEWER_BATCH}")
        except KeyError as exc:
            return refuse(400, "malformed", f"the batch lacks {exc}")
        except (ValueError, TypeError) as exc:
            return refuse(400, "malformed", str(exc))
        token = batch.get("token")
        if not token_ok(self.s.pseudonym_key, viewer[:64], video, token):
            return refuse(403, "no_token" if token is None else "bad_token",
                          "no session token" if token is None else "not this session's token")
        if not self.telemetry_gate.admit(token, len(events), now):
            return refuse(429, "rate_limited", f"{len(events)} events over the session's rate")
        try:
            records = []
            for e in events:
                if e["video"] != video:
                    raise ValueError(f"an event for {str(e['video'])[:64]!r} in a session of "
                                     f"{video[:64]!r}")
                records.append(telemetry_record(e["kind"], viewer[:64], self.s.pseudonym_key,
                                                video, float(e["playhead_s"]), float(e["at"]),
                                                self.s.name))
        except KeyError as exc:
            return refuse(400, "malformed", f"an event lacks {exc}")
        except (ValueError, TypeError, TelemetryError) as exc:
            return refuse(400, "malformed", str(exc))
        for rec in records:
            self.telemetry.add(rec)
        if records and video in self.live_ids:
            self.live_wanted_until[video] = now + LIVE_WANTED_S
        return [Reply(ev.ref, 200, json.dumps({"ok": len(records)}).encode(),
                      content_type="application/json")]

    # -- obtaining segments -----------------------------------------------------------------
    def obtain(self, key: tuple[str, int], now: float,
               done: Callable[[Got | None, str, float], list]) -> list:
        """``done(got, error, at)`` with the segment: from the cache, else one shared fetch."""

        def with_manifest(m: Manifest | None, error: str) -> list:
            now = self.now
            if m is None:
                return done(None, error, now)
            entry = self.cache.get(key, now, min_version=m.version)
            if entry is not None:
                return done((entry.data, entry.version, Source.cached(entry.origin),
                             Root.CACHE), "", now)
            job = self._fetches.get(key)
            if job is not None:
                job.waiters.append(done)
                return []
            job = self._fetches[key] = _Fetch(key, m.version, [done])
            return self._start_fetch(job, now)

        return self._with_manifest(key[0], 0, with_manifest)

    def pull_peers(self) -> list[str]:
        """The neighbours worth asking on a miss: not up the tree (the tree fetch asks
        those anyway) and nearer than the parent (a neighbour behind the same far link as
        the parent only doubles what crosses it)."""
        up = set(self.ancestors())
        parent = self.ancestors()[0]
        limit = min(self.peer_rtt[parent]) if self.peer_rtt.get(parent) else math.inf
        return [p for p in self.selector.neighbours if p not in up
                and (min(self.peer_rtt[p]) if self.peer_rtt.get(p) else math.inf) < limit]

    def hedge_s(self) -> float:
        """How long mesh neighbours get before the tree is asked too: twice the slowest
        neighbour's round trip, within 50-300 ms."""
        rtts = [statistics.median(self.peer_rtt[p]) for p in self.pull_peers()
                if self.peer_rtt.get(p)]
        return min(0.3, max(0.05, 2 * max(rtts, default=100.0) / 1000))

    def _start_fetch(self, job: _Fetch, now: float) -> list:
        peers = self.pull_peers() if self.s.mesh_pull else []
        if not peers:
            return self._ask_tree(job, now)
        out: list = []
        body = {"video": job.key[0], "index": job.key[1], "min_version": job.version}
        for peer in peers:
            send = self._ask(peer, "fetch", body,
                             lambda r, t, peer=peer: self._mesh_answer(job, peer, r, t),
                             path="/peer-fetch", cls="mesh", timeout_s=MESH_ASK_TIMEOUT_S)
            job.asks.add(send.ref)
            out.append(send)
        out.append(SetTimer(f"hedge:{job.key[0]}/{job.key[1]}", now + self.hedge_s(), job))
        return out

    def _ask_tree(self, job: _Fetch, now: float) -> list:
        """Ask the next ancestor (the parent first); if it has not answered within
        :data:`TREE_HEDGE_S`, the one above it is asked too (the first good answer wins):
        a parent cut off answers nothing until its ask times out, and a viewer waiting
        that long would have stalled and left."""
        job.tree_at += 1
        ancestors = self.ancestors()
        if job.tree_at >= len(ancestors):
            return self._tree_failed(job, now)
        name = ancestors[job.tree_at]
        body = {"video": job.key[0], "index": job.key[1], "min_version": job.version}
        send = self._ask(name, "fetch", body,
                         lambda r, t: self._tree_answer(job, name, r, t),
                         path="/fetch", cls="tree", timeout_s=TREE_ASK_TIMEOUT_S)
        job.tree_refs.add(send.ref)
        job.tree_last = send.ref
        if job.tree_at + 1 >= len(ancestors):
            return [send]
        return [send, SetTimer(f"uphedge:{job.key[0]}/{job.key[1]}", now + TREE_HEDGE_S,
                               (job, job.tree_at))]

    def _tree_failed(self, job: _Fetch, now: float) -> list:
        """An ancestor said no (or could not be reached): the next one, unless every
        one has been asked; the fetch fails once none is left to answer."""
        if job.done or job.tree_last in job.tree_refs:
            return []  # the last one asked may still answer (and is hedged on its own)
        if job.tree_at + 1 < len(self.ancestors()):
            return self._ask_tree(job, now)
        if job.tree_refs:
            return []  # one asked before may still answer
        job.tree_failed = True
        if job.asks:
            return []  # neighbours may still answer
        return self._finish(job, None, f"{job.key[0]}/{job.key[1]}: no ancestor answered",
                            now)

    def _up_hedge(self, job: _Fetch, at: int, now: float) -> list:
        if job.done or job.tree_at != at:  # answered, or the tree moved on already
            return []
        asked = self.ancestors()[at] if at < len(self.ancestors()) else "?"
        return [self._record("tree_hedge", video=job.key[0], index=job.key[1], slow=asked),
                *self._ask_tree(job, now)]

    def _checked(self, job: _Fetch, sender: str, cls: str, r: Response,
                 then: Callable[[bytes, int, Root | None], list],
                 failed: Callable[[], list]) -> list:
        """``then(data, version, root)`` for an answer whose version and digest check (a
        newer version's manifest is fetched first), else ``failed()``."""
        if r.status != 200:
            return failed()
        try:
            ver = int(r.headers.get(VERSION_HEADER, "0"))
        except (TypeError, ValueError):
            ver = 0
        # an invalidation that came while the ask was out raises what the job needs: an
        # answer of the old version, sent before the sender knew, is not served
        job.version = max(job.version, self.cache.floor(job.key[0]))
        if ver < job.version:
            return failed()
        root = Root.CACHE if r.headers.get(ROOT_HEADER) == Root.CACHE else Root.ORIGIN

        def check(m: Manifest | None, error: str) -> list:
            m = self.versions.get((job.key[0], ver))
            if m is None or not m.digest_ok(job.key[1], r.body):
                return [self._reject("bad_digest", sender, cls), *failed()]
            return then(r.body, ver, root)

        if (job.key[0], ver) in self.versions:
            return check(None, "")
        return self._with_manifest(job.key[0], ver, check)

    def _mesh_answer(self, job: _Fetch, peer: str, r: Response, now: float) -> list:
        job.asks.discard(r.ref)
        if job.done:
            return []

        def got(data: bytes, ver: int, _root: Root | None) -> list:
            if job.done:
                return []
            self.cache.put(job.key, ver, data, "mesh", self.now)
            return self._finish(job, (data, ver, Source.MESH, Root.CACHE), "", self.now)

        def failed() -> list:
            now = self.now
            if job.done or job.asks:
                return []
            if job.tree_at < 0:          # every neighbour said no: the tree at once
                return self._ask_tree(job, now)
            if job.tree_failed:          # the tree had already failed
                return self._finish(job, None, f"{job.key[0]}/{job.key[1]}: "
                                                "no ancestor answered", now)
            return []

        return self._checked(job, peer, "mesh", r, got, failed)

    def _tree_answer(self, job: _Fetch, name: str, r: Response, now: float) -> list:
        if job.done or r.ref not in job.tree_refs:
            return []
        job.tree_refs.discard(r.ref)

        def got(data: bytes, ver: int, root: Root | None) -> list:
            if job.done:
                return []
            self.cache.put(job.key, ver, data, "tree", self.now)
            return self._finish(job, (data, ver, Source.TREE, root or Root.ORIGIN), "",
                                self.now)

        return self._checked(job, name, "tree", r, got, lambda: self._tree_failed(job, self.now))

    def _hedge(self, job: _Fetch, now: float) -> list:
        if job.done or job.tree_at >= 0:
            return []
        return self._ask_tree(job, now)

    def _finish(self, job: _Fetch, got: Got | None, error: str, now: float) -> list:
        job.done = True
        if self._fetches.get(job.key) is job:
            del self._fetches[job.key]
        out: list = []
        for done in job.waiters:
            out += done(got, error, now)
        return out

    def _fetch_request(self, ev: FetchRequest, now: float) -> list:
        cls = "mesh" if ev.cache_only else "tree"
        try:
            video, index = ev.body["video"], ev.body["index"]
            min_version = int(ev.body["min_version"])
        except (KeyError, TypeError, ValueError):
            return [self._reject("malformed", ev.sender, "fetch"),
                    Reply(ev.ref, 400, b"malformed fetch\n")]
        key = self.key_ok(video, index, now)
        if key is None:
            return [Reply(ev.ref, 404, b"no such segment\n")]

        def answer(got: Got | None, error: str, at: float) -> list:
            if got is None:
                return [Reply(ev.ref, 504, f"{error}\n".encode())]
            data, version, source, root = got
            if version < min_version:
                return [Reply(ev.ref, 409, b"only an older version\n")]
            return [self._record("upstream_serve", to=ev.sender, video=key[0], index=key[1],
                                 version=version, source=source.value, bytes=len(data),
                                 cls=cls),
                    Reply(ev.ref, 200, data, {VERSION_HEADER: str(version),
                                              SOURCE_HEADER: source.value,
                                              ROOT_HEADER: root.value},
                          content_type="application/octet-stream", cls=cls)]

        if ev.cache_only:
            entry = self.cache.get(key, now, min_version=max(min_version,
                                                             self.cache.floor(key[0])))
            if entry is None:
                return [Reply(ev.ref, 404, b"not cached\n")]
            return answer((entry.data, entry.version, Source.cached(entry.origin), Root.CACHE),
                          "", now)
        return self.obtain(key, now, answer)

    # -- mesh data (receiveMeshData) --------------------------------------------------------
    def _mesh_data(self, ev: MeshData, now: float) -> list:
        b = ev.body
        try:
            route, hop = [str(n) for n in b["route"]], int(b["hop"])
            video, index, version = str(b["video"]), int(b["index"]), int(b["version"])
            keep = {str(n) for n in b["keep"]}
            push_id = str(b["push_id"])
        except (KeyError, TypeError, ValueError):
            return [self._reject("malformed", ev.sender, "mesh"),
                    Reply(ev.ref, 400, b"malformed mesh data\n")]
        if not (0 < hop < len(route) and route[hop] == self.s.name
                and route[hop - 1] == ev.sender):
            return [self._reject("bad_route", ev.sender, "mesh"),
                    Reply(ev.ref, 400, b"not on this message's route\n")]
        problem = P.route_problem(route)
        if problem is not None:
            return [self._reject("bad_route", ev.sender, "mesh"),
                    Reply(ev.ref, 400, f"{problem}\n".encode())]
        if video not in self.catalogue or not 0 <= index < self.catalogue[video].n_segments:
            return [self._reject("unknown_segment", ev.sender, "mesh"),
                    Reply(ev.ref, 404, b"no such segment\n")]
        if version < self.cache.floor(video):
            return [self._reject("stale_version", ev.sender, "mesh"),
                    Reply(ev.ref, 409, b"stale version\n")]

        def check(_m: Manifest | None, error: str) -> list:
            m = self.versions.get((video, version))
            if m is None:
                return [Reply(ev.ref, 503, b"manifest unavailable\n")]
            if not m.digest_ok(index, ev.payload):
                return [self._reject("bad_digest", ev.sender, "mesh"),
                        Reply(ev.ref, 422, b"digest does not match the manifest\n")]
            dest = hop == len(route) - 1
            kept = dest or self.s.name in keep
            if kept:
                self.cache.put((video, index), version, ev.payload, "prefetch", self.now)
            out: list = [self._record("mesh_rx", sender=ev.sender, video=video, index=index,
                                      version=version, push_id=push_id, dest=dest, kept=kept,
                                      bytes=len(ev.payload))]
            if not dest:
                out.append(self._forward(route[hop + 1], {**b, "hop": hop + 1}, ev.payload,
                                         push_id))
            out.append(Reply(ev.ref, 200, b"ok\n"))
            return out

        if (video, version) in self.versions:
            return check(None, "")
        return self._with_manifest(video, version, check)

    def _forward(self, peer: str, body: dict, payload: bytes, push_id: str) -> Send:
        def outcome(r: Response, now: float) -> list:
            if r.status == 200:
                return []
            status = r.status or f"error {r.body.decode(errors='replace')[:40]}"
            return [self._record("mesh_forward_failed", to=peer, push_id=push_id,
                                 status=status)]

        return self._ask(peer, "mesh_data", body, outcome, payload=payload, path="/mesh",
                         cls="prefetch", port=self.s.push_port)

    # -- control: routing tables, push orders, invalidations ----------------------------------
    def _control(self, ev: Control, now: float) -> list:
        if ev.msg_type == "routing" and ev.role == "master":
            table, reason = self._checked_table(dict(ev.body))
            if table is None:
                return [self._reject(reason, self.s.master, "routing"),
                        Reply(ev.ref, 400, b"not a routing table of this run\n")]
            return [*self._install(table), Reply(ev.ref, 200, b"ok\n")]
        if ev.msg_type == "push_order" and ev.role == "master":
            return self.push_order(ev.ref, dict(ev.body))
        if ev.msg_type == "invalidate":
            return [*self.invalidate(ev.sender, dict(ev.body), now), Reply(ev.ref, 200, b"ok\n")]
        return [self._reject("wrong_type", ev.sender, "control"),
                Reply(ev.ref, 400, b"unexpected message type\n")]

    def set_table(self, table: dict) -> list:
        """Take the master's routing ``table`` (refused when it is no place in a tree of
        this run; ignored when not newer than the one held)."""
        checked, reason = self._checked_table(table)
        if checked is None:
            return [self._reject(reason, self.s.master, "routing")]
        return self._install(checked)

    def _checked_table(self, table: dict) -> tuple[dict | None, str]:
        """The table with its fields typed, or None and the reason to refuse it."""
        try:
            table = {**table, "version": int(table["version"]), "parent": str(table["parent"]),
                     "children": [str(c) for c in table["children"]],
                     "ancestors": [str(a) for a in table["ancestors"]]}
        except (KeyError, TypeError, ValueError):
            return None, "malformed"
        if self.routing_problem(table["parent"], table["children"],
                                table["ancestors"]) is not None:
            return None, "bad_routing"
        return table, ""

    def _install(self, table: dict) -> list:
        if self.table and table["version"] <= self.table["version"]:
            return []
        old_parent = self.table["parent"] if self.table else None
        self.table = table
        out: list = [self._record("routing", version=table["version"], tier=table.get("tier"),
                                  parent=table["parent"], children=table["children"])]
        if old_parent != table["parent"]:  # re-joined on the new parent's group by the live round
            out += self._leave_all()
        return out

    def routing_problem(self, parent: str, children: list[str],
                        ancestors: list[str]) -> str | None:
        """Why a table cannot be this helper's place in a tree of this run, or None: its
        parent and ancestors (the parent first, the master last) are nodes of the run,
        its children other helpers, nobody twice and this helper nowhere."""
        s = self.s
        if not ancestors or ancestors[0] != parent or ancestors[-1] != s.master:
            return "ancestors must run from the parent up to the master"
        if not all(s.is_peer(a) for a in ancestors[:-1]) or s.master in ancestors[:-1]:
            return "an ancestor is no other helper of this run"
        if not all(s.is_peer(c) for c in children):
            return "a child is no other helper of this run"
        if len(set(ancestors) | set(children)) != len(ancestors) + len(children):
            return "a node named twice"
        return None

    def push_order(self, ref: int, b: dict) -> list:
        """The master asks this helper to push its own copy of a segment along a route that
        starts here (the copy nearest the destination); 404 when the copy is gone, so the
        master sends it itself."""
        try:
            video, index, version = str(b["video"]), int(b["index"]), int(b["version"])
            route, push_id = [str(n) for n in b["route"]], str(b["push_id"])
            keep = [str(n) for n in b.get("keep", [])]
        except (KeyError, TypeError, ValueError):
            return [self._reject("malformed", "master", "push_order"),
                    Reply(ref, 400, b"malformed push order\n")]
        if len(route) < 2 or route[0] != self.s.name or not self.s.is_peer(route[1]) \
                or P.route_problem(route) is not None:
            return [self._reject("bad_route", "master", "push_order"),
                    Reply(ref, 400, b"not a route from this helper\n")]
        entry = self.cache.peek((video, index))
        if entry is None or entry.version < version:
            return [self._record("push_order_missed", push_id=push_id, video=video,
                                 index=index),
                    Reply(ref, 404, b"no such copy\n")]
        body = {"video": video, "index": index, "version": entry.version, "route": route,
                "hop": 1, "push_id": push_id, "keep": keep, "plan": str(b.get("plan", ""))}
        return [self._record("push_sent", push_id=push_id, video=video, index=index,
                             to=route[1], dest=route[-1], bytes=len(entry.data),
                             source=Source.cached(entry.origin).value),
                self._forward(route[1], body, entry.data, push_id),
                Reply(ref, 200, b"ok\n")]

    def invalidate(self, sender: str, b: dict, now: float) -> list:
        try:
            inv_id, video, version = str(b["inv_id"]), str(b["video"]), int(b["version"])
            issued, route = float(b["issued"]), list(b["route"])
        except (KeyError, TypeError, ValueError):
            return [self._reject("malformed", sender, "invalidate")]
        if inv_id in self.seen_invalidations:
            return []
        self.seen_invalidations.add(inv_id)
        if video not in self.catalogue:
            return []
        dropped = self.cache.invalidate(video, version)
        out: list = [self._record("invalidated", video=video, version=version, issued=issued,
                                  inv_id=inv_id, sender=sender, dropped=len(dropped),
                                  delay_ms=round((self.s.t0 + now - issued) * 1000, 3))]
        targets = [c for c in self.children() if c != sender]
        targets += [n for n in self.selector.neighbours if n != sender and n not in targets]
        fwd = {**b, "route": [*route, self.s.name]}
        out += [Send(peer, "invalidate", fwd, path="/control", cls="control",
                     timeout_s=CONTROL_TIMEOUT_S) for peer in targets if peer in self.s.addresses]
        out += self._with_manifest(video, version, lambda m, e: [])
        return out

    # -- peers: probes, bandwidth, neighbour choice -------------------------------------------
    def probe_targets(self) -> list[str]:
        """This round's peers to probe: the neighbours, then a rotating sample of the
        others (``PEER_SAMPLE`` a round), so the cost stays flat as helpers are added and
        every peer is still measured within a few rounds (with more than
        :data:`PEER_STATE_MAX` peers: within ``peers / PEER_SAMPLE`` rounds, the parent
        probed each round too, and only a bounded set of peers remembered)."""
        neighbours = self.selector.neighbours
        if not self._few:
            return self._many_targets(neighbours)
        others = [p for p in self.peer_rtt if p not in neighbours]
        if not others:
            return list(neighbours)
        start = (self.rounds * PEER_SAMPLE) % len(others)
        sample = (others[start:] + others[:start])[:PEER_SAMPLE]
        self.rounds += 1
        return [*neighbours, *sample]

    def _parent_peer(self) -> str | None:
        parent = self.table["parent"] if self.table else None
        return parent if parent is not None and self.s.is_peer(parent) else None

    def _many_targets(self, neighbours: tuple[str, ...]) -> list[str]:
        """The neighbours, the parent, and the next ``PEER_SAMPLE`` others of the address
        book from the cursor on; then the peers remembered are cut back to the bound."""
        skip = {*neighbours, self.s.name, self.s.master}
        targets = list(neighbours)
        parent = self._parent_peer()
        if parent is not None and parent not in skip:
            targets.append(parent)
            skip.add(parent)
        names, n = self._names, len(self._names)
        taken = looked = 0
        while taken < PEER_SAMPLE and looked < n:
            p = names[self._cursor]
            self._cursor = (self._cursor + 1) % n
            looked += 1
            if p not in skip:
                targets.append(p)
                skip.add(p)
                taken += 1
        self.rounds += 1
        for p in targets:
            if p not in self.peer_rtt:
                self.peer_rtt[p] = deque(maxlen=5)
        self._forget(set(targets))
        return targets

    def _forget(self, keep: set[str]) -> None:
        """Cut the peers remembered back to :data:`PEER_STATE_MAX` (never one in ``keep``):
        first those that never answered, then the slowest, the older first among equals."""
        excess = len(self.peer_rtt) - PEER_STATE_MAX
        if excess <= 0:
            return
        order = sorted(((bool(s), -statistics.median(s) if s else 0.0, i, p)
                        for i, (p, s) in enumerate(self.peer_rtt.items()) if p not in keep))
        for *_, p in order[:excess]:
            del self.peer_rtt[p]
            self.peer_bw.pop(p, None)
            self.peer_bw_at.pop(p, None)
            self.peer_bw_samples.pop(p, None)
            self._bw_confirm.discard(p)

    def _neighbour_round(self, now: float) -> list:
        targets = self.probe_targets()
        out: list = [Send(p, "peer_probe", {}, via="udp", cls="control",
                          delay_s=i * PROBE_STAGGER_S) for i, p in enumerate(targets)]
        out.append(SetTimer("neighbours_measured",
                            now + len(targets) * PROBE_STAGGER_S + PROBE_WAIT_S))
        out.append(SetTimer("neighbours", now + self.s.neighbour_interval_s))
        return out

    def _peer_rtt(self, ev: PeerRtt, now: float) -> list:
        if ev.peer in self.peer_rtt and 0 <= ev.rtt_ms < 10_000:
            self.peer_rtt[ev.peer].append(ev.rtt_ms)
        return []

    def _measured(self, now: float) -> list:
        """The probes are in: refresh stale bandwidth estimates of the peers that matter,
        then choose."""
        latency = {p: statistics.median(s) for p, s in self.peer_rtt.items() if s}
        nearest = sorted(latency, key=latency.get)[:self.selector.k + 2]
        probe_set = set(self.selector.neighbours) | set(nearest)
        stale = sorted(p for p in probe_set if p in latency and self._bw_stale(p, now))
        self._round_latency = latency
        if not stale:
            return self._choose(now)
        self._bw_pending = set(stale)
        return [*(MeasureBandwidth(p, BW_PROBE_BYTES) for p in stale),
                SetTimer("bandwidth_wait", now + BW_WAIT_S)]

    def _bw_stale(self, peer: str, now: float) -> bool:
        """Whether ``peer`` gets a bandwidth train this round: it has fewer than
        :data:`BW_SAMPLES`, its last one disagreed with the estimate, or the estimate is
        older than :data:`BW_PROBE_EVERY_S`."""
        return (len(self.peer_bw_samples.get(peer, ())) < BW_SAMPLES
                or peer in self._bw_confirm
                or now - self.peer_bw_at.get(peer, -1e9) > BW_PROBE_EVERY_S)

    def _bandwidth_sample(self, ev: BandwidthSample, now: float) -> list:
        peer = ev.peer
        if ev.seconds > 0.0002 and ev.nbytes >= 4096 and (self._few or peer in self.peer_rtt):
            sample = ev.nbytes * 8 / ev.seconds / 1e6
            old = self.peer_bw.get(peer)
            samples = self.peer_bw_samples.setdefault(peer, deque(maxlen=BW_SAMPLES))
            samples.append(sample)
            # a train far off the estimate asks for one more (not a chain of them: the
            # confirming train is believed as one vote of the median, whatever it says)
            if (peer not in self._bw_confirm and old is not None
                    and not old / BW_DISAGREE <= sample <= old * BW_DISAGREE):
                self._bw_confirm.add(peer)
            else:
                self._bw_confirm.discard(peer)
            self.peer_bw[peer] = statistics.median(samples)
            self.peer_bw_at[peer] = now
        if peer in self._bw_pending:
            self._bw_pending.discard(peer)
            if not self._bw_pending:
                return self._choose(now)
        return []

    def _choose(self, now: float) -> list:
        latency, self._round_latency, self._bw_pending = self._round_latency, None, set()
        if latency is None:
            return []
        known = sorted(self.peer_bw.values())
        unknown_bw = known[len(known) // 2] if known else 10.0  # not measured yet: typical
        metrics = {p: PeerMetric(latency_ms=lat, bw_mbit=self.peer_bw.get(p, unknown_bw))
                   for p, lat in latency.items()}
        out: list = [self._record("peers", metrics={
            p: [round(m.latency_ms, 3), round(m.bw_mbit, 2)] for p, m in metrics.items()})]
        change = self.selector.update(metrics, now)
        if change.added or change.dropped:
            out.append(self._record("neighbours", neighbours=list(change.neighbours),
                                    added=list(change.added), dropped=list(change.dropped),
                                    reasons=dict(change.reasons)))
        report = {p: {"latency_ms": round(metrics[p].latency_ms, 3),
                      "bw_mbit": round(metrics[p].bw_mbit, 3)}
                  for p in change.neighbours if p in metrics}
        inventory = b""  # unchanged since the last report: the master keeps that one
        if self.cache.changes != self._reported_changes:
            self._reported_changes = self.cache.changes
            now_held = json.dumps([[k[0], k[1], self.cache.peek(k).version]
                                   for k in list(self.cache.keys())]).encode()
            if now_held != self.reported_inventory:
                inventory = self.reported_inventory = now_held
        # the routing table this helper holds: the master sends it again if it is not the one
        # it last sent (a table lost on the way, or a helper that started afresh)
        held = self.table["version"] if self.table else 0
        out.append(Send(self.s.master, "neighbours", {"neighbours": report, "table": held},
                        inventory, path="/control", cls="control",
                        timeout_s=CONTROL_TIMEOUT_S))
        return out

    # -- telemetry --------------------------------------------------------------------------
    def _send_telemetry(self, now: float) -> list:
        batch = self.telemetry.drain(TELEMETRY_BATCH)
        if not batch or self.s.engine is None:
            return []  # nothing to send, or no engine in this run (no prediction)

        def outcome(r: Response, at: float) -> list:
            if r.status == 0:
                return [self._record("telemetry_lost", events=len(batch))]
            if r.status != 200:
                return [self._record("telemetry_refused", status=r.status, events=len(batch),
                                     answer=r.body[:200].decode(errors="replace"))]
            return []

        return [self._ask(self.s.engine, "telemetry", {"events": batch}, outcome,
                          path="/telemetry", cls="telemetry", timeout_s=CONTROL_TIMEOUT_S)]

    # -- live channels ------------------------------------------------------------------------
    def _channel(self, video: str) -> int:
        return self.live_ids.index(video) + 1

    def _leave_all(self) -> list:
        out: list = []
        for video in list(self.live_groups):
            del self.live_groups[video]
            out += [LeaveGroup(video), self._record("live_leave", video=video)]
        return out

    def _live_round(self, now: float) -> list:
        """Join the parent's relay group of each channel this helper's viewers or children
        may want; leave the others."""
        out: list = []
        for video in self.live_ids:
            wanted = bool(self.children()) or self.live_wanted_until.get(video, -1) > now
            if wanted and self.table and video not in self.live_groups:
                parent = self.table["parent"]
                addr = self.s.addresses.get(parent)
                if addr is None:
                    continue
                group = relay_group(addr, self._channel(video))
                self.live_groups[video] = group
                out += [JoinGroup(video, group, parent),
                        self._record("live_join", video=video, group=group, parent=parent)]
            elif not wanted and video in self.live_groups:
                del self.live_groups[video]
                out += [LeaveGroup(video), self._record("live_leave", video=video)]
        self.reasm.expire(now)
        out.append(SetTimer("live", now + 1.0))
        return out

    def _live_datagram(self, ev: LiveDatagram, now: float) -> list:
        try:
            chunk = P.decode_chunk(ev.dgram)
        except P.ProtocolError:
            return [self._reject("malformed", "multicast", "live")]
        if chunk.video_id != ev.video:
            return []
        out: list = []
        if self.children():
            out.append(Relay(ev.video, relay_group(self.s.addresses[self.s.name],
                                                   self._channel(ev.video)), ev.dgram))
        done = self.reasm.add(chunk, now)
        if done is not None:
            out += self._live_segment(*done, now)
        return out

    def _live_whole(self, ev: LiveSegment, now: float) -> list:
        if ev.video not in self.live_ids:
            return []
        out: list = []
        if self.children():
            out.append(Relay(ev.video, relay_group(self.s.addresses[self.s.name],
                                                   self._channel(ev.video)), b"", ev))
        return out + self._live_segment((ev.video, ev.index), ev.version, ev.data, now)

    def _live_segment(self, key: tuple[str, int], version: int, data: bytes,
                      now: float) -> list:
        def check(_m: Manifest | None, error: str) -> list:
            m = self.versions.get((key[0], version))
            if m is None:
                return []
            if not m.digest_ok(key[1], data):
                return [self._reject("bad_digest", "multicast", "live")]
            self.cache.put(key, version, data, "live", self.now)
            return [self._record("live_rx", video=key[0], index=key[1], version=version,
                                 parent=self.table["parent"] if self.table else "",
                                 bytes=len(data))]

        if (key[0], version) in self.versions:
            return check(None, "")
        return self._with_manifest(key[0], version, check)

    # -- timers and responses -------------------------------------------------------------------
    def _timer(self, ev: Timer, now: float) -> list:
        name = ev.name
        if name.startswith("hedge:"):
            return self._hedge(ev.token, now)
        if name.startswith("uphedge:"):
            return self._up_hedge(*ev.token, now)
        if name == "neighbours":
            return self._neighbour_round(now)
        if name == "neighbours_measured":
            return self._measured(now)
        if name == "bandwidth_wait":
            return self._choose(now) if self._round_latency is not None else []
        if name == "telemetry":
            return [*self._send_telemetry(now), SetTimer("telemetry", now + 2.0)]
        if name == "live":
            return self._live_round(now)
        if name == "housekeeping":
            return [self._record("cache_state", used_bytes=self.cache.used_bytes,
                                 capacity_bytes=self.cache.capacity_bytes,
                                 entries=len(self.cache)),
                    SetTimer("housekeeping", now + 5.0)]
        return []

    def _response(self, ev: Response, now: float) -> list:
        on = self._on_response.pop(ev.ref, None)
        return on(ev, now) if on is not None else []

