"""What a long campaign watches besides the viewers: every process's memory and open
descriptors over time, and an insider fuzzing the daemons meanwhile.

* :class:`UsageSampler` reads ``/proc`` every ``period_s`` for each daemon of a
  deployment, the controller, the link emulator and Open vSwitch, into
  ``faults/usage.csv`` (run time, process, pid, resident kB, open descriptors).
* :class:`InsiderFuzz` runs the credentialed fuzzer (:mod:`testbed.nodes.fuzzer`) from a
  viewer host for the whole campaign, paced at ``rate`` messages per second, under a
  helper credential and a master-role credential of its own (names no daemon uses, so the
  receivers' replay guards of the real nodes are untouched) and without the CA's secret:
  an insider, not the authority.  Each chunk of messages adds one line to
  ``faults/fuzz.jsonl``.
* :func:`growth` says, per process, whether memory and descriptors stayed flat.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from testbed.core import security as sec
from testbed.scenario import HTTP_PORT_RESERVED as HTTP_PORT

OVS_PIDFILE = Path("/var/run/openvswitch/ovs-vswitchd.pid")
FUZZ_CHUNK = 20_000       # messages per fuzzer process (one line of fuzz.jsonl each)
FUZZ_HELPER = "h-insider"  # the fuzzer's own credentials
FUZZ_MASTER = "m-insider"
SETTLE_S = 60.0           # a process's first minute (caches and pools filling) is left out
FLAT_RSS_PCT = 10.0
FLAT_FDS = 8
JUDGED_S = 600.0          # flatness is judged over at least this long


def proc_usage(pid: int) -> tuple[int, int] | None:
    """(resident kB, open descriptors) of a live process; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    rss = next((int(line.split()[1]) for line in status.splitlines()
                if line.startswith("VmRSS:")), None)
    return None if rss is None else (rss, fds)


class UsageSampler:
    """``with UsageSampler(dep, path):`` a thread samples every watched process each
    ``period_s`` and appends the rows to ``path`` (CSV)."""

    def __init__(self, dep, path: Path, period_s: float = 10.0):
        self.dep = dep
        self.path = Path(path)
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="usage", daemon=True)

    def pids(self) -> dict[str, int]:
        """Each watched process by name: the deployment's daemons (as they are now: a
        restarted one has a new pid), the controller, the link emulator, Open vSwitch."""
        out = {name: p.pid for name, p in list(self.dep.procs.items()) if p.pid}
        tn = self.dep.tn
        for name, proc in (("controller", getattr(tn, "controller", None)),
                           ("linkemu", getattr(tn, "linkemu", None))):
            pid = getattr(proc, "pid", None)
            if pid:
                out[name] = pid
        try:
            out["ovs-vswitchd"] = int(OVS_PIDFILE.read_text().strip())
        except (OSError, ValueError):
            pass
        return out

    def sample(self) -> list[tuple]:
        at = round(self.dep.now(), 2)
        rows = []
        for name, pid in self.pids().items():
            got = proc_usage(pid)
            if got is not None:
                rows.append((at, name, pid, *got))
        return rows

    def __enter__(self) -> UsageSampler:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("at_s,process,pid,rss_kb,fds\n")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            rows = self.sample()
            with open(self.path, "a") as f:
                f.writelines(",".join(map(str, r)) + "\n" for r in rows)
            if self._stop.wait(self.period_s):
                return


def cache_fill(logs: Path) -> pd.DataFrame:
    """Each helper's cache fill over time (``cache_state`` records of ``logs/*.jsonl``):
    run time, process, cached kB."""
    rows = []
    for path in sorted(Path(logs).glob("*.jsonl")):
        with open(path) as f:
            for line in f:
                if '"cache_state"' in line:
                    try:
                        r = json.loads(line)
                    except ValueError:  # a torn last line
                        continue
                    rows.append((float(r["at"]), r["node"], r["used_bytes"] / 1024))
    return pd.DataFrame(rows, columns=["at_s", "process", "cache_kb"])


def with_cache(usage: pd.DataFrame, fill: pd.DataFrame) -> pd.DataFrame:
    """``usage`` with ``held_kb``: resident kB less what the process's bounded segment
    cache held at the time (its last ``cache_state`` before the sample; 0 for processes
    without a cache), so that a cache filling up to its capacity is not taken for a
    leak."""
    usage = usage.sort_values("at_s").reset_index(drop=True)
    if fill.empty or usage.empty:
        return usage.assign(cache_kb=0.0, held_kb=usage.get("rss_kb", pd.Series(dtype=float)))
    usage = usage.astype({"at_s": float})
    merged = pd.merge_asof(usage, fill.astype({"at_s": float}).sort_values("at_s"),
                           on="at_s", by="process", direction="backward")
    merged["cache_kb"] = merged["cache_kb"].fillna(0.0)
    merged["held_kb"] = merged["rss_kb"] - merged["cache_kb"]
    return merged


def growth(usage: pd.DataFrame, end_s: float, settle_s: float = SETTLE_S) -> pd.DataFrame:
    """Per process (as it was at the end, i.e. its last pid), from ``settle_s`` into its
    life to ``end_s``: its largest resident size, resident size less its cache
    (``held``, see :func:`with_cache`; the resident size where not given) and median
    descriptor count in the first and the last quarter of that span, the growth between them, and
    ``flat`` (``held`` grew <= :data:`FLAT_RSS_PCT` % and descriptors by <=
    :data:`FLAT_FDS`).  ``span_s`` says how long it was watched: a process restarted late
    has little to judge."""
    cols = ["process", "pid", "span_s", "rss_first_kb", "rss_last_kb", "rss_growth_pct",
            "held_first_kb", "held_last_kb", "held_growth_pct", "fds_first", "fds_last",
            "fds_growth", "restarts", "flat"]
    if usage.empty:
        return pd.DataFrame(columns=cols)
    if "held_kb" not in usage:
        usage = usage.assign(held_kb=usage["rss_kb"])
    rows = []
    for name, seen in usage.groupby("process", sort=True):
        seen = seen.sort_values("at_s")
        pid = int(seen["pid"].iloc[-1])
        life = seen[seen["pid"] == pid]
        life = life[(life["at_s"] >= life["at_s"].iloc[0] + settle_s)
                    & (life["at_s"] <= end_s)]
        if len(life) < 4:
            continue
        t0, t1 = life["at_s"].iloc[0], life["at_s"].iloc[-1]
        quarter = (t1 - t0) / 4
        first = life[life["at_s"] <= t0 + quarter]
        last = life[life["at_s"] >= t1 - quarter]
        rss, held = (_grew(first[c].max(), last[c].max()) for c in ("rss_kb", "held_kb"))
        # descriptors come and go with the connections open: the quarters' medians
        fd0, fd1 = int(first["fds"].median()), int(last["fds"].median())
        rows.append((name, pid, round(t1 - t0, 1), *rss, *held, fd0, fd1, fd1 - fd0,
                     seen["pid"].nunique() - 1,
                     held[2] <= FLAT_RSS_PCT and fd1 - fd0 <= FLAT_FDS))
    return pd.DataFrame(rows, columns=cols)


def _grew(a: float, b: float) -> tuple[int, int, float]:
    a, b = int(a), int(b)
    return a, b, round(100.0 * (b - a) / a, 1) if a > 0 else 0.0


class InsiderFuzz:
    """``with InsiderFuzz(dep, out, rate, seed):`` the credentialed fuzzer plays from the
    first viewer host against the first helper, the master and the engine, chunk after
    chunk, until the block ends (the running chunk is stopped then: it says what it sent)."""

    def __init__(self, dep, out: Path, rate: float, seed: int):
        self.dep = dep
        self.dir = Path(out)
        self.rate = rate
        self.seed = seed
        self.results = self.dir / "fuzz.jsonl"
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="fuzz", daemon=True)

    def plan(self) -> dict:
        dep = self.dep
        secret = (dep.out / "secrets" / "ca.secret").read_bytes()
        ca = sec.Authority.from_secret(secret)
        ids = {}
        for name, role in ((FUZZ_HELPER, "helper"), (FUZZ_MASTER, "master")):
            path = dep.out / "secrets" / f"fuzz-{role}.json"
            path.write_text(ca.issue(name, role, time.time() + 3 * dep.scenario.duration_s
                                     + 3600).to_json())
            ids[role] = str(path)
        roles = dep.plan.roles
        helper, engine = roles.helpers[0], dep.configs.get("engine")
        targets = {"helper": {"name": helper, "ip": dep.configs[helper]["ip"],
                              "port": HTTP_PORT},
                   "master": {"name": roles.master, "ip": dep.configs[roles.master]["ip"],
                              "port": HTTP_PORT}}
        if engine is not None:
            targets["engine"] = {"name": engine["name"], "ip": engine["ip"],
                                 "port": engine["extra"]["engine"]["port"]}
        else:  # no engine: its messages go to the master, which refuses them
            targets["engine"] = dict(targets["master"])
        return {"targets": targets, "helper_identity": ids["helper"],
                "master_identity": ids["master"], "videos": [v.id for v in dep.plan.catalogue],
                "rate": self.rate}

    def __enter__(self) -> InsiderFuzz:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.base = self.plan()
        self.host = self.dep.host(self.dep.plan.roles.viewers[0])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                _stop_group(self._proc)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        chunk = 0
        while not self._stop.is_set():
            path = self.dir / f"fuzz-plan-{chunk}.json"
            path.write_text(json.dumps({**self.base, "count": FUZZ_CHUNK,
                                        "seed": self.seed * 1000 + chunk}))
            argv = ["mnexec", "-a", str(self.host.pid), sys.executable, "-m",
                    "testbed.nodes.fuzzer", str(path)]
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
            with self._lock:
                if self._stop.is_set():
                    return
                with open(self.dir / f"fuzz-{chunk}.stderr", "wb") as errors:
                    self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                  stderr=errors, env=env,
                                                  start_new_session=True)
            out, _ = self._proc.communicate()
            stderr = self.dir / f"fuzz-{chunk}.stderr"
            if stderr.exists() and not stderr.stat().st_size:
                stderr.unlink()
            got = _last_json(out.decode(errors="replace"))
            line = {"chunk": chunk, "ended_s": round(self.dep.now(), 1)}
            if got is None:  # failed, or stopped before it said what it sent: a chunk error
                line["error"] = f"exit {self._proc.returncode}, no totals (see {stderr.name})"
            with open(self.results, "a") as f:
                f.write(json.dumps({**line, **(got or {})}) + "\n")
            if got is None and not self._stop.is_set():
                self._stop.wait(5)
            chunk += 1


def _last_json(text: str) -> dict | None:
    """The last line of ``text`` that is a JSON object (a library may print lines of its
    own), or None."""
    for line in reversed(text.strip().splitlines()):
        try:
            got = json.loads(line)
        except ValueError:
            continue
        if isinstance(got, dict):
            return got
    return None


def _stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group of ``proc`` (started in a session of its own), then
    SIGKILL after ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass


def fuzz_totals(path: Path) -> dict:
    """The fuzz chunks of a campaign added up: messages sent, answers by status, chunks
    that failed, and the first failures (5xx or no answer) kept."""
    if not Path(path).exists():
        return {"sent": 0, "chunks": 0}
    sent, codes, errors, failures, chunks = 0, {}, 0, [], 0
    for line in Path(path).read_text().splitlines():
        got = json.loads(line)
        chunks += 1
        if "error" in got:
            errors += 1
            continue
        sent += got["sent"]
        for code, n in got["codes"].items():
            codes[code] = codes.get(code, 0) + n
        failures += got["failures"][: max(0, 10 - len(failures))]
    return {"sent": sent, "chunks": chunks, "chunk_errors": errors, "codes": codes,
            "server_errors": sum(n for c, n in codes.items() if c.isdigit() and int(c) >= 500),
            "no_answer": codes.get("0", 0), "failures": failures}


def verdict(faults_dir: Path, end_s: float, logs: Path | None = None) -> dict:
    """A campaign's usage and fuzz figures for its verdict; ``growth.csv`` beside
    ``usage.csv`` (helpers' caches taken out with the ``cache_state`` records of ``logs``
    when given).  ``usage_flat`` judges the processes watched for at least a third of the
    run and :data:`JUDGED_S` (None when none was: in a short campaign the viewers' load is
    still building up, and it says nothing about leaks)."""
    usage_csv = Path(faults_dir) / "usage.csv"
    usage = pd.read_csv(usage_csv) if usage_csv.exists() else pd.DataFrame()
    if logs is not None and len(usage):
        usage = with_cache(usage, cache_fill(logs))
    table = growth(usage, end_s)
    table.to_csv(Path(faults_dir) / "growth.csv", index=False)
    judged = table[table["span_s"] >= max(end_s / 3, JUDGED_S)]
    fuzz = fuzz_totals(Path(faults_dir) / "fuzz.jsonl")
    return {"rss_growth_pct_max": float(table["rss_growth_pct"].max()) if len(table) else None,
            "held_growth_pct_max": (float(table["held_growth_pct"].max()) if len(table)
                                    else None),
            "fds_growth_max": int(table["fds_growth"].max()) if len(table) else None,
            "usage_flat": bool(judged["flat"].all()) if len(judged) else None,
            "usage_not_flat": sorted(judged.loc[~judged["flat"], "process"]),
            "fuzz_sent": fuzz["sent"], "fuzz_server_errors": fuzz.get("server_errors", 0),
            "fuzz_no_answer": fuzz.get("no_answer", 0), "fuzz": fuzz}
