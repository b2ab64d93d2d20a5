"""Userspace link emulator: delay, jitter and loss without ``sch_netem``.

One process serves every emulated link of a network.  Each link is two veth
pairs meeting in the root namespace at two relay ends (``a`` and ``b``); the
emulator reads frames from one end with an ``AF_PACKET`` socket, asks the pure
:class:`testbed.core.linkmodel.Direction` when each must leave, keeps them in
one heap ordered by departure time, and writes them to the other end on time
(a Mahimahi-style timed queue per direction).  Arrival times are the kernel's
receive timestamps, so the time a frame waits to be read does not add delay.
The rate limit is not done here: htb on the nodes' interfaces does it.

Frames arrive in a ``PACKET_MMAP`` receive ring (``TPACKET_V2``) shared with the
kernel: reading one is a header unpack and a copy, with no system call (``recvmsg``
cost two per frame, one of them Python's look-up of the interface name for the
address it returns).  A frame the ring has no room for is dropped by the kernel and
counted (``ring_drops``), where a full socket buffer used to drop it unseen.

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
import mmap
import os
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import asdict
from pathlib import Path

from testbed.core.linkmodel import Direction
from testbed.core.spec import LinkParams
from testbed.stamps import SO_TIMESTAMPNS

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V2 = 1
TP_STATUS_USER = 1
#: struct tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec (then vlan, padding)
TPACKET2_HDR = struct.Struct("=IIIHHII")
#: sll_pkttype of the struct sockaddr_ll that follows the 32-byte header
PKTTYPE_AT = 32 + 10
#: where the kernel puts a frame's first byte in its slot, plus the frame itself: the
#: header and address (52 bytes), aligned, and room for an Ethernet header with a VLAN tag
SLOT_OVERHEAD = 80 + 18
RING_BYTES = 2 * 1024 * 1024  # per socket: 1,024 slots at a 1,500-byte MTU
BATCH = 64  # frames read from one socket before looking at the heap again
LATE_BUCKET_US = 10
LATE_MIN_US = -1000  # send-time error histogram: -1..+9 ms in 10 us steps, clamped
LATE_BUCKETS = 1000
EARLY_MAX_NS = 300_000
OVERDUE_NS = 1_000_000  # a frame sent over 1 ms after its time is overdue
DEFAULT_LIMIT = 1000    # frames in one delay line when the link sets no queue (netem's)
RELEASE = struct.Struct("=I")  # a slot's status word, written back as TP_STATUS_KERNEL


def open_relay_socket(ifname: str) -> socket.socket:
    """A non-blocking raw socket on ``ifname`` that time-stamps arrivals."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    # the ring's stamp is the frame's receive time when receive stamping is on
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # old kernel: outgoing frames are filtered by packet type below
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def slot_size(mtu: int) -> int:
    """Bytes of one ring slot for frames of ``mtu``: a power of two, so that slots tile
    the ring's blocks."""
    need = SLOT_OVERHEAD + mtu
    size = 2048
    while size < need:
        size *= 2
    return size


class RxRing:
    """A socket's ``TPACKET_V2`` receive ring: the kernel fills slots in order and marks
    them ``TP_STATUS_USER``; the reader takes each frame and hands the slot back."""

    __slots__ = ("mm", "size", "count", "head")

    def __init__(self, sock: socket.socket, mtu: int, ring_bytes: int = RING_BYTES):
        self.size = slot_size(mtu)
        block = max(self.size, mmap.PAGESIZE)
        self.count = max(ring_bytes // self.size, block // self.size)
        blocks = self.count * self.size // block
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING,
                        struct.pack("=IIII", block, blocks, self.size, self.count))
        self.mm = mmap.mmap(sock.fileno(), self.count * self.size, mmap.MAP_SHARED,
                            mmap.PROT_READ | mmap.PROT_WRITE)
        self.head = 0

    def close(self) -> None:
        self.mm.close()


def interface_mtu(ifname: str) -> int:
    try:
        return int(Path(f"/sys/class/net/{ifname}/mtu").read_text())
    except (OSError, ValueError):
        return 1500


def ring_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped since the last call because the ring was full."""
    try:
        _, drops = struct.unpack("=II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    except OSError:
        return 0
    return drops


class Lane:
    """One direction of one link: where frames come from and go to."""

    __slots__ = ("name", "src", "dst", "model", "sent", "send_errors", "queue_drops",
                 "oversize", "late", "ring", "ring_drops",
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
        self.ring: RxRing | None = None  # where frames from ``src`` arrive
        self.ring_drops = 0  # dropped by the kernel: the receive ring was full
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
            "ring_drops": self.ring_drops,
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
                lane.ring = RxRing(src, interface_mtu(link["a" if k == 0 else "b"]))
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
        ring = lane.ring
        mm, size, count, head = ring.mm, ring.size, ring.count, ring.head
        unpack, release = TPACKET2_HDR.unpack_from, RELEASE.pack_into
        for _ in range(BATCH):
            at = head * size
            status, length, snap, mac, _, sec, nsec = unpack(mm, at)
            if not status & TP_STATUS_USER:
                break
            if mm[at + PKTTYPE_AT] != socket.PACKET_OUTGOING:
                if snap < length:
                    lane.oversize += 1
                else:
                    self.admit(lane, sec * 1_000_000_000 + nsec, mm[at + mac:at + mac + snap])
            release(mm, at, 0)  # the slot is the kernel's again
            head = head + 1 if head + 1 < count else 0
        ring.head = head

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
        for lane in self.all_lanes:
            lane.ring_drops += ring_drops(lane.src)
        return {"pid": os.getpid(), "early_us": self.early_ns / 1000,
                "lanes": [lane.report() for lane in self.all_lanes]}

    def close(self) -> None:
        for lane in self.all_lanes:
            if lane.ring is not None:
                lane.ring.close()
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
