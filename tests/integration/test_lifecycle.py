"""Networks come up, are described, and go away leaving nothing behind."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from testbed.core.spec import MASTER
from testbed.emu import kernel, residue
from testbed.emu.network import TestbedNetwork
from topologies.line import make_line

REPO = Path(__file__).resolve().parents[2]
TESTBED = [sys.executable, "-m", "testbed"]


def test_thirty_hosts_and_ten_switches_start_forward_and_leave_no_residue(run_dir):
    before = residue.Snapshot.take()
    machine_cc = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text()
    machine_allowed = kernel.ALLOWED_CC.read_text()
    t0 = time.monotonic()
    with TestbedNetwork(make_line(switches=10, hosts_per_switch=3), run_dir) as tn:
        up_s = time.monotonic() - t0
        assert len(tn.net.hosts) == 30 and len(tn.net.switches) == 10
        # end to end across all ten switches, and a sample of pairs
        first, last = tn.host("m1"), tn.net.hosts[-1]
        assert "0% packet loss" in first.cmd(f"ping -c 2 -i 0.2 -W 2 {last.IP()}")
        assert tn.net.ping(tn.net.hosts[::5], timeout=2) == 0
        hosts = json.loads((run_dir / "hosts.json").read_text())
        assert set(hosts) == {h.name for h in tn.net.hosts}
        assert hosts["m1"]["role"] == MASTER and hosts["m1"]["ip"] == "10.0.0.1"
        assert all(Path(f"/proc/{h['pid']}").exists() for h in hosts.values())
        assert residue.labeled_bridges(tn.run_id) and residue.labeled_links(tn.run_id)
        # every host runs the scenario's TCP (CUBIC by default), not the machine's default
        assert {h.cmd("cat /proc/sys/net/ipv4/tcp_congestion_control").strip()
                for h in tn.net.hosts} == {"cubic"}
        assert {h["tcp_congestion"] for h in hosts.values()} == {"cubic"}
    print(f"30 hosts + 10 switches up in {up_s:.1f} s")
    assert up_s <= 60
    assert not any(residue.Snapshot.take().minus(before).values())
    assert Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text() == machine_cc
    assert kernel.ALLOWED_CC.read_text() == machine_allowed


def run_cli(*args, timeout=120, **kw):
    return subprocess.run([*TESTBED, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, check=False, **kw)


def test_bad_scenarios_get_one_line_and_start_nothing(tmp_path):
    cases = {
        "unknown key": ("colour: blue\n", "colour"),
        "negative delay": ("links:\n  defaults:\n    delay: -5ms\n", "-5ms"),
        "missing node": ("links:\n  overrides:\n    - between: [s1, zz]\n      delay: 3ms\n",
                         "zz"),
        "zero bandwidth": ("links:\n  defaults:\n    bw: 0\n", "bw"),
    }
    base = "name: bad\ntopology: {generator: chain, params: {delays_ms: [1, 1]}}\n"
    before = residue.Snapshot.take()
    for what, (body, value) in cases.items():
        path = tmp_path / f"{what.replace(' ', '-')}.yaml"
        path.write_text(base + body)
        res = run_cli("up", str(path), "--hold", "--out", str(tmp_path / "run"))
        lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
        assert res.returncode == 2, (what, res.stdout, res.stderr)
        assert len(lines) == 1, (what, res.stderr)
        assert str(path) in lines[0] and value in lines[0], (what, lines[0])
        assert not (tmp_path / "run").exists(), what
    assert not any(residue.Snapshot.take().minus(before).values())


def test_up_hold_then_down(tmp_path):
    scen = tmp_path / "small.yaml"
    scen.write_text("name: small\ntopology: {generator: chain, params: "
                    "{delays_ms: [1, 2, 1], bw_mbit: 20, bottleneck: 2}}\n")
    run = tmp_path / "run"
    env = {**os.environ}
    env.pop(residue.LABEL_ENV, None)
    proc = subprocess.Popen([*TESTBED, "up", str(scen), "--hold", "--out", str(run)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in proc.stdout:  # bounded by the network's own start-up timeouts
            if line.startswith("holding"):
                break
        assert proc.poll() is None
        hosts = json.loads((run / "hosts.json").read_text())
        assert set(hosts) == {"h1", "h2"}
        pid = hosts["h1"]["pid"]
        # the network answers while held
        out = subprocess.run(["mnexec", "-a", str(pid), "ping", "-c", "2", "-W", "2",
                              hosts["h2"]["ip"]], capture_output=True, text=True, check=False)
        assert " 0% packet loss" in out.stdout, out.stdout
        res = run_cli("down")
        assert res.returncode == 0 and "down" in res.stdout, res.stdout + res.stderr
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not Path(f"/proc/{pid}").exists()
    res = run_cli("clean")
    assert res.returncode == 0 and "removed 0 processes, 0 bridges, 0 interfaces" in res.stdout


def test_clean_removes_what_a_killed_run_left(tmp_path):
    """A run killed with SIGKILL leaves things behind; `testbed clean` finds them by label."""
    scen = tmp_path / "small.yaml"
    scen.write_text("name: small\ntopology: {generator: chain, params: {delays_ms: [1, 2]}}\n")
    run = tmp_path / "run"
    before = residue.Snapshot.take()
    machine_allowed = kernel.ALLOWED_CC.read_text()
    proc = subprocess.Popen([*TESTBED, "up", str(scen), "--hold", "--out", str(run)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while not (run / "hosts.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    proc.kill()
    proc.wait()
    assert any(residue.Snapshot.take().minus(before).values())  # something was left
    res = run_cli("clean")
    assert res.returncode == 0, res.stderr
    assert not any(residue.Snapshot.take().minus(before).values())
    assert kernel.ALLOWED_CC.read_text() == machine_allowed  # widened for the run, put back


def test_mn_custom_loads_a_topology_file(tmp_path):
    """`mn --custom topologies/chain.py --topo chain` builds and pings (userspace OVS)."""
    before = residue.Snapshot.take()
    res = subprocess.run(
        ["mn", "--custom", str(REPO / "topologies" / "chain.py"),
         "--topo", "chain,delays_ms=1:1:1", "--switch", "ovs,datapath=user,failMode=standalone",
         "--controller", "none", "--test", "pingall"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Results: 0% dropped" in res.stdout + res.stderr, res.stderr[-2000:]
    assert not any(residue.Snapshot.take().minus(before).values())


def test_calibrate_writes_the_fidelity_table_and_json(tmp_path):
    scen = tmp_path / "two.yaml"
    scen.write_text(
        "name: two\ntopology: {generator: chain, params: "
        "{delays_ms: [2, 15], bw_mbit: 10, bottleneck: 2}}\n"
        "calibration: {probes: 100, interval_s: 0.01, iperf_seconds: 2}\n")
    out = tmp_path / "fidelity.json"
    res = run_cli("calibrate", str(scen), "--out", str(out), timeout=300)
    assert res.returncode in (0, 1), res.stderr[-2000:]
    assert "Fidelity check" in res.stdout and "within tolerance" in res.stdout
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["rows"]}
    # two links (host ends measured from the probes on s1 and s2) and the master->helper path
    assert set(rows) == {"h1-s1", "h2-s1", "h1->h2"}
    assert rows["h1->h2"]["rtt_configured_ms"] == 34.0
    assert rows["h2-s1"]["bw_configured_mbit"] == 10
    assert report["link_mode"] in ("netem", "userspace")
    # the exit status says whether every row passed
    assert (res.returncode == 0) == all(r["ok"] for r in rows.values())
    # the measured path is close whatever the verdict (a stall can fail a p99)
    assert abs(rows["h1->h2"]["rtt_median_ms"] - 34.0) < 3.0


def test_calibrate_stopped_by_sigterm_mid_measurement_leaves_nothing(tmp_path):
    """SIGTERM while a probe is running (here a 30 s ping) tears the check's whole network
    down: hosts, emulator, controller and the tools running in the hosts."""
    scen = tmp_path / "two.yaml"
    scen.write_text(
        "name: two\ntopology: {generator: chain, params: {delays_ms: [2, 15]}}\n"
        "calibration: {probes: 3000, interval_s: 0.01, iperf_seconds: 0}\n")
    log = tmp_path / "calibrate.log"
    before = residue.Snapshot.take()
    with log.open("w") as f:
        proc = subprocess.Popen([*TESTBED, "calibrate", str(scen), "--out",
                                 str(tmp_path / "f.json")], cwd=REPO, stdout=f, stderr=f)
    try:
        deadline = time.monotonic() + 120
        while "network up" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(2)  # measuring the first link
        proc.terminate()
        assert proc.wait(60) == 1, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped by SIGTERM; the network was torn down" in log.read_text()
    assert not any(residue.Snapshot.take().minus(before).values())


def test_doctor_reports_the_kernel_and_ovs():
    res = run_cli("doctor")
    assert "kernel netem" in res.stdout and "Open vSwitch running" in res.stdout, res.stdout
    assert "import mininet" in res.stdout and "import os_ken" in res.stdout
