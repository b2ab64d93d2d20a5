"""Inside the check VM (run by vm/guest.sh): one network up, and what shows how it is built.

    python vm/evidence.py OUT_DIR

Brings up h1 -5 ms- s1 -10 ms, 10 Mbit/s, 1 % loss- s2 -5 ms- h2 in netem mode with the l2
app, pings across it, and while the pings run keeps:

    tc.txt        tc -s qdisc, tc -s class and tc filter of s1's port on the shaped link
    dpctl.txt     ovs-dpctl show and dump-flows: the kernel datapath and its flow table
    ovs.txt       ovs-vsctl show, each bridge's datapath_type, ovs-ofctl dump-flows
    ping.txt      the pings (40 ms round trip configured)
    summary.json  what vm/verdict.py checks

Exit status 0 when the links use netem and the bridges the kernel datapath, with flows in it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed.core import measure as M
from testbed.emu.network import TestbedNetwork
from topologies.chain import make_chain


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}"


def shaped_port(tn: TestbedNetwork):
    """s1's interface on the link to s2 (the 10 ms, 10 Mbit/s, 1 % loss link)."""
    s1, s2 = tn.net.get("s1"), tn.net.get("s2")
    (link,) = tn.net.linksBetween(s1, s2)
    return link.intf1 if link.intf1.node is s1 else link.intf2


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    spec = make_chain(delays_ms=(5.0, 10.0, 5.0), bw_mbit=10.0, bottleneck=2, loss_pct=1.0)
    run_dir = Path(tempfile.mkdtemp(prefix="meshcast-evidence-")) / "run"
    with TestbedNetwork(spec, run_dir, mode="netem", apps=("l2",)) as tn:
        h1, h2 = tn.host("h1"), tn.host("h2")
        port = shaped_port(tn)
        pinger = h1.popen(["ping", "-n", "-c", "60", "-i", "0.05", h2.IP()],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)  # flows in the kernel datapath live while packets use them
        dpctl = run("ovs-dpctl", "show") + "\n" + run("ovs-dpctl", "dump-flows")
        tc_text = "\n".join(run("tc", "-s", part, "show", "dev", port.name)
                            for part in ("qdisc", "class", "filter"))
        ping_text, _ = pinger.communicate(timeout=60)
        bridges = [sw.name for sw in tn.net.switches]
        types = {br: subprocess.run(["ovs-vsctl", "get", "Bridge", br, "datapath_type"],
                                    capture_output=True, text=True).stdout.strip().strip('"')
                 for br in bridges}
        ovs_text = "\n".join([run("ovs-vsctl", "show"), run("ovs-appctl", "dpif/show"),
                              *(run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", br)
                                for br in bridges)])
        mode = tn.mode
    (out / "tc.txt").write_text(f"# s1's port {port.name} on the s1-s2 link "
                                "(10 ms, 10 Mbit/s, 1 % loss), network up\n" + tc_text)
    (out / "dpctl.txt").write_text("# kernel datapath, network up, pings running\n" + dpctl)
    (out / "ovs.txt").write_text(json.dumps(types) + "\n" + ovs_text)
    (out / "ping.txt").write_text(ping_text)

    ping = M.parse_ping(ping_text)
    flows = [x for x in dpctl.split("dump-flows\n", 1)[-1].splitlines() if "actions:" in x]
    summary = {
        "mode": mode,
        "netem_qdiscs": tc_text.count("qdisc netem"),
        "htb_classes": tc_text.count("class htb"),
        "datapath_types": {br: t or "system" for br, t in types.items()},
        "kernel_datapath": "system@ovs-system" in dpctl,
        "kernel_flows": len(flows),
        "ping_received": len(ping.rtts_ms),
        "ping_median_ms": M.percentile(ping.rtts_ms, 0.5) if ping.rtts_ms else None,
        "configured_rtt_ms": 40.0,
    }
    summary["ok"] = bool(
        mode == "netem" and summary["netem_qdiscs"] >= 2 and summary["htb_classes"] >= 3
        and all(t == "system" for t in summary["datapath_types"].values())
        and summary["kernel_datapath"] and summary["kernel_flows"] > 0
        and summary["ping_received"] > 0)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    sys.exit(main(Path(sys.argv[1])))
