"""What this kernel can do for link emulation, found by trying it."""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from pathlib import Path


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@functools.lru_cache(maxsize=1)
def has_netem() -> bool:
    """True when ``tc ... netem`` works: tried on a throw-away dummy interface."""
    name = "mcchk" + uuid.uuid4().hex[:8]
    if _run(["ip", "link", "add", name, "type", "dummy"]).returncode != 0:
        return False
    try:
        res = _run(["tc", "qdisc", "add", "dev", name, "root", "netem", "delay", "1ms"])
        return res.returncode == 0
    finally:
        _run(["ip", "link", "del", name])


def has_ovs_module() -> bool:
    """True when the openvswitch kernel datapath is loaded or loadable."""
    if Path("/sys/module/openvswitch").exists():
        return True
    return _run(["modprobe", "-q", "openvswitch"]).returncode == 0


AF_XDP = 44  # socket family of XDP sockets (not in Python's socket module)


@functools.lru_cache(maxsize=1)
def has_xdp_sockets() -> bool:
    """True when this kernel opens XDP sockets (``CONFIG_XDP_SOCKETS``)."""
    import socket

    try:
        socket.socket(AF_XDP, socket.SOCK_RAW, 0).close()
    except OSError:
        return False
    return True


def resolve_link_mode(mode: str) -> str:
    """``auto`` becomes ``netem`` where the kernel has it, else ``userspace``."""
    if mode == "auto":
        return "netem" if has_netem() else "userspace"
    if mode == "netem" and not has_netem():
        raise RuntimeError(
            "link mode netem: this kernel has no sch_netem (use mode auto or userspace)"
        )
    return mode


AVAILABLE_CC = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")


def ensure_congestion_control(name: str) -> None:
    """Make TCP congestion control ``name`` available (loading ``tcp_<name>`` if need be),
    or say in one line why it cannot be."""
    if name in AVAILABLE_CC.read_text().split():
        return
    _run(["modprobe", "-q", f"tcp_{name}"])
    available = AVAILABLE_CC.read_text().split()
    if name not in available:
        raise RuntimeError(f"links.tcp_congestion: {name!r} is not available on this kernel "
                           f"(it has {', '.join(available)})")


ALLOWED_CC = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control")


def allow_congestion_control(name: str) -> str | None:
    """Let network namespaces take ``name`` as their default: outside the first namespace
    the kernel refuses (EPERM) any congestion control not in the allowed list.  Returns
    the list as it was when ``name`` had to be added (for :func:`restore_allowed`), else
    None."""
    before = ALLOWED_CC.read_text().strip()
    if name in before.split():
        return None
    ALLOWED_CC.write_text(f"{before} {name}".strip() + "\n")
    return before


def restore_allowed(before: str | None) -> None:
    """Put back the allowed list :func:`allow_congestion_control` changed."""
    if before is not None:
        ALLOWED_CC.write_text(before + "\n")


def is_root() -> bool:
    return os.geteuid() == 0


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(x) for x in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return idle, sum(values[:8])
