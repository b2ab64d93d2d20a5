"""The l2 app against real Open vSwitch bridges: the switch holds exactly core's rules.

Three bridges (fail_mode=secure, OpenFlow 1.3) on the datapath the testbed's networks use
here (the kernel's where it has the openvswitch module, else userspace): two in
topology.json, joined by a patch-port pair and with internal ports standing in for hosts,
and one the topology does not know.  Everything created is removed at the end, whatever
happens.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.core.l2 import COOKIE, NetView, rules_for_dpid
from testbed.core.ofdump import parse_dump_flows, parse_flow_lines
from testbed.core.rules import Rule
from testbed.emu import ovs
from testbed.emu.controller import ControllerProcess
from testbed.emu.kernel import has_ovs_module

pytestmark = pytest.mark.integration

PREFIX = "mcttest"
DPIDS = {"a": 0xA1, "b": 0xA2, "c": 0xA3}  # c is the switch topology.json does not know
FOREIGN_COOKIE = 0x0BAD
WAIT_S = 20.0


@dataclass
class Bench:
    bridges: dict[str, str]  # a/b/c -> bridge name
    view: NetView
    topology: Path
    label: str  # MESHCAST_RUN of everything this test makes


def _wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting until {what}")
        time.sleep(0.2)


def _add_bridge(name: str, dpid: int, label: str) -> None:
    datapath = "system" if has_ovs_module() else "netdev"  # as TestbedNetwork chooses
    ovs.vsctl(
        "add-br", name, "--", "set", "Bridge", name, f"datapath_type={datapath}",
        "fail_mode=secure", "protocols=OpenFlow13",
        f"other-config:datapath-id={dpid:016x}", "other-config:disable-in-band=true",
        f"external_ids:meshcast-run={label}",
    )


def _add_internal(bridge: str, name: str) -> None:
    ovs.vsctl("add-port", bridge, name, "--", "set", "Interface", name, "type=internal")


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    ovs.ensure_ovs_running()
    tag = f"{PREFIX}{os.getpid() % 0x10000:04x}"
    bridges = {k: f"{tag}{k}" for k in DPIDS}
    label = f"{tag}-{tmp_path.name}"
    a, b, c = bridges["a"], bridges["b"], bridges["c"]
    try:
        for key, name in bridges.items():
            _add_bridge(name, DPIDS[key], label)
        for bridge, host in ((a, "h1"), (a, "h2"), (b, "h3"), (c, "h4")):
            _add_internal(bridge, f"{bridge}{host}")
        ovs.vsctl(
            "add-port", a, f"{a}pb", "--", "set", "Interface", f"{a}pb", "type=patch",
            f"options:peer={b}pa", "--",
            "add-port", b, f"{b}pa", "--", "set", "Interface", f"{b}pa", "type=patch",
            f"options:peer={a}pb",
        )
        port = {intf: ovs.ofport(intf) for intf in
                (f"{a}h1", f"{a}h2", f"{a}pb", f"{b}h3", f"{b}pa")}
        topology = {
            "switches": {
                "s1": {"dpid": DPIDS["a"], "ports": {i: port[i] for i in port if i.startswith(a)}},
                "s2": {"dpid": DPIDS["b"], "ports": {i: port[i] for i in port if i.startswith(b)}},
            },
            "hosts": {
                "h1": {"ip": "10.0.0.1", "mac": "00:00:00:00:00:01", "switch": "s1",
                       "port": port[f"{a}h1"], "role": "master"},
                "h2": {"ip": "10.0.0.2", "mac": "00:00:00:00:00:02", "switch": "s1",
                       "port": port[f"{a}h2"], "role": "helper"},
                "h3": {"ip": "10.0.0.3", "mac": "00:00:00:00:00:03", "switch": "s2",
                       "port": port[f"{b}h3"], "role": "viewer"},
            },
            "links": [{"a": "s1", "a_port": port[f"{a}pb"], "b": "s2",
                       "b_port": port[f"{b}pa"], "delay_ms": 5.0, "bw_mbit": None}],
        }
        path = tmp_path / "topology.json"
        path.write_text(json.dumps(topology, indent=1))
        yield Bench(bridges, NetView.from_dict(topology), path, label)
    finally:
        for name in bridges.values():
            ovs.vsctl("--if-exists", "del-br", name)


def _connect(bench: Bench, port: int) -> None:
    for name in bench.bridges.values():
        ovs.vsctl("set-controller", name, f"tcp:127.0.0.1:{port}")
        ovs.vsctl("set", "Controller", name, "max_backoff=1000", "inactivity_probe=5000")


def _installed(bridge: str, dpid: int) -> list[Rule]:
    return parse_dump_flows(ovs.dump_flows(bridge), dpid)


def _app_rules(bridge: str, dpid: int) -> list[Rule]:
    return [r for r in _installed(bridge, dpid) if r.cookie == COOKIE]


def _matches_core(bench: Bench, key: str) -> bool:
    dpid = DPIDS[key]
    return _app_rules(bench.bridges[key], dpid) == rules_for_dpid(bench.view, dpid)


def _explain(bench: Bench, key: str, ctl: ControllerProcess) -> str:
    dpid = DPIDS[key]
    have, want = _app_rules(bench.bridges[key], dpid), rules_for_dpid(bench.view, dpid)
    extra = [str(r) for r in have if r not in want]
    missing = [str(r) for r in want if r not in have]
    return (f"{bench.bridges[key]}: {len(have)} app rules, {len(want)} expected\n"
            f"missing: {missing}\nextra: {extra}\nlog:\n{ctl.log_tail()}")


def test_switches_hold_exactly_core_rules_across_restart(bench: Bench, tmp_path: Path) -> None:
    a, b, c = bench.bridges["a"], bench.bridges["b"], bench.bridges["c"]
    run = tmp_path / "run"
    env = {"MESHCAST_TOPOLOGY": str(bench.topology), "MESHCAST_RUN": bench.label}
    with ControllerProcess(["l2"], run, env=env) as ctl:
        assert (run / "controller.pid").read_text().strip() == str(ctl.pid)
        _connect(bench, ctl.port)
        try:
            _wait_until(lambda: all(ovs.bridge_connected(n) for n in (a, b, c)),
                        "all bridges are connected")
            _wait_until(lambda: _matches_core(bench, "a") and _matches_core(bench, "b"),
                        "both known switches hold core's rules")
        except BaseException:
            print(_explain(bench, "a", ctl), _explain(bench, "b", ctl), sep="\n")
            raise
        # Nothing but the app's rules, and none on the switch the topology lacks.
        assert _installed(a, DPIDS["a"]) == rules_for_dpid(bench.view, DPIDS["a"])
        assert _installed(b, DPIDS["b"]) == rules_for_dpid(bench.view, DPIDS["b"])
        assert _installed(c, DPIDS["c"]) == []
        log = (run / "controller.log").read_text()
        assert f"dpid {DPIDS['c']:016x} is not in {bench.topology}" in log

        # A stale rule of the app's and a rule of another app, then a controller restart.
        ovs.ofctl("add-flow", a, f"cookie={COOKIE:#x},priority=555,"
                                 "dl_dst=00:00:00:00:00:99,actions=drop")
        ovs.ofctl("add-flow", a, f"cookie={FOREIGN_COOKIE:#x},priority=556,"
                                 "dl_dst=00:00:00:00:00:98,actions=drop")
        ctl.stop()
        assert not (run / "controller.pid").exists()
        assert len(_app_rules(a, DPIDS["a"])) == len(rules_for_dpid(bench.view, DPIDS["a"])) + 1
        restarted = time.monotonic()
        ctl.start()
        _wait_until(lambda: _matches_core(bench, "a") and _matches_core(bench, "b"),
                    "core's rules are back after the restart")
        age = time.monotonic() - restarted
        flows = parse_flow_lines(ovs.dump_flows(a), DPIDS["a"])
        assert all(f.duration_s is not None and f.duration_s <= age + 1
                   for f in flows if f.rule.cookie == COOKIE), "rules were not reinstalled"
        foreign = [f.rule for f in flows if f.rule.cookie == FOREIGN_COOKIE]
        assert len(foreign) == 1, "another app's rule must survive the restart"
        assert _app_rules(b, DPIDS["b"]) == rules_for_dpid(bench.view, DPIDS["b"])
        assert _installed(c, DPIDS["c"]) == []
        pid = ctl.pid
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert not (run / "controller.pid").exists()


def test_ensure_ovs_running_is_idempotent() -> None:
    ovs.ensure_ovs_running()
    assert ovs.ovs_running()
    ovs.ensure_ovs_running()
    assert ovs.ovs_running()
