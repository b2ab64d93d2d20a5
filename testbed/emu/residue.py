"""Labels on everything the testbed creates, and clean-up by those labels only.

Every process the testbed starts carries the environment variable
``MESHCAST_RUN=<run id>``; every veth end in the root namespace carries the
interface alias ``meshcast:<run id>``; every OVS bridge carries
``external_ids:meshcast-run=<run id>``.  Clean-up finds things by these labels
(never by a process name) and so removes what the testbed made, and only that.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.emu import kernel

LABEL_ENV = "MESHCAST_RUN"
ALIAS_PREFIX = "meshcast:"
OVS_KEY = "meshcast-run"
STATE_DIR = Path(os.environ.get("MESHCAST_STATE_DIR", "/run/meshcast"))


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _ovs_daemon_pids() -> set[int]:
    pids = set()
    for f in Path("/var/run/openvswitch").glob("*.pid"):
        try:
            pids.add(int(f.read_text().strip()))
        except (OSError, ValueError):
            pass
    return pids


def labeled_pids(run: str | None = None) -> dict[int, str]:
    """Processes carrying the run label (any run when ``run`` is None): pid -> run."""
    found: dict[int, str] = {}
    skip = _ancestors() | _ovs_daemon_pids()
    key = LABEL_ENV.encode() + b"="
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in skip:
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(key):
                value = item[len(key):].decode(errors="replace")
                if run is None or value == run:
                    found[int(proc.name)] = value
                break
    return found


def labeled_links(run: str | None = None) -> list[str]:
    """Root-namespace interfaces whose alias carries the run label."""
    res = _run(["ip", "-j", "link", "show"])
    names = []
    for link in json.loads(res.stdout or "[]"):
        alias = link.get("ifalias", "")
        if alias.startswith(ALIAS_PREFIX) and (run is None or alias == ALIAS_PREFIX + run):
            names.append(link["ifname"])
    return names


def labeled_bridges(run: str | None = None) -> list[str]:
    """OVS bridges with the run label in their external_ids."""
    res = _run(["ovs-vsctl", "--format=json", "--columns=name,external_ids", "list", "Bridge"])
    if res.returncode != 0:
        return []
    bridges = []
    for name, ids in json.loads(res.stdout).get("data", []):
        ext = dict(ids[1]) if isinstance(ids, list) and ids[0] == "map" else {}
        if OVS_KEY in ext and (run is None or ext[OVS_KEY] == run):
            bridges.append(name)
    return bridges


def netns_ids() -> set[str]:
    """Network namespaces in use by any process (namespaces die with their last process)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found.add(os.readlink(proc / "ns" / "net"))
            except OSError:
                pass
    return found


def veths() -> set[str]:
    res = _run(["ip", "-j", "link", "show", "type", "veth"])
    # iproute2 6.1 prints an empty object for each link the type filter drops on some
    # kernels (Debian 12's own 6.1: "[{}]" when there is no veth)
    return {link["ifname"] for link in json.loads(res.stdout or "[]") if "ifname" in link}


def all_bridges() -> set[str]:
    res = _run(["ovs-vsctl", "list-br"])
    return set(res.stdout.split()) if res.returncode == 0 else set()


@dataclass
class Snapshot:
    """What exists now that a testbed run could have left behind."""

    netns: set[str] = field(default_factory=set)
    veths: set[str] = field(default_factory=set)
    bridges: set[str] = field(default_factory=set)
    pids: dict[int, str] = field(default_factory=dict)

    @classmethod
    def take(cls) -> Snapshot:
        return cls(netns_ids(), veths(), all_bridges(), labeled_pids())

    def minus(self, before: Snapshot) -> dict[str, list]:
        """What is here now and was not in ``before``; empty lists mean no residue."""
        return {
            "netns": sorted(self.netns - before.netns),
            "veths": sorted(self.veths - before.veths),
            "bridges": sorted(self.bridges - before.bridges),
            "pids": sorted(set(self.pids) - set(before.pids)),
        }


def kill_pids(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
        time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _restore_machine_settings(state_file: Path) -> None:
    """What a run changed on the machine and did not get to put back (it was killed)."""
    try:
        before = json.loads(state_file.read_text()).get("tcp_allowed_before")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(before, str):
        kernel.restore_allowed(before)


def clean(run: str | None = None) -> dict[str, list]:
    """Remove every labelled process, bridge and interface (of one run, or all)."""
    pids = labeled_pids(run)
    kill_pids(sorted(pids))
    bridges = labeled_bridges(run)
    for br in bridges:
        _run(["ovs-vsctl", "--if-exists", "del-br", br])
    links = labeled_links(run)
    for name in links:
        _run(["ip", "link", "del", name])
    if run is None:  # no network is running (clean refuses otherwise): OVS as it was found
        from testbed.emu.ovs import release_left_pmd_sleep

        release_left_pmd_sleep()
    states = []
    if STATE_DIR.is_dir():
        for f in STATE_DIR.glob("*.json"):
            if run is None or f.stem == run:
                _restore_machine_settings(f)
                f.unlink(missing_ok=True)
                states.append(f.stem)
    return {"processes": sorted(pids), "bridges": bridges, "links": links, "states": states}
