"""On the host, after the check VM stopped: did the netem and kernel-datapath tests really run?

    python3 vm/verdict.py OUT_DIR

Reads what vm/guest.sh left in OUT_DIR (pytest.rc, junit.xml, evidence/summary.json) and
fails unless pytest passed, ran tests, skipped none, ran the netem case of every link test
file, and the evidence shows netem qdiscs and flows in the kernel datapath.  Exit status:
pytest's when it failed, else 1 for any other failure, else 0.  Standard library only.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# each must have run (and passed) at least one netem case
NETEM_FILES = ("test_tc_apply", "test_fidelity", "test_push_class")
CONTROLLER_FILES = ("test_controller_ovs", "test_multicast_ovs", "test_mesh_ovs")


def outcomes(junit: Path) -> dict[str, str]:
    """'module::test[param]' -> passed | failed | error | skipped."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{case.get('name')}"
        tags = {child.tag for child in case}
        if "error" in tags:
            result[name] = "error"
        elif "failure" in tags:
            result[name] = "failed"
        elif "skipped" in tags:
            result[name] = "skipped"
        else:
            result[name] = "passed"
    return result


def problems(out: Path) -> tuple[int, list[str]]:
    """(pytest's exit status or -1, what is wrong)."""
    bad = []
    rc_file = out / "pytest.rc"
    rc = int(rc_file.read_text().strip()) if rc_file.exists() else -1
    if rc == -1:
        bad.append("the guest did not finish the tests (no pytest.rc; see console.log)")
    junit = out / "junit.xml"
    results = outcomes(junit) if junit.exists() else {}
    counts = {k: sum(v == k for v in results.values())
              for k in ("passed", "failed", "error", "skipped")}
    print("guest: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    for name, outcome in sorted(results.items()):
        if outcome != "passed":
            print(f"  {outcome}: {name}")
    if not results:
        bad.append("no test ran in the guest")
    if counts["skipped"]:
        bad.append(f"{counts['skipped']} tests skipped in the guest (netem or OVS missing?)")
    if counts["failed"] or counts["error"]:
        bad.append(f"{counts['failed']} failed, {counts['error']} errors in the guest")
    for module in NETEM_FILES:
        if not any(n.startswith(module + "::") and "netem" in n and o == "passed"
                   for n, o in results.items()):
            bad.append(f"{module}: no netem case passed")
    for module in CONTROLLER_FILES:
        if not any(n.startswith(module + "::") and o == "passed" for n, o in results.items()):
            bad.append(f"{module}: no test passed")
    summary_file = out / "evidence" / "summary.json"
    if not summary_file.exists():
        bad.append("no evidence (evidence/summary.json)")
    else:
        summary = json.loads(summary_file.read_text())
        print("evidence: " + json.dumps(summary))
        if not summary.get("ok"):
            bad.append("the evidence does not show netem qdiscs and kernel datapath flows")
    return rc, bad


def main(out: Path) -> int:
    rc, bad = problems(out)
    for line in bad:
        print(f"vm-check: {line}")
    if rc > 0:
        return rc
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 vm/verdict.py OUT_DIR")
    sys.exit(main(Path(sys.argv[1])))
