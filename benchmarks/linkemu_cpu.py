"""CPU of the link emulation at 10 and 50 Mbit/s, per packet and per Mbit/s (root).

A three-link path (5, 10, 20 ms; every link delayed by the userspace emulator) carries one
iperf3 TCP flow for a few seconds at each rate with each kind of Open vSwitch port: AF_PACKET
``system`` ports, XDP ports polled by the switch's main thread (``afxdp-nonpmd``), and XDP
``afxdp`` ports polled by a PMD thread that sleeps when idle (the testbed's choice, where
the kernel and OVS offer them).  Read from /proc: CPU seconds of the emulator and of
ovs-vswitchd, and the whole machine's busy time (nice time left out, so a background job
at low priority does not count); frames from the hosts' interface counters.  Writes
benchmarks/out/linkemu_cpu.json with the rows and the after/before ratios.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ovs_pid, proc_cpu_seconds, write  # noqa: E402
from testbed.core import measure as M  # noqa: E402
from testbed.emu import network as N  # noqa: E402
from topologies.chain import make_chain  # noqa: E402

RATES = [10, 50]
SECONDS = 8
PORTS = ["system", "afxdp-nonpmd", "afxdp"]


def _machine_busy() -> tuple[float, float]:
    """(busy without nice, total) jiffies of all CPUs."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + system + irq + softirq + steal, sum(v)


def _packets(host) -> int:
    intf = host.defaultIntf().name
    return int(host.cmd(f"cat /sys/class/net/{intf}/statistics/rx_packets").strip() or 0)


def one(rate: float, ports: str) -> dict:
    os.environ[N.PORTS_ENV] = ports
    spec = make_chain(delays_ms=(5.0, 10.0, 20.0), bw_mbit=rate, bottleneck=2)
    with tempfile.TemporaryDirectory() as tmp, \
            N.TestbedNetwork(spec, Path(tmp) / "run", mode="userspace") as tn:
        port_type = tn.port_type or "system"
        h1, h2 = tn.host("h1"), tn.host("h2")
        server = h2.popen(["iperf3", "-s", "-1", "-p", "5501"])
        time.sleep(0.3)
        emu, ovs = tn.linkemu.pid, ovs_pid()
        e0, o0 = proc_cpu_seconds(emu), proc_cpu_seconds(ovs) if ovs else 0.0
        b0, p0, t0 = _machine_busy(), _packets(h1) + _packets(h2), time.monotonic()
        out = h1.cmd(f"iperf3 -c {h2.IP()} -p 5501 -t {SECONDS} -J")
        wall = time.monotonic() - t0
        e1, o1 = proc_cpu_seconds(emu), proc_cpu_seconds(ovs) if ovs else 0.0
        b1, p1 = _machine_busy(), _packets(h1) + _packets(h2)
        server.wait(10)
        goodput = M.parse_iperf3(out).received_bps / 1e6
    ncpu = os.cpu_count() or 1
    machine = (b1[0] - b0[0]) / max(1, b1[1] - b0[1]) * ncpu * wall  # CPU seconds, all cores
    frames = p1 - p0  # data frames into h2 and ACKs into h1; each crosses 3 links
    emu_s, ovs_s = e1 - e0, o1 - o0
    return {
        "ports": port_type, "rate_mbit": rate, "goodput_mbit": round(goodput, 2),
        "seconds": round(wall, 2), "frames": frames,
        "linkemu_cpu_per_s": round(emu_s / wall, 3), "ovs_cpu_per_s": round(ovs_s / wall, 3),
        "machine_cpu_per_s": round(machine / wall, 3),
        "linkemu_us_per_frame_link": round(emu_s / frames / 3 * 1e6, 2),
        "ovs_us_per_frame_switch": round(ovs_s / frames / 2 * 1e6, 2),
        "machine_us_per_frame": round(machine / frames * 1e6, 2),
        "linkemu_cpu_per_mbit": round(emu_s / wall / goodput, 4),
        "ovs_cpu_per_mbit": round(ovs_s / wall / goodput, 4),
        "machine_cpu_per_mbit": round(machine / wall / goodput, 4),
    }


def main() -> None:
    saved = os.environ.get(N.PORTS_ENV)
    try:
        rows = [one(r, p) for p in PORTS for r in RATES]
    finally:
        if saved is None:
            os.environ.pop(N.PORTS_ENV, None)
        else:
            os.environ[N.PORTS_ENV] = saved
    for r in rows:
        print(r, flush=True)
    by = {(r["ports"], r["rate_mbit"]): r for r in rows}
    ratios: dict = {}
    for base in ("system", "afxdp-nonpmd"):
        for rate in RATES:
            before, after = by.get((base, rate)), by.get((N.XDP_PORT_TYPE, rate))
            if before and after:
                ratios[f"{N.XDP_PORT_TYPE}_over_{base}_{rate}mbit"] = {
                    k: round(after[k] / before[k], 3) for k in (
                        "machine_cpu_per_mbit", "ovs_cpu_per_mbit", "linkemu_cpu_per_mbit",
                        "machine_us_per_frame") if before[k]}
    write("linkemu_cpu", {"rows": rows, "after_over_before": ratios})


if __name__ == "__main__":
    main()
