"""The content the testbed delivers: a catalogue of videos, their segments and manifests.

Every segment is synthetic: :func:`segment_bytes` derives its bytes from ``(seed, video,
index, version)``, so the master, the helpers and the tests all produce identical bytes
without storing anything, and a republished video (a new version) has different bytes.
A :class:`Manifest` lists each segment's size and SHA-256 digest; the master signs its
:meth:`Manifest.canonical_bytes` and viewers and helpers check every segment against it.
:func:`render_mpd` turns a manifest into the MPEG-DASH MPD a player fetches.

Pure: no I/O, no clock; times (``availability_start``) are arguments.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

VOD, LIVE = "vod", "live"
KINDS = (VOD, LIVE)

# Ids go into URLs and log lines: keep them to a safe alphabet.
VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Bounds that keep a hostile manifest (from the network) cheap to check.
MAX_SEGMENTS = 100_000
MAX_INT = 2**63 - 1
MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class ContentError(ValueError):
    """A video, catalogue or configuration that makes no sense; the message names the field."""


class SegmentIndexError(ContentError, IndexError):
    """A segment index outside ``0 .. n_segments - 1`` (both a ValueError and an IndexError)."""


class ManifestError(ValueError):
    """A manifest with a missing, extra or malformed field; the message names the field."""


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    """A finite int or float (not a bool); ints beyond int64 do not count."""
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return -MAX_INT - 1 <= x <= MAX_INT
    return isinstance(x, float) and math.isfinite(x)


def _short(x: object) -> str:
    """repr(x), cut short: messages about hostile input stay one short line."""
    try:
        text = repr(x)
    except ValueError:  # an int too long to print
        text = f"<{type(x).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _segment_count(duration_s: float, segment_s: float) -> int:
    """ceil(duration / segment), forgiving float noise (1.1 / 0.1 is 11, not 12)."""
    ratio = duration_s / segment_s
    nearest = round(ratio)
    if nearest >= 1 and abs(ratio - nearest) <= 1e-9 * max(1.0, ratio):
        return int(nearest)
    return max(1, math.ceil(ratio))


def _bytes_per_s(bitrate_kbps: int) -> float:
    return bitrate_kbps * 1000 / 8


@dataclass(frozen=True)
class Video:
    """One video: on demand ("vod") or a live channel ("live"), cut into fixed-length segments.

    All segments last ``segment_s`` except the last, which holds the remainder.  Sizes follow
    from a constant bitrate, so any node can compute them without a manifest.
    """

    id: str
    kind: str
    duration_s: float
    bitrate_kbps: int
    segment_s: float

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not VIDEO_ID_RE.match(self.id):
            raise ContentError(f"video id {_short(self.id)} (must match {VIDEO_ID_RE.pattern})")
        if self.kind not in KINDS:
            raise ContentError(f"video {self.id}: kind {_short(self.kind)} (must be vod or live)")
        for name in ("duration_s", "segment_s"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise ContentError(
                    f"video {self.id}: {name} {_short(value)} (must be a number > 0)")
        if not _is_int(self.bitrate_kbps) or self.bitrate_kbps <= 0:
            raise ContentError(f"video {self.id}: bitrate_kbps {_short(self.bitrate_kbps)} "
                               "(must be an integer > 0)")

    @property
    def n_segments(self) -> int:
        """ceil(duration_s / segment_s)."""
        return _segment_count(self.duration_s, self.segment_s)

    def _check_index(self, index: int) -> int:
        n = self.n_segments
        if not _is_int(index) or not 0 <= index < n:
            raise SegmentIndexError(
                f"video {self.id}: segment index {_short(index)} (must be 0..{n - 1})")
        return n

    def segment_duration(self, index: int) -> float:
        """Seconds of media in segment ``index``; the last one holds the remainder."""
        n = self._check_index(index)
        if index < n - 1:
            return float(self.segment_s)
        rest = self.duration_s - (n - 1) * self.segment_s
        return float(min(self.segment_s, rest)) if rest > 0 else float(self.segment_s)

    def segment_size(self, index: int) -> int:
        """Bytes in segment ``index`` at the video's constant bitrate (at least 1)."""
        return max(1, round(_bytes_per_s(self.bitrate_kbps) * self.segment_duration(index)))

    def live_edge(self, now: float, started: float) -> int:
        """A live channel produced in real time from ``started`` on: the newest segment
        complete at ``now`` (segment i is out at started + (i+1) x segment_s; -1: none yet)."""
        return min(self.n_segments - 1, math.floor((now - started) / self.segment_s) - 1)

    def segment_at(self, playhead_s: float) -> int:
        """The index of the segment that holds media time ``playhead_s`` (clamped to the video)."""
        if not _is_number(playhead_s):
            raise ContentError(f"video {self.id}: playhead {_short(playhead_s)} (must be a number)")
        return min(self.n_segments - 1, max(0, int(playhead_s // self.segment_s)))


@dataclass(frozen=True)
class CatalogueConfig:
    """How many videos and live channels to make, and their shape (mirrors the scenario)."""

    videos: int = 40
    live_channels: int = 1
    duration_s: float = 120.0
    live_duration_s: float = 600.0
    bitrate_kbps: int = 300
    segment_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("videos", "live_channels"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ContentError(f"content.{name}: {_short(value)} (must be an integer >= 0)")
        for name in ("duration_s", "live_duration_s", "segment_s"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise ContentError(f"content.{name}: {_short(value)} (must be a number > 0)")
        if not _is_int(self.bitrate_kbps) or self.bitrate_kbps <= 0:
            raise ContentError(
                f"content.bitrate_kbps: {_short(self.bitrate_kbps)} (must be an integer > 0)")
        if self.videos + self.live_channels < 1:
            raise ContentError("content: videos + live_channels is 0 (need at least one)")


class Catalogue:
    """An ordered, immutable set of videos, looked up by id."""

    __slots__ = ("_videos",)

    def __init__(self, videos: Iterable[Video]) -> None:
        table: dict[str, Video] = {}
        for v in videos:
            if not isinstance(v, Video):
                raise ContentError(f"catalogue entry {_short(v)} is not a Video")
            if v.id in table:
                raise ContentError(f"catalogue: duplicate video id {_short(v.id)}")
            table[v.id] = v
        self._videos: Mapping[str, Video] = table

    def __getitem__(self, video_id: str) -> Video:
        try:
            return self._videos[video_id]
        except (KeyError, TypeError):
            raise KeyError(f"unknown video {_short(video_id)}") from None

    def get(self, video_id: str, default: Video | None = None) -> Video | None:
        """The video with this id, or ``default``."""
        try:
            return self._videos.get(video_id, default)
        except TypeError:
            return default

    def __contains__(self, video_id: object) -> bool:
        try:
            return video_id in self._videos
        except TypeError:
            return False

    def __iter__(self) -> Iterator[Video]:
        return iter(self._videos.values())

    def __len__(self) -> int:
        return len(self._videos)

    def __repr__(self) -> str:
        return f"Catalogue({len(self)} videos: {', '.join(self._videos)[:80]})"

    def ids(self, kind: str | None = None) -> list[str]:
        """Video ids in catalogue order, only those of ``kind`` ("vod" or "live") if given."""
        if kind is not None and kind not in KINDS:
            raise ContentError(f"kind {_short(kind)} (must be vod or live)")
        return [v.id for v in self._videos.values() if kind is None or v.kind == kind]


def vod_id(n: int) -> str:
    """The id of the n-th on-demand video: vod-0000, vod-0001, ..."""
    return f"vod-{n:04d}"


def live_id(n: int) -> str:
    """The id of the n-th live channel: live-00, live-01, ..."""
    return f"live-{n:02d}"


def build_catalogue(cfg: CatalogueConfig) -> Catalogue:
    """The on-demand videos vod-0000.. then the live channels live-00.., as configured."""
    vods = (Video(vod_id(i), VOD, float(cfg.duration_s), cfg.bitrate_kbps, float(cfg.segment_s))
            for i in range(cfg.videos))
    lives = (Video(live_id(i), LIVE, float(cfg.live_duration_s), cfg.bitrate_kbps,
                   float(cfg.segment_s))
             for i in range(cfg.live_channels))
    return Catalogue([*vods, *lives])


def segment_bytes(seed: int, video: Video, index: int, version: int) -> bytes:
    """The synthetic bytes of one segment: deterministic, and different for every version.

    A PCG64 stream (stable across numpy releases) seeded from SHA-256 of the key, so it
    runs at well over 1 GB/s and no two keys share a stream.
    """
    if not _is_int(seed):
        raise ContentError(f"segment_bytes: seed {_short(seed)} (must be an integer)")
    if not _is_int(version) or version < 0:
        raise ContentError(f"segment_bytes: version {_short(version)} (must be an integer >= 0)")
    size = video.segment_size(index)
    key = f"meshcast-segment|{seed}|{video.id}|{index}|{version}".encode()
    state = int.from_bytes(hashlib.sha256(key).digest(), "little")
    words = np.random.PCG64(state).random_raw((size + 7) // 8)
    return words.astype("<u8", copy=False).tobytes()[:size]


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256, the digest format of manifests."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class StandIn:
    """A segment's bytes stood in for by their size and digest (the fast option of a
    simulation: caches hold, replies carry and checks compare it without making, storing
    or hashing the bytes).  ``len()`` is the segment's size."""

    size: int
    digest: str

    def __len__(self) -> int:
        return self.size


def standin_digest(seed: int, video_id: str, index: int, version: int) -> str:
    """The digest a :class:`StandIn` of that segment carries (and its manifest lists)."""
    return hashlib.sha256(f"meshcast-standin|{seed}|{video_id}|{index}|{version}"
                          .encode()).hexdigest()


def segment_standin(seed: int, video: Video, index: int, version: int) -> StandIn:
    """The stand-in of :func:`segment_bytes` ``(seed, video, index, version)``."""
    return StandIn(video.segment_size(index), standin_digest(seed, video.id, index, version))


def fingerprint(data: bytes | StandIn) -> str:
    """The SHA-256 (hex) of a segment's bytes, or the digest its stand-in carries."""
    return data.digest if isinstance(data, StandIn) else hashlib.sha256(data).hexdigest()


_MANIFEST_FIELDS = ("video_id", "kind", "version", "segment_s", "bitrate_kbps", "sizes",
                    "digests")


@dataclass(frozen=True)
class Manifest:
    """What a video version consists of: per-segment sizes and SHA-256 digests.

    The master signs :meth:`canonical_bytes`; receivers check each segment with
    :meth:`digest_ok` before caching, serving or playing it.  Construction validates every
    field (ManifestError), since manifests arrive from the network.
    """

    video_id: str
    kind: str
    version: int
    segment_s: float
    bitrate_kbps: int
    sizes: tuple[int, ...]
    digests: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.video_id, str) or not VIDEO_ID_RE.match(self.video_id):
            raise ManifestError(f"manifest video_id {_short(self.video_id)} (must match "
                                f"{VIDEO_ID_RE.pattern})")
        if self.kind not in KINDS:
            raise ManifestError(f"manifest kind {_short(self.kind)} (must be vod or live)")
        if not _is_int(self.version) or not 0 <= self.version <= MAX_INT:
            raise ManifestError(
                f"manifest version {_short(self.version)} (must be an integer >= 0)")
        if not _is_number(self.segment_s) or self.segment_s <= 0:
            raise ManifestError(
                f"manifest segment_s {_short(self.segment_s)} (must be a number > 0)")
        if not _is_int(self.bitrate_kbps) or not 0 < self.bitrate_kbps <= MAX_INT:
            raise ManifestError(
                f"manifest bitrate_kbps {_short(self.bitrate_kbps)} (must be an integer > 0)")
        object.__setattr__(self, "segment_s", float(self.segment_s))
        sizes, digests = self.sizes, self.digests
        for name, seq in (("sizes", sizes), ("digests", digests)):
            if not isinstance(seq, (tuple, list)):
                raise ManifestError(f"manifest {name}: {type(seq).__name__} (must be a list)")
            if not 1 <= len(seq) <= MAX_SEGMENTS:
                raise ManifestError(
                    f"manifest {name}: {len(seq)} entries (must be 1..{MAX_SEGMENTS})")
        if len(sizes) != len(digests):
            raise ManifestError(
                f"manifest: {len(sizes)} sizes but {len(digests)} digests (must be equal)")
        for i, s in enumerate(sizes):
            if not _is_int(s) or not 0 <= s <= MAX_INT:
                raise ManifestError(f"manifest sizes[{i}]: {_short(s)} (must be an integer >= 0)")
        for i, d in enumerate(digests):
            if not isinstance(d, str) or not _HEX64_RE.match(d):
                raise ManifestError(
                    f"manifest digests[{i}]: {_short(d)} (must be 64 lower-case hex digits)")
        object.__setattr__(self, "sizes", tuple(sizes))
        object.__setattr__(self, "digests", tuple(digests))

    @property
    def n_segments(self) -> int:
        return len(self.sizes)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)

    def segment_duration(self, index: int) -> float:
        """Seconds in segment ``index``: segment_s, the last one from its size and bitrate."""
        if not _is_int(index) or not 0 <= index < len(self.sizes):
            raise ManifestError(f"manifest {self.video_id}: segment index {_short(index)} "
                                f"(must be 0..{len(self.sizes) - 1})")
        if index < len(self.sizes) - 1:
            return self.segment_s
        return min(self.segment_s, self.sizes[index] / _bytes_per_s(self.bitrate_kbps))

    @property
    def duration_s(self) -> float:
        """Media seconds in the whole version."""
        return (len(self.sizes) - 1) * self.segment_s + self.segment_duration(len(self.sizes) - 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, not tuples)."""
        return {"video_id": self.video_id, "kind": self.kind, "version": self.version,
                "segment_s": self.segment_s, "bitrate_kbps": self.bitrate_kbps,
                "sizes": list(self.sizes), "digests": list(self.digests)}

    def canonical_bytes(self) -> bytes:
        """Sorted-key compact ASCII JSON: the exact bytes the master signs."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True, allow_nan=False).encode("ascii")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        """Rebuild a manifest from :meth:`to_dict` output; ManifestError on anything else."""
        if not isinstance(d, Mapping):
            raise ManifestError(f"manifest: {type(d).__name__} (must be a dict)")
        try:
            keys = set(d)
        except TypeError:
            raise ManifestError("manifest: keys are not iterable") from None
        missing = [k for k in _MANIFEST_FIELDS if k not in keys]
        if missing:
            raise ManifestError(f"manifest: missing field {_short(missing[0])}")
        extra = sorted(_short(k) for k in keys - set(_MANIFEST_FIELDS))
        if extra:
            raise ManifestError(f"manifest: unknown field {extra[0]}")
        for name in ("sizes", "digests"):
            if not isinstance(d[name], (list, tuple)):
                raise ManifestError(
                    f"manifest {name}: {type(d[name]).__name__} (must be a list)")
        return cls(**{k: d[k] for k in _MANIFEST_FIELDS})

    def digest_ok(self, index: int, data: bytes) -> bool:
        """True when ``data`` is exactly segment ``index`` of this version."""
        if not _is_int(index) or not 0 <= index < len(self.sizes):
            return False
        if isinstance(data, StandIn):
            return data.size == self.sizes[index] and data.digest == self.digests[index]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return False
        if len(data) != self.sizes[index]:
            return False
        return hashlib.sha256(data).hexdigest() == self.digests[index]


def build_manifest(seed: int, video: Video, version: int = 1) -> Manifest:
    """The manifest of ``video`` at ``version``, hashing every :func:`segment_bytes`."""
    digests = []
    sizes = []
    for i in range(video.n_segments):
        data = segment_bytes(seed, video, i, version)
        sizes.append(len(data))
        digests.append(sha256_hex(data))
    return Manifest(video.id, video.kind, version, float(video.segment_s), video.bitrate_kbps,
                    tuple(sizes), tuple(digests))


def standin_manifest(seed: int, video: Video, version: int = 1) -> Manifest:
    """The manifest of ``video`` at ``version`` that its :class:`StandIn` segments match
    (no bytes made or hashed)."""
    n = video.n_segments
    return Manifest(video.id, video.kind, version, float(video.segment_s), video.bitrate_kbps,
                    tuple(video.segment_size(i) for i in range(n)),
                    tuple(standin_digest(seed, video.id, i, version) for i in range(n)))


def iso_datetime(epoch_s: float) -> str:
    """xs:dateTime in UTC for seconds since the epoch, e.g. for ``availability_start``."""
    if not _is_number(epoch_s):
        raise ContentError(f"iso_datetime: {_short(epoch_s)} (must be a finite number)")
    try:
        t = datetime.fromtimestamp(epoch_s, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ContentError(f"iso_datetime: {_short(epoch_s)} (out of range)") from None
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{t.microsecond // 1000:03d}Z"


def _xs_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _timescale(segment_s: float) -> int:
    """Ticks per second that represent ``segment_s`` exactly (ms when it can)."""
    for ts in (1000, 1_000_000):
        if abs(segment_s * ts - round(segment_s * ts)) < 1e-6:
            return ts
    return 1_000_000


def segment_url(base_url: str, video_id: str, index: int, version: int) -> str:
    """Where a viewer fetches a segment: ``{base_url}/seg/{video}/{index}?v={version}``."""
    return f"{base_url.rstrip('/')}/seg/{video_id}/{index}?v={version}"


def render_mpd(manifest: Manifest, base_url: str, availability_start: str | None = None) -> str:
    """An MPEG-DASH MPD for the manifest: static for vod, dynamic for live.

    One Period, one video/mp4 AdaptationSet, one Representation whose SegmentList names
    every segment by :func:`segment_url`.  A live MPD needs ``availability_start``
    (xs:dateTime, see :func:`iso_datetime`): segment i becomes available at that time plus
    (i + 1) * segment_s.
    """
    if not isinstance(manifest, Manifest):
        raise ContentError(f"render_mpd: {type(manifest).__name__} is not a Manifest")
    if not isinstance(base_url, str) or not base_url:
        raise ContentError(f"render_mpd: base_url {_short(base_url)} (must be a non-empty string)")
    if availability_start is not None and (not isinstance(availability_start, str)
                                           or not _DATETIME_RE.match(availability_start)):
        raise ContentError(f"render_mpd: availability_start {_short(availability_start)} "
                           "(must be an xs:dateTime such as 2024-01-01T00:00:00Z)")
    live = manifest.kind == LIVE
    if live and availability_start is None:
        raise ContentError(f"render_mpd: live video {manifest.video_id} needs availability_start")
    ET.register_namespace("", MPD_NS)

    def tag(name: str) -> str:
        return f"{{{MPD_NS}}}{name}"

    mpd = ET.Element(tag("MPD"), {
        "profiles": "urn:mpeg:dash:profile:full:2011",
        "type": "dynamic" if live else "static",
        "minBufferTime": _xs_duration(manifest.segment_s),
        "mediaPresentationDuration": _xs_duration(manifest.duration_s),
    })
    if availability_start is not None:
        mpd.set("availabilityStartTime", availability_start)
    if live:
        mpd.set("publishTime", availability_start)
    period = ET.SubElement(mpd, tag("Period"), {"id": "0", "start": "PT0S"})
    aset = ET.SubElement(period, tag("AdaptationSet"), {
        "mimeType": "video/mp4", "segmentAlignment": "true", "startWithSAP": "1"})
    rep = ET.SubElement(aset, tag("Representation"), {
        "id": f"{manifest.video_id}-v{manifest.version}",
        "bandwidth": str(manifest.bitrate_kbps * 1000)})
    ts = _timescale(manifest.segment_s)
    seglist = ET.SubElement(rep, tag("SegmentList"), {
        "timescale": str(ts), "duration": str(round(manifest.segment_s * ts)),
        "startNumber": "0"})
    for i in range(manifest.n_segments):
        ET.SubElement(seglist, tag("SegmentURL"), {
            "media": segment_url(base_url, manifest.video_id, i, manifest.version)})
    ET.indent(mpd)
    return ET.tostring(mpd, encoding="unicode", xml_declaration=True) + "\n"
