"""Proactive L2 forwarding: install core's rules on every switch as it connects.

All decisions come from :func:`testbed.core.l2.l2_rules`; this app only reads the
topology file named by ``MESHCAST_TOPOLOGY``, and on each switch's features reply
replaces that switch's flows carrying the app's cookie with the computed ones.
A switch whose dpid the topology does not know is logged and left alone.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

try:
    from controllers import compat
except ImportError:  # loaded by path: the manager has put controllers/ on sys.path
    import compat  # type: ignore[no-redef]  # and compat adds the repository root

from controllers.ofadapter import replace_messages
from testbed.core.l2 import COOKIE, NetView, TopologyError, l2_rules
from testbed.core.rules import Rule

TOPOLOGY_ENV = "MESHCAST_TOPOLOGY"


def load_rules(path: str) -> dict[int, list[Rule]]:
    """dpid -> rules, computed from the topology file at ``path``."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        view = NetView.from_json(text)
    except TopologyError as exc:
        raise TopologyError(f"{path}: {exc}") from None
    by_dpid: dict[int, list[Rule]] = defaultdict(list)
    for rule in l2_rules(view):
        by_dpid[rule.dpid].append(rule)
    return dict(by_dpid)


def _dpid(datapath) -> str:
    """The datapath id as dump-flows and ovs-vsctl print it ("?" before it is known)."""
    return "?" if datapath.id is None else f"{datapath.id:016x}"


class L2Proactive(compat.BaseApp):
    """Installs unicast, flood and table-miss rules; keeps no per-packet state."""

    OFP_VERSIONS = [compat.ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.topology = os.environ.get(TOPOLOGY_ENV, "")
        try:
            if not self.topology:
                raise TopologyError(f"environment variable {TOPOLOGY_ENV} is not set")
            self.rules = load_rules(self.topology)
        except TopologyError as exc:
            self.logger.error("l2: %s", exc)
            sys.exit(2)
        self.pending: dict[object, tuple[int, int, int]] = {}  # datapath -> xid, dpid, rules
        self.logger.info("l2: %s: rules for %d switches", self.topology, len(self.rules))

    @compat.set_ev_cls(compat.ofp_event.EventOFPSwitchFeatures, compat.CONFIG_DISPATCHER)
    def switch_features(self, ev) -> None:
        datapath, dpid = ev.msg.datapath, ev.msg.datapath_id
        rules = self.rules.get(dpid)
        if rules is None:
            self.logger.warning("l2: dpid %016x is not in %s: switch left as it is",
                                dpid, self.topology)
            return
        messages = replace_messages(datapath, rules, COOKIE)
        for msg in messages:
            datapath.send_msg(msg)
        self.pending[datapath] = (messages[-1].xid, dpid, len(rules))
        self.logger.info("l2: dpid %016x: sent %d rules", dpid, len(rules))

    @compat.set_ev_cls(compat.ofp_event.EventOFPBarrierReply,
                       [compat.CONFIG_DISPATCHER, compat.MAIN_DISPATCHER])
    def barrier_reply(self, ev) -> None:
        xid, dpid, count = self.pending.get(ev.msg.datapath, (None, 0, 0))
        if ev.msg.xid == xid:
            del self.pending[ev.msg.datapath]
            self.logger.info("l2: dpid %016x: %d rules installed", dpid, count)

    @compat.set_ev_cls(compat.ofp_event.EventOFPErrorMsg,
                       [compat.CONFIG_DISPATCHER, compat.MAIN_DISPATCHER])
    def error_msg(self, ev) -> None:
        msg = ev.msg
        self.logger.error("l2: dpid %s: OpenFlow error type=%d code=%d xid=%d",
                          _dpid(msg.datapath), msg.type, msg.code, msg.xid)
