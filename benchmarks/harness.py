"""What the experiment harness costs per run beyond the scenario's own play time (root).

Writes benchmarks/out/harness.json.  For the default scenario (8 helpers, 4 viewers, 5
switches) and a tiny one (2 helpers, 2 viewers, 3 switches), each played for 10 s, three
times: seconds to bring the network up, to start the daemons, to stop them and the network,
and to turn the logs into tables and the manifest.  The overhead is everything but the
play time; the ratio compares it with the play time of the default scenario's 120 s run.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402
from testbed.harness.run import run_scenario  # noqa: E402
from testbed.scenario import load_scenario  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLAY_S = 10.0
REPEATS = 3
TINY = {"topology.params.regions": 2, "topology.params.helpers_per_region": 1}


def one(overrides: dict) -> dict:
    sc = load_scenario(ROOT / "experiments" / "default.yaml").with_overrides(
        {"duration_s": PLAY_S, "warmup_s": 0, **overrides})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        result = run_scenario(sc, Path(tmp) / "run", say=lambda m: None)
        total = time.monotonic() - t0
    t = result.timings
    tables = total - t["total_s"]
    return {"network_up_s": t["network_s"], "daemons_up_s": t["daemons_s"],
            "play_s": t["play_s"], "teardown_s": t["teardown_s"],
            "tables_and_manifest_s": t["total_s"] - t["network_s"] - t["daemons_s"]
            - t["play_s"] - t["teardown_s"] + tables,
            "overhead_s": total - t["play_s"], "total_s": total}


def main() -> None:
    out = {}
    for name, overrides in (("default", {}), ("tiny", TINY)):
        runs = [one(overrides) for _ in range(REPEATS)]
        out[name] = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
        out[name]["runs"] = runs
        print(name, {k: v for k, v in out[name].items() if k != "runs"}, flush=True)
    play = load_scenario(ROOT / "experiments" / "default.yaml").duration_s
    write("harness", {
        "play_s_per_run": PLAY_S, "repeats": REPEATS, **out,
        "ratios": {
            "default_overhead_to_its_play_time": round(out["default"]["overhead_s"] / play, 3),
            "default_overhead_to_tiny": round(out["default"]["overhead_s"]
                                              / out["tiny"]["overhead_s"], 2)},
    })


if __name__ == "__main__":
    main()
