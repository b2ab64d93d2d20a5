"""Multicast tree cost for 8, 32 and 64 members (no root needed).

For each size: compute the intended flows and groups from scratch (core), the diff for
one more member joining (core), and encode the join's OpenFlow 1.3 messages as the
controller would send them (os-ken's parser).  Writes benchmarks/out/trees.json with
each time and its ratio to the 8-member case.  The switch side (install to first packet)
is measured in Mininet by tests/integration/test_multicast_ovs.py (join latency).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser  # noqa: E402

from benchmarks.common import write  # noqa: E402
from controllers.ofadapter import flow_mod, group_mod  # noqa: E402
from testbed.core import multicast as mc  # noqa: E402
from testbed.core.fakenet import topology_dict  # noqa: E402
from testbed.core.l2 import NetView  # noqa: E402
from topologies import generate  # noqa: E402

SIZES = (8, 32, 64)
GROUP = "239.1.1.1"
REPEAT = 7


def view_of(spec) -> NetView:
    """The NetView the builder would write for ``spec`` (ports numbered in order)."""
    import networkx as nx

    switches = nx.Graph(spec.subgraph([n for n, r in spec.nodes(data="role") if r == "switch"]))
    d = topology_dict(switches, hosts_per_switch=0)
    port = {s: len(d["switches"][s]["ports"]) for s in d["switches"]}
    for i, (h, data) in enumerate(sorted(spec.nodes(data=True)), start=1):
        if data["role"] == "switch":
            continue
        sw = next(iter(spec.neighbors(h)))
        port[sw] += 1
        d["switches"][sw]["ports"][f"{sw}-eth{port[sw]}"] = port[sw]
        d["hosts"][h] = {"ip": f"10.0.{i // 250}.{i % 250 + 1}",
                         "mac": f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
                         "switch": sw, "port": port[sw], "role": data["role"]}
    return NetView.from_dict(d)


def timed(fn):
    runs = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), out


def main() -> None:
    spec = generate("tiered", regions=16, helpers_per_region=5, viewers_per_region=0,
                    tier_delays_ms=(2.0, 10.0, 20.0, 40.0))
    view = view_of(spec)
    helpers = sorted((h for h, v in view.hosts.items() if v.role == "helper"),
                     key=lambda h: int(h[1:]))
    dp = SimpleNamespace(ofproto=ofproto_v1_3, ofproto_parser=ofproto_v1_3_parser, id=1)
    rows = []
    for n in SIZES:
        members = helpers[:n]
        t_state, state = timed(lambda m=members: mc.multicast_state(view, "m1", {GROUP: m}))
        joined = helpers[: n + 1]
        new = mc.multicast_state(view, "m1", {GROUP: joined})
        t_diff, d = timed(lambda s=state, x=new: mc.tree_diff(s, x))

        def encode(diff=d):
            msgs = []
            for kind, command, value in diff.steps():
                dp.id = value.dpid
                msg = (group_mod(dp, value, command) if kind == "group"
                       else flow_mod(dp, value, delete=command == "delete"))
                msg.serialize()
                msgs.append(msg)
            return msgs

        t_encode, msgs = timed(encode)
        rows.append({"members": n, "switches": len(view.switches),
                     "flows": len(state[0]), "groups": len(state[1]),
                     "compute_s": round(t_state, 5), "join_diff_s": round(t_diff, 6),
                     "join_messages": len(msgs), "join_encode_s": round(t_encode, 6)})
        print(rows[-1], flush=True)
    for r in rows:
        r["compute_ratio_to_8"] = round(r["compute_s"] / rows[0]["compute_s"], 2)
    write("trees", {"rows": rows})


if __name__ == "__main__":
    main()
