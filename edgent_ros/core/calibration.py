"""
Online calibration of the latency model from measured frames (no rclpy).

The regression models predict each layer from offline profiles; the live system differs: a
camera computes one frame at a time with cold caches, the link carries discovery and heartbeat
traffic, a shaper lets a burst through after an idle gap. The planner sees every frame's outcome
(``edgent/outcome``: measured device time and end to end), so it keeps, per part of the latency,
the recent ratios measured / predicted:

* ``device``: robot compute of the layers before the cut (frames with a device part);
* ``offload``: everything after the robot -- transfer, edge queue and compute, the result's
  return -- for frames finished on the edge;
* ``edge``: the edge's own time (compute and everything else it held the frame, as it reports),
  for the spread of edge time the on-time probability needs (``chance``), not for a factor.

``factor(part, q)`` is the ``q`` quantile of the ratios of the last ``window_s`` seconds (at most
``max_samples``), clipped to ``[min_factor, max_factor]``; 1 until ``min_samples`` exist. The
planner decides with a high quantile (its deadline check then holds for that share of frames,
not just the average one) and reports its prediction with the median. Samples expire, so a
part the planner stopped using (e.g. offloading after a link drop) falls back to the model.

Time is passed in (``now_s``, any monotonic clock in seconds).
"""

from __future__ import annotations

from collections import deque
import math
from typing import Deque, Dict, Optional, Tuple

PARTS = ('device', 'offload', 'edge')


class LatencyCalibration:
    """Recent measured/predicted latency ratios per part, and their quantiles."""

    def __init__(self, window_s: float = 60.0, max_samples: int = 200, min_samples: int = 5,
                 min_factor: float = 0.5, max_factor: float = 3.0, min_predicted_ms: float = 0.5):
        if not (window_s > 0 and max_samples >= 1 and min_samples >= 1
                and 0 < min_factor <= 1.0 <= max_factor):
            raise ValueError(f'bad calibration settings: window_s={window_s!r}, '
                             f'max_samples={max_samples!r}, min_samples={min_samples!r}, '
                             f'factors [{min_factor!r}, {max_factor!r}]')
        self.window_s = float(window_s)
        self.min_samples = int(min_samples)
        self.min_factor = float(min_factor)
        self.max_factor = float(max_factor)
        self.min_predicted_ms = float(min_predicted_ms)
        self._samples: Dict[str, Deque[Tuple[float, float]]] = {
            p: deque(maxlen=int(max_samples)) for p in PARTS}

    def clear(self) -> None:
        """Forget every sample (the factors are 1 until ``min_samples`` new ones arrive)."""
        for q in self._samples.values():
            q.clear()

    def add(self, now_s: float, part: str, predicted_ms: float, measured_ms: float) -> bool:
        """
        Record one frame's part; return whether it was used.

        Parts predicted below ``min_predicted_ms`` (a split-0 frame's device part) and
        non-finite or non-positive values are ignored.
        """
        if part not in PARTS:
            raise ValueError(f'part must be one of {PARTS}, got {part!r}')
        if not (math.isfinite(predicted_ms) and math.isfinite(measured_ms)
                and predicted_ms >= self.min_predicted_ms and measured_ms > 0):
            return False
        self._samples[part].append((float(now_s), measured_ms / predicted_ms))
        return True

    def _recent(self, now_s: float, part: str) -> list:
        q = self._samples[part]
        while q and now_s - q[0][0] > self.window_s:
            q.popleft()
        return sorted(r for _, r in q)

    def count(self, now_s: float, part: str) -> int:
        """Return how many samples of ``part`` are within the window."""
        return len(self._recent(now_s, part))

    def ratios(self, now_s: float, part: str) -> list:
        """Return the recent ratios of ``part`` (sorted; empty with fewer than ``min_samples``)."""
        xs = self._recent(now_s, part)
        return xs if len(xs) >= self.min_samples else []

    def factor(self, now_s: float, part: str, quantile: float = 0.5) -> float:
        """Return the ``quantile`` of recent ratios of ``part`` (1.0 with too few samples)."""
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f'quantile must be in [0, 1], got {quantile!r}')
        xs = self._recent(now_s, part)
        if len(xs) < self.min_samples:
            return 1.0
        pos = quantile * (len(xs) - 1)           # linear interpolation between order stats
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(xs) - 1)
        v = xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
        return min(self.max_factor, max(self.min_factor, v))

    def reset(self, part: Optional[str] = None) -> None:
        """Forget the samples of ``part`` (all parts if None)."""
        for p in (PARTS if part is None else (part,)):
            self._samples[p].clear()
