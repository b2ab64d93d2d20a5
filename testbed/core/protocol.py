"""Wire formats: the signed envelope of every mesh/control message and the live datagram.

Envelope (binary, so segment payloads need no base64)::

    b"MCS1" | u32 header_len | header | u32 payload_len | payload | 64-byte Ed25519 signature

``header`` is compact UTF-8 JSON ``{"type", "from", "seq", "ts", "cert", "body"}`` and the
signature covers every byte before it.  :func:`decode` checks, cheapest first: framing and
size, the per-type body schema, the sender's certificate, the signature, the sender's role
and finally replay (the replay guard only learns from messages whose signature verified).

Live multicast datagrams (unsigned: a reassembled segment is checked against the digest in
the signed manifest)::

    b"MCL1" | u8 video_id_len | video_id | u32 index | u32 version | u16 chunk
            | u16 n_chunks | u32 total_size | data
"""

from __future__ import annotations

import json
import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from testbed.core.security import (
    SIGNATURE_BYTES,
    AuthError,
    Certificate,
    Identity,
    ReplayGuard,
    Verifier,
)

# the TCP port helpers take prefetch pushes on; shaped links carry it in a lower-priority class
PUSH_PORT = 8081
MAGIC = b"MCS1"
LIVE_MAGIC = b"MCL1"
MAX_MESSAGE = 8 * 1024 * 1024
MAX_HEADER = 64 * 1024
MAX_STR = 256
MAX_ITEMS = 10_000
MAX_DEPTH = 16
#: The most nodes a push route may name (source and destination included): the master never
#: plans a longer one, and a helper refuses one (one push must not become thousands of
#: transfers).
MAX_ROUTE = 32
_PLAN_DOMAIN = b"meshcast-push-plan-v1\n"
_INVALIDATION_DOMAIN = b"meshcast-invalidation-v1\n"
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

_U32 = struct.Struct(">I")
_LIVE_TAIL = struct.Struct(">IIHHI")   # index, version, chunk, n_chunks, total_size
_MIN_FRAME = len(MAGIC) + 4 + 4 + SIGNATURE_BYTES

#: Body schema of every message type: field -> type.  ``float`` also accepts an int;
#: ``int`` never accepts a bool.  Required fields must be present; other fields are
#: allowed (newer senders) but must respect the same limits as everything else.
SCHEMAS: dict[str, dict[str, type]] = {
    "probe": {"nonce": int, "sent": float},
    "probe_reply": {"nonce": int, "sent": float},
    "peer_probe": {"nonce": int, "sent": float},
    "routing": {"version": int, "tier": int, "parent": str, "parent_addr": str,
                "children": list, "ancestors": list, "tiers": list, "live_group": str},
    "mesh_data": {"video": str, "index": int, "version": int, "route": list, "hop": int,
                  "push_id": str, "keep": list, "plan": str},
    # the master to the helper holding the copy nearest a push's destination: send it
    "push_order": {"video": str, "index": int, "version": int, "route": list, "hop": int,
                   "push_id": str, "keep": list, "plan": str},
    "invalidate": {"video": str, "version": int, "issued": float, "inv_id": str,
                   "route": list, "auth": str},
    "neighbours": {"neighbours": dict},
    "telemetry": {"events": list},
    "predict": {"helpers": list, "top": int},
    "fetch": {"video": str, "index": int, "min_version": int},
    "manifest": {"manifest": dict, "signature": str},
}
#: Integer body fields that must not be negative, whatever the message type.
NON_NEGATIVE = frozenset(("index", "version", "hop", "min_version", "tier"))
_HEADER_KEYS = frozenset(("type", "from", "to", "seq", "ts", "cert", "body"))


class ProtocolError(ValueError):
    """Bytes that are not a well-formed message: ``reason`` is "malformed", "too_large"
    or "unknown_type"."""

    REASONS = ("malformed", "too_large", "unknown_type")

    def __init__(self, reason: str, message: str = ""):
        if reason not in self.REASONS:
            raise ValueError(f"ProtocolError reason {reason!r} "
                             f"(must be one of {', '.join(self.REASONS)})")
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


def _malformed(message: str) -> ProtocolError:
    return ProtocolError("malformed", message)


# --------------------------------------------------------------------------- values


def _check_value(value: Any, where: str, depth: int = 0) -> None:
    """Limits on any JSON value: strings <= 256 chars, lists and objects <= 10,000 items,
    ints within int64, floats finite, nesting <= 16."""
    t = type(value)
    if t is str:
        if len(value) > MAX_STR:
            raise _malformed(f"{where}: string of {len(value)} characters (max {MAX_STR})")
    elif t is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise _malformed(f"{where}: integer out of int64 range")
    elif t is float:
        if not math.isfinite(value):
            raise _malformed(f"{where}: {value!r} (floats must be finite)")
    elif t is bool or value is None:
        pass
    elif t is list or t is tuple:
        if len(value) > MAX_ITEMS:
            raise _malformed(f"{where}: list of {len(value)} items (max {MAX_ITEMS})")
        if depth >= MAX_DEPTH:
            raise _malformed(f"{where}: nested deeper than {MAX_DEPTH}")
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", depth + 1)
    elif t is dict:
        if len(value) > MAX_ITEMS:
            raise _malformed(f"{where}: object of {len(value)} items (max {MAX_ITEMS})")
        if depth >= MAX_DEPTH:
            raise _malformed(f"{where}: nested deeper than {MAX_DEPTH}")
        for k, item in value.items():
            if type(k) is not str or len(k) > MAX_STR:
                raise _malformed(f"{where}: key {str(k)[:40]!r} (keys are strings "
                                 f"<= {MAX_STR} characters)")
            _check_value(item, f"{where}.{k}", depth + 1)
    else:
        raise _malformed(f"{where}: {t.__name__} is not a JSON value")


def _type_ok(value: Any, want: type) -> bool:
    t = type(value)
    if want is float:
        return t is float or t is int
    if want is list:
        return t is list or t is tuple
    return t is want


def check_body(msg_type: object, body: object) -> None:
    """ProtocolError unless ``body`` fits the schema of ``msg_type`` and the limits."""
    schema = SCHEMAS.get(msg_type) if type(msg_type) is str else None
    if schema is None:
        raise ProtocolError("unknown_type", f"message type {str(msg_type)[:40]!r}")
    if type(body) is not dict:
        raise _malformed(f"{msg_type} body: expected an object, got {type(body).__name__}")
    for name, want in schema.items():
        if name not in body:
            raise _malformed(f"{msg_type} body: missing field {name!r}")
        value = body[name]
        if not _type_ok(value, want):
            raise _malformed(f"{msg_type} body: field {name!r} is {type(value).__name__}, "
                             f"expected {want.__name__}")
        if name in NON_NEGATIVE and value < 0:
            raise _malformed(f"{msg_type} body: field {name!r} is negative")
    _check_value(body, f"{msg_type} body")


# --------------------------------------------------------------------------- push plans


def plan_bytes(body: Mapping[str, Any]) -> bytes:
    """What the master signs for a push it planned (the ``plan`` field of ``mesh_data`` and
    ``push_order``, in hex): its id, segment, route and the helpers that keep a copy.  Not
    the hop (it advances) nor the version (a holder may send a newer copy than ordered;
    the version is checked against the signed manifests)."""
    return _PLAN_DOMAIN + _dumps([str(body["push_id"]), str(body["video"]), int(body["index"]),
                                  [str(n) for n in body["route"]],
                                  sorted(str(n) for n in body["keep"])])


def invalidation_bytes(body: Mapping[str, Any]) -> bytes:
    """What the master signs for an invalidation (the ``auth`` field of ``invalidate``, in
    hex): its id, video, version and time, not the route it has travelled (each helper
    adds itself).  Helpers pass the master's signature on, so a helper can forward an
    invalidation but never make one."""
    return _INVALIDATION_DOMAIN + _dumps([str(body["inv_id"]), str(body["video"]),
                                          int(body["version"]), float(body["issued"])])


#: The messages whose decision is the master's alone: the body field holding its signature,
#: what it signs, and the reason a receiver counts when the signature does not verify.
#: Helpers pass these bodies on with the master's signature; their own envelope only says
#: who handed it over.
COUNTERSIGNED: dict[str, tuple[str, Callable[[Mapping[str, Any]], bytes], str]] = {
    "mesh_data": ("plan", plan_bytes, "unplanned"),
    "push_order": ("plan", plan_bytes, "unplanned"),
    "invalidate": ("auth", invalidation_bytes, "unsigned_invalidation"),
}


def countersign(msg_type: str, body: dict, sign: Callable[[bytes], bytes]) -> dict:
    """``body`` with the master's signature (``sign``, the CA key) in its field, when
    ``msg_type`` is one of :data:`COUNTERSIGNED`; other bodies as they are."""
    spec = COUNTERSIGNED.get(msg_type)
    if spec is None:
        return body
    field, what, _ = spec
    return {**body, field: sign(what(body)).hex()}


def countersign_problem(msg_type: str, body: Mapping[str, Any],
                        verify_ca: Callable[[bytes, bytes], None]) -> Optional[str]:
    """The reason to refuse ``body`` when it needs the master's signature and does not
    carry a good one (``verify_ca`` raises on a bad signature); None otherwise."""
    spec = COUNTERSIGNED.get(msg_type)
    if spec is None:
        return None
    field, what, reason = spec
    try:
        verify_ca(what(body), bytes.fromhex(body[field]))
    except (AuthError, ValueError, KeyError, TypeError):
        return reason
    return None


def route_problem(route: Sequence[object]) -> Optional[str]:
    """Why a push route must not be followed (None: it may): too long, or it loops."""
    if len(route) > MAX_ROUTE:
        return f"a route of {len(route)} nodes (at most {MAX_ROUTE})"
    if len(set(map(str, route))) != len(route):
        return "a route that visits a node twice"
    return None


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True)
class Message:
    """A decoded, authenticated message."""

    type: str
    sender: str
    role: str
    seq: int
    ts: float
    body: Mapping[str, Any]
    payload: bytes
    #: the node the sender addressed it to (None: a message that names no recipient)
    to: Optional[str] = None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


class Signer:
    """Encodes one node's messages: signs with its identity, numbers them with
    increasing sequence numbers (the receivers' replay guards rely on them)."""

    def __init__(self, identity: Identity, seq_start: int = 1, carry_cert: bool = True):
        """``carry_cert=False``: messages name the sender's certificate instead of carrying
        it (receivers that learned it from the master's directory; saves ~300 bytes)."""
        if type(seq_start) is not int or not 0 <= seq_start <= INT64_MAX:
            raise ValueError(f"seq_start {seq_start!r} (must be an int64 >= 0)")
        self.identity = identity
        self._cert_json = (_dumps(identity.cert.to_dict()).decode() if carry_cert
                           else "null")
        self._from_json = json.dumps(identity.node_id, ensure_ascii=False)
        self.seq = seq_start   # the next sequence number

    def encode(self, msg_type: str, body: dict, payload: bytes = b"", *, now: float,
               to: Optional[str] = None) -> bytes:
        """The signed envelope, addressed to the node ``to`` (its name, under the
        signature: a copy replayed to another node is refused there); ProtocolError if
        the body breaks its schema or the message is too large (the sender's bug, caught
        before it costs a receiver anything)."""
        if to is not None and (type(to) is not str or not 0 < len(to) <= MAX_STR):
            raise ValueError(f"to {to!r:.80} (must be a node name of 1..{MAX_STR} characters)")
        check_body(msg_type, body)
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise _malformed(f"payload: expected bytes, got {type(payload).__name__}")
        if type(now) not in (int, float) or not math.isfinite(now):
            raise ValueError(f"now {now!r} (must be a finite number of seconds)")
        if self.seq > INT64_MAX:
            raise ValueError("sequence numbers exhausted (int64)")
        try:
            body_json = _dumps(body).decode()
        except ValueError as exc:
            raise _malformed(f"{msg_type} body: {exc}") from None
        # The certificate's JSON is fixed for the signer: splice it in rather than
        # re-serialise it on every message.
        to_json = "" if to is None else f',"to":{json.dumps(to, ensure_ascii=False)}'
        header = (f'{{"type":{json.dumps(msg_type)},"from":{self._from_json}{to_json},'
                  f'"seq":{self.seq},"ts":{float(now)!r},"cert":{self._cert_json},'
                  f'"body":{body_json}}}').encode()
        if len(header) > MAX_HEADER:
            raise ProtocolError("too_large", f"{msg_type} header of {len(header)} bytes "
                                f"(max {MAX_HEADER})")
        size = _MIN_FRAME + len(header) + len(payload)
        if size > MAX_MESSAGE:
            raise ProtocolError("too_large", f"{msg_type} message of {size} bytes "
                                f"(max {MAX_MESSAGE})")
        signed = b"".join((MAGIC, _U32.pack(len(header)), header,
                           _U32.pack(len(payload)), payload))
        self.seq += 1
        return signed + self.identity.sign(signed)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def parse(data: bytes) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """Framing and schema only (no cryptography): ``(header, payload, signed_part,
    signature)``, or ProtocolError.  ``header["cert"]`` is still a plain dict."""
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise _malformed(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
    size = len(data)
    if size > MAX_MESSAGE:
        raise ProtocolError("too_large", f"message of {size} bytes (max {MAX_MESSAGE})")
    if size < _MIN_FRAME or data[:4] != MAGIC:
        raise _malformed("not an MCS1 message (bad magic or too short)")
    (header_len,) = _U32.unpack_from(data, 4)
    if header_len > MAX_HEADER:
        raise ProtocolError("too_large", f"header of {header_len} bytes (max {MAX_HEADER})")
    end = 8 + header_len
    if end + 4 + SIGNATURE_BYTES > size:
        raise _malformed(f"header length {header_len} runs past the end")
    (payload_len,) = _U32.unpack_from(data, end)
    if end + 4 + payload_len + SIGNATURE_BYTES != size:
        raise _malformed(f"payload length {payload_len} does not match the message size")
    try:
        header = json.loads(data[8:end].decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _malformed(f"header is not UTF-8 JSON ({str(exc)[:60]})") from None
    _check_header(header)
    return header, data[end + 4:size - SIGNATURE_BYTES], data[:-SIGNATURE_BYTES], \
        data[-SIGNATURE_BYTES:]


def _check_header(header: Any) -> None:
    if type(header) is not dict:
        raise _malformed("header is not a JSON object")
    if not header.keys() <= _HEADER_KEYS:
        extra = sorted(str(k)[:40] for k in header.keys() - _HEADER_KEYS)[:4]
        raise _malformed(f"header has unknown keys {extra}")
    for key in ("type", "from", "seq", "ts", "body"):
        if key not in header:
            raise _malformed(f"header has no {key!r}")
    sender = header["from"]
    if type(sender) is not str or not 0 < len(sender) <= MAX_STR:
        raise _malformed(f"header 'from' must be a string of 1..{MAX_STR} characters")
    to = header.get("to")
    if to is not None and (type(to) is not str or not 0 < len(to) <= MAX_STR):
        raise _malformed(f"header 'to' must be a string of 1..{MAX_STR} characters")
    seq = header["seq"]
    if type(seq) is not int or not 0 <= seq <= INT64_MAX:
        raise _malformed("header 'seq' must be an int64 >= 0")
    ts = header["ts"]
    if type(ts) not in (int, float) or not math.isfinite(ts):
        raise _malformed("header 'ts' must be a finite number")
    cert = header.get("cert")
    if cert is not None and type(cert) is not dict:
        raise _malformed("header 'cert' must be an object")
    check_body(header["type"], header["body"])


def decode(data: bytes, verifier: Verifier, guard: Optional[ReplayGuard], now: float,
           roles: Optional[Collection[str]] = None,
           recipient: Optional[str] = None) -> Message:
    """The authenticated message in ``data``; ProtocolError for bad bytes, AuthError for
    a bad sender.  ``recipient``: the receiving node's name; a message not addressed to
    it (another node's, or one naming nobody) is refused as ``wrong_recipient``.
    Order: framing/size -> schema -> certificate -> signature -> role -> recipient ->
    replay, so the replay guard only learns from messages whose signature verified and
    that were meant for this node."""
    header, payload, signed, signature = parse(data)
    sender = header["from"]
    if header.get("cert") is None:  # by reference: only for a node the verifier learned
        cert = verifier.known(sender) if isinstance(sender, str) else None
        if cert is None:
            raise AuthError("no_credentials", f"message from {sender!r:.80} has no "
                            "certificate")
    else:
        cert = Certificate.from_dict(header["cert"])
    if cert.node_id != sender:
        raise AuthError("bad_certificate", f"certificate of {cert.node_id!r:.80} on a "
                        f"message from {sender!r:.80}")
    verifier.verify(cert, signed, signature, now)
    if isinstance(roles, str):   # "helper" means ("helper",), not its substrings
        roles = (roles,)
    if roles is not None and cert.role not in roles:
        raise AuthError("wrong_role", f"{header['type']} from {sender!r:.80} with role "
                        f"{cert.role!r:.40} (expected {', '.join(sorted(roles))})")
    to = header.get("to")
    if recipient is not None and to != recipient:
        raise AuthError("wrong_recipient", f"{header['type']} from {sender!r:.80} addressed "
                        f"to {to!r:.80}, received by {recipient!r:.80}")
    seq, ts = header["seq"], float(header["ts"])
    if guard is not None:
        guard.check(sender, seq, ts, now)
    return Message(type=header["type"], sender=sender, role=cert.role, seq=seq, ts=ts,
                   body=header["body"], payload=payload, to=to)


# --------------------------------------------------------------------------- live chunks


@dataclass(frozen=True)
class Chunk:
    """One live multicast datagram: part ``chunk`` of ``n_chunks`` of a segment."""

    video_id: str
    index: int
    version: int
    chunk: int
    n_chunks: int
    total_size: int
    data: bytes

    @property
    def key(self) -> tuple[str, int]:
        return (self.video_id, self.index)

    @property
    def chunk_size(self) -> int:
        """The size of every chunk but the last (derived; the last may be shorter)."""
        if self.chunk < self.n_chunks - 1 or self.n_chunks == 1:
            return len(self.data) if self.n_chunks > 1 else self.total_size
        return (self.total_size - len(self.data)) // (self.n_chunks - 1)

    @property
    def offset(self) -> int:
        return self.chunk * self.chunk_size


def encode_chunks(video_id: str, index: int, version: int, data: bytes,
                  chunk_size: int = 1200) -> list[bytes]:
    """The datagrams carrying one live segment (at least one, even for empty data)."""
    vid = video_id.encode("utf-8") if isinstance(video_id, str) else b""
    if not 0 < len(vid) <= 255:
        raise ValueError(f"video_id {video_id!r:.80} (must be 1..255 UTF-8 bytes)")
    for name, v in (("index", index), ("version", version)):
        if type(v) is not int or not 0 <= v < 1 << 32:
            raise ValueError(f"{name} {v!r} (must be an int in 0..2**32-1)")
    if type(chunk_size) is not int or not 1 <= chunk_size <= 65_000:
        raise ValueError(f"chunk_size {chunk_size!r} (must be 1..65000)")
    total = len(data)
    if total >= 1 << 32:
        raise ValueError(f"segment of {total} bytes (max 2**32-1)")
    n = max(1, -(-total // chunk_size))
    if n > 0xFFFF:
        raise ValueError(f"segment of {total} bytes needs {n} chunks (max 65535): "
                         "use a larger chunk_size")
    prefix = LIVE_MAGIC + bytes((len(vid),)) + vid
    view = memoryview(bytes(data))
    return [prefix + _LIVE_TAIL.pack(index, version, i, n, total)
            + view[i * chunk_size:(i + 1) * chunk_size].tobytes()
            for i in range(n)]


def decode_chunk(dgram: bytes) -> Chunk:
    """The chunk in a live datagram; ProtocolError("malformed") on anything off (every
    check that one datagram allows: lengths, chunk numbering, sizes consistent)."""
    if not isinstance(dgram, (bytes, bytearray, memoryview)):
        raise _malformed(f"live datagram: expected bytes, got {type(dgram).__name__}")
    dgram = bytes(dgram)
    if len(dgram) < 5 or dgram[:4] != LIVE_MAGIC:
        raise _malformed("live datagram: bad magic or too short")
    vlen = dgram[4]
    head = 5 + vlen + _LIVE_TAIL.size
    if vlen == 0 or len(dgram) < head:
        raise _malformed("live datagram: truncated header")
    try:
        video_id = dgram[5:5 + vlen].decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("live datagram: video id is not UTF-8") from None
    index, version, i, n, total = _LIVE_TAIL.unpack_from(dgram, 5 + vlen)
    data = dgram[head:]
    size = len(data)
    if n == 0 or i >= n:
        raise _malformed(f"live datagram: chunk {i} of {n}")
    if n == 1:
        ok = size == total
    elif i < n - 1:   # a full chunk: its size fixes the chunking
        ok = size > 0 and -(-total // size) == n
    else:             # the last chunk: the rest must split evenly into n-1 larger chunks
        rest = total - size
        ok = 0 < size <= rest and rest % (n - 1) == 0 and rest // (n - 1) >= size
    if not ok:
        raise _malformed(f"live datagram: chunk {i} of {n} with {size} bytes does not fit "
                         f"a segment of {total} bytes")
    return Chunk(video_id, index, version, i, n, total, data)


class _Partial:
    __slots__ = ("buf", "got", "count", "n", "total", "chunk_size", "started")

    def __init__(self, c: Chunk, now: float):
        self.buf = bytearray(c.total_size)
        self.got = bytearray(c.n_chunks)
        self.count = 0
        self.n = c.n_chunks
        self.total = c.total_size
        self.chunk_size = c.chunk_size
        self.started = now


_PendingKey = tuple[str, int, int]
Completed = tuple[tuple[str, int], int, bytes]


class Reassembler:
    """Puts live segments back together from chunks arriving in any order, with bounded
    memory: at most ``max_pending`` partial segments and ``max_bytes`` of buffers (the
    oldest partial is dropped to make room for a new one); partials older than
    ``timeout_s`` are dropped by :meth:`expire`."""

    def __init__(self, timeout_s: float = 10.0, max_pending: int = 256,
                 max_bytes: int = 64 * 1024 * 1024, remember: int = 1024):
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s {timeout_s!r} (must be > 0)")
        for name, v in (("max_pending", max_pending), ("max_bytes", max_bytes),
                        ("remember", remember)):
            if type(v) is not int or v < 1:
                raise ValueError(f"{name} {v!r} (must be an int >= 1)")
        self.timeout_s = float(timeout_s)
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.remember = remember
        self._pending: OrderedDict[_PendingKey, _Partial] = OrderedDict()
        self._done: OrderedDict[_PendingKey, None] = OrderedDict()
        self.pending_bytes = 0
        self.stats: dict[str, int] = {"completed": 0, "expired": 0, "duplicates": 0,
                                      "dropped_over_limit": 0, "conflicts": 0}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, chunk: Chunk, now: float) -> Optional[Completed]:
        """Store ``chunk``; the whole segment ``((video, index), version, data)`` when this
        chunk completes it, else None."""
        key = (chunk.video_id, chunk.index, chunk.version)
        if key in self._done:
            self.stats["duplicates"] += 1
            return None
        if chunk.n_chunks == 1:
            return self._complete(key, chunk.data)
        p = self._pending.get(key)
        if p is None:
            if chunk.total_size > self.max_bytes:
                self.stats["dropped_over_limit"] += 1
                return None
            while self._pending and (len(self._pending) >= self.max_pending or
                                     self.pending_bytes + chunk.total_size > self.max_bytes):
                _, old = self._pending.popitem(last=False)
                self.pending_bytes -= old.total
                self.stats["dropped_over_limit"] += 1
            p = self._pending[key] = _Partial(chunk, now)
            self.pending_bytes += p.total
        elif (p.n, p.total, p.chunk_size) != (chunk.n_chunks, chunk.total_size,
                                              chunk.chunk_size):
            self.stats["conflicts"] += 1
            return None
        if p.got[chunk.chunk]:
            self.stats["duplicates"] += 1
            return None
        off = chunk.chunk * p.chunk_size
        p.buf[off:off + len(chunk.data)] = chunk.data
        p.got[chunk.chunk] = 1
        p.count += 1
        if p.count < p.n:
            return None
        del self._pending[key]
        self.pending_bytes -= p.total
        return self._complete(key, bytes(p.buf))

    def _complete(self, key: _PendingKey, data: bytes) -> Completed:
        self.stats["completed"] += 1
        self._done[key] = None
        if len(self._done) > self.remember:
            self._done.popitem(last=False)
        return (key[0], key[1]), key[2], data

    def expire(self, now: float) -> int:
        """Drop partial segments started more than ``timeout_s`` ago; how many."""
        old = [k for k, p in self._pending.items() if now - p.started > self.timeout_s]
        for k in old:
            self.pending_bytes -= self._pending.pop(k).total
        self.stats["expired"] += len(old)
        return len(old)
