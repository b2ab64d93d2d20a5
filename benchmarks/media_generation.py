"""What real media costs to make: wall and CPU seconds of ffmpeg per minute of video, for
the whole rendition ladder and for each rendition alone, and the bytes it writes (no root).

Writes benchmarks/out/media_generation.json.  Each point encodes a fresh ``--seconds`` long
video (default 30) into a scratch cache, so nothing is reused; side by side, each
rendition's share of the ladder's CPU.

    .venv/bin/python benchmarks/media_generation.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write  # noqa: E402
from testbed import media  # noqa: E402
from testbed.core.media import LADDER, MediaSpec  # noqa: E402


def point(name: str, renditions, seconds: float, root: Path) -> dict:
    spec = MediaSpec(f"bench-{name}", 1, seconds, 2.0, renditions=renditions)
    made = media.ensure(spec, root)
    info = media.made_info(made)
    size = sum(p.stat().st_size for p in made.files())
    per_min = 60.0 / seconds
    return {"renditions": [f"{r.kbps}k {r.width}x{r.height}" for r in renditions],
            "video_s": seconds, "wall_s": info["wall_s"], "cpu_s": info["cpu_s"],
            "wall_s_per_video_minute": round(info["wall_s"] * per_min, 2),
            "cpu_s_per_video_minute": round(info["cpu_s"] * per_min, 2),
            "bytes": size, "mbit_s_written": round(size * 8 / seconds / 1e6, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        ladder = point("ladder", LADDER, a.seconds, Path(d))
        alone = [point(f"r{r.kbps}", (r,), a.seconds, Path(d)) for r in LADDER]
    for p in alone:
        p["cpu_share_of_ladder"] = round(p["cpu_s"] / ladder["cpu_s"], 3)
    write("media_generation", {"ladder": ladder, "each_alone": alone,
                               "sum_alone_over_ladder_cpu": round(
                                   sum(p["cpu_s"] for p in alone) / ladder["cpu_s"], 3)})


if __name__ == "__main__":
    main()
