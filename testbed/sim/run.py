"""One simulated run: the same run plan, node logic, records, tables and summary as an
emulated run (:func:`testbed.harness.run.run_scenario`), on a simulated clock.

``run_sim(scenario, out)`` leaves in ``out`` what an emulated run does, less what only a
real network has (``net/``, the daemons' stdout, the CPU samples, credentials)::

    scenario.json, manifest.json   the scenario as run; the run's identity (backend "sim")
    logs/<name>.jsonl              each node's records, as the daemons write them
    workload/planned.csv           the planned sessions (a trace)
    engine/telemetry.csv           the telemetry the engine accepted (a trace)
    engine/models/model-v*.json    each model the engine trained, with its scores
    tables/*.csv, summary.csv      the same tables and summary

No root, no network, no processes: everything runs in this process, and a seed's run is
deterministic (the same seed gives the same records).
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.core.node import viewer as V
from testbed.core.node.master import MasterLogic
from testbed.core.node.origin import OriginLogic
from testbed.core.workload import TRACE_COLUMNS
from testbed.harness import manifest, results
from testbed.harness.plan import PLANNED_CSV, RunPlan
from testbed.plan import ENGINE_NAME
from testbed.scenario import Scenario
from testbed.sim.kernel import Kernel
from testbed.sim.network import FlowNet
from testbed.sim.nodes import (
    HTTP_PORT,
    SIGN_CPU_S,
    VERIFY_CPU_S,
    RecordLog,
    SimEngine,
    SimHelper,
    SimMaster,
    SimViewer,
    World,
)
from testbed.traces import write_trace

if TYPE_CHECKING:
    from testbed.harness.run import RunResult

BACKEND = "sim"


def _key(seed: int, what: str) -> bytes:
    return hashlib.sha256(f"meshcast-sim|{seed}|{what}".encode()).digest()


def build_world(plan: RunPlan) -> World:
    """The simulated nodes of ``plan``, on its topology, not yet started."""
    sc = plan.scenario
    k = Kernel()
    world = World(k, FlowNet(k, plan.spec, sc.seed), sc.seed)
    plans = plan.node_plans(0.0, _key(sc.seed, "pseudonyms")[:16], failover=False)
    r = plan.roles
    catalogue = plan.catalogue
    mp = plans[r.master]
    versions = {vid: 1 for vid in catalogue.ids()}
    logic = MasterLogic.from_delivery(r.master, mp.ip, mp.helpers, mp.pingback_settings(),
                                      live=bool(catalogue.ids("live")), versions=versions,
                                      nonce_key=_key(sc.seed, "nonce"), links=mp.link_tuples)
    origin = OriginLogic(logic, mp.origin_settings(catalogue), versions,
                         id_key=_key(sc.seed, "ids"))
    world.add(SimMaster(world, r.master, logic, origin, versions, catalogue, mp.live_t0,
                        mp.ip))
    if plan.engine.enabled:
        ep = plans[ENGINE_NAME]
        world.add(SimEngine(world, ENGINE_NAME, plan.engine.host, ep.engine_config(),
                            catalogue, plan.engine.port))
    book = dict(mp.addresses)  # one address book for every helper (never written)
    for h in r.helpers:
        world.add(SimHelper(world, h, plans[h].helper_settings(HTTP_PORT, catalogue, book)))
    url = {h: f"http://{plan.ip(h)}:{HTTP_PORT}" for h in r.helpers}  # as the daemons name them
    for v in r.viewers:
        vp = plans[v]
        chains = vp.viewer_chains(lambda name, ip: url[name], catalogue)
        settings = V.ViewerSettings(catalogue, vp.live_t0, vp.viewers.startup_buffer_s,
                                    vp.viewers.max_buffer_s)
        world.add(SimViewer(world, v, settings, chains, {u: h for h, u in url.items()},
                            len(vp.sessions) if vp.viewers.model == "workload" else 0))
    return world


#: The cycle collector's thresholds during a run: a young generation this large is
#: collected rarely (a run allocates millions of short-lived objects, almost none in
#: cycles), and the objects built before the run starts are frozen out of every collection.
GC_THRESHOLDS = (100_000, 20, 10)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Python's cycle collector, tuned for one long simulated run and restored after it.

    A full collection walks every object alive: at 10,000 helpers (a heap of about 3 GB)
    they took 44 % of the run's CPU at the default thresholds.  Cycles (a transfer and the
    call waiting on it) are still collected, less often.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def run_sim(scenario: Scenario, out: Path, say: Callable[[str], None] = print,
            fidelity: dict | None = None, plan: RunPlan | None = None) -> RunResult:
    """Play ``scenario`` on the simulated network; results land in ``out`` (see module)."""
    with fewer_collections():
        return _run_sim(scenario, out, say, fidelity, plan)


def _run_sim(scenario: Scenario, out: Path, say: Callable[[str], None],
             fidelity: dict | None, plan: RunPlan | None) -> RunResult:
    from testbed.harness.run import RunDirError, RunResult, policy_horizon_s

    out = Path(out)
    if plan is not None and plan.scenario is not scenario:
        raise ValueError("run_sim: the plan is of another scenario")
    if scenario.faults is not None:
        raise ValueError(f"{scenario.source}: faults: the simulation does not stage faults; "
                         "run the campaign with --backend emu")
    if (out / "logs").exists() or (out / "manifest.json").exists():
        raise RunDirError(f"{out} already holds a run; give another directory")
    started = manifest.now_iso()
    t_start = time.monotonic()
    cpu0 = time.process_time()
    identity = {"scenario": scenario.to_dict(), "policy": scenario.policy,
                "seed": scenario.seed, "source": scenario.source, "backend": BACKEND}
    manifest.write(out, status="running", started_at=started, **identity)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.json").write_text(json.dumps(scenario.to_dict(), indent=1, default=str))
    plan = plan if plan is not None else RunPlan.build(scenario)
    if plan.planned_trace is not None:
        (out / PLANNED_CSV).parent.mkdir(parents=True, exist_ok=True)
        write_trace(plan.planned_trace, out / PLANNED_CSV)
    t_plan = time.monotonic()
    world = build_world(plan)
    k, net = world.k, world.net
    world.log = RecordLog(out / "logs")
    for node in world.nodes.values():
        node.start()
    counted: dict = {}
    warmup = scenario.warmup_s
    for e in sorted((e for e in scenario.events if e.action == "link"), key=lambda e: e.at_s):
        k.at(e.at_s, lambda ev: _set_link(world, ev, say), e)
    if warmup > 0:
        k.at(warmup, lambda _: counted.update(at=k.now, before=net.counters()))
    else:
        counted.update(at=0.0, before=net.counters())
    duration = scenario.duration_s
    step = max(1.0, duration / 10)
    t = 0.0
    while t < duration:
        t = min(duration, t + step)
        k.run(t)
        say(f"t={t:.0f}s of {duration:.0f}s (simulated; {k.events} events)")
    after = net.counters()
    order = [*plan.roles.viewers, *plan.roles.helpers, plan.roles.master, ENGINE_NAME]
    for name in order:
        node = world.nodes.get(name)
        if node is not None:
            node.stop()
    world.stopped = True
    played_s = time.monotonic() - t_plan
    world.log.flush(world.nodes)
    _write_engine(out, world)
    before = counted.get("before", {})
    seconds = duration - counted.get("at", duration)
    links = _links_table(plan.spec, before, after, seconds)
    signed = sum(n.signed for n in world.nodes.values())
    verified = sum(n.verified for n in world.nodes.values())
    summary = results.write_results(
        out, {"policy": scenario.policy or scenario.delivery.prefetch_policy,
              "seed": scenario.seed, "cpu_idle_min": None, "cpu_idle_mean": None,
              "cpu_trusted": None, "link_mode": BACKEND,
              **results.emulator_figures(None),
              "fidelity_passed": None, "fidelity_rows": None, "backend": BACKEND},
        end_at=duration, spec=plan.spec, links=links, warmup_s=warmup,
        settle_s=policy_horizon_s(scenario) + scenario.delivery.prefetch_interval_s)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timings = {"plan_s": round(t_plan - t_start, 3), "play_s": round(played_s, 3),
               "total_s": round(time.monotonic() - t_start, 3)}
    sim = {"events": k.events, "flows": net.flows, "simulated_s": duration,
           "events_per_s": round(k.events / played_s, 1) if played_s > 0 else None,
           "cpu_s": round(time.process_time() - cpu0, 3), "peak_rss_mb": round(peak_mb, 1),
           "signatures": {"signed": signed, "verified": verified,
                          "cpu_s": round(signed * SIGN_CPU_S + verified * VERIFY_CPU_S, 3)}}
    manifest.write(out, status=manifest.COMPLETE, started_at=started,
                   finished_at=manifest.now_iso(), **identity, link_mode=BACKEND,
                   fidelity=fidelity, switches=None, cpu=None, timings=timings,
                   failures=[], sim=sim,
                   workload_sha256=manifest.file_digest(out / PLANNED_CSV))
    say(f"simulated {duration:.0f} s in {played_s:.1f} s ({k.events} events, "
        f"{peak_mb:.0f} MB peak)")
    return RunResult(out=out, summary=summary, timings=timings, failures=[])


def _set_link(world: World, e, say: Callable[[str], None]) -> None:
    a, b = e.target.split("-", 1)
    fields = dict(e.fields)
    world.net.set_link(a, b, **fields)
    say(f"t={world.k.now:.0f}s link {a}-{b} changed: {fields}")




def _write_engine(out: Path, world: World) -> None:
    engine = world.nodes.get(ENGINE_NAME)
    if not isinstance(engine, SimEngine):
        return
    d = out / "engine"
    (d / "models").mkdir(parents=True, exist_ok=True)
    if engine.archive:
        import pandas as pd

        pd.DataFrame(engine.archive)[list(TRACE_COLUMNS)].to_csv(d / "telemetry.csv",
                                                                  index=False)
    for version, metrics in engine.models.items():
        (d / "models" / f"model-v{version:04d}.json").write_text(
            json.dumps(metrics, indent=1, default=str))


def _links_table(spec, before: dict, after: dict, seconds: float):
    moved = {}
    ports = {}
    for a, b in spec.edges():
        name = f"{a}|{b}"
        ports[(a, b)] = name
        tx = after[(a, b)] - before.get((a, b), 0.0)
        rx = after[(b, a)] - before.get((b, a), 0.0)
        moved[name] = (int(tx), int(rx))
    return results.links_table(spec, moved, ports, seconds if seconds > 0 else math.nan)
