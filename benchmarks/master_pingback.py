"""One pingback round of the master's logic on 100, 1,000 and 10,000 helpers (no root).

Writes benchmarks/out/master_pingback.json.  Pure logic on a fake clock
(:class:`testbed.core.node.master.MasterLogic`), no network, no signing: a round is its
start (timeouts of the round before, 3 probes per helper with their stagger and nonces),
every probe answered (seeded round trips: a third of the helpers near, 0.5-3 ms, the
rest far, 20-60 ms, with +-5 % noise per probe), and the decision.  Timed (median of
repeats, one core):

* ``first_round_s``: the round that builds the first tables (a routing message to every
  helper);
* ``steady_round_s``: a later round where nothing moved (the common case), split into
  ``start_s``, ``replies_s`` and ``decide_s``;
* ``per_probe_us``: ``steady_round_s`` over the probes of the round.

Target: a round of 10,000 helpers well under a second of CPU (the interval is 5 s).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402
from testbed.core.node.effects import Send, SetTimer, Timer  # noqa: E402
from testbed.core.node.master import DECIDE, PINGBACK, MasterLogic, ProbeReply  # noqa: E402

SIZES = (100, 1000, 10_000)
PROBES = 3
INTERVAL_S = 5.0
REPEATS = 5
TARGET_S = 1.0


def make(n: int) -> tuple[MasterLogic, dict[str, float], random.Random]:
    rng = random.Random(n)
    helpers = {f"h{i + 1}": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(n)}
    base = {h: rng.uniform(0.5, 3.0) if i % 3 == 0 else rng.uniform(20.0, 60.0)
            for i, h in enumerate(helpers)}
    delivery = {"tiers": 2, "fanout": None, "pingback_interval_s": INTERVAL_S,
                "pingback_probes": PROBES}
    lg = MasterLogic.from_delivery("m", "10.255.255.254", helpers, delivery,
                                   nonce_key=n.to_bytes(4, "big"))
    return lg, base, rng


def one_round(lg: MasterLogic, base: dict[str, float], rng: random.Random,
              now: float) -> dict:
    t0 = time.perf_counter()
    out = lg.handle(Timer(PINGBACK), now)
    t1 = time.perf_counter()
    probes = [e for e in out if isinstance(e, Send)]
    replies = [ProbeReply(p.to, p.body["nonce"], base[p.to] * rng.uniform(0.95, 1.05), 1e-4)
               for p in probes]  # made outside the timed part
    t2 = time.perf_counter()
    for r in replies:
        lg.handle(r, now + 0.5)
    t3 = time.perf_counter()
    decide = next(e for e in out if isinstance(e, SetTimer) and e.name == DECIDE)
    effects = lg.handle(Timer(DECIDE, decide.token), decide.at)
    t4 = time.perf_counter()
    return {"start_s": t1 - t0, "replies_s": t3 - t2, "decide_s": t4 - t3,
            "round_s": (t1 - t0) + (t4 - t2), "probes": len(probes),
            "stagger_s": max(p.delay_s for p in probes), "decide_after_s": decide.at - now,
            "routing": sum(isinstance(e, Send) for e in effects)}


def run(n: int) -> dict:
    first = []
    for _ in range(REPEATS if n < 10_000 else 3):
        lg, base, rng = make(n)
        first.append(one_round(lg, base, rng, 1.0))
    steady = [one_round(lg, base, rng, 1.0 + INTERVAL_S * (k + 1)) for k in range(REPEATS)]

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    probes = steady[0]["probes"]
    return {
        "helpers": n, "probes_per_round": probes,
        "first_round_s": round(med(first, "round_s"), 4),
        "first_round_routing_messages": first[0]["routing"],
        "steady_round_s": round(med(steady, "round_s"), 4),
        "start_s": round(med(steady, "start_s"), 4),
        "replies_s": round(med(steady, "replies_s"), 4),
        "decide_s": round(med(steady, "decide_s"), 4),
        "per_probe_us": round(med(steady, "round_s") / probes * 1e6, 2),
        "steady_routing_messages": steady[-1]["routing"],
        "stagger_s": round(steady[0]["stagger_s"], 3),
        "decide_after_s": round(steady[0]["decide_after_s"], 3),
    }


def main() -> None:
    rows = []
    for n in SIZES:
        rows.append(run(n))
        print(rows[-1], flush=True)
    big = rows[-1]
    write("master_pingback", {
        "rows": rows, "interval_s": INTERVAL_S,
        "cost_ratio_10000_to_100": round(big["steady_round_s"] / rows[0]["steady_round_s"], 1),
        "target_10000_helpers_s": TARGET_S,
        "met": max(big["first_round_s"], big["steady_round_s"]) < TARGET_S,
    })


if __name__ == "__main__":
    main()
