"""Mesh paths follow measured latency: the 5 ms way, then the other when it gets worse."""

import re
import time

from nets import small_net
from timing_slack import SLACK, widened

from testbed.core.routing import COOKIE as MESH_COOKIE
from testbed.emu.network import TestbedNetwork
from testbed.emu.ovs import dump_flows

# Every delay here times MESHCAST_TIMING_SLACK (1 unless set; a TCG guest sets it): there the
# controller's own latency samples carry tens of milliseconds of scheduling noise, and the
# two ways must stay further apart than that for "follows the change, does not flap" to
# be a statement about the controller rather than about the noise.
SCALE = SLACK


def two_ways():
    """h1 on s1, h2 on s4; s1-s2-s4 is 5 ms one way, s1-s3-s4 40 ms (times SCALE)."""
    return small_net({("s1", "s2"): 2.5 * SCALE, ("s2", "s4"): 2.5 * SCALE,
                      ("s1", "s3"): 20.0 * SCALE, ("s3", "s4"): 20.0 * SCALE},
                     {"m1": "s1", "h1": "s1", "h2": "s4"})


def carries_mesh(switch: str) -> bool:
    return f"cookie={MESH_COOKIE:#x}" in dump_flows(switch)


def test_mesh_path_follows_a_latency_change_and_does_not_flap(run_dir, monkeypatch):
    monkeypatch.setenv("MESHCAST_MESH_PAIRS", "h1:h2")
    with TestbedNetwork(two_ways(), run_dir, apps=("l2", "mesh")) as tn:
        # moves while the switches were still joining (their ports come up one by one) are
        # bring-up; from here on the path may move only when the latency changes
        up = len((run_dir / "controller.log").read_text())
        deadline = time.time() + widened(10)
        while not carries_mesh("s2") and time.time() < deadline:
            time.sleep(0.1)
        assert carries_mesh("s2") and not carries_mesh("s3")
        out = tn.host("h1").cmd(f"ping -c 5 -i 0.2 {tn.host('h2').IP()}")
        assert " 0% packet loss" in out
        time.sleep(3)  # measured metrics settle; the path must not move
        log = (run_dir / "controller.log").read_text()
        assert set(re.findall(r"mesh: path h1-h2: (.*)", log[up:])) <= {"h1 s1 s2 s4 h2"}, \
            log[-1500:]
        t0 = time.time()
        tn.set_link("s1", "s2", delay_ms=40.0 * SCALE)  # the short way is now 80 ms
        tn.set_link("s2", "s4", delay_ms=40.0 * SCALE)
        while not carries_mesh("s3") and time.time() < t0 + widened(10):
            time.sleep(0.05)
        moved = time.time() - t0
        print(f"mesh path moved {moved:.2f} s after the latency change")
        assert carries_mesh("s3") and not carries_mesh("s2")
        assert moved <= widened(5.0)
        time.sleep(4)  # steady again: no flapping back
        log = (run_dir / "controller.log").read_text()
        moves = re.findall(r"mesh: path h1-h2: (.*)", log[up:])
        assert moves[-1:] == ["h1 s1 s3 s4 h2"] and moves.count("h1 s1 s3 s4 h2") == 1, \
            log[-1500:]
        rtt = tn.host("h1").cmd(f"ping -c 5 -i 0.2 {tn.host('h2').IP()}")
        assert " 0% packet loss" in rtt
