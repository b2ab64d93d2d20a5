"""The link emulator's receive ring on a real veth pair: every frame read once, whole and in
order across many turns of the ring, stamped with its arrival time; frames that find the
ring full are dropped by the kernel and counted, never read twice or torn."""

import os
import select
import socket
import subprocess
import time
from pathlib import Path

import pytest

from testbed.core.linkmodel import Direction
from testbed.core.spec import LinkParams
from testbed.emu import linkemu as L

ETH = bytes([0xFF] * 6 + [2, 0, 0, 0, 0, 1] + [0x88, 0xB5])  # broadcast, local experimental


@pytest.fixture
def relay_pair():
    a, b = f"rgA{os.getpid() % 100000}", f"rgB{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        for dev in (a, b):  # no IPv6 of their own: the frames are the test's only
            Path(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").write_text("1\n")
            subprocess.run(["ip", "link", "set", dev, "up"], check=True)
        yield a, b
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)


@pytest.fixture
def relay(relay_pair):
    """The emulator reading relay end ``a`` through its ring, a raw sender on ``b``."""
    a, b = relay_pair
    sock = L.open_relay_socket(a)
    emu = L.Emulator.__new__(L.Emulator)
    emu.heap, emu.seq, emu.early_ns = [], 0, 0
    # frames stay in the delay line: nothing is sent, so the lane's far end is unused
    lane = L.Lane("t:ab", sock, sock, Direction.make(LinkParams(delay_ms=1), 1), limit=10**6)
    lane.ring = L.RxRing(sock, L.interface_mtu(a))
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((b, 0))
    try:
        yield sock, emu, lane, tx
    finally:
        tx.close()
        lane.ring.close()
        sock.close()


def drain(emu, lane) -> None:
    for _ in range(200):
        emu._read(lane)


def test_every_frame_is_read_once_whole_and_in_order(relay):
    sock, emu, lane, tx = relay
    assert lane.ring.size == 2048 and lane.ring.count == L.RING_BYTES // 2048
    frames = [ETH + bytes([i % 251]) * (46 + i % 1440) for i in range(3 * lane.ring.count)]
    t0 = time.time_ns()
    for f in frames:
        tx.send(f)
        if select.select([sock.fileno()], [], [], 0)[0]:
            emu._read(lane)
    time.sleep(0.05)
    drain(emu, lane)
    t1 = time.time_ns()
    got = sorted(emu.heap, key=lambda e: e[1])  # in the order they were admitted
    assert [e[3] for e in got] == frames
    assert lane.oversize == 0 and L.ring_drops(sock) == 0
    # stamped on arrival (departure = arrival + 1 ms, no jitter), in arrival order
    departures = [e[0] for e in got]
    assert departures == sorted(departures)
    assert t0 + 1_000_000 <= departures[0] and departures[-1] <= t1 + 1_000_000
    assert not select.select([sock.fileno()], [], [], 0)[0]  # nothing left unread


def test_a_full_ring_drops_and_counts_what_it_cannot_hold(relay):
    sock, emu, lane, tx = relay
    n = lane.ring.count + 300
    frames = [ETH + i.to_bytes(4, "big") + bytes(60) for i in range(n)]
    for f in frames:  # the emulator stalled: nobody reads
        tx.send(f)
    time.sleep(0.05)
    drain(emu, lane)
    got = [e[3] for e in sorted(emu.heap, key=lambda e: e[1])]
    assert got == frames[:lane.ring.count]  # the first ones, whole, once
    assert L.ring_drops(sock) == 300
    # the ring turns again after the stall
    tx.send(frames[0])
    time.sleep(0.01)
    drain(emu, lane)
    assert len(emu.heap) == lane.ring.count + 1
