"""One helper's logic without I/O: how many events a second can it handle?  (No root.)

Writes benchmarks/out/helper_logic.json.  Timed on one core, median of repeats, for
:class:`testbed.core.node.helper.HelperLogic`:

* ``segment_hit``: a viewer's segment request answered from the cache (the common case:
  serve record, telemetry record, reply);
* ``segment_miss``: a request that misses, its tree fetch's answer (digest checked against
  the manifest) and the reply;
* ``push_relay``: a push arriving on its route, checked, kept and forwarded;
* ``telemetry_batch``: one session's batch of 20 player events: token checked, anonymised.

Each figure is events per second of logic (what a simulation of 10,000 helpers pays per
event); signing and the network are the driver's and are not included.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402
from testbed.core.content import (  # noqa: E402
    CatalogueConfig,
    build_catalogue,
    build_manifest,
    segment_bytes,
)
from testbed.core.node import helper as H  # noqa: E402
from testbed.core.node.effects import Response, Send  # noqa: E402
from testbed.core.telemetry import session_token  # noqa: E402

REPEATS = 5
N = 4000
CAT = build_catalogue(CatalogueConfig(videos=200, live_channels=0, duration_s=120.0))
VIDEOS = CAT.ids()
ADDR = {"m1": "10.0.0.1", **{f"h{i}": f"10.0.1.{i}" for i in range(1, 9)}}


def logic() -> H.HelperLogic:
    s = H.HelperSettings(name="h1", master="m1", addresses=ADDR, catalogue=CAT,
                         cache_bytes=10**12, pseudonym_key=b"s" * 16, engine="e1")
    g = H.HelperLogic(s)
    for v in VIDEOS:
        g.handle(H.ManifestArrived(v, build_manifest(1, CAT[v]), {}), 0.0)
    g.set_table({"version": 1, "tier": 1, "parent": "m1", "children": ["h2"],
                 "ancestors": ["m1"]})
    return g


KEYS = [(v, i) for v in VIDEOS for i in range(CAT[v].n_segments)][:N]
DATA = {k: segment_bytes(1, CAT[k[0]], k[1], 1) for k in KEYS}


def segment_hit() -> float:
    g = logic()
    for k in KEYS:
        g.cache.put(k, 1, DATA[k], "prefetch", 0.0)
    t = time.perf_counter()
    for n, (v, i) in enumerate(KEYS):
        g.handle(H.SegmentRequest(n, v, str(i), "viewer-1"), 1.0)
    return time.perf_counter() - t


def segment_miss() -> float:
    g = logic()
    t = time.perf_counter()
    for n, (v, i) in enumerate(KEYS):
        (send,) = [e for e in g.handle(H.SegmentRequest(n, v, str(i), "viewer-1"), 1.0)
                   if isinstance(e, Send)]
        g.handle(Response(send.ref, 200, DATA[(v, i)], {"X-Meshcast-Version": "1",
                                                       "X-Meshcast-Root": "origin"}), 1.01)
    return time.perf_counter() - t


def push_relay() -> float:
    g = logic()
    t = time.perf_counter()
    for n, (v, i) in enumerate(KEYS):
        body = {"video": v, "index": i, "version": 1, "route": ["m1", "h1", "h2"], "hop": 1,
                "push_id": f"p{n}", "keep": ["h1"]}
        g.handle(H.MeshData(n, "m1", body, DATA[(v, i)]), 1.0)
    return time.perf_counter() - t


def telemetry_batch() -> float:
    g = logic()
    token = session_token(g.s.pseudonym_key, "viewer-1", VIDEOS[0])
    batch = json.dumps({"viewer": "viewer-1", "video": VIDEOS[0], "token": token, "events": [
        {"kind": "stall", "video": VIDEOS[0], "playhead_s": 2.0 * j, "at": 1.0}
        for j in range(20)]}).encode()
    t = time.perf_counter()
    for n in range(N // 4):
        g.handle(H.ViewerTelemetry(n, batch), 1.0 + n * 10.0)  # within the session's rate
        if n % 10 == 9:
            g.telemetry.drain(10_000)
    return time.perf_counter() - t


def main() -> None:
    cases = {"segment_hit": (segment_hit, N), "segment_miss": (segment_miss, N),
             "push_relay": (push_relay, N), "telemetry_batch": (telemetry_batch, N // 4)}
    out = {}
    for name, (fn, n) in cases.items():
        secs = statistics.median(fn() for _ in range(REPEATS))
        out[name] = {"events": n, "seconds": round(secs, 4),
                     "events_per_s": round(n / secs), "us_per_event": round(secs / n * 1e6, 1)}
    write("helper_logic", {"repeats": REPEATS, "results": out})


if __name__ == "__main__":
    main()
