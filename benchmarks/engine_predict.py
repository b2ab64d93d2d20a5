"""The prediction engine's answer on 100, 1,000 and 10,000 helpers (one core, no root).

Writes benchmarks/out/engine_predict.json.  The telemetry: 15 minutes of a workload of
0.03 sessions a second per helper (200 videos), drawn once for 100 helpers and repeated
under other helper names for more (the sessions per helper stay those of the workload);
the model is trained on the 100 helpers' 15 minutes.  Timed (median of repeats): one
:meth:`DemandEngine.predict` for every helper at the end of the 15 minutes, as the master
asks for it (``top`` 50, the model), and the same from the popularity baseline.

Target: well under the forecast period (2 s) at 10,000 helpers.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # one core: before numpy and scikit-learn load

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402
from benchmarks.demand import timed  # noqa: E402
from testbed.core import workload as W  # noqa: E402
from testbed.core.engine import _DTYPES, DemandEngine, EngineConfig, train  # noqa: E402
from testbed.core.workload import TRACE_COLUMNS  # noqa: E402

SIZES = (100, 1000, 10_000)
BASE = 100            # helpers drawn; larger sizes repeat them under other names
DURATION_S = 900.0
RATE = 0.03           # sessions a second per helper
TOP = 50
PERIOD_S = 2.0        # how often the master asks


def base_trace() -> tuple[pd.DataFrame, dict[str, int]]:
    cfg = W.WorkloadConfig(helpers=tuple(f"h{i}" for i in range(1, BASE + 1)),
                           videos=W.synthetic_catalogue(200, 1), duration_s=DURATION_S,
                           seed=1, arrival_rate=RATE)
    trace = W.generate(cfg).trace()
    n_segments = {v: max(1, int(np.ceil(d / cfg.segment_s))) for v, d in cfg.videos}
    return trace, n_segments


def scaled(trace: pd.DataFrame, n: int) -> pd.DataFrame:
    """``trace`` repeated ``n / BASE`` times, copy ``j`` at helpers ``h{i + j * BASE}``."""
    num = trace["helper"].str.slice(1).astype(np.int64).to_numpy()
    copies = []
    for j in range(n // BASE):
        c = trace.copy()
        c["helper"] = np.char.add("h", (num + j * BASE).astype(str)).astype(object)
        copies.append(c)
    out = pd.concat(copies, ignore_index=True)
    return out.sort_values("at", kind="stable").reset_index(drop=True)


def run(n: int, trace: pd.DataFrame, n_segments: dict[str, int], model) -> dict:
    events = scaled(trace, n)
    engine = DemandEngine(EngineConfig(top=TOP), n_segments)
    # the store's frame as its batches would have made it (14 million dicts through
    # ``ingest`` would take far longer than the answer)
    engine.store._frame = events[list(TRACE_COLUMNS)].astype(_DTYPES)
    engine.model, engine.version = model, 1
    helpers = sorted({f"h{i}" for i in range(1, n + 1)})
    now = DURATION_S
    engine.store.frame(now)
    repeats = 5 if n <= 1000 else 3
    model_s, answer = timed(lambda: engine.predict(now, helpers, TOP, "model"), repeats)
    pop_s, pop = timed(lambda: engine.predict(now, helpers, TOP, "popularity"), repeats)
    return {"helpers": n, "events": len(events),
            "predict_model_s": round(model_s, 4),
            "predict_popularity_s": round(pop_s, 4),
            "segments": sum(len(v) for v in answer["predictions"].values()),
            "playheads": sum(len(v) for v in answer["playheads"].values()),
            "popularity_segments": sum(len(v) for v in pop["predictions"].values())}


def main() -> None:
    trace, n_segments = base_trace()
    model = train(trace, DURATION_S, EngineConfig(), n_segments).model
    rows = []
    for n in SIZES:
        rows.append(run(n, trace, n_segments, model))
        print(rows[-1], flush=True)
    write("engine_predict", {"rows": rows, "rate_per_helper": RATE,
                             "duration_s": DURATION_S, "period_s": PERIOD_S,
                             "met": rows[-1]["predict_model_s"] < PERIOD_S})


if __name__ == "__main__":
    main()
