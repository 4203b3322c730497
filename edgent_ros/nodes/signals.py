"""
Signals that arrive while a node process is still starting (no rclpy, no imports of ours).

A node process spends its first seconds importing torch and rclpy and loading artifacts. A
SIGINT that arrives then (``ros2 launch`` stopping early, a test tearing down) was lost: an
import swallowed the ``KeyboardInterrupt``, the node came up and spun for ever, and ``launch``
had to SIGKILL it. So ``entry`` installs this recording handler before importing anything heavy,
and it stays the only handler: ``node_util.run`` starts rclpy without its signal handlers, exits
quietly when a signal came during start-up, and otherwise leaves its spin loop at the next step
after one, with the context still up so the node can finish in-flight work (``before_shutdown``).
"""

import signal
from typing import List, Optional

_received: List[int] = []


def _record(signum, frame) -> None:   # noqa: ARG001 (signal handler signature)
    _received.append(signum)


def install() -> None:
    """Record SIGINT/SIGTERM instead of acting on them (``node_util.run`` checks ``signalled``)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _record)


def signalled() -> Optional[int]:
    """Return the first signal recorded since ``install`` (None if none)."""
    return _received[0] if _received else None
