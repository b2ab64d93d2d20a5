"""The kernel accepts every tc command the plan renders, and classifies as planned.

No Mininet: a veth pair between two throw-away namespaces, the plan applied to one end.
Userspace mode is applied for real; netem mode only where the kernel has sch_netem (its
rendering is unit-tested).
"""

import os
import shlex
import subprocess

import pytest

from testbed.core.protocol import PUSH_PORT
from testbed.core.spec import LinkParams
from testbed.emu import tc
from testbed.emu.kernel import has_netem

MODES = ["userspace", pytest.param("netem", marks=pytest.mark.skipif(
    not has_netem(), reason="this kernel has no sch_netem; netem rendering is unit-tested"))]
LINKS = {
    "10M-5ms": LinkParams(delay_ms=5, bw_mbit=10),
    "10M-5ms-q50": LinkParams(delay_ms=5, bw_mbit=10, queue_pkts=50),
    "1M-jitter-loss": LinkParams(delay_ms=20, jitter_ms=2, loss_pct=1, bw_mbit=1),
    "250k": LinkParams(bw_mbit=0.25),
    "q30-no-rate": LinkParams(queue_pkts=30),
    "delay-no-rate": LinkParams(delay_ms=3),
}
NEAR, FAR = "10.99.0.1", "10.99.0.2"


def _run(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(shlex.split(cmd), capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        pytest.fail(f"'{cmd}' failed: {res.stderr.strip()}")
    return res


@pytest.fixture
def veth():
    """(namespace, interface): ``pa`` in one new namespace, its peer ``pb`` in another."""
    near, far = f"tcprobe-{os.getpid()}", f"tcprobe-{os.getpid()}-b"
    try:
        for ns in (near, far):
            _run(f"ip netns add {ns}")
        _run(f"ip -n {near} link add pa type veth peer name pb netns {far}")
        for ns, dev, addr in ((near, "pa", NEAR), (far, "pb", FAR)):
            _run(f"ip -n {ns} addr add {addr}/24 dev {dev}")
            _run(f"ip -n {ns} link set {dev} up")
        yield near, "pa"
    finally:
        for ns in (near, far):
            _run(f"ip netns del {ns}", check=False)
        assert "tcprobe-" not in _run("ip netns list").stdout


def _show(ns: str, dev: str, part: str) -> str:
    return _run(f"ip netns exec {ns} tc -s {part} show dev {dev}").stdout


def _apply(ns: str, dev: str, params: LinkParams, mode: str) -> tc.ShapingPlan:
    for cmd in tc.tc_commands(dev, params, mode):
        res = _run(f"ip netns exec {ns} {cmd}")
        assert not res.stderr.strip(), f"'{cmd}': {res.stderr.strip()}"
    return tc.shaping_plan(params, mode)


def _problems(ns: str, dev: str, plan: tc.ShapingPlan) -> list[str]:
    return tc.shaping_problems(plan, *(_show(ns, dev, p) for p in ("qdisc", "class", "filter")))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("link", sorted(LINKS))
def test_every_command_is_accepted_and_the_plan_reads_back(veth, mode, link):
    ns, dev = veth
    plan = _apply(ns, dev, LINKS[link], mode)
    assert _problems(ns, dev, plan) == []
    if not plan.qdiscs:
        return
    # links re-shape after their root qdisc is deleted (Open vSwitch, set_link)
    _run(f"ip netns exec {ns} tc qdisc del dev {dev} root")
    assert _problems(ns, dev, plan)
    _apply(ns, dev, LINKS[link], mode)
    assert _problems(ns, dev, plan) == []


def _connect(ns: str, port: int) -> None:
    """One TCP SYN (nothing listens: the peer answers with a reset)."""
    _run(f"ip netns exec {ns} timeout 3 bash -c 'echo >/dev/tcp/{FAR}/{port}'", check=False)


def test_tcp_to_the_push_port_and_nothing_else_goes_to_the_push_class(veth):
    ns, dev = veth
    _apply(ns, dev, LinkParams(delay_ms=5, bw_mbit=10), tc.USERSPACE)
    _run(f"ip netns exec {ns} ping -n -q -c 3 -i 0.2 {FAR}")
    for port in (5201, PUSH_PORT + 1, 80):
        _connect(ns, port)
    sent = {c.classid: c.sent_bytes for c in tc.parse_classes(_show(ns, dev, "class"))}
    assert sent[tc.PUSH_CLASS] == 0 and sent[tc.NORMAL_CLASS] > 0, sent
    for _ in range(2):
        _connect(ns, PUSH_PORT)
    after = {c.classid: c.sent_bytes for c in tc.parse_classes(_show(ns, dev, "class"))}
    assert after[tc.PUSH_CLASS] >= 2 * 60, after  # two SYNs at least
    assert after[tc.NORMAL_CLASS] - sent[tc.NORMAL_CLASS] < 200, (sent, after)  # ARP at most
