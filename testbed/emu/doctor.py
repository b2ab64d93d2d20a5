"""``testbed doctor``: what this machine offers the testbed, and how to fix the rest."""

from __future__ import annotations

import importlib
import platform
import shutil
import time

from rich.console import Console
from rich.table import Table

from testbed.core.measure import idle_fraction
from testbed.emu import kernel
from testbed.emu.ovs import ensure_ovs_running, ovs_running


def _datapaths() -> str:
    import subprocess

    res = subprocess.run(["ovs-vsctl", "get", "Open_vSwitch", ".", "datapath_types"],
                         capture_output=True, text=True, check=False)
    return res.stdout.strip() or "?"


def run_doctor(console: Console) -> int:
    """Print a table of checks; return 1 if something the testbed needs is missing."""
    rows: list[tuple[str, bool, str, str]] = []  # check, ok, detail, fix

    def add(check: str, ok: bool, detail: str, fix: str = "") -> None:
        rows.append((check, ok, detail, fix))

    root = kernel.is_root()
    add("root", root, "yes" if root else "no", "run with sudo")
    py = platform.python_version()
    add("python", tuple(map(int, py.split(".")[:2])) >= (3, 9), py)
    for mod, fix in (("mininet.net", "apt-get install mininet (sudo make setup)"),
                     ("os_ken", "pip install os-ken (sudo make setup)")):
        try:
            importlib.import_module(mod)
            add(f"import {mod.split('.')[0]}", True, "ok")
        except Exception as exc:  # report any import failure
            add(f"import {mod.split('.')[0]}", False, str(exc), fix)
    for tool in ("ovs-vsctl", "tc", "ethtool", "iperf3", "ping", "mnexec"):
        path = shutil.which(tool)
        add(f"tool {tool}", bool(path), path or "missing", "sudo make setup")
    if root:
        netem = kernel.has_netem()
        add("kernel netem", True, "yes" if netem else
            "no: links use the userspace link emulator")
        ovsmod = kernel.has_ovs_module()
        add("kernel openvswitch module", True, "yes" if ovsmod else
            "no: bridges use the userspace datapath (checksum offloads are switched off)")
        was = ovs_running()
        if not was and shutil.which("ovs-vsctl"):
            ensure_ovs_running()
        now = ovs_running()
        add("Open vSwitch running", now,
            ("running" if was else "started now") if now else "not running",
            "/usr/share/openvswitch/scripts/ovs-ctl start")
        if now:
            add("OVS datapath types", True, _datapaths())
    before = kernel.cpu_times()
    time.sleep(0.5)
    idle = idle_fraction(before, kernel.cpu_times())
    add("CPU idle now", idle >= 0.35, f"{idle:.0%}",
        "measurements need >= 35% idle: stop other load")
    import os

    add("CPUs", (os.cpu_count() or 1) >= 2, str(os.cpu_count()), "give the VM 2 or more CPUs")

    t = Table(title="testbed doctor")
    for col in ("check", "status", "detail", "how to fix"):
        t.add_column(col)
    for check, ok, detail, fix in rows:
        t.add_row(check, "[green]ok[/]" if ok else "[red]missing[/]", detail, "" if ok else fix)
    console.print(t)
    return 0 if all(ok for _, ok, _, _ in rows) else 1
