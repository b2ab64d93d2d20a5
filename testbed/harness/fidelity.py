"""The fidelity check of issue 2 as a harness step: build the scenario's network with
probe hosts, measure every link and path against its configuration, write the report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import networkx as nx

from testbed.scenario import Scenario


def check_network(sc: Scenario, path: Path, mode: str | None = None,
                  sample: int | None = None, throughput: bool = True,
                  progress: Callable[[str], None] | None = None,
                  started: Callable[[object], None] | None = None,
                  spec: nx.Graph | None = None) -> dict:
    """Measure ``sc``'s network; write the report to ``path`` (JSON) and return it.

    ``spec`` is ``sc``'s topology when the caller built it already (a run's plan holds
    it), else it is built here.

    The network's own files go to ``path``'s sibling directory ``<stem>-run``.
    ``started(tn)`` is called once the network is up (to announce it).
    """
    from testbed.emu import calibrate as C
    from testbed.emu.network import TestbedNetwork, add_probes

    cal = sc.calibration
    plan = C.CalibrationPlan(
        probes=cal.probes, interval_s=cal.interval_s, iperf_seconds=cal.iperf_seconds,
        sample=sample if sample is not None else cal.sample, paths=cal.paths,
        throughput=throughput, seed=sc.seed,
    )
    probed = add_probes(spec if spec is not None else sc.build_spec())
    run_dir = path.parent / f"{path.stem}-run"
    with TestbedNetwork(probed, run_dir, mode=mode or sc.links.mode, seed=sc.seed,
                        tls=sc.controller.tls,
                        tcp_congestion=sc.links.tcp_congestion) as tn:
        if started is not None:
            started(tn)
        results = C.calibrate(tn.net, probed, plan, progress=progress)
        mode_used = tn.mode
        floor = tn.floor_report()
    report = {
        "scenario": sc.source, "seed": sc.seed, "link_mode": mode_used,
        "switches": floor,
        "plan": plan.__dict__, "summary": C.summary(results),
        "rows": [m.as_row() for m in results], "linkemu": tn.linkemu_stats(),
        "timings": tn.timings, "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=1,
                               default=str))
    return report
