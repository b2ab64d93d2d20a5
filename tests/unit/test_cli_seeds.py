"""The command line over several seeds: --seeds parsing and refusals, the printed table
(mean ± 95 % CI per policy, the verdict under it) and --require-fidelity, with stand-ins
for the fidelity check and the run: no network is ever built here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from testbed import cli
from testbed.harness import manifest, stats
from testbed.harness.experiment import ALL_POLICIES

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "experiments" / "default.yaml")
HIT = {"tree": 0.1, "mesh-pull": 0.2, "popularity": 0.3, "predictive": 0.4, "oracle": 0.5}
GOOD = {"measurements": 25, "passed": 25, "failed": [], "untrusted": [], "min_cpu_idle": 0.5}
BAD = {**GOOD, "passed": 9, "failed": [f"row{i}" for i in range(16)]}


@dataclass
class Result:
    out: Path
    summary: dict
    timings: dict = field(default_factory=lambda: {"total_s": 1.0})
    failures: list = field(default_factory=list)


class Stand:
    """Stand-ins for check_network and run_scenario, recording what they were asked."""

    def __init__(self, check: dict | Exception = GOOD) -> None:
        self.check, self.checked, self.played = check, [], []

    def check_network(self, sc, path: Path, mode=None, sample=None, throughput=True,
                      progress=None, started=None, spec=None) -> dict:
        self.checked.append((sc.seed, path))
        if isinstance(self.check, Exception):
            raise self.check
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"summary": self.check}))
        return {"summary": self.check, "results": []}

    def run_scenario(self, sc, run_dir: Path, say=None, mode=None, fidelity=None,
                     plan=None) -> Result:
        self.played.append((sc.policy, sc.seed))
        run_dir.mkdir(parents=True)
        # the hit ratio moves with the seed, so the CI has a width: seeds 1,2,3 -> +0,.1,.2
        summary = {"hit_ratio": HIT.get(sc.policy, 0.3) + (sc.seed - 1) / 10, "byte_offload": 0.5,
                   "startup_p95_s": 1.5, "cpu_trusted": sc.seed != 3, "policy": sc.policy,
                   "seed": sc.seed}
        pd.DataFrame([summary]).to_csv(run_dir / "summary.csv", index=False)
        manifest.write(run_dir, status=manifest.COMPLETE, policy=sc.policy, seed=sc.seed,
                       fidelity=fidelity)
        return Result(run_dir, summary)


@pytest.fixture
def stand(monkeypatch) -> Stand:
    """Root, the check and the run replaced; building a network fails the test."""
    from testbed.emu import network
    from testbed.harness import fidelity, run

    s = Stand()
    monkeypatch.setattr(cli, "_require_root", lambda what: None)
    monkeypatch.setattr(fidelity, "check_network", s.check_network)
    monkeypatch.setattr(run, "run_scenario", s.run_scenario)

    def no_network(*a, **k):
        raise AssertionError("a unit test tried to build a network")

    monkeypatch.setattr(network.TestbedNetwork, "__init__", no_network)
    monkeypatch.setattr(manifest, "_run", lambda argv: "")
    monkeypatch.setattr(manifest, "packages", lambda: {"pandas": pd.__version__})
    monkeypatch.setattr(cli, "console", Console(width=200, force_terminal=False))
    return s


def invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args))


def error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


# -- --seeds --------------------------------------------------------------------------------------

def test_parse_seeds():
    assert cli._parse_seeds("1,2,3") == [1, 2, 3]
    assert cli._parse_seeds(" 7 , 0 ") == [7, 0]
    assert cli._seed_options(None, None) is None and cli._seed_options(4, None) is None
    assert cli._seed_options(None, "5") == [5]


@pytest.mark.parametrize("command", ["compare", "demo"])
@pytest.mark.parametrize(("args", "fragment"), [
    (["--seed", "1", "--seeds", "1,2"], "give --seed S (one seed) or --seeds A,B,C"),
    (["--seeds", "1,x"], "--seeds '1,x': expected distinct whole numbers >= 0"),
    (["--seeds", "1,1"], "--seeds '1,1': expected distinct"),
    (["--seeds", "-1"], "--seeds '-1': expected distinct"),
    (["--seeds", ""], "--seeds '': expected"),
])
def test_bad_seeds_are_refused_in_one_line(stand, command, args, fragment):
    result = invoke(command, DEFAULT, *args)
    assert result.exit_code == 2
    assert fragment in error_line(result)
    assert stand.played == [] and stand.checked == []


def test_seed_given_twice_through_set_is_refused(stand):
    result = invoke("compare", DEFAULT, "--seeds", "1,2", "--set", "seed=3")
    assert result.exit_code == 2 and "seed is given twice" in error_line(result)


def test_compare_over_seeds_plays_every_policy_on_every_seed(stand, tmp_path):
    out = tmp_path / "cmp"
    result = invoke("compare", DEFAULT, "--policies", "tree,oracle", "--seeds", "1,2,3",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    assert stand.played == [("tree", 1), ("oracle", 1), ("tree", 2), ("oracle", 2),
                            ("tree", 3), ("oracle", 3)]
    assert sorted({seed for seed, _ in stand.checked}) == [1, 2, 3]  # one check per network
    assert (out / "aggregate.csv").exists() and (out / "report.html").exists()
    text = result.output
    ci = stats.t975(2) * 0.1 / 3 ** 0.5  # tree: 0.1, 0.2, 0.3 -> sd 0.1
    assert f"0.2 ± {ci:.2g}" in text and f"{ci:.2g}" == "0.25"
    assert "fidelity: 75/75 rows within tolerance (3 networks); CPU-trusted: 4/6 runs" in text
    assert re.search(r"hit ratio 0\.\d{3}, byte offload 0\.500, startup p95 1\.50 s", text)


def test_demo_with_one_seed_keeps_the_single_seed_form(stand, tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", DEFAULT, "--seed", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    n = len(ALL_POLICIES)
    assert {seed for _, seed in stand.played} == {2} and len(stand.played) == n
    assert json.loads((out / "collection.json").read_text())["axes"] == {
        "policy": list(ALL_POLICIES)}
    assert " ± " not in result.output
    assert f"fidelity: 25/25 rows within tolerance; CPU-trusted: {n}/{n} runs" in result.output


# -- --require-fidelity --------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["compare", DEFAULT, "--seeds", "1,2"], ["demo", DEFAULT]])
def test_require_fidelity_refuses_to_play_a_failed_network(stand, tmp_path, command):
    stand.check = BAD
    result = invoke(*command, "--require-fidelity", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "16 of 25 rows out of tolerance" in line and "nothing played" in line
    assert str(tmp_path / "x" / "fidelity") in line
    assert stand.played == []


def test_require_fidelity_refuses_a_check_that_cannot_run(stand, tmp_path):
    stand.check = RuntimeError("Mininet\nis missing")
    result = invoke("compare", DEFAULT, "--require-fidelity", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "could not run (RuntimeError: Mininet is missing)" in error_line(result)
    assert stand.played == []


def test_require_fidelity_plays_when_every_row_passed(stand, tmp_path):
    result = invoke("compare", DEFAULT, "--policies", "tree", "--require-fidelity", "--out",
                    str(tmp_path / "x"))
    assert result.exit_code == 0, result.output
    assert stand.played == [("tree", 1)]


def test_require_fidelity_with_no_check_is_refused(stand, tmp_path):
    result = invoke("compare", DEFAULT, "--no-check", "--require-fidelity", "--out",
                    str(tmp_path / "x"))
    assert result.exit_code == 2 and "drop --no-check" in error_line(result)


def test_without_the_flag_a_failed_check_is_recorded_and_shown(stand, tmp_path):
    stand.check = BAD
    result = invoke("compare", DEFAULT, "--policies", "tree,oracle", "--out",
                    str(tmp_path / "x"))
    assert result.exit_code == 0, result.output
    assert len(stand.played) == 2
    assert "fidelity: 9/25 rows within tolerance; CPU-trusted: 2/2 runs" in result.output


@pytest.mark.parametrize(("check", "fragment"), [
    (BAD, "fidelity check: 16 of 25 rows out of tolerance ("),
    (RuntimeError("no root"), "fidelity check: could not run (RuntimeError: no root) ("),
    ({**GOOD, "measurements": 0, "passed": 0}, "fidelity check: measured no rows ("),
])
def test_run_require_fidelity(stand, tmp_path, check, fragment):
    stand.check = check
    played = []
    cli_play = cli._play_run
    try:
        cli._play_run = lambda *a, **k: played.append(a)
        result = invoke("run", DEFAULT, "--require-fidelity", "--out", str(tmp_path / "r"))
    finally:
        cli._play_run = cli_play
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert fragment in line and str(tmp_path / "r" / "fidelity" / "network.json") in line
    assert played == []


# -- the printed table --------------------------------------------------------------------------

def seeded_points() -> pd.DataFrame:
    """tree and predictive on seeds 1..3, predictive's seed 3 failed."""
    rows = []
    for i, (seed, policy) in enumerate([(s, p) for s in (1, 2, 3)
                                        for p in ("tree", "predictive")]):
        done = (seed, policy) != (3, "predictive")
        row = {"point": f"p{i:02d}", "dir": f"points/p{i:02d}",
               "status": "complete" if done else "failed", "seed": seed, "policy": policy}
        if done:
            row.update(hit_ratio=HIT[policy] + seed / 100, byte_offload=0.6 + seed / 50,
                       startup_p95_s=1.0 + seed / 10, cpu_trusted=False,
                       fidelity_passed=9, fidelity_rows=25, fidelity_check=f"net{seed}")
        rows.append(row)
    return pd.DataFrame(rows)


def test_table_over_seeds_shows_mean_ci_and_the_seeds():
    heads, rows, line = cli.comparison_cells(seeded_points(), ["seed", "policy"])
    assert heads[:4] == ["policy", "seeds", "edge hit ratio", "byte offload"]
    assert heads[-2:] == ["fidelity", "CPU-trusted"]
    tree, pred = (dict(zip(heads, r)) for r in rows)
    ci = stats.t975(2) * 0.01 / 3 ** 0.5  # tree: 0.11, 0.12, 0.13 -> sd 0.01
    assert tree["seeds"] == "3" and tree["edge hit ratio"] == f"0.12 ± {ci:.2g}"  # CI: 2 digits
    assert pred["seeds"] == "2" and pred["edge hit ratio"].startswith("0.415 ± ")
    assert "origin B / viewer B" not in heads  # no run has the column (older runs): left out
    assert (tree["fidelity"], tree["CPU-trusted"]) == ("27/75", "0/3")
    assert (pred["fidelity"], pred["CPU-trusted"]) == ("18/50", "0/2")
    assert line == "fidelity: 27/75 rows within tolerance (3 networks); CPU-trusted: 0/5 runs"


def test_table_of_one_seed_shows_the_values_as_they_are():
    points = seeded_points()
    points = points[points["seed"] == 1].drop(columns="seed")
    heads, rows, line = cli.comparison_cells(points, ["policy"])
    assert heads[:3] == ["point", "policy", "edge hit ratio"]
    assert [r[:3] for r in rows] == [["p00", "tree", "0.11"], ["p01", "predictive", "0.41"]]
    assert [r[-2:] for r in rows] == [["9/25", "0/1"], ["9/25", "0/1"]]
    assert line == "fidelity: 9/25 rows within tolerance; CPU-trusted: 0/2 runs"  # one network


def test_printed_table_sample(monkeypatch):
    console = Console(width=150, record=True, force_terminal=False)
    monkeypatch.setattr(cli, "console", console)
    cli._comparison_table(seeded_points(), ["seed", "policy"], "compare: compare-default")
    text = console.export_text()
    assert "± " in text and "seeds" in text
    assert text.rstrip().endswith("fidelity: 27/75 rows within tolerance (3 networks); "
                                  "CPU-trusted: 0/5 runs")
    print(text)  # the sample shown with -s


def test_a_metric_some_runs_lack_shows_a_dash():
    points = seeded_points()
    points["origin_per_viewer_byte"] = [0.3, None, 0.5, None, 0.4, None]
    heads, rows, _ = cli.comparison_cells(points, ["seed", "policy"])
    tree, pred = (dict(zip(heads, r)) for r in rows)
    assert tree["origin B / viewer B"].startswith("0.4 ± ") and pred["origin B / viewer B"] == "—"
    one = points[points["seed"] == 1].drop(columns="seed")
    heads, rows, _ = cli.comparison_cells(one, ["policy"])
    assert [dict(zip(heads, r))["origin B / viewer B"] for r in rows] == ["0.3", "—"]
    assert cli._run_line({"hit_ratio": 0.5}) == ("hit ratio 0.500, byte offload —, "
                                                 "startup p95 —")
