"""Run every benchmark (root); each writes its JSON to benchmarks/out/."""

from __future__ import annotations

import runpy
from pathlib import Path

HERE = Path(__file__).resolve().parent

for name in ("startup", "linkemu_cpu", "routing", "trees", "delivery_core", "demand", "prefetch",
             "master_pingback", "harness", "media_generation"):
    print(f"== {name}", flush=True)
    runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
