"""A long campaign's watch: memory and descriptors judged flat or not per process, and the
insider's fuzz chunks added up (testbed.harness.stress)."""

from __future__ import annotations

import json

import pandas as pd

from testbed.harness.stress import fuzz_totals, growth, proc_usage, verdict


def series(process, pid, times, rss, fds):
    return pd.DataFrame({"at_s": times, "process": process, "pid": pid, "rss_kb": rss,
                         "fds": fds})


TIMES = list(range(0, 1210, 10))  # 20 minutes, every 10 s


def test_a_steady_process_is_flat_and_a_leaking_one_is_not():
    steady = series("h1", 10, TIMES, [50_000 + (t % 30) * 10 for t in TIMES], 40)
    leaking = series("m1", 11, TIMES, [50_000 + 20 * t for t in TIMES],
                     [30 + t // 60 for t in TIMES])
    table = growth(pd.concat([steady, leaking]), end_s=1200).set_index("process")
    assert bool(table.loc["h1", "flat"]) and table.loc["h1", "rss_growth_pct"] < 1
    m1 = table.loc["m1"]
    assert not m1["flat"] and m1["rss_growth_pct"] > 10 and m1["fds_growth"] >= 8
    # the first minute of a life (caches and pools filling) is not judged
    assert table.loc["h1", "span_s"] == 1200 - 60


def test_a_restarted_process_is_judged_over_its_last_life():
    first = series("h2", 20, TIMES[:30], [10_000 + 1000 * i for i in range(30)], 40)
    later = TIMES[30:]
    second = series("h2", 21, later, [60_000] * len(later), 40)
    row = growth(pd.concat([first, second]), end_s=1200).iloc[0]
    assert (row["pid"], row["restarts"], bool(row["flat"])) == (21, 1, True)
    assert row["span_s"] == later[-1] - later[0] - 60


def test_a_short_life_is_left_out():
    assert growth(series("v1", 5, [0, 10, 20, 70, 80], [1] * 5, [1] * 5), 100).empty
    assert growth(pd.DataFrame(), 100).empty


def test_the_verdict_judges_only_processes_watched_long_enough(tmp_path):
    steady = series("h1", 10, TIMES, [50_000] * len(TIMES), 40)
    late = series("h3", 30, TIMES[-20:], [50_000 + 5000 * i for i in range(20)], 40)
    pd.concat([steady, late]).to_csv(tmp_path / "usage.csv", index=False)
    chunk = {"sent": 100, "codes": {"200": 60, "403": 30, "504": 2, "0": 1, "udp": 7},
             "failures": [{"status": 504}, {"status": 0}]}
    (tmp_path / "fuzz.jsonl").write_text(
        json.dumps({"chunk": 0, **chunk}) + "\n" + json.dumps({"chunk": 1, **chunk}) + "\n"
        + json.dumps({"chunk": 2, "error": "exit 1"}) + "\n")
    got = verdict(tmp_path, end_s=1200)
    # h3 grew by half over its short life, but 130 s out of 1200 says nothing of a leak
    assert got["usage_flat"] is True and got["usage_not_flat"] == []
    assert got["rss_growth_pct_max"] > 10
    assert (got["fuzz_sent"], got["fuzz_server_errors"], got["fuzz_no_answer"]) == (200, 4, 2)
    assert got["fuzz"]["codes"]["200"] == 120 and got["fuzz"]["chunk_errors"] == 1
    assert len(got["fuzz"]["failures"]) == 4
    assert (tmp_path / "growth.csv").exists()
    # a run of 200 s judges nothing: its load is still building up
    short = tmp_path / "short"
    short.mkdir()
    series("h1", 10, TIMES[:21], [50_000 + 1000 * i for i in range(21)], 40).to_csv(
        short / "usage.csv", index=False)
    got = verdict(short, end_s=200)
    assert got["usage_flat"] is None and got["rss_growth_pct_max"] > 10
    # nothing watched, nothing fuzzed: no verdict on flatness
    empty = tmp_path / "none"
    empty.mkdir()
    got = verdict(empty, end_s=1200)
    assert got["usage_flat"] is None and got["fuzz_sent"] == 0
    assert fuzz_totals(empty / "fuzz.jsonl") == {"sent": 0, "chunks": 0}


def test_usage_of_this_process_and_of_none():
    import os

    rss, fds = proc_usage(os.getpid())
    assert rss > 1000 and fds >= 3
    assert proc_usage(2 ** 22 + 12345) is None


def test_a_cache_filling_to_its_capacity_is_not_a_leak(tmp_path):
    # h1's resident size grows by exactly what its cache holds, up to 60 MB; h2 grows
    # the same with an empty cache
    fill = [min(60_000, 100 * t) for t in TIMES]
    usage = pd.concat([series("h1", 10, TIMES, [50_000 + f for f in fill], 40),
                       series("h2", 11, TIMES, [50_000 + f for f in fill], 40)])
    usage.to_csv(tmp_path / "usage.csv", index=False)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "h1.jsonl").write_text("".join(
        json.dumps({"kind": "cache_state", "node": "h1", "at": t - 2,
                    "used_bytes": f * 1024, "capacity_bytes": 64_000_000, "entries": 1}) + "\n"
        for t, f in zip(TIMES, fill)) + '{"kind":"cache_state","node":"h1","at"')  # torn
    (logs / "h2.jsonl").write_text(json.dumps(
        {"kind": "cache_state", "node": "h2", "at": 1, "used_bytes": 0,
         "capacity_bytes": 64_000_000, "entries": 0}) + "\n")
    got = verdict(tmp_path, end_s=1200, logs=logs)
    table = pd.read_csv(tmp_path / "growth.csv").set_index("process")
    assert table.loc["h1", "rss_growth_pct"] > 10 and table.loc["h1", "held_growth_pct"] < 1
    assert table.loc["h2", "held_growth_pct"] > 10
    assert got["usage_not_flat"] == ["h2"] and got["usage_flat"] is False


def test_the_fuzzer_s_totals_are_its_last_json_line_whatever_else_it_printed():
    from testbed.harness.stress import _last_json

    assert _last_json('Falsifying example:\n{"sent": 3}\nTrying example\n') == {"sent": 3}
    assert _last_json('{"sent": 1}\n{"sent": 2}\n') == {"sent": 2}
    assert _last_json("") is None and _last_json("[1, 2]\nnot json\n") is None


def test_a_sigterm_makes_the_fuzzer_say_what_it_sent_and_leave_at_once(tmp_path):
    import subprocess
    import sys

    # a fuzz under way (no network needed: the counts are what it says), then SIGTERM
    code = """
import collections, os, signal, sys, time
from testbed.nodes import fuzzer as fz
class F:
    sent = collections.Counter({"h1:probe": 7, "m1:neighbours": 5})
    codes = collections.Counter({200: 9, 403: 3})
    failures = []
    count = 20000
fz._RUNNING.update(fz=F(), t=time.monotonic())
signal.signal(signal.SIGTERM, fz._stop)
print("a library's own line", flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
print("not reached")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    from testbed.harness.stress import _last_json

    got = _last_json(res.stdout)
    assert res.returncode == 0 and "not reached" not in res.stdout, res.stderr
    assert got["sent"] == 12 and got["stopped"] is True and got["codes"] == {"200": 9,
                                                                               "403": 3}
