"""Measure each switch's one-way forwarding time with probe frames.

Per switch: two veth pairs whose inner ends become ports of the bridge (of the same type
as its other ports, unshaped), one flow from the first port to the second under a cookie
of its own, then frames sent into one pair and taken out of the other, time-stamped by
the kernel on arrival.  Every switch is probed at once, one frame per switch per round.
Everything made here is removed before returning, even after an error; the interfaces
carry the run's label, so ``testbed clean`` finds them after a crash.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

from testbed.core.floor import NOMINAL_USERSPACE_MS, SwitchLatency, summarise
from testbed.emu import residue
from testbed.emu.kernel import has_ovs_module
from testbed.emu.ovs import OvsError, ofctl, ofport, vsctl
from testbed.stamps import ANC_SIZE, SO_TIMESTAMPNS, kernel_stamp_ns

ETHERTYPE = 0x88B5  # IEEE local experimental
COOKIE = 0x6D63737770726F62  # "mcswprob"
FRAME_LEN = 98  # the size of a ping
HEADER = struct.Struct("!6s6sHHIQ")  # dst, src, type, switch index, sequence, sent ns
FLOOR_CACHE = residue.STATE_DIR / "cache" / "switch-latency.json"  # the last one measured here
DST_MAC = bytes.fromhex("020000000002")
SRC_MAC = bytes.fromhex("020000000001")


@dataclass
class _Pair:
    switch: str
    index: int
    tx: str       # root-side end we send into
    tx_port: str  # its peer, a port of the bridge
    rx: str
    rx_port: str
    send: socket.socket | None = None
    recv: socket.socket | None = None


def _ip(cmds: Iterable[str]) -> None:
    batch = "".join(f"{c}\n" for c in cmds)
    res = subprocess.run(["ip", "-batch", "-"], input=batch, text=True, capture_output=True,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"switch probe: ip: {res.stderr.strip()}")


def measure(switches: list[str], tag: str, run_label: str, port_type: str = "",
            samples: int = 100, interval_s: float = 0.002,
            timeout_s: float = 0.05) -> dict[str, SwitchLatency]:
    """One-way forwarding time of every bridge in ``switches`` (those with no sample
    left out).  ``tag`` keeps interface names unique; ``port_type`` as the bridges' own
    ports (empty: OVS's default)."""
    pairs = [_Pair(sw, i, f"mq{tag}{i}t", f"mq{tag}{i}T", f"mq{tag}{i}r", f"mq{tag}{i}R")
             for i, sw in enumerate(switches)]
    try:
        _build(pairs, run_label, port_type)
        return _probe(pairs, samples, interval_s, timeout_s)
    finally:
        _remove(pairs)


def _build(pairs: list[_Pair], run_label: str, port_type: str) -> None:
    cmds = []
    for p in pairs:
        for end, peer in ((p.tx, p.tx_port), (p.rx, p.rx_port)):
            cmds += [f"link add {end} type veth peer name {peer}",
                     f"link set dev {end} alias {residue.ALIAS_PREFIX}{run_label}",
                     f"link set dev {peer} alias {residue.ALIAS_PREFIX}{run_label}",
                     f"link set dev {end} up", f"link set dev {peer} up"]
    _ip(cmds)
    args: list[str] = []
    for p in pairs:
        for port in (p.tx_port, p.rx_port):
            args += ["--", "add-port", p.switch, port]
            if port_type:
                args += ["--", "set", "Interface", port, f"type={port_type}"]
    vsctl(*args)
    for p in pairs:
        ofctl("add-flow", p.switch,
              f"cookie={COOKIE:#x},priority=65535,in_port={_wait_ofport(p.tx_port)},"
              f"actions=output:{_wait_ofport(p.rx_port)}")
        p.send = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
        p.send.bind((p.tx, 0))
        p.recv = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
        p.recv.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        p.recv.bind((p.rx, ETHERTYPE))
        p.recv.setblocking(False)


def _wait_ofport(interface: str, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ofport(interface)
        except OvsError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _probe(pairs: list[_Pair], samples: int, interval_s: float,
           timeout_s: float) -> dict[str, SwitchLatency]:
    by_fd = {p.recv.fileno(): p for p in pairs}
    sent: dict[tuple[int, int], int] = {}
    got: dict[int, list[float]] = {p.index: [] for p in pairs}
    pad = b"\0" * (FRAME_LEN - HEADER.size)
    # a few frames first, so that flows and caches are warm before counting
    for seq in range(-3, samples):
        for p in pairs:
            t = time.time_ns()
            p.send.send(HEADER.pack(DST_MAC, SRC_MAC, ETHERTYPE, p.index, seq & 0xFFFFFFFF,
                                    t) + pad)
            sent[(p.index, seq & 0xFFFFFFFF)] = t
        deadline = time.monotonic() + (interval_s if seq < samples - 1 else timeout_s)
        _collect(by_fd, sent, got, deadline, warm=seq < 0)
    out = {}
    for p in pairs:
        summary = summarise(got[p.index], lost=samples - len(got[p.index]))
        if summary is not None:
            out[p.switch] = summary
    return out


def _collect(by_fd: dict, sent: dict, got: dict, deadline: float, warm: bool) -> None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select(list(by_fd), [], [], left)
        for fd in ready:
            p = by_fd[fd]
            while True:
                try:
                    data, anc, _, _ = p.recv.recvmsg(2048, ANC_SIZE)
                except BlockingIOError:
                    break
                if len(data) < HEADER.size:
                    continue
                _, _, _, index, seq, t_sent = HEADER.unpack_from(data)
                if sent.pop((index, seq), None) != t_sent or warm or index != p.index:
                    continue
                arrival = kernel_stamp_ns(anc) or time.time_ns()
                got[index].append((arrival - t_sent) / 1e6)


def _remove(pairs: list[_Pair]) -> None:
    for p in pairs:
        for s in (p.send, p.recv):
            if s is not None:
                s.close()
        try:
            ofctl("del-flows", p.switch, f"cookie={COOKIE:#x}/-1")
        except OvsError:
            pass
    args: list[str] = []
    for p in pairs:
        for port in (p.tx_port, p.rx_port):
            args += ["--", "--if-exists", "del-port", p.switch, port]
    if args:
        try:
            vsctl(*args)
        except OvsError:
            pass
    for p in pairs:
        for end in (p.tx, p.rx):
            subprocess.run(["ip", "link", "del", end], capture_output=True, check=False)


def platform_estimate() -> tuple[float, str]:
    """(one-way ms per switch, where it comes from) for warnings before any network is
    built: nothing on the kernel datapath, else the last measurement on this machine or
    a nominal figure."""
    if has_ovs_module():
        return 0.0, "kernel datapath"
    try:
        cached = json.loads(FLOOR_CACHE.read_text())
        if cached.get("datapath") == "user" and cached.get("median_ms") is not None:
            return float(cached["median_ms"]), "userspace switches, as last measured here"
    except (OSError, ValueError, TypeError):
        pass
    return NOMINAL_USERSPACE_MS, "userspace switches, nominal"
