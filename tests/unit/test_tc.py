"""The tc plan for each link mode, and reading tc's output back against it."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed.core.protocol import PUSH_PORT
from testbed.core.spec import LinkParams
from testbed.emu import tc

# Captured on the development kernel (6.18, iproute2 6.1): the userspace-mode plan for
# LinkParams(delay_ms=5, bw_mbit=10, queue_pkts=50) applied to a veth in a throw-away
# namespace, after 3 pings, two TCP SYNs to port 8081 and one to 5201.
QDISCS_10M = """\
qdisc htb 5: root refcnt 3 r2q 10 default 0x10 direct_packets_stat 0 direct_qlen 1000
 Sent 648 bytes 8 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
qdisc pfifo 10: parent 5:10 limit 50p
 Sent 500 bytes 6 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
qdisc pfifo 20: parent 5:20 limit 50p
 Sent 148 bytes 2 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
"""
CLASSES_10M = """\
class htb 5:10 parent 5:1 leaf 10: prio 0 rate 9900Kbit ceil 10Mbit burst 3025b cburst 3026b
 Sent 500 bytes 6 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
 lended: 6 borrowed: 0 giants: 0
 tokens: 37283 ctokens: 36918

class htb 5:1 root rate 10Mbit ceil 10Mbit burst 3026b cburst 3026b
 Sent 648 bytes 8 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
 lended: 0 borrowed: 0 giants: 0
 tokens: 36918 ctokens: 36918

class htb 5:20 parent 5:1 leaf 20: prio 1 rate 100Kbit ceil 10Mbit burst 3028b cburst 3026b
 Sent 148 bytes 2 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
 lended: 2 borrowed: 0 giants: 0
 tokens: 3657811 ctokens: 36918
"""
FILTERS_10M = """\
filter parent 5: protocol ip pref 1 u32 chain 0
filter parent 5: protocol ip pref 1 u32 chain 0 fh 800: ht divisor 1
filter parent 5: protocol ip pref 1 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 \
*flowid 5:20 not_in_hw
  match 00060000/00ff0000 at 8
  match 00001f91/0000ffff at 20
"""
# The same kernel: a fresh veth, and the one-class plan shaped links had before.
QDISCS_FRESH = "qdisc noqueue 0: root refcnt 2 \n"
QDISCS_ONE_CLASS = """\
qdisc htb 5: root refcnt 3 r2q 10 default 0x1 direct_packets_stat 0 direct_qlen 1000
qdisc pfifo 10: parent 5:1 limit 50p
"""
CLASSES_ONE_CLASS = (
    "class htb 5:1 root leaf 10: prio 0 rate 10Mbit ceil 10Mbit burst 3026b cburst 3026b \n")
# 1 Mbit/s (class show, without and with -iec): rates tc cannot round to a unit
CLASSES_1M = """\
class htb 5:10 parent 5:1 prio 0 rate 951552bit ceil 1Mbit burst 3027b cburst 3028b
class htb 5:1 root rate 1Mbit ceil 1Mbit burst 3028b cburst 3028b
class htb 5:20 parent 5:1 prio 1 rate 48448bit ceil 1Mbit burst 3028b cburst 3028b
"""
CLASSES_1M_IEC = CLASSES_1M.replace("1Mbit", "1000000bit")

SHAPED = LinkParams(delay_ms=5, bw_mbit=10, queue_pkts=50)


def _classes(params: LinkParams) -> dict[str, tc.HtbClass]:
    return {c.classid: c for c in tc.shaping_plan(params, tc.USERSPACE).classes}


# -- rendering ------------------------------------------------------------------------
def test_unshaped_link_needs_no_qdisc():
    assert tc.tc_commands("h1-eth0", LinkParams(), tc.NETEM) == []
    assert tc.tc_commands("h1-eth0", LinkParams(), tc.USERSPACE) == []


def test_netem_mode_puts_the_same_delay_under_both_leaves():
    cmds = tc.tc_commands("s1-eth2", LinkParams(delay_ms=5, bw_mbit=10), tc.NETEM)
    assert cmds == [
        "tc qdisc replace dev s1-eth2 root handle 5: htb default 10",
        "tc class replace dev s1-eth2 parent 5: classid 5:1 htb rate 10mbit ceil 10mbit "
        "burst 3028 cburst 3028 quantum 125000",
        "tc class replace dev s1-eth2 parent 5:1 classid 5:10 htb rate 9900kbit ceil 10mbit "
        "burst 3028 cburst 3028 quantum 125000 prio 0",
        "tc class replace dev s1-eth2 parent 5:1 classid 5:20 htb rate 100kbit ceil 10mbit "
        "burst 3028 cburst 3028 quantum 125000 prio 1",
        "tc qdisc add dev s1-eth2 parent 5:10 handle 10: netem delay 5ms limit 1005",
        "tc qdisc add dev s1-eth2 parent 5:20 handle 20: netem delay 5ms limit 1005",
        "tc filter add dev s1-eth2 parent 5: protocol ip prio 1 u32 "
        "match ip protocol 6 0xff match ip dport 8081 0xffff flowid 5:20",
    ]


def test_netem_queue_holds_the_packets_in_flight_with_jitter_and_loss():
    params = LinkParams(delay_ms=10, jitter_ms=1, loss_pct=0.5, bw_mbit=10)
    netems = [c for c in tc.tc_commands("s1-eth2", params, tc.NETEM) if " netem " in c]
    in_flight = tc.bdp_packets(params)
    assert in_flight == 10
    assert [c.split(" netem ")[1] for c in netems] == [
        f"delay 10ms 1ms loss 0.5% limit {1000 + in_flight}"] * 2
    assert [c.split(" handle ")[0].split(" parent ")[1] for c in netems] == ["5:10", "5:20"]


def test_userspace_mode_leaves_delay_to_the_emulator():
    cmds = tc.tc_commands("s1-eth2", LinkParams(delay_ms=5, bw_mbit=10), tc.USERSPACE)
    assert not any("netem" in c for c in cmds)
    assert [c.split(" dev ")[0] for c in cmds] == [
        "tc qdisc replace", "tc class replace", "tc class replace", "tc class replace",
        "tc filter add"]
    assert cmds[-1].endswith("match ip protocol 6 0xff match ip dport 8081 0xffff flowid 5:20")


def test_userspace_queue_limit_goes_under_each_leaf():
    cmds = tc.tc_commands("h1-eth0", LinkParams(delay_ms=20, bw_mbit=1, queue_pkts=50),
                          tc.USERSPACE)
    assert cmds[4:6] == ["tc qdisc add dev h1-eth0 parent 5:10 handle 10: pfifo limit 50",
                         "tc qdisc add dev h1-eth0 parent 5:20 handle 20: pfifo limit 50"]


def test_links_without_a_rate_keep_one_root_qdisc():
    assert tc.tc_commands("h1-eth0", LinkParams(delay_ms=2.5), tc.NETEM) == [
        "tc qdisc replace dev h1-eth0 root handle 10: netem delay 2.5ms limit 1000"]
    assert tc.tc_commands("h1-eth0", LinkParams(delay_ms=2.5), tc.USERSPACE) == []
    assert tc.tc_commands("h1-eth0", LinkParams(queue_pkts=30), tc.USERSPACE) == [
        "tc qdisc replace dev h1-eth0 root handle 10: pfifo limit 30"]
    plan = tc.shaping_plan(LinkParams(delay_ms=2.5, queue_pkts=30), tc.NETEM)
    assert not plan.classes and not plan.filters


def test_rate_only_link_has_classes_and_filter_but_no_leaf_qdiscs():
    for mode in tc.MODES:
        plan = tc.shaping_plan(LinkParams(bw_mbit=10), mode)
        assert [q.kind for q in plan.qdiscs] == ["htb"]
        assert len(plan.classes) == 3 and len(plan.filters) == 1


def test_rates_render_exactly():
    cmds = tc.tc_commands("h1-eth0", LinkParams(bw_mbit=1), tc.USERSPACE)
    assert "classid 5:10 htb rate 951552bit ceil 1mbit" in cmds[2]
    assert "classid 5:20 htb rate 48448bit ceil 1mbit" in cmds[3]
    cmds = tc.tc_commands("h1-eth0", LinkParams(bw_mbit=0.25), tc.USERSPACE)
    assert "classid 5:1 htb rate 250kbit ceil 250kbit" in cmds[1]


# -- the push class -------------------------------------------------------------------
def test_filter_sends_tcp_to_the_push_port_to_the_push_class():
    f = tc.push_filter()
    assert PUSH_PORT == 8081
    assert f.flowid == tc.PUSH_CLASS and f.parent == tc.HTB_HANDLE
    assert f.matches == (("protocol", 6, 0xFF), ("dport", 8081, 0xFFFF))
    # as the kernel holds them (see FILTERS_10M): protocol in word 8, dport in word 20
    assert f.keys() == ((0x00060000, 0x00FF0000, 8), (0x00001F91, 0x0000FFFF, 20))


def test_normal_class_is_the_default_and_outranks_pushes():
    plan = tc.shaping_plan(SHAPED, tc.USERSPACE)
    assert plan.qdiscs[0].opts == "default 10"
    classes = _classes(SHAPED)
    assert classes[tc.NORMAL_CLASS].prio == 0 and classes[tc.PUSH_CLASS].prio == 1
    assert classes[tc.TOP_CLASS].prio is None


@given(st.floats(min_value=0.01, max_value=10_000, allow_nan=False))
def test_leaf_rates_sum_to_the_link_rate_and_pushes_may_borrow_all_of_it(bw):
    classes = _classes(LinkParams(bw_mbit=bw))
    top, normal, push = (classes[c] for c in (tc.TOP_CLASS, tc.NORMAL_CLASS, tc.PUSH_CLASS))
    assert top.rate_bit == top.ceil_bit == normal.ceil_bit == push.ceil_bit
    assert normal.rate_bit + push.rate_bit == top.rate_bit
    assert 0 < push.rate_bit <= tc.PUSH_CAP_SHARE * top.rate_bit + 1
    assert normal.rate_bit >= 0.95 * top.rate_bit - 1
    assert normal.parent == push.parent == tc.TOP_CLASS and top.parent == tc.HTB_HANDLE


@pytest.mark.parametrize(("bw", "push_bit"), [
    (0.1, 5_000),         # capped at 5 % on slow links
    (1, 48_448),          # four full frames a second
    (10, 100_000),        # 1 %
    (1000, 10_000_000),
])
def test_push_guarantee_is_one_percent_or_a_few_frames(bw, push_bit):
    assert tc.push_rate_bit(bw) == push_bit


def test_expected_qdiscs_follow_the_plan():
    assert tc.expected_qdiscs(LinkParams(delay_ms=5, bw_mbit=10), tc.NETEM) == [
        "htb", "netem", "netem"]
    assert tc.expected_qdiscs(LinkParams(delay_ms=5, bw_mbit=10), tc.USERSPACE) == ["htb"]
    assert tc.expected_qdiscs(SHAPED, tc.USERSPACE) == ["htb", "pfifo", "pfifo"]
    assert tc.expected_qdiscs(LinkParams(delay_ms=5), tc.NETEM) == ["netem"]
    assert tc.expected_qdiscs(LinkParams(delay_ms=5), tc.USERSPACE) == []


# -- parsing tc's output ----------------------------------------------------------------
def test_parse_qdiscs():
    assert tc.parse_qdiscs(QDISCS_10M) == [
        tc.Qdisc("htb", "5:", "root"), tc.Qdisc("pfifo", "10:", "5:10"),
        tc.Qdisc("pfifo", "20:", "5:20")]
    assert tc.parse_qdiscs(QDISCS_FRESH) == [tc.Qdisc("noqueue", "0:", "root")]
    assert tc.parse_qdiscs("") == []


def test_parse_classes_with_counters():
    shown = {c.classid: c for c in tc.parse_classes(CLASSES_10M)}
    assert shown["5:1"] == tc.ShownClass("htb", "5:1", "root", None, 10_000_000, 10_000_000,
                                         648)
    assert shown["5:10"] == tc.ShownClass("htb", "5:10", "5:1", 0, 9_900_000, 10_000_000, 500)
    # the two SYNs to port 8081 (74 bytes each) went to the push class
    assert shown["5:20"] == tc.ShownClass("htb", "5:20", "5:1", 1, 100_000, 10_000_000, 148)


def test_parse_classes_without_counters_and_in_iec_units():
    for text in (CLASSES_1M, CLASSES_1M_IEC):
        shown = {c.classid: c for c in tc.parse_classes(text)}
        assert shown["5:10"].rate_bit == 951_552 and shown["5:20"].rate_bit == 48_448
        assert shown["5:1"].ceil_bit == 1_000_000 and shown["5:1"].sent_bytes is None


def test_parse_rate():
    assert tc.parse_rate("9900Kbit") == 9_900_000
    assert tc.parse_rate("1Gbit") == 10**9
    assert tc.parse_rate("8Kibit") == 8192
    assert tc.parse_rate("48448bit") == 48_448
    with pytest.raises(tc.TcParseError, match="'10mbps' is not a tc rate"):
        tc.parse_rate("10mbps")


def test_a_class_line_with_a_bad_rate_names_the_line():
    with pytest.raises(tc.TcParseError, match="tc class line 2: .*'fast'"):
        tc.parse_classes("\nclass htb 5:1 root rate fast ceil 10Mbit\n")


def test_parse_u32_filters():
    assert tc.parse_u32_filters(FILTERS_10M) == [tc.ShownFilter(
        "5:", 1, "5:20", ((0x00060000, 0x00FF0000, 8), (0x00001F91, 0x0000FFFF, 20)))]
    assert tc.parse_u32_filters("") == []


# -- checking what is installed ---------------------------------------------------------
def test_the_applied_plan_is_in_place():
    plan = tc.shaping_plan(SHAPED, tc.USERSPACE)
    assert tc.shaping_problems(plan, QDISCS_10M, CLASSES_10M, FILTERS_10M) == []


def test_a_fresh_interface_lacks_everything():
    plan = tc.shaping_plan(SHAPED, tc.USERSPACE)
    problems = tc.shaping_problems(plan, QDISCS_FRESH, "", "")
    assert problems == [
        "qdisc htb 5: at root missing", "qdisc pfifo 10: at 5:10 missing",
        "qdisc pfifo 20: at 5:20 missing", "htb class 5:1 under root missing",
        "htb class 5:10 under 5:1 missing", "htb class 5:20 under 5:1 missing",
        "u32 filter on 5: to 5:20 (protocol 6, dport 8081) missing"]


def test_the_one_class_plan_is_not_the_push_plan():
    plan = tc.shaping_plan(SHAPED, tc.USERSPACE)
    problems = tc.shaping_problems(plan, QDISCS_ONE_CLASS, CLASSES_ONE_CLASS, "")
    assert "htb class 5:20 under 5:1 missing" in problems
    assert "u32 filter on 5: to 5:20 (protocol 6, dport 8081) missing" in problems
    assert "qdisc pfifo 10: at 5:10 missing" in problems  # it sits under 5:1 there


def test_netem_leaves_are_checked_by_kind():
    plan = tc.shaping_plan(LinkParams(delay_ms=5, bw_mbit=10, queue_pkts=50), tc.NETEM)
    problems = tc.shaping_problems(plan, QDISCS_10M, CLASSES_10M, FILTERS_10M)
    assert problems == ["qdisc netem 10: at 5:10 missing", "qdisc netem 20: at 5:20 missing"]


def test_rates_of_another_link_are_reported():
    plan = tc.shaping_plan(LinkParams(bw_mbit=1), tc.USERSPACE)
    problems = tc.shaping_problems(plan, QDISCS_10M, CLASSES_10M, FILTERS_10M)
    assert "htb class 5:10 rate 9900000 bit/s, want 951552" in problems
    assert "htb class 5:20 ceil 10000000 bit/s, want 1000000" in problems
    assert tc.shaping_problems(plan, QDISCS_10M, CLASSES_1M, FILTERS_10M) == []


def test_a_filter_to_another_port_or_class_does_not_count():
    plan = tc.shaping_plan(SHAPED, tc.USERSPACE)
    other_port = FILTERS_10M.replace("00001f91", "00001f90")
    other_class = FILTERS_10M.replace("flowid 5:20", "flowid 5:10")
    for text in (other_port, other_class):
        assert tc.shaping_problems(plan, QDISCS_10M, CLASSES_10M, text) == [
            "u32 filter on 5: to 5:20 (protocol 6, dport 8081) missing"]


def test_an_unshaped_link_is_always_in_place():
    plan = tc.shaping_plan(LinkParams(), tc.NETEM)
    assert tc.shaping_problems(plan, QDISCS_FRESH) == []


# -- validation -------------------------------------------------------------------------
def test_burst_covers_two_frames_at_low_rates_and_2ms_at_high_rates():
    assert tc.htb_burst_bytes(0.1) == 2 * tc.MTU_FRAME
    assert tc.htb_burst_bytes(100) == 25_000


@pytest.mark.parametrize("bad", ["", "x" * 16, "a b", "eth0;rm"])
def test_interface_names_are_validated(bad):
    with pytest.raises(ValueError):
        tc.tc_commands(bad, LinkParams(delay_ms=1), tc.NETEM)
    with pytest.raises(ValueError):
        tc.offload_command(bad)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="link mode 'tbf'"):
        tc.tc_commands("h1-eth0", LinkParams(), "tbf")
