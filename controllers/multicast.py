"""IP multicast trees from IGMP snooping: the shim over :mod:`testbed.core.multicast`.

Runs beside the L2 app (``testbed controller l2 multicast``).  Where a tree link has a
usable detour, the parent's group is a fast-failover group, so the switch itself moves
to the detour when the link goes down (``MESHCAST_FAST_FAILOVER=0`` turns this off);
every other tree link is re-routed by the controller.  On each switch it installs
a rule that sends IGMP to the controller and a guard that drops IPv4 multicast no tree
carries; IGMP reports and leaves from hosts update a :class:`MembershipTable`, and every
change recomputes the intended flows and groups (trees rooted at the master's switch)
and sends only the difference, switch by switch, with barriers between kinds of step.
All decisions come from the core; this file only translates.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

try:
    from controllers import compat
except ImportError:  # loaded by path: the manager has put controllers/ on sys.path
    import compat  # type: ignore[no-redef]  # and compat adds the repository root

try:
    from os_ken.lib.packet import ethernet as eth_pkt
    from os_ken.lib.packet import igmp as igmp_pkt
    from os_ken.lib.packet import ipv4 as ipv4_pkt
    from os_ken.lib.packet import packet as packet_lib
except ImportError:  # under Ryu
    from ryu.lib.packet import ethernet as eth_pkt  # type: ignore[no-redef]
    from ryu.lib.packet import igmp as igmp_pkt  # type: ignore[no-redef]
    from ryu.lib.packet import ipv4 as ipv4_pkt  # type: ignore[no-redef]
    from ryu.lib.packet import packet as packet_lib  # type: ignore[no-redef]

from controllers.ofadapter import (
    delete_cookie,
    delete_groups,
    flow_mod,
    group_mod,
    port_up,
    punt_flow,
)
from testbed.core import multicast as mc
from testbed.core.l2 import NetView, TopologyError
from testbed.core.rules import app_cookie
from testbed.core.spec import MASTER

TOPOLOGY_ENV = "MESHCAST_TOPOLOGY"
PRIORITY_IGMP = 400  # above every tree rule: reports always reach the controller
PRIORITY_MCAST_DROP = 280  # below the trees' rules and guards, above L2 flooding
CONTROL_COOKIE = app_cookie("mc-ctl")  # the IGMP punt and the multicast guard
QUERIER_IP = "10.255.255.254"  # in the hosts' subnet, never a host's address
MEMBERS_FILE = "multicast-members.json"  # beside topology.json: survives a restart
FAST_FAILOVER_ENV = "MESHCAST_FAST_FAILOVER"  # "0" turns fast-failover groups off


class MulticastTrees(compat.BaseApp):
    """Keeps each switch's multicast flows and groups equal to the core's intended state."""

    OFP_VERSIONS = [compat.ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        path = os.environ.get(TOPOLOGY_ENV, "")
        try:
            if not path:
                raise TopologyError(f"environment variable {TOPOLOGY_ENV} is not set")
            self.view = NetView.from_json(Path(path).read_text())
        except (OSError, TopologyError) as exc:
            self.logger.error("multicast: %s: %s", path, exc)
            sys.exit(2)
        masters = [h for h, v in self.view.hosts.items() if v.role == MASTER]
        if not masters:
            self.logger.error("multicast: %s: no host has the role master", path)
            sys.exit(2)
        self.master = masters[0]
        self.by_ip = {v.ip: h for h, v in self.view.hosts.items()}
        self.members = mc.MembershipTable()
        self.members_path = Path(path).with_name(MEMBERS_FILE)
        self.datapaths: dict[int, object] = {}
        self.installed: dict[int, tuple[list, list]] = defaultdict(lambda: ([], []))
        self.intended: tuple[list, list] = ([], [])
        self.down: set[frozenset[str]] = set()  # switch links reported down
        self.fast_failover = os.environ.get(FAST_FAILOVER_ENV, "1") != "0"
        self.tiers: dict[str, int] | None = None  # the master's tiers, when published
        self.pending_tiers: dict[str, int] | None = None  # handed over by the API's thread
        self.trees: dict = {}  # group -> tree, for the northbound API
        self._load_members()
        compat.hub.spawn(self._tier_loop)
        self.logger.info("multicast: trees rooted at %s", self.master)

    def set_tiers(self, tiers: dict[str, int]) -> None:
        """New tiers from the master (any thread): trees follow them within 0.1 s."""
        self.pending_tiers = dict(tiers)

    def _tier_loop(self) -> None:
        while True:
            compat.hub.sleep(0.1)
            tiers, self.pending_tiers = self.pending_tiers, None
            if tiers is not None:
                self.tiers = tiers
                self.logger.info("multicast: tiers %s", tiers)
                self._recompute()

    def snapshot(self):
        """Memberships and trees, for ``GET /multicast``."""
        return ({g: sorted(m) for g, m in self.members.snapshot().items() if m},
                dict(self.trees))

    # -- switches -------------------------------------------------------------------
    @compat.set_ev_cls(compat.ofp_event.EventOFPSwitchFeatures, compat.CONFIG_DISPATCHER)
    def switch_features(self, ev) -> None:
        dp, dpid = ev.msg.datapath, ev.msg.datapath_id
        if self.view.switch_by_dpid(dpid) is None:
            self.logger.warning("multicast: dpid %016x unknown: left as it is", dpid)
            return
        self.datapaths[dpid] = dp
        parser = dp.ofproto_parser
        # start from nothing of ours: our flows, then every group (this app owns them)
        for msg in (delete_cookie(dp, mc.COOKIE), delete_cookie(dp, CONTROL_COOKIE),
                    parser.OFPBarrierRequest(dp), delete_groups(dp),
                    parser.OFPBarrierRequest(dp),
                    punt_flow(dp, CONTROL_COOKIE, PRIORITY_IGMP, eth_type=0x0800, ip_proto=2),
                    parser.OFPFlowMod(  # the guard: multicast no tree carries is dropped
                        dp, cookie=CONTROL_COOKIE, priority=PRIORITY_MCAST_DROP,
                        match=parser.OFPMatch(eth_type=0x0800,
                                              ipv4_dst=("224.0.0.0", "240.0.0.0")),
                        instructions=[])):
            dp.send_msg(msg)
        rules, groups = self._intended_for(dpid)
        self._send(dpid, mc.tree_diff(([], []), (rules, groups)))
        self.installed[dpid] = (rules, groups)
        self._query(dp, switch_name=self.view.switch_by_dpid(dpid).name)
        self.logger.info("multicast: dpid %016x connected: %d flows, %d groups", dpid,
                         len(rules), len(groups))

    def _query(self, dp, switch_name: str) -> None:
        """An IGMPv3 general query out of every host port: members report again."""
        parser, ofp = dp.ofproto_parser, dp.ofproto
        pkt = packet_lib.Packet()
        pkt.add_protocol(eth_pkt.ethernet(dst="01:00:5e:00:00:01", src="02:00:00:00:00:fe",
                                          ethertype=0x0800))
        pkt.add_protocol(ipv4_pkt.ipv4(dst="224.0.0.1", src=QUERIER_IP, proto=2, ttl=1))
        pkt.add_protocol(igmp_pkt.igmpv3_query(maxresp=10, address="0.0.0.0"))
        pkt.serialize()
        ports = sorted(self.view.host_ports(switch_name))
        if ports:
            dp.send_msg(parser.OFPPacketOut(
                dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                actions=[parser.OFPActionOutput(p) for p in ports], data=pkt.data))

    def _load_members(self) -> None:
        """Memberships a previous run of this controller saved: trees survive a restart."""
        try:
            saved = json.loads(self.members_path.read_text())
        except (OSError, ValueError):
            return
        now = time.monotonic()
        for group, hosts in saved.items():
            for host in hosts:
                if host in self.view.hosts:
                    self.members.join(mc.group_address(group), host, now)
        self._recompute()

    def _save_members(self) -> None:
        snap = {g: sorted(m) for g, m in self.members.snapshot().items() if m}
        tmp = self.members_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snap, indent=1))
        tmp.replace(self.members_path)

    # -- IGMP -----------------------------------------------------------------------
    @compat.set_ev_cls(compat.ofp_event.EventOFPPacketIn, compat.MAIN_DISPATCHER)
    def packet_in(self, ev) -> None:
        try:
            pkt = packet_lib.Packet(ev.msg.data)
        except Exception as exc:  # a malformed frame must not stop the controller
            self.logger.warning("multicast: undecodable packet-in: %s", exc)
            return
        ip = pkt.get_protocol(ipv4_pkt.ipv4)
        if ip is None or ip.proto != 2:
            return
        host = self.by_ip.get(ip.src)
        if host is None:
            self.logger.warning("multicast: IGMP from unknown address %s ignored", ip.src)
            return
        now = time.monotonic()
        changed = False
        try:
            for kind, group in self._effects(pkt):
                group = mc.group_address(group)
                if kind == "join":
                    changed |= self.members.join(group, host, now)
                elif kind == "leave":
                    changed |= self.members.leave(group, host, now)
        except (mc.MulticastError, ValueError) as exc:
            self.logger.warning("multicast: IGMP from %s rejected: %s", host, exc)
        if changed:
            self._recompute()
            self._save_members()

    @staticmethod
    def _effects(pkt) -> list[tuple[str, str]]:
        """(join|leave, group) for every record of an IGMP v2 or v3 message."""
        out: list[tuple[str, str]] = []
        v3 = pkt.get_protocol(igmp_pkt.igmpv3_report)
        if v3 is not None:
            for rec in v3.records or []:
                effect = mc.report_effect(rec.type_, len(rec.srcs or []))
                if effect:
                    out.append((effect, rec.address))
            return out
        v2 = pkt.get_protocol(igmp_pkt.igmp)
        if v2 is not None:
            if v2.msgtype in (mc.IGMPV1_REPORT, mc.IGMPV2_REPORT):
                out.append(("join", v2.address))
            elif v2.msgtype == mc.IGMPV2_LEAVE:
                out.append(("leave", v2.address))
        return out

    # -- link failures ----------------------------------------------------------------
    @compat.set_ev_cls(compat.ofp_event.EventOFPPortStatus, compat.MAIN_DISPATCHER)
    def port_status(self, ev) -> None:
        """A tree link that goes down (or comes back) re-routes every tree at once."""
        msg = ev.msg
        switch = self.view.switch_by_dpid(msg.datapath.id)
        if switch is None:
            return
        link = self.view.link_at(switch.name, msg.desc.port_no)
        if link is None:
            return
        down = not port_up(msg)
        key = frozenset((link.a, link.b))
        if down == (key in self.down):
            return
        if down:
            self.down.add(key)
        else:
            self.down.discard(key)
        self.logger.info("multicast: link %s-%s %s", link.a, link.b, "down" if down else "up")
        self._recompute()

    def _graph(self):
        """The switch graph without the links reported down."""
        g = self.view.graph()
        for key in self.down:
            a, b = sorted(key)
            if g.has_edge(a, b):
                g.remove_edge(a, b)
        return g

    # -- state ----------------------------------------------------------------------
    def _recompute(self) -> None:
        memberships = {g: sorted(m) for g, m in self.members.snapshot().items() if m}
        graph = self._graph()
        self.intended = mc.multicast_state(self.view, self.master, memberships,
                                           tiers=self.tiers, fast_failover=self.fast_failover,
                                           g=graph)
        self.trees = {grp: mc.multicast_tree(self.view, mc.group_root(self.view, grp, self.master),
                                             m, self.tiers, g=graph)
                      for grp, m in memberships.items()}
        for dpid in list(self.datapaths):
            new = self._intended_for(dpid)
            diff = mc.tree_diff(self.installed[dpid], new)
            if diff.steps():
                self._send(dpid, diff)
            self.installed[dpid] = new
        self.logger.info("multicast: members %s", {g: list(m) for g, m in memberships.items()})

    def _intended_for(self, dpid: int) -> tuple[list, list]:
        """The intended (flows, groups) of one switch."""
        return ([r for r in self.intended[0] if r.dpid == dpid],
                [g for g in self.intended[1] if g.dpid == dpid])

    def _send(self, dpid: int, diff) -> None:
        dp = self.datapaths.get(dpid)
        if dp is None:
            return
        last = None
        for kind, command, value in diff.steps():
            if last is not None and (kind, command) != last:
                dp.send_msg(dp.ofproto_parser.OFPBarrierRequest(dp))
            last = (kind, command)
            if kind == "group":
                dp.send_msg(group_mod(dp, value, command))
            else:
                dp.send_msg(flow_mod(dp, value, delete=command == "delete"))
        if last is not None:
            dp.send_msg(dp.ofproto_parser.OFPBarrierRequest(dp))

    @compat.set_ev_cls(compat.ofp_event.EventOFPErrorMsg,
                       [compat.CONFIG_DISPATCHER, compat.MAIN_DISPATCHER])
    def error_msg(self, ev) -> None:
        msg = ev.msg
        self.logger.error("multicast: OpenFlow error type=%d code=%d xid=%d", msg.type,
                          msg.code, msg.xid)
