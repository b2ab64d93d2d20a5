"""Start-up and tear-down time of a network of 10, 30 and 60 hosts (root).

Writes benchmarks/out/startup.json: seconds to build and start (controller connected,
flows installed, shaping verified) and to stop, per size, and each as a ratio to the
smallest size.  Target: 30 hosts + 10 switches up in <= 60 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402
from testbed.emu.network import TestbedNetwork  # noqa: E402
from topologies.line import make_line  # noqa: E402

SIZES = [(10, 5), (30, 10), (60, 20)]  # (hosts, switches)


def main() -> None:
    rows = []
    for hosts, switches in SIZES:
        spec = make_line(switches=switches, hosts_per_switch=hosts // switches + (
            1 if hosts % switches else 0))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            with TestbedNetwork(spec, Path(tmp) / "run") as tn:
                up = time.monotonic() - t0
                n_hosts, n_sw, mode = len(tn.net.hosts), len(tn.net.switches), tn.mode
                t1 = time.monotonic()
            down = time.monotonic() - t1
        rows.append({"hosts": n_hosts, "switches": n_sw, "link_mode": mode,
                     "up_s": round(up, 2), "down_s": round(down, 2)})
        print(rows[-1], flush=True)
    base = rows[0]
    for r in rows:
        r["up_ratio_to_smallest"] = round(r["up_s"] / base["up_s"], 2)
        r["up_s_per_host"] = round(r["up_s"] / r["hosts"], 3)
    thirty = next(r for r in rows if r["hosts"] >= 30)
    write("startup", {"rows": rows, "target_30_hosts_up_s": 60,
                      "met": thirty["up_s"] <= 60})


if __name__ == "__main__":
    main()
