"""Open vSwitch from the outside: is it running, start it, and small ovs-vsctl/ovs-ofctl calls.

OVS does not start by itself on machines without an init system; ``ovs-ctl`` starts the
database and switch daemons (the kernel module is skipped where there is none, so bridges
must use ``datapath_type=netdev``).
"""

from __future__ import annotations

import shutil
import subprocess

OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"
OPENFLOW = "OpenFlow13"


class OvsError(RuntimeError):
    """An OVS command failed; the message holds the command and its error output."""


def _run(args: list[str], timeout: float = 30.0) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise OvsError(f"{args[0]}: not installed (apt-get install openvswitch-switch)") from None
    except subprocess.TimeoutExpired:
        raise OvsError(f"{' '.join(args)}: no answer within {timeout:g} s") from None
    if done.returncode != 0:
        err = (done.stderr or done.stdout).strip().splitlines()
        raise OvsError(f"{' '.join(args)}: {err[-1] if err else f'exit {done.returncode}'}")
    return done.stdout


def ovs_installed() -> bool:
    """True if the OVS command-line tools are on PATH."""
    return all(shutil.which(tool) for tool in ("ovs-vsctl", "ovs-ofctl"))


def ovs_running() -> bool:
    """True if ``ovs-vsctl show`` gets an answer from the OVS database and the switch
    daemon answers too (a database without ovs-vswitchd forwards nothing)."""
    try:
        vsctl("--timeout=5", "show", timeout=10)
        _run(["ovs-appctl", "-t", "ovs-vswitchd", "--timeout=5", "version"], timeout=10)
    except OvsError:
        return False
    return True


def ensure_ovs_running(timeout: float = 60.0) -> None:
    """Start the OVS daemons with ``ovs-ctl`` unless they already answer."""
    if ovs_running():
        return
    if not ovs_installed():
        raise OvsError("Open vSwitch is not installed (apt-get install openvswitch-switch)")
    _run([OVS_CTL, "start", "--system-id=random"], timeout=timeout)
    if not ovs_running():
        raise OvsError(f"{OVS_CTL} start ran, but ovs-vsctl show still fails")


def vsctl(*args: str, timeout: float = 30.0) -> str:
    """Run ``ovs-vsctl ARGS``; its stdout, or :class:`OvsError`."""
    return _run(["ovs-vsctl", *args], timeout=timeout)


def ofctl(*args: str, timeout: float = 30.0) -> str:
    """Run ``ovs-ofctl -O OpenFlow13 ARGS``; its stdout, or :class:`OvsError`."""
    return _run(["ovs-ofctl", "-O", OPENFLOW, *args], timeout=timeout)


def dump_flows(bridge: str) -> str:
    """``dump-flows`` text with numeric ports, for :mod:`testbed.core.ofdump`."""
    return ofctl("--no-names", "dump-flows", bridge)


def ofport(interface: str) -> int:
    """The OpenFlow port number OVS gave ``interface`` (OvsError until it has one)."""
    value = vsctl("get", "Interface", interface, "ofport").strip()
    if not value.lstrip("-").isdigit() or int(value) < 1:
        raise OvsError(f"interface {interface}: no OpenFlow port yet (ofport={value})")
    return int(value)


def interface_types() -> set[str]:
    """The interface types this Open vSwitch build offers (``afxdp``, ``system``, ...)."""
    try:
        value = vsctl("get", "Open_vSwitch", ".", "iface_types", timeout=10)
    except OvsError:
        return set()
    return {t.strip() for t in value.strip().strip("[]").split(",") if t.strip()}


#: OVS's load-based sleeping for polling (PMD) threads: a pass that finds fewer than 16
#: frames waiting on every port sleeps a little longer, up to this many microseconds (3.1
#: calls the key ``pmd-maxsleep``, later releases ``pmd-sleep-max``).  100 us keeps the
#: added latency within a switch's own spread while the thread stays mostly asleep.
PMD_SLEEP_US = 100
PMD_SLEEP_KEYS = ("pmd-maxsleep", "pmd-sleep-max")


#: ``Open_vSwitch . external_ids`` key naming the sleep keys a network set, so that a later
#: network also removes them when the one that set them was killed before its stop
PMD_SLEEP_MARK = "meshcast-pmd-sleep"


def _setting(column: str, key: str) -> str | None:
    """``Open_vSwitch . column:key`` (``other_config``, ``external_ids``), None if unset."""
    try:
        value = vsctl("--if-exists", "get", "Open_vSwitch", ".", f"{column}:{key}",
                      timeout=10).strip()
    except OvsError:
        return None
    return value.strip('"') if value else None


def claim_pmd_sleep(us: int = PMD_SLEEP_US) -> tuple[int | None, list[str]]:
    """Let PMD threads sleep when their ports are nearly idle: (the max sleep in force, if
    a plain number, and the keys set here, for :func:`release_pmd_sleep`).  A value the
    machine's owner set is kept."""
    ours = (_setting("external_ids", PMD_SLEEP_MARK) or "").split(";")
    for key in PMD_SLEEP_KEYS:
        value = _setting("other_config", key)
        if value is not None:  # the owner's, or a killed network's (still ours to remove)
            return (int(value) if value.isdigit() else None), [k for k in ours if k]
    vsctl("set", "Open_vSwitch", ".", *(f"other_config:{k}={us}" for k in PMD_SLEEP_KEYS),
          f'external_ids:{PMD_SLEEP_MARK}="{";".join(PMD_SLEEP_KEYS)}"')
    return us, list(PMD_SLEEP_KEYS)


def release_pmd_sleep(keys: list[str]) -> None:
    """Remove the keys :func:`claim_pmd_sleep` set (OVS as it was found)."""
    if not keys:
        return
    for column, key in [*(("other_config", k) for k in keys), ("external_ids", PMD_SLEEP_MARK)]:
        try:
            vsctl("remove", "Open_vSwitch", ".", column, key, timeout=10)
        except OvsError:
            pass


def release_left_pmd_sleep() -> list[str]:
    """Remove the PMD sleep keys a network set and did not get to remove (it was killed);
    the keys it removed.  Nothing when Open vSwitch is not running."""
    if shutil.which("ovs-vsctl") is None:
        return []
    keys = [k for k in (_setting("external_ids", PMD_SLEEP_MARK) or "").split(";") if k]
    release_pmd_sleep(keys)
    return keys


def bridge_connected(bridge: str) -> bool:
    """True if ``bridge`` has controllers and every one reports ``is_connected``."""
    value = vsctl("get", "Bridge", bridge, "controller").strip().strip("[]")
    ids = [u.strip() for u in value.split(",") if u.strip()]
    return bool(ids) and all(
        vsctl("get", "Controller", u, "is_connected").strip() == "true" for u in ids
    )
