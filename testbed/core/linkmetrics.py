"""Discovery and link metrics: probe and counter events in, one annotated graph out.

The controller shim feeds four kinds of events, each stamped with times from its own
clock (seconds); nothing here reads a clock:

* echo round trips per switch (controller <-> switch), as Ryu's network-awareness apps
  measure them with OpenFlow echo requests carrying their send time;
* LLDP probes: sent by the controller out of ``src``/``src_port`` at ``t_send`` (the time
  is embedded in the frame) and received as a packet-in from ``dst``/``dst_port`` at
  ``t_recv``.  The probe proves the link exists (discovery) and times it: the one-way
  link latency is ``(t_recv - t_send) - rtt(src)/2 - rtt(dst)/2``, the controller legs
  being half of each switch's echo round trip;
* port-stats replies (byte counters), which give per-port rates, utilisation and the
  available bandwidth (capacity - rate);
* switch, port and host events.

:class:`LatencyEstimator` and :class:`PortStatsTracker` turn raw samples into robust
estimates; :class:`MetricGraph` is the one networkx graph of switches, hosts and links
with their current ``delay_ms``, ``avail_mbit``, ``util`` and ``up``; its ``update_*``
methods return :class:`LinkChange` events only when a metric moved beyond a threshold,
which is what triggers path recomputation.  :class:`LinkMonitor` wires the three together
for a controller.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import networkx as nx

if TYPE_CHECKING:
    from testbed.core.l2 import NetView

Node = Hashable
DirLink = tuple[Node, Node]
PortId = tuple[Node, int]

# --------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LatencyEstimate:
    """The current one-way latency of a directed link and how fresh it is."""

    delay_ms: float
    samples: int
    last_sample: float
    stale: bool


class LatencyEstimator:
    """One-way latency per directed link from LLDP timings corrected by echo round trips.

    Both the echo round trip of each switch and the corrected link latency are the median
    of the last ``window`` samples: a median ignores the occasional sample delayed by a busy
    controller (which an average would absorb) and follows a real step change after
    ``window // 2 + 1`` samples.  An LLDP sample is used only once both of its switches have
    an echo estimate, so that no estimate carries the controller's own delay.  A link whose
    last sample is older than ``stale_after_s`` is reported as stale.
    """

    def __init__(self, window: int = 5, stale_after_s: float = 5.0):
        if window < 1:
            raise ValueError(f"window: {window!r} (must be >= 1)")
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s: {stale_after_s!r} (must be > 0)")
        self.window = window
        self.stale_after_s = stale_after_s
        self._echo: dict[Node, deque[float]] = {}
        self._links: dict[DirLink, deque[float]] = {}
        self._last: dict[DirLink, float] = {}
        self.dropped = 0  # LLDP samples that arrived before both echo estimates

    def echo(self, switch: Node, t_send: float, t_recv: float) -> None:
        """An echo reply from ``switch`` to a request sent at ``t_send``, seen at ``t_recv``."""
        rtt = t_recv - t_send
        if rtt < 0:
            raise ValueError(f"echo from {switch}: received before sent ({t_send} > {t_recv})")
        self._echo.setdefault(switch, deque(maxlen=self.window)).append(rtt)

    def echo_rtt(self, switch: Node) -> Optional[float]:
        """The controller <-> ``switch`` round trip in seconds (None before any sample)."""
        samples = self._echo.get(switch)
        return statistics.median(samples) if samples else None

    def lldp(self, src: Node, dst: Node, t_send: float, t_recv: float) -> Optional[float]:
        """A probe sent out of ``src`` at ``t_send`` arrived from ``dst`` at ``t_recv``.

        Returns the corrected one-way sample in ms (clamped at 0), or None when it could
        not be corrected yet and was dropped.
        """
        rtt_src, rtt_dst = self.echo_rtt(src), self.echo_rtt(dst)
        if rtt_src is None or rtt_dst is None:
            self.dropped += 1
            return None
        sample_ms = max(0.0, (t_recv - t_send) - rtt_src / 2 - rtt_dst / 2) * 1000.0
        link = (src, dst)
        self._links.setdefault(link, deque(maxlen=self.window)).append(sample_ms)
        self._last[link] = t_recv
        return sample_ms

    def estimate(self, src: Node, dst: Node, now: float) -> Optional[LatencyEstimate]:
        """The estimate for link ``src -> dst`` at time ``now`` (None if never sampled)."""
        samples = self._links.get((src, dst))
        if not samples:
            return None
        last = self._last[src, dst]
        return LatencyEstimate(statistics.median(samples), len(samples), last,
                               now - last > self.stale_after_s)

    def stale(self, now: float) -> list[DirLink]:
        """Directed links with no sample for more than ``stale_after_s`` seconds."""
        return sorted((k for k, t in self._last.items() if now - t > self.stale_after_s),
                      key=repr)

    def forget(self, src: Node, dst: Node) -> None:
        """Drop link ``src -> dst`` (it went away); a new sample starts it afresh."""
        self._links.pop((src, dst), None)
        self._last.pop((src, dst), None)


# --------------------------------------------------------------------------- port stats


@dataclass(frozen=True)
class PortRate:
    """Rates of one switch port; utilisation and headroom need a known capacity."""

    tx_bps: float
    rx_bps: float
    capacity_mbit: Optional[float]

    @property
    def util(self) -> Optional[float]:
        """The busier direction's share of the capacity (None if capacity unknown)."""
        if not self.capacity_mbit:
            return None
        return max(self.tx_bps, self.rx_bps) / (self.capacity_mbit * 1e6)

    @property
    def avail_tx_mbit(self) -> Optional[float]:
        """Capacity left for sending out of this port, >= 0 (None if capacity unknown)."""
        return _headroom(self.capacity_mbit, self.tx_bps)

    @property
    def avail_rx_mbit(self) -> Optional[float]:
        """Capacity left for receiving on this port, >= 0 (None if capacity unknown)."""
        return _headroom(self.capacity_mbit, self.rx_bps)


def _headroom(capacity_mbit: Optional[float], bps: float) -> Optional[float]:
    return None if capacity_mbit is None else max(0.0, capacity_mbit - bps / 1e6)


@dataclass
class _Counters:
    t: float
    tx: int
    rx: int
    tx_bps: Optional[float] = None
    rx_bps: Optional[float] = None


class PortStatsTracker:
    """Per-port rates from successive port-stats replies.

    The interval is taken from the port's own ``duration`` (seconds since the port was
    added, as OpenFlow reports it) when given: it is the switch's clock and so free of
    controller scheduling jitter; otherwise from ``now``.  Counters that go backwards (a
    port re-added, a switch restarted) restart the baseline and give no rate for that
    reply.  Rates are smoothed by an exponential moving average (``alpha`` = weight of the
    newest interval; 1 disables smoothing).
    """

    def __init__(self, alpha: float = 0.5):
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha: {alpha!r} (must be in (0, 1])")
        self.alpha = alpha
        self._ports: dict[PortId, _Counters] = {}
        self._capacity: dict[PortId, float] = {}
        self.resets = 0

    def set_capacity(self, switch: Node, port: int, mbit: Optional[float]) -> None:
        """The line rate of ``switch`` port ``port`` in Mbit/s (None: unknown)."""
        if mbit is None:
            self._capacity.pop((switch, port), None)
        elif mbit <= 0:
            raise ValueError(f"capacity of {switch} port {port}: {mbit!r} (must be > 0)")
        else:
            self._capacity[switch, port] = float(mbit)

    def update(self, now: float, switch: Node, port: int, tx_bytes: int, rx_bytes: int,
               duration_s: Optional[float] = None) -> Optional[PortRate]:
        """Record one reply; returns the port's rate, or None until two replies are in."""
        key = (switch, port)
        t = now if duration_s is None else duration_s
        prev = self._ports.get(key)
        if prev is None or tx_bytes < prev.tx or rx_bytes < prev.rx or t < prev.t:
            if prev is not None:
                self.resets += 1
            self._ports[key] = _Counters(t, tx_bytes, rx_bytes)
            return None
        dt = t - prev.t
        if dt <= 0:
            return self.rate(switch, port)
        tx_bps = (tx_bytes - prev.tx) * 8 / dt
        rx_bps = (rx_bytes - prev.rx) * 8 / dt
        if prev.tx_bps is not None and prev.rx_bps is not None:
            tx_bps = self.alpha * tx_bps + (1 - self.alpha) * prev.tx_bps
            rx_bps = self.alpha * rx_bps + (1 - self.alpha) * prev.rx_bps
        self._ports[key] = _Counters(t, tx_bytes, rx_bytes, tx_bps, rx_bps)
        return PortRate(tx_bps, rx_bps, self._capacity.get(key))

    def rate(self, switch: Node, port: int) -> Optional[PortRate]:
        """The latest rate of a port (None before two replies)."""
        c = self._ports.get((switch, port))
        if c is None or c.tx_bps is None or c.rx_bps is None:
            return None
        return PortRate(c.tx_bps, c.rx_bps, self._capacity.get((switch, port)))

    def forget(self, switch: Node, port: Optional[int] = None) -> None:
        """Drop the counters of one port, or of every port of ``switch``."""
        for key in [k for k in self._ports if k[0] == switch and port in (None, k[1])]:
            del self._ports[key]


# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Thresholds:
    """How far a metric must move from its last reported value to be reported again.

    A change counts only if it exceeds both the relative and the absolute bound: the
    relative bound ignores noise on large values, the absolute one noise near zero.
    """

    delay_rel: float = 0.1
    delay_abs_ms: float = 0.5
    bw_rel: float = 0.1
    bw_abs_mbit: float = 1.0


@dataclass(frozen=True)
class LinkChange:
    """A link event: ``kind`` is new, up, down, delay or bandwidth; ``a``/``b`` its ends."""

    kind: str
    a: Node
    b: Node
    old: Optional[float] = None
    new: Optional[float] = None


@dataclass
class _LinkState:
    """Per-direction raw metrics behind one graph edge (runtime state, not attributes)."""

    delay: dict[DirLink, float] = field(default_factory=dict)
    rate_tx: dict[DirLink, float] = field(default_factory=dict)  # from the sending port
    rate_rx: dict[DirLink, float] = field(default_factory=dict)  # from the receiving port
    reported_delay: float = 0.0
    reported_avail: float = math.inf


SWITCH, HOST = "switch", "host"
LINK, ACCESS = "link", "access"


class MetricGraph:
    """The network as discovered and measured: one undirected networkx graph.

    Nodes: switches (``kind='switch'``, ``dpid``) and hosts (``kind='host'``, ``ip``,
    ``mac``).  Edges: switch links (``kind='link'``) and host attachments
    (``kind='access'``), each with ``ports`` (node -> port on that node), ``up``,
    ``delay_ms`` (mean of the measured directions, i.e. half the link's round trip, else
    the configured prior), ``capacity_mbit`` (None: unknown), ``rate_mbit`` and ``util``
    (the busier direction), ``rates`` (directed (from, to) -> Mbit/s, once measured) and
    ``avail_mbit`` (the scarcer direction; ``inf`` when the capacity is unknown, so an
    unknown link constrains nothing).  Read ``graph``; change it
    only through the methods, which return the :class:`LinkChange` events that matter.
    """

    def __init__(self, thresholds: Thresholds = Thresholds(), default_delay_ms: float = 1.0):
        self.thresholds = thresholds
        self.default_delay_ms = default_delay_ms
        self.graph = nx.Graph()
        self._state: dict[frozenset, _LinkState] = {}
        self._by_port: dict[PortId, Node] = {}  # (node, port) -> the node at the other end
        self._last_seen: dict[frozenset, float] = {}

    @classmethod
    def from_view(cls, view: NetView, thresholds: Thresholds = Thresholds()) -> MetricGraph:
        """A graph seeded with a built network: links up, configured delay and capacity."""
        mg = cls(thresholds)
        for s in view.switches.values():
            mg.add_switch(s.name, s.dpid)
        for h in view.hosts.values():
            mg.add_host(h.name, h.switch, h.port, ip=h.ip, mac=h.mac)
        for k in view.links:
            mg.add_link(k.a, k.a_port, k.b, k.b_port, delay_ms=k.delay_ms, capacity_mbit=k.bw_mbit)
        return mg

    # ----------------------------------------------------------------- discovery

    def add_switch(self, name: Node, dpid: Optional[int] = None) -> None:
        """A switch connected (or configured); its links come with probes."""
        self.graph.add_node(name, kind=SWITCH, dpid=dpid)

    def remove_switch(self, name: Node) -> list[LinkChange]:
        """A switch left: every link of it goes down (hosts on it keep their node)."""
        if name not in self.graph:
            return []
        return [c for nbr in sorted(self.graph[name], key=repr)
                for c in self.set_up(name, nbr, False)]

    def add_host(self, name: Node, switch: Node, port: int, ip: Optional[str] = None,
                 mac: Optional[str] = None, capacity_mbit: Optional[float] = None) -> None:
        """A host seen (or configured) on ``switch`` port ``port``; re-adding moves it."""
        if name in self.graph:
            self._drop_edges(name)
        self.graph.add_node(name, kind=HOST, ip=ip, mac=mac)
        self._add_edge(name, switch, {switch: port}, ACCESS, 0.0, capacity_mbit)

    def add_link(self, a: Node, a_port: int, b: Node, b_port: int,
                 delay_ms: Optional[float] = None,
                 capacity_mbit: Optional[float] = None) -> list[LinkChange]:
        """A switch link (from configuration or discovery); returns new/up events."""
        if self.graph.has_edge(a, b):
            data = self.graph.edges[a, b]
            if data["ports"] == {a: a_port, b: b_port}:
                return self.set_up(a, b, True)
            self._drop_edge(a, b)  # re-cabled: a different link between the same switches
        for node in (a, b):
            if node not in self.graph:
                self.add_switch(node)
        for node, port in ((a, a_port), (b, b_port)):
            old = self._by_port.get((node, port))
            if old is not None:  # a port carries one link: a stale one gives way
                self._drop_edge(node, old)
        delay = self.default_delay_ms if delay_ms is None else delay_ms
        self._add_edge(a, b, {a: a_port, b: b_port}, LINK, delay, capacity_mbit)
        return [LinkChange("new", a, b)]

    def link_seen(self, now: float, a: Node, a_port: int, b: Node,
                  b_port: int) -> list[LinkChange]:
        """An LLDP probe proved link ``a``/``a_port`` -> ``b``/``b_port`` at ``now``."""
        changes = self.add_link(a, a_port, b, b_port)
        self._last_seen[frozenset((a, b))] = now
        return changes

    def watch(self, now: float) -> None:
        """Start the probe timeout at ``now`` for every switch link not yet seen, so that a
        configured link that never answers LLDP goes down too."""
        for a, b in self.switch_links():
            self._last_seen.setdefault(frozenset((a, b)), now)

    def expire(self, now: float, timeout_s: float) -> list[LinkChange]:
        """Links being watched with no probe for more than ``timeout_s`` go down."""
        changes = []
        for a, b in self.switch_links():
            seen = self._last_seen.get(frozenset((a, b)))
            if seen is not None and now - seen > timeout_s:
                changes += self.set_up(a, b, False)
        return changes

    def set_up(self, a: Node, b: Node, up: bool) -> list[LinkChange]:
        """Mark link ``a``-``b`` up or down; an event only if that is news."""
        if not self.graph.has_edge(a, b) or self.graph.edges[a, b]["up"] == up:
            return []
        self.graph.edges[a, b]["up"] = up
        return [LinkChange("up" if up else "down", a, b)]

    def port_down(self, switch: Node, port: int) -> list[LinkChange]:
        """A port-status message: the link on ``switch`` port ``port`` is down."""
        peer = self._by_port.get((switch, port))
        return [] if peer is None else self.set_up(switch, peer, False)

    def port_up(self, switch: Node, port: int) -> list[LinkChange]:
        """A port came back.  Hosts are up at once; switch links wait for LLDP."""
        peer = self._by_port.get((switch, port))
        if peer is None or self.graph.nodes[peer].get("kind") != HOST:
            return []
        return self.set_up(switch, peer, True)

    def peer(self, node: Node, port: int) -> Optional[Node]:
        """The node at the other end of ``node`` port ``port``, if known."""
        return self._by_port.get((node, port))

    # ----------------------------------------------------------------- metrics

    def update_delay(self, a: Node, b: Node, delay_ms: float) -> list[LinkChange]:
        """A new latency estimate for direction ``a -> b`` of a known link."""
        if not self.graph.has_edge(a, b):
            return []
        state = self._state[frozenset((a, b))]
        state.delay[a, b] = max(0.0, float(delay_ms))
        data = self.graph.edges[a, b]
        data["delay_ms"] = sum(state.delay.values()) / len(state.delay)
        t = self.thresholds
        if _moved(state.reported_delay, data["delay_ms"], t.delay_rel, t.delay_abs_ms):
            old, state.reported_delay = state.reported_delay, data["delay_ms"]
            return [LinkChange("delay", a, b, old, data["delay_ms"])]
        return []

    def update_port(self, switch: Node, port: int, rate: PortRate) -> list[LinkChange]:
        """New rates of ``switch`` port ``port``: tx is the outgoing direction's load."""
        peer = self._by_port.get((switch, port))
        if peer is None:
            return []
        key = frozenset((switch, peer))
        state, data = self._state[key], self.graph.edges[switch, peer]
        state.rate_tx[switch, peer] = rate.tx_bps / 1e6
        state.rate_rx[peer, switch] = rate.rx_bps / 1e6
        if rate.capacity_mbit is not None:
            data["capacity_mbit"] = rate.capacity_mbit
        self._refresh_bandwidth(switch, peer)
        t = self.thresholds
        if _moved(state.reported_avail, data["avail_mbit"], t.bw_rel, t.bw_abs_mbit):
            old, state.reported_avail = state.reported_avail, data["avail_mbit"]
            return [LinkChange("bandwidth", switch, peer, old, data["avail_mbit"])]
        return []

    def directed_delay(self, a: Node, b: Node) -> Optional[float]:
        """The measured latency of direction ``a -> b`` in ms (None if never measured)."""
        state = self._state.get(frozenset((a, b)))
        return None if state is None else state.delay.get((a, b))

    def switch_links(self) -> list[tuple[Node, Node]]:
        """Switch-to-switch edges, in a stable order."""
        return sorted(((a, b) for a, b, k in self.graph.edges(data="kind") if k == LINK),
                      key=repr)

    # ----------------------------------------------------------------- internals

    def _add_edge(self, a: Node, b: Node, ports: dict, kind: str, delay_ms: float,
                  capacity_mbit: Optional[float]) -> None:
        avail = math.inf if capacity_mbit is None else float(capacity_mbit)
        self.graph.add_edge(a, b, kind=kind, ports=dict(ports), up=True, delay_ms=delay_ms,
                            capacity_mbit=capacity_mbit, rate_mbit=0.0,
                            util=None if capacity_mbit is None else 0.0, avail_mbit=avail)
        self._state[frozenset((a, b))] = _LinkState(reported_delay=delay_ms,
                                                    reported_avail=avail)
        for node, port in ports.items():
            self._by_port[node, port] = b if node == a else a

    def _drop_edge(self, a: Node, b: Node) -> None:
        for node, port in self.graph.edges[a, b]["ports"].items():
            self._by_port.pop((node, port), None)
        self._state.pop(frozenset((a, b)), None)
        self._last_seen.pop(frozenset((a, b)), None)
        self.graph.remove_edge(a, b)

    def _drop_edges(self, node: Node) -> None:
        for nbr in list(self.graph[node]):
            self._drop_edge(node, nbr)

    def _refresh_bandwidth(self, a: Node, b: Node) -> None:
        state, data = self._state[frozenset((a, b))], self.graph.edges[a, b]
        rates = [max(state.rate_tx.get(d, 0.0), state.rate_rx.get(d, 0.0))
                 for d in ((a, b), (b, a))]
        data["rate_mbit"] = max(rates)
        data["rates"] = {(a, b): rates[0], (b, a): rates[1]}  # Mbit/s each way
        cap = data["capacity_mbit"]
        if cap is None:
            data["util"], data["avail_mbit"] = None, math.inf
        else:
            data["util"] = max(rates) / cap
            data["avail_mbit"] = max(0.0, cap - max(rates))


def _moved(old: float, new: float, rel: float, abs_: float) -> bool:
    if old == new:
        return False
    if math.isinf(old) or math.isinf(new):
        return True
    change = abs(new - old)
    return change > abs_ and change > rel * abs(old)


# --------------------------------------------------------------------------- wiring


class LinkMonitor:
    """The three pieces wired as a controller uses them; every method returns events.

    ``link_timeout_s`` is how long a link may go without an LLDP probe before it is down
    (Ryu's switches app uses 2 probe periods + slack; pass what fits the probe period).
    """

    def __init__(self, graph: MetricGraph, latency: Optional[LatencyEstimator] = None,
                 ports: Optional[PortStatsTracker] = None, link_timeout_s: float = 5.0):
        self.graph = graph
        self.latency = latency or LatencyEstimator()
        self.ports = ports or PortStatsTracker()
        self.link_timeout_s = link_timeout_s
        for _, _, data in graph.graph.edges(data=True):
            for node, port in data["ports"].items():
                if data["capacity_mbit"] is not None:
                    self.ports.set_capacity(node, port, data["capacity_mbit"])

    @classmethod
    def from_view(cls, view: NetView, latency: Optional[LatencyEstimator] = None,
                  ports: Optional[PortStatsTracker] = None, link_timeout_s: float = 5.0,
                  thresholds: Thresholds = Thresholds()) -> LinkMonitor:
        """A monitor over the configured network (capacities from its ``bw_mbit``)."""
        return cls(MetricGraph.from_view(view, thresholds), latency, ports, link_timeout_s)

    def echo(self, switch: Node, t_send: float, t_recv: float) -> list[LinkChange]:
        """An echo round trip of ``switch`` (never an event by itself)."""
        self.latency.echo(switch, t_send, t_recv)
        return []

    def lldp(self, src: Node, src_port: int, dst: Node, dst_port: int, t_send: float,
             t_recv: float) -> list[LinkChange]:
        """A probe out of ``src``/``src_port`` came in on ``dst``/``dst_port``."""
        changes = self.graph.link_seen(t_recv, src, src_port, dst, dst_port)
        if any(c.kind == "new" for c in changes):
            self.latency.forget(src, dst)
            self.latency.forget(dst, src)
        if self.latency.lldp(src, dst, t_send, t_recv) is not None:
            est = self.latency.estimate(src, dst, t_recv)
            assert est is not None
            changes += self.graph.update_delay(src, dst, est.delay_ms)
        return changes

    def port_stats(self, now: float, switch: Node, port: int, tx_bytes: int, rx_bytes: int,
                   duration_s: Optional[float] = None) -> list[LinkChange]:
        """One port's counters from a port-stats reply."""
        rate = self.ports.update(now, switch, port, tx_bytes, rx_bytes, duration_s)
        return [] if rate is None else self.graph.update_port(switch, port, rate)

    def port_status(self, switch: Node, port: int, up: bool) -> list[LinkChange]:
        """A port-status message: the port's link (or host) went down or came up."""
        if up:
            return self.graph.port_up(switch, port)
        self.ports.forget(switch, port)
        return self.graph.port_down(switch, port)

    def switch_leave(self, switch: Node) -> list[LinkChange]:
        """A switch disconnected: its links are down and its counters forgotten."""
        self.ports.forget(switch)
        return self.graph.remove_switch(switch)

    def start(self, now: float) -> None:
        """Begin watching every known switch link for probes (call once, at start-up)."""
        self.graph.watch(now)

    def tick(self, now: float) -> list[LinkChange]:
        """Periodic housekeeping: links whose probes stopped go down."""
        return self.graph.expire(now, self.link_timeout_s)

    def stale(self, now: float) -> list[DirLink]:
        """Directed links whose latency estimate is out of date."""
        return self.latency.stale(now)
