"""Rule -> OFPFlowMod, checked by serialising to OpenFlow bytes and parsing them back."""

from __future__ import annotations

import networkx as nx
import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controllers.ofadapter import ALL_BITS, delete_cookie, flow_mod, replace_messages
from testbed.core.fakenet import topology_dict
from testbed.core.l2 import COOKIE, NetView, l2_rules
from testbed.core.rules import ETH_TYPE_IPV4, Match, Output, Rule


class FakeDatapath:
    """What the adapter needs of a datapath: its OpenFlow modules and id."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid: int):
        self.id = dpid


def wire_round_trip(msg, datapath: FakeDatapath):
    msg.xid = 1
    msg.serialize()
    return parser.OFPFlowMod.parser(datapath, msg.version, msg.msg_type, msg.msg_len,
                                    msg.xid, bytes(msg.buf))


def back_to_rule(fm, dpid: int) -> Rule:
    fields = {}
    for name, value in fm.match.items():
        if isinstance(value, tuple):
            fields[name], fields[f"{name}_mask"] = value
        else:
            fields[name] = value
    outputs = tuple(Output(a.port) for inst in fm.instructions for a in inst.actions)
    return Rule(dpid, fm.table_id, fm.priority, Match(**fields), outputs, fm.cookie)


def test_every_l2_rule_survives_the_wire() -> None:
    view = NetView.from_dict(topology_dict(nx.cycle_graph(3), 2))
    for rule in l2_rules(view):
        dp = FakeDatapath(rule.dpid)
        fm = wire_round_trip(flow_mod(dp, rule), dp)
        assert fm.command == ofp.OFPFC_ADD
        assert back_to_rule(fm, rule.dpid) == rule


def test_ip_fields_and_strict_delete() -> None:
    rule = Rule(1, 2, 300, Match(eth_type=ETH_TYPE_IPV4, ip_proto=17, ipv4_dst="239.1.1.1",
                                 udp_dst=5000), (Output(4),), 9)
    dp = FakeDatapath(1)
    assert back_to_rule(wire_round_trip(flow_mod(dp, rule), dp), 1) == rule
    fm = wire_round_trip(flow_mod(dp, rule, delete=True), dp)
    assert (fm.command, fm.cookie, fm.cookie_mask, fm.priority) == (
        ofp.OFPFC_DELETE_STRICT, 9, ALL_BITS, 300)
    assert fm.out_port == ofp.OFPP_ANY and not fm.instructions


def test_replace_is_delete_by_cookie_barrier_adds_barrier() -> None:
    dp = FakeDatapath(5)
    rules = [Rule(5, 0, 0, Match(), (), COOKIE)]
    msgs = replace_messages(dp, rules, COOKIE)
    assert [type(m).__name__ for m in msgs] == [
        "OFPFlowMod", "OFPBarrierRequest", "OFPFlowMod", "OFPBarrierRequest"]
    delete = wire_round_trip(delete_cookie(dp, COOKIE), dp)
    assert (delete.command, delete.table_id, delete.cookie, delete.cookie_mask) == (
        ofp.OFPFC_DELETE, ofp.OFPTT_ALL, COOKIE, ALL_BITS)
    assert list(delete.match.items()) == []


def test_rule_for_another_switch_is_refused() -> None:
    with pytest.raises(ValueError, match="sent to dpid"):
        flow_mod(FakeDatapath(2), Rule(1, 0, 0, Match(), (), 0))
