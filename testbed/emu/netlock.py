"""One emulated network per machine at a time.

Mininet names its interfaces after the nodes (``s2-eth1``) in the root namespace, and its
clean-up removes whatever carries those names, so two networks built at once on one machine
break each other: the second fails with "File exists", or tears down the first's links.  A
network holds this lock, an exclusive ``flock`` on a file under ``/run``, from before it
builds anything until it has removed all of it; a second one waits for it, saying whose turn
it is, instead of failing.  The lock is re-entrant within a process, so a test that holds it
around a whole network's life (and its residue check) can build the network inside, and a
process started while it is held (``testbed up`` run by a test) borrows its parent's turn.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_ENV = "MESHCAST_NET_LOCK"
TIMEOUT_ENV = "MESHCAST_NET_LOCK_TIMEOUT_S"
HELD_ENV = "MESHCAST_NET_LOCK_HELD"  # the holder's pid, for the processes it starts
DEFAULT_LOCK = "/run/meshcast-testbed/network.lock"
DEFAULT_TIMEOUT_S = 3 * 3600.0

_guard = threading.Lock()
_depth = 0
_fd: int | None = None


class NetworkBusy(RuntimeError):
    """Another process kept the machine's network longer than we were willing to wait."""


def lock_path() -> Path:
    return Path(os.environ.get(LOCK_ENV, DEFAULT_LOCK))


def holder(path: Path | None = None) -> str:
    """Who holds (or last held) the lock, as written by its holder ('' if unknown)."""
    try:
        return (path or lock_path()).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _borrowed(path: Path) -> bool:
    """True if an ancestor that holds the lock started this process while holding it."""
    pid = os.environ.get(HELD_ENV, "")
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return holder(path).split()[:2] == ["pid", pid]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def acquire(label: str = "", timeout_s: float | None = None,
            say: Callable[[str], None] = _say, poll_s: float = 0.5) -> None:
    """Take the machine's network lock, waiting up to ``timeout_s`` for its holder."""
    global _depth, _fd
    with _guard:
        if _depth:
            _depth += 1
            return
        path = lock_path()
        if _borrowed(path):
            _depth = 1  # _fd stays None: nothing to unlock
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if timeout_s is None:
            timeout_s = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise NetworkBusy(f"another testbed network holds {path} "
                                      f"({holder(path) or 'holder unknown'}) after "
                                      f"{timeout_s:.0f} s of waiting") from None
                if not told:
                    say(f"waiting for another testbed network on this machine to finish "
                        f"({holder(path) or 'holder unknown'})")
                    told = True
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} {label}".strip().encode() + b"\n", 0)
        _fd, _depth = fd, 1
        os.environ[HELD_ENV] = str(os.getpid())


def release() -> None:
    """Give one level of the lock back; the last one unlocks it."""
    global _depth, _fd
    with _guard:
        if not _depth:
            return
        _depth -= 1
        if _depth or _fd is None:
            return
        fd, _fd = _fd, None
        os.environ.pop(HELD_ENV, None)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def network_lock(label: str = "", timeout_s: float | None = None) -> Iterator[None]:
    acquire(label, timeout_s)
    try:
        yield
    finally:
        release()
