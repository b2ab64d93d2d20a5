"""What a simulated run costs as helpers are added: wall time, events per second and peak
memory at 100, 1,000 and 10,000 helpers (no root).

Writes benchmarks/out/sim_scale.json.  Each point is ``experiments/scale/geometric-1000.yaml``
with the helpers, viewer hosts (one per 10 helpers), switches and link radius of the
sweep in ``experiments/sweeps/scale-helpers.yaml``, the predictive policy, played for
``--duration`` simulated seconds (default 120, warm-up 24) in a fresh process, so its peak
resident memory is its own.  Reported per point: sessions, requests, events, the
simulation's wall and CPU time (the whole run: plan, play, tables), events and requests per
CPU second (one core; CPU time, so a busy machine slows the wall clock but not these),
peak RSS; and side by side, each point's growth over the previous one against the growth
in helpers (1.0: linear).

    .venv/bin/python benchmarks/sim_scale.py [--sizes 100,1000,10000] [--duration 120]

Target (issue: scale where it hurts): 10,000 helpers and 1,000,000 sessions in <= 15 min on
one core and <= 8 GB; the extrapolation line says how far the measured rate is from it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write  # noqa: E402

SHAPE = {100: (10, 20, 0.4), 300: (30, 60, 0.25), 1000: (100, 200, 0.14),
         3000: (300, 400, 0.1), 10000: (1000, 500, 0.09)}


def one(helpers: int, duration: float, policy: str) -> dict:
    """Play one point here and return its figures (run in a child process)."""
    from testbed.scenario import load_scenario
    from testbed.sim import run_sim

    viewers, switches, radius = SHAPE[helpers]
    sc = load_scenario(ROOT / "experiments" / "scale" / "geometric-1000.yaml")
    sc = sc.with_overrides({"topology.params.helpers": helpers,
                            "topology.params.viewers": viewers,
                            "topology.params.switches": switches,
                            "topology.params.radius": radius, "duration_s": duration,
                            "warmup_s": min(60.0, duration / 5), "policy": policy})
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.monotonic(), time.process_time()
        r = run_sim(sc, Path(d) / "run", say=lambda m: None)
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        sim = json.loads((Path(d) / "run" / "manifest.json").read_text())["sim"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = r.summary
    return {"helpers": helpers, "viewer_hosts": viewers, "switches": switches,
            "simulated_s": duration, "sessions": int(s["sessions"]),
            "requests": int(s["requests"]), "events": sim["events"],
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "play_s": r.timings["play_s"], "sim_cpu_s": sim["cpu_s"],
            "events_per_cpu_s": round(sim["events"] / cpu, 1),
            "requests_per_cpu_s": round(int(s["requests"]) / cpu, 1),
            "peak_rss_mb": round(peak_mb, 1), "hit_ratio": s["hit_ratio"],
            "startup_p95_s": s["startup_p95_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--policy", default="predictive")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.duration, a.policy)))
        return
    points = []
    for n in (int(x) for x in a.sizes.split(",")):
        got = subprocess.run([sys.executable, __file__, "--one", str(n), "--duration",
                              str(a.duration), "--policy", a.policy],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        points.append(json.loads(got.stdout.strip().splitlines()[-1]))
        print(points[-1], flush=True)
    for prev, cur in zip(points, points[1:]):
        grow = cur["helpers"] / prev["helpers"]
        cur["growth_vs_previous"] = {
            "helpers": grow,
            "cpu_per_helper_growth": round(cur["cpu_s"] / prev["cpu_s"] / grow, 3),
            "events_per_helper_growth": round(cur["events"] / prev["events"] / grow, 3),
            "rss_growth": round(cur["peak_rss_mb"] / prev["peak_rss_mb"], 3)}
    last = points[-1]
    per_session = last["cpu_s"] / max(1, last["sessions"])
    write("sim_scale", {
        "duration_s": a.duration, "policy": a.policy, "points": points,
        "extrapolated_1M_sessions_cpu_s": round(per_session * 1_000_000, 1),
        "target": {"sessions": 1_000_000, "wall_s": 900, "rss_mb": 8192}})


if __name__ == "__main__":
    main()
