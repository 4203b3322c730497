"""
The testbed's robot camera: ``camera_node`` whose device layers take ``compute_slowdown`` x longer.

A CFS CPU quota does not throttle the one short burst of compute a camera does per frame, so the
testbed emulates a slower robot per frame, as the profiler does, from the CPU time the
device-side layers took (not their wall time, which a throttle of the robot's quota can stretch
many-fold: f x a 50 ms throttle would be seconds). ``compute_pacing`` says how:

- ``add`` (the default, every run before ``total``): after the layers, wait (f - 1) x their CPU
  time. A throttle of the robot cgroup that fell inside the layers stays in the frame's time, on
  top: up to one CFS period less the quota (75 ms at the 100 ms default, 7.5 ms at 10 ms).
- ``total``: wait until the layers have taken f x their CPU time in all (nothing when their
  wall time is longer already). A throttle inside them is absorbed whenever f x the CPU time
  covers it, as a robot that is f times slower has no such stall: its time is its work.
- ``warm``: ``add``, timed on a warm host. The layers run twice per frame, the first pass
  untimed, and the wait is (f - 1) x the CPU time of the second, the first pass's wall time
  spent inside that wait (so the frame's time is unchanged by it). A host core that idled
  between frames (the camera sleeps on its 50 ms timer; a VM's vCPU halts) or ran other layers
  meanwhile starts cold: resnet64's prefixes took 16-31 % more CPU time in a frame's first
  pass than in a second one right after it (``bench/warm_pass.py``). That cold start is the
  host's, a fixed cost, not work a robot f times slower would do f times over; ``add``
  multiplies it by f. It moves the robot's level, not its spread: frame to frame the second
  pass was 13-23 % off its median, the first 11-18 %.

The frame's ``device_ms`` includes the wait. The production ``CameraNode`` knows nothing of
this; it only offers the ``after_compute`` hook used here.

Run as ``python -m edgent_ros.evaluation.emulated_camera --ros-args -p compute_slowdown:=2.15
...``: the same node name, topics and parameters as ``camera_node``, plus read-only
``compute_slowdown`` (>= 1; 1 = no emulation) and ``compute_pacing`` (``add``, ``total`` or
``warm``).
Signals are recorded from the first line on, as in the node executables (``nodes.entry``,
``nodes.signals``).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from ..nodes.entry import run_guarded

COMPUTE_SLOWDOWN_RANGE = (1.0, 10_000.0)
PACINGS = ('add', 'total', 'warm')
DEFAULT_PACING = 'add'


class ComputeSlowdown:
    """
    ``after_compute`` hook: make the layers take ``factor`` x their CPU time; add the wait.

    ``pacing`` ``add``: wait (``factor`` - 1) x the layers' CPU time; ``total``: wait
    ``factor`` x that less their wall time (>= 0); ``warm``: as ``add``, less the untimed first
    pass's wall time (``WarmPass``; ``out.first_pass_ms``) already spent. ``sleep`` (seconds)
    is injectable for tests.
    """

    def __init__(self, factor: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 pacing: str = DEFAULT_PACING):
        self.factor = check_factor(factor)
        self.pacing = check_pacing(pacing)
        self._sleep = sleep

    def __call__(self, out) -> None:
        """Emulate the slower robot on ``out`` (a ``core.inference.DeviceOutput``)."""
        if self.factor <= 1.0:
            return
        if self.pacing == 'total':
            extra_ms = max(0.0, self.factor * out.layers_cpu_ms - out.layers_ms)
        else:
            extra_ms = (self.factor - 1.0) * out.layers_cpu_ms
        first_ms = getattr(out, 'first_pass_ms', 0.0) if self.pacing == 'warm' else 0.0
        wait_ms = extra_ms - first_ms
        if wait_ms > 0.0:
            self._sleep(wait_ms / 1e3)
        out.device_ms += extra_ms


class WarmPass:
    """
    Wrap a ``CoInference.device_step``: each frame's layers run once untimed, then again.

    The second pass is the frame's (its output and times); ``first_pass_ms`` on it is the
    first pass's wall time, which ``ComputeSlowdown`` (pacing ``warm``) counts inside the
    robot's wait. A ``FrameRefused`` of the first pass is the frame's, as without the wrapper.
    """

    def __init__(self, step: Callable):
        self._step = step

    def __call__(self, *args, **kwargs):
        """Run ``step`` twice on the same arguments; return the second output."""
        t = time.perf_counter()
        self._step(*args, **kwargs)
        first_ms = (time.perf_counter() - t) * 1e3
        out = self._step(*args, **kwargs)
        out.first_pass_ms = first_ms
        return out


def check_factor(factor: float) -> float:
    """Return ``factor`` as float; ValueError naming it unless in ``COMPUTE_SLOWDOWN_RANGE``."""
    lo, hi = COMPUTE_SLOWDOWN_RANGE
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) \
            or not lo <= factor <= hi:
        raise ValueError(f'compute_slowdown must be in [{lo:g}, {hi:g}], got {factor!r}')
    return float(factor)


def check_pacing(pacing: str) -> str:
    """Return ``pacing``; ValueError naming it unless one of ``PACINGS``."""
    if pacing not in PACINGS:
        raise ValueError(f'compute_pacing must be one of {", ".join(PACINGS)}, got {pacing!r}')
    return pacing


def main(args: Optional[list] = None) -> int:
    """Spin a ``CameraNode`` with the ``compute_slowdown`` robot emulation."""
    from ..nodes.camera_node import CameraNode
    from ..nodes.node_util import declare, run
    slowdown = ComputeSlowdown()

    def make():
        node = CameraNode(after_compute=slowdown)
        slowdown.factor = check_factor(declare(
            node, 'compute_slowdown', 1.0, 'robot emulation: after the device-side layers, '
            'wait (f - 1) x their CPU time (a CPU quota does not throttle one short burst)',
            float_range=COMPUTE_SLOWDOWN_RANGE, read_only=True))
        slowdown.pacing = check_pacing(declare(
            node, 'compute_pacing', DEFAULT_PACING, 'robot emulation: add = wait (f - 1) x the '
            'layers\' CPU time after them; total = until they took f x it in all (a quota '
            'throttle inside them absorbed); warm = add, timed on a second pass of the '
            'layers (the first untimed, spent inside the wait)', read_only=True))
        if slowdown.pacing == 'warm':
            node.runner.device_step = WarmPass(node.runner.device_step)
        node.get_logger().info(f'robot emulation: compute_slowdown {slowdown.factor:g}, '
                               f'pacing {slowdown.pacing}')
        return node

    return run(make, args)


def _load() -> Callable[[], int]:
    from ..nodes import camera_node   # noqa: F401 (the heavy import, under the signal handler)
    return main


if __name__ == '__main__':
    raise SystemExit(run_guarded(_load))
