"""Signed manifests as the nodes pass them around: ``{"manifest": {...}, "signature": hex}``.

The master signs each manifest's canonical bytes with its CA key; helpers and viewers keep
only manifests whose signature checks, so a segment's digest is always checked against
what the master published.
"""

from __future__ import annotations

from testbed.core import security as sec
from testbed.core.content import Manifest, ManifestError


class ManifestBook:
    """The newest verified manifest of each video."""

    def __init__(self, verifier: sec.Verifier):
        self.verifier = verifier
        self.by_video: dict[str, Manifest] = {}
        self.signed: dict[str, dict] = {}
        self.versions: dict[tuple[str, int], Manifest] = {}

    def add(self, signed: object) -> Manifest:
        """Verify and keep; raises ManifestError or AuthError.  Older versions are kept
        for digest checks of what is still in flight but never replace a newer one."""
        if not isinstance(signed, dict) or set(signed) != {"manifest", "signature"}:
            raise ManifestError("signed manifest: expected keys manifest and signature")
        manifest = Manifest.from_dict(signed["manifest"])
        try:
            sig = bytes.fromhex(signed["signature"])
        except (TypeError, ValueError):
            raise sec.AuthError("bad_signature", "manifest signature is not hex") from None
        self.verifier.verify_ca(manifest.canonical_bytes(), sig)
        self.versions[(manifest.video_id, manifest.version)] = manifest
        current = self.by_video.get(manifest.video_id)
        if current is None or manifest.version >= current.version:
            self.by_video[manifest.video_id] = manifest
            self.signed[manifest.video_id] = signed
        return manifest

    def get(self, video: str, version: int | None = None) -> Manifest | None:
        if version is None:
            return self.by_video.get(video)
        return self.versions.get((video, version))

    def version(self, video: str) -> int:
        m = self.by_video.get(video)
        return m.version if m else 0


def sign_manifest(authority: sec.Authority, manifest: Manifest) -> dict:
    """The signed form of ``manifest`` (the master's side)."""
    return {"manifest": manifest.to_dict(),
            "signature": authority.sign(manifest.canonical_bytes()).hex()}
