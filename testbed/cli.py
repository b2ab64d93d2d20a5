"""The ``testbed`` command: bring networks up and down, check them, clean up."""

from __future__ import annotations

import json
import os
import signal
import sys
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
    """The scenario at ``path``, or one clear line and exit status 2."""
    from testbed.scenario import ScenarioError, load_scenario

    try:
        sc = load_scenario(path)
        spec = sc.build_spec()
    except ScenarioError as exc:
        _fail(str(exc))
    return sc, spec


class _Stop(BaseException):
    """Raised by the SIGTERM handler so that every context manager unwinds."""


def _raise_stop(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough
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
        with TestbedNetwork(spec, run_dir, mode=mode or sc.links.mode, seed=sc.seed) as tn:
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
def clean() -> None:
    """Remove every process, bridge and interface any testbed run left behind."""
    _require_root("testbed clean")
    from testbed.emu import residue

    report = residue.clean(None)
    console.print(
        f"removed {len(report['processes'])} processes, {len(report['bridges'])} bridges, "
        f"{len(report['links'])} interfaces, {len(report['states'])} run records"
    )


def _calibrate(scenario: Path, out: Optional[Path], sample: Optional[int],
               mode: Optional[str], throughput: bool, what: str):
    sc, spec = _load(scenario)
    _require_root(f"testbed {what}")
    from rich.progress import Progress

    from testbed.emu import calibrate as C
    from testbed.emu.network import TestbedNetwork, add_probes

    if out is not None and out.suffix == ".json":  # the run's files go beside the JSON
        run_dir = out.parent / f"{out.stem}-run"
    else:
        run_dir = _run_dir(out, sc.name, what)
    cal = sc.calibration
    plan = C.CalibrationPlan(
        probes=cal.probes, interval_s=cal.interval_s, iperf_seconds=cal.iperf_seconds,
        sample=sample if sample is not None else cal.sample, paths=cal.paths,
        throughput=throughput, seed=sc.seed,
    )
    probed = add_probes(spec)
    with TestbedNetwork(probed, run_dir, mode=mode or sc.links.mode, seed=sc.seed) as tn:
        console.print(f"network up in {tn.timings['start_s']:.1f} s: {len(tn.net.hosts)} hosts "
                      f"(with probes), {len(tn.net.switches)} switches, link mode {tn.mode}")
        targets = C.plan_targets(probed, plan)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("measuring", total=len(targets))

            def step(name: str) -> None:
                progress.update(task, advance=1, description=f"measuring {name}")

            results = C.calibrate(tn.net, probed, plan, progress=step)
        mode_used = tn.mode
    stats = tn.linkemu_stats()
    report = {
        "scenario": str(scenario), "seed": sc.seed, "link_mode": mode_used,
        "plan": plan.__dict__, "summary": C.summary(results),
        "rows": [m.as_row() for m in results], "linkemu": stats,
        "timings": tn.timings,
    }
    path = out if out and out.suffix == ".json" else run_dir / "fidelity.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))
    console.print(C.results_table(results))
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
    report = _calibrate(scenario, out, sample, mode, throughput, "calibrate")
    if report["summary"]["failed"]:
        raise typer.Exit(1)


@app.command()
def demo(scenario: Path = typer.Argument(DEFAULT_SCENARIO, help="Scenario YAML file."),
         out: Optional[Path] = typer.Option(None, help="Run directory."),
         mode: Optional[str] = typer.Option(None, help=MODE_HELP)) -> None:
    """The default job: the fidelity check, then the delivery system playing the scenario."""
    sc = _load_with(scenario, None, None)
    base = _run_dir(out, sc.name, "demo")
    report = _calibrate(scenario, base / "fidelity.json", None, mode, True, "demo")
    if report["summary"]["failed"]:
        err.print("[yellow]warning:[/] some links measured outside tolerance (see above)")
    _play_run(sc, base / "run", mode)


def _load_with(path: Path, sets: Optional[list[str]], duration: Optional[float]):
    """The scenario with ``--set key=value`` overrides applied, or one line and exit 2."""
    import yaml

    from testbed.scenario import ScenarioError

    sc, _ = _load(path)
    changes = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--set {item!r}: expected KEY=VALUE, e.g. delivery.mesh_degree=3")
        changes[key.strip()] = yaml.safe_load(value)
    if duration is not None:
        changes["duration_s"] = duration
    try:
        sc = sc.with_overrides(changes) if changes else sc
        sc.build_spec()
    except ScenarioError as exc:
        _fail(str(exc))
    return sc


def _summary_table(summary: dict) -> None:
    from rich.table import Table

    table = Table(title="run summary", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command()
def run(scenario: Path = typer.Argument(DEFAULT_SCENARIO, help="Scenario YAML file."),
        out: Optional[Path] = typer.Option(None, help="Run directory (default runs/run-...)."),
        duration: Optional[float] = typer.Option(None, help="Override duration_s."),
        sets: Optional[list[str]] = typer.Option(None, "--set",
                                                 help="Override a scenario key: KEY=VALUE."),
        mode: Optional[str] = typer.Option(None, help=MODE_HELP)) -> None:
    """Play a scenario: master, helpers and viewers on the emulated network; tables out."""
    sc = _load_with(scenario, sets, duration)
    _require_root("testbed run")
    _play_run(sc, _run_dir(out, sc.name, "run"), mode)


def _play_run(sc, out_dir: Path, mode: Optional[str]) -> None:
    from testbed.harness.run import run_scenario

    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        result = run_scenario(sc, out_dir, say=lambda m: console.print(m, highlight=False),
                              mode=mode)
    except _Stop:
        _fail("stopped by SIGTERM; the network was torn down", 1)
    _summary_table(result.summary)
    console.print(f"results in {result.out} (summary.csv, tables/, logs/)")
    for f in result.failures:
        err.print(f"[yellow]warning:[/] {f}")


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
               ) -> None:
    """Run controller apps in the foreground (os-ken; Ctrl-C stops)."""
    from testbed import ctlmain

    raise typer.Exit(ctlmain.main(["--port", str(port), *(apps or ["l2"])]))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
