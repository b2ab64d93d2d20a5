"""One experiment run: network up, daemons started in their hosts, the scenario played
for its duration, everything stopped, logs turned into tables.

``run_scenario(scenario, out)`` leaves in ``out``::

    scenario.json          the scenario as run (after overrides)
    net/                   the network's run directory (topology, controller, emulator)
    nodes/<name>.json      each daemon's configuration, with its part of the run's plan
                           (testbed.plan.NodePlan); <name>.ready when it served
    secrets/               the CA secret and the credentials the master issued (0600)
    logs/<name>.jsonl      each daemon's event log (JSON lines)
    proc/<name>.log        each daemon's stdout and stderr
    workload/planned.csv   the viewer sessions of the run's plan, the ones played (a trace)
    engine/telemetry.csv   the telemetry the prediction engine accepted (a trace)
    engine/models/         each model the engine trained, with its scores
    tables/*.csv           per request, per viewer, by source, by traffic class
    summary.csv            the one-row summary

The run is decided once, before the network starts (:class:`testbed.harness.plan.RunPlan`:
topology, addresses, roles, catalogue, workload); everything here uses that plan.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from testbed.core import security as sec
from testbed.core import spec as S
from testbed.core.measure import judge_cpu
from testbed.emu.calibrate import CpuSampler
from testbed.emu.network import TestbedNetwork, read_linkemu_stats
from testbed.emu.proc import ManagedProcess
from testbed.harness import manifest, results
from testbed.harness.faults import FAULTS_DIR, FaultRunner, check_consistency, write_stalls
from testbed.harness.faults import verdict as faults_verdict
from testbed.harness.plan import (  # noqa: F401  (the run's building blocks, re-exported)
    PLANNED_CSV,
    RunPlan,
    assign_players,
    hosts_for_helpers,
    workload_config,
    workload_sessions,
)
from testbed.harness.stress import InsiderFuzz, UsageSampler
from testbed.harness.stress import verdict as stress_verdict
from testbed.plan import ENGINE_NAME, LIVE_T0_S, VIEWERS_START_S  # noqa: F401
from testbed.scenario import Scenario

MULTICAST_ROUTE = "224.0.0.0/4"


class RunDirError(ValueError):
    """The run directory already holds a run (results are never mixed)."""


@dataclass
class RunResult:
    out: Path
    summary: dict
    timings: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def node_configs(scenario: Scenario, spec: nx.Graph | None, out: Path, t0: float,
                 ca_public_key: bytes, pseudonym_key: bytes) -> dict[str, dict]:
    """Every daemon's configuration (what :class:`testbed.nodes.common.NodeConfig` loads),
    from the run's plan (:meth:`RunPlan.node_configs`; a run builds its plan once and
    asks it directly)."""
    return RunPlan.build(scenario, spec).node_configs(out, t0, ca_public_key, pseudonym_key)


class ControllerSync:
    """Forwards the master's tiers and the helpers' mesh neighbours to the controller's
    northbound API (the daemons live in host namespaces; the API listens on loopback),
    and the links' load the controller measures back to the master (``load_path``: each
    link's rate each way, from the switches' port counters, with the run second it was
    read at)."""

    def __init__(self, sync_path: Path, api_port: int, helpers: list[str], log: Callable,
                 load_path: Path | None = None, t0: float = 0.0):
        self.path = sync_path
        self.load_path = load_path
        self.t0 = t0
        self.base = f"http://127.0.0.1:{api_port}"
        self.helpers = helpers
        self.log = log
        self.sent: dict = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="controller-sync", daemon=True)

    def __enter__(self) -> ControllerSync:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def forget(self) -> None:
        """Send everything again (the controller restarted and knows nothing)."""
        self.sent = {}

    def _put(self, path: str, body: dict) -> bool:
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                r.read()
        except OSError as exc:
            self.log(f"controller sync: PUT {path}: {exc}")
            return False
        return True

    def _relay_load(self) -> None:
        try:
            with urllib.request.urlopen(self.base + "/topology", timeout=2) as r:
                doc = json.loads(r.read())
        except (OSError, ValueError):
            return
        rows = [{"a": k["a"], "b": k["b"], "ab_mbit": k.get("ab_mbit"),
                 "ba_mbit": k.get("ba_mbit")}
                for k in (*doc.get("links", ()), *doc.get("access", ()))]
        tmp = self.load_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"at": round(time.time() - self.t0, 3), "links": rows}))
        os.replace(tmp, self.load_path)

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            if self.load_path is not None:
                self._relay_load()
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                continue
            tiers = {h: i + 1 for i, names in enumerate(data.get("tiers", [])) for h in names}
            sent = self.sent  # (forget() may replace it meanwhile)
            if (tiers and set(tiers) == set(self.helpers) and tiers != sent.get("tiers")
                    and self._put("/tiers", {"tiers": tiers})):
                sent["tiers"] = tiers
            for h, nbrs in data.get("mesh", {}).items():
                if (h in self.helpers and nbrs != sent.get(h)
                        and self._put(f"/mesh/neighbours/{h}", {"neighbours": nbrs})):
                    sent[h] = nbrs


def _daemon(name: str, role: str, host, cfg_path: Path, out: Path, ready: Path,
            label: str) -> ManagedProcess:
    argv = ["mnexec", "-a", str(host.pid), sys.executable, "-m", f"testbed.nodes.{role}",
            str(cfg_path)]
    return ManagedProcess(name, argv, out / "proc", ready=ready.exists, label=label,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])})


class Deployment:
    """``with Deployment(scenario, out) as dep:`` the network is up and every daemon
    serves; leaving stops the daemons (viewers, helpers, master, engine) and the network.

    ``plan`` is the run's :class:`RunPlan` (built here from ``scenario`` when not given;
    ``spec`` then replaces the scenario's generated topology: tests inject their own);
    ``dep.t0`` is the run's second 0, ``dep.configs`` each daemon's configuration.
    """

    def __init__(self, scenario: Scenario, out: Path, say: Callable[[str], None] = print,
                 mode: str | None = None, spec: nx.Graph | None = None,
                 plan: RunPlan | None = None):
        if plan is not None and spec is not None and spec is not plan.spec:
            raise ValueError("give a plan or a spec, not both")
        self.plan = plan if plan is not None else RunPlan.build(scenario, spec)
        self.scenario = scenario
        self.out = Path(out).resolve()
        self.say = say
        self.mode = mode or scenario.links.mode
        self.spec = self.plan.spec
        self.procs: dict[str, ManagedProcess] = {}
        self.failures: list[str] = []
        self.timings: dict[str, float] = {}
        self.tn: TestbedNetwork | None = None
        self.floor: dict | None = None  # the switches' measured forwarding times
        self.sync: ControllerSync | None = None

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        out, spec = self.out, self.spec
        t_start = time.monotonic()
        out.mkdir(parents=True, exist_ok=True)
        (out / "scenario.json").write_text(json.dumps(self.scenario.to_dict(), indent=1,
                                                      default=str))
        secrets = out / "secrets"
        secrets.mkdir(mode=0o700, exist_ok=True)
        secret = os.urandom(32)
        fd = os.open(secrets / "ca.secret", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        ca_pub = sec.Authority.from_secret(secret).public_key
        plan = self.plan
        helpers = list(plan.roles.helpers)
        # each helper picks k neighbours but may be picked by any number of others
        degree = {"MESHCAST_MESH_DEGREE": str(max(3, len(helpers) - 1))}
        self.tn = TestbedNetwork(spec, run_dir=out / "net", mode=self.mode,
                                 seed=self.scenario.seed, controller_env=degree,
                                 tls=self.scenario.controller.tls,
                                 tcp_congestion=self.scenario.links.tcp_congestion)
        self.tn.start()
        self.timings["network_s"] = time.monotonic() - t_start
        self.link_mode = self.tn.mode
        self.floor = self.tn.floor_report()
        self.say(f"network up in {self.timings['network_s']:.1f} s ({self.tn.mode} links); "
                 f"starting daemons")
        for name in S.hosts(spec):
            host = self.tn.host(name)
            host.cmd(f"ip route replace {MULTICAST_ROUTE} dev {host.defaultIntf().name}")
        self.t0 = time.time() + 1.0
        # workload/planned.csv and nodes/<name>.json, from the plan's one set of sessions
        self.configs = plan.write(out, self.t0, ca_pub, os.urandom(16))
        for name, role, where in plan.daemons():
            p = _daemon(name, role, self.tn.host(where), out / "nodes" / f"{name}.json", out,
                        out / "nodes" / f"{name}.ready", self.tn.run_id)
            self.procs[name] = p
            p.start(timeout=30)
        self.timings["daemons_s"] = time.monotonic() - t_start - self.timings["network_s"]
        self.sync = ControllerSync(out / "controller-sync.json", self.tn.api_port,
                                   helpers, self.say, out / "link-load.json",
                                   self.t0).__enter__()

    def stop(self) -> None:
        """Stop the daemons, then the network."""
        self.stop_daemons()
        if self.tn is not None:
            t = time.monotonic()
            self.tn.stop()
            self.tn = None
            self.timings["network_down_s"] = round(time.monotonic() - t, 3)

    def stop_daemons(self) -> None:
        """Stop every daemon (viewers first, the engine last); the network stays up."""
        if self.sync is not None:
            self.sync.__exit__()
            self.sync = None
        r = self.plan.roles
        for group in (r.viewers, r.helpers, [r.master], [ENGINE_NAME]):
            procs = [self.procs[n] for n in group if n in self.procs]
            for p in procs:  # all of a role at once, then wait for each
                if p.alive():
                    os.kill(p.pid, signal.SIGTERM)
            for p in procs:
                code = p.stop(grace=10)
                if code not in (0, None, -15):
                    self.failures.append(f"{p.name} exited with status {code}")
        self.procs.clear()

    def kill_daemon(self, name: str) -> None:
        """SIGKILL a daemon (a crash: it saves nothing on the way out)."""
        self.procs[name].kill()

    def start_daemon(self, name: str) -> None:
        """Start a daemon again (after :meth:`kill_daemon`) and wait until it serves."""
        (self.out / "nodes" / f"{name}.ready").unlink(missing_ok=True)
        self.procs[name].start(timeout=30)

    def host(self, name: str):
        return self.tn.host(name)

    def now(self) -> float:
        """Run time (seconds since t0)."""
        return time.time() - self.t0


def run_scenario(scenario: Scenario, out: Path, say: Callable[[str], None] = print,
                 mode: str | None = None, fidelity: dict | None = None,
                 plan: RunPlan | None = None) -> RunResult:
    """Play ``scenario`` on a fresh emulated network; results land in ``out``.

    ``fidelity`` is the summary of the fidelity check of this network (from
    ``testbed calibrate``), recorded in the manifest; None: not checked.  ``plan`` is the
    scenario's :class:`RunPlan` when the caller built it already (else built here, once).
    """
    if plan is not None and plan.scenario is not scenario:
        raise ValueError("run_scenario: the plan is of another scenario")
    if (Path(out) / "logs").exists() or (Path(out) / "manifest.json").exists():
        raise RunDirError(f"{out} already holds a run; give another directory")
    started = manifest.now_iso()
    t_start = time.monotonic()
    manifest.write(out, status="running", started_at=started, **_identity(scenario))
    with Deployment(scenario, out, say, mode, plan=plan) as dep, CpuSampler() as cpu:
        t_play = time.monotonic()
        net_dir = dep.tn.run_dir  # the emulator's counters are there once the network stops
        ports = dep.tn.link_ports()
        counted: dict = {}  # the link counters from the warm-up's end on

        def warmed_up() -> None:
            counted.update(at=time.monotonic(), before=dep.tn.port_bytes())

        if scenario.warmup_s <= 0:
            warmed_up()
        campaign = (FaultRunner.of(dep, scenario.faults, scenario.seed, say)
                    if scenario.faults is not None else None)
        try:
            with contextlib.ExitStack() as watching:
                if campaign is not None:  # memory and descriptors; an insider's fuzz
                    watching.enter_context(UsageSampler(dep, out / FAULTS_DIR / "usage.csv"))
                    if scenario.faults.fuzz_rate > 0:
                        watching.enter_context(InsiderFuzz(dep, out / FAULTS_DIR,
                                                           scenario.faults.fuzz_rate,
                                                           scenario.seed))
                _play(scenario, dep.tn, dep.t0, say, warmed_up,
                      campaign.due if campaign is not None else None)
        finally:
            if campaign is not None:
                campaign.finish()
                campaign.write(out, scenario.seed, scenario.faults)
        agreed = check_consistency(dep, out) if campaign is not None else None
        cpu.stop()  # the CPU verdict judges the played run, not the daemons' shutdown
        played_s = time.monotonic() - t_play
        t_down = time.monotonic()
        dep.stop_daemons()
        after = dep.tn.port_bytes()
    teardown_s = time.monotonic() - t_down
    timings = {**dep.timings, "play_s": round(played_s, 3), "teardown_s": round(teardown_s, 3),
               "total_s": round(time.monotonic() - t_start, 3)}
    verdict = judge_cpu(cpu.samples)
    (dep.out / "tables").mkdir(exist_ok=True)
    with open(dep.out / "tables" / "cpu.csv", "w") as f:  # CPU idle, second by second
        f.write("at,idle\n")
        f.writelines(f"{t - dep.t0:.3f},{idle:.4f}\n" for t, idle in zip(cpu.times, cpu.samples))
    before = counted.get("before", {})
    moved = {n: (after[n][0] - before[n][0], after[n][1] - before[n][1])
             for n in after if n in before}
    links = results.links_table(dep.spec, moved, ports,
                                t_down - counted.get("at", t_down))
    cpu_fields = {"cpu_idle_min": round(verdict.min_idle, 3),
                  "cpu_idle_mean": round(verdict.mean_idle, 3), "cpu_trusted": verdict.trusted}
    fid = fidelity or {}
    fault_fields = {} if campaign is None else {
        "faults": len(campaign.faults),
        "faults_step_errors": sum(bool(d["error"]) for d in campaign.done),
        "faults_consistent": agreed["agree"]}
    summary = results.write_results(
        dep.out, {"policy": scenario.policy or scenario.delivery.prefetch_policy,
                  "seed": scenario.seed, **cpu_fields, "link_mode": dep.link_mode,
                  **results.emulator_figures(read_linkemu_stats(net_dir)),
                  "fidelity_passed": fid.get("passed"),
                  "fidelity_rows": fid.get("measurements"), **fault_fields},
        end_at=scenario.duration_s, spec=dep.spec, links=links, warmup_s=scenario.warmup_s,
        settle_s=policy_horizon_s(scenario) + scenario.delivery.prefetch_interval_s)
    if campaign is not None:  # the campaign's verdict: its own columns and the viewers'
        seen = {**faults_verdict(summary),
                **write_stalls(dep.out, dep.spec, scenario.warmup_s,
                               dep.plan.catalogue.ids("live")),
                **stress_verdict(dep.out / FAULTS_DIR,
                                                             scenario.duration_s,
                                                             dep.out / "logs")}
        (dep.out / FAULTS_DIR / "verdict.json").write_text(json.dumps(
            {**fault_fields, **{f"faults_{k}": v for k, v in seen.items()},
             "consistency": agreed}, indent=1, default=str))
    if not verdict.trusted:
        say(f"warning: CPU idle fell to {verdict.min_idle:.0%} (< 35 %): the host was "
            f"saturated, so latencies in this run are not trustworthy")
    manifest.write(out, status=manifest.COMPLETE, started_at=started,
                   finished_at=manifest.now_iso(), **_identity(scenario),
                   link_mode=dep.link_mode, fidelity=fidelity,
                   switches=_floor_summary(dep.floor),
                   cpu={"idle_min": cpu_fields["cpu_idle_min"],
                        "idle_mean": cpu_fields["cpu_idle_mean"], "trusted": verdict.trusted},
                   timings=timings, failures=dep.failures,
                   workload_sha256=manifest.file_digest(dep.out / PLANNED_CSV))
    return RunResult(out=dep.out, summary=summary, timings=timings, failures=dep.failures)


def _floor_summary(floor: dict | None) -> dict | None:
    """The run's switch times for its manifest: port type, median and per switch."""
    if not floor:
        return None
    return {"port_type": floor["port_type"], "compensated": floor["compensated"],
            "median_ms": floor["median_ms"],
            "per_switch_ms": {sw: x["median_ms"] for sw, x in floor["switches"].items()}}


def policy_horizon_s(scenario: Scenario) -> float:
    """How far ahead the scenario's prefetch policy plans: its own horizon (a popularity
    horizon, say) or the engine's; a pushed copy is judged only after that long."""
    from testbed.core.prefetch import make_policy

    return getattr(make_policy(scenario.delivery.prefetch), "horizon_s", None) \
        or scenario.engine.horizon_s


def _identity(scenario: Scenario) -> dict:
    return {"scenario": scenario.to_dict(), "policy": scenario.policy,
            "seed": scenario.seed, "source": scenario.source}


def _play(scenario: Scenario, tn: TestbedNetwork, t0: float, say: Callable,
          warmed_up: Callable[[], None] = lambda: None,
          tick: Callable[[float], None] | None = None) -> None:
    """Wait out the scenario, applying link events on time; ``warmed_up()`` is called once
    when the warm-up (``warmup_s``, if any) is over, ``tick(run_time)`` every turn (a fault
    campaign's steps)."""
    pending = sorted((e for e in scenario.events if e.action == "link"), key=lambda e: e.at_s)
    end = t0 + scenario.duration_s
    last_note = 0.0
    warming = scenario.warmup_s > 0
    while True:
        now = time.time()
        if now >= end:
            break
        if warming and now - t0 >= scenario.warmup_s:
            warming = False
            warmed_up()
        if tick is not None:
            tick(now - t0)
        while pending and now - t0 >= pending[0].at_s:
            e = pending.pop(0)
            a, b = e.target.split("-", 1)
            tn.set_link(a, b, **dict(e.fields))
            say(f"t={now - t0:.0f}s link {a}-{b} changed: {dict(e.fields)}")
        if now - last_note >= 15:
            say(f"t={now - t0:.0f}s of {scenario.duration_s:.0f}s")
            last_note = now
        time.sleep(min(0.2, end - now))


