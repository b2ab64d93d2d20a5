"""One prefetch round of the master's delivery side on 100, 1,000 and 10,000 helpers (no root).

Writes benchmarks/out/origin_logic.json.  Pure logic on a fake clock
(:class:`testbed.core.node.origin.OriginLogic` over a :class:`MasterLogic` whose first
tables are built from seeded round trips), no network, no signing, no segment bytes.
Each helper reports 3 seeded mesh neighbours and an inventory of 20 segments; the
engine's answer predicts 10 segments per helper (seeded expectations).  The policy is
``predictive`` from the nearest copy, with the default budget (2,000 kbit/s over a 1 s
interval).  Timed (median of repeats, one core): a whole round (``Timer("prefetch")``:
the mesh graph, demand, holders, the planner, routes, records and effects).

Target: a round well under the prefetch interval (1 s) at 1,000 helpers.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402
from testbed.core.content import CatalogueConfig, build_catalogue  # noqa: E402
from testbed.core.node.effects import Record, Response, Send, SetTimer, Timer  # noqa: E402
from testbed.core.node.master import (  # noqa: E402
    DECIDE,
    PINGBACK,
    MasterLogic,
    Neighbours,
    ProbeReply,
)
from testbed.core.node.origin import FORECAST, PREFETCH, OriginLogic, OriginSettings  # noqa: E402
from testbed.core.prefetch import make_policy  # noqa: E402

SIZES = (100, 1000, 10_000)
REPEATS = 5
INTERVAL_S = 1.0
BUDGET = int(2000 * 1000 / 8 * INTERVAL_S)
TARGET_S = 1.0


def make(n: int) -> tuple[OriginLogic, bytes]:
    rng = random.Random(n)
    helpers = {f"h{i + 1}": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(n)}
    names = list(helpers)
    tree = MasterLogic.from_delivery(
        "m", "10.255.255.254", helpers,
        {"tiers": 2, "fanout": None, "pingback_interval_s": 5.0, "pingback_probes": 3},
        nonce_key=b"bench")
    base = {h: rng.uniform(0.5, 3.0) if i % 3 == 0 else rng.uniform(20.0, 60.0)
            for i, h in enumerate(helpers)}
    out = tree.handle(Timer(PINGBACK), 1.0)
    for p in (e for e in out if isinstance(e, Send)):
        tree.handle(ProbeReply(p.to, p.body["nonce"], base[p.to], 1e-4), 1.5)
    decide = next(e for e in out if isinstance(e, SetTimer) and e.name == DECIDE)
    tree.handle(Timer(DECIDE, decide.token), decide.at)
    catalogue = build_catalogue(CatalogueConfig(videos=40, live_channels=1))
    vods = catalogue.ids("vod")
    for h in names:
        peers = rng.sample([x for x in names if x != h], 3)
        body = {"neighbours": {p: {"latency_ms": rng.uniform(1, 40),
                                   "bw_mbit": rng.uniform(10, 100)} for p in peers}}
        inv = [[rng.choice(vods), rng.randrange(30), 1] for _ in range(20)]
        tree.handle(Neighbours(h, body, json.dumps(inv).encode()), 2.0)
    predictions = {h: [[rng.choice(vods), rng.randrange(30), rng.uniform(0.1, 2.0)]
                       for _ in range(10)] for h in names}
    answer = json.dumps({"version": 1, "predictions": predictions, "playheads": {}}).encode()
    settings = OriginSettings(catalogue=catalogue, policy=make_policy("predictive"),
                              prefetch_interval_s=INTERVAL_S, push_budget_bytes=BUDGET,
                              push_source="nearest", push_reserve=None, engine="e1")
    return OriginLogic(tree, settings, id_key=b"bench"), answer


def one_round(lg: OriginLogic, answer: bytes, now: float) -> tuple[float, int]:
    (ask,) = [e for e in lg.handle(Timer(FORECAST), now) if isinstance(e, Send)]
    lg.handle(Response(ask.ref, 200, answer), now)
    t0 = time.perf_counter()
    out = lg.handle(Timer(PREFETCH), now)
    elapsed = time.perf_counter() - t0
    return elapsed, sum(isinstance(e, Record) and e.kind == "push" for e in out)


def run(n: int) -> dict:
    lg, answer = make(n)
    # rounds 11 s apart: the pushes of the round before are no longer in flight
    rows = [one_round(lg, answer, 10.0 + 11.0 * k) for k in range(REPEATS)]
    return {"helpers": n, "round_s": round(statistics.median(r[0] for r in rows), 4),
            "pushes": rows[0][1], "budget_bytes": BUDGET}


def main() -> None:
    rows = []
    for n in SIZES:
        rows.append(run(n))
        print(rows[-1], flush=True)
    write("origin_logic", {"rows": rows, "interval_s": INTERVAL_S,
                           "target_1000_helpers_s": TARGET_S,
                           "met": rows[-1]["round_s"] < TARGET_S})


if __name__ == "__main__":
    main()
