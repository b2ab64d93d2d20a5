"""The ``testbed`` command: bring networks up and down, check them, clean up."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="meshcast-testbed: a Mininet testbed for a multicast mesh with "
                       "predictive prefetching.")
# Tables stay readable when output goes to a file or a narrow terminal.
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

DEFAULT_SCENARIO = Path("experiments/default.yaml")
MODE_HELP = "Link emulation: auto (netem where the kernel has it), netem or userspace."


def _fail(msg: str, code: int = 2) -> None:
    print(f"error: {msg}", file=sys.stderr)  # one line, never wrapped
    raise typer.Exit(code)


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        _fail(f"{what} needs root (Mininet and Open vSwitch): run it with sudo")


def _load(path: Path):
    """The scenario at ``path`` and its topology spec, or one clear line and exit 2."""
    from testbed.scenario import ScenarioError, load_scenario

    try:
        sc = load_scenario(path)
        spec = sc.build_spec()
    except ScenarioError as exc:
        _fail(str(exc))
    _warn_below_floor(sc, spec)
    return sc, spec


def _warn_below_floor(sc, spec) -> None:
    """One line when links ask for less delay than this machine's switches add."""
    from testbed.core import floor as F
    from testbed.emu.kernel import has_netem
    from testbed.emu.switchprobe import platform_estimate

    if sc.links.mode == "netem" or (sc.links.mode == "auto" and has_netem()):
        return  # kernel links: the switch time is not taken out of netem's delay
    per_switch, where = platform_estimate()
    line = F.below_floor_line(F.links_below_floor(spec, per_switch), where)
    if line:
        err.print(f"[yellow]note:[/] {sc.source}: {line}")


class _Stop(BaseException):
    """Raised by the SIGTERM handler so that every context manager unwinds."""


#: Set by the SIGTERM handler: a stop stays asked for even if a failing clean-up on the way
#: out replaces the _Stop it raised by an ordinary exception (a sweep would go on otherwise).
_stop_asked = threading.Event()


def _raise_stop(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough
    _stop_asked.set()
    raise _Stop


def _run_dir(out: Optional[Path], name: str, what: str) -> Path:
    if out is not None:
        return out
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{what}-{name}-{stamp}"


@app.command()
def up(scenario: Path = typer.Argument(DEFAULT_SCENARIO, help="Scenario YAML file."),
       hold: bool = typer.Option(False, "--hold",
                                 help="No CLI: keep the network until `testbed down`."),
       out: Optional[Path] = typer.Option(None, help="Run directory (default runs/up-...)."),
       mode: Optional[str] = typer.Option(None, help=MODE_HELP)) -> None:
    """Build the scenario's network, start the controller, open the Mininet CLI."""
    sc, spec = _load(scenario)
    _require_root("testbed up")
    from testbed.emu.network import TestbedNetwork

    run_dir = _run_dir(out, sc.name, "up")
    # SIGTERM (from `testbed down`) at any moment, even mid start-up, tears down cleanly.
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with TestbedNetwork(spec, run_dir, mode=mode or sc.links.mode, seed=sc.seed,
                            tls=sc.controller.tls,
                            tcp_congestion=sc.links.tcp_congestion) as tn:
            console.print(f"network up: {len(tn.net.hosts)} hosts, {len(tn.net.switches)} "
                          f"switches, link mode {tn.mode}, run {tn.run_id}")
            console.print(f"hosts: {run_dir / 'hosts.json'}")
            if "mesh" in tn.apps or "api" in tn.apps:
                console.print(f"northbound API: http://127.0.0.1:{tn.api_port}/topology")
            if hold:
                signal.signal(signal.SIGINT, _raise_stop)
                console.print("holding; stop with `testbed down`")
                while True:
                    time.sleep(0.5)
            else:
                from mininet.cli import CLI

                CLI(tn.net)
    except _Stop:
        pass
    console.print("network down")


@app.command()
def down(run: Optional[str] = typer.Argument(None, help="Run id (default: every held run)."),
         timeout: float = typer.Option(60.0, help="Seconds to wait for a clean stop.")) -> None:
    """Stop held networks (`testbed up --hold`) and remove what they created."""
    _require_root("testbed down")
    from testbed.emu import residue

    states = sorted(residue.STATE_DIR.glob("*.json")) if residue.STATE_DIR.is_dir() else []
    states = [s for s in states if run is None or s.stem == run]
    if not states:
        console.print("no testbed network is up")
        return
    for state_file in states:
        state = json.loads(state_file.read_text())
        pid = state.get("pid")
        if pid and Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        left = residue.clean(state["run"])
        console.print(f"{state['run']}: down" + (
            f" (removed leftovers: {left})" if any(left[k] for k in
                                                  ("processes", "bridges", "links")) else ""))


@app.command()
def clean(force: bool = typer.Option(False, "--force",
                                      help="Clean even while a testbed network is running.")
          ) -> None:
    """Remove every process, bridge and interface any testbed run left behind."""
    _require_root("testbed clean")
    from testbed.emu import netlock, residue

    locked = False
    try:
        netlock.acquire("clean", timeout_s=0, say=lambda m: None)
        locked = True  # no network can start while we clean
    except netlock.NetworkBusy:
        if not force:
            _fail(f"a testbed network is running ({netlock.holder() or 'holder unknown'}); "
                  "cleaning now would break it: stop it first, or pass --force")
    try:
        report = residue.clean(None)
    finally:
        if locked:
            netlock.release()
    console.print(
        f"removed {len(report['processes'])} processes, {len(report['bridges'])} bridges, "
        f"{len(report['links'])} interfaces, {len(report['states'])} run records"
    )


def _calibrate(scenario: Path, out: Optional[Path], sample: Optional[int],
               mode: Optional[str], throughput: bool, what: str, sc=None, spec=None):
    if sc is None:
        sc, spec = _load(scenario)
    _require_root(f"testbed {what}")
    from rich.progress import Progress

    from testbed.emu import calibrate as C
    from testbed.harness.fidelity import check_network

    if out is not None and out.suffix == ".json":  # the run's files go beside the JSON
        path = out
    else:
        path = _run_dir(out, sc.name, what) / "fidelity.json"

    # SIGTERM tears the check's network down (Mininet hosts, emulator, controller, iperf)
    signal.signal(signal.SIGTERM, _raise_stop)

    def started(tn) -> None:
        console.print(f"network up in {tn.timings['start_s']:.1f} s: {len(tn.net.hosts)} "
                      f"hosts (with probes), {len(tn.net.switches)} switches, link mode "
                      f"{tn.mode}")

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=None)

        def step(name: str) -> None:
            progress.update(task, advance=1, description=f"measuring {name}")

        report = check_network(sc, path, mode, sample, throughput, progress=step,
                               started=started, spec=spec)
    console.print(C.results_table(report["results"]))
    s = report["summary"]
    console.print(f"fidelity: {s['passed']}/{s['measurements']} within tolerance"
                  + (f"; failed: {', '.join(s['failed'])}" if s["failed"] else "")
                  + (f"; CPU saturated during: {', '.join(s['untrusted'])}"
                     if s["untrusted"] else ""))
    console.print(f"results: {path}")
    return report


@app.command()
def calibrate(scenario: Path = typer.Argument(DEFAULT_SCENARIO, help="Scenario YAML file."),
              out: Optional[Path] = typer.Option(None, help="Output JSON file or run dir."),
              sample: Optional[int] = typer.Option(None, help="Measure N links (seeded)."),
              mode: Optional[str] = typer.Option(None, help=MODE_HELP),
              throughput: bool = typer.Option(True, help="Also measure TCP throughput.")) -> None:
    """Measure every link and master->helper path against the configuration."""
    try:
        report = _calibrate(scenario, out, sample, mode, throughput, "calibrate")
    except _Stop:
        _fail("stopped by SIGTERM; the network was torn down", 1)
    if report["summary"]["failed"]:
        raise typer.Exit(1)


def _load_with(path: Path, sets: Optional[list[str]], duration: Optional[float],
               policy: Optional[str] = None, seed: Optional[int] = None):
    """The run's plan: the scenario with ``--set key=value`` overrides (and
    ``--duration``, ``--policy``, ``--seed``) applied, its topology built and checked and
    its workload drawn, once (:class:`testbed.harness.plan.RunPlan`); or one line and
    exit 2."""
    from testbed.harness.plan import RunPlan
    from testbed.scenario import load_scenario

    changes = _changes(sets)
    for key, value in (("duration_s", duration), ("policy", policy), ("seed", seed)):
        if value is not None:
            changes[key] = value
    try:
        sc = load_scenario(path)
        sc = sc.with_overrides(changes) if changes else sc
        plan = RunPlan.build(sc)
    except ValueError as exc:  # ScenarioError, WorkloadError (a trace), a topology's roles
        _fail(" ".join(str(exc).split()))
    _warn_below_floor(sc, plan.spec)
    return plan


def _changes(sets: Optional[list[str]]) -> dict:
    """``--set KEY=VALUE`` items as scenario overrides (values parsed as YAML)."""
    import yaml

    changes = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--set {item!r}: expected KEY=VALUE, e.g. delivery.mesh_degree=3")
        try:
            changes[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            _fail(f"--set {item!r}: the value is not valid YAML")
    return changes


def _summary_table(summary: dict) -> None:
    from rich.table import Table

    table = Table(title="run summary", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


POLICY_HELP = "Policy: tree, mesh-pull, popularity, predictive or oracle."
CHECK_HELP = "Run the fidelity check of the network first (once per distinct network)."
REQUIRE_HELP = ("Run the fidelity check first and play nothing (exit 2) unless every row is "
                "within tolerance.")
BACKEND_HELP = ("Where runs play: emu (the emulated network; root) or sim (the discrete-event "
                "simulation of the same nodes; no root, no fidelity check).")
BACKENDS = ("emu", "sim")
SEEDS_HELP = ("Play every policy on each of these seeds (e.g. 1,2,3): tables show mean ± 95 % "
              "CI over them.")


def _parse_seeds(text: str) -> list[int]:
    """``--seeds 1,2,3`` as distinct whole numbers >= 0, or one line and exit 2."""
    items = [t.strip() for t in text.split(",")]
    try:
        seeds = [int(t) for t in items]
    except ValueError:
        seeds = []
    if not seeds or any(x < 0 for x in seeds) or len(set(seeds)) != len(seeds):
        _fail(f"--seeds {text!r}: expected distinct whole numbers >= 0 separated by commas, "
              f"e.g. 1,2,3")
    return seeds


def _seed_options(seed: Optional[int], seeds: Optional[str]) -> Optional[list[int]]:
    """The seeds of ``--seeds``, None for the single-seed form; both given: exit 2."""
    if seed is not None and seeds is not None:
        _fail("give --seed S (one seed) or --seeds A,B,C (several), not both")
    return None if seeds is None else _parse_seeds(seeds)


def _backend(backend: str, mode: Optional[str], require_fidelity: bool) -> str:
    """``--backend`` checked against the options that only the emulation has."""
    if backend not in BACKENDS:
        _fail(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "sim":
        if mode is not None:
            _fail("--mode sets the emulation's links; the sim backend has none (drop --mode)")
        if require_fidelity:
            _fail("--require-fidelity checks an emulated network; the sim backend has none "
                  "(drop it, or use --backend emu)")
    return backend


def _refuse_unchecked(path: Path, summary: Optional[dict]) -> None:
    """``--require-fidelity`` on a single run: exit 2 unless every row passed."""
    from testbed.harness import experiment as E

    problem = E.fidelity_problem(path, summary)
    if problem is not None:
        _fail(E.refusal([problem], 1))


@app.command()
def run(scenario: Path = typer.Argument(DEFAULT_SCENARIO, help="Scenario YAML file."),
        out: Optional[Path] = typer.Option(None, help="Run directory (default runs/run-...)."),
        policy: Optional[str] = typer.Option(None, help=POLICY_HELP),
        seed: Optional[int] = typer.Option(None, help="Override the scenario's seed."),
        duration: Optional[float] = typer.Option(None, help="Override duration_s."),
        sets: Optional[list[str]] = typer.Option(None, "--set",
                                                 help="Override a scenario key: KEY=VALUE."),
        check: bool = typer.Option(False, help=CHECK_HELP),
        require_fidelity: bool = typer.Option(False, "--require-fidelity", help=REQUIRE_HELP),
        mode: Optional[str] = typer.Option(None, help=MODE_HELP),
        backend: str = typer.Option("emu", help=BACKEND_HELP)) -> None:
    """Play a scenario: master, helpers and viewers on the emulated network (or the
    simulation); tables out."""
    backend = _backend(backend, mode, require_fidelity)
    plan = _load_with(scenario, sets, duration, policy, seed)
    sc = plan.scenario
    if backend == "sim":
        if check:
            err.print("[yellow]note:[/] --check has no network to check with --backend sim")
        _play_run(plan, _run_dir(out, sc.name, "run"), None, None, backend)
        return
    _require_root("testbed run")
    run_dir = _run_dir(out, sc.name, "run")
    fidelity = None
    if check or require_fidelity:
        path = run_dir / "fidelity" / "network.json"
        try:
            fidelity = _calibrate(scenario, path, None, mode, True, "run", sc=sc,
                                  spec=plan.spec)["summary"]
        except typer.Exit:
            raise
        except _Stop:
            _fail("stopped by SIGTERM during the fidelity check; the network was torn down", 1)
        except Exception as exc:  # --require-fidelity: a check that cannot run refuses
            if not require_fidelity:
                raise
            fidelity = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())}
        if require_fidelity:
            _refuse_unchecked(path, fidelity)
    _play_run(plan, run_dir, mode, fidelity)


@app.command()
def faults(scenario: Path = typer.Argument(Path("experiments/faults.yaml"),
                                          help="Scenario YAML file (its faults: section, "
                                               "or the default campaign)."),
           seed: Optional[int] = typer.Option(None, help="Override the scenario's seed (it "
                                                         "also draws the faults)."),
           seeds: Optional[str] = typer.Option(None, "--seeds", help=SEEDS_HELP),
           count: Optional[int] = typer.Option(None, help="Faults to draw (faults.count)."),
           out: Optional[Path] = typer.Option(None, help="Directory (default "
                                                         "runs/faults-...)."),
           duration: Optional[float] = typer.Option(None, help="Override duration_s."),
           sets: Optional[list[str]] = typer.Option(None, "--set",
                                                    help="Override a scenario key: KEY=VALUE."),
           mode: Optional[str] = typer.Option(None, help=MODE_HELP)) -> None:
    """Play a scenario through a seeded fault campaign (helpers killed and restarted, the
    master and the controller restarted, the engine killed, links and regions cut, links
    flapping) and say whether the viewers were served and the network came back whole."""
    chosen = _seed_options(seed, seeds)
    changes = list(sets or [])
    if count is not None:
        changes.append(f"faults.count={count}")
    plan = _load_with(scenario, changes, duration, None, seed if chosen is None else chosen[0])
    if plan.scenario.faults is None:  # the default campaign
        changes.append("faults={}")
        plan = _load_with(scenario, changes, duration, None, plan.scenario.seed)
    _require_root("testbed faults")
    base = _run_dir(out, plan.scenario.name, "faults")
    rows = []
    for s in chosen or [plan.scenario.seed]:
        if plan.scenario.seed != s:
            plan = _load_with(scenario, changes, duration, None, s)
        run_dir = base / f"seed-{s}" if chosen else base
        _play_run(plan, run_dir, mode)
        seen = json.loads((run_dir / "faults" / "verdict.json").read_text())
        seen.pop("consistency", None)
        seen.pop("faults_fuzz", None)
        rows.append({"seed": s, **{k.removeprefix("faults_"): v for k, v in seen.items()}})
    if chosen:
        import pandas as pd

        pd.DataFrame(rows).to_csv(base / "campaign.csv", index=False)
        console.print(f"campaign: {base / 'campaign.csv'}")
    for r in rows:
        console.print(", ".join(f"{k}={v}" for k, v in r.items()), highlight=False)


def _play_run(plan, out_dir: Path, mode: Optional[str], fidelity: Optional[dict] = None,
              backend: str = "emu") -> None:
    from testbed.harness.run import RunDirError, run_scenario

    play = run_scenario
    if backend == "sim":
        from testbed.sim import run_sim

        def play(sc, out, say, mode, fidelity, plan):  # noqa: ARG001 (no links to set)
            return run_sim(sc, out, say=say, fidelity=fidelity, plan=plan)

    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        result = play(plan.scenario, out_dir,
                              say=lambda m: console.print(m, highlight=False),
                              mode=mode, fidelity=fidelity, plan=plan)
    except RunDirError as exc:
        _fail(str(exc))
    except _Stop:
        _fail("stopped by SIGTERM; the network was torn down", 1)
    _summary_table(result.summary)
    console.print(f"results in {result.out} (summary.csv, tables/, logs/, manifest.json)")
    for f in result.failures:
        err.print(f"[yellow]warning:[/] {f}")


def _run_collection(what: str, collection, out: Path, mode: Optional[str],
                    check: bool, require_fidelity: bool = False) -> None:
    """Check every point's scenario (no root needed), then run (or resume) the comparison
    or sweep with a progress bar; then its table, verdict and report.
    ``require_fidelity``: every network is checked first, and nothing plays (exit 2)
    unless all rows are within tolerance."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from testbed.harness import experiment as E
    from testbed.harness.fidelity import check_network
    from testbed.harness.report import write_report
    from testbed.harness.run import run_scenario

    try:
        E.scenarios(collection)
    except E.CollectionError as exc:
        _fail(str(exc))
    if require_fidelity and not check:
        _fail("--require-fidelity needs the fidelity check: drop --no-check")
    sim = collection.backend == "sim"
    if sim:
        from testbed.sim import run_sim

        check = False  # a simulated network has nothing to check
    else:
        _require_root(f"testbed {what}")

    def say(m: str) -> None:
        console.print(m, highlight=False)

    def one(sc, run_dir: Path, fidelity) -> None:
        if sim:
            result = run_sim(sc, run_dir, say=lambda m: None, fidelity=None)
        else:
            result = run_scenario(sc, run_dir, say=lambda m: None, mode=mode,
                                  fidelity=fidelity)
        say(f"  {_run_line(result.summary)} ({result.timings['total_s']:.0f} s)")

    def fidelity(sc, path: Path) -> dict:
        say(f"fidelity check of the network ({path.name})")
        s = check_network(sc, path, mode)["summary"]
        say(f"  {s['passed']}/{s['measurements']} within tolerance"
            + (f"; failed: {', '.join(s['failed'])}" if s["failed"] else ""))
        return s

    signal.signal(signal.SIGTERM, _raise_stop)
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task(f"{collection.kind} {collection.sweep.name}",
                            total=len(collection.points))

        def progress(point, state: str) -> None:
            if state in ("kept", "done", "failed"):
                bar.update(task, advance=1)
            if _stop_asked.is_set():
                raise _Stop
            if state == "kept":
                say(f"{point.id}: kept (complete from before): {point.label()}")

        try:
            outcome = E.run_collection(collection, out, one, fidelity if check else None,
                                       say=say, progress=progress,
                                       require_fidelity=require_fidelity)
        except E.CollectionError as exc:
            _fail(str(exc))
        except _Stop:
            _fail(f"stopped by SIGTERM; finished points are kept in {out} (run the same "
                  f"command again to resume)", 1)
    _comparison_table(outcome.table, list(collection.sweep.axes),
                      f"{collection.kind}: {collection.sweep.name}")
    paths = write_report(out)
    console.print(f"ran {len(outcome.ran)}, kept {len(outcome.kept)}, failed "
                  f"{len(outcome.failed)} in {outcome.seconds:.0f} s; results in {out} "
                  f"(points.csv, aggregate.csv, points/)")
    console.print(f"report: {paths.html}")
    if outcome.failed:
        for pid, why in outcome.failed.items():
            err.print(f"[yellow]warning:[/] {pid} failed: {why}")
        raise typer.Exit(1)


#: The printed comparison's metrics after the axes, with their short headings.
COMPARISON = {"hit_ratio": "edge hit ratio", "byte_offload": "byte offload",
              "origin_per_viewer_byte": "origin B / viewer B",
              "origin_peak_mbit": "origin peak Mbit/s", "startup_p50_s": "start-up p50 s",
              "startup_p95_s": "start-up p95 s", "never_started": "never started",
              "abandoned_at_start": "abandoned at start", "rebuffer_ratio": "rebuffer ratio",
              "prefetch_waste": "push waste", "push_ratio": "push B / viewer B",
              "overhead_ratio": "control B / viewer B", "sessions": "sessions",
              "cpu_idle_min": "CPU idle min"}
#: The line printed after each run: (summary column, label, format).
RUN_LINE = (("hit_ratio", "hit ratio", "{:.3f}"), ("byte_offload", "byte offload", "{:.3f}"),
            ("startup_p95_s", "startup p95", "{:.2f} s"))


def _num(value, spec: str = "{:.3g}") -> str:
    """A table value: a number by ``spec``, a dash when absent or NaN, else as it is."""
    import math

    if value is None:
        return "—"
    if isinstance(value, (bool, str)):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "—" if math.isnan(x) else spec.format(x)


def _run_line(summary: dict) -> str:
    """"hit ratio 0.474, byte offload 0.606, startup p95 1.79 s", dashes for what the
    summary lacks (runs older than the metric)."""
    return ", ".join(f"{label} {_num(summary.get(key), spec)}" for key, label, spec in RUN_LINE)


def comparison_cells(points, axes: list[str]) -> tuple[list[str], list[list[str]], str]:
    """The printed comparison of a points table: headings, rows and the verdict line.

    Several seeds: one row per combination of the other axes with the number of seeds that
    completed and each metric as "mean ± ci95"; one seed: one row per complete point.  Both
    end with the fidelity check (rows passed/measured) and the CPU-trusted runs."""
    from testbed.harness import stats

    done = points[stats.complete(points)]
    line = stats.verdict(done).text()
    # a metric no run has (runs older than it) is left out; one some runs lack shows "—"
    metrics = [m for m in COMPARISON if m in points.columns]
    if stats.seed_count(points, axes) > 1:
        agg = stats.aggregate(points, axes)
        by = [a for a in stats.group_axes(axes) if a in agg.columns]
        rows = []
        for _, r in agg.iterrows():
            v = stats.aggregate_verdict(r)
            cells = [stats.mean_ci_text(r.get(f"{m}_mean"), r.get(f"{m}_ci95"), r.get(f"{m}_n"),
                                        r["runs"], _num, lambda x: _num(x, "{:.2g}"))
                     for m in metrics]
            rows.append([*(str(r[a]) for a in by), str(int(r["runs"])), *cells,
                         v.fidelity_cell(), v.trusted_cell()])
        heads = [*by, "seeds", *(COMPARISON[m] for m in metrics), "fidelity", "CPU-trusted"]
        return heads, rows, line
    by = [a for a in axes if a in done.columns]
    rows = []
    for i in range(len(done)):
        one = done.iloc[[i]]
        v = stats.verdict(one)
        rows.append([str(one["point"].iloc[0]), *(str(one[a].iloc[0]) for a in by),
                     *(_num(one[m].iloc[0]) for m in metrics), v.fidelity_cell(),
                     v.trusted_cell()])
    heads = ["point", *by, *(COMPARISON[m] for m in metrics), "fidelity", "CPU-trusted"]
    return heads, rows, line


def _comparison_table(points, axes: list[str], title: str) -> None:
    """Print the comparison (mean ± 95 % CI per policy with several seeds), then the
    verdict of its runs in one line."""
    from rich.table import Table

    heads, rows, line = comparison_cells(points, axes)
    # one column per policy (or point), one row per metric: six policies fit a terminal,
    # fifteen metrics side by side would not
    ids = heads.index("seeds") + 1 if "seeds" in heads else len(
        [h for h in heads if h == "point" or h in axes])
    t = Table(title=title)
    t.add_column("", justify="left", no_wrap=True)
    for row in rows:
        label = [*row[:ids]]
        if "seeds" in heads:
            label[-1] = f"{label[-1]} seeds"
        t.add_column("\n".join(label), justify="right", no_wrap=True)
    for i, h in enumerate(heads[ids:], start=ids):
        t.add_row(h, *(row[i] for row in rows))
    console.print(t)
    console.print(line, highlight=False)


@app.command()
def compare(scenario: Path = typer.Argument(DEFAULT_SCENARIO, help="Scenario YAML file."),
            policies: str = typer.Option("tree,mesh-pull,playhead,popularity,predictive,oracle",
                                         help="Comma-separated policies to run side by side."),
            out: Optional[Path] = typer.Option(None, help="Directory (default runs/compare-...)."),
            seed: Optional[int] = typer.Option(None, help="Override the scenario's seed."),
            seeds: Optional[str] = typer.Option(None, "--seeds", help=SEEDS_HELP),
            duration: Optional[float] = typer.Option(None, help="Override duration_s."),
            sets: Optional[list[str]] = typer.Option(None, "--set",
                                                     help="Override a scenario key: KEY=VALUE."),
            check: bool = typer.Option(True, help=CHECK_HELP),
            require_fidelity: bool = typer.Option(False, "--require-fidelity",
                                                  help=REQUIRE_HELP),
            mode: Optional[str] = typer.Option(None, help=MODE_HELP),
            backend: str = typer.Option("emu", help=BACKEND_HELP)) -> None:
    """Run policies on the same scenario, seed, network and viewers; table and report out.

    With --seeds, every policy plays every seed.  Run it again with the same --out to
    resume: finished runs are kept."""
    backend = _backend(backend, mode, require_fidelity)
    sc, _ = _load(scenario)
    fixed = _changes(sets)
    fixed.update({k: v for k, v in (("duration_s", duration), ("seed", seed)) if v is not None})
    names = [p.strip() for p in policies.split(",") if p.strip()]
    collection = _comparison(sc, names, scenario, fixed, _seed_options(seed, seeds), backend)
    _run_collection("compare", collection, out or _run_dir(None, sc.name, "compare"), mode,
                    check, require_fidelity)


def _comparison(sc, names: list[str], scenario: Path, fixed: dict,
                seeds: Optional[list[int]], backend: str = "emu"):
    """The comparison collection, or one line and exit 2."""
    from testbed.harness import experiment as E

    try:
        return E.comparison(sc, names, scenario, fixed, seeds, backend=backend)
    except E.CollectionError as exc:
        _fail(str(exc))


@app.command()
def sweep(sweep_file: Path = typer.Argument(..., help="Sweep YAML file (scenario, axes)."),
          out: Optional[Path] = typer.Option(None, help="Directory (default runs/sweep-NAME)."),
          check: bool = typer.Option(True, help=CHECK_HELP),
          require_fidelity: bool = typer.Option(False, "--require-fidelity", help=REQUIRE_HELP),
          mode: Optional[str] = typer.Option(None, help=MODE_HELP),
          backend: str = typer.Option("emu", help=BACKEND_HELP)) -> None:
    """Run a grid (or zip) over scenario keys, one run directory per point; resumable: run
    it again and only the points not yet complete run.  A ``seed`` axis makes the table and
    the report show mean ± 95 % CI over the seeds."""
    import yaml

    from testbed.core.sweep import SweepError, parse_sweep
    from testbed.harness import experiment as E

    try:
        data = yaml.safe_load(sweep_file.read_text(encoding="utf-8"))
        sw = parse_sweep(data, str(sweep_file), base=sweep_file.parent)
    except OSError as exc:
        _fail(f"{sweep_file}: cannot read ({exc.strerror or exc})")
    except yaml.YAMLError as exc:
        _fail(f"{sweep_file}: YAML error: {str(exc).splitlines()[0]}")
    except SweepError as exc:
        _fail(str(exc))
    backend = _backend(backend, mode, require_fidelity)
    sc, _ = _load(sw.scenario)
    _run_collection("sweep", E.of_sweep(sw, sc, backend), out or Path("runs") / f"sweep-{sw.name}",
                    mode, check, require_fidelity)


@app.command()
def crosscheck(emu: Path = typer.Argument(..., help="A comparison played with --backend emu."),
               sim: Path = typer.Argument(..., help="The same comparison with --backend sim."),
               out: Optional[Path] = typer.Option(None, help="Also write the verdict here "
                                                                "(JSON).")) -> None:
    """Side by side: each key metric's mean per policy on both backends, whether the
    simulated mean is within 10 % of the emulated one or inside its 95 % CI, and whether
    the policies rank the same."""
    import pandas as pd
    from rich.table import Table

    from testbed.harness import crosscheck as X

    tables = []
    for d in (emu, sim):
        try:
            tables.append(pd.read_csv(d / "aggregate.csv"))
        except (OSError, ValueError) as exc:
            _fail(f"{d}: no readable aggregate.csv ({exc})")
    table, rankings = X.crosscheck(*tables)
    if not len(table):
        _fail(f"{emu} and {sim} have no policy in common")
    t = Table(title=f"simulation vs emulation: {emu.name} / {sim.name}")
    for c in ("policy", "metric", "emulated", "simulated", "diff", "agrees"):
        t.add_column(c)
    for r in table.itertuples():
        t.add_row(r.policy, r.metric, f"{r.emu_mean:.4g} ± {r.emu_ci95:.2g}",
                  f"{r.sim_mean:.4g} ± {r.sim_ci95:.2g}", f"{r.rel_diff:.1%}",
                  "yes" if r.agrees else "[red]no[/]")
    console.print(t)
    for r in rankings:
        line = "same" if r.same_order else (
            f"differs: {', '.join('/'.join(p) for p in r.discordant)} swapped"
            + (f" ({len(r.separated)} the emulation separates)" if r.separated else
               " (within the emulation's CIs)"))
        console.print(f"ranking by {r.metric}: {line}", highlight=False)
    verdict = X.summary(table, rankings)
    console.print(f"{verdict['agree']}/{verdict['pairs']} means agree; rankings the same "
                  f"for {verdict['rankings_same']}/{verdict['rankings']} metrics", highlight=False)
    if out is not None:
        out.write_text(json.dumps({"verdict": verdict, "rows": table.to_dict("records"),
                                   "rankings": [{"metric": r.metric, "emu": r.emu, "sim": r.sim,
                                                 "discordant": r.discordant,
                                                 "separated": r.separated} for r in rankings]},
                                  indent=1, default=str))


@app.command()
def report(directory: Path = typer.Argument(..., help="A run, comparison or sweep directory.")
           ) -> None:
    """Write report.html and report.md (with figures) for a run, comparison or sweep."""
    from testbed.harness.report import ReportError, write_report

    try:
        paths = write_report(directory)
    except ReportError as exc:
        _fail(str(exc))
    console.print(f"report: {paths.html} and {paths.markdown} ({len(paths.figures)} figures)")


@app.command()
def demo(scenario: Path = typer.Argument(DEFAULT_SCENARIO, help="Scenario YAML file."),
         out: Optional[Path] = typer.Option(None, help="Directory (default runs/demo-...)."),
         duration: Optional[float] = typer.Option(None, help="Override duration_s."),
         seed: Optional[int] = typer.Option(None, help="Override the scenario's seed."),
         seeds: Optional[str] = typer.Option(None, "--seeds", help=SEEDS_HELP),
         require_fidelity: bool = typer.Option(False, "--require-fidelity", help=REQUIRE_HELP),
         mode: Optional[str] = typer.Option(None, help=MODE_HELP)) -> None:
    """The main job: the fidelity check, then every policy on the scenario side by side
    (on each seed of --seeds): the comparison table, its verdict and the report."""
    from testbed.harness import experiment as E

    sc, _ = _load(scenario)
    fixed = {k: v for k, v in (("duration_s", duration), ("seed", seed)) if v is not None}
    collection = _comparison(sc, list(E.ALL_POLICIES), scenario, fixed,
                             _seed_options(seed, seeds))
    _run_collection("demo", collection, out or _run_dir(None, sc.name, "demo"), mode, True,
                    require_fidelity)


@app.command()
def media(scenario: Path = typer.Argument(DEFAULT_SCENARIO, help="Scenario YAML file."),
          videos: Optional[int] = typer.Option(None, help="Only the first N on-demand videos."),
          version: int = typer.Option(1, help="The content version to encode."),
          check: bool = typer.Option(False, "--check",
                                     help="ffprobe every segment of what was made.")) -> None:
    """Encode the scenario's on-demand videos as real DASH media (ffmpeg: a test pattern
    with title and time code, a tone, the rendition ladder) into the media cache; a video
    already there is not encoded again.  No root needed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from testbed import media as M
    from testbed.core.content import build_catalogue
    from testbed.core.media import MediaError, MediaSpec

    sc, _ = _load(scenario)
    cat = build_catalogue(sc.content.catalogue_config())
    if videos is not None and videos < 1:
        _fail(f"--videos {videos}: must be >= 1")
    ids = cat.ids("vod")[:videos] if videos is not None else cat.ids("vod")
    try:
        specs = [MediaSpec(v, version, cat[v].duration_s, cat[v].segment_s) for v in ids]
    except MediaError as exc:
        _fail(str(exc))
    made = []
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("encoding", total=len(specs))
        for spec in specs:
            progress.update(task, description=f"encoding {spec.title()}")
            try:
                got = M.ensure(spec)
                if check:
                    for t in got.video_tracks:
                        for i in range(spec.n_segments):
                            M.probe(got.init(t.rep), got.segment(t.rep, i))
            except MediaError as exc:
                _fail(str(exc))
            made.append(got)
            progress.advance(task)
    wall = sum(M.made_info(m)["wall_s"] for m in made)
    console.print(f"{len(made)} videos in {M.cache_root()} (encoding took {wall:.1f} s "
                  f"when each was made){'; every segment checked' if check else ''}")
    if cat.ids("live"):
        console.print(f"live channels ({len(cat.ids('live'))}) are not encoded: "
                      "they stay synthetic")


@app.command()
def workload(out: Path = typer.Argument(..., help="Trace file to write (.csv or .parquet)."),
             helpers: int = typer.Option(50, help="Helper regions."),
             videos: int = typer.Option(200, help="On-demand videos (synthetic catalogue)."),
             duration: float = typer.Option(3600.0, help="Trace length, seconds."),
             seed: int = typer.Option(1, help="Random seed."),
             rate: float = typer.Option(0.02, help="Arrivals per second per region."),
             zipf: float = typer.Option(0.8, help="Popularity exponent."),
             skew: float = typer.Option(0.3, help="Regional preference skew, 0..1."),
             daily: float = typer.Option(0.0, help="Daily rhythm amplitude, 0..1."),
             shift: Optional[list[str]] = typer.Option(
                 None, help="Popularity shift AT_S:VIDEO:SHARE, e.g. 1800:vod-0199:0.3."),
             ) -> None:
    """Generate a synthetic viewer trace (and OUT.json, the workload that drew it)."""
    from testbed.core import workload as W
    from testbed.harness.predict_eval import write_workload

    shifts = []
    for item in shift or []:
        parts = item.split(":")
        if len(parts) != 3:
            _fail(f"--shift {item!r}: expected AT_S:VIDEO:SHARE, e.g. 1800:vod-0199:0.3")
        try:
            shifts.append(W.PopularityShift(float(parts[0]), parts[1], float(parts[2])))
        except ValueError as exc:
            _fail(f"--shift {item!r}: {exc}")
    try:
        cfg = W.WorkloadConfig(
            helpers=tuple(f"h{i}" for i in range(1, helpers + 1)),
            videos=W.synthetic_catalogue(videos, seed), duration_s=duration, seed=seed,
            arrival_rate=rate, zipf_s=zipf, regional_skew=skew, daily_amplitude=daily,
            shifts=tuple(shifts))
        trace = write_workload(cfg, out)
    except ValueError as exc:
        _fail(str(exc))
    counts = trace["kind"].value_counts()
    console.print(f"{out}: {len(trace)} events, {int(counts.get('start', 0))} sessions "
                  f"started, {int(counts.get('request', 0))} requests; parameters in "
                  f"{out.with_suffix('.json')}")


def _scores_table(title: str, table) -> None:
    from rich.table import Table

    t = Table(title=title, show_header=True)
    cols = ["mae", "rmse", "precision", "recall", "calibration", "calibration_error"]
    t.add_column("predictor")
    for c in cols:
        t.add_column(c.replace("_", " "), justify="right")
    for name, row in table.iterrows():
        t.add_row(name, *(f"{row[c]:.4f}" for c in cols))
    console.print(t)


@app.command("predict-eval")
def predict_eval(trace: Path = typer.Argument(..., help="Trace file (.csv or .parquet)."),
                 holdout: Optional[Path] = typer.Option(
                     None, help="Trace of another seed (default: redrawn from TRACE.json)."),
                 train_frac: float = typer.Option(2 / 3, help="Share of the trace to train on."),
                 horizon: float = typer.Option(5.0, help="Prediction horizon H, seconds."),
                 budget: int = typer.Option(5, help="Pushes per helper and horizon."),
                 replay: bool = typer.Option(False, help="Also replay with retraining."),
                 retrain: float = typer.Option(300.0, help="Replay: retrain every, seconds."),
                 window: float = typer.Option(900.0, help="Replay: training window, seconds."),
                 out: Optional[Path] = typer.Option(None, help="Write tables and plots here."),
                 ) -> None:
    """Train the demand model and the baselines on a trace; score them on held-out data."""
    from testbed.core.demand import DemandError
    from testbed.core.workload import WorkloadError
    from testbed.harness import predict_eval as PE

    try:
        ev = PE.predict_eval(trace, holdout, train_frac, horizon, budget, replay, retrain,
                             window, say=lambda m: err.print(m, highlight=False))
    except (DemandError, WorkloadError) as exc:
        _fail(str(exc))
    for note in ev.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"trained on t < {ev.split_at:.0f} s; horizon {horizon:g} s, budget "
                  f"{budget} segments per helper; MAE of the nearest count, RMSE of the "
                  f"mean", highlight=False)
    for name, table in ev.tables.items():
        _scores_table(name, table)
    if ev.replay is not None:
        from rich.table import Table

        t = Table(title="accuracy over time (precision at budget)")
        for c in ("minute", "version", "retrained", "frozen", "playhead"):
            t.add_column(c, justify="right")
        for _, r in ev.replay.iterrows():
            t.add_row(f"{r['t'] / 60:.0f}", str(int(r["version"])), f"{r['precision']:.3f}",
                      f"{r['precision_frozen']:.3f}", f"{r['playhead_precision']:.3f}")
        console.print(t)
    if out is not None:
        paths = PE.write_evaluation(ev, out)
        console.print(f"written: {', '.join(str(p) for p in paths)}")


@app.command()
def doctor() -> None:
    """Report what this machine offers the testbed; start OVS if it is not running."""
    from testbed.emu.doctor import run_doctor

    raise typer.Exit(run_doctor(console))


@app.command()
def controller(apps: list[str] = typer.Argument(None, help="Apps: short names or paths."),
               port: int = typer.Option(6653, help="OpenFlow listening port (127.0.0.1)."),
               tls: Optional[Path] = typer.Option(
                   None, help="OpenFlow over TLS only, with the certificates in this "
                              "directory (ca-cert.pem, controller-key.pem, controller-cert.pem)."),
               ) -> None:
    """Run controller apps in the foreground (os-ken; Ctrl-C stops)."""
    from testbed import ctlmain

    extra = [] if tls is None else ["--tls", str(tls)]
    raise typer.Exit(ctlmain.main(["--port", str(port), *extra, *(apps or ["l2"])]))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
