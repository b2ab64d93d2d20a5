"""Kernel receive timestamps (``SO_TIMESTAMPNS``), shared by the link emulator and the
nodes: the kernel stamps every datagram or frame with its receive time (``CLOCK_REALTIME``,
a ``struct timespec`` in the ancillary data), so the time it waits to be read is not
counted as time on the wire."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

#: Linux (asm-generic) value; Python does not export it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@qq")
#: ancillary buffer size for ``recvmsg`` to receive the stamp
ANC_SIZE = socket.CMSG_SPACE(TIMESPEC.size)


def enable(sock: socket.socket) -> bool:
    """Ask the kernel to stamp what ``sock`` receives; False where it cannot."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def kernel_stamp_ns(ancillary: Iterable[tuple[int, int, bytes]]) -> int:
    """The receive time (wall clock, ns) in ``recvmsg``'s ancillary data, or 0."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS \
                and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return 0
