"""A child process the testbed starts, waits for, and stops by its pid.

Each gets a log file and a pid file in the run directory, the run label in its
environment (see :mod:`testbed.emu.residue`), its own process group, a bounded
readiness wait, and a stop that escalates from SIGTERM to SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from testbed.emu.residue import LABEL_ENV


class ProcessError(RuntimeError):
    """A managed process failed to start or become ready; carries its log tail."""


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ManagedProcess:
    """``with ManagedProcess(...) as p:`` starts it, waits until ready, stops it."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        run_dir: Path,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        label: str | None = None,
        cwd: Path | None = None,
    ):
        self.name = name
        self.argv = argv
        self.run_dir = Path(run_dir)
        self.ready = ready
        self.extra_env = dict(env or {})
        self.label = label or self.run_dir.name
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.log_path = self.run_dir / f"{name}.log"
        self.pid_path = self.run_dir / f"{name}.pid"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> ManagedProcess:
        """Launch, then wait (at most ``timeout`` s) until ``ready()`` is true."""
        if self.alive():
            raise ProcessError(f"{self.name} already started (pid {self.pid})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, LABEL_ENV: self.label, **self.extra_env}
        with open(self.log_path, "ab") as log:
            log.write(f"--- start: {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self.proc = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, cwd=self.cwd, start_new_session=True,
                )
            except OSError as exc:
                raise ProcessError(f"cannot run {self.argv[0]}: {exc}") from None
        self.pid_path.write_text(f"{self.proc.pid}\n")
        try:
            self._wait_ready(timeout)
        except BaseException:  # also on Ctrl-C: never leave a half-started child
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ProcessError(
                    f"{self.name} exited with status {code} before it was ready; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}")
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{self.name} not ready after {timeout:g} s; log {self.log_path}:\n"
                    f"{log_tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL after ``grace``); its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(grace)
        code = self.proc.returncode
        self._forget()
        return code

    def kill(self, wait: float = 5.0) -> int | None:
        """SIGKILL the process and its group at once (a crash, not a stop); its status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(wait)
        code = self.proc.returncode
        self._forget()
        return code

    def _forget(self) -> None:
        self.pid_path.unlink(missing_ok=True)

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
