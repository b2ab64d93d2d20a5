"""The dump-flows parser, on text as OVS 3.1 prints it."""

from __future__ import annotations

import networkx as nx
import pytest

from testbed.core.fakenet import topology_dict
from testbed.core.l2 import COOKIE, NetView, l2_rules
from testbed.core.ofdump import OfDumpError, parse_dump_flows, parse_flow_lines
from testbed.core.rules import ETH_TYPE_IPV4, GROUP_BIT, Match, Output, Rule, sort_rules

# ovs-ofctl -O OpenFlow13 --no-names dump-flows (OVS 3.1.0)
SAMPLE = """\
OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie=0x6d632d6c32000000, duration=0.102s, table=0, n_packets=0, n_bytes=0, priority=0 actions=drop
 cookie=0x0, duration=0.037s, table=0, n_packets=3, n_bytes=180, actions=output:1
 cookie=0x0, duration=0.069s, table=0, n_packets=0, n_bytes=0, priority=300,udp,nw_dst=239.1.1.1,tp_dst=5000 actions=output:1
 cookie=0x6d632d6c32000000, duration=0.159s, table=0, n_packets=0, n_bytes=0, priority=200,dl_dst=00:00:00:00:00:01 actions=output:1
 cookie=0x6d632d6c32000000, duration=0.130s, table=0, n_packets=0, n_bytes=0, priority=100,in_port=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=output:2,output:3
 cookie=0x0, duration=0.007s, table=1, n_packets=0, n_bytes=0, priority=5,ip,dl_src=00:00:00:00:00:05,nw_src=10.0.0.1 actions=drop
"""  # noqa: E501

SAMPLE_NO_STATS = """\
 cookie=0x6d632d6c32000000, priority=0 actions=drop
 actions=output:1
 priority=300,udp,nw_dst=239.1.1.1,tp_dst=5000 actions=output:1
 cookie=0x6d632d6c32000000, priority=200,dl_dst=00:00:00:00:00:01 actions=output:1
 cookie=0x6d632d6c32000000, priority=100,in_port=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=output:2,output:3
 table=1, priority=5,ip,dl_src=00:00:00:00:00:05,nw_src=10.0.0.1 actions=drop
"""  # noqa: E501

EXPECTED = sort_rules([
    Rule(7, 0, 0, Match(), (), COOKIE),
    Rule(7, 0, 0x8000, Match(), (Output(1),), 0),
    Rule(7, 0, 300, Match(eth_type=ETH_TYPE_IPV4, ip_proto=17, ipv4_dst="239.1.1.1",
                          udp_dst=5000), (Output(1),), 0),
    Rule(7, 0, 200, Match(eth_dst="00:00:00:00:00:01"), (Output(1),), COOKIE),
    Rule(7, 0, 100, Match(in_port=1, eth_dst=GROUP_BIT, eth_dst_mask=GROUP_BIT),
         (Output(2), Output(3)), COOKIE),
    Rule(7, 1, 5, Match(eth_src="00:00:00:00:00:05", eth_type=ETH_TYPE_IPV4,
                        ipv4_src="10.0.0.1"), (), 0),
])


def test_sample_with_and_without_stats() -> None:
    assert parse_dump_flows(SAMPLE, 7) == EXPECTED
    assert parse_dump_flows(SAMPLE_NO_STATS, 7) == EXPECTED


def test_counters() -> None:
    flows = parse_flow_lines(SAMPLE, 7)
    assert [f.n_packets for f in flows][:2] == [0, 3] and flows[1].n_bytes == 180
    assert flows[0].duration_s == pytest.approx(0.102)
    assert parse_flow_lines(SAMPLE_NO_STATS, 7)[0].n_packets is None


def test_empty_table_and_duplicates_are_kept() -> None:
    assert parse_dump_flows("OFPST_FLOW reply (OF1.3) (xid=0x2):\n", 1) == []
    line = " cookie=0x1, priority=9,dl_dst=00:00:00:00:00:01 actions=output:1\n"
    assert len(parse_dump_flows(line * 2, 1)) == 2


def _render(rule: Rule) -> str:
    """Print a rule the way dump-flows does (for the round trip below)."""
    names = {"eth_dst": "dl_dst", "eth_src": "dl_src", "in_port": "in_port"}
    parts = [f"priority={rule.priority}"]
    for name, value in rule.match.items():
        if name == "eth_dst" and rule.match.eth_dst_mask:
            value = f"{value}/{rule.match.eth_dst_mask}"
        if name != "eth_dst_mask":
            parts.append(f"{names[name]}={value}")
    actions = ",".join(f"output:{a.port}" for a in rule.actions) or "drop"
    return (f" cookie={rule.cookie:#x}, duration=1.5s, table={rule.table}, n_packets=0, "
            f"n_bytes=0, {','.join(parts)} actions={actions}")


def test_round_trip_of_every_l2_rule_shape() -> None:
    view = NetView.from_dict(topology_dict(nx.cycle_graph(4), 2))
    for switch in view.switches.values():
        rules = [r for r in l2_rules(view) if r.dpid == switch.dpid]
        text = "\n".join(_render(r) for r in reversed(rules))
        assert parse_dump_flows(text, switch.dpid) == rules


@pytest.mark.parametrize(
    "line, message",
    [
        (' priority=1,in_port="s1-eth1" actions=output:2', "--no-names"),
        (' priority=1 actions=output:"s1-eth2"', "--no-names"),
        (" idle_timeout=10, priority=1 actions=drop", "idle_timeout=10"),
        (" priority=1,ip,nw_dst=10.0.0.0/8 actions=drop", "masks are not in the rule model"),
        (" priority=1,tun_id=0x5 actions=drop", "tun_id=0x5"),
        (" priority=1 actions=CONTROLLER:65535", "action 'CONTROLLER:65535'"),
        (" priority=1,arp,ip actions=drop", "eth_type given twice"),
        (" priority=1,dl_dst=00:00:00:00:00 actions=drop", "MAC address"),
        (" priority=1", "no actions="),
        (" priority=1,nw_dst=10.0.0.1 actions=drop", "needs eth_type"),
    ],
)
def test_what_the_model_cannot_hold_is_a_one_line_error(line: str, message: str) -> None:
    with pytest.raises(OfDumpError) as info:
        parse_dump_flows("OFPST_FLOW reply (OF1.3) (xid=0x2):\n" + line, 1)
    text = str(info.value)
    assert message in text and text.startswith("dump-flows line 2:") and "\n" not in text
