"""Groups on the wire and back: Group -> OFPGroupMod, and dump-groups text -> Group."""

from __future__ import annotations

import struct

import networkx as nx
import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controllers.ofadapter import delete_groups, flow_mod, group_mod
from testbed.core.fakenet import topology_dict
from testbed.core.l2 import NetView
from testbed.core.multicast import multicast_state
from testbed.core.ofdump import OfDumpError, parse_dump_flows, parse_dump_groups
from testbed.core.rules import (
    ETH_TYPE_IPV4,
    Bucket,
    Group,
    GroupAction,
    Match,
    Output,
    Rule,
    sort_groups,
)


class FakeDatapath:
    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid: int):
        self.id = dpid


def wire(msg) -> bytes:
    msg.xid = 1
    msg.serialize()
    return bytes(msg.buf)


def group_from_wire(msg) -> tuple[int, Group]:
    """Serialise an OFPGroupMod and decode its bytes back into (command, Group)."""
    buf = wire(msg)
    command, type_, group_id = struct.unpack_from(ofp.OFP_GROUP_MOD_PACK_STR, buf,
                                                  ofp.OFP_HEADER_SIZE)
    buckets, offset = [], ofp.OFP_GROUP_MOD_SIZE
    while offset < len(buf):
        bucket = parser.OFPBucket.parser(buf, offset)
        offset += bucket.len
        actions = tuple(Output(a.port) if isinstance(a, parser.OFPActionOutput)
                        else GroupAction(a.group_id) for a in bucket.actions)
        assert bucket.watch_group == ofp.OFPG_ANY
        watch = None if bucket.watch_port == ofp.OFPP_ANY else bucket.watch_port
        buckets.append(Bucket(actions, watch))
    kind = {ofp.OFPGT_ALL: "all", ofp.OFPGT_FF: "ff"}[type_]
    return command, Group(msg.datapath.id, group_id, kind, tuple(buckets))


def multicast_groups() -> list[Group]:
    view = NetView.from_dict(topology_dict(nx.grid_2d_graph(3, 3), 1))
    _, groups = multicast_state(view, "h1", {"239.1.1.1": ["h3", "h7", "h9"]},
                                fast_failover=True)
    assert any(g.type == "ff" for g in groups)
    return groups


def test_every_multicast_group_survives_the_wire() -> None:
    for group in multicast_groups():
        dp = FakeDatapath(group.dpid)
        for command, code in (("add", ofp.OFPGC_ADD), ("modify", ofp.OFPGC_MODIFY)):
            assert group_from_wire(group_mod(dp, group, command)) == (code, group)
        assert group_from_wire(group_mod(dp, group, "delete")) == (
            ofp.OFPGC_DELETE, Group(group.dpid, group.group_id, group.type, ()))


def test_delete_every_group_and_refusals() -> None:
    dp = FakeDatapath(3)
    buf = wire(delete_groups(dp))
    assert struct.unpack_from(ofp.OFP_GROUP_MOD_PACK_STR, buf, ofp.OFP_HEADER_SIZE) == (
        ofp.OFPGC_DELETE, ofp.OFPGT_ALL, ofp.OFPG_ALL)
    assert len(buf) == ofp.OFP_GROUP_MOD_SIZE
    with pytest.raises(ValueError, match="group command 'replace'"):
        group_mod(dp, Group(3, 1, "all", ()), "replace")
    with pytest.raises(ValueError, match="group for dpid 0x1 sent to dpid 0x3"):
        group_mod(dp, Group(1, 1, "all", ()))


def test_flow_to_a_group_survives_the_wire() -> None:
    rule = Rule(1, 0, 300, Match(in_port=1, eth_type=ETH_TYPE_IPV4, ipv4_dst="239.1.1.1"),
                (GroupAction(0xF010101),), 5)
    dp = FakeDatapath(1)
    msg = flow_mod(dp, rule)
    buf = wire(msg)
    fm = parser.OFPFlowMod.parser(dp, msg.version, msg.msg_type, msg.msg_len, msg.xid, buf)
    (action,) = [a for inst in fm.instructions for a in inst.actions]
    assert isinstance(action, parser.OFPActionGroup) and action.group_id == 0xF010101


# ovs-ofctl -O OpenFlow13 --no-names dump-groups (OVS 3.1.0)
SAMPLE = """\
OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):
 group_id=256,type=all,bucket=actions=output:2,bucket=actions=output:3,bucket=actions=group:268435712
 group_id=268435712,type=ff,bucket=watch_port:3,actions=output:3,bucket=watch_port:4,actions=output:4
 group_id=259,type=all,bucket=actions=drop
 group_id=258,type=all
"""  # noqa: E501

EXPECTED = [
    Group(7, 256, "all", (Bucket((Output(2),)), Bucket((Output(3),)),
                          Bucket((GroupAction(268435712),)))),
    Group(7, 258, "all", ()),
    Group(7, 259, "all", (Bucket(()),)),
    Group(7, 268435712, "ff", (Bucket((Output(3),), 3), Bucket((Output(4),), 4))),
]


def test_dump_groups_sample() -> None:
    assert parse_dump_groups(SAMPLE, 7) == EXPECTED
    assert parse_dump_groups("OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):\n", 7) == []
    # OpenFlow 1.5 output numbers buckets; the numbers are not part of the state
    of15 = " group_id=258,type=all,bucket=bucket_id:0,actions=output:2"
    assert parse_dump_groups(of15, 7) == [Group(7, 258, "all", (Bucket((Output(2),)),))]


def test_dump_flows_with_a_group_action() -> None:
    text = (" cookie=0x5, duration=0.024s, table=0, n_packets=0, n_bytes=0, "
            "priority=300,ip,in_port=1,nw_dst=239.1.1.1 actions=group:256")
    assert parse_dump_flows(text, 7) == [Rule(7, 0, 300, Match(
        in_port=1, eth_type=ETH_TYPE_IPV4, ipv4_dst="239.1.1.1"), (GroupAction(256),), 5)]


def test_round_trip_of_every_multicast_group() -> None:
    groups = multicast_groups()
    for dpid in {g.dpid for g in groups}:
        mine = [g for g in groups if g.dpid == dpid]
        text = "\n".join(" " + str(g).split(" ", 1)[1] for g in reversed(mine))
        assert parse_dump_groups(text, dpid) == sort_groups(mine)


@pytest.mark.parametrize(
    "line, message",
    [
        (" group_id=1,type=select,bucket=weight:5,actions=output:3", "type=select"),
        (" group_id=1,type=ff,bucket=watch_port:3,watch_group:5,actions=output:3",
         "bucket field 'watch_group:5'"),
        (" group_id=1,type=all,bucket=weight:5,actions=output:3", "bucket field 'weight:5'"),
        (" group_id=1,type=all,bucket=actions=output:\"s1-eth2\"", "--no-names"),
        (" group_id=1,type=all,bucket=output:2", "has no actions="),
        (" group_id=1,bucket=actions=output:2", "needs group_id= and type="),
        (" type=all,group_id=x", "group_id=x is not a number"),
        (" group_id=1,type=all,selection_method=hash", "'selection_method=hash'"),
        (" group_id=1,type=ff,bucket=actions=output:2", "needs watch_port"),
        (" group_id=1,type=all,bucket=watch_port:2,actions=output:2", "watch_port 2 in a group"),
        (" bucket=actions=output:2", "no group_id="),
    ],
)
def test_what_the_group_model_cannot_hold_is_a_one_line_error(line: str, message: str) -> None:
    with pytest.raises(OfDumpError) as info:
        parse_dump_groups("OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):\n" + line, 1)
    text = str(info.value)
    assert message in text and text.startswith("dump-groups line 2:") and "\n" not in text
