"""How far the integration tests' timing tolerances widen: ``MESHCAST_TIMING_SLACK``.

A factor, 1 unless set.  It multiplies the bounds on how long something may take (joins,
failovers, path moves, the waits before a check) and how far a measured latency or rate may
stray from the configured one.  It never touches a function check: qdiscs and classes in
place, flows and groups installed, packets delivered, loss and delay present.

``make vm-check`` sets it (vm/check.sh's ``TCG_SLACK``) only when its guest runs under
QEMU's TCG, which executes the guest several times slower than real hardware and fires its
timers late; on the host and under KVM it stays 1, the tolerances as written.
"""

import os

ENV = "MESHCAST_TIMING_SLACK"


def _slack() -> float:
    raw = os.environ.get(ENV, "1")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: not a number") from None
    if not 1.0 <= value <= 10.0:
        raise ValueError(f"{ENV}={raw!r}: must be from 1 to 10")
    return value


SLACK = _slack()


def widened(bound: float) -> float:
    """A time bound (seconds) or a tolerance, times the slack."""
    return bound * SLACK
