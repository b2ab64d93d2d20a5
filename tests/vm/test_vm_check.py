"""`make vm-check` as part of `make test`: the netem link mode and the Open vSwitch kernel
datapath, executed for real in a Debian 12 guest under QEMU (vm/check.sh).

It runs on every host, also where the host's own kernel has sch_netem and the openvswitch
module: the guest is Debian 12's stock kernel, the one most users run, whatever the host is.
It builds the guest image or takes it from the cache and boots it, which takes minutes;
``pytest -m "not slow"`` leaves it out.  The run's log and evidence
are in VM_OUT (default vm/out/).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("VM_OUT", REPO / "vm" / "out"))
# vm/check.sh stops itself after MESHCAST_VM_TIMEOUT (1800 s); this is only a backstop
BACKSTOP_S = int(os.environ.get("MESHCAST_VM_TIMEOUT", "1800")) + 300

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_netem_and_the_kernel_datapath_pass_in_a_debian_guest():
    if os.geteuid() != 0:
        pytest.fail("needs root (QEMU, mmdebstrap): run `sudo make test`, or `make unit`")
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "check.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(["bash", str(REPO / "vm" / "check.sh")], stdout=sink,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "VM_OUT": str(OUT)})
        try:
            status = proc.wait(BACKSTOP_S)
        except subprocess.TimeoutExpired:
            proc.terminate()  # its trap stops QEMU
            proc.wait(60)
            pytest.fail(f"vm/check.sh still running after {BACKSTOP_S} s:\n{_tail(log)}")
    print(_tail(OUT / "verdict.txt"))
    assert status == 0, f"vm/check.sh exited with {status}:\n{_tail(log)}"

    # what the guest saw while a network was up: netem under htb, kernel datapath flows
    tc_tree = (OUT / "evidence" / "tc.txt").read_text()
    assert "qdisc htb 5: root" in tc_tree and "qdisc netem" in tc_tree, tc_tree
    dpctl = (OUT / "evidence" / "dpctl.txt").read_text()
    assert "system@ovs-system" in dpctl, dpctl
    assert any("actions:" in line for line in dpctl.split("dump-flows", 1)[-1].splitlines()), dpctl
    # and the verdict again, from what is on disk: tests ran, none skipped, netem cases passed
    again = subprocess.run([sys.executable, str(REPO / "vm" / "verdict.py"), str(OUT)],
                           capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stdout
