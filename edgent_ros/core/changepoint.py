"""
Online change-point detection on bandwidth samples (issue 10).

Bayesian online change-point detection (Adams & MacKay 2007) in log-bandwidth.

Model: the log of the bandwidth is piecewise constant plus Gaussian noise of known spread
``sigma`` (a state's own fluctuation); each segment's level has a Gaussian prior around the
previous estimate; a new segment starts at any sample with probability ``hazard``. After each
sample the run-length posterior ``P(r_t | x_1..t)`` is updated exactly (truncated at
``max_run``). A change is *declared* when the probability that the current segment is younger
than ``window`` samples exceeds ``threshold`` and no change was declared in the last ``window``
samples; the current state estimate is the posterior mean level of the most probable run. A slow
drift (a ramp) never looks like a change point to BOCPD, so a change is also declared when the
mean of the last ``drift_window`` samples has left the current level by more than
``drift_sigmas`` x ``sigma``; the detector then restarts from those samples.

Pure numpy; no rclpy. ``evaluate_detector`` measures detection delay and false alarms on a
signal with known change points (used by the tests and the report).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

FLOOR_MBPS = 1e-3   # log of 0 (an outage) is taken at 1 kbit/s


@dataclass
class Step:
    """Result of one ``update``: whether a change was declared and the current level."""

    change: bool
    level_mbps: float
    run_length: int
    p_recent: float


class BOCPD:
    """Bayesian online change-point detector for a piecewise-constant log-bandwidth."""

    def __init__(self, hazard: float = 1 / 60, sigma: float = 0.35, prior_sigma: float = 2.0,
                 window: int = 3, threshold: float = 0.6, max_run: int = 600,
                 drift_window: int = 5, drift_sigmas: float = 1.5):
        for name, v, lo, hi in (('hazard', hazard, 0.0, 1.0), ('sigma', sigma, 0.0, 100.0),
                                ('prior_sigma', prior_sigma, 0.0, 100.0),
                                ('threshold', threshold, 0.0, 1.0)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo < v < hi):
                raise ValueError(f'{name} must be in ({lo:g}, {hi:g}), got {v!r}')
        if not (isinstance(window, int) and window >= 1):
            raise ValueError(f'window must be an integer >= 1, got {window!r}')
        if not (isinstance(max_run, int) and max_run > window):
            raise ValueError(f'max_run must be an integer > window, got {max_run!r}')
        if not (isinstance(drift_window, int) and drift_window >= 2):
            raise ValueError(f'drift_window must be an integer >= 2, got {drift_window!r}')
        if not (isinstance(drift_sigmas, (int, float)) and drift_sigmas > 0):
            raise ValueError(f'drift_sigmas must be > 0, got {drift_sigmas!r}')
        self.drift_window = drift_window
        self.drift = float(drift_sigmas) * float(sigma)
        self.hazard = float(hazard)
        self.var = float(sigma) ** 2
        self.prior_var = float(prior_sigma) ** 2
        self.window = window
        self.threshold = float(threshold)
        self.max_run = max_run
        self.reset()

    def reset(self) -> None:
        """Forget everything (the next sample starts a segment)."""
        self.t = 0
        self.p = np.zeros(0)        # P(r_t = r), r = 0..len-1
        self.mu = np.zeros(0)       # posterior mean level of each run
        self.v = np.zeros(0)        # posterior variance of each run's level
        self.since_change = 0
        self.level_mbps = math.nan
        self.recent: deque = deque(maxlen=getattr(self, 'drift_window', 5))

    def _restart(self, xs: Sequence[float]) -> None:
        """Start one segment from the log samples ``xs`` (a detected drift)."""
        n = len(xs)
        v = 1.0 / (1.0 / self.prior_var + n / self.var)
        self.p = np.array([1.0])
        self.mu = np.array([v * (float(np.mean(xs)) * n / self.var + xs[0] / self.prior_var)])
        self.v = np.array([v])

    def update(self, mbps: float) -> Step:
        """Feed one bandwidth sample (Mbit/s, >= 0); return the step."""
        if isinstance(mbps, bool) or not isinstance(mbps, (int, float)) or not mbps >= 0 \
                or math.isinf(mbps):
            raise ValueError(f'bandwidth must be a finite number >= 0, got {mbps!r}')
        x = math.log(max(float(mbps), FLOOR_MBPS))
        self.t += 1
        self.recent.append(x)
        if self.p.size == 0:     # first sample: one run of length 0 centred on it
            self.p = np.array([1.0])
            self.mu = np.array([x])
            self.v = np.array([self.var])
            self.since_change = 0
            self.level_mbps = math.exp(x)
            return Step(True, self.level_mbps, 0, 1.0)
        # predictive of x under every current run, and under a fresh segment
        pv = self.v + self.var
        pred = np.exp(-0.5 * (x - self.mu) ** 2 / pv) / np.sqrt(2 * math.pi * pv)
        best = int(np.argmax(self.p))
        prior_mu = self.mu[best]          # a new level is near the current one, a priori
        pv0 = self.prior_var + self.var
        pred0 = math.exp(-0.5 * (x - prior_mu) ** 2 / pv0) / math.sqrt(2 * math.pi * pv0)
        growth = self.p * pred * (1.0 - self.hazard)
        cp = float(np.sum(self.p) * self.hazard * pred0)
        p = np.concatenate(([cp], growth))
        total = float(p.sum())
        if not total > 0 or not math.isfinite(total):
            p = np.zeros_like(p)
            p[0] = 1.0
            total = 1.0
        p /= total
        # posterior level of each run after seeing x
        v0 = 1.0 / (1.0 / self.prior_var + 1.0 / self.var)
        mu0 = v0 * (prior_mu / self.prior_var + x / self.var)
        vn = 1.0 / (1.0 / self.v + 1.0 / self.var)
        mun = vn * (self.mu / self.v + x / self.var)
        mu = np.concatenate(([mu0], mun))
        v = np.concatenate(([v0], vn))
        if p.size > self.max_run:          # truncate the tail into the last kept run
            p[self.max_run - 1] += p[self.max_run:].sum()
            p, mu, v = p[:self.max_run], mu[:self.max_run], v[:self.max_run]
        self.p, self.mu, self.v = p, mu, v
        self.since_change += 1
        p_recent = float(p[:self.window].sum())
        change = p_recent > self.threshold and self.since_change >= self.window
        run = int(np.argmax(p))
        if not change and self.since_change >= self.drift_window \
                and len(self.recent) == self.drift_window \
                and abs(float(np.mean(self.recent)) - float(mu[run])) > self.drift:
            change = True
            self._restart(list(self.recent))
            run = 0
        if change:
            self.since_change = 0
        self.level_mbps = math.exp(float(self.mu[run]))
        return Step(change, self.level_mbps, run, p_recent)


def evaluate_detector(signal: Sequence[float], changes: Sequence[int], detector: BOCPD,
                      tolerance: int = 10) -> Dict[str, object]:
    """
    Run ``detector`` over ``signal`` with true change points ``changes`` (sample indices).

    A declaration within ``tolerance`` samples after a true change (and before the next one)
    detects it (delay = samples after the change); any other declaration is a false alarm.
    The first sample's declaration (the initial state) is not counted.
    """
    detector.reset()
    declared = [i for i, x in enumerate(signal) if detector.update(x).change and i > 0]
    changes = sorted(changes)
    delays: List[int] = []
    used = set()
    for k, c in enumerate(changes):
        nxt = changes[k + 1] if k + 1 < len(changes) else len(signal)
        hit: Optional[int] = next((d for d in declared if c <= d < min(c + tolerance + 1, nxt)
                                   and d not in used), None)
        if hit is not None:
            used.add(hit)
            delays.append(hit - c)
    false = [d for d in declared if d not in used]
    n = len(signal)
    return {'changes': len(changes), 'detected': len(delays), 'missed': len(changes) - len(delays),
            'mean_delay': float(np.mean(delays)) if delays else None,
            'max_delay': max(delays) if delays else None,
            'false_alarms': len(false), 'false_alarm_rate_per_100': 100.0 * len(false) / n,
            'declared': declared}
