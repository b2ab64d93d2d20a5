"""A fault campaign on a running deployment: the steps of :mod:`testbed.core.faults` applied
on time, what happened written beside the run's tables, and the check that the network came
back whole.

* ``faults/planned.json``: the campaign as drawn (seed, settings, faults).
* ``faults/faults.csv``: one row per fault: kind, target, planned and actual start and end.
* ``faults/steps.csv``: one row per step carried out: run time, action, target, how long
  it took, and an error if it failed.
* ``faults/consistency.json``: after the quiet end, every helper's routing table and cached
  versions against the master's (see :func:`consistency`).
* ``faults/stalls.csv``: every stall after the warm-up, and how much of it the viewer spent
  cut off from the origin (see :func:`testbed.core.faults.stall_table`).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import pandas as pd

from testbed.core import faults as F
from testbed.harness import results
from testbed.scenario import HTTP_PORT_RESERVED as HTTP_PORT

FAULTS_DIR = "faults"
LOSS_DOWN = 100.0  # a link that is down loses every packet


@dataclass
class FaultRunner:
    """Applies ``steps`` on a :class:`~testbed.harness.run.Deployment` as run time passes
    (:meth:`due`, called from the playing loop); :meth:`write` saves what happened."""

    dep: object
    faults: tuple[F.Fault, ...]
    steps: list[F.Step]
    say: Callable[[str], None] = print
    done: list[dict] = field(default_factory=list)
    _next: int = 0
    _loss: dict[str, float] = field(default_factory=dict)  # link -> loss before it went down

    @classmethod
    def of(cls, dep, cfg: F.FaultsConfig, seed: int, say: Callable[[str], None] = print
           ) -> FaultRunner:
        engine = "engine" if "engine" in dep.procs else None
        targets = F.Targets.of(dep.spec, engine)
        faults = F.draw(cfg, targets, dep.scenario.duration_s, seed)
        return cls(dep, faults, F.steps(faults, cfg.flap_period_s), say)

    def due(self, now_s: float) -> None:
        """Carry out every step due by run time ``now_s``."""
        while self._next < len(self.steps) and self.steps[self._next].at_s <= now_s:
            step = self.steps[self._next]
            self._next += 1
            t = time.monotonic()
            at = self.dep.now()
            error = ""
            try:
                self._apply(step)
            except Exception as exc:  # recorded; the campaign goes on
                error = f"{type(exc).__name__}: {exc}"[:300]
            took = time.monotonic() - t
            self.done.append({"at_s": round(at, 3), "planned_s": step.at_s, "fault": step.fault,
                              "kind": self.faults[step.fault].kind, "action": step.action,
                              "target": step.target, "took_s": round(took, 3),
                              "error": error})
            self.say(f"t={at:.1f}s fault {step.fault} ({self.faults[step.fault].kind}): "
                     f"{step.action} {step.target}" + (f" FAILED: {error}" if error else ""))

    def _apply(self, step: F.Step) -> None:
        dep = self.dep
        if step.action in ("down", "up"):
            a, b = step.target.split("-", 1)
            if step.action == "down":
                self._loss.setdefault(step.target, float(dep.tn.spec.edges[a, b]
                                                         .get("loss_pct", 0.0)))
                dep.tn.set_link(a, b, loss_pct=LOSS_DOWN)
            else:
                dep.tn.set_link(a, b, loss_pct=self._loss.pop(step.target, 0.0))
            return
        if step.target == "controller":
            dep.tn.controller.stop()
            dep.tn.controller.start()
            dep.sync.forget()  # the new controller is told the tiers and mesh again
            return
        if step.action in ("kill", "restart"):
            dep.kill_daemon(step.target)
        if step.action in ("start", "restart"):
            dep.start_daemon(step.target)

    def finish(self) -> None:
        """Undo what is still in effect (a run cut short): links up, daemons started."""
        for link in list(self._loss):
            self._apply(F.Step(0.0, -1, "up", link))
        for name in self._killed():
            if not self.dep.procs[name].alive():
                self.dep.start_daemon(name)

    def _killed(self) -> set[str]:
        down: set[str] = set()
        for d in self.done:
            if d["action"] == "kill":
                down.add(d["target"])
            elif d["action"] in ("start", "restart"):
                down.discard(d["target"])
        return down

    def write(self, out: Path, seed: int, cfg: F.FaultsConfig) -> None:
        d = Path(out) / FAULTS_DIR
        d.mkdir(parents=True, exist_ok=True)
        (d / "planned.json").write_text(json.dumps({
            "seed": seed, "settings": {k: list(v) if isinstance(v, tuple) else v
                                       for k, v in cfg.__dict__.items()},
            "faults": [f.as_dict() for f in self.faults]}, indent=1))
        steps = pd.DataFrame(self.done, columns=["at_s", "planned_s", "fault", "kind", "action",
                                                 "target", "took_s", "error"])
        steps.to_csv(d / "steps.csv", index=False)
        fault_table(self.faults, steps).to_csv(d / "faults.csv", index=False)


def fault_table(faults, steps: pd.DataFrame) -> pd.DataFrame:
    """One row per fault: planned and actual start and end (run seconds), and its errors."""
    rows = []
    for i, f in enumerate(faults):
        mine = steps[steps["fault"] == i]
        rows.append({"fault": i, "kind": f.kind, "target": f.target,
                     "planned_start_s": f.at_s, "planned_end_s": f.end_s,
                     "start_s": mine["at_s"].min() if len(mine) else None,
                     "end_s": (mine["at_s"] + mine["took_s"]).max() if len(mine) else None,
                     "errors": int((mine["error"].fillna("") != "").sum())})
    return pd.DataFrame(rows, columns=["fault", "kind", "target", "planned_start_s",
                                       "planned_end_s", "start_s", "end_s", "errors"])


def consistency(master: dict, helpers: dict[str, dict | None]) -> dict:
    """Whether the helpers agree with the master (from their ``/status``): each holds the
    routing table the master last sent it, with the parent the master's tables give it,
    and caches every video at the master's current version (older: stale; newer: a
    version the master forgot).  ``None``
    for a helper that did not answer."""
    problems: list[str] = []
    sent = master.get("sent_tables", {})
    parents = master.get("parents", {})
    versions = master.get("versions", {})
    for h, st in sorted(helpers.items()):
        if st is None:
            problems.append(f"{h}: no status")
            continue
        table = st.get("table") or {}
        if h in sent and table.get("version") != sent[h]:
            problems.append(f"{h}: holds table {table.get('version')}, master sent {sent[h]}")
        if h in parents and table.get("parent") != parents[h]:
            problems.append(f"{h}: parent {table.get('parent')}, master's tables say "
                            f"{parents[h]}")
        for video, (lo, hi) in (st.get("cached_versions") or {}).items():
            if video in versions and lo < versions[video]:
                problems.append(f"{h}: caches {video} v{lo}, current v{versions[video]}")
            if video in versions and hi > versions[video]:  # (a master that forgot)
                problems.append(f"{h}: caches {video} v{hi}, beyond the master's "
                                f"v{versions[video]}")
    return {"agree": not problems, "problems": problems, "helpers": len(helpers),
            "answered": sum(st is not None for st in helpers.values())}


def read_statuses(urls: list[str], timeout: float = 3.0) -> list[dict | None]:
    """GET each URL's JSON (None where it did not answer): run inside a host's namespace
    (``python -m testbed.harness.faults URL ...``)."""
    import urllib.request

    out = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                out.append(json.loads(r.read()))
        except (OSError, ValueError):
            out.append(None)
    return out


def check_consistency(dep, out: Path) -> dict:
    """Ask the master and every helper for their status (from the master's host) and
    write ``faults/consistency.json``."""
    plan = dep.plan
    names = [plan.roles.master, *plan.roles.helpers]
    urls = [f"http://{plan.ip(n)}:{HTTP_PORT}/status" for n in names]
    host = dep.tn.host(plan.roles.master)
    root = Path(__file__).resolve().parents[2]
    raw = host.cmd(" ".join([f"PYTHONPATH={root}", sys.executable, "-m",
                             "testbed.harness.faults", *urls]))
    try:
        got = json.loads(raw.strip().splitlines()[-1])
    except (ValueError, IndexError):
        got = [None] * len(names)
    master, helpers = got[0] or {}, dict(zip(names[1:], got[1:]))
    verdict = {"at_s": round(dep.now(), 3), **consistency(master, helpers)}
    d = Path(out) / FAULTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    (d / "consistency.json").write_text(json.dumps(verdict, indent=1))
    return verdict


def write_stalls(out: Path, spec: nx.Graph, warmup_s: float, live: Collection[str]) -> dict:
    """``faults/stalls.csv`` (:func:`testbed.core.faults.stall_table`, from the run's logs
    and ``faults/steps.csv``) and its :func:`~testbed.core.faults.stall_verdict`."""
    d = Path(out) / FAULTS_DIR
    steps_csv = d / "steps.csv"
    steps = pd.read_csv(steps_csv) if steps_csv.exists() else pd.DataFrame()
    moves = (list(zip(steps["at_s"], steps["action"], steps["target"].astype(str)))
             if len(steps) else [])
    table = F.stall_table(results.read_logs(out), spec, moves, warmup_s, live)
    table.to_csv(d / "stalls.csv", index=False)
    return F.stall_verdict(table)


def verdict(summary: dict) -> dict:
    """What the viewers saw through the campaign, from the run's summary row (after the
    warm-up): requests, those given up (retries spent), segments given up and never had
    answered later, segments whose digest failed, stale serves, the
    longest single stall, stalls, the rebuffer ratio of every session alive after the
    warm-up, failovers and the master's last-resort answers."""
    def plain(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    requests, answered = summary.get("viewer_requests"), summary.get("viewer_answered")
    return {k: plain(v) for k, v in {
        "requests": requests,
        "requests_failed": (requests - answered if requests is not None
                            and answered is not None else None),
        "unanswered_segments": summary.get("unanswered_segments"),
        "digest_failures": summary.get("digest_failures"),
        "stale_serves": summary.get("stale_serves"),
        "longest_stall_s": summary.get("longest_stall_s"),
        "stalls": summary.get("stall_events"),
        "rebuffer_ratio": summary.get("rebuffer_ratio_all_sessions"),
        "failovers": summary.get("failovers"),
        "master_viewer_serves": summary.get("master_viewer_serves"),
    }.items()}


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    print(json.dumps(read_statuses(sys.argv[1:])))
