"""The helper daemon: a prefetch cache that serves viewers, a place in the master's tree,
``k`` mesh neighbours, signed mesh data, live relay, invalidations and telemetry
(to the prediction engine).

The decisions are :class:`testbed.core.node.helper.HelperLogic`'s; this module is its
driver: it turns HTTP, UDP and multicast into the logic's events, executes the effects it
answers with (signed sends, replies, timers, records, multicast joins), verifies signatures
and manifests before anything reaches the logic, and measures time on the wire.

HTTP on port 8080:

- viewers (no credentials): ``GET /manifest/{video}``, ``GET /mpd/{video}``,
  ``GET /seg/{video}/{index}`` (header ``X-Viewer``), ``POST /telemetry``;
- nodes (signed envelopes, :mod:`testbed.core.protocol`): ``POST /fetch`` (a child or
  peer asks for a segment; goes up the tree on a miss), ``POST /peer-fetch`` (cache only),
  ``POST /mesh`` (mesh data: prefetch pushes, forwarded along their route),
  ``POST /control`` (routing tables, push orders, invalidations);
- ``GET /probe?bytes=N``: filler for bandwidth estimates between peers.

UDP 7000 answers the master's pingback probes and peers' probes; live channels arrive on
the parent's relay group (``239.77.N.C``, port 7100) and are relayed on this helper's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from testbed.core import protocol as P
from testbed.core import security as sec
from testbed.core.content import ManifestError
from testbed.core.node import helper as H
from testbed.core.node.effects import Record, Reply, Response, Send, SetTimer, Timer
from testbed.core.protocol import PUSH_PORT
from testbed.nodes import common as C
from testbed.nodes.manifests import ManifestBook

log = logging.getLogger("meshcast.helper")
PROBE_MAX = 256 * 1024
#: the longest an inbound request waits for the logic's answer
ANSWER_TIMEOUT_S = 30.0


def settings(cfg: C.NodeConfig) -> H.HelperSettings:
    """The helper's typed settings: its part of the run plan."""
    return cfg.node_plan().helper_settings(C.HTTP_PORT)


class Helper:
    def __init__(self, cfg: C.NodeConfig):
        self.cfg = cfg
        self.clock = C.Clock(cfg.t0)
        self.events = C.EventLog(cfg.run_dir / "logs" / f"{cfg.name}.jsonl", cfg.name, self.clock)
        self.traffic = C.Traffic()
        self.logic = H.HelperLogic(settings(cfg))
        self.addresses = self.logic.s.addresses
        at = cfg.node_plan().engine_at
        self.engine_addr = (at.ip, at.port)
        self.answers: dict[int, asyncio.Future] = {}
        self.refs = itertools.count(1)
        self.timers = C.Timers(self.clock, lambda name, token: self.feed(Timer(name, token)))
        self.live_socks: dict[str, object] = {}
        self.io_tasks: set[asyncio.Task] = set()
        self.nonces = itertools.count(int(time.monotonic_ns()) & 0xFFFFFF)
        self.stopping = False

    # -- set-up -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        identity = await asyncio.to_thread(C.load_identity, self.cfg)
        self.secure = C.Secure(identity, bytes.fromhex(self.cfg.ca_public_key), self.clock,
                               self.events, C.load_directory(self.cfg))
        self.book = ManifestBook(self.secure.verifier)
        self.loop = asyncio.get_running_loop()
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
        self.apply(self.logic.start(self.clock.now()))
        C.announce_ready(self.cfg, self.events, ip=self.cfg.ip,
                         cache_bytes=self.logic.cache.capacity_bytes)
        try:
            await stop.wait()
        finally:
            await self.shutdown(runner)

    async def shutdown(self, runner: web.AppRunner) -> None:
        self.stopping = True
        self.timers.cancel_all()
        final = self.apply(self.logic.stop(self.clock.now()))
        if final:  # the last telemetry batch
            await asyncio.wait(final, timeout=5.0)
        C.closing_records(self.events, self.traffic)
        self.events.write("rejections", counts=dict(self.secure.rejected
                                                    + self.logic.rejected))
        for t in list(self.io_tasks):
            t.cancel()
        await self.http.close()
        await runner.cleanup()
        self.events.close()

    # -- events in, effects out ------------------------------------------------------------
    def feed(self, event: object) -> None:
        try:
            effects = self.logic.handle(event, self.clock.now())
        except Exception:  # one bad event never stops the node
            log.exception("helper logic: %s", type(event).__name__)
            return
        self.apply(effects)

    def apply(self, effects: list) -> list[asyncio.Task]:
        """Execute effects in order; the tasks started for them."""
        started = []
        for e in effects:
            if isinstance(e, Reply):
                fut = self.answers.pop(e.ref, None)
                if fut is not None and not fut.done():
                    fut.set_result(e)
            elif isinstance(e, Record):
                self.events.write(e.kind, **e.fields)
            elif isinstance(e, Send):
                if e.via == "udp":
                    self._send_udp(e)
                else:
                    started.append(self._task(self._send_http(e)))
            elif isinstance(e, SetTimer):
                if not self.stopping:
                    self.timers.set(e)
            elif isinstance(e, H.Relay):
                with contextlib.suppress(OSError):
                    self.relay_out.sendto(e.dgram, (e.group, C.LIVE_PORT))
                    self.traffic.sent("live", len(e.dgram))
            elif isinstance(e, H.FetchManifest):
                started.append(self._task(self._fetch_manifest(e.video)))
            elif isinstance(e, H.MeasureBandwidth):
                started.append(self._task(self._measure_bw(e.peer, e.nbytes)))
            elif isinstance(e, H.JoinGroup):
                self._join(e)
            elif isinstance(e, H.LeaveGroup):
                self._leave(e.video)
            else:
                log.error("helper: unknown effect %r", e)
        return started

    def _task(self, coro) -> asyncio.Task:
        t = self.loop.create_task(coro)
        self.io_tasks.add(t)
        t.add_done_callback(self.io_tasks.discard)
        return t

    async def answer(self, event_of) -> web.Response:
        """Hand an inbound request to the logic and wait for its :class:`Reply`."""
        ref = next(self.refs)
        fut = self.loop.create_future()
        self.answers[ref] = fut
        try:
            effects = self.logic.handle(event_of(ref), self.clock.now())
        except Exception:  # a bug in one request's handling: that request fails, not the node
            log.exception("helper logic: request %d", ref)
            self.answers.pop(ref, None)
            return web.Response(status=500, text="internal error\n")
        self.apply(effects)
        try:
            r: Reply = await asyncio.wait_for(fut, ANSWER_TIMEOUT_S)
        except asyncio.TimeoutError:
            return web.Response(status=504, text="no answer in time\n")
        finally:
            self.answers.pop(ref, None)
        if r.cls:
            self.traffic.sent(r.cls, len(r.body))
        return web.Response(status=r.status, body=r.body, headers=r.headers,
                            content_type=r.content_type)

    # -- sending ------------------------------------------------------------------------------
    def _port(self, e: Send) -> tuple[str | None, int]:
        if e.to == self.logic.s.engine:
            return self.engine_addr
        return self.addresses.get(e.to), e.port or C.HTTP_PORT

    async def _send_http(self, e: Send) -> None:
        ip, port = self._port(e)
        status, body, headers = 0, b"", {}
        if ip is not None:
            data = self.secure.encode(e.msg_type, e.body, e.payload, to=e.to)
            self.traffic.sent(e.cls, len(data))
            try:
                async with self.http.post(f"http://{ip}:{port}{e.path}", data=data,
                                          timeout=ClientTimeout(total=e.timeout_s)) as r:
                    body = await r.read()
                    status, headers = r.status, dict(r.headers)
                    self.traffic.received(e.cls, len(body))
            except (ClientError, asyncio.TimeoutError, OSError) as exc:
                status, body = 0, exc.__class__.__name__.encode()
        if e.ref is not None and not self.stopping:
            self.feed(Response(e.ref, status, body, headers))

    def _send_udp(self, e: Send) -> None:
        ip = self.addresses.get(e.to)
        if ip is None:
            return

        def go() -> None:
            body = dict(e.body)
            if e.msg_type == "peer_probe":
                body.update(nonce=next(self.nonces) & 0xFFFFFFFF, sent=self.clock.wall())
            data = self.secure.encode(e.msg_type, body, e.payload, to=e.to)
            self.traffic.sent(e.cls, len(data))
            self.udp.send(data, (ip, C.UDP_PORT))

        if e.delay_s > 0:
            self.loop.call_later(e.delay_s, go)
        else:
            go()

    async def _fetch_manifest(self, video: str) -> None:
        """The master's signed manifest of ``video``, verified before the logic sees it."""
        url = f"http://{self.cfg.master['ip']}:{C.HTTP_PORT}/manifest/{video}"
        try:
            async with self.http.get(url) as r:
                body = await r.read()
                self.traffic.received("control", len(body))
                if r.status != 200:
                    self.feed(H.ManifestArrived(video, error=f"manifest {video}: HTTP {r.status}"))
                    return
        except (ClientError, asyncio.TimeoutError, OSError) as exc:
            self.feed(H.ManifestArrived(video, error=f"manifest {video}: {exc!r}"[:200]))
            return
        try:
            signed = json.loads(body)
            m = self.book.add(signed)
        except (ManifestError, sec.AuthError, ValueError) as exc:
            self.feed(H.ManifestArrived(
                video, error=f"rejected:{getattr(exc, 'reason', 'bad_manifest')}"))
            return
        self.feed(H.ManifestArrived(video, m, signed))

    async def _measure_bw(self, peer: str, nbytes: int) -> None:
        """Packet-train dispersion: the probe's body leaves the peer back to back, so the
        time from its first to its last byte here is set by the narrowest link, not by the
        round trip (a whole-transfer time would mostly measure latency)."""
        url = f"http://{self.addresses[peer]}:{C.HTTP_PORT}/probe?bytes={nbytes}"
        got, spread = 0, 0.0
        try:
            async with self.http.get(url, timeout=ClientTimeout(total=3)) as r:
                first = await r.content.readany()
                t = time.monotonic()
                rest = await r.read()
                spread = time.monotonic() - t
            self.traffic.received("control", len(first) + len(rest))
            got = len(rest)
        except (ClientError, asyncio.TimeoutError, OSError):
            pass
        if not self.stopping:
            self.feed(H.BandwidthSample(peer, got, spread))

    # -- viewers ----------------------------------------------------------------------
    async def h_manifest(self, request: web.Request) -> web.Response:
        video, viewer = request.match_info["video"], request.headers.get("X-Viewer", "")
        return await self.answer(lambda ref: H.ManifestRequest(ref, video, viewer=viewer))

    async def h_mpd(self, request: web.Request) -> web.Response:
        video = request.match_info["video"]
        return await self.answer(lambda ref: H.ManifestRequest(ref, video, mpd=True))

    async def h_segment(self, request: web.Request) -> web.Response:
        m = request.match_info
        viewer = request.headers.get("X-Viewer", "")
        return await self.answer(lambda ref: H.SegmentRequest(ref, m["video"], m["index"],
                                                              viewer))

    async def h_telemetry(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.traffic.received("telemetry", len(raw))
        return await self.answer(lambda ref: H.ViewerTelemetry(ref, raw))

    # -- nodes: verified at this edge -------------------------------------------------------
    async def _verified(self, request: web.Request, cls: str, what: str,
                        roles: tuple[str, ...]):
        raw = await request.read()
        self.traffic.received(cls, len(raw))
        msg = self.secure.decode(raw, what, roles=roles, peer=request.remote or "?")
        if msg is not None:  # pushes and invalidations: the master's decision, or nothing
            reason = P.countersign_problem(msg.type, msg.body, self.secure.verifier.verify_ca)
            if reason is not None:
                self.secure.last_reason = reason
                self.secure.rejected.note(self.events, reason, msg.sender, what)
                return None
        return msg

    async def _answer_fetch(self, request: web.Request, cls: str,
                            cache_only: bool) -> web.Response:
        msg = await self._verified(request, cls, "fetch", ("helper",))
        if msg is None:
            return self.secure.refusal()
        if msg.type != "fetch":
            return web.Response(status=400, text="expected fetch\n")
        return await self.answer(lambda ref: H.FetchRequest(ref, msg.sender, dict(msg.body),
                                                            cache_only))

    async def h_fetch(self, request: web.Request) -> web.Response:
        return await self._answer_fetch(request, "tree", cache_only=False)

    async def h_peer_fetch(self, request: web.Request) -> web.Response:
        return await self._answer_fetch(request, "mesh", cache_only=True)

    async def h_mesh(self, request: web.Request) -> web.Response:
        msg = await self._verified(request, "prefetch", "mesh", ("master", "helper"))
        if msg is None:
            return self.secure.refusal()
        if msg.type != "mesh_data":
            self.secure.rejected.note(self.events, "wrong_type", msg.sender, "mesh")
            return web.Response(status=400, text="expected mesh_data\n")
        return await self.answer(lambda ref: H.MeshData(ref, msg.sender, dict(msg.body),
                                                        msg.payload))

    async def h_control(self, request: web.Request) -> web.Response:
        msg = await self._verified(request, "control", "control", ("master", "helper"))
        if msg is None:
            return self.secure.refusal()
        return await self.answer(lambda ref: H.Control(ref, msg.sender, msg.role, msg.type,
                                                       dict(msg.body)))

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
                                                       "held": round(held, 6)},
                                       to=msg.sender)
            self.traffic.sent("control", len(reply))
            self.udp.send(reply, addr)
        elif msg.type == "probe_reply" and msg.role == "helper":
            try:
                held = float(msg.body.get("held", 0.0))
                rtt = (self.udp.arrival - float(msg.body["sent"]) - held) * 1000
            except (KeyError, TypeError, ValueError):
                return
            self.feed(H.PeerRtt(msg.sender, rtt))

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
        g = self.logic
        return web.json_response({
            "name": self.cfg.name, "table": g.table,
            "neighbours": list(g.selector.neighbours),
            "cache": {"used_bytes": g.cache.used_bytes,
                      "capacity_bytes": g.cache.capacity_bytes, **g.cache.stats},
            "cached_versions": {v: list(r) for v, r in g.cache.versions().items()},
            "rejected": dict(self.secure.rejected + g.rejected),
            "live": sorted(self.live_socks),
            "telemetry": {"queued": len(g.telemetry), "added": g.telemetry.added,
                          "dropped": g.telemetry.dropped, "sessions": len(g.telemetry_gate)},
        })

    # -- live channels ----------------------------------------------------------------
    def _join(self, e: H.JoinGroup) -> None:
        if e.video in self.live_socks:
            return
        sock = C.multicast_socket(e.group, C.LIVE_PORT, self.cfg.ip)
        self.loop.add_reader(sock.fileno(), self._on_live, sock, e.video)
        self.live_socks[e.video] = sock

    def _leave(self, video: str) -> None:
        sock = self.live_socks.pop(video, None)
        if sock is None:
            return
        with contextlib.suppress(Exception):
            self.loop.remove_reader(sock.fileno())
        sock.close()

    def _on_live(self, sock, video: str) -> None:
        for _ in range(64):
            try:
                dgram = sock.recv(2048)
            except (BlockingIOError, OSError):
                return
            self.traffic.received("live", len(dgram))
            self.feed(H.LiveDatagram(video, dgram))


def main() -> None:
    C.main_loop(Helper)


if __name__ == "__main__":
    main()
