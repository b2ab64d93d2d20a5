"""The experiment harness on real networks: a 2 x 2 sweep (policy x cache size) stopped by
SIGTERM after its first point, then resumed: the first point is kept as it was, the other
three run, every run directory has its manifest (with the network's fidelity check, run
once), the points played the same viewers, and the reports' numbers are summary.csv's."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import REPO

from testbed.harness import report as R

SCENARIO = """
name: tiny
seed: 3
duration_s: 16
topology:
  generator: tiered
  params: {regions: 2, helpers_per_region: 1, viewers_per_region: 1,
           tier_delays_ms: [3, 20], core_bw_mbit: 20, access_bw_mbit: 20, master_bw_mbit: 20}
calibration: {probes: 20, interval_s: 0.01, iperf_seconds: 0, sample: 3, paths: false}
content: {videos: 6, live_channels: 0, duration_s: 40, bitrate_kbps: 200, segment_s: 2}
delivery: {cache_mb: 2, mesh_degree: 1, pingback_interval_s: 3}
viewers: {model: workload, arrival_rate: 0.3}
engine: {min_train_s: 200}
events: []
"""

SWEEP = """
name: tiny-2x2
scenario: tiny.yaml
mode: grid
axes:
  policy: [tree, predictive]
  delivery.cache_mb: [1, 4]
"""


@contextlib.contextmanager
def run_cli(log, *args):
    """The CLI in a child process writing to ``log`` (a file: a pipe nobody reads until the
    end could fill and stall it); stopped by SIGTERM, then SIGKILL, whatever ends the test."""
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "testbed", *args], cwd=REPO,
                                stdout=f, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def finish(proc, log, timeout):
    """Wait for ``proc`` to end; its output."""
    proc.wait(timeout=timeout)
    return Path(log).read_text()


def manifest(out, point):
    return json.loads((out / "points" / point / "manifest.json").read_text())


def test_a_sweep_stopped_after_its_first_point_resumes_without_redoing_it(tmp_path):
    (tmp_path / "tiny.yaml").write_text(SCENARIO)
    sweep = tmp_path / "tiny-2x2.yaml"
    sweep.write_text(SWEEP)
    out = tmp_path / "sweep"

    log = tmp_path / "first.log"
    with run_cli(log, "sweep", str(sweep), "--out", str(out)) as first:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            try:
                if manifest(out, "p00").get("status") == "complete":
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        assert first.poll() is None, log.read_text()[-3000:]
        time.sleep(3)  # into the second point
        first.send_signal(signal.SIGTERM)
        text = finish(first, log, 120)
    print(text[-3000:])
    assert first.returncode == 1 and "resume" in text, text[-2000:]
    kept = manifest(out, "p00")
    kept_summary = (out / "points" / "p00" / "summary.csv").read_bytes()
    kept_mtime = os.stat(out / "points" / "p00" / "summary.csv").st_mtime_ns
    table = pd.read_csv(out / "points.csv")
    assert list(table["status"])[0] == "complete"
    assert "complete" not in list(table["status"])[1:], table[["point", "status"]]

    log = tmp_path / "second.log"
    with run_cli(log, "sweep", str(sweep), "--out", str(out)) as second:
        text = finish(second, log, 600)
    print(text[-4000:])
    assert second.returncode == 0, text[-3000:]
    assert re.search(r"p00: kept", text) and "ran 3, kept 1, failed 0" in text, text[-2000:]
    assert manifest(out, "p00") == kept
    assert (out / "points" / "p00" / "summary.csv").read_bytes() == kept_summary
    assert os.stat(out / "points" / "p00" / "summary.csv").st_mtime_ns == kept_mtime

    table = pd.read_csv(out / "points.csv")
    assert list(table["status"]) == ["complete"] * 4
    assert list(zip(table["policy"], table["delivery.cache_mb"])) == [
        ("tree", 1), ("tree", 4), ("predictive", 1), ("predictive", 4)]
    manifests = [manifest(out, p) for p in table["point"]]
    # one network, checked once; every manifest says what ran where
    assert len(list((out / "fidelity").glob("*.json"))) == 1
    for m in manifests:
        assert m["status"] == "complete" and m["commit"] and m["packages"]["networkx"]
        assert m["fidelity"]["measurements"] >= 1 and m["fidelity"]["source"]
        assert m["host"]["cpus"] >= 1 and 0 <= m["cpu"]["idle_mean"] <= 1
        assert m["timings"]["network_s"] > 0 and m["timings"]["teardown_s"] > 0
    # the same viewers at every point, and each point ran what its row says
    assert len({m["workload_sha256"] for m in manifests}) == 1
    assert [m["scenario"]["delivery"]["cache_mb"] for m in manifests] == [1, 4, 1, 4]
    tree = pd.read_csv(out / "points" / "p00" / "summary.csv").iloc[0]
    assert tree["pushes"] == 0 and tree["requests"] > 20
    pred = pd.read_csv(out / "points" / "p02" / "summary.csv").iloc[0]
    assert pred["pushes"] > 0

    # the reports render, and their numbers are summary.csv's
    assert (out / "report.html").stat().st_size > 1000
    assert (out / "figures" / "vs_delivery_cache_mb.png").stat().st_size > 1000
    md = (out / "points" / "p02" / "report.md").read_text()
    summary = pd.read_csv(out / "points" / "p02" / "summary.csv").iloc[0]
    for key in ("hit_ratio", "byte_offload", "startup_p95_s", "prefetch_precision", "requests"):
        row = re.search(rf"^\| {key} \| ([^|]+) \|$", md, re.M)
        assert row and row.group(1).strip() == R.fmt(summary[key]), (key, row)
