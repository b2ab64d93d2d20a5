"""What a run directory's ``manifest.json`` records: enough to reproduce and to trust it.

The scenario as run, its policy and seed, the code's commit, the versions of the packages
that shape the results, the host, the link mode, the fidelity check of the network it ran
on, the CPU verdict, the phases' timings and a digest of the viewers' planned trace (runs
with equal digests played the same sessions).  ``status`` is "complete" only once the run's
tables are written: a sweep or a comparison trusts nothing else when it resumes.  The
commit, packages and host are read once per process (the code that runs is the code that
was loaded).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("os-ken", "networkx", "pandas", "numpy", "scikit-learn", "scipy", "joblib",
            "matplotlib", "scapy", "aiohttp", "PyYAML", "pyarrow", "typer", "rich",
            "cryptography")
COMPLETE = "complete"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def commit() -> dict:
    """The checkout's commit and whether it had uncommitted changes (None outside git)."""
    head = _run(["git", "rev-parse", "HEAD"]) or None
    dirty = bool(_run(["git", "status", "--porcelain", "--untracked-files=no"])) if head else None
    return {"commit": head, "dirty": dirty}


@functools.cache
def packages() -> dict[str, str | None]:
    """Versions of the Python packages (and Mininet, Open vSwitch) the results depend on."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        from mininet.net import VERSION

        out["mininet"] = VERSION
    except ImportError:
        out["mininet"] = None
    ovs = _run(["ovs-vswitchd", "--version"]).splitlines()
    out["openvswitch"] = ovs[0].rsplit(" ", 1)[-1] if ovs else None
    return out


@functools.cache
def host() -> dict:
    return {"hostname": platform.node(), "kernel": platform.release(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file, or None when it is not there."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def write(out: Path, **fields: object) -> dict:
    """Write ``out/manifest.json`` from ``fields`` plus commit, packages and host."""
    data = {**fields, **commit(), "packages": dict(packages()), "host": dict(host())}
    Path(out).mkdir(parents=True, exist_ok=True)
    tmp = Path(out) / "manifest.json.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(Path(out) / "manifest.json")
    return data


def read(out: Path) -> dict | None:
    """The manifest of run directory ``out``, or None when it has none or a torn one."""
    try:
        data = json.loads((Path(out) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(out: Path) -> bool:
    """Did the run in ``out`` finish and write its tables?"""
    m = read(out)
    return bool(m and m.get("status") == COMPLETE and (Path(out) / "summary.csv").is_file())
