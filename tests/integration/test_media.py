"""Real media made by ffmpeg: every rendition's segments are valid H.264 at the ladder's
sizes and near its bitrates, the cache makes each video once, and the digests match."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from testbed import media
from testbed.core.media import LADDER, MediaError, MediaSpec

SPEC = MediaSpec("vod-0007", 3, 8.0, 2.0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHCAST_MEDIA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_segment_of_every_rendition_is_h264_at_its_size_and_rate(cache):
    made = media.ensure(SPEC)
    assert made.dir.parent == cache and made.dir.name == SPEC.key()
    video = made.video_tracks
    assert [(t.width, t.height) for t in video] == [(r.width, r.height) for r in LADDER]
    assert [t.bandwidth for t in video] == [r.kbps * 1000 for r in LADDER]
    assert {t.content for t in made.tracks} == {"video", "audio"}
    for t, r in zip(video, LADDER):
        sizes = []
        for i in range(SPEC.n_segments):
            seg = made.segment(t.rep, i)
            got = media.probe(made.init(t.rep), seg)
            assert (got["codec"], got["type"], got["width"], got["height"]) == (
                "h264", "video", r.width, r.height), (seg.name, got)
            assert got["frames"] == SPEC.gop, (seg.name, got)   # 2 s at 25 fps, each
            sizes.append(got["bytes"])
        kbps = sum(sizes) * 8 / SPEC.duration_s / 1000
        # a rate-capped encoder lands near its target; the test pattern is easy to code
        assert 0.6 * r.kbps <= kbps <= 1.15 * r.kbps, (r, kbps)
        assert not made.segment(t.rep, SPEC.n_segments).exists()
    # what was made is recorded with the digest of every file the MPD names
    info = media.made_info(made)
    assert info["key"] == SPEC.key() and info["wall_s"] > 0
    assert info["digests"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                               for p in made.files()}
    names = set(info["digests"])
    assert sum(n.startswith(tuple(f"seg-{t.rep}-" for t in video)) for n in names) == \
        len(video) * SPEC.n_segments


def test_the_cache_makes_a_video_once_even_when_asked_twice_at_once(cache):
    spec = MediaSpec("vod-0008", 1, 4.0, 2.0, renditions=LADDER[:1])
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(media.ensure(spec)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2 and got[0].dir == got[1].dir
    first = json.loads((got[0].dir / media.DONE_NAME).read_text())
    again = media.ensure(spec)
    assert media.made_info(again) == first
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [spec.key()]
    # another version is another encoding, with other bytes
    other = media.ensure(MediaSpec("vod-0008", 2, 4.0, 2.0, renditions=LADDER[:1]))
    assert other.dir != again.dir
    assert other.digests()[other.segment("0", 0).name] != again.digests()[
        again.segment("0", 0).name]


def test_a_failed_encoding_leaves_nothing_in_the_cache(cache, monkeypatch):
    def broken(spec, mpd, font=None, threads=0):
        return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                "nosuchsource", mpd]

    monkeypatch.setattr(media, "encode_args", broken)
    with pytest.raises(MediaError) as err:
        media.ensure(SPEC)
    assert "ffmpeg failed for vod-0007 v3" in str(err.value)
    assert [p for p in cache.iterdir() if not p.name.endswith(".lock")] == []
