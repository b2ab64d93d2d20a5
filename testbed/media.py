"""Real media on disk: encode a :class:`~testbed.core.media.MediaSpec` with ``ffmpeg`` once,
keep it in a cache, and check what was made with ``ffprobe``.

The cache is ``$MESHCAST_MEDIA_CACHE``, else ``/var/cache/meshcast/media`` for root and
``~/.cache/meshcast/media`` otherwise; each encoding is a directory named by the spec's
:meth:`~testbed.core.media.MediaSpec.key`, made in a scratch directory beside it and renamed
into place whole, under a lock, so two processes asking for the same video encode it once
and nobody reads half a video.  ``testbed media SCENARIO`` fills it for a catalogue.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed.core.media import MediaError, MediaSpec, Track, encode_args, read_mpd

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
MPD_NAME = "manifest.mpd"
DONE_NAME = "media.json"


def cache_root() -> Path:
    env = os.environ.get("MESHCAST_MEDIA_CACHE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/meshcast/media")
    return Path.home() / ".cache" / "meshcast" / "media"


@dataclass(frozen=True)
class MediaSet:
    """One encoded video version: its directory, MPD and tracks."""

    spec: MediaSpec
    dir: Path
    tracks: tuple[Track, ...]

    @property
    def mpd(self) -> Path:
        return self.dir / MPD_NAME

    def track(self, rep: str) -> Track:
        for t in self.tracks:
            if t.rep == rep:
                return t
        raise MediaError(f"{self.spec.title()}: no representation {rep!r}")

    @property
    def video_tracks(self) -> list[Track]:
        return [t for t in self.tracks if t.content == "video"]

    def segment(self, rep: str, index: int) -> Path:
        """Segment ``index`` (0-based, as the testbed counts) of representation ``rep``."""
        t = self.track(rep)
        return self.dir / t.segment_name(t.start_number + index)

    def init(self, rep: str) -> Path:
        return self.dir / self.track(rep).init

    def files(self) -> list[Path]:
        """Every segment file the MPD names (inits first), in order."""
        out = [self.dir / t.init for t in self.tracks]
        for t in self.tracks:
            n = 0
            while (self.dir / t.segment_name(t.start_number + n)).exists():
                out.append(self.dir / t.segment_name(t.start_number + n))
                n += 1
        return out

    def digests(self) -> dict[str, str]:
        """File name -> SHA-256 of every file the MPD names."""
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in self.files()}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load(spec: MediaSpec, d: Path) -> MediaSet:
    return MediaSet(spec, d, tuple(read_mpd((d / MPD_NAME).read_text())))


def ensure(spec: MediaSpec, root: Path | None = None, font: Path | None = FONT) -> MediaSet:
    """The encoded media of ``spec``: from the cache, or made now (``ffmpeg``)."""
    root = Path(root) if root is not None else cache_root()
    d = root / spec.key()
    if (d / DONE_NAME).exists():
        return _load(spec, d)
    if shutil.which("ffmpeg") is None:
        raise MediaError("ffmpeg is not installed (sudo make setup installs it)")
    with _locked(root / f".{spec.key()}.lock"):
        if (d / DONE_NAME).exists():  # made by another process while this one waited
            return _load(spec, d)
        scratch = Path(tempfile.mkdtemp(prefix=f".{spec.key()}.", dir=root))
        try:
            t0, c0 = time.monotonic(), _children_cpu()
            use_font = str(font) if font is not None and Path(font).exists() else None
            res = subprocess.run(encode_args(spec, str(scratch / MPD_NAME), use_font),
                                 capture_output=True, text=True, check=False)
            if res.returncode != 0:
                last = (res.stderr.strip().splitlines() or ["no message"])[-1]
                raise MediaError(f"ffmpeg failed for {spec.title()}: {last}")
            made = _load(spec, scratch)
            (scratch / DONE_NAME).write_text(json.dumps({
                "spec": spec.title(), "key": spec.key(), "font": use_font,
                "wall_s": round(time.monotonic() - t0, 3),
                "cpu_s": round(_children_cpu() - c0, 3),
                "digests": made.digests()}, indent=1))
            os.rename(scratch, d)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _load(spec, d)


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def made_info(media: MediaSet) -> dict:
    """What :func:`ensure` wrote when it made ``media``: wall and CPU seconds, digests."""
    return json.loads((media.dir / DONE_NAME).read_text())


def probe(init: Path, segment: Path) -> dict:
    """``ffprobe`` of one media segment behind its initialization segment: the first
    stream's codec, profile, size, and the segment's duration (s) and bit rate (bit/s)."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(init.read_bytes() + segment.read_bytes())
        f.flush()
        res = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries",
             "stream=codec_name,codec_type,profile,width,height,nb_read_frames",
             "-count_frames", "-of", "json", f.name],
            capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise MediaError(f"ffprobe refused {segment.name}: {res.stderr.strip()[:200]}")
    streams = json.loads(res.stdout).get("streams") or []
    if not streams:
        raise MediaError(f"ffprobe found no stream in {segment.name}")
    s = streams[0]
    return {"codec": s.get("codec_name"), "type": s.get("codec_type"),
            "profile": s.get("profile"), "width": s.get("width"), "height": s.get("height"),
            "frames": int(s.get("nb_read_frames") or 0), "bytes": segment.stat().st_size}
