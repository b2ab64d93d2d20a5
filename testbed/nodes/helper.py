"""The helper daemon: a prefetch cache that serves viewers, a place in the master's tree,
``k`` mesh neighbours, signed mesh data, live relay, invalidations and telemetry
(to the prediction engine).

HTTP on port 8080:

- viewers (no credentials): ``GET /manifest/{video}``, ``GET /mpd/{video}``,
  ``GET /seg/{video}/{index}`` (header ``X-Viewer``), ``POST /telemetry``;
- nodes (signed envelopes, :mod:`testbed.core.protocol`): ``POST /fetch`` (a child or
  peer asks for a segment; goes up the tree on a miss), ``POST /peer-fetch`` (cache only),
  ``POST /mesh`` (mesh data: prefetch pushes, forwarded along their route),
  ``POST /control`` (routing tables, invalidations);
- ``GET /probe?bytes=N``: filler for bandwidth estimates between peers.

UDP 7000 answers the master's pingback probes and peers' probes; live channels arrive on
the parent's relay group (``239.77.N.C``, port 7100) and are relayed on this helper's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import statistics
import time
from collections import deque

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from testbed.core import protocol as P
from testbed.core.cache import SegmentCache
from testbed.core.content import (
    CatalogueConfig,
    ManifestError,
    build_catalogue,
    iso_datetime,
    render_mpd,
)
from testbed.core.mesh import NeighbourSelector, PeerMetric
from testbed.core.multicast import relay_group
from testbed.core.protocol import PUSH_PORT
from testbed.core.security import AuthError
from testbed.core.telemetry import TelemetryBuffer, telemetry_record
from testbed.nodes import common as C
from testbed.nodes.manifests import ManifestBook

log = logging.getLogger("meshcast.helper")
#: version, source, and root: "origin" when the bytes left the master for this request,
#: "cache" when some helper's cache (this one's, a neighbour's or an ancestor's) had them
SEG_HEADERS = ("X-Meshcast-Version", "X-Meshcast-Source", "X-Meshcast-Root")
PROBE_MAX = 256 * 1024
BW_PROBE_BYTES = 12 * 1024  # within TCP's first flight (10 segments), so one train
BW_PROBE_EVERY_S = 120.0  # an active bandwidth probe per peer at most this often
PEER_SAMPLE = 4          # non-neighbours probed per round (besides the neighbours)


class FetchFailed(Exception):
    """No node up the tree (or in the mesh) answered with a valid segment."""


class Helper:
    def __init__(self, cfg: C.NodeConfig):
        self.cfg = cfg
        self.clock = C.Clock(cfg.t0)
        self.events = C.EventLog(cfg.run_dir / "logs" / f"{cfg.name}.jsonl", cfg.name, self.clock)
        self.traffic = C.Traffic()
        d = cfg.delivery
        self.cache = SegmentCache(int(d["cache_mb"] * 1_000_000), d["eviction"])
        self.catalogue = build_catalogue(CatalogueConfig(**cfg.catalogue))
        self.live_ids = self.catalogue.ids("live")
        self.selector = NeighbourSelector(k=int(d["mesh_degree"]))
        self.mesh_pull = bool(d.get("mesh_pull", False))
        #: pushes travel to the port the shaped links carry in their lower-priority class
        self.push_port = PUSH_PORT if d.get("push_priority", "low") == "low" else C.HTTP_PORT
        self.salt = bytes.fromhex(cfg.extra["telemetry_salt"])
        self.live_t0 = float(cfg.extra["live_t0"])
        self.table: dict | None = None
        self.peer_rtt: dict[str, deque] = {p: deque(maxlen=5) for p in cfg.helpers
                                           if p != cfg.name}
        self.peer_bw: dict[str, float] = {}
        self.peer_bw_at: dict[str, float] = {}  # when each estimate was last refreshed
        self.rounds = 0
        self.reported_inventory = b""
        self.pending: dict[tuple[str, int], asyncio.Future] = {}
        self.live_socks: dict[str, object] = {}       # video -> joined socket
        self.live_wanted_until: dict[str, float] = {}  # video -> run time viewers last asked
        self.seen_invalidations: set[str] = set()
        self.telemetry = TelemetryBuffer()
        self.tasks: list[asyncio.Task] = []

    # -- set-up -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        identity = await asyncio.to_thread(C.load_identity, self.cfg)
        self.secure = C.Secure(identity, bytes.fromhex(self.cfg.ca_public_key), self.clock,
                               self.events, C.load_directory(self.cfg))
        self.book = ManifestBook(self.secure.verifier)
        from testbed.core.protocol import Reassembler
        self.reasm = Reassembler()
        self.http = ClientSession(timeout=ClientTimeout(total=10, connect=3))
        runner = await C.serve_http([
            web.get("/manifest/{video}", self.h_manifest),
            web.get("/mpd/{video}", self.h_mpd),
            web.get("/seg/{video}/{index}", self.h_segment),
            web.post("/telemetry", self.h_telemetry),
            web.post("/fetch", self.h_fetch),
            web.post("/peer-fetch", self.h_peer_fetch),
            web.post("/mesh", self.h_mesh),
            web.post("/control", self.h_control),
            web.get("/probe", self.h_probe),
            web.get("/status", self.h_status),
        ], self.cfg.ip, also=(PUSH_PORT,))
        self.udp = await C.open_udp(self.on_udp, self.cfg.ip, C.UDP_PORT)
        self.relay_out = C.multicast_sender(self.cfg.ip)
        d = self.cfg.delivery
        self.tasks = C.watch(self.events, [
            C.every(float(d["neighbour_interval_s"]), self.neighbour_round, "neighbours",
                    first_delay=0.5),
            C.every(2.0, self.send_telemetry, "telemetry", first_delay=2.0),
            C.every(1.0, self.live_round, "live"),
            C.every(5.0, self.housekeeping, "housekeeping", first_delay=5.0),
        ])
        C.announce_ready(self.cfg, self.events, ip=self.cfg.ip,
                         cache_bytes=self.cache.capacity_bytes)
        try:
            await stop.wait()
        finally:
            await self.shutdown(runner)

    async def shutdown(self, runner: web.AppRunner) -> None:
        for t in self.tasks:
            t.cancel()
        for video in list(self.live_socks):
            self._leave_live(video)
        with contextlib.suppress(Exception):
            await self.send_telemetry()
        C.closing_records(self.events, self.traffic)
        self.events.write("cache", used_bytes=self.cache.used_bytes,
                          capacity_bytes=self.cache.capacity_bytes, **self.cache.stats)
        self.events.write("rejections", counts=dict(self.secure.rejected))
        await self.http.close()
        await runner.cleanup()
        self.events.close()

    # -- small helpers ----------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def ancestors(self) -> list[tuple[str, str]]:
        """(name, ip) of the nodes up the tree: parent, its parent, ..., the master."""
        master = (self.cfg.master["name"], self.cfg.master["ip"])
        if not self.table:
            return [master]
        out = []
        for name in self.table["ancestors"]:
            ip = self.cfg.helpers.get(name) or (self.cfg.master["ip"]
                                                if name == master[0] else None)
            if ip:
                out.append((name, ip))
        return out or [master]

    def children(self) -> list[str]:
        return list(self.table["children"]) if self.table else []

    def live_edge(self, video: str) -> int:
        return self.catalogue[video].live_edge(self.now(), self.live_t0)

    def _key_ok(self, video: str, index_text: str) -> tuple[str, int] | None:
        if video not in self.catalogue:
            return None
        try:
            index = int(index_text)
        except ValueError:
            return None
        v = self.catalogue[video]
        if not 0 <= index < v.n_segments:
            return None
        if v.kind == "live" and index > self.live_edge(video):
            return None
        return video, index

    async def manifest(self, video: str, min_version: int = 0):
        """The verified manifest of ``video`` (at least ``min_version``), from the master."""
        m = self.book.get(video)
        if m is not None and m.version >= max(min_version, self.cache.floor(video)):
            return m
        url = f"http://{self.cfg.master['ip']}:{C.HTTP_PORT}/manifest/{video}"
        async with self.http.get(url) as r:
            body = await r.read()
            self.traffic.received("control", len(body))
            if r.status != 200:
                raise FetchFailed(f"manifest {video}: HTTP {r.status}")
        try:
            return self.book.add(json.loads(body))
        except (ManifestError, AuthError, ValueError) as exc:
            self.secure.rejected.note(self.events, getattr(exc, "reason", "bad_manifest"),
                                      self.cfg.master["name"], "manifest")
            raise FetchFailed(f"manifest {video}: {exc}") from None

    async def post(self, ip: str, path: str, data: bytes, cls: str,
                   timeout: float = 10.0, port: int = C.HTTP_PORT) -> tuple[int, bytes, dict]:
        self.traffic.sent(cls, len(data))
        async with self.http.post(f"http://{ip}:{port}{path}", data=data,
                                  timeout=ClientTimeout(total=timeout)) as r:
            body = await r.read()
            self.traffic.received(cls, len(body))
            return r.status, body, dict(r.headers)

    # -- viewers ----------------------------------------------------------------------
    async def h_manifest(self, request: web.Request) -> web.Response:
        video = request.match_info["video"]
        if video not in self.catalogue:
            return web.json_response({"error": f"unknown video {video[:64]!r}"}, status=404)
        try:
            await self.manifest(video)
        except (FetchFailed, ClientError, asyncio.TimeoutError) as exc:
            return web.json_response({"error": str(exc)}, status=504)
        body = json.dumps(self.book.signed[video]).encode()
        self.traffic.sent("viewer", len(body))
        return web.Response(body=body, content_type="application/json")

    async def h_mpd(self, request: web.Request) -> web.Response:
        video = request.match_info["video"]
        if video not in self.catalogue:
            return web.Response(text=f"unknown video {video[:64]!r}\n", status=404)
        try:
            m = await self.manifest(video)
        except (FetchFailed, ClientError, asyncio.TimeoutError) as exc:
            return web.Response(text=f"{exc}\n", status=504)
        base = f"http://{self.cfg.ip}:{C.HTTP_PORT}"
        start = None
        if m.kind == "live":  # the wall-clock time of the channel's first segment
            start = iso_datetime(self.cfg.t0 + self.live_t0)
        text = render_mpd(m, base, availability_start=start)
        return web.Response(text=text, content_type="application/dash+xml")

    async def h_segment(self, request: web.Request) -> web.Response:
        """requestContent: the cache first, else (mesh neighbours, then) the tree."""
        t0 = time.monotonic()
        key = self._key_ok(request.match_info["video"], request.match_info["index"])
        if key is None:
            return web.Response(text="no such segment\n", status=404)
        viewer = request.headers.get("X-Viewer", "")[:64]
        try:
            data, version, source, root = await self.obtain(key)
        except (FetchFailed, ClientError, asyncio.TimeoutError) as exc:
            self.events.write("serve_failed", video=key[0], index=key[1], error=str(exc)[:200])
            return web.Response(text=f"unavailable: {exc}\n", status=504)
        latency_ms = (time.monotonic() - t0) * 1000
        anon = telemetry_record("request", viewer, self.salt, key[0],
                                key[1] * self.catalogue[key[0]].segment_s, self.now(),
                                self.cfg.name)
        self.telemetry.add({**anon, "index": key[1]})
        self.events.write("serve", viewer=anon["viewer"], video=key[0], index=key[1],
                          version=version, bytes=len(data), source=source, root=root,
                          latency_ms=round(latency_ms, 3))
        if self.catalogue[key[0]].kind == "live":
            self.live_wanted_until[key[0]] = self.now() + 30.0
        self.traffic.sent("viewer", len(data))
        return web.Response(body=data, content_type="video/mp4",
                            headers={SEG_HEADERS[0]: str(version), SEG_HEADERS[1]: source})

    async def h_telemetry(self, request: web.Request) -> web.Response:
        """A viewer host's batch of player events; anonymised before it leaves this helper."""
        raw = await request.read()
        self.traffic.received("telemetry", len(raw))
        try:
            batch = json.loads(raw)
            viewer = batch["viewer"]
            events = batch["events"]
            if not isinstance(viewer, str) or not isinstance(events, list) or len(events) > 1000:
                raise ValueError("viewer must be text and events a list of <= 1000")
            for e in events:
                rec = telemetry_record(e["kind"], viewer, self.salt, e["video"],
                                       float(e["playhead_s"]), float(e["at"]), self.cfg.name)
                self.telemetry.add(rec)
                if e["video"] in self.live_ids:
                    self.live_wanted_until[e["video"]] = self.now() + 30.0
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"telemetry: {exc}"[:200]}, status=400)
        return web.json_response({"ok": len(events)})

    # -- obtaining segments -----------------------------------------------------------
    async def obtain(self, key: tuple[str, int]) -> tuple[bytes, int, str, str]:
        """(bytes, version, source, root): from the cache, else one shared fetch per segment.

        ``root`` says where the bytes came from: "origin" only for a tree fetch that the
        master itself answered (directly or through ancestors); any cache is "cache"."""
        video, index = key
        m = await self.manifest(video)
        entry = self.cache.get(key, self.now(), min_version=m.version)
        if entry is not None:
            return entry.data, entry.version, f"cache_{entry.origin}", "cache"
        fut = self.pending.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self.pending[key] = fut
            try:
                result = await self._fetch(key, m.version)
                fut.set_result(result)
            except BaseException as exc:
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: waiters re-raise it themselves
                raise
            finally:
                self.pending.pop(key, None)
            return result
        return await asyncio.shield(fut)

    async def _fetch(self, key: tuple[str, int], version: int) -> tuple[bytes, int, str, str]:
        """Mesh neighbours first (all at once), the tree when none has it; a neighbour that
        is slow to say (behind a busy link) does not hold the viewer up: after a short
        hedge the tree fetch starts too, and the first good answer wins."""
        asks = []
        if self.mesh_pull:
            asks = [asyncio.get_running_loop().create_task(self._ask(
                peer, self.cfg.helpers[peer], "/peer-fetch", key, version, "mesh", timeout=2.0))
                for peer in self.pull_peers()]
        tree: asyncio.Task | None = None
        if not asks:
            tree = asyncio.get_running_loop().create_task(self._from_tree(key, version))
        try:
            pending = set(asks)
            hedge = asyncio.get_running_loop().time() + self.hedge_s()
            while pending or tree is not None:
                wait = None if tree is not None else max(
                    0.0, hedge - asyncio.get_running_loop().time())
                done, pending = await asyncio.wait(
                    pending | ({tree} if tree else set()), timeout=wait,
                    return_when=asyncio.FIRST_COMPLETED)
                if tree is not None and tree in done:
                    return tree.result()
                pending.discard(tree)
                for t in done:
                    got = t.result()
                    if got is not None:
                        data, ver, _ = got  # a neighbour answers from its cache only
                        self.cache.put(key, ver, data, "mesh", self.now())
                        return data, ver, "mesh", "cache"
                if tree is None and (not pending or
                                     asyncio.get_running_loop().time() >= hedge):
                    tree = asyncio.get_running_loop().create_task(self._from_tree(key, version))
            raise FetchFailed(f"{key[0]}/{key[1]}: no ancestor answered")
        finally:
            for t in (*asks, *([tree] if tree else [])):
                if not t.done():
                    t.cancel()

    def pull_peers(self) -> list[str]:
        """The neighbours worth asking on a miss: not up the tree (the tree fetch asks
        those anyway) and nearer than the parent (a neighbour behind the same far link as
        the parent only doubles what crosses it)."""
        up = {name for name, _ in self.ancestors()}
        parent = self.ancestors()[0][0]
        limit = min(self.peer_rtt[parent]) if self.peer_rtt.get(parent) else math.inf
        return [p for p in self.selector.neighbours if p not in up
                and (min(self.peer_rtt[p]) if self.peer_rtt.get(p) else math.inf) < limit]

    def hedge_s(self) -> float:
        """How long mesh neighbours get before the tree is asked too: twice the slowest
        neighbour's round trip, within 50-300 ms."""
        rtts = [statistics.median(self.peer_rtt[p]) for p in self.pull_peers()
                if self.peer_rtt.get(p)]
        return min(0.3, max(0.05, 2 * max(rtts, default=100.0) / 1000))

    async def _from_tree(self, key: tuple[str, int], version: int
                         ) -> tuple[bytes, int, str, str]:
        for name, ip in self.ancestors():
            got = await self._ask(name, ip, "/fetch", key, version, "tree")
            if got is not None:
                data, ver, root = got
                self.cache.put(key, ver, data, "tree", self.now())
                return data, ver, "tree", root
        raise FetchFailed(f"{key[0]}/{key[1]}: no ancestor answered")

    async def _ask(self, name: str, ip: str, path: str, key: tuple[str, int], version: int,
                   cls: str, timeout: float = 8.0) -> tuple[bytes, int, str] | None:
        """One signed request for a segment: (bytes, version, root).  The answer counts only
        if its digest matches the signed manifest of the version it claims (>= ``version``)."""
        msg = self.secure.encode("fetch", {"video": key[0], "index": key[1],
                                           "min_version": version})
        try:
            status, body, headers = await self.post(ip, path, msg, cls, timeout)
        except (ClientError, asyncio.TimeoutError, OSError):
            return None
        if status != 200:
            return None
        try:
            ver = int(headers.get(SEG_HEADERS[0], "0"))
        except ValueError:
            ver = 0
        if ver < version:
            return None
        m = self.book.get(key[0], ver) or await self.manifest(key[0], ver)
        if m.version != ver or not m.digest_ok(key[1], body):
            self.secure.rejected.note(self.events, "bad_digest", name, cls)
            return None
        return body, ver, "cache" if headers.get(SEG_HEADERS[2]) == "cache" else "origin"

    async def _answer_fetch(self, request: web.Request, cls: str,
                            cache_only: bool) -> web.Response:
        raw = await request.read()
        self.traffic.received(cls, len(raw))
        msg = self.secure.decode(raw, "fetch", roles=("helper",), peer=request.remote or "?")
        if msg is None:
            return self.secure.refusal()
        if msg.type != "fetch":
            return web.Response(status=400, text="expected fetch\n")
        key = self._key_ok(msg.body["video"], str(msg.body["index"]))
        if key is None:
            return web.Response(status=404, text="no such segment\n")
        min_version = int(msg.body["min_version"])
        if cache_only:
            entry = self.cache.get(key, self.now(), min_version=max(min_version,
                                                                    self.cache.floor(key[0])))
            if entry is None:
                return web.Response(status=404, text="not cached\n")
            data, version, source, root = (entry.data, entry.version, f"cache_{entry.origin}",
                                           "cache")
        else:
            try:
                data, version, source, root = await self.obtain(key)
            except (FetchFailed, ClientError, asyncio.TimeoutError) as exc:
                return web.Response(status=504, text=f"{exc}\n")
        if version < min_version:
            return web.Response(status=409, text="only an older version\n")
        self.traffic.sent(cls, len(data))
        self.events.write("upstream_serve", to=msg.sender, video=key[0], index=key[1],
                          version=version, source=source, bytes=len(data), cls=cls)
        return web.Response(body=data, headers={SEG_HEADERS[0]: str(version),
                                                SEG_HEADERS[1]: source,
                                                SEG_HEADERS[2]: root})

    async def h_fetch(self, request: web.Request) -> web.Response:
        return await self._answer_fetch(request, "tree", cache_only=False)

    async def h_peer_fetch(self, request: web.Request) -> web.Response:
        return await self._answer_fetch(request, "mesh", cache_only=True)

    # -- mesh data (receiveMeshData) --------------------------------------------------
    async def h_mesh(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.traffic.received("prefetch", len(raw))
        peer = request.remote or "?"
        msg = self.secure.decode(raw, "mesh", roles=("master", "helper"), peer=peer)
        if msg is None:
            return self.secure.refusal()
        if msg.type != "mesh_data":
            self.secure.rejected.note(self.events, "wrong_type", msg.sender, "mesh")
            return web.Response(status=400, text="expected mesh_data\n")
        b = msg.body
        route, hop = list(b["route"]), int(b["hop"])
        if not (0 < hop < len(route) and route[hop] == self.cfg.name
                and route[hop - 1] == msg.sender):
            self.secure.rejected.note(self.events, "bad_route", msg.sender, "mesh")
            return web.Response(status=400, text="not on this message's route\n")
        video, index, version = b["video"], int(b["index"]), int(b["version"])
        if video not in self.catalogue or not 0 <= index < self.catalogue[video].n_segments:
            self.secure.rejected.note(self.events, "unknown_segment", msg.sender, "mesh")
            return web.Response(status=404, text="no such segment\n")
        if version < self.cache.floor(video):
            self.secure.rejected.note(self.events, "stale_version", msg.sender, "mesh")
            return web.Response(status=409, text="stale version\n")
        try:
            m = self.book.get(video, version) or await self.manifest(video, version)
        except (FetchFailed, ClientError, asyncio.TimeoutError):
            return web.Response(status=503, text="manifest unavailable\n")
        if m.version != version or not m.digest_ok(index, msg.payload):
            self.secure.rejected.note(self.events, "bad_digest", msg.sender, "mesh")
            return web.Response(status=422, text="digest does not match the manifest\n")
        dest = hop == len(route) - 1
        kept = False
        if dest or self.cfg.name in b["keep"]:
            self.cache.put((video, index), version, msg.payload, "prefetch", self.now())
            kept = True
        self.events.write("mesh_rx", sender=msg.sender, video=video, index=index,
                          version=version, push_id=b["push_id"], dest=dest, kept=kept,
                          bytes=len(msg.payload))
        if not dest:
            nxt = route[hop + 1]
            body = {**b, "hop": hop + 1}
            fwd = self.secure.encode("mesh_data", body, msg.payload)
            asyncio.get_running_loop().create_task(self._forward(nxt, fwd, b["push_id"]))
        return web.Response(text="ok\n")

    async def _forward(self, peer: str, data: bytes, push_id: str) -> None:
        ip = self.cfg.helpers.get(peer)
        if ip is None:
            return
        try:
            status, _, _ = await self.post(ip, "/mesh", data, "prefetch", port=self.push_port)
        except (ClientError, asyncio.TimeoutError, OSError) as exc:
            status = f"error {exc.__class__.__name__}"
        if status != 200:
            self.events.write("mesh_forward_failed", to=peer, push_id=push_id, status=status)

    # -- control: routing tables and invalidations ------------------------------------
    async def h_control(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.traffic.received("control", len(raw))
        msg = self.secure.decode(raw, "control", roles=("master", "helper"),
                                 peer=request.remote or "?")
        if msg is None:
            return self.secure.refusal()
        if msg.type == "routing" and msg.role == "master":
            self.set_table(dict(msg.body))
        elif msg.type == "push_order" and msg.role == "master":
            return self.push_order(dict(msg.body))
        elif msg.type == "invalidate":
            await self.invalidate(msg)
        else:
            self.secure.rejected.note(self.events, "wrong_type", msg.sender, "control")
            return web.Response(status=400, text="unexpected message type\n")
        return web.Response(text="ok\n")

    def push_order(self, b: dict) -> web.Response:
        """The master asks this helper to push its own copy of a segment along a route that
        starts here (the copy nearest the destination); 404 when the copy is gone, so the
        master sends it itself."""
        try:
            video, index, version = str(b["video"]), int(b["index"]), int(b["version"])
            route, push_id = [str(n) for n in b["route"]], str(b["push_id"])
            keep = [str(n) for n in b.get("keep", [])]
        except (KeyError, TypeError, ValueError):
            self.secure.rejected.note(self.events, "malformed", "master", "push_order")
            return web.Response(status=400, text="malformed push order\n")
        if len(route) < 2 or route[0] != self.cfg.name or route[1] not in self.cfg.helpers:
            self.secure.rejected.note(self.events, "bad_route", "master", "push_order")
            return web.Response(status=400, text="not a route from this helper\n")
        entry = self.cache.peek((video, index))
        if entry is None or entry.version < version:
            self.events.write("push_order_missed", push_id=push_id, video=video, index=index)
            return web.Response(status=404, text="no such copy\n")
        body = {"video": video, "index": index, "version": entry.version, "route": route,
                "hop": 1, "push_id": push_id, "keep": keep}
        data = self.secure.encode("mesh_data", body, entry.data)
        self.events.write("push_sent", push_id=push_id, video=video, index=index,
                          to=route[1], dest=route[-1], bytes=len(entry.data),
                          source=f"cache_{entry.origin}")
        asyncio.get_running_loop().create_task(self._forward(route[1], data, push_id))
        return web.Response(text="ok\n")

    def set_table(self, table: dict) -> None:
        if self.table and table["version"] <= self.table["version"]:
            return
        old_parent = self.table["parent"] if self.table else None
        self.table = table
        self.events.write("routing", version=table["version"], tier=table["tier"],
                          parent=table["parent"], children=list(table["children"]))
        if old_parent != table["parent"]:
            for video in list(self.live_socks):
                self._leave_live(video)  # re-joined on the new parent's group by live_round

    async def invalidate(self, msg: P.Message) -> None:
        b = msg.body
        if b["inv_id"] in self.seen_invalidations:
            return
        self.seen_invalidations.add(b["inv_id"])
        video, version = b["video"], int(b["version"])
        if video not in self.catalogue:
            return
        dropped = self.cache.invalidate(video, version)
        self.events.write("invalidated", video=video, version=version, issued=b["issued"],
                          inv_id=b["inv_id"], sender=msg.sender, dropped=len(dropped),
                          delay_ms=round((self.clock.wall() - float(b["issued"])) * 1000, 3))
        targets = [c for c in self.children() if c != msg.sender]
        targets += [n for n in self.selector.neighbours if n != msg.sender and n not in targets]
        fwd = self.secure.encode("invalidate", {**b, "route": [*b["route"], self.cfg.name]})
        for peer in targets:
            asyncio.get_running_loop().create_task(self._send_control(peer, fwd))
        with contextlib.suppress(FetchFailed, ClientError, asyncio.TimeoutError):
            await self.manifest(video, version)

    async def _send_control(self, peer: str, data: bytes) -> None:
        ip = self.cfg.helpers.get(peer)
        if ip is None:
            return
        with contextlib.suppress(ClientError, asyncio.TimeoutError, OSError):
            await self.post(ip, "/control", data, "control", timeout=5.0)

    # -- UDP: pingback and peer probes ------------------------------------------------
    def on_udp(self, data: bytes, addr: tuple) -> None:
        self.traffic.received("control", len(data))
        msg = self.secure.decode(data, "udp", roles=("master", "helper"), peer=addr[0])
        if msg is None:
            return
        if msg.type in ("probe", "peer_probe"):
            # from the kernel receiving the probe to the reply leaving: this node's own
            # scheduling and checking, which the prober takes out of its round trip
            held = time.time() - self.udp.arrival
            reply = self.secure.encode("probe_reply", {"nonce": msg.body["nonce"],
                                                       "sent": msg.body["sent"],
                                                       "held": round(held, 6)})
            self.traffic.sent("control", len(reply))
            self.udp.send(reply, addr)
        elif msg.type == "probe_reply" and msg.sender in self.peer_rtt:
            held = float(msg.body.get("held", 0.0))
            rtt = (self.udp.arrival - float(msg.body["sent"]) - held) * 1000
            if 0 <= rtt < 10_000:
                self.peer_rtt[msg.sender].append(rtt)

    def probe_targets(self) -> list[str]:
        """This round's peers to probe: the neighbours, then a rotating sample of the
        others (``PEER_SAMPLE`` a round), so the cost stays flat as helpers are added and
        every peer is still measured within a few rounds."""
        others = [p for p in self.peer_rtt if p not in self.selector.neighbours]
        if not others:
            return list(self.selector.neighbours)
        start = (self.rounds * PEER_SAMPLE) % len(others)
        sample = (others[start:] + others[:start])[:PEER_SAMPLE]
        self.rounds += 1
        return [*self.selector.neighbours, *sample]

    async def neighbour_round(self) -> None:
        """Measure peers, re-choose the k neighbours, report them to the master."""
        for peer in self.probe_targets():
            ip = self.cfg.helpers[peer]
            nonce = time.monotonic_ns() & 0xFFFFFFFF
            probe = self.secure.encode("peer_probe", {"nonce": nonce, "sent": self.clock.wall()})
            self.traffic.sent("control", len(probe))
            self.udp.send(probe, (ip, C.UDP_PORT))
            await asyncio.sleep(0.003)  # staggered: replies do not queue behind each other
        await asyncio.sleep(0.3)
        latency = {p: statistics.median(s) for p, s in self.peer_rtt.items() if s}
        nearest = sorted(latency, key=latency.get)[:self.selector.k + 2]
        probe_set = set(self.selector.neighbours) | set(nearest)
        now = self.now()
        stale = [p for p in probe_set if p in latency
                 and now - self.peer_bw_at.get(p, -1e9) > BW_PROBE_EVERY_S]
        await asyncio.gather(*(self._measure_bw(p, latency[p]) for p in stale))
        known = sorted(self.peer_bw.values())
        unknown_bw = known[len(known) // 2] if known else 10.0  # not measured yet: typical
        metrics = {p: PeerMetric(latency_ms=lat, bw_mbit=self.peer_bw.get(p, unknown_bw))
                   for p, lat in latency.items()}
        self.events.write("peers", metrics={p: [round(m.latency_ms, 3), round(m.bw_mbit, 2)]
                                            for p, m in metrics.items()})
        change = self.selector.update(metrics, self.now())
        if change.added or change.dropped:
            self.events.write("neighbours", neighbours=list(change.neighbours),
                              added=list(change.added), dropped=list(change.dropped),
                              reasons=dict(change.reasons))
        report = {p: {"latency_ms": round(metrics[p].latency_ms, 3),
                      "bw_mbit": round(metrics[p].bw_mbit, 3)}
                  for p in change.neighbours if p in metrics}
        inventory = json.dumps([[k[0], k[1], self.cache.peek(k).version]
                                for k in list(self.cache.keys())]).encode()
        if inventory == self.reported_inventory:
            inventory = b""  # unchanged since the last report: the master keeps that one
        else:
            self.reported_inventory = inventory
        msg = self.secure.encode("neighbours", {"neighbours": report}, inventory)
        with contextlib.suppress(ClientError, asyncio.TimeoutError, OSError):
            await self.post(self.cfg.master["ip"], "/control", msg, "control", timeout=5.0)

    def _bw_sample(self, peer: str, nbytes: int, seconds: float) -> None:
        """Fold one probe into the peer's bandwidth estimate (exponentially weighted)."""
        if seconds <= 0.0002 or nbytes < 4096:
            return
        sample = nbytes * 8 / seconds / 1e6
        old = self.peer_bw.get(peer)
        self.peer_bw[peer] = sample if old is None else 0.7 * old + 0.3 * sample
        self.peer_bw_at[peer] = self.now()

    async def _measure_bw(self, peer: str, rtt_ms: float) -> None:
        """Packet-train dispersion: the probe's body leaves the peer back to back, so the
        time from its first to its last byte here is set by the narrowest link, not by the
        round trip (a whole-transfer time would mostly measure latency)."""
        url = f"http://{self.cfg.helpers[peer]}:{C.HTTP_PORT}/probe?bytes={BW_PROBE_BYTES}"
        try:
            async with self.http.get(url, timeout=ClientTimeout(total=3)) as r:
                first = await r.content.readany()
                t = time.monotonic()
                rest = await r.read()
                spread = time.monotonic() - t
        except (ClientError, asyncio.TimeoutError, OSError):
            return
        self.traffic.received("control", len(first) + len(rest))
        self._bw_sample(peer, len(rest), spread)

    async def h_probe(self, request: web.Request) -> web.Response:
        try:
            n = int(request.query.get("bytes", "65536"))
        except ValueError:
            return web.Response(status=400, text="bytes must be an integer\n")
        if not 0 < n <= PROBE_MAX:
            return web.Response(status=400, text=f"bytes must be 1..{PROBE_MAX}\n")
        self.traffic.sent("control", n)
        return web.Response(body=b"\0" * n)

    async def h_status(self, request: web.Request) -> web.Response:
        return web.json_response({
            "name": self.cfg.name, "table": self.table,
            "neighbours": list(self.selector.neighbours),
            "cache": {"used_bytes": self.cache.used_bytes,
                      "capacity_bytes": self.cache.capacity_bytes, **self.cache.stats},
            "rejected": dict(self.secure.rejected),
            "live": sorted(self.live_socks),
        })

    # -- telemetry --------------------------------------------------------------------
    async def send_telemetry(self) -> None:
        batch = self.telemetry.drain(200)
        if not batch or not self.cfg.extra["engine"].get("enabled", True):
            return  # nothing to send, or no engine in this run (a policy without prediction)
        msg = self.secure.encode("telemetry", {"events": batch})
        engine = self.cfg.extra["engine"]
        try:
            status, body, _ = await self.post(engine["ip"], "/telemetry", msg, "telemetry",
                                              timeout=5.0, port=int(engine["port"]))
        except (ClientError, asyncio.TimeoutError, OSError):
            self.events.write("telemetry_lost", events=len(batch))
            return
        if status != 200:
            self.events.write("telemetry_refused", status=status, events=len(batch),
                              answer=body[:200].decode(errors="replace"))

    # -- live channels ----------------------------------------------------------------
    def _live_channel(self, video: str) -> int:
        return self.live_ids.index(video) + 1

    def _parent_ip(self) -> str | None:
        anc = self.ancestors()
        return anc[0][1] if self.table else None

    def _join_live(self, video: str) -> None:
        parent_ip = self._parent_ip()
        if parent_ip is None or video in self.live_socks:
            return
        group = relay_group(parent_ip, self._live_channel(video))
        sock = C.multicast_socket(group, C.LIVE_PORT, self.cfg.ip)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_live, sock, video)
        self.live_socks[video] = sock
        self.events.write("live_join", video=video, group=group, parent=self.table["parent"])

    def _leave_live(self, video: str) -> None:
        sock = self.live_socks.pop(video, None)
        if sock is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()
        self.events.write("live_leave", video=video)

    async def live_round(self) -> None:
        """Join the parent's relay group of each channel this helper's viewers or children
        may want; leave the others."""
        now = self.now()
        for video in self.live_ids:
            wanted = bool(self.children()) or self.live_wanted_until.get(video, -1) > now
            if wanted and self.table:
                self._join_live(video)
            elif not wanted:
                self._leave_live(video)
        self.reasm.expire(now)

    def _on_live(self, sock, video: str) -> None:
        for _ in range(64):
            try:
                dgram = sock.recv(2048)
            except BlockingIOError:
                return
            except OSError:
                return
            self.traffic.received("live", len(dgram))
            try:
                chunk = P.decode_chunk(dgram)
            except P.ProtocolError:
                self.secure.rejected.note(self.events, "malformed", "multicast", "live")
                continue
            if chunk.video_id != video:
                continue
            if self.children():
                group = relay_group(self.cfg.ip, self._live_channel(video))
                with contextlib.suppress(OSError):
                    self.relay_out.sendto(dgram, (group, C.LIVE_PORT))
                    self.traffic.sent("live", len(dgram))
            done = self.reasm.add(chunk, self.now())
            if done is not None:
                self._live_segment(*done)

    def _live_segment(self, key: tuple[str, int], version: int, data: bytes) -> None:
        m = self.book.get(key[0], version)
        if m is None:
            asyncio.get_running_loop().create_task(self._late_live(key, version, data))
            return
        if not m.digest_ok(key[1], data):
            self.secure.rejected.note(self.events, "bad_digest", "multicast", "live")
            return
        self.cache.put(key, version, data, "live", self.now())
        self.events.write("live_rx", video=key[0], index=key[1], version=version,
                          parent=self.table["parent"] if self.table else "", bytes=len(data))

    async def _late_live(self, key: tuple[str, int], version: int, data: bytes) -> None:
        with contextlib.suppress(FetchFailed, ClientError, asyncio.TimeoutError):
            await self.manifest(key[0], version)
            if self.book.get(key[0], version) is not None:
                self._live_segment(key, version, data)

    async def housekeeping(self) -> None:
        self.events.write("cache_state", used_bytes=self.cache.used_bytes,
                          capacity_bytes=self.cache.capacity_bytes, entries=len(self.cache))


def main() -> None:
    C.main_loop(Helper)


if __name__ == "__main__":
    main()
