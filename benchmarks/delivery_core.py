"""The delivery system's pure core at scale (no root needed): can it drive 10,000 helpers?

Writes benchmarks/out/delivery_core.json.  Timed on one core, median of repeats:

* ``tiers_tables_s``: pingback latencies -> tiers (2, at the largest gaps) -> routing
  tables, for 100, 1,000 and 10,000 helpers (fan-out 8);
* ``neighbours_s``: one round of neighbour choice (k=4) for every helper, each seeing 20
  candidate peers;
* ``push_routes_s``: Dijkstra push routes from the master to every helper over a mesh of
  degree 4;
* ``cache_ops_per_s``: cache puts and gets (LRU, 100 KB objects, 8 MB);
* ``segment_mb_per_s``: deterministic segment bytes generated;
* ``encode_s`` / ``decode_s``: one signed 75 KB mesh_data message (Ed25519 both ways).

Side by side: the per-helper cost at each size (near-linear growth is the target).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402
from testbed.core import protocol as P  # noqa: E402
from testbed.core import security as sec  # noqa: E402
from testbed.core.cache import SegmentCache  # noqa: E402
from testbed.core.content import Video, segment_bytes  # noqa: E402
from testbed.core.mesh import NeighbourSelector, PeerMetric, mesh_graph, push_routes  # noqa: E402
from testbed.core.timing import assign_tiers, build_routing_tables  # noqa: E402

SIZES = (100, 1000, 10_000)
REPEATS = 5


def timed(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def scale(n: int, seed: int = 1) -> dict:
    rng = random.Random(seed)
    helpers = [f"h{i}" for i in range(1, n + 1)]
    lat = {h: rng.choice((rng.uniform(4, 12), rng.uniform(40, 70))) for h in helpers}

    def tables() -> None:
        tiers = assign_tiers(lat, tier_count=2)
        build_routing_tables("m1", lat, tiers, 1, fanout=8)

    candidates = {h: rng.sample(helpers, min(20, n - 1)) for h in helpers}
    metrics = {h: {p: PeerMetric(rng.uniform(1, 80), rng.uniform(1, 50))
                   for p in candidates[h] if p != h} for h in helpers}

    def neighbours() -> None:
        for h in helpers:
            NeighbourSelector(4).update(metrics[h], 0.0)

    reports = {h: {p: metrics[h][p] for p in list(metrics[h])[:4]} for h in helpers}
    tier1 = {h: PeerMetric(lat[h], 50.0) for h in helpers if lat[h] < 20}
    graph = mesh_graph(reports, "m1", tier1)

    def routes() -> None:
        push_routes(graph, ["m1"], helpers, 75_000)

    t_tables = timed(tables)
    t_nbrs = timed(neighbours, 3)
    t_routes = timed(routes, 3)
    return {"helpers": n, "tiers_tables_s": round(t_tables, 4),
            "neighbours_s": round(t_nbrs, 4), "push_routes_s": round(t_routes, 4),
            "per_helper_us": {"tables": round(t_tables / n * 1e6, 2),
                              "neighbours": round(t_nbrs / n * 1e6, 2),
                              "push_routes": round(t_routes / n * 1e6, 2)}}


def unit_costs() -> dict:
    video = Video("vod-0000", "vod", 120.0, 300, 2.0)
    t_seg = timed(lambda: [segment_bytes(1, video, i, 1) for i in range(60)])
    mb = sum(video.segment_size(i) for i in range(60)) / 1e6
    cache = SegmentCache(8_000_000)
    blob = b"x" * 100_000
    ops = 20_000

    def cache_ops() -> None:
        for i in range(ops):
            cache.put(("v", i % 200), 1, blob, "tree", float(i))
            cache.get(("v", (i * 7) % 200), float(i))

    t_cache = timed(cache_ops, 3)
    ca = sec.Authority.from_secret(b"bench")
    ident = ca.issue("h1", "helper", 1e12)
    signer = P.Signer(ident)
    verifier = sec.Verifier(ca.public_key)
    payload = segment_bytes(1, video, 0, 1)
    body = {"video": "vod-0000", "index": 0, "version": 1, "route": ["m1", "h1"], "hop": 1,
            "push_id": "b", "keep": []}
    t_enc = timed(lambda: signer.encode("mesh_data", body, payload, now=1000.0), 50)
    msgs = [signer.encode("mesh_data", body, payload, now=1000.0) for _ in range(50)]
    it = iter(msgs)
    t_dec = timed(lambda: P.decode(next(it), verifier, None, now=1000.0), 50)
    return {"segment_mb_per_s": round(mb / t_seg, 1),
            "cache_ops_per_s": round(2 * ops / t_cache),
            "encode_s": round(t_enc, 6), "decode_s": round(t_dec, 6)}


def main() -> None:
    rows = [scale(n) for n in SIZES]
    base = rows[0]
    for r in rows:
        r["growth_vs_100"] = {k: round(r[k] / base[k], 1) if base[k] else None
                              for k in ("tiers_tables_s", "neighbours_s", "push_routes_s")}
    write("delivery_core", {"scales": rows, "unit_costs": unit_costs(),
                            "note": "growth_vs_100 near 10x and 100x means near-linear cost"})


if __name__ == "__main__":
    main()
