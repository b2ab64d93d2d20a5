"""IP multicast trees in real OVS: members get every packet, nobody else gets any."""

import sys
import time
from pathlib import Path

from testbed.emu.network import TestbedNetwork
from topologies.tiered import make_tiered

TOOL = str(Path(__file__).with_name("mcast_tool.py"))
GROUP, PORT = "239.1.1.1", 5007


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n") if path.exists() else []


def test_members_receive_every_packet_and_others_none(run_dir, tmp_path):
    spec = make_tiered(regions=2, helpers_per_region=2, viewers_per_region=1,
                       tier_delays_ms=(2.0, 5.0))
    with TestbedNetwork(spec, run_dir, apps=("l2", "multicast")) as tn:
        members, others = ["h1", "h3"], ["h2", "h4", "v1", "v2"]
        procs = []
        for h in members:
            procs.append(tn.host(h).popen([sys.executable, TOOL, "recv", GROUP, str(PORT), "4",
                                           str(tmp_path / f"{h}.recv")]))
        for h in others:
            host = tn.host(h)
            procs.append(host.popen([sys.executable, TOOL, "sniff", GROUP, "4",
                                     str(tmp_path / f"{h}.sniff"), host.defaultIntf().name]))
        time.sleep(1.0)  # IGMP reports reach the controller, trees are installed
        sender = tn.host("m1").popen([sys.executable, TOOL, "send", GROUP, str(PORT), "200",
                                      "0.005"])
        assert sender.wait(20) == 0
        for p in procs:
            p.wait(20)
        log = (run_dir / "controller.log").read_text()
    for h in members:
        got = {int(x.split()[0]) for x in lines(tmp_path / f"{h}.recv") if x[:1].isdigit()}
        assert got == set(range(200)), (h, len(got), log[-2000:])
    for h in others:
        hits = [x for x in lines(tmp_path / f"{h}.sniff") if x]
        assert not hits, (h, len(hits))
    assert "members" in log


def test_join_is_fast_and_leave_stops_delivery(run_dir, tmp_path):
    """20 joins: first packet p95 <= 100 ms; after each leave, nothing arrives past 1 s."""
    spec = make_tiered(regions=2, helpers_per_region=1, viewers_per_region=0,
                       tier_delays_ms=(2.0, 5.0))
    with TestbedNetwork(spec, run_dir, apps=("l2", "multicast")) as tn:
        sender = tn.host("m1").popen([sys.executable, TOOL, "send", GROUP, str(PORT), "8000",
                                      "0.005"])
        h2 = tn.host("h2")
        out = tmp_path / "cycles"
        cycler = h2.popen([sys.executable, TOOL, "cycles", GROUP, str(PORT), "20", str(out),
                           h2.defaultIntf().name])
        try:
            assert cycler.wait(120) == 0
        finally:
            sender.kill()
            sender.wait(10)
    rows = [tuple(map(float, x.split())) for x in lines(out) if x]
    assert len(rows) == 20
    joins = sorted(r[0] for r in rows)
    p95 = joins[int(0.95 * (len(joins) - 1))]
    leaves = [r[1] for r in rows]
    print(f"join->first packet: p50 {joins[len(joins) // 2] * 1000:.1f} ms, "
          f"p95 {p95 * 1000:.1f} ms; last packet after leave: max {max(leaves) * 1000:.1f} ms")
    assert p95 <= 0.100, joins
    assert max(leaves) <= 1.0, leaves
