"""Building a run's plan for 1,000 and 10,000 helpers (no root).

Writes benchmarks/out/plan_build.json.  The default scenario on a ``geometric`` topology
(switches: helpers / 25, at most 500; viewer hosts: a tenth of the helpers), 600 s of the
calibrated workload at 0.03 arrivals per second per helper.  Timed, wall and CPU seconds
of this process:

* ``spec``: the scenario's topology spec (generated and validated);
* ``plan``: :meth:`RunPlan.build` on it (address plan, players, workload, who plays what);
* ``trace``: the planned sessions as a trace (``RunPlan.planned_trace``);
* ``node_plans``: every daemon's typed plan.

Sizes on the command line replace the default ones: ``python benchmarks/plan_build.py 2000``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write  # noqa: E402
from testbed.harness.plan import RunPlan  # noqa: E402
from testbed.scenario import load_scenario  # noqa: E402

SIZES = (1000, 10_000)


def scenario(helpers: int):
    params = {"switches": min(500, max(12, helpers // 25)),
              "radius": 0.12 if helpers > 2000 else 0.25,
              "helpers": helpers, "viewers": max(4, helpers // 10), "ms_per_unit": 40,
              "access_delay_ms": 1, "core_bw_mbit": 1000, "access_bw_mbit": 50,
              "master_bw_mbit": 10000}
    return load_scenario(ROOT / "experiments" / "default.yaml").with_overrides({
        "topology.generator": "geometric", "topology.params": params,
        "viewers.arrival_rate": 0.03, "duration_s": 600, "warmup_s": 60})


def timed(out: dict, name: str, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    out[name] = {"wall_s": round(time.perf_counter() - wall, 3),
                 "cpu_s": round(time.process_time() - cpu, 3)}
    print(f"  {name}: {out[name]}", flush=True)
    return value


def one(helpers: int) -> dict:
    print(f"{helpers} helpers", flush=True)
    out: dict = {}
    sc = scenario(helpers)
    spec = timed(out, "spec", sc.build_spec)
    plan = timed(out, "plan", lambda: RunPlan.build(sc, spec))
    trace = timed(out, "trace", lambda: plan.planned_trace)
    plans = timed(out, "node_plans", lambda: plan.node_plans(0.0, b"x" * 16))
    out["counts"] = {"nodes": spec.number_of_nodes(), "sessions": len(plan.sessions),
                     "trace_rows": len(trace), "node_plans": len(plans)}
    return out


def main() -> None:
    sizes = tuple(int(a) for a in sys.argv[1:]) or SIZES
    write("plan_build", {"sizes": {str(n): one(n) for n in sizes}})


if __name__ == "__main__":
    main()
