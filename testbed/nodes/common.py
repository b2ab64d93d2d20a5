"""What every daemon shares: its configuration file, clock, event log, traffic counters,
signed messaging and the small asyncio plumbing around HTTP and UDP.

A daemon runs inside a Mininet host as ``python -m testbed.nodes.<role> CONFIG.json``.
The harness writes the configuration (:meth:`testbed.harness.plan.RunPlan.write`); the
daemon writes ``<run>/nodes/<name>.ready`` when it serves, JSON lines to
``<run>/logs/<name>.jsonl`` and stops cleanly on SIGTERM.  The decisions are in
``testbed.core``; this package only moves bytes and reads the clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from testbed import stamps
from testbed.core import protocol as P
from testbed.core import security as sec
from testbed.plan import NodePlan
from testbed.plan import load as load_plan

HTTP_PORT = 8080
UDP_PORT = 7000
LIVE_PORT = 7100
#: Traffic classes counted at every node (bytes sent and received).
CLASSES = ("tree", "mesh", "prefetch", "telemetry", "prediction", "control", "live", "viewer",
           "origin")

log = logging.getLogger("meshcast")


@dataclass
class NodeConfig:
    """One daemon's configuration, as the harness wrote it: who and where it is, the run's
    clock and CA, the peer directory; everything it is to do is its typed plan
    (:meth:`node_plan`)."""

    name: str
    role: str
    ip: str
    run_dir: Path
    seed: int
    t0: float                          # wall-clock time of the run's second 0
    duration_s: float
    master: dict                       # {"name": ..., "ip": ...}
    helpers: dict[str, str]            # helper name -> ip (the peer directory)
    ca_public_key: str = ""            # hex; viewers and helpers check the master's signatures
    extra: dict = field(default_factory=dict)  # {"engine": where the engine listens}
    plan: dict = field(default_factory=dict)   # this node's testbed.plan.NodePlan, as JSON

    @classmethod
    def load(cls, path: str | Path) -> NodeConfig:
        data = json.loads(Path(path).read_text())
        data["run_dir"] = Path(data["run_dir"])
        return cls(**data)

    def node_plan(self) -> NodePlan:
        """This node's part of the run plan, typed (read once, then kept)."""
        typed = self.__dict__.get("_node_plan")
        if typed is None:
            typed = self.__dict__["_node_plan"] = load_plan(self.plan)
        return typed

    @property
    def secrets_dir(self) -> Path:
        return self.run_dir / "secrets"

    def credential_path(self, name: str | None = None) -> Path:
        return self.secrets_dir / f"{name or self.name}.json"

    def ready_path(self) -> Path:
        return self.run_dir / "nodes" / f"{self.name}.ready"


class Clock:
    """Run time: seconds since the run's t0 (all daemons share the host's wall clock)."""

    def __init__(self, t0: float):
        self.t0 = t0

    def now(self) -> float:
        return time.time() - self.t0

    def wall(self) -> float:
        return time.time()


class EventLog:
    """JSON lines, one record per event; every record has kind, node and at (run time)."""

    def __init__(self, path: Path, node: str, clock: Clock):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.clock = clock
        self._f = open(path, "a", buffering=1)  # noqa: SIM115 -- closed in close()

    def write(self, kind: str, **fields: Any) -> None:
        rec = {"kind": kind, "node": self.node, "at": round(self.clock.now(), 4), **fields}
        self._f.write(json.dumps(rec, separators=(",", ":"), default=str) + "\n")

    def close(self) -> None:
        self._f.close()


class Traffic:
    """Bytes sent and received by traffic class; written to the log as ``traffic`` records."""

    def __init__(self) -> None:
        self.tx: Counter[str] = Counter()
        self.rx: Counter[str] = Counter()

    def sent(self, cls: str, n: int) -> None:
        self.tx[cls] += n

    def received(self, cls: str, n: int) -> None:
        self.rx[cls] += n

    def flush(self, events: EventLog) -> None:
        for direction, counts in (("tx", self.tx), ("rx", self.rx)):
            for cls, n in sorted(counts.items()):
                events.write("traffic", cls=cls, direction=direction, bytes=n)


def announce_ready(cfg: NodeConfig, events: EventLog, **fields: Any) -> None:
    """Write the ready file the harness waits for, and a ``started`` record."""
    cfg.ready_path().parent.mkdir(parents=True, exist_ok=True)
    cfg.ready_path().write_text("ready\n")
    events.write("started", **fields)


def closing_records(events: EventLog, traffic: Traffic) -> None:
    """What every daemon logs as it stops: its traffic by class and its CPU time."""
    traffic.flush(events)
    events.write("process", cpu_s=round(time.process_time(), 3))


class Rejections(Counter):
    """Messages refused, by reason; logged as one ``rejected`` record each time."""

    def note(self, events: EventLog, reason: str, sender: str, what: str) -> None:
        self[reason] += 1
        events.write("rejected", reason=reason, sender=sender[:64], what=what[:64])


class Secure:
    """A node's signing identity and its checks on what it receives."""

    def __init__(self, identity: sec.Identity, ca_public_key: bytes, clock: Clock,
                 events: EventLog, directory: list[sec.Certificate] = ()):
        """``directory``: the certificates the master published; messages among those
        nodes name their certificate instead of carrying it."""
        self.verifier = sec.Verifier(ca_public_key)
        for cert in directory:
            self.verifier.learn(cert, clock.wall())
        self.identity = identity
        self.signer = P.Signer(identity, seq_start=int(time.time() * 1000) % (1 << 40),
                               carry_cert=self.verifier.known(identity.node_id) is None)
        self.guard = sec.ReplayGuard()
        self.clock = clock
        self.events = events
        self.rejected = Rejections()
        self.last_reason = ""

    def encode(self, msg_type: str, body: dict, payload: bytes = b"", *, to: str) -> bytes:
        """Signed, and addressed to the node ``to``: refused by any other."""
        return self.signer.encode(msg_type, body, payload, now=self.clock.wall(), to=to)

    def decode(self, data: bytes, what: str, roles: tuple[str, ...] | None = None,
               peer: str = "?") -> P.Message | None:
        """The message, or None after counting and logging why it was refused (a message
        addressed to another node among the reasons)."""
        try:
            return P.decode(data, self.verifier, self.guard, now=self.clock.wall(), roles=roles,
                            recipient=self.identity.node_id)
        except (P.ProtocolError, sec.AuthError) as exc:
            self.last_reason = getattr(exc, "reason", "malformed")
            self.rejected.note(self.events, self.last_reason, peer, what)
            return None

    def refusal(self):
        """The HTTP answer to the message just refused: 400 when it could not be parsed,
        403 when it was well formed but not authentic (or a replay)."""
        from aiohttp import web

        status = 400 if isinstance(self.last_reason, str) and self.last_reason in (
            "malformed", "too_large", "unknown_type") else 403
        return web.Response(status=status, text=f"refused: {self.last_reason}\n")


def load_directory(cfg: NodeConfig) -> list[sec.Certificate]:
    """The certificates the master published (``secrets/certificates.json``)."""
    data = json.loads((cfg.secrets_dir / "certificates.json").read_text())
    return [sec.Certificate.from_dict(c) for c in data]


def load_identity(cfg: NodeConfig, timeout: float = 30.0) -> sec.Identity:
    """Wait for the credential the master issues to this node, then load it."""
    path = cfg.credential_path()
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{cfg.name}: no credential at {path} after {timeout:g} s")
        time.sleep(0.05)
    return sec.Identity.from_json(path.read_text())


class UdpEndpoint:
    """A UDP socket whose datagrams go to ``handler(data, addr)``.

    ``arrival`` is the wall-clock time the kernel received the datagram being handled
    (``SO_TIMESTAMPNS``), not the time the event loop got round to it: a round trip
    measured from it excludes this process's own scheduling delay, so a busy loop does not
    make a near helper look far.  Where the kernel gives no stamp it is the handling time.
    """

    BATCH = 64  # datagrams handled per wake-up before yielding to the loop

    def __init__(self, handler: Callable[[bytes, tuple], None], sock: socket.socket):
        self.handler = handler
        self.sock = sock
        self.arrival = 0.0
        stamps.enable(sock)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(self.BATCH):
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(65535, stamps.ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued for an earlier send
                log.debug("udp receive: %s", exc)
                continue
            stamp = stamps.kernel_stamp_ns(ancillary)
            self.arrival = stamp * 1e-9 if stamp else time.time()
            try:
                self.handler(data, addr)
            except Exception:  # one bad datagram never stops the node
                log.exception("udp handler")

    def send(self, data: bytes, addr: tuple) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            log.debug("udp send to %s: socket buffer full, datagram dropped", addr)
        except OSError as exc:
            log.debug("udp send to %s: %s", addr, exc)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()


async def open_udp(handler: Callable[[bytes, tuple], None], ip: str = "0.0.0.0",
                   port: int = UDP_PORT) -> UdpEndpoint:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        s.setblocking(False)
        s.bind((ip, port))
    except OSError:
        s.close()
        raise
    return UdpEndpoint(handler, s)


async def listening(ip: str, port: int, timeout: float, every: float = 0.1) -> bool:
    """Wait (at most ``timeout`` s) until something accepts connections at ``ip:port``:
    whether it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), every * 10)
        except (OSError, asyncio.TimeoutError):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(every)
            continue
        writer.close()
        return True


def multicast_socket(group: str, port: int, ifaddr: str) -> socket.socket:
    """A non-blocking UDP socket joined to ``group`` on the interface with ``ifaddr``."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((group, port))
    mreq = socket.inet_aton(group) + socket.inet_aton(ifaddr)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.setblocking(False)
    return s


def multicast_sender(ifaddr: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.setblocking(False)
    return s


async def serve_http(routes: list, ip: str, port: int = HTTP_PORT, also: Iterable[int] = ()):
    """Serve ``routes`` on ``ip:port`` (and on each port of ``also``); the runner (``await
    runner.cleanup()`` stops it, waiting at most a second for requests in progress)."""
    from aiohttp import web

    app = web_app()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    for p in (port, *also):
        await web.TCPSite(runner, ip, p).start()
    return runner


def web_app():
    """An aiohttp application that refuses an oversized body from its headers alone
    (413 before reading a byte) instead of waiting for a body that may never come."""
    from aiohttp import web

    @web.middleware
    async def size_guard(request, handler):
        if request.content_length is not None and request.content_length > P.MAX_MESSAGE:
            return web.Response(status=413, text=f"body over {P.MAX_MESSAGE} bytes\n")
        return await handler(request)

    return web.Application(client_max_size=P.MAX_MESSAGE, middlewares=[size_guard])


class Timers(dict):
    """A node logic's named timers on the running loop (name -> ``asyncio.TimerHandle``).

    :meth:`set` arranges ``fire(name, token)`` at run time ``e.at`` (at once when that has
    passed), replacing a pending timer of the same name, as
    :class:`testbed.core.node.effects.SetTimer` asks; :meth:`cancel_all` stops them all."""

    def __init__(self, clock: Clock, fire: Callable[[str, Any], None]):
        super().__init__()
        self.clock = clock
        self.fire = fire

    def set(self, e) -> None:
        old = self.pop(e.name, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, e.at - self.clock.now())
        self[e.name] = asyncio.get_running_loop().call_later(delay, self._due, e.name, e.token)

    def _due(self, name: str, token: Any) -> None:
        self.pop(name, None)
        self.fire(name, token)

    def cancel_all(self) -> None:
        for handle in self.values():
            handle.cancel()
        self.clear()


def watch(events, tasks: Iterable[asyncio.Task]) -> list[asyncio.Task]:
    """Make a background task's death loud: a task that ends with an exception (rather
    than being cancelled) is logged at once and recorded as a ``task_failed`` event, so a
    run never goes on silently without, say, its live channel."""

    def done(t: asyncio.Task) -> None:
        if t.cancelled() or t.exception() is None:
            return
        exc = t.exception()
        log.error("task %s failed: %r", t.get_name(), exc, exc_info=exc)
        events.write("task_failed", task=t.get_name(), error=repr(exc)[:200])

    tasks = list(tasks)
    for t in tasks:
        t.add_done_callback(done)
    return tasks


async def cancel_tasks(tasks) -> None:
    """Cancel ``tasks`` and wait until every one has finished."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def every(interval: float, fn: Callable[[], Awaitable[None]], name: str,
          first_delay: float = 0.0) -> asyncio.Task:
    """Run ``fn`` every ``interval`` s; an exception is logged and the loop goes on."""

    async def loop() -> None:
        await asyncio.sleep(first_delay)
        while True:
            t = time.monotonic()
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s", name)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t)))

    return asyncio.get_running_loop().create_task(loop(), name=name)


def main_loop(make: Callable[[NodeConfig], Any]) -> None:
    """Entry point of a daemon: load the config, run ``make(cfg).run(stop)`` until SIGTERM."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: python -m {sys.modules['__main__'].__spec__.name} CONFIG.json")
    logging.basicConfig(level=os.environ.get("MESHCAST_NODE_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    cfg = NodeConfig.load(sys.argv[1])
    node = make(cfg)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await node.run(stop)

    # uvloop: the same asyncio API on libuv; with it the helpers took 13-20 % less CPU per
    # request in the default scenario than with the standard loop
    uvloop.run(run())
