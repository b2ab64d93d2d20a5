"""Integration fixtures: every test gets its own run dir and must leave nothing behind."""

import os
from pathlib import Path

import pytest

from testbed.emu import netlock, residue

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(str(Path(__file__).parent)):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _ovs():
    if os.geteuid() != 0:
        return
    from testbed.emu.ovs import ensure_ovs_running

    ensure_ovs_running()


@pytest.fixture(autouse=True)
def no_residue(request):
    """Fail the test if it leaves namespaces, veths, bridges or labelled processes.

    Integration tests need root; without it they fail saying so (`make unit` runs the
    tests that need none)."""
    if os.geteuid() != 0:
        pytest.fail("needs root (Mininet, Open vSwitch): run `sudo make test`, or `make unit`")
    with netlock.network_lock(f"test {request.node.name}"):  # no other network meanwhile
        before = residue.Snapshot.take()
        yield
        left = residue.Snapshot.take().minus(before)
        if any(left.values()):
            after = residue.Snapshot.take()
            for run in {after.pids[p] for p in left["pids"] if p in after.pids}:
                residue.clean(run)  # only the runs that this test started
            pytest.fail(f"residue after {request.node.name}: {left}")


@pytest.fixture
def run_dir(tmp_path):
    """A run directory per test; pytest keeps the last few for their logs."""
    return tmp_path / "run"
