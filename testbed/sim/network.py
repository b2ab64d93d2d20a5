"""The simulated network: the topology's links with their delay, loss and capacity, and
transfers that share them (flow level, not per packet).

Paths are the controller's: unicast frames follow :func:`testbed.core.l2.next_hops`
toward the destination's switch (latency first, then hops; ties to the lowest datapath
id), and a relay group's datagrams the shortest-path tree
:func:`testbed.core.multicast.multicast_tree` builds from the sender to the members, both
over the :class:`~testbed.core.l2.NetView` of the same topology (datapath ids as the
emulation numbers them; ports numbered here).  Each link is two directions, each with its
own capacity, counters, flows and queue.

How a transfer is timed:

* **Small messages** (at most ``SMALL_BYTES`` on the wire: requests, control messages,
  probes) cross in one flight: the path's propagation delay, each link's serialisation
  and the queue standing at each link when they arrive.
* **Bulk transfers** (segments, pushes, manifests) are TCP flows.  A flow starts in slow
  start: rounds of ``cwnd`` bytes (10 segments at first, doubled each round), one round
  trip apart, until its window covers its share times the round trip; from then on it is
  a fluid flow at its share.  A connection idle for less than its RTO (the round trip
  with its queues, plus 200 ms, as Linux computes it) starts from the window of its
  transfer before.  Shares are max-min fair: progressive filling over the flows a change
  touches, the other flows keeping their rates.  A flow that joins touches the flows of
  the links where what is unused falls short of its share (a wide link with room to spare
  changes nobody's rate); one that leaves, the flows of the links where some flow was held
  back; where a flow of the higher class speeds up, the lower class there is reshared
  too.  Why that is enough here: segments are 75-150 kB, so most of a transfer's time
  is slow start and propagation, which this keeps round by round, and the contention
  that matters (a far region's narrow core link) has one bottleneck that
  the flows through it share equally, as TCP flows with similar round trips do.
* **Priority**: the lower class (``lo``: pushes with ``push_priority: low``) gets what
  the higher class leaves on each link, never less than ``LO_FLOOR`` of it (a strict
  priority queue still lets a starved flow's retransmissions through now and then).
* **Queues**: a TCP flow keeps growing its window past its share (by what is
  acknowledged in slow start, one segment per window after its first loss); the excess
  stands in the queue of its bottleneck link.  When the flows held at a link overflow its
  buffer (``queue`` packets) they back off (x0.7, as CUBIC does) and grow again.  Every
  packet crossing that link waits behind the standing queue: small messages, the rounds
  of flows in slow start, probes (so a busy far link lengthens the round trips the
  master's pingback measures, as it does in the emulation).
* **Loss**: a lost packet of a small message costs a retransmission timeout
  (``RTO_S``); a flow's rate is capped by the loss-limited TCP rate (Mathis et al.:
  MSS / RTT * 1.22 / sqrt(p)).
* **Multicast** (the live channel's relay groups) is one UDP flow over the controller's
  tree to the group's members, paced as the live sender paces it; UDP does not back off,
  so on each link it takes what it offers before TCP flows share the rest, and where a
  link is slower than the pace the burst queues there: a member behind a link whose
  buffer (less the queue standing there) cannot hold the excess loses datagrams, so that
  segment never reaches it.

What it leaves out: per-packet jitter and reordering, ACK traffic, TCP's sawtooth after
a loss (the queue stands at its cap instead), the CPU time of the nodes (a simulated node
answers at once), and the switches' own forwarding time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any

import networkx as nx

from testbed.core import spec as S
from testbed.core.l2 import NetView, next_hops
from testbed.core.multicast import multicast_tree

MSS = 1448                 # TCP payload per packet
PACKET_OVERHEAD = 52       # TCP/IP headers per packet
HTTP_OVERHEAD = 200        # request or status line and headers of one HTTP message
UDP_OVERHEAD = 28          # IP/UDP headers per datagram
IW_BYTES = 10 * MSS        # TCP's initial window
SMALL_BYTES = 4 * MSS      # at most this much on the wire goes in one flight
DEFAULT_QUEUE_PKTS = 1000  # a link without a ``queue``: the interface default
LO_FLOOR = 0.02            # the share of a link the lower class always gets
RTO_S = 0.2                # TCP's minimum retransmission timeout
BACKOFF = 0.7              # a window after a loss (CUBIC's multiplicative decrease)
MULTICAST_PACE = 16 * 1268 / 0.002  # the live sender: 16 datagrams every 2 ms (bytes/s)
MIN_RATE = 1e3             # bytes/s: no flow is ever slower (a flow always ends)


def spec_view(spec: nx.Graph) -> NetView:
    """The controller's view of ``spec``: datapath ids in switch order (as the emulation
    gives them), ports numbered hosts first, then links, in the spec's order."""
    switches = S.switches(spec)
    port = dict.fromkeys(switches, 0)
    sw: dict[str, dict] = {s: {"dpid": i, "ports": {}} for i, s in enumerate(switches, 1)}

    def new_port(s: str) -> int:
        port[s] += 1
        sw[s]["ports"][f"{s}-eth{port[s]}"] = port[s]
        return port[s]

    hosts = {}
    for i, h in enumerate(S.hosts(spec), 1):
        s = next(iter(spec.neighbors(h)))
        hosts[h] = {"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                    "mac": f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                    "switch": s, "port": new_port(s), "role": spec.nodes[h]["role"]}
    links = []
    for a, b, d in spec.edges(data=True):
        if a in sw and b in sw:
            links.append({"a": a, "a_port": new_port(a), "b": b, "b_port": new_port(b),
                          "delay_ms": float(d.get("delay_ms") or 0.0),
                          "bw_mbit": d.get("bw_mbit")})
    return NetView.from_dict({"switches": sw, "hosts": hosts, "links": links})


def _window(f: Flow, now: float) -> float:
    """``f``'s congestion window now: growing by what is acknowledged in slow start, by
    one segment per window after its first loss."""
    grown = f.rate * (now - f.t)
    return f.cwnd + (grown * MSS / max(f.cwnd, MSS) if f.ca else grown)


def _by_id(f: Flow) -> int:
    return f.id


def _by_cap(lk: Link) -> float:
    return lk.cap


def wire_bytes(payload: int, http: bool = True) -> int:
    """Bytes on the wire for ``payload`` bytes of an HTTP body (headers and packets)."""
    body = payload + (HTTP_OVERHEAD if http else 0)
    return body + max(1, -(-body // MSS)) * PACKET_OVERHEAD


class Link:
    """One direction of a link."""

    __slots__ = ("a", "b", "delay", "cap", "loss", "buffer", "hi", "lo", "bytes", "held",
                 "hi_sum", "paced_sum", "lo_sum", "paced_n")

    def __init__(self, a: str, b: str, delay_s: float, cap: float, loss: float,
                 buffer: float) -> None:
        self.a, self.b = a, b
        self.delay = delay_s
        self.cap = cap          # bytes/s (math.inf: unlimited)
        self.loss = loss        # per packet
        self.buffer = buffer    # bytes
        self.hi: set[Flow] = set()
        self.lo: set[Flow] = set()
        self.bytes = 0.0        # carried so far
        self.held: set[Flow] = set()  # the flows whose rate this link fixes
        # the rates of the flows on it, by class (kept as rates change): TCP of the higher
        # class, paced UDP, the lower class; and how many paced flows
        self.hi_sum = self.paced_sum = self.lo_sum = 0.0
        self.paced_n = 0

    def free(self) -> float:
        """What no flow here uses (bytes/s; negative by rounding at most)."""
        return self.cap - self.hi_sum - self.paced_sum - self.lo_sum

    def __repr__(self) -> str:
        return f"Link({self.a}->{self.b})"


class Route:
    """A cached path: its links, the rate-limited ones, its propagation delay and loss."""

    __slots__ = ("links", "limited", "by_cap", "prop", "loss")

    def __init__(self, links: tuple[Link, ...]) -> None:
        self.links = links
        self.limited = tuple(lk for lk in links if lk.cap != math.inf)
        self.by_cap = tuple(sorted(self.limited, key=_by_cap))  # the narrowest first
        self.prop = sum(lk.delay for lk in links)
        self.loss = 1.0 - math.prod(1.0 - lk.loss for lk in links)


class Flow:
    __slots__ = ("id", "links", "limited", "remaining", "rate", "t", "version", "lo", "fn",
                 "arg", "prop", "rtt", "cwnd", "bottleneck", "fluid", "loss_cap", "extra",
                 "conn", "paced", "ca", "cancelled", "by_cap", "due")

    def __init__(self, fid: int, links: tuple[Link, ...], nbytes: float, lo: bool, fn, arg,
                 prop: float) -> None:
        self.id = fid  # flows are handled in this order (a run is deterministic)
        self.links = links
        self.limited = tuple(lk for lk in links if lk.cap != math.inf)
        self.remaining = float(nbytes)
        self.rate = 0.0
        self.t = 0.0
        self.version = 0
        self.lo = lo
        self.fn, self.arg = fn, arg
        self.prop = prop
        self.rtt = 2 * prop
        self.cwnd = float(IW_BYTES)
        self.bottleneck: Link | None = None
        self.fluid = False
        self.loss_cap = math.inf
        self.extra: list | None = None  # multicast: [(delay, fn, arg)] per member
        self.conn: tuple | None = None    # the connection it uses (its window outlives it)
        self.paced: float | None = None   # UDP at this offered rate (bytes/s): no backing off
        self.ca = False                   # past its first loss: congestion avoidance
        self.cancelled = False            # its receiver gave up: it stops where it is
        self.by_cap = self.limited        # its limited links, the narrowest first
        self.due: float | None = None     # when its end event is due


class FlowNet:
    """The network of one simulated run (see the module).

    ``kernel``: the event queue (``at``/``after``/``now``); ``spec``: the topology;
    ``seed``: the losses' random stream.
    """

    def __init__(self, kernel, spec: nx.Graph, seed: int = 0) -> None:
        self.k = kernel
        self.spec = spec
        self.rng = random.Random(f"meshcast-sim-net|{seed}")
        self.links: dict[tuple[str, str], Link] = {}
        for a, b, d in spec.edges(data=True):
            delay = float(d.get("delay_ms") or 0.0) / 1000
            bw = d.get("bw_mbit")
            cap = float(bw) * 1e6 / 8 if bw else math.inf
            loss = float(d.get("loss_pct") or 0.0) / 100
            q = d.get("queue_pkts") or DEFAULT_QUEUE_PKTS
            for x, y in ((a, b), (b, a)):
                self.links[(x, y)] = Link(x, y, delay, cap, loss, q * (MSS + PACKET_OVERHEAD))
        self.view = spec_view(spec)
        self.switch_of = {h.name: h.switch for h in self.view.hosts.values()}
        self.g = self.view.graph()
        self._toward: dict[str, dict[str, str]] = {}
        self._trees: dict[tuple[str, frozenset], tuple[Link, ...]] = {}
        self._spt: dict[str, nx.DiGraph] = {}  # sender -> its tree to every host
        #: each connection's window, when it was last used and its retransmission timeout:
        #: (src, dst, lo) -> (cwnd, t, rto)
        self.conns: dict[tuple[str, str, bool], tuple[float, float, float]] = {}
        self._routes: dict[tuple[str, str], Route] = {}
        self.flows = 0

    # -- paths ------------------------------------------------------------------------
    def _next_hops(self, dst_switch: str) -> dict[str, str]:
        table = self._toward.get(dst_switch)
        if table is None:
            table = self._toward[dst_switch] = next_hops(self.view, self.g,
                                                         [dst_switch])[dst_switch]
        return table

    def path(self, src: str, dst: str) -> tuple[Link, ...]:
        """The links from host ``src`` to host ``dst`` (empty: the same host)."""
        return self.route(src, dst).links

    def route(self, src: str, dst: str) -> Route:
        key = (src, dst)
        got = self._routes.get(key)
        if got is not None:
            return got
        if src == dst:
            got = ()
        else:
            a, b = self.switch_of[src], self.switch_of[dst]
            hops = [src, a]
            if a != b:
                table = self._next_hops(b)
                node = a
                while node != b:
                    node = table.get(node)
                    if node is None:
                        raise ValueError(f"no path from {src} to {dst}")
                    hops.append(node)
            hops.append(dst)
            got = tuple(self.links[(x, y)] for x, y in zip(hops, hops[1:]))
        route = self._routes[key] = Route(got)
        return route

    def delay(self, src: str, dst: str) -> float:
        """One-way propagation delay (s)."""
        return self.route(src, dst).prop

    def bottleneck(self, src: str, dst: str) -> float:
        """The narrowest capacity on the path (bytes/s; inf when none is limited)."""
        return min((lk.cap for lk in self.path(src, dst)), default=math.inf)

    def tree(self, src: str, members: Iterable[str]) -> tuple[Link, ...]:
        """The links of the controller's shortest-path tree from ``src`` to ``members``
        (each once: a multicast copy crosses a link once)."""
        key = (src, frozenset(members))
        got = self._trees.get(key)
        if got is None:
            wanted = sorted(m for m in key[1] if m != src)
            if not wanted:
                got = ()
            else:
                # The shortest-path tree to some members is the one to every host pruned
                # to their branches (core.multicast.graft says as much), so the tree to
                # every host is built once per sender and each member set walks it.
                full = self._spt.get(src)
                if full is None:
                    others = [h for h in self.view.hosts if h != src]
                    full = self._spt[src] = multicast_tree(self.view, src, others, g=self.g)
                root = full.graph["root"]
                edges = {(src, root): None}
                for m in wanted:
                    if m not in full:
                        raise ValueError(f"no multicast path from {src} to {m}")
                    branch, node = [], m
                    while node != root:
                        (up,) = full.pred[node]
                        if (up, node) in edges:
                            break
                        branch.append((up, node))
                        node = up
                    edges.update(dict.fromkeys(reversed(branch)))
                got = tuple(self.links[e] for e in edges)
            self._trees[key] = got
        return got

    # -- queues -----------------------------------------------------------------------
    def queue_delay(self, link: Link, lo: bool = False) -> float:
        """How long a packet arriving now waits at ``link``: the windows of the flows held
        back there, beyond what their round trip keeps in flight (at most the buffer)."""
        held = link.held
        if not held or link.cap == math.inf:
            return 0.0
        now = self.k.now
        standing = math.fsum(max(0.0, _window(f, now) - f.rate * f.rtt) for f in held
                             if lo or not f.lo)
        while standing > link.buffer:  # it overflowed: the flows held here back off
            for f in sorted(held, key=_by_id):
                self._progress(f, now)
                f.cwnd *= BACKOFF
                f.ca = True
            standing = math.fsum(max(0.0, _window(f, now) - f.rate * f.rtt) for f in held
                                 if lo or not f.lo)
        return min(standing, link.buffer) / link.cap

    def path_queue(self, links: Iterable[Link], lo: bool = False) -> float:
        """The queueing along ``links`` (only rate-limited links queue)."""
        q = 0.0
        for lk in links:
            if lk.held:
                q += self.queue_delay(lk, lo)
        return q

    # -- transfers --------------------------------------------------------------------
    def send(self, src: str, dst: str, payload: int, fn: Callable[[Any], None], arg: Any = None,
             lo: bool = False, http: bool = True) -> Flow | None:
        """``payload`` bytes from ``src`` to ``dst``; ``fn(arg)`` when the last byte is
        there.  ``lo``: the lower priority class; ``http``: count HTTP headers too.  A bulk
        transfer's :class:`Flow` is returned (``cancel`` stops it), else None."""
        route = self.route(src, dst)
        links = route.links
        wire = wire_bytes(payload, http) if http else payload + UDP_OVERHEAD
        if not links:
            self.k.after(0.0, fn, arg)
            return None
        prop = route.prop
        if wire <= SMALL_BYTES:
            t = prop + self.path_queue(route.limited, lo)
            for lk in links:
                lk.bytes += wire
            for lk in route.limited:
                t += wire / lk.cap
            if route.loss:
                for lk in links:
                    if lk.loss and self.rng.random() < lk.loss:
                        if not http:
                            return None  # a datagram lost is lost
                        t += RTO_S
            self.k.after(t, fn, arg)
            return None
        f = Flow(self.flows, links, wire, lo, fn, arg, prop)
        f.by_cap = route.by_cap
        f.rtt = 2 * prop
        f.conn = (src, dst, lo)
        last = self.conns.get(f.conn)
        if last is not None and self.k.now - last[1] < last[2]:
            f.cwnd = max(f.cwnd, last[0])  # not idle long enough to restart slow start
        if route.loss > 0:
            f.loss_cap = MSS / max(f.rtt, 1e-3) * 1.22 / math.sqrt(route.loss)
        self.flows += 1
        self._round(f)
        return f

    def cancel(self, f: Flow | None) -> None:
        """Stop ``f`` where it is (its receiver closed the connection): it sends no more,
        its callback never runs, its links go to the others."""
        if f is None or f.cancelled:
            return
        f.cancelled = True
        f.version += 1
        if f.fluid:
            self._progress(f, self.k.now)
            self._leave(f)

    def multicast(self, src: str, members: dict[str, tuple[Callable, Any]], payload: int,
                  datagrams: int, pace: float = MULTICAST_PACE) -> None:
        """One UDP flow of ``payload`` bytes (``datagrams`` of them) from ``src`` to every
        member, sent at ``pace`` bytes/s; ``fn(arg)`` of each member when the last byte
        reaches it.  UDP does not back off: on every link it takes what it offers (up to
        the capacity) before the TCP flows share the rest."""
        if not members:
            return
        wire = payload + datagrams * UDP_OVERHEAD
        extra = []
        for m, (fn, arg) in members.items():
            route = self.route(src, m)
            if not self._overflows(route, wire, pace):  # behind the queues standing there
                extra.append((route.prop + self.path_queue(route.limited), fn, arg))
        links = self.tree(src, members)
        if not links:
            for delay, fn, arg in extra:
                self.k.after(delay, fn, arg)
            return
        f = Flow(self.flows, links, wire, False, None, None, 0.0)
        f.extra = extra
        f.cwnd = math.inf  # no congestion control: it leaves at the sender's pace
        f.paced = pace
        self.flows += 1
        self._go_fluid(f, pace)

    def _overflows(self, route: Route, wire: float, pace: float) -> bool:
        """Whether a burst of ``wire`` bytes at ``pace`` loses datagrams on ``route``: on a
        link slower than the pace the queue grows by the difference until the burst ends,
        and what does not fit in the buffer left by the standing queue is dropped (a live
        segment missing a datagram cannot be put together)."""
        for lk in route.limited:
            if pace > lk.cap:
                grows = wire * (1.0 - lk.cap / pace)
                free = lk.buffer - self.queue_delay(lk) * lk.cap
                if grows > free:
                    return True
        return False

    def _level(self, lk: Link, f: Flow) -> float:
        """What ``f`` would get at ``lk`` if it joined now: the link's max-min level over
        the flows of its class there (those held below it elsewhere keep their rate, the
        rest share what is left); the lower class shares what the higher leaves."""
        if f.lo:
            room = max(lk.cap - lk.hi_sum - lk.paced_sum, LO_FLOOR * lk.cap)
            rates = sorted(g.rate for g in lk.lo if g is not f)
        else:
            room = lk.cap - lk.paced_sum
            rates = sorted(g.rate for g in lk.hi if g is not f and g.paced is None)
        n = len(rates) + 1
        for r in rates:
            if r >= room / n:
                break
            room -= r
            n -= 1
        return room / n

    def _share(self, f: Flow) -> float:
        """The rate ``f`` (not yet fluid) would get now, joining every link it crosses.
        A link's level is never below what its class leaves unused there, so a link whose
        unused room already exceeds the best level so far cannot lower it (the wide links
        of the core and the origin are passed over without looking at their flows)."""
        best = f.loss_cap
        for lk in f.by_cap:
            if f.lo:
                free = max(lk.cap - lk.hi_sum - lk.paced_sum, LO_FLOOR * lk.cap) - lk.lo_sum
            else:
                free = lk.cap - lk.paced_sum - lk.hi_sum
            if free >= best:
                continue
            r = self._level(lk, f)
            if r < best:
                best = r
        return max(best, MIN_RATE)

    def _round(self, f: Flow) -> None:
        """One round of slow start: send a window, or go fluid when it covers the share."""
        if f.cancelled:
            return
        now = self.k.now
        rate = self._share(f)
        q = self.path_queue(f.limited, f.lo)
        rtt = f.rtt + q
        if f.cwnd >= rate * rtt:
            self._go_fluid(f, rate)
            return
        w = min(f.cwnd, f.remaining)
        f.remaining -= w
        for lk in f.links:
            lk.bytes += w
        if f.remaining <= 0:
            end = now + q + w / rate
            self._keep_window(f, f.cwnd + w, end)
            self.k.at(end + f.prop, self._deliver, f)
            return
        f.cwnd += w
        self.k.at(now + rtt, self._round, f)

    def _keep_window(self, f: Flow, cwnd: float, at: float) -> None:
        """The connection's window when ``f`` ends (what TCP keeps unless it idles past
        its RTO): at most what the path held, its share's round trip plus the bottleneck's
        buffer."""
        if f.conn is None:
            return
        cap = (f.rate * f.rtt + f.bottleneck.buffer) if f.bottleneck is not None else cwnd
        # Linux: RTO = smoothed RTT (the queues it waited in included) + at least 200 ms
        rto = f.rtt + self.path_queue(f.limited, f.lo) + RTO_S
        self.conns[f.conn] = (max(float(IW_BYTES), min(cwnd, cap)), at, rto)

    def _go_fluid(self, f: Flow, want: float) -> None:
        """``f`` joins its links as a fluid flow that would get ``want``.  Only the links
        where what is unused falls short of that have flows that must give way; the
        others keep their rates."""
        f.fluid = True
        f.t = self.k.now
        short = [lk for lk in f.limited if lk.free() < want]
        for lk in f.links:
            (lk.lo if f.lo else lk.hi).add(f)
            if f.paced is not None:
                lk.paced_n += 1
        self._reshare(short, f)

    def _leave(self, f: Flow) -> None:
        """``f`` leaves its links (it ended or was cancelled); the flows whose rate a link
        it crossed fixed (and paced ones, which take what they can) share what it frees.
        ``f`` keeps its last rate and bottleneck for the connection's window."""
        f.fluid = False  # off the links: cancelling it now changes nothing
        rate = f.rate
        for lk in f.links:
            if f.lo:
                lk.lo.discard(f)
                lk.lo_sum = lk.lo_sum - rate if lk.lo else 0.0
            else:
                lk.hi.discard(f)
                if f.paced is not None:
                    lk.paced_n -= 1
                    lk.paced_sum -= rate
                else:
                    lk.hi_sum -= rate
                if not lk.hi:
                    lk.hi_sum = lk.paced_sum = 0.0
        if f.bottleneck is not None:
            f.bottleneck.held.discard(f)
        self._reshare([lk for lk in f.limited if lk.held or lk.paced_n])

    def _assign(self, f: Flow, rate: float, where: Link | None) -> None:
        """``f`` runs at ``rate`` from now, held back by ``where`` (None: nowhere)."""
        d = rate - f.rate
        if d:
            if f.lo:
                for lk in f.links:
                    lk.lo_sum += d
            elif f.paced is not None:
                for lk in f.links:
                    lk.paced_sum += d
            else:
                for lk in f.links:
                    lk.hi_sum += d
            f.rate = rate
        old = f.bottleneck
        if where is not old:
            if old is not None:
                old.held.discard(f)
            if where is not None:
                where.held.add(f)
            f.bottleneck = where

    def _reshare(self, links: Iterable[Link], joined: Flow | None = None) -> None:
        """New rates for every flow on ``links`` and for ``joined`` (the higher class
        first), and their ends."""
        now = self.k.now
        hi: set[Flow] = set()
        lo: set[Flow] = set()
        for lk in links:
            hi |= lk.hi
            lo |= lk.lo
        if joined is not None:
            (lo if joined.lo else hi).add(joined)
        at = self.k.at
        for low in (False, True):
            group = sorted(lo if low else hi, key=_by_id)
            for f in group:
                self._progress(f, now)
            before = [f.rate for f in group]
            self._fill(group, low)
            if not low:  # the lower class shares what the higher leaves wherever it moved
                for f, old in zip(group, before):
                    if f.rate > old:
                        for lk in f.limited:
                            if lk.lo:
                                lo |= lk.lo
            for f, old in zip(group, before):
                if f.rate == old and f.version:
                    continue  # its end, already scheduled, has not moved
                end = now + max(f.remaining, 0.0) / f.rate
                if f.version and f.due is not None and end >= f.due:
                    continue  # slower: the event due first finds it unfinished and waits
                f.version += 1
                f.due = end
                at(end, self._finish, (f, f.version))

    def _fill(self, flows: list[Flow], lo: bool) -> None:
        """Max-min fair rates for ``flows`` (one class) by progressive filling: the links
        they cross, less what the other flows there use (their rates kept), are shared
        out from the tightest link on; each flow's ``bottleneck`` is the link that fixed
        its rate."""
        if not flows:
            return
        mine: dict[Link, float] = {}   # the flows' own rates on each link
        count: dict[Link, int] = {}
        for f in flows:
            for lk in f.limited:
                if lk in count:
                    count[lk] += 1
                    mine[lk] += f.rate
                else:
                    count[lk] = 1
                    mine[lk] = f.rate
        avail: dict[Link, float] = {}
        for lk, own in mine.items():
            if lo:
                room = max(lk.cap - lk.hi_sum - lk.paced_sum, LO_FLOOR * lk.cap)
                room -= lk.lo_sum - own
            else:
                room = lk.cap - lk.hi_sum - lk.paced_sum + own
            avail[lk] = max(room, 0.0)
        open_ = []
        for f in flows:
            if f.paced is None:
                open_.append(f)
                continue
            rate = max(min([f.paced, *(avail[lk] for lk in f.limited)]), MIN_RATE)
            self._assign(f, rate, None)  # nothing queues behind a sender that does not back off
            for lk in f.limited:
                avail[lk] = max(avail[lk] - rate, 0.0)
                count[lk] -= 1
        while open_:
            best, where = math.inf, None
            for lk, n in count.items():
                if n:
                    level = avail[lk] / n
                    if level < best:
                        best, where = level, lk
            capped = [f for f in open_ if f.loss_cap < best]
            if capped:  # held by their own loss rate below any link's level
                done, rate, at = capped, None, None
            elif where is None:  # no limited link left: as fast as the loss rate allows
                done, rate, at = open_, None, None
            else:
                done, rate, at = [f for f in open_ if where in f.limited], best, where
            for f in done:
                r = max(f.loss_cap if rate is None else rate, MIN_RATE)
                self._assign(f, r, at)
                for lk in f.limited:
                    avail[lk] -= r
                    count[lk] -= 1
            if len(done) == len(open_):
                break
            gone = set(map(id, done))
            open_ = [f for f in open_ if id(f) not in gone]

    def _progress(self, f: Flow, now: float) -> None:
        dt = now - f.t
        if dt > 0 and f.rate > 0:
            moved = min(f.rate * dt, max(f.remaining, 0.0))
            f.remaining -= moved
            f.cwnd += moved * MSS / max(f.cwnd, MSS) if f.ca else moved
            for lk in f.links:
                lk.bytes += moved
        f.t = now

    def _finish(self, token: tuple[Flow, int]) -> None:
        f, version = token
        if version != f.version:
            return
        now = self.k.now
        self._progress(f, now)
        if f.remaining > f.rate * 1e-9:  # slowed since this was due: not there yet
            f.due = now + f.remaining / f.rate
            self.k.at(f.due, self._finish, token)
            return
        f.version += 1
        self._leave(f)
        if f.extra is not None:
            for delay, fn, arg in f.extra:
                self.k.after(delay, fn, arg)
        else:
            self._keep_window(f, f.cwnd, self.k.now)
            self.k.after(f.prop, self._deliver, f)

    @staticmethod
    def _deliver(f: Flow) -> None:
        if not f.cancelled:
            f.fn(f.arg)

    def set_link(self, a: str, b: str, delay_ms: float | None = None,
                 bw_mbit: float | None = None, loss_pct: float | None = None,
                 **_: object) -> None:
        """Change link ``a``-``b`` both ways from now on (a scenario's link event)."""
        for key in ((a, b), (b, a)):
            lk = self.links.get(key)
            if lk is None:
                raise ValueError(f"no link {a}-{b} in the topology")
            if delay_ms is not None:
                lk.delay = float(delay_ms) / 1000
            if bw_mbit is not None:
                lk.cap = float(bw_mbit) * 1e6 / 8
            if loss_pct is not None:
                lk.loss = float(loss_pct) / 100
        self._routes.clear()
        self._trees.clear()
        self._spt.clear()
        for f in {f for key in ((a, b), (b, a)) for f in (*self.links[key].hi,
                                                          *self.links[key].lo)}:
            f.limited = tuple(lk for lk in f.links if lk.cap != math.inf)
            f.by_cap = tuple(sorted(f.limited, key=_by_cap))
        self._reshare([self.links[(a, b)], self.links[(b, a)]])

    # -- what the controller would measure ----------------------------------------------
    def counters(self) -> dict[tuple[str, str], float]:
        """Bytes carried so far per direction (a, b), flows in progress counted so far."""
        now = self.k.now
        for lk in self.links.values():
            for f in sorted((*lk.hi, *lk.lo), key=_by_id):
                self._progress(f, now)
        return {k: lk.bytes for k, lk in self.links.items()}
