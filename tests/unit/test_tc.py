"""The tc plan for each link mode."""

import pytest

from testbed.core.spec import LinkParams
from testbed.emu import tc


def test_unshaped_link_needs_no_qdisc():
    assert tc.tc_commands("h1-eth0", LinkParams(), tc.NETEM) == []
    assert tc.tc_commands("h1-eth0", LinkParams(), tc.USERSPACE) == []


def test_netem_mode_puts_delay_under_the_rate_limit():
    cmds = tc.tc_commands("s1-eth2", LinkParams(delay_ms=10, jitter_ms=1, loss_pct=0.5,
                                                bw_mbit=10), tc.NETEM)
    assert cmds[0] == "tc qdisc replace dev s1-eth2 root handle 5: htb default 1"
    assert "htb rate 10mbit ceil 10mbit" in cmds[1]
    assert cmds[2].startswith("tc qdisc add dev s1-eth2 parent 5:1 handle 10: netem "
                              "delay 10ms 1ms loss 0.5%")
    # the netem queue must hold the packets in flight on top of the default queue
    in_flight = tc.bdp_packets(LinkParams(delay_ms=10, jitter_ms=1, bw_mbit=10))
    assert in_flight == 10
    assert cmds[2].endswith(f"limit {1000 + in_flight}")


def test_userspace_mode_leaves_delay_to_the_emulator():
    cmds = tc.tc_commands("h1-eth0", LinkParams(delay_ms=20, bw_mbit=1, queue_pkts=50),
                          tc.USERSPACE)
    assert not any("netem" in c for c in cmds)
    assert cmds[-1] == "tc qdisc add dev h1-eth0 parent 5:1 handle 10: pfifo limit 50"


def test_delay_only_netem_is_the_root_qdisc():
    cmds = tc.tc_commands("h1-eth0", LinkParams(delay_ms=2.5), tc.NETEM)
    assert cmds == ["tc qdisc replace dev h1-eth0 root handle 10: netem delay 2.5ms limit 1000"]


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
