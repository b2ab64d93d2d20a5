"""The simulated nodes: the core's node logic driven by the simulation's clock and network.

Each class here is to the simulation what a daemon in :mod:`testbed.nodes` is to the
emulation: it turns messages, answers and timers into the logic's events and carries out
its effects, writing the same records and counting the same traffic classes.  What the
daemons do at the edge is done here as follows:

* **Signing** is counted, not performed: every signed message carries
  ``SIGNED_OVERHEAD`` bytes more than its body and payload (the envelope, the
  certificate's name and the signature, as measured on the daemons' messages), and each
  node counts the messages it signed and verified (``signatures`` in the run's
  manifest, with the CPU they would have cost; a node's ``process`` record's ``cpu_s`` is
  that cost, the only CPU a simulated node has).
* **Segment bytes** are :class:`~testbed.core.content.StandIn` values (size and digest):
  caches, replies and checks handle them as the daemons handle bytes.
* **Messages** go through :class:`~testbed.sim.network.FlowNet`: a request crosses the
  path, the recipient's logic handles it at once (no CPU time), its answer crosses back.
  A ``Send`` with a timeout gets ``Response(ref, 0)`` if no answer came in time.
* **Live channels**: the master produces each segment on time and sends it to its relay
  group as one multicast flow; helpers relay whole segments
  (:class:`~testbed.core.node.helper.LiveSegment`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from testbed.core.content import Manifest, segment_standin, standin_manifest
from testbed.core.engine import DemandEngine, EngineError, train
from testbed.core.multicast import relay_group
from testbed.core.node import helper as H
from testbed.core.node import viewer as V
from testbed.core.node.effects import Record, Reply, Response, Send, SetTimer, Timer
from testbed.core.node.master import MasterLogic, Neighbours, ProbeReply, WriteSync
from testbed.core.node.origin import PREFETCH, LinkLoad, OriginLogic, Publish, PushFromOrigin
from testbed.core.node.origin import TIMERS as ORIGIN_TIMERS
from testbed.core.protocol import COUNTERSIGNED, PUSH_PORT, countersign
from testbed.core.records import ROOT_HEADER, SOURCE_HEADER, TOKEN_HEADER, VERSION_HEADER

SIGNED_OVERHEAD = 342     # bytes a signed envelope (recipient included) adds to body and payload
STANDIN_SIGNATURE = bytes(64)  # the master's signature in a body (a plan, an invalidation)
SIGN_CPU_S = 115e-6       # one signature (Ed25519 and the envelope), as measured
VERIFY_CPU_S = 140e-6     # one verification
EGRESS_EVERY_S = 1.0      # the master's egress records, as the daemon writes them
TRAIN_EVERY_S = 1.0       # the engine looks whether a training is due this often
HTTP_PORT = 8080
CLIENT_TIMEOUT_S = 10.0   # the daemons' HTTP clients give up on an answer after this long
CHUNK_PAYLOAD = 1200      # a live datagram's share of its segment (protocol.encode_chunks)
CHUNK_OVERHEAD = 40       # its header


_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str)


def body_size(body: dict) -> int:
    """Bytes of ``body`` as the daemons send it (compact JSON)."""
    return len(_COMPACT.encode(body))


class RecordLog:
    """The nodes' records as the daemons write them (``logs/<node>.jsonl``): held until
    ``limit`` of them wait, then appended to each node's file, so a long run's memory does
    not grow with its records.  Without ``logs`` they are only held (:meth:`of`)."""

    def __init__(self, logs: Path | None = None, limit: int = 200_000) -> None:
        self.logs = logs
        self.limit = limit
        self.waiting: dict[str, list[dict]] = {}
        self.held = 0

    def add(self, node: str, record: dict) -> None:
        got = self.waiting.get(node)
        if got is None:
            got = self.waiting[node] = []
        got.append(record)
        self.held += 1
        if self.held >= self.limit and self.logs is not None:
            self.flush()

    def of(self, node: str) -> list[dict]:
        """``node``'s records not yet written."""
        return self.waiting.get(node, [])

    def flush(self, nodes: Iterable[str] = ()) -> None:
        """Append what waits to the files (each of ``nodes`` gets one, if empty)."""
        if self.logs is None:
            raise ValueError("records: no log directory to write to")
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in nodes:
            (self.logs / f"{name}.jsonl").touch()
        for name, records in self.waiting.items():
            with open(self.logs / f"{name}.jsonl", "a") as f:
                f.writelines(_COMPACT.encode(r) + "\n" for r in records)
        self.waiting.clear()
        self.held = 0


class Node:
    """What every simulated node has: a name, a host, its records and traffic."""

    role = ""

    def __init__(self, world: World, name: str, host: str) -> None:
        self.w = world
        self.name = name
        self.host = host
        self.tx: Counter[str] = Counter()
        self.rx: Counter[str] = Counter()
        self.timers: dict[str, int] = {}
        self.signed = 0
        self.verified = 0

    def record(self, kind: str, fields: dict) -> None:
        self.w.log.add(self.name, {"kind": kind, "node": self.name,
                                   "at": round(self.w.k.now, 4), **fields})

    def set_timer(self, e: SetTimer) -> None:
        gen = self.timers.get(e.name, 0) + 1
        self.timers[e.name] = gen
        self.w.k.at(e.at, self._fire, (e.name, gen, e.token))

    def _fire(self, arg: tuple) -> None:
        name, gen, token = arg
        if self.timers.get(name) != gen or self.w.stopped:
            return
        del self.timers[name]
        self.on_timer(name, token)

    def on_timer(self, name: str, token: Any) -> None:  # pragma: no cover - each node's own
        raise NotImplementedError

    def closing(self) -> None:
        for direction, counts in (("tx", self.tx), ("rx", self.rx)):
            for cls, n in sorted(counts.items()):
                self.record("traffic", {"cls": cls, "direction": direction, "bytes": int(n)})
        cpu = self.signed * SIGN_CPU_S + self.verified * VERIFY_CPU_S
        self.record("process", {"cpu_s": round(cpu, 3)})

    # -- messages ------------------------------------------------------------------------
    def send(self, e: Send, on_answer: Callable[[Response], None] | None) -> None:
        """A signed message to ``e.to``; ``on_answer(Response)`` with its outcome."""
        if e.delay_s > 0:
            self.w.k.after(e.delay_s, lambda _: self._send_now(e, on_answer))
        else:
            self._send_now(e, on_answer)

    def _send_now(self, e: Send, on_answer: Callable[[Response], None] | None) -> None:
        w = self.w
        if w.stopped:
            return
        to = w.nodes.get(e.to)
        if to is None:
            if on_answer is not None:
                w.k.after(0.0, lambda _: on_answer(Response(e.ref or 0, 0, b"unreachable")))
            return
        size = body_size(e.body) + len(e.payload) + SIGNED_OVERHEAD
        self.signed += 1
        self.tx[e.cls] += size
        if e.via == "udp":
            sent_at = w.k.now
            w.net.send(self.host, to.host, size,
                       lambda _: to.on_datagram(self, e, size, sent_at), http=False)
            return
        call = w.call(self, on_answer, e.timeout_s)
        lo = e.cls == "prefetch" and e.port == PUSH_PORT
        call.transfer = w.net.send(
            self.host, to.host, size,
            lambda _: to.on_message(self, e, size, lambda r: call.answer(r, e.cls, to)), lo=lo)

    def on_message(self, sender: Node, e: Send, size: int,
                   answer: Callable[[Reply], None]) -> None:  # pragma: no cover
        raise NotImplementedError

    def on_datagram(self, sender: Node, e: Send, size: int, sent_at: float) -> None:
        self.rx[e.cls] += size
        self.verified += 1
        if e.msg_type in ("probe", "peer_probe"):  # answered at once (nothing held)
            reply = SIGNED_OVERHEAD + 40
            self.signed += 1
            self.tx["control"] += reply

            def back(_: Any) -> None:
                sender.rx["control"] += reply
                sender.verified += 1
                sender.on_probe_reply(self.name, e, sent_at)

            self.w.net.send(self.host, sender.host, reply, back, http=False)

    def on_probe_reply(self, peer: str, e: Send, sent_at: float) -> None:
        """A probe sent at ``sent_at`` came back now (both ends' stamps exact)."""


class World:
    """The simulated run: the clock, the network, the nodes by name, the relay groups'
    members, and the links' load as the master is told it."""

    def __init__(self, kernel, net, seed: int) -> None:
        self.k = kernel
        self.net = net
        self.seed = seed
        self.nodes: dict[str, Node] = {}
        self.master: SimMaster | None = None
        self.groups: dict[str, dict[str, str]] = {}  # relay group -> member -> video
        self.stopped = False
        self.log = RecordLog()  # run_sim gives it the run's logs directory
        self._load_mark: tuple[float, dict] | None = None

    def call(self, node: Node, on_answer, timeout_s: float) -> _Answering:
        return _Answering(self, node, on_answer, timeout_s)

    def add(self, node: Node) -> None:
        self.nodes[node.name] = node
        if isinstance(node, SimMaster):
            self.master = node

    def link_load(self) -> dict | None:
        """Each link's rate both ways since the last time the master asked (what the
        controller measures from the switches' counters and the harness relays), in the
        form of ``link-load.json``; None the first time."""
        now = self.k.now
        c = self.net.counters()
        mark, self._load_mark = self._load_mark, (now, c)
        if mark is None or now <= mark[0]:
            return None
        dt, before = now - mark[0], mark[1]
        rows = [{"a": a, "b": b,
                 "ab_mbit": round((c[(a, b)] - before[(a, b)]) * 8 / dt / 1e6, 3),
                 "ba_mbit": round((c[(b, a)] - before[(b, a)]) * 8 / dt / 1e6, 3)}
                for a, b in self.net.spec.edges()]
        return {"at": round(now, 3), "links": rows}

    def live_to_group(self, sender: Node, group: str, seg: H.LiveSegment) -> None:
        """``seg`` to every member of ``group`` that joined it for that channel."""
        members = {}
        for name, video in self.groups.get(group, {}).items():
            if video == seg.video and name in self.nodes:
                node = self.nodes[name]
                members[node.host] = (self._live_rx, (node, seg))
        if sender is not self.master:
            sender.tx["live"] += len(seg.data) * len(members)
        chunks = -(-len(seg.data) // CHUNK_PAYLOAD)
        self.net.multicast(sender.host, members, len(seg.data), chunks)

    def _live_rx(self, arg: tuple) -> None:
        node, seg = arg
        if self.stopped:
            return
        node.rx["live"] += len(seg.data)
        node.feed(seg)


class _Answering:
    """The reply path of one request: the recipient's :class:`Reply` crosses the network
    back to the sender, whose logic gets a :class:`Response` (or a timeout first)."""

    __slots__ = ("w", "node", "on_answer", "done", "transfer")

    def __init__(self, world: World, node: Node, on_answer, timeout_s: float) -> None:
        self.w, self.node, self.on_answer, self.done = world, node, on_answer, False
        self.transfer = None  # the request's or the answer's bulk transfer, while it runs
        if on_answer is not None and timeout_s:
            world.k.after(timeout_s, self._timeout)

    def _timeout(self, _: Any) -> None:
        if not self.done:
            self.done = True
            self.w.net.cancel(self.transfer)  # the client closes the connection
            if not self.w.stopped:
                self.on_answer(Response(0, 0, b"TimeoutError"))

    def answer(self, r: Reply, cls: str, replier: Node) -> None:
        node = self.node
        size = len(r.body)

        def arrived(_: Any) -> None:
            node.rx[cls] += size
            if self.done or self.w.stopped:
                return
            self.done = True
            if self.on_answer is not None:
                self.on_answer(Response(0, r.status, r.body, dict(r.headers)))

        if not self.done:  # a client that gave up reads no answer
            self.transfer = self.w.net.send(replier.host, node.host, size, arrived)


# -- the helper ------------------------------------------------------------------------------
class SimHelper(Node):
    role = "helper"

    def __init__(self, world: World, name: str, settings: H.HelperSettings) -> None:
        super().__init__(world, name, name)
        self.logic = H.HelperLogic(settings)
        self.pending: dict[int, Callable[[Reply], None]] = {}
        self.refs = 0
        self.joined: dict[str, str] = {}  # video -> group

    def start(self) -> None:
        self.record("started", {"ip": self.logic.s.addresses[self.name],
                                "cache_bytes": self.logic.cache.capacity_bytes})
        self.apply(self.logic.start(self.w.k.now))

    def stop(self) -> None:
        self.apply(self.logic.stop(self.w.k.now))
        self.closing()
        self.record("rejections", {"counts": dict(self.logic.rejected)})

    def feed(self, event: object) -> None:
        self.apply(self.logic.handle(event, self.w.k.now))

    def ask(self, make: Callable[[int], object], answer: Callable[[Reply], None]) -> None:
        self.refs += 1
        ref = self.refs
        self.pending[ref] = answer
        self.apply(self.logic.handle(make(ref), self.w.k.now))

    def apply(self, effects: list) -> None:
        w = self.w
        for e in effects:
            t = type(e)
            if t is Record:
                self.record(e.kind, e.fields)
            elif t is Reply:
                answer = self.pending.pop(e.ref, None)
                if answer is not None:
                    if e.cls:
                        self.tx[e.cls] += len(e.body)
                    answer(e)
            elif t is Send:
                if e.ref is not None:
                    ref = e.ref
                    self.send(e, lambda r, ref=ref: self.feed(
                        Response(ref, r.status, r.body, r.headers)))
                else:
                    self.send(e, None)
            elif t is SetTimer:
                if not w.stopped:
                    self.set_timer(e)
            elif t is H.FetchManifest:
                w.master.get_manifest(self, e.video)
            elif t is H.MeasureBandwidth:
                self.measure(e.peer, e.nbytes)
            elif t is H.JoinGroup:
                self.joined[e.video] = e.group
                w.groups.setdefault(e.group, {})[self.name] = e.video
            elif t is H.LeaveGroup:
                group = self.joined.pop(e.video, None)
                if group is not None:
                    w.groups.get(group, {}).pop(self.name, None)
            elif t is H.Relay:
                if e.segment is not None:
                    w.live_to_group(self, e.group, e.segment)
            else:
                raise TypeError(f"sim helper: no driver for effect {e!r}")

    def on_timer(self, name: str, token: Any) -> None:
        self.feed(Timer(name, token))

    def on_message(self, sender: Node, e: Send, size: int, answer) -> None:
        self.rx[e.cls] += size
        self.verified += 1
        if e.msg_type in COUNTERSIGNED:
            self.verified += 1  # the master's signature in the body too
        path = e.path
        if path in ("/fetch", "/peer-fetch"):
            self.ask(lambda ref: H.FetchRequest(ref, sender.name, dict(e.body),
                                                path == "/peer-fetch"), answer)
        elif path == "/mesh":
            self.ask(lambda ref: H.MeshData(ref, sender.name, dict(e.body), e.payload), answer)
        else:
            self.ask(lambda ref: H.Control(ref, sender.name, sender.role, e.msg_type,
                                           dict(e.body)), answer)

    def on_probe_reply(self, peer: str, e: Send, sent_at: float) -> None:
        if e.msg_type == "peer_probe":
            self.feed(H.PeerRtt(peer, (self.w.k.now - sent_at) * 1000))

    def measure(self, peer: str, nbytes: int) -> None:
        """A packet train from ``peer``: its spread is set by the narrowest link."""
        w = self.w
        other = w.nodes.get(peer)
        if other is None:
            w.k.after(0.0, lambda _: self.feed(H.BandwidthSample(peer, 0, 0.0)))
            return
        cap = w.net.bottleneck(other.host, self.host)
        spread = nbytes / cap if cap != float("inf") else 0.0
        other.tx["control"] += nbytes

        def got(_: Any) -> None:
            self.rx["control"] += nbytes
            self.feed(H.BandwidthSample(peer, nbytes, spread))

        w.net.send(self.host, other.host, 0,
                   lambda _: w.net.send(other.host, self.host, nbytes, got))


# -- the master ------------------------------------------------------------------------------
class SimMaster(Node):
    role = "master"

    def __init__(self, world: World, name: str, logic: MasterLogic, origin: OriginLogic,
                 versions: dict[str, int], catalogue, live_t0: float,
                 ip: str) -> None:
        super().__init__(world, name, name)
        self.logic = logic
        self.origin = origin
        self.versions = versions
        self.catalogue = catalogue
        self.live_t0 = live_t0
        self.ip = ip
        self.signed_manifests: dict[str, dict] = {}
        self.manifests: dict[tuple[str, int], Manifest] = {}
        self.egress_mark: Counter[str] = Counter()
        self.load_doc: dict | None = None

    def start(self) -> None:
        for video in self.catalogue.ids():
            self.publish(video)
        self.record("credentials", {"issued": sorted(self.logic.helpers) + ["engine"]})
        now = self.w.k.now
        self.apply(self.logic.start(now), self.logic)
        self.apply(self.origin.start(now), self.origin)
        self.record("started", {"ip": self.ip, "policy": self.origin.policy.name,
                                "videos": len(self.catalogue)})
        self.w.k.after(EGRESS_EVERY_S, self._egress)
        for c, video in enumerate(self.catalogue.ids("live")):
            self._live_next((video, 0, relay_group(self.ip, c + 1)))

    def stop(self) -> None:
        self._write_egress()
        self.closing()
        self.record("rejections", {"counts": {}})

    def publish(self, video: str) -> None:
        m = standin_manifest(self.w.seed, self.catalogue[video], self.versions[video])
        self.manifests[(video, m.version)] = m
        self.signed_manifests[video] = {"manifest": m.to_dict(), "signature": "0" * 128,
                                        "signer": self.name}

    # -- effects --------------------------------------------------------------------------
    def apply(self, effects: list, logic) -> None:
        for e in effects:
            t = type(e)
            if t is Send:
                if e.msg_type in COUNTERSIGNED:
                    e = replace(e, body=self.countersigned(e.msg_type, e.body))
                if e.ref is not None:
                    ref = e.ref
                    self.send(e, lambda r, ref=ref, logic=logic: self.apply(
                        logic.handle(Response(ref, r.status, r.body, r.headers),
                                     self.w.k.now), logic))
                else:
                    self.send(e, None)
            elif t is SetTimer:
                if not self.w.stopped:
                    self.set_timer(e)
            elif t is Record:
                self.record(e.kind, e.fields)
            elif t is WriteSync:
                pass  # the controller's view: the simulation routes on its own paths
            elif t is PushFromOrigin:
                self.push_from_origin(e)
            elif t is Publish:
                self.publish(e.video)
            else:
                raise TypeError(f"sim master: no driver for effect {e!r}")

    def on_timer(self, name: str, token: Any) -> None:
        now = self.w.k.now
        logic = self.origin if name in ORIGIN_TIMERS else self.logic
        if name == PREFETCH and self.origin.needs_load:
            self.origin.handle(LinkLoad(self.w.link_load()), now)
        self.apply(logic.handle(Timer(name, token), now), logic)

    def on_probe_reply(self, peer: str, e: Send, sent_at: float) -> None:
        nonce = int(e.body["nonce"])
        now = self.w.k.now
        self.apply(self.logic.handle(ProbeReply(peer, nonce, (now - sent_at) * 1000, 0.0), now),
                   self.logic)

    # -- what the master serves ---------------------------------------------------------
    def get_manifest(self, helper: SimHelper, video: str) -> None:
        """A helper's ``GET /manifest/<video>``: the signed manifest, verified there."""
        w = self.w

        def at_master(_: Any) -> None:
            signed = self.signed_manifests.get(video)
            if signed is None:
                body = b'{"error":"unknown video"}'
                self.tx["control"] += len(body)
                w.net.send(self.host, helper.host, len(body), lambda _: helper.feed(
                    H.ManifestArrived(video, error=f"manifest {video}: HTTP 404")))
                return
            m = self.manifests[(video, signed["manifest"]["version"])]
            size = len(json.dumps(signed))
            self.tx["control"] += size

            def arrived(_: Any) -> None:
                helper.rx["control"] += size
                helper.verified += 1
                helper.feed(H.ManifestArrived(video, m, signed))

            w.net.send(self.host, helper.host, size, arrived)

        w.net.send(helper.host, self.host, 0, at_master)

    def on_message(self, sender: Node, e: Send, size: int, answer) -> None:
        self.rx[e.cls] += size
        self.verified += 1
        now = self.w.k.now
        if e.path == "/fetch":
            answer(self.origin_fetch(sender.name, e.body, now))
        elif e.path == "/control" and e.msg_type == "neighbours":
            self.apply(self.logic.handle(Neighbours(sender.name, e.body, e.payload), now),
                       self.logic)
            answer(Reply(0, 200, b"ok\n"))
        else:
            self.record("rejected", {"reason": "wrong_type", "sender": sender.name,
                                     "what": "control"})
            answer(Reply(0, 400, b"unexpected message type\n"))

    def origin_fetch(self, sender: str, body: dict, now: float) -> Reply:
        video, index = body["video"], int(body["index"])
        if video not in self.catalogue or not 0 <= index < self.catalogue[video].n_segments:
            return Reply(0, 404, b"no such segment\n")
        v = self.catalogue[video]
        if v.kind == "live" and index > v.live_edge(now, self.live_t0):
            return Reply(0, 404, b"not produced yet\n")
        version = self.versions[video]
        if version < int(body["min_version"]):
            return Reply(0, 409, b"no such version\n")
        data = segment_standin(self.w.seed, v, index, version)
        self.tx["origin"] += len(data)
        self.record("origin_serve", {"to": sender, "video": video, "index": index,
                                     "version": version, "bytes": len(data)})
        return Reply(0, 200, data, {VERSION_HEADER: str(version), SOURCE_HEADER: "origin",
                                    ROOT_HEADER: "origin"})

    def countersigned(self, msg_type: str, body: dict) -> dict:
        """``body`` with the master's signature on it (a push's plan, an invalidation):
        its bytes, counted as every signature here."""
        self.signed += 1
        return countersign(msg_type, body, lambda _: STANDIN_SIGNATURE)

    def push_from_origin(self, e: PushFromOrigin) -> None:
        body = self.countersigned("mesh_data", e.body)
        data = segment_standin(self.w.seed, self.catalogue[body["video"]], body["index"],
                               body["version"])
        self.send(Send(body["route"][1], "mesh_data", body, data, path="/mesh",
                       cls="prefetch", port=e.port), lambda r: None)

    # -- egress and live -------------------------------------------------------------------
    def _write_egress(self) -> None:
        delta = {c: n - self.egress_mark.get(c, 0) for c, n in sorted(self.tx.items())
                 if n > self.egress_mark.get(c, 0)}
        self.egress_mark = Counter(self.tx)
        self.record("egress", {"by_cls": delta})

    def _egress(self, _: Any) -> None:
        if self.w.stopped:
            return
        self._write_egress()
        self.w.k.after(EGRESS_EVERY_S, self._egress)

    def _live_next(self, arg: tuple) -> None:
        video, i, group = arg
        v = self.catalogue[video]
        if i >= v.n_segments:
            return
        due = self.live_t0 + (i + 1) * v.segment_s
        self.w.k.at(due, self._live_send, arg)

    def _live_send(self, arg: tuple) -> None:
        video, i, group = arg
        if self.w.stopped:
            return
        v = self.catalogue[video]
        version = self.versions[video]
        data = segment_standin(self.w.seed, v, i, version)
        chunks = -(-len(data) // CHUNK_PAYLOAD)
        self.tx["live"] += len(data) + chunks * CHUNK_OVERHEAD
        self.record("live_tx", {"video": video, "index": i, "version": version,
                                "group": group, "bytes": len(data), "send_drops": 0})
        self.w.live_to_group(self, group, H.LiveSegment(video, i, version, data))
        self._live_next((video, i + 1, group))


# -- the engine ------------------------------------------------------------------------------
class SimEngine(Node):
    role = "engine"

    def __init__(self, world: World, name: str, host: str, cfg, catalogue, port: int) -> None:
        super().__init__(world, name, host)
        self.cfg = cfg
        self.engine = DemandEngine(cfg, {v: catalogue[v].n_segments for v in catalogue.ids()},
                                   live=catalogue.ids("live"))
        self.port = port
        self.archive: list[dict] = []
        self.models: dict[int, dict] = {}
        self.predictions = 0

    def start(self) -> None:
        self.record("started", {"port": self.port})
        self.w.k.after(TRAIN_EVERY_S, self._train)

    def stop(self) -> None:
        self.record("engine_summary", {**self.engine.status(), "predictions": self.predictions})
        self.closing()

    def on_message(self, sender: Node, e: Send, size: int, answer) -> None:
        self.rx[e.cls] += size
        self.verified += 1
        now = self.w.k.now
        if e.msg_type == "telemetry":
            rows, errors = self.engine.ingest(e.body["events"], sender.name, now)
            self.archive.extend(rows)
            if errors:
                self.record("telemetry_refused", {"helper": sender.name, "refused": len(errors),
                                                  "accepted": len(rows),
                                                  "first": errors[0][:200]})
            status = 400 if errors and not rows else 200
            answer(Reply(0, status, json.dumps({"accepted": len(rows),
                                                "refused": len(errors)}).encode()))
            return
        try:
            got = self.engine.predict(now, e.body["helpers"] or None, e.body["top"],
                                      str(e.body.get("predictor", "model")),
                                      e.body.get("horizon_s"))
        except EngineError as exc:
            answer(Reply(0, 400, f"predict: {exc}\n".encode()))
            return
        body = json.dumps(got, separators=(",", ":")).encode()
        self.tx["prediction"] += len(body)
        self.predictions += 1
        answer(Reply(0, 200, body))

    def _train(self, _: Any) -> None:
        w = self.w
        if w.stopped:
            return
        now = w.k.now
        if self.engine.due(now):
            data = self.engine.training_input(now)
            result = train(data, now, self.cfg, self.engine.n_segments, self.engine.model)
            version = self.engine.install(result)
            metrics = {**result.metrics, "wall_s": 0.0, "events": len(data)}
            if result.model is not None:
                self.models[version] = {**metrics, "trained_at": now}
                scores = metrics.get("scores", {})
                if "previous" in scores and version - 1 in self.models:
                    self.models[version - 1]["evaluation"] = {
                        "until": now, "model": scores["previous"],
                        "playhead": scores.get("playhead")}
            self.record("model", {"version": version, **metrics})
        w.k.after(TRAIN_EVERY_S, self._train)


# -- a viewer host ---------------------------------------------------------------------------
class SimViewer(Node):
    role = "viewer"

    def __init__(self, world: World, name: str, settings: V.ViewerSettings,
                 chains: list, helper_of: dict[str, str], sessions: int) -> None:
        super().__init__(world, name, name)
        self.logic = V.ViewerHostLogic(settings, chains)
        self.helper_of = helper_of  # a session's helper reference -> the helper's name
        self.sessions = sessions
        self.parsed: dict[bytes, Manifest] = {}

    def start(self) -> None:
        self.record("started", {"sessions": self.sessions})
        self.apply(self.logic.start(self.w.k.now))

    def stop(self) -> None:
        self.apply(self.logic.stop(self.w.k.now))
        self.closing()

    def feed(self, event: object) -> None:
        if self.w.stopped:
            return
        self.apply(self.logic.handle(event, self.w.k.now))

    def on_timer(self, name: str, token: Any) -> None:
        self.feed(Timer(name, token))

    def apply(self, effects: list) -> None:
        for e in effects:
            t = type(e)
            if t is Record:
                self.record(e.kind, e.fields)
            elif t is SetTimer:
                if not self.w.stopped:
                    self.set_timer(e)
            elif t is V.GetSegment:
                self._segment(e)
            elif t is V.GetManifest:
                self._manifest(e)
            elif t is V.PostTelemetry:
                self._telemetry(e)
            else:
                raise TypeError(f"sim viewer: no driver for effect {e!r}")

    def _request(self, helper_ref: str, make: Callable[[int], object],
                 then: Callable[[Reply], None], size: int = 0, cls: str = "") -> None:
        """An HTTP request to the session's helper; ``then(reply)`` with its answer, or
        with status 0 when none came within the client's timeout."""
        w = self.w
        helper = w.nodes[self.helper_of[helper_ref]]
        state: list = [False, None]  # answered or given up; the answer's transfer

        def give_up(_: Any) -> None:
            if not state[0] and not w.stopped:
                state[0] = True
                w.net.cancel(state[1])  # the player closes the connection
                then(Reply(0, 0, b"TimeoutError"))

        def at_helper(_: Any) -> None:
            if cls:
                helper.rx[cls] += size

            def answer(r: Reply) -> None:
                n = len(r.body)

                def back(_: Any) -> None:
                    self.rx["viewer"] += n
                    if not w.stopped and not state[0]:
                        state[0] = True
                        then(r)

                if not state[0]:
                    state[1] = w.net.send(helper.host, self.host, n, back)

            helper.ask(make, answer)  # plain HTTP: nothing signed or verified

        w.net.send(self.host, helper.host, size, at_helper)
        w.k.after(CLIENT_TIMEOUT_S, give_up)

    def _segment(self, e: V.GetSegment) -> None:
        def then(r: Reply) -> None:
            if r.status != 200:
                error = f"HTTP {r.status}" if r.status else "TimeoutError"
                self.feed(V.SegmentResult(e.ref, r.status, error=error))
                return
            h = r.headers
            self.feed(V.SegmentResult(e.ref, 200, r.body, int(h.get(VERSION_HEADER, "0")),
                                      h.get(SOURCE_HEADER, "?")))

        self._request(e.helper, lambda ref: H.SegmentRequest(ref, e.video, str(e.index),
                                                              e.viewer), then)

    def _manifest(self, e: V.GetManifest) -> None:
        def then(r: Reply) -> None:
            if r.status != 200:
                error = f"HTTP {r.status}" if r.status else "TimeoutError"
                self.feed(V.ManifestResult(e.ref, error=error))
                return
            m = self.parsed.get(r.body)
            if m is None:
                m = self.parsed[r.body] = Manifest.from_dict(json.loads(r.body)["manifest"])
            self.verified += 1
            self.feed(V.ManifestResult(e.ref, m, token=r.headers.get(TOKEN_HEADER, "")))

        self._request(e.helper, lambda ref: H.ManifestRequest(ref, e.video, viewer=e.viewer),
                      then)

    def _telemetry(self, e: V.PostTelemetry) -> None:
        raw = json.dumps(e.batch).encode()
        self.tx["telemetry"] += len(raw)
        self._request(e.helper, lambda ref: H.ViewerTelemetry(ref, raw), lambda r: None,
                      size=len(raw), cls="telemetry")
