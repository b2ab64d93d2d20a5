"""The nodes' UDP endpoint stamps each datagram with the kernel's receive time, so a round
trip measured from it leaves out the receiving process's own scheduling delay."""

from __future__ import annotations

import asyncio
import socket
import time

from testbed import stamps
from testbed.nodes import common as C


def test_arrival_is_the_kernel_receive_time_not_the_handling_time() -> None:
    got: list[tuple[bytes, float, float]] = []

    async def main() -> None:
        ep = await C.open_udp(lambda data, addr: got.append((data, ep.arrival, time.time())),
                              "127.0.0.1", 0)
        port = ep.sock.getsockname()[1]
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sent = time.time()
            out.sendto(b"probe", ("127.0.0.1", port))
            time.sleep(0.15)            # the event loop is busy elsewhere
            await asyncio.sleep(0.05)
            got.append((b"sent", sent, 0.0))
            ep.send(b"reply", out.getsockname())
            assert out.recv(16) == b"reply"
        finally:
            out.close()
            ep.close()

    asyncio.run(main())
    (data, arrival, handled), (_, sent, _) = got
    assert data == b"probe"
    assert sent - 0.01 <= arrival <= sent + 0.05   # stamped when it arrived ...
    assert handled - arrival >= 0.14               # ... not when the loop got to it


def test_a_handler_that_raises_does_not_stop_the_endpoint() -> None:
    got: list[bytes] = []

    def handler(data: bytes, addr: tuple) -> None:
        if data == b"bad":
            raise ValueError("bad datagram")
        got.append(data)

    async def main() -> None:
        ep = await C.open_udp(handler, "127.0.0.1", 0)
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for d in (b"bad", b"good"):
                out.sendto(d, ep.sock.getsockname())
            for _ in range(100):
                await asyncio.sleep(0.01)
                if got:
                    break
        finally:
            out.close()
            ep.close()
        assert ep.sock.fileno() == -1

    asyncio.run(main())
    assert got == [b"good"]


def test_kernel_stamp_reads_a_timespec_and_ignores_other_messages() -> None:
    ts = stamps.TIMESPEC.pack(1_700_000_000, 250_000_000)
    assert stamps.kernel_stamp_ns([(socket.SOL_SOCKET, stamps.SO_TIMESTAMPNS, ts)]) \
        == 1_700_000_000_250_000_000
    assert stamps.kernel_stamp_ns([(socket.IPPROTO_IP, 1, b"x" * 16)]) == 0
    assert stamps.kernel_stamp_ns([]) == 0
