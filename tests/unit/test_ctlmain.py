"""The controller entry point and its process wrapper (loopback only, no switches)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from testbed import ctlmain
from testbed.core.fakenet import topology_dict
from testbed.emu.controller import (
    PID_NAME,
    ControllerError,
    ControllerProcess,
    port_accepts,
    stop_stale,
)

REPO = Path(__file__).resolve().parents[2]
L2_APP = REPO / "controllers" / "l2_proactive.py"


@pytest.fixture
def topology(tmp_path: Path) -> Path:
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(topology_dict(nx.path_graph(2), 1)))
    return path


def _environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


# ----------------------------------------------------------------- ctlmain


def test_resolve_app_names_and_paths(tmp_path: Path) -> None:
    assert ctlmain.resolve_app("l2") == str(L2_APP)
    assert ctlmain.resolve_app(str(L2_APP)) == str(L2_APP)
    with pytest.raises(ValueError, match="not a known name"):
        ctlmain.resolve_app("nosuchapp")
    with pytest.raises(ValueError, match="does not exist"):
        ctlmain.resolve_app(str(tmp_path / "missing.py"))


@pytest.mark.parametrize("argv", [["--host", "10.0.0.1", "l2"], ["--host", "0.0.0.0", "l2"],
                                  ["--host", "localhost-ish", "l2"], ["--port", "0", "l2"],
                                  ["--port", "6653"], ["nosuchapp"]])
def test_bad_arguments_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        ctlmain.parse_args(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_good_arguments() -> None:
    args = ctlmain.parse_args(["--port", "7000", "--host", "::1", "l2"])
    assert (args.port, args.host, args.paths) == (7000, "::1", [str(L2_APP)])
    assert ctlmain.parse_args(["l2"]).host == "127.0.0.1"


def test_app_file_loads_by_path_without_the_repo_on_sys_path(tmp_path: Path) -> None:
    """As a manager loads it (``ryu-manager controllers/l2_proactive.py``), from elsewhere."""
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
        f"sys.path[:] = [p for p in sys.path if p not in ('', {str(REPO)!r})]\n"
        "from os_ken import utils\n"
        f"m = utils.import_module({str(L2_APP)!r})\n"
        "print(m.__name__, m.L2Proactive.__module__, m.compat.FRAMEWORK)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["l2_proactive", "l2_proactive", "os_ken"]


# ----------------------------------------------------------------- ControllerProcess


def test_start_stop_restart(tmp_path: Path, topology: Path) -> None:
    run = tmp_path / "run1"
    ctl = ControllerProcess(["l2"], run, env={"MESHCAST_TOPOLOGY": str(topology)})
    with ctl:
        pid = ctl.pid
        assert ctl.running and port_accepts(ctl.port)
        assert (run / PID_NAME).read_text().strip() == str(pid)
        assert b"MESHCAST_RUN=run1" in _environ(pid)
        assert f"MESHCAST_TOPOLOGY={topology}".encode() in _environ(pid)
    assert ctl.pid is None and not ctl.running
    assert not (run / PID_NAME).exists() and not Path(f"/proc/{pid}").exists()
    assert not port_accepts(ctl.port)
    ctl.start()  # the same port again
    try:
        assert ctl.pid != pid and port_accepts(ctl.port)
    finally:
        assert ctl.stop() == -signal.SIGTERM
    log = (run / "controller.log").read_text()
    assert log.count("--- start:") == 2 and "rules for 2 switches" in log


def test_openflow_over_tls_needs_a_certificate_of_the_runs_ca(tmp_path: Path,
                                                               topology: Path) -> None:
    import ssl
    import stat

    from testbed.emu.tls import make_pki

    files = make_pki(tmp_path / "tls")
    for key in (files.controller_key, files.switch_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    hello = bytes([4, 0, 0, 8, 0, 0, 0, 1])  # OpenFlow 1.3 hello

    def first_bytes(context: ssl.SSLContext | None, port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            if context is None:
                raw.sendall(hello)
                try:
                    return raw.recv(8)
                except OSError:
                    return b""
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(hello)
                return s.recv(8)

    ctl = ControllerProcess(["l2"], tmp_path / "run", env={"MESHCAST_TOPOLOGY": str(topology)},
                            tls_dir=tmp_path / "tls")
    assert ctl.command()[-3:-1] == ["--tls", str(tmp_path / "tls")]
    with ctl:
        switch = ssl.create_default_context(cafile=files.ca_cert)
        switch.load_cert_chain(files.switch_cert, files.switch_key)
        assert first_bytes(switch, ctl.port)[:2] == b"\x04\x00"  # the controller's hello
        anonymous = ssl.create_default_context(cafile=files.ca_cert)
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            first_bytes(anonymous, ctl.port)  # no certificate: refused
        stranger = make_pki(tmp_path / "other")  # another run's CA
        foreign = ssl.create_default_context(cafile=files.ca_cert)
        foreign.load_cert_chain(stranger.switch_cert, stranger.switch_key)
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            first_bytes(foreign, ctl.port)
        assert not first_bytes(None, ctl.port).startswith(b"\x04\x00")  # plain TCP: none


def test_bad_topology_fails_start_with_the_reason(tmp_path: Path, topology: Path) -> None:
    data = json.loads(topology.read_text())
    data["hosts"]["h1"]["mac"] = "01:00:5e:00:00:01"
    topology.write_text(json.dumps(data))
    ctl = ControllerProcess(["l2"], tmp_path / "run", env={"MESHCAST_TOPOLOGY": str(topology)})
    with pytest.raises(ControllerError) as info:
        ctl.start()
    assert "exited with status 2" in str(info.value)
    assert "hosts.h1.mac: 01:00:5e:00:00:01 is not a unicast address" in str(info.value)
    assert ctl.pid is None and not (tmp_path / "run" / PID_NAME).exists()


def test_busy_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        ctl = ControllerProcess(["l2"], tmp_path / "run", port=s.getsockname()[1])
        with pytest.raises(ControllerError, match="already in use"):
            ctl.start()
        assert ctl.pid is None


def test_readiness_wait_is_bounded(tmp_path: Path) -> None:
    app = tmp_path / "slow_app.py"
    app.write_text(
        "import time\n"
        "from controllers.compat import BaseApp\n\n\n"
        "class Slow(BaseApp):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        super().__init__(*args, **kwargs)\n"
        "        time.sleep(60)\n"
    )
    ctl = ControllerProcess([str(app)], tmp_path / "run")
    with pytest.raises(ControllerError, match="controller not ready after 1 s"):
        ctl.start(timeout=1)
    assert ctl.pid is None and not (tmp_path / "run" / PID_NAME).exists()


def test_stale_pid_file_is_acted_on_only_for_a_labelled_controller(
    tmp_path: Path, topology: Path
) -> None:
    run = tmp_path / "run"
    env = {"MESHCAST_TOPOLOGY": str(topology)}
    crashed = ControllerProcess(["l2"], run, env=env).start()  # forgotten, as if we crashed
    fresh = ControllerProcess(["l2"], run, env=env)
    try:
        fresh.start()  # finds controller.pid of the old one, labelled "run": stops it
        assert crashed._proc.proc is not None and crashed._proc.proc.wait(5) == -signal.SIGTERM
        assert (run / PID_NAME).read_text().strip() == str(fresh.pid)
    finally:
        fresh.stop()
        crashed.stop()
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env={k: v for k, v in os.environ.items()
                                     if k != "MESHCAST_RUN"})
    try:
        (run / PID_NAME).write_text(f"{stranger.pid}\n")
        assert stop_stale(run) is False
        assert stranger.poll() is None and not (run / PID_NAME).exists()
    finally:
        stranger.kill()
        stranger.wait()
