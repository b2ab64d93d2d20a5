"""Real media for the catalogue, sans I/O: the rendition ladder, the ``ffmpeg`` command that
encodes one version of one video to fragmented-MP4 MPEG-DASH, and reading back what it made.

A video is a test pattern with its id, version and a running time code burnt in, and a tone
of its own (so two videos, or two versions, never look or sound alike), encoded to H.264 at
every rendition of the ladder and AAC audio, cut into ``segment_s`` segments that start on a
key frame in every rendition at once (so a player can switch between them at any segment).
The files are named by a template (``init-<rep>.m4s``, ``seg-<rep>-<number>.m4s``, numbers
from 1) and described by the MPD ``ffmpeg`` writes, which :func:`read_mpd` reads back.

Everything here is pure: :func:`encode_args` is a command line, not a run of it
(``testbed.media`` runs it and keeps the result in a cache under :meth:`MediaSpec.key`).
"""

from __future__ import annotations

import hashlib
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass

#: Bumped whenever the encoding changes, so cached media made the old way is not reused.
FORMAT = 1
FPS = 25
AUDIO_KBPS = 64
AUDIO_RATE = 48_000
PATTERN_SIZE = (854, 480)  # the source picture; every rendition is scaled from it
INIT_NAME = "init-$RepresentationID$.m4s"
MEDIA_NAME = "seg-$RepresentationID$-$Number%05d$.m4s"
_NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


class MediaError(ValueError):
    """A media spec that cannot be encoded, or an MPD that cannot be read."""


@dataclass(frozen=True)
class Rendition:
    """One video quality: target bitrate (kbit/s) and picture size."""

    kbps: int
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("kbps", "width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise MediaError(f"rendition {name}: {v!r} (must be a whole number > 0)")
        if self.width % 2 or self.height % 2:
            raise MediaError(f"rendition {self.width}x{self.height}: H.264 in 4:2:0 needs "
                             "even sizes")


#: The default ladder: three steps a player can climb, each about twice the one below.
LADDER = (Rendition(300, 426, 240), Rendition(800, 640, 360), Rendition(1600, 854, 480))


@dataclass(frozen=True)
class MediaSpec:
    """One version of one video, as encoded."""

    video_id: str
    version: int
    duration_s: float
    segment_s: float
    renditions: tuple[Rendition, ...] = LADDER
    fps: int = FPS
    audio_kbps: int = AUDIO_KBPS

    def __post_init__(self) -> None:
        if not self.video_id or any(c not in _ID_CHARS for c in self.video_id):
            raise MediaError(f"video id {self.video_id!r} (letters, digits, '-' and '_')")
        if isinstance(self.version, bool) or not isinstance(self.version, int) \
                or self.version < 0:
            raise MediaError(f"{self.video_id}: version {self.version!r} (a whole number >= 0)")
        if not (isinstance(self.duration_s, (int, float)) and 0 < self.duration_s <= 86_400):
            raise MediaError(f"{self.video_id}: duration_s {self.duration_s!r} "
                             "(must be > 0 and at most a day)")
        if not (isinstance(self.segment_s, (int, float)) and self.segment_s > 0):
            raise MediaError(f"{self.video_id}: segment_s {self.segment_s!r} (must be > 0)")
        frames = self.segment_s * self.fps
        if abs(frames - round(frames)) > 1e-9:
            raise MediaError(f"{self.video_id}: segment_s {self.segment_s} is not a whole "
                             f"number of frames at {self.fps} fps")
        if not self.renditions:
            raise MediaError(f"{self.video_id}: no rendition")
        rates = [r.kbps for r in self.renditions]
        if rates != sorted(set(rates)):
            raise MediaError(f"{self.video_id}: renditions {rates} (must rise, each once)")
        if any(r.width > PATTERN_SIZE[0] or r.height > PATTERN_SIZE[1]
               for r in self.renditions):
            raise MediaError(f"{self.video_id}: a rendition above the source picture "
                             f"{PATTERN_SIZE[0]}x{PATTERN_SIZE[1]}")

    @property
    def n_segments(self) -> int:
        """Video segments per rendition."""
        return math.ceil(self.duration_s / self.segment_s - 1e-9)

    @property
    def gop(self) -> int:
        """Frames between key frames: one segment."""
        return round(self.segment_s * self.fps)

    def key(self) -> str:
        """What the encoding depends on, hashed: the cache's name for this media."""
        blob = json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def tone_hz(self) -> int:
        """The video's tone: 300-1,100 Hz in 10 Hz steps, from its id and version."""
        h = hashlib.sha256(f"{self.video_id}|{self.version}".encode()).digest()
        return 300 + 10 * (int.from_bytes(h[:4], "big") % 81)

    def title(self) -> str:
        return f"{self.video_id} v{self.version}"


_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _drawtext_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")


def encode_args(spec: MediaSpec, mpd_path: str, font: str | None = None,
                threads: int = 0) -> list[str]:
    """The ``ffmpeg`` command line that writes ``spec`` as DASH to ``mpd_path`` (segments
    beside it).  ``font``: a TrueType file for the burnt-in title and time code (none: the
    picture carries only the pattern's own counter)."""
    w, h = PATTERN_SIZE
    dur = f"{spec.duration_s:g}"
    pattern = f"testsrc2=size={w}x{h}:rate={spec.fps}:duration={dur}"
    tone = f"sine=frequency={spec.tone_hz()}:sample_rate={AUDIO_RATE}:duration={dur}"
    chain = "[0:v]"
    if font is not None:
        text = _drawtext_escape(spec.title())
        chain += (f"drawtext=fontfile={font}:text='{text}  %{{pts\\:hms}}'"
                  ":fontsize=32:fontcolor=white:box=1:boxcolor=black@0.6:x=16:y=16,")
    n = len(spec.renditions)
    outs = "".join(f"[s{i}]" for i in range(n))
    chain += f"split={n}{outs}" if n > 1 else "null[s0]"
    scales = ";".join(f"[s{i}]scale={r.width}:{r.height}[v{i}]"
                      for i, r in enumerate(spec.renditions))
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i", tone,
            "-filter_complex", f"{chain};{scales}"]
    for i in range(n):
        args += ["-map", f"[v{i}]"]
    args += ["-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main",
             "-pix_fmt", "yuv420p", "-g", str(spec.gop), "-keyint_min", str(spec.gop),
             "-sc_threshold", "0", "-bf", "0", "-threads", str(threads)]
    for i, r in enumerate(spec.renditions):
        # capped at 10 % over the target, with a buffer of one segment: every segment of a
        # rendition is close to its bitrate, as a streaming encoder would make it
        args += [f"-b:v:{i}", f"{r.kbps}k", f"-maxrate:v:{i}", f"{round(r.kbps * 1.1)}k",
                 f"-bufsize:v:{i}", f"{round(r.kbps * spec.segment_s)}k"]
    args += ["-c:a", "aac", "-b:a", f"{spec.audio_kbps}k", "-ar", str(AUDIO_RATE), "-ac", "1",
             "-f", "dash", "-seg_duration", f"{spec.segment_s:g}", "-use_template", "1",
             "-use_timeline", "0", "-adaptation_sets", "id=0,streams=v id=1,streams=a",
             "-init_seg_name", INIT_NAME, "-media_seg_name", MEDIA_NAME, mpd_path]
    return args


@dataclass(frozen=True)
class Track:
    """One representation of an encoded MPD."""

    rep: str            # the representation id (the files' $RepresentationID$)
    content: str        # video or audio
    codecs: str
    bandwidth: int      # bit/s, as the MPD declares
    width: int | None
    height: int | None
    init: str           # the initialization segment's file name
    media: str          # the media segments' template
    start_number: int
    segment_s: float

    def segment_name(self, number: int) -> str:
        """The file of segment ``number`` (numbers start at :attr:`start_number`)."""
        name = self.media.replace("$RepresentationID$", self.rep)
        if "$Number%05d$" in name:
            return name.replace("$Number%05d$", f"{number:05d}")
        return name.replace("$Number$", str(number))


def read_mpd(text: str) -> list[Track]:
    """The representations of a static, template-addressed MPD as ``ffmpeg`` writes it."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise MediaError(f"MPD: not XML ({exc})") from None
    tracks = []
    for aset in root.iterfind("d:Period/d:AdaptationSet", _NS):
        content = aset.get("contentType") or ""
        for rep in aset.iterfind("d:Representation", _NS):
            tmpl = rep.find("d:SegmentTemplate", _NS)
            if tmpl is None or rep.get("id") is None:
                raise MediaError("MPD: a representation without an id or a SegmentTemplate")
            if not content:
                content = (rep.get("mimeType") or "/").split("/")[0]
            scale = int(tmpl.get("timescale", "1"))
            tracks.append(Track(
                rep=rep.get("id"), content=content, codecs=rep.get("codecs", ""),
                bandwidth=int(rep.get("bandwidth", "0")),
                width=int(rep.get("width")) if rep.get("width") else None,
                height=int(rep.get("height")) if rep.get("height") else None,
                init=tmpl.get("initialization", "").replace("$RepresentationID$",
                                                             rep.get("id")),
                media=tmpl.get("media", ""), start_number=int(tmpl.get("startNumber", "1")),
                segment_s=int(tmpl.get("duration", "0")) / scale))
    if not tracks:
        raise MediaError("MPD: no representation")
    return tracks
