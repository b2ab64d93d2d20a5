"""What a node's logic asks its driver to do, and the timer event the driver hands back.

Effects are plain frozen values.  A driver executes them in order:

* :class:`Send`: sign ``body`` (and ``payload``) as a message of type ``msg_type`` and
  deliver it to ``to`` (a node name) over ``via`` ("http" to ``path``, or "udp"); when
  ``ref`` is set the driver reports the outcome as a :class:`Response` event carrying that
  ``ref`` (HTTP status, body and the answer's headers), so the logic can continue what
  it started.
* :class:`Reply`: answer the inbound request ``ref`` (status, bytes, headers), counting the
  body in traffic class ``cls`` when one is given.
* :class:`SetTimer`: hand back ``Timer(name, token)`` at run time ``at`` (a timer replaces
  every ``sleep``; setting a timer with a name already pending replaces it).
* :class:`Record`: write one event record (``kind`` and fields) to the node's log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Send:
    to: str
    msg_type: str
    body: dict
    payload: bytes = b""
    via: str = "http"            # "http" or "udp"
    path: str = ""               # HTTP path on the recipient ("/control", "/mesh", ...)
    cls: str = "control"         # traffic class the bytes are counted in
    port: int | None = None      # None: the recipient's usual port
    timeout_s: float = 10.0
    ref: int | None = None       # report the outcome as Response(ref, ...)
    delay_s: float = 0.0         # leave this long after the effect is executed


@dataclass(frozen=True)
class Reply:
    ref: int
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    content_type: str = "text/plain"
    cls: str = ""                # traffic class the body is counted in ("": not counted)


@dataclass(frozen=True)
class SetTimer:
    name: str
    at: float
    token: Any = None


@dataclass(frozen=True)
class Record:
    kind: str
    fields: dict


@dataclass(frozen=True)
class Timer:
    """Event: the timer ``name`` set with ``token`` is due."""

    name: str
    token: Any = None


@dataclass(frozen=True)
class Response:
    """Event: the outcome of a :class:`Send` with ``ref``: ``status`` is the HTTP status, or
    0 when nothing came back (refused, timed out, unreachable); ``headers`` the answer's."""

    ref: int
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)
