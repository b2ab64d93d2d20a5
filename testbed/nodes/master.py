"""The master daemon: credentials, signed manifests, pingback and tiers, the live channels
down the tree, the origin for misses, prefetch pushes through the mesh, republishing.

- Issues every helper and the prediction engine its credential
  (``<run>/secrets/<name>.json``) from the testbed CA.
- Pingback (UDP 7000): every ``pingback_interval_s`` it probes each helper
  ``pingback_probes`` times; :class:`testbed.core.timing.Pingback` turns the samples into
  the broadcast timing index, tiers and routing tables, which go to the helpers (signed
  ``routing`` messages) and, as tiers and mesh pairs, to the controller (through
  ``<run>/controller-sync.json``, which the harness forwards to the northbound API).
  The rounds, the tables' messages and the helpers' neighbour reports are decided by
  :class:`testbed.core.node.master.MasterLogic`; this daemon only feeds it timers, probe
  replies and reports, and carries out its effects (:meth:`Master.apply`): it signs,
  stamps each probe as it leaves, sends, logs and writes the sync file.
- Live channels are produced in real time and sent on the master's relay group
  ``239.77.N.C``; tier-1 helpers relay them to theirs.
- ``POST /fetch``: the origin, last stop of a miss that went up the tree.
- Every ``prefetch_interval_s`` it asks the prediction engine (:mod:`testbed.nodes.engine`,
  which receives the helpers' telemetry) for each helper's expected requests and its
  viewers' playheads; the prefetch policy picks pushes from those and the helpers' cache
  inventories; each goes through the mesh along a Dijkstra route.
- Scenario events ``republish`` bump a video's version and send an invalidation down the
  tree and through the mesh.
- The forecasts, prefetch rounds, pushes and republishing are decided by
  :class:`testbed.core.node.origin.OriginLogic` (the delivery side), fed the same way:
  its timers, the engine's and the holders' answers, and the links' load read from
  ``<run>/link-load.json`` before each round; this daemon makes the pushed segments' bytes
  (off the event loop), signs the manifests it publishes and sends the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from testbed.core import protocol as P
from testbed.core import security as sec
from testbed.core.content import (
    build_manifest,
    segment_bytes,
)
from testbed.core.mesh import PeerMetric
from testbed.core.multicast import relay_group
from testbed.core.node.effects import Record, Response, Send, SetTimer, Timer
from testbed.core.node.master import MasterLogic, Neighbours, ProbeReply, WriteSync
from testbed.core.node.origin import (
    PREFETCH,
    LinkLoad,
    OriginLogic,
    Publish,
    PushFromOrigin,
)
from testbed.core.node.origin import TIMERS as ORIGIN_TIMERS
from testbed.core.timing import tiers_as_lists
from testbed.nodes import common as C
from testbed.nodes.manifests import sign_manifest

log = logging.getLogger("meshcast.master")
EGRESS_EVERY_S = 1.0  # the master logs what it sent, by class, this often
ENGINE_START_S = 30.0  # the longest the first forecasts wait for the engine to listen


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _origin_answer(version: int, data: bytes) -> web.Response:
    """A segment the master itself serves, with the headers a helper's answer carries."""
    return web.Response(body=data, headers={"X-Meshcast-Version": str(version),
                                            "X-Meshcast-Source": "origin",
                                            "X-Meshcast-Root": "origin"})


class Master:
    def __init__(self, cfg: C.NodeConfig):
        self.cfg = cfg
        self.clock = C.Clock(cfg.t0)
        self.events = C.EventLog(cfg.run_dir / "logs" / f"{cfg.name}.jsonl", cfg.name, self.clock)
        self.traffic = C.Traffic()
        self.plan = plan = cfg.node_plan()  # what this run asks of the master, typed
        self.catalogue = plan.catalogue()
        self.live_ids = self.catalogue.ids("live")
        self.live_t0 = plan.live_t0
        # what a master restarted mid-run (killed, or crashed) carries on from
        self.state_path = cfg.run_dir / "state" / f"{cfg.name}.json"
        saved = self.saved_state()
        self.versions = {vid: 1 for vid in self.catalogue.ids()}
        self.versions.update({v: n for v, n in saved.get("versions", {}).items()
                              if v in self.versions})
        self.signed: dict[str, dict] = {}
        # pingback, tiers, routing messages and neighbour reports: decided in the core
        self.logic = MasterLogic.from_delivery(
            cfg.name, cfg.ip, plan.helpers, plan.pingback_settings(), live=bool(self.live_ids),
            versions=self.versions, nonce_key=os.urandom(32), links=plan.link_tuples,
            table_version=int(saved.get("table_version", 0)))
        self.events_done = int(saved.get("events_done", 0))
        self._saved = self.state_key()
        self.pingback = self.logic.pingback
        self.reports: dict[str, dict[str, PeerMetric]] = self.logic.reports
        self.inventory: dict[str, set[tuple[str, int]]] = self.logic.inventory
        self.probe_sent: dict[int, float] = {}  # nonce -> wall time the probe left
        self.timers = C.Timers(self.clock, self.fire)
        # forecasts, prefetch rounds, pushes and republishing: decided in the core too
        self.engine = plan.engine_at.name if plan.engine_at.enabled else None
        self.engine_addr = (plan.engine_at.ip, plan.engine_at.port)
        self.engine_up: asyncio.Task | None = None  # until the engine first listens
        self.origin = OriginLogic(self.logic, plan.origin_settings(self.catalogue),
                                  self.versions, id_key=os.urandom(32))
        self.policy = self.origin.policy
        self.sync_path = cfg.run_dir / "controller-sync.json"
        self.load_path = cfg.run_dir / "link-load.json"  # the links' load, as measured
        self.tasks: list[asyncio.Task] = []
        self.started_at = 0.0

    # -- saved state ------------------------------------------------------------------
    def saved_state(self) -> dict:
        """What this master saved before it was stopped ({} at a run's start)."""
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.events.write("state_unreadable", error=str(exc)[:200])
            return {}
        return state if isinstance(state, dict) else {}

    def state_key(self) -> tuple:
        return (self.logic.pingback.version, self.events_done, tuple(self.versions.values()))

    def save_state(self) -> None:
        """Save (atomically) what a restarted master needs to go on without confusing the
        helpers: the content versions, the routing tables' version, the scheduled events
        carried out.  Tiers are measured again; credentials stay as issued."""
        self.events_done = self.origin.events_done
        key = self.state_key()
        if key == self._saved:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_path, json.dumps({
            "versions": self.versions, "table_version": self.logic.pingback.version,
            "events_done": self.events_done}))
        self._saved = key

    # -- credentials and manifests ----------------------------------------------------
    def issue_credentials(self) -> None:
        """Every node's credential from the run's CA; a restarted master keeps those it
        issued before (its own too): the network is not re-keyed."""
        secret = (self.cfg.secrets_dir / "ca.secret").read_bytes()
        self.authority = sec.Authority.from_secret(secret)
        not_after = self.clock.wall() + self.plan.duration_s + 3600
        engine = self.plan.engine_at.name
        issued, kept = [], []
        self.directory = []
        for name, role in [(self.cfg.name, "master"),
                           *((h, "helper") for h in self.cfg.helpers), (engine, "engine")]:
            path = self.cfg.credential_path(name)
            ident = self._kept_credential(path)
            if ident is None:
                ident = (self.authority.identity(name, not_after=not_after)
                         if role == "master" else self.authority.issue(name, role, not_after))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(ident.to_json())
                issued.append(name)
            else:
                kept.append(name)
            if name == self.cfg.name:
                self.identity = ident
            self.directory.append(ident.cert)
        # the public directory: written before any credential can be used
        write_atomic(self.cfg.secrets_dir / "certificates.json",
                     json.dumps([c.to_dict() for c in self.directory]))
        self.events.write("credentials", issued=sorted(n for n in issued if n != self.cfg.name),
                          kept=sorted(kept))
        self.restarted = bool(kept)  # credentials of this run were there: a restart

    def _kept_credential(self, path: Path) -> sec.Identity | None:
        """A credential issued earlier in this run, still valid under this CA."""
        try:
            ident = sec.Identity.from_json(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            self.events.write("state_unreadable", error=f"{path.name}: {str(exc)[:150]}")
            return None
        try:
            sec.Verifier(self.authority.public_key).check_cert(ident.cert, self.clock.wall())
        except sec.AuthError:
            return None
        return ident

    def publish(self, video: str) -> dict:
        m = build_manifest(self.cfg.seed, self.catalogue[video], self.versions[video])
        self.signed[video] = sign_manifest(self.authority, m)
        return self.signed[video]

    # -- life cycle -------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.issue_credentials()
        self.started_at = self.logic.started_at = self.clock.now()
        self.secure = C.Secure(self.identity, self.authority.public_key, self.clock,
                               self.events, self.directory)
        for video in self.catalogue.ids():
            self.publish(video)
        self.http = ClientSession(timeout=ClientTimeout(total=10, connect=3))
        runner = await C.serve_http([
            web.get("/manifest/{video}", self.h_manifest),
            web.get("/seg/{video}/{index}", self.h_viewer_segment),
            web.post("/fetch", self.h_fetch),
            web.post("/control", self.h_control),
            web.get("/status", self.h_status),
        ], self.cfg.ip)
        loop = asyncio.get_running_loop()
        self.udp = await C.open_udp(self.on_udp, self.cfg.ip, C.UDP_PORT)
        # the engine starts after the master (it waits for the credential issued above):
        # its first forecasts wait until it listens; once it has, a failure is a failure
        self.engine_up = loop.create_task(self.engine_listening()) if self.engine else None
        self.mcast = C.multicast_sender(self.cfg.ip)
        now = self.clock.now()
        self.apply(self.logic.start(now))
        self.apply(self.origin.start(now, self.events_done), self.origin)
        self.tasks = C.watch(self.events, [
            C.every(EGRESS_EVERY_S, self.log_egress, "egress"),
            *(loop.create_task(self.live_channel(v), name=f"live {v}") for v in self.live_ids),
        ])
        C.announce_ready(self.cfg, self.events, ip=self.cfg.ip, policy=self.policy.name,
                          videos=len(self.catalogue))
        try:
            await stop.wait()
        finally:
            self.timers.cancel_all()
            await C.cancel_tasks(self.tasks)
            await self.log_egress()
            C.closing_records(self.events, self.traffic)
            self.events.write("rejections", counts=dict(self.secure.rejected))
            await self.http.close()
            await runner.cleanup()
            self.events.close()

    async def engine_listening(self) -> None:
        """Until the engine listens (at most ENGINE_START_S; a ``engine_waited`` record)."""
        t = self.clock.now()
        up = await C.listening(*self.engine_addr, timeout=ENGINE_START_S)
        self.events.write("engine_waited", waited_s=round(self.clock.now() - t, 3),
                          listening=up)

    async def log_egress(self) -> None:
        """An ``egress`` record: the bytes sent, by class, since the last one (the origin's
        egress over time: answers, manifests, live, pushes and control)."""
        now = dict(self.traffic.tx)
        mark = getattr(self, "_egress_mark", {})
        delta = {c: n - mark.get(c, 0) for c, n in sorted(now.items()) if n > mark.get(c, 0)}
        self._egress_mark = now
        self.events.write("egress", by_cls=delta)

    # -- HTTP -------------------------------------------------------------------------
    async def h_manifest(self, request: web.Request) -> web.Response:
        video = request.match_info["video"]
        if video not in self.signed:
            return web.json_response({"error": f"unknown video {video[:64]!r}"}, status=404)
        body = json.dumps(self.signed[video]).encode()
        self.traffic.sent("control", len(body))
        return web.Response(body=body, content_type="application/json")

    def live_edge(self, video: str) -> int:
        return self.catalogue[video].live_edge(self.clock.now(), self.live_t0)

    def segment(self, video: str, index: int, version: int | None = None) -> bytes:
        """The bytes of a segment at ``version`` (None: the current one)."""
        return segment_bytes(self.cfg.seed, self.catalogue[video], index,
                             self.versions[video] if version is None else version)

    async def h_fetch(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.traffic.received("tree", len(raw))
        msg = self.secure.decode(raw, "fetch", roles=("helper",), peer=request.remote or "?")
        if msg is None:
            return self.secure.refusal()
        if msg.type != "fetch":
            return web.Response(status=400, text="expected fetch\n")
        video, index = msg.body["video"], int(msg.body["index"])
        got = await self._current_segment(video, index, int(msg.body["min_version"]))
        if isinstance(got, web.Response):
            return got
        version, data = got
        self.traffic.sent("origin", len(data))
        self.events.write("origin_serve", to=msg.sender, video=video, index=index,
                          version=version, bytes=len(data))
        return _origin_answer(version, data)

    async def h_viewer_segment(self, request: web.Request) -> web.Response:
        """A viewer's request, as a helper takes it: the last resort of a viewer whose
        helpers cannot be reached (counted as ``viewer_origin`` egress and a
        ``viewer_serve`` record)."""
        video = request.match_info["video"]
        try:
            index = int(request.match_info["index"])
        except ValueError:
            return web.Response(status=400, text="index must be an integer\n")
        got = await self._current_segment(video, index, 0)
        if isinstance(got, web.Response):
            return got
        version, data = got
        self.traffic.sent("viewer_origin", len(data))
        self.events.write("viewer_serve", viewer=request.headers.get("X-Viewer", "")[:64],
                          video=video, index=index, version=version, bytes=len(data))
        return _origin_answer(version, data)

    async def _current_segment(self, video: str, index: int,
                       min_version: int) -> web.Response | tuple[int, bytes]:
        """``(version, bytes)`` of a segment at its current version (``min_version`` at
        least), or the 404 / 409 answer when there is none."""
        if video not in self.catalogue or not 0 <= index < self.catalogue[video].n_segments:
            return web.Response(status=404, text="no such segment\n")
        if self.catalogue[video].kind == "live" and index > self.live_edge(video):
            return web.Response(status=404, text="not produced yet\n")
        version = self.versions[video]
        if version < min_version:
            return web.Response(status=409, text="no such version\n")
        return version, await asyncio.to_thread(self.segment, video, index)

    async def h_control(self, request: web.Request) -> web.Response:
        raw = await request.read()
        msg = self.secure.decode(raw, "control", roles=("helper",), peer=request.remote or "?")
        if msg is None:
            self.traffic.received("control", len(raw))
            return self.secure.refusal()
        if msg.type == "neighbours":
            self.traffic.received("control", len(raw))
            self.apply(self.logic.handle(Neighbours(msg.sender, msg.body, msg.payload),
                                         self.clock.now()))
        else:
            self.secure.rejected.note(self.events, "wrong_type", msg.sender, "control")
            return web.Response(status=400, text="unexpected message type\n")
        return web.Response(text="ok\n")

    async def h_status(self, request: web.Request) -> web.Response:
        return web.json_response({
            "tiers": tiers_as_lists(self.pingback.tiers) if self.pingback.tiers else [],
            "tables_version": self.pingback.version,
            "sent_tables": {h: v for h, (v, _) in self.logic.sent_table.items()},
            "parents": {h: t.parent for h, t in self.pingback.tables.items()},
            "index": {h: round(v, 3) for h, v in self.pingback.index.index(
                self.clock.now()).items()},
            "versions": self.versions,
            "mesh": {h: sorted(r) for h, r in self.reports.items()},
            "rejected": dict(self.secure.rejected),
        })

    # -- the core's effects ----------------------------------------------------------
    def apply(self, effects: list, logic=None) -> None:
        """Carry out what :class:`MasterLogic` (or, with ``logic``, :class:`OriginLogic`)
        decided, in order; answers to its sends go back to the logic that sent them."""
        logic = logic or self.logic
        for e in effects:
            if isinstance(e, Send):
                self.execute_send(e, logic)
            elif isinstance(e, SetTimer):
                self.timers.set(e)
            elif isinstance(e, Record):
                if e.kind == "rejected":  # counted with the signature checks' refusals
                    f = e.fields
                    self.secure.rejected.note(self.events, f["reason"], f["sender"], f["what"])
                else:
                    self.events.write(e.kind, **e.fields)
            elif isinstance(e, WriteSync):  # new tables
                write_atomic(self.sync_path, json.dumps(e.data, sort_keys=True))
                self.save_state()
            elif isinstance(e, PushFromOrigin):
                asyncio.get_running_loop().create_task(self.push_from_origin(e))
            elif isinstance(e, Publish):
                self.publish(e.video)
                self.save_state()
            else:
                raise TypeError(f"no driver for effect {e!r}")

    def fire(self, name: str, token) -> None:
        """A timer is due: hand it to the logic that set it."""
        logic = self.origin if name in ORIGIN_TIMERS else self.logic
        try:
            now = self.clock.now()
            if name == PREFETCH and self.origin.needs_load:
                self.origin.handle(LinkLoad(self.read_load()), now)
            self.apply(logic.handle(Timer(name, token), now), logic)
        except Exception:  # one failed round never stops the next ones
            log.exception("timer %s", name)
        if name == "pingback":  # a new round: the stamps of probes no longer awaited go
            outstanding = self.logic.nonces
            for nonce in [n for n in self.probe_sent if n not in outstanding]:
                del self.probe_sent[nonce]

    def read_load(self):
        """The links' load as the harness last relayed it (None: none readable)."""
        try:
            return json.loads(self.load_path.read_text())
        except (OSError, ValueError):
            return None

    def execute_send(self, e: Send, logic=None) -> None:
        if e.via == "udp":
            if e.delay_s > 0:
                asyncio.get_running_loop().call_later(e.delay_s, self.send_udp, e)
            else:
                self.send_udp(e)
            return
        body = P.countersign(e.msg_type, e.body, self.authority.sign)
        data = self.secure.encode(e.msg_type, body, e.payload, to=e.to)
        if e.ref is not None:
            task = self._answer(e, data, logic or self.logic)
        else:
            task = self.send(e.to, e.path, data, e.cls, port=e.port or C.HTTP_PORT)
        if e.delay_s > 0:
            task = self._later(e.delay_s, task)
        asyncio.get_running_loop().create_task(task)

    @staticmethod
    async def _later(delay_s: float, coro):
        await asyncio.sleep(delay_s)
        return await coro

    async def _answer(self, e: Send, data: bytes, logic) -> None:
        """Send, and hand the answer (status 0: none) back to ``logic`` as a Response."""
        timeout = None
        if e.to == self.engine:
            timeout = ClientTimeout(total=e.timeout_s)
            if self.engine_up is not None:
                await asyncio.shield(self.engine_up)
        status, body = await self.post(e.to, e.path, data, e.cls, e.port or C.HTTP_PORT,
                                       timeout)
        try:
            self.apply(logic.handle(Response(e.ref, status or 0, body), self.clock.now()),
                       logic)
        except Exception:  # one failed answer never stops the others
            log.exception("answer to %s %s", e.msg_type, e.to)

    def send_udp(self, e: Send) -> None:
        """A datagram now: a probe gets its wall-clock ``sent`` field, and its leaving
        time is kept for the round trip."""
        body = e.body
        if e.msg_type == "probe":
            body = {**body, "sent": self.clock.wall()}
        data = self.secure.encode(e.msg_type, body, e.payload, to=e.to)
        if e.msg_type == "probe":
            self.probe_sent[int(body["nonce"])] = time.time()  # just before it leaves
        self.traffic.sent(e.cls, len(data))
        self.udp.send(data, (self.cfg.helpers[e.to], e.port or C.UDP_PORT))

    # -- pingback ---------------------------------------------------------------------
    def on_udp(self, data: bytes, addr: tuple) -> None:
        self.traffic.received("control", len(data))
        msg = self.secure.decode(data, "udp", roles=("helper",), peer=addr[0])
        if msg is None or msg.type != "probe_reply":
            return
        nonce = int(msg.body["nonce"])
        sent = self.probe_sent.get(nonce)
        if sent is None:
            return  # no probe of ours
        held = float(msg.body.get("held", 0.0))
        # from the probe leaving to the kernel receiving the reply, less the helper's own
        # time between receiving the probe and replying (both kernel-stamped, so neither
        # end's event loop being busy lengthens the round trip)
        rtt = (self.udp.arrival - sent - held) * 1000
        self.apply(self.logic.handle(ProbeReply(msg.sender, nonce, rtt, held),
                                     self.clock.now()))
        if nonce not in self.logic.nonces:
            del self.probe_sent[nonce]

    def address(self, name: str, port: int) -> tuple[str, int]:
        """Where a node listens: the engine at its own address and port, a helper at
        ``port``."""
        if name == self.engine:
            return self.engine_addr
        return self.cfg.helpers[name], port

    async def post(self, to: str, path: str, data: bytes, cls: str, port: int = C.HTTP_PORT,
                   timeout: ClientTimeout | None = None) -> tuple[int | None, bytes]:
        """POST ``data``: ``(status, body)``, or ``(None, what went wrong)``.  The engine's
        answers are counted in ``cls``; a helper that cannot be reached, a ``send_failed``
        record."""
        self.traffic.sent(cls, len(data))
        ip, port = self.address(to, port)
        kw = {"timeout": timeout} if timeout is not None else {}
        try:
            async with self.http.post(f"http://{ip}:{port}{path}", data=data, **kw) as r:
                body = await r.read()
                if to == self.engine:
                    self.traffic.received(cls, len(body))
                return r.status, body
        except (ClientError, asyncio.TimeoutError, OSError) as exc:
            if to == self.engine:  # the logic records why (forecast_failed)
                return None, str(exc).encode()
            self.events.write("send_failed", to=to, path=path, error=type(exc).__name__)
            return None, type(exc).__name__.encode()

    async def send(self, helper: str, path: str, data: bytes, cls: str,
                   port: int = C.HTTP_PORT) -> int | None:
        status, _ = await self.post(helper, path, data, cls, port)
        return status

    # -- live channels ----------------------------------------------------------------
    async def live_channel(self, video: str) -> None:
        """Produce the channel in real time: segment i leaves at live_t0 + (i+1)*segment_s.
        A master restarted mid-run goes on from the live edge (what is out was sent)."""
        v = self.catalogue[video]
        group = relay_group(self.cfg.ip, self.live_ids.index(video) + 1)
        first = max(0, self.live_edge(video) + 1) if self.restarted else 0
        for i in range(first, v.n_segments):
            due = self.live_t0 + (i + 1) * v.segment_s
            await asyncio.sleep(max(0.0, due - self.clock.now()))
            data = self.segment(video, i)
            chunks = P.encode_chunks(video, i, self.versions[video], data)
            dropped = 0
            for j in range(0, len(chunks), 16):  # paced: 16 datagrams per 2 ms
                for c in chunks[j:j + 16]:
                    try:  # non-blocking: a full 4 MB send buffer loses the datagram
                        self.mcast.sendto(c, (group, C.LIVE_PORT))
                    except (BlockingIOError, InterruptedError):
                        dropped += 1
                    else:
                        self.traffic.sent("live", len(c))
                await asyncio.sleep(0.002)
            self.events.write("live_tx", video=video, index=i, version=self.versions[video],
                              group=group, bytes=len(data), send_drops=dropped)

    # -- pushes ----------------------------------------------------------------------
    async def push_from_origin(self, e: PushFromOrigin) -> None:
        """Send a pushed segment to the first hop of its route (the push class's port); its
        bytes are made in a thread (they take a while)."""
        body = P.countersign("mesh_data", e.body, self.authority.sign)  # the plan
        data = await asyncio.to_thread(self.segment, body["video"], body["index"],
                                       body["version"])
        msg = self.secure.encode("mesh_data", body, data, to=body["route"][1])
        await self.send(body["route"][1], "/mesh", msg, "prefetch",
                        port=e.port or C.HTTP_PORT)

def main() -> None:
    C.main_loop(Master)


if __name__ == "__main__":
    main()
