"""Mesh paths on measured latency: LLDP and echo probes in, Dijkstra paths out.

Runs beside ``l2`` (``testbed controller l2 multicast mesh``) and serves the northbound
API (it extends :class:`controllers.meshcast_api.MeshcastApi`).  Every ``PROBE_S``
seconds it sends an echo request to every switch and an LLDP frame out of every
switch-to-switch port; the core's :class:`~testbed.core.linkmetrics.LinkMonitor` turns
the round trips and arrivals into per-link latency, and a
:class:`~testbed.core.routing.PathKeeper` (with hysteresis) moves each mesh pair's path
when a better one appears or the current one breaks.  The pairs' flows are installed as
differences.  Mesh pairs come from the API (``PUT /mesh/neighbours/<helper>``) or from
``MESHCAST_MESH_PAIRS`` (``h1:h2,h3:h4``).
"""

from __future__ import annotations

import os
import struct
import time

try:
    from controllers import compat
except ImportError:  # loaded by path: the manager has put controllers/ on sys.path
    import compat  # type: ignore[no-redef]  # and compat adds the repository root

try:
    from os_ken.lib.packet import ethernet as eth_pkt
    from os_ken.lib.packet import lldp as lldp_pkt
    from os_ken.lib.packet import packet as packet_lib
except ImportError:  # under Ryu
    from ryu.lib.packet import ethernet as eth_pkt  # type: ignore[no-redef]
    from ryu.lib.packet import lldp as lldp_pkt  # type: ignore[no-redef]
    from ryu.lib.packet import packet as packet_lib  # type: ignore[no-redef]

from controllers.meshcast_api import MeshcastApi
from controllers.ofadapter import delete_cookie, flow_mod, port_up, punt_flow
from testbed.core.linkmetrics import LinkMonitor
from testbed.core.northbound import MeshChange, TierChange, multicast_snapshot
from testbed.core.routing import COOKIE, mesh_rules
from testbed.core.rules import app_cookie, diff

PROBE_S = 0.25
STATS_EVERY = 4  # probe rounds between port-statistics requests (1 s)
PRIORITY_LLDP = 500
CONTROL_COOKIE = app_cookie("mc-lldp")
PAIRS_ENV = "MESHCAST_MESH_PAIRS"
ETH_LLDP = 0x88CC
LLDP_MAC = "01:80:c2:00:00:0e"


class MeshPaths(MeshcastApi):
    """Measures links, keeps mesh paths with hysteresis, installs their flows."""

    OFP_VERSIONS = [compat.ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.view = self.state.view
        self.monitor = LinkMonitor.from_view(self.view)
        self.graph = self.monitor.graph.graph  # the API shows measured metrics
        self.lock = kwargs["wsgi"].lock
        self.datapaths: dict[int, object] = {}
        self.names = {s.dpid: s.name for s in self.view.switches.values()}
        self.link_ports = {(x.a, x.a_port) for x in self.view.links} | {
            (x.b, x.b_port) for x in self.view.links}
        self.sent: dict[tuple[str, int], float] = {}
        self.installed: dict[int, list] = {}
        self.logged: dict[tuple, object] = {}  # the path last logged per pair
        pairs = [tuple(p.split(":")) for p in os.environ.get(PAIRS_ENV, "").split(",") if p]
        if pairs:
            self.keeper.set_pairs(pairs)
        self.dirty = False  # the API changed the pairs: install from the probe loop
        self.state.provide(multicast=self._multicast_view)
        compat.hub.spawn(self._probe_loop)

    # -- switches ---------------------------------------------------------------------
    @compat.set_ev_cls(compat.ofp_event.EventOFPSwitchFeatures, compat.CONFIG_DISPATCHER)
    def switch_features(self, ev) -> None:
        dp, dpid = ev.msg.datapath, ev.msg.datapath_id
        if dpid not in self.names:
            return
        parser = dp.ofproto_parser
        for msg in (delete_cookie(dp, COOKIE), delete_cookie(dp, CONTROL_COOKIE),
                    parser.OFPBarrierRequest(dp)):
            dp.send_msg(msg)
        dp.send_msg(punt_flow(dp, CONTROL_COOKIE, PRIORITY_LLDP, eth_type=ETH_LLDP))
        self.installed[dpid] = []
        self.datapaths[dpid] = dp
        with self.lock:
            self._install()

    # -- probes -----------------------------------------------------------------------
    def _probe_loop(self) -> None:
        rounds = 0
        while True:
            compat.hub.sleep(PROBE_S)
            rounds += 1
            try:
                self._probe(stats=rounds % STATS_EVERY == 0)
                with self.lock:
                    moved = self.keeper.update(time.monotonic(), self.graph)
                    if moved or self.dirty:
                        self.dirty = False
                        self._install()
            except Exception:  # a probe round must never end the loop
                self.logger.exception("mesh: probe round failed")

    def _probe(self, stats: bool = False) -> None:
        for dpid, dp in list(self.datapaths.items()):
            parser, ofp = dp.ofproto_parser, dp.ofproto
            name = self.names[dpid]
            dp.send_msg(parser.OFPEchoRequest(dp, data=struct.pack("!d", time.monotonic())))
            if stats:
                dp.send_msg(parser.OFPPortStatsRequest(dp, 0, ofp.OFPP_ANY))
            for sw, port in self.link_ports:
                if sw != name:
                    continue
                pkt = packet_lib.Packet()
                pkt.add_protocol(eth_pkt.ethernet(dst=LLDP_MAC, src="02:00:00:00:00:fd",
                                                  ethertype=ETH_LLDP))
                pkt.add_protocol(lldp_pkt.lldp([
                    lldp_pkt.ChassisID(subtype=lldp_pkt.ChassisID.SUB_LOCALLY_ASSIGNED,
                                       chassis_id=f"dpid:{dpid:016x}".encode()),
                    lldp_pkt.PortID(subtype=lldp_pkt.PortID.SUB_PORT_COMPONENT,
                                    port_id=str(port).encode()),
                    lldp_pkt.TTL(ttl=2), lldp_pkt.End()]))
                pkt.serialize()
                self.sent[(name, port)] = time.monotonic()
                dp.send_msg(parser.OFPPacketOut(
                    dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                    actions=[parser.OFPActionOutput(port)], data=pkt.data))

    @compat.set_ev_cls(compat.ofp_event.EventOFPEchoReply, compat.MAIN_DISPATCHER)
    def echo_reply(self, ev) -> None:
        now = time.monotonic()
        try:
            (t_send,) = struct.unpack("!d", ev.msg.data[:8])
        except (struct.error, TypeError):
            return
        name = self.names.get(ev.msg.datapath.id)
        if name is not None:
            with self.lock:
                self.monitor.echo(name, t_send, now)

    @compat.set_ev_cls(compat.ofp_event.EventOFPPacketIn, compat.MAIN_DISPATCHER)
    def packet_in(self, ev) -> None:
        now = time.monotonic()
        msg = ev.msg
        dst = self.names.get(msg.datapath.id)
        if dst is None or len(msg.data) < 14 or msg.data[12:14] != b"\x88\xcc":
            return
        try:
            probe = packet_lib.Packet(msg.data).get_protocol(lldp_pkt.lldp)
            chassis = probe.tlvs[0].chassis_id.decode()
            src = self.names[int(chassis.split(":", 1)[1], 16)]
            src_port = int(probe.tlvs[1].port_id.decode())
        except Exception:  # not one of ours, or malformed: ignore, keep serving
            return
        t_send = self.sent.get((src, src_port))
        if t_send is None:
            return
        with self.lock:
            self.monitor.lldp(src, src_port, dst, msg.match["in_port"], t_send, now)

    @compat.set_ev_cls(compat.ofp_event.EventOFPPortStatsReply, compat.MAIN_DISPATCHER)
    def port_stats_reply(self, ev) -> None:
        """Per-port rates: utilisation and available bandwidth of every link."""
        now = time.monotonic()
        name = self.names.get(ev.msg.datapath.id)
        if name is None:
            return
        with self.lock:
            for st in ev.msg.body:
                if st.port_no >= ev.msg.datapath.ofproto.OFPP_MAX:
                    continue  # the bridge's own port
                self.monitor.port_stats(now, name, st.port_no, st.tx_bytes, st.rx_bytes,
                                        st.duration_sec + st.duration_nsec / 1e9)

    @compat.set_ev_cls(compat.ofp_event.EventOFPPortStatus, compat.MAIN_DISPATCHER)
    def port_status(self, ev) -> None:
        """A port going down breaks the links on it: paths over them move at once."""
        msg = ev.msg
        name = self.names.get(msg.datapath.id)
        if name is None:
            return
        with self.lock:
            changed = self.monitor.port_status(name, msg.desc.port_no, port_up(msg))
            if changed and self.keeper.update(time.monotonic(), self.graph):
                self._install()

    # -- paths and flows --------------------------------------------------------------
    def changed(self, change) -> None:
        """An accepted API change (under the API lock, in the API's thread): the probe
        loop installs the new pairs' flows within one probe period."""
        super().changed(change)
        if isinstance(change, MeshChange):
            self.dirty = True
        elif isinstance(change, TierChange):
            trees = self._multicast_app()
            if trees is not None:
                trees.set_tiers(dict(change.tiers))

    @staticmethod
    def _multicast_app():
        """The multicast app of this controller process, if it runs."""
        return compat.app_manager.lookup_service_brick("MulticastTrees")

    def _multicast_view(self):
        trees = self._multicast_app()
        if trees is None:
            return multicast_snapshot({}, {})
        memberships, built = trees.snapshot()
        return multicast_snapshot(memberships, built)

    def _install(self) -> None:
        """Make every switch's mesh flows equal to the keeper's current paths."""
        paths = self.keeper.paths
        rules = mesh_rules(self.view, self.keeper.pairs, paths)
        for dpid, dp in self.datapaths.items():
            want = [r for r in rules if r.dpid == dpid]
            add, delete = diff(self.installed.get(dpid, []), want)
            for rule in delete:
                dp.send_msg(flow_mod(dp, rule, delete=True))
            for rule in add:
                dp.send_msg(flow_mod(dp, rule))
            self.installed[dpid] = want
        for pair, path in sorted(paths.items()):
            if self.logged.get(pair) != path:  # a switch joining re-installs, not a move
                self.logged[pair] = path
                self.logger.info("mesh: path %s-%s: %s", pair[0], pair[1], " ".join(path))
