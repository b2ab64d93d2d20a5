"""A credentialed fuzzer on a rogue host sends validly signed, hostile messages into every
authenticated handler of a helper, the master and the prediction engine
(:mod:`testbed.nodes.fuzzer`): no answer is a 5xx or missing, no daemon dies, their memory
grows by at most 10 % and their open descriptors stay put, and they still serve.

60,000 messages in the suite (about 3 minutes); the acceptance run of 100,000 is the same
test with ``MESHCAST_FUZZ_MESSAGES=100000``."""

import json
import os
import sys
import time

import pytest
from conftest import REPO
from nets import rogue_net

from testbed.core import security as sec
from testbed.harness.run import Deployment
from testbed.harness.stress import proc_usage as usage
from testbed.scenario import loads_scenario

MESSAGES = int(os.environ.get("MESHCAST_FUZZ_MESSAGES", "60000"))

SCENARIO = """
name: fuzz
seed: 7
duration_s: 3600
topology: {generator: tiered}
content: {videos: 3, live_channels: 1, duration_s: 20, bitrate_kbps: 200, segment_s: 2}
delivery: {cache_mb: 2, prefetch: next-segments, push_budget_kbps: 0, tiers: 1, mesh_degree: 1}
viewers: {per_host: 1}
"""


def net():
    return rogue_net(core_delay_ms=2.0, core_bw_mbit=100.0)


def fuzz(dep, plan: dict, count: int) -> dict:
    path = dep.out / f"fuzz-{count}.json"
    path.write_text(json.dumps({**plan, "count": count}))
    out = dep.host("p1").cmd(f"cd {REPO} && {sys.executable} -m testbed.nodes.fuzzer {path}")
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_credentialed_fuzz_reaches_the_handlers_and_breaks_nothing(run_dir):
    sc = loads_scenario(SCENARIO)
    with Deployment(sc, run_dir, say=print, spec=net()) as dep:
        ca = sec.Authority.from_secret((run_dir / "secrets" / "ca.secret").read_bytes())
        for name, role in (("h9", "helper"), ("m1", "master")):
            (run_dir / f"fuzz-{role}.json").write_text(
                ca.issue(name, role, time.time() + 7200).to_json())
        engine = dep.configs["engine"]
        plan = {"targets": {
            "helper": {"name": "h1", "ip": dep.configs["h1"]["ip"], "port": 8080},
            "master": {"name": "m1", "ip": dep.configs["m1"]["ip"], "port": 8080},
            "engine": {"name": engine["name"], "ip": engine["ip"],
                       "port": engine["extra"]["engine"]["port"]}},
            "helper_identity": str(run_dir / "fuzz-helper.json"),
            "master_identity": str(run_dir / "fuzz-master.json"),
            "ca_secret": str(run_dir / "secrets" / "ca.secret"),
            "videos": ["vod-0000", "vod-0001", "vod-0002", "live-00"]}
        daemons = ("h1", "m1", "engine")
        pids = {n: dep.procs[n].proc.pid for n in daemons}

        warm = fuzz(dep, plan, 2000)  # the daemons' caches and pools fill first
        print("warm-up", json.dumps(warm)[:2000])
        before = {n: usage(p) for n, p in pids.items()}
        got = fuzz(dep, plan, MESSAGES)
        after = {n: usage(p) for n, p in pids.items()}
        print("fuzz", json.dumps(got)[:6000])
        print("rss/fds before", before, "after", after)

        assert got["sent"] >= MESSAGES and not got["failures"], got["failures"]
        codes = {int(c): n for c, n in got["codes"].items() if c.isdigit()}
        assert not [c for c in codes if c == 0 or c >= 500], codes
        # the handlers were reached: accepted answers as well as refusals
        assert codes.get(200, 0) > 0 and sum(n for c, n in codes.items() if c >= 400) > 0
        assert {k.split(":")[0] for k in got["by_type"]} == {"h1", "m1", engine["name"]}
        assert got["status_after"] == {"h1": 200, "m1": 200, engine["name"]: 200}
        for n in daemons:
            assert dep.procs[n].alive(), n
            assert after[n][0] <= 1.10 * before[n][0], (n, before[n], after[n])
            assert after[n][1] <= before[n][1] + 4, (n, before[n], after[n])
        # they still serve a viewer
        h1 = dep.host("p1")
        seg = h1.cmd(f"curl -s -o /dev/null -w '%{{http_code}}' -H 'X-Viewer: after' "
                     f"http://{dep.configs['h1']['ip']}:8080/seg/vod-0000/0").strip()
        assert seg == "200", seg
