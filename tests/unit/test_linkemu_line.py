"""The userspace emulator's delay line: bounded (drops counted) and honest about stalls
(overdue frames and back-to-back bursts counted).  No sockets: fake ends stand in."""

from __future__ import annotations

import time

from testbed.core.linkmodel import Direction
from testbed.core.spec import LinkParams
from testbed.emu import linkemu
from testbed.emu.linkemu import Emulator, Lane, line_limit


class End:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.frames.append(data)
        return len(data)


def emulator() -> Emulator:
    emu = Emulator.__new__(Emulator)
    emu.heap, emu.seq, emu.early_ns = [], 0, 0
    return emu


def lane(delay_ms: float = 10.0, limit: int | None = None) -> Lane:
    return Lane("s1-s2:ab", End(), End(), Direction.make(LinkParams(delay_ms=delay_ms), 1),
                limit=limit)


def test_the_line_holds_netems_limit() -> None:
    assert line_limit(LinkParams(delay_ms=10)) == 1000
    assert line_limit(LinkParams(delay_ms=10, queue_pkts=50)) == 50
    # 10 Mbit/s x 20 ms one way = 25 kB in flight: 17 full frames on top of the queue
    assert line_limit(LinkParams(delay_ms=20, bw_mbit=10, queue_pkts=100)) == 117
    assert lane().limit == 1000


def test_a_full_line_drops_and_counts_and_frees_as_frames_leave() -> None:
    emu, ln = emulator(), lane(delay_ms=0.0, limit=3)
    now = time.time_ns()
    for i in range(5):
        emu.admit(ln, now, bytes([i]))
    assert ln.queued == 3 and ln.overflow == 2 and len(emu.heap) == 3
    emu._send_due()
    assert ln.dst.frames == [b"\x00", b"\x01", b"\x02"] and ln.queued == 0
    emu.admit(ln, time.time_ns(), b"x")
    assert ln.queued == 1 and ln.overflow == 2
    assert ln.report()["overflow"] == 2 and ln.report()["limit"] == 3


def test_frames_released_after_a_stall_are_counted_as_an_overdue_burst() -> None:
    emu, ln = emulator(), lane(delay_ms=1.0)
    stalled = time.time_ns() - 50_000_000  # they arrived 50 ms ago: the process slept
    for i in range(4):
        emu.admit(ln, stalled + i * 1000, bytes([i]))
    emu._send_due()
    assert len(ln.dst.frames) == 4
    assert ln.overdue == 4 and ln.bursts == 1 and ln.max_burst == 4
    r = ln.report()
    assert (r["overdue"], r["bursts"], r["max_burst"]) == (4, 1, 4)


def test_only_frames_sent_over_a_millisecond_late_are_overdue(monkeypatch) -> None:
    clock = [1_000_000_000_000]
    monkeypatch.setattr(linkemu.time, "time_ns", lambda: clock[0])
    emu, ln = emulator(), lane(delay_ms=2.0)
    t0 = clock[0]
    for i in range(3):
        emu.admit(ln, t0, bytes([i]))
    emu._send_due()
    assert ln.dst.frames == []                     # not due yet
    clock[0] = t0 + 2_500_000                      # 0.5 ms after their time
    emu._send_due()
    assert len(ln.dst.frames) == 3 and ln.overdue == 0 and ln.bursts == 0
    emu.admit(ln, clock[0], b"late")
    clock[0] += 2_000_000 + 1_500_000              # 1.5 ms after its time, alone
    emu._send_due()
    assert ln.overdue == 1 and ln.bursts == 0 and ln.max_burst == 0
