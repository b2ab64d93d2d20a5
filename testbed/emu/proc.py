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
    ):
        self.name = name
        self.argv = argv
        self.run_dir = Path(run_dir)
        self.ready = ready
        self.extra_env = dict(env or {})
        self.label = label or self.run_dir.name
        self.proc: subprocess.Popen | None = None
        self.log_path = self.run_dir / f"{name}.log"
        self.pid_path = self.run_dir / f"{name}.pid"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> ManagedProcess:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.extra_env, LABEL_ENV: self.label}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
        self.pid_path.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._forget()
                raise ProcessError(
                    f"{self.name} exited with status {code} before it was ready; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise ProcessError(
            f"{self.name} not ready after {timeout:.0f} s; log {self.log_path}:\n"
            f"{log_tail(self.log_path)}"
        )

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

    def _forget(self) -> None:
        self.pid_path.unlink(missing_ok=True)

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
