"""
Uplink bandwidth, RTT and edge reachability, estimated from what the robot already observes.

Passive samples come for free from co-inference: the robot knows when it sent a frame's tensor
and when the result came back (both on its own clock), and the edge reports how long it worked on
the frame (a duration on the edge's clock). So ::

    transfer_s = (result_arrival_s - send_s) - edge_processing_s

needs no clock synchronization (``BandwidthEstimator.transfer_seconds``). It still contains a
fixed per-message cost (DDS, the trip back of the small result), which dominates small payloads.
Two defences: the RTT of small probe messages, when known, is subtracted as that fixed cost, and
samples under ``min_bytes`` are ignored. When the configuration sends little or nothing (device-
only), ``needs_probe`` asks the caller for an active probe of a known size, sent as a
back-to-back pair (``ProbePair``) so that a shaper's burst does not inflate it.

Bytes are counted as they cross the link (``wire_bytes``: the payload plus each message's RTPS,
UDP/IP and message-field bytes), so the estimate is the link's own rate and the planner, which
predicts a transfer from the same wire bytes, does not count the headers twice.

The estimate is the byte-weighted harmonic mean of the per-sample rates over the last ``window``
samples, which equals total bits / total payload time: a big transfer counts more than a small
one, and a harmonic mean is pulled down by slow samples (conservative for a latency deadline).
It falls fast (a sample far below the estimate, ``drop_ratio``, restarts the window from it) and
rises at the pace of the window.

Everything takes the time ``now_s`` (seconds on one monotonic clock) as an argument and never
reads a clock. This module never imports rclpy.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math
from typing import Any, Deque, Optional, Tuple

from .validate import as_count, as_finite, as_nonneg, as_positive

# One Tensor message over RTPS/UDP/IPv4, as a link shaper counts it (BENCHMARKS.md section 11):
# Ethernet + IPv4 + UDP 42, RTPS header 20, INFO_DST + INFO_TS 28, DATA header 24, Fast DDS
# statistics submessage 60, the Tensor's fields besides ``data`` 216 (strings, shape, strides,
# scalars, CDR padding); each further IP fragment of the datagram adds Ethernet + IPv4 (34 B).
MESSAGE_OVERHEAD_BYTES = 390
FRAGMENT_OVERHEAD_BYTES = 34
IP_FRAGMENT_BYTES = 1480      # IPv4 payload per fragment at a 1,500-byte MTU


def wire_bytes(payload_bytes: int, message_bytes: int = MESSAGE_OVERHEAD_BYTES) -> int:
    """
    Return the bytes one message of ``payload_bytes`` takes on the link.

    ``message_bytes``: what one unfragmented message carries besides the payload; 0 returns the
    payload alone (the paper's model). Measured on the testbed to the byte (busy link: time =
    wire bytes x 8 / rate); a 64-byte payload takes 454 B, a 3,072-byte one 3,530 B.
    """
    payload = as_count('payload_bytes', payload_bytes, 0)
    extra = as_count('message_bytes', message_bytes, 0)
    if extra == 0:
        return payload
    datagram = payload + extra - FRAGMENT_OVERHEAD_BYTES    # IP payload of the whole datagram
    fragments = max(1, -(-datagram // IP_FRAGMENT_BYTES))
    return payload + extra + FRAGMENT_OVERHEAD_BYTES * (fragments - 1)


SOURCES = ('passive', 'probe')
# camera_node's transfer_log: one row per transfer sample offered to its estimator
TRANSFER_LOG_HEADER = 't_s,source,wire_bytes,transfer_s,used'


def read_transfer_log(path) -> list:
    """Return the rows ``(t_s, source, wire_bytes, transfer_s)`` of a transfer log (CSV)."""
    rows = []
    with open(path) as f:
        head = f.readline().strip()
        if head != TRANSFER_LOG_HEADER:
            raise ValueError(f'{path}: not a transfer log (header {head!r}, expected '
                             f'{TRANSFER_LOG_HEADER!r})')
        for n, line in enumerate(f, start=2):
            parts = line.strip().split(',')
            if not line.strip():
                continue
            try:
                t, src, nbytes, secs = float(parts[0]), parts[1], int(parts[2]), float(parts[3])
            except (IndexError, ValueError):
                raise ValueError(f'{path}:{n}: bad row {line.strip()!r}') from None
            if src not in SOURCES:
                raise ValueError(f'{path}:{n}: source must be one of {SOURCES}, got {src!r}')
            rows.append((t, src, nbytes, secs))
    return rows


def replay_transfers(estimator, rows) -> list:
    """Feed ``rows`` (``read_transfer_log``) to ``estimator``; return ``(t_s, Estimate)`` each."""
    out = []
    for t, src, nbytes, secs in rows:
        if secs > 0:
            estimator.add_transfer(t, nbytes, secs, source=src)
        est = estimator.estimate(t)
        if est is not None:
            out.append((t, est))
    return out


@dataclass(frozen=True)
class Estimate:
    """
    A bandwidth estimate for the planner and the ``LinkQuality`` message.

    ``bps``: uplink bandwidth (bit/s). ``rtt_ms``: smoothed probe round trip (ms), None when no
    fresh RTT sample. ``sample_count``: samples behind ``bps``. ``uncertainty``: coefficient of
    variation (std / mean) of the per-sample rates, 1.0 with a single sample (unknown).
    ``age_s``: seconds since the newest sample. ``source``: 'passive' or 'probe', of the newest.
    ``log_sigma``: the spread of the next sample's rate as the standard deviation of its natural
    log (a log-normal around ``bps``); ``uncertainty`` is the same spread as a coefficient of
    variation, ``sqrt(exp(log_sigma ** 2) - 1)`` (``log_sigma_of`` converts back).
    """

    bps: float
    rtt_ms: Optional[float]
    sample_count: int
    uncertainty: float
    age_s: float
    source: str
    log_sigma: float = 0.0


def log_sigma_of(cv: float) -> float:
    """Return the log-normal sigma whose coefficient of variation is ``cv`` (0 for <= 0)."""
    cv = float(cv)
    return math.sqrt(math.log1p(cv * cv)) if math.isfinite(cv) and cv > 0 else 0.0


def cv_of(log_sigma: float) -> float:
    """Return the coefficient of variation of a log-normal with this sigma."""
    return math.sqrt(math.expm1(float(log_sigma) ** 2))


@dataclass(frozen=True)
class _Sample:
    t_s: float          # when it was taken
    bits: float         # payload bits
    payload_s: float    # transfer time minus the fixed per-message cost (s)
    source: str

    @property
    def bps(self) -> float:
        return self.bits / self.payload_s


# A lower-bound sample under this fraction of the estimate is left out (``_uninformative``).
BOUND_FLOOR = 0.5


class BandwidthEstimator:
    """
    Estimate the uplink bandwidth from transfer samples (passive traffic and probes).

    Constructor arguments:

    - ``window``: samples averaged (the last N).
    - ``min_bytes``: smaller payloads are ignored (the fixed cost swamps them), unless
      ``slow_transfer_s`` is set and the transfer took at least that long: on a slow link a
      1 KB JPEG frame takes 80-170 ms and the fixed cost is a few percent of it (without this,
      such frames never count, and the probes sent instead take half of a 50 kbit/s link).
    - ``overhead_s``: fixed per-message cost (s) subtracted from every transfer; None (default)
      means the smoothed probe RTT when one is known, else 0.
    - ``min_payload_fraction``: a sample whose payload time (after that subtraction) is below
      this fraction of its transfer time is overhead-dominated and ignored.
    - ``stale_after_s``: samples (and RTTs) older than this are forgotten; no fresh sample means
      no estimate.
    - ``probe_after_s``: ``needs_probe`` turns true after this long without a sample.
    - ``drop_ratio``, ``drop_confirm``: after ``drop_confirm`` consecutive samples each below
      ``drop_ratio`` times the estimate, the window restarts from those samples (fast reaction to
      a drop; 1 reacts on the first sample, 2 rides out a single outlier).
    - ``rtt_alpha``: weight of a new RTT sample in the exponential average (TCP uses 1/8).

    Times must not go backwards between ``add_*`` calls (ValueError); queries tolerate it.
    """

    def __init__(self, window: int = 8, min_bytes: int = 4096,
                 overhead_s: Optional[float] = None, min_payload_fraction: float = 0.1,
                 stale_after_s: float = 5.0, probe_after_s: float = 2.0,
                 drop_ratio: float = 0.5, drop_confirm: int = 1, rtt_alpha: float = 0.25,
                 slow_transfer_s: Optional[float] = None):
        for name, v, lo in (('window', window, 1), ('min_bytes', min_bytes, 0),
                            ('drop_confirm', drop_confirm, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f'{name} must be an integer >= {lo}, got {v!r}')
        if drop_confirm > window:
            raise ValueError(f'drop_confirm ({drop_confirm}) must not exceed window ({window})')
        self.window = window
        self.drop_confirm = drop_confirm
        self.min_bytes = min_bytes
        self.overhead_s = None if overhead_s is None else as_nonneg('overhead_s', overhead_s)
        self.min_payload_fraction = as_nonneg('min_payload_fraction', min_payload_fraction)
        if self.min_payload_fraction >= 1.0:
            raise ValueError(f'min_payload_fraction must be < 1, got {min_payload_fraction!r}')
        self.stale_after_s = as_positive('stale_after_s', stale_after_s)
        self.probe_after_s = as_positive('probe_after_s', probe_after_s)
        self.drop_ratio = as_positive('drop_ratio', drop_ratio)
        if self.drop_ratio >= 1.0:
            raise ValueError(f'drop_ratio must be in (0, 1), got {drop_ratio!r}')
        self.slow_transfer_s = None if slow_transfer_s is None else \
            as_positive('slow_transfer_s', slow_transfer_s)
        self.rtt_alpha = as_positive('rtt_alpha', rtt_alpha)
        if self.rtt_alpha > 1.0:
            raise ValueError(f'rtt_alpha must be in (0, 1], got {rtt_alpha!r}')
        self.reset()

    def reset(self) -> None:
        """Forget every sample (e.g. after a clock jump or a change of network)."""
        self._samples: Deque[_Sample] = deque(maxlen=self.window)
        self._low = 0                       # consecutive samples below drop_ratio * estimate
        self._last_add_s = -math.inf
        self._last_rtt_add_s = -math.inf
        self._srtt_ms: Optional[float] = None
        self._rtt_t_s = -math.inf
        self._last_sample_s = -math.inf     # newest accepted transfer sample, any source

    @staticmethod
    def transfer_seconds(send_s: float, result_arrival_s: float,
                         edge_processing_s: float) -> float:
        """
        Return the time (s) a frame spent on the link: round trip minus edge processing.

        ``send_s`` and ``result_arrival_s`` are read on the robot's clock, ``edge_processing_s``
        is the duration the edge reports, so the two clocks need no synchronization. Raises
        ValueError unless the result is > 0 (reordered stamps or a bad edge report).
        """
        send = as_finite('send_s', send_s)
        arrival = as_finite('result_arrival_s', result_arrival_s)
        edge = as_nonneg('edge_processing_s', edge_processing_s)
        transfer = (arrival - send) - edge
        if transfer <= 0.0:
            raise ValueError(f'transfer time must be > 0: result arrived {arrival - send:.6f} s '
                             f'after sending, edge reports {edge:.6f} s of processing')
        return transfer

    def _check_time(self, now_s: Any, last: float) -> float:
        now = as_finite('now_s', now_s)
        if now < last:
            raise ValueError(f'now_s went backwards: {now_s!r} < {last!r}')
        return now

    def _fresh(self, now_s: float) -> list:
        return [x for x in self._samples if now_s - x.t_s <= self.stale_after_s]

    @staticmethod
    def _rate(samples: list) -> float:
        return sum(x.bits for x in samples) / sum(x.payload_s for x in samples)

    def _sample(self, now_s: float, payload_bytes: int, transfer_s: float,
                source: str) -> Optional[_Sample]:
        """Validate one transfer; return its sample, None when it is to be ignored."""
        now = self._check_time(now_s, self._last_add_s)
        payload_bytes = as_count('payload_bytes', payload_bytes, 0)
        took = as_positive('transfer_s', transfer_s)
        if source not in SOURCES:
            raise ValueError(f'source must be one of {SOURCES}, got {source!r}')
        self._last_add_s = now
        if payload_bytes < self.min_bytes and (
                self.slow_transfer_s is None or took < self.slow_transfer_s or payload_bytes == 0):
            return None
        overhead = self.overhead_s
        if overhead is None:
            overhead = 0.0 if self._srtt_ms is None else self._srtt_ms / 1000.0
        payload_s = took - overhead
        if payload_s <= 0.0 or payload_s < self.min_payload_fraction * took:
            return None
        return _Sample(now, 8.0 * payload_bytes, payload_s, source)

    def _uninformative(self, sample: _Sample, lower_bound: bool) -> bool:
        """
        Return whether a lower-bound sample says nothing: under half the estimate.

        A transfer too short to time (a 3 KB frame on a fast link, a probe pair under its
        resolution) says only "the link is at least this fast". Like an application-limited
        sample of BBR, such a bound far below the estimate is left out; read as a rate, it
        pulled a fast link's estimate down to the bound (2.8 Mbit/s on loopback). A bound
        within 2x of the estimate or above it counts as a sample: the largest probe pair is
        such a bound when even it is too fast to time.
        """
        if not lower_bound:
            return False
        est = self.estimate(sample.t_s)
        return est is not None and sample.bps < BOUND_FLOOR * est.bps

    def _confirm(self, now_s: float) -> None:
        """
        Keep the fresh samples fresh, after a bound far below the estimate.

        Such a transfer contradicts nothing, so while such frames flow the estimate stands
        (it went stale, and the next bound became the estimate, while frames kept the larger
        probe pairs off the link). A real drop shows in a transfer slow enough to time.
        """
        fresh = self._fresh(now_s)
        self._samples.clear()
        self._samples.extend(_Sample(now_s, x.bits, x.payload_s, x.source) for x in fresh)

    def add_transfer(self, now_s: float, payload_bytes: int, transfer_s: float,
                     source: str = 'passive', lower_bound: bool = False) -> bool:
        """
        Add one transfer of ``payload_bytes`` bytes that took ``transfer_s`` seconds.

        ``source`` is 'passive' (a co-inference frame) or 'probe'. ``lower_bound``: the transfer
        was too short to time and ``transfer_s`` is its resolution, so the rate is at least
        this (``_uninformative``). Returns False when the sample was ignored: payload under
        ``min_bytes``, overhead-dominated (see the class docstring), or a bound at or below the
        estimate.
        """
        sample = self._sample(now_s, payload_bytes, transfer_s, source)
        if sample is None:
            return False
        if self._uninformative(sample, lower_bound):
            self._confirm(sample.t_s)
            return False
        now = sample.t_s
        fresh = self._fresh(now)
        if fresh and sample.bps < self.drop_ratio * self._rate(fresh):
            self._low += 1
        else:
            self._low = 0
        self._samples.append(sample)
        if self._low >= self.drop_confirm:
            # a drop: keep only the samples that showed it, so the estimate follows at once
            keep = list(self._samples)[-self._low:]
            self._samples.clear()
            self._samples.extend(keep)
            self._low = 0
        self._last_sample_s = now
        return True

    def add_rtt(self, now_s: float, rtt_ms: float) -> None:
        """Add the round trip time (ms) of a small probe message (exponentially averaged)."""
        now = self._check_time(now_s, self._last_rtt_add_s)
        rtt = as_positive('rtt_ms', rtt_ms)
        self._last_rtt_add_s = now
        if self._srtt_ms is None or now - self._rtt_t_s > self.stale_after_s:
            self._srtt_ms = rtt
        else:
            self._srtt_ms += self.rtt_alpha * (rtt - self._srtt_ms)
        self._rtt_t_s = now

    def rtt_ms(self, now_s: float) -> Optional[float]:
        """Return the smoothed RTT (ms), or None when no RTT sample is fresher than staleness."""
        now = as_finite('now_s', now_s)
        if self._srtt_ms is None or now - self._rtt_t_s > self.stale_after_s:
            return None
        return self._srtt_ms

    def estimate(self, now_s: float) -> Optional[Estimate]:
        """Return the estimate at ``now_s`` (s); None when no sample is younger than staleness."""
        now = as_finite('now_s', now_s)
        fresh = self._fresh(now)
        if not fresh:
            return None
        rates = [x.bps for x in fresh]
        if len(rates) > 1:
            mean = sum(rates) / len(rates)
            var = sum((r - mean) ** 2 for r in rates) / len(rates)
            uncertainty = math.sqrt(var) / mean
        else:
            uncertainty = 1.0
        newest = fresh[-1]
        return Estimate(self._rate(fresh), self.rtt_ms(now), len(fresh), uncertainty,
                        max(0.0, now - newest.t_s), newest.source, log_sigma_of(uncertainty))

    def needs_probe(self, now_s: float, in_flight: int = 0,
                    last_send_s: float = -math.inf) -> bool:
        """
        Return True when an active probe should go now.

        That is when no sample was accepted for ``probe_after_s`` (s) (or never), and the link
        is quiet: no frame of the caller's in flight (``in_flight``) and none sent within
        ``probe_after_s`` before ``now_s`` (``last_send_s``). A frame on the link brings its own
        sample, and a probe would only queue in front of the next frame and make it late (on a
        50 kbit/s link a probe pair is a second of airtime). Frames that bring no sample (too
        small and fast) do not hold probes off for ever: after ``2 * probe_after_s`` without a
        sample the probe goes regardless.

        A probe's own sample resets the timer too, so without passive traffic (device-only, or
        payloads under ``min_bytes``) the caller probes about every ``probe_after_s``; the caller
        keeps at most one probe (pair) in flight.
        """
        now = as_finite('now_s', now_s)
        age = now - self._last_sample_s
        if age < self.probe_after_s:
            return False
        if age >= 2.0 * self.probe_after_s:
            return True
        return in_flight <= 0 and now - last_send_s >= self.probe_after_s


# The camera's estimator settings, chosen by ``edgent-ros sweep tune`` (cross-validation on the
# tuning half of the traces in simulation, subject to staying within 2x of the loopback path's
# rate on the recorded CPU-contended transfer logs; bench/results/heldout/tuning.json, a test
# keeps the two equal).
ESTIMATOR_SETTINGS = {'window': 12, 'change_k': 3.0, 'drop_confirm': 3, 'quantile': 0.9}


class RobustBandwidthEstimator(BandwidthEstimator):
    """
    A bandwidth estimate with a stated noise model: log-rate median and MAD, confirmed changes.

    Noise model: the log of each sample's rate is the link's log-rate plus Gaussian noise
    (``sigma``), and some samples are gross outliers -- a result held up by CPU contention or a
    queue that the timestamps could not take off, a shaper's burst. So:

    - the estimate is the ``quantile`` (0.5: the **median**) of the fresh samples' log-rates
      (``bps`` = its exp): outliers do not move it (the byte-weighted mean of the parent class
      falls 2x on one sample 30x slow). CPU contention only ever *adds* delay, so under it the
      slow samples are the noisy ones: a quantile above the median (as bottleneck-bandwidth
      filters take the maximum) stays on the link's rate while up to ``1 - quantile`` of the
      samples are fast outliers (a shaper's burst) and most of the others slow ones;
    - the spread is ``1.4826 x MAD`` of the log-rates (the robust sigma of a Gaussian), at
      least ``min_log_sigma``, and ``prior_log_sigma`` while fewer than 3 samples exist; the
      estimate's ``log_sigma`` is the spread of the **next** sample, ``sigma * sqrt(1 + pi /
      (2 n))`` (the median's own error added), for a planner that asks P(on time);
    - a **change**: ``drop_confirm`` consecutive samples each more than ``max(change_k x
      sigma, min_change)`` below (or above) the estimate restart the window from those samples,
      so a real drop is followed after two samples, a lone slow one never (the parent's
      ``drop_ratio`` is not used).

    Sample filtering (``min_bytes``, ``slow_transfer_s``, ``overhead_s``), staleness, probes
    and RTT are the parent's. Pure logic: time is passed in.
    """

    def __init__(self, window: int = 12, change_k: float = 3.0, min_change: float = 0.4,
                 min_log_sigma: float = 0.05, prior_log_sigma: float = 0.5,
                 quantile: float = 0.5, **kwargs):
        kwargs.setdefault('drop_confirm', 2)
        super().__init__(window=window, **kwargs)
        if not 0.5 <= quantile < 1.0:
            raise ValueError(f'quantile must be in [0.5, 1), got {quantile!r}')
        self.quantile = float(quantile)
        self.change_k = as_positive('change_k', change_k)
        self.min_change = as_positive('min_change', min_change)
        self.min_log_sigma = as_positive('min_log_sigma', min_log_sigma)
        self.prior_log_sigma = as_positive('prior_log_sigma', prior_log_sigma)

    def reset(self) -> None:
        """Forget every sample (e.g. after a clock jump or a change of network)."""
        super().reset()
        self._high = 0

    def _location(self, samples: list) -> Tuple[float, float]:
        """Return (the ``quantile`` of, robust sigma of) the samples' log-rates."""
        xs = sorted(math.log(x.bps) for x in samples)
        med = _median(xs)
        pos = self.quantile * (len(xs) - 1)
        lo = int(pos)
        m = xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)
        sigma = max(1.4826 * _median(sorted(abs(x - med) for x in xs)), self.min_log_sigma)
        if len(xs) < 3:
            sigma = max(sigma, self.prior_log_sigma)
        return m, sigma

    def add_transfer(self, now_s: float, payload_bytes: int, transfer_s: float,
                     source: str = 'passive', lower_bound: bool = False) -> bool:
        """Add one transfer (see the parent); a confirmed change restarts the window."""
        sample = self._sample(now_s, payload_bytes, transfer_s, source)
        if sample is None:
            return False
        if self._uninformative(sample, lower_bound):
            self._confirm(sample.t_s)
            return False
        now = sample.t_s
        fresh = self._fresh(now)
        if fresh:
            m, sigma = self._location(fresh)
            x, bar = math.log(sample.bps), max(self.change_k * sigma, self.min_change)
            # a bound cannot show a drop: the link was at least that fast
            self._low = self._low + 1 if x < m - bar and not lower_bound else 0
            self._high = self._high + 1 if x > m + bar else 0
        self._samples.append(sample)
        run = max(self._low, self._high)
        if run >= self.drop_confirm:
            keep = list(self._samples)[-run:]
            self._samples.clear()
            self._samples.extend(keep)
            self._low = self._high = 0
        self._last_sample_s = now
        return True

    def estimate(self, now_s: float) -> Optional[Estimate]:
        """Return the median rate and the next sample's log-normal spread (None when stale)."""
        now = as_finite('now_s', now_s)
        fresh = self._fresh(now)
        if not fresh:
            return None
        m, sigma = self._location(fresh)
        pred = sigma * math.sqrt(1.0 + math.pi / (2.0 * len(fresh)))
        newest = fresh[-1]
        return Estimate(math.exp(m), self.rtt_ms(now), len(fresh), cv_of(pred),
                        max(0.0, now - newest.t_s), newest.source, pred)


def camera_estimator(probe_after_s: float = 1.0, **settings) -> RobustBandwidthEstimator:
    """
    Return the estimator ``camera_node`` runs (``settings`` override ``ESTIMATOR_SETTINGS``).

    Payloads under 2 KB count only when they took >= 40 ms (a small JPEG frame on a slow link);
    the estimator subtracts no fixed per-message cost (``CameraLink`` takes the measured round
    trip off before); samples are forgotten after 5 s or 3 probe intervals, whichever is longer.
    """
    return RobustBandwidthEstimator(min_bytes=2048, overhead_s=0.0, probe_after_s=probe_after_s,
                                    stale_after_s=max(5.0, 3 * probe_after_s),
                                    slow_transfer_s=0.04, **{**ESTIMATOR_SETTINGS, **settings})


def _median(xs: list) -> float:
    """Return the median of a sorted non-empty list."""
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


class ProbeSizer:
    """
    The payload of the next probe pair: grown until the link's rate is measurable, no further.

    A pair of frame-sized probes resolves a rate only when one probe takes ``min_dispersion_s``
    or more on the link (3 KB: below 2.4 Mbit/s); on a faster link (Wi-Fi, a LAN, loopback) it
    gives only a lower bound, and a planner that believes that bound keeps every tensor on the
    robot, so no frame ever measures the link either. Like the adaptive stream lengths of
    pathload-style probing, the pair grows by ``growth`` after each unresolved pair (a 'train'
    sample) up to ``max_bytes``, and shrinks by ``growth`` (not below ``base_bytes``) after a
    pair whose dispersion exceeded ``growth x min_dispersion_s``. The dispersion so stays within
    [``min_dispersion_s``, ``growth x min_dispersion_s``] (10-40 ms by default), which bounds
    what probing costs: one pair per ``probe_after_s`` of a link without frames, each at most
    about 2 x 40 ms of its time, and a step grown only after the link showed the previous one
    crossed in under ``min_dispersion_s``.

    ``base_bytes`` is the camera's frame probe (a real frame); a larger pair carries padding
    the edge answers without compute (``codec.padding_probe``). ``max_bytes`` at or below
    ``base_bytes`` keeps the frame probes only. An edge that refuses a padding probe (one older
    than padding, or a payload over its ``max_payload_bytes``) caps the size at the last one
    below (``refused``). Pure logic.
    """

    def __init__(self, base_bytes: int, max_bytes: int, growth: int = 4,
                 min_dispersion_s: float = 0.01):
        self.base_bytes = as_count('base_bytes', base_bytes, 1)
        self.max_bytes = max(self.base_bytes, as_count('max_bytes', max_bytes, 0))
        if isinstance(growth, bool) or not isinstance(growth, int) or growth < 2:
            raise ValueError(f'growth must be an integer >= 2, got {growth!r}')
        self.growth = growth
        self.min_dispersion_s = as_positive('min_dispersion_s', min_dispersion_s)
        self.nbytes = self.base_bytes

    @property
    def padded(self) -> bool:
        """Whether the next pair carries padding (larger than the frame probe)."""
        return self.nbytes > self.base_bytes

    def update(self, kind: str, dispersion_s: float) -> int:
        """
        Size the next pair from this one's outcome; return the new size (bytes).

        ``kind``: the pair's sample kind ('pair': resolved, ``dispersion_s`` its gap; 'train':
        unresolved).
        """
        if kind == 'train':
            self.nbytes = min(self.max_bytes, self.nbytes * self.growth)
        elif kind == 'pair':
            if as_nonneg('dispersion_s', dispersion_s) > self.growth * self.min_dispersion_s:
                self.nbytes = max(self.base_bytes, self.nbytes // self.growth)
        else:
            raise ValueError(f"kind must be 'pair' or 'train', got {kind!r}")
        return self.nbytes

    def refused(self) -> int:
        """Cap the size below the pair the edge refused; a frame probe caps nothing."""
        if self.padded:
            self.max_bytes = max(self.base_bytes, self.nbytes // self.growth)
            self.nbytes = self.max_bytes
        return self.nbytes


class ProbePair:
    """
    Two probe frames sent back to back; the gap between their arrivals measures the link's rate.

    A single small probe sent after an idle gap measures the shaper's burst, not its rate: a
    token bucket (or a Wi-Fi AP's first aggregate) lets the first packet(s) through at once, so a
    3 KB probe on a 50 kbit/s link that passes 1.5 KB in its burst "takes" half its real time
    and the estimate comes out 1.5-2x too high (the sweep sent frames that arrived late on
    it). Sent back to back, the first probe spends the burst and the second queues behind it:
    the dispersion (the second's arrival minus the first's, edge processing taken off) is the
    second's serialization time alone, free of the burst and of every fixed per-message cost
    (the packet-pair technique). On a fast link the dispersion is a few ms, within scheduling
    jitter, so below ``min_dispersion_s`` the pair counts as one train: both payloads over the
    time from sending to the second's arrival.

    ``sent_s``: when both were published; ``seqs``: their two sequence numbers in sending order;
    ``nbytes``: the payload of each. Pure logic; times are seconds on one monotonic clock.
    """

    def __init__(self, sent_s: float, seqs: tuple, nbytes: int,
                 min_dispersion_s: float = 0.01):
        if len(seqs) != 2 or seqs[0] == seqs[1]:
            raise ValueError(f'a probe pair needs two distinct sequence numbers, got {seqs!r}')
        self.sent_s = as_finite('sent_s', sent_s)
        self.seqs = (int(seqs[0]), int(seqs[1]))
        self.nbytes = as_count('nbytes', nbytes, 1)
        self.min_dispersion_s = as_positive('min_dispersion_s', min_dispersion_s)
        self._out_s: dict = {}      # seq -> when it left the link (arrival minus edge time)
        self.failed = False

    def owns(self, seq: int) -> bool:
        """Return True if ``seq`` is one of this pair's probes."""
        return int(seq) in self.seqs

    def result(self, seq: int, arrival_s: float, edge_s: float, ok: bool = True):
        """
        Record the edge's answer to probe ``seq``; return a sample once both are in.

        The answer arrived back at ``arrival_s`` (s) after ``edge_s`` (s) of edge queueing and
        processing; ``ok`` is False when the edge refused the probe. Returns None until both
        answers are in (and after a refusal: the pair gives no sample), then ``(payload_bytes,
        seconds, kind)`` for ``BandwidthEstimator.add_transfer``, kind 'pair' (dispersion) or
        'train'; the bytes are wire bytes (``wire_bytes``: one message for a pair's dispersion,
        both for a train).
        """
        seq = int(seq)
        if seq not in self.seqs:
            raise ValueError(f'probe {seq} is not one of this pair {self.seqs}')
        if self.failed or seq in self._out_s:
            return None
        if not ok:
            self.failed = True
            return None
        self._out_s[seq] = as_finite('arrival_s', arrival_s) - as_nonneg('edge_s', edge_s)
        if len(self._out_s) < 2:
            return None
        first, second = (self._out_s[s] for s in self.seqs)
        gap = second - first
        if gap >= self.min_dispersion_s:
            return wire_bytes(self.nbytes), gap, 'pair'
        train = second - self.sent_s
        if train <= 0.0:
            return None
        return 2 * wire_bytes(self.nbytes), train, 'train'

    def base_rtt_s(self) -> Optional[float]:
        """
        Return the round trip of an empty message (s), None until both answers are in.

        The first probe's time from sending to its answer, less its own serialization, which
        is the pair's dispersion (both probes have the same size): what every offloaded frame
        pays besides its bytes (one-way delays both ways, the middleware's per-message cost).
        A shaper's burst lets part of the first probe through at once, so this errs low by at
        most that burst's time at the link rate.
        """
        if self.failed or len(self._out_s) < 2:
            return None
        first, second = (self._out_s[s] for s in self.seqs)
        return max(0.0, (first - self.sent_s) - max(0.0, second - first))

    def complete(self) -> bool:
        """Return True once both answers are in, or the pair failed."""
        return self.failed or len(self._out_s) == 2


class EdgeWatchdog:
    """
    Say whether the edge is reachable: heard from within the last ``timeout_s`` seconds.

    Anything from the edge counts as ``heard`` (a result, a probe reply). Before the first one the
    edge is unreachable, so a planner starts device-only.
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = as_positive('timeout_s', timeout_s)
        self._last_s = -math.inf

    def heard(self, now_s: float) -> None:
        """Record that the edge answered at ``now_s`` (s); a time before the last is ignored."""
        self._last_s = max(self._last_s, as_finite('now_s', now_s))

    def silence_s(self, now_s: float) -> Optional[float]:
        """Return seconds since the edge was last heard (>= 0), None if never."""
        now = as_finite('now_s', now_s)
        if math.isinf(self._last_s):
            return None
        return max(0.0, now - self._last_s)

    def reachable(self, now_s: float) -> bool:
        """Return True if the edge was heard within ``timeout_s`` before ``now_s``."""
        silence = self.silence_s(now_s)
        return silence is not None and silence <= self.timeout_s


def arrival_s(now_mono_s: float, now_wall_ns: int, info) -> float:
    """
    Return when a message arrived, on the monotonic clock of ``now_mono_s``.

    The middleware's reception time (``MessageInfo['received_timestamp']``, system clock) is
    used, so a result that waited in the executor behind device compute (the robot emulation
    sleeps in the frame callback) does not count as link time. Falls back to now when the
    middleware gives none or an implausible one (> 10 s old or in the future).
    """
    try:
        rx = int(info['received_timestamp'])
    except (TypeError, KeyError, ValueError):
        return now_mono_s
    waited = (now_wall_ns - rx) / 1e9
    return now_mono_s - waited if rx > 0 and 0.0 <= waited <= 10.0 else now_mono_s


class ArrivalClock:
    """
    Reception times (``arrival_s``) of one subscription that never go backwards.

    A reliable reader hands samples over in order, so a sample that waited for the repair of a
    lost fragment of the one before it was received earlier than that one: its reception time
    is older than the previous callback's. The estimators need time that does not go back, so
    such a sample is dated at the previous one's time (its transfer then reads a little longer:
    the conservative side).
    """

    def __init__(self):
        """No sample yet."""
        self.last_s = -math.inf

    def __call__(self, now_mono_s: float, now_wall_ns: int, info) -> float:
        """Return ``max(arrival_s(...), the previous return)``."""
        self.last_s = max(arrival_s(now_mono_s, now_wall_ns, info), self.last_s)
        return self.last_s
