"""The master's pingback rounds, tier tables and helpers' neighbour reports, sans I/O.

:class:`MasterLogic` holds what the master decides about the tree: which probes to send
each round and when, which answers count as samples, when the first tables may be built,
which helpers are told their new place, and what the controller is told (tiers and mesh
pairs).  The latencies, tiers and tables themselves come from
:class:`testbed.core.timing.Pingback`.  It is driven by :meth:`MasterLogic.handle` with
these events and answers with effects (:mod:`testbed.core.node.effects`, and
:class:`WriteSync`):

* ``Timer("pingback")``: a round starts.  A helper none of whose probes of the round before
  was answered gets a timeout; then ``probes`` probes go to every helper
  (``Send(to, "probe", {"nonce": n}, via="udp", delay_s=...)``: the driver adds the
  wall-clock ``sent`` field as the probe leaves, and remembers when it left), and two
  timers are set: the decision (``"pingback_decide"``) and the next round, ``interval_s``
  after this one started.
* :class:`ProbeReply`: a helper's answer, with the round trip the driver measured from its
  own send and arrival stamps; it is a sample only if the nonce was sent to that helper in
  this round, the helper's hold time is >= 0 and the round trip (hold included) is in
  [0, 10 s).  The hold
  time is the helper's word: taken off the round trip, it may bring the sample down to the
  least round trip the topology allows between the master and that helper (given the
  plan's links), never below; a reply that would go further is counted
  (``held_beyond_floor``) and its sample kept at that floor.
* ``Timer("pingback_decide")``: the tables are recomputed; when they change, a ``tiers``
  record, a :class:`WriteSync`, and one signed ``routing`` message to every helper whose
  place in the tree changed.  The first tables wait for every helper to answer, until
  :data:`FIRST_TABLES_WAIT_S` after the start.
* :class:`Neighbours`: a helper's report of its mesh neighbours (and, in its payload, its
  cache inventory when that changed), with the version of the routing table it holds: one
  that is not the table last sent to it (lost on the way, or the helper restarted) brings
  that helper's current table again (``routing_resent``).  Given the plan's links, each
  neighbour's latency is kept no lower than the least round trip between the two, and its
  bandwidth no higher than the narrowest link between them; a report beyond them is counted
  (``report_beyond_floor``), as is one naming a node that is no other helper
  (``unknown_peer``, dropped) or more than :data:`MAX_REPORTED` neighbours (refused).

Stagger: the probes of a round go one helper after another, ``PROBE_GAP_S`` apart, the
passes ``PASS_GAP_S`` apart (so replies do not queue behind each other), which takes
``probes * (helpers * PROBE_GAP_S + PASS_GAP_S)``; when that exceeds ``STAGGER_SHARE`` of
the interval (about 600 helpers at 3 probes and 5 s) every offset is scaled down to fit it,
so a round of 10,000 helpers still ends well inside its interval.  The decision comes
``SETTLE_S`` after the stagger ends.  Nonces come from a keyed hash of a counter (the
driver gives an unpredictable key; tests and simulations a fixed one): the same key gives
the same nonces, and a helper cannot guess the next probe's nonce to answer it early.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from testbed.core.headroom import PhysicalPaths, links_graph
from testbed.core.mesh import PeerMetric
from testbed.core.multicast import relay_group
from testbed.core.node.effects import Record, Send, SetTimer, Timer
from testbed.core.timing import Pingback, RoutingTable, tiers_as_lists

PROBE_GAP_S = 0.004      # between two probes of a pass
PASS_GAP_S = 0.03        # after each pass over the helpers
STAGGER_SHARE = 0.5      # the probes of a round leave within this share of the interval
SETTLE_S = 0.5           # the decision waits this long after the last probe left
FIRST_DELAY_S = 1.0      # the first round, after start
FIRST_TABLES_WAIT_S = 15.0  # the first tables wait this long at most for every helper
MAX_RTT_MS = 10_000.0    # a round trip this long or longer is no sample
MAX_REPORTED = 64        # the most neighbours one report may name
RESEND_AFTER_S = 3.0     # a routing table is sent again no sooner than this
#: A measurement this far beyond the topology's bounds is counted as a lie, not noise
#: (it is held to the bound either way): the larger of an absolute and a relative margin.
FLOOR_MARGIN_MS, FLOOR_MARGIN = 0.5, 0.02
CEILING_MARGIN = 2.0     # a packet train reads high by up to this factor when honest

PINGBACK = "pingback"
DECIDE = "pingback_decide"


@dataclass(frozen=True)
class ProbeReply:
    """Event: ``sender`` answered the probe ``nonce``.  ``rtt_ms`` is the round trip the
    driver measured (from the probe leaving to the reply arriving, both its own stamps,
    less ``held_s``); ``held_s`` is the time the helper says it held the probe."""

    sender: str
    nonce: int
    rtt_ms: float
    held_s: float = 0.0


@dataclass(frozen=True)
class Neighbours:
    """Event: a (verified) ``neighbours`` report from ``sender``: ``body["neighbours"]``
    maps peer -> {"latency_ms", "bw_mbit"}; ``payload`` is the JSON cache inventory
    ``[[video, index, version], ...]``, empty when it has not changed since the last one."""

    sender: str
    body: Mapping[str, Any]
    payload: bytes = b""


class WriteSync:
    """Effect: replace what the controller is told (the sync file) with ``data``.

    Given a ``source`` instead, ``data`` is worked out only when a driver reads it (a
    simulation, which has no controller to tell, never does: at 10,000 helpers the whole
    mesh would otherwise be rebuilt for every neighbour report)."""

    __slots__ = ("_data", "_source")

    def __init__(self, data: dict | None = None, *,
                 source: Callable[[], dict] | None = None) -> None:
        self._data, self._source = data, source

    @property
    def data(self) -> dict:
        if self._data is None and self._source is not None:
            self._data, self._source = self._source(), None
        return self._data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WriteSync) and self.data == other.data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"WriteSync({self.data!r})"


Event = Union[Timer, ProbeReply, Neighbours]
Effect = Union[Send, SetTimer, Record, WriteSync]


def stagger(helpers: int, probes: int, interval_s: float) -> tuple[float, float, float]:
    """``(probe gap, pass gap, span)`` in seconds for a round: the unscaled gaps when the
    round fits in ``STAGGER_SHARE * interval_s``, else both scaled to fit it exactly."""
    span = probes * (helpers * PROBE_GAP_S + PASS_GAP_S)
    budget = STAGGER_SHARE * interval_s
    scale = 1.0 if span <= budget or span == 0 else budget / span
    return PROBE_GAP_S * scale, PASS_GAP_S * scale, span * scale


class MasterLogic:
    """Pingback rounds, tier tables, routing messages and neighbour reports (see module).

    helpers: name -> address, in probing order.  master_ip: the parent address of tier 1.
    started_at: run time the master started (the first tables' wait counts from it).
    live: whether there are live channels (a routing message then names the parent's
    relay group).  versions: the content versions, read (never written) when an inventory
    is parsed: an older copy than the current version does not count.  nonce_key: key of
    the nonce source.  links: the plan's links ``(a, b, delay_ms, bw_mbit)``, the bounds
    on what helpers say (none given: nothing is bounded).
    """

    def __init__(self, master: str, master_ip: str, helpers: Mapping[str, str], *,
                 pingback: Pingback, interval_s: float, probes: int, started_at: float = 0.0,
                 live: bool = False, versions: Optional[Mapping[str, int]] = None,
                 nonce_key: bytes = b"",
                 links: Sequence[tuple[str, str, Any, Any]] = ()) -> None:
        if probes < 1:
            raise ValueError(f"probes: {probes!r} (must be >= 1)")
        if not interval_s > 0:
            raise ValueError(f"interval_s: {interval_s!r} (must be > 0)")
        self.master = master
        self.master_ip = master_ip
        self.helpers = dict(helpers)
        self.pingback = pingback
        self.interval_s = float(interval_s)
        self.probes = int(probes)
        self.started_at = float(started_at)
        self.live = live
        self.versions: Mapping[str, int] = versions if versions is not None else {}
        self.nonces: dict[int, str] = {}  # outstanding this round: nonce -> helper
        self.sent_place: dict[str, tuple] = {}
        self.sent_table: dict[str, tuple[int, float]] = {}  # helper -> (version, when)
        self.reports: dict[str, dict[str, PeerMetric]] = {}
        self.inventory: dict[str, set[tuple[str, int]]] = {}
        #: segment -> helpers whose inventory holds it (``inventory`` turned round)
        self.holding: dict[tuple[str, int], set[str]] = {}
        #: goes up whenever a helper's reported links differ from its report before
        self.reports_changes = 0
        self._reporters: list[str] = []            # the reporting helpers, sorted
        self._reported: dict[str, list[str]] = {}  # helper -> its reported peers, sorted
        self._tier_lists: tuple[int, list[list[str]]] = (-1, [])
        self.round = 0
        self._deciding: Optional[int] = None  # the round whose decision is pending
        self._key = bytes(nonce_key)
        self._counter = 0
        self.paths: Optional[PhysicalPaths] = PhysicalPaths(links_graph(links)) if links else None
        self._rtt_floor: Optional[dict[str, float]] = None  # helper -> least RTT (ms)
        #: what helpers said beyond what the master can verify, by reason
        self.beyond: Counter[str] = Counter()

    @classmethod
    def from_delivery(cls, master: str, master_ip: str, helpers: Mapping[str, str],
                      delivery: Mapping[str, Any], table_version: int = 0,
                      **kw: Any) -> MasterLogic:
        """From a run's ``delivery`` settings (``tiers``: a count or bands in ms,
        ``fanout``, ``pingback_interval_s``, ``pingback_probes``).  ``table_version``: the
        last routing tables' version a master sent before it restarted (its next tables
        are numbered above it, so helpers take them)."""
        tiers = delivery["tiers"]
        pingback = Pingback(master,
                            tier_count=tiers if isinstance(tiers, int) else None,
                            bands_ms=tiers if isinstance(tiers, list) else None,
                            fanout=delivery.get("fanout"), rel=0.5, abs_ms=5.0,
                            version=table_version)
        return cls(master, master_ip, helpers, pingback=pingback,
                   interval_s=float(delivery["pingback_interval_s"]),
                   probes=int(delivery["pingback_probes"]), **kw)

    # -- driving ----------------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        """The first round's timer."""
        return [SetTimer(PINGBACK, now + FIRST_DELAY_S)]

    def handle(self, event: Event, now: float) -> list[Effect]:
        if isinstance(event, ProbeReply):
            return self.on_reply(event, now)
        if isinstance(event, Neighbours):
            return [*self.on_neighbours(event), *self.repair_table(event, now)]
        if isinstance(event, Timer) and event.name == PINGBACK:
            return self.start_round(now)
        if isinstance(event, Timer) and event.name == DECIDE:
            if event.token != self._deciding:
                return []  # a decision already taken (or of a round since replaced)
            return self.decide(now)
        return []

    # -- pingback ---------------------------------------------------------------------
    def _nonce(self) -> int:
        while True:
            self._counter += 1
            digest = hashlib.blake2b(self._counter.to_bytes(8, "big"), key=self._key[:64],
                                     digest_size=6).digest()
            nonce = int.from_bytes(digest, "big")
            if nonce not in self.nonces:
                return nonce

    def start_round(self, now: float) -> list[Effect]:
        """Time out the helpers that answered nothing last round; probe every helper."""
        out: list[Effect] = []
        if self._deciding is not None:  # the last round's decision is still due: first
            out += self.decide(now)
        # A probe is lost only when the next round starts without its answer: a reply
        # handled late (either end's event loop busy) still gives the right round trip,
        # both ends being kernel-stamped, so it counts as a sample, not a timeout.
        lost = Counter(self.nonces.values())
        for helper, n in lost.items():
            if n >= self.probes:  # not one of its probes answered
                self.pingback.record(helper, None, now)
        self.nonces.clear()
        self.round += 1
        probe_gap, pass_gap, span = stagger(len(self.helpers), self.probes, self.interval_s)
        at = 0.0
        for _ in range(self.probes):
            for helper in self.helpers:
                nonce = self._nonce()
                self.nonces[nonce] = helper
                out.append(Send(helper, "probe", {"nonce": nonce}, via="udp", cls="control",
                                delay_s=at))
                at += probe_gap
            at += pass_gap
        self._deciding = self.round
        out.append(SetTimer(DECIDE, now + span + SETTLE_S, self.round))
        out.append(SetTimer(PINGBACK, now + self.interval_s))
        return out

    def on_reply(self, reply: ProbeReply, now: float) -> list[Effect]:
        """Fold one answer into the index (when it is a sample); a ``rejected`` record when
        its hold time went beyond what the links allow."""
        if self.nonces.get(reply.nonce) != reply.sender:
            return []  # not a probe of this round, or not one sent to this helper
        del self.nonces[reply.nonce]
        measured = reply.rtt_ms + reply.held_s * 1000  # the master's own stamps alone
        if not (reply.held_s >= 0.0 and 0.0 <= measured < MAX_RTT_MS):
            return []  # an answer that cannot be right is no sample
        out: list[Effect] = []
        rtt, floor = reply.rtt_ms, self.rtt_floor_ms(reply.sender)
        if rtt < floor:  # (a hold longer than the whole round trip included)
            if reply.held_s > 0 and below(rtt, floor):
                out.append(self._beyond("held_beyond_floor", reply.sender, "probe_reply"))
            rtt = floor
        self.pingback.record(reply.sender, rtt, now)
        return out

    def rtt_floor_ms(self, helper: str) -> float:
        """The least round trip (ms) the plan's links allow between the master and
        ``helper`` (0 without links)."""
        if self.paths is None:
            return 0.0
        if self._rtt_floor is None:  # one pass from the master for every helper
            self._rtt_floor = {h: 2.0 * d for h, d in self.paths.floors_from(self.master).items()}
        return self._rtt_floor.get(helper, 0.0)

    def bounded(self, sender: str, peer: str, m: PeerMetric) -> tuple[PeerMetric, bool]:
        """``sender``'s measurement of ``peer`` held within what the plan's links allow, and
        whether it went beyond them by more than measuring can (a lie, not noise)."""
        if self.paths is None:
            return m, False
        floor = 2.0 * self.paths.floor_ms(sender, peer)
        ceiling = self.paths.ceiling_mbit(sender, peer)
        lat, bw = m.latency_ms, m.bw_mbit
        lied = below(lat, floor) or (ceiling is not None and bw > CEILING_MARGIN * ceiling)
        lat = max(lat, floor)
        bw = min(bw, ceiling) if ceiling is not None else bw
        return (m if (lat, bw) == (m.latency_ms, m.bw_mbit) else PeerMetric(lat, bw)), lied

    def _beyond(self, reason: str, sender: str, what: str) -> Record:
        """Count what ``sender`` said beyond what the master can verify."""
        self.beyond[reason] += 1
        return _rejected(sender, what, reason)

    def decide(self, now: float) -> list[Effect]:
        """New tables, if due: the ``tiers`` record, the sync file, routing messages."""
        self._deciding = None
        ready, _ = self.pingback.ready(now)
        if (not self.pingback.tables and set(ready) != set(self.helpers)
                and now < self.started_at + FIRST_TABLES_WAIT_S):
            return []  # the first tables wait (a while) for every helper to answer
        tables = self.pingback.recompute(now)
        if tables is None:
            return []
        tiers = tiers_as_lists(self.pingback.tiers)
        index = self.pingback.index.index(now)
        out: list[Effect] = [
            Record("tiers", {"version": self.pingback.version, "tiers": tiers,
                             "index_ms": {h: round(v, 3) for h, v in index.items()}}),
            WriteSync(source=self.sync_data),
        ]
        for helper, t in tables.items():
            if helper == self.master or helper not in self.helpers:
                continue
            if self.sent_place.get(helper) == t.place:
                continue  # latencies moved but this helper's place in the tree did not
            self.sent_place[helper] = t.place
            self.sent_table[helper] = (t.version, now)
            out.append(Send(helper, "routing", self.routing_body(t, tiers), path="/control",
                            cls="control"))
        return out

    def repair_table(self, report: Neighbours, now: float) -> list[Effect]:
        """The routing table again, when a helper reports holding another than the one last
        sent to it, :data:`RESEND_AFTER_S` or more ago (lost on the way, or the helper
        started afresh)."""
        helper = report.sender
        sent = self.sent_table.get(helper)
        held = report.body.get("table") if isinstance(report.body, Mapping) else None
        if sent is None or type(held) is not int or held == sent[0] \
                or now - sent[1] < RESEND_AFTER_S:
            return []
        t = self.pingback.tables.get(helper)
        if t is None:
            return []
        self.sent_table[helper] = (t.version, now)
        self.sent_place[helper] = t.place
        tiers = tiers_as_lists(self.pingback.tiers)
        return [Record("routing_resent", {"helper": helper, "held": held, "version": t.version}),
                Send(helper, "routing", self.routing_body(t, tiers), path="/control",
                     cls="control")]

    def routing_body(self, t: RoutingTable, tiers: list[list[str]]) -> dict:
        parent_ip = self.helpers.get(t.parent, self.master_ip)
        return {"version": t.version, "tier": t.tier, "parent": t.parent,
                "parent_addr": parent_ip, "children": list(t.children),
                "ancestors": list(t.ancestors), "tiers": tiers,
                "live_group": relay_group(parent_ip, 1) if self.live else ""}

    def sync_data(self) -> dict:
        """What the controller should know: tiers and mesh pairs (the lists are shared
        between calls until they change: read them, do not change them)."""
        version = self.pingback.version
        if self._tier_lists[0] != version:
            tiers = self.pingback.tiers
            self._tier_lists = (version, tiers_as_lists(tiers) if tiers else [])
        reported = self._reported
        return {"tiers": self._tier_lists[1],
                "mesh": {h: reported[h] for h in self._reporters}}

    # -- helpers' reports -------------------------------------------------------------
    def on_neighbours(self, report: Neighbours) -> list[Effect]:
        sender = report.sender
        metrics = {}
        out: list[Effect] = []
        lied = False
        try:
            reported = report.body["neighbours"]
            if len(reported) > MAX_REPORTED:
                return [_rejected(sender, "neighbours")]
            for peer, m in reported.items():
                metric = PeerMetric(latency_ms=float(m["latency_ms"]),
                                    bw_mbit=float(m["bw_mbit"]))
                if not (math.isfinite(metric.latency_ms) and metric.latency_ms >= 0
                        and math.isfinite(metric.bw_mbit) and metric.bw_mbit >= 0):
                    return [_rejected(sender, "neighbours")]
                if peer not in self.helpers or peer == sender:
                    out.append(self._beyond("unknown_peer", sender, "neighbours"))
                    continue
                metrics[peer], beyond = self.bounded(sender, peer, metric)
                lied |= beyond
        except (KeyError, TypeError, ValueError, AttributeError):
            return [_rejected(sender, "neighbours")]
        if lied:  # counted once per report
            out.append(self._beyond("report_beyond_floor", sender, "neighbours"))
        before = self.reports.get(sender)
        changed = metrics.keys() != (before or {}).keys()
        if metrics != before:
            self.reports_changes += 1
        if before is None:
            bisect.insort(self._reporters, sender)
        self.reports[sender] = metrics
        if changed or before is None:
            self._reported[sender] = sorted(metrics)
        if report.payload:  # empty: the inventory has not changed since the last report
            try:
                inv = json.loads(report.payload)
                self._hold(sender, {(str(v), int(i)) for v, i, ver in inv
                                    if ver >= self.versions.get(v, 1)})
            except (ValueError, TypeError):
                out.append(_rejected(sender, "inventory"))
        if changed:
            out.append(Record("mesh_report", {"helper": sender, "neighbours": sorted(metrics)}))
            out.append(WriteSync(source=self.sync_data))
        return out


    def _hold(self, sender: str, keys: set[tuple[str, int]]) -> None:
        """``sender``'s inventory is now ``keys``: ``inventory`` and ``holding`` too."""
        old = self.inventory.get(sender, set())
        for key in old - keys:
            at = self.holding[key]
            at.discard(sender)
            if not at:
                del self.holding[key]
        for key in keys - old:
            self.holding.setdefault(key, set()).add(sender)
        self.inventory[sender] = keys


def below(measured: float, floor: float) -> bool:
    """Whether ``measured`` is under ``floor`` by more than emulation and timing err."""
    return measured < floor - max(FLOOR_MARGIN_MS, FLOOR_MARGIN * floor)


def _rejected(sender: str, what: str, reason: str = "malformed") -> Record:
    return Record("rejected", {"reason": reason, "sender": sender[:64], "what": what[:64]})
