"""The controller as a child process with a pid file, a log and a bounded readiness wait.

:class:`ControllerProcess` runs ``python -m testbed.ctlmain`` in its own process group,
labelled with ``MESHCAST_RUN=<run dir name>`` in its environment, and is stopped by pid
(SIGTERM, then SIGKILL to its group after a bounded wait).  Nothing is ever killed by
name; a pid file left by a crashed run is acted on only if that process carries the label.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import testbed
from testbed.emu.proc import ManagedProcess, ProcessError, log_tail

RUN_ENV = "MESHCAST_RUN"
LOG_NAME = "controller.log"
PID_NAME = "controller.pid"
HOST = "127.0.0.1"
_REPO_ROOT = str(Path(testbed.__file__).resolve().parent.parent)


class ControllerError(RuntimeError):
    """The controller did not start or stop; the message ends with its log tail."""


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on ``host:port`` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _labelled(pid: int, label: str) -> bool:
    """True if process ``pid`` is a ctlmain carrying ``MESHCAST_RUN=label``."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return f"{RUN_ENV}={label}".encode() in environ and b"testbed.ctlmain" in cmdline


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (exited, waiting for its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def stop_stale(run_dir: Path, label: Optional[str] = None, timeout: float = 5.0) -> bool:
    """Stop the controller named by a leftover ``run_dir/controller.pid``, if it is one.

    Acts only on a live ctlmain process carrying ``MESHCAST_RUN=label`` (default: the
    run dir's name); removes the pid file.  True if a process was stopped.
    """
    pid_path = Path(run_dir) / PID_NAME
    label = Path(run_dir).name if label is None else label
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return False
    stopped = False
    if _labelled(pid, label):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid) and _labelled(pid, label):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stopped = True
    pid_path.unlink(missing_ok=True)
    return stopped


class ControllerProcess:
    """``python -m testbed.ctlmain --port PORT APP...`` as a managed child process.

    ``port=None`` picks a free port once, here, so a restart reuses it.  The child's
    environment is ours, plus ``MESHCAST_RUN=<run_dir name>``, plus ``env`` (e.g.
    ``MESHCAST_TOPOLOGY``; a ``MESHCAST_RUN`` there replaces the label).  ``tls_dir``:
    OpenFlow over TLS with the certificates there (:mod:`testbed.emu.tls`).  Use as a
    context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        apps: Sequence[str],
        run_dir: Path,
        port: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
        tls_dir: Optional[Path] = None,
    ):
        if not apps:
            raise ValueError("ControllerProcess needs at least one app")
        self.apps = list(apps)
        self.run_dir = Path(run_dir)
        self.port = free_port() if port is None else port
        self.env = dict(env or {})
        self.tls_dir = tls_dir
        self.label = self.env.get(RUN_ENV, self.run_dir.name)
        self.log_path = self.run_dir / LOG_NAME
        self.pid_path = self.run_dir / PID_NAME
        self._proc = ManagedProcess("controller", self.command(), self.run_dir,
                                    ready=lambda: False)

    @property
    def pid(self) -> Optional[int]:
        """The child's pid while it is started (None before start and after stop)."""
        return self._proc.pid if self._proc.alive() else None

    @property
    def running(self) -> bool:
        return self._proc.alive()

    def command(self) -> list[str]:
        tls = [] if self.tls_dir is None else ["--tls", str(self.tls_dir)]
        return [sys.executable, "-m", "testbed.ctlmain", "--port", str(self.port),
                "--host", HOST, *tls, *self.apps]

    def start(self, timeout: float = 15.0) -> ControllerProcess:
        """Launch, then wait until the port accepts connections (at most ``timeout`` s)."""
        if self.running:
            raise ControllerError(f"controller already started (pid {self.pid})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stop_stale(self.run_dir, self.label)
        if not port_free(self.port):
            raise ControllerError(f"port {self.port} on {HOST} is already in use")
        pythonpath = os.pathsep.join(filter(None, [_REPO_ROOT, os.environ.get("PYTHONPATH")]))
        self._proc = ManagedProcess(
            "controller", self.command(), self.run_dir, ready=lambda: port_accepts(self.port),
            env={"PYTHONPATH": pythonpath, **self.env}, label=self.label, cwd=self.run_dir,
        )
        try:
            self._proc.start(timeout)
        except ProcessError as exc:
            raise ControllerError(str(exc)) from None
        return self

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM, then SIGKILL to its process group after ``timeout`` s; its exit code."""
        return self._proc.stop(timeout)

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> ControllerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
