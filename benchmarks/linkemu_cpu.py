"""CPU used by the userspace link emulator (and by Open vSwitch) at 10 and 50 Mbit/s (root).

A three-link path (5, 10, 20 ms; every link delayed by the emulator) carries one iperf3 TCP
flow for a few seconds at each rate; the emulator's and ovs-vswitchd's CPU seconds per
second of traffic are read from /proc.  Writes benchmarks/out/linkemu_cpu.json, with the
cost per Mbit/s and the 50/10 ratio (near 5 means the cost is linear in the rate).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ovs_pid, proc_cpu_seconds, write  # noqa: E402
from testbed.core import measure as M  # noqa: E402
from testbed.emu.network import TestbedNetwork  # noqa: E402
from topologies.chain import make_chain  # noqa: E402

RATES = [10, 50]
SECONDS = 8


def one(rate: float) -> dict:
    spec = make_chain(delays_ms=(5.0, 10.0, 20.0), bw_mbit=rate, bottleneck=2)
    with tempfile.TemporaryDirectory() as tmp, \
            TestbedNetwork(spec, Path(tmp) / "run", mode="userspace") as tn:
        h1, h2 = tn.host("h1"), tn.host("h2")
        server = h2.popen(["iperf3", "-s", "-1", "-p", "5501"])
        time.sleep(0.3)
        emu, ovs = tn.linkemu.pid, ovs_pid()
        e0, o0, t0 = proc_cpu_seconds(emu), proc_cpu_seconds(ovs) if ovs else 0.0, \
            time.monotonic()
        out = h1.cmd(f"iperf3 -c {h2.IP()} -p 5501 -t {SECONDS} -J")
        wall = time.monotonic() - t0
        e1, o1 = proc_cpu_seconds(emu), proc_cpu_seconds(ovs) if ovs else 0.0
        server.wait(10)
        goodput = M.parse_iperf3(out).received_bps / 1e6
    return {
        "rate_mbit": rate, "goodput_mbit": round(goodput, 2), "seconds": round(wall, 2),
        "linkemu_cpu_per_s": round((e1 - e0) / wall, 3),
        "ovs_cpu_per_s": round((o1 - o0) / wall, 3) if ovs else None,
        "linkemu_cpu_per_s_per_mbit": round((e1 - e0) / wall / goodput, 4),
        "lanes": 6,
    }


def main() -> None:
    rows = [one(r) for r in RATES]
    for r in rows:
        print(r, flush=True)
    write("linkemu_cpu", {
        "rows": rows,
        "ratio_cpu_50_to_10": round(rows[1]["linkemu_cpu_per_s"] / rows[0]["linkemu_cpu_per_s"],
                                    2),
    })


if __name__ == "__main__":
    main()
