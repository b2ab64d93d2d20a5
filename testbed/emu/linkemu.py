"""Userspace link emulator: delay, jitter and loss without ``sch_netem``.

One process serves every emulated link of a network.  Each link is two veth
pairs meeting in the root namespace at two relay ends (``a`` and ``b``); the
emulator reads frames from one end with an ``AF_PACKET`` socket, asks the pure
:class:`testbed.core.linkmodel.Direction` when each must leave, keeps them in
one heap ordered by departure time, and writes them to the other end on time
(a Mahimahi-style timed queue per direction).  Arrival times are the kernel's
receive timestamps, so the time a frame waits to be read does not add delay.
The rate limit is not done here: htb on the nodes' interfaces does it.

Edge cases, side by side with netem:
- the delay line holds at most ``queue_pkts`` (1000 if unset) plus the link's
  bandwidth-delay product in frames, netem's ``limit`` as this testbed renders it;
  a frame arriving to a full line is dropped and counted (``overflow``).  The network
  gives it no ``queue_pkts``: where a switch's shaping sits after the line (XDP switch
  ports) the line must hold whatever the shaper will queue, so it holds netem's default;
- jitter draws each frame's delay uniformly from ``delay ± jitter`` (netem's default
  without a distribution table) but never reorders: a frame never leaves before the
  one that arrived ahead of it, as netem behaves with a rate or a pfifo child;
- after a stall of this process (the machine busy), frames whose time has passed leave
  at once, back to back, as netem's do after a late timer; each such release is
  counted (``overdue`` frames, ``bursts`` of two or more in one pass and the largest),
  so a run can tell it happened instead of passing it off as the link's own delay.

Run as ``python -m testbed.emu.linkemu CONFIG.json``; it writes ``ready`` to
the ready file once every socket is bound, and its counters to the stats file
when it stops (SIGTERM or SIGINT).
"""

from __future__ import annotations

import errno
import gc
import heapq
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path

from testbed.core.linkmodel import Direction
from testbed.core.spec import LinkParams
from testbed.stamps import ANC_SIZE, SO_TIMESTAMPNS, kernel_stamp_ns

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
FRAME_MAX = 65_600  # larger than any frame: a truncated read would be counted
RCVBUF = 4 * 1024 * 1024
BATCH = 64  # frames read from one socket before looking at the heap again
LATE_BUCKET_US = 10
LATE_MIN_US = -1000  # send-time error histogram: -1..+9 ms in 10 us steps, clamped
LATE_BUCKETS = 1000
EARLY_MAX_NS = 300_000
OVERDUE_NS = 1_000_000  # a frame sent over 1 ms after its time is overdue
DEFAULT_LIMIT = 1000    # frames in one delay line when the link sets no queue (netem's)


def open_relay_socket(ifname: str) -> socket.socket:
    """A non-blocking raw socket on ``ifname`` that time-stamps arrivals."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # old kernel: outgoing frames are filtered by packet type below
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


class Lane:
    """One direction of one link: where frames come from and go to."""

    __slots__ = ("name", "src", "dst", "model", "sent", "send_errors", "queue_drops",
                 "oversize", "late",
                 "limit", "queued", "overflow", "overdue", "bursts", "max_burst")

    def __init__(self, name: str, src: socket.socket, dst: socket.socket, model: Direction,
                 limit: int | None = None):
        self.name = name
        self.src = src
        self.dst = dst
        self.model = model
        self.sent = 0
        self.send_errors = 0
        self.queue_drops = 0  # refused by a full shaping queue on the way out (ENOBUFS)
        self.oversize = 0
        self.late = [0] * LATE_BUCKETS
        self.limit = line_limit(model.params) if limit is None else limit
        self.queued = 0     # frames in the delay line now
        self.overflow = 0   # frames dropped because the line was full
        self.overdue = 0    # frames sent more than OVERDUE_NS after their time
        self.bursts = 0     # passes that sent two or more overdue frames back to back
        self.max_burst = 0

    def report(self) -> dict:
        total = sum(self.late)
        return {
            "lane": self.name,
            **asdict(self.model.stats),
            "sent": self.sent,
            "send_errors": self.send_errors,
            "queue_drops": self.queue_drops,
            "oversize": self.oversize,
            "limit": self.limit,
            "overflow": self.overflow,
            "overdue": self.overdue,
            "bursts": self.bursts,
            "max_burst": self.max_burst,
            "lateness_us": {
                "p50": _percentile(self.late, total, 0.50),
                "p99": _percentile(self.late, total, 0.99),
                "max_bucket": _max_bucket(self.late),
            },
        }


def line_limit(params: LinkParams) -> int:
    """Frames one delay line holds: the link's queue (netem's default without one) plus
    the frames in flight at its rate and delay, the ``limit`` netem mode renders."""
    from testbed.emu.tc import bdp_packets  # the one definition of the in-flight frames

    return (params.queue_pkts or DEFAULT_LIMIT) + bdp_packets(params)


def _bucket_us(i: int) -> float:
    return float(LATE_MIN_US + (i + 1) * LATE_BUCKET_US)


def _percentile(hist: list[int], total: int, q: float) -> float | None:
    if not total:
        return None
    target = q * total
    acc = 0
    for i, n in enumerate(hist):
        acc += n
        if acc >= target:
            return _bucket_us(i)
    return _bucket_us(LATE_BUCKETS - 1)


def _max_bucket(hist: list[int]) -> float | None:
    for i in range(len(hist) - 1, -1, -1):
        if hist[i]:
            return _bucket_us(i)
    return None


def timer_lateness_ns(samples: int = 200, sleep_s: float = 0.0005) -> int:
    """Median lateness of a timed wake-up on this machine, now (ns).

    The loop aims each wake-up this much early, so that frames leave on time
    on average instead of always a little late.
    """
    late = []
    for _ in range(samples):
        target = time.monotonic_ns() + int(sleep_s * 1e9)
        select.select([], [], [], sleep_s)
        late.append(time.monotonic_ns() - target)
    late.sort()
    return max(0, min(EARLY_MAX_NS, late[len(late) // 2]))


class Emulator:
    """The event loop: read, schedule, send on time."""

    def __init__(self, config: dict):
        self.lanes: dict[int, Lane] = {}
        self.all_lanes: list[Lane] = []
        self.sockets: list[socket.socket] = []
        seed = int(config.get("seed", 0))
        for index, link in enumerate(config["links"]):
            params = LinkParams(**link["params"])
            a = open_relay_socket(link["a"])
            b = open_relay_socket(link["b"])
            self.sockets += [a, b]
            for src, dst, tag, k in ((a, b, "ab", 0), (b, a, "ba", 1)):
                lane = Lane(
                    f"{link['name']}:{tag}", src, dst,
                    Direction.make(params, seed * 1_000_003 + index * 2 + k),
                )
                self.lanes[src.fileno()] = lane
                self.all_lanes.append(lane)
        self.by_link: dict[str, list[Lane]] = {}
        for lane in self.all_lanes:
            self.by_link.setdefault(lane.name.rsplit(":", 1)[0], []).append(lane)
        self.control_file = config.get("control_file")
        self.applied_file = config.get("applied_file")
        self.reloads = 0
        self.reload_wanted = False
        self.heap: list[tuple[int, int, Lane, bytes]] = []
        self.seq = 0
        self.running = True
        self.early_ns = 0

    def stop(self, *_: object) -> None:
        self.running = False

    def request_reload(self, *_: object) -> None:
        self.reload_wanted = True

    def reload(self) -> None:
        """Apply new delay/jitter/loss per link from the control file (SIGHUP)."""
        self.reload_wanted = False
        try:
            changes = json.loads(Path(self.control_file).read_text())
        except (OSError, TypeError, ValueError) as exc:
            print(f"linkemu: control file unreadable: {exc}", file=sys.stderr, flush=True)
            return
        for name, params in changes.items():
            for lane in self.by_link.get(name, []):
                try:
                    lane.model.params = lane.model.params.replace(**params)
                    lane.limit = line_limit(lane.model.params)
                except (TypeError, ValueError) as exc:
                    print(f"linkemu: link {name}: {exc}", file=sys.stderr, flush=True)
                    break
        self.reloads += 1
        if self.applied_file:  # what each link now does, for whoever asked for the change
            Path(self.applied_file).write_text(json.dumps({
                "reloads": self.reloads,
                "links": {name: asdict(lanes[0].model.params)
                          for name, lanes in self.by_link.items()}}))

    def _read(self, lane: Lane) -> None:
        src = lane.src
        for _ in range(BATCH):
            try:
                data, anc, flags, addr = src.recvmsg(FRAME_MAX, ANC_SIZE)
            except BlockingIOError:
                return
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            if flags & socket.MSG_TRUNC:
                lane.oversize += 1
                continue
            self.admit(lane, kernel_stamp_ns(anc) or time.time_ns(), data)

    def admit(self, lane: Lane, arrival: int, data: bytes) -> None:
        """Put one frame in its lane's delay line, unless the line is full or it is lost."""
        if lane.queued >= lane.limit:
            lane.overflow += 1
            return
        departure = lane.model.schedule(arrival, len(data))
        if departure is None:
            return
        lane.queued += 1
        self.seq += 1
        heapq.heappush(self.heap, (departure, self.seq, lane, data))

    def _send_due(self) -> None:
        heap = self.heap
        early = self.early_ns
        now = time.time_ns()
        run: dict[Lane, int] = {}  # overdue frames sent in this pass, per lane
        while heap and heap[0][0] <= now + early:
            departure, _, lane, data = heapq.heappop(heap)
            lane.queued -= 1
            try:
                lane.dst.send(data)
                lane.sent += 1
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    lane.queue_drops += 1
                else:
                    lane.send_errors += 1
            late = (now - departure - LATE_MIN_US * 1000) // (LATE_BUCKET_US * 1000)
            lane.late[min(max(late, 0), LATE_BUCKETS - 1)] += 1
            if now - departure > OVERDUE_NS:
                lane.overdue += 1
                run[lane] = run.get(lane, 0) + 1
            now = time.time_ns()
        for lane, n in run.items():
            if n >= 2:
                lane.bursts += 1
                lane.max_burst = max(lane.max_burst, n)

    def run(self) -> None:
        by_fd = self.lanes
        # select on descriptors: given socket objects it calls fileno() on each, every
        # pass (with 50 sockets, 4 of its 7 us per pass on this machine)
        fds = list(by_fd)
        while self.running:
            if self.reload_wanted:
                self.reload()
            if self.heap:
                timeout = max(0.0, (self.heap[0][0] - self.early_ns - time.time_ns()) / 1e9)
                timeout = min(timeout, 0.2)
            else:
                timeout = 0.2
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                ready = []
            for fd in ready:
                self._read(by_fd[fd])
            self._send_due()

    def report(self) -> dict:
        return {"pid": os.getpid(), "early_us": self.early_ns / 1000,
                "lanes": [lane.report() for lane in self.all_lanes]}

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m testbed.emu.linkemu CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text())
    emu = Emulator(config)
    signal.signal(signal.SIGTERM, emu.stop)
    signal.signal(signal.SIGINT, emu.stop)
    signal.signal(signal.SIGHUP, emu.request_reload)
    gc.disable()  # no collector pauses in the middle of a delay line
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        pass
    emu.early_ns = timer_lateness_ns()
    Path(config["ready_file"]).write_text("ready\n")
    try:
        emu.run()
    finally:
        Path(config["stats_file"]).write_text(json.dumps(emu.report(), indent=1))
        emu.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
