"""The master's work each prefetch interval with 8, 64 and 1,000 helpers (no root needed).

Writes benchmarks/out/prefetch.json: per helper count, one core, median and p95 over 7
repeats (5 at 1,000 helpers) of ``graph_s`` (:func:`mesh_graph` from the helpers' reports:
a seeded 3-regular mesh of 1-50 ms, 5-100 Mbit/s links, the master linked to N/8 helpers),
``routes_s`` (:func:`push_routes`, Dijkstra master -> every helper), ``demand_rows_s`` (the
engine's answer as Demand rows) and, per planner, the demand plus ``plan_demand``:

* ``predictive``: the engine's top 20 per helper (5 segments past each of 4 playheads on a
  200-video Zipf catalogue, Zipf-ish expected values);
* ``popularity``: the engine's popularity baseline as the master gets it: each helper's 16
  recently requested segments, at one expected request each over the horizon;
* ``oracle``: ``FutureDemand.between`` over each viewer's coming requests (one per 2 s).

Each planner runs twice: every push from the master (``routes`` from one Dijkstra), and
from the nearest copy (``*_nearest``: :class:`NearestCopy` built for the round, timed with
the plan; the holders are the helpers' cached segments), with the share of the pushed bytes
that left a helper instead of the master.

Each helper caches 50 segments (5 of its 20 predicted) and has 2 in flight; a segment is
75,000 bytes (300 kbit/s x 2 s).  Budgets: the default 2000 kbit/s x 1 s = 250,000 bytes,
and N x 31,250 bytes so 1,000 helpers get pushes too.  Reported: pushes, and the share of
the 1 s interval routes + planner take.  Target: well inside it at 1,000 helpers (<= 25 %).
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # one core: before numpy loads

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402
from testbed.core import prefetch as P  # noqa: E402
from testbed.core.mesh import NearestCopy, PeerMetric, mesh_graph, push_routes  # noqa: E402

SIZES = (8, 64, 1000)
VIDEOS, SEGMENTS, SIZE = 200, 60, 75_000   # 120 s videos of 2 s segments at 300 kbit/s
INTERVAL_S, NOW, MASTER = 1.0, 100.0, "master"
TARGET_SHARE = 0.25
POLICY_RUNS = ("predictive", "popularity", "oracle", "predictive_nearest",
               "popularity_nearest", "oracle_nearest")
POP = 1.0 / np.arange(1, VIDEOS + 1) ** 0.8
POP /= POP.sum()


def timed(fn, repeats: int) -> tuple[dict, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return {"median": float(np.median(times)), "p95": float(np.percentile(times, 95))}, out


def setup(n: int) -> dict:
    """The mesh reports, the engine's answer, inventories, recent and future requests."""
    rng = np.random.default_rng(1)
    mesh = nx.random_regular_graph(3, n, seed=n)
    helpers = [f"h{i + 1}" for i in range(n)]
    reports: dict = {h: {} for h in helpers}
    for a, b in mesh.edges:
        reports[helpers[a]][helpers[b]] = PeerMetric(float(rng.uniform(1, 50)),
                                                     float(rng.uniform(5, 100)))
    tier1 = {h: PeerMetric(float(rng.uniform(5, 20)), 50.0) for h in helpers[:max(2, n // 8)]}
    video = [f"vod-{v:04d}" for v in range(VIDEOS)]
    answer, cached, flying, recent, future = {}, {}, {}, {}, []
    for h in helpers:
        rows = []
        for v in rng.choice(VIDEOS, 4, replace=False, p=POP):
            head = int(rng.integers(4, SEGMENTS - 5))
            rows += [(video[v], head + d) for d in range(1, 6)]
            recent.update({(h, video[v], head - d): 1.0 for d in range(4)})
            start = NOW + rng.uniform(0, 2)
            future += [(start + 2 * j, h, video[v], head + j) for j in range(-9, 21)
                       if 0 <= head + j < SEGMENTS]
        ranks = rng.permutation(len(rows)) + 1
        answer[h] = [[v, i, float(1.0 / r ** 0.8)] for (v, i), r in zip(rows, ranks)]
        others = {(video[v], int(i)) for v, i in zip(rng.choice(VIDEOS, 45, p=POP),
                                                     rng.integers(0, SEGMENTS, 45))}
        cached[h] = frozenset(rows[:5]) | others
        flying[h] = frozenset(rows[5:7])
    return {"helpers": helpers, "reports": reports, "tier1": tier1, "answer": answer,
            "cached": cached, "flying": flying, "recent": recent, "future": future}


def run(n: int, repeats: int) -> dict:
    s = setup(n)
    helpers = s["helpers"]
    graph_t, graph = timed(lambda: mesh_graph(s["reports"], MASTER, s["tier1"]), repeats)
    assert nx.is_connected(graph), f"mesh of {n} helpers is not connected"
    routes_t, routes = timed(lambda: push_routes(graph, [MASTER], helpers, 1_000_000), repeats)
    rows_t, demand = timed(lambda: [P.Demand(h, v, i, x) for h, rows in s["answer"].items()
                                    for v, i, x in rows], repeats)
    future = P.FutureDemand(s["future"])
    predictive, popularity, oracle = P.DemandPlanner(), P.PopularityPlanner(), P.OraclePlanner()

    holders: dict = {}
    for h, keys in s["cached"].items():
        for key in keys:
            holders.setdefault(key, []).append(h)

    def plan(policy, rows, budget):
        return policy.plan_demand(NOW, rows, s["cached"], s["flying"], lambda v, i: SIZE,
                                  budget, master=MASTER, routes=routes)

    def plan_nearest(policy, rows, budget):
        return policy.plan_demand(NOW, rows, s["cached"], s["flying"], lambda v, i: SIZE,
                                  budget, master=MASTER,
                                  nearest=NearestCopy(graph, MASTER, SIZE), holders=holders)

    popular = [P.Demand(h, v, i, x) for (h, v, i), x in s["recent"].items()]
    runs = {}
    for name, policy, rows in (("predictive", predictive, lambda: demand),
                               ("popularity", popularity, lambda: popular),
                               ("oracle", oracle, lambda: future.between(NOW, 5.0))):
        runs[name] = lambda b, policy=policy, rows=rows: plan(policy, rows(), b)
        runs[f"{name}_nearest"] = lambda b, policy=policy, rows=rows: plan_nearest(
            policy, rows(), b)
    row = {"helpers": n, "links": graph.number_of_edges(), "repeats": repeats,
           "demand_rows": len(demand), "future_requests": len(future),
           "graph_s": graph_t, "routes_s": routes_t, "demand_rows_s": rows_t}
    for label, budget in (("default_budget", 250_000), ("scaled_budget", n * 31_250)):
        out = {"budget_bytes": budget}
        for name, fn in runs.items():
            t, pushes = timed(lambda fn=fn, budget=budget: fn(budget), repeats)
            routing = 0.0 if name.endswith("_nearest") else routes_t["median"]
            out[name] = {"s": t, "pushes": len(pushes),
                         "kept_copies": sum(len(p.keep) for p in pushes),
                         "from_helpers": round(sum(p.route[0] != MASTER for p in pushes)
                                               / max(1, len(pushes)), 3),
                         "interval_share": (routing + t["median"]) / INTERVAL_S}
        row[label] = out
    return rounded(row)


def rounded(x):
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return round(x, 5) if isinstance(x, float) else x


def ratios(big: dict, small: dict) -> dict:
    out = {"routes": big["routes_s"]["median"] / small["routes_s"]["median"]}
    for budget in ("default_budget", "scaled_budget"):
        for name in POLICY_RUNS:
            out[f"{name}_{budget}"] = big[budget][name]["s"]["median"] / \
                small[budget][name]["s"]["median"]
    return {k: round(v, 2) for k, v in out.items()}


def main() -> None:
    rows = {}
    for n in SIZES:
        rows[n] = run(n, 5 if n >= 1000 else 7)
        print({k: v for k, v in rows[n].items() if k.endswith("budget")}, flush=True)
    big = rows[SIZES[-1]]
    worst = max(big[b][p]["interval_share"] for b in ("default_budget", "scaled_budget")
                for p in POLICY_RUNS)
    write("prefetch", {
        "interval_s": INTERVAL_S, "segment_bytes": SIZE, "rows": list(rows.values()),
        "ratios": {"1000_vs_64": ratios(rows[1000], rows[64]),
                   "64_vs_8": ratios(rows[64], rows[8])},
        "target": f"routes + planner well inside the {INTERVAL_S:g} s prefetch interval at "
                  f"1,000 helpers: at most {TARGET_SHARE:.0%} of it, every policy and budget",
        "worst_interval_share_1000": worst, "met": worst <= TARGET_SHARE,
    })


if __name__ == "__main__":
    main()
