"""
Packet loss as the planner sees it: how often an offloaded frame waits for a repair, how long.

On a link that loses packets a reliable DDS writer resends a lost fragment after its next
heartbeat and a round trip (BENCHMARKS §18: 120-260 ms with the lossy profile's 200 ms
heartbeat). The planner's latency prediction is of the median frame, and the bandwidth estimator
deliberately discounts slow samples (CPU contention only ever adds delay, §17), so neither sees
repairs, and at 100 ms each way one repair makes a frame late. This module sees them in the
frames themselves (no rclpy, time passed in).

Model (stated, so that it can be wrong in known ways):

- each packet of an offloaded frame (its tensor's ``ceil(wire / PACKET_BYTES)`` fragments, plus
  one for the result coming back) needs a repair independently with probability ``p``, so a
  frame of ``n`` packets waits with probability ``q(n) = 1 - (1 - p) ** n``;
- the extra time of a frame that waits is drawn from the recent late frames' extra times.

A frame is *late* when its measured offloaded time (everything after the robot) exceeds the
prediction by more than ``max(min_late_ms, median + 6 MAD)`` of the recent excesses. ``p`` is
late frames over packets sent (the maximum-likelihood estimate for small ``p``) over the last
``max_frames`` offloaded frames no older than ``window_s``. Frames are counted, not seconds: a
planner that moved to the robot because of loss keeps what it learned (probes do not run the
frame path) until ``window_s`` has passed, then tries the link again. A frame later than
predicted by more than ``max_repair_ms`` (1 s) is not a repair but a wait for the link itself
(an outage; the bandwidth estimate sees it): it is left out, so that the frames that crossed an
outage do not keep the planner on the robot after the link is back.
"""

from __future__ import annotations

from collections import deque
import math
from typing import Deque, Tuple

import numpy as np

# payload bytes per UDP datagram of a large tensor (Fast DDS fragments; the testbed profile's
# and the default's are both about this size below the 1,500-byte MTU)
PACKET_BYTES = 1400
# A frame later than predicted by more than this waited for the link, not for a repair: a
# repair costs a heartbeat period and a round trip (BENCHMARKS §18: 120-260 ms), an outage
# seconds. An outage is the rate estimate's to see; counted as repairs, the frames that crossed
# it kept the planner on the robot long after the link came back (§8's 5G windows).
MAX_REPAIR_MS = 1000.0


def packets(wire_bytes: float) -> int:
    """Return the packets a frame of ``wire_bytes`` puts at risk (fragments + the result)."""
    return int(math.ceil(max(float(wire_bytes), 1.0) / PACKET_BYTES)) + 1


def wait_probability(p: float, n: np.ndarray) -> np.ndarray:
    """Return ``q(n) = 1 - (1 - p) ** n``: P(a frame of ``n`` packets waits for a repair)."""
    return -np.expm1(np.asarray(n, dtype=float) * math.log1p(-min(max(p, 0.0), 0.999999)))


class RepairEstimator:
    """Recent offloaded frames: the per-packet repair probability and the repair's cost."""

    def __init__(self, window_s: float = 300.0, max_frames: int = 200, min_frames: int = 10,
                 min_late_ms: float = 50.0, max_costs: int = 16,
                 max_repair_ms: float = MAX_REPAIR_MS):
        if not (window_s > 0 and max_frames >= min_frames >= 1 and 0 < min_late_ms
                < max_repair_ms and max_costs >= 1):
            raise ValueError(f'bad repair settings: window_s={window_s!r}, max_frames='
                             f'{max_frames!r}, min_frames={min_frames!r}, min_late_ms='
                             f'{min_late_ms!r}, max_costs={max_costs!r}, max_repair_ms='
                             f'{max_repair_ms!r}')
        self.max_repair_ms = float(max_repair_ms)
        self.stalls = 0      # frames left out as waits for the link, not repairs (since start)
        self.window_s = float(window_s)
        self.min_frames = int(min_frames)
        self.min_late_ms = float(min_late_ms)
        self.max_costs = int(max_costs)
        self._frames: Deque[Tuple[float, int, float]] = deque(maxlen=int(max_frames))

    def clear(self) -> None:
        """Forget every frame."""
        self._frames.clear()

    def add(self, now_s: float, wire_bytes: float, excess_ms: float) -> bool:
        """
        Record one offloaded frame: its wire bytes and measured minus predicted time (ms).

        Returns whether it was used: a frame later than predicted by more than
        ``max_repair_ms`` waited for the link itself (an outage), not for a repair, and is
        left out (counted in ``stalls``).
        """
        if not (math.isfinite(excess_ms) and math.isfinite(wire_bytes)):
            return False
        if excess_ms > self.max_repair_ms:
            self.stalls += 1
            return False
        self._frames.append((float(now_s), packets(wire_bytes), float(excess_ms)))
        return True

    def _recent(self, now_s: float):
        return [f for f in self._frames if now_s - f[0] <= self.window_s]

    def threshold_ms(self, excess: np.ndarray) -> float:
        """Return the excess above which a frame counts as late."""
        med = float(np.median(excess))
        mad = float(np.median(np.abs(excess - med)))
        return max(self.min_late_ms, med + 6.0 * 1.4826 * mad)

    def estimate(self, now_s: float) -> Tuple[float, Tuple[float, ...]]:
        """
        Return ``(p, costs)``: the per-packet repair probability and recent repair costs (ms).

        ``(0.0, ())`` until ``min_frames`` recent frames exist. ``costs`` are the late frames'
        excess over the median excess (the median frame's part is in the prediction already).
        """
        recent = self._recent(now_s)
        if len(recent) < self.min_frames:
            return 0.0, ()
        excess = np.array([f[2] for f in recent])
        n = np.array([f[1] for f in recent], dtype=float)
        late = excess > self.threshold_ms(excess)
        if not late.any():
            return 0.0, ()
        p = float(late.sum() / n.sum())
        med = float(np.median(excess))
        costs = tuple(float(c) for c in (excess[late] - med)[-self.max_costs:])
        return p, costs
