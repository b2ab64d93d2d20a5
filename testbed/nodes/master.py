"""The master daemon: credentials, signed manifests, pingback and tiers, the live channels
down the tree, the origin for misses, prefetch pushes through the mesh, republishing.

- Issues every helper and the prediction engine its credential
  (``<run>/secrets/<name>.json``) from the testbed CA.
- Pingback (UDP 7000): every ``pingback_interval_s`` it probes each helper
  ``pingback_probes`` times; :class:`testbed.core.timing.Pingback` turns the samples into
  the broadcast timing index, tiers and routing tables, which go to the helpers (signed
  ``routing`` messages) and, as tiers and mesh pairs, to the controller (through
  ``<run>/controller-sync.json``, which the harness forwards to the northbound API).
- Live channels are produced in real time and sent on the master's relay group
  ``239.77.N.C``; tier-1 helpers relay them to theirs.
- ``POST /fetch``: the origin, last stop of a miss that went up the tree.
- Every ``prefetch_interval_s`` it asks the prediction engine (:mod:`testbed.nodes.engine`,
  which receives the helpers' telemetry) for each helper's expected requests and its
  viewers' playheads; the prefetch policy picks pushes from those and the helpers' cache
  inventories; each goes through the mesh along a Dijkstra route.
- Scenario events ``republish`` bump a video's version and send an invalidation down the
  tree and through the mesh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import networkx as nx
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from testbed.core import protocol as P
from testbed.core import security as sec
from testbed.core.content import (
    CatalogueConfig,
    build_catalogue,
    build_manifest,
    segment_bytes,
)
from testbed.core.headroom import LinkRoom, PhysicalPaths, PushLoad, link_room, parse_load
from testbed.core.mesh import NearestCopy, PeerMetric, mesh_graph, push_route, push_routes
from testbed.core.multicast import relay_group
from testbed.core.prefetch import Demand, FutureDemand, HelperView, make_policy
from testbed.core.protocol import PUSH_PORT
from testbed.core.timing import Pingback, tiers_as_lists
from testbed.nodes import common as C
from testbed.nodes.manifests import sign_manifest

log = logging.getLogger("meshcast.master")
ACTIVE_S = 15.0  # playheads older than this are not planned with
FORECAST_EVERY_S = 2.0  # at most this often the engine is asked (a segment's length)
EGRESS_EVERY_S = 1.0  # the master logs what it sent, by class, this often
#: A pushed copy is taken to be at its holder this long after it was sent (until the
#: holder's own inventory report says so), and for this long at most
LANDED_AFTER_S, LANDED_FOR_S = 3.0, 30.0


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Master:
    def __init__(self, cfg: C.NodeConfig):
        self.cfg = cfg
        self.clock = C.Clock(cfg.t0)
        self.events = C.EventLog(cfg.run_dir / "logs" / f"{cfg.name}.jsonl", cfg.name, self.clock)
        self.traffic = C.Traffic()
        d = cfg.delivery
        self.catalogue = build_catalogue(CatalogueConfig(**cfg.catalogue))
        self.live_ids = self.catalogue.ids("live")
        self.live_t0 = float(cfg.extra["live_t0"])
        tiers = d["tiers"]
        self.pingback = Pingback(cfg.name,
                                 tier_count=tiers if isinstance(tiers, int) else None,
                                 bands_ms=tiers if isinstance(tiers, list) else None,
                                 fanout=d.get("fanout"), rel=0.5, abs_ms=5.0)
        self.policy = make_policy(d["prefetch"])
        self.versions = {vid: 1 for vid in self.catalogue.ids()}
        self.signed: dict[str, dict] = {}
        self.nonces: dict[int, tuple[str, float]] = {}
        self.reports: dict[str, dict[str, PeerMetric]] = {}
        self.inventory: dict[str, set[tuple[str, int]]] = {}
        self.forecast: dict = {}  # the engine's last answer
        self.forecast_at = -1e9
        self.forecast_version: int | None = None
        self.horizon_s = float(cfg.extra["engine"]["horizon_s"])
        self.planned: FutureDemand | None = None
        self.in_flight: dict[tuple[str, str, int], float] = {}
        self.sync_path = cfg.run_dir / "controller-sync.json"
        self.load_path = cfg.run_dir / "link-load.json"  # the links' load, as measured
        spec = nx.Graph()
        for a, b, delay_ms, bw_mbit in cfg.extra.get("links", []):
            spec.add_edge(a, b, delay_ms=delay_ms, bw_mbit=bw_mbit)
        self.paths = PhysicalPaths(spec)
        self.capacity = self.paths.capacities()
        self.push_load = PushLoad()
        self.pushed: dict[tuple[str, int], dict[str, float]] = {}  # segment -> holder -> t
        self.push_port = PUSH_PORT if d.get("push_priority", "low") == "low" else C.HTTP_PORT
        #: the transfer routes are costed by: the largest first segment of the catalogue
        self.ref_bytes = max(self.catalogue[v].segment_size(0) for v in self.catalogue.ids())
        self.tasks: list[asyncio.Task] = []
        self.sent_place: dict[str, tuple] = {}
        self.rounds = 0
        self.started_at = 0.0

    # -- credentials and manifests ----------------------------------------------------
    def issue_credentials(self) -> None:
        secret = (self.cfg.secrets_dir / "ca.secret").read_bytes()
        self.authority = sec.Authority.from_secret(secret)
        not_after = self.clock.wall() + self.cfg.duration_s + 3600
        self.identity = self.authority.identity(self.cfg.name, not_after=not_after)
        self.directory = [self.identity.cert]
        engine = self.cfg.extra["engine"]["name"]
        for name, role in [*((h, "helper") for h in self.cfg.helpers), (engine, "engine")]:
            ident = self.authority.issue(name, role, not_after)
            self.directory.append(ident.cert)
            path = self.cfg.credential_path(name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(ident.to_json())
        # the public directory: written before any credential can be used
        write_atomic(self.cfg.secrets_dir / "certificates.json",
                     json.dumps([c.to_dict() for c in self.directory]))
        self.events.write("credentials", issued=sorted(self.cfg.helpers) + [engine])

    def publish(self, video: str) -> dict:
        m = build_manifest(self.cfg.seed, self.catalogue[video], self.versions[video])
        self.signed[video] = sign_manifest(self.authority, m)
        return self.signed[video]

    # -- life cycle -------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.issue_credentials()
        if self.policy.name == "oracle":
            self.load_planned()
        self.started_at = self.clock.now()
        self.secure = C.Secure(self.identity, self.authority.public_key, self.clock,
                               self.events, self.directory)
        for video in self.catalogue.ids():
            self.publish(video)
        self.http = ClientSession(timeout=ClientTimeout(total=10, connect=3))
        runner = await C.serve_http([
            web.get("/manifest/{video}", self.h_manifest),
            web.post("/fetch", self.h_fetch),
            web.post("/control", self.h_control),
            web.get("/status", self.h_status),
        ], self.cfg.ip)
        self.udp = await C.open_udp(self.on_udp, self.cfg.ip, C.UDP_PORT)
        self.mcast = C.multicast_sender(self.cfg.ip)
        d = self.cfg.delivery
        loop = asyncio.get_running_loop()
        self.tasks = C.watch(self.events, [
            C.every(float(d["pingback_interval_s"]), self.pingback_round, "pingback",
                    first_delay=1.0),
            *([C.every(max(float(d["prefetch_interval_s"]), FORECAST_EVERY_S),
                       self.ask_engine, "forecast", first_delay=2.5)]
              if self.cfg.extra["engine"].get("enabled", True) else []),
            *([C.every(float(d["prefetch_interval_s"]), self.prefetch_round, "prefetch",
                       first_delay=3.0)] if self.policy.name != "none" else []),
            C.every(EGRESS_EVERY_S, self.log_egress, "egress"),
            *(loop.create_task(self.live_channel(v), name=f"live {v}") for v in self.live_ids),
            *(loop.create_task(self.scheduled(e), name="event") for e in self.cfg.events
              if e.get("action") == "republish"),
        ])
        C.announce_ready(self.cfg, self.events, ip=self.cfg.ip, policy=self.policy.name,
                          videos=len(self.catalogue))
        try:
            await stop.wait()
        finally:
            await C.cancel_tasks(self.tasks)
            await self.log_egress()
            C.closing_records(self.events, self.traffic)
            self.events.write("rejections", counts=dict(self.secure.rejected))
            await self.http.close()
            await runner.cleanup()
            self.events.close()

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

    def segment(self, video: str, index: int) -> bytes:
        return segment_bytes(self.cfg.seed, self.catalogue[video], index, self.versions[video])

    async def h_fetch(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.traffic.received("tree", len(raw))
        msg = self.secure.decode(raw, "fetch", roles=("helper",), peer=request.remote or "?")
        if msg is None:
            return self.secure.refusal()
        if msg.type != "fetch":
            return web.Response(status=400, text="expected fetch\n")
        video, index = msg.body["video"], int(msg.body["index"])
        if video not in self.catalogue or not 0 <= index < self.catalogue[video].n_segments:
            return web.Response(status=404, text="no such segment\n")
        if self.catalogue[video].kind == "live" and index > self.live_edge(video):
            return web.Response(status=404, text="not produced yet\n")
        version = self.versions[video]
        if version < int(msg.body["min_version"]):
            return web.Response(status=409, text="no such version\n")
        data = await asyncio.to_thread(self.segment, video, index)
        self.traffic.sent("origin", len(data))
        self.events.write("origin_serve", to=msg.sender, video=video, index=index,
                          version=version, bytes=len(data))
        return web.Response(body=data, headers={"X-Meshcast-Version": str(version),
                                                "X-Meshcast-Source": "origin",
                                                "X-Meshcast-Root": "origin"})

    async def h_control(self, request: web.Request) -> web.Response:
        raw = await request.read()
        msg = self.secure.decode(raw, "control", roles=("helper",), peer=request.remote or "?")
        if msg is None:
            self.traffic.received("control", len(raw))
            return self.secure.refusal()
        if msg.type == "neighbours":
            self.traffic.received("control", len(raw))
            self.on_neighbours(msg)
        else:
            self.secure.rejected.note(self.events, "wrong_type", msg.sender, "control")
            return web.Response(status=400, text="unexpected message type\n")
        return web.Response(text="ok\n")

    async def h_status(self, request: web.Request) -> web.Response:
        return web.json_response({
            "tiers": tiers_as_lists(self.pingback.tiers) if self.pingback.tiers else [],
            "tables_version": self.pingback.version,
            "index": {h: round(v, 3) for h, v in self.pingback.index.index(
                self.clock.now()).items()},
            "versions": self.versions,
            "mesh": {h: sorted(r) for h, r in self.reports.items()},
            "rejected": dict(self.secure.rejected),
        })

    # -- helpers' reports -------------------------------------------------------------
    def on_neighbours(self, msg: P.Message) -> None:
        metrics = {}
        for peer, m in msg.body["neighbours"].items():
            try:
                metrics[str(peer)] = PeerMetric(latency_ms=float(m["latency_ms"]),
                                                bw_mbit=float(m["bw_mbit"]))
            except (KeyError, TypeError, ValueError):
                self.secure.rejected.note(self.events, "malformed", msg.sender, "neighbours")
                return
        changed = set(metrics) != set(self.reports.get(msg.sender, {}))
        self.reports[msg.sender] = metrics
        if msg.payload:  # empty: the inventory has not changed since the last report
            try:
                inv = json.loads(msg.payload)
                self.inventory[msg.sender] = {(str(v), int(i)) for v, i, ver in inv
                                              if ver >= self.versions.get(v, 1)}
            except (ValueError, TypeError):
                self.secure.rejected.note(self.events, "malformed", msg.sender, "inventory")
        if changed:
            self.events.write("mesh_report", helper=msg.sender, neighbours=sorted(metrics))
            self.write_sync()

    def write_sync(self) -> None:
        """What the controller should know: tiers and mesh pairs (the harness forwards it)."""
        data = {"tiers": tiers_as_lists(self.pingback.tiers) if self.pingback.tiers else [],
                "mesh": {h: sorted(r) for h, r in sorted(self.reports.items())}}
        write_atomic(self.sync_path, json.dumps(data, sort_keys=True))

    # -- pingback ---------------------------------------------------------------------
    def on_udp(self, data: bytes, addr: tuple) -> None:
        self.traffic.received("control", len(data))
        msg = self.secure.decode(data, "udp", roles=("helper",), peer=addr[0])
        if msg is None or msg.type != "probe_reply":
            return
        sent = self.nonces.pop(int(msg.body["nonce"]), None)
        if sent is None or sent[0] != msg.sender:
            return
        held = float(msg.body.get("held", 0.0))
        # from the probe leaving to the kernel receiving the reply, less the helper's own
        # time between receiving the probe and replying (both kernel-stamped, so neither
        # end's event loop being busy lengthens the round trip)
        rtt = (self.udp.arrival - sent[1] - held) * 1000
        if not (held >= 0.0 and 0.0 <= rtt < 10_000.0):
            return  # an answer that cannot be right is no sample
        self.pingback.record(msg.sender, rtt, self.clock.now())

    async def pingback_round(self) -> None:
        d = self.cfg.delivery
        # A probe is lost only when the next round starts without its answer: a reply
        # handled late (either end's event loop busy) still gives the right round trip,
        # both ends being kernel-stamped, so it counts as a sample, not a timeout.
        now = self.clock.now()
        lost = Counter(h for h, _ in self.nonces.values())
        for helper, n in lost.items():
            if n >= int(d["pingback_probes"]):  # not one of its probes answered
                self.pingback.record(helper, None, now)
        self.nonces.clear()
        for _ in range(int(d["pingback_probes"])):
            for helper, ip in self.cfg.helpers.items():
                nonce = int.from_bytes(os.urandom(6), "big")
                probe = self.secure.encode("probe", {"nonce": nonce, "sent": self.clock.wall()})
                self.nonces[nonce] = (helper, time.time())  # just before it leaves
                self.traffic.sent("control", len(probe))
                self.udp.send(probe, (ip, C.UDP_PORT))
                await asyncio.sleep(0.004)  # staggered: replies do not queue behind each other
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.5)  # most answers are in: decide on what the index holds now
        now = self.clock.now()
        ready, _ = self.pingback.ready(now)
        if (self.pingback.version == 0 and set(ready) != set(self.cfg.helpers)
                and now < self.started_at + 15.0):
            return  # the first tables wait (a while) for every helper to answer
        tables = self.pingback.recompute(now)
        if tables is None:
            return
        index = self.pingback.index.index(now)
        self.events.write("tiers", version=self.pingback.version,
                          tiers=tiers_as_lists(self.pingback.tiers),
                          index_ms={h: round(v, 3) for h, v in index.items()})
        self.write_sync()
        master_ip = self.cfg.ip
        for helper, t in tables.items():
            if helper == self.cfg.name or helper not in self.cfg.helpers:
                continue
            if self.sent_place.get(helper) == t.place:
                continue  # latencies moved but this helper's place in the tree did not
            self.sent_place[helper] = t.place
            parent_ip = self.cfg.helpers.get(t.parent, master_ip)
            body = {"version": t.version, "tier": t.tier, "parent": t.parent,
                    "parent_addr": parent_ip, "children": list(t.children),
                    "ancestors": list(t.ancestors),
                    "tiers": tiers_as_lists(self.pingback.tiers),
                    "live_group": relay_group(parent_ip, 1) if self.live_ids else ""}
            asyncio.get_running_loop().create_task(
                self.send(helper, "/control", self.secure.encode("routing", body), "control"))

    async def send(self, helper: str, path: str, data: bytes, cls: str,
                   port: int = C.HTTP_PORT) -> int | None:
        self.traffic.sent(cls, len(data))
        try:
            async with self.http.post(f"http://{self.cfg.helpers[helper]}:{port}{path}",
                                      data=data) as r:
                await r.read()
                return r.status
        except (ClientError, asyncio.TimeoutError, OSError) as exc:
            self.events.write("send_failed", to=helper, path=path, error=type(exc).__name__)
            return None

    # -- live channels ----------------------------------------------------------------
    async def live_channel(self, video: str) -> None:
        """Produce the channel in real time: segment i leaves at live_t0 + (i+1)*segment_s."""
        v = self.catalogue[video]
        group = relay_group(self.cfg.ip, self.live_ids.index(video) + 1)
        for i in range(v.n_segments):
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

    # -- prefetch ---------------------------------------------------------------------
    async def ask_engine(self) -> None:
        """The engine's predictions and playheads for every helper (kept in ``forecast``)."""
        e = self.cfg.extra["engine"]
        predictor = getattr(self.policy, "predictor", None) or "model"
        ask = {"helpers": sorted(self.cfg.helpers), "top": int(e["top"]), "predictor": predictor}
        if getattr(self.policy, "horizon_s", None):
            ask["horizon_s"] = self.policy.horizon_s
        msg = self.secure.encode("predict", ask)
        self.traffic.sent("prediction", len(msg))
        try:
            async with self.http.post(f"http://{e['ip']}:{e['port']}/predict", data=msg,
                                      timeout=ClientTimeout(total=3.0)) as r:
                body = await r.read()
                self.traffic.received("prediction", len(body))
                if r.status != 200:
                    raise ValueError(f"status {r.status}: {body[:120]!r}")
                answer = json.loads(body)
        except (ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            self.events.write("forecast_failed", error=str(exc)[:200])
            return
        self.forecast = answer
        self.forecast_at = self.clock.now()
        n = sum(len(p) for p in answer.get("predictions", {}).values())
        if answer.get("version") != self.forecast_version:
            self.forecast_version = answer.get("version")
            self.events.write("forecast_model", version=self.forecast_version)
        self.events.write("forecast", version=answer.get("version"), segments=n,
                          bytes=len(body))

    def helper_views(self, now: float) -> list[HelperView]:
        playheads: dict[str, list[tuple[str, int]]] = {}
        if now - self.forecast_at <= ACTIVE_S:
            for helper, heads in self.forecast.get("playheads", {}).items():
                playheads[helper] = [(str(v), int(i)) for v, i in heads]
        views = []
        for helper in sorted(self.cfg.helpers):
            flying = frozenset((v, i) for (h, v, i) in self.in_flight if h == helper)
            views.append(HelperView(helper=helper,
                                    playheads=tuple(sorted(playheads.get(helper, []))),
                                    cached=frozenset(self.inventory.get(helper, set())),
                                    in_flight=flying))
        return views

    def catalogue_size(self, video: str, index: int) -> int:
        return self.catalogue[video].segment_size(index)

    def _n_segments(self, video: str) -> int:
        v = self.catalogue[video]
        if v.kind == "live":
            return self.live_edge(video) + 1
        return v.n_segments

    def mesh(self):
        """The mesh as the master knows it: helpers' reported links, and its own to tier 1."""
        master_links = {}
        for helper, table in self.pingback.tables.items():
            if table.parent == self.cfg.name and helper != self.cfg.name:
                lat = self.pingback.index.latency(helper) or 50.0
                master_links[helper] = PeerMetric(latency_ms=lat, bw_mbit=50.0)
        return mesh_graph(self.reports, self.cfg.name, master_links)

    def demand(self, now: float) -> list[Demand]:
        """Expected requests per helper and segment over the horizon, for a demand policy:
        the engine's forecast (``predictive``, ``playhead``, ``popularity``) or the planned
        sessions' own requests (``oracle``: the future as the workload planned it)."""
        if self.policy.predictor is None:
            return self.planned.between(now, self.horizon_s) if self.planned else []
        if now - self.forecast_at > ACTIVE_S:
            return []
        # the running sessions' next requests, and the start-up bursts of sessions to come
        # (on-demand videos only: a live session starts at the live edge)
        rows = [(h, v, i, x, key == "arrivals") for key in ("predictions", "arrivals")
                for h, got in self.forecast.get(key, {}).items() for v, i, x in got]
        return [Demand(h, str(v), int(i), float(x)) for h, v, i, x, to_come in rows
                if h in self.cfg.helpers and v in self.catalogue
                and not (to_come and self.catalogue[v].kind == "live")]

    def load_planned(self) -> None:
        """The planned sessions' requests (``workload/planned.csv``), in run time."""
        path = self.cfg.run_dir / "workload" / "planned.csv"
        if not path.exists():
            self.events.write("oracle_blind", reason="no workload/planned.csv")
            return
        from testbed.core.workload import read_trace

        req = read_trace(path).query("kind == 'request'")
        start = float(self.cfg.extra.get("viewers_start_s", 0.0))
        self.planned = FutureDemand(zip((req["at"] + start).tolist(), req["helper"].tolist(),
                                        req["video"].tolist(), req["index"].tolist()))

    def newest(self) -> dict[str, int]:
        """Each live channel's newest segment: nothing past it can be pushed."""
        return {v: self.live_edge(v) for v in self.live_ids}

    def holders(self, now: float) -> dict[tuple[str, int], list[str]]:
        """Segment -> helpers holding a copy: their inventory reports, and the copies pushed
        to them that have had time to land since (until a report says otherwise)."""
        out: dict[tuple[str, int], set[str]] = {}
        for helper, keys in self.inventory.items():
            for key in keys:
                out.setdefault(key, set()).add(helper)
        for key, at in list(self.pushed.items()):
            for helper, t in list(at.items()):
                if now - t > LANDED_FOR_S:
                    del at[helper]
                elif now - t >= LANDED_AFTER_S:
                    out.setdefault(key, set()).add(helper)
            if not at:
                del self.pushed[key]
        return {k: sorted(v) for k, v in out.items()}

    def room(self, now: float, interval_s: float) -> LinkRoom | None:
        """What each link can take in pushes this round (None: the links are not looked
        at); the load comes from the switches' counters, as the harness relays it."""
        reserve = self.cfg.delivery.get("push_reserve")
        if reserve is None or not self.capacity:
            return None
        try:
            measured = parse_load(json.loads(self.load_path.read_text()), now) or {}
        except (OSError, ValueError):
            measured = {}
        return LinkRoom(link_room(self.capacity, measured, self.push_load.mbit(now),
                                  interval_s, float(reserve)), self.paths)

    async def prefetch_round(self) -> None:
        now = self.clock.now()
        d = self.cfg.delivery
        interval = float(d["prefetch_interval_s"])
        budget = int(float(d["push_budget_kbps"]) * 1000 / 8 * interval)
        size_of = self.catalogue_size
        graph = self.mesh()
        for k, t in list(self.in_flight.items()):
            if now - t > 10.0:
                del self.in_flight[k]
        if hasattr(self.policy, "plan_demand"):
            helpers = sorted(self.cfg.helpers)
            network: dict = {"newest": self.newest(), "link_room": self.room(now, interval)}
            if self.cfg.name in graph and d.get("push_source", "nearest") == "nearest":
                network["nearest"] = NearestCopy(graph, self.cfg.name, self.ref_bytes)
                network["holders"] = self.holders(now)
            elif self.cfg.name in graph:
                network["routes"] = push_routes(graph, [self.cfg.name], helpers, 1_000_000)
            cached = {h: frozenset(self.inventory.get(h, set())) for h in helpers}
            flying = {h: frozenset((v, i) for (hh, v, i) in self.in_flight if hh == h)
                      for h in helpers}
            pushes = self.policy.plan_demand(now, self.demand(now), cached, flying, size_of,
                                             budget, master=self.cfg.name, **network)
        else:
            views = self.helper_views(now)
            if views:  # a different helper first each round, so a small budget is shared
                turn = self.rounds % len(views)
                views = views[turn:] + views[:turn]
            pushes = self.policy.plan(now, views, size_of, self._n_segments, budget)
        self.rounds += 1
        for push in pushes:
            route = list(push.route) or None
            if route is None and push.dest in graph and self.cfg.name in graph:
                route = push_route(graph, [self.cfg.name], push.dest, push.size)
            if not route:
                route = [self.cfg.name, push.dest]
            for holder in (*push.keep, push.dest):
                self.in_flight[(holder, push.video, push.index)] = now
                self.pushed.setdefault((push.video, push.index), {})[holder] = now
            self.push_load.add(now, self.paths.route_links(route), push.size)
            push_id = uuid.uuid4().hex[:12]
            body = {"video": push.video, "index": push.index,
                    "version": self.versions[push.video], "route": route, "hop": 1,
                    "push_id": push_id, "keep": list(push.keep)}
            self.events.write("push", push_id=push_id, video=push.video, index=push.index,
                              dest=push.dest, route=route, source=route[0],
                              keep=list(push.keep), bytes=push.size,
                              expected_hits=push.expected_hits)
            if route[0] == self.cfg.name:
                asyncio.get_running_loop().create_task(self.push_from_origin(body))
            else:
                asyncio.get_running_loop().create_task(self.order_push(body, graph))

    async def push_from_origin(self, body: dict) -> None:
        """Send a pushed segment to the first hop of its route (the push class's port)."""
        data = await asyncio.to_thread(self.segment, body["video"], body["index"])
        msg = self.secure.encode("mesh_data", body, data)
        await self.send(body["route"][1], "/mesh", msg, "prefetch", port=self.push_port)

    async def order_push(self, body: dict, graph: nx.Graph) -> None:
        """Tell the helper holding the nearest copy to send it; when it cannot (the copy
        was evicted, it is unreachable), the origin sends it along its own route."""
        holder = body["route"][0]
        status = await self.send(holder, "/control", self.secure.encode("push_order", body),
                                 "control")
        if status == 200:
            return
        route = (push_route(graph, [self.cfg.name], body["route"][-1], 1_000_000)
                 if self.cfg.name in graph else None) or [self.cfg.name, body["route"][-1]]
        keep = [h for h in body["keep"] if h in route[1:-1]]
        self.events.write("push_fallback", push_id=body["push_id"], holder=holder,
                          status=status, route=route)
        await self.push_from_origin({**body, "route": route, "keep": keep})

    # -- republishing -----------------------------------------------------------------
    async def scheduled(self, event: dict) -> None:
        await asyncio.sleep(max(0.0, float(event["at_s"]) - self.clock.now()))
        video = event["target"]
        if video not in self.versions:
            self.events.write("event_error", error=f"republish: unknown video {video!r}")
            return
        self.versions[video] += 1
        self.publish(video)
        issued = self.clock.wall()
        inv_id = uuid.uuid4().hex[:12]
        self.events.write("republish", video=video, version=self.versions[video],
                          inv_id=inv_id, issued=issued)
        body = {"video": video, "version": self.versions[video], "issued": issued,
                "inv_id": inv_id, "route": [self.cfg.name]}
        msg = self.secure.encode("invalidate", body)
        table = self.pingback.tables.get(self.cfg.name)
        first = list(table.children) if table else sorted(self.cfg.helpers)
        await asyncio.gather(*(self.send(h, "/control", msg, "control") for h in first))


def main() -> None:
    C.main_loop(Master)


if __name__ == "__main__":
    main()
