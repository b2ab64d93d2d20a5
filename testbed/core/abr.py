"""Adaptive bitrate, sans I/O: which rendition a player asks for next, in the manner of
dash.js's default (``DYNAMIC``) strategy.

* :class:`ThroughputEstimate` keeps two exponentially weighted averages of the download
  throughput, a fast one and a slow one (half-lives counted in seconds of download, so a
  burst of small segments does not swamp the estimate), and answers the lower: quick to
  fall, slow to rise.
* :func:`throughput_choice`: the highest rendition at or below a safety share of that
  estimate.  It decides while the buffer is short, when a wrong guess stalls.
* :func:`bola_choice`: BOLA (Spiteri, Urgaonkar, Sitaraman, "BOLA: Near-Optimal Bitrate
  Adaptation for Online Videos", INFOCOM 2016), the buffer-based rule: rendition ``m``
  maximises ``(V * (u_m + gamma) - Q) / S_m`` with ``u_m`` the log-utility of its bitrate,
  ``S_m`` its segment size and ``Q`` the buffer in seconds; ``V`` and ``gamma`` are set
  from the buffer the rule aims to keep, so an empty buffer picks the lowest rendition and
  a full one the highest.  It decides once the buffer is long, where it holds the quality
  steady through throughput dips the buffer can absorb.
* :class:`AbrController` switches between them with hysteresis (BOLA from
  :data:`BOLA_ON_S` of buffer, throughput again below :data:`BOLA_OFF_S`), as dash.js's
  ``DYNAMIC`` strategy does, and never climbs more than one step at a time.

Pure: bitrates (kbit/s, rising), samples and buffer levels in; an index into the ladder out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

FAST_HALF_LIFE_S = 3.0   # seconds of download
SLOW_HALF_LIFE_S = 8.0
SAFETY = 0.9             # the share of the estimate a rendition may use
BOLA_MIN_BUFFER_S = 10.0  # BOLA picks the lowest rendition at (or below) this buffer...
BOLA_PER_LEVEL_S = 2.0    # ...and needs this much more buffer per rendition to reach the top
BOLA_ON_S = 10.0          # from this buffer on, the buffer rule decides
BOLA_OFF_S = 5.0          # below this, the throughput rule again


class AbrError(ValueError):
    """A ladder or a sample the rules cannot use."""


def check_ladder(bitrates_kbps: Sequence[float]) -> list[float]:
    rates = [float(b) for b in bitrates_kbps]
    if not rates or any(not math.isfinite(b) or b <= 0 for b in rates):
        raise AbrError(f"bitrates {list(bitrates_kbps)!r}: need one or more, each > 0")
    if rates != sorted(set(rates)):
        raise AbrError(f"bitrates {list(bitrates_kbps)!r}: must rise, each once")
    return rates


@dataclass
class ThroughputEstimate:
    """Fast and slow EWMAs of download throughput (kbit/s), weighted by download time."""

    fast_half_life_s: float = FAST_HALF_LIFE_S
    slow_half_life_s: float = SLOW_HALF_LIFE_S
    _fast: float = 0.0
    _slow: float = 0.0
    _weight_fast: float = 0.0   # how much of each average is real (bias correction)
    _weight_slow: float = 0.0
    samples: int = 0

    def add(self, nbytes: int, seconds: float) -> None:
        """One download: ``nbytes`` in ``seconds``."""
        if nbytes <= 0 or not seconds > 0 or not math.isfinite(seconds):
            raise AbrError(f"throughput sample {nbytes} B in {seconds!r} s: need both > 0")
        kbps = nbytes * 8 / seconds / 1000
        a_fast = 0.5 ** (seconds / self.fast_half_life_s)
        a_slow = 0.5 ** (seconds / self.slow_half_life_s)
        self._fast = a_fast * self._fast + (1 - a_fast) * kbps
        self._slow = a_slow * self._slow + (1 - a_slow) * kbps
        self._weight_fast = a_fast * self._weight_fast + (1 - a_fast)
        self._weight_slow = a_slow * self._weight_slow + (1 - a_slow)
        self.samples += 1

    @property
    def kbps(self) -> float | None:
        """The lower of the two averages; None before the first sample."""
        if not self.samples:
            return None
        return min(self._fast / self._weight_fast, self._slow / self._weight_slow)


def throughput_choice(bitrates_kbps: Sequence[float], estimate_kbps: float | None,
                      safety: float = SAFETY) -> int:
    """The highest rendition whose bitrate fits ``safety`` x the estimate (the lowest
    without an estimate, or when none fits)."""
    return _by_rate(check_ladder(bitrates_kbps), estimate_kbps, safety)


def _by_rate(rates: list[float], estimate_kbps: float | None, safety: float) -> int:
    if estimate_kbps is None:
        return 0
    fits = [i for i, b in enumerate(rates) if b <= safety * estimate_kbps]
    return fits[-1] if fits else 0


def bola_parameters(bitrates_kbps: Sequence[float], target_buffer_s: float
                    ) -> tuple[list[float], float, float]:
    """(utilities, V, gamma) for the ladder: log utilities, 1 at the lowest rendition;
    ``gamma`` and ``V`` such that the lowest rendition is chosen with
    :data:`BOLA_MIN_BUFFER_S` of buffer or less and the highest from ``target_buffer_s``
    on (lengthened to leave :data:`BOLA_PER_LEVEL_S` per rendition)."""
    rates = check_ladder(bitrates_kbps)
    utilities = [math.log(b / rates[0]) + 1.0 for b in rates]
    buffer_s = max(target_buffer_s, BOLA_MIN_BUFFER_S + BOLA_PER_LEVEL_S * len(rates))
    gamma = (utilities[-1] - 1.0) / (buffer_s / BOLA_MIN_BUFFER_S - 1.0)
    v = BOLA_MIN_BUFFER_S / gamma if gamma > 0 else 0.0
    return utilities, v, gamma


def bola_choice(bitrates_kbps: Sequence[float], buffer_s: float, target_buffer_s: float
                ) -> int:
    """BOLA's rendition for ``buffer_s`` seconds of buffer (ties to the higher)."""
    rates = check_ladder(bitrates_kbps)
    return _bola(rates, *bola_parameters(rates, target_buffer_s), buffer_s)


def _bola(rates: list[float], utilities: list[float], v: float, gamma: float,
          buffer_s: float) -> int:
    best, score = 0, -math.inf
    for i, (u, b) in enumerate(zip(utilities, rates)):
        s = (v * (u + gamma) - buffer_s) / b
        if s >= score:
            best, score = i, s
    return best


@dataclass
class AbrController:
    """One session's choices: :meth:`downloaded` after each segment, :meth:`choose` before
    each request."""

    bitrates_kbps: Sequence[float]
    target_buffer_s: float = 12.0
    estimate: ThroughputEstimate = field(default_factory=ThroughputEstimate)
    bola: bool = False            # whether the buffer rule decides now
    last: int | None = None       # the rendition of the last request
    switches: int = 0

    def __post_init__(self) -> None:
        self.bitrates_kbps = check_ladder(self.bitrates_kbps)
        # the ladder's BOLA parameters, once (choose runs before every request)
        self._bola_params = bola_parameters(self.bitrates_kbps, self.target_buffer_s)

    def downloaded(self, nbytes: int, seconds: float) -> None:
        self.estimate.add(nbytes, seconds)

    def choose(self, buffer_s: float) -> int:
        """The rendition of the next request, for ``buffer_s`` seconds of buffer."""
        if self.bola and buffer_s < BOLA_OFF_S:
            self.bola = False
        elif not self.bola and buffer_s >= BOLA_ON_S:
            self.bola = True
        by_rate = _by_rate(self.bitrates_kbps, self.estimate.kbps, SAFETY)
        if self.bola:
            # the buffer rule, never below what the throughput carries: a long buffer
            # spends itself on quality through a dip, it does not lower it
            pick = max(_bola(self.bitrates_kbps, *self._bola_params, buffer_s), by_rate)
        else:
            pick = by_rate
        if self.last is not None and pick > self.last + 1:
            pick = self.last + 1   # climb one step at a time; fall at once
        if self.last is not None and pick != self.last:
            self.switches += 1
        self.last = pick
        return pick
