"""Who may speak: the testbed's certificate authority, node identities and their checks.

The master holds an :class:`Authority` (an Ed25519 key derived from a secret) and issues
every node an :class:`Identity`: a private key plus a :class:`Certificate` binding the
node's name, role and public key until ``not_after``.  Receivers hold a :class:`Verifier`
with only the CA's public key, so any node can check any other without a directory, and
a :class:`ReplayGuard` that refuses a message seen before or sent too long ago.

Keys are derived from secrets with SHA-256 (no randomness here), so a run is reproducible
from its seed and the core stays pure: time always comes in as ``now`` (seconds).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: Every reason an :class:`AuthError` can carry (they are counter keys in the node logs).
REASONS = ("no_credentials", "bad_certificate", "expired", "bad_signature", "replay",
           "stale_timestamp", "unknown_peer", "wrong_role", "wrong_recipient")
#: The roles the testbed issues; a certificate's role is free text checked by receivers.
ROLES = ("master", "helper", "viewer")
#: ``not_after`` of a certificate that never expires in practice (9999-12-31, finite so
#: it survives JSON).
FOREVER = 253402300799.0
KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_NAME = 256

_CERT_DOMAIN = b"meshcast-cert-v1\n"
_CA_DOMAIN = b"meshcast-ca-v1\n"
_NODE_DOMAIN = b"meshcast-node-v1\n"
_CERT_KEYS = frozenset(("node_id", "role", "public_key", "not_after", "signature"))
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")


class AuthError(ValueError):
    """A credential or message that must not be trusted; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, message: str = ""):
        if reason not in REASONS:
            raise ValueError(f"AuthError reason {reason!r} (must be one of {', '.join(REASONS)})")
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


# --------------------------------------------------------------------------- keys


def derive_seed(secret: bytes, domain: bytes = _NODE_DOMAIN) -> bytes:
    """The 32-byte Ed25519 private seed for ``secret`` (SHA-256, domain separated so a CA
    secret reused as a node secret gives a different key)."""
    if not isinstance(secret, (bytes, bytearray)) or not secret:
        raise ValueError("key secret: must be non-empty bytes")
    return hashlib.sha256(domain + bytes(secret)).digest()


def _private_key(seed: bytes) -> Ed25519PrivateKey:
    if not isinstance(seed, bytes) or len(seed) != KEY_BYTES:
        raise ValueError(f"private seed: must be {KEY_BYTES} bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _name_ok(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certificate:
    """The CA's statement "``node_id`` with ``role`` owns ``public_key`` until ``not_after``"."""

    node_id: str
    role: str
    public_key: bytes
    not_after: float
    signature: bytes

    def __post_init__(self) -> None:
        if not _name_ok(self.node_id):
            raise AuthError("bad_certificate", f"node_id {self.node_id!r:.80} "
                            f"(must be 1..{MAX_NAME} characters)")
        if not _name_ok(self.role):
            raise AuthError("bad_certificate", f"role {self.role!r:.80} "
                            f"(must be 1..{MAX_NAME} characters)")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != KEY_BYTES:
            raise AuthError("bad_certificate", f"public_key of {self.node_id} "
                            f"(must be {KEY_BYTES} bytes)")
        t = self.not_after
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise AuthError("bad_certificate", f"not_after {t!r:.40} of {self.node_id} "
                            "(must be a finite number)")
        if not isinstance(self.signature, bytes) or len(self.signature) not in (
                0, SIGNATURE_BYTES):
            raise AuthError("bad_certificate", f"signature of {self.node_id} "
                            f"(must be {SIGNATURE_BYTES} bytes)")
        if type(t) is not float:
            object.__setattr__(self, "not_after", float(t))  # one spelling in signed_bytes

    def signed_bytes(self) -> bytes:
        """What the CA signs: every field but the signature, canonical JSON."""
        body = {"node_id": self.node_id, "role": self.role,
                "public_key": self.public_key.hex(), "not_after": self.not_after}
        return _CERT_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"),
                                         ensure_ascii=False).encode()

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "role": self.role,
                "public_key": self.public_key.hex(), "not_after": self.not_after,
                "signature": self.signature.hex()}

    @classmethod
    def from_dict(cls, d: object) -> Certificate:
        """The certificate in ``d``; AuthError("bad_certificate") on anything else (this
        reads untrusted input: exact keys, lowercase hex, finite times)."""
        if not isinstance(d, dict):
            raise AuthError("bad_certificate", f"certificate: expected an object, "
                            f"got {type(d).__name__}")
        if d.keys() != _CERT_KEYS:
            keys = sorted(str(k)[:40] for k in d)[:8]
            raise AuthError("bad_certificate", f"certificate keys {keys} (expected "
                            f"{', '.join(sorted(_CERT_KEYS))})")
        pub, sig = d["public_key"], d["signature"]
        if not isinstance(pub, str) or not _HEX64.fullmatch(pub):
            raise AuthError("bad_certificate", "certificate public_key (must be 64 hex digits)")
        if not isinstance(sig, str) or not _HEX128.fullmatch(sig):
            raise AuthError("bad_certificate", "certificate signature (must be 128 hex digits)")
        return cls(node_id=d["node_id"], role=d["role"], public_key=bytes.fromhex(pub),
                   not_after=d["not_after"], signature=bytes.fromhex(sig))


# --------------------------------------------------------------------------- identities


class Identity:
    """A node's private key and the certificate for its public key."""

    def __init__(self, seed: bytes, cert: Certificate):
        self._seed = seed
        self._key = _private_key(seed)
        if _raw_public(self._key) != cert.public_key:
            raise AuthError("bad_certificate",
                            f"certificate of {cert.node_id} is for another key")
        self.cert = cert

    @property
    def node_id(self) -> str:
        return self.cert.node_id

    @property
    def role(self) -> str:
        return self.cert.role

    @property
    def public_key(self) -> bytes:
        return self.cert.public_key

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(bytes(data))

    def to_json(self) -> str:
        """The credential file a node loads at start (contains the private key)."""
        return json.dumps({"cert": self.cert.to_dict(), "key": self._seed.hex()},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Identity:
        """Read :meth:`to_json`'s output; AuthError on a damaged file."""
        try:
            d = json.loads(text)
        except (ValueError, TypeError, RecursionError):
            raise AuthError("no_credentials", "identity: not JSON") from None
        if not isinstance(d, dict) or d.keys() != {"cert", "key"}:
            raise AuthError("no_credentials", "identity: expected keys cert and key")
        key = d["key"]
        if not isinstance(key, str) or not _HEX64.fullmatch(key):
            raise AuthError("no_credentials", "identity key (must be 64 hex digits)")
        return cls(bytes.fromhex(key), Certificate.from_dict(d["cert"]))

    def __repr__(self) -> str:  # never the key
        return f"Identity({self.node_id!r}, role={self.role!r})"


class Authority:
    """The master's certificate authority: issues identities and signs manifests."""

    def __init__(self, seed: bytes):
        self._seed = seed
        self._key = _private_key(seed)
        self.public_key: bytes = _raw_public(self._key)

    @classmethod
    def from_secret(cls, secret: bytes) -> Authority:
        """The same authority every time for the same secret."""
        return cls(derive_seed(secret, _CA_DOMAIN))

    def sign(self, data: bytes) -> bytes:
        """The CA's own signature of ``data`` (certificates, manifests)."""
        return self._key.sign(bytes(data))

    def issue(self, node_id: str, role: str, not_after: float,
              key_secret: bytes | None = None) -> Identity:
        """A fresh identity for ``node_id``.  Its key comes from ``key_secret``, or, when
        None, from the CA secret and the node's name (deterministic and private)."""
        if not _name_ok(node_id):
            raise ValueError(f"node_id {node_id!r:.80} (must be 1..{MAX_NAME} characters)")
        if key_secret is None:
            seed = hashlib.sha256(_NODE_DOMAIN + self._seed + node_id.encode()).digest()
        else:
            seed = derive_seed(key_secret)
        unsigned = Certificate(node_id=node_id, role=role,
                               public_key=_raw_public(_private_key(seed)),
                               not_after=not_after, signature=b"")
        cert = replace(unsigned, signature=self.sign(unsigned.signed_bytes()))
        return Identity(seed, cert)

    def identity(self, node_id: str = "master", not_after: float = FOREVER) -> Identity:
        """The master's own identity (role "master")."""
        return self.issue(node_id, "master", not_after)

    def __repr__(self) -> str:  # never the key
        return f"Authority(public_key={self.public_key.hex()[:16]}...)"


def sign_ca(authority: Authority, data: bytes) -> bytes:
    """``authority.sign(data)``, for callers that prefer a function."""
    return authority.sign(data)


# --------------------------------------------------------------------------- verification


class Verifier:
    """Checks certificates against the CA key and signatures against certificates.

    A certificate's CA signature is checked once and the parsed public key kept in a
    bounded LRU cache (only certificates that verified enter it, so junk cannot flush
    it); expiry and revocation are checked on every call because they depend on ``now``.
    """

    def __init__(self, ca_public_key: bytes, revoked: Iterable[str] = frozenset(),
                 cache_size: int = 4096):
        if not isinstance(ca_public_key, bytes) or len(ca_public_key) != KEY_BYTES:
            raise ValueError(f"CA public key: must be {KEY_BYTES} bytes")
        if cache_size < 1:
            raise ValueError(f"cache_size {cache_size!r} (must be >= 1)")
        self.ca_public_key = ca_public_key
        self._ca = Ed25519PublicKey.from_public_bytes(ca_public_key)
        self.revoked: set[str] = set(revoked)
        self.cache_size = cache_size
        self._cache: OrderedDict[Certificate, Ed25519PublicKey] = OrderedDict()
        self._directory: dict[str, Certificate] = {}

    def learn(self, cert: Certificate, now: float) -> None:
        """Keep ``cert`` (checked against the CA now) so that its node's messages may name
        it instead of carrying it: the directory of peers the master published."""
        self.check_cert(cert, now)
        self._directory[cert.node_id] = cert

    def known(self, node_id: str) -> Optional[Certificate]:
        """The certificate learned for ``node_id``, if any."""
        return self._directory.get(node_id)

    def revoke(self, node_id: str) -> None:
        """Refuse ``node_id``'s certificates from now on."""
        self.revoked.add(node_id)

    def _key_for(self, cert: Certificate) -> Ed25519PublicKey:
        if not isinstance(cert, Certificate):
            raise AuthError("bad_certificate", f"expected a Certificate, got "
                            f"{type(cert).__name__}")
        key = self._cache.get(cert)
        if key is not None:
            self._cache.move_to_end(cert)
            return key
        try:
            self._ca.verify(cert.signature, cert.signed_bytes())
        except InvalidSignature:
            raise AuthError("bad_certificate", f"certificate of {cert.node_id!r:.80} "
                            "is not signed by this CA") from None
        key = Ed25519PublicKey.from_public_bytes(cert.public_key)
        self._cache[cert] = key
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return key

    def check_cert(self, cert: Certificate, now: float) -> None:
        """AuthError unless ``cert`` is signed by the CA, unexpired at ``now`` and not
        revoked (reason "bad_certificate" for revoked)."""
        self._checked_key(cert, now)

    def _checked_key(self, cert: Certificate, now: float) -> Ed25519PublicKey:
        key = self._key_for(cert)
        if not now <= cert.not_after:
            raise AuthError("expired", f"certificate of {cert.node_id!r:.80} expired at "
                            f"{cert.not_after:.3f} (now {now:.3f})")
        if cert.node_id in self.revoked:
            raise AuthError("bad_certificate", f"certificate of {cert.node_id!r:.80} "
                            "is revoked")
        return key

    def verify(self, cert: Certificate, data: bytes, signature: bytes, now: float) -> None:
        """AuthError unless ``signature`` over ``data`` is by ``cert``'s valid key."""
        key = self._checked_key(cert, now)
        try:
            key.verify(bytes(signature), bytes(data))
        except InvalidSignature:
            raise AuthError("bad_signature", f"signature of {cert.node_id!r:.80} "
                            "does not verify") from None

    def verify_ca(self, data: bytes, signature: bytes) -> None:
        """AuthError("bad_signature") unless the CA itself signed ``data`` (manifests)."""
        try:
            self._ca.verify(bytes(signature), bytes(data))
        except InvalidSignature:
            raise AuthError("bad_signature", "not signed by the CA") from None


# --------------------------------------------------------------------------- replay


class _Sender:
    """Replay state of one sender: the highest seq, a bitmap of the ``width`` below it and
    the timestamp floor in force when the state was (re)created."""

    __slots__ = ("hi", "bits", "max_ts", "floor")

    def __init__(self, seq: int, ts: float, floor: float):
        self.hi = seq
        self.bits = 1        # bit i set: seq hi - i was seen
        self.max_ts = ts
        self.floor = floor   # messages at or before it may predate an eviction


class ReplayGuard:
    """Refuses a message whose (sender, seq) was seen before, whose seq fell behind the
    sliding window of ``width`` seqs, or whose timestamp is more than ``window_s`` away
    from ``now``.  Out-of-order arrival within the window is fine.

    Memory is bounded: at most ``max_senders`` senders, ``width`` bits each.  When a
    sender is evicted its newest timestamp becomes a floor: a sender whose state is created
    afterwards must send newer timestamps than the floor, so eviction never lets a replay
    through (a replay of anything older than ``window_s`` is
    refused as stale anyway).  Call :meth:`check` only for authenticated messages.
    """

    def __init__(self, window_s: float = 30.0, width: int = 4096, max_senders: int = 100_000):
        if not (isinstance(window_s, (int, float)) and math.isfinite(window_s)
                and window_s > 0):
            raise ValueError(f"window_s {window_s!r} (must be a positive number)")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width {width!r} (must be an integer >= 1)")
        if not isinstance(max_senders, int) or max_senders < 1:
            raise ValueError(f"max_senders {max_senders!r} (must be an integer >= 1)")
        self.window_s = float(window_s)
        self.width = width
        self.max_senders = max_senders
        self._mask = (1 << width) - 1
        self._senders: OrderedDict[str, _Sender] = OrderedDict()
        self._floor = -math.inf   # newest timestamp of any evicted sender
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._senders)

    def check(self, sender: str, seq: int, ts: float, now: float) -> None:
        """Accept and remember (sender, seq), or raise AuthError ("stale_timestamp" or
        "replay")."""
        if not abs(now - ts) <= self.window_s:   # also refuses NaN
            raise AuthError("stale_timestamp", f"timestamp {ts!r:.20} of {sender!r:.80} is "
                            f"more than {self.window_s:g} s from now ({now:.3f})")
        state = self._senders.get(sender)
        floor = self._floor if state is None else state.floor
        if not ts > floor:
            raise AuthError("replay", f"{sender!r:.80} seq {seq}: timestamp not newer than "
                            "the state evicted to bound memory")
        if state is None:
            self._add(sender, _Sender(seq, ts, floor))
            return
        if seq > state.hi:
            shift = seq - state.hi
            state.bits = ((state.bits << shift) | 1) & self._mask if shift < self.width else 1
            state.hi = seq
        else:
            back = state.hi - seq
            if back >= self.width:
                raise AuthError("replay", f"{sender!r:.80} seq {seq} is behind the window "
                                f"(newest {state.hi}, width {self.width})")
            bit = 1 << back
            if state.bits & bit:
                raise AuthError("replay", f"{sender!r:.80} seq {seq} seen before")
            state.bits |= bit
        if ts > state.max_ts:
            state.max_ts = ts
        self._senders.move_to_end(sender)

    def _add(self, sender: str, state: _Sender) -> None:
        while len(self._senders) >= self.max_senders:
            _, old = self._senders.popitem(last=False)
            self._floor = max(self._floor, old.max_ts)
            self.evicted += 1
        self._senders[sender] = state

    def expire(self, now: float) -> int:
        """Forget senders whose every message would now be refused as stale; returns how
        many were forgotten (optional: memory is bounded without it)."""
        horizon = now - self.window_s
        stale = [s for s, st in self._senders.items() if st.max_ts < horizon]
        for s in stale:
            self._floor = max(self._floor, self._senders.pop(s).max_ts)
        return len(stale)
