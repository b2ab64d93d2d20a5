"""One emulated network per machine: the lock waits, names its holder, and is lent to children."""

import subprocess
import sys
import textwrap

import pytest

from testbed.emu import netlock

TRY = textwrap.dedent("""
    import sys
    from testbed.emu import netlock
    try:
        netlock.acquire("child", timeout_s=float(sys.argv[1]), poll_s=0.05)
    except netlock.NetworkBusy as exc:
        print("busy:", exc)
        sys.exit(3)
    print("got it")
    netlock.release()
""")


@pytest.fixture
def lock(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "network.lock"
    monkeypatch.setenv(netlock.LOCK_ENV, str(path))
    monkeypatch.delenv(netlock.HELD_ENV, raising=False)
    return path


def _child(timeout_s: float, env_extra: dict | None = None, drop_held: bool = False):
    import os
    env = dict(os.environ)
    if drop_held:
        env.pop(netlock.HELD_ENV, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", TRY, str(timeout_s)], capture_output=True,
                          text=True, env=env, timeout=30)


def test_a_second_holder_waits_and_gives_up_naming_the_first(lock):
    with netlock.network_lock("run alpha"):
        assert netlock.holder().startswith("pid ") and "run alpha" in netlock.holder()
        res = _child(0.3, drop_held=True)  # an unrelated process, not one we started
        assert res.returncode == 3, res.stdout + res.stderr
        assert "run alpha" in res.stdout and "waiting for another testbed network" in res.stderr
    assert _child(0.3, drop_held=True).returncode == 0  # free again


def test_the_lock_is_reentrant_in_one_process(lock):
    with netlock.network_lock("outer"):
        with netlock.network_lock("inner"):
            pass
        assert _child(0.2, drop_held=True).returncode == 3  # still held by the outer level
    assert _child(0.2, drop_held=True).returncode == 0


def test_a_process_started_by_the_holder_borrows_its_turn(lock):
    with netlock.network_lock("test"):
        res = _child(0.2)  # inherits the holder's pid in its environment
        assert res.returncode == 0 and "got it" in res.stdout, res.stdout + res.stderr
        assert "pid" in netlock.holder()  # the child did not take or drop the lock
        assert _child(0.2, drop_held=True).returncode == 3


def test_a_stale_borrow_claim_is_not_honoured(lock):
    with netlock.network_lock("test"):
        res = _child(0.2, env_extra={netlock.HELD_ENV: "1"})  # pid 1 does not hold it
        assert res.returncode == 3
